"""The web page served by the real daemon on a real JHMDB clip: its JSON state advances with the
head's labels, the live view is a real JPEG, the live stream delivers predictions, the token is
enforced, config errors are one line, and (slow) headless Chromium sees the page change."""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import DATA, HEAD_DIR, run_cli
from daemon_util import free_port, start_daemon, stop_daemon, write_config

pytest.importorskip("aiohttp", reason="aiohttp not installed (pip install -e '.[test]')")

#: 1.6 s of a golf swing (classify: golf 1.00), looped: a prediction or two per pass.
CLIP = DATA / "jhmdb" / "golf" / "Cobra_Golf_-_Camilo_Villegas_golf_f_cm_np1_ri_goo_0.avi"
LABELS = (HEAD_DIR / "labels.txt").read_text().split()
TOKEN = "test-token-0123456789abcdef"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def get(port: int, path: str, token: str | None = None, host: str | None = None, timeout: float = 5):
    """(status, headers, body) of a GET, errors included."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if host:
        req.add_header("Host", host)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def serving(port: int) -> bool:
    try:
        return get(port, "/static/app.js")[0] == 200
    except (urllib.error.URLError, ConnectionError):
        return False  # not listening yet


def wait_for(fn, timeout: float, what: str):
    """Poll ``fn`` until it returns something true; fail naming ``what``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = fn()
        if got:
            return got
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def web_daemon(tmp_path: Path, env: dict, token: str | None = None, extra: str = "", sources: list | None = None):
    """The real daemon on the looped clip (or ``sources``) with [web] on a free loopback port:
    (process, web port)."""
    port = free_port()
    web = f'\n[web]\nlisten = "127.0.0.1:{port}"\n' + (f'token = "{token}"\n' if token else "") + extra
    cfg = write_config(
        tmp_path / "web.toml",
        f"tcp://127.0.0.1:{free_port()}",
        sources or [{"id": "cam0", "uri": str(CLIP), "loop": True}],
        extra=web,
        status_interval=1.0,
    )
    proc = start_daemon(cfg, env)
    try:
        wait_for(lambda: proc.poll() is not None or serving(port), 60, "the web port")
    except BaseException:
        stop_daemon(proc)
        raise
    assert proc.poll() is None, proc.communicate(timeout=10)[1]
    return proc, port


def state(port: int, token: str | None = None) -> dict:
    code, _, body = get(port, "/api/state", token)
    assert code == 200, body
    return json.loads(body)


