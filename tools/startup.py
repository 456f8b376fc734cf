"""Start-up cost of the ``edgevid`` command, measured in one run (a noisy machine: compare within it).

    python -m tools.startup --clip ../shared/data/jhmdb/pour/<clip>.avi --repeat 7 [--baseline DIR]

Prints, as medians over ``--repeat`` runs: the bare interpreter (``python -c pass``), ``edgevid
--help``, and ``edgevid classify CLIP --json`` with its own pipeline time (``timings.total_ms``),
so the overhead over the pipeline (imports, loading the extractor and head) is wall - pipeline.
Targets (issue 13): ``--help`` <= 0.2 s, classify overhead <= 0.5 s. ``--baseline DIR`` (another
checkout, e.g. ``git archive main | tar -x -C DIR``) runs the same commands from DIR, interleaved with
these, so a loaded machine still gives a fair before/after ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _wall(argv: list[str], cwd: Path | None = None) -> tuple[float, str]:
    t = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=cwd)
    return time.perf_counter() - t, proc.stdout


def measure(clip: Path, repeat: int, checkouts: dict[str, Path | None]) -> dict:
    """Interleaved runs (bare, then help and classify from each checkout) so load changes hit all alike."""
    bare: list[float] = []
    runs = {name: {"help": [], "wall": [], "pipeline": []} for name in checkouts}
    edgevid = [sys.executable, "-m", "edgevid"]  # run from a checkout's root, `-m` imports that checkout's edgevid
    for _ in range(repeat):
        bare.append(_wall([sys.executable, "-c", "pass"])[0])
        for name, cwd in checkouts.items():
            runs[name]["help"].append(_wall([*edgevid, "--help"], cwd)[0])
            wall, out = _wall([*edgevid, "classify", str(clip.resolve()), "--json"], cwd)
            runs[name]["wall"].append(wall)
            runs[name]["pipeline"].append(json.loads(out)["timings"]["total_ms"] / 1e3)
    med = statistics.median
    result: dict = {"repeat": repeat, "python_s": med(bare)}
    for name, r in runs.items():
        overhead = [w - p for w, p in zip(r["wall"], r["pipeline"])]
        result[name] = {
            "help_s": med(r["help"]),
            "help_over_python": med(r["help"]) / med(bare),
            "classify_wall_s": med(r["wall"]),
            "classify_pipeline_s": med(r["pipeline"]),
            "classify_overhead_s": med(overhead),
        }
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.startup", description=__doc__.split("\n")[0])
    p.add_argument("--clip", type=Path, required=True, help="a clip for `edgevid classify`")
    p.add_argument("--repeat", type=int, default=7, help="runs of each command (default 7)")
    p.add_argument("--baseline", type=Path, help="another checkout to measure in the same run (before/after)")
    p.add_argument("--out", type=Path, help="also write the numbers here as JSON")
    args = p.parse_args(argv)
    checkouts = {
        "this": Path(__file__).resolve().parents[1],
        **({"baseline": args.baseline.resolve()} if args.baseline else {}),
    }
    r = measure(args.clip, args.repeat, checkouts)
    print(f"python -c pass: {r['python_s']:.3f} s (medians of {r['repeat']} interleaved runs)")
    for name in checkouts:
        c = r[name]
        print(
            f"{name}: edgevid --help {c['help_s']:.3f} s ({c['help_over_python']:.2f}x the bare interpreter); classify "
            f"{c['classify_wall_s']:.3f} s wall, pipeline {c['classify_pipeline_s']:.3f} s, overhead "
            f"{c['classify_overhead_s']:.3f} s"
        )
    if args.baseline:
        print(
            f"this / baseline: --help {r['this']['help_s'] / r['baseline']['help_s']:.2f}x, "
            f"classify overhead {r['this']['classify_overhead_s'] / r['baseline']['classify_overhead_s']:.2f}x"
        )
    r["command"] = " ".join(["python -m tools.startup", *(argv if argv is not None else sys.argv[1:])])
    if args.out:
        args.out.write_text(json.dumps(r, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
