"""The sampler returns exactly M valid frames uniformly over what really decodes, on real files."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgevid.capture import count_frames, read_clip
from edgevid.sampling import sample_indices

from conftest import DATA, jhmdb_clip


def _decoded_count(path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.grab():
        n += 1
    return n


def test_jhmdb_header_overstates_but_sampler_uses_real_frames():
    clip = jhmdb_clip("wave")
    cap = cv2.VideoCapture(str(clip))
    header = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    real = _decoded_count(clip)
    assert header > real  # the trap
    c = read_clip(clip, 25)
    assert c.n_frames == real and count_frames(clip) == real
    np.testing.assert_array_equal(c.indices, sample_indices(real, 25))


def test_short_jhmdb_clip_repeats_frames():
    short = next(p for p in sorted((DATA / "jhmdb").rglob("*.avi")) if _decoded_count(p) < 25)
    c = read_clip(short, 25)
    assert len(c.frames) == 25 and c.n_frames < 25
    assert len(set(c.indices.tolist())) == c.n_frames


def test_sampled_frames_are_the_frames_at_those_indices():
    """Retrieve-only-selected decoding returns the same pixels as decoding everything."""
    clip = sorted((DATA / "ucf101_sample").rglob("*.avi"))[0]
    cap = cv2.VideoCapture(str(clip))
    every = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        every.append(f)
    c = read_clip(clip, 25)
    for i, frame in zip(c.indices, c.frames):
        np.testing.assert_array_equal(frame, every[i])


def test_ucf101_fps_mix_and_kinetics_h264():
    fps = {round(read_clip(p, 25).fps, 2) for p in sorted((DATA / "ucf101_sample").rglob("*.avi"))}
    assert {25.0, 29.97} <= fps
    for p in sorted((DATA / "kinetics_sample").glob("*.mp4")):
        c = read_clip(p, 25)
        assert len(c.frames) == 25 and c.n_frames >= 250 and c.width <= 640


@pytest.mark.slow
def test_every_shared_clip_yields_exactly_25_valid_frames():
    clips = sorted((DATA).rglob("*.avi")) + sorted(DATA.rglob("*.mp4"))
    assert len(clips) >= 960
    short = 0
    for p in clips:
        c = read_clip(p, 25)
        assert len(c.frames) == 25, p
        assert all(f.ndim == 3 and f.shape[2] == 3 and f.dtype == np.uint8 for f in c.frames), p
        assert c.indices.max() < c.n_frames, p
        short += c.n_frames < 25
    assert short == 124  # JHMDB clips shorter than M, as measured in shared/README.md
