"""Calibrated scores and "no known action": a temperature fitted on validation windows, and how
well a score threshold (a source's ``min_score``) rejects actions the head does not know.

    python -m tools.calibrate --out experiments/jhmdb-split1-calibration --write-manifest models

1. The head's raw probabilities on every validation window (the daemon's windows of the head's
   time scale, through ``ClipClassifier.window_probs``: the device's own feature path); a
   temperature T minimizing their negative log-likelihood; expected calibration error (ECE, 15
   bins) before and after, on validation and on test. A T on the search bound, fitted on an
   all-correct validation, or that does not lower the held-out ECE (cross-validated over clips
   when validation is small) is refused: reported, never written (``--write-manifest`` exits 1).
2. Unknown actions: the windows of clips whose actions JHMDB does not have (``ucf101_sample``
   classes without a JHMDB counterpart, all ``kinetics_sample`` clips) against the JHMDB test
   windows. The threshold is chosen on validation (the calibrated score that keeps 95 % of the
   correct validation predictions) and reported on test: correct predictions kept, unknown windows
   rejected. The threshold that keeps exactly 95 % of correct *test* predictions is reported beside
   it (the issue's definition; never used to choose anything).

``tools.experiment`` fits the temperature of every head it trains with :func:`fit_calibration`,
so an exported head carries one.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgevid.head import apply_temperature
from edgevid.manifest import Calibration, load_manifest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGEVID_SHARED", ROOT.parent / "shared"))

#: UCF101 sample classes with a JHMDB counterpart, left out of the unknowns:
#: BaseballPitch (throw, swing_baseball), Basketball (shoot_ball), LongJump (run, jump),
#: WalkingWithDog (walk).
UCF_KNOWN = {"BaseballPitch", "Basketball", "LongJump", "WalkingWithDog"}
#: What the kinetics_sample clips show (looked at; none is a JHMDB action).
KINETICS = {
    "abseiling_k400.mp4": "abseiling",
    "dAeUFSdYG1I_000010_000020.mp4": "bungee jumping",
    "demo.mp4": "arm wrestling",
    "ehLnj7pXnYE_000027_000037.mp4": "arm wrestling",
}


def ece(probs: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error: the mean |accuracy - confidence| of the top-1 over equal-width
    confidence bins, weighted by how many predictions fall in each."""
    conf = probs.max(1)
    correct = probs.argmax(1) == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            total += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(total)


def nll(probs: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np.maximum(probs[np.arange(len(y)), y], 1e-12))))


#: The temperature search, in log T: a fit on either end is no fit (T = 0.0498 on an all-correct
#: validation makes a wrong prediction score 0.996; T = 20.09 flattens every score to about 1/classes).
LOG_T_BOUNDS = (-3.0, 3.0)
#: Validation with fewer clips than this is too small to fit on and judge on the same windows: the
#: temperature is judged cross-validated over its clips.
SMALL_VALIDATION_CLIPS = 100
#: The share of correct held-out predictions the recommended min_score keeps.
KEEP = 0.95


def fit_temperature(probs: np.ndarray, y: np.ndarray) -> float:
    """The T minimizing the negative log-likelihood of ``apply_temperature(probs, T)`` (bounded
    search over log T in :data:`LOG_T_BOUNDS`)."""
    from scipy.optimize import minimize_scalar

    res = minimize_scalar(
        lambda lt: nll(apply_temperature(probs, float(np.exp(lt))), y),
        bounds=LOG_T_BOUNDS,
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(res.x))


def on_bound(t: float, tolerance: float = 0.1) -> bool:
    """The fitted T sits at an end of the search (within ``tolerance`` in log T, 10 %: the likelihood
    is nearly flat there, so the search stops just short of it): the data asked for more."""
    return min(abs(np.log(t) - b) for b in LOG_T_BOUNDS) < tolerance


