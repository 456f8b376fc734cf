"""A network stream FFmpeg reads: ``rtsp://``, ``http(s)://`` and any other ``scheme://``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2

from .base import Kind, Opened
from .opencv import opened, timeouts

if TYPE_CHECKING:
    from ..config import SourceConfig


def open_stream(cfg: "SourceConfig") -> Opened:
    return opened(cv2.VideoCapture(cfg.uri, cv2.CAP_FFMPEG, timeouts(cfg)), "stream", cfg.uri)


KIND = Kind("stream", lambda uri: "://" in uri, open_stream, lambda cfg: None)
