"""A CI-sized run of the motion gate's daemon benchmark (tools.gate_bench): what it counts, never
how fast this machine is."""

from __future__ import annotations

import json
import os
import sys

import pytest


@pytest.mark.slow
def test_gate_bench_smoke(tmp_path, env):
    from tools.probe import run_group

    out = tmp_path / "gate.json"
    proc = run_group(
        [sys.executable, "-m", "tools.gate_bench", "--smoke", "--out", str(out)],
        timeout=600,
        env={**os.environ, **env},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["command"].startswith("python -m tools.gate_bench --smoke")
    runs = r["cost"]["runs"]
    # The still scene is idle with the gate and named without it; the action clip is never idle.
    assert all(x["predictions"] == x["idle"] > 0 for x in runs["still"])
    assert all(x["idle"] == 0 < x["predictions"] for x in runs["still_gate_off"] + runs["active"])
    assert r["cost"]["still_over_active"] > 0  # measured (the target is judged in the full run)
    soak = r["soak"]
    assert soak["predictions"] >= 4 * 20 and soak["events"] == 0 and soak["not_idle_above_min_score"] == 0
    assert all(s["extracted"] == 0 and s["loop"] >= 1 for s in soak["per_source"].values())
    wake = r["wake"]
    # A clip can lose its few windows to overload on a loaded machine: most must wake, none early.
    assert wake["clips"] == 4 and len(wake["never_woke"]) <= 1 and wake["woke_during_the_still"] == 0
    assert wake["wake_latency_s"]["p50"] is not None and wake["action_windows_gated"] <= wake["action_windows"]
