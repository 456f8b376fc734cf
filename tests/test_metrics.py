"""Opt-in Prometheus endpoint: scraped over HTTP from the real daemon and parsed as the exposition format."""

from __future__ import annotations

import urllib.request

import pytest

from conftest import DATA, run_cli
from daemon_util import Subscriber, free_port, start_daemon, stop_daemon, write_config

parser = pytest.importorskip(
    "prometheus_client.parser", reason="prometheus_client not installed (pip install -e '.[test]')"
)

CLIP = sorted((DATA / "ucf101_sample").rglob("*.avi"))[0]


def scrape(port: int) -> dict[str, list]:
    """Metric family name -> samples, parsed by prometheus_client's own exposition parser."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {f.name: f.samples for f in parser.text_string_to_metric_families(text)}, text


def value(samples, name: str, **labels) -> float:
    hits = [s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(hits) == 1, (name, labels, samples)
    return hits[0]


def test_metrics_endpoint_serves_status_counters_and_stage_histograms(tmp_path, env):
    endpoint, port = f"tcp://127.0.0.1:{free_port()}", free_port()
    cfg = write_config(
        tmp_path / "m.toml",
        endpoint,
        [{"id": "cam0", "uri": str(CLIP), "loop": True}],
        extra=f'\n[metrics]\nlisten = "127.0.0.1:{port}"',
    )
    sub = Subscriber(endpoint)
    proc = start_daemon(cfg, env)
    try:
        msgs = sub.until(lambda g: sum(m["type"] == "prediction" for _, m in g) >= 3, timeout=60)
        status = [m for _, m in msgs if m["type"] == "status"][-1]["sources"][0]
        fams, text = scrape(port)
    finally:
        code, err = stop_daemon(proc)
        sub.close()
    assert code == 0, err
    # Conventions: counters end in _total, seconds are the unit, every sample is edgevid_*.
    assert "# TYPE edgevid_frames_total counter" in text and "# TYPE edgevid_inference_seconds histogram" in text
    assert all(name.startswith("edgevid_") for name in fams if not name.startswith(("python_", "process_")))
    frames = value(fams["edgevid_frames"], "edgevid_frames_total", source="cam0")
    preds = value(fams["edgevid_predictions"], "edgevid_predictions_total", source="cam0")
    assert frames >= status["frames_in"] > 0 and preds >= max(3, status["predictions"])
    assert (
        value(fams["edgevid_frames_extracted"], "edgevid_frames_extracted_total", source="cam0") >= status["extracted"]
    )
    assert value(fams["edgevid_source_up"], "edgevid_source_up", source="cam0") == 1.0
    assert value(fams["edgevid_source_state"], "edgevid_source_state", source="cam0", state="running") == 1.0
    hist = fams["edgevid_inference_seconds"]
    for stage in ("extract", "head"):
        count = value(hist, "edgevid_inference_seconds_count", stage=stage)
        assert count >= 1 and value(hist, "edgevid_inference_seconds_bucket", stage=stage, le="+Inf") == count
        assert value(hist, "edgevid_inference_seconds_sum", stage=stage) > 0
    assert value(hist, "edgevid_inference_seconds_count", stage="head") >= preds
    lat = fams["edgevid_capture_to_publish_seconds"]
    assert value(lat, "edgevid_capture_to_publish_seconds_count", source="cam0") >= 3


def test_metrics_misconfigured_or_not_installed_is_one_line_and_exit_2(tmp_path, env):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    cfg = write_config(
        tmp_path / "m.toml", endpoint, [{"id": "cam0", "uri": str(CLIP)}], extra='\n[metrics]\nlisten = "9108"'
    )
    proc = run_cli("config", "check", str(cfg), env=env)
    assert (
        proc.returncode == 2
        and "metrics.listen" in proc.stderr
        and "host:port" in proc.stderr
        and "Traceback" not in proc.stderr
    )
    # prometheus_client absent: a package of that name that fails to import stands in for a device without it
    fake = tmp_path / "nolib" / "prometheus_client"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('not installed')\n")
    cfg = write_config(
        tmp_path / "m2.toml",
        endpoint,
        [{"id": "cam0", "uri": str(CLIP)}],
        extra=f'\n[metrics]\nlisten = "127.0.0.1:{free_port()}"',
    )
    proc = run_cli("run", "--config", str(cfg), env={**env, "PYTHONPATH": str(fake.parent)}, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "prometheus_client is not installed: pip install 'edgevid[metrics]'" in proc.stderr


def test_metrics_report_the_motion_gate_per_source(tmp_path, env):
    """A still scene beside a moving clip: the still one is not moving, its frames are gated and
    its windows idle, counted in seconds too; the moving one is moving with nothing gated."""
    from edgevid.capture import read_clip
    from tools.gate_eval import still_scene

    still = still_scene(read_clip(CLIP, 1).frames[0], "noise", 3, tmp_path / "still.mp4", seconds=6.0)
    endpoint, port = f"tcp://127.0.0.1:{free_port()}", free_port()
    cfg = write_config(
        tmp_path / "m.toml",
        endpoint,
        [{"id": "cam0", "uri": str(CLIP), "loop": True}, {"id": "shelf", "uri": str(still), "loop": True}],
        extra=f'\n[metrics]\nlisten = "127.0.0.1:{port}"',
    )
    sub = Subscriber(endpoint, topics=("pred/shelf",))
    proc = start_daemon(cfg, env)
    try:
        sub.until(lambda g: len(g) >= 4, timeout=60)
        fams, _ = scrape(port)
    finally:
        code, err = stop_daemon(proc)
        sub.close()
    assert code == 0, err
    assert value(fams["edgevid_source_motion"], "edgevid_source_motion", source="shelf") == 0.0
    # (the moving clip's gauge can read 0 for the first two frames after each loop seam)
    assert value(fams["edgevid_source_motion"], "edgevid_source_motion", source="cam0") in (0.0, 1.0)
    assert value(fams["edgevid_windows_idle"], "edgevid_windows_idle_total", source="shelf") >= 4
    assert value(fams["edgevid_frames_gated"], "edgevid_frames_gated_total", source="shelf") > 0
    assert value(fams["edgevid_idle_seconds"], "edgevid_idle_seconds_total", source="shelf") > 1.0
    assert value(fams["edgevid_frames_gated"], "edgevid_frames_gated_total", source="cam0") == 0
