"""The daemon's timing rules, driven directly: slots, clocks, windows, overload turns, and the real
FrameSource reading real files into a recording sink (no clock is idle-machine dependent)."""

from __future__ import annotations

import struct
import threading
from collections import Counter

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import DATA, jhmdb_clip
from edgevid.config import SourceConfig, SourceTiming
from edgevid.sampling import sample_indices
from edgevid.scheduler import Admission
from edgevid.sources.source import FrameSource
from edgevid.timing import MAX_GAP_FRACTION, Backoff, FileClock, SlotFiller, StreamClock
from edgevid.windows import FrameInfo, Ready, Skipped, WindowAssembler

UCF = sorted((DATA / "ucf101_sample").rglob("*.avi"))[0]


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


class Recorder:
    """The daemon's side of a FrameSource (the Sink protocol), recording what a real source hands over."""

    def __init__(self, pause=False):
        self.segments, self.got, self._pause = 0, [], pause

    def segment(self, source):
        self.segments += 1
        self.got.append("segment")

    def fills(self, source, fills, new, paused):
        self.got.extend(fills)

    def paused(self, source):
        return self._pause


def run_source(uri, *, window=1.0, m=25, loop=False, seconds=20.0, **extra):
    cfg = SourceConfig(id="t", uri=str(uri), window=window, realtime=False, loop=loop, reconnect_min=0.2, reconnect_max=0.4, **extra)
    sink, stop = Recorder(), threading.Event()
    src = FrameSource(cfg, SourceTiming(window, m, 5, None), sink, stop, lambda f: cv2.resize(f, (8, 8)))
    src.start()
    src.join(seconds)
    stop.set()
    src.join(10)
    return src, sink


def test_file_source_times_frames_by_their_timestamps():
    """JHMDB avis hold null frames (a frame shown twice): the source keeps the file's own times."""
    clip = jhmdb_clip("wave")
    cap = cv2.VideoCapture(str(clip), cv2.CAP_FFMPEG)
    pts = []
    while cap.grab():
        pts.append(cap.get(cv2.CAP_PROP_POS_MSEC) / 1000)
    cap.release()
    assert any(np.diff(pts) > 1.5 / 30)  # the clip really has a held frame
    src, sink = run_source(clip, window=1.0)
    assert src.stats.state == "ended" and src.stats.frames_in == len(pts)
    fills = [f for f in sink.got if f != "segment"]
    duration = pts[-1] - pts[0] + 1 / 30
    inside = sum(1 for k in range(100) if (k + 1) / 25 <= duration + 1e-9)
    assert len(fills) == inside  # every slot whose interval is inside the file, none beyond
    media = {f.frame.fid: f.frame.media for f in fills if f.frame is not None}
    assert set(np.round(list(media.values()), 4)) <= set(np.round(np.array(pts) - pts[0], 4))
    centres = np.array(pts) - pts[0] + 1 / 60
    for f in fills:  # each slot holds the frame nearest its instant, by the file's own times
        instant = (f.k + 0.5) * (1.0 / 25)
        assert abs(f.frame.media + 1 / 60 - instant) <= np.abs(centres - instant).min() + 1e-6


def test_looping_file_starts_a_new_segment_each_pass_with_positions_in_the_file():
    src, sink = run_source(UCF, window=2.0, loop=True, seconds=4.0)
    passes = src.stats.loop
    assert passes >= 1 and sink.segments in (passes + 1, passes + 2)  # one per pass (the last may be cut short)
    by_loop: dict[int, list[float]] = {}
    for f in sink.got:
        if f != "segment" and f.frame is not None:
            by_loop.setdefault(f.frame.loop, []).append(f.frame.media)
    assert len(by_loop) >= 2
    for medias in by_loop.values():
        assert min(medias) < 2.0 / 25 and max(medias) < 6.6  # positions in the 6.56 s file, not counting up


def test_file_with_no_frames_backs_off_and_says_so(tmp_path):
    empty = tmp_path / "no_frames.avi"
    cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"MJPG"), 25, (320, 240)).release()
    src, _ = run_source(empty, seconds=2.0, loop=True)
    assert src.stats.state == "reconnecting" and "no frames" in src.stats.last_error
    assert 2 <= src.stats.reconnects <= 12  # backoff from 0.2 s: a handful of opens, not thousands


def test_absurd_frame_rate_is_refused_with_a_clear_error(tmp_path):
    slow = tmp_path / "slow.avi"
    w = cv2.VideoWriter(str(slow), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    for _ in range(3):
        w.write(np.zeros((48, 64, 3), np.uint8))
    w.release()
    data = bytearray(slow.read_bytes())
    strh = data.find(b"strh")
    struct.pack_into("<II", data, strh + 28, 1000, 1)  # dwScale, dwRate: 0.001 fps
    slow.write_bytes(bytes(data))
    cap = cv2.VideoCapture(str(slow), cv2.CAP_FFMPEG)
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(0.001)
    cap.release()
    src, _ = run_source(slow, seconds=5.0)
    assert src.stats.state == "failed" and "frame rate 0.001 fps" in src.stats.last_error and "slow.avi" in src.stats.last_error


def test_training_and_the_daemon_pick_the_same_frames_of_a_file():
    """`window_indices` on a clip's `frame_times` (what training and classify use) picks, window by
    window, the frames a real file source puts in its slots."""
    from edgevid.capture import frame_times
    from edgevid.sampling import window_indices, window_starts

    for clip in (jhmdb_clip("pour"), jhmdb_clip("run", 3), UCF):
        times = frame_times(clip)
        cap = cv2.VideoCapture(str(clip), cv2.CAP_FFMPEG)
        fps = cap.get(cv2.CAP_PROP_FPS)
        cap.release()
        window, m, hop = 0.8, 8, 2
        src, sink = run_source(clip, window=window, m=m)
        fills = [f for f in sink.got if f != "segment"]
        starts = window_starts(len(times), fps, window, hop * window / m, times)
        assert len(starts) >= 1
        # Exactly the slots whose interval lies inside the file: the windows window_starts counts.
        duration = times[-1] + 1 / fps
        assert len(fills) == sum(1 for k in range(1000) if (k + 1) * window / m <= duration + 1e-9)
        assert (len(fills) - m) // hop + 1 == len(starts)
        for start in starts:
            k0 = round(start / (window / m))
            daemon = [f.frame.media for f in fills[k0 : k0 + m]]
            expected = times[window_indices(len(times), fps, window, m, float(start), times)]
            assert np.allclose(daemon, expected), (clip.name, start)
