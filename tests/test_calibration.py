"""Calibrated scores: the temperature fit, its place in the manifest and the runtime head."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import HEAD_DIR, ROOT, jhmdb_clip

pytest.importorskip("scipy", reason="tools dependencies not installed (pip install -e ./tools)")

from edgevid.head import Head, apply_temperature  # noqa: E402
from edgevid.pipeline import ClipClassifier  # noqa: E402
from tools.calibrate import ece, fit_temperature, keep_threshold  # noqa: E402


def overconfident(n: int, classes: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Predictions right 60 % of the time that always claim ~0.97: a head that needs T > 1."""
    y = rng.integers(0, classes, n)
    pred = np.where(rng.random(n) < 0.6, y, (y + 1 + rng.integers(0, classes - 1, n)) % classes)
    logits = rng.normal(0, 0.3, (n, classes))
    logits[np.arange(n), pred] += 6.0
    p = np.exp(logits)
    return p / p.sum(1, keepdims=True), y


def test_temperature_fit_makes_overconfident_scores_honest():
    rng = np.random.default_rng(0)
    probs, y = overconfident(4000, 10, rng)
    t = fit_temperature(probs, y)
    assert t > 1.5
    calibrated = apply_temperature(probs, t)
    assert ece(calibrated, y) < 0.05 < ece(probs, y)
    # the ranking never changes: the same top-1 everywhere
    assert np.array_equal(calibrated.argmax(1), probs.argmax(1))
    assert np.allclose(calibrated.sum(1), 1.0, atol=1e-5)


def test_keep_threshold_keeps_the_asked_fraction():
    scores = np.linspace(0.01, 1.0, 100)
    thr = keep_threshold(scores, 0.95)
    assert (scores >= thr).mean() == pytest.approx(0.95)


def test_runtime_head_applies_the_manifest_temperature(tmp_path, extractor):
    """The bundled head carries a temperature fitted on validation; a copy without one gives the raw
    probabilities, and the calibrated ones are exactly apply_temperature of them."""
    man = json.loads((HEAD_DIR / "manifest.json").read_text())
    assert man["calibration"]["temperature"] > 0 and "validation" in man["calibration"]["fit_on"]
    raw_dir = tmp_path / "raw"
    shutil.copytree(HEAD_DIR, raw_dir)
    del man["calibration"]
    (raw_dir / "manifest.json").write_text(json.dumps(man))
    cal_head, raw_head = Head(HEAD_DIR), Head(raw_dir)
    assert raw_head.temperature is None and cal_head.temperature == pytest.approx(json.loads((HEAD_DIR / "manifest.json").read_text())["calibration"]["temperature"])
    clip = jhmdb_clip("wave")
    cal, _, _ = ClipClassifier(extractor, cal_head).window_probs(clip)
    raw, _, _ = ClipClassifier(extractor, raw_head).window_probs(clip)
    assert np.allclose(cal, apply_temperature(raw, cal_head.temperature), atol=1e-6)
    assert not np.allclose(cal, raw)


def test_committed_calibration_result_matches_the_manifest():
    r = json.loads((ROOT / "experiments" / "jhmdb-split1-calibration.json").read_text())
    man = json.loads((HEAD_DIR / "manifest.json").read_text())
    stale = "experiments/jhmdb-split1-calibration is for another head: rerun python -m tools.calibrate (EXPERIMENTS.md)"
    assert r["head"]["sha256"] == man["head"]["sha256"][:12], stale
    assert r["calibration"]["temperature"] == man["calibration"]["temperature"], stale
    assert r["command"].startswith("python -m tools.calibrate")
