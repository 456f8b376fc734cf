"""Peak memory of ``edgevid classify`` on high-resolution clips (issue: 8K clips took 2.9 GB).

    python -m tools.memory --out benchmarks/memory-classify.json

Makes H.264 clips with ffmpeg (grey 8K, 30 frames; a 10 s 4K test pattern; a 320x240 baseline),
runs the real ``edgevid classify`` on each in its own process and reads that process's peak RSS
from the kernel (``wait4``), beside two bare Python processes on the same clip: one that only
decodes it with OpenCV (the decoder alone: at 8K its reference frames are most of the peak) and
one that also has OpenCV convert every frame to BGR (what ``retrieve`` costs). Goals: 4K
``classify`` <= 300 MB; 8K ``classify`` <= 250 MB above the decoder alone, in the same run.
Memory, unlike time, does not depend on how busy the machine is.
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

#: name -> (ffmpeg lavfi source, seconds or frames, goal: (what, MB) or None). ``peak``: classify's
#: peak RSS; ``over_decode``: classify's peak minus the decoder alone's on the same clip (an 8K H.264
#: decoder holds ~380 MB of reference frames in any process, so an absolute goal would measure it).
CLIPS = {
    "8k_grey_30_frames": ("color=gray:s=7680x4320:r=30", ["-frames:v", "30"], ("over_decode", 250)),
    "4k_testsrc_10s": ("testsrc2=s=3840x2160:r=30", ["-t", "10", "-preset", "ultrafast"], ("peak", 300)),
    "1080p_testsrc_10s": ("testsrc2=s=1920x1080:r=30", ["-t", "10", "-preset", "ultrafast"], None),
}


#: The floor: a bare Python process that only opens the clip with OpenCV and decodes every frame
#: (as classify does: default decoder threads, one thread above 4K), keeping none; with ``convert``
#: OpenCV also converts each frame to BGR (its own buffer, copied into the array it returns).
DECODE_ONLY = """
import sys, cv2
cap = cv2.VideoCapture(sys.argv[1], cv2.CAP_FFMPEG)
if cap.get(cv2.CAP_PROP_FRAME_WIDTH) * cap.get(cv2.CAP_PROP_FRAME_HEIGHT) > 3840 * 2160:
    cap.release(); cap = cv2.VideoCapture(sys.argv[1], cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
convert = sys.argv[2] == "convert"
while cap.grab():
    if convert:
        ok, frame = cap.retrieve()
        frame = None
"""


def make_clip(source: str, extra: list[str], out: Path) -> None:
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            source,
            *extra,
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            str(out),
        ],
        check=True,
    )


#: Runs the command from a small, fresh process and prints its peak RSS. Measuring straight from a
#: big parent (a pytest session of 700 MB) is wrong: the kernel carries the parent's high-water mark
#: into a child created by fork/vfork across its exec.
_LAUNCH = (
    "import os, subprocess, sys; p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL); "
    "_, st, ru = os.wait4(p.pid, 0); print(ru.ru_maxrss, os.waitstatus_to_exitcode(st))"
)


def peak_rss_mb(cmd: list[str], env: dict) -> tuple[float, int, float]:
    """Run ``cmd``; its own peak RSS (MB), exit code and wall seconds."""
    t = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", _LAUNCH, *cmd], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
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
            floor, _, _ = peak_rss_mb([sys.executable, "-c", DECODE_ONLY, str(path), "grab"], env)
            converted, _, _ = peak_rss_mb([sys.executable, "-c", DECODE_ONLY, str(path), "convert"], env)
            row = {
                "peak_rss_mb": round(rss, 1),
                "decode_only_peak_rss_mb": round(floor, 1),
                "decode_convert_peak_rss_mb": round(converted, 1),
                "over_decode_mb": round(rss - floor, 1),
                "over_decode_convert_mb": round(rss - converted, 1),
                "exit_code": code,
                "seconds": round(seconds, 2),
                "goal": None,
                "met": None,
            }
            if goal is not None:
                what, mb = goal
                row["goal"] = {"what": what, "mb": mb}
                row["met"] = (rss if what == "peak" else rss - floor) <= mb
            results[name] = row
            says = (
                ""
                if goal is None
                else f"; goal: {'peak' if goal[0] == 'peak' else 'classify - decoder alone'} <= {goal[1]} MB: "
                f"{'met' if row['met'] else 'NOT met'}"
            )
            print(
                f"{name:>20}: classify peak RSS {rss:7.1f} MB (exit {code}, {seconds:.1f} s); OpenCV decoding alone "
                f"{floor:7.1f} MB, "
                f"decoding + BGR conversion {converted:7.1f} MB; classify - decoder alone {rss - floor:6.1f} MB{says}",
                flush=True,
            )
    report = {
        "command": "python -m tools.memory" + (f" --out {args.out}" if args.out else ""),
        "load_avg": os.getloadavg(),
        "results": results,
    }
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
