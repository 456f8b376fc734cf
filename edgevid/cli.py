"""The ``edgevid`` command line.

User mistakes end as one line on stderr (``edgevid: error: …``) with exit code 2 (usage) or 1
(failure), never a traceback.
"""

from __future__ import annotations

import sys

from .hangup import HANGUPS

if sys.argv[1:2] == ["run"]:
    # First of all, before this module's imports: a SIGHUP while `edgevid run` starts must not
    # kill it (what it does then: edgevid.hangup). Only the interpreter's own start-up is earlier.
    HANGUPS.install()

import argparse  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING, Sequence  # noqa: E402

from . import __version__  # noqa: E402
from .errors import EdgevidError, InputError, UsageError  # noqa: E402
from .outputs.render import render  # noqa: E402

if TYPE_CHECKING:  # the CLI starts fast: heavy modules load in the command that needs them
    from .manifest import Manifest


def _die(exc: EdgevidError) -> int:
    print(f"edgevid: error: {exc}", file=sys.stderr)
    return exc.exit_code


class _Progress:
    """A one-line progress bar on stderr, only for a terminal and more than one clip."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.enabled = total > 1 and sys.stderr.isatty()
        self.done = 0

    def step(self, name: str) -> None:
        self.done += 1
        if self.enabled:
            width = 30
            filled = width * self.done // self.total
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {name[-40:]:<40}")
            sys.stderr.flush()

    def clear(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + " " * 90 + "\r")
            sys.stderr.flush()


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model-dir", type=Path, help="where fetched extractors live (default: $EDGEVID_MODEL_DIR or XDG data dir)"
    )
    p.add_argument("--extractor", type=Path, help="extractor .tflite (default: the fetched MobileNetV2 int8)")
    p.add_argument("--head", type=Path, help="head directory or manifest.json (default: the bundled JHMDB head)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="interpreter threads (default: all cores)")


def load_classifier(args: argparse.Namespace):
    """Extractor + head from the CLI options, checked to fit."""
    from . import pipeline

    if args.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {args.threads}")
    return pipeline.load_classifier(args.head, args.extractor, args.model_dir, args.threads)


def cmd_classify(args: argparse.Namespace) -> int:
    from .capture import display, find_videos
    from .gate import GateSpec

    if args.top_k < 1:
        raise UsageError(f"--top-k must be >= 1, got {args.top_k}")
    live = [raw for raw in args.paths if _is_live(raw)]
    if live:
        return _classify_live(args, live)
    clips: list[Path] = []
    failed = 0
    for raw in args.paths:
        try:
            found, problems = find_videos(raw)
        except InputError as exc:
            failed += 1
            _report_failure(args, display(raw), str(exc))
            continue
        clips.extend(found)
        for problem in problems:  # an unreadable subfolder: its clips were not classified
            failed += 1
            _report_failure(args, display(raw), problem)
    if not clips:
        return 1 if failed else 0
    classifier = load_classifier(args)
    gate = None if args.no_gate else GateSpec()
    progress = _Progress(len(clips))
    for clip in clips:
        result = classifier.classify(clip, args.top_k, gate)
        progress.clear()
        if not result.ok:
            failed += 1
            _report_failure(args, result.path, result.error or "failed")
        elif args.json:
            if result.timings:  # 0.1 ms is finer than one run repeats to
                result.timings = result.timings.model_copy(
                    update={k: round(v, 1) for k, v in result.timings.model_dump().items()}
                )
            print(result.model_dump_json(exclude_none=True, exclude={"error"} if result.ok else set()), flush=True)
        else:
            scores = ", ".join(f"{s.label} {s.score:.2f}" for s in result.top)
            if result.idle:
                scores = f"idle (the motion gate found all {result.windows} window(s) still; --no-gate: classify them)"
            line = f"{result.path}: {scores}"
            if args.timings and result.timings:
                t = result.timings
                line += (
                    f"  [decode {t.decode_ms:.1f} ms, preprocess {t.preprocess_ms:.1f} ms, "
                    f"extract {t.extract_ms:.1f} ms, head {t.head_ms:.1f} ms, total {t.total_ms:.1f} ms]"
                )
            print(line, flush=True)
        progress.step(clip.name)
    progress.clear()
    return 1 if failed else 0


def _is_live(raw: str) -> bool:
    """A camera index, /dev/videoN or URL, by the daemon's own rule, unless a file of that name exists."""
    if Path(raw).is_file():
        return False
    from .sources.kinds import detect

    return not detect(raw).file  # a camera or a stream (a pipe is never detected from a uri)