def test_web_state_snapshot_stream_model_and_token(tmp_path, env):
    proc, port = web_daemon(tmp_path, env, token=TOKEN)
    try:
        first = wait_for(lambda: (s := state(port, TOKEN))["sources"][0]["predictions"] >= 3 and s, 90, "3 predictions")
        src = first["sources"][0]
        assert first["model"]["labels"] == LABELS and src["id"] == "cam0"
        assert all(p["label"] in LABELS + ["unknown", "idle"] for p in src["history"]) and src["history"]
        assert [p["label"] for p in src["history"]].count("golf") * 2 > len(src["history"]), src["history"]
        assert src["status"]["state"] == "running" and src["status"]["frames_in"] > 0
        assert set(src["status"]["skipped"]) <= {"gaps", "overload"} and first["outputs"]["web"]["connected"]
        # It advances: newer predictions with higher seq, the ring keeping the older ones.
        later = wait_for(
            lambda: (s := state(port, TOKEN))["sources"][0]["last"]["seq"] > src["last"]["seq"] + 1 and s,
            30,
            "predictions to advance",
        )["sources"][0]
        assert later["history"][0]["seq"] == src["history"][0]["seq"] and later["status"]["predictions"] >= 3
        since = json.loads(get(port, f"/api/state?since={src['last']['t']}", TOKEN)[2])["sources"][0]["history"]
        assert since and all(p["seq"] > src["last"]["seq"] for p in since)

        # The live view: none until asked for, then a real JPEG at most 320 wide, a few kB.
        def snapshot():
            code, headers, body = get(port, "/api/sources/cam0/snapshot.jpg", TOKEN)
            assert code in (200, 503), (code, body)
            return (headers, body) if code == 200 else None

        headers, jpeg = wait_for(snapshot, 10, "a snapshot")
        img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert headers["Content-Type"] == "image/jpeg" and img is not None and img.shape == (240, 320, 3)
        assert 2_000 < len(jpeg) < 60_000 and float(headers["X-Capture-Time"]) > time.time() - 10
        assert img.std() > 10  # a picture, not a blank frame
        assert get(port, "/api/sources/nope/snapshot.jpg", TOKEN)[0] == 404
        # Recording is off unless [record] enabled: its endpoints say so, the card has no button.
        code, _, body = get(port, "/api/clips", TOKEN)
        assert code == 404 and b"recording is off: set [record] enabled = true" in body
        assert src["record_max_s"] is None

        # The live stream: predictions as they are published.
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        conn.request("GET", f"/api/stream?token={TOKEN}")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.headers["Content-Type"] == "text/event-stream"
        seen: list[str] = []
        while "prediction" not in seen:
            line = resp.readline().decode()
            if line.startswith("event: "):
                seen.append(line[7:].strip())
            elif line.startswith("data: ") and seen[-1] == "prediction":
                p = json.loads(line[6:])
                assert p["source"] == "cam0" and p["label"] in LABELS + ["unknown", "idle"]
        conn.close()

        # At most VIEWERS_MAX live streams: one more is refused (503, counted), the state still served.
        from edgevid.web.state import VIEWERS_MAX

        wait_for(lambda: state(port, TOKEN)["web"]["viewers"] == 0, 5, "the closed stream to leave")
        streams = []
        for _ in range(VIEWERS_MAX):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
            c.request("GET", "/api/stream", headers={"Authorization": f"Bearer {TOKEN}"})
            assert c.getresponse().status == 200
            streams.append(c)
        code, headers, body = get(port, "/api/stream", TOKEN)
        assert code == 503 and b"poll /api/state" in body
        assert state(port, TOKEN)["web"]["refused"] == 1
        for c in streams:
            c.close()

        # Pages and the model: every asset is the package's own.
        code, headers, html = get(port, "/", TOKEN)
        assert code == 200 and b"/static/app.js" in html and "script-src 'self'" in headers["Content-Security-Policy"]
        assert not re.search(rb"(src|href)=\"(https?:)?//", html)
        for name in ("app.js", "common.js", "model.js", "style.css"):
            code, _, body = get(port, f"/static/{name}")  # the package's code: served without the token
            urls = set(re.findall(rb"https?://[^\s\"')]+", body)) - {
                b"http://www.w3.org/2000/svg"
            }  # a name, not a fetch
            assert code == 200 and not urls, (name, urls)
        model = json.loads(get(port, "/api/model", TOKEN)[2])
        assert model["labels"] == LABELS and model["manifest"]["timescale"]["window_s"] == 1.2
        assert model["manifest"]["metrics"]["top1"] > 0.4 and "top-1" in model["report"]
        if (HEAD_DIR / "confusion.png").is_file():
            code, headers, png = get(port, "/api/model/confusion.png", TOKEN)
            assert code == 200 and png[:8] == b"\x89PNG\r\n\x1a\n" and "confusion.png" in model["pictures"]

        # The token: refused without it or with a wrong one, on every page, API and snapshot.
        for path in ("/", "/model", "/api/state", "/api/model", "/api/stream", "/api/sources/cam0/snapshot.jpg"):
            code, headers, body = get(port, path)
            assert code == 401 and headers["WWW-Authenticate"].startswith("Bearer") and b"token" in body, path
            assert get(port, path, "wrong-token-0123456789abcdef")[0] == 401
        assert get(port, f"/api/state?token={TOKEN}")[0] == 200
        assert get(port, "/api/state?token=" + TOKEN[:-1])[0] == 401
    finally:
        code, err = stop_daemon(proc)
    assert code == 0, err
    assert "Traceback" not in err and "web page on http://127.0.0.1" in err, err


