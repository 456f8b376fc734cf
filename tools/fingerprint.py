"""Extractor identity by measurement: how far each extractor file's probe features are from the head's.

    python -m tools.fingerprint --other-python .venv-tflite-runtime/bin/python --top1 \\
        --out benchmarks/extractor-fingerprint.json

For every extractor file at hand (the head's, a re-conversion of its checkpoint, a different network
of the same shape, MobileNetV3-Small, the head's file with its weights altered) on this runtime and
on ``--other-python``'s (tflite-runtime): the cosine of its features on edgevid's probe images with
the bundled head's fingerprint, and whether the head accepts it. ``--top1``: the bundled head's
top-1 through ``classify`` on the JHMDB split-1 test clips with each file the head accepts.
The tolerance (:data:`edgevid.fingerprint.DEFAULT_MIN_COSINE`) sits between the two groups.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from edgevid.errors import ModelError
from edgevid.extractor import Extractor
from edgevid.fingerprint import Fingerprint, compare
from edgevid.head import Head
from edgevid.runtime import runtime_used, schema_module
from edgevid.store import default_head_dir

SHARED = Path(os.environ.get("EDGEVID_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
MODELS = SHARED / "models"
TF2_FEATURES = "GlobalPool/Mean"  # the Keras network's pooled tensor (a long ';'-joined name)


def altered_weights(model: bytes, step: int = 3, every: int = 7) -> bytes:
    """The same graph, names and shapes with other weights: every ``every``-th byte of each conv
    weight buffer moved by ``step`` quantization steps. A stand-in for a fine-tuned checkpoint
    converted the same way (the case a name or shape check cannot catch)."""
    import flatbuffers

    schema = schema_module()
    m = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model, 0))
    graph = m.subgraphs[0]
    for tensor in graph.tensors:
        name = tensor.name.decode() if isinstance(tensor.name, bytes) else tensor.name
        data = m.buffers[tensor.buffer].data if tensor.buffer < len(m.buffers) else None
        if data is not None and "weights" in name and len(tensor.shape) == 4:
            w = np.array(data, dtype=np.uint8)
            w[::every] = (w[::every].astype(np.int16) + step).clip(0, 255).astype(np.uint8)
            m.buffers[tensor.buffer].data = w
    builder = flatbuffers.Builder(len(model))
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def candidates(work: Path) -> dict[str, tuple[Path, str | None]]:
    """name -> (file, feature tensor to read, None: the default lookup)."""
    primary = MODELS / "mobilenet_v2_1.0_224_quant.tflite"
    altered, slightly = work / "altered-weights.tflite", work / "slightly-altered-weights.tflite"
    altered.write_bytes(altered_weights(primary.read_bytes()))
    slightly.write_bytes(altered_weights(primary.read_bytes(), step=1, every=50))
    renamed = work / "mobilenet_v2_1.0_224_quant.tflite"  # MobileNetV3-Small under MobileNetV2's name
    renamed.write_bytes((MODELS / "v3-small_224_1.0_uint8.tflite").read_bytes())
    return {
        "head's file (09949bf5)": (primary, None),
        "coral 2021 re-conversion (7aad0c74)": (
            MODELS / "variants" / "mobilenet_v2_1.0_224_quant.coral-2021.tflite",
            None,
        ),
        "tf2 keras ptq, different network": (MODELS / "variants" / "tf2_mobilenet_v2_1.0_224_ptq.tflite", TF2_FEATURES),
        "head's file, weights altered": (altered, None),
        "head's file, 2 % of weights +1 step": (slightly, None),
        "mobilenet v3-small renamed as v2": (renamed, None),
    }


def _tensor(path: Path, part: str | None) -> str | None:
    if part is None:
        return None
    from edgevid.runtime import make_interpreter

    details = make_interpreter(path.read_bytes(), what=str(path)).get_tensor_details()
    return next(d["name"] for d in details if part in d["name"] and len(d["shape"]) == 4)


def measure_all(files: dict[str, tuple[Path, str | None]], fp: Fingerprint, head: Head) -> dict:
    """Each file against the fingerprint on this process's runtime, and what the head says of it."""
    out = {"runtime": runtime_used()}
    for name, (path, part) in files.items():
        row: dict = {"file": path.name}
        try:
            ex = Extractor(path, num_threads=1, feature_tensor=_tensor(path, part))
            cmp = compare(fp, ex)
            row.update(cosine_min=min(cmp.cosines), cosine_mean=float(np.mean(cmp.cosines)), max_steps=cmp.max_steps)
        except ModelError as exc:
            row["loads"] = str(exc)
        try:
            head.check_extractor(Extractor(path, num_threads=1))
            row["head"] = "accepted"
        except ModelError as exc:
            row["head"] = "refused: " + str(exc)
        out[name] = row
    return out


