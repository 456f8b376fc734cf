"""The event debounce rule, driven by a fake clock: start after min_duration, updates, end after end_after."""

from __future__ import annotations

import numpy as np

from edgevid.events import EventTracker, Window
from edgevid.messages import Event

LABELS = ["wave", "walk", "sit"]


def probs(label: str | None, score: float = 0.8) -> np.ndarray:
    """A window whose top-1 is ``label`` with ``score`` (None: nothing above 0.34)."""
    if label is None:
        return np.full(3, 1 / 3, np.float32)
    p = np.full(3, (1 - score) / 2, np.float32)
    p[LABELS.index(label)] = score
    return p


def play(tracker: EventTracker, labels: list, hop: float = 0.5, t0: float = 100.0, window: float = 1.2) -> list[Event]:
    """One window per hop; the clock is the window's end."""
    out = []
    for i, lab in enumerate(labels):
        end = t0 + i * hop
        score = lab[1] if isinstance(lab, tuple) else 0.8
        out += tracker.step(
            probs(lab[0] if isinstance(lab, tuple) else lab, score), Window(end - window, end, end, i + 1)
        )
    return out


def tracker(**kw) -> EventTracker:
    args = {"min_score": 0.5, "min_duration": 1.0, "end_after": 1.5, "update_interval": 2.0} | kw
    return EventTracker("cam", LABELS, **args)


def test_start_after_min_duration_updates_then_end_after_end_after():
    ev = play(
        tracker(), [None, "wave", "wave", "wave", "wave", "wave", "wave", "wave", "wave", None, None, None, None, None]
    )
    assert [e.phase for e in ev] == ["start", "update", "end"]
    start, update, end = ev
    assert start.label == "wave" and start.prediction_seq == 4  # wave at 100.5, 101.0, 101.5: 1.0 s held
    assert start.started_at == 100.5 - 1.2 and start.duration_s == 1.0
    assert update.prediction_seq == 8 and update.duration_s == 3.0  # 2 s after the start
    assert end.prediction_seq == 12 and end.duration_s == 3.5  # last present at 104.0, absent 1.5 s at 105.5
    assert len({e.id for e in ev}) == 1 and [e.seq for e in ev] == [1, 2, 3]


def test_flicker_neither_starts_nor_ends_events():
    # a label that flickers on and off every window never holds for min_duration
    assert play(tracker(), ["wave", None, "wave", None, "walk", None, "wave", "walk"] * 3) == []
    # one bad window inside an action does not end it (absent 0.5 s < end_after)
    ev = play(tracker(update_interval=10.0), ["wave"] * 4 + [None] + ["wave"] * 4 + ["sit"] + ["wave"] * 2)
    assert [e.phase for e in ev] == ["start"]


def test_below_min_score_is_absent():
    ev = play(tracker(), ["wave"] * 3 + [("wave", 0.45)] * 4)
    assert [e.phase for e in ev] == ["start", "end"]
    assert ev[1].score == 0.45 and ev[1].best_score == 0.8


def test_change_of_action_ends_the_old_event_and_starts_the_new_one():
    ev = play(tracker(end_after=10.0), ["wave"] * 5 + ["walk"] * 5)
    assert [(e.phase, e.label) for e in ev] == [("start", "wave"), ("end", "wave"), ("start", "walk")]
    assert ev[1].prediction_seq == ev[2].prediction_seq == 8  # walk held 1.0 s: wave ends, walk starts
    assert ev[0].id == ev[1].id != ev[2].id


def test_reset_and_clock_going_back_end_the_open_event():
    t = tracker()
    ev = play(t, ["wave"] * 4)
    ev += play(t, ["wave"] * 4, t0=0.0)  # a file's next pass: media time restarts
    assert [e.phase for e in ev] == ["start", "end", "start"]
    assert ev[1].score is None
    ev += t.reset()
    assert [e.phase for e in ev][-1] == "end" and t.reset() == []


def test_min_score_zero_and_min_duration_zero_start_on_the_first_window():
    ev = play(tracker(min_score=0.0, min_duration=0.0), ["sit"])
    assert [(e.phase, e.label, e.duration_s) for e in ev] == [("start", "sit", 0.0)]


def test_subscribe_prints_an_event_on_one_line():
    from edgevid.outputs.render import render as describe_message

    start = play(tracker(), ["wave"] * 3)[0]
    line = describe_message(start.model_dump(), now=0)
    assert f"cam event start wave ({start.id}): 1.0 s, best 0.80, score 0.80" in line


def test_without_min_score_a_label_that_is_no_longer_top1_ends():
    ev = play(tracker(min_score=0.0), ["wave"] * 4 + ["walk"] * 5)
    assert [(e.phase, e.label) for e in ev] == [("start", "wave"), ("end", "wave"), ("start", "walk")]
