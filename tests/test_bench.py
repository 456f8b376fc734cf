"""A CI-sized run of the benchmark so it never rots (no timing assertions: ratios are reported)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

pytest.importorskip("tensorflow", reason="tools dependencies not installed")


@pytest.mark.slow
def test_bench_smoke(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [
        sys.executable,
        "-m",
        "tools.bench",
        "--clips",
        "2",
        "--daemon-seconds",
        "8",
        "--out",
        str(out),
        "--reference-head",
        str(tmp_path / "absent.tflite"),
        "--motion",
        "dis_ultrafast-160x120",
    ]
    if os.environ.get("EDGEVID_OTHER_PYTHON"):
        cmd += ["--other-python", os.environ["EDGEVID_OTHER_PYTHON"]]
    proc = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, timeout=900, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
    stages = r["stages"]
    for key in ("decode_ms", "preprocess_ms", "extract_2t_batched_ms", "head_ms", "classify_ms", "floor_ms"):
        assert stages[key] > 0
    assert stages["classify_over_floor"] > 0 and r["reference"]["speedup_over_reference"] > 0
    # The floor is the work classify does for the bundled head: every frame of its windows, their
    # motion (the head reads it), one head invoke per window.
    assert stages["frames_extracted"] >= 12 and stages["windows"] >= 1 and stages["floor_motion_ms"] > 0
    # Our features are the reference path's (OpenCV vs PIL resize: cosine 0.97-0.99; a channel
    # swap or a wrong frame would fall to 0.76-0.87).
    assert r["reference"]["feature_cosine_min"] >= 0.95
    runs = r["daemon"]["runs"]
    assert set(runs) == {"file", "file_window_2.5s", "pipe_25fps", "pipe_15fps"}
    for name, d in runs.items():
        assert d["predictions"] >= 8 and d["extractor_frames_per_prediction"] <= 6, name  # the feature ring at work
        assert d["rss_mb_at_end"] > 0 and d["floor_p50_ms"] > 0, name  # every window reports its floor
        # At the head's window (1.2 s, 12 slots) unless the run sets its own; hop 0.2 s = 2 slots.
        assert (d["window_s"], d["hop_s"]) == ((2.5, 0.4167) if name == "file_window_2.5s" else (1.2, 0.2)), name
        assert ("goal_met" in d) == d["live"] == name.startswith("pipe"), name
    motion = r["motion"]["specs"]["dis_ultrafast-160x120"]  # the motion stream costed beside the extractor
    assert motion["classify_motion_ms_per_frame"] > 0 and motion["daemon_motion_over_extract"] > 0
