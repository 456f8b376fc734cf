"""The systemd unit's hardening lets the service run: `classify` and `run` under exactly the seccomp
filter that systemd/edgevid.service's SystemCallFilter= lines build (scripts/unit_seccomp.py reads
the unit, resolves its @groups with this machine's systemd-analyze and loads the filter with
libseccomp, default action kill, as systemd does)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DATA, ROOT, jhmdb_clip, run_cli
from daemon_util import Subscriber, free_port, write_config

sys.path.insert(0, str(ROOT / "scripts"))
import unit_seccomp  # noqa: E402

UNIT = ROOT / "systemd" / "edgevid.service"
CLIP = sorted((DATA / "ucf101_sample").rglob("*.avi"))[0]  # longer than a window (JHMDB clips may not be)
WHY_NOT = unit_seccomp.available()
pytestmark = pytest.mark.skipif(WHY_NOT is not None, reason=f"cannot build the unit's seccomp filter: {WHY_NOT}")


def _under_unit(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "scripts" / "unit_seccomp.py"), str(UNIT), "--", *args]


@pytest.fixture(scope="module")
def env(model_dir):
    import os

    return {**os.environ, "EDGEVID_MODEL_DIR": str(model_dir)}


def test_unit_filter_is_an_allow_list_without_the_dangerous_groups():
    """What the unit says is what we load: @system-service minus @privileged etc., plus the three
    calls the service and its camera command need back from @resources."""
    allow, names = unit_seccomp.resolve(unit_seccomp.filter_lines(UNIT), unit_seccomp.systemd_groups())
    assert allow
    assert {"read", "openat", "execve", "mbind", "sched_setscheduler", "set_mempolicy"} <= names
    assert not names & {"setrlimit", "sched_setaffinity", "mount", "reboot", "ptrace", "setuid", "init_module"}


def test_a_denied_call_kills_the_process(env):
    """The filter is live: a call the unit denies (sched_setaffinity, in @resources) ends with SIGSYS."""
    code = "import os; os.sched_setaffinity(0, {0}); print('survived')"
    proc = subprocess.run(_under_unit(sys.executable, "-c", code), capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == -signal.SIGSYS and "survived" not in proc.stdout


def test_classify_runs_under_the_unit_filter(env):
    clip = str(jhmdb_clip("pour"))
    proc = subprocess.run(
        _under_unit(sys.executable, "-m", "edgevid", "classify", clip, "--json"),
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, f"rc {proc.returncode} (-31 is SIGSYS: a call the unit denies)\n{proc.stderr[-2000:]}"
    filtered = json.loads(proc.stdout)
    plain = json.loads(run_cli("classify", clip, "--json", env=env).stdout)
    assert filtered["top"] == plain["top"] and filtered["top"][0]["label"] == "pour"


def _serve_under_unit(tmp_path: Path, env: dict, sources: list[dict], predictions: int) -> tuple[list[dict], str]:
    """`edgevid run` under the unit's filter until ``predictions`` arrive; its predictions and
    stderr, after checking it exited 0 on SIGTERM (not -31, SIGSYS: a call the unit denies)."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    config = write_config(tmp_path / "edgevid.toml", endpoint, sources)
    sub = Subscriber(endpoint)
    proc = subprocess.Popen(
        _under_unit(sys.executable, "-m", "edgevid", "run", "--config", str(config)),
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        msgs = sub.until(
            lambda got: proc.poll() is not None or sum(m["type"] == "prediction" for _, m in got) >= predictions,
            timeout=120,
        )
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        sub.close()
    assert proc.returncode == 0, f"rc {proc.returncode} (-31 is SIGSYS: a call the unit denies)\n{err[-2000:]}"
    return [m for _, m in msgs if m["type"] == "prediction"], err


def test_daemon_serves_predictions_under_the_unit_filter(tmp_path, env):
    preds, err = _serve_under_unit(tmp_path, env, [{"id": "cam0", "uri": str(CLIP), "loop": True}], 3)
    seqs = [p["seq"] for p in preds]
    assert len(preds) >= 3 and seqs == list(range(seqs[0], seqs[0] + len(seqs))) and "Traceback" not in err


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_pipe_source_runs_under_the_unit_filter(tmp_path, env):
    """A camera command as a pipe source (what rpicam-vid is on a Pi; ffmpeg playing a real clip
    here): the child inherits the unit's filter, and frames still become predictions."""
    command = (
        f"ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -i {CLIP} -vf scale=320:240 -f rawvideo "
        "-pix_fmt yuv420p -"
    )
    preds, err = _serve_under_unit(
        tmp_path,
        env,
        [
            {
                "id": "pipe0",
                "kind": "pipe",
                "uri": command,
                "pixel_format": "yuv420p",
                "width": 320,
                "height": 240,
                "fps": 25,
            },
        ],
        2,
    )
    assert len([p for p in preds if p["source"] == "pipe0"]) >= 2, err[-2000:]


def test_unit_leaves_proc_cpuinfo_visible():
    """ProcSubset=pid hides /proc/cpuinfo, and ai-edge-litert on Arm then never builds XNNPACK."""
    service = [line.strip() for line in UNIT.read_text().splitlines()]
    assert "ProcSubset=pid" not in service
