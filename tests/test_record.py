"""Recording, labelling and the loop back to training, on real JHMDB clips.

In process: the real ring and clip writer fed a real clip's frames (pre-roll, playable MP4 and
sidecar, drops when the writer's queue is full, the quota's oldest-first deletion, labelling into the
folder layout tools.experiment reads). End to end: the real daemon with pipe sources fed by ffmpeg as
a camera would, recording on request (``edgevid record``) and on events, labelled over the HTTP API,
checked with tools' dataset reader; (slow) headless Chromium clicks a label button on the page.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import pytest

from conftest import DATA, run_cli
from daemon_util import free_port, stop_daemon

pytest.importorskip("aiohttp", reason="aiohttp not installed (pip install -e '.[test]')")

from test_web import CHROMIUM, TOKEN, Chromium, get, wait_for, web_daemon  # noqa: E402

from edgevid.config import RecordConfig  # noqa: E402
from edgevid.messages import ModelIds  # noqa: E402
from edgevid.record import ClipError, Recorder, assign, discard, list_clips  # noqa: E402
from tools.datasets import DatasetError, check_split, group_of, read_folders  # noqa: E402

GOLF = DATA / "jhmdb" / "golf" / "Cobra_Golf_-_Camilo_Villegas_golf_f_cm_np1_ri_goo_0.avi"
WAVE = sorted((DATA / "jhmdb" / "wave").glob("*.avi"))[0]
MODELS = ModelIds(extractor="e" * 12, head="h" * 12)
GROUPS = "^[^_]+"  # README's --group-pattern for --dataset folders


def frames_of(path: Path, n: int | None = None) -> list:
    cap = cv2.VideoCapture(str(path))
    out = []
    while n is None or len(out) < n:
        ok, frame = cap.read()
        if not ok:
            break
        out.append(frame)
    cap.release()
    return out


def play(recorder: Recorder, sid: str, frames: list, fps: float = 30.0) -> None:
    """The source thread's side: each frame offered at its arrival time, as a camera delivers them."""
    ring = recorder.rings[sid]
    t0 = time.monotonic()
    for i, frame in enumerate(frames):
        ahead = t0 + i / fps - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
        ring.offer(frame, time.monotonic(), time.time(), None)


def video_frames(path: Path) -> tuple[int, tuple[int, int]]:
    cap = cv2.VideoCapture(str(path))
    n, shape = 0, None
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        n, shape = n + 1, frame.shape[:2]
    cap.release()
    return n, shape


def wait_written(rec: Recorder, n: int, timeout: float = 30) -> None:
    wait_for(lambda: rec.writer.stats.clips_written + rec.writer.stats.clips_failed >= n, timeout, f"{n} clips")
    assert rec.writer.stats.clips_failed == 0, rec.writer.stats.last_error


