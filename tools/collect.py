"""Collect ``tools.experiment`` runs into one table: validation top-1 (what chooses) beside test
top-1 (what is reported), per run and head, with the runs' commands.

    python -m tools.collect runs/select/*-s? --out experiments/jhmdb-split1-motion-select

To install the head validation chooses over runs of one dataset split (and check it through
``edgevid classify``): ``python -m tools.experiment --from-run RUN [RUN ...] --export DIR``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgevid.motion import MotionSpec
from edgevid.store import write_atomic


def rows(run_dirs: list[Path]) -> list[dict]:
    """One row per (run, head): its motion stream, seed, validation and test (TFLite int8) top-1."""
    out = []
    for d in run_dirs:
        r = json.loads((d / "report.json").read_text())
        motion = r.get("motion")
        for name, h in r["heads"].items():
            int8 = h["variants"]["dynamic_int8"]
            out.append(
                {
                    "run": d.name,
                    "dataset": r["dataset"],
                    "head": name,
                    "streams": h.get("streams", ["appearance"]),
                    "motion": MotionSpec(**motion).id if motion and "motion" in h.get("streams", []) else None,
                    "seed": r["seed"],
                    "val_top1": h["val_top1"],
                    "test_top1": int8["test"]["top1"],
                    "test_top5": int8["test"]["top5"],
                    "test_macro_f1": int8["test"]["macro_f1"],
                    "window_top1": (int8.get("daemon_test") or {}).get("window_top1"),
                    "params": h["params"],
                    "bytes": int8["bytes"],
                    "latency_ms": int8["latency_ms"],
                    "command": r["command"],
                }
            )
    return out


def render(table: list[dict]) -> str:
    pct = lambda x: "–" if x is None else f"{100 * x:.1f}"  # noqa: E731
    lines = [
        "| run | dataset | head | motion | seed | val top-1 % | test top-1 % (int8) | test top-5 % | macro-F1 | test "
        "window top-1 % |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        lines.append(
            f"| {r['run']} | {r['dataset']} | {r['head']} | {r['motion'] or '–'} | {r['seed']} | "
            f"{pct(r['val_top1'])} | "
            f"{pct(r['test_top1'])} | {pct(r['test_top5'])} | {r['test_macro_f1']:.3f} | {pct(r['window_top1'])} |"
        )
    datasets = sorted({r["dataset"] for r in table})
    if len(datasets) > 1:  # the same heads over several splits: test (and validation) top-1 per split and the mean
        # A head with two motion streams is two rows (the same head name, a different input).
        heads = list(dict.fromkeys((r["head"], r["motion"]) for r in table))
        motions = len({m for _, m in heads}) > 1
        lines += [
            "",
            "| head | " + " | ".join(f"{d} test (val)" for d in datasets) + " | mean test | mean val |",
            "|---|" + "---|" * (len(datasets) + 2),
        ]
        for h, m in heads:
            cells = {r["dataset"]: r for r in table if r["head"] == h and r["motion"] == m}
            if len(cells) != len(datasets):
                continue  # not run on every split
            tests = [cells[d]["test_top1"] for d in datasets]
            vals = [cells[d]["val_top1"] for d in datasets]
            lines.append(
                f"| {h}{f' ({m})' if motions and m else ''} | "
                + " | ".join(f"{pct(t)} ({pct(v)})" for t, v in zip(tests, vals))
                + f" | {pct(sum(tests) / len(tests))} | {pct(sum(vals) / len(vals))} |"
            )
    lines += ["", "Commands:", ""] + sorted({f"- `{r['command']}`" for r in table})
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m tools.collect",
        description=__doc__.split("\n\n")[0],
        epilog="To install validation's choice over runs of one dataset split: "
        "python -m tools.experiment --from-run RUN [RUN ...] --export DIR",
    )
    p.add_argument("runs", type=Path, nargs="+", help="tools.experiment --out folders")
    p.add_argument("--out", type=Path, required=True, help="write OUT.json and OUT.md")
    args = p.parse_args(argv)
    missing = [str(d) for d in args.runs if not (d / "report.json").is_file()]
    if missing:
        print(f"error: no report.json in {', '.join(missing)}", file=sys.stderr)
        return 2
    table = rows(args.runs)
    write_atomic(args.out.with_suffix(".json"), json.dumps(table, indent=1).encode())
    write_atomic(args.out.with_suffix(".md"), render(table).encode())
    print(render(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
