"""Where models live on the device, and how they get there (fetch with sha256 check, atomically)."""

from __future__ import annotations

import glob
import hashlib
import io
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelError, UsageError
from .manifest import MANIFEST_NAME, load_manifest, sha256_file, verify_file


@dataclass(frozen=True)
class KnownExtractor:
    """An extractor edgevid can fetch: the official download and the hashes we accept."""

    name: str
    filename: str
    url: str
    member: str
    sha256: frozenset[str]


EXTRACTORS: dict[str, KnownExtractor] = {
    e.name: e
    for e in (
        KnownExtractor(
            name="mobilenet_v2_1.0_224_quant",
            filename="mobilenet_v2_1.0_224_quant.tflite",
            url="https://storage.googleapis.com/download.tensorflow.org/models/tflite_11_05_08/mobilenet_v2_1.0_224_quant.tgz",
            member="mobilenet_v2_1.0_224_quant.tflite",
            # TOCO conversion as distributed, and the tgz member (same checkpoint).
            sha256=frozenset({
                "09949bf5b07f073f83a8c6ff9a59cced07e06f3822d41735e17f399be41db2fc",
                "f08d447cde49b4e0446428aa921aff0a14ea589fa9c5817b31f83128e9a43c1d",
            }),
        ),
        KnownExtractor(
            name="v3-small_224_1.0_uint8",
            filename="v3-small_224_1.0_uint8.tflite",
            url="https://storage.googleapis.com/mobilenet_v3/checkpoints/v3-small_224_1.0_uint8.tgz",
            member="v3-small_224_1.0_uint8/v3-small_224_1.0_uint8.tflite",
            sha256=frozenset({"da341cf06fa50127a72dcbeb140ee5ee98013630aa044260a4c3d45c43fc89ce"}),
        ),
    )
}
DEFAULT_EXTRACTOR = "mobilenet_v2_1.0_224_quant"


def model_dir(explicit: Path | str | None = None) -> Path:
    """``--model-dir``, else ``$EDGEVID_MODEL_DIR``, else ``$XDG_DATA_HOME/edgevid/models``."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get("EDGEVID_MODEL_DIR"):
        return Path(os.environ["EDGEVID_MODEL_DIR"]).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "edgevid" / "models"


def default_head_dir() -> Path:
    """The head shipped with edgevid: ``models/`` of the repository.

    A wheel installs it as ``edgevid/models``; a source checkout (or editable install) has it
    beside the package.
    """
    package = Path(__file__).resolve().parent
    for candidate in (package / "models", package.parent / "models"):
        if (candidate / MANIFEST_NAME).is_file():
            return candidate
    return package.parent / "models"


def extractor_path(name: str = DEFAULT_EXTRACTOR, directory: Path | str | None = None) -> Path:
    """Path of a known extractor in the model directory (it may not be fetched yet)."""
    if name not in EXTRACTORS:
        raise UsageError(f"unknown extractor {name!r}; known: {', '.join(EXTRACTORS)}")
    return model_dir(directory) / EXTRACTORS[name].filename


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temp file in the same directory, fsync, then rename: never a half-written file.
    A temp file left by a writer that was killed (SIGKILL, power loss) is removed by the next one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp's 0600 would hide models from the service user
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _from_tgz(data: bytes, spec: KnownExtractor, origin: str) -> bytes:
    import tarfile  # here, not at start-up: only fetching needs it

    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar.getmembers():
                if member.isfile() and (member.name == spec.member or member.name.endswith("/" + spec.filename) or member.name == spec.filename):
                    extracted = tar.extractfile(member)
                    if extracted is not None:
                        return extracted.read()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ModelError(f"{origin}: not a readable .tgz archive: {exc}") from None
    raise ModelError(f"{origin}: archive has no member {spec.member}")


def _read_local(source: Path, spec: KnownExtractor) -> tuple[bytes, str]:
    if source.is_dir():
        for candidate in (source / spec.filename, source / Path(spec.url).name):
            if candidate.is_file():
                source = candidate
                break
        else:
            raise ModelError(f"{source}: has neither {spec.filename} nor {Path(spec.url).name}")
    try:
        if not stat.S_ISREG(source.stat().st_mode):  # a FIFO would block forever, a device never end
            raise ModelError(f"{source}: not a regular file, expected a .tflite, .tgz or folder")
        data = source.read_bytes()
    except OSError as exc:
        raise ModelError(f"{source}: cannot read: {exc.strerror}") from None
    if source.name.endswith((".tgz", ".tar.gz")):
        data = _from_tgz(data, spec, str(source))
    return data, str(source)


def _download(spec: KnownExtractor, timeout: float) -> tuple[bytes, str]:
    import urllib.error  # here, not at start-up (http.client costs ~20 ms): only fetching needs it
    import urllib.request

    try:
        with urllib.request.urlopen(spec.url, timeout=timeout) as response:
            data = response.read()
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ModelError(
            f"cannot download {spec.url}: {reason} (offline? copy the file here and use `edgevid models fetch --from PATH`)"
        ) from None
    return _from_tgz(data, spec, spec.url), spec.url


def fetch_extractor(
    name: str = DEFAULT_EXTRACTOR, *, source: Path | None = None, directory: Path | str | None = None, timeout: float = 60.0
) -> Path:
    """Install a known extractor into the model directory after checking its sha256."""
    target = extractor_path(name, directory)
    spec = EXTRACTORS[name]
    data, origin = _read_local(Path(source), spec) if source is not None else _download(spec, timeout)
    digest = hashlib.sha256(data).hexdigest()
    if digest not in spec.sha256:
        raise ModelError(f"{origin}: sha256 {digest[:12]}… is not a known {name} file (corrupt download or wrong file)")
    try:
        write_atomic(target, data)
    except OSError as exc:  # read-only folder, full disk, a file where a folder should be
        reason = "a file is in the way of the folder" if isinstance(exc, (FileExistsError, NotADirectoryError)) \
            else (exc.strerror or str(exc)).lower()
        raise ModelError(f"{target.parent}: cannot install {target.name}: {reason} "
                         "(choose another --model-dir or EDGEVID_MODEL_DIR)") from None
    return target


def verify_all(directory: Path | str | None = None, head: Path | None = None) -> list[tuple[Path, str | None]]:
    """Check every model file: fetched extractors, and each file the head's manifest names.

    Returns ``(path, problem)`` pairs, ``problem`` None when the file is good.
    """
    results: list[tuple[Path, str | None]] = []
    for spec in EXTRACTORS.values():
        path = model_dir(directory) / spec.filename
        if not path.exists():
            if spec.name == DEFAULT_EXTRACTOR:
                results.append((path, "missing (run `edgevid models fetch`)"))
            continue
        try:
            digest = sha256_file(path)
        except OSError as exc:
            results.append((path, f"cannot read: {(exc.strerror or str(exc)).lower()}"))
            continue
        results.append((path, None if digest in spec.sha256 else f"sha256 {digest[:12]}… is not a known {spec.name} file"))
    head_dir = Path(head) if head else default_head_dir()
    try:
        manifest, folder = load_manifest(head_dir)
    except ModelError as exc:
        results.append((head_dir / MANIFEST_NAME, str(exc)))
        return results
    for ref in (manifest.head, manifest.labels):
        try:
            results.append((verify_file(ref, folder), None))
        except ModelError as exc:
            results.append((folder / ref.file, str(exc)))
        except OSError as exc:
            results.append((folder / ref.file, f"cannot read: {(exc.strerror or str(exc)).lower()}"))
    return results