def test_ring_pre_roll_clip_sidecar_label_and_discard(tmp_path):
    cfg = RecordConfig(enabled=True, dir=tmp_path / "rec", pre_s=1.0, fps=10, max_width=160)
    rec = Recorder(cfg, ["cam_0"], MODELS, "jhmdb-head")
    try:
        frames = frames_of(GOLF) * 2  # 320x240, 30 fps: 1.6 s, twice
        play(rec, "cam_0", frames[:45])  # 1.5 s before the request: the pre-roll keeps the last 1 s + 1 s
        assert 0 < len(rec.rings["cam_0"].frames) <= 21 and rec.rings["cam_0"].frames[0][2].shape == (120, 160, 3)
        with pytest.raises(ClipError, match=r"seconds: expected 0 < seconds <= record.max_s \(30\)"):
            rec.request("cam_0", 31)
        with pytest.raises(ClipError, match="does not record"):
            rec.request("other", 1)
        now = time.time()
        ring = rec.rings["cam_0"]
        clip = ring.want(now - cfg.pre_s, now + 1.0, "request", "golf")  # what an event does: with pre-roll
        play(rec, "cam_0", frames[45:90])  # 1.5 s more: the clip ends on the first frame past its end
        wait_written(rec, 1)
    finally:
        rec.close()
        asyncio.run(rec.wait_closed())
    video, side = tmp_path / "rec" / f"{clip.name}.mp4", tmp_path / "rec" / f"{clip.name}.json"
    assert clip.name.startswith("cam-0-") and group_of(video, GROUPS) == "cam-0-" + time.strftime("%Y%m%d")
    n, shape = video_frames(video)
    assert shape == (120, 160) and 17 <= n <= 21, n  # 1 s of pre-roll + 1 s, at 10 fps
    meta = json.loads(side.read_text())
    assert meta["source"] == "cam_0" and meta["trigger"] == "request" and meta["requested_label"] == "golf"
    assert meta["frames"] == n and meta["head"] == "h" * 12 and meta["models"]["extractor"] == "e" * 12
    assert meta["start"] <= now - 0.8 and meta["end"] >= now + 0.8
    assert not [p for p in (tmp_path / "rec").iterdir() if p.name.startswith(".")]  # no temp left
    assert [c["name"] for c in list_clips(cfg.dir)] == [clip.name]
    # Labelling: clip and sidecar move into <dataset>/<label>/; a bad label or name is refused.
    with pytest.raises(ClipError, match="label: '../x' is not a folder name"):
        assign(cfg.dir, cfg.dataset_dir(), clip.name, "../x")
    with pytest.raises(ClipError, match="not a clip name"):
        discard(cfg.dir, "../../etc/passwd")
    moved = assign(cfg.dir, cfg.dataset_dir(), clip.name, "golf")
    assert moved == tmp_path / "rec" / "dataset" / "golf" / f"{clip.name}.mp4" and moved.is_file()
    assert json.loads(moved.with_suffix(".json").read_text())["label"] == "golf"
    assert list_clips(cfg.dir) == [] and not video.exists() and not side.exists()
    with pytest.raises(ClipError, match="no clip"):
        assign(cfg.dir, cfg.dataset_dir(), clip.name, "golf")


def test_a_full_writer_queue_drops_frames_counted_without_blocking(tmp_path):
    # A queue of 8 frames and 30 fps kept: 5 s of frames offered in a burst outrun the encoder.
    cfg = RecordConfig(enabled=True, dir=tmp_path / "rec", pre_s=0, fps=30, queue=8)
    rec = Recorder(cfg, ["cam0"], MODELS, "jhmdb-head")
    try:
        frames = frames_of(WAVE) * 10  # 31 frames each
        now, t0 = time.time(), time.monotonic()
        name = rec.request("cam0", 5.0)["clip"]
        for i, frame in enumerate(frames[:170]):
            rec.rings["cam0"].offer(frame, t0 + i / 30, now + i / 30, None)
        burst = time.monotonic() - t0
        wait_written(rec, 1)
    finally:
        rec.close()
        asyncio.run(rec.wait_closed())
    st = rec.writer.stats
    assert burst < 2.0 and st.frames_dropped > 0 and 148 <= st.frames_written + st.frames_dropped <= 152, (burst, st)
    side = json.loads((cfg.dir / f"{name}.json").read_text())
    assert side["dropped_frames"] == st.frames_dropped and video_frames(cfg.dir / f"{name}.mp4")[0] == st.frames_written


def test_clip_numbers_go_on_after_a_restart_so_no_clip_is_replaced(tmp_path):
    cfg = RecordConfig(enabled=True, dir=tmp_path / "rec")
    first = Recorder(cfg, ["cam0"], MODELS, "jhmdb-head")
    first.close()
    asyncio.run(first.wait_closed())
    kept = cfg.dir / "cam0-20261204_120000-7.mp4"  # a clip the last run left, started this second
    kept.write_bytes(b"a clip")
    again = Recorder(cfg, ["cam0"], MODELS, "jhmdb-head")
    try:
        assert again.writer.next_number() == 8
    finally:
        again.close()
        asyncio.run(again.wait_closed())
    assert kept.read_bytes() == b"a clip"


