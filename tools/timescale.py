"""The head's time scale, measured: whole clips vs fixed windows, the window length, and M.

The daemon classifies sliding windows of ``window_s`` seconds (M slots each, by
:func:`edgevid.sampling.window_indices`); a head trained on whole clips of varying length was never
shown a fixed scale. This study trains heads both ways on cached features and scores every
candidate the way the daemon sees a clip: the windows of :func:`edgevid.sampling.window_starts`
inside it, ``grid_hop`` apart (~0.2 s, on the slot grid). Choices are made on validation clips only.

    python -m tools.timescale --data ../shared/data/jhmdb --splits ../shared/data/jhmdb_splits --split 1 \\
        --out runs/timescale --report experiments/jhmdb-split1-timescale
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from edgevid.sampling import clip_windows, grid_hop, sample_indices

from .features import CachedClip


#: Extractor runs per second of video cap out at the frame rate (a slot on an already-extracted frame is free).
def cost_per_s(m: int, window_s: float, fps: float) -> float:
    """Extractor runs per second of video per source at M slots per ``window_s``: min(M / window_s, fps)."""
    return min(m / window_s, fps)


def seconds(text: str) -> float:
    """A duration: ``1.0``, or an exact fraction such as ``4/3`` (40 frames at 30 fps)."""
    return float(Fraction(text))


def durations(clips: list[CachedClip]) -> np.ndarray:
    return np.array([c.duration for c in clips])


def duration_percentiles(clips: list[CachedClip]) -> dict[str, float]:
    d = durations(clips)
    return {f"p{q}": round(float(np.percentile(d, q)), 3) for q in (10, 50, 90)}


@dataclass
class WindowSet:
    """Windows of a set of clips: features ``x`` uint8 [N, m, D], the clip each came from, and
    whether it is a real window (False: a clip shorter than the window, taken whole)."""

    x: np.ndarray
    clip: np.ndarray
    real: np.ndarray
    y: np.ndarray  # label per clip
    window_s: float | None
    hop_s: float | None

    @property
    def y_rows(self) -> np.ndarray:
        return self.y[self.clip]

    def clip_probs(self, probs: np.ndarray, real_only: bool = False) -> np.ndarray:
        """Per-clip mean of the window probabilities ``[n_clips, C]`` (what ``classify`` answers);
        ``real_only``: real windows only (rows of clips without one are NaN)."""
        out = np.full((len(self.y), probs.shape[1]), np.nan, np.float32)
        for i in range(len(self.y)):
            rows = (self.clip == i) & (self.real if real_only else True)
            if rows.any():
                out[i] = np.mean(probs[rows], axis=0)  # float32, as edgevid.pipeline averages
        return out


def window_set(
    clips: list[CachedClip], y: np.ndarray, m: int, window_s: float | None, hop_s: float | None = None
) -> WindowSet:
    """``window_s=None``: one whole-clip sample per clip (a whole-clip head's classify). Otherwise
    every window :func:`edgevid.sampling.clip_windows` gives (the daemon's windows; the whole clip
    for a clip shorter than the window), exact from the cache (it holds every frame of the clip)."""
    xs, owner, real = [], [], []
    for i, c in enumerate(clips):
        if window_s is None:
            idx, ok = sample_indices(c.n_frames, m)[None], True
        else:
            idx, ok = clip_windows(c.n_frames, c.fps, window_s, m, hop_s, c.times)
        for w in idx:
            xs.append(c.take(w))
            owner.append(i)
            real.append(ok)
    hop = None if window_s is None else (grid_hop(window_s, m) if hop_s is None else hop_s)
    return WindowSet(np.stack(xs), np.array(owner), np.array(real), np.asarray(y), window_s, hop)


def scores(probs: np.ndarray, ws: WindowSet) -> dict:
    """Daemon view: top-1 of every real window, clips with no window; per clip: mean of the window
    probabilities (clips shorter than the window: the whole clip) and over real windows only."""
    real = ws.real
    win_ok = probs[real].argmax(1) == ws.y_rows[real]
    per_clip = ws.clip_probs(probs)
    with_window = np.unique(ws.clip[real])
    real_clip = ws.clip_probs(probs, real_only=True)[with_window]
    return {
        "window_top1": float(win_ok.mean()) if real.any() else None,
        "windows": int(real.sum()),
        "clips": int(len(ws.y)),
        "clips_without_window": int(len(ws.y) - len(with_window)),
        "clip_top1": float((per_clip.argmax(1) == ws.y).mean()),
        "clip_top1_with_window": float((real_clip.argmax(1) == ws.y[with_window]).mean()) if len(with_window) else None,
    }


@dataclass
class Candidate:
    fit: str  # "clips" or "windows"
    window_s: float
    m: int

    @property
    def key(self) -> str:
        return f"{self.fit}-W{self.window_s:.3f}-M{self.m}"


def run_candidate(
    cand: Candidate, spec, data: dict, quant, classes: int, seeds: list[int], max_epochs: int, log=print
) -> dict:
    """Train ``spec`` (single members, one per seed) for a candidate; score each seed on val and test."""
    from .train import predict_members, train_members, window_sampler

    (tr, y_tr), (va, y_va), (te, y_te) = data["train"], data["val"], data["test"]
    m, w = cand.m, cand.window_s
    sampler = window_sampler(m, w) if cand.fit == "windows" else None
    # Early stopping reads what classify will see: whole clips, or every window of the clip.
    stop = window_set(va, y_va, m, None if cand.fit == "clips" else w)
    views = {
        split: {"daemon": window_set(clips, y, m, w), "whole": window_set(clips, y, m, None)}
        for split, (clips, y) in (("val", (va, y_va)), ("test", (te, y_te)))
    }
    per_seed = []
    for seed in seeds:
        t0 = time.perf_counter()
        models, hist, _ = train_members(
            spec,
            tr,
            y_tr,
            quant(stop.x),
            stop.y_rows,
            classes,
            m,
            quant,
            seed=seed,
            max_epochs=max_epochs,
            sampler=sampler,
            view_labels=data["view_labels"],
            log=lambda *_: None,
        )
        row = {"seed": seed, "epochs": len(hist[0]["epochs"]), "train_seconds": time.perf_counter() - t0}
        for split, v in views.items():
            daemon = scores(predict_members(models, quant(v["daemon"].x)), v["daemon"])
            whole = scores(predict_members(models, quant(v["whole"].x)), v["whole"])
            daemon["clip_top1_whole"] = whole["clip_top1"]
            # What `edgevid classify` answers with this head: whole clip, or the mean over its windows.
            daemon["classify_top1"] = whole["clip_top1"] if cand.fit == "clips" else daemon["clip_top1"]
            row[split] = daemon
        per_seed.append(row)
        log(
            f"  {cand.key} seed {seed}: val window {row['val']['window_top1']:.3f} clip {row['val']['clip_top1']:.3f} "
            f"classify {row['val']['classify_top1']:.3f} | test window {row['test']['window_top1']:.3f} "
            f"classify {row['test']['classify_top1']:.3f} ({row['epochs']} epochs, {row['train_seconds']:.0f} s)"
        )
    mean = {
        split: {
            k: float(np.mean([r[split][k] for r in per_seed]))
            for k in per_seed[0][split]
            if per_seed[0][split][k] is not None
        }
        for split in ("val", "test")
    }
    return {
        "fit": cand.fit,
        "window_s": w,
        "m": m,
        "hop_s": views["val"]["daemon"].hop_s,
        "cost_per_s": cost_per_s(m, w, data["fps"]),
        "seeds": per_seed,
        "mean": mean,
    }


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def render(r: dict) -> str:
    def table(keys: list[str]) -> list[str]:
        out = [
            "| candidate | fit | window s | M | cost runs/s | hop s | val clip top-1 | val window top-1 "
            "| val classify top-1 | test window top-1 | test clip top-1 | test classify top-1 | windows (val / test) "
            "| clips without a window (val / test) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for k in keys:
            c = r["candidates"][k]
            v, t = c["mean"]["val"], c["mean"]["test"]
            out.append(
                f"| {k} | {c['fit']} | {c['window_s']:.3f} | {c['m']} | {c['cost_per_s']:.1f} | {c['hop_s']:.3f} | "
                f"{_pct(v['clip_top1'])} | {_pct(v.get('window_top1'))} | {_pct(v['classify_top1'])} | "
                f"{_pct(t.get('window_top1'))} | {_pct(t['clip_top1'])} | {_pct(t['classify_top1'])} | "
                f"{v['windows']:.0f} / {t['windows']:.0f} | {v['clips_without_window']:.0f} / "
                f"{t['clips_without_window']:.0f} |"
            )
        return out

    lines = [
        f"# {r['dataset']}: the head's time scale ({r['head']}, seeds {r['seeds']})",
        "",
        f"Command: `{r['command']}`",
        "",
        f"Clips: {r['counts']['train']} train / {r['counts']['val']} val / {r['counts']['test']} test, {r['fps']:g} "
        "fps. "
        f"Training clip durations (s): p10 {r['train_duration_s']['p10']}, p50 {r['train_duration_s']['p50']}, "
        f"p90 {r['train_duration_s']['p90']}.",
        "",
        "Scores are means over the seeds (Keras). *window top-1*: every window the daemon would publish inside a clip "
        "(`window_starts`, hop on the slot grid ≈ 0.2 s, `window_indices`); clips shorter than the window give none. "
        "*clip top-1*: mean of a clip's window probabilities (a clip shorter than the window: one window over the "
        "whole clip). "
        "*classify top-1*: what `edgevid classify` answers with that head (clips fit: one whole-clip sample; windows "
        "fit: clip top-1). "
        "Cost: extractor runs per second of video per source, min(M / window, fps).",
        "",
        "## 1. Time scale (M = %d), chosen by validation clip top-1" % r["stage1_m"],
        "",
    ]
    lines += table(r["stage1"])
    lines += [
        "",
        f"Chosen: **{r['chosen_scale']}** ({r['chosen_scale_reason']})",
        "",
        f"## 2. M at the chosen window, chosen by validation window top-1 among cost ≤ {r['max_cost']:g} runs/s",
        "",
    ]
    lines += table(r["stage2"])
    lines += [
        "",
        f"Chosen: **{r['chosen']}** ({r['chosen_reason']})",
        "",
        "## Per seed",
        "",
        "| candidate | seed | epochs | val window | val clip | val classify | test window | test clip "
        "| test classify |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for k, c in r["candidates"].items():
        for s in c["seeds"]:
            lines.append(
                f"| {k} | {s['seed']} | {s['epochs']} | {_pct(s['val']['window_top1'])} | "
                f"{_pct(s['val']['clip_top1'])} | {_pct(s['val']['classify_top1'])} | "
                f"{_pct(s['test']['window_top1'])} | {_pct(s['test']['clip_top1'])} | "
                f"{_pct(s['test']['classify_top1'])} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from edgevid.extractor import Extractor

    from .datasets import read_jhmdb
    from .features import cache_path, extract_dataset, load_cached
    from .heads import SPECS
    from .mirror import mirror_plan, view_labels
    from .train import Quant

    shared = Path(os.environ.get("EDGEVID_SHARED", "../shared"))
    p = argparse.ArgumentParser(prog="python -m tools.timescale", description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, required=True, help="JHMDB root (one folder per class)")
    p.add_argument("--splits", type=Path, required=True)
    p.add_argument("--split", type=int, default=1)
    p.add_argument("--extractor", type=Path, default=shared / "models/mobilenet_v2_1.0_224_quant.tflite")
    p.add_argument("--cache", type=Path)
    p.add_argument("--head", default="gru128n", help="single-member head spec for the sweep")
    p.add_argument(
        "--windows",
        type=lambda s: [seconds(x) for x in s.split(",")],
        default=[0.5, 0.8, 1.0, 4 / 3],
        help="window lengths (s) for the windows fit, e.g. 0.5,0.8,1,4/3",
    )
    p.add_argument("--frames", type=int, default=25, help="M for stage 1")
    p.add_argument("--sweep-frames", type=lambda s: [int(x) for x in s.split(",")], default=[8, 12, 16, 25])
    p.add_argument(
        "--max-cost", type=float, default=10.0, help="extractor runs per second of video the default may cost"
    )
    p.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0])
    p.add_argument("--max-epochs", type=int, default=80)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument(
        "--resume", action="store_true", help="reuse candidates already in OUT/timescale.json (same head and seeds)"
    )
    p.add_argument(
        "--report", type=Path, help="also write REPORT.json and REPORT.md (e.g. experiments/jhmdb-split1-timescale)"
    )
    args = p.parse_args(argv)

    ds = read_jhmdb(args.data, args.splits, args.split, seed=0)
    print(ds.summary())
    extractor = Extractor(args.extractor, num_threads=1)
    cache = Path(args.cache or f"cache/features/{extractor.id}")
    quant = Quant(extractor.scale, extractor.zero_point)
    failures = extract_dataset(
        [i.path for i in ds.train + ds.val + ds.test], ds.root, cache, args.extractor, workers=args.workers
    )
    if failures:
        print(f"error: {len(failures)} clips failed: {failures}", file=sys.stderr)
        return 1

    def load(split):
        return [load_cached(cache_path(cache, ds.root, i.path), i.path) for i in split], np.array(
            [i.label for i in split]
        )

    data = {"train": load(ds.train), "val": load(ds.val), "test": load(ds.test)}
    fps_all = {c.fps for part in ("train", "val", "test") for c in data[part][0]}
    if len(fps_all) != 1 or not all(c.complete for part in ("train", "val", "test") for c in data[part][0]):
        print(
            f"error: the study needs constant-fps clips with every frame cached (fps {sorted(fps_all)})",
            file=sys.stderr,
        )
        return 1
    data["fps"] = fps_all.pop()
    # The mirrored view (the only one this cache holds) trains each class's mirror class (tools.mirror).
    data["view_labels"] = view_labels(data["train"][1], mirror_plan(ds.classes), [[True]] * len(ds.train))
    spec = SPECS[args.head]
    train_d = duration_percentiles(data["train"][0])
    median = float(np.median(durations(data["train"][0])))
    r: dict = {
        "dataset": ds.name,
        "head": args.head,
        "seeds": args.seeds,
        "fps": data["fps"],
        "counts": {k: len(data[k][0]) for k in ("train", "val", "test")},
        "train_duration_s": train_d,
        "train_median_duration_s": median,
        "stage1_m": args.frames,
        "max_cost": args.max_cost,
        "candidates": {},
        "command": " ".join(["python", "-m", "tools.timescale", *(argv if argv is not None else sys.argv[1:])]),
    }
    n_cls = len(ds.classes)
    previous = args.out / "timescale.json"
    if args.resume and previous.is_file():
        old = json.loads(previous.read_text())
        if old.get("head") == args.head and old.get("seeds") == args.seeds:
            r["candidates"] = old["candidates"]
            print(f"resuming: {len(r['candidates'])} candidates from {previous}")

    def do(c: Candidate) -> str:
        if c.key not in r["candidates"]:
            r["candidates"][c.key] = run_candidate(c, spec, data, quant, n_cls, args.seeds, args.max_epochs)
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "timescale.json").write_text(json.dumps(r, indent=1))
        return c.key

    stage1 = [do(Candidate("clips", median, args.frames))] + [
        do(Candidate("windows", w, args.frames)) for w in args.windows
    ]
    best = max(stage1, key=lambda k: r["candidates"][k]["mean"]["val"]["clip_top1"])
    b = r["candidates"][best]
    r.update(
        stage1=stage1,
        chosen_scale=best,
        chosen_scale_reason=f"highest validation clip top-1, {_pct(b['mean']['val']['clip_top1'])} %",
    )
    stage2 = [do(Candidate(b["fit"], b["window_s"], m)) for m in args.sweep_frames]
    affordable = [k for k in stage2 if r["candidates"][k]["cost_per_s"] <= args.max_cost + 1e-9]
    ref = r["candidates"][do(Candidate(b["fit"], b["window_s"], 25))]["mean"]
    if affordable:
        pick = max(
            affordable, key=lambda k: (r["candidates"][k]["mean"]["val"]["window_top1"], -r["candidates"][k]["m"])
        )
        c = r["candidates"][pick]["mean"]
        reason = (
            f"best validation window top-1 ({_pct(c['val']['window_top1'])} %) among M with cost ≤ {args.max_cost:g}; "
            f"M = 25: {_pct(ref['val']['window_top1'])} % (val), {_pct(ref['test']['window_top1'])} % (test) vs "
            f"{_pct(c['test']['window_top1'])} % (test)"
        )
    else:
        pick, reason = best, f"no M meets cost ≤ {args.max_cost:g}"
    r.update(stage2=stage2, chosen=pick, chosen_reason=reason)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "timescale.json").write_text(json.dumps(r, indent=1))
    (args.out / "timescale.md").write_text(render(r))
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.with_suffix(".json").write_text(json.dumps(r, indent=1))
        args.report.with_suffix(".md").write_text(render(r))
    print(render(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
