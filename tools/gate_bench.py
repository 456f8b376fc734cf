"""The motion gate in the real daemon (issue 22): what a still source costs, what still scenes
publish over time, and how fast a source wakes.

    python -m tools.gate_bench                      # writes benchmarks/daemon-gate-<date>.json
    python -m tools.gate_bench --smoke --out /tmp/daemon-gate-smoke.json

Everything runs through ``edgevid run`` in a subprocess (``tools.probe``), observed over ZeroMQ.
Still scenes are :func:`tools.gate_eval.still_scene`: a real frame held still with camera noise,
H.264-encoded, in four kinds (noise, a slow dimming, a flickering light, a small swaying region).

1. cost: one realtime looping source: a real action clip (the UCF101 sample, 320x240), a still
   scene made from its middle frame at the same size and rate, and that still scene with the gate
   off (what a still source cost before the gate). The daemon's CPU seconds (utime + stime) per
   second of video, measured after a warm-up, the three interleaved in rounds; target: still
   <= 20 % of active.
2. soak: four still scenes (one of each kind, each from a different Kinetics sample clip) as
   looping realtime sources for ``--soak-seconds``: events, non-idle predictions, and non-idle
   predictions above the head's ``min_score`` (a named label); targets 0 and 0.
3. wake: JHMDB split-1 test clips, each after ``--wake-still`` seconds of a still scene made from
   its own first frame, as realtime file sources: from the first frame of the clip (the first
   frame that can move) to the first non-idle prediction, in media time plus that prediction's
   capture -> publish latency; p50 / p90, and the clips whose action never woke the gate.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edgevid.capture import header_fps, read_clip
from edgevid.head import Head
from edgevid.store import default_head_dir, write_atomic
from tools.datasets import read_jhmdb
from tools.gate_eval import KINDS, still_scene
from tools.probe import DaemonProbe

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGEVID_SHARED", ROOT.parent / "shared"))
MAX_STILL_CPU = 0.20


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def concat(still: Path, clip: Path, fps: float, out: Path) -> Path:
    """``still`` then ``clip`` as one H.264 file at ``fps`` (the clip's own rate)."""
    graph = f"[0:v]fps={fps:g},setsar=1[a];[1:v]fps={fps:g},setsar=1[b];[a][b]concat=n=2:v=1[v]"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-i", str(still), "-i", str(clip), "-filter_complex", graph,
         "-map", "[v]", "-c:v", "libx264", "-crf", "20", "-threads", "1", str(out)],
        check=True, timeout=300,
    )  # fmt: skip
    return out


def source(sid: str, uri: Path, *, loop: bool, gate: bool = True) -> dict:
    return {"id": sid, "uri": str(uri), "kind": "file", "realtime": True, "loop": loop, "gate": {"enabled": gate}}


# -- 1. cost ----------------------------------------------------------------------------------------
def cost(tmp: Path, env: dict, rounds: int, warmup: float, seconds: float) -> dict:
    clip = sorted((SHARED / "data" / "ucf101_sample").rglob("*.avi"))[0]
    fps = header_fps(clip)
    frame = read_clip(clip, 1).frames[0]
    still = still_scene(frame, "noise", 1, tmp / "cost-still.mp4", fps=fps, seconds=10.0)
    cases = {
        "active": source("a", clip, loop=True),
        "still": source("a", still, loop=True),
        "still_gate_off": source("a", still, loop=True, gate=False),
    }
    runs: dict[str, list[dict]] = {name: [] for name in cases}
    for r in range(rounds):
        for name, src in cases.items():
            with DaemonProbe(tmp / f"cost-{name}-{r}", [src], env=env) as probe:
                probe.collect(warmup)
                a = probe.sample()
                msgs = probe.collect(seconds)
                b = probe.sample()
            preds = [m for m in msgs if m["type"] == "prediction"]
            runs[name].append(
                {
                    "cpu_ms_per_s": round((b["cpu_s"] - a["cpu_s"]) / (b["t"] - a["t"]) * 1e3, 2),
                    "predictions": len(preds),
                    "idle": sum(p["label"] == "idle" for p in preds),
                }
            )
            log(f"cost round {r + 1} {name}: {runs[name][-1]}")
    med = {name: statistics.median(x["cpu_ms_per_s"] for x in rs) for name, rs in runs.items()}
    return {
        "clip": str(clip.relative_to(SHARED)),
        "fps": fps,
        "rounds": rounds,
        "warmup_s": warmup,
        "seconds": seconds,
        "runs": runs,
        "median_cpu_ms_per_s": med,
        "still_over_active": round(med["still"] / med["active"], 3),
        "still_gate_off_over_active": round(med["still_gate_off"] / med["active"], 3),
    }


