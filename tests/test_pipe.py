"""Pipe source (`kind = "pipe"`): frames from a command's stdout, as a Pi camera gives them through
rpicam-vid. Real commands throughout: ffmpeg decoding a real clip to raw or MJPEG frames stands in
for the camera; `sleep` is a command that never writes."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from edgevid.config import DaemonConfig, describe
from edgevid.sources.pipe import (
    GUARD,
    JpegSplitter,
    PipeCapture,
    PipeSpec,
    RawFramer,
    StderrTail,
    command_problem,
    describe_exit,
    frame_bytes,
    to_bgr,
)
from edgevid.timing import Backoff, Liveness

from conftest import DATA, run_cli
from daemon_util import Subscriber, free_port, start_daemon, stop_daemon, write_config

#: 6.6 s, 25 fps, 320x240; `classify` says brush_hair 0.70 (next: pour 0.13).
CLIP = DATA / "ucf101_sample" / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g01_c01.avi"
FFMPEG = shutil.which("ffmpeg")
if FFMPEG is None:
    if os.environ.get("CI"):
        raise RuntimeError("ffmpeg is not installed: CI must install it (apt-get install -y ffmpeg)")
    pytest.skip("ffmpeg not found on PATH (apt-get install ffmpeg)", allow_module_level=True)
W, H = 320, 240


def ffmpeg(fmt: str, *, clip: Path = CLIP, camera: bool = False) -> str:
    """A command writing the clip's frames to stdout as ``fmt``: each decoded frame once, or like a
    camera: paced (-re) and without end (looping; constant-rate output, so timestamps keep
    increasing over the loop seam, as the MJPEG encoder requires)."""
    out = "-f mjpeg -q:v 3" if fmt == "mjpeg" else f"-f rawvideo -pix_fmt {fmt}"
    src = f"-i {shlex.quote(str(clip))} -an"
    how = f"-re -stream_loop -1 {src}" if camera else f"{src} -fps_mode passthrough"
    return f"ffmpeg -hide_banner -nostdin -loglevel error {how} {out} -"


def opencv_frames(clip: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(clip))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            return frames
        frames.append(frame)


def read_all(cap: PipeCapture, limit: float = 30) -> list[np.ndarray]:
    frames, end = [], time.monotonic() + limit
    while time.monotonic() < end:
        if cap.grab():
            ok, frame = cap.retrieve()
            assert ok
            frames.append(frame)
        elif cap.ended:
            return frames
    raise AssertionError("the command did not end")


def proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, pgrp) of a process, None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return fields[0], int(fields[1]), int(fields[2])


def living(predicate) -> list[int]:
    """Pids of processes (zombies excluded: they are dead) whose stat satisfies ``predicate``."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = proc_stat(int(entry))
            if st and st[0] != "Z" and predicate(int(entry), st):
                out.append(int(entry))
    return out


def children(pid: int) -> list[int]:
    return living(lambda _, st: st[1] == pid)


