"""Direction-safe mirroring: which class a mirrored training view is labelled with.

A mirrored swipe-left *is* a swipe-right. Each class's mirrored view trains its *mirror class*:

- itself, for a class whose name has no direction word (``wave``, ``pour``);
- its twin, where two class names differ only by a direction word (``swipe_left`` and
  ``swipe_right``, ``turnClockwise`` and ``turnCounterClockwise``), or as ``--mirror-pairs a=b`` says;
- nothing (no mirrored view at all) for a class with a direction word and no twin
  (``point_left`` alone: its mirror image is not any class), and for every class with ``--mirror off``.

The same holds for random crops that are mirrored (:func:`tools.features.crop_flips`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

#: A direction word and what it becomes in a mirror image (left/right on screen, the sense of a rotation).
OPPOSITE = {
    "left": ("right",),
    "right": ("left",),
    "leftward": ("rightward",),
    "rightward": ("leftward",),
    "leftwards": ("rightwards",),
    "rightwards": ("leftwards",),
    "clockwise": ("counterclockwise", "anticlockwise"),
    "counterclockwise": ("clockwise",),
    "anticlockwise": ("clockwise",),
    "cw": ("ccw",),
    "ccw": ("cw",),
}


class MirrorError(ValueError):
    """--mirror-pairs names that are not classes, or a class in two pairs (one line, a usage error)."""


def words(name: str) -> tuple[str, ...]:
    """A class name's words, lower case: ``SwipeLeft``, ``swipe-left`` and ``swipe_left`` are ``(swipe, left)``;
    ``counter clockwise`` and ``anti-clockwise`` are one word each."""
    out: list[str] = []
    for w in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+", name):
        w = w.lower()
        if w == "clockwise" and out and out[-1] in ("counter", "anti"):
            out[-1] += w
        else:
            out.append(w)
    return tuple(out)


def parse_pairs(text: str) -> list[tuple[str, str]]:
    """``a=b,c=d`` as pairs (the --mirror-pairs option)."""
    pairs = []
    for part in text.split(","):
        a, eq, b = (x.strip() for x in part.partition("="))
        if not eq or not a or not b or a == b:
            raise ValueError(f"expected CLASS=MIRROR_CLASS[,...] with two different classes, got {part.strip()!r}")
        pairs.append((a, b))
    return pairs


@dataclass
class MirrorPlan:
    classes: list[str]
    target: list[int | None]  # per class: the class its mirrored view trains, or None (no mirrored view)
    pairs: list[tuple[str, str]] = field(default_factory=list)  # twins (by name or --mirror-pairs)
    given: list[tuple[str, str]] = field(default_factory=list)  # of those, the ones --mirror-pairs named
    off: bool = False

    @property
    def unmirrored(self) -> list[str]:
        return [c for c, t in zip(self.classes, self.target) if t is None]

    def describe(self) -> str:
        """One line for the run's output and report: what a mirrored view trains."""
        if self.off:
            return "mirror: off (no mirrored views)"
        parts = []
        if self.pairs:
            parts.append(
                "swapped pairs "
                + ", ".join(f"{a}<->{b}" + (" (--mirror-pairs)" if (a, b) in self.given else "") for a, b in self.pairs)
            )
        if self.unmirrored:
            parts.append("not mirrored (a direction word and no twin): " + ", ".join(self.unmirrored))
        same = len(self.classes) - 2 * len(self.pairs) - len(self.unmirrored)
        parts.append(f"{same} classes mirror to themselves")
        return "mirror: " + "; ".join(parts)

    def as_dict(self) -> dict:
        return {
            "off": self.off,
            "pairs": [list(p) for p in self.pairs],
            "given": [list(p) for p in self.given],
            "unmirrored": self.unmirrored,
            "target": [None if t is None else self.classes[t] for t in self.target],
        }


def mirror_plan(classes: list[str], off: bool = False, pairs: list[tuple[str, str]] | None = None) -> MirrorPlan:
    """What each class's mirrored view trains (module docstring); ``pairs`` (--mirror-pairs) come
    first, then twins by name. Raises :class:`MirrorError` for a pair naming no class."""
    n = len(classes)
    if off:
        return MirrorPlan(list(classes), [None] * n, off=True)
    index = {c: i for i, c in enumerate(classes)}
    target: list[int | None] = list(range(n))
    paired: dict[int, int] = {}
    given = []
    for a, b in pairs or []:
        for name in (a, b):
            if name not in index:
                raise MirrorError(f"--mirror-pairs: {name!r} is not a class (classes: {', '.join(classes)})")
            if index[name] in paired:
                raise MirrorError(f"--mirror-pairs: {name!r} is in two pairs")
        paired[index[a]], paired[index[b]] = index[b], index[a]
        given.append((a, b))
    by_words = {words(c): i for i, c in enumerate(classes)}
    for i, c in enumerate(classes):
        if i in paired:
            continue
        w = words(c)
        directional = [k for k, x in enumerate(w) if x in OPPOSITE]
        if not directional:
            continue
        twins = {by_words.get(w[:k] + (o,) + w[k + 1 :]) for k in directional for o in OPPOSITE[w[k]]} - {None}
        twins = {t for t in twins if t not in paired}
        if len(twins) == 1:
            t = twins.pop()
            paired[i], paired[t] = t, i
        else:
            target[i] = None  # its mirror image is no class (or more than one): never mirrored
    for i, t in paired.items():
        target[i] = t
    found = sorted(
        {tuple(sorted((classes[i], classes[t]), key=classes.index)) for i, t in paired.items()},
        key=lambda p: classes.index(p[0]),
    )
    given = [tuple(sorted(p, key=classes.index)) for p in given]
    return MirrorPlan(list(classes), target, found, given)


def view_labels(y: np.ndarray, plan: MirrorPlan, flips: list[list[bool]]) -> np.ndarray:
    """Per clip and view, the label that view trains, -1 for a view not to train at all:
    int [N, V]. ``flips[i][v]``: view v of clip i is a mirror image (view 0 always; crops at random)."""
    out = np.empty((len(y), len(flips[0]) if flips else 0), np.int64)
    for i, (label, row) in enumerate(zip(y, flips, strict=True)):
        t = plan.target[label]
        out[i] = [(-1 if t is None else t) if flipped else label for flipped in row]
    return out