@dataclass
class CalibrationFit:
    """A temperature fit, judged on held-out windows: ``calibration`` is None when it is refused
    (``refused`` says why); ``min_score`` is chosen on the held-out scores either way."""

    temperature: float  # fitted on every validation window (what would be written)
    calibration: Calibration | None
    refused: str | None
    ece_before: float
    ece_after: float  # on held-out windows: cross-validated (small validation) or the fit's own
    cross_validated: int  # folds (0: judged on the windows it was fitted on)
    min_score: float | None  # keeps KEEP of the correct held-out predictions (calibrated scores if written, else raw)
    min_score_on: str

    def as_dict(self) -> dict:
        return {
            "temperature": round(self.temperature, 4),
            "written": self.calibration is not None,
            "refused": self.refused,
            "ece_before": round(self.ece_before, 4),
            "ece_after_held_out": round(self.ece_after, 4),
            "cross_validated_folds": self.cross_validated,
            "min_score": self.min_score,
            "min_score_on": self.min_score_on,
        }

    def describe(self) -> str:
        how = (
            f"{self.cross_validated}-fold cross-validated over clips"
            if self.cross_validated
            else "on the fitted windows"
        )
        head = (
            f"T = {self.calibration.temperature} (ECE {self.ece_before:.3f} -> {self.ece_after:.3f} held out, {how})"
            if self.calibration
            else f"not written: {self.refused}"
        )
        return head + (
            f"; min_score {self.min_score} ({self.min_score_on})"
            if self.min_score is not None
            else "; no min_score (no correct prediction)"
        )


def held_out_probs(raw: np.ndarray, y: np.ndarray, clips: np.ndarray, folds: int = 5) -> tuple[np.ndarray, int]:
    """Calibrated probabilities of each window by a temperature fitted without its clip's windows
    (``folds`` folds over the clips): (probs, folds used)."""
    ids = np.unique(clips)
    k = min(folds, len(ids))
    order = np.random.default_rng(0).permutation(ids)
    out = np.empty_like(raw, dtype=np.float32)
    for f in range(k):
        held = np.isin(clips, order[f::k])
        out[held] = apply_temperature(raw[held], fit_temperature(raw[~held], y[~held]))
    return out, k


def floor2(x: float) -> float:
    return float(np.floor(x * 100 + 1e-9) / 100)


def fit_calibration(
    raw_val: np.ndarray, y_val: np.ndarray, fit_on: str, clips: np.ndarray | None = None
) -> CalibrationFit:
    """A manifest's calibration from a head's raw probabilities on validation windows (``clips``:
    the clip each window comes from), refused when the temperature lands on a search bound or makes
    the held-out ECE no better; and the min_score that keeps 95 % of the correct held-out predictions."""
    clips = np.arange(len(y_val)) if clips is None else np.asarray(clips)
    t = fit_temperature(raw_val, y_val)
    small = len(np.unique(clips)) < SMALL_VALIDATION_CLIPS
    held, folds = (
        held_out_probs(raw_val, y_val, clips)
        if small and len(np.unique(clips)) >= 2
        else (apply_temperature(raw_val, t), 0)
    )
    before, after = ece(raw_val, y_val), ece(held, y_val)
    refused = None
    if (raw_val.argmax(1) == y_val).all():
        refused = (
            f"every validation window is predicted right ({len(y_val)}), so nothing says how wrong predictions score "
            f"(the fit gives T = {t:.4g}: a wrong prediction would score near 1)"
        )
    elif on_bound(t):
        lo, hi = np.exp(LOG_T_BOUNDS)
        refused = f"the temperature lands on its search bound (T = {t:.4g}, bounds {lo:.4g}..{hi:.4g}): " + (
            "validation is all correct or nearly, so nothing says how wrong predictions score"
            if t < 1
            else "the scores carry almost no information (every score would be about 1/classes)"
        )
    elif after >= before:
        refused = f"it makes the held-out ECE worse ({before:.4f} -> {after:.4f})"
    cal = (
        None
        if refused
        else Calibration(
            temperature=round(t, 4),
            fit_on=fit_on + (f", judged {folds}-fold cross-validated" if folds else ""),
            ece_before=round(before, 4),
            ece_after=round(after, 4),
        )
    )
    scores = held if cal else raw_val
    correct = scores.argmax(1) == y_val
    min_score = floor2(keep_threshold(scores.max(1)[correct], KEEP)) if correct.any() else None
    on = (
        f"keeps {KEEP:.0%} of {int(correct.sum())} correct held-out validation windows' "
        f"{'calibrated' if cal else 'raw'} scores"
    )
    return CalibrationFit(t, cal, refused, before, after, folds, min_score, on)