def test_the_quota_deletes_the_oldest_clips_first(tmp_path):
    cfg = RecordConfig(enabled=True, dir=tmp_path / "rec", pre_s=0, fps=10, quota_mb=0.08)
    rec = Recorder(cfg, ["cam0"], MODELS, "jhmdb-head")
    names = []
    try:
        frames = frames_of(GOLF) * 3
        for k in range(4):
            names.append(rec.request("cam0", 2.0)["clip"])
            play(rec, "cam0", frames[: 3 * 23])  # 2.3 s, 10 fps kept
            wait_written(rec, k + 1)
    finally:
        rec.close()
        asyncio.run(rec.wait_closed())
    st = rec.writer.stats
    on_disk = sorted((p.stat().st_mtime, p.stem) for p in cfg.dir.glob("*.mp4"))
    total = sum(p.stat().st_size for p in cfg.dir.glob("*.mp4"))
    assert st.bytes_written > 80_000 and total <= 80_000, (st, total)
    assert [n for _, n in on_disk] == names[len(names) - len(on_disk) :] and 0 < len(on_disk) < 4, (on_disk, names)
    assert st.deleted_by_quota == 4 - len(on_disk) and not list(cfg.dir.glob(".*"))
    assert all((cfg.dir / f"{n}.json").is_file() for _, n in on_disk)
    assert not any((cfg.dir / f"{n}.json").exists() for n in names[: 4 - len(on_disk)])


