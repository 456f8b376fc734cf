"""The manifest that travels with a trained head: what it needs and how to check its files."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ModelError
from .fingerprint import Fingerprint
from .motion import MotionSpec

MANIFEST_NAME = "manifest.json"


class FileRef(BaseModel):
    """A file next to the manifest and the sha256 it must have."""

    model_config = ConfigDict(extra="forbid")
    # A bare name: a manifest may only point next to itself, never at /etc/passwd or ../other.
    file: str = Field(max_length=255, description="a file name in the manifest's folder")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    @field_validator("file")
    @classmethod
    def _bare_name(cls, name: str) -> str:
        if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
            raise ValueError(f"must be a file name in the manifest's folder, got {name!r}")
        return name


class ExtractorRef(BaseModel):
    """The extractor whose features the head was trained on."""

    model_config = ConfigDict(extra="forbid")
    name: str
    sha256: list[str] = Field(min_length=1, description="sha256 of the extractor files the head was checked with")
    feature_tensor: str
    feature_dim: int = Field(gt=0)
    fingerprint: Fingerprint | None = Field(
        None,
        description="the extractor's features on edgevid's probe images: any file that answers the same is accepted "
        "(absent: older heads, which accept only the files in sha256)",
    )


class TimeScale(BaseModel):
    """How much time the head's M frames span: the daemon's default window, so live windows are
    at the scale the head was trained on (a head trained on 1.3 s clips does not know 2.5 s)."""

    model_config = ConfigDict(extra="forbid")
    window_s: float = Field(gt=0, description="seconds of video the M frames span, as trained")
    fit: Literal["windows", "clips"] = Field(
        description="windows: trained on fixed windows of window_s cut from clips; clips: trained on whole clips, "
        "window_s is their median duration"
    )
    clip_duration_s: dict[str, float] = Field(
        default_factory=dict, description="training clips' duration percentiles (p10, p50, p90)"
    )


class Calibration(BaseModel):
    """Temperature scaling fitted on validation windows: published scores are
    ``softmax(log(p) / temperature)`` of the head's probabilities ``p`` (same ranking, honest confidence)."""

    model_config = ConfigDict(extra="forbid")
    temperature: float = Field(gt=0, le=100)
    fit_on: str = Field("", description="what it was fitted on (validation windows)")
    ece_before: float | None = Field(None, description="expected calibration error on those windows, uncalibrated")
    ece_after: float | None = None


class Manifest(BaseModel):
    """``manifest.json``: the head, its labels, the features it expects, and where it came from."""

    model_config = ConfigDict(extra="forbid")
    schema_version: Literal[1] = 1
    name: str
    head: FileRef
    labels: FileRef
    frames: int = Field(gt=0, description="M, frames per clip the head was trained on")
    feature_dim: int = Field(gt=0)
    timescale: TimeScale | None = Field(None, description="the window the head was trained for (absent: older heads)")
    extractor: ExtractorRef
    streams: list[Literal["appearance", "motion"]] = Field(
        default_factory=lambda: ["appearance"],
        description="what the head reads per frame, concatenated in this order: the extractor's features, then the "
        "motion descriptor",
    )
    motion: MotionSpec | None = Field(None, description="how the motion stream is computed (heads that read it)")
    calibration: Calibration | None = Field(
        None, description="temperature for calibrated scores (absent: raw probabilities)"
    )
    min_score: float | None = Field(
        None,
        ge=0,
        le=1,
        description="the score threshold chosen on held-out validation windows "
        "(keeps 95 % of correct predictions; on calibrated scores if calibration is set): a recommendation",
    )
    runtimes: list[str] = Field(description="TFLite runtimes (and versions) the head was checked on")
    trained_on: str = ""
    report: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _streams(self) -> "Manifest":
        if self.streams != ["appearance"] and self.streams != ["appearance", "motion"]:
            raise ValueError("streams must be [appearance] or [appearance, motion]")
        if ("motion" in self.streams) != (self.motion is not None):
            raise ValueError("a head that reads the motion stream needs 'motion' (and only such a head)")
        return self

    @property
    def input_dim(self) -> int:
        """Per-frame input length: the extractor's features, plus the motion descriptor if read."""
        return self.feature_dim + (self.motion.dim if self.motion is not None else 0)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_manifest(path: Path) -> tuple[Manifest, Path]:
    """Read a manifest from a file or from the ``manifest.json`` inside a directory."""
    path = Path(path)
    file = path / MANIFEST_NAME if path.is_dir() else path
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelError(f"{file}: head manifest not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{file}: cannot read head manifest: {exc}") from None
    try:
        return Manifest.model_validate_json(text), file.parent
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise ModelError(f"{file}: invalid manifest at {where}: {err['msg']}") from None


def verify_file(ref: FileRef, folder: Path) -> Path:
    """The referenced file's path, after checking it exists and has the recorded sha256."""
    path = folder / ref.file
    if not path.is_file():
        raise ModelError(f"{path}: file named by the manifest is missing")
    actual = sha256_file(path)
    if actual != ref.sha256:
        raise ModelError(
            f"{path}: sha256 {actual[:12]}… does not match the manifest's {ref.sha256[:12]}… (corrupt or replaced)"
        )
    return path


def write_manifest(folder: Path, manifest: Manifest) -> Path:
    """The one way a manifest is written (export and calibration alike): validated again as a
    whole (fields set after construction included), its head and labels present with the recorded
    sha256, then written atomically. Raises ModelError, leaving the old file, if any check fails."""
    from .store import write_atomic  # here: store imports this module

    folder = Path(folder)
    try:
        checked = Manifest.model_validate(manifest.model_dump())
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise ModelError(f"{folder / MANIFEST_NAME}: not written, invalid at {where}: {err['msg']}") from None
    for ref in (checked.head, checked.labels):
        verify_file(ref, folder)
    path = folder / MANIFEST_NAME
    write_atomic(path, (checked.model_dump_json(indent=1) + "\n").encode())
    return path
