"""What reading a camera through a pipe costs the daemon, as a ratio to the extractor in one run.

    python -m tools.pipe_bench --out benchmarks/pipe-2026-11-25.json

A real clip (Kinetics sample, H.264) is scaled to the Pi camera's 640x480 and written once as raw
I420 and as MJPEG (what ``rpicam-vid --codec yuv420`` / ``--codec mjpeg`` write); ``cat`` then plays
each file into :class:`edgevid.sources.pipe.PipeCapture`, so the camera's own cost is not counted. Measured
on the reading thread's CPU clock: cutting frames out of the pipe (every frame), converting to BGR
and preprocessing to the extractor's input (the frames that fill a slot), and the extractor itself
(batches of 8, 2 threads). The daemon's load per second of a 15 fps camera with the bundled head:
15 frames read, 10 converted and extracted (12 slots per 1.2 s window).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from edgevid.extractor import Extractor, preprocess
from edgevid.sources.pipe import PipeCapture, PipeSpec

SHARED = Path(os.environ.get("EDGEVID_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
MNV2 = SHARED / "models" / "mobilenet_v2_1.0_224_quant.tflite"
CLIP = SHARED / "data" / "kinetics_sample" / "abseiling_k400.mp4"
W, H, FPS, SLOTS_PER_S = 640, 480, 15, 10


def _encode(fmt: str, out: Path) -> int:
    how = "-f mjpeg -q:v 5" if fmt == "mjpeg" else f"-f rawvideo -pix_fmt {fmt}"
    subprocess.run(
        f"ffmpeg -v error -nostdin -y -i {shlex.quote(str(CLIP))} -an -vf scale={W}:{H} {how} {shlex.quote(str(out))}",
        shell=True,
        check=True,
    )
    return out.stat().st_size


def _read(fmt: str, path: Path, convert: bool, size: int) -> tuple[int, float]:
    """Frames read and reader-thread CPU seconds for one pass over the file through a pipe."""
    cap = PipeCapture(PipeSpec(f"cat {shlex.quote(str(path))}", fmt, W, H, FPS))
    n, cpu = 0, 0.0
    try:
        while True:
            t = time.thread_time()
            got = cap.grab()
            if got and convert:
                ok, frame = cap.retrieve()
                assert ok
                preprocess(frame, size)
            cpu += time.thread_time() - t
            if got:
                n += 1
            elif cap.ended:
                return n, cpu
    finally:
        cap.release()


def run(repeats: int) -> dict:
    extractor = Extractor(MNV2, num_threads=2)
    size = extractor.input_size
    result: dict = {"clip": CLIP.name, "size": f"{W}x{H}", "camera_fps": FPS, "slots_per_s": SLOTS_PER_S, "formats": {}}
    with tempfile.TemporaryDirectory() as tmp:
        frames = None
        for fmt in ("yuv420p", "mjpeg"):
            path = Path(tmp) / f"clip.{fmt}"
            nbytes = _encode(fmt, path)
            read_ms, full_ms = [], []
            for _ in range(repeats):
                n, cpu = _read(fmt, path, False, size)
                read_ms.append(cpu * 1e3 / n)
                n2, cpu2 = _read(fmt, path, True, size)
                assert n2 == n
                full_ms.append(cpu2 * 1e3 / n)
            frames = n
            read, full = statistics.median(read_ms), statistics.median(full_ms)
            result["formats"][fmt] = {
                "frames": n,
                "bytes_per_frame": round(nbytes / n),
                "read_ms": round(read, 3),
                "convert_and_preprocess_ms": round(full - read, 3),
            }
        batch = np.zeros((8, size, size, 3), np.uint8)
        extractor.extract(batch)  # warm-up
        times = []
        for _ in range(max(3, repeats * 3)):
            t = time.perf_counter()
            extractor.extract(batch)
            times.append((time.perf_counter() - t) * 1e3 / len(batch))
        extract_ms = statistics.median(times)
    result["extract_ms_per_frame"] = round(extract_ms, 3)
    for fmt, r in result["formats"].items():
        reader = FPS * r["read_ms"] + SLOTS_PER_S * r["convert_and_preprocess_ms"]
        r["reader_ms_per_s"] = round(reader, 2)
        r["reader_over_extractor"] = round(reader / (SLOTS_PER_S * extract_ms), 3)
    result["frames"] = frames
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.pipe_bench", description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="passes over the clip per measurement (median)")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    args = p.parse_args(argv)
    result = run(args.repeats)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
