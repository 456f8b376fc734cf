"""The motion stream: what the descriptor measures, and that training, classify and the daemon's
sources compute the same descriptor for the same frame (bit for bit, on real clips)."""

from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest

from edgevid.capture import read_clip
from edgevid.manifest import Manifest
from edgevid.motion import (
    BINS,
    CELLS,
    DIM,
    RICH_DIM,
    MotionEstimator,
    MotionSpec,
    frames_needed,
    parse_spec,
    predecessors,
)
from edgevid.pipeline import clip_features

from conftest import DATA, ROOT, jhmdb_clip

SPEC = MotionSpec(method="dis_ultrafast", width=160, height=120)


def _textured(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.integers(0, 256, (60, 80, 3), np.uint8), (320, 240), interpolation=cv2.INTER_CUBIC)
    return cv2.GaussianBlur(img, (5, 5), 0)


def _hof_whole(desc: np.ndarray) -> np.ndarray:
    """The whole-frame HOF histogram (log1p undone)."""
    return np.expm1(desc[(CELLS - 1) * BINS : CELLS * BINS])


@pytest.mark.parametrize("method", ["dis_ultrafast", "dis_fast", "farneback"])
def test_descriptor_sees_direction_and_stillness(method):
    est = MotionEstimator(MotionSpec(method=method, width=160, height=120))
    frame = _textured()
    still = est(frame, frame)
    assert still.shape == (DIM,) and still.dtype == np.float32
    assert np.abs(still).max() < 0.05  # nothing moves
    right = est(frame, np.roll(frame, 6, axis=1))  # content moves 6 px right (3 px at 160 wide)
    left = est(frame, np.roll(frame, -6, axis=1))
    # Orientation bin 0 is [0, 45) degrees (rightwards); bin 4 is leftwards.
    assert _hof_whole(right).argmax() in (0, BINS - 1) and _hof_whole(left).argmax() in (3, 4)
    assert np.expm1(right[-2]) == pytest.approx(3.0, abs=0.6)  # mean magnitude, pixels of the 160x120 image
    # A uniform pan has (almost) no motion boundaries: MBH stays small next to HOF.
    mbh = np.expm1(right[CELLS * BINS : 3 * CELLS * BINS]).sum()
    assert mbh < 0.2 * _hof_whole(right).sum()
    assert not est.describe(None, est.grey(frame)).any()  # no previous frame: zero motion


def test_spec_parsing_and_manifest_streams():
    assert parse_spec("farneback-80x60") == MotionSpec(method="farneback", width=80, height=60)
    with pytest.raises(ValueError, match="METHOD-WxH"):
        parse_spec("lucas-kanade")
    base = {
        "name": "h",
        "head": {"file": "h", "sha256": "0" * 64},
        "labels": {"file": "l", "sha256": "0" * 64},
        "frames": 12,
        "feature_dim": 1280,
        "extractor": {"name": "x", "sha256": ["0" * 64], "feature_tensor": "t", "feature_dim": 1280},
        "runtimes": ["ai-edge-litert 2.3.0"],
    }
    assert Manifest(**base).input_dim == 1280  # a head without motion works as before
    m = Manifest(**base, streams=["appearance", "motion"], motion=SPEC.model_dump())
    assert m.input_dim == 1280 + DIM
    with pytest.raises(ValueError, match="motion"):
        Manifest(**base, streams=["appearance", "motion"])


