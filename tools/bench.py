"""Benchmarks: the cost of every stage, measured as ratios within one run.

    python -m tools.bench --clips 10 --daemon-seconds 60 --out BENCHMARKS.json

1. per-stage cost of ``classify`` (decode, preprocess, extractor 1/2 threads single vs batched, head);
2. the floor and ``classify`` / floor: bare decode + the bare extractor on exactly the frames
   ``classify`` extracts (for a head fitted on windows, every slot frame of the clip's windows:
   more than 25 on a long clip) + their motion descriptors if the head reads motion + one head
   invoke per window; and the first head's floor, 25 frames and one invoke, for comparison;
3. a plain reference implementation of the study's inference path, and our speed-up over it;
4. ai-edge-litert vs tflite-runtime (``--other-python`` names an interpreter that has it);
5. the daemon at the head's window, on a paced file and on camera-paced pipes: capture -> publish
   latency p50/p90 against each window's floor (the extractor, motion and head time of the frames
   it still needed when its newest frame was captured), extractor invokes per prediction, CPU, RSS;
6. the motion stream per sampled frame beside the extractor's, as ``classify`` and the daemon pay it.

Absolute times drift on a shared machine; compare the ratios, which come from the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from edgevid.capture import read_clip
from edgevid.daemon.feed import BATCH
from edgevid.extractor import Extractor
from edgevid.head import Head
from edgevid.motion import MotionEstimator, clip_motion, predecessors
from edgevid.pipeline import ClipClassifier, clip_features, load_classifier
from edgevid.runtime import backend, make_interpreter
from edgevid.sampling import sample_indices
from edgevid.store import default_head_dir

SHARED = Path(os.environ.get("EDGEVID_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
MNV2 = SHARED / "models" / "mobilenet_v2_1.0_224_quant.tflite"


def _ms(f, repeat: int = 1) -> float:
    """Median wall time of ``f()`` in ms."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def bench_clips(n: int) -> list[Path]:
    ucf = sorted((SHARED / "data" / "ucf101_sample").rglob("*.avi"))
    kin = sorted((SHARED / "data" / "kinetics_sample").glob("*.mp4"))
    jh = sorted((SHARED / "data" / "jhmdb").rglob("*.avi"))[::97]
    clips = [c for trio in zip(ucf, jh, kin + ucf[len(kin) :]) for c in trio]
    return clips[:n]


# -- 3. the reference: the study's path written plainly -----------------------------------------
class Reference:
    """Decode every frame to RGB, PIL-resize the sampled ones, full model with preserve-all-tensors,
    one invoke per frame on one thread, float GRU-1280 head."""

    def __init__(self, head_float: Path, threads: int = 1) -> None:
        self.model = make_interpreter(MNV2, num_threads=threads, preserve_all_tensors=True)
        self.avgpool = next(d for d in self.model.get_tensor_details() if d["name"] == "MobilenetV2/Logits/AvgPool")
        self.input = self.model.get_input_details()[0]["index"]
        self.head = make_interpreter(head_float, num_threads=threads)

    def classify(self, path: Path) -> np.ndarray:
        x = self.features(path)[None]
        self.head.set_tensor(self.head.get_input_details()[0]["index"], x)
        self.head.invoke()
        return self.head.get_tensor(self.head.get_output_details()[0]["index"])[0]

    def features(self, path: Path) -> np.ndarray:
        """float32 [25, 1280]: the sampled frames' dequantized AvgPool features."""
        from PIL import Image

        cap = cv2.VideoCapture(str(path))
        frames = []
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        cap.release()
        feats = []
        for i in sample_indices(len(frames), 25):
            img = np.asarray(Image.fromarray(frames[i]).resize((224, 224), Image.BILINEAR))
            self.model.set_tensor(self.input, img[None])
            self.model.invoke()
            scale, zp = self.avgpool["quantization"]
            feats.append((self.model.get_tensor(self.avgpool["index"]).reshape(-1).astype(np.float32) - zp) * scale)
        return np.stack(feats).astype(np.float32)


