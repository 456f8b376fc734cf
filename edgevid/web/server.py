"""The web page as a daemon output: an aiohttp server on the daemon's own event loop.

Imported only when ``[web] listen`` is set (aiohttp is the ``web`` extra). The listening socket is
bound synchronously when the output opens, so a port in use is a one-line error before READY; the
app starts as a task on the running loop and is cleaned up by :meth:`WebOutput.wait_closed`.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import socket
import time
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from ..errors import ConfigError
from ..messages import OutputStatus
from .state import WebState

if TYPE_CHECKING:
    from aiohttp import web

    from ..config import WebConfig
    from ..outputs import Context

log = logging.getLogger("edgevid.web")

#: Files served under /static/ (the package's own; nothing else is readable).
STATIC = {
    "app.js": "text/javascript",
    "model.js": "text/javascript",
    "common.js": "text/javascript",
    "clips.js": "text/javascript",
    "style.css": "text/css",
}
PAGES = {"/": "index.html", "/model": "model.html", "/clips": "clips.html"}
#: Files of the head's folder the model page may show, if the head ships them.
HEAD_PICTURES = ("confusion.png",)
REPORT_MAX = 256 * 1024  # bytes of the head's report shown on the model page
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # a ?token= in the URL never leaves in a Referer
    "X-Frame-Options": "DENY",
}
UNAUTHORIZED = "edgevid: 401 unauthorized: send the web token as 'Authorization: Bearer <token>' or ?token=<token>\n"
NOT_JSON = "edgevid: 415: a POST sends its body as Content-Type: application/json\n"
NOT_LOOPBACK = "edgevid: 401: without a web.token only requests to a loopback host name are served\n"


def require_aiohttp():
    """aiohttp, or a one-line ConfigError saying how to install it."""
    try:
        import aiohttp.web
    except ImportError:
        raise ConfigError("web.listen is set but aiohttp is not installed: pip install 'edgevid[web]'") from None
    return aiohttp.web


def bind(listen: str) -> socket.socket:
    """The listening socket for ``host:port`` (errors: one ConfigError naming web.listen)."""
    from ..outputs.metrics import parse_listen

    host, port = parse_listen(listen)
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(addr)
            sock.listen(64)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
    except OSError as exc:
        raise ConfigError(f"web.listen: cannot listen on {listen}: {exc.strerror or exc}") from None
    return sock


def host_is_loopback(host_header: str) -> bool:
    """Whether a Host header names this machine: without a token only such requests are served, so
    a web site that rebinds its DNS name to 127.0.0.1 cannot read the page from a browser here."""
    host = host_header.strip().lower()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host
    elif host.count(":") == 1:
        host = host.split(":")[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # any other name may point anywhere


def asset(name: str) -> bytes:
    return resources.files("edgevid.web").joinpath("static", name).read_bytes()


class WebOutput:
    """Serves the page, the JSON API, the live stream and the snapshots; keeps the page's state."""

    name = "web"

    def __init__(self, cfg: "WebConfig", ctx: "Context") -> None:
        self.web = require_aiohttp()
        self.cfg, self.ctx = cfg, ctx
        self.token = cfg.token.encode() if cfg.token else None
        self.state = WebState(dict(ctx.hop_s), cfg.history_s)
        self.snapshots = ctx.snapshots
        self.last_error: str | None = None
        self.serving = False
        self.runner: "web.AppRunner | None" = None
        self._sock = bind(cfg.listen)
        self._task = asyncio.get_running_loop().create_task(self._start())
        log.info("web page on http://%s/%s", cfg.listen, "" if self.token is None else " (token required)")

    # -- as an output ---------------------------------------------------------------------------
    def send(self, topic: str, message) -> None:
        self.state.message(topic, message)

    def status(self) -> OutputStatus:
        s = self.state
        return OutputStatus(
            connected=self.serving,
            sent=s.sent,
            dropped=s.dropped,
            queued=s.queued,
            reconnects=0,
            last_error=self.last_error,
        )

    def close(self) -> None:
        """End the live streams; the server itself stops in :meth:`wait_closed` (on the loop)."""
        self.state.close()

    async def wait_closed(self) -> None:
        """Stop serving: open requests get a second, then their connections are closed."""
        if not self._task.done():
            self._task.cancel()
        try:
            await self._task
        except (asyncio.CancelledError, Exception):
            pass
        if self.runner is not None:
            try:
                await asyncio.wait_for(self.runner.cleanup(), 3.0)
            except (asyncio.TimeoutError, OSError) as exc:
                log.warning("web: stopping: %s", exc or "timed out")
        self._sock.close()
        self.serving = False

    # -- the server --------------------------------------------------------------------------------
    async def _start(self) -> None:
        web = self.web
        app = web.Application(middlewares=[self._guard], client_max_size=4096)
        app.router.add_get("/", self._page)
        app.router.add_get("/model", self._page)
        app.router.add_get("/clips", self._page)
        app.router.add_get("/static/{name}", self._static)
        app.router.add_get("/api/state", self._api_state)
        app.router.add_get("/api/model", self._api_model)
        app.router.add_get("/api/model/{name}", self._head_picture)
        app.router.add_get("/api/stream", self._stream)
        app.router.add_get("/api/sources/{sid}/snapshot.jpg", self._snapshot)
        app.router.add_post("/api/sources/{sid}/record", self._record)
        app.router.add_get("/api/clips", self._clips)
        app.router.add_get("/api/clips/{name}/video", self._clip_video)
        app.router.add_post("/api/clips/{name}/label", self._clip_label)
        app.router.add_post("/api/clips/{name}/discard", self._clip_discard)
        # handler_cancellation: a viewer that closes its live stream frees its place at once, not at
        # the next message written to it (which a stalled source may not send for a while).
        self.runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=1.0, handler_cancellation=True
        )
        try:
            await self.runner.setup()
            await web.SockSite(self.runner, self._sock).start()
        except Exception as exc:  # the daemon goes on without its page; its status says why
            self.last_error = f"cannot serve: {exc}"
            log.error("web: %s", self.last_error)
            return
        self.serving = True

    def _authorized(self, request: "web.Request") -> bool:
        """A token (Authorization: Bearer, or ?token=) when one is configured, compared in constant
        time; without one, only requests addressed to a loopback host."""
        if self.token is None:
            return host_is_loopback(request.host)
        given = request.headers.get("Authorization", "")
        given = given[7:].strip() if given[:7].lower() == "bearer " else request.query.get("token", "")
        return hmac.compare_digest(given.encode("utf-8", "replace"), self.token)

    async def _guard(self, request: "web.Request", handler: Callable[..., Awaitable]) -> "web.StreamResponse":
        """Every request: the token (static assets are the package's code, served to anyone), and
        the same security headers on every answer."""
        web = self.web
        if not request.path.startswith("/static/") and not self._authorized(request):
            response: web.StreamResponse = web.Response(
                status=401,
                text=UNAUTHORIZED if self.token is not None else NOT_LOOPBACK,
                headers={"WWW-Authenticate": 'Bearer realm="edgevid"'} if self.token is not None else {},
            )
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:  # 404, 400: as a plain answer with the same headers
                response = web.Response(status=exc.status, text=exc.text, headers={"Content-Type": "text/plain"})
        if not response.prepared:  # a live stream sent its own headers when it started
            for key, value in SECURITY_HEADERS.items():
                response.headers.setdefault(key, value)
            if not request.path.startswith("/static/"):
                response.headers.setdefault("Cache-Control", "no-store")
        return response

    _guard.__middleware_version__ = 1  # aiohttp's new-style middleware, without importing it at class time

    async def _page(self, request: "web.Request") -> "web.Response":
        return self.web.Response(body=asset(PAGES[request.path]), content_type="text/html", charset="utf-8")

    async def _static(self, request: "web.Request") -> "web.Response":
        name = request.match_info["name"]
        if name not in STATIC:
            raise self.web.HTTPNotFound(text="no such file\n")
        return self.web.Response(
            body=asset(name), content_type=STATIC[name], charset="utf-8", headers={"Cache-Control": "max-age=60"}
        )

    def _json(self, data: Any) -> "web.Response":
        return self.web.Response(text=json.dumps(data, separators=(",", ":")), content_type="application/json")

    async def _api_state(self, request: "web.Request") -> "web.Response":
        """Status (read now, as a metrics scrape does) with each source's recent past."""
        since = request.query.get("since")
        try:
            since_t = float(since) if since is not None else None
        except ValueError:
            raise self.web.HTTPBadRequest(text="since: expected unix seconds\n") from None
        st = self.ctx.status()
        by_id = {s.id: s.model_dump(mode="json") for s in st.sources}
        sources = []
        for sid in self.state.sources:
            item = self.state.source_json(sid, since_t)
            item["status"] = by_id.get(sid)
            item["min_score"] = self.ctx.min_score.get(sid)
            item["snapshot"] = sid in self.snapshots
            rec = self.ctx.recorder
            item["record_max_s"] = rec.cfg.max_s if rec is not None and sid in rec.rings else None  # None: off
            sources.append(item)
        return self._json(
            {
                "model": {"name": self.ctx.model, "labels": self.ctx.labels},
                "uptime_s": st.uptime_s,
                "overloaded": st.overloaded,
                "overload": st.overload,
                "extract_ms_per_frame": st.extract_ms_per_frame,
                "outputs": {k: v.model_dump(mode="json") for k, v in st.outputs.items()},
                "snapshot_fps": self.cfg.snapshot_fps,
                "history_s": self.cfg.history_s,
                "now": round(time.time(), 3),
                "sources": sources,
                "web": self.state.web_json(),
            }
        )

    async def _api_model(self, request: "web.Request") -> "web.Response":
        """What the head ships: its manifest (labels, window, metrics, calibration) and report."""
        folder = self.ctx.head_dir
        manifest = self.ctx.manifest
        report = None
        if folder is not None and manifest is not None and manifest.get("report"):
            path = Path(folder) / Path(manifest["report"]).name
            try:
                with open(path, "rb") as f:
                    report = f.read(REPORT_MAX).decode("utf-8", "replace")
            except OSError:
                report = None
        pictures = [n for n in HEAD_PICTURES if folder is not None and (Path(folder) / n).is_file()]
        return self._json(
            {
                "name": self.ctx.model,
                "labels": self.ctx.labels,
                "manifest": manifest,
                "report": report,
                "pictures": pictures,
            }
        )

    async def _head_picture(self, request: "web.Request") -> "web.Response":
        name = request.match_info["name"]
        folder = self.ctx.head_dir
        if name not in HEAD_PICTURES or folder is None or not (Path(folder) / name).is_file():
            raise self.web.HTTPNotFound(text="the head ships no such picture\n")
        return self.web.Response(body=(Path(folder) / name).read_bytes(), content_type="image/png")

    async def _snapshot(self, request: "web.Request") -> "web.Response":
        """The source's latest JPEG (at most snapshot_fps, made only while someone asks)."""
        slot = self.snapshots.get(request.match_info["sid"])
        if slot is None:
            raise self.web.HTTPNotFound(text="no such source\n")
        got = slot.take()
        if got is None:
            return self.web.Response(
                status=503, text="no snapshot yet: one is made within a second\n", headers={"Retry-After": "1"}
            )
        jpeg, wall = got
        return self.web.Response(
            body=jpeg, content_type="image/jpeg", headers={"X-Capture-Time": f"{wall:.3f}", "Cache-Control": "no-store"}
        )

    # -- recording and labelling (edgevid.record) ---------------------------------------------------
    def _recorder(self):
        rec = self.ctx.recorder
        if rec is None:
            raise self.web.HTTPNotFound(text="recording is off: set [record] enabled = true\n")
        return rec

    async def _post_json(self, request: "web.Request") -> dict:
        """A POST's JSON object. Only application/json is taken: a page elsewhere cannot send that to
        this origin without a CORS preflight, which is never answered (no cross-site requests)."""
        if request.content_type != "application/json":
            raise self.web.HTTPUnsupportedMediaType(text=NOT_JSON)
        try:
            body = await request.json()
        except ValueError:
            raise self.web.HTTPBadRequest(text="body: expected a JSON object\n") from None
        if not isinstance(body, dict):
            raise self.web.HTTPBadRequest(text="body: expected a JSON object\n")
        return body

    def _clip_error(self, exc: Exception) -> "web.Response":
        status = getattr(exc, "status", 400)
        return self.web.Response(status=status, text=f"{exc}\n", headers={"Content-Type": "text/plain"})

    async def _record(self, request: "web.Request") -> "web.Response":
        """Record the next ``seconds`` of a source (the page's button, ``edgevid record``)."""
        from ..record import ClipError

        rec = self._recorder()
        body = await self._post_json(request)
        seconds, label = body.get("seconds", 5.0), body.get("label")
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
            return self._clip_error(ClipError("seconds: expected a number"))
        if label is not None and not isinstance(label, str):
            return self._clip_error(ClipError("label: expected a string"))
        try:
            return self._json(rec.request(request.match_info["sid"], float(seconds), label or None))
        except ClipError as exc:
            return self._clip_error(exc)

    async def _clips(self, request: "web.Request") -> "web.Response":
        """The clips waiting for a label, the labels to offer (the head's and the dataset's), counters."""
        from ..record import list_clips

        rec = self._recorder()
        dataset = rec.cfg.dataset_dir()
        clips = await asyncio.to_thread(list_clips, rec.cfg.dir)
        known = await asyncio.to_thread(
            lambda: sorted(p.name for p in dataset.iterdir() if p.is_dir()) if dataset.is_dir() else []
        )
        return self._json(
            {
                "sources": list(rec.rings),
                "labels": self.ctx.labels,
                "dataset_labels": [n for n in known if not n.startswith(".")],
                "dataset": str(dataset),
                "max_s": rec.cfg.max_s,
                "clips": clips,
                "stats": rec.stats_json(),
            }
        )

    async def _clip_video(self, request: "web.Request") -> "web.StreamResponse":
        from ..record import ClipError, clip_path

        try:
            path = clip_path(self._recorder().cfg.dir, request.match_info["name"])
        except ClipError as exc:
            return self._clip_error(exc)
        return self.web.FileResponse(path, headers={"Content-Type": "video/mp4", "Cache-Control": "no-store"})

    async def _clip_label(self, request: "web.Request") -> "web.Response":
        """Move a clip into ``<dataset>/<label>/`` (the layout tools.experiment --dataset folders reads)."""
        from ..record import ClipError, assign

        rec = self._recorder()
        label = (await self._post_json(request)).get("label")
        if not isinstance(label, str):
            return self._clip_error(ClipError("label: expected a string"))
        name = request.match_info["name"]
        try:
            path = await asyncio.to_thread(assign, rec.cfg.dir, rec.cfg.dataset_dir(), name, label)
        except ClipError as exc:
            return self._clip_error(exc)
        except OSError as exc:
            return self._clip_error(ClipError(f"label: cannot move {name}: {exc.strerror or exc}", 500))
        log.info("record: %s labelled %s", name, label)
        return self._json({"clip": name, "label": label, "path": str(path)})

    async def _clip_discard(self, request: "web.Request") -> "web.Response":
        from ..record import ClipError, discard

        rec = self._recorder()
        await self._post_json(request)
        name = request.match_info["name"]
        try:
            await asyncio.to_thread(discard, rec.cfg.dir, name)
        except ClipError as exc:
            return self._clip_error(exc)
        log.info("record: %s discarded", name)
        return self._json({"clip": name, "discarded": True})

    async def _stream(self, request: "web.Request") -> "web.StreamResponse":
        """Server-sent events: every prediction, event and status as it is published."""
        web = self.web
        viewer = self.state.join()
        if viewer is None:
            return web.Response(
                status=503,
                text=f"edgevid: {len(self.state.viewers)} live viewers already; poll /api/state instead\n",
                headers={"Retry-After": "10"},
            )
        try:
            response = web.StreamResponse(
                headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
            )
            for key, value in SECURITY_HEADERS.items():
                response.headers[key] = value
            await response.prepare(request)
            await response.write(b"retry: 2000\n\n")
            while (frame := await viewer.queue.get()) is not None:
                await response.write(frame)
            return response
        except ConnectionResetError:  # the viewer went away: found at the next write
            return response
        finally:
            self.state.leave(viewer)