# -- 2. soak ----------------------------------------------------------------------------------------
def soak(tmp: Path, env: dict, seconds: float) -> dict:
    clips = sorted((SHARED / "data" / "kinetics_sample").glob("*.mp4"))[: len(KINDS)]
    sources, scenes = [], {}
    for i, (kind, clip) in enumerate(zip(KINDS, clips, strict=True)):
        scene = still_scene(read_clip(clip, 1).frames[0], kind, 10 + i, tmp / f"soak-{kind}.mp4")
        scenes[kind] = str(clip.relative_to(SHARED))
        sources.append(source(kind, scene, loop=True))
    with DaemonProbe(tmp / "soak", sources, env=env, status_interval=5.0) as probe:
        t0 = time.monotonic()
        msgs = probe.collect(seconds)
        wall = time.monotonic() - t0
        sample = probe.sample()
    preds = [m for m in msgs if m["type"] == "prediction"]
    named = [p for p in preds if p["label"] not in ("idle", "unknown")]
    last = {s["id"]: s for s in [m for m in msgs if m["type"] == "status"][-1]["sources"]}
    return {
        "seconds": round(wall, 1),
        "scenes_from": scenes,
        "predictions": len(preds),
        "not_idle": sum(p["label"] != "idle" for p in preds),
        "not_idle_above_min_score": len(named),
        "events": sum(m["type"] == "event" for m in msgs),
        "per_source": {
            sid: {k: s[k] for k in ("predictions", "idle_windows", "extracted", "gated_frames", "idle_s", "loop")}
            for sid, s in last.items()
        },
        "rss_mb_end": round(sample["rss_mb"], 1),
    }


