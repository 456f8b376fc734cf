"""CPU per second of video: the real `edgevid run` against the model a user would pick instead.

    python -m tools.peer_bench --seconds 40 --rounds 3 --sources 20 --out benchmarks/peer-<date>.json

The peer is MoViNet-A0-stream int8 as the TensorFlow Lite Raspberry Pi video-classification
example runs it: every frame decoded, 5 frames/s converted to 172x172 RGB float32 in [0, 1] and fed
through the signature ``call`` with its 43 states carried from output to input. It is read in place
from ``$EDGEVID_SHARED/models/peer/`` (never copied, committed or shipped). Both sides play the same
looping 320x240 clip in real time in their own process; rounds alternate daemon and peer so load
changes hit both alike. Each side's cost is its process CPU time (utime + stime from /proc) after a
warm-up, divided by the seconds of video it decoded in that time.

Capacity (``--sources N[,N...]``): the daemon with N real-time copies of the clip; a count passes
when every window it publishes in the measured stretch is complete (all slots filled, no gaps, no
skipped windows, no dropped frames, no overload) and the predictions are as many as the video
allows. The load average is recorded with it: repeat on a quiet machine with the same option.
``--baseline DIR`` (another checkout, e.g. ``git archive main | tar -x -C DIR``; repeatable) runs that
checkout's daemon in the same interleaved rounds, for a before/after ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from tools.bench import SHARED, bench_clips
from tools.probe import ROOT, Subscriber, free_port, proc_sample, start_daemon, stop_daemon, write_config

PEER = SHARED / "models" / "peer" / "movinet_a0_stream_int8_finetuned7.tflite"
PEER_FPS, PEER_SIZE = 5.0, 172


# -- the peer loop (child process) ----------------------------------------------------------------
def peer_loop(clip: Path, warmup: float, seconds: float, threads: int) -> dict:
    """Play ``clip`` in real time, looping; classify 5 frames/s with the peer; report this process's
    CPU and the video it decoded over ``seconds`` after ``warmup``."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(PEER), num_threads=threads).get_signature_runner("call")
    inputs = runner.get_input_details()
    states = {name: np.zeros(d["shape"], d["dtype"]) for name, d in inputs.items() if name != "image"}
    frames = invokes = 0
    mark: dict | None = None
    start = time.monotonic()
    end = start + warmup + seconds
    media0 = 0.0  # media time of the current pass's start, on the wall clock of this loop
    next_sample = 0.0
    while time.monotonic() < end:
        cap = cv2.VideoCapture(str(clip), cv2.CAP_FFMPEG)
        fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
        n = 0
        while time.monotonic() < end:
            ok, frame = cap.read()  # every frame decoded and converted, as the example's camera loop
            if not ok:
                break
            media = media0 + n / fps
            n += 1
            ahead = start + media - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
            frames += 1
            if mark is None and time.monotonic() >= start + warmup:
                mark = {**proc_sample(os.getpid()), "frames": frames, "fps": fps}
            if media + 1e-9 >= next_sample:
                next_sample += 1.0 / PEER_FPS
                rgb = cv2.cvtColor(cv2.resize(frame, (PEER_SIZE, PEER_SIZE)), cv2.COLOR_BGR2RGB)
                out = runner(image=(rgb.astype(np.float32) / 255.0)[None, None], **states)
                out.pop("logits")
                states = out
                invokes += 1
        media0 += n / fps
        cap.release()
    last = proc_sample(os.getpid())
    assert mark is not None, "the warm-up took the whole run"
    return {
        "cpu_s": last["cpu_s"] - mark["cpu_s"],
        "video_s": (frames - mark["frames"]) / mark["fps"],
        "wall_s": last["t"] - mark["t"],
        "invokes": invokes,
        "threads": threads,
    }


