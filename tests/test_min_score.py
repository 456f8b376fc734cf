"""A head's recommended min_score is the default of every source that sets none; a number wins."""

from __future__ import annotations

import json
import shutil

from tools.probe import DaemonProbe

from conftest import DATA, HEAD_DIR


def _head_recommending(tmp_path, min_score: float):
    head = tmp_path / "head"
    shutil.copytree(HEAD_DIR, head, ignore=shutil.ignore_patterns("__pycache__", "__init__.py"))
    manifest = json.loads((head / "manifest.json").read_text())
    manifest["min_score"] = min_score
    (head / "manifest.json").write_text(json.dumps(manifest))
    return head


def test_the_heads_min_score_is_the_default_and_a_configured_one_wins(tmp_path, env):
    head = _head_recommending(tmp_path, 0.999)  # above any real score: every window is unknown
    clip = str(sorted((DATA / "ucf101_sample").rglob("*.avi"))[0])  # several seconds: many windows a pass
    sources = [{"id": "dflt", "uri": clip, "loop": True}, {"id": "own", "uri": clip, "loop": True, "min_score": 0.0}]
    with DaemonProbe(tmp_path, sources, head=head, env=env) as probe:
        msgs = probe.collect(15)
    preds = [m for m in msgs if m["type"] == "prediction"]
    by = {sid: [p for p in preds if p["source"] == sid] for sid in ("dflt", "own")}
    assert by["dflt"] and by["own"], probe.stderr[-2000:]
    assert all(p["label"] == "unknown" and p["score"] < 0.999 for p in by["dflt"])
    assert all(p["label"] == p["top"][0]["label"] != "unknown" for p in by["own"])
    assert not [m for m in msgs if m["type"] == "event" and m["source"] == "dflt"]  # no label reaches it: no event
    assert probe.exit_code == 0
