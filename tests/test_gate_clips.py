"""The motion gate with its defaults on real video: a real action clip is not gated, a still
scene made from one of its frames (noise, H.264, light changes, a swaying region) is."""

from __future__ import annotations

import pytest

from edgevid.capture import read_clip
from edgevid.gate import GateSpec
from tools.gate_eval import KINDS, gate_trace, load_trace, still_scene

from conftest import jhmdb_clip


@pytest.mark.parametrize("cls", ["clap", "wave"])
def test_a_real_action_clip_is_not_gated_and_its_still_scene_is(cls, tmp_path):
    clip = jhmdb_clip(cls)
    action = load_trace(clip, clip.name, "test")
    assert gate_trace(action, GateSpec()) == 0, "an action window was gated"
    frame = read_clip(clip, 1).frames[0]
    gated = windows = 0
    for seed, kind in enumerate(KINDS):
        still = load_trace(still_scene(frame, kind, seed, tmp_path / f"{kind}.mp4"), kind, "test", still=kind)
        gated += gate_trace(still, GateSpec())
        windows += len(still.windows)
    assert windows >= 4 * 40 and gated / windows >= 0.99, f"{gated}/{windows} still-scene windows gated"
