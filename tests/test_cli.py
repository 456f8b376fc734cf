"""`edgevid classify` and `edgevid models` as a user runs them: outputs, exit codes, bad input."""

from __future__ import annotations

import json
import shutil

import pytest

from edgevid.manifest import sha256_file

from conftest import DATA, HEAD_DIR, MNV2, ROOT, V3SMALL, jhmdb_clip, run_cli


def _one_line_error(proc, *needles):
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("edgevid: error:")]
    assert errors, proc.stderr
    for needle in needles:
        assert any(needle in line for line in errors), (needle, proc.stderr)


def test_classify_prints_labels_for_jhmdb_ucf_and_kinetics(env):
    clips = [
        jhmdb_clip("wave"),
        sorted((DATA / "ucf101_sample").rglob("*.avi"))[0],
        sorted((DATA / "kinetics_sample").glob("*.mp4"))[0],
    ]
    proc = run_cli("classify", *map(str, clips), "--top-k", "2", env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 3
    labels = set((HEAD_DIR / "labels.txt").read_text().split())
    for clip, line in zip(clips, lines):
        assert line.startswith(f"{clip}: ")
        pairs = line.split(": ", 1)[1].split(", ")
        assert len(pairs) == 2 and all(p.split()[0] in labels for p in pairs)


def test_json_output_has_stable_fields_and_timings(env):
    proc = run_cli("classify", str(jhmdb_clip("walk")), "--json", "--top-k", "5", env=env)
    assert proc.returncode == 0, proc.stderr
    obj = json.loads(proc.stdout)
    assert obj["ok"] is True and obj["path"].endswith(".avi")
    assert len(obj["top"]) == 5 and abs(sum(s["score"] for s in obj["top"]) - 1) < 0.5
    assert obj["top"][0]["score"] >= obj["top"][1]["score"]
    assert set(obj["timings"]) == {"decode_ms", "preprocess_ms", "extract_ms", "motion_ms", "head_ms", "total_ms"}
    assert obj["frames"] > 0 and obj["fps"] == 30.0


def test_timings_flag_reports_each_stage(env):
    proc = run_cli("classify", str(jhmdb_clip("pour")), "--timings", env=env)
    assert proc.returncode == 0
    for stage in ("decode", "preprocess", "extract", "head", "total"):
        assert f"{stage} " in proc.stdout


def test_directory_is_classified_recursively(env):
    proc = run_cli("classify", str(DATA / "kinetics_sample"), "--json", env=env)
    assert proc.returncode == 0
    assert len(proc.stdout.strip().splitlines()) == 4


def test_bad_clips_fail_alone_others_still_classified(env, tmp_path):
    good = jhmdb_clip("clap")
    text = tmp_path / "notes.avi"
    text.write_text("this is not a video\n" * 50)
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(good.read_bytes()[:4000])
    missing = tmp_path / "missing.avi"
    no_frames = tmp_path / "no_frames.avi"  # a valid AVI container holding zero frames
    import cv2

    cv2.VideoWriter(str(no_frames), cv2.VideoWriter_fourcc(*"MJPG"), 25, (320, 240)).release()
    proc = run_cli(
        "classify", str(text), str(empty), str(truncated), str(missing), str(no_frames), str(good), "--json", env=env
    )
    assert proc.returncode == 1
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    by_path = {r["path"]: r for r in results}
    assert by_path[str(good)]["ok"] is True
    for bad in (text, empty, truncated, missing, no_frames):
        assert by_path[str(bad)]["ok"] is False and str(bad) in by_path[str(bad)]["error"]
    _one_line_error(
        proc,
        "notes.avi",
        "empty.avi: empty file",
        "truncated.avi",
        "missing.avi: no such file",
        "no_frames.avi: no decodable video frames",
    )


def test_directory_without_videos(env, tmp_path):
    (tmp_path / "readme.txt").write_text("hi")
    proc = run_cli("classify", str(tmp_path), env=env)
    assert proc.returncode == 1
    _one_line_error(proc, "contains no video files")


def test_unreadable_extractor_model(env, tmp_path):
    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"\x00garbage" * 1000)
    proc = run_cli("classify", str(jhmdb_clip("wave")), "--extractor", str(bad), env=env)
    assert proc.returncode == 1
    _one_line_error(proc, "model.tflite")