def untrained_reference_head(path: Path, classes: int = 21) -> Path:
    """A float GRU-1280 head of the study's shape with initial weights: for timing only (CI smoke)."""
    from tools.convert import to_tflite
    from tools.heads import SPECS, build

    spec = SPECS["gru1280"]
    model, _ = build(spec, 25, 1280, classes, members=1)
    path.write_bytes(to_tflite([model], spec, 25, 1280, classes, quantize=False))
    return path


def stage_costs(clips: list[Path], head_dir: Path) -> dict:
    """1 and 2: per-stage cost and the floor, medians over clips."""
    out: dict = {"clips": len(clips)}
    ex1, ex2 = Extractor(MNV2, num_threads=1), Extractor(MNV2, num_threads=2)
    head = Head(head_dir, num_threads=1)
    clf = ClipClassifier(ex2, head)
    rows = []
    for clip in clips:
        c = read_clip(clip, 25)
        batch = ex2.preprocess(c.frames)
        cf = clip_features(ex2, clip, head.frames, motion=MotionEstimator(head.motion) if head.motion else None)
        window = head.inputs(ex2.dequantize(cf.feats), cf.motion)
        # One-frame invokes run on a one-thread interpreter whatever num_threads is (extractor.MIN_POOL_BATCH):
        # since issue 18, "2t single" measures what an Extractor(num_threads=2) does with one frame at a time.
        single = lambda e: [e.extract(batch[i : i + 1]) for i in range(25)]  # noqa: E731
        for e in (ex1, ex2):  # warm both batch sizes
            e.extract(batch), single(e)

        def bare_decode():
            cap = cv2.VideoCapture(str(clip))
            while cap.grab():
                pass
            cap.release()

        def read_all():
            cap = cv2.VideoCapture(str(clip))
            while cap.read()[0]:
                pass
            cap.release()

        row = {
            "decode_ms": _ms(lambda: read_clip(clip, 25), 3),
            "decode_convert_every_frame_ms": _ms(read_all, 3),
            "bare_decode_ms": _ms(bare_decode, 3),
            "preprocess_ms": _ms(lambda: ex2.preprocess(c.frames), 3),
            "extract_1t_single_ms": _ms(lambda: single(ex1), 2),
            "extract_1t_batched_ms": _ms(lambda: ex1.extract(batch), 2),
            "extract_2t_single_ms": _ms(lambda: single(ex2), 2),
            "extract_2t_batched_ms": _ms(lambda: ex2.extract(batch), 3),
            "head_ms": _ms(lambda: head.predict(window), 5),  # one window of the head's M (every stream it reads)
            "classify_ms": _ms(lambda: clf.classify(clip), 3),
        }
        row.update(window_floor(clip, clf))
        row["floor_ms"] = (
            row["bare_decode_ms"] + row["floor_extract_ms"] + row["floor_motion_ms"] + row["floor_head_ms"]
        )
        # The first head's floor (25 frames over the whole clip, one head invoke), single and batched.
        row["floor_25_ms"] = row["bare_decode_ms"] + row["extract_2t_single_ms"] + row["head_ms"]
        row["floor_25_batched_ms"] = row["bare_decode_ms"] + row["extract_2t_batched_ms"] + row["head_ms"]
        rows.append(row)
    for key in rows[0]:
        out[key] = statistics.median(r[key] for r in rows)
    out["classify_over_floor"] = statistics.median(r["classify_ms"] / r["floor_ms"] for r in rows)
    out["classify_over_floor_25"] = statistics.median(r["classify_ms"] / r["floor_25_ms"] for r in rows)
    out["decode_over_convert_every_frame"] = statistics.median(
        r["decode_ms"] / r["decode_convert_every_frame_ms"] for r in rows
    )
    out["decode_retrieve_selected_over_bare"] = statistics.median(r["decode_ms"] / r["bare_decode_ms"] for r in rows)
    out["batched_speedup_2t"] = out["extract_2t_single_ms"] / out["extract_2t_batched_ms"]
    out["threads_speedup_batched"] = out["extract_1t_batched_ms"] / out["extract_2t_batched_ms"]
    return out