def keep_threshold(scores: np.ndarray, keep: float = 0.95) -> float:
    """The highest threshold that keeps at least ``keep`` of ``scores`` (score >= threshold)."""
    s = np.sort(scores)
    return float(s[int(np.floor((1 - keep) * len(s)))])


def rejection(thr: float, known: dict, unknown: np.ndarray) -> dict:
    """At threshold ``thr``: correct known-class predictions kept, all known windows kept, unknowns rejected."""
    correct = known["conf"][known["correct"]]
    return {
        "threshold": round(thr, 4),
        "correct_known_kept": float((correct >= thr).mean()),
        "known_windows_kept": float((known["conf"] >= thr).mean()),
        "unknown_rejected": float((unknown < thr).mean()),
    }


# -- running the head over clips -----------------------------------------------------------------------
def clip_windows_probs(clf, paths: list[Path]) -> tuple[list[np.ndarray], list[bool]]:
    """Raw (uncalibrated) probabilities of each clip's windows, the device's feature path."""
    saved, clf.head.temperature = clf.head.temperature, None
    try:
        out, real = [], []
        for p in paths:
            probs, is_real, _ = clf.window_probs(p)
            out.append(probs)
            real.append(is_real)
        return out, real
    finally:
        clf.head.temperature = saved


def stack_windows(
    per_clip: list[np.ndarray], real: list[bool], y: list[int] | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """The real windows of all clips (what the daemon publishes) and their labels."""
    rows = [p for p, r in zip(per_clip, real) if r]
    ys = None if y is None else np.concatenate([[yy] * len(p) for p, r, yy in zip(per_clip, real, y) if r])
    return np.concatenate(rows), ys


def unknown_clips(shared: Path) -> list[tuple[Path, str]]:
    ucf = [
        (p, p.parent.name)
        for p in sorted((shared / "data" / "ucf101_sample").glob("*/*.avi"))
        if p.parent.name not in UCF_KNOWN
    ]
    kin = [(shared / "data" / "kinetics_sample" / n, lab) for n, lab in sorted(KINETICS.items())]
    return ucf + [k for k in kin if k[0].exists()]


def run(args: argparse.Namespace) -> dict:
    from edgevid.extractor import Extractor
    from edgevid.head import Head
    from edgevid.pipeline import ClipClassifier
    from edgevid.store import default_head_dir, extractor_path

    from .datasets import read_jhmdb

    head_dir = args.head or default_head_dir()
    head = Head(head_dir, num_threads=args.threads)
    ext = Extractor(
        args.extractor or extractor_path(head.manifest.extractor.name, args.model_dir), num_threads=args.threads
    )
    clf = ClipClassifier(ext, head)
    if clf.window_s is None:
        raise SystemExit(
            f"{head_dir}: a whole-clip head has no windows to calibrate on; this tool needs a head fitted on windows"
        )
    ds = read_jhmdb(args.data, args.splits, args.split, seed=args.seed)
    index = {c: i for i, c in enumerate(head.labels)}
    t0 = time.perf_counter()
    sets = {}
    for name, items in (("val", ds.val), ("test", ds.test)):
        print(f"{name}: {len(items)} clips ...", file=sys.stderr, flush=True)
        per_clip, real = clip_windows_probs(clf, [i.path for i in items])
        y_clip = [index[ds.classes[i.label]] for i in items]
        x, y = stack_windows(per_clip, real, y_clip)
        clip_of = np.concatenate([[k] * len(p) for k, (p, r) in enumerate(zip(per_clip, real)) if r])
        sets[name] = {
            "clip_of": clip_of,
            "raw": x,
            "y": y,
            "clips": len(items),
            "clips_with_window": int(sum(real)),
            "per_clip": per_clip,
            "y_clip": np.array(y_clip),
        }
    unk = unknown_clips(args.shared)
    print(f"unknown: {len(unk)} clips ...", file=sys.stderr, flush=True)
    unk_probs, unk_real = clip_windows_probs(clf, [p for p, _ in unk])
    unk_x, _ = stack_windows(unk_probs, unk_real)
    seconds = time.perf_counter() - t0

    val, test = sets["val"], sets["test"]
    fit = fit_calibration(
        val["raw"],
        val["y"],
        fit_on=f"{ds.name} validation windows ({len(val['y'])} windows of {val['clips_with_window']} clips)",
        clips=val["clip_of"],
    )
    cal = fit.calibration
    t = cal.temperature if cal else None  # refused: the scores stay raw (and are reported so)
    out: dict = {
        "command": "python -m tools.calibrate " + shlex.join(sys.argv[1:] if args.argv is None else args.argv),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "head": {
            "dir": str(head_dir),
            "name": head.manifest.name,
            "sha256": head.manifest.head.sha256[:12],
            "window_s": clf.window_s,
            "frames": head.frames,
        },
        "dataset": ds.name,
        "seconds": round(seconds, 1),
        "calibration": cal.model_dump() if cal else None,
        "calibration_check": fit.as_dict(),
        "windows": {
            k: {"windows": int(len(v["y"])), "clips": v["clips"], "clips_with_window": v["clips_with_window"]}
            for k, v in sets.items()
        },
    }
    for name, s in sets.items():
        cal_p = apply_temperature(s["raw"], t)
        out[name] = {
            "top1": float((s["raw"].argmax(1) == s["y"]).mean()),
            "ece_before": ece(s["raw"], s["y"]),
            "ece_after": ece(cal_p, s["y"]),
            "nll_before": nll(s["raw"], s["y"]),
            "nll_after": nll(cal_p, s["y"]),
            "mean_confidence_before": float(s["raw"].max(1).mean()),
            "mean_confidence_after": float(cal_p.max(1).mean()),
        }
        s["conf"], s["correct"] = cal_p.max(1), cal_p.argmax(1) == s["y"]
        # what `edgevid classify` answers (the mean over a clip's windows), without and with T
        raw_clip = np.array([p.mean(0).argmax() for p in s["per_clip"]])
        cal_clip = np.array([apply_temperature(p, t).mean(0).argmax() for p in s["per_clip"]])
        out[name].update(
            {
                "classify_top1_before": float((raw_clip == s["y_clip"]).mean()),
                "classify_top1_after": float((cal_clip == s["y_clip"]).mean()),
                "classify_answers_changed": int((raw_clip != cal_clip).sum()),
                "window_top1_changed": int((s["raw"].argmax(1) != cal_p.argmax(1)).sum()),
            }
        )
    unk_conf = apply_temperature(unk_x, t).max(1)
    thr_val = keep_threshold(val["conf"][val["correct"]], 0.95)
    thr_test = keep_threshold(test["conf"][test["correct"]], 0.95)
    out["unknown"] = {
        "clips": [
            {"clip": str(p.relative_to(args.shared)), "action": lab, "windows": int(len(w)) if r else 0}
            for (p, lab), w, r in zip(unk, unk_probs, unk_real)
        ],
        "windows": int(len(unk_x)),
        "mean_score": float(unk_conf.mean()),
        "known_test_mean_score": float(test["conf"].mean()),
        "at_validation_threshold": rejection(thr_val, test, unk_conf),
        "at_test_threshold_issue_definition": rejection(thr_test, test, unk_conf),
        "sweep": [rejection(x, test, unk_conf) for x in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)],
    }
    out["recommended_min_score"] = round(thr_val, 2)
    out["held_out_min_score"] = fit.min_score
    return out


