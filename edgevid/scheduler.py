"""Overload policy: which live sources feed the extractor when it cannot serve them all.

A frame dropped at random breaks every window it belongs to (M of them with a 1-slot hop), so
dropping the oldest frame of a shared queue starves every source at once. Instead, while the live
sources' sampled frames need more extractor time than it has, only as many sources as fit are
admitted, in turn: each admitted source gets whole runs of complete windows (its frames reused by
overlapping windows), and the others are paused, their windows counted as skipped for overload.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class AdmissionState:
    admitted: frozenset[str]
    overloaded: bool
    reason: str | None = None


class Admission:
    """All live sources while ``demand x cost`` fits in ``budget`` of the worker's time; beyond
    that, the sources that fit (at least one), rotated every ``lease`` seconds. Overload ends when
    the demand falls below ``release x budget`` (hysteresis: no flapping at the edge)."""

    def __init__(self, sources: list[str], *, budget: float = 0.95, lease: float = 20.0, release: float = 0.85) -> None:
        self.order = deque(sources)
        self.budget, self.lease, self.release = budget, lease, release
        self.state = AdmissionState(frozenset(sources), False)
        self._lease_end = -math.inf

    def update(self, now: float, demand: dict[str, float], cost_s: float | None) -> AdmissionState:
        """``demand``: frames per second each live, running source needs extracted; ``cost_s``:
        the extractor's measured seconds per frame (None until measured)."""
        active = [s for s in self.order if demand.get(s, 0.0) > 0]
        if cost_s is None or not active:
            self.state = AdmissionState(frozenset(self.order), False)
            return self.state
        load = sum(demand[s] for s in active) * cost_s
        limit = self.release * self.budget if self.state.overloaded else self.budget
        if load <= limit:
            self.state = AdmissionState(frozenset(self.order), False)
            self._lease_end = -math.inf
            return self.state
        if self.state.overloaded and now < self._lease_end:
            return self.state
        if self.state.overloaded:  # next turn: the sources that waited go first
            served = [s for s in self.order if s in self.state.admitted]
            self.order = deque([s for s in self.order if s not in self.state.admitted] + served)
            active = [s for s in self.order if demand.get(s, 0.0) > 0]
        chosen, used = [], 0.0
        for s in active:
            need = demand[s] * cost_s
            if chosen and used + need > self.budget:
                continue
            chosen.append(s)
            used += need
        idle = [s for s in self.order if s not in active]  # not producing frames: nothing to pause
        self._lease_end = now + self.lease
        reason = (
            f"live sources need {load:.2f}x the extractor's time ({1e3 * cost_s:.1f} ms/frame, "
            f"{sum(demand[s] for s in active):.0f} frames/s): serving {len(chosen)} of {len(active)} at a time, "
            f"in turns of {self.lease:g} s"
        )
        self.state = AdmissionState(frozenset(chosen + idle), True, reason)
        return self.state
