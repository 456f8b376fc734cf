"""Events end to end: real clips of different actions played back to back through `edgevid run`,
one start and one end per action change."""

from __future__ import annotations

import time

import pytest

from conftest import DATA, HEAD_DIR

MIN_SCORE = 0.35


def _recognized_segments(extractor, n_labels: int = 3, per_label: int = 2):
    """Test clips the head names right in every window (calibrated score >= MIN_SCORE), so each
    segment is a true action the daemon can see; labels in a fixed order, first that qualify."""
    from edgevid.head import Head
    from edgevid.pipeline import ClipClassifier
    from tools.datasets import read_jhmdb

    head = Head(HEAD_DIR)
    clf = ClipClassifier(extractor, head)
    ds = read_jhmdb(DATA / "jhmdb", DATA / "jhmdb_splits", 1)
    segments = []
    for label in ("pullup", "golf", "climb_stairs", "shoot_bow", "brush_hair", "pour"):
        picked = []
        for item in [i for i in ds.test if ds.classes[i.label] == label][:8]:
            probs, real, _ = clf.window_probs(item.path)
            if real and all(head.labels[int(p.argmax())] == label and p.max() >= MIN_SCORE for p in probs):
                picked.append(item.path)
            if len(picked) == per_label:
                segments.append((label, picked))
                break
        if len(segments) == n_labels:
            return segments
    pytest.fail(f"fewer than {n_labels} labels with {per_label} recognized test clips: {segments}")


@pytest.mark.slow
def test_each_action_change_gives_one_start_and_one_end(tmp_path, extractor, model_dir):
    from tools.streameval import write_sequence

    from daemon_util import Subscriber, free_port, start_daemon, stop_daemon, write_config

    segments = _recognized_segments(extractor)
    seq = write_sequence(segments, tmp_path / "seq.mkv", 30.0)
    assert seq["lossless"]
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    config = write_config(
        tmp_path / "edgevid.toml",
        endpoint,
        [
            {
                "id": "seq",
                "uri": str(tmp_path / "seq.mkv"),
                "kind": "file",
                "realtime": False,
                "hop": 0.5,
                "min_score": MIN_SCORE,
            },
        ],
    )
    sub = Subscriber(endpoint)
    time.sleep(0.3)  # the SUB socket is connected before anything is published
    proc = start_daemon(config, {"EDGEVID_MODEL_DIR": str(model_dir)})
    try:

        def done(got):
            st = [m for t, m in got if m["type"] == "status" and m["sources"][0]["state"] == "ended"]
            ends = [m for t, m in got if t == "event/seq" and m["phase"] == "end"]
            return (
                bool(st)
                and st[-1]["sources"][0]["predictions"] == sum(m["type"] == "prediction" for _, m in got)
                and len(ends) >= len(segments)
            )

        msgs = sub.until(done, timeout=120)
    finally:
        code, err = stop_daemon(proc)
        sub.close()
    assert code == 0, err
    preds = [m for t, m in msgs if m["type"] == "prediction"]
    events = [m for t, m in msgs if t == "event/seq"]
    assert preds and all(p["label"] in (p["top"][0]["label"], "unknown") for p in preds)
    starts_ends = [(e["phase"], e["label"]) for e in events if e["phase"] != "update"]
    want = [x for lab, _ in segments for x in (("start", lab), ("end", lab))]
    assert starts_ends == want, [(p["media_end"], p["label"], p["score"]) for p in preds]
    for (lab, _), seg in zip(segments, seq["segments"], strict=True):
        mine = [e for e in events if e["label"] == lab]
        assert len({e["id"] for e in mine}) == 1 and mine[0]["phase"] == "start" and mine[-1]["phase"] == "end"
        start, end = mine[0], mine[-1]
        # the event lies on the segment: it starts on a window that saw it and ends after it was shown
        assert seg["start_s"] - 1.2 - 1e-6 <= start["started_media"] < seg["end_s"]
        assert start["media_end"] > seg["start_s"] and end["media_end"] >= start["media_end"]
        assert end["duration_s"] >= 1.0 and end["best_score"] >= MIN_SCORE
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
