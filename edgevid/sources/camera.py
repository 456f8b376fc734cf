"""A camera: an index (``0``) or a V4L2 device path (``/dev/video0``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2

from .base import Kind, Opened
from .opencv import opened

if TYPE_CHECKING:
    from ..config import SourceConfig


def detect(uri: str) -> bool:
    return uri.isdigit() or uri.startswith("/dev/video")


def open_camera(cfg: "SourceConfig") -> Opened:
    # Camera backends (V4L2) may not support the timeout properties, and OpenCV fails the whole
    # open when a backend rejects an open() parameter: set the read timeout best-effort instead
    # (the V4L2 driver bounds a read by itself).
    cap = cv2.VideoCapture(int(cfg.uri) if cfg.uri.isdigit() else cfg.uri, cv2.CAP_ANY)
    if cap.isOpened():
        cap.set(cv2.CAP_PROP_READ_TIMEOUT_MSEC, cfg.read_timeout * 1000)
    return opened(cap, "camera", cfg.uri)


KIND = Kind("camera", detect, open_camera, lambda cfg: None)
