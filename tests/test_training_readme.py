"""README's "Train a head on your own clips", run as written on 3 real JHMDB classes, and its refusals."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import HEAD_DIR, ROOT, jhmdb_subset

pytest.importorskip("sklearn", reason="tools dependencies not installed (pip install -e ./tools)")

from tools.datasets import group_of  # noqa: E402
from tools.probe import run_group  # noqa: E402


def readme_commands() -> list[list[str]]:
    """The shell lines of README's train-example block, as argument lists."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- train-example[^>]*-->\s*```sh\n(.*?)```", text, re.S)
    assert block, "README lost its train-example block"
    return [shlex.split(line) for line in block.group(1).splitlines() if line.strip()]


def _run(argv: list[str], cwd: Path, env: dict, timeout: float = 900) -> subprocess.CompletedProcess:
    if argv[0] == "python":
        argv = [sys.executable, *argv[1:]]
    elif argv[0] == "edgevid":
        argv = [sys.executable, "-m", "edgevid", *argv[1:]]
    return run_group(argv, cwd=cwd, env=env, timeout=timeout)  # on a timeout nothing it started is left


def my_clips(root: Path, per_class: int = 12) -> Path:
    """README's layout: ``<class>/<actor>_<nn>.mp4``, one actor per real JHMDB source video
    (wave's first is ``anna``, the name README classifies)."""
    actors: dict[str, str] = {}

    def name(cls: str, i: int, clip: Path) -> str:
        group = group_of(clip)
        if group not in actors:
            actors[group] = "anna" if not actors else f"actor{len(actors)}"
        same = sum(1 for p in (root / cls).glob(f"{actors[group]}_*"))
        return f"{actors[group]}_{same + 1:02d}.mp4"

    return jhmdb_subset(root, ("wave", "pour", "golf"), per_class, name)


@pytest.fixture
def user_env(tmp_path, model_dir) -> dict:
    # `edgevid models fetch` already done into this model dir (by the real fetch path, from ../shared).
    return {**os.environ, "EDGEVID_MODEL_DIR": str(model_dir), "PYTHONPATH": str(ROOT)}


@pytest.mark.slow
def test_readme_trains_and_deploys_a_head_on_a_folder_of_clips(tmp_path, user_env):
    my_clips(tmp_path / "my_clips")
    commands = readme_commands()
    assert [c[:2] for c in commands] == [
        ["pip", "install"],
        ["edgevid", "models"],
        ["python", "-m"],
        ["edgevid", "classify"],
    ]
    fetch, train, classify = commands[1], commands[2], commands[3]
    # Offline (the download sources point at nothing), the installed, verified extractor is kept.
    kept = _run(fetch, tmp_path, {**user_env, "EDGEVID_MODEL_MIRROR": "http://127.0.0.1:9"})
    assert kept.returncode == 0 and "already installed" in kept.stdout, kept.stderr
    proc = _run(train, tmp_path, user_env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "installed head: top-1" in proc.stdout  # the export check (classify == report) passed
    assert "cpu_feature_guard" not in proc.stderr and "oneDNN" not in proc.stderr  # TensorFlow's C++ noise is silenced
    head = tmp_path / "my-head"
    manifest = json.loads((head / "manifest.json").read_text())
    assert (head / "labels.txt").read_text().split() == ["golf", "pour", "wave"]
    assert manifest["extractor"]["name"] == "mobilenet_v2_1.0_224_quant"  # the fetched one, by default
    assert (
        manifest["extractor"]["fingerprint"]["probes"] == "edgevid-probes-1"
    )  # other files of it are accepted by features
    report = json.loads((tmp_path / "runs/my-clips/report.json").read_text())
    assert report["dataset"] == "my_clips-seed0" and (tmp_path / "runs/my-clips/report.md").read_text().startswith(
        "# my_clips-seed0"
    )
    assert min(report["counts"].values()) >= 3
    # Groups (actors) never straddle the split: the readme's pattern is what the run used.
    assert report["dataset_args"]["group_pattern"] == "^[^_]+"
    out = _run(classify, tmp_path, user_env)
    assert out.returncode == 0, out.stderr
    assert re.match(r"my_clips/wave/anna_01\.mp4: (golf|pour|wave) \d\.\d\d", out.stdout)
    # The bundled head is untouched, and a second export from the finished run needs no training.
    assert not (HEAD_DIR / "my-head").exists()
    again = _run(
        ["python", "-m", "tools.experiment", "--from-run", "runs/my-clips", "--export", "other-head"],
        tmp_path,
        user_env,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "training" not in again.stdout and "installed head: top-1" in again.stdout
    assert (tmp_path / "other-head/head.tflite").read_bytes() == (head / "head.tflite").read_bytes()
    # A resumed run extracts nothing new and reports the total extraction time of both runs.
    rerun = _run(train, tmp_path, user_env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    ledger = json.loads((tmp_path / "runs/my-clips/extraction_seconds.json").read_text())["runs"]
    assert len(ledger) == 2 and ledger[1] < ledger[0]
    assert json.loads((tmp_path / "runs/my-clips/report.json").read_text())["feature_seconds_total"] == pytest.approx(
        sum(ledger)
    )


def test_a_split_too_small_is_refused_before_extraction(tmp_path, user_env):
    my_clips(tmp_path / "my_clips", per_class=2)
    train = readme_commands()[2]
    proc = _run(train, tmp_path, user_env, timeout=300)
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "each class needs at least 3 groups" in err[0] and re.search(r"golf [12]\b", err[0])
    assert not (tmp_path / "cache").exists()  # nothing was extracted


def test_export_refuses_the_bundled_head_without_force(tmp_path, user_env):
    my_clips(tmp_path / "my_clips", per_class=2)
    before = (HEAD_DIR / "manifest.json").read_bytes()
    proc = _run(
        [
            "python",
            "-m",
            "tools.experiment",
            "--dataset",
            "folders",
            "--data",
            "my_clips",
            "--out",
            "run",
            "--export",
            str(HEAD_DIR),
        ],
        tmp_path,
        user_env,
        timeout=300,
    )
    assert (
        proc.returncode == 2
        and "would replace the head bundled with edgevid" in proc.stderr
        and "--force" in proc.stderr
    )
    assert (HEAD_DIR / "manifest.json").read_bytes() == before and not (tmp_path / "run").exists()
    # Exporting finished runs is the same path, with the same guard (before any run is read).
    proc = _run(
        ["python", "-m", "tools.experiment", "--from-run", "run", "--export", str(HEAD_DIR)],
        tmp_path,
        user_env,
        timeout=300,
    )
    assert (
        proc.returncode == 2
        and "would replace the head bundled with edgevid" in proc.stderr
        and "--force" in proc.stderr
    )
    assert (HEAD_DIR / "manifest.json").read_bytes() == before


def test_default_extractor_is_the_fetched_one(tmp_path, user_env):
    env = {**user_env, "EDGEVID_MODEL_DIR": str(tmp_path / "empty")}
    my_clips(tmp_path / "my_clips", per_class=2)
    proc = _run(readme_commands()[2], tmp_path, env, timeout=300)
    assert (
        proc.returncode == 2 and "run `edgevid models fetch`" in proc.stderr and str(tmp_path / "empty") in proc.stderr
    )