def post(port: int, path: str, body, token: str | None = TOKEN, content_type: str = "application/json"):
    """(status, body) of a JSON POST, errors included."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(), method="POST")
    req.add_header("Content-Type", content_type)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def clips(port: int) -> dict:
    code, _, body = get(port, "/api/clips", TOKEN)
    assert code == 200, body
    return json.loads(body)


def pipe_sources(*named: tuple[str, Path]) -> list[dict]:
    """Each clip looped by ffmpeg at its own pace into a pipe source: what a camera delivers."""
    ffmpeg = "ffmpeg -hide_banner -nostdin -loglevel error -re -stream_loop -1"
    out = "-an -vf scale=320:240 -f rawvideo -pix_fmt bgr24 -"
    pipe = {"kind": "pipe", "pixel_format": "bgr24", "width": 320, "height": 240, "fps": 30}
    return [{"id": sid, "uri": f"{ffmpeg} -i {shlex.quote(str(clip))} {out}", **pipe} for sid, clip in named]


def record_section(tmp_path: Path, events: bool = True) -> str:
    return (
        f'\n[record]\nenabled = true\ndir = "{tmp_path / "rec"}"\ndataset = "{tmp_path / "my_clips"}"\n'
        f"pre_s = 1.0\npost_s = 1.0\nmax_s = 4.0\nevents = {str(events).lower()}\n"
    )


def test_record_on_request_and_on_events_label_over_http_and_read_the_dataset(tmp_path, env):
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not found on PATH (apt-get install ffmpeg)")
    # cam0: a still scene for 3 s, then three golf swings, looped: an event a pass, with frames before it.
    scene = tmp_path / "scene.mp4"
    cap = cv2.VideoCapture(str(GOLF))
    ok, still = cap.read()
    cap.release()
    assert ok and cv2.imwrite(str(tmp_path / "still.png"), still)
    graph = "[0:v]fps=30,format=yuv420p[a];[1:v]fps=30,format=yuv420p,loop=2:48[b];[a][b]concat=n=2:v=1[v]"
    made = subprocess.run(
        [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-loop",
            "1",
            "-t",
            "3",
            "-i",
            str(tmp_path / "still.png"),
        ]
        + ["-i", str(GOLF), "-filter_complex", graph, "-map", "[v]", "-an", str(scene)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    sources = pipe_sources(("cam0", scene), ("cam_1", WAVE))
    metrics = free_port()
    extra = record_section(tmp_path) + f'\n[metrics]\nlisten = "127.0.0.1:{metrics}"\n'
    proc, port = web_daemon(tmp_path, env, token=TOKEN, extra=extra, sources=sources)
    try:
        # On request, through the CLI against the running daemon.
        web = ["--web", f"http://127.0.0.1:{port}", "--token", TOKEN]
        done = run_cli("record", "--source", "cam_1", "--seconds", "2", "--label", "wave", *web, "--wait", env=env)
        assert done.returncode == 0, done.stderr
        asked = done.stdout.split()[1]
        assert asked.startswith("cam-1-") and f"written {asked}.mp4" in done.stdout
        bad = run_cli("record", "--source", "nope", "--seconds", "2", *web, env=env)
        assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "404 source 'nope' does not record" in bad.stderr
        # On an event: the golf swing looped becomes an event; its clip (capped at max_s) is written.
        event = wait_for(
            lambda: [c for c in clips(port)["clips"] if c["trigger"] == "event:golf"], 90, "an event clip"
        )[0]
        listed = clips(port)
        assert listed["sources"] == ["cam0", "cam_1"] and listed["stats"]["clips_written"] >= 2
        assert listed["stats"]["frames_dropped"] == 0 and listed["stats"]["codec"] in ("h264", "mp4v")
        assert event["source"] == "cam0" and event["predicted"] == "golf" and event["top"][0]["label"] == "golf"
        # start..end of the event with a second of pre- and post-roll, capped at max_s (4 s)
        assert 1.5 <= event["end"] - event["start"] <= 4.1 and event["head"] and event["events"], event
        first = event["events"][0]
        assert first["label"] == "golf" and abs(event["start"] - (first["started_at"] - 1.0)) <= 0.15, event  # pre_s
        request = next(c for c in listed["clips"] if c["name"] == asked)
        # 2 s from the request; an event clip of the source open then takes the request in (one clip at a time)
        assert request["requested_label"] == "wave" and "request" in request["triggers"]
        assert 1.5 <= request["end"] - request["start"] <= 4.1, request
        code, headers, video = get(port, f"/api/clips/{asked}/video", TOKEN)
        assert code == 200 and headers["Content-Type"] == "video/mp4" and len(video) > 5000
        (tmp_path / "got.mp4").write_bytes(video)
        n, shape = video_frames(tmp_path / "got.mp4")
        assert shape == (240, 320) and abs(n - 10 * (request["end"] - request["start"])) <= 3, n  # record.fps 10
        # The status and the metrics carry the recorder's counters.
        assert wait_for(lambda: json.loads(get(port, "/api/state", TOKEN)[2])["outputs"].get("record"), 10, "status")
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5) as r:
            scraped = r.read().decode()
        assert float(re.search(r"^edgevid_record_sent_total (\S+)", scraped, re.M).group(1)) >= 2
        assert float(re.search(r"^edgevid_record_bytes_total (\S+)", scraped, re.M).group(1)) > 5000
        assert (
            re.search(r"^edgevid_record_deleted_total 0", scraped, re.M) and "edgevid_record_dropped_total" in scraped
        )
        # The HTTP API's rules: the token, JSON bodies only, names and labels checked.
        assert post(port, f"/api/clips/{asked}/label", {"label": "wave"}, token=None)[0] == 401
        assert post(port, f"/api/clips/{asked}/label", {"label": "wave"}, content_type="text/plain")[0] == 415
        code, body = post(port, f"/api/clips/{asked}/label", {"label": "../etc"})
        assert code == 400 and b"label: '../etc' is not a folder name" in body
        assert post(port, "/api/clips/nope/label", {"label": "wave"})[0] == 404
        assert post(port, "/api/sources/cam0/record", {"seconds": 99})[0] == 400
        # Label both, record two more on request: one labelled, one discarded.
        assert post(port, f"/api/clips/{asked}/label", {"label": "wave"})[0] == 200
        assert post(port, f"/api/clips/{event['name']}/label", {"label": "golf"})[0] == 200
        more = [
            json.loads(post(port, f"/api/sources/{s}/record", {"seconds": 1})[1])["clip"] for s in ("cam0", "cam_1")
        ]
        wait_for(lambda: {c["name"] for c in clips(port)["clips"]} >= set(more), 30, "two more clips")
        assert post(port, f"/api/clips/{more[0]}/label", {"label": "golf"})[0] == 200
        assert post(port, f"/api/clips/{more[1]}/discard", {})[0] == 200
        assert not {c["name"] for c in clips(port)["clips"]} & {asked, event["name"], *more}
        assert post(port, f"/api/clips/{more[1]}/discard", {})[0] == 404
    finally:
        code, err = stop_daemon(proc)
    assert code == 0, err
    # Exactly the layout tools.experiment --dataset folders reads, with source-and-day groups.
    ds = read_folders(tmp_path / "my_clips", group_pattern=GROUPS)
    assert ds.classes == ["golf", "wave"] and not ds.problems
    items = ds.train + ds.val + ds.test
    day = time.strftime("%Y%m%d")
    assert sorted(i.path.name for i in items) == sorted(f"{n}.mp4" for n in (asked, event["name"], more[0]))
    assert {i.group for i in items} == {f"cam0-{day}", f"cam-1-{day}"}
    with pytest.raises(DatasetError, match="fewer: golf 1, wave 1"):  # two cameras, one day: one group a class
        check_split(ds, "3 groups a class")
    assert not (tmp_path / "rec" / f"{more[1]}.mp4").exists()


@pytest.mark.slow
def test_browser_labels_a_recorded_clip(tmp_path, env):
    if CHROMIUM is None or shutil.which("ffmpeg") is None:
        pytest.skip("chromium and ffmpeg are needed (apt-get install chromium ffmpeg)")
    sources = pipe_sources(("cam0", GOLF))
    proc, port = web_daemon(tmp_path, env, token=TOKEN, extra=record_section(tmp_path, events=False), sources=sources)
    browser = None
    try:
        browser = Chromium(f"http://127.0.0.1:{port}/?token={TOKEN}")

        async def drive() -> dict:
            await browser.open()
            try:
                # The sources page's button records the next few seconds (max_s 4 here).
                button = "#source-cam0 .record-button"
                await browser.until(f"(b => b && !b.hidden)(document.querySelector('{button}'))", 30, "record")
                assert await browser.js(f"document.querySelector('{button}').textContent") == "Record 4 s"
                await browser.click(button)
                await browser.until(f"document.querySelector('{button}').textContent.startsWith('Recording')", 10, "ok")
                await browser.click('nav a[href^="/clips"]')  # the link keeps the token
                name = await browser.until(
                    "(n => n && n.dataset.clip)(document.querySelector('.clip'))", 40, "the recorded clip"
                )
                played = await browser.until(
                    "(v => v && v.readyState >= 1 && v.videoWidth)(document.querySelector('.clip video'))",
                    20,
                    "the player",
                )
                await browser.click(".clip .label-button[data-label=golf]")
                await browser.until(f"document.getElementById('clip-{name}') === null", 20, "the clip leave")
                return {"name": name, "video_width": played}
            finally:
                await browser.close()

        got = asyncio.run(drive())
    finally:
        if browser is not None:
            browser.kill()
        code, err = stop_daemon(proc)
    assert code == 0, err
    assert got["video_width"] == 320  # H.264 (ffmpeg's libx264 here): Chromium plays it
    assert (tmp_path / "my_clips" / "golf" / f"{got['name']}.mp4").is_file()
    assert (tmp_path / "my_clips" / "golf" / f"{got['name']}.json").is_file()
    assert not (tmp_path / "rec" / f"{got['name']}.mp4").exists()


def test_record_config_errors_are_one_line(tmp_path, env):
    def check(record: str) -> str:
        cfg = tmp_path / "r.toml"
        cfg.write_text(f'[[sources]]\nid = "cam0"\nuri = "{GOLF}"\n\n[record]\nenabled = true\n{record}\n')
        proc = run_cli("config", "check", str(cfg), env=env)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
        return proc.stderr

    assert "record.sources: no source 'cam9' (sources: cam0)" in check('sources = ["cam9"]')
    assert "record.dir: cannot create /proc/nope" in check('dir = "/proc/nope/rec"')
    assert "record.quota_mb: Input should be greater than or equal to 0.01" in check("quota_mb = 0")
    assert "record.fps" in check("fps = 0")


@pytest.mark.slow
def test_the_loop_record_label_train_copy_the_head_and_sighup(tmp_path, env):
    """README's loop on the device: six cameras (three golfers, three wavers, each its own group),
    a clip recorded on request from each, labelled over HTTP; a tiny training run on the labelled
    folder with README's command; the head copied over the one the config names; SIGHUP; the page's
    state then has the new head's labels and predictions from it."""
    pytest.importorskip("sklearn", reason="tools dependencies not installed (pip install -e ./tools)")
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not found on PATH (apt-get install ffmpeg)")
    from tools.probe import run_group

    from conftest import HEAD_DIR, ROOT

    head = tmp_path / "head"  # the folder the config names: the bundled head to begin with
    shutil.copytree(HEAD_DIR, head)
    golf, wave = sorted((DATA / "jhmdb" / "golf").glob("*.avi")), sorted((DATA / "jhmdb" / "wave").glob("*.avi"))
    named = [(f"golf{i}", golf[i]) for i in range(3)] + [(f"wave{i}", wave[i]) for i in range(3)]
    extra = record_section(tmp_path, events=False) + f'\n[models]\nhead = "{head}"\n'
    proc, port = web_daemon(tmp_path, env, token=TOKEN, extra=extra, sources=pipe_sources(*named))
    try:
        asked = {}
        for _ in range(2):  # two clips a camera
            for sid, _clip in named:
                code, body = post(port, f"/api/sources/{sid}/record", {"seconds": 1.5})
                assert code == 200, body
                asked[json.loads(body)["clip"]] = sid.rstrip("0123456789")
            wait_for(lambda: {c["name"] for c in clips(port)["clips"]} >= set(asked), 60, "the clips")
            time.sleep(1.1)  # the next clips a second later
        for name, label in asked.items():
            assert post(port, f"/api/clips/{name}/label", {"label": label})[0] == 200
        data = tmp_path / "my_clips"
        ds = read_folders(data, group_pattern=GROUPS)
        assert ds.classes == ["golf", "wave"] and len(ds.train + ds.val + ds.test) == 12
        check_split(ds, "3 groups a class")  # each class: three cameras, three groups
        # Train on a workstation (here): README's command, made tiny.
        cmd = [sys.executable, "-m", "tools.experiment", "--dataset", "folders", "--data", str(data)]
        cmd += ["--group-pattern", GROUPS, "--heads", "gru128n", "--out", str(tmp_path / "runs"), "--export"]
        cmd += [str(tmp_path / "my-head"), "--max-epochs", "4", "--min-epochs", "1", "--patience", "2"]
        t0 = time.monotonic()
        trained = run_group(cmd, cwd=ROOT, env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, timeout=600)
        took = time.monotonic() - t0
        assert trained.returncode == 0, trained.stderr[-3000:]
        assert (tmp_path / "my-head" / "labels.txt").read_text().split() == ["golf", "wave"]
        # Copy the head over the one the config names as rsync does (each file to a temp name, then
        # renamed: the running daemon maps head.tflite, and a file rewritten in place kills it with
        # SIGBUS), and SIGHUP: the daemon restarts in place.
        for f in (tmp_path / "my-head").iterdir():
            shutil.copy2(f, head / f".{f.name}.tmp")
            os.replace(head / f".{f.name}.tmp", head / f.name)
        proc.send_signal(signal.SIGHUP)
        try:
            new = wait_for(
                lambda: (s := state_or_none(port)) and s["model"]["labels"] == ["golf", "wave"] and s, 90, "the head"
            )
        except AssertionError:
            raise AssertionError(stop_daemon(proc)[1][-4000:]) from None
        assert proc.poll() is None
        got = wait_for(
            lambda: [s["last"] for s in state_or_none(port)["sources"] if s["last"]], 60, "a prediction of the new head"
        )
        assert all(p["label"] in ("golf", "wave", "unknown", "idle") for p in got), got
        assert new["model"]["name"] != "jhmdb-split1-stats_m_x5"
    finally:
        code, err = stop_daemon(proc)
    assert code == 0, err
    print(f"tiny training run: {took:.0f} s")


