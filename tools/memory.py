"""Peak memory of ``edgevid classify`` on high-resolution clips (issue: 8K clips took 2.9 GB).

    python -m tools.memory --out benchmarks/memory-classify.json

Makes H.264 clips with ffmpeg (grey 8K, 30 frames; a 10 s 4K test pattern; a 320x240 baseline),
runs the real ``edgevid classify`` on each in its own process and reads that process's peak RSS
from the kernel (``wait4``). Memory, unlike time, does not depend on how busy the machine is.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(os.environ.get("EDGEVID_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))

#: name -> (ffmpeg lavfi source, seconds or frames, goal in MB or None)
CLIPS = {
    "8k_grey_30_frames": ("color=gray:s=7680x4320:r=30", ["-frames:v", "30"], 400),
    "4k_testsrc_10s": ("testsrc2=s=3840x2160:r=30", ["-t", "10", "-preset", "ultrafast"], 300),
    "1080p_testsrc_10s": ("testsrc2=s=1920x1080:r=30", ["-t", "10", "-preset", "ultrafast"], None),
}


#: The floor: a bare Python process that only opens the clip with OpenCV and decodes every frame
#: (as classify does: default decoder threads, one thread above 4K), keeping none.
DECODE_ONLY = """
import sys, cv2
cap = cv2.VideoCapture(sys.argv[1], cv2.CAP_FFMPEG)
if cap.get(cv2.CAP_PROP_FRAME_WIDTH) * cap.get(cv2.CAP_PROP_FRAME_HEIGHT) > 3840 * 2160:
    cap.release(); cap = cv2.VideoCapture(sys.argv[1], cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
while cap.grab():
    pass
"""


def make_clip(source: str, extra: list[str], out: Path) -> None:
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", source, *extra, "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", str(out)], check=True)


#: Runs the command from a small, fresh process and prints its peak RSS. Measuring straight from a
#: big parent (a pytest session of 700 MB) is wrong: the kernel carries the parent's high-water mark
#: into a child created by fork/vfork across its exec.
_LAUNCH = ("import os, subprocess, sys; p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL); "
           "_, st, ru = os.wait4(p.pid, 0); print(ru.ru_maxrss, os.waitstatus_to_exitcode(st))")


def peak_rss_mb(cmd: list[str], env: dict) -> tuple[float, int, float]:
    """Run ``cmd``; its own peak RSS (MB), exit code and wall seconds."""
    t = time.monotonic()
    out = subprocess.run([sys.executable, "-c", _LAUNCH, *cmd], env=env, capture_output=True, text=True, check=True).stdout.split()
    return int(out[0]) / 1024, int(out[1]), time.monotonic() - t


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    p.add_argument("--model-dir", type=Path, default=SHARED / "models", help="folder holding the extractor")
    args = p.parse_args(argv)
    env = {**os.environ, "EDGEVID_MODEL_DIR": str(args.model_dir)}
    small = sorted((SHARED / "data" / "jhmdb").rglob("*.avi"))[0]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        clips = {"jhmdb_320x240": (small, None)}
        for name, (source, extra, goal) in CLIPS.items():
            out = Path(tmp) / f"{name}.mp4"
            make_clip(source, extra, out)
            clips[name] = (out, goal)
        for name, (path, goal) in clips.items():
            rss, code, seconds = peak_rss_mb([sys.executable, "-m", "edgevid", "classify", str(path)], env)
            floor, _, _ = peak_rss_mb([sys.executable, "-c", DECODE_ONLY, str(path)], env)
            results[name] = {"peak_rss_mb": round(rss, 1), "decode_only_peak_rss_mb": round(floor, 1), "exit_code": code,
                             "seconds": round(seconds, 2), "goal_mb": goal, "met": None if goal is None else rss <= goal}
            print(f"{name:>20}: peak RSS {rss:7.1f} MB (exit {code}, {seconds:.1f} s); OpenCV decoding alone {floor:7.1f} MB"
                  + (f"; goal <= {goal} MB" if goal else ""))
    report = {"command": "python -m tools.memory" + (f" --out {args.out}" if args.out else ""), "results": results}
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
