"""Source kinds and the file slot hold: pure rules, no video."""

from __future__ import annotations

import pytest

from edgevid.config import SourceConfig
from edgevid.sources.kinds import KINDS, NAMES, detect
from edgevid.timing import TIME_EPS, Fill, SlotHold


@pytest.mark.parametrize(
    "uri,kind",
    [
        ("0", "camera"),
        ("/dev/video2", "camera"),
        ("rtsp://cam/1", "stream"),
        ("http://x/y.mjpg", "stream"),
        ("clips/a.mp4", "file"),
        ("/dev/videos.mp4", "camera"),
    ],
)
def test_auto_kind_is_the_first_registered_kind_that_knows_the_uri(uri, kind):
    assert detect(uri).name == kind == SourceConfig(id="a", uri=uri).resolved_kind()


def test_every_kind_is_in_the_registry_once_and_config_accepts_exactly_those():
    assert len(set(NAMES)) == len(KINDS) and NAMES[-1] == "file"  # the fallback is last
    assert [k.name for k in KINDS if k.file] == ["file"] and next(k for k in KINDS if k.name == "pipe").detect is None
    with pytest.raises(Exception, match="must be auto or one of camera, stream, pipe, file"):
        SourceConfig(id="a", uri="x", kind="bogus")


def test_a_file_slot_is_handed_over_only_once_the_file_reaches_its_end_in_runs_of_one_pause_state():
    dt = 0.1
    hold: SlotHold[str] = SlotHold(dt)
    hold.add([Fill(0, "f0", False), Fill(1, "f1", False)], paused=False)
    hold.add([Fill(2, "f2", False)], paused=True)
    hold.add([Fill(3, "f3", False)], paused=False)
    assert hold.release(0.15) == [([Fill(0, "f0", False)], False)]  # slot 1 ends at 0.2: not yet
    # 0.2 within float rounding of slot 1's end: released; then slot 2 (paused) and 3 in their own runs
    assert hold.release(0.2 - TIME_EPS / 2) == [([Fill(1, "f1", False)], False)]
    assert hold.release(0.4) == [([Fill(2, "f2", False)], True), ([Fill(3, "f3", False)], False)]
    assert hold.release(10.0) == []


def test_a_source_without_min_score_takes_the_heads_recommendation_and_a_number_wins():
    unset = SourceConfig(id="a", uri="x.mp4")
    assert unset.min_score is None
    assert unset.for_head(0.44).min_score == 0.44 and unset.for_head(None).min_score == 0.0
    assert SourceConfig(id="a", uri="x.mp4", min_score=0.2).for_head(0.44).min_score == 0.2
    assert SourceConfig(id="a", uri="x.mp4", min_score=0.0).for_head(0.44).min_score == 0.0  # 0 set is a choice


def test_a_realtime_file_waits_for_each_frame_and_a_late_reader_catches_up_without_waiting():
    from edgevid.timing import Pacer

    p = Pacer(start=100.0)
    assert p.wait(position=0.0, now=100.0) == 0.0
    assert abs(p.wait(position=0.5, now=100.1) - 0.4) < 1e-12  # due at 100.5
    assert p.wait(position=0.5, now=101.0) == 0.0  # late: read at once
    assert p.wait(position=0.9, now=101.0) == 0.0  # still behind: no wait until caught up
    assert abs(p.wait(position=1.5, now=101.0) - 0.5) < 1e-12
