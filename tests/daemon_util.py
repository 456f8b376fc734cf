"""Start the real `edgevid run` in a subprocess and listen with a real ZeroMQ SUB socket."""

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

from conftest import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(path: Path, endpoint: str, sources: list[dict], extra: str = "", status_interval: float = 0.5) -> Path:
    lines = []
    for src in sources:
        lines.append("[[sources]]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in src.items()]
        lines.append("")
    lines += ["[publish]", f'endpoint = "{endpoint}"', f"status_interval = {status_interval}", extra]
    path.write_text("\n".join(lines) + "\n")
    return path


class Subscriber:
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


def start_daemon(config: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "edgevid", "run", "--config", str(config)],
        cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def stop_daemon(proc: subprocess.Popen, timeout: float = 10) -> tuple[int, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"daemon did not stop within {timeout} s after SIGTERM:\n{err}")
    return proc.returncode, err
