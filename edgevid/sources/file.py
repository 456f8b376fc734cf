"""A video file: paced at its own timestamps (or as fast as inference allows), looping if asked."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..capture import check_file, file_size_problem, open_video
from ..errors import InputError
from .base import Kind, Opened, SourceError
from .opencv import opened, timeouts

if TYPE_CHECKING:
    from ..config import SourceConfig


def open_file(cfg: "SourceConfig") -> Opened:
    try:
        check_file(cfg.uri)  # a FIFO or a folder would block or fail inside OpenCV
    except InputError as exc:
        raise SourceError(str(exc)) from None
    return opened(open_video(cfg.uri, *timeouts(cfg)), "file", cfg.uri)


def file_problem(cfg: "SourceConfig") -> str | None:
    try:
        check_file(cfg.uri)
    except InputError as exc:
        return str(exc)
    return file_size_problem(cfg.uri)


KIND = Kind("file", lambda uri: True, open_file, file_problem, file=True)