def test_web_shows_events_of_a_camera_like_pipe_source_a_still_one_as_idle_and_a_stalled_one(tmp_path, env):
    """The clip played as a camera would deliver it (ffmpeg paced and looping into a pipe source): one
    unbroken stream, so the golf swing becomes an event on the page, with a live view of the pipe;
    beside it a camera that sees a still picture (the clip's first frame), which the motion gate
    publishes as idle windows, counted on the page, and one that stalls."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not found on PATH (apt-get install ffmpeg)")
    still = tmp_path / "still.png"
    cap = cv2.VideoCapture(str(CLIP))
    assert cap.read()[0] and cv2.imwrite(str(still), cap.read()[1])
    cap.release()
    ffmpeg = "ffmpeg -hide_banner -nostdin -loglevel error -re"
    out = "-an -f rawvideo -pix_fmt bgr24 -"
    pipe = {"kind": "pipe", "pixel_format": "bgr24", "width": 320, "height": 240, "fps": 30}
    sources = [
        {"id": "cam0", "uri": f"{ffmpeg} -stream_loop -1 -i {shlex.quote(str(CLIP))} {out}", **pipe},
        {"id": "hall", "uri": f"{ffmpeg} -loop 1 -framerate 30 -i {shlex.quote(str(still))} {out}", **pipe},
        {"id": "dead", "uri": "sleep 600", **pipe, "stall_timeout": 1.0},  # a camera that never sends a frame
    ]
    proc, port = web_daemon(tmp_path, env, sources=sources)
    try:
        got = wait_for(
            lambda: [e for e in state(port)["sources"][0]["events"] if e["phase"] == "start"], 60, "an event"
        )
        assert got[0]["label"] == "golf" and got[0]["best_score"] > 0.5, got
        hall = wait_for(
            lambda: (h := state(port)["sources"][1])["last"] and h["last"]["label"] == "idle" and h, 60, "idle"
        )
        assert hall["last"]["top"] == [] and hall["status"]["motion"] is False and hall["status"]["idle_windows"] > 0
        # The stalled one: reconnecting, with its reason; the page goes on serving the others.
        dead = wait_for(lambda: (d := state(port)["sources"][2])["status"]["reconnects"] > 0 and d, 30, "a reconnect")
        assert "stalled" in dead["status"]["last_error"] and dead["last"] is None
        assert get(port, "/api/sources/dead/snapshot.jpg")[0] == 503
        headers, jpeg = wait_for(
            lambda: (r := get(port, "/api/sources/cam0/snapshot.jpg"))[0] == 200 and r[1:], 10, "a snapshot"
        )
        assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (240, 320, 3)
        assert state(port)["sources"][0]["status"]["state"] == "running"
        # Without a token only requests to a loopback host are served (no DNS-rebinding reads).
        assert get(port, "/api/state", host=f"evil.example:{port}")[0] == 401
        assert get(port, "/api/state", host=f"localhost:{port}")[0] == 200
    finally:
        code, err = stop_daemon(proc)
    assert code == 0, err


def test_web_config_errors_are_one_line(tmp_path, env):
    endpoint = f"tcp://127.0.0.1:{free_port()}"

    def check(web: str, *cmd: str, extra_env: dict | None = None) -> subprocess.CompletedProcess:
        cfg = write_config(tmp_path / "w.toml", endpoint, [{"id": "cam0", "uri": str(CLIP)}], extra=f"\n[web]\n{web}")
        return run_cli(*(cmd or ("config", "check")), str(cfg), env={**env, **(extra_env or {})}, timeout=120)

    proc = check('listen = "0.0.0.0:8090"')
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "web.token: required when web.listen (0.0.0.0:8090) is not a loopback address" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    proc = check('listen = "0.0.0.0:8090"\ntoken = "short"')
    assert proc.returncode == 2 and "web.token" in proc.stderr and "16 characters" in proc.stderr
    proc = check("snapshot_fps = 60")
    assert proc.returncode == 2 and "web.snapshot_fps" in proc.stderr
    # The port taken: one line before serving, exit 2.
    with socket_bound() as port:
        proc = check(f'listen = "127.0.0.1:{port}"', "run", "--config")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert f"web.listen: cannot listen on 127.0.0.1:{port}" in proc.stderr
    # aiohttp absent: a package of that name that fails to import stands in for a device without it.
    fake = tmp_path / "nolib" / "aiohttp"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('not installed')\n")
    proc = check(f'listen = "127.0.0.1:{free_port()}"', extra_env={"PYTHONPATH": str(fake.parent)})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "aiohttp is not installed: pip install 'edgevid[web]'" in proc.stderr


class socket_bound:
    """A loopback port held by another listener for the duration."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        return self.sock.getsockname()[1]

    def __exit__(self, *exc) -> None:
        self.sock.close()


