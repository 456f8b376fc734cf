"""A CI-sized run of the streaming benchmark on the real daemon (contents only, never speed)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from conftest import ROOT


@pytest.mark.slow
def test_streameval_smoke(tmp_path):
    out = tmp_path / "streameval.json"
    proc = subprocess.run(
        [sys.executable, "-m", "tools.streameval", "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "streameval:" in proc.stdout
    r = json.loads(out.read_text())
    assert r["command"].startswith("python -m tools.streameval --smoke")
    assert r["setup"]["window_s"] > 0 and r["setup"]["hop_steps"] >= 1

    a = r["accuracy"]
    assert a["clips"] == 6 and a["clips_with_windows"] >= 1 and a["windows"] >= 1
    assert a["clips_with_windows"] + a["clips_without_window"] == a["clips"]
    assert 0 <= a["window_top1"] <= 1 and 0 <= a["classify_top1_same_clips"] <= 1
    scored = [row for row in a["per_clip"] if row["windows"]]
    assert all(len(row["window_top1"]) == row["windows"] and row["classify_top1"] for row in scored)

    s = r["switch"]
    assert s["lossless_verified"] and s["changes"] >= 2
    assert s["detected"] + s["never_detected"] == s["changes"]
    assert s["detected"] >= 1 and math.isfinite(s["latency_p50_s"]) and math.isfinite(s["latency_p90_s"])
    assert all(c["windows_after"] >= 1 for c in s["per_change"])
    ev = s["events"]  # every event that starts also ends, and each segment is accounted for
    assert ev["segments"] == s["changes"] + s["sequences"] and ev["unpaired_starts"] == 0 and ev["starts"] == ev["ends"]
    assert ev["found_once"] + ev["missed"] == ev["segments"]

    o = r["overload"]
    assert o["published"] >= 1 and o["extractor_frames_per_s"] > 0
    assert o["capacity_in_process"]["possible_ideal"] > o["capacity_in_process"]["possible_full_window"] > 0
    assert o["windows_checked"] == o["published"]
    assert isinstance(r["daemon_problems"], list) and "goals" in r