def render(r: dict) -> str:
    def p(x):
        return f"{100 * x:.1f}"

    c, u = r["calibration"], r["unknown"]
    what = (
        f"Temperature T = {c['temperature']} fitted on {c['fit_on']}: scores are softmax(log p / T)."
        if c
        else f"No temperature: {r['calibration_check']['refused']} (the scores below are raw)."
    )
    lines = [
        f"# Calibration and unknown actions: {r['head']['name']} ({r['head']['sha256']})",
        "",
        f"Command: `{r['command']}` ({r['date']}, {r['seconds']} s)",
        "",
        what,
        "",
        "| split | windows | top-1 % | ECE before | ECE after | NLL before | NLL after | mean score before | after |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in ("val", "test"):
        s = r[name]
        lines.append(
            f"| {name} | {r['windows'][name]['windows']} | {p(s['top1'])} | {s['ece_before']:.3f} | "
            f"{s['ece_after']:.3f} | {s['nll_before']:.3f} | {s['nll_after']:.3f} | "
            f"{s['mean_confidence_before']:.3f} | {s['mean_confidence_after']:.3f} |"
        )
    lines += [
        "",
        "`classify` (mean over a clip's windows) top-1 without / with T: "
        + "; ".join(
            f"{n} {p(r[n]['classify_top1_before'])} / {p(r[n]['classify_top1_after'])} % "
            f"({r[n]['classify_answers_changed']} clips "
            f"and {r[n]['window_top1_changed']} windows change their top-1)"
            for n in ("val", "test")
        ),
    ]
    v, o = u["at_validation_threshold"], u["at_test_threshold_issue_definition"]
    lines += [
        "",
        f"Unknown actions: {u['windows']} windows of {len(u['clips'])} clips "
        f"({', '.join(sorted({x['action'] for x in u['clips']}))}); mean calibrated top score {u['mean_score']:.3f} "
        f"vs {u['known_test_mean_score']:.3f} on JHMDB test windows.",
        "",
        "| threshold (min_score) | chosen on | correct test predictions kept % | all test windows kept % | unknown "
        "windows rejected % |",
        "|---|---|---|---|---|",
        f"| {v['threshold']} | validation (keeps 95 % of correct val) | {p(v['correct_known_kept'])} | "
        f"{p(v['known_windows_kept'])} | {p(v['unknown_rejected'])} |",
        f"| {o['threshold']} | test (keeps 95 % of correct test; report only) | {p(o['correct_known_kept'])} | "
        f"{p(o['known_windows_kept'])} | {p(o['unknown_rejected'])} |",
    ]
    for s in u["sweep"]:
        lines.append(
            f"| {s['threshold']} | sweep | {p(s['correct_known_kept'])} | {p(s['known_windows_kept'])} | "
            f"{p(s['unknown_rejected'])} |"
        )
    return "\n".join(lines) + "\n"


class CalibrationRefused(Exception):
    """A calibration that would lie (on a search bound, a worse held-out ECE) is not written."""


def write_manifest_calibration(
    head_dir: Path, cal: Calibration | None, min_score: float | None = None, refused: str | None = None
) -> None:
    """Store the calibration and the held-out min_score in a head's manifest.json (atomically; the
    head's files are unchanged); a refused fit (``cal`` None) raises :class:`CalibrationRefused`
    and leaves the manifest as it was."""
    from edgevid.manifest import write_manifest

    manifest, folder = load_manifest(head_dir)
    if cal is None:
        raise CalibrationRefused(
            f"{folder / 'manifest.json'}: calibration not written (kept as it was): {refused or 'no calibration'}"
        )
    manifest.calibration = cal
    manifest.min_score = min_score
    write_manifest(folder, manifest)  # the export's checks too


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.calibrate", description=__doc__.split("\n")[0])
    p.add_argument("--head", type=Path, default=None, help="head folder (default: the installed head)")
    p.add_argument("--model-dir", type=Path, default=Path(os.environ.get("EDGEVID_MODEL_DIR", SHARED / "models")))
    p.add_argument("--extractor", type=Path, default=None)
    p.add_argument("--shared", type=Path, default=SHARED)
    p.add_argument("--data", type=Path, default=SHARED / "data" / "jhmdb")
    p.add_argument("--splits", type=Path, default=SHARED / "data" / "jhmdb_splits")
    p.add_argument("--split", type=int, default=1)
    p.add_argument("--seed", type=int, default=0, help="validation split seed (the one the head was trained with)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.md")
    p.add_argument(
        "--write-manifest", type=Path, default=None, help="store the fitted temperature in this head folder's manifest"
    )
    args = p.parse_args(argv)
    args.argv = argv
    from edgevid.store import write_atomic

    r = run(args)
    write_atomic(args.out.with_suffix(".json"), (json.dumps(r, indent=1) + "\n").encode())
    write_atomic(args.out.with_suffix(".md"), render(r).encode())
    print(render(r))
    if args.write_manifest:
        try:
            write_manifest_calibration(
                args.write_manifest,
                Calibration(**r["calibration"]) if r["calibration"] else None,
                r["held_out_min_score"],
                r["calibration_check"]["refused"],
            )
        except CalibrationRefused as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(
            f"temperature {r['calibration']['temperature']} and min_score {r['held_out_min_score']} written to "
            f"{args.write_manifest}/manifest.json"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