def state_or_none(port: int) -> dict | None:
    """The page's state, or None while the daemon restarts."""
    try:
        code, _, body = get(port, "/api/state", TOKEN)
    except (urllib.error.URLError, ConnectionError):
        return None
    return json.loads(body) if code == 200 else None


def prediction(source: str, seq: int, t: float, top: list[tuple[str, float]]):
    """A prediction as the daemon publishes it (a window of 1.2 s ending at ``t``)."""
    from edgevid.messages import Prediction, PredictionLatency, Score

    return Prediction(
        source=source,
        seq=seq,
        label=top[0][0] if top else "idle",
        score=top[0][1] if top else 0.0,
        window_start=t - 1.2,
        window_end=t,
        top=[Score(label=label, score=score) for label, score in top],
        models=MODELS,
        frames=12,
        gaps=0,
        new_frames=5,
        latency=PredictionLatency(extract_ms=1, head_ms=1, floor_ms=2, capture_to_publish_ms=3),
    )


def test_unsure_windows_are_recorded_at_most_once_per_unsure_every_s(tmp_path):
    cfg = RecordConfig(enabled=True, dir=tmp_path / "rec", unsure=True, margin=0.2, pre_s=1.0, post_s=0.5)
    rec = Recorder(cfg, ["cam0"], MODELS, "jhmdb-head")
    rec.min_score = {"cam0": 0.5}
    try:
        now = time.time()
        rec.send("pred/cam0", prediction("cam0", 1, now, [("golf", 0.9), ("wave", 0.05)]))  # sure
        rec.send("pred/cam0", prediction("cam0", 2, now, []))  # idle: nothing ran, never unsure
        assert rec.rings["cam0"].clip is None
        rec.send("pred/cam0", prediction("cam0", 3, now, [("golf", 0.55), ("wave", 0.4)]))  # margin 0.15
        clip = rec.rings["cam0"].clip
        assert clip is not None and clip.triggers == ["unsure"]
        assert clip.start == pytest.approx(now - 1.2 - 1.0) and clip.end == pytest.approx(now + 0.5)
        rec.rings["cam0"].expire(now + 10)  # no frame came: an empty clip, counted
        rec.send("pred/cam0", prediction("cam0", 4, now + 1, [("golf", 0.3), ("wave", 0.01)]))  # below min_score
        assert rec.rings["cam0"].clip is None  # within unsure_every_s (60) of the last
        rec.send("pred/cam0", prediction("cam0", 5, now + 61, [("golf", 0.3), ("wave", 0.01)]))
        assert rec.rings["cam0"].clip.triggers == ["unsure"] and rec.rings["cam0"].clip is not clip
        assert [p["seq"] for p in rec.rings["cam0"].clip.predictions] == [5]
        assert rec.writer.stats.clips_empty == 1
    finally:
        rec.close()
        asyncio.run(rec.wait_closed())
    assert rec.writer.stats.clips_empty == 2 and rec.writer.stats.clips_written == 0
