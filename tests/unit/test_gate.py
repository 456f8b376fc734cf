"""The motion gate's rules with explicit times on synthetic grey frames: the background adapts by
seconds, not frames; the threshold, the minimum area and the masks decide what counts; the
hysteresis wakes and holds by the rule."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from edgevid.gate import (
    Background,
    GateFrame,
    GateSpec,
    Hysteresis,
    MotionGate,
    changed_fraction,
    mask_pixels,
    window_gated,
)
from edgevid.motion import small_grey

W, H = 80, 60


def scene(level: float = 100.0) -> np.ndarray:
    """A textured grey picture (a gradient), float so changes are exact."""
    yy, xx = np.mgrid[0:H, 0:W]
    return (level + 0.5 * xx - 0.3 * yy).astype(np.float32)


def with_square(img: np.ndarray, frac: float, delta: float, x0: int = 10, y0: int = 10) -> np.ndarray:
    """``img`` with a square of about ``frac`` of the picture raised by ``delta``."""
    side = int(round(math.sqrt(frac * W * H)))
    out = img.copy()
    out[y0 : y0 + side, x0 : x0 + side] += delta
    return out


def gate(**kw) -> MotionGate:
    return MotionGate(GateSpec(**{"wake_frames": 1, "hold_s": 0.0, **kw}))


ALL = np.ones((H, W), bool)


def test_the_first_frame_is_the_background():
    bg = Background(3.0, ALL)
    assert not bg.update(scene(), 0.0).any()
    diff = bg.update(with_square(scene(), 0.1, 50.0), 0.1)
    assert changed_fraction(diff, 20.0, W * H) == pytest.approx(0.1, abs=0.01)


def test_the_background_adapts_by_seconds_not_frames():
    """A change that stays becomes background after a few time constants, at any frame rate."""
    for fps in (5, 30):
        bg = Background(2.0, ALL, compensate=False)
        bg.update(scene(), 0.0)
        changed = with_square(scene(), 0.1, 60.0)
        n = int(3 * fps)  # 3 s = 1.5 time constants
        for i in range(1, n + 1):
            d = bg.update(changed, i / fps)
        # The square's difference before the last blend: 60 * exp(-(3 s - 1 frame) / 2 s).
        assert float(d.max()) == pytest.approx(60.0 * math.exp(-(3.0 - 1 / fps) / 2.0), rel=1e-3)
        later = [bg.update(changed, 3.0 + k) for k in range(1, 11)][-1]
        assert changed_fraction(later, 1.0, W * H) == 0.0  # after 13 s it is the background


def test_after_a_long_gap_the_new_frame_is_the_background():
    bg = Background(1.0, ALL)
    bg.update(scene(), 0.0)
    bg.update(with_square(scene(), 0.2, 80.0), 60.0)  # a minute later the room looks different
    assert changed_fraction(bg.update(with_square(scene(), 0.2, 80.0), 60.1), 5.0, W * H) == 0.0


def test_time_must_not_go_backwards_and_reset_forgets():
    bg = Background(1.0, ALL)
    bg.update(scene(), 5.0)
    with pytest.raises(ValueError):
        bg.update(scene(), 4.0)
    bg.reset()
    assert not bg.update(with_square(scene(), 0.3, 90.0), 1.0).any()


def test_the_threshold_is_in_grey_levels():
    for delta, moving in ((15.0, False), (25.0, True)):
        g = gate(threshold=20.0, min_area=0.05)
        g.observe(scene(), 0.0)
        assert g.observe(with_square(scene(), 0.2, delta), 0.1).motion is moving


def test_a_global_brightness_change_is_not_motion_when_compensated():
    dim = scene() * 0.7  # 30 % darker at once: a cloud, a dimmer
    for compensate, moving in ((True, False), (False, True)):
        g = gate(compensate=compensate)
        g.observe(scene(), 0.0)
        assert g.observe(dim, 0.1).motion is moving
    # A person entering a dimming room is still motion.
    g = gate()
    g.observe(scene(), 0.0)
    assert g.observe(with_square(scene() * 0.9, 0.1, 60.0), 0.1).motion


def test_the_minimum_area_is_a_fraction_of_the_picture():
    for frac, moving in ((0.005, False), (0.03, True)):
        g = gate(min_area=0.01)
        g.observe(scene(), 0.0)
        f = g.observe(with_square(scene(), frac, 60.0), 0.1)
        assert f.motion is moving
        assert f.changed == pytest.approx(frac, rel=0.3)


def test_masked_pixels_never_count():
    left_half = ((0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0))
    valid = mask_pixels([left_half], W, H)
    assert not valid[:, : W // 2 - 1].any() and valid[:, W // 2 + 1 :].all()
    for x0, moving in ((5, False), (60, True)):  # the same change under the mask, then outside it
        g = gate(masks=(left_half,), min_area=0.01)
        g.observe(scene(), 0.0)
        assert g.observe(with_square(scene(), 0.03, 60.0, x0=x0), 0.1).motion is moving
    with pytest.raises(ValueError):
        mask_pixels([((0.0, 0.0), (1.0, 1.0))], W, H)


def test_wake_frames_ignore_a_single_spike():
    hy = Hysteresis(wake_frames=2, hold_s=1.0)
    assert [hy.step(m, t) for m, t in ((True, 0.0), (False, 0.1), (True, 0.2), (True, 0.3), (False, 0.4))] == [
        False,
        False,
        False,
        True,
        True,
    ]


def test_hold_keeps_a_scene_awake_after_its_last_motion():
    hy = Hysteresis(wake_frames=1, hold_s=1.0)
    assert hy.step(True, 10.0)
    assert hy.step(False, 10.5)
    assert hy.step(False, 11.0)  # exactly the hold: still awake
    assert hy.step(True, 10.95 + 0.1)  # motion again restarts the hold
    assert hy.step(False, 12.0)
    assert not hy.step(False, 12.1)
    assert not hy.step(False, 20.0)
    hy = Hysteresis(wake_frames=1, hold_s=0.0)
    assert hy.step(True, 0.0) and not hy.step(False, 0.1)


def test_a_window_is_gated_only_when_no_frame_is_awake():
    f = [GateFrame(0.1 * i, 0.0, False, False) for i in range(12)]
    assert window_gated(f)
    f[7] = GateFrame(0.7, 0.2, True, True)
    assert not window_gated(f)


def test_the_gate_takes_the_motion_streams_grey_at_any_size():
    """A 160x120 grey (what the bundled head's motion makes) or a BGR frame is area-averaged to the
    working size; the verdicts match feeding the working size directly."""
    rng = np.random.default_rng(0)
    big = (rng.random((120, 160)) * 200).astype(np.uint8)
    moved = big.copy()
    moved[20:70, 30:90] = 255
    direct, resized, colour = gate(), gate(), gate()
    for t, img in ((0.0, big), (0.1, moved)):
        a = direct.observe(small_grey(img, W, H), t)
        b = resized.observe(img, t)
        c = colour.observe(np.repeat(img[..., None], 3, axis=2), t)
    assert a.changed == b.changed == c.changed and a.motion and a.awake


def test_a_still_noisy_scene_stays_gated_and_a_moving_one_wakes_and_holds():
    """The whole gate with its defaults over 10 s at 10 frames/s: noise alone never wakes it; a
    square crossing the picture does after wake_frames frames, and the hold keeps it awake for
    hold_s after it leaves."""
    spec = GateSpec()
    rng = np.random.default_rng(1)
    g = MotionGate(spec)
    frames = [
        g.observe(np.clip(scene() + rng.normal(0, 4, (H, W)), 0, 255).astype(np.uint8), i / 10) for i in range(100)
    ]
    assert not any(f.awake for f in frames)
    g.reset()
    out = []
    for i in range(100):
        t = i / 10
        img = scene()
        if 2.0 <= t < 4.0:
            x = int(5 + (t - 2.0) * 25)
            img = with_square(img, 0.06, 80.0, x0=x, y0=20)
        out.append(g.observe(np.clip(img, 0, 255).astype(np.uint8), t))
    awake = [f.t for f in out if f.awake]
    assert awake[0] == pytest.approx(2.0 + (spec.wake_frames - 1) / 10)  # woken after wake_frames frames in a row
    assert awake[-1] == pytest.approx(4.0 + spec.hold_s, abs=0.11)  # the frame it left + the hold


def test_the_defaults_are_the_measured_choice():
    """GateSpec's defaults are the setting tools/gate_eval.py chose (its newest committed result)."""
    results = sorted((Path(__file__).resolve().parents[2] / "benchmarks").glob("gate-*.json"))
    assert results, "no benchmarks/gate-*.json: run python -m tools.gate_eval"
    result = json.loads(results[-1].read_text())
    spec = GateSpec()
    assert {k: getattr(spec, k) for k in result["grid"]} == {k: result["chosen"][k] for k in result["grid"]}