def _classify_live(args: argparse.Namespace, live: list[str]) -> int:
    """A quick live check: the daemon's source and window machinery for --windows predictions."""
    if len(args.paths) > 1:
        raise UsageError(f"a camera or stream ({live[0]}) is classified alone; give files and folders in another call")
    if args.windows < 1 or not args.timeout > 0:
        raise UsageError(f"--windows must be >= 1 and --timeout > 0, got {args.windows} and {args.timeout:g}")
    if args.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {args.threads}")
    from .livecheck import live_check

    def emit(message) -> None:
        if args.json:
            print(message.model_dump_json(exclude_none=True), flush=True)
        else:
            print(render(message.model_dump(mode="json")), flush=True)  # as `edgevid subscribe` shows it

    return live_check(
        live[0],
        windows=args.windows,
        timeout=args.timeout,
        top_k=args.top_k,
        head=args.head,
        extractor=args.extractor,
        model_dir=args.model_dir,
        threads=args.threads,
        emit=emit,
        gate=not args.no_gate,
    )


def _report_failure(args: argparse.Namespace, path: str, message: str) -> None:
    if args.json:
        from .messages import ClipResult

        print(ClipResult(path=path, ok=False, error=message).model_dump_json(exclude_none=True), flush=True)
    print(f"edgevid: error: {message}", file=sys.stderr, flush=True)


def cmd_models_fetch(args: argparse.Namespace) -> int:
    from .store import DEFAULT_EXTRACTOR, EXTRACTORS, fetch_extractor

    if args.name is not None and args.name not in EXTRACTORS:
        raise UsageError(f"unknown extractor {args.name!r}; known: {', '.join(sorted(EXTRACTORS))}")
    if not 0 < args.timeout <= 3600:
        raise UsageError(f"--timeout must be in (0, 3600] seconds, got {args.timeout:g}")
    names = list(EXTRACTORS) if args.all else [args.name or DEFAULT_EXTRACTOR]
    for name in names:
        done = fetch_extractor(name, source=args.source, directory=args.model_dir, timeout=args.timeout, head=args.head)
        if done.already:
            print(f"{name}: already installed {done.path} ({done.reason})")
        else:
            print(f"{name}: installed {done.path} from {done.origin} ({done.reason})")
    return 0


def cmd_models_verify(args: argparse.Namespace) -> int:
    from .store import verify_all

    bad = 0
    for path, problem in verify_all(args.model_dir, args.head):
        if problem is None:
            print(f"ok      {path}")
        else:
            bad += 1
            print(f"FAILED  {path}: {problem}")
    return 1 if bad else 0


def _head_and_extractor(args: argparse.Namespace):
    """The head's manifest and folder, and where its extractor is (or would be) installed."""
    from .manifest import load_manifest
    from .store import EXTRACTORS, default_head_dir, model_dir

    manifest, folder = load_manifest(args.head or default_head_dir())
    known = EXTRACTORS.get(manifest.extractor.name)
    path = model_dir(args.model_dir) / (known.filename if known else f"{manifest.extractor.name}.tflite")
    return manifest, folder, path


