"""Calibrated scores: the temperature fit, its place in the manifest and the runtime head."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import HEAD_DIR, ROOT, jhmdb_clip

pytest.importorskip("scipy", reason="tools dependencies not installed (pip install -e ./tools)")

from edgevid.head import Head, apply_temperature  # noqa: E402
from edgevid.manifest import load_manifest  # noqa: E402
from edgevid.pipeline import ClipClassifier  # noqa: E402
from tools.calibrate import (
    CalibrationRefused,
    ece,
    fit_calibration,
    fit_temperature,
    keep_threshold,
    write_manifest_calibration,
)  # noqa: E402


def overconfident(n: int, classes: int, rng, right: float = 0.6, boost: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
    """Predictions right 60 % of the time that always claim ~0.97: a head that needs T > 1."""
    y = rng.integers(0, classes, n)
    pred = np.where(rng.random(n) < right, y, (y + 1 + rng.integers(0, classes - 1, n)) % classes)
    logits = rng.normal(0, 0.3, (n, classes))
    logits[np.arange(n), pred] += boost
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
    assert raw_head.temperature is None and cal_head.temperature == pytest.approx(
        json.loads((HEAD_DIR / "manifest.json").read_text())["calibration"]["temperature"]
    )
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


def test_calibration_is_judged_held_out_and_recommends_a_min_score():
    rng = np.random.default_rng(0)
    probs, y = overconfident(60, 10, rng)  # 20 clips of 3 windows: small, so judged cross-validated
    fit = fit_calibration(probs, y, "val", clips=np.arange(60) // 3)
    assert fit.calibration is not None and fit.refused is None and fit.cross_validated == 5
    assert fit.calibration.temperature == pytest.approx(fit_temperature(probs, y), abs=1e-3)
    assert fit.ece_after < fit.ece_before and fit.calibration.ece_after == pytest.approx(fit.ece_after, abs=1e-4)
    # min_score keeps 95 % of the correct validation predictions at the written temperature
    # (held-out fits differ a little)
    cal = apply_temperature(probs, fit.calibration.temperature)
    correct = cal.argmax(1) == y
    assert 0 < fit.min_score < 1 and (cal.max(1)[correct] >= fit.min_score).mean() >= 0.9


def test_calibration_that_would_lie_is_refused(tmp_path):
    """The issue's cases: an all-correct validation (T on the lower bound: a wrong prediction would
    score 0.996), scores with no information (T on the upper bound: every score ~1/classes, so a
    min_score of 0.46 rejects everything), and a fit that makes held-out ECE worse."""
    rng = np.random.default_rng(0)
    probs, y = overconfident(40, 4, rng, right=1.0, boost=2.0)
    fit = fit_calibration(probs, y, "val")
    assert (
        fit.calibration is None
        and "every validation window is predicted right" in fit.refused
        and fit.temperature < 0.1
    )
    assert fit.min_score is not None and "raw" in fit.min_score_on  # a threshold is still chosen, on raw scores
    fit = fit_calibration(*overconfident(200, 4, rng, right=0.25), "val")  # confident and right by chance only
    assert fit.calibration is None and "search bound" in fit.refused and fit.temperature > 18
    r = np.random.default_rng(3)
    boost = r.uniform(0.5, 4)
    probs, y = overconfident(24, 4, r, right=0.5, boost=boost)
    fit = fit_calibration(probs, y, "val", clips=np.arange(24) // 3)
    assert fit.calibration is None and "held-out ECE worse" in fit.refused and fit.ece_after > fit.ece_before
    # tools.calibrate --write-manifest refuses it: the manifest keeps what it had.
    head = tmp_path / "head"
    shutil.copytree(HEAD_DIR, head)
    before = (head / "manifest.json").read_bytes()
    with pytest.raises(CalibrationRefused, match="manifest.json: calibration not written .*held-out ECE worse"):
        write_manifest_calibration(head, fit.calibration, fit.min_score, fit.refused)
    assert (head / "manifest.json").read_bytes() == before
    good = fit_calibration(*overconfident(600, 10, np.random.default_rng(1)), "val")
    write_manifest_calibration(head, good.calibration, good.min_score)
    manifest, _ = load_manifest(head)
    assert manifest.calibration.temperature == good.calibration.temperature and manifest.min_score == good.min_score
    assert Head(head).temperature == good.calibration.temperature
