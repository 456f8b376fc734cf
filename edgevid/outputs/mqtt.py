"""Optional MQTT output (``[mqtt]``, needs the ``mqtt`` extra: paho-mqtt): the daemon's messages on
``<prefix>/<source>/...``, availability with a last will, and Home Assistant discovery.

ZeroMQ stays the primary bus. Nothing here blocks the daemon: :meth:`MqttOutput.send` puts the
message in a bounded queue (full: dropped and counted in status); one sender thread hands queued
messages to paho while connected, at most ``INFLIGHT`` of them not yet taken by the broker (QoS 0:
written to the socket, QoS 1: acknowledged), so a broker that stops reading cannot grow paho's own
queue without bound; paho's network thread reconnects with backoff (``reconnect_min`` to
``reconnect_max`` seconds). A message that waits ``ack_timeout`` seconds for the broker means the
broker stopped taking messages (hung, or a half-open connection): status reports it as not
connected, with that reason, until it takes them again. ``sent`` counts messages the broker took,
``queued`` those held (in the queue and in flight), ``dropped`` those refused or lost with a
connection.

Topics (QoS, retain):

- ``<prefix>/availability``: ``online`` / ``offline`` (1, retained; ``offline`` is the last will);
- ``<prefix>/<source>/prediction``: every prediction (0, not retained: a firehose);
- ``<prefix>/<source>/event``: start / update / end (1, not retained);
- ``<prefix>/<source>/state``: the current event as JSON, ``{"action": label|"none", ...}`` (1, retained);
- ``<prefix>/<source>/motion``: ``ON`` / ``OFF``, on each change of the motion gate (``OFF``: the
  source publishes ``idle``) (1, retained);
- ``<prefix>/status``: the heartbeat (1, retained: its acknowledgement tells a hung broker apart);
- ``<prefix>/<source>/status``: each source's part of it (0, retained);
- ``<discovery_prefix>/sensor|binary_sensor/...config``: Home Assistant discovery (1, retained).
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import socket
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

from pydantic import BaseModel

from ..errors import ConfigError
from ..messages import IDLE, Event, OutputStatus, Prediction, Status

if TYPE_CHECKING:
    from ..config import MqttConfig

log = logging.getLogger("edgevid.outputs.mqtt")


def discovery(
    cfg: "MqttConfig", sources: list[str], labels: list[str], model: str, version: str, gated: list[str] = []
) -> list[tuple[str, dict]]:
    """Home Assistant discovery messages: per source a sensor (current action), a binary sensor
    per label of interest and, for a source with a motion gate, a motion binary sensor, grouped
    into one device per source; all go unavailable with the daemon."""
    p = cfg.topic_prefix
    out = []
    for sid in sources:
        node = f"edgevid_{sid}".replace(".", "_").replace("-", "_")
        device = {
            "identifiers": [node],
            "name": f"edgevid {sid}",
            "manufacturer": "edgevid",
            "model": model,
            "sw_version": version,
        }
        common = {
            "availability_topic": f"{p}/availability",
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": device,
            "state_topic": f"{p}/{sid}/state",
            "json_attributes_topic": f"{p}/{sid}/state",
        }
        out.append(
            (
                f"{cfg.discovery_prefix}/sensor/{node}/action/config",
                {
                    **common,
                    "name": "action",
                    "unique_id": f"{node}_action",
                    "object_id": f"{node}_action",
                    "value_template": "{{ value_json.action }}",
                    "icon": "mdi:run",
                },
            )
        )
        for label in cfg.binary_sensors:
            out.append(
                (
                    f"{cfg.discovery_prefix}/binary_sensor/{node}/{label}/config",
                    {
                        **common,
                        "name": label.replace("_", " "),
                        "unique_id": f"{node}_{label}",
                        "object_id": f"{node}_{label}",
                        "value_template": "{{ 'ON' if value_json.action == '%s' else 'OFF' }}" % label,
                        "payload_on": "ON",
                        "payload_off": "OFF",
                    },
                )
            )
        if sid in gated:
            motion = {k: v for k, v in common.items() if k != "json_attributes_topic"}
            out.append(
                (
                    f"{cfg.discovery_prefix}/binary_sensor/{node}/motion/config",
                    {
                        **motion,
                        "state_topic": f"{p}/{sid}/motion",
                        "name": "motion",
                        "unique_id": f"{node}_motion",
                        "object_id": f"{node}_motion",
                        "device_class": "motion",
                        "payload_on": "ON",
                        "payload_off": "OFF",
                    },
                )
            )
    return out


def check(cfg: "MqttConfig", labels: list[str]):
    """The paho client module, after checking what can be checked before connecting (one-line
    ConfigErrors): paho-mqtt installed, binary sensors for labels the head has."""
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        raise ConfigError("mqtt is configured but paho-mqtt is not installed: pip install 'edgevid[mqtt]'") from None
    unknown = [lab for lab in cfg.binary_sensors if lab not in labels]
    if unknown:
        raise ConfigError(f"mqtt.binary_sensors: {unknown} are not labels of the head (it knows {', '.join(labels)})")
    return mqtt


INFLIGHT = 100  # messages handed to paho and not yet taken by the broker, at most


class Inflight:
    """Messages handed to paho and not yet taken by the broker, oldest first, with the rule that
    says a broker stopped taking them. Each entry is paho's ``MQTTMessageInfo``: published once
    written to the socket (QoS 0) or acknowledged (QoS 1); an ``rc`` other than success means paho
    lost it (QoS 0 packets are dropped when the connection is). Clock readings come from the caller."""

    def __init__(self, limit: int, ack_timeout: float) -> None:
        self.limit = limit
        self.ack_timeout = ack_timeout
        self._pending: deque = deque()  # (info, handed at)
        self._since = 0.0  # waiting counts from here at the earliest (the last (re)connection)

    def __len__(self) -> int:
        return len(self._pending)

    def full(self) -> bool:
        return len(self._pending) >= self.limit

    def add(self, info, now: float) -> None:
        self._pending.append((info, now))

    def restart(self, now: float) -> None:
        """A (re)connection: what is still pending waits afresh (paho sends QoS 1 again)."""
        self._since = now

    def sweep(self) -> tuple[int, int]:
        """Forget what the broker took or paho lost: (taken, lost)."""
        taken = lost = 0
        keep: deque = deque()
        for info, at in self._pending:
            outcome = _outcome(info)
            if outcome == "taken":
                taken += 1
            elif outcome == "lost":
                lost += 1
            else:
                keep.append((info, at))
        self._pending = keep
        return taken, lost

    def waited(self, now: float) -> float:
        """How long the oldest pending message has waited for the broker (0: none pending)."""
        if not self._pending:
            return 0.0
        return max(0.0, now - max(self._pending[0][1], self._since))

    def stalled(self, now: float) -> bool:
        return bool(self._pending) and self.waited(now) >= self.ack_timeout


def _outcome(info) -> str:
    """paho's view of one message: "taken" by the broker, "lost", or still "pending"."""
    from paho.mqtt.client import MQTTErrorCode

    if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_AGAIN):
        return "lost"
    try:
        return "taken" if info.is_published() else "pending"
    except (ValueError, RuntimeError):  # paho marked it lost just now
        return "lost"