def cmd_models_info(args: argparse.Namespace) -> int:
    import json

    from .manifest import verify_file

    manifest, folder, extractor = _head_and_extractor(args)
    labels = verify_file(manifest.labels, folder).read_text(encoding="utf-8").split()  # missing or altered: one line
    if args.json:
        print(
            json.dumps(
                {
                    "head": str(folder),
                    "manifest": manifest.model_dump(mode="json"),
                    "labels": labels,
                    "extractor_path": str(extractor),
                    "extractor_installed": extractor.is_file(),
                },
                indent=1,
            )
        )
        return 0
    print("\n".join(_head_lines(manifest, folder, labels, extractor)))
    return 0


def _head_lines(manifest: Manifest, folder: Path, labels: list[str], extractor: Path) -> list[str]:
    """``models info`` as text: what a user checks before trusting a head."""
    ts = manifest.timescale
    window = (
        (
            f"{ts.window_s:.4g} s ({'fixed windows' if ts.fit == 'windows' else 'whole clips, median duration'}), "
            f"{manifest.frames} frames, one every {ts.window_s / manifest.frames:.4g} s"
        )
        if ts
        else f"{manifest.frames} frames per clip"
    )
    metrics = (
        ", ".join(f"{k} {v:.3f}" if v < 1.5 else f"{k} {v:g}" for k, v in manifest.metrics.items()) or "none recorded"
    )
    state = "installed" if extractor.is_file() else "not installed: run `edgevid models fetch`"
    lines = [
        f"head:       {manifest.name} ({folder})",
        f"labels:     {len(labels)}: {', '.join(labels)}",
        f"window:     {window}",
        f"trained on: {manifest.trained_on or 'not recorded'}",
        f"metrics:    {metrics}" + (f" (report: {folder / manifest.report})" if manifest.report else ""),
        f"min_score:  {manifest.min_score:g} (chosen on held-out validation; the sources' default)"
        if manifest.min_score is not None
        else "min_score:  none recommended (sources default to 0)",
        f"extractor:  {manifest.extractor.name}, sha256 {', '.join(h[:12] + '…' for h in manifest.extractor.sha256)}, "
        f"{manifest.extractor.feature_dim}-d {manifest.extractor.feature_tensor}",
        f"            {extractor} ({state})",
    ]
    fp = manifest.extractor.fingerprint
    if fp is not None:
        lines.insert(
            -1,
            f"            other files: accepted when their features on edgevid's {fp.probes} reach cosine ≥ "
            f"{fp.min_cosine:g}",
        )
    return lines


def cmd_models_list(args: argparse.Namespace) -> int:
    from .store import EXTRACTORS, model_dir

    manifest, folder, _ = _head_and_extractor(args)
    where = model_dir(args.model_dir)
    print(f"extractors in {where}:")
    for name, known in sorted(EXTRACTORS.items()):
        path = where / known.filename
        used = " (the head's)" if name == manifest.extractor.name else ""
        print(f"  {name:<28} {'installed' if path.is_file() else 'not installed'}{used}")
    print(f"head: {manifest.name} ({folder}), needs {manifest.extractor.name}")
    return 0


def cmd_config_init(args: argparse.Namespace) -> int:
    import json

    from .store import write_atomic

    if args.config.exists() and not args.force:
        raise UsageError(f"{args.config}: exists; add --force to replace it")
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8")
    if args.source is not None:
        # TOML basic strings are JSON strings for anything a uri holds.
        text = text.replace('uri = "0"', f"uri = {json.dumps(args.source)}", 1)
    try:
        write_atomic(args.config, text.encode())
    except OSError as exc:
        raise EdgevidError(f"{args.config}: cannot write: {exc.strerror or exc}") from None
    print(f"{args.config}: written; check it with `edgevid config check {args.config}`")
    return 0


EXAMPLE_CONFIG = Path(__file__).with_name("edgevid.example.toml")


def cmd_run(args: argparse.Namespace) -> int:
    HANGUPS.install()  # main() did already for `edgevid run`; again for a caller of cmd_run alone
    from .config import load_config
    from .daemon import run_daemon

    token = HANGUPS.reading()
    cfg = load_config(args.config)
    HANGUPS.read(token)
    return run_daemon(cfg, args.config)