def test_extractor_not_fetched_says_how_to_fetch(tmp_path):
    proc = run_cli("classify", str(jhmdb_clip("wave")), env={"EDGEVID_MODEL_DIR": str(tmp_path)})
    assert proc.returncode == 1
    _one_line_error(proc, "models fetch")


def test_head_with_other_feature_dim_is_refused(env):
    proc = run_cli("classify", str(jhmdb_clip("wave")), "--extractor", str(V3SMALL), env=env)
    assert proc.returncode == 1
    _one_line_error(proc, "1280-d", "1024-d")


def test_another_published_file_of_the_heads_extractor_is_accepted_by_its_features(env, tmp_path):
    """A head checked with one published file of its extractor (here as if with the TF-hosted
    download) meets another (the shared copy): its features match the head's fingerprint, so it
    is accepted and the answer is the same. An older head without a fingerprint says what to do."""
    head = _copy_head(tmp_path)
    manifest = json.loads((head / "manifest.json").read_text())
    download = "f08d447cde49b4e0446428aa921aff0a14ea589fa9c5817b31f83128e9a43c1d"
    manifest["extractor"]["sha256"] = [download]
    (head / "manifest.json").write_text(json.dumps(manifest))
    proc = run_cli("classify", str(jhmdb_clip("wave")), "--head", str(head), env=env)
    same = run_cli("classify", str(jhmdb_clip("wave")), env=env)
    assert proc.returncode == 0 and proc.stdout == same.stdout, proc.stderr
    del manifest["extractor"]["fingerprint"]
    (head / "manifest.json").write_text(json.dumps(manifest))
    proc = run_cli("classify", str(jhmdb_clip("wave")), "--head", str(head), env=env)
    assert proc.returncode == 1
    _one_line_error(proc, "checked only with extractor file f08d447cde49", "not compared", "models fetch --from")


def _copy_head(tmp_path):
    head = tmp_path / "head"
    shutil.copytree(HEAD_DIR, head, ignore=shutil.ignore_patterns("__pycache__", "__init__.py"))
    return head


def test_labels_with_wrong_count_are_refused(env, tmp_path):
    head = _copy_head(tmp_path)
    labels = head / "labels.txt"
    labels.write_text("\n".join(labels.read_text().split()[:-1]) + "\n")
    manifest = json.loads((head / "manifest.json").read_text())
    manifest["labels"]["sha256"] = sha256_file(labels)
    (head / "manifest.json").write_text(json.dumps(manifest))
    proc = run_cli("classify", str(jhmdb_clip("wave")), "--head", str(head), env=env)
    assert proc.returncode == 1
    _one_line_error(proc, "labels.txt", "20 labels", "21 classes")


