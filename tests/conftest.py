"""Shared fixtures: the real models and clips in ../shared (EDGEVID_SHARED), read in place."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGEVID_SHARED", ROOT.parent / "shared")).resolve()
MODELS = SHARED / "models"
DATA = SHARED / "data"
MNV2 = MODELS / "mobilenet_v2_1.0_224_quant.tflite"
V3SMALL = MODELS / "v3-small_224_1.0_uint8.tflite"
HEAD_DIR = ROOT / "models"
UNIT = ROOT / "tests" / "unit"

MISSING = (
    None
    if MNV2.is_file()
    else f"real models not found: no {MNV2} (set EDGEVID_SHARED to the folder with models/ and data/)"
)


def pytest_report_header(config) -> str | None:
    return f"edgevid: {MISSING}" if MISSING else f"edgevid: shared data {SHARED}"


def pytest_ignore_collect(collection_path, config) -> bool | None:
    """Without ../shared no test can run (they all use the real models and clips): collect none,
    and say why in one line instead of a traceback per module."""
    if (
        MISSING
        and collection_path.name.startswith("test_")
        and collection_path.suffix == ".py"
        and not _unit(collection_path)
    ):
        return True
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """A test file named on the command line is collected anyway: its import failing for want of
    ../shared is a skip with the reason, not a traceback."""
    outcome = yield
    report = outcome.get_result()
    if MISSING and report.failed and not _unit(collector.path):
        report.outcome = "skipped"
        report.longrepr = (str(collector.path), 0, f"Skipped: {MISSING}")


def _unit(path) -> bool:
    """tests/unit needs no models or clips: it runs with or without ../shared."""
    return UNIT in Path(path).resolve().parents


def pytest_collection_modifyitems(config, items) -> None:
    if MISSING:
        for item in items:
            if not _unit(item.path):
                item.add_marker(pytest.mark.skip(reason=MISSING))


def pytest_terminal_summary(terminalreporter) -> None:
    if MISSING:
        terminalreporter.write_line(f"SKIPPED every test outside tests/unit: {MISSING}", yellow=True)


def jhmdb_clip(cls: str, index: int = 0) -> Path:
    return sorted((DATA / "jhmdb" / cls).glob("*.avi"))[index]


def jhmdb_subset(root: Path, classes=("wave", "pour", "golf"), per_class: int = 12, name=None) -> Path:
    """A folder-per-class dataset of real JHMDB clips (symlinks, nothing copied): the first
    ``per_class`` clips of each class, linked as ``name(cls, index, clip)`` (default: their own name)."""
    for cls in classes:
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i, clip in enumerate(sorted((DATA / "jhmdb" / cls).glob("*.avi"))[:per_class]):
            (root / cls / (name(cls, i, clip) if name else clip.name)).symlink_to(clip)
    return root


@pytest.fixture(scope="session")
def extractor():
    from edgevid.extractor import Extractor

    return Extractor(MNV2, num_threads=2)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """A user model directory filled by the real `models fetch --from` path."""
    d = tmp_path_factory.mktemp("model-dir")
    from edgevid.store import fetch_extractor

    fetch_extractor(source=MODELS, directory=d)
    return d


@pytest.fixture(scope="session")
def env(model_dir) -> dict:
    """What a test adds to the environment of an ``edgevid`` process: the fetched model directory."""
    return {"EDGEVID_MODEL_DIR": str(model_dir)}


def run_cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real `edgevid` entry point in a subprocess (exit codes, stderr as a user sees them).
    It runs in its own process group: on a timeout (or the test's own) the whole group is killed,
    so nothing it started outlives the test."""
    from tools.probe import run_group

    return run_group(
        [sys.executable, "-m", "edgevid", *args], timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})}
    )