def cmd_config_check(args: argparse.Namespace) -> int:
    from .config import load_config, source_timing
    from .daemon import preflight

    cfg = load_config(args.config)
    # Everything `run` refuses is refused here too (models missing, corrupt or not fitting), and a
    # source that cannot open is an error here, where `run` would keep retrying it.
    classifier, problems = preflight(cfg)
    head = classifier.head
    trained = head.manifest.timescale.window_s if head.manifest.timescale else None
    for problem in problems:
        print(f"edgevid: error: {args.config}: {problem}", file=sys.stderr)
    for source in cfg.sources:
        t = source_timing(source, head.frames, trained)
        print(
            f"source {source.id}: window {t.window:.4g} s ({t.m} frames, one every {t.dt:.4g} s), "
            f"a prediction every {t.hop_s:.4g} s"
        )
        warning = t.warning(source.id)
        if warning:
            print(f"edgevid: warning: {warning}", file=sys.stderr)
    if problems:
        return 1
    print(f"{args.config}: ok ({len(cfg.sources)} source(s), publishing on {cfg.publish.endpoint})")
    return 0


def _load_key(path: Path, option: str, *, secret: bool) -> tuple[bytes, bytes | None]:
    """A zmq.auth certificate file as (public, secret), refused in one line if it is not one."""
    import zmq.auth

    if not path.is_file():
        raise UsageError(f"{option} {path}: no such file")
    try:
        public, secret_key = zmq.auth.load_certificate(str(path))
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot read: {(exc.strerror or str(exc)).lower()}") from None
    except (ValueError, KeyError, UnicodeDecodeError):
        raise UsageError(
            f"{option} {path}: not a ZeroMQ certificate file (made by zmq.auth.create_certificates)"
        ) from None
    if secret and secret_key is None:
        raise UsageError(f"{option} {path}: holds only a public key; give the client's secret key file (*.key_secret)")
    return public, secret_key