def test_tampered_head_fails_its_checksum(env, tmp_path):
    head = _copy_head(tmp_path)
    blob = bytearray((head / "head.tflite").read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (head / "head.tflite").write_bytes(bytes(blob))
    proc = run_cli("classify", str(jhmdb_clip("wave")), "--head", str(head), env=env)
    assert proc.returncode == 1
    _one_line_error(proc, "head.tflite", "sha256")
    verify = run_cli("models", "verify", "--head", str(head), env=env)
    assert verify.returncode == 1 and "FAILED" in verify.stdout


def test_usage_errors_exit_2(env):
    assert run_cli("classify", env=env).returncode == 2
    proc = run_cli("classify", str(jhmdb_clip("wave")), "--top-k", "0", env=env)
    assert proc.returncode == 2
    _one_line_error(proc, "--top-k")


def test_models_fetch_from_local_folder_and_verify(tmp_path):
    env = {"EDGEVID_MODEL_DIR": str(tmp_path / "m")}
    proc = run_cli("models", "fetch", "--from", str(MNV2.parent), env=env)
    assert proc.returncode == 0, proc.stderr
    assert sha256_file(tmp_path / "m" / MNV2.name) == sha256_file(MNV2)
    assert (tmp_path / "m" / MNV2.name).stat().st_mode & 0o044  # readable by the service user, umask permitting
    assert not [p for p in (tmp_path / "m").iterdir() if p.name.startswith(".")]  # no temp files left
    verify = run_cli("models", "verify", env=env)
    assert verify.returncode == 0 and "FAILED" not in verify.stdout


def test_models_fetch_rejects_wrong_file_and_writes_nothing(tmp_path):
    env = {"EDGEVID_MODEL_DIR": str(tmp_path / "m")}
    proc = run_cli("models", "fetch", "--from", str(V3SMALL), env=env)
    assert proc.returncode == 1
    _one_line_error(proc, "sha256")
    assert not (tmp_path / "m" / MNV2.name).exists()


def test_models_fetch_offline_is_a_clear_error(tmp_path):
    # Points the official URL's host at nothing: the download must fail fast with advice.
    env = {"EDGEVID_MODEL_DIR": str(tmp_path), "https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    proc = run_cli("models", "fetch", env=env, timeout=120)
    assert proc.returncode == 1
    _one_line_error(proc, "cannot install", "raw.githubusercontent.com", "storage.googleapis.com", "offline?", "--from")


def _subcommands(parser, prefix=()):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name), sub
                yield from _subcommands(sub, (*prefix, name))


def test_every_command_has_a_summary_an_example_and_help_for_every_option():
    from edgevid.cli import build_parser

    commands = dict(_subcommands(build_parser()))
    assert {" ".join(c) for c in commands} >= {
        "classify",
        "models",
        "models fetch",
        "models verify",
        "models info",
        "models list",
        "run",
        "subscribe",
        "config",
        "config check",
        "config init",
    }
    for path, sub in commands.items():
        assert sub.description and "\n" not in sub.description.strip(), path
        assert sub.epilog.startswith("example:\n  edgevid "), path
        for action in sub._actions:
            if action.dest != "help" and action.dest not in ("models_command", "config_command"):
                assert action.help, (path, action.dest)
    # What a user sees: `--help` prints the summary and the example.
    proc = run_cli("config", "init", "--help")
    assert (
        proc.returncode == 0
        and "write a commented config" in proc.stdout.lower()
        and "example:\n  edgevid config init" in proc.stdout
    )


def test_models_info_and_list_show_the_heads_labels_window_metrics_and_extractor(env):
    proc = run_cli("models", "info", env=env)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((HEAD_DIR / "manifest.json").read_text())
    labels = (HEAD_DIR / "labels.txt").read_text().split()
    out = proc.stdout
    assert f"labels:     {len(labels)}: {', '.join(labels)}" in out
    assert f"window:     {manifest['timescale']['window_s']:.4g} s" in out and f"{manifest['frames']} frames" in out
    assert f"top1 {manifest['metrics']['top1']:.3f}" in out
    assert (
        manifest["extractor"]["name"] in out and manifest["extractor"]["sha256"][0][:12] in out and "(installed)" in out
    )
    info = json.loads(run_cli("models", "info", "--json", env=env).stdout)
    assert (
        info["labels"] == labels and info["manifest"]["metrics"] == manifest["metrics"] and info["extractor_installed"]
    )
    listed = run_cli("models", "list", env={"EDGEVID_MODEL_DIR": "/nonexistent/edgevid-models"})
    assert listed.returncode == 0
    assert (
        "mobilenet_v2_1.0_224_quant   not installed (the head's)" in listed.stdout
        and "v3-small_224_1.0_uint8" in listed.stdout
    )


def test_config_init_writes_a_config_that_passes_check_and_never_overwrites(tmp_path, env):
    path = tmp_path / "edgevid.toml"
    proc = run_cli("config", "init", str(path), "--source", str(jhmdb_clip("wave")), env=env)
    assert proc.returncode == 0, proc.stderr
    text = path.read_text()
    assert text.count("#") >= 10 and f'uri = "{jhmdb_clip("wave")}"' in text  # commented, the source filled in
    check = run_cli("config", "check", str(path), env=env)
    assert check.returncode == 0 and "ok (1 source(s)" in check.stdout, check.stderr
    path.write_text("# mine\n")
    again = run_cli("config", "init", str(path), env=env)
    assert again.returncode == 2 and path.read_text() == "# mine\n"
    _one_line_error(again, "exists; add --force")
    assert run_cli(
        "config", "init", str(path), "--force", env=env
    ).returncode == 0 and path.read_text() == text.replace(f'"{jhmdb_clip("wave")}"', '"0"')
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_packaged_example_config_is_the_documented_one():
    from edgevid.cli import EXAMPLE_CONFIG

    # `config init` writes the packaged copy; the documented example must not drift from it.
    assert EXAMPLE_CONFIG.read_text() == (ROOT / "systemd" / "edgevid.toml").read_text(), (
        "copy systemd/edgevid.toml to edgevid/edgevid.example.toml"
    )


def test_json_timings_are_rounded_to_a_tenth_of_a_millisecond(env):
    obj = json.loads(run_cli("classify", str(jhmdb_clip("clap")), "--json", env=env).stdout)
    for value in obj["timings"].values():
        assert value == round(value, 1) and len(json.dumps(value).split(".")[-1]) <= 1


@pytest.mark.slow
def test_classify_a_stream_url_prints_n_windows_then_exits(env):
    """A live http:// stream (a real clip sent at its own pace) goes through the daemon's source and
    windows: N predictions, then exit 0; a stream that never opens is one error line after --timeout."""
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    data = sorted((DATA / "ucf101_sample").rglob("*.avi"))[0].read_bytes()  # 7 s at 25 fps

    class Paced(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            if self.path != "/cam.avi":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "video/x-msvideo")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                for k in range(50):
                    self.wfile.write(data[k * len(data) // 50 : (k + 1) * len(data) // 50])
                    self.wfile.flush()
                    time.sleep(7 / 50)
            except OSError:  # the client left after its windows
                pass

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Paced)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        proc = run_cli("classify", f"{base}/cam.avi", "--windows", "2", "--json", "--top-k", "2", env=env, timeout=120)
        human = run_cli("classify", f"{base}/cam.avi", "--windows", "1", env=env, timeout=120)
        bad = run_cli("classify", f"{base}/missing.avi", "--timeout", "4", env=env, timeout=120)
    finally:
        server.shutdown()
    assert proc.returncode == 0, proc.stderr
    preds = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [p["seq"] for p in preds] == [1, 2] and all(p["type"] == "prediction" and len(p["top"]) == 2 for p in preds)
    assert (
        preds[0]["frames"] == 12 and preds[1]["new_frames"] < 12
    )  # the daemon's windows: overlapping, each frame once
    assert human.returncode == 0 and len(human.stdout.splitlines()) == 1 and " live #1: " in human.stdout
    assert bad.returncode == 1
    _one_line_error(bad, "missing.avi: 0 of 3 windows within 4 s")


def test_classify_does_not_mangle_a_url_into_a_path(env):
    proc = run_cli("classify", "rtsp://127.0.0.1:1/none", str(jhmdb_clip("wave")), env=env)
    assert proc.returncode == 2
    _one_line_error(proc, "rtsp://127.0.0.1:1/none", "classified alone")