# -- 3. wake ----------------------------------------------------------------------------------------
def wake(tmp: Path, env: dict, clips: int, still_s: float, per_daemon: int) -> dict:
    ds = read_jhmdb(SHARED / "data" / "jhmdb", SHARED / "data" / "jhmdb_splits", 1)
    items = ds.test[:: max(1, len(ds.test) // clips)][:clips]
    made = []
    for i, it in enumerate(items):
        fps = header_fps(it.path)
        first = read_clip(it.path, None, indices_for=lambda n: np.array([0])).frames[0]
        # Staggered: sources of one daemon wake 0.55 s apart, as independent cameras would (all at
        # once, 8 windows' held frames reach the extractor together and the lag cut drops some).
        still = round(still_s + 0.55 * (i % per_daemon) * fps) / fps
        scene = still_scene(first, "noise", 100 + i, tmp / f"wake-still-{i}.mp4", fps=fps, seconds=still)
        made.append((f"c{i}", it.path, concat(scene, it.path, fps, tmp / f"wake-{i}.mp4"), still))
    latency, media_lag, never, early, gated, windows = [], [], [], 0, 0, 0
    skipped: dict[str, int] = {}
    for start in range(0, len(made), per_daemon):
        batch = made[start : start + per_daemon]
        with DaemonProbe(tmp / f"wake-{start}", [source(sid, f, loop=False) for sid, _, f, _ in batch], env=env) as p:
            msgs = p.sub.until(lambda g, n=len(batch): _all_ended(g, n), 120)
        last = [m for _, m in msgs if m["type"] == "status"][-1]["sources"]
        for s in last:
            for reason, n in s["skipped"].items():
                skipped[reason] = skipped.get(reason, 0) + n
        by_id = {s["id"]: s for s in last}
        for sid, clip, _, clip_still in batch:
            preds = [m for _, m in msgs if m["type"] == "prediction" and m["source"] == sid]
            early += sum(p["label"] != "idle" and p["media_end"] < clip_still for p in preds)
            # windows wholly inside the action: the gate must let them through
            inside = [p for p in preds if p["media_start"] >= clip_still]
            windows += len(inside)
            gated += sum(p["label"] == "idle" for p in inside)
            active = [p for p in preds if p["label"] != "idle" and p["media_end"] >= clip_still]
            if not active:
                after = [p for p in preds if p["media_end"] >= clip_still]
                never.append(
                    {
                        "clip": str(clip.relative_to(SHARED)),
                        "idle_windows_after_the_still": len(after),
                        "skipped": by_id[sid]["skipped"],
                    }
                )
                continue
            lag = active[0]["media_end"] - clip_still
            media_lag.append(lag)
            latency.append(lag + active[0]["latency"]["capture_to_publish_ms"] / 1e3)
    return {
        "clips": len(made),
        "still_s": f"{still_s:g} + 0.55 * (clip index mod {per_daemon})",
        "skipped_windows": skipped,  # published nowhere: overload (the lag cut) or gaps
        "wake_latency_s": {"p50": pct(latency, 50), "p90": pct(latency, 90), "max": max(latency, default=None)},
        "media_lag_s": {"p50": pct(media_lag, 50), "p90": pct(media_lag, 90)},
        "never_woke": never,
        "woke_during_the_still": early,
        "action_windows": windows,
        "action_windows_gated": gated,
    }


def _all_ended(got: list, n: int) -> bool:
    stats = [m for _, m in got if m["type"] == "status"]
    if not stats or len(stats[-1]["sources"]) != n or any(s["state"] != "ended" for s in stats[-1]["sources"]):
        return False
    counted = {s["id"]: s["predictions"] for s in stats[-1]["sources"]}
    got_preds: dict[str, int] = {}
    for _, m in got:
        if m["type"] == "prediction":
            got_preds[m["source"]] = got_preds.get(m["source"], 0) + 1
    return all(got_preds.get(sid, 0) == c for sid, c in counted.items())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.gate_bench", description=__doc__.split("\n")[0])
    p.add_argument("--model-dir", type=Path, default=Path(os.environ.get("EDGEVID_MODEL_DIR", SHARED / "models")))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--seconds", type=float, default=30.0, help="measured seconds per cost run")
    p.add_argument("--soak-seconds", type=float, default=600.0)
    p.add_argument("--wake-clips", type=int, default=40)
    p.add_argument("--wake-still", type=float, default=3.0)
    p.add_argument("--per-daemon", type=int, default=8)
    p.add_argument("--skip", nargs="*", default=[], choices=["cost", "soak", "wake"])
    p.add_argument("--smoke", action="store_true", help="CI-sized: 1 short round, 20 s soak, 4 wake clips")
    p.add_argument("--out", type=Path, default=None, help="default: benchmarks/daemon-gate-<date>.json")
    args = p.parse_args(argv)
    if args.smoke:
        args.rounds, args.warmup, args.seconds, args.soak_seconds, args.wake_clips = 1, 3.0, 5.0, 20.0, 4
    env = {"EDGEVID_MODEL_DIR": str(args.model_dir)}
    head = Head(default_head_dir())
    result: dict = {
        "command": "python -m tools.gate_bench " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "load_avg_start": os.getloadavg()},
        "head": {"name": head.manifest.name, "min_score": head.manifest.min_score},
    }
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gate-bench-") as tmp_s:
        tmp = Path(tmp_s)
        if "cost" not in args.skip:
            result["cost"] = cost(tmp, env, args.rounds, args.warmup, args.seconds)
        if "soak" not in args.skip:
            result["soak"] = soak(tmp, env, args.soak_seconds)
        if "wake" not in args.skip:
            result["wake"] = wake(tmp, env, args.wake_clips, args.wake_still, args.per_daemon)
    result["machine"]["load_avg_end"] = os.getloadavg()
    result["wall_s"] = round(time.monotonic() - t0, 1)
    goals = {}
    if "cost" in result:
        goals["still_cpu_over_active <= 0.20"] = result["cost"]["still_over_active"] <= MAX_STILL_CPU
    if "soak" in result:
        goals["soak: no event"] = result["soak"]["events"] == 0
        goals["soak: no named prediction"] = result["soak"]["not_idle_above_min_score"] == 0
    result["goals"] = goals
    out = args.out or ROOT / "benchmarks" / f"daemon-gate-{dt.date.today().isoformat()}.json"
    write_atomic(out, (json.dumps(result, indent=1) + "\n").encode())
    print(json.dumps({k: v for k, v in result.items() if k in ("cost", "soak", "wake", "goals")}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
