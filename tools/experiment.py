"""One command for the whole experiment: features -> train heads -> evaluate -> convert -> report.

    python -m tools.experiment --dataset jhmdb --data ../shared/data/jhmdb \
        --splits ../shared/data/jhmdb_splits --split 1 --out runs/jhmdb-s1

``--export DIR`` also installs the chosen head (TFLite, labels, manifest, report, confusion matrix)
where ``edgevid classify`` finds it, and checks it there on the test clips end to end;
``--from-run RUN [RUN ...]`` does that for finished runs without training again, choosing over all
of them (one dataset split) by validation top-1. Both go through :func:`export_runs`;
``tools.collect`` puts runs side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import time
from pathlib import Path

# TensorFlow's C++ start-up chatter (oneDNN, CUDA, cpu_feature_guard) is not for users; set
# TF_CPP_MIN_LOG_LEVEL=0 to see it again. Set before anything imports TensorFlow.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np

from edgevid.errors import EdgevidError
from edgevid.extractor import Extractor
from edgevid.fingerprint import measure
from edgevid.head import apply_temperature
from edgevid.manifest import Calibration, ExtractorRef, FileRef, Manifest, TimeScale, sha256_file, write_manifest
from edgevid.motion import MotionSpec, parse_spec
from edgevid.store import DEFAULT_EXTRACTOR, EXTRACTORS, default_head_dir, extractor_path, write_atomic

from .calibrate import fit_calibration
from .convert import agreement, op_versions, run_tflite, runtime_used, to_tflite
from .datasets import Dataset, DatasetError, check_group_pattern, check_split, read_folders, read_jhmdb, read_ucf101
from .evaluate import evaluate, plot_confusion
from .features import (
    CacheWriteError,
    cache_path,
    extract_dataset,
    extract_motion,
    load_cached,
    load_motion,
    motion_cache_dir,
    view_flips,
    with_motion,
)
from .heads import SPECS
from .mirror import MirrorError, mirror_plan, parse_pairs, view_labels
from .timescale import duration_percentiles, durations, scores, seconds, window_set
from .train import Quant, predict_members, save_history, train_members, window_sampler

DATASET_ARGS = ("dataset", "data", "splits", "split", "val_seed", "group_pattern", "val_fraction", "test_fraction")


def load_dataset(args: argparse.Namespace) -> Dataset:
    common = {"val_fraction": args.val_fraction, "seed": args.val_seed, "group_pattern": args.group_pattern}
    if args.dataset == "jhmdb":
        return read_jhmdb(args.data, args.splits, args.split, **common)
    if args.dataset == "ucf101":
        return read_ucf101(args.data, args.splits, args.split, **common)
    return read_folders(args.data, test_fraction=args.test_fraction, splits_dir=args.splits, **common)


def groups_needed(args: argparse.Namespace) -> tuple[str, int, bool]:
    """What a class needs for this split, in the user's terms: (text, groups, counted in the train list only)."""
    groups = (
        "groups (files matching --group-pattern alike)"
        if args.group_pattern
        else "groups (clips of one source video or actor)"
    )
    if args.dataset == "folders" and not args.splits:
        return (
            f"each class needs at least 3 {groups}: one each for train, validation (--val-fraction "
            f"{args.val_fraction:g}) "
            f"and test (--test-fraction {args.test_fraction:g})",
            3,
            False,
        )
    return (
        f"each class needs at least 2 {groups} in its train list: one for train, one for validation "
        f"(--val-fraction {args.val_fraction:g})",
        2,
        True,
    )


def _fmt(x: float) -> str:
    return f"{100 * x:.1f}"


