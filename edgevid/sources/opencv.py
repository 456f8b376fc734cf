"""What the OpenCV-read kinds share: the timeouts they open with, and the checks once open."""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2

from ..capture import unusable
from .base import Opened, SourceError

if TYPE_CHECKING:
    from ..config import SourceConfig


def timeouts(cfg: "SourceConfig") -> list[int]:
    """OpenCV open() parameters: FFmpeg's open and read timeouts in ms."""
    return [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
        int(cfg.open_timeout * 1000),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
        int(cfg.read_timeout * 1000),
    ]


def opened(cap: cv2.VideoCapture, kind: str, uri: str) -> Opened:
    """An open capture within the frame-size limit, with what it says of itself; else released
    and a SourceError."""
    problem = unusable(cap, f"cannot open {kind} {uri!r}")
    if problem:
        raise SourceError(problem)
    width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    try:
        backend = cap.getBackendName()
    except cv2.error:
        backend = "?"
    return Opened(cap, width, height, cap.get(cv2.CAP_PROP_FPS) or 0.0, backend)
