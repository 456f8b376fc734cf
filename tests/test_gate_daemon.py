"""The motion gate end to end: `edgevid run` and `edgevid classify` on a still scene made from a real
frame (camera noise, H.264) and on that scene followed by the real action clip it came from."""

from __future__ import annotations

import json
import subprocess

import pytest

from edgevid.capture import read_clip
from tools.gate_eval import SCENE_S, still_scene

from conftest import HEAD_DIR, jhmdb_clip, run_cli
from daemon_util import Subscriber, free_port, start_daemon, stop_daemon, write_config

ACTION = jhmdb_clip("pour")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """(still scene, the still scene then the action clip) at the action clip's size and rate."""
    d = tmp_path_factory.mktemp("gate")
    still = still_scene(read_clip(ACTION, 1).frames[0], "noise", 7, d / "still.mp4")
    both = d / "still-then-pour.mp4"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-i", str(still), "-i", str(ACTION), "-filter_complex",
         "[0:v]fps=30,setsar=1[a];[1:v]fps=30,setsar=1[b];[a][b]concat=n=2:v=1[v]", "-map", "[v]",
         "-c:v", "libx264", "-crf", "20", "-threads", "1", str(both)],
        check=True, timeout=120,
    )  # fmt: skip
    return still, both


def _timing():
    from edgevid.head import Head

    head = Head(HEAD_DIR)
    window = head.manifest.timescale.window_s
    return window, window / head.frames


def _run(tmp_path, env, uri, until, timeout=60):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    config = write_config(tmp_path / "g.toml", endpoint, [{"id": "shelf", "uri": str(uri), "realtime": True}])
    sub = Subscriber(endpoint)
    proc = start_daemon(config, env)
    try:
        msgs = sub.until(until, timeout=timeout)
    finally:
        code, err = stop_daemon(proc)
        sub.close()
    assert code == 0 and "Traceback" not in err, err
    return [m for _, m in msgs]


def _ended(got):
    """The file ended and every prediction of it was received."""
    msgs = [m for _, m in got]
    preds = [m for m in msgs if m["type"] == "prediction"]
    done = [m["sources"][0] for m in msgs if m["type"] == "status" and m["sources"][0]["state"] == "ended"]
    return len(done) >= 2 and done[-1]["predictions"] == len(preds)


def test_a_still_scene_is_published_idle_runs_no_model_and_starts_no_event(tmp_path, env, clips):
    """Without the gate this scene reads as an action with a high score; with it, every window is
    `idle`, nothing reaches the extractor, no event starts, and the status says why."""
    still, _ = clips
    ungated = json.loads(run_cli("classify", str(still), "--json", "--no-gate", env=env).stdout)
    assert ungated["top"][0]["score"] > 0.3, ungated  # what a still room would have been called
    msgs = _run(tmp_path, env, still, _ended, timeout=SCENE_S + 40)
    preds = [m for m in msgs if m["type"] == "prediction"]
    window, dt = _timing()
    assert len(preds) >= 10 and {p["label"] for p in preds} == {"idle"}
    assert all(p["score"] == 0 and p["top"] == [] and p["new_frames"] == 0 for p in preds)
    assert [p["seq"] for p in preds] == list(range(1, len(preds) + 1))  # at the hop's rate, none missing
    assert not [m for m in msgs if m["type"] == "event"]
    last = [m for m in msgs if m["type"] == "status"][-1]["sources"][0]
    assert last["extracted"] == 0 and last["motion"] is False and last["skipped_windows"] == 0
    # Gated: every sampled frame but the last window's, still held in case the scene wakes.
    assert last["idle_windows"] == len(preds) and last["sampled"] - 12 <= last["gated_frames"] < last["sampled"]
    assert last["idle_s"] >= SCENE_S - window - 1.0  # still from the first frames to the end
    out = run_cli("classify", str(still), env=env).stdout
    assert out.strip().endswith("window(s) still; --no-gate: classify them)") and ": idle (" in out
    res = json.loads(run_cli("classify", str(still), "--json", env=env).stdout)
    assert res["idle"] is True and res["top"] == [] and res["gated_windows"] == res["windows"] > 20


def test_the_source_wakes_on_the_first_moving_frames_and_says_what_classify_says(tmp_path, env, clips):
    """Still for SCENE_S seconds, then the pour: idle until the pour, the first active prediction
    within one hop of the first moving frames (its window's earlier frames were held, not lost),
    and the active windows read what `classify` reads of the pour alone."""
    _, both = clips
    msgs = _run(tmp_path, env, both, _ended, timeout=SCENE_S + 40)
    preds = [m for m in msgs if m["type"] == "prediction"]
    window, dt = _timing()
    hop = [m for m in msgs if m["type"] == "status"][-1]["sources"][0]["hop_s"]
    active = [p for p in preds if p["label"] != "idle"]
    assert active and all(p["label"] == "idle" for p in preds[: preds.index(active[0])])
    assert all(p["media_end"] < SCENE_S for p in preds[: preds.index(active[0])])
    # Two moving slot frames wake the gate; the window ending at the next hop is published.
    assert SCENE_S <= active[0]["media_end"] <= SCENE_S + 2 * dt + hop + 1e-6, active[0]
    assert active[0]["new_frames"] == active[0]["frames"]  # the held frames went through the extractor
    alone = json.loads(run_cli("classify", str(ACTION), "--json", env=env).stdout)["top"][0]["label"]
    assert alone == "pour"
    votes = [p["label"] for p in active]
    assert votes.count(alone) >= len(votes) / 2, votes
    res = json.loads(run_cli("classify", str(both), "--json", env=env).stdout)
    assert res["top"][0]["label"] == alone and not res["idle"]
    # classify leaves out the still windows the daemon published as idle (same gate; its windows
    # are ~0.2 s apart, the daemon's a hop): the same share of the clip.
    share = 1 - len(active) / len(preds)
    assert abs(res["gated_windows"] / res["windows"] - share) < 0.1, (res, len(preds), len(active))
