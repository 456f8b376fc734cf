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

if not MNV2.is_file():
    pytest.skip(f"real models not found under {SHARED} (set EDGEVID_SHARED)", allow_module_level=True)


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


def run_cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real `edgevid` entry point in a subprocess (exit codes, stderr as a user sees them)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "edgevid", *args], capture_output=True, text=True, env=full_env, timeout=timeout, cwd=ROOT)