def client_id(cfg: "MqttConfig") -> str:
    """The configured client id, else one from the host name and prefix (a digest when that would be long)."""
    if cfg.client_id:
        return cfg.client_id
    cid = f"edgevid-{socket.gethostname()}-{cfg.topic_prefix}".replace("/", "_")
    if len(cid.encode()) > 64:
        cid = "edgevid-" + hashlib.sha256(cid.encode()).hexdigest()[:32]
    return cid


def make_client(mqtt, cfg: "MqttConfig", availability: str):
    """A paho client set up from config: id, last will (``offline``), credentials, TLS, backoff,
    paho's own queue bounded as edgevid's."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id(cfg))
    c.suppress_exceptions = True  # an exception in a callback must not end paho's network thread
    c.will_set(availability, "offline", qos=1, retain=True)
    if cfg.username is not None:
        c.username_pw_set(cfg.username, cfg.password)
    if cfg.tls_ca is not None:
        try:
            c.tls_set(ca_certs=str(cfg.tls_ca))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"mqtt.tls_ca: cannot use {cfg.tls_ca}: {exc}") from None
    c.reconnect_delay_set(min_delay=max(1, round(cfg.reconnect_min)), max_delay=max(1, round(cfg.reconnect_max)))
    c.max_queued_messages_set(cfg.queue)
    return c


def translate(
    prefix: str, topic: str, message: BaseModel, state: dict[str, dict], motion: dict[str, str] | None = None
) -> list[tuple[str, str, int, bool]]:
    """A daemon message as MQTT publishes ``(topic, payload, qos, retain)``; an event also updates
    its source's retained ``state``, a prediction that changes a gated source's ``motion`` (idle or
    not) its retained motion state (both sent again on every reconnect)."""
    p = prefix
    if isinstance(message, Prediction):
        out = [(f"{p}/{message.source}/prediction", message.model_dump_json(), 0, False)]
        if motion is not None and message.source in motion:
            now = "OFF" if message.label == IDLE else "ON"
            if motion[message.source] != now:
                motion[message.source] = now
                out.append((f"{p}/{message.source}/motion", now, 1, True))
        return out
    if isinstance(message, Event):
        state[message.source] = {
            "action": message.label if message.phase != "end" else "none",
            "event_id": message.id,
            "phase": message.phase,
            "score": message.score,
            "best_score": message.best_score,
            "started_at": message.started_at,
            "duration_s": message.duration_s,
        }
        return [
            (f"{p}/{message.source}/event", message.model_dump_json(), 1, False),
            (f"{p}/{message.source}/state", json.dumps(state[message.source]), 1, True),
        ]
    if isinstance(message, Status):
        return [(f"{p}/status", message.model_dump_json(), 1, True)] + [
            (f"{p}/{s.id}/status", s.model_dump_json(), 0, True) for s in message.sources
        ]
    return [(f"{p}/{topic}", message.model_dump_json(), 0, False)]


class MqttOutput:
    """The MQTT side of the daemon: ``send(topic, message)`` with the daemon's own topic names."""

    name = "mqtt"

    def __init__(
        self, cfg: "MqttConfig", sources: list[str], labels: list[str], model: str, gated: list[str] = []
    ) -> None:
        """``gated``: the sources with a motion gate (their motion state is published)."""
        mqtt = check(cfg, labels)
        from .. import __version__

        self.cfg = cfg
        self._mqtt = mqtt
        self.prefix = cfg.topic_prefix
        self.availability = f"{self.prefix}/availability"
        self.queue: queue.Queue = queue.Queue(cfg.queue)
        self.sent = self.dropped = self.reconnects = 0
        self.connected = False
        self.inflight = Inflight(INFLIGHT, cfg.ack_timeout)
        self._holding = 0  # the message the sender took from the queue and has not handed over yet
        self._lock = threading.Lock()  # counters and the in-flight list change together
        self._was_stalled = False
        self.last_error: str | None = None
        self._ever_connected = False
        self._stop = threading.Event()
        self._wake = threading.Condition()
        self._state = {sid: {"action": "none"} for sid in sources}  # retained per source, sent again on reconnect
        self._motion = {sid: "" for sid in gated}  # "": not known yet (no prediction so far)
        self._discovery = discovery(cfg, sources, labels, model, __version__, gated) if cfg.discovery_prefix else []
        c = make_client(mqtt, cfg, self.availability)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        self.client = c
        c.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive)
        c.loop_start()  # paho's network thread: connects, reconnects with backoff
        self._sender = threading.Thread(target=self._send_loop, name="mqtt", daemon=True)
        self._sender.start()
        log.info("mqtt: connecting to %s:%d (topics %s/...)", cfg.host, cfg.port, self.prefix)

    # -- paho callbacks (its network thread) ---------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.last_error = f"broker refused the connection: {reason_code}"
            log.warning("mqtt: %s", self.last_error)
            return
        client.publish(self.availability, "online", qos=1, retain=True)
        for topic, payload in self._discovery:
            client.publish(topic, json.dumps(payload), qos=1, retain=True)
        for sid, state in list(self._state.items()):
            client.publish(f"{self.prefix}/{sid}/state", json.dumps(state), qos=1, retain=True)
        for sid, moving in list(self._motion.items()):
            if moving:
                client.publish(f"{self.prefix}/{sid}/motion", moving, qos=1, retain=True)
        if self._ever_connected:
            self.reconnects += 1
        with self._lock:
            self.inflight.restart(time.monotonic())
        self._ever_connected = True
        self.connected = True
        self.last_error = None
        log.info("mqtt: connected to %s:%d", self.cfg.host, self.cfg.port)
        with self._wake:
            self._wake.notify_all()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was = self.connected
        self.connected = False
        if was:
            log.warning("mqtt: disconnected (%s); reconnecting with backoff", reason_code)
        if not self._stop.is_set() and (was or self.last_error is None):  # keep a refusal's reason
            self.last_error = f"disconnected: {reason_code}"

    # -- the daemon's side ----------------------------------------------------------------------
    def send(self, topic: str, message: BaseModel) -> None:
        """Queue the message's MQTT form; never blocks (a full queue drops and counts)."""
        for item in translate(self.prefix, topic, message, self._state, self._motion):
            try:
                self.queue.put_nowait(item)
            except queue.Full:
                with self._lock:
                    self.dropped += 1

    def _sweep(self) -> None:
        with self._lock:
            taken, lost = self.inflight.sweep()
            self.sent += taken
            self.dropped += lost
            stalled = self.connected and self.inflight.stalled(time.monotonic())
        if stalled != self._was_stalled:
            self._was_stalled = stalled
            if stalled:
                log.warning("mqtt: %s", self._stall_reason(time.monotonic()))
            else:
                log.info("mqtt: the broker takes messages again")

    def _stall_reason(self, now: float) -> str:
        return (
            f"broker stopped acknowledging: {len(self.inflight)} message(s) not taken, the oldest for "
            f"{self.inflight.waited(now):.0f} s (ack_timeout {self.cfg.ack_timeout:g} s)"
        )

    def _ready(self) -> bool:
        """Connected, the broker taking messages, and room in flight."""
        with self._lock:
            return self.connected and not self.inflight.full() and not self.inflight.stalled(time.monotonic())

    def _send_loop(self) -> None:
        while not self._stop.is_set():
            self._sweep()
            if not self._ready():  # messages wait in the bounded queue, not in paho
                with self._wake:
                    self._wake.wait(0.1)
                continue
            try:
                topic, payload, qos, retain = self.queue.get(timeout=0.2)
            except queue.Empty:
                continue
            with self._lock:
                self._holding = 1
            info = self.client.publish(topic, payload, qos=qos, retain=retain)
            with self._lock:
                self._holding = 0
                if info.rc == self._mqtt.MQTT_ERR_SUCCESS:
                    self.inflight.add(info, time.monotonic())
                else:  # paho's own bounded queue is full, or the connection dropped just now
                    self.dropped += 1

    def status(self) -> OutputStatus:
        self._sweep()
        now = time.monotonic()
        with self._lock:
            stalled = self.connected and self.inflight.stalled(now)
            return OutputStatus(
                connected=self.connected and not stalled,
                sent=self.sent,
                dropped=self.dropped,
                queued=self.queue.qsize() + self._holding + len(self.inflight),
                reconnects=self.reconnects,
                last_error=self._stall_reason(now) if stalled else self.last_error,
            )

    def close(self, timeout: float = 2.0) -> None:
        """Send what is queued (briefly, if connected), say ``offline``, disconnect."""
        end = time.monotonic() + timeout
        while self.connected and (not self.queue.empty() or len(self.inflight)) and time.monotonic() < end:
            time.sleep(0.02)
            self._sweep()
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        self._sender.join(timeout=1.0)
        if self.connected:
            self.client.publish(self.availability, "offline", qos=1, retain=True).wait_for_publish(timeout=1.0)
        self.client.disconnect()
        self.client.loop_stop()
