"""The motion stream: what the descriptor measures, and that training, classify and the daemon's
sources compute the same descriptor for the same frame (bit for bit, on real clips)."""

from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest

from edgevid.capture import read_clip
from edgevid.manifest import Manifest
from edgevid.motion import BINS, CELLS, DIM, MotionEstimator, MotionSpec, parse_spec
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


def test_file_source_pairs_each_sampled_frame_with_its_predecessor(extractor):
    """The daemon's source keeps the previous decoded frame: the pair it hands over gives the same
    descriptor classify computes for that frame."""
    import threading

    from edgevid.config import SourceConfig, source_timing
    from edgevid.sources.source import FrameSource

    clip = jhmdb_clip("jump")
    est = MotionEstimator(SPEC)
    got: list = []

    class Sink:
        def segment(self, source):
            pass

        def fills(self, source, fills, new, paused):
            got.extend(new)

        def paused(self, source):
            return False

    cfg = SourceConfig(id="f", uri=str(clip), kind="file", realtime=False, loop=False)
    src = FrameSource(cfg, source_timing(cfg, 12, 1.2), Sink(), threading.Event(), lambda f: f, motion_grey=est.grey)
    src.run()
    frames = read_clip(clip, None).frames
    assert len(got) >= 5
    for c in got:
        prev, cur = c.motion_pair
        i = next(i for i, f in enumerate(frames) if np.array_equal(f, c.image))
        np.testing.assert_array_equal(est.describe(prev, cur), est(frames[i - 1] if i else None, frames[i]))