def window_floor(clip: Path, clf: ClipClassifier) -> dict:
    """The bare work of ``classify`` on one clip: the extractor (2 threads, batched) on exactly the
    frames it extracts, the motion descriptors of those frames (flow from the frame before each),
    one head invoke per window. Decoding is left to the caller (bare decode of the whole clip)."""
    probs, _, cf = clf.window_probs(clip)
    every = read_clip(clip, None)
    frames = {int(i): f for i, f in zip(every.indices, every.frames)}
    wanted = [int(i) for i in cf.indices if int(i) in frames]
    batch = clf.extractor.preprocess([frames[i] for i in wanted])
    clf.extractor.extract(batch)  # warm this batch size
    row = {
        "frames_extracted": len(wanted),
        "windows": len(probs),
        "floor_extract_ms": _ms(lambda: clf.extractor.extract(batch), 3),
        "floor_motion_ms": 0.0,
    }
    if clf.motion is not None:
        greys = {i: clf.motion.grey(f) for i, f in frames.items()}
        row["floor_motion_ms"] = _ms(lambda: clip_motion(clf.motion, greys, np.array(wanted), greys=True), 3)
    window = np.zeros((clf.head.frames, clf.head.input_dim), np.float32)
    row["floor_head_ms"] = _ms(lambda: clf.head.predict(window), 5) * len(probs)
    return row


def reference_comparison(clips: list[Path], head_dir: Path, head_float: Path) -> dict:
    """3: ours (shipped head, 2 threads) vs the reference; label agreement with the same head."""
    ref = Reference(head_float)
    ours = load_classifier(head_dir, MNV2, threads=2)
    ours_same_head = make_interpreter(head_float, num_threads=1)
    ratios, agree, cosines = [], 0, []
    ex = ours.extractor
    for clip in clips:
        t_ref = _ms(lambda: ref.classify(clip), 2)
        t_ours = _ms(lambda: ours.classify(clip), 3)
        ratios.append(t_ref / t_ours)
        # Same head on our features: do both paths see the same thing?
        x = ex.dequantize(clip_features(ex, clip, 25).feats)[None]
        ours_same_head.set_tensor(ours_same_head.get_input_details()[0]["index"], x)
        ours_same_head.invoke()
        p = ours_same_head.get_tensor(ours_same_head.get_output_details()[0]["index"])[0]
        agree += int(p.argmax() == ref.classify(clip).argmax())
        # Same frames through both paths (OpenCV vs PIL resize): features should nearly coincide;
        # a channel swap would bring them to ~0.76-0.87.
        r = ref.features(clip)
        cosines.append(
            float(np.mean(np.sum(x[0] * r, 1) / (np.linalg.norm(x[0], axis=1) * np.linalg.norm(r, axis=1) + 1e-12)))
        )
    return {
        "speedup_over_reference": statistics.median(ratios),
        "min_speedup": min(ratios),
        "same_label_with_same_head": agree / len(clips),
        "feature_cosine_min": min(cosines),
        "clips": len(clips),
    }


def runtime_costs(head_file: Path, repeats: int = 20) -> dict:
    """4 (child side): extractor (1 thread, 1 frame) and head invoke cost in this interpreter's runtime."""
    name, _ = backend()
    rng = np.random.default_rng(0)
    out = {"runtime": name}
    for threads in (1, 2):
        it = make_interpreter(MNV2, num_threads=threads)
        i = it.get_input_details()[0]["index"]
        it.set_tensor(i, rng.integers(0, 256, (1, 224, 224, 3), dtype=np.uint8))
        it.invoke()
        out[f"extractor_full_{threads}t_ms"] = _ms(it.invoke, repeats)
    head = make_interpreter(head_file, num_threads=1)
    shape = head.get_input_details()[0]["shape"]
    head.set_tensor(head.get_input_details()[0]["index"], rng.random(shape, dtype=np.float32) * 3)
    head.invoke()
    out["head_ms"] = _ms(head.invoke, repeats)
    return out


