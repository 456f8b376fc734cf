"""The daemon's timing rules, driven directly: slots, clocks, windows, overload turns (no video,
no clock of an idle machine)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgevid.sampling import sample_indices
from edgevid.scheduler import Admission
from edgevid.timing import MAX_GAP_FRACTION, Backoff, FileClock, SlotFiller, StreamClock
from edgevid.windows import FrameInfo, Ready, Skipped, WindowAssembler


def feed(times, dt, origin=0.0, interval=None):
    """Push frames at ``times`` through a SlotFiller; returns (fills, kept frame count)."""
    sf = SlotFiller(dt, origin, interval or (times[1] - times[0]))
    fills, kept = [], 0
    for i, t in enumerate(times):
        keep = sf.wants(t)
        kept += keep
        fills += sf.push(t, i if keep else None)
    return fills, kept, sf


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 120), m=st.sampled_from([8, 12, 16, 25]), fps=st.sampled_from([10.0, 25.0, 29.97, 30.0, 60.0]))
def test_a_window_over_a_whole_clip_samples_what_classify_samples(n, m, fps):
    d = 1 / fps
    times = [(i + 0.5) * d for i in range(n)] + [n * d - 1e-6]  # frame centres, then the end of file
    sf = SlotFiller(n * d / m, 0.0, d)
    fills = []
    for i, t in enumerate(times):
        frame = i if i < n and sf.wants(t) else None
        fills += sf.push(t, frame)
    assert [f.frame for f in fills[:m]] == list(sample_indices(n, m))
    # Repeats are normal; a slot further than one interval from any frame (a clip of fewer than M/2
    # frames stretched over M slots) is a gap.
    if 2 * n >= m:
        assert not any(f.gap for f in fills[:m])


def test_only_frames_that_fill_a_slot_are_converted():
    """A 30 fps camera sampled every 0.2 s: about one frame kept per slot, not all 30 a second."""
    times = [i / 30 for i in range(300)]
    fills, kept, _ = feed(times, dt=0.2, origin=-0.1)
    assert len(fills) == 50
    assert kept <= 2 * len(fills)
    assert len({f.frame for f in fills}) == 50 and not any(f.gap for f in fills)


def test_slow_camera_repeats_frames_without_gaps_and_slower_one_has_gaps():
    dt = 1.6 / 25  # the default head's sampling interval
    fills15, _, _ = feed([i / 15 for i in range(60)], dt)
    assert not any(f.gap for f in fills15)  # nearest frame always within half a frame (33 ms < 64 ms)
    assert len({f.frame for f in fills15}) < len(fills15)  # some frames fill two slots
    fills4, _, _ = feed([i / 4 for i in range(16)], dt)
    assert sum(f.gap for f in fills4) / len(fills4) > MAX_GAP_FRACTION  # 4 fps cannot fill a 64 ms grid


def test_a_hiccup_leaves_gap_slots_instead_of_one_frame_stamped_everywhere():
    times = [i / 30 for i in range(60)] + [2.0 + 2.0 + i / 30 for i in range(60)]  # 2 s with no frame
    fills, _, _ = feed(times, dt=0.064)
    gaps = [f.k for f in fills if f.gap]
    assert len(gaps) >= 28  # ~2 s / 64 ms slots, minus one sampling interval at each side
    assert gaps == list(range(gaps[0], gaps[0] + len(gaps)))  # one contiguous hole


def _window_run(fills, m=25, hop=5, lost=()):
    """Run fills through a WindowAssembler, extracting every distinct frame once (except ``lost``)."""
    w = WindowAssembler(m, hop)
    extracted = Counter()
    out = []
    frames = {}
    for f in fills:
        info = None
        if f.frame is not None:
            info = frames.setdefault(f.frame, FrameInfo(f.frame + 1, 0.0, 0.0, 0.0))
        w.add_slot(f.k, info, f.gap)
        if info is not None and info.fid not in w.features and info.fid not in extracted:
            if f.frame in lost:
                w.drop(info.fid)
            else:
                extracted[info.fid] += 1
                w.add_feature(info.fid, np.full(4, info.fid, np.float32), 1.0, 0.0)
        out += w.windows()
    return out, extracted, w


def test_each_distinct_frame_is_extracted_once_and_windows_are_complete():
    fills, _, _ = feed([i / 15 for i in range(150)], 1.6 / 25)  # 10 s of a 15 fps camera
    out, extracted, w = _window_run(fills)
    ready = [r for r in out if isinstance(r, Ready)]
    assert len(ready) == (len(fills) - 25) // 5 + 1 and not w.skipped
    assert set(extracted.values()) == {1}  # no frame extracted twice
    assert all(r.features.shape == (25, 4) for r in ready)
    assert sum(r.new_frames for r in ready) == len(extracted)  # what windows say they cost is what ran
    assert [r.end_k for r in ready] == list(range(24, len(fills), 5))


def test_a_windows_floor_is_the_work_still_pending_when_its_newest_frame_was_captured():
    # A 4-slot window, a prediction every 2 slots; frames captured at mono = fid / 10 s. Each
    # feature costs fid ms and is ready 0.05 s after capture, except frame 3, ready only at 0.45.
    w = WindowAssembler(4, 2)
    out = []
    for k in range(6):
        info = FrameInfo(k + 1, k / 10, (k + 1) / 10, 0.0)
        w.add_slot(k, info, False)
        w.add_feature(info.fid, np.zeros(2, np.float32), float(info.fid), 0.45 if info.fid == 3 else info.mono + 0.05)
        out += w.windows()
    first, second = out
    # Window of frames 1-4, newest captured at 0.4: frames 3 (0.45) and 4 (0.45) were still pending.
    assert [f.fid for f in first.frames] == [1, 2, 3, 4] and first.pending_ms == 3 + 4
    # Frames 3-6, newest at 0.6: only frame 6 (ready 0.65) was pending.
    assert [f.fid for f in second.frames] == [3, 4, 5, 6] and second.pending_ms == 6


def test_gappy_and_broken_windows_are_skipped_with_their_reason():
    times = [i / 30 for i in range(150)] + [7.0 + i / 30 for i in range(150)]
    fills, _, _ = feed(times, dt=0.064)
    out, _, w = _window_run(fills, lost={fills[30].frame})
    skipped = [r for r in out if isinstance(r, Skipped)]
    assert w.skipped["gaps"] > 0 and w.skipped["overload"] > 0
    assert len(skipped) == sum(w.skipped.values())
    # The lost frame breaks only the windows that hold it: at most M / hop of them.
    assert w.skipped["overload"] <= 25 // 5
    assert all(isinstance(r, Ready) or r.reason in ("gaps", "overload") for r in out)


def test_stream_clock_uses_stream_timestamps_while_sane():
    c = StreamClock(max_drift=0.5)
    # Frames captured every 40 ms arrive in bursts of 5.
    times = [c.time(arrival=1.0 + (i // 5) * 0.2, pts_ms=1000 + 40 * i) for i in range(20)]
    assert np.allclose(np.diff(times), 0.04) and c.using_pts
    assert c.time(arrival=2.0, pts_ms=500) >= times[-1]  # pts went backwards: re-anchored, never backwards
    assert c.resyncs == 1
    assert c.time(arrival=2.5, pts_ms=None) == 2.5  # no timestamps: arrival


def test_file_clock_keeps_timestamps_and_survives_garbage():
    fc = FileClock(30.0)
    pts = [0, 33.3, 66.7, 133.3, 166.7, 0.0]  # a held (null) frame at 100 ms, garbage at the end
    pos = [fc.position(p) for p in pts]
    assert np.allclose(pos[:5], [0, 0.0333, 0.0667, 0.1333, 0.1667], atol=1e-3)
    assert pos[5] == pytest.approx(pos[4] + 1 / 30)


def test_backoff_grows_with_jitter_and_resets():
    import random

    b = Backoff(0.5, 4.0, random.Random(1))
    delays = [b.next() for _ in range(6)]
    assert all(0.75 * x <= d <= 1.25 * x for d, x in zip(delays, [0.5, 1, 2, 4, 4, 4], strict=True))
    b.reset()
    assert b.next() <= 0.625


def test_admission_serves_what_fits_in_turns():
    a = Admission(["a", "b", "c", "d"], budget=0.9, lease=10.0, release=0.8)
    demand = dict.fromkeys("abcd", 25.0)
    assert not a.update(0.0, demand, 0.005).overloaded  # 4 x 25 x 5 ms = 0.5 of the worker
    s = a.update(1.0, demand, 0.012)  # 1.2: overloaded
    assert s.overloaded and len(s.admitted) == 3 and "serving 3 of 4" in s.reason
    assert a.update(5.0, demand, 0.012).admitted == s.admitted  # the turn lasts its lease
    turn2 = a.update(11.0, demand, 0.012).admitted
    assert turn2 != s.admitted and (set("abcd") - s.admitted) <= turn2  # who waited goes first
    assert a.update(12.0, demand, 0.0085).overloaded  # 0.85: still above release x budget = 0.72
    assert not a.update(13.0, demand, 0.006).overloaded  # 0.6: over, everyone served
    one = a.update(14.0, {"a": 100.0}, 0.02)
    assert one.overloaded and "a" in one.admitted  # a lone source too big is still served