def check_cost(path: Path, fp: Fingerprint, cache: Path, repeats: int = 5) -> dict[str, float]:
    """Median wall time of drawing the probes, of a first check of a file (probes + one invoke
    of the extractor over them) and of the same check remembered (what every later start pays)."""
    import shutil
    import statistics
    import time

    from edgevid.fingerprint import check, probe_images

    os.environ["EDGEVID_CACHE_DIR"] = str(cache)
    ex = Extractor(path, num_threads=1)

    def ms(f, before=lambda: None) -> float:
        times = []
        for _ in range(repeats):
            before()
            t = time.perf_counter()
            f()
            times.append((time.perf_counter() - t) * 1e3)
        return statistics.median(times)

    return {
        "probe_images": ms(probe_images),
        "first_check": ms(lambda: check(fp, ex), before=lambda: shutil.rmtree(cache / "checked", ignore_errors=True)),
        "remembered_check": ms(lambda: check(fp, ex)),
    }


def top1(files: dict[str, Path], head_dir: Path, split: int = 1) -> dict:
    """The head's classify top-1 on JHMDB's test split with each extractor file, and their agreement."""
    from edgevid.pipeline import load_classifier
    from tools.datasets import read_jhmdb

    ds = read_jhmdb(SHARED / "data" / "jhmdb", SHARED / "data" / "jhmdb_splits", split)
    labels: dict[str, list] = {}
    for name, path in files.items():
        clf = load_classifier(head_dir, path, threads=os.cpu_count() or 1)
        labels[name] = [(r.top[0].label if r.ok else None) for r in (clf.classify(i.path, 1) for i in ds.test)]
    truth = [ds.classes[i.label] for i in ds.test]
    first = next(iter(labels.values()))
    return {
        "clips": len(truth),
        "split": split,
        **{
            name: {
                "top1": float(np.mean([p == t for p, t in zip(got, truth)])),
                "same_label_as_heads_file": float(np.mean([a == b for a, b in zip(got, first)])),
            }
            for name, got in labels.items()
        },
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--head",
        type=Path,
        default=default_head_dir(),
        help="head whose fingerprint to compare with (default: bundled)",
    )
    p.add_argument("--other-python", help="an interpreter with tflite-runtime, to measure on the other runtime too")
    p.add_argument("--top1", action="store_true", help="also classify JHMDB split-1 test clips with each accepted file")
    p.add_argument("--work", type=Path, default=Path("/tmp/edgevid-fingerprint"), help="folder for the made-up files")
    p.add_argument("--out", type=Path, help="write the results here (JSON)")
    p.add_argument("--rows-only", action="store_true", help=argparse.SUPPRESS)  # what --other-python runs
    args = p.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    head = Head(args.head)
    fp = head.manifest.extractor.fingerprint
    if fp is None:
        p.error(f"{args.head}: the head's manifest has no extractor fingerprint")
    files = candidates(args.work)
    rows = measure_all(files, fp, head)
    if args.rows_only:
        print(json.dumps(rows))
        return 0
    results: dict = {
        "head": head.manifest.name,
        "min_cosine": fp.min_cosine,
        "probes": fp.probes,
        "runtimes": [rows],
        "check_ms": check_cost(files["coral 2021 re-conversion (7aad0c74)"][0], fp, args.work / "cache"),
    }
    print(
        "cost of the check for a file of other bytes: "
        + ", ".join(f"{k} {v:.1f} ms" for k, v in results["check_ms"].items())
    )
    if args.other_python:
        proc = subprocess.run(
            [
                args.other_python,
                "-m",
                "tools.fingerprint",
                "--rows-only",
                "--work",
                str(args.work / "other"),
                "--head",
                str(args.head),
            ],
            capture_output=True,
            text=True,
            timeout=900,
            cwd=Path(__file__).resolve().parents[1],
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        )
        results["runtimes"].append(json.loads(proc.stdout) if proc.returncode == 0 else {"error": proc.stderr[-500:]})
    for rt in results["runtimes"]:
        for name, row in rt.items():
            if isinstance(row, dict):
                cos = f"cosine min {row['cosine_min']:.4f}" if "cosine_min" in row else row.get("loads", "")[:60]
                print(f"{rt['runtime']:<24} {name:<38} {cos:<24} {row['head'][:100]}")
    if args.top1:
        accepted = {
            n: files[n][0] for n, row in rows.items() if isinstance(row, dict) and row.get("head") == "accepted"
        }
        results["top1"] = top1(accepted, args.head)
        for name, r in results["top1"].items():
            if isinstance(r, dict):
                print(
                    f"top-1 {name}: {100 * r['top1']:.1f} % ({results['top1']['clips']} clips), same label as the "
                    "head's file "
                    f"{100 * r['same_label_as_heads_file']:.1f} %"
                )
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