def runtime_comparison(other_python: str | None, head_files: dict[str, Path]) -> dict:
    """4: the same measurements here and in another interpreter (e.g. a venv with tflite-runtime)."""
    result = {}
    for label, head_file in head_files.items():
        here = runtime_costs(head_file)
        row = {"here": here}
        if other_python:
            code = (
                f"import json,sys; sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r}); from "
                "tools.bench import runtime_costs; from pathlib import Path; "
                f"print(json.dumps(runtime_costs(Path({str(head_file)!r}))))"
            )
            proc = subprocess.run([other_python, "-c", code], capture_output=True, text=True, timeout=600)
            if proc.returncode == 0:
                there = json.loads(proc.stdout.strip().splitlines()[-1])
                row["other"] = there
                row["ratios_other_over_here"] = {k: there[k] / here[k] for k in here if k != "runtime"}
            else:
                row["other_error"] = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"
        result[label] = row
    return result


def _pct(values: list[float], q: float) -> float | None:
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * q))] if v else None


def clip_geometry(clip: Path) -> tuple[int, int, float]:
    cap = cv2.VideoCapture(str(clip))
    try:
        return (
            int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            cap.get(cv2.CAP_PROP_FPS) or 25.0,
        )
    finally:
        cap.release()


def daemon_sources(clip: Path) -> dict[str, tuple[dict, float, bool]]:
    """5: the sources the daemon is measured on, each in its own run: name -> (source config,
    frame interval s, live). Every one at the head's window (none set) and a 0.2 s hop, except
    ``file_window_2.5s``, the config of the first daemon's benchmark, kept for comparison. The pipes
    play the clip like a camera: ffmpeg paced at its rate (-re), looping, raw I420 on stdout (as
    ``tests/test_pipe.py`` does), at the clip's own rate and at 15 fps."""
    w, h, fps = clip_geometry(clip)
    src = f"-re -stream_loop -1 -i {shlex.quote(str(clip))} -an"

    def pipe(rate: float | None) -> dict:
        vf = f" -vf fps={rate:g}" if rate else ""
        return {
            "kind": "pipe",
            "uri": f"ffmpeg -hide_banner -nostdin -loglevel error {src}{vf} -f rawvideo -pix_fmt yuv420p -",
            "pixel_format": "yuv420p",
            "width": w,
            "height": h,
            "fps": rate or fps,
        }

    return {
        "file": ({"uri": str(clip), "hop": 0.2, "loop": True}, 1 / fps, False),
        "file_window_2.5s": ({"uri": str(clip), "window": 2.5, "hop": 0.5, "loop": True}, 1 / fps, False),
        f"pipe_{fps:g}fps": ({**pipe(None), "hop": 0.2}, 1 / fps, True),
        "pipe_15fps": ({**pipe(15), "hop": 0.2}, 1 / 15, True),
    }


