"""What the web page's live view costs a source thread (BENCHMARKS.md "Web snapshots").

1. ms per JPEG (edgevid.web.snapshot.encode_snapshot) on real JHMDB frames: 320x240 as decoded
   (encode only) and the same frames at 640x480 (downscale to 320 + encode), median of --reps.
2. The slot as the reader drives it: frames offered at 30 fps in real time for --seconds, once with
   nobody watching and once with a viewer asking every second; CPU seconds of this thread
   (time.thread_time) per second of video, and the JPEGs made.

    .venv/bin/python scripts/bench_snapshot.py --out benchmarks/web-snapshot-2026-12-04.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

from edgevid.web.snapshot import SnapshotSlot, encode_snapshot

SHARED = Path(os.environ.get("EDGEVID_SHARED", Path(__file__).resolve().parents[2] / "shared"))
CLIP = SHARED / "data/jhmdb/golf/Cobra_Golf_-_Camilo_Villegas_golf_f_cm_np1_ri_goo_0.avi"


def frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        out.append(f)
    cap.release()
    if not out:
        raise SystemExit(f"{path}: no frames (set EDGEVID_SHARED)")
    return out


def ms_per_jpeg(imgs: list[np.ndarray], reps: int) -> dict:
    times, sizes = [], []
    for i in range(reps):
        img = imgs[i % len(imgs)]
        t0 = time.perf_counter()
        jpeg = encode_snapshot(img)
        times.append((time.perf_counter() - t0) * 1e3)
        sizes.append(len(jpeg))
    return {
        "input": f"{imgs[0].shape[1]}x{imgs[0].shape[0]}",
        "ms_median": round(statistics.median(times), 3),
        "ms_p90": round(sorted(times)[int(0.9 * len(times))], 3),
        "jpeg_bytes_median": int(statistics.median(sizes)),
        "reps": reps,
    }


def paced(imgs: list[np.ndarray], seconds: float, fps: float, watched: bool) -> dict:
    """Offer frames at 30 fps in real time, as FrameReader._keep does; a viewer takes once a second."""
    slot = SnapshotSlot(fps)
    n, start, cpu0, next_take = 0, time.monotonic(), time.thread_time(), 0.0
    while (now := time.monotonic()) - start < seconds:
        if watched and now - start >= next_take:
            slot.take()
            next_take += 1.0
        slot.offer(imgs[n % len(imgs)], now, time.time())
        n += 1
        time.sleep(max(0.0, start + n / 30 - time.monotonic()))
    cpu = time.thread_time() - cpu0
    return {
        "watched": watched,
        "frames_offered": n,
        "jpegs": slot.encoded,
        "encode_ms_mean": round(slot.encode_s / slot.encoded * 1e3, 3) if slot.encoded else None,
        "snapshot_cpu_ms_per_s": round(slot.encode_s / seconds * 1e3, 3),
        "thread_cpu_ms_per_s_incl_pacing": round(cpu / seconds * 1e3, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--fps", type=float, default=1.0, help="snapshot_fps")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    cv2.setNumThreads(1)  # as the source threads run it
    small = frames(CLIP)
    large = [cv2.resize(f, (640, 480), interpolation=cv2.INTER_LINEAR) for f in small]
    result = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"OpenCV {cv2.__version__}",
        "clip": CLIP.name,
        "jpeg": [ms_per_jpeg(small, args.reps), ms_per_jpeg(large, args.reps)],
        "snapshot_fps": args.fps,
        "paced": [paced(small, args.seconds, args.fps, False), paced(small, args.seconds, args.fps, True)],
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
