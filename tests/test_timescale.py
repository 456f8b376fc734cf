"""The head's time scale: windows sampled from the feature cache are the daemon's windows of the
decoded clip, training windows follow the same rule, and `classify` sees a clip at the head's scale."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import DATA, HEAD_DIR, MNV2, ROOT, jhmdb_clip, jhmdb_subset

pytest.importorskip("sklearn", reason="tools dependencies not installed (pip install -e ./tools)")

from edgevid.capture import frame_times, read_clip  # noqa: E402
from edgevid.extractor import Extractor  # noqa: E402
from edgevid.head import Head  # noqa: E402
from edgevid.manifest import load_manifest  # noqa: E402
from edgevid.motion import MotionEstimator  # noqa: E402
from edgevid.pipeline import ClipClassifier, clip_features  # noqa: E402
from edgevid.sampling import clip_windows, grid_hop, sample_indices, window_indices, window_starts  # noqa: E402
from tools.features import cache_path, extract_dataset, load_cached  # noqa: E402
from tools.timescale import cost_per_s, scores, seconds, window_set  # noqa: E402
from tools.train import window_sampler  # noqa: E402

JHMDB = DATA / "jhmdb"


def test_clip_windows_cover_the_clip_on_the_slot_grid():
    for window_s, m in ((1.0, 12), (4 / 3, 25), (0.5, 8), (0.8, 16)):
        hop = grid_hop(window_s, m)
        k = hop / (window_s / m)
        assert abs(k - round(k)) < 1e-9 and round(k) >= 1 and abs(hop - 0.2) <= window_s / m / 2 + 1e-9
    # A 40-frame clip (4/3 s at 30 fps) in 1 s windows: each window is window_indices at its start.
    idx, real = clip_windows(40, 30.0, 1.0, 12)
    starts = window_starts(40, 30.0, 1.0, grid_hop(1.0, 12))
    assert real and len(idx) == len(starts) == 3  # starts 0, 1/6, 1/3 s
    for row, s in zip(idx, starts):
        np.testing.assert_array_equal(row, window_indices(40, 30.0, 1.0, 12, float(s)))
    assert idx.max() < 40 and (np.diff(idx, axis=1) > 0).all()
    # A window spanning exactly the clip is the whole-clip sample; a shorter clip is taken whole.
    np.testing.assert_array_equal(clip_windows(40, 30.0, 40 / 30, 25)[0], sample_indices(40, 25)[None])
    short, real = clip_windows(20, 30.0, 1.0, 12)
    assert not real
    np.testing.assert_array_equal(short, sample_indices(20, 12)[None])
    assert cost_per_s(12, 1.0, 30.0) == 12 and cost_per_s(25, 0.5, 30.0) == 30 and seconds("4/3") == 4 / 3


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    """Two real JHMDB clips (40 and 23 frames) through the real feature cache."""
    cache = tmp_path_factory.mktemp("cache")
    clips = [jhmdb_clip("golf", 0), jhmdb_clip("wave", 1)]
    assert extract_dataset(clips, JHMDB, cache, MNV2, workers=1, progress=False) == {}
    return {c: load_cached(cache_path(cache, JHMDB, c), c) for c in clips}, cache


def test_cache_windows_are_the_daemon_windows_of_the_decoded_clip(cached):
    entries, _ = cached
    extractor = Extractor(MNV2, num_threads=1)
    for clip, entry in entries.items():
        decoded = read_clip(clip, 25)
        assert entry.fps == decoded.fps == 30.0 and entry.n_frames == decoded.n_frames and entry.complete
        for window_s, m in ((0.5, 8), (1.0, 12)):
            for start in window_starts(entry.n_frames, entry.fps, window_s, 0.1):
                idx = window_indices(entry.n_frames, entry.fps, window_s, m, float(start))
                served = clip_features(extractor, clip, None, indices_for=lambda n, idx=idx: idx)
                np.testing.assert_array_equal(served.indices, idx)
                np.testing.assert_array_equal(
                    entry.take(idx), served.feats
                )  # training windows == served windows, bit for bit


def test_cache_entry_without_fps_reads_it_from_the_clip(cached, tmp_path):
    entries, cache = cached
    clip = next(iter(entries))
    with np.load(cache_path(cache, JHMDB, clip)) as z:
        old = {k: z[k] for k in z.files if k != "fps"}
    path = tmp_path / "old.npz"
    buf = io.BytesIO()
    np.savez(buf, **old)
    path.write_bytes(buf.getvalue())
    entry = load_cached(path, clip)
    assert entry is not None and entry.fps == 30.0
    np.testing.assert_array_equal(entry.feats, entries[clip].feats)


def test_training_windows_follow_the_slot_rule(cached):
    entries, _ = cached
    long_clip, short_clip = (e for e in entries.values())
    assert long_clip.n_frames == 40 and short_clip.n_frames < 30
    rng = np.random.default_rng(0)
    sample = window_sampler(12, 1.0)
    # Features of distinct frames differ, so each sampled row names its frame.
    frame_of = {long_clip.feats[i].tobytes(): int(long_clip.indices[i]) for i in range(len(long_clip.indices))}
    assert len(frame_of) == long_clip.n_frames
    assert long_clip.times is not None  # the clip's own frame times (JHMDB: 40 frames last 1.6 s)
    grid = [
        window_indices(long_clip.n_frames, 30.0, 1.0, 12, s, long_clip.times)
        for s in np.linspace(0, long_clip.duration - 1.0, 400)
    ]
    grid = {tuple(g) for g in grid}
    for _ in range(20):
        got = tuple(frame_of[r.tobytes()] for r in sample(long_clip, rng, None))
        assert got in grid  # a window of 1 s at some position inside the clip
    # A clip shorter than the window is sampled whole (one frame per segment of the clip).
    short = sample(short_clip, rng, 0)
    assert short.shape == (12, long_clip.feats.shape[1])


def test_window_scores_count_clips_without_a_window(cached):
    entries, _ = cached
    clips = list(entries.values())  # 40 frames and 23 frames
    ws = window_set(clips, np.array([0, 1]), 12, 1.0)
    assert ws.real.tolist().count(False) == 1 and ws.clip[~ws.real].tolist() == [1]
    probs = np.zeros((len(ws.x), 2), np.float32)
    probs[np.arange(len(ws.x)), ws.clip] = 1.0  # every window right
    s = scores(probs, ws)
    assert s["window_top1"] == 1.0 and s["clips_without_window"] == 1 and s["clip_top1"] == 1.0
    long_clip = clips[0]  # on its own timestamps: 40 frames over 1.6 s
    assert s["windows"] == int(ws.real.sum()) == len(window_starts(40, 30.0, 1.0, grid_hop(1.0, 12), long_clip.times))


def test_bundled_head_has_a_timescale_and_classify_sees_clips_at_it():
    manifest, _ = load_manifest(HEAD_DIR)
    ts = manifest.timescale
    assert ts is not None and ts.window_s > 0 and {"p10", "p50", "p90"} <= set(ts.clip_duration_s)
    if ts.fit == "clips":
        assert abs(ts.window_s - ts.clip_duration_s["p50"]) < 1e-3
    extractor = Extractor(MNV2, num_threads=2)
    head = Head(HEAD_DIR)
    clf = ClipClassifier(extractor, head)
    clip = jhmdb_clip("pour", 0)
    got = clf.classify(clip, 3)
    m = manifest.frames
    # The same answer by hand: the windows the rule names, each through the head, probabilities averaged.
    if ts.fit == "windows":
        n = read_clip(clip, 1).n_frames
        windows, _ = clip_windows(n, 30.0, ts.window_s, m, times=frame_times(clip))  # the clip's own frame times
    else:
        windows = sample_indices(read_clip(clip, 1).n_frames, m)[None]
    motion = MotionEstimator(head.motion) if head.motion is not None else None  # a head that reads the motion stream

    def inputs(w):
        cf = clip_features(extractor, clip, None, indices_for=lambda n: w, motion=motion)
        return head.inputs(extractor.dequantize(cf.feats), cf.motion)

    probs = np.mean([head.predict(inputs(w)) for w in windows], axis=0)
    order = np.argsort(-probs, kind="stable")[:3]
    assert [s.label for s in got.top] == [head.labels[i] for i in order]
    np.testing.assert_allclose([s.score for s in got.top], probs[order], atol=1e-6)


@pytest.mark.slow
def test_window_fitted_head_exports_its_timescale_and_classify_uses_it(tmp_path):
    """tools.experiment --fit windows on 3 real JHMDB classes -> manifest timescale -> classify over windows."""
    root = jhmdb_subset(tmp_path / "data", per_class=10)
    out, head_dir = tmp_path / "run", tmp_path / "head"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.experiment",
            "--dataset",
            "folders",
            "--data",
            str(root),
            "--extractor",
            str(MNV2),
            "--heads",
            "gru128n",
            "--frames",
            "8",
            "--fit",
            "windows",
            "--window",
            "0.8",
            "--max-epochs",
            "3",
            "--out",
            str(out),
            "--cache",
            str(tmp_path / "cache"),
            "--export",
            str(head_dir),
            "--workers",
            "1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((head_dir / "manifest.json").read_text())
    assert manifest["frames"] == 8
    ts = manifest["timescale"]
    assert (
        ts["fit"] == "windows"
        and ts["window_s"] == 0.8
        and ts["clip_duration_s"]["p10"] <= ts["clip_duration_s"]["p90"]
    )
    assert "window_top1" in manifest["metrics"]
    report = json.loads((out / "report.json").read_text())
    assert (
        report["timescale"]["fit"] == "windows"
        and report["heads"]["gru128n"]["variants"]["dynamic_int8"]["daemon_test"]["windows"] > 0
    )
    assert "installed head: top-1" in proc.stdout  # the export check (classify == report) passed
    clf = ClipClassifier(Extractor(MNV2, num_threads=2), Head(head_dir))
    assert clf.window_s == 0.8 and clf.classify(jhmdb_clip("golf", 0), 2).ok