def _web_call(url: str, token: str | None, method: str = "GET", body: dict | None = None) -> dict:
    """One JSON request to a running daemon's web page; any failure is one EdgevidError line."""
    import json
    import urllib.error
    import urllib.request

    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:
        said = exc.read().decode("utf-8", "replace").strip().splitlines()
        raise EdgevidError(f"{url}: {exc.code} {said[-1] if said else exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        why = getattr(exc, "reason", exc)
        raise EdgevidError(f"{url}: cannot reach the daemon's web page ([web] listen): {why}") from None
    except ValueError:
        raise EdgevidError(f"{url}: the answer is not JSON (is this edgevid's web page?)") from None


def cmd_record(args: argparse.Namespace) -> int:
    """Ask a running daemon to record the next seconds of a source; --wait: until the clip is written."""
    import time
    import urllib.parse

    base, token = args.web.rstrip("/"), args.token or os.environ.get("EDGEVID_WEB_TOKEN")
    if not 0 < args.seconds <= 600:
        raise UsageError(f"--seconds: expected 0 < seconds <= 600, got {args.seconds:g}")
    body: dict = {"seconds": args.seconds}
    if args.label:
        body["label"] = args.label
    got = _web_call(f"{base}/api/sources/{urllib.parse.quote(args.source, safe='')}/record", token, "POST", body)
    print(f"recording {got['clip']} ({args.seconds:g} s of {got['source']})", flush=True)
    if not args.wait:
        return 0
    deadline = time.monotonic() + args.seconds + 60
    while time.monotonic() < deadline:
        listed = _web_call(f"{base}/api/clips", token)
        if any(c["name"] == got["clip"] for c in listed["clips"]):
            print(f"written {got['clip']}.mp4", flush=True)
            return 0
        time.sleep(0.5)
    raise EdgevidError(f"{got['clip']}: not written within {args.seconds + 60:g} s (see the daemon's log)")


def cmd_subscribe(args: argparse.Namespace) -> int:
    sock = _subscriber(args)
    received = 0
    try:
        while args.count is None or received < args.count:
            if not sock.poll(int(args.timeout * 1000) if args.timeout else None):
                raise EdgevidError(f"no message from {args.endpoint} within {args.timeout:g} s")
            frames = sock.recv_multipart()
            line, problem = _subscribed_line(frames, args.json)
            if problem is not None:  # not edgevid's: say so in one line and go on
                print(f"edgevid: warning: {problem}", file=sys.stderr, flush=True)
                continue
            received += 1
            print(line, flush=True)
    finally:
        sock.close(linger=0)
    return 0


def _subscriber(args: argparse.Namespace):
    """The SUB socket ``subscribe`` reads, after checking its options (one line each when wrong)."""
    import zmq

    if args.timeout is not None and not 0 < args.timeout < 1e6:
        raise UsageError(
            f"--timeout must be a number of seconds > 0, got {args.timeout:g} (leave it out to wait forever)"
        )
    if args.count is not None and args.count < 1:
        raise UsageError(f"--count must be >= 1, got {args.count}")
    if not re.match(r"^(tcp|ipc|ws|wss)://\S+$", args.endpoint):
        raise UsageError(
            f"--endpoint {args.endpoint!r}: expected a ZeroMQ address such as tcp://127.0.0.1:5555 or ipc:///run/edgevid.sock"
        )
    if (args.curve_secret_key is None) != (args.curve_server_key is None):
        raise UsageError(
            "--curve-secret-key and --curve-server-key go together (the client's secret key file and the server's "
            "public key file)"
        )
    keys = None
    if args.curve_secret_key:
        public, secret = _load_key(args.curve_secret_key, "--curve-secret-key", secret=True)
        server_public, _ = _load_key(args.curve_server_key, "--curve-server-key", secret=False)
        keys = (public, secret, server_public)
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(
        zmq.MAXMSGSIZE, 16 << 20
    )  # a bigger message is not edgevid's: its sender is disconnected, not buffered
    if keys:
        sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = keys
    try:
        sock.connect(args.endpoint)
    except zmq.ZMQError as exc:
        sock.close(linger=0)
        raise UsageError(f"--endpoint {args.endpoint!r}: {exc}") from None
    for topic in args.topic or [""]:
        sock.setsockopt_string(zmq.SUBSCRIBE, topic)
    return sock


def _subscribed_line(frames: list[bytes], raw: bool) -> tuple[str | None, str | None]:
    """What `subscribe` prints for one received message, or why it is not an edgevid message
    (the wrong number of frames, not JSON, not an object, a field missing or of the wrong type)."""
    import json

    if len(frames) != 2:
        return None, f"ignored a message of {len(frames)} frame(s), not edgevid's (topic, JSON): {frames[0][:40]!r}"
    topic, payload = frames
    where = f"ignored a message on topic {topic[:60].decode('utf-8', 'backslashreplace')!r}"
    try:
        msg = json.loads(payload)
    except (ValueError, RecursionError):
        return None, f"{where}: not JSON: {payload[:40]!r}"
    if not isinstance(msg, dict):
        return None, f"{where}: a JSON {type(msg).__name__}, not an edgevid message (an object)"
    kind = msg.get("type")
    if kind not in ("prediction", "event", "status"):
        return None, f"{where}: not an edgevid message (type {str(kind)[:20]!r}, expected prediction, event or status)"
    try:
        line = render(msg)  # --json too: what is printed has the fields a reader expects
    except KeyError as exc:
        return None, f"{where}: not an edgevid {kind} message: no field {exc}"
    except (TypeError, ValueError, AttributeError, IndexError):
        return None, f"{where}: not an edgevid {kind} message: a field of the wrong type"
    if raw:
        try:
            return payload.decode(), None
        except UnicodeDecodeError:  # JSON in UTF-16/32: print it as UTF-8
            return json.dumps(msg), None
    return line, None


def _command(sub, name: str, summary: str, example: str, func=None) -> argparse.ArgumentParser:
    """A subcommand whose --help starts with its one-line summary and ends with an example."""
    p = sub.add_parser(
        name,
        help=summary,
        description=summary[0].upper() + summary[1:] + ".",
        epilog="example:\n" + "\n".join(f"  {line}" for line in example.splitlines()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if func is not None:
        p.set_defaults(func=func)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgevid",
        description="Real-time human-action classification on small devices.",
        epilog="examples:\n  edgevid models fetch\n  edgevid classify clip.mp4\n"
        "  edgevid config init edgevid.toml && edgevid run --config edgevid.toml\n\n"
        "`edgevid COMMAND --help` describes each command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edgevid {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _classify_parser(sub)
    _models_parser(sub)
    _run_parsers(sub)
    _config_parser(sub)
    return parser


def _classify_parser(sub) -> None:
    p = _command(
        sub,
        "classify",
        "label video clips, or a camera or stream for a few windows",
        "edgevid classify clip.mp4 clips/ --top-k 5\nedgevid classify rtsp://cam.local/stream --windows 5",
        cmd_classify,
    )
    p.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="video file or folder (searched recursively); or one camera index (0), /dev/videoN or rtsp:// http(s):// "
        "URL",
    )
    p.add_argument("--top-k", type=int, default=3, help="labels to print per clip or window (default 3)")
    p.add_argument(
        "--json", action="store_true", help="one JSON object per clip (per window for a live source) on stdout"
    )
    p.add_argument("--timings", action="store_true", help="print per-stage cost (decode, preprocess, extract, head)")
    p.add_argument(
        "--no-gate",
        action="store_true",
        help="classify every window, also those the motion gate finds still (a clip still throughout: 'idle')",
    )
    p.add_argument(
        "--windows", type=int, default=3, help="live source: predictions to print before exiting (default 3)"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="live source: fail if they take longer than this many seconds (default 30)",
    )
    _add_model_options(p)


def _models_parser(sub) -> None:
    models = _command(
        sub, "models", "install, list and check model files", "edgevid models fetch && edgevid models info"
    )
    models = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    p = _command(
        models,
        "fetch",
        "install an extractor the head accepts (official download, checked; kept if installed)",
        "edgevid models fetch\nedgevid models fetch --from ~/Downloads/mobilenet_v2_1.0_224_quant.tgz",
        cmd_models_fetch,
    )
    p.add_argument(
        "name",
        nargs="?",
        default=None,
        metavar="NAME",
        help="extractor to install (default: the one the bundled head uses; `edgevid models list` shows all)",
    )
    p.add_argument("--all", action="store_true", help="fetch every known extractor")
    p.add_argument("--from", dest="source", type=Path, help="a local .tflite, .tgz or folder instead of downloading")
    p.add_argument("--model-dir", type=Path, help="install here (default: $EDGEVID_MODEL_DIR or XDG data dir)")
    p.add_argument("--head", type=Path, help="install what this head accepts (default: the bundled head)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds for each download in all (default: 120)")
    for name, about, example, run, head in (
        (
            "verify",
            "check every model file (sha256; an extractor by the head's fingerprint)",
            "edgevid models verify --head my-head",
            cmd_models_verify,
            "head directory (default: the bundled one)",
        ),
        (
            "info",
            "what a head knows: labels, window, test metrics, the extractor it needs",
            "edgevid models info\nedgevid models info --head my-head --json",
            cmd_models_info,
            "head directory or manifest.json (default: the bundled one)",
        ),
        (
            "list",
            "known extractors (installed or not) and the head in use",
            "edgevid models list",
            cmd_models_list,
            "head directory (default: the bundled one)",
        ),
    ):
        p = _command(models, name, about, example, run)
        p.add_argument("--head", type=Path, help=head)
        p.add_argument(
            "--model-dir", type=Path, help="where fetched extractors live (default: $EDGEVID_MODEL_DIR or XDG data dir)"
        )
        if name == "info":
            p.add_argument("--json", action="store_true", help="print the manifest and the extractor's state as JSON")


def _run_parsers(sub) -> None:
    """``run`` and ``subscribe``: the daemon and its monitor."""
    p = _command(
        sub,
        "run",
        "the daemon: classify sources continuously and publish over ZeroMQ",
        "edgevid config init edgevid.toml\nedgevid run --config edgevid.toml",
        cmd_run,
    )
    p.add_argument(
        "--config", type=Path, required=True, help="TOML config (`edgevid config init FILE` writes a commented one)"
    )

    p = _command(
        sub,
        "record",
        "record a clip of a source on a running daemon (needs [record] enabled and [web] listen)",
        "edgevid record --source cam0 --seconds 5 --label wave\n"
        "edgevid record --source cam0 --seconds 10 --web http://pi.local:8090 --token $TOKEN --wait",
        cmd_record,
    )
    p.add_argument("--source", required=True, help="the source's id")
    p.add_argument("--seconds", type=float, default=5.0, help="seconds to record from now (default 5, at most max_s)")
    p.add_argument("--label", help="what the clip shows: the labelling page offers it first")
    p.add_argument("--web", default="http://127.0.0.1:8090", help="the daemon's page (default http://127.0.0.1:8090)")
    p.add_argument("--token", help="the page's web.token (default: $EDGEVID_WEB_TOKEN)")
    p.add_argument("--wait", action="store_true", help="return once the clip is written")

    p = _command(
        sub,
        "subscribe",
        "print messages from a running daemon",
        "edgevid subscribe --topic pred/cam0 --count 10\nedgevid subscribe --endpoint tcp://pi.local:5555 --json",
        cmd_subscribe,
    )
    p.add_argument(
        "--endpoint",
        default="tcp://127.0.0.1:5555",
        help="the daemon's publish.endpoint (default tcp://127.0.0.1:5555)",
    )
    p.add_argument(
        "--topic", action="append", help="prefix filter, e.g. pred/cam0 or status (repeatable; default: everything)"
    )
    p.add_argument("--json", action="store_true", help="print the raw JSON lines")
    p.add_argument("--count", type=int, help="exit after this many messages")
    p.add_argument("--timeout", type=float, help="fail if no message arrives for this many seconds")
    p.add_argument("--curve-secret-key", type=Path, help="client secret key file (CURVE)")
    p.add_argument("--curve-server-key", type=Path, help="server public key file (CURVE)")


def _config_parser(sub) -> None:
    config = _command(
        sub,
        "config",
        "write and check daemon config files",
        "edgevid config init edgevid.toml && edgevid config check edgevid.toml",
    )
    config = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    p = _command(
        config,
        "check",
        "validate a daemon config file and the models it names",
        "edgevid config check /etc/edgevid/edgevid.toml",
        cmd_config_check,
    )
    p.add_argument("config", type=Path, help="TOML config file")
    p = _command(
        config,
        "init",
        "write a commented config to start from (one camera, every key explained)",
        "edgevid config init edgevid.toml --source rtsp://cam.local/stream",
        cmd_config_init,
    )
    p.add_argument("config", type=Path, help="file to write")
    p.add_argument("--source", help='the camera\'s uri (default "0": the first camera)')
    p.add_argument("--force", action="store_true", help="replace the file if it exists")


def main(argv: Sequence[str] | None = None) -> int:
    # FFmpeg's own chatter ("[mpeg4 @ 0x…] ac-tex damaged") is not for users; edgevid reports
    # unreadable input itself. Set OPENCV_FFMPEG_LOGLEVEL to see it again.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except EdgevidError as exc:
        return _die(exc)
    except KeyboardInterrupt:
        print("edgevid: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `edgevid classify ... | head`: the reader left; stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
