"""Collect ``tools.experiment`` runs into one table: validation top-1 (what chooses) beside test
top-1 (what is reported), per run and head, with the runs' commands.

    python -m tools.collect runs/select/*-s? --out experiments/jhmdb-split1-motion-select

``--export DIR`` installs the head with the highest validation top-1 over all the collected runs
(one dataset split; a tie goes to the head with fewer parameters) and checks it through ``edgevid classify`` on the test
clips, as ``tools.experiment --export`` does within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from edgevid.store import write_atomic


def rows(run_dirs: list[Path]) -> list[dict]:
    """One row per (run, head): its motion stream, seed, validation and test (TFLite int8) top-1."""
    out = []
    for d in run_dirs:
        r = json.loads((d / "report.json").read_text())
        motion = r.get("motion")
        for name, h in r["heads"].items():
            int8 = h["variants"]["dynamic_int8"]
            out.append({
                "run": d.name, "dataset": r["dataset"], "head": name, "streams": h.get("streams", ["appearance"]),
                "motion": f"{motion['method']}-{motion['width']}x{motion['height']}" if motion and "motion" in h.get("streams", []) else None,
                "seed": r["seed"], "val_top1": h["val_top1"], "test_top1": int8["test"]["top1"], "test_top5": int8["test"]["top5"],
                "test_macro_f1": int8["test"]["macro_f1"], "window_top1": (int8.get("daemon_test") or {}).get("window_top1"),
                "params": h["params"], "bytes": int8["bytes"], "latency_ms": int8["latency_ms"], "command": r["command"],
            })
    return out


def render(table: list[dict]) -> str:
    pct = lambda x: "–" if x is None else f"{100 * x:.1f}"  # noqa: E731
    lines = ["| run | dataset | head | motion | seed | val top-1 % | test top-1 % (int8) | test top-5 % | macro-F1 | test window top-1 % |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in table:
        lines.append(f"| {r['run']} | {r['dataset']} | {r['head']} | {r['motion'] or '–'} | {r['seed']} | {pct(r['val_top1'])} | "
                     f"{pct(r['test_top1'])} | {pct(r['test_top5'])} | {r['test_macro_f1']:.3f} | {pct(r['window_top1'])} |")
    datasets = sorted({r["dataset"] for r in table})
    if len(datasets) > 1:  # the same heads over several splits: test (and validation) top-1 per split and the mean
        heads = list(dict.fromkeys(r["head"] for r in table))
        lines += ["", "| head | " + " | ".join(f"{d} test (val)" for d in datasets) + " | mean test | mean val |",
                  "|---|" + "---|" * (len(datasets) + 2)]
        for h in heads:
            cells = {r["dataset"]: r for r in table if r["head"] == h}
            if len(cells) != len(datasets):
                continue  # not run on every split
            tests = [cells[d]["test_top1"] for d in datasets]
            vals = [cells[d]["val_top1"] for d in datasets]
            lines.append(f"| {h} | " + " | ".join(f"{pct(t)} ({pct(v)})" for t, v in zip(tests, vals)) +
                         f" | {pct(sum(tests) / len(tests))} | {pct(sum(vals) / len(vals))} |")
    lines += ["", "Commands:", ""] + sorted({f"- `{r['command']}`" for r in table})
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.collect", description=__doc__.split("\n")[0])
    p.add_argument("runs", type=Path, nargs="+", help="tools.experiment --out folders")
    p.add_argument("--out", type=Path, required=True, help="write OUT.json and OUT.md")
    p.add_argument("--export", type=Path, help="install the best-validation head of these runs here (e.g. models/)")
    p.add_argument("--data", type=Path, help="--export: the JHMDB root for the classify check")
    p.add_argument("--splits", type=Path, help="--export: the split files")
    p.add_argument("--extractor", type=Path, default=Path(os.environ.get("EDGEVID_SHARED", "../shared")) / "models/mobilenet_v2_1.0_224_quant.tflite")
    args = p.parse_args(argv)
    missing = [str(d) for d in args.runs if not (d / "report.json").is_file()]
    if missing:
        print(f"error: no report.json in {', '.join(missing)}", file=sys.stderr)
        return 2
    table = rows(args.runs)
    write_atomic(args.out.with_suffix(".json"), json.dumps(table, indent=1).encode())
    write_atomic(args.out.with_suffix(".md"), render(table).encode())
    print(render(table))
    if args.export:
        if not (args.data and args.splits):
            p.error("--export needs --data and --splits for the classify check")
        return export_best(table, args)
    return 0


def export_best(table: list[dict], args: argparse.Namespace) -> int:
    """Install the best-validation head of the collected runs and check it end to end."""
    from .datasets import read_jhmdb
    from .experiment import check_exported, export_head

    datasets = {r["dataset"] for r in table}
    if len(datasets) != 1:
        print(f"error: --export needs runs of one dataset split, got {sorted(datasets)}", file=sys.stderr)
        return 2
    best = max(table, key=lambda r: (r["val_top1"], -r["params"]))  # validation only (ties: the smaller head); test chose nothing
    run = next(d for d in args.runs if d.name == best["run"])
    print(f"exporting {best['head']} from {run} (validation top-1 {100 * best['val_top1']:.1f} %) to {args.export}")
    results = json.loads((run / "report.json").read_text())
    if not (run / "report.md").is_file():  # a run stopped after this head: its report from what it finished
        from .experiment import render_markdown

        write_atomic(run / "report.md", render_markdown(results).encode())
    manifest = export_head(results, run, best["head"], args.export, args.extractor)
    split = int(best["dataset"].rsplit("split", 1)[1])
    got = check_exported(args.export, args.extractor, read_jhmdb(args.data, args.splits, split), manifest.metrics["top1"])
    if abs(got - manifest.metrics["top1"]) > 1e-9:
        print("error: the installed head does not reproduce the report's accuracy", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