class Chromium:
    """Debian's headless Chromium driven over the DevTools protocol (aiohttp's websocket client)."""

    def __init__(self, url: str) -> None:
        self.profile = tempfile.mkdtemp(prefix="edgevid-chromium-")
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"]
            + ["--remote-debugging-port=0", f"--user-data-dir={self.profile}", "--window-size=1100,1000", url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.port = None
        for line in self.proc.stderr:  # it says where DevTools listens first thing
            if m := re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line):
                self.port = int(m.group(1))
                break
        assert self.port, "chromium did not start DevTools"
        self.n = 0

    async def open(self) -> None:
        import aiohttp

        self.session = aiohttp.ClientSession()
        for _ in range(100):
            async with self.session.get(f"http://127.0.0.1:{self.port}/json/list") as r:
                pages = [t for t in await r.json() if t["type"] == "page"]
            if pages:
                break
            await asyncio.sleep(0.1)
        self.ws = await self.session.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)

    async def call(self, method: str, **params):
        self.n += 1
        await self.ws.send_json({"id": self.n, "method": method, "params": params})
        while (msg := await asyncio.wait_for(self.ws.receive_json(), 30)).get("id") != self.n:
            pass
        assert "error" not in msg, msg
        return msg["result"]

    async def js(self, expression: str):
        return (await self.call("Runtime.evaluate", expression=expression, returnByValue=True))["result"].get("value")

    async def click(self, selector: str) -> None:
        """Click the element ``selector`` names, as a user would (it must be there)."""
        found = await self.js(f"(e => e ? (e.click(), true) : false)(document.querySelector({json.dumps(selector)}))")
        assert found, f"the page has no {selector}"

    async def until(self, expression: str, timeout: float, what: str):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if got := await self.js(expression):
                return got
            await asyncio.sleep(0.25)
        raise AssertionError(f"the page did not show {what} within {timeout:g} s")

    async def close(self) -> None:
        await self.ws.close()
        await self.session.close()

    def kill(self) -> None:
        from tools.probe import kill_group

        kill_group(self.proc)
        shutil.rmtree(self.profile, ignore_errors=True)


PAGE_STATE = """JSON.stringify((() => {
  const card = document.querySelector('#source-cam0');
  if (!card) return null;
  const tl = card.querySelector('.timeline');
  return {label: card.querySelector('.label').textContent, state: card.querySelector('.state').textContent,
          points: +tl.dataset.points, seq: +tl.dataset.lastSeq,
          lines: [...tl.querySelectorAll('path[data-label]')].map(p => p.dataset.label + ' ' + p.getAttribute('d')),
          live: card.querySelector('.snapshot').naturalWidth, counters: card.querySelector('.counters').textContent};
})())"""


@pytest.mark.slow
def test_browser_sees_the_label_and_the_timeline_change(tmp_path, env):
    if CHROMIUM is None:
        pytest.skip("chromium not installed (apt-get install chromium): the browser test needs it")
    proc, port = web_daemon(tmp_path, env, token=TOKEN)  # the page passes the token on to every request
    browser = None
    try:
        wait_for(lambda: state(port, TOKEN)["sources"][0]["predictions"] >= 2, 90, "2 predictions")
        browser = Chromium(f"http://127.0.0.1:{port}/?token={TOKEN}")

        async def drive() -> tuple[dict, dict, dict]:
            await browser.open()
            try:
                first = json.loads(
                    await browser.until(f"(s => s && JSON.parse(s).points > 1 && s)({PAGE_STATE})", 30, "a timeline")
                )
                advanced = f"JSON.parse(s).seq >= {first['seq'] + 2} && JSON.parse(s).live > 0"
                later = json.loads(
                    await browser.until(
                        f"(s => s && {advanced} && s)({PAGE_STATE})",
                        30,
                        "the timeline advance and the live view",
                    )
                )
                shot = await browser.call("Page.captureScreenshot", format="png")
                (tmp_path / "page.png").write_bytes(base64.b64decode(shot["data"]))
                if os.environ.get(
                    "EDGEVID_WEB_SCREENSHOT"
                ):  # README's picture: EDGEVID_WEB_SCREENSHOT=docs/web-page.png
                    Path(os.environ["EDGEVID_WEB_SCREENSHOT"]).write_bytes(base64.b64decode(shot["data"]))
                await browser.js(
                    "document.querySelector('nav a[href^=\"/model\"]').click()"
                )  # the link keeps the token
                model = json.loads(
                    await browser.until(
                        "(() => { const n = document.querySelectorAll('#labels li').length;"
                        " const img = document.querySelector('#pictures img');"
                        " return n && JSON.stringify({labels: n, name: document.querySelector('#name').textContent,"
                        " picture: img ? img.naturalWidth : -1}); })()",
                        20,
                        "the model page",
                    )
                )
                return first, later, model
            finally:
                await browser.close()

        first, later, model = asyncio.run(drive())
    finally:
        if browser is not None:
            browser.kill()
        code, err = stop_daemon(proc)
    assert code == 0, err
    assert first["label"] in LABELS and later["label"] in LABELS and later["state"] == "running"
    assert later["points"] > first["points"] and later["lines"] != first["lines"]
    assert any(line.startswith("golf ") for line in later["lines"]) and "windows published" in later["counters"]
    assert later["live"] == 320
    assert model["labels"] == len(LABELS) and model["name"] == "jhmdb-split1-stats_m_x5"
    if (HEAD_DIR / "confusion.png").is_file():
        assert model["picture"] > 0