def daemon_run(source: dict, seconds: float, head_dir: Path | None, frame_s: float, live: bool) -> dict:
    """Run `edgevid run` on one source and measure it from outside: capture -> publish latency
    against each window's floor (``latency.floor_ms``: the extractor, motion and head time of the
    frames the window still needed when its newest frame was captured), extractor runs per
    prediction, CPU, RSS. Goal for live sources: p50 <= one frame interval + 2x the floor's p50."""
    from tools.probe import DaemonProbe

    load_before = os.getloadavg()
    with (
        tempfile.TemporaryDirectory() as tmp,
        DaemonProbe(
            Path(tmp), [{"id": "bench", **source}], head=head_dir, env={"EDGEVID_MODEL_DIR": str(MNV2.parent)}
        ) as probe,
    ):
        probe.collect(min(10.0, seconds))  # warm-up
        warm = probe.sample()
        msgs = probe.collect(seconds)
        end = probe.sample()
    preds = [m for m in msgs if m["type"] == "prediction"]
    status = [m for m in msgs if m["type"] == "status"]
    src = status[-1]["sources"][0] if status else {}
    lat = [m["latency"]["capture_to_publish_ms"] for m in preds]
    floor = [m["latency"]["floor_ms"] for m in preds]
    wait = [m["latency"]["capture_to_publish_ms"] - m["latency"]["floor_ms"] for m in preds]
    steady = [m["new_frames"] for m in preds if m["seq"] > 1]
    cpu = end["cpu_s"] - warm["cpu_s"]
    out = {
        "source": {k: v for k, v in source.items() if k != "uri"},
        "live": live,
        "seconds": seconds,
        "predictions": len(preds),
        "window_s": src.get("window_s"),
        "hop_s": src.get("hop_s"),
        "frame_interval_ms": round(frame_s * 1e3, 3),
        "extractor_frames_per_prediction": statistics.mean(steady) if steady else None,
        "capture_to_publish_p50_ms": _pct(lat, 0.5),
        "capture_to_publish_p90_ms": _pct(lat, 0.9),
        "capture_to_publish_p99_ms": _pct(lat, 0.99),
        "floor_p50_ms": _pct(floor, 0.5),
        "floor_p90_ms": _pct(floor, 0.9),
        "wait_p50_ms": _pct(wait, 0.5),
        "wait_p90_ms": _pct(wait, 0.9),  # latency - floor, per window
        # Windows that waited more than half a frame interval beyond their floor: for a live source,
        # its last slot took the frame before the slot's instant and was settled by the next one.
        "waited_over_half_frame": sum(x > 500 * frame_s for x in wait) / max(1, len(wait)),
        "gaps": sum(m["gaps"] for m in preds),
        "skipped_windows": src.get("skipped_windows"),
        "dropped": src.get("dropped"),
        "cpu_s_per_prediction": cpu / max(1, len(preds)),
        "rss_mb_after_warmup": warm["rss_mb"],
        "rss_mb_at_end": end["rss_mb"],
        "threads": end["threads"],
        "fds": end["fds"],
        "load_avg_before": load_before,
        "load_avg_after": os.getloadavg(),
    }
    if live and preds:
        out["goal_p50_ms"] = frame_s * 1e3 + 2 * out["floor_p50_ms"]
        out["goal_met"] = out["capture_to_publish_p50_ms"] <= out["goal_p50_ms"]
    return out


def daemon_costs(clip: Path, seconds: float, head_dir: Path | None = None) -> dict:
    """5: the daemon on each of :func:`daemon_sources`, one run after the other."""
    result: dict = {"clip": clip.name, "window_frames": Head(head_dir or default_head_dir()).frames, "runs": {}}
    for name, (source, frame_s, live) in daemon_sources(clip).items():
        print(f"   {name} ...", flush=True)
        r = result["runs"][name] = daemon_run(source, seconds, head_dir, frame_s, live)
        if r["predictions"]:
            goal = f", goal p50 <= {r['goal_p50_ms']:.1f} ms: {'met' if r['goal_met'] else 'NOT met'}" if live else ""
            print(
                f"   {name}: window {r['window_s']} s, {r['predictions']} predictions; capture -> publish p50 / p90 "
                f"{r['capture_to_publish_p50_ms']:.1f} / {r['capture_to_publish_p90_ms']:.1f} ms, floor p50 "
                f"{r['floor_p50_ms']:.1f} ms "
                f"(latency / floor {r['capture_to_publish_p50_ms'] / r['floor_p50_ms']:.2f}x), wait p50 / p90 "
                f"{r['wait_p50_ms']:.1f} / {r['wait_p90_ms']:.1f} ms ({r['waited_over_half_frame']:.0%} of windows "
                f"waited over half a frame){goal}; load {r['load_avg_after'][0]:.2f}",
                flush=True,
            )
    return result


