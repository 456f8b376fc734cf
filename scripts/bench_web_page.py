"""The daemon's CPU with the web page on: nobody watching, then one open page (BENCHMARKS.md "Web snapshots").

The real daemon on a looped JHMDB clip (realtime, 30 fps) with ``[web] listen``; after a warm-up,
alternating phases of ``--seconds``: no viewer, then one viewer doing what the page does (the
state once, the live stream, a snapshot every 1 / snapshot_fps s). CPU seconds of the daemon
process per second (/proc), per phase, repeated ``--rounds`` times. Bounded: it stops by itself.

    .venv/bin/python scripts/bench_web_page.py --out benchmarks/web-page-2026-12-04.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools.probe import free_port, proc_sample, start_daemon, stop_daemon, write_config  # noqa: E402

SHARED = Path(os.environ.get("EDGEVID_SHARED", ROOT.parent / "shared"))
CLIP = SHARED / "data/jhmdb/golf/Cobra_Golf_-_Camilo_Villegas_golf_f_cm_np1_ri_goo_0.avi"


class Viewer(threading.Thread):
    """One open page: the live stream read to the end, and a snapshot every ``1 / fps`` s."""

    def __init__(self, port: int, fps: float) -> None:
        super().__init__(daemon=True)
        self.port, self.fps = port, fps
        self.stop = threading.Event()
        self.frames = self.jpegs = self.jpeg_bytes = 0

    def run(self) -> None:
        urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/state", timeout=5).read()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request("GET", "/api/stream")
        resp = conn.getresponse()
        reader = threading.Thread(target=self._read, args=(resp,), daemon=True)
        reader.start()
        snapshot = f"http://127.0.0.1:{self.port}/api/sources/cam0/snapshot.jpg"
        while not self.stop.wait(1.0 / self.fps):
            try:
                with urllib.request.urlopen(snapshot, timeout=5) as r:
                    self.jpeg_bytes += len(r.read())
                    self.jpegs += 1
            except OSError:
                pass  # 503 until the first one is made
        conn.close()

    def _read(self, resp) -> None:
        try:
            for line in resp:
                self.frames += line.startswith(b"event: ")
        except (OSError, ValueError, AttributeError):  # closed under the reader at the end of the phase
            pass


def cpu_over(pid: int, seconds: float) -> float:
    a = proc_sample(pid)
    time.sleep(seconds)
    b = proc_sample(pid)
    return (b["cpu_s"] - a["cpu_s"]) / (b["t"] - a["t"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--warmup", type=float, default=10.0)
    ap.add_argument("--snapshot-fps", type=float, default=1.0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = write_config(
            Path(tmp) / "web.toml",
            f"tcp://127.0.0.1:{free_port()}",
            [{"id": "cam0", "uri": str(CLIP), "loop": True}],
            extra=f'\n[web]\nlisten = "127.0.0.1:{port}"\nsnapshot_fps = {args.snapshot_fps}\n',
            status_interval=5.0,
        )
        proc = start_daemon(cfg)
        phases = []
        try:
            time.sleep(args.warmup)
            for _ in range(args.rounds):
                phases.append({"viewer": False, "cpu_per_s": round(cpu_over(proc.pid, args.seconds), 4)})
                viewer = Viewer(port, args.snapshot_fps)
                viewer.start()
                time.sleep(2.0)  # the page loaded and its stream open
                cpu = cpu_over(proc.pid, args.seconds)
                viewer.stop.set()
                viewer.join(10)
                phases.append(
                    {
                        "viewer": True,
                        "cpu_per_s": round(cpu, 4),
                        "sse_frames": viewer.frames,
                        "jpegs": viewer.jpegs,
                        "jpeg_bytes_mean": viewer.jpeg_bytes // max(1, viewer.jpegs),
                    }
                )
                time.sleep(6.0)  # the slot stops encoding WANTED_S after the last ask
        finally:
            code, err = stop_daemon(proc)
    off = [p["cpu_per_s"] for p in phases if not p["viewer"]]
    on = [p["cpu_per_s"] for p in phases if p["viewer"]]
    result = {
        "clip": CLIP.name,
        "seconds_per_phase": args.seconds,
        "snapshot_fps": args.snapshot_fps,
        "load_before": os.getloadavg(),
        "phases": phases,
        "daemon_cpu_no_viewer": round(sum(off) / len(off), 4),
        "daemon_cpu_one_page": round(sum(on) / len(on), 4),
        "exit": code,
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