def run(args: argparse.Namespace) -> dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ds = load_dataset(args)
    print(ds.summary())
    for p in ds.problems:
        print(f"  problem: {p}")
    check_group_pattern(ds, args.group_pattern)
    check_split(ds, *groups_needed(args))
    plan = mirror_plan(ds.classes, off=args.mirror == "off" or args.no_augment, pairs=args.mirror_pairs)
    print(plan.describe())
    extractor = Extractor(args.extractor, num_threads=1)
    ext_name = next((e.name for e in EXTRACTORS.values() if extractor.sha256 in e.sha256), Path(args.extractor).stem)
    cache = Path(args.cache or f"cache/features/{extractor.id}")
    quant = Quant(extractor.scale, extractor.zero_point)
    m = args.frames

    t0 = time.perf_counter()
    crops = max(SPECS[h].crops for h in args.heads)
    # Augmentation views are only needed for the clips heads train on, and only if some view trains.
    views = crops if not args.no_augment and (crops or not plan.off) else -1
    failures = extract_dataset(
        [i.path for i in ds.train + ds.val],
        ds.root,
        cache,
        Path(args.extractor),
        m=m,
        crops=views,
        workers=args.workers,
    )
    # Test clips are only evaluated: no mirrored view (half the extractor work of a training clip).
    failures |= extract_dataset(
        [i.path for i in ds.test], ds.root, cache, Path(args.extractor), m=m, crops=-1, workers=args.workers
    )
    feature_seconds = time.perf_counter() - t0
    feature_seconds_total = _add_extraction_time(out, feature_seconds)
    if failures:
        print(f"  {len(failures)} clips failed (each reported above; listed in the report)")

    motion = parse_spec(args.motion) if any(SPECS[h].motion for h in args.heads) else None
    if motion is not None:
        t0 = time.perf_counter()
        mdir = motion_cache_dir(cache, motion)
        failures |= extract_motion(
            [i.path for i in ds.train + ds.val + ds.test], ds.root, mdir, motion, m=m, workers=args.workers
        )
        feature_seconds += time.perf_counter() - t0

    def load(split, views):
        kept = [
            (load_cached(cache_path(cache, ds.root, i.path), i.path, views), i.label)
            for i in split
            if str(i.path) not in failures
        ]
        return [c for c, _ in kept], np.array([y for _, y in kept])

    def fused(clips, split):
        """The clips as a head reading both streams sees them (float rows: features, then motion)."""
        items = [i for i in split if str(i.path) not in failures]
        return [
            with_motion(c, load_motion(cache_path(mdir, ds.root, i.path), i.path), quant)
            for c, i in zip(clips, items, strict=True)
        ]

    (tr, y_tr), (va, y_va), (te, y_te) = load(ds.train, views), load(ds.val, views), load(ds.test, -1)
    # The label each augmentation view of each training clip trains (a mirror image: its class's mirror class).
    labels_tr = view_labels(
        y_tr, plan, [view_flips(i.path, ds.root, crops) for i in ds.train if str(i.path) not in failures]
    )
    # The time scale: whole clips (window = their median duration) or fixed windows of --window s.
    fit = args.fit
    window_s = args.window if fit == "windows" else float(np.median(durations(tr)))
    timescale = {"fit": fit, "window_s": window_s, "clip_duration_s": duration_percentiles(tr)}
    sampler = window_sampler(m, window_s) if fit == "windows" else None
    streams: dict[bool, dict] = {}

    def inputs(with_motion_stream: bool) -> dict:
        """Training clips and the validation/test windows a head of one stream set reads."""
        if with_motion_stream not in streams:
            clips = (
                (tr, va, te) if not with_motion_stream else (fused(tr, ds.train), fused(va, ds.val), fused(te, ds.test))
            )
            # What `edgevid classify` feeds the head: one whole-clip sample, or every window of the clip
            # (its probabilities averaged); validation (early stopping, choice) and test are scored that way.
            ws_va = window_set(clips[1], y_va, m, window_s if fit == "windows" else None)
            ws_te = window_set(clips[2], y_te, m, window_s if fit == "windows" else None)
            # What the daemon sees: the windows of window_s inside each test clip.
            ws_daemon = ws_te if fit == "windows" else window_set(clips[2], y_te, m, window_s)
            streams[with_motion_stream] = {
                "train": clips[0],
                "ws_va": ws_va,
                "ws_te": ws_te,
                "ws_daemon": ws_daemon,
                "x_va": quant(ws_va.x),
                "x_te": quant(ws_te.x),
                "x_daemon": quant(ws_daemon.x),
            }
        return streams[with_motion_stream]

    ws_daemon = inputs(False)["ws_daemon"]
    n_cls = len(ds.classes)
    results: dict = {
        "dataset": ds.name,
        "classes": ds.classes,
        "extractor": {"name": ext_name, "sha256": extractor.sha256},
        "frames": m,
        "timescale": timescale,
        "daemon_hop_s": ws_daemon.hop_s,
        "motion": motion.model_dump() if motion is not None else None,
        "mirror": plan.as_dict() | {"line": plan.describe()},
        "counts": {"train": len(tr), "val": len(va), "test": len(te)},
        "problems": ds.problems,
        "failed_clips": failures,
        "feature_seconds": feature_seconds,
        "feature_seconds_total": feature_seconds_total,
        "seed": args.seed,
        "dataset_args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k in DATASET_ARGS},
        "heads": {},
        "runtime": runtime_used(),  # what the conversion check (and --export's classify check) ran on
        "command": " ".join([Path(sys.executable).name, "-m", "tools.experiment", *sys.argv[1:]]),
    }
    n_agree = min(100, len(inputs(False)["x_va"]))
    for name in args.heads:
        spec = SPECS[name]
        d = inputs(spec.motion)
        train_clips, ws_va, ws_te, ws_daemon = d["train"], d["ws_va"], d["ws_te"], d["ws_daemon"]
        x_va, x_te, x_daemon = d["x_va"], d["x_te"], d["x_daemon"]
        dim = x_va.shape[-1]
        print(f"training {name} on {len(tr)} clips ({len(va)} val)")
        models, histories, norm = train_members(
            spec,
            train_clips,
            y_tr,
            x_va,
            ws_va.y_rows,
            n_cls,
            m,
            quant,
            seed=args.seed,
            max_epochs=args.max_epochs,
            patience=args.patience,
            min_epochs=args.min_epochs,
            augment=not args.no_augment,
            view_labels=labels_tr[:, : 1 + spec.crops],
            sampler=sampler,
        )
        save_history(out / f"history_{name}.json", {"members": histories})
        keras_te = ws_te.clip_probs(predict_members(models, x_te))
        keras_va = predict_members(models, x_va)
        val_top1 = float((ws_va.clip_probs(keras_va).argmax(1) == y_va).mean())
        keras_va = keras_va[:n_agree]
        row: dict = {
            "description": spec.description,
            "streams": ["appearance", "motion"] if spec.motion else ["appearance"],
            "params": int(sum(mdl.count_params() for mdl in models)),
            "epochs": [len(h["epochs"]) for h in histories],
            "train_seconds": sum(h["seconds"] for h in histories),
            "val_top1": val_top1,
            "keras": evaluate(keras_te, y_te, ds.classes),
            "keras_daemon_test": scores(predict_members(models, x_daemon), ws_daemon),
            "variants": {},
        }
        for variant, quantize in (("float", False), ("dynamic_int8", True)):
            blob = to_tflite(models, spec, m, dim, n_cls, quantize=quantize, norm=norm)
            rows_te, latency = run_tflite(blob, x_te)
            probs_va, _ = run_tflite(blob, x_va[:n_agree])
            rows_daemon = rows_te if ws_daemon is ws_te else run_tflite(blob, x_daemon)[0]
            # Calibrated scores: a temperature fitted on the validation windows (the daemon's) of this
            # variant; it travels in the manifest and the runtime head applies it, so test is scored with it.
            rows_va = run_tflite(blob, x_va)[0]
            real = ws_va.real if ws_va.real.any() else np.ones(len(rows_va), bool)
            fit = fit_calibration(
                rows_va[real],
                ws_va.y_rows[real],
                fit_on=f"{ds.name} validation windows ({int(real.sum())})",
                clips=ws_va.clip[real],
            )
            if fit.calibration is None:
                print(f"warning: {name} {variant}: calibration {fit.describe()}", file=sys.stderr)
            else:
                rows_te = apply_temperature(rows_te, fit.calibration.temperature)
                rows_daemon = apply_temperature(rows_daemon, fit.calibration.temperature)
            write_atomic(out / f"{name}_{variant}.tflite", blob)
            row["variants"][variant] = {
                "bytes": len(blob),
                "latency_ms": latency,
                "ops": op_versions(blob),
                "calibration": fit.calibration.model_dump() if fit.calibration else None,
                "calibration_check": fit.as_dict(),
                "min_score": fit.min_score,
                "agreement_val": agreement(keras_va, probs_va),
                "test": evaluate(ws_te.clip_probs(rows_te), y_te, ds.classes),
                "daemon_test": scores(rows_daemon, ws_daemon),
            }
            print(
                f"  {name} {variant}: top1 {_fmt(row['variants'][variant]['test']['top1'])} "
                f"top5 {_fmt(row['variants'][variant]['test']['top5'])} {len(blob) / 1e6:.1f} MB {latency:.1f} ms; "
                + (f"T = {fit.calibration.temperature}" if fit.calibration else "calibration not written")
                + f", min_score {fit.min_score}"
            )
        shipped = row["variants"]["dynamic_int8"]["test"]
        plot_confusion(
            shipped["confusion"], ds.classes, out / f"confusion_{name}.png", f"{name} (TFLite int8) on {ds.name} test"
        )
        results["heads"][name] = row
        write_atomic(out / "report.json", json.dumps(results, indent=1).encode())
    write_atomic(out / "report.md", render_markdown(results).encode())
    return results


