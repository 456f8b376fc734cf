#!/usr/bin/env python3
"""Does uvloop pay for the daemon? The real `edgevid run` on a looping real clip, with uvloop and with
plain asyncio (uvloop import blocked), alternated REPEATS times in one run. Measured per run: the CPU
time of the event-loop thread (the main thread: ZeroMQ sends, status heartbeat, watchdog) and of
the whole process, per prediction published. Prints the ratios; writes --out JSON.

    .venv/bin/python scripts/bench_uvloop.py --seconds 20 --repeats 3 --out benchmarks/uvloop-x86.json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import zmq

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGEVID_SHARED", ROOT.parent / "shared")).resolve()
TICK = os.sysconf("SC_CLK_TCK")
BLOCK = "import sys; sys.modules['uvloop'] = None; from edgevid.cli import main; sys.exit(main())"
WITH = "import sys, uvloop; from edgevid.cli import main; sys.exit(main())"


def cpu(path: str) -> float:
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def one(loop: str, seconds: float, config: Path, endpoint: str) -> dict:
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.connect(endpoint)
    sub.setsockopt_string(zmq.SUBSCRIBE, "")
    env = {**os.environ, "EDGEVID_MODEL_DIR": str(SHARED / "models")}
    proc = subprocess.Popen(
        [sys.executable, "-c", WITH if loop == "uvloop" else BLOCK, "run", "--config", str(config)],
        cwd=ROOT,
        env=env,
        stderr=subprocess.DEVNULL,
    )
    preds, start, end = 0, None, None
    while True:
        if sub.poll(1000):
            topic = sub.recv_multipart()[0].decode()
            if topic.startswith("pred"):
                if start is None:  # measure from the first prediction: model loading excluded
                    start, main0, all0 = (
                        time.monotonic(),
                        cpu(f"/proc/{proc.pid}/task/{proc.pid}/stat"),
                        cpu(f"/proc/{proc.pid}/stat"),
                    )
                else:
                    preds += 1
        if start is not None and time.monotonic() - start >= seconds:
            main1, all1, end = (
                cpu(f"/proc/{proc.pid}/task/{proc.pid}/stat"),
                cpu(f"/proc/{proc.pid}/stat"),
                time.monotonic(),
            )
            break
        if proc.poll() is not None:
            raise SystemExit(f"daemon exited early ({loop}): rc {proc.returncode}")
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    sub.close(linger=0)
    ctx.term()
    return {
        "loop": loop,
        "predictions": preds,
        "seconds": round(end - start, 2),
        "loop_thread_cpu_ms_per_pred": round(1000 * (main1 - main0) / preds, 3),
        "process_cpu_ms_per_pred": round(1000 * (all1 - all0) / preds, 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    clip = sorted((SHARED / "data" / "ucf101_sample").rglob("*.avi"))[0]
    with socket_port() as port, tempfile.TemporaryDirectory() as tmp:
        endpoint = f"tcp://127.0.0.1:{port}"
        config = Path(tmp) / "edgevid.toml"
        config.write_text(
            f'[[sources]]\nid = "cam0"\nuri = "{clip}"\nloop = true\nrealtime = true\nhop = 0.1\n\n'
            f'[publish]\nendpoint = "{endpoint}"\nstatus_interval = 1.0\n'
        )
        runs = [
            one(loop, args.seconds, config, endpoint) for _ in range(args.repeats) for loop in ("uvloop", "asyncio")
        ]
    summary = {}
    for loop in ("uvloop", "asyncio"):
        mine = [r for r in runs if r["loop"] == loop]
        summary[loop] = {
            k: round(sum(r[k] for r in mine) / len(mine), 3)
            for k in ("loop_thread_cpu_ms_per_pred", "process_cpu_ms_per_pred")
        }
    ratio = {k: round(summary["uvloop"][k] / summary["asyncio"][k], 3) for k in summary["uvloop"]}
    result = {
        "command": " ".join(["scripts/bench_uvloop.py"] + sys.argv[1:]),
        "clip": clip.name,
        "runs": runs,
        "mean": summary,
        "uvloop_over_asyncio": ratio,
    }
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


class socket_port:
    def __enter__(self) -> int:
        import socket

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        return self.port

    def __exit__(self, *exc) -> None:
        return None


if __name__ == "__main__":
    sys.exit(main())