def child_running(pid: int, match, timeout: float = 10.0) -> int:
    """A command ``pid`` runs (its child, or the child of its guard) whose argv matches (after its
    exec: till then it shows the parent's)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for child in [c for k in children(pid) for c in (k, *children(k))]:
            try:
                argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
                if GUARD.encode() not in argv and match(argv):
                    return child
            except FileNotFoundError:
                pass
        time.sleep(0.05)
    raise AssertionError("no such child")


def gone(pids, timeout: float = 5.0) -> bool:
    """Do these processes and everything in their process groups end within ``timeout``?"""
    pids = set(pids)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not living(lambda p, st: p in pids or st[2] in pids):
            return True
        time.sleep(0.05)
    return False


# -- pure rules --------------------------------------------------------------------------------
def test_frame_bytes_per_pixel_format():
    assert frame_bytes("yuv420p", 640, 480) == 460800  # rpicam-vid --codec yuv420 --width 640 --height 480
    assert frame_bytes("nv12", 640, 480) == frame_bytes("nv21", 640, 480) == 460800
    assert frame_bytes("yuyv422", 640, 480) == 614400
    assert frame_bytes("bgr24", 320, 240) == frame_bytes("rgb24", 320, 240) == 230400
    assert frame_bytes("gray", 320, 240) == 76800


def test_raw_framer_cuts_any_chunking_into_whole_frames():
    data = bytes(range(256)) * 100  # 25600 bytes = 2 frames of 10000 + 5600 pending
    rng = np.random.default_rng(0)
    framer, frames, pos = RawFramer(10000), [], 0
    while pos < len(data):
        n = int(rng.integers(1, 7000))
        frames += framer.feed(data[pos : pos + n])
        pos += n
    assert frames == [data[:10000], data[10000:20000]] and framer.pending == 5600


def _jpeg(frame: np.ndarray, quality: int = 80) -> bytes:
    return cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def _with_thumbnail(jpeg: bytes, thumb: bytes) -> bytes:
    """An APP1 (EXIF-style) segment holding a whole JPEG, SOI and EOI included, after SOI."""
    payload = b"Exif\x00\x00" + thumb
    return jpeg[:2] + b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload + jpeg[2:]


def test_jpeg_splitter_yields_whole_images_whatever_the_chunks():
    frames = opencv_frames(CLIP)[:5]
    thumb = _jpeg(cv2.resize(frames[0], (40, 30)))
    images = [
        _jpeg(frames[0]),
        _with_thumbnail(_jpeg(frames[1]), thumb),
        _jpeg(frames[2], 30),
        _jpeg(frames[3]),
        _jpeg(frames[4]),
    ]
    stream = b"junk\xff" + images[0] + images[1] + b"\x00\x00garbage" + images[2] + images[3] + images[4]
    for chunk in (1, 7, 4096, len(stream)):
        splitter, got = JpegSplitter(), []
        for i in range(0, len(stream), chunk):
            got += splitter.feed(stream[i : i + chunk])
        assert got == images, chunk
        assert splitter.dropped_bytes == len(b"junk\xff") + len(b"\x00\x00garbage")
    decoded = to_bgr(images[1], "mjpeg", W, H)  # the thumbnail did not cut the image short
    assert decoded.shape == (H, W, 3) and np.abs(decoded.astype(int) - frames[1]).mean() < 4


def test_jpeg_splitter_drops_a_stream_that_is_not_mjpeg():
    splitter = JpegSplitter(max_bytes=10000)
    assert splitter.feed(b"\xff\xd8\xff\xe0\x00\x10" + bytes(14) + b"\xff\xda\x00\x02" + b"\x11" * 20000) == []
    assert splitter.dropped_bytes > 20000
    image = _jpeg(opencv_frames(CLIP)[0][:60, :80])
    assert splitter.feed(image) == [image]  # and it recovers at the next image


def test_stderr_tail_keeps_the_last_lines_progress_included():
    tail = StderrTail(lines=2)
    tail.feed(b"first\nframe=  1 fps=0.0\rframe=  2 fps=0")
    tail.feed(b".0\r\n\nERROR: *** no cameras available ***\npartial")
    assert tail.text() == "frame=  2 fps=0.0 | ERROR: *** no cameras available ***"
    tail.close()
    assert tail.text() == "ERROR: *** no cameras available *** | partial"


def test_exit_is_told_in_one_line():
    assert describe_exit(1, "ERROR: no cameras", 0) == "command exited with code 1 after 0 frames: ERROR: no cameras"
    assert describe_exit(-9, "", 42) == "command was killed by SIGKILL after 42 frames"
    assert describe_exit(0, "", 5) == "command exited with code 0 after 5 frames"
    assert describe_exit(None, "", 5) == "command closed its output after 5 frames"
    assert (
        describe_exit(0, "", 5, leftover=1000)
        == "command exited with code 0 after 5 frames and 1000 bytes of an incomplete frame"
    )


def test_stall_and_restart_backoff_on_a_fake_clock():
    live = Liveness(2.0, now=100.0)  # what a source's stall_timeout = 2 is checked with
    assert live.alive(101.9)
    assert not live.alive(102.1)  # a command that never writes stalls from its start
    live.beat(102.5)
    assert live.alive(104.4) and not live.alive(104.6)

    class Fixed:
        def uniform(self, a, b):
            return 1.0

    backoff = Backoff(0.5, 3.0, rng=Fixed())
    assert [backoff.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()  # after a run that gave frames, the next restart comes quickly again
    assert backoff.next() == 0.5


def test_command_problems_are_found_before_running(tmp_path):
    assert command_problem("sleep 1000") is None
    assert command_problem("rpicam-vid-not-here -t 0 -o -") == "'rpicam-vid-not-here' not found on PATH"
    assert "not a command line" in command_problem("ffmpeg -i 'clip.avi -")
    script = tmp_path / "cam.sh"
    script.write_text("#!/bin/sh\n")
    assert command_problem(str(script)) == f"{str(script)!r} is not executable"
    assert command_problem(str(tmp_path / "missing")) == f"{str(tmp_path / 'missing')!r} not found"


# -- config ------------------------------------------------------------------------------------
def _error(**source) -> str:
    with pytest.raises(ValidationError) as exc:
        DaemonConfig(sources=[{"id": "cam", **source}])
    return describe(exc.value)


def test_pipe_fields_are_checked_with_one_line_naming_the_field():
    pipe = {"uri": "rpicam-vid -t 0 --codec yuv420 -o -", "kind": "pipe"}
    ok = DaemonConfig(
        sources=[{"id": "cam", **pipe, "pixel_format": "yuv420p", "width": 640, "height": 480, "fps": 15}]
    )
    assert ok.sources[0].resolved_kind() == "pipe"
    assert DaemonConfig(sources=[{"id": "cam", **pipe, "pixel_format": "mjpeg", "fps": 15}])  # JPEGs carry their size
    assert _error(**pipe, width=640, height=480, fps=15).startswith(
        'sources.0.pixel_format: required for kind = "pipe"'
    )
    assert _error(**pipe, pixel_format="yuv420p", height=480, fps=15) == 'sources.0.width: required for kind = "pipe"'
    assert _error(**pipe, pixel_format="yuv420p", width=640, height=480) == 'sources.0.fps: required for kind = "pipe"'
    assert (
        _error(**pipe, pixel_format="nv12", width=641, height=480, fps=15)
        == "sources.0.width: must be even for pixel_format nv12"
    )
    assert _error(**pipe, pixel_format="yuv420", width=640, height=480, fps=15).startswith(
        "sources.0.pixel_format: Input should be 'yuv420p'"
    )
    assert _error(uri="rpicam-vid -o 'x", kind="pipe", pixel_format="bgr24", width=64, height=48, fps=5).startswith(
        "sources.0: uri: not a command line"
    )
    assert _error(uri="clip.avi", width=640) == 'sources.0.width: only for kind = "pipe"'


def test_config_check_reports_a_program_not_on_path(tmp_path, model_dir):
    cfg = tmp_path / "pi.toml"
    cfg.write_text(
        '[[sources]]\nid = "picam"\nkind = "pipe"\nuri = "rpicam-vid-not-here -t 0 --codec yuv420 -o -"\n'
        'pixel_format = "yuv420p"\nwidth = 640\nheight = 480\nfps = 15\n'
    )
    proc = run_cli("config", "check", str(cfg), env={"EDGEVID_MODEL_DIR": str(model_dir)})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"edgevid: error: {cfg}: sources.picam: 'rpicam-vid-not-here' not found on PATH"
    cfg.write_text(cfg.read_text().replace("rpicam-vid-not-here", "sleep"))
    proc = run_cli("config", "check", str(cfg), env={"EDGEVID_MODEL_DIR": str(model_dir)})
    assert proc.returncode == 0 and "source picam: window" in proc.stdout, proc.stderr


# -- the reader on real commands -----------------------------------------------------------------
@pytest.mark.parametrize(
    "fmt, tolerance",
    [("yuv420p", 2), ("nv12", 2), ("nv21", 2), ("yuyv422", 2), ("bgr24", 0), ("rgb24", 0), ("mjpeg", 4)],
)
def test_pipe_frames_are_the_clip_frames(fmt, tolerance):
    """Every frame of the clip arrives, in order, as the BGR image OpenCV decodes from the file
    (exactly for BGR/RGB; YUV and JPEG within a few levels of rounding and compression)."""
    ref = opencv_frames(CLIP)
    cap = PipeCapture(PipeSpec(ffmpeg(fmt), fmt, W, H, 25))
    try:
        frames = read_all(cap)
    finally:
        cap.release()
    assert len(frames) == len(ref) == 164
    diffs = [np.abs(f.astype(np.int16) - r).mean() for f, r in zip(frames, ref)]
    assert max(diffs) <= tolerance, (fmt, max(diffs))
    assert cap.ended == "command exited with code 0 after 164 frames"


def test_failing_command_reports_its_exit_code_and_last_stderr_line(tmp_path):
    cap = PipeCapture(PipeSpec(ffmpeg("yuv420p", clip=tmp_path / "no-camera.avi"), "yuv420p", W, H, 25))
    try:
        assert read_all(cap) == []
    finally:
        cap.release()
    assert cap.ended.startswith("command exited with code 1 after 0 frames: ")
    assert "no-camera.avi: No such file or directory" in cap.ended


def test_a_wrong_frame_size_is_hinted_at_when_the_command_ends():
    cap = PipeCapture(PipeSpec(ffmpeg("yuv420p"), "yuv420p", W, 200, 25))  # the clip is 240 high
    try:
        frames = read_all(cap)
    finally:
        cap.release()
    assert len(frames) == 164 * 240 // 200  # garbled frames: the size is the user's word
    assert (
        cap.ended == f"command exited with code 0 after {len(frames)} frames and {164 * W * 360 % (W * 300)} bytes "
        "of an incomplete frame"
    )


def test_program_not_found_is_a_one_line_source_error():
    """The daemon retries such a source with backoff; this line is its `last_error`."""
    from edgevid.config import SourceConfig
    from edgevid.sources.base import SourceError
    from edgevid.sources.kinds import open_capture

    cfg = SourceConfig(
        id="picam",
        kind="pipe",
        uri="rpicam-vid-not-here -t 0 -o -",
        pixel_format="yuv420p",
        width=640,
        height=480,
        fps=15,
    )
    with pytest.raises(SourceError, match=r"^cannot start command: 'rpicam-vid-not-here' not found on PATH$"):
        open_capture(cfg)


def test_release_kills_the_whole_process_group_even_what_ignores_sigterm():
    cap = PipeCapture(PipeSpec("sh -c 'trap \"\" TERM; sleep 1000 & sleep 1000 & wait'", "gray", 16, 16, 5))
    try:
        end = time.monotonic() + 5
        while len(living(lambda p, st: st[2] == cap.pgid)) < 4 and time.monotonic() < end:
            time.sleep(0.02)
        assert len(living(lambda p, st: st[2] == cap.pgid)) == 4  # the guard, sh and two sleeps, one group
        assert not cap.grab() and cap.ended is None  # nothing written yet: no frame, not ended
    finally:
        cap.release()
    assert gone([cap.pgid], timeout=2)  # SIGKILL was sent to every member: they are dead or dying


def test_command_dies_with_the_thread_that_started_it():
    """PR_SET_PDEATHSIG: a source thread that vanishes without stopping its command takes it along
    (the same happens to every command when the daemon is killed)."""
    started: list[PipeCapture] = []
    thread = threading.Thread(target=lambda: started.append(PipeCapture(PipeSpec("sleep 1000", "gray", 16, 16, 5))))
    thread.start()
    thread.join()
    cap = started[0]
    try:
        end = time.monotonic() + 5
        while cap.proc.poll() is None and time.monotonic() < end:
            time.sleep(0.02)
        # Its guard killed the group (SIGKILL), or SIGHUP ended the guard before it ran the command.
        assert cap.proc.returncode in (-signal.SIGKILL, -signal.SIGHUP)
        assert gone([cap.pgid], timeout=2)
    finally:
        cap.release()


# -- the daemon ----------------------------------------------------------------------------------
def _pipe(sid: str, command: str, fmt: str, **extra) -> dict:
    size = {} if fmt == "mjpeg" else {"width": W, "height": H}
    return {"id": sid, "kind": "pipe", "uri": command, "pixel_format": fmt, "fps": 25, **size, "top_k": 21, **extra}


@pytest.fixture(scope="module")
def classify_top(env) -> str:
    import json

    proc = run_cli("classify", str(CLIP), "--json", env=env)
    top = json.loads(proc.stdout)["top"]
    assert top[0]["label"] == "brush_hair" and top[0]["score"] - top[1]["score"] > 0.3  # the clip's documented answer
    return top[0]["label"]


def test_daemon_publishes_windows_from_pipes_in_every_format(tmp_path, env, classify_top):
    """Four camera-paced pipes (I420, NV12, BGR, MJPEG) of one clip: each publishes complete
    windows, and what they say is what `classify` says about the clip."""
    formats = ["yuv420p", "nv12", "bgr24", "mjpeg"]
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    config = write_config(
        tmp_path / "p.toml", endpoint, [_pipe(f, ffmpeg(f, camera=True), f, hop=0.6) for f in formats]
    )
    sub = Subscriber(endpoint)
    proc = start_daemon(config, env)
    try:
        msgs = sub.until(
            lambda got: all(sum(m["type"] == "prediction" and m["source"] == f for _, m in got) >= 6 for f in formats),
            60,
        )
        kids = children(proc.pid)
    finally:
        code, err = stop_daemon(proc)
        sub.close()
    assert code == 0 and "Traceback" not in err, err
    for f in formats:
        preds = [m for _, m in msgs if m["type"] == "prediction" and m["source"] == f]
        assert len(preds) >= 6, (f, err[-2000:])
        # Live frames are timed by arrival: on a loaded machine a late frame can leave a slot a
        # gap (at most 20 % of a window, or it is skipped); there is no file position.
        assert all(p["gaps"] <= 2 and p["media_start"] is None for p in preds), (
            f,
            [(p["frames"], p["gaps"]) for p in preds],
        )
        # classify's answer is the mean of its windows' scores: so is the pipe's. Window by window,
        # the clip's first ~1.2 s read `clap` in every run (also unloaded) and the second window
        # is near a tie (0.45-0.52), so a clear majority, not every window, votes for the answer.
        mean = Counter()
        for p in preds:
            mean.update({t["label"]: t["score"] / len(preds) for t in p["top"]})
        votes = Counter(p["top"][0]["label"] for p in preds)
        assert mean.most_common(1)[0][0] == classify_top, (f, mean.most_common(3))
        assert votes[classify_top] >= 2 / 3 * len(preds), (f, votes)
    status = [m for _, m in msgs if m["type"] == "status"][-1]
    assert {s["id"]: s["reconnects"] for s in status["sources"]} == dict.fromkeys(formats, 0)
    assert len(kids) == 4 and gone(kids, timeout=1)  # stop left no command behind


def test_daemon_restarts_killed_crashed_and_silent_commands_and_leaves_none(tmp_path, env):
    """One command killed from outside, one that crashes at once, one that never writes: each is
    restarted (counted, `last_error` saying why), and stopping the daemon ends them all."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    fast = {"reconnect_min": 0.2, "reconnect_max": 0.5}
    config = write_config(
        tmp_path / "r.toml",
        endpoint,
        [
            _pipe("cam", ffmpeg("yuv420p", camera=True), "yuv420p", **fast),
            _pipe("broken", ffmpeg("yuv420p", clip=tmp_path / "unplugged.avi"), "yuv420p", **fast),
            _pipe(
                "silent",
                "sh -c 'echo ERROR: Device timeout detected >&2; exec sleep 1000'",
                "yuv420p",
                stall_timeout=1.0,
                **fast,
            ),
        ],
    )
    sub = Subscriber(endpoint, topics=("status",))
    proc = start_daemon(config, env)

    def source(msg, sid):
        return next(s for s in msg["sources"] if s["id"] == sid)

    try:
        assert sub.until(lambda got: got and source(got[-1][1], "cam")["frames_in"] > 10, 30), "no frames from the pipe"
        first_ffmpeg = child_running(proc.pid, lambda argv: b"-re" in argv)  # not the broken source's ffmpeg
        first_sleep = child_running(proc.pid, lambda argv: argv[0] == b"sleep")
        os.kill(first_ffmpeg, signal.SIGKILL)
        msgs = sub.until(
            lambda got: (
                got
                and source(got[-1][1], "cam")["reconnects"] >= 1
                and source(got[-1][1], "silent")["reconnects"] >= 1
                and source(got[-1][1], "cam")["state"] == "running"
            ),
            30,
        )
        cam_before = source(msgs[-1][1], "cam")["frames_in"]
        later = sub.until(lambda got: got and source(got[-1][1], "cam")["frames_in"] > cam_before + 10, 15)
        kids = children(proc.pid)
    finally:
        code, err = stop_daemon(proc)
        sub.close()
    last = later[-1][1]
    cam, broken, silent = (source(last, s) for s in ("cam", "broken", "silent"))
    assert cam["reconnects"] >= 1 and "killed by SIGKILL" in cam["last_error"], cam
    assert cam["state"] == "running" and cam["frames_in"] > cam_before + 10  # frames flow again after the restart
    assert broken["reconnects"] >= 2 and broken["frames_in"] == 0  # retried with backoff, never serving
    assert (
        "exited with code 1" in broken["last_error"]
        and "unplugged.avi: No such file or directory" in broken["last_error"]
    )
    assert silent["reconnects"] >= 1 and silent["frames_in"] == 0
    assert silent["last_error"] == "no frame for 1 s (stalled): ERROR: Device timeout detected"
    assert (
        first_ffmpeg not in kids and first_sleep not in kids and proc_stat(first_sleep) is None
    )  # replaced, not left behind
    assert code == 0 and "Traceback" not in err
    assert gone(kids + [first_ffmpeg, first_sleep], timeout=1), "a command outlived the daemon's stop"


