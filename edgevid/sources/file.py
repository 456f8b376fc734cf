"""A video file: paced at its own timestamps (or as fast as inference allows), looping if asked."""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2

from ..capture import SINGLE_THREAD_PIXELS, check_file, file_size_problem, open_video
from ..errors import InputError
from .base import Kind, Opened, SourceError
from .opencv import opened, timeouts

if TYPE_CHECKING:
    from ..config import SourceConfig

#: Files with frames up to this size are decoded on the source's own thread: FFmpeg's frame threads
#: (one per core by default) cost more CPU in hand-offs than a small frame's decode (320x240 MPEG-4:
#: ~0.35 ms per frame with two decoder threads, ~0.2 ms with one, measured), and the daemon runs a
#: thread per source already. Larger files keep FFmpeg's threads (above 4K one, as ``classify``).
ONE_DECODER_THREAD_PIXELS = 640 * 480


def open_file(cfg: "SourceConfig") -> Opened:
    try:
        check_file(cfg.uri)  # a FIFO or a folder would block or fail inside OpenCV
    except InputError as exc:
        raise SourceError(str(exc)) from None
    cap = open_video(cfg.uri, *timeouts(cfg), cv2.CAP_PROP_N_THREADS, 1)
    pixels = cap.get(cv2.CAP_PROP_FRAME_WIDTH) * cap.get(cv2.CAP_PROP_FRAME_HEIGHT) if cap.isOpened() else 0
    if ONE_DECODER_THREAD_PIXELS < pixels <= SINGLE_THREAD_PIXELS:
        cap.release()  # a large frame: FFmpeg's own decoder threads keep up with it
        cap = open_video(cfg.uri, *timeouts(cfg))
    return opened(cap, "file", cfg.uri)


def file_problem(cfg: "SourceConfig") -> str | None:
    try:
        check_file(cfg.uri)
    except InputError as exc:
        return str(exc)
    return file_size_problem(cfg.uri)


KIND = Kind("file", lambda uri: True, open_file, file_problem, file=True)