def test_motion_cache_equals_served_motion_bit_for_bit(tmp_path, extractor):
    """What training reads from the cache is what classify computes (deploy sample and windows)."""
    sys.path.insert(0, str(ROOT))
    from tools.features import cache_indices, cache_path, extract_motion, load_motion, motion_cache_dir

    root = DATA / "jhmdb"
    clips = [jhmdb_clip("run"), jhmdb_clip("sit", 1)]
    cache = motion_cache_dir(tmp_path, SPEC)
    assert extract_motion(clips, root, cache, SPEC, workers=1, progress=False) == {}
    est = MotionEstimator(SPEC)
    for clip in clips:
        cached = load_motion(cache_path(cache, root, clip), clip)
        assert cached is not None
        served = clip_features(extractor, clip, 12, motion=est)
        pos = np.searchsorted(cached.indices, served.indices)
        np.testing.assert_array_equal(cached.motion[pos], served.motion)
        # Every cached frame (the whole clip here), against the descriptor of the decoded pair.
        frames = read_clip(clip, None).frames
        n = len(frames)
        assert np.array_equal(cached.indices, cache_indices(n, 25, 64))
        for i in (0, 1, n // 2, n - 1):
            np.testing.assert_array_equal(cached.motion[i], est(frames[i - 1] if i else None, frames[i]))
        # The mirrored view is the motion of the mirrored frames.
        np.testing.assert_array_equal(cached.views[0][n - 1], est(frames[n - 2][:, ::-1], frames[n - 1][:, ::-1]))
    assert not list(cache.rglob("*.tmp"))


def _file_source_frames(clip, est: MotionEstimator, spec=None) -> list:
    """What the daemon's file source hands over for ``clip``: its sampled frames, read to the end."""
    import threading

    from edgevid.config import SourceConfig, source_timing
    from edgevid.sources.source import FrameSource

    got: list = []

    class Sink:
        def segment(self, source):
            pass

        def fills(self, source, fills, new, paused):
            got.extend(new)

        def paused(self, source):
            return False

    cfg = SourceConfig(id="f", uri=str(clip), kind="file", realtime=False, loop=False)
    timing = source_timing(cfg, 12, 1.2)
    FrameSource(cfg, timing, Sink(), threading.Event(), lambda f: f, motion_grey=est.grey, motion_spec=spec).run()
    return got


def test_file_source_pairs_each_sampled_frame_with_its_predecessor(extractor):
    """The daemon's source keeps the previous decoded frame: the pair it hands over gives the same
    descriptor classify computes for that frame."""
    clip = jhmdb_clip("jump")
    est = MotionEstimator(SPEC)
    got = _file_source_frames(clip, est)
    frames = read_clip(clip, None).frames
    assert len(got) >= 5
    for c in got:
        prev, cur = c.motion_pair
        i = next(i for i, f in enumerate(frames) if np.array_equal(f, c.image))
        np.testing.assert_array_equal(est.describe(prev, cur), est(frames[i - 1] if i else None, frames[i]))


# The rich descriptor (issue 21): 3x3 grid, the moving box, the predecessor one sampled slot back.
RICH = parse_spec("dis_ultrafast-160x120-rich")


def _rich_expected(est: MotionEstimator, frames: list, i: int, step: int) -> np.ndarray:
    """The rich descriptor of decoded frame ``i`` from whole decoded frames, by the spec's rule."""
    p, p2 = predecessors(i, step)
    return est.describe(
        est.grey(frames[p]) if p is not None else None,
        est.grey(frames[i]),
        est.grey(frames[p2]) if p2 is not None else None,
    )


def test_rich_spec_predecessor_rule_and_box():
    assert RICH.descriptor == "rich" and RICH.gap_s == pytest.approx(0.1) and RICH.dim == RICH_DIM
    assert RICH.id == "dis_ultrafast-160x120-rich100ms" and parse_spec(RICH.id) == RICH
    assert parse_spec("dis_ultrafast-160x120") == SPEC and SPEC.dim == DIM  # today's descriptor unchanged
    with pytest.raises(ValueError, match="values"):
        MotionSpec(method="dis_ultrafast", width=160, height=120, descriptor="rich", dim=DIM)
    # The predecessor is one 0.1 s slot back at the nominal rate: the previous sampled frame at 30 fps.
    assert [RICH.step(f) for f in (30.0, 25.0, 15.0, 10.0, 0.0)] == [3, 3, 2, 1, 1]
    assert SPEC.step(30.0) == 1
    assert predecessors(0, 3) == (None, None) and predecessors(2, 3) == (0, None)
    assert predecessors(4, 3) == (1, 0) and predecessors(9, 3) == (6, 3)
    assert list(frames_needed(np.array([0, 9]), 3, True)) == [0, 3, 6, 9]
    est = MotionEstimator(RICH)
    frame = _textured(1)
    g = est.grey(frame)
    still = est.describe(g, g, g)
    assert still.shape == (RICH_DIM,) and still.dtype == np.float32 and np.abs(still[:-4]).max() < 0.05
    assert not est.describe(None, g).any()
    # Only a patch in the lower right moves (the rest still): the box sits on it.
    moved = frame.copy()
    moved[150:230, 220:310] = np.roll(frame[150:230, 220:310], 6, axis=1)
    d = est.describe(g, est.grey(moved), g)
    cx, cy, w, h = d[-4:]
    assert 0.6 < cx < 1.0 and 0.55 < cy < 1.0 and w < 0.6 and h < 0.6
    # A uniform pan (median flow) moves nothing relative to the scene: the residual stays small.
    pan = est.describe(g, est.grey(np.roll(frame, 6, axis=1)), g)
    assert np.expm1(pan[-6]) < 0.2 * np.expm1(pan[-8])  # residual mean in the box vs flow mean


def test_rich_motion_cache_classify_and_daemon_agree_bit_for_bit(tmp_path, extractor):
    """The rich descriptor of a frame is the same in the training cache, in classify's sample and in
    the daemon's file source (its kept greys name the same predecessors), for real clips."""

    sys.path.insert(0, str(ROOT))
    from edgevid.capture import header_fps
    from tools.features import cache_path, extract_motion, load_motion, motion_cache_dir

    root = DATA / "jhmdb"
    clips = [jhmdb_clip("run"), jhmdb_clip("wave", 2)]
    cache = motion_cache_dir(tmp_path, RICH)
    assert cache.name == RICH.id
    assert extract_motion(clips, root, cache, RICH, workers=1, progress=False) == {}
    est = MotionEstimator(RICH)
    for clip in clips:
        frames = read_clip(clip, None).frames
        step = RICH.step(header_fps(clip))
        assert step == 3  # JHMDB is 30 fps: the predecessor is the frame 0.1 s back
        cached = load_motion(cache_path(cache, root, clip), clip)
        assert cached is not None and cached.motion.shape[1] == RICH_DIM
        served = clip_features(extractor, clip, 12, motion=est)  # classify's path (reduced frames)
        np.testing.assert_array_equal(cached.motion[np.searchsorted(cached.indices, served.indices)], served.motion)
        for k in (0, 2, 4, len(cached.indices) - 1):
            i = int(cached.indices[k])
            np.testing.assert_array_equal(cached.motion[k], _rich_expected(est, frames, i, step))
        mirrored = [f[:, ::-1] for f in frames]
        n = len(frames)
        np.testing.assert_array_equal(cached.views[0][-1], _rich_expected(est, mirrored, n - 1, step))
        # The daemon's file source: each sampled frame's kept greys give the cached descriptor.
        got = _file_source_frames(clip, est, RICH)
        assert len(got) >= 5
        sampled = []
        for c in got:
            i = next(i for i, f in enumerate(frames) if np.array_equal(f, c.image))
            sampled.append(i)
            assert len(c.motion_pair) == 3
            np.testing.assert_array_equal(est.describe(*c.motion_pair), cached.motion[list(cached.indices).index(i)])
        # At the daemon's 10 slots per second of a 30 fps file the predecessor (3 decoded frames back) is
        # the previous sampled frame, except where the file's own timestamps skip a frame (JHMDB's do).
        assert set(np.diff(sampled)) <= {step - 1, step, step + 1}, sampled