def test_sigkill_of_the_daemon_leaves_no_orphan_command(tmp_path, env):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    config = write_config(
        tmp_path / "k.toml",
        endpoint,
        [
            _pipe("cam", ffmpeg("yuv420p", camera=True), "yuv420p"),
            _pipe("silent", "sleep 1000", "yuv420p", stall_timeout=600),
        ],
    )
    proc = start_daemon(config, env)
    try:
        end = time.monotonic() + 30
        while len(children(proc.pid)) < 2 and time.monotonic() < end:
            time.sleep(0.1)
        kids = children(proc.pid)
        assert len(kids) == 2, kids
    finally:
        code, _ = stop_daemon(proc, sig=signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert gone(kids, timeout=5), [proc_stat(k) for k in kids]  # sleep never writes: only PDEATHSIG ends it


# -- orphans (issue 19, item 7) -----------------------------------------------------------------
def _argv(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
    except OSError:
        return []


def _sleeping(seconds: str) -> list[int]:
    """Living processes running ``sleep SECONDS`` (a duration no other test uses)."""
    return living(lambda p, st: _argv(p) == [b"sleep", seconds.encode()])


def _still_sleeping(seconds: str, within: float) -> list[int]:
    """:func:`_sleeping` once they have ended, or ``within`` seconds have passed."""
    end = time.monotonic() + within
    while _sleeping(seconds) and time.monotonic() < end:
        time.sleep(0.05)
    return _sleeping(seconds)


def _kill(pids) -> None:
    for pid in pids:  # a failed test leaves nothing behind
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_sigkill_of_the_daemon_ends_every_process_of_a_wrapper_command(tmp_path, env):
    """Was: PDEATHSIG reached only the direct child (sh): its two children went on under PID 1."""
    nap = f"1000.{os.getpid()}1"
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    config = write_config(
        tmp_path / "w.toml",
        endpoint,
        [_pipe("wrapped", f"sh -c 'sleep {nap} & sleep {nap} & wait'", "yuv420p", stall_timeout=600)],
    )
    proc = start_daemon(config, env)
    naps: list[int] = []
    try:
        end = time.monotonic() + 30
        while len(naps) < 2 and time.monotonic() < end:
            time.sleep(0.1)
            naps = _sleeping(nap)
        assert len(naps) == 2, naps
        group = proc_stat(naps[0])[2]
        members = living(lambda p, st: st[2] == group)
        code, _ = stop_daemon(proc, sig=signal.SIGKILL)
        assert code == -signal.SIGKILL
        assert gone(members, timeout=5), [(m, proc_stat(m), _argv(m)) for m in members if proc_stat(m)]
    finally:
        if proc.poll() is None:
            stop_daemon(proc, sig=signal.SIGKILL)
        _kill(naps)


def test_a_test_helper_that_times_out_kills_its_whole_process_group():
    """Was: subprocess.run's timeout killed the direct child only (a test left a 928-clip
    extraction running ~6 minutes). run_group, under run_cli, kills the group."""
    from tools.probe import run_group

    nap = f"1000.{os.getpid()}2"
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            run_group(["sh", "-c", f"sleep {nap} & sleep {nap} & wait"], timeout=1)
        assert _still_sleeping(nap, within=5) == []
    finally:
        _kill(_sleeping(nap))


def test_run_cli_of_a_daemon_that_times_out_leaves_no_command_running(tmp_path, env):
    """``run_cli("run", ...)`` that hits its timeout: the daemon, its guard and the wrapper's
    children all end (was: the wrapper's children were left)."""
    nap = f"1000.{os.getpid()}3"
    started = tmp_path / "started"
    config = write_config(
        tmp_path / "t.toml",
        f"tcp://127.0.0.1:{free_port()}",
        [_pipe("wrapped", f"sh -c 'touch {started}; sleep {nap} & sleep {nap} & wait'", "yuv420p", stall_timeout=600)],
    )
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            run_cli("run", "--config", str(config), env=env, timeout=12)
        assert started.exists(), "the command never started within the timeout"
        assert _still_sleeping(nap, within=5) == []
    finally:
        _kill(_sleeping(nap))
