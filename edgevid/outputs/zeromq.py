"""ZeroMQ PUB: multipart ``[topic, json]``; a slow or absent subscriber never blocks the daemon."""

from __future__ import annotations

import logging
from pathlib import Path

import zmq
from pydantic import BaseModel

from ..config import PublishConfig
from ..errors import ConfigError
from ..messages import OutputStatus

log = logging.getLogger("edgevid.outputs.zeromq")


class Publisher:
    """A bound PUB socket; with CURVE keys configured, only authorized clients receive anything.
    The daemon's primary output. It never waits: a subscriber that reads too slowly loses messages
    once ``send_hwm`` are queued for it, and ZeroMQ does not tell the sender, so ``dropped`` is
    reported as unknown; subscribers see the gap in each message's ``seq``."""

    name = "zmq"

    def __init__(self, cfg: PublishConfig, context: zmq.Context | None = None) -> None:
        self.context = context or zmq.Context.instance()
        self.socket = self.context.socket(zmq.PUB)
        self.socket.setsockopt(zmq.SNDHWM, cfg.send_hwm)
        self.socket.setsockopt(zmq.LINGER, 500)
        self.auth = None
        self.sent = 0
        if cfg.curve_secret_key is not None:
            self._enable_curve(cfg.curve_secret_key, cfg.curve_authorized_keys)
        try:
            self.socket.bind(cfg.endpoint)
        except zmq.ZMQError as exc:
            self.close()
            raise ConfigError(f"publish.endpoint: cannot bind {cfg.endpoint}: {exc}") from None

    def _enable_curve(self, secret_file: Path, authorized: Path | None) -> None:
        import zmq.auth
        from zmq.auth.thread import ThreadAuthenticator

        try:
            public, secret = zmq.auth.load_certificate(str(secret_file))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"publish.curve_secret_key: cannot load {secret_file}: {exc}") from None
        if secret is None:
            raise ConfigError(f"publish.curve_secret_key: {secret_file} holds no secret key")
        if authorized is None or not Path(authorized).is_dir():
            raise ConfigError(f"publish.curve_authorized_keys: {authorized} is not a folder of public keys")
        self.auth = ThreadAuthenticator(self.context)
        self.auth.start()
        self.auth.configure_curve(domain="*", location=str(authorized))
        self.socket.curve_secretkey = secret
        self.socket.curve_publickey = public
        self.socket.curve_server = True

    def send(self, topic: str, message: BaseModel) -> None:
        try:
            self.socket.send_multipart([topic.encode(), message.model_dump_json().encode()], flags=zmq.NOBLOCK)
            self.sent += 1
        except zmq.Again:  # PUB drops instead of raising this; kept so a libzmq that does cannot stop the loop
            pass

    def status(self) -> OutputStatus:
        """A bound socket is always up; subscribers come and go without reconnects of ours."""
        return OutputStatus(connected=True, sent=self.sent, dropped=None, queued=0, reconnects=0)

    def close(self) -> None:
        self.socket.close()
        if self.auth is not None:
            self.auth.stop()