def run_peer(clip: Path, warmup: float, seconds: float, threads: int) -> dict:
    code = [
        "-m",
        "tools.peer_bench",
        "--peer-loop",
        str(clip),
        "--warmup",
        str(warmup),
        "--seconds",
        str(seconds),
        "--peer-threads",
        str(threads),
    ]
    proc = subprocess.run(
        [sys.executable, *code], cwd=ROOT, capture_output=True, text=True, timeout=warmup + seconds + 120
    )
    if proc.returncode != 0:
        raise RuntimeError(f"peer loop failed: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- the models alone ------------------------------------------------------------------------------
def model_floor(clip: Path, peer_threads: list[int], model_dir: Path | None, invokes: int = 20) -> dict:
    """What the models alone cost per second of video, in this process: the extractor on one frame
    at a time (one thread, as the daemon runs a single source) and the motion descriptor, each 10
    times per second of video for the bundled head, against the peer's invoke 5 times per second.
    Invokes are spaced 50 ms apart, so a thread pool's spinning after each is counted as in a loop."""
    from ai_edge_litert.interpreter import Interpreter

    from edgevid.capture import read_clip
    from edgevid.motion import MotionEstimator
    from edgevid.pipeline import load_classifier

    cv2.setNumThreads(1)  # as the daemon's sources set it (process-wide): no OpenCV pool around the flow
    clf = load_classifier(model_dir=model_dir, threads=2)
    c = read_clip(clip, None)
    frames = clf.extractor.preprocess(c.frames[:invokes])
    est = MotionEstimator(clf.head.motion) if clf.head.motion is not None else None
    greys = [est.grey(f) for f in c.frames[: invokes + 1]] if est else []
    runners = {}
    for t in peer_threads:
        r = Interpreter(model_path=str(PEER), num_threads=t).get_signature_runner("call")
        runners[t] = [
            r,
            {k: np.zeros(d["shape"], d["dtype"]) for k, d in r.get_input_details().items() if k != "image"},
        ]
    image = (
        cv2.cvtColor(cv2.resize(c.frames[0], (PEER_SIZE, PEER_SIZE)), cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
    )[None, None]

    def peer(t: int) -> None:
        r, states = runners[t]
        out = r(image=image, **states)
        out.pop("logits")
        runners[t][1] = out

    def cpu_ms(f) -> float:
        f(0)  # warm
        t0 = time.process_time()
        for i in range(invokes):
            f(i)
            time.sleep(0.05)
        return (time.process_time() - t0) / invokes * 1e3

    ms = {"extractor_1_frame": cpu_ms(lambda i: clf.extractor.extract(frames[i : i + 1]))}
    ms["motion"] = cpu_ms(lambda i: est.describe(greys[i], greys[i + 1])) if est else 0.0
    for t in peer_threads:
        ms[f"peer_{t}t"] = cpu_ms(lambda i, t=t: peer(t))
    rate = 1.0 / clf.head.manifest.timescale.window_s * clf.head.frames if clf.head.manifest.timescale else 10.0
    edgevid = rate * (ms["extractor_1_frame"] + ms["motion"])
    return {
        "cpu_ms_per_invoke": ms,
        "edgevid_frames_per_s": rate,
        "edgevid_ms_per_video_s": edgevid,
        **{f"peer_{t}t_ms_per_video_s": PEER_FPS * ms[f"peer_{t}t"] for t in peer_threads},
        **{f"edgevid/peer_{t}t": edgevid / (PEER_FPS * ms[f"peer_{t}t"]) for t in peer_threads},
    }


# -- the daemon ------------------------------------------------------------------------------------
def run_daemon(
    clip: Path,
    n_sources: int,
    warmup: float,
    seconds: float,
    *,
    cwd: Path = ROOT,
    threads: int | None = None,
    model_dir: Path | None = None,
) -> dict:
    """`edgevid run` (from checkout ``cwd``) on ``n_sources`` real-time looping copies of ``clip``:
    process CPU and video decoded after ``warmup``, and whether every window was complete."""
    fps = cv2.VideoCapture(str(clip)).get(cv2.CAP_PROP_FPS) or 25.0
    env = {"EDGEVID_MODEL_DIR": str(model_dir)} if model_dir else {}
    with tempfile.TemporaryDirectory() as tmp:
        endpoint = f"tcp://127.0.0.1:{free_port()}"
        sources = [{"id": f"s{i}", "uri": str(clip), "loop": True} for i in range(n_sources)]
        config = write_config(
            Path(tmp) / "bench.toml",
            endpoint,
            sources,
            status_interval=0.5,
            models={"threads": threads} if threads else None,
        )
        sub = Subscriber(endpoint)
        proc = start_daemon(config, env, cwd=cwd)
        try:
            status: dict | None = None

            def pump(until: float) -> list[dict]:
                nonlocal status
                got = []
                while time.monotonic() < until:
                    msg = sub.recv(max(0.01, until - time.monotonic()))
                    if msg is None:
                        if proc.poll() is not None:
                            raise RuntimeError(f"daemon exited: {proc.communicate()[1][-2000:]}")
                        continue
                    if msg[1]["type"] == "status":
                        status = msg[1]
                    else:
                        got.append(msg[1])
                return got

            # Warm-up: until every source has published (models loaded, windows filling), then warmup s.
            t0 = time.monotonic()
            while time.monotonic() - t0 < 120 and (
                status is None or any(s["predictions"] == 0 for s in status["sources"])
            ):
                pump(time.monotonic() + 0.5)
            pump(time.monotonic() + warmup)
            first, cpu0 = status, proc_sample(proc.pid)
            preds = [m for m in pump(time.monotonic() + seconds) if m["type"] == "prediction"]
            last, cpu1 = status, proc_sample(proc.pid)
        finally:
            sub.close()
            stop_daemon(proc, timeout=20)
    before = {s["id"]: s for s in first["sources"]}
    frames_in = sum(s["frames_in"] - before[s["id"]]["frames_in"] for s in last["sources"])
    video_s = frames_in / fps
    hop_s = last["sources"][0]["hop_s"]
    incomplete = [m for m in preds if m["gaps"] or m["frames"] < 2]
    delta = {
        k: sum(s[k] - before[s["id"]][k] for s in last["sources"])
        for k in ("skipped_windows", "dropped", "predictions", "extracted")
    }
    reasons: dict[str, int] = {}
    for s in last["sources"]:
        for reason, n in s["skipped"].items():
            reasons[reason] = reasons.get(reason, 0) + n - before[s["id"]]["skipped"].get(reason, 0)
    expected = video_s / hop_s  # windows the decoded video allows (no pass starts or ends mid-stretch)
    return {
        "sources": n_sources,
        "cpu_s": cpu1["cpu_s"] - cpu0["cpu_s"],
        "video_s": video_s,
        "cpu_ms_per_video_s": 1e3 * (cpu1["cpu_s"] - cpu0["cpu_s"]) / video_s,
        "cpu_ms_per_extracted_frame": 1e3 * (cpu1["cpu_s"] - cpu0["cpu_s"]) / max(1, delta["extracted"]),
        "wall_s": cpu1["t"] - cpu0["t"],
        "realtime_factor": video_s / n_sources / (cpu1["t"] - cpu0["t"]),
        "predictions": len(preds),
        "expected_predictions": expected,
        "incomplete_windows": len(incomplete),
        "skipped_windows": delta["skipped_windows"],
        "skipped_by_reason": reasons,
        "dropped": delta["dropped"],
        "extracted": delta["extracted"],
        "overloaded": bool(last["overloaded"]) or bool(first["overloaded"]),
        "extract_ms_per_frame": last["extract_ms_per_frame"],
        "threads": cpu1["threads"],
        "rss_mb": cpu1["rss_mb"],
        "load_avg": os.getloadavg(),
    }


def all_complete(r: dict) -> bool:
    """Every window in the measured stretch published complete, as many as the video allows
    (loop seams cost a window each: allow one per source per pass, 10 % in all)."""
    return (
        not r["incomplete_windows"]
        and not r["skipped_windows"]
        and not r["dropped"]
        and not r["overloaded"]
        and r["predictions"] >= 0.9 * r["expected_predictions"]
        and r["realtime_factor"] >= 0.97
    )


def compare(
    clip: Path, rounds: int, warmup: float, seconds: float, peer_threads: list[int], daemons: dict[str, dict]
) -> dict:
    """Interleaved rounds: each daemon variant, then the peer at each thread count; CPU per video second."""
    runs: dict[str, list[dict]] = {name: [] for name in daemons} | {f"peer_{t}t": [] for t in peer_threads}
    floors = []
    for r in range(rounds):
        floors.append(model_floor(clip, peer_threads, daemons["edgevid"].get("model_dir")))
        print(
            f"round {r + 1}: models alone: edgevid {floors[-1]['edgevid_ms_per_video_s']:.1f} ms CPU / s of video, "
            + ", ".join(f"peer {t} thread(s) {floors[-1][f'peer_{t}t_ms_per_video_s']:.1f}" for t in peer_threads),
            flush=True,
        )
        for name, kw in daemons.items():
            runs[name].append(run_daemon(clip, 1, warmup, seconds, **kw))
            print(
                f"round {r + 1}: {name}: {1e3 * runs[name][-1]['cpu_s'] / runs[name][-1]['video_s']:.1f} ms CPU / s "
                "of video "
                f"(load {os.getloadavg()[0]:.1f})",
                flush=True,
            )
        for t in peer_threads:
            runs[f"peer_{t}t"].append(run_peer(clip, warmup, seconds, t))
            p = runs[f"peer_{t}t"][-1]
            print(
                f"round {r + 1}: peer {t} thread(s): {1e3 * p['cpu_s'] / p['video_s']:.1f} ms CPU / s of video",
                flush=True,
            )
    per_s = {name: [x["cpu_s"] / x["video_s"] for x in rs] for name, rs in runs.items()}
    out: dict = {
        "clip": str(clip.relative_to(SHARED)),
        "rounds": rounds,
        "warmup_s": warmup,
        "seconds": seconds,
        "cpu_ms_per_video_s": {k: [round(v * 1e3, 2) for v in vs] for k, vs in per_s.items()},
        "runs": runs,
    }
    peers = [f"peer_{t}t" for t in peer_threads]
    ratios: dict = {}
    for name in daemons:
        for peer in peers:  # ratio per round (same load), then the median over rounds
            ratios[f"{name}/{peer}"] = statistics.median(a / b for a, b in zip(per_s[name], per_s[peer]))
        ratios[f"{name}/cheapest_peer"] = statistics.median(
            a / min(per_s[p][i] for p in peers) for i, a in enumerate(per_s[name])
        )
    out["ratios"] = ratios
    out["models_alone"] = {
        "rounds": floors,
        **{k: statistics.median(f[k] for f in floors) for k in floors[0] if "/" in k or k.endswith("video_s")},
    }
    return out


def capacity(clip: Path, counts: list[int], warmup: float, seconds: float, daemon: dict) -> list[dict]:
    rows = []
    for n in counts:
        r = run_daemon(clip, n, warmup, seconds, **daemon)
        r["complete"] = all_complete(r)
        rows.append(r)
        print(
            f"{n} sources: {'every window complete' if r['complete'] else 'NOT complete'} ({r['predictions']} of "
            f"{r['expected_predictions']:.0f} predictions, {r['incomplete_windows']} incomplete, "
            f"{r['skipped_windows']} skipped, "
            f"{r['dropped']} dropped, realtime {r['realtime_factor']:.2f}, load {r['load_avg'][0]:.1f})",
            flush=True,
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.peer_bench", description=__doc__.split("\n")[0])
    p.add_argument("--clip", type=Path, help="a 320x240 clip (default: the first UCF101 sample)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=float, default=5.0, help="seconds after the first predictions before measuring")
    p.add_argument("--seconds", type=float, default=40.0, help="measured seconds per run")
    p.add_argument("--peer-threads", default="2", help="peer interpreter threads, comma-separated (default 2)")
    p.add_argument(
        "--threads", type=int, default=None, help="the daemon's [models] threads (default: its config default)"
    )
    p.add_argument(
        "--baseline",
        type=Path,
        action="append",
        default=[],
        help="another checkout whose daemon runs in the same rounds (repeatable; labelled by folder name)",
    )
    p.add_argument("--sources", default="", help="capacity: source counts to try, comma-separated (empty: skip)")
    p.add_argument("--capacity-seconds", type=float, default=30.0)
    p.add_argument(
        "--model-dir", type=Path, default=os.environ.get("EDGEVID_MODEL_DIR"), help="where the extractor is installed"
    )
    p.add_argument("--peer-loop", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    threads = [int(t) for t in args.peer_threads.split(",") if t]
    if args.peer_loop:
        print(json.dumps(peer_loop(args.peer_loop, args.warmup, args.seconds, threads[0])))
        return 0
    if not PEER.is_file():
        print(f"peer model not found at {PEER} (set EDGEVID_SHARED)", file=sys.stderr)
        return 2
    clip = args.clip or bench_clips(1)[0]
    daemon = {"threads": args.threads, "model_dir": args.model_dir}
    daemons = {"edgevid": daemon}
    for other in args.baseline:
        daemons[other.resolve().name] = {**daemon, "cwd": other.resolve()}
    result: dict = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "load_avg_start": os.getloadavg(),
    }
    if args.rounds:
        result["compare"] = compare(clip, args.rounds, args.warmup, args.seconds, threads, daemons)
        for k, v in result["compare"]["ratios"].items():
            print(f"{k}: {v:.3f} (CPU per second of video, median over rounds)")
        for k, v in result["compare"]["models_alone"].items():
            if "/" in k:
                print(f"models alone, {k}: {v:.3f}")
    if args.sources:
        result["capacity"] = capacity(
            clip, [int(n) for n in args.sources.split(",")], args.warmup, args.capacity_seconds, daemon
        )
        ok = [r["sources"] for r in result["capacity"] if r["complete"]]
        result["max_complete_sources"] = max(ok) if ok else 0
        print(f"most real-time sources with every window complete: {result['max_complete_sources']}")
    result["load_avg_end"] = os.getloadavg()
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
