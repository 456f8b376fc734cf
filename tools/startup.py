"""Start-up cost of the ``edgevid`` command, measured in one run (a noisy machine: compare within it).

    python -m tools.startup --clip ../shared/data/jhmdb/pour/<clip>.avi --repeat 7

Prints, as medians over ``--repeat`` runs: the bare interpreter (``python -c pass``), ``edgevid
--help``, and ``edgevid classify CLIP --json`` with its own pipeline time (``timings.total_ms``),
so the overhead over the pipeline (imports, loading the extractor and head) is wall - pipeline.
Targets (issue 13): ``--help`` <= 0.2 s, classify overhead <= 0.5 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _wall(argv: list[str]) -> tuple[float, str]:
    t = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=True)
    return time.perf_counter() - t, proc.stdout


def measure(clip: Path, repeat: int) -> dict:
    """Interleaved runs (bare, help, classify) so load changes hit all three alike."""
    bare, helps, walls, pipes = [], [], [], []
    edgevid = [sys.executable, "-m", "edgevid"]
    for _ in range(repeat):
        bare.append(_wall([sys.executable, "-c", "pass"])[0])
        helps.append(_wall([*edgevid, "--help"])[0])
        wall, out = _wall([*edgevid, "classify", str(clip), "--json"])
        walls.append(wall)
        pipes.append(json.loads(out)["timings"]["total_ms"] / 1e3)
    med = statistics.median
    overhead = [w - p for w, p in zip(walls, pipes)]
    return {"repeat": repeat, "python_s": med(bare), "help_s": med(helps), "help_over_python": med(helps) / med(bare),
            "classify_wall_s": med(walls), "classify_pipeline_s": med(pipes), "classify_overhead_s": med(overhead)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.startup", description=__doc__.split("\n")[0])
    p.add_argument("--clip", type=Path, required=True, help="a clip for `edgevid classify`")
    p.add_argument("--repeat", type=int, default=7, help="runs of each command (default 7)")
    p.add_argument("--out", type=Path, help="also write the numbers here as JSON")
    args = p.parse_args(argv)
    r = measure(args.clip, args.repeat)
    print(f"python -c pass: {r['python_s']:.3f} s; edgevid --help: {r['help_s']:.3f} s ({r['help_over_python']:.2f}x the bare interpreter)")
    print(f"edgevid classify: {r['classify_wall_s']:.3f} s wall, pipeline {r['classify_pipeline_s']:.3f} s, "
          f"overhead {r['classify_overhead_s']:.3f} s (medians of {r['repeat']})")
    if args.out:
        args.out.write_text(json.dumps(r, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