def _add_extraction_time(out: Path, seconds: float) -> float:
    """Feature extraction seconds over every run into ``out`` (a resumed run adds to them)."""
    ledger = out / "extraction_seconds.json"
    try:
        runs = json.loads(ledger.read_text())["runs"]
    except (OSError, ValueError, KeyError):
        runs = []
    runs.append(round(seconds, 3))
    write_atomic(ledger, json.dumps({"runs": runs}).encode())
    return float(sum(runs))


def render_markdown(r: dict) -> str:
    lines = [
        f"# {r['dataset']}: heads on {r['extractor']['name']} features",
        "",
        f"Command: `{r['command']}`",
        "",
        f"Clips: {r['counts']['train']} train / {r['counts']['val']} val / {r['counts']['test']} test; "
        f"M = {r['frames']} frames; {len(r['failed_clips'])} failed clips; {len(r['problems'])} dataset problems "
        "(listed below).",
        "",
        *_extraction_lines(r),
        *([f"Augmentation {r['mirror']['line']}.", ""] if r.get("mirror") else []),
        *_timescale_lines(r),
        "| head | params | variant | top-1 % (95 % CI) | top-5 % | macro-F1 | size MB | latency ms/clip | top-1 agree "
        "vs Keras | max abs diff |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, h in r["heads"].items():
        k = h["keras"]
        lines.append(
            f"| {name} | {h['params']:,} | Keras | {_fmt(k['top1'])} "
            f"({_fmt(k['top1_ci95'][0])}–{_fmt(k['top1_ci95'][1])}) | "
            f"{_fmt(k['top5'])} | {k['macro_f1']:.3f} | | | | |"
        )
        for v, d in h["variants"].items():
            t = d["test"]
            lines.append(
                f"| {name} | | TFLite {v} | {_fmt(t['top1'])} ({_fmt(t['top1_ci95'][0])}–{_fmt(t['top1_ci95'][1])}) | "
                f"{_fmt(t['top5'])} | {t['macro_f1']:.3f} | {d['bytes'] / 1e6:.2f} | {d['latency_ms']:.1f} | "
                f"{_fmt(d['agreement_val']['top1_agreement'])} % of {d['agreement_val']['n']} val | "
                f"{d['agreement_val']['max_abs_diff']:.1e} |"
            )
    lines += [
        "",
        "Validation top-1 (Keras, clips as `edgevid classify` sees them; chooses the default head): "
        + ", ".join(f"{n} {_fmt(h['val_top1'])} %" for n, h in r["heads"].items()),
    ]
    lines += [
        "",
        "Calibration (TFLite dynamic_int8; a temperature on a search bound or that does not lower the held-out ECE is "
        "not written; min_score: the score that keeps 95 % of correct held-out validation predictions): "
        + "; ".join(f"{n} {_calibration_line(h['variants']['dynamic_int8'])}" for n, h in r["heads"].items()),
    ]
    lines += [
        "",
        "Latency: median per clip, ai-edge-litert, 1 thread, this machine. Agreement: TFLite vs Keras on validation "
        "clips.",
        "",
    ]
    for name, h in r["heads"].items():
        per = h["variants"]["dynamic_int8"]["test"]["per_class"]
        lines += [
            f"## {name} (TFLite dynamic_int8) per class",
            "",
            "| class | precision | recall | F1 | support |",
            "|---|---|---|---|---|",
        ]
        for c in r["classes"]:
            p = per[c]
            lines.append(
                f"| {c} | {p['precision']:.2f} | {p['recall']:.2f} | {p['f1-score']:.2f} | {int(p['support'])} |"
            )
        lines.append("")
    if r["problems"] or r["failed_clips"]:
        lines += (
            ["## Left out or remapped", ""]
            + [f"- {p}" for p in r["problems"]]
            + [f"- failed: {e}" for e in r["failed_clips"].values()]
        )
    return "\n".join(lines) + "\n"


def _calibration_line(v: dict) -> str:
    c = v.get("calibration_check")
    if c is None:  # a run from before the check
        return f"T = {v['calibration']['temperature']}" if v.get("calibration") else "none"
    if c["written"]:
        return (
            f"T = {c['temperature']} (held-out ECE {c['ece_before']:.3f} -> {c['ece_after_held_out']:.3f}), "
            f"min_score {c['min_score']}"
        )
    return f"not written ({c['refused']}), min_score {c['min_score']} on raw scores"


def _extraction_lines(r: dict) -> list[str]:
    total = r.get("feature_seconds_total")
    if total is None:
        return []
    return [
        f"Feature extraction: {total:.0f} s over every run into this folder ({r['feature_seconds']:.0f} s this run).",
        "",
    ]


def _timescale_lines(r: dict) -> list[str]:
    ts = r.get("timescale")
    if not ts:
        return []
    d = ts["clip_duration_s"]
    how = (
        "whole clips (jittered M-frame samples); window = the training clips' median duration"
        if ts["fit"] == "clips"
        else f"fixed {ts['window_s']:.3f} s windows at random positions in the training clips (`window_indices`; clips "
        "shorter than the window: whole); test top-1 below = `edgevid classify`: the mean of the head's probabilities "
        "over the clip's windows (`clip_windows`; a clip shorter than the window: one window over the whole clip)"
    )
    lines = [
        f"Time scale: fit on {how}. Window {ts['window_s']:.3f} s; training clip durations p10 {d['p10']} / p50 "
        f"{d['p50']} / p90 {d['p90']} s.",
        "",
    ]
    rows = [(n, h["variants"]["dynamic_int8"].get("daemon_test")) for n, h in r["heads"].items()]
    rows = [(n, s) for n, s in rows if s]
    if rows:
        lines.append(
            f"Daemon view (TFLite int8, test): every {ts['window_s']:.3f} s window inside a test clip, "
            f"{r['daemon_hop_s']:.3f} s apart: "
            + "; ".join(
                f"{n} window top-1 {_fmt(s['window_top1']) if s['window_top1'] is not None else '–'} % over "
                f"{s['windows']} windows, {s['clips_without_window']} of {s['clips']} clips too short for one window"
                for n, s in rows
            )
        )
        lines.append("")
    return lines


def export_head(results: dict, run_dir: Path, name: str, target: Path, extractor_path: Path) -> Manifest:
    """Install a trained head where edgevid finds it: TFLite + labels + manifest + report + confusion."""
    target.mkdir(parents=True, exist_ok=True)
    blob = (run_dir / f"{name}_dynamic_int8.tflite").read_bytes()
    write_atomic(target / "head.tflite", blob)
    write_atomic(target / "labels.txt", ("\n".join(results["classes"]) + "\n").encode())
    write_atomic(target / "report.md", (run_dir / "report.md").read_bytes())
    write_atomic(target / "report.json", (run_dir / "report.json").read_bytes())
    write_atomic(target / "confusion.png", (run_dir / f"confusion_{name}.png").read_bytes())
    extractor = Extractor(extractor_path, num_threads=1)
    known = next((e for e in EXTRACTORS.values() if extractor.sha256 in e.sha256), None)
    test = results["heads"][name]["variants"]["dynamic_int8"]["test"]
    calibration = results["heads"][name]["variants"]["dynamic_int8"].get("calibration")
    manifest = Manifest(
        name=f"{results['dataset']}-{name}",
        head=FileRef(file="head.tflite", sha256=sha256_file(target / "head.tflite")),
        labels=FileRef(file="labels.txt", sha256=sha256_file(target / "labels.txt")),
        frames=results["frames"],
        feature_dim=extractor.feature_dim,
        timescale=TimeScale(**results["timescale"]) if "timescale" in results else None,
        # The extractor file the head was trained and checked on, and its features on the probe
        # images: another file (a re-conversion of the same checkpoint) is accepted by those.
        extractor=ExtractorRef(
            name=known.name if known else extractor_path.stem,
            sha256=[extractor.sha256],
            feature_tensor=extractor.feature_tensor,
            feature_dim=extractor.feature_dim,
            fingerprint=measure(extractor),
        ),
        calibration=Calibration(**calibration) if calibration else None,
        min_score=results["heads"][name]["variants"]["dynamic_int8"].get("min_score"),
        # The runtime the conversion check and the classify check ran on (name and version), not a hope.
        runtimes=[results.get("runtime") or runtime_used()],
        streams=results["heads"][name].get("streams", ["appearance"]),
        motion=MotionSpec(**results["motion"]) if "motion" in results["heads"][name].get("streams", []) else None,
        trained_on=f"{results['dataset']} ({results['counts']['train']} train / {results['counts']['val']} val clips)",
        report="report.md",
        metrics={
            "top1": test["top1"],
            "top5": test["top5"],
            "macro_f1": test["macro_f1"],
            "test_clips": test["n"],
            **_daemon_metrics(results["heads"][name]["variants"]["dynamic_int8"].get("daemon_test")),
        },
    )
    write_manifest(target, manifest)
    return manifest


def _daemon_metrics(s: dict | None) -> dict[str, float]:
    if not s or s["window_top1"] is None:
        return {}
    return {"window_top1": s["window_top1"], "test_windows": s["windows"]}


def check_exported(target: Path, extractor_path: Path, ds: Dataset, expected_top1: float) -> float:
    """Run the installed head through edgevid's own classify path on the test clips."""
    from edgevid.pipeline import load_classifier

    clf = load_classifier(target, extractor_path, threads=os.cpu_count() or 1)
    correct = 0
    for item in ds.test:
        r = clf.classify(item.path, 1)
        correct += r.ok and r.top[0].label == ds.classes[item.label]
    top1 = correct / len(ds.test)
    print(
        f"edgevid classify with the installed head: top-1 {_fmt(top1)} % on {len(ds.test)} test clips (report: "
        f"{_fmt(expected_top1)} %)"
    )
    return top1


class ExportError(Exception):
    """An --export from finished runs that cannot be done, in one line (nothing was written)."""


def dataset_options(report: dict, run_dir: Path, given: argparse.Namespace) -> argparse.Namespace:
    """The dataset options a run was made with: recorded in its report, else (an older run) ``given``'s."""
    saved = report.get("dataset_args")
    opts = {k: getattr(given, k) for k in DATASET_ARGS}
    if saved is None and not (given.dataset and given.data and (given.splits or given.dataset == "folders")):
        raise ExportError(
            f"{run_dir / 'report.json'} records no dataset options (an older run): "
            "pass --dataset, --data, --splits and --split as it was run"
        )
    opts.update(saved or {})
    for k in ("data", "splits"):  # resolved, so one folder named two ways is one split
        opts[k] = Path(opts[k]).resolve() if opts[k] is not None else None
    return argparse.Namespace(**opts)


def choose_head(reports: dict[Path, dict], head: str = "best") -> tuple[Path, str]:
    """The (run, head) to install: ``head`` by name or any head ('best'), the highest validation
    top-1 over the runs (a tie: the head with fewer parameters). The test set chooses nothing."""
    candidates = [
        (run, name, h) for run, r in reports.items() for name, h in r["heads"].items() if head in ("best", name)
    ]
    if not candidates:
        have = sorted({name for r in reports.values() for name in r["heads"]})
        raise ExportError(f"no head {head!r} in {', '.join(map(str, reports))} (they have {', '.join(have) or 'none'})")
    run, name, _ = max(candidates, key=lambda c: (c[2]["val_top1"], -c[2]["params"]))
    return run, name


def export_runs(
    runs: list[Path], target: Path, extractor_file: Path, head: str = "best", given: argparse.Namespace | None = None
) -> int:
    """Install the chosen head of finished runs in ``target`` (:func:`choose_head`) and check it there
    through ``edgevid classify``'s path on the test clips: 0, or 1 when it misses the report's top-1.

    The runs must share one dataset split (the same validation clips, else their scores do not
    compare) and the chosen run's extractor must be ``extractor_file``: both raise
    :class:`ExportError` before anything is written. ``given``: the command line's dataset options,
    for runs that recorded none.
    """
    reports = {}
    for run_dir in runs:
        try:
            reports[run_dir] = json.loads((run_dir / "report.json").read_text())
        except (OSError, ValueError) as exc:
            raise ExportError(f"{run_dir / 'report.json'}: not a finished run ({exc.__class__.__name__})") from None
    given = given or argparse.Namespace(**dict.fromkeys(DATASET_ARGS))
    options = {run_dir: dataset_options(r, run_dir, given) for run_dir, r in reports.items()}
    splits = {run_dir: {"dataset": r["dataset"], **vars(options[run_dir])} for run_dir, r in reports.items()}
    differ = [k for k in splits[runs[0]] if len({str(s[k]) for s in splits.values()}) > 1]
    if differ:
        raise ExportError(
            "the runs are not of one dataset split, so their validation scores do not compare: "
            + "; ".join(f"{d}: " + ", ".join(f"{k} {s[k]}" for k in differ) for d, s in splits.items())
        )
    run_dir, name = choose_head(reports, head)
    results = reports[run_dir]
    if sha256_file(extractor_file) != results["extractor"]["sha256"]:
        raise ExportError(
            f"{extractor_file}: not the extractor {run_dir} was trained on ({results['extractor']['name']}); "
            "pass that one with --extractor"
        )
    print(
        f"exporting {name} from {run_dir} (validation top-1 {_fmt(results['heads'][name]['val_top1'])} %) to {target}"
    )
    if not (run_dir / "report.md").is_file():  # a run stopped after this head: its report from what it finished
        write_atomic(run_dir / "report.md", render_markdown(results).encode())
    manifest = export_head(results, run_dir, name, target, extractor_file)
    got = check_exported(target, extractor_file, load_dataset(options[run_dir]), manifest.metrics["top1"])
    if abs(got - manifest.metrics["top1"]) > 1e-9:
        print("error: the installed head does not reproduce the report's accuracy", file=sys.stderr)
        return 1
    return 0


EPILOG = """examples:
  # your own clips, one folder per class (clips of one actor/scene share a name prefix)
  python -m tools.experiment --dataset folders --data my_clips --group-pattern '^[^_]+' \\
      --out runs/my-clips --export my-head
  edgevid classify --head my-head some_clip.mp4
  # install the best-validation head of finished runs (one dataset split) without training again
  python -m tools.experiment --from-run runs/my-clips runs/my-clips-seed1 --export my-head
  # a given head of a finished run
  python -m tools.experiment --from-run runs/my-clips --head gru128n --export my-head
"""


def _regex(text: str) -> str:
    try:
        re.compile(text)
    except re.error as exc:
        raise argparse.ArgumentTypeError(f"not a regular expression ({exc})") from None
    return text


def _pairs(text: str) -> list[tuple[str, str]]:
    try:
        return parse_pairs(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _abandon(message: str, code: int) -> int:
    """Leave at once when a run stops mid-extraction: the interpreter's exit hook joins the process
    pool's manager thread, which can wait forever on workers it saw die (under load, Ctrl-C hung
    past the 120 s bound in a CI dry run). The cache is complete entry by entry (atomic writes)."""
    print(message, file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m tools.experiment",
        description=__doc__.split("\n")[0],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--dataset", choices=["jhmdb", "ucf101", "folders"], help="layout of --data: folders = any <class>/<clip> tree"
    )
    p.add_argument("--data", type=Path, help="dataset root (one folder per class)")
    p.add_argument(
        "--splits",
        type=Path,
        help="split files folder: jhmdb/ucf101 official lists; folders: train.txt and test.txt "
        "listing <class>/<file> (default for folders: a seeded split by groups)",
    )
    p.add_argument("--split", type=int, default=1, help="official split number (jhmdb, ucf101; default 1)")
    p.add_argument(
        "--group-pattern",
        type=_regex,
        help="regex on the file name whose match (or first group) names a clip's group "
        "(actor/scene); groups never straddle train, validation and test (default: the dataset's convention, else the "
        "file)",
    )
    p.add_argument(
        "--test-fraction",
        type=float,
        default=0.28,
        help="share of clips held out for test, folders without --splits (default 0.28)",
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.14,
        help="share of clips held out of train for validation, by whole groups (default 0.14)",
    )
    p.add_argument(
        "--model-dir", type=Path, help="where `edgevid models fetch` installed the extractor (default: edgevid's)"
    )
    p.add_argument(
        "--extractor", type=Path, help="extractor .tflite (default: the one `edgevid models fetch` installed)"
    )
    p.add_argument("--frames", type=int, default=25, help="frames per sample, M (default 25)")
    p.add_argument(
        "--fit",
        choices=["clips", "windows"],
        default="clips",
        help="train on whole clips, or on fixed --window s windows cut from them (the daemon's scale)",
    )
    p.add_argument("--window", type=seconds, help="window length in seconds for --fit windows (e.g. 1.0 or 4/3)")
    p.add_argument(
        "--heads",
        type=lambda s: s.split(","),
        default=["frame", "gru128", "gru128n", "gru128n_x5", "gru1280", "lstm1280"],
        help=f"comma-separated, from {', '.join(SPECS)}",
    )
    p.add_argument(
        "--motion",
        default="dis_ultrafast-160x120",
        help="motion stream for heads that read it (*_m, *_late): METHOD-WxH, METHOD dis_ultrafast, dis_fast or "
        "farneback; METHOD-WxH-rich100ms: the rich descriptor (3x3 grid, moving box, predecessor 0.1 s back)",
    )
    p.add_argument("--cache", type=Path, help="feature cache folder (default cache/features/<extractor id>)")
    p.add_argument("--out", type=Path, help="run folder for the report, histories and converted heads")
    p.add_argument("--seed", type=int, default=0, help="training seed (members use seed, seed+1, ...; default 0)")
    p.add_argument(
        "--val-seed",
        type=int,
        default=0,
        help="seed of the validation (and folders test) split, kept fixed when comparing training seeds",
    )
    p.add_argument("--max-epochs", type=int, default=80, help="epochs at most (default 80)")
    p.add_argument(
        "--min-epochs", type=int, default=10, help="the kept weights come from this epoch or later (default 10)"
    )
    p.add_argument(
        "--patience",
        type=int,
        default=12,
        help="stop after this many epochs without a better validation loss (default 12)",
    )
    p.add_argument("--workers", type=int, default=None, help="feature extraction processes (default: one per core)")
    p.add_argument("--no-augment", action="store_true", help="train on the deploy sample only (the study's setting)")
    p.add_argument(
        "--mirror",
        choices=["auto", "off"],
        default="auto",
        help="mirrored training views: auto (default) labels a class's mirror image with its mirror class: itself, "
        "or the twin whose name differs only by a direction word (swipe_left <-> swipe_right; a direction class "
        "without a twin is not mirrored); off: no mirrored views",
    )
    p.add_argument(
        "--mirror-pairs",
        type=_pairs,
        metavar="A=B,...",
        help="classes whose mirror images are each other (e.g. wave_in=wave_out), added to the twins found by name",
    )
    p.add_argument(
        "--export", type=Path, help="install the --head in this folder (pass it to `edgevid classify --head`)"
    )
    p.add_argument("--force", action="store_true", help="let --export replace the head bundled with edgevid")
    p.add_argument(
        "--from-run",
        type=Path,
        nargs="+",
        metavar="RUN",
        help="finished run folders (one dataset split) to --export from, without training again; a run that "
        "recorded no dataset options takes them from --dataset, --data, --splits, --split",
    )
    p.add_argument(
        "--head",
        "--default-head",
        dest="head",
        default="best",
        help="head to --export: a name, or 'best' (default), the highest validation top-1 over the runs "
        "(a tie: the one with fewer parameters)",
    )
    args = p.parse_args(argv)
    if args.from_run:
        if not args.export:
            p.error("--from-run needs --export DIR")
    else:
        if not (args.dataset and args.data and args.out):
            p.error("--dataset, --data and --out are required (or --from-run RUN [RUN ...] --export DIR)")
        unknown = [h for h in args.heads if h not in SPECS]
        if unknown:
            p.error(f"unknown head(s) {', '.join(unknown)}; choose from {', '.join(SPECS)}")
        if args.export and args.head not in ("best", *args.heads):
            p.error(f"--head {args.head} is not one of --heads {','.join(args.heads)}")
        if args.mirror == "off" and args.mirror_pairs:
            p.error("--mirror-pairs needs mirrored views: drop --mirror off")
        if args.fit == "windows" and not args.window:
            p.error("--fit windows needs --window SECONDS")
        if args.dataset != "folders" and not args.splits:
            p.error(f"--splits is required for --dataset {args.dataset}")
        for name in ("test_fraction", "val_fraction"):
            if not 0 < getattr(args, name) < 0.5:
                p.error(f"--{name.replace('_', '-')} must be between 0 and 0.5, got {getattr(args, name)}")
    if args.export and args.export.resolve() == default_head_dir().resolve() and not args.force:
        p.error(
            f"--export {args.export} would replace the head bundled with edgevid; export to a folder of your own "
            "(edgevid classify --head DIR), or add --force"
        )
    if args.extractor is None:
        args.extractor = extractor_path(DEFAULT_EXTRACTOR, args.model_dir)
        if not args.extractor.is_file():
            p.error(f"{args.extractor}: no extractor installed; run `edgevid models fetch` (or pass --extractor FILE)")
    # SIGTERM (systemd, a scheduler) stops the run like Ctrl-C: workers ended, cache kept.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        if not args.from_run:
            run(args)
        if args.export:
            return export_runs(args.from_run or [args.out], args.export, args.extractor, args.head, args)
    except ExportError as exc:
        p.error(str(exc))
    except (DatasetError, MirrorError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (CacheWriteError, EdgevidError) as exc:  # a full disk, an unreadable extractor, most clips failing
        return _abandon(f"error: {exc}", 1)
    except KeyboardInterrupt:
        return _abandon("interrupted: the clips extracted so far are cached; run again to resume", 130)
    return 0


if __name__ == "__main__":
    sys.exit(main())
