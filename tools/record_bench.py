"""What a recording source costs: the source thread's time per kept frame in ``FrameRing.offer``
(pre-roll only, and with a clip open) and the encoder's CPU per frame written, at three camera
sizes, on a real JHMDB clip. ``python -m tools.record_bench`` (BENCHMARKS.md "Recording")."""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from edgevid.config import RecordConfig
from edgevid.messages import ModelIds
from edgevid.record import Recorder

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGEVID_SHARED", ROOT.parent / "shared"))
DEFAULT_CLIP = SHARED / "data" / "jhmdb" / "golf"


def read_frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def children_cpu() -> float:
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ch.ru_utime + ch.ru_stime


def measure(frames: list[np.ndarray], size: tuple[int, int], n: int = 300) -> dict:
    """Milliseconds per kept frame on the source thread, without and with a clip open, and the
    encoder's CPU per frame written (ffmpeg is a child: its time shows once it exits)."""
    resized = [cv2.resize(f, size) for f in frames]
    rec = Recorder(
        RecordConfig(enabled=True, dir=Path(tempfile.mkdtemp()) / "r"), ["c"], ModelIds(extractor="e", head="h"), "m"
    )
    ring, out, cpu0 = rec.rings["c"], {}, children_cpu()
    for k, mode in enumerate(("ring_ms", "clip_ms")):
        if mode == "clip_ms":
            rec.request("c", 30)
        wall, spent = time.time(), 0.0
        for i in range(n):
            t0 = time.perf_counter()
            ring.offer(resized[i % len(resized)], k * 1000 + i * 0.1, wall + i * 0.01, None)  # every frame due
            spent += time.perf_counter() - t0
        out[mode] = round(spent / n * 1e3, 3)
    rec.close()
    asyncio.run(rec.wait_closed())
    st = rec.writer.stats
    out.update(written=st.frames_written, dropped=st.frames_dropped)
    out["encode_ms"] = round((children_cpu() - cpu0) / max(st.frames_written, 1) * 1e3, 2)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clip", type=Path, help="a video (default: a JHMDB golf clip)")
    args = p.parse_args()
    clip = args.clip or sorted(DEFAULT_CLIP.glob("*.avi"))[4]
    cv2.setNumThreads(1)  # as the source threads run
    frames = read_frames(clip)
    for size in ((320, 240), (640, 480), (1280, 720)):
        print(f"{size[0]}x{size[1]}: {measure(frames, size)}", flush=True)


if __name__ == "__main__":
    main()
