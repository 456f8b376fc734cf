"""The motion gate inside the daemon's rules, driven in-process: which frames the extractor sees
(held frames pass on when the scene wakes, late ones after it), that waking frames are not cut for
lag, that still windows are published as ``idle`` and end events, and what config, MQTT and the
status say of it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from pydantic import ValidationError

from edgevid.config import DaemonConfig, SourceConfig, describe
from edgevid.daemon.feed import FeedQueue
from edgevid.daemon.predict import prediction
from edgevid.events import EventTracker, Window
from edgevid.gate import GatedFrames, GateSpec
from edgevid.messages import IDLE, ModelIds
from edgevid.outputs.mqtt import translate
from edgevid.timing import Fill
from edgevid.windows import FrameInfo, Ready, Skipped, WindowAssembler


@dataclass
class Frame:
    fid: int
    mono: float
    awake: bool


def test_held_frames_pass_on_before_the_frame_that_wakes_and_later_ones_pass_at_once():
    g: GatedFrames[str] = GatedFrames(m=4)
    assert [g.offer(k, f"f{k}", False) for k in range(6)] == [[]] * 6
    assert g.gated == 2  # f0, f1 can no longer share a 4-slot window with a frame at slot >= 5
    assert g.offer(6, "f6", True) == ["f3", "f4", "f5", "f6"]  # the window ending at 6 needs 3..6
    assert g.gated == 3  # f2 too
    # After an awake frame, the next m - 1 slots share a window with it: extracted at once.
    assert [g.offer(k, f"f{k}", False) for k in (7, 8, 9)] == [["f7"], ["f8"], ["f9"]]
    assert g.offer(10, "f10", False) == [] and g.gated == 3  # held again
    g.reset()
    assert g.gated == 4 and g.offer(11, "f11", True) == ["f11"]  # a new segment: nothing held spans it


def test_a_gated_source_queues_nothing_while_still_and_its_waking_frames_are_not_cut_for_lag():
    q: FeedQueue[Frame] = FeedQueue({"cam": True}, max_lag=1.0, gated={"cam": 12})
    still = [Frame(k + 1, 0.1 * k, False) for k in range(11)]
    for k, f in enumerate(still):
        q.fills("cam", [Fill(k, f, False)], [f], False)
    taken = q.take(now=1.05)
    assert taken.batch == [] and taken.cut == {} and taken.gated == {"cam": 0}
    wake = Frame(12, 1.1, True)
    q.fills("cam", [Fill(11, wake, False)], [wake], False)
    # The held frames were captured up to 1.1 s ago, but they became due with the waking frame.
    taken = q.take(now=1.15)
    assert taken.cut == {} and [f.fid for _, f in taken.batch] == list(range(1, 9))  # a batch of 8
    assert [f.fid for _, f in q.take(now=1.2).batch] == [9, 10, 11, 12]


def _info(fid: int, awake: bool) -> FrameInfo:
    return FrameInfo(fid, 0.1 * fid, 100 + 0.1 * fid, 1e9 + 0.1 * fid, awake=awake)


def test_a_window_with_no_awake_frame_is_idle_one_with_any_needs_every_feature():
    w = WindowAssembler(m=4, hop=2)
    frames = [_info(i, awake=i >= 5) for i in range(8)]
    for k, f in enumerate(frames):
        w.add_slot(k, f, False)
    out = w.windows()
    assert [type(r) for r in out] == [Skipped]  # window 0..3 idle; 2..5 waits for features
    assert out[0].reason == "idle" and [f.fid for f in out[0].frames] == [0, 1, 2, 3]
    for f in frames[2:]:
        w.add_feature(f.fid, np.full(3, f.fid, np.float32), 1.0, 0.0)
    ready = w.windows()
    assert [r.end_k for r in ready] == [5, 7] and all(isinstance(r, Ready) for r in ready)
    assert dict(w.skipped) == {"idle": 1}


def test_an_idle_window_is_published_as_idle_at_the_hops_rate_with_no_scores():
    skipped = Skipped(3, "idle", [_info(i, False) for i in range(4)], gaps=0)
    src = SourceConfig(id="cam", uri="0", min_score=0.5)
    msg = prediction("cam", 7, skipped, None, ["wave", "walk"], src, ModelIds(extractor="e", head="h"), 0.0)
    assert msg.label == IDLE and msg.score == 0.0 and msg.top == [] and msg.new_frames == 0 and msg.frames == 4
    assert msg.window_start < msg.window_end


def test_idle_windows_end_an_open_event_after_end_after_and_start_none():
    t = EventTracker("cam", ["wave", "walk"], min_score=0.5, min_duration=0.0, end_after=1.0, update_interval=9.0)
    wave = np.array([0.9, 0.1], np.float32)
    started = t.step(wave, Window(0.0, 1.0, 1.0, 1))
    assert [e.phase for e in started] == ["start"]
    phases = [[e.phase for e in t.step(None, Window(0.0, c, c, i))] for i, c in enumerate((1.5, 2.0, 2.5), 2)]
    assert phases == [[], ["end"], []]
    assert all(t.step(None, Window(0.0, c, c, 9)) == [] for c in (3.0, 3.5))


def test_the_gate_is_on_by_default_and_its_masks_are_checked_with_the_key_named():
    assert SourceConfig(id="cam", uri="0").gate.enabled
    off = SourceConfig(id="cam", uri="0", gate={"enabled": False})
    assert not off.gate.enabled and off.gate.spec == GateSpec()
    for masks, said in (([[[0, 0], [1, 0]]], "at least 3"), ([[[0, 0], [1.5, 0], [0, 1]]], "0..1")):
        with pytest.raises(ValidationError) as exc:
            DaemonConfig(sources=[{"id": "cam", "uri": "0", "gate": {"masks": masks}}])
        text = describe(exc.value)
        assert "sources.0.gate.masks" in text and said in text, text


def test_mqtt_publishes_a_gated_sources_motion_retained_on_each_change_only():
    src = SourceConfig(id="cam", uri="0", min_score=0.0)
    ids = ModelIds(extractor="e", head="h")
    idle = prediction("cam", 1, Skipped(3, "idle", [_info(i, False) for i in range(4)]), None, ["a"], src, ids, 0.0)
    ready = Ready(3, np.zeros((4, 2)), [_info(i, True) for i in range(4)], 0, 4, 1.0)
    active = prediction("cam", 2, ready, np.array([1.0], np.float32), ["a"], src, ids, 0.1)
    motion = {"cam": ""}
    topics = [
        [(t, p, q, r) for t, p, q, r in translate("ev", "pred/cam", m, {}, motion) if t.endswith("/motion")]
        for m in (idle, idle, active, active, idle)
    ]
    assert topics == [
        [("ev/cam/motion", "OFF", 1, True)],
        [],
        [("ev/cam/motion", "ON", 1, True)],
        [],
        [("ev/cam/motion", "OFF", 1, True)],
    ]
    assert all(not t.endswith("/motion") for t, *_ in translate("ev", "pred/cam", idle, {}, {}))  # no gate: never
