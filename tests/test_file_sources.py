"""The real FrameSource reading real files into a recording sink: timestamps, segments, loops,
refusals, and the same frames as training picks (no clock is idle-machine dependent)."""

from __future__ import annotations

import struct
import threading

import cv2
import numpy as np
import pytest

from edgevid.config import SourceConfig, SourceTiming
from edgevid.sources.source import FrameSource

from conftest import DATA, jhmdb_clip

UCF = sorted((DATA / "ucf101_sample").rglob("*.avi"))[0]


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
    cfg = SourceConfig(
        id="t", uri=str(uri), window=window, realtime=False, loop=loop, reconnect_min=0.2, reconnect_max=0.4, **extra
    )
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
    assert (
        src.stats.state == "failed"
        and "frame rate 0.001 fps" in src.stats.last_error
        and "slow.avi" in src.stats.last_error
    )


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
