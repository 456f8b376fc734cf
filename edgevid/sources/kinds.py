"""The registry of source kinds: a new kind is one module with a ``KIND`` and one line here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import camera, file, pipe, stream
from .base import Kind, Opened

if TYPE_CHECKING:
    from ..config import SourceConfig

#: In the order ``kind = "auto"`` tries them; a file last: anything else is a path.
KINDS: tuple[Kind, ...] = (camera.KIND, stream.KIND, pipe.KIND, file.KIND)
NAMES = tuple(k.name for k in KINDS)


def named(name: str) -> Kind:
    return next(k for k in KINDS if k.name == name)


def detect(uri: str) -> Kind:
    """The kind a URI is, for ``kind = "auto"``."""
    return next(k for k in KINDS if k.detect is not None and k.detect(uri))


def kind_of(cfg: "SourceConfig") -> Kind:
    return named(cfg.resolved_kind())


def open_capture(cfg: "SourceConfig") -> Opened:
    return kind_of(cfg).open(cfg)


def source_problem(cfg: "SourceConfig") -> str | None:
    """What would keep a source from opening, found without reading frames (for ``config check``)."""
    return kind_of(cfg).problem(cfg)
