"""Reading frames with OpenCV: whole clips for ``classify``; live sources live in ``sources``."""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from .errors import InputError
from .sampling import sample_indices
from .timing import FileClock

VIDEO_SUFFIXES = frozenset(
    {".avi", ".mp4", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts"}
)


@dataclass
class Clip:
    """The sampled frames of one clip, BGR as decoded, in sampling order (repeats allowed)."""

    path: Path
    frames: list[np.ndarray]
    indices: np.ndarray
    n_frames: int
    fps: float
    width: int
    height: int


#: Largest frame edgevid decodes (8K UHD). Bigger frames are refused before decoding: one 16K
#: frame is 400 MB of BGR, and nothing the extractor sees (224x224) gains from it.
MAX_PIXELS = 7680 * 4320
SINGLE_THREAD_PIXELS = 3840 * 2160


#: Frame rates outside this range are not believed (a header saying 0.001 fps would make one
#: frame last 17 minutes); one range for files, streams, pipes and classify.
FPS_RANGE = (1.0, 240.0)


def believable(fps: float) -> bool:
    return FPS_RANGE[0] <= fps <= FPS_RANGE[1]


def header_fps(path: Path | str) -> float:
    """The clip's frame rate as its header says (what ``read_clip`` records), 0.0 if unknown: the
    one frame-rate reader of ``classify``, the training cache and the benchmarks."""
    cap = open_video(path)
    try:
        return float(cap.get(cv2.CAP_PROP_FPS) or 0.0) if cap.isOpened() else 0.0
    finally:
        cap.release()


def size_problem(width: int, height: int) -> str | None:
    """Why frames of this size are refused, else None: the one limit that ``classify``, ``config
    check`` and every daemon source (file, stream, camera, pipe) apply."""
    if width * height > MAX_PIXELS:
        return (
            f"frames are {width}x{height}, larger than the {MAX_PIXELS / 1e6:.1f} megapixel maximum (8K UHD); "
            "downscale the video first"
        )
    return None


def file_size_problem(path: Path | str) -> str | None:
    """``size_problem`` of a video file's frames as its header declares them (for ``config check``;
    None as well when OpenCV cannot open it: reading it will say why)."""
    cap = open_video(path)
    try:
        if not cap.isOpened():
            return None
        too_big = size_problem(int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        return f"{display(path)}: {too_big}" if too_big else None
    finally:
        cap.release()


def display(path: Path | str) -> str:
    """A path as text that can always be printed: bytes that are not UTF-8 shown as ``\\xe9``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def check_file(path: Path | str) -> None:
    """Refuse what cannot be a video file, with one line naming it: missing, a directory, a FIFO
    or device (reading one blocks until a writer comes), a symlink loop, unreadable, empty."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InputError(f"{display(path)}: no such file") from None
    except OSError as exc:
        reason = "symlink loop" if exc.errno == errno.ELOOP else (exc.strerror or str(exc)).lower()
        raise InputError(f"{display(path)}: {reason}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{display(path)}: is a directory, expected a video file")
    if stat.S_ISFIFO(st.st_mode):
        raise InputError(
            f"{display(path)}: is a FIFO, expected a video file (a command's output is read with a pipe source)"
        )
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{display(path)}: not a regular file, expected a video file")
    if not os.access(path, os.R_OK):
        raise InputError(f"{display(path)}: permission denied")
    if st.st_size == 0:
        raise InputError(f"{display(path)}: empty file (0 bytes)")


def open_video(path: Path | str, *params: int) -> cv2.VideoCapture:
    """``cv2.VideoCapture`` of a file by any name. OpenCV crashes (SIGSEGV) on a name that is not
    valid UTF-8, so such a file is opened through ``/proc/self/fd``: FFmpeg reopens the same file
    under a name it can take."""
    name = str(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        if not os.path.isdir("/proc/self/fd"):
            raise InputError(f"{display(path)}: file name is not valid UTF-8; rename the file") from None
        fd = os.open(path, os.O_RDONLY)
        try:
            return cv2.VideoCapture(f"/proc/self/fd/{fd}", cv2.CAP_FFMPEG, list(params))
        finally:
            os.close(fd)
    return cv2.VideoCapture(name, cv2.CAP_FFMPEG, list(params))


def unusable(cap: cv2.VideoCapture, not_open: str) -> str | None:
    """Why an OpenCV capture cannot be used (it is released then): ``not_open`` when it did not
    open, the size limit (:func:`size_problem`) when its frames are too large; else None."""
    if not cap.isOpened():
        cap.release()
        return not_open
    too_big = size_problem(int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    if too_big:
        cap.release()
    return too_big


def _open(path: Path) -> cv2.VideoCapture:
    check_file(path)
    cap = open_video(path)
    problem = unusable(cap, "not a video OpenCV/FFmpeg can open (unknown container or corrupt header)")
    if problem:
        raise InputError(f"{display(path)}: {problem}")
    if cap.get(cv2.CAP_PROP_FRAME_WIDTH) * cap.get(cv2.CAP_PROP_FRAME_HEIGHT) > SINGLE_THREAD_PIXELS:
        # Each decoder thread holds frames of its own: above 4K, one thread keeps memory down.
        cap.release()
        cap = open_video(path, cv2.CAP_PROP_N_THREADS, 1)
    return cap


def count_frames(path: Path) -> int | None:
    """Count frames by demuxing packets without decoding them (~10x cheaper than decoding).

    The container header cannot be trusted (every JHMDB avi overstates it by 16-21 %); the packet
    count matched the decoded count on the real clips we have. ``None`` if the backend cannot
    return raw packets. The caller still verifies against what really decodes.
    """
    times = frame_times(path)
    return None if times is None else len(times)


def frame_times(path: Path) -> np.ndarray | None:
    """When each frame of a file starts being shown, in seconds from the first, read from its
    packets without decoding: what the daemon's file sources go by (:class:`edgevid.timing.FileClock`).

    JHMDB avis skip a timestamp about every sixth frame (a null frame: the previous one is shown
    twice), so 40 frames at 30 fps last 1.6 s, not 1.33 s. ``None`` if the backend cannot return
    raw packets.
    """
    cap = _open(Path(path))
    try:
        fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
        if not cap.set(cv2.CAP_PROP_FORMAT, -1):
            return None
        pts = []
        while True:
            ok, packet = cap.read()
            if not ok:
                break
            if packet is not None and packet.size > 0:
                pts.append(cap.get(cv2.CAP_PROP_POS_MSEC))
    finally:
        cap.release()
    clock = FileClock(fps if believable(fps) else 30.0)
    return np.array([clock.position(p) for p in sorted(pts)], np.float64)


def _decode_selected(
    path: Path, wanted: np.ndarray, reduce: Callable[[np.ndarray], np.ndarray] | None
) -> tuple[dict[int, np.ndarray], int, tuple[float, int, int]]:
    """Decode the whole clip, converting only the wanted frames (and ``reduce``-ing each as it
    comes, so a 4K clip never holds 25 full frames); return them and the true count."""
    cap = _open(path)
    try:
        meta = (
            cap.get(cv2.CAP_PROP_FPS) or 0.0,
            int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
        wanted_set = set(int(i) for i in wanted)
        frames: dict[int, np.ndarray] = {}
        n = 0
        while cap.grab():
            if n in wanted_set:
                ok, frame = cap.retrieve()
                if ok and frame is not None:
                    frames[n] = reduce(frame) if reduce else frame
                frame = None  # a full 8K frame is 100 MB: never hold two while the next decodes
            n += 1
        return frames, n, meta
    finally:
        cap.release()


def read_clip(
    path: Path | str,
    m: int | None,
    indices_for: Callable[[int], np.ndarray] | None = None,
    times: np.ndarray | None = None,
    reduce: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Clip:
    """Decode ``path`` once and return ``m`` frames sampled uniformly over what really decodes.

    ``m=None`` returns every frame. ``indices_for(n_frames)`` replaces the uniform choice (the
    training tools use it to add frames for augmentation to the exact deployment sample).

    Frames outside the sample are decoded (the codec needs them) but never colour-converted. When
    the packet count proves wrong (a frame that fails to decode), the clip is decoded a second time
    with the true count, so the sample is always uniform over real frames. ``times``: the clip's
    :func:`frame_times` when the caller already read them (their length is the packet count).
    ``reduce`` is applied to each kept frame as soon as it is decoded (``Clip.frames`` holds its
    output; ``width``/``height`` stay the decoded size).
    """
    path = Path(path)
    estimate = len(times) if times is not None else count_frames(path)
    if estimate is None:
        cap = _open(path)
        estimate = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        cap.release()
    for _ in range(2):
        n_est = max(estimate, 1)
        indices = indices_for(n_est) if indices_for else sample_indices(n_est, m or n_est)
        frames, n, (fps, width, height) = _decode_selected(path, indices, reduce)
        if n == 0:
            raise InputError(f"{display(path)}: no decodable video frames (truncated, corrupt or not a video stream)")
        if n == estimate and all(int(i) in frames for i in indices):
            return Clip(path, [frames[int(i)] for i in indices], indices, n, fps, width, height)
        estimate = n
    raise InputError(f"{display(path)}: frames fail to decode consistently (corrupt video)")


def find_videos(path: Path | str) -> tuple[list[Path], list[str]]:
    """A video file as given, or the video files under a directory (recursive, sorted), and a
    one-line problem for each subfolder that could not be read (reported, never silently skipped)."""
    path = Path(path)
    if not path.is_dir():
        check_file(path)
        return [path], []
    videos: list[Path] = []
    problems: list[str] = []

    def unreadable(exc: OSError) -> None:
        problems.append(f"{display(exc.filename or path)}: cannot list folder: {(exc.strerror or str(exc)).lower()}")

    for folder, dirs, files in os.walk(path, onerror=unreadable, followlinks=False):
        dirs.sort()
        for name in files:
            p = Path(folder) / name
            if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file():
                videos.append(p)
    if not videos and not problems:
        raise InputError(f"{display(path)}: directory contains no video files ({', '.join(sorted(VIDEO_SUFFIXES))})")
    return sorted(videos), problems
