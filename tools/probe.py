"""Run the real `edgevid run` in a subprocess and observe it from outside: messages over a real
ZeroMQ SUB socket, RSS / threads / open files / CPU from /proc. Used by tests, soak and benchmarks."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import zmq

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def toml_value(v) -> str:
    """A Python value as TOML: a dict as an inline table, lists element by element, the rest as JSON
    (TOML's strings, numbers and booleans are JSON's)."""
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return json.dumps(v)


def write_config(
    path: Path,
    endpoint: str,
    sources: list[dict],
    extra: str = "",
    status_interval: float = 0.5,
    models: dict | None = None,
) -> Path:
    """A daemon TOML config (the format users write)."""
    lines = []
    for src in sources:
        lines.append("[[sources]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in src.items()]
        lines.append("")
    lines += ["[publish]", f'endpoint = "{endpoint}"', f"status_interval = {status_interval}", extra, ""]
    if models:
        lines += ["[models]"] + [f"{k} = {json.dumps(str(v) if isinstance(v, Path) else v)}" for k, v in models.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


class Subscriber:
    """A real SUB socket, optionally CURVE-authenticated ``(public, secret, server_public)``."""

    def __init__(self, endpoint: str, topics=("",), curve: tuple[bytes, bytes, bytes] | None = None) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        if curve:
            self.sock.curve_publickey, self.sock.curve_secretkey, self.sock.curve_serverkey = curve
        self.sock.connect(endpoint)
        for t in topics:
            self.sock.setsockopt_string(zmq.SUBSCRIBE, t)

    def recv(self, timeout: float) -> tuple[str, dict] | None:
        if not self.sock.poll(int(timeout * 1000)):
            return None
        topic, payload = self.sock.recv_multipart()
        return topic.decode(), json.loads(payload)

    def until(self, predicate, timeout: float) -> list[tuple[str, dict]]:
        """Collect messages until ``predicate(messages)`` holds or the time is up."""
        got: list[tuple[str, dict]] = []
        end = time.monotonic() + timeout
        while time.monotonic() < end and not predicate(got):
            msg = self.recv(max(0.05, end - time.monotonic()))
            if msg:
                got.append(msg)
        return got

    def close(self) -> None:
        self.sock.close(linger=0)
        self.ctx.term()


def kill_group(proc: subprocess.Popen) -> str:
    """SIGKILL to the whole process group of ``proc`` (started with ``start_new_session``), so
    what it started goes too, then reap it; returns what was left on its stderr pipe."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        _, err = proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:  # a pipe held by something outside the group
        proc.wait()
        err = None
    return err or ""


def run_group(
    argv: list[str], *, timeout: float, cwd: Path = ROOT, env: dict | None = None
) -> subprocess.CompletedProcess:
    """``subprocess.run(argv, capture_output=True, text=True)`` in its own process group: on a
    timeout (or the test's own, or ^C) the whole group is killed before the exception goes on, so
    nothing it started (a worker, a shell's children) outlives it."""
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        kill_group(proc)
        raise
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def start_daemon(config: Path, env: dict | None = None, cwd: Path = ROOT) -> subprocess.Popen:
    """The daemon in its own process group (session): :func:`stop_daemon` can end all of it."""
    return subprocess.Popen(
        [sys.executable, "-m", "edgevid", "run", "--config", str(config)],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def stop_daemon(proc: subprocess.Popen, timeout: float = 10, sig: int = signal.SIGTERM) -> tuple[int, str]:
    """Signal the daemon and wait; fails if it does not exit within ``timeout`` (its whole process
    group killed first, so nothing it started is left)."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=timeout)
    except BaseException as exc:  # the timeout, or the test itself timed out or interrupted
        err = kill_group(proc)
        if not isinstance(exc, subprocess.TimeoutExpired):
            raise
        raise AssertionError(f"daemon did not stop within {timeout} s after signal {sig}:\n{err}") from None
    return proc.returncode, err


class Notify:
    """A socket standing in for systemd's ``NOTIFY_SOCKET``: what the daemon tells systemd, in order."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.got: list[str] = []

    def until(self, predicate, timeout: float) -> bool:
        """Read until ``predicate(all messages so far)`` holds; False if the time is up first."""
        end = time.monotonic() + timeout
        while not predicate(self.got):
            left = end - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(min(left, 0.1))
            try:
                self.got.append(self.sock.recv(4096).decode())
            except socket.timeout:
                pass
        return True

    def count(self, state: str) -> int:
        return self.got.count(state)

    def close(self) -> None:
        self.sock.close()


def proc_sample(pid: int) -> dict:
    """RSS, threads, open file descriptors and CPU seconds of a process (Linux /proc)."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return {
        "t": time.monotonic(),
        "rss_mb": int(fields["VmRSS"].split()[0]) / 1024,
        "threads": int(fields["Threads"]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "cpu_s": (int(stat[11]) + int(stat[12])) / ticks,
    }


class DaemonProbe:
    """``with DaemonProbe(tmp, sources) as p: msgs = p.collect(10); p.sample()``."""

    def __init__(
        self,
        tmp: Path,
        sources: list[dict],
        *,
        head: Path | None = None,
        env: dict | None = None,
        status_interval: float = 0.5,
    ) -> None:
        self.endpoint = f"tcp://127.0.0.1:{free_port()}"
        Path(tmp).mkdir(parents=True, exist_ok=True)
        models = {"head": head} if head else None
        self.config = write_config(
            Path(tmp) / "probe.toml", self.endpoint, sources, status_interval=status_interval, models=models
        )
        self.env = env or {}
        self.proc: subprocess.Popen | None = None
        self.sub: Subscriber | None = None
        self.stderr = ""
        self.exit_code: int | None = None

    def __enter__(self) -> "DaemonProbe":
        self.sub = Subscriber(self.endpoint)
        self.proc = start_daemon(self.config, self.env)
        return self

    def collect(self, seconds: float) -> list[dict]:
        return [m for _, m in self.sub.until(lambda g: False, seconds)]

    def sample(self) -> dict:
        return proc_sample(self.proc.pid)

    def __exit__(self, *exc) -> None:
        self.sub.close()
        self.exit_code, self.stderr = stop_daemon(self.proc)


def curve_keys(folder: Path, clients: tuple[str, ...] = ("client",), authorized: tuple[str, ...] = ("client",)) -> dict:
    """Server and client CURVE certificates (zmq.auth format) and a folder of authorized public keys.

    Returns ``{"server_secret": path, "authorized": folder, name: (public, secret, server_public)}``.
    """
    import zmq.auth

    keys, allowed = Path(folder) / "keys", Path(folder) / "authorized"
    keys.mkdir(parents=True)
    allowed.mkdir()
    server_public_file, server_secret_file = zmq.auth.create_certificates(keys, "server")
    server_public, _ = zmq.auth.load_certificate(server_public_file)
    out: dict = {"server_secret": Path(server_secret_file), "authorized": allowed}
    for name in clients:
        public_file, secret_file = zmq.auth.create_certificates(keys, name)
        public, secret = zmq.auth.load_certificate(secret_file)
        out[name] = (public, secret, server_public)
        if name in authorized:
            (allowed / f"{name}.key").write_bytes(Path(public_file).read_bytes())
    return out
