"""A CI-sized run of tools.peer_bench (the real `edgevid run` against the MoViNet peer loop) so it
never rots: it must produce its numbers and counters. Timing is reported, never asserted."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import MODELS, ROOT

PEER = MODELS / "peer" / "movinet_a0_stream_int8_finetuned7.tflite"


@pytest.mark.slow
@pytest.mark.skipif(not PEER.is_file(), reason=f"peer model not found at {PEER}")
def test_peer_bench_smoke(tmp_path, model_dir):
    out = tmp_path / "peer.json"
    cmd = [
        sys.executable,
        "-m",
        "tools.peer_bench",
        "--rounds",
        "1",
        "--seconds",
        "3",
        "--warmup",
        "1",
        "--sources",
        "2",
        "--capacity-seconds",
        "3",
        "--model-dir",
        str(model_dir),
        "--out",
        str(out),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "edgevid/peer_2t:" in proc.stdout  # the ratio is printed
    r = json.loads(out.read_text())
    c = r["compare"]
    assert c["ratios"]["edgevid/peer_2t"] > 0 and c["ratios"]["edgevid/cheapest_peer"] > 0
    daemon, peer = c["runs"]["edgevid"][0], c["runs"]["peer_2t"][0]
    assert daemon["cpu_s"] > 0 and daemon["video_s"] > 0 and daemon["predictions"] > 0 and daemon["extracted"] > 0
    assert peer["cpu_s"] > 0 and peer["video_s"] > 0 and peer["invokes"] > 0
    (cap,) = r["capacity"]
    assert cap["sources"] == 2 and cap["predictions"] > 0 and len(cap["load_avg"]) == 3 and "complete" in cap
    assert r["max_complete_sources"] in (0, 2)