def _slot_frames(n: int, fps: float, slot_s: float) -> np.ndarray:
    """The decoded frame shown at each slot time over a clip of ``n`` frames (one per slot)."""
    return np.unique(np.minimum(np.floor(np.arange(0.0, n / fps, slot_s) * fps + 1e-6).astype(int), n - 1))


def motion_costs(clips: list[Path], specs: list[str], head_dir: Path) -> dict:
    """6: the motion stream's cost per sampled frame against the extractor's, in one run.

    classify: ``clip_features`` timings for the M slots of a clip (motion_ms vs extract_ms, both
    over the same sampled frames; motion includes shrinking the frame and its predecessor to grey).
    daemon: a source shrinks every decoded frame to grey (the next frame's predecessor) and the
    worker describes each sampled pair; per sampled frame that is one descriptor plus the grey
    images of the decoded frames per slot (fps x slot period), against the extractor run in the
    daemon's batches (2 threads, the daemon's batch size). The daemon's sampled frames are one per
    slot (the head's slot period), as are ``classify_slots``' (classify with a windowed head, the
    whole clip's slots in one call): what the rich descriptor's predecessor rule is built for."""
    from edgevid.motion import parse_spec

    head = Head(head_dir)
    ex2 = Extractor(MNV2, num_threads=2)
    slot_s = (head.manifest.timescale.window_s if head.manifest.timescale else 1.2) / head.frames
    out: dict = {"head": head.manifest.name, "head_motion": head.motion.id if head.motion else None, "specs": {}}
    # The head itself, one window of its real inputs (both streams when it reads motion).
    own = MotionEstimator(head.motion) if head.motion is not None else None
    head_ms = []
    for clip in clips:
        cf = clip_features(ex2, clip, head.frames, motion=own)
        x = head.inputs(ex2.dequantize(cf.feats), cf.motion)
        head.predict(x)
        head_ms.append(_ms(lambda: head.predict(x), 20))
    out["head_ms_per_window"] = statistics.median(head_ms)
    for text in specs:
        est = MotionEstimator(parse_spec(text))
        rows = []
        for clip in clips:
            clip_features(ex2, clip, head.frames, motion=est)  # warm
            runs = [clip_features(ex2, clip, head.frames, motion=est).timings for _ in range(3)]
            c = read_clip(clip, None)
            frames = c.frames
            # The daemon samples one frame per slot (and so does classify with a windowed head): the
            # frames nearest each slot time, as consecutive as the rich descriptor's predecessor rule.
            slots = _slot_frames(len(frames), c.fps or 30.0, slot_s)
            windowed = [clip_features(ex2, clip, None, indices_for=lambda n: slots, motion=est) for _ in range(3)]
            idx = slots
            per_decoded = len(frames) / max(1e-9, c.n_frames / (c.fps or 30.0)) * slot_s  # decoded frames per slot
            grey_ms = _ms(lambda: [est.grey(f) for f in frames[:10]], 3) / min(10, len(frames))
            greys = [est.grey(f) for f in frames]
            step = est.spec.step(c.fps)
            rich = est.spec.descriptor == "rich"

            def describe_all() -> None:
                """Each sampled frame's descriptor from its predecessors, as the daemon's worker does."""
                for i in idx:
                    p, p2 = predecessors(int(i), step)
                    est.describe(
                        greys[p] if p is not None else None, greys[i], greys[p2] if rich and p2 is not None else None
                    )

            describe_ms = _ms(describe_all, 3) / len(idx)
            batch = ex2.preprocess([frames[i] for i in idx[:BATCH]])
            extract_ms = _ms(lambda: ex2.extract(batch), 3) / len(batch)
            rows.append(
                {
                    "classify_motion_ms_per_frame": statistics.median(t.motion_ms for t in runs) / head.frames,
                    "classify_extract_ms_per_frame": statistics.median(t.extract_ms for t in runs) / head.frames,
                    "classify_slots_motion_ms_per_frame": statistics.median(w.timings.motion_ms for w in windowed)
                    / len(slots),
                    "classify_slots_extract_ms_per_frame": statistics.median(w.timings.extract_ms for w in windowed)
                    / len(slots),
                    "daemon_motion_ms_per_sampled_frame": describe_ms + grey_ms * max(1.0, per_decoded),
                    "daemon_extract_ms_per_frame": extract_ms,
                }
            )
        row = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        row["classify_motion_over_extract"] = statistics.median(
            r["classify_motion_ms_per_frame"] / r["classify_extract_ms_per_frame"] for r in rows
        )
        row["classify_slots_motion_over_extract"] = statistics.median(
            r["classify_slots_motion_ms_per_frame"] / r["classify_slots_extract_ms_per_frame"] for r in rows
        )
        row["daemon_motion_over_extract"] = statistics.median(
            r["daemon_motion_ms_per_sampled_frame"] / r["daemon_extract_ms_per_frame"] for r in rows
        )
        out["specs"][text] = row
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.split("\n")[0])
    p.add_argument("--clips", type=int, default=9)
    p.add_argument("--head", type=Path, default=None, help="head folder (default: the bundled head)")
    p.add_argument(
        "--reference-head",
        type=Path,
        default=Path("runs/jhmdb-split1/gru1280_float.tflite"),
        help="float GRU-1280 TFLite for the reference path (from tools.experiment)",
    )
    p.add_argument("--other-python", help="an interpreter with tflite-runtime installed, for the runtime comparison")
    p.add_argument("--daemon-seconds", type=float, default=60)
    p.add_argument(
        "--motion",
        default="dis_ultrafast-80x60,dis_ultrafast-160x120,dis_fast-160x120,farneback-80x60,farneback-160x120",
        help="motion streams to cost (6), comma-separated METHOD-WxH; empty: skip",
    )
    p.add_argument("--motion-only", action="store_true", help="run section 6 alone")
    p.add_argument("--daemon-only", action="store_true", help="run section 5 alone")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    args = p.parse_args(argv)
    head_dir = args.head or default_head_dir()
    clips = bench_clips(args.clips)
    results: dict = {"machine": {"cpus": os.cpu_count(), "runtime": backend()[0], "python": sys.version.split()[0]}}
    if args.motion_only:
        args.daemon_seconds = 0
    elif args.daemon_only:
        args.motion = ""
    else:
        run_sections_1_to_4(results, clips, head_dir, args)
    if args.daemon_seconds > 0:
        print(f"5. daemon for {args.daemon_seconds:g} s ...", flush=True)
        results["daemon"] = daemon_costs(clips[0], args.daemon_seconds, args.head)
    if args.motion:
        print("6. motion stream ...", flush=True)
        results["motion"] = motion_costs(clips, args.motion.split(","), head_dir)
    print(json.dumps(results, indent=1))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


def run_sections_1_to_4(results: dict, clips: list[Path], head_dir: Path, args: argparse.Namespace) -> None:
    print(f"1-2. stage costs on {len(clips)} clips ...", flush=True)
    results["stages"] = stage_costs(clips, head_dir)
    reference_head = args.reference_head
    if not reference_head.is_file():
        print(
            f"3. no trained reference head at {reference_head}: using an untrained GRU-1280 (timing only)", flush=True
        )
        reference_head = untrained_reference_head(Path(tempfile.mkdtemp()) / "gru1280_untrained.tflite")
        results["reference_head"] = "untrained GRU-1280 (timing only)"
    else:
        results["reference_head"] = str(reference_head)
    print("3. reference implementation ...", flush=True)
    results["reference"] = reference_comparison(clips, head_dir, reference_head)
    print("4. runtimes ...", flush=True)
    heads = {"shipped head": Path(head_dir) / "head.tflite", "GRU-1280 float": reference_head}
    results["runtimes"] = runtime_comparison(args.other_python, heads)


if __name__ == "__main__":
    sys.exit(main())
