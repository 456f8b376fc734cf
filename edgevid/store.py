"""Where models live on the device, and how they get there (fetch with sha256 check, atomically)."""

from __future__ import annotations

import glob
import io
import os
import stat
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import __version__
from .errors import ModelError, UsageError
from .manifest import MANIFEST_NAME, Manifest, load_manifest, sha256_file, verify_file


@dataclass(frozen=True)
class Download:
    """One official place a file is published: a URL, and the archive member when it is a .tgz."""

    url: str
    member: str | None = None  # None: the URL serves the .tflite itself


@dataclass(frozen=True)
class KnownExtractor:
    """An extractor edgevid can fetch: where it is published, in order, and its published hashes."""

    name: str
    filename: str
    sources: tuple[Download, ...]
    sha256: frozenset[str]


CORAL_COMMIT = "75e675633c2110a991426c8afa64f122b16ac372"

EXTRACTORS: dict[str, KnownExtractor] = {
    e.name: e
    for e in (
        KnownExtractor(
            name="mobilenet_v2_1.0_224_quant",
            filename="mobilenet_v2_1.0_224_quant.tflite",
            sources=(
                # The exact file the bundled head was trained and checked on, byte for byte, at a fixed commit.
                Download(
                    f"https://raw.githubusercontent.com/google-coral/edgetpu/{CORAL_COMMIT}/test_data/"
                    "mobilenet_v2_1.0_224_quant.tflite"
                ),
                # TensorFlow's archive of the same checkpoint: other bytes, accepted by the head's fingerprint.
                Download(
                    "https://storage.googleapis.com/download.tensorflow.org/models/tflite_11_05_08/"
                    "mobilenet_v2_1.0_224_quant.tgz",
                    "mobilenet_v2_1.0_224_quant.tflite",
                ),
            ),
            # TOCO conversion (Coral's copy), and the TF archive's member (same checkpoint).
            sha256=frozenset(
                {
                    "09949bf5b07f073f83a8c6ff9a59cced07e06f3822d41735e17f399be41db2fc",
                    "f08d447cde49b4e0446428aa921aff0a14ea589fa9c5817b31f83128e9a43c1d",
                }
            ),
        ),
        KnownExtractor(
            name="v3-small_224_1.0_uint8",
            filename="v3-small_224_1.0_uint8.tflite",
            sources=(
                Download(
                    "https://storage.googleapis.com/mobilenet_v3/checkpoints/v3-small_224_1.0_uint8.tgz",
                    "v3-small_224_1.0_uint8/v3-small_224_1.0_uint8.tflite",
                ),
            ),
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


def write_atomic(path: Path, data: bytes, check: Callable[[Path], None] | None = None) -> None:
    """Write to a temp file in the same directory, fsync, then rename: never a half-written file.

    ``check``, if given, sees the complete temp file before the rename and may raise to keep the
    old file (a model that must prove itself first). A temp file left by a writer that was killed
    (SIGKILL, power loss) is removed by the next one."""
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
        if check is not None:
            check(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _from_tgz(data: bytes, spec: KnownExtractor, member: str, origin: str) -> bytes:
    import tarfile  # here, not at start-up: only fetching needs it

    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for entry in tar.getmembers():
                if entry.isfile() and (
                    entry.name in (member, spec.filename) or entry.name.endswith("/" + spec.filename)
                ):
                    extracted = tar.extractfile(entry)
                    if extracted is not None:
                        return extracted.read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise ModelError(f"{origin}: not a readable .tgz archive: {exc}") from None
    raise ModelError(f"{origin}: archive has no member {member}")


def _read_local(source: Path, spec: KnownExtractor) -> tuple[bytes, str]:
    archives = [Path(d.url).name for d in spec.sources if d.member]
    if source.is_dir():
        for candidate in (source / spec.filename, *(source / a for a in archives)):
            if candidate.is_file():
                source = candidate
                break
        else:
            raise ModelError(f"{source}: has neither {' nor '.join([spec.filename, *archives])}")
    try:
        if not stat.S_ISREG(source.stat().st_mode):  # a FIFO would block forever, a device never end
            raise ModelError(f"{source}: not a regular file, expected a .tflite, .tgz or folder")
        data = source.read_bytes()
    except OSError as exc:
        raise ModelError(f"{source}: cannot read: {exc.strerror}") from None
    if source.name.endswith((".tgz", ".tar.gz")):
        member = next((d.member for d in spec.sources if d.member), spec.filename)
        data = _from_tgz(data, spec, member, str(source))
    return data, str(source)


#: Refuse a download larger than this (the extractors are 2-4 MB; their archives up to ~70 MB).
MAX_DOWNLOAD = 128 << 20


def mirrored(url: str) -> str:
    """``$EDGEVID_MODEL_MIRROR``, when set, serves every official URL under its own host's name:
    ``https://host/path`` is fetched as ``$EDGEVID_MODEL_MIRROR/host/path`` (a local or company
    mirror for devices that cannot reach the internet; the same checks apply)."""
    mirror = os.environ.get("EDGEVID_MODEL_MIRROR", "").rstrip("/")
    if not mirror:
        return url
    if not mirror.startswith(("http://", "https://", "file://")):
        raise UsageError(f"EDGEVID_MODEL_MIRROR={mirror!r}: expected an http://, https:// or file:// URL")
    return f"{mirror}/{url.split('://', 1)[1]}"


def download(url: str, timeout: float, limit: int = MAX_DOWNLOAD) -> bytes:
    """The body at ``url``, whole, within ``timeout`` seconds in all: a server that stalls, trickles,
    closes early or sends more than ``limit`` bytes is an error saying which, never a partial file."""
    import http.client  # here, not at start-up (~20 ms): only fetching needs it
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={"User-Agent": f"edgevid/{__version__}"})
    got = 0
    try:
        with urllib.request.urlopen(request, timeout=min(timeout, 30.0)) as response:
            declared = response.headers.get("Content-Length")
            expected = int(declared) if declared and declared.isdigit() else None
            if expected is not None and expected > limit:
                raise ModelError(f"{url}: {expected} bytes is more than an extractor ({limit >> 20} MB at most)")
            chunks = []
            while chunk := response.read1(1 << 16):  # what has arrived: a trickle is seen as one
                got += len(chunk)
                chunks.append(chunk)
                if got > limit:
                    raise ModelError(f"{url}: more than {limit >> 20} MB, not an extractor")
                if time.monotonic() > deadline:
                    raise ModelError(f"{url}: too slow: {got} bytes in {timeout:g} s (raise --timeout on a slow link)")
    except http.client.IncompleteRead as exc:
        raise ModelError(
            f"{url}: truncated: the server closed after {got + len(exc.partial)} of "
            f"{got + len(exc.partial) + (exc.expected or 0)} bytes"
        ) from None
    except urllib.error.HTTPError as exc:
        raise ModelError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or exc
        if isinstance(reason, TimeoutError) or isinstance(exc, TimeoutError):
            reason = f"no data for {min(timeout, 30.0):g} s"
        raise ModelError(f"{url}: {reason}") from None
    if expected is not None and got != expected:
        raise ModelError(f"{url}: truncated: {got} of {expected} bytes")
    return b"".join(chunks)


def head_for(name: str, head: Path | None) -> Manifest | None:
    """The manifest of the head (``head``, else the bundled one) when it reads extractor ``name``."""
    manifest, _ = load_manifest(Path(head) if head else default_head_dir())
    return manifest if manifest.extractor.name == name else None


def acceptance(candidate: Path, spec: KnownExtractor, manifest: Manifest | None) -> str:
    """Why ``candidate`` may be installed as ``spec`` (for ``manifest``'s head when it reads it),
    or a ModelError saying why not. A head's extractor must give that head's features: its checked
    file by sha256, any other file by the head's fingerprint; other extractors: a published sha256."""
    digest = sha256_file(candidate)
    if manifest is not None:
        if digest in manifest.extractor.sha256:
            return f"sha256 {digest[:12]}…, the file head {manifest.name} was checked with"
        if manifest.extractor.fingerprint is not None:
            from .extractor import Extractor  # here: only a file of unknown bytes needs the runtime
            from .fingerprint import check

            try:
                extractor = Extractor(candidate, num_threads=1, feature_tensor=manifest.extractor.feature_tensor)
            except ModelError as exc:  # named by what it is, not by the temp file it sits in
                raise ModelError(
                    f"sha256 {digest[:12]}… is not head {manifest.name}'s extractor: "
                    f"{str(exc).removeprefix(f'extractor {candidate}: ')}"
                ) from None
            if extractor.feature_dim != manifest.feature_dim:
                raise ModelError(
                    f"gives {extractor.feature_dim}-d features, head {manifest.name} reads {manifest.feature_dim}-d"
                )
            result = check(manifest.extractor.fingerprint, extractor)
            if not result.ok:
                raise ModelError(
                    f"sha256 {digest[:12]}… does not give the features head {manifest.name} was trained on: "
                    f"{result.describe()} (another network or a damaged file)"
                )
            return f"sha256 {digest[:12]}…, features match head {manifest.name}'s fingerprint ({result.describe()})"
    if digest in spec.sha256:
        return f"sha256 {digest[:12]}…, a published {spec.name} file"
    raise ModelError(f"sha256 {digest[:12]}… is not a known {spec.name} file (corrupt download or wrong file)")


@dataclass(frozen=True)
class Fetched:
    """What ``models fetch`` did: where the file is, where it came from, and why it was accepted."""

    path: Path
    origin: str
    reason: str
    already: bool = False


def _install(target: Path, data: bytes, spec: KnownExtractor, manifest: Manifest | None) -> str:
    reason: list[str] = []
    try:
        write_atomic(target, data, check=lambda tmp: reason.append(acceptance(tmp, spec, manifest)))
    except ModelError:
        raise
    except OSError as exc:  # read-only folder, full disk, a file where a folder should be
        why = (
            "a file is in the way of the folder"
            if isinstance(exc, (FileExistsError, NotADirectoryError))
            else (exc.strerror or str(exc)).lower()
        )
        raise ModelError(
            f"{target.parent}: cannot install {target.name}: {why} (choose another --model-dir or EDGEVID_MODEL_DIR)"
        ) from None
    return reason[0]


def fetch_extractor(
    name: str = DEFAULT_EXTRACTOR,
    *,
    source: Path | None = None,
    directory: Path | str | None = None,
    timeout: float = 120.0,
    head: Path | None = None,
) -> Fetched:
    """Install a known extractor into the model directory, checked first (:func:`acceptance`).

    Without ``source``, a file already installed and accepted is kept (no network); else each
    official download is tried in turn until one is accepted. Nothing is replaced by a file that
    fails its check."""
    target = extractor_path(name, directory)
    spec = EXTRACTORS[name]
    manifest = head_for(name, head)
    if source is not None:
        data, origin = _read_local(Path(source), spec)
        try:
            return Fetched(target, origin, _install(target, data, spec, manifest))
        except ModelError as exc:
            raise ModelError(f"{origin}: {exc}") from None
    if target.is_file():
        try:
            return Fetched(target, str(target), acceptance(target, spec, manifest), already=True)
        except (ModelError, OSError):
            pass  # damaged or another file: download it again
    problems, unreachable = [], 0
    for place in spec.sources:
        url = mirrored(place.url)
        try:
            data = download(url, timeout)
        except ModelError as exc:
            problems.append(str(exc))
            unreachable += 1
            continue
        try:
            if place.member:
                data = _from_tgz(data, spec, place.member, url)
            return Fetched(target, url, _install(target, data, spec, manifest))
        except ModelError as exc:
            problems.append(str(exc) if str(exc).startswith(url) else f"{url}: {exc}")
    advice = (
        "offline? copy the file here and use `edgevid models fetch --from PATH`, or set EDGEVID_MODEL_MIRROR"
        if unreachable
        else "nothing was installed; report it, or install a checked copy with `--from PATH`"
    )
    raise ModelError(f"cannot install {name}: {'; '.join(problems)} ({advice})")


def verify_all(directory: Path | str | None = None, head: Path | None = None) -> list[tuple[Path, str | None]]:
    """Check every model file: fetched extractors (as ``models fetch`` accepts them), and each file
    the head's manifest names. Returns ``(path, problem)`` pairs, ``problem`` None when good."""
    results: list[tuple[Path, str | None]] = []
    head_dir = Path(head) if head else default_head_dir()
    try:
        manifest, folder = load_manifest(head_dir)
    except ModelError as exc:
        manifest, folder = None, None
        results.append((head_dir / MANIFEST_NAME, str(exc)))
    for spec in EXTRACTORS.values():
        path = model_dir(directory) / spec.filename
        if not path.exists():
            if manifest is not None and spec.name == manifest.extractor.name:
                results.append((path, "missing (run `edgevid models fetch`)"))
            continue
        try:
            acceptance(path, spec, manifest if manifest is not None and manifest.extractor.name == spec.name else None)
            results.append((path, None))
        except ModelError as exc:
            results.append((path, str(exc)))
        except OSError as exc:
            results.append((path, f"cannot read: {(exc.strerror or str(exc)).lower()}"))
    if manifest is None or folder is None:
        return results
    for ref in (manifest.head, manifest.labels):
        try:
            results.append((verify_file(ref, folder), None))
        except ModelError as exc:
            results.append((folder / ref.file, str(exc)))
        except OSError as exc:
            results.append((folder / ref.file, f"cannot read: {(exc.strerror or str(exc)).lower()}"))
    return results
