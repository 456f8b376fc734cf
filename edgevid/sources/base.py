"""What every source kind shares: the frame it hands over, where it goes, its counters, and an
opened capture (anything with OpenCV's ``grab``/``retrieve``/``get``/``release``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol

import numpy as np

from ..timing import Fill
from ..windows import FrameInfo

if TYPE_CHECKING:
    from ..config import SourceConfig


@dataclass
class Captured(FrameInfo):
    """A frame that fills a slot, with its image already at the extractor's input size."""

    image: np.ndarray | None = field(default=None, repr=False)
    #: (predecessor, this frame) as small grey images, for a head that reads the motion stream (no
    #: predecessor: the first of a segment, or the one after a paused stretch); the rich descriptor
    #: appends the predecessor's own predecessor (``MotionEstimator.describe(*motion_pair)``).
    motion_pair: tuple | None = field(default=None, repr=False)


class Sink(Protocol):
    """Where a source's frames go (the daemon)."""

    def segment(self, source: str) -> None:
        """A new stretch of video starts (opened, reopened or looped): no window spans the seam."""

    def fills(self, source: str, fills: list[Fill[Captured]], new: list[Captured], paused: bool) -> None:
        """Slots settled by the last frame, and the frames in them not handed over before (to extract)."""

    def paused(self, source: str) -> bool:
        """True while overload keeps this source's frames from the extractor."""


@dataclass
class SourceStats:
    state: str = "starting"
    frames_in: int = 0
    sampled: int = 0  # distinct frames handed to the extractor
    extracted: int = 0
    dropped: int = 0
    reconnects: int = 0
    predictions: int = 0
    loop: int = 0
    last_error: str | None = None
    motion: bool | None = None  # the motion gate's state (None: no gate)
    gated: int = 0  # sampled frames the gate kept from the extractor (set by the worker)
    idle_s: float = 0.0  # seconds of the source's time the gate found the picture still


class SourceError(Exception):
    """A source cannot be opened or read; the message is one line for logs and status."""


@dataclass
class Opened:
    cap: Any  # cv2.VideoCapture, or a capture of ours with the same calls (PipeCapture)
    width: int
    height: int
    fps: float
    backend: str


@dataclass(frozen=True)
class Kind:
    """A kind of source: how a URI is recognised (``kind = "auto"``), how it opens, what
    ``config check`` can see wrong without reading frames, and how it is read."""

    name: str
    detect: Callable[[str], bool] | None  # None: only when the config names the kind
    open: Callable[["SourceConfig"], Opened]
    problem: Callable[["SourceConfig"], str | None]
    #: Read as a file: paced by its own timestamps, each slot held until the file is known to
    #: reach it, looping at the end. Otherwise live: timed on arrival, stalls reopen it.
    file: bool = False
