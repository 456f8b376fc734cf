"""How soon `edgevid run` catches SIGHUP: ms from spawn until SigCgt in /proc/PID/status has it.

A SIGHUP before that moment kills the process (the default action); RELIABILITY.md records the
numbers. Usage: python scripts/sighup_catch.py [EDGEVID] [N]  (EDGEVID_SHARED, EDGEVID_MODEL_DIR as
for the tests; the clip is one of JHMDB's).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(os.environ.get("EDGEVID_SHARED", "../shared"))
CLIP = SHARED / "data/jhmdb/pour/Bartender_of_America_Bartending_School_pour_u_cm_np1_fr_med_0.avi"


def caught_after(exe: str, config: Path, limit_s: float = 5.0) -> float | None:
    """Seconds from spawn until the process catches SIGHUP (None: not within ``limit_s``)."""
    t0 = time.perf_counter()
    p = subprocess.Popen([exe, "run", "--config", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - t0 < limit_s:
            try:
                status = Path(f"/proc/{p.pid}/status").read_text()
            except OSError:
                continue
            mask = next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:"))
            if int(mask, 16) & 1:  # bit 0: signal 1, SIGHUP
                return time.perf_counter() - t0
        return None
    finally:
        p.terminate()
        p.wait()


def main() -> None:
    exe = sys.argv[1] if len(sys.argv) > 1 else ".venv/bin/edgevid"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp, "edgevid.toml")
        config.write_text(
            f'[[sources]]\nid = "a"\nuri = "{CLIP}"\nloop = true\n[publish]\nendpoint = "tcp://127.0.0.1:0"\n'
        )
        ms = [t * 1e3 for _ in range(n) if (t := caught_after(exe, config)) is not None]
    if not ms:
        sys.exit("never caught SIGHUP")
    low, mid, high = min(ms), statistics.median(ms), max(ms)
    print(f"ms from spawn to SIGHUP caught: median {mid:.1f}, min {low:.1f}, max {high:.1f} (n={len(ms)} of {n})")


if __name__ == "__main__":
    main()
