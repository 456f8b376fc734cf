"""MQTT output end to end against a real Mosquitto broker on loopback: messages, Home Assistant
discovery, last will on kill -9, a broker restart survived."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import DATA
from daemon_util import free_port, start_daemon, stop_daemon, write_config

mqtt = pytest.importorskip("paho.mqtt.client", reason="paho-mqtt not installed (pip install -e '.[test]')")
MOSQUITTO = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
if MOSQUITTO is None:
    pytest.skip("mosquitto not installed (apt-get install mosquitto)", allow_module_level=True)

CLIP = sorted((DATA / "ucf101_sample").rglob("*.avi"))[0]


def broker(port: int) -> subprocess.Popen:
    proc = subprocess.Popen([MOSQUITTO, "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    end = time.monotonic() + 10
    import socket

    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"mosquitto did not listen on {port}: {proc.stderr.read()}")


class Listener:
    """A real paho subscriber on '#': every message with its arrival order, reconnecting by itself."""

    def __init__(self, port: int) -> None:
        self.msgs: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"listener-{port}")
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe("#", qos=1)
        self.c.on_message = self._on
        self.c.reconnect_delay_set(0.2, 1)
        self.c.connect(host="127.0.0.1", port=port)
        self.c.loop_start()

    def _on(self, c, u, m) -> None:
        with self.lock:
            self.msgs.append((m.topic, m.payload, m.retain))

    def wait(self, pred, timeout: float) -> list:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                got = list(self.msgs)
            if pred(got):
                return got
            time.sleep(0.05)
        raise AssertionError(f"timed out; last topics: {[t for t, _, _ in got[-15:]]}")

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def render(template: str, value_json: dict) -> str:
    """Home Assistant's two templates here, evaluated the way Jinja would (no Jinja on the device)."""
    if template == "{{ value_json.action }}":
        return str(value_json["action"])
    prefix = "{{ 'ON' if value_json.action == '"
    assert template.startswith(prefix) and template.endswith("' else 'OFF' }}"), template
    return "ON" if value_json["action"] == template[len(prefix) : -len("' else 'OFF' }}")] else "OFF"


@pytest.mark.slow
def test_mqtt_messages_discovery_broker_restart_and_last_will(tmp_path, env):
    port = free_port()
    b = broker(port)
    listener = Listener(port)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    mqtt_cfg = (
        f'\n[mqtt]\nhost = "127.0.0.1"\nport = {port}\ntopic_prefix = "ev"\nbinary_sensors = ["golf", "wave"]\n'
        "keepalive = 5\nreconnect_min = 0.5\nreconnect_max = 2\n"
    )
    cfg = write_config(tmp_path / "q.toml", endpoint, [{"id": "cam0", "uri": str(CLIP), "loop": True}], extra=mqtt_cfg)
    proc = start_daemon(cfg, env)
    try:
        got = listener.wait(
            lambda g: (
                sum(t == "ev/cam0/prediction" for t, _, _ in g) >= 3
                and any(t == "ev/cam0/motion" for t, _, _ in g)
                and any(t == "ev/cam0/status" for t, _, _ in g)
                and any(t == "ev/status" for t, _, _ in g)
            ),
            60,
        )
        topics = [t for t, _, _ in got]
        assert ("ev/availability", b"online") in [(t, p) for t, p, _ in got]
        pred = json.loads(next(p for t, p, _ in got if t == "ev/cam0/prediction"))
        assert pred["type"] == "prediction" and pred["source"] == "cam0" and pred["label"] and pred["top"]
        # Discovery: a sensor and the two binary sensors, retained, pointing at topics that carry data
        configs = {t: json.loads(p) for t, p, r in got if t.startswith("homeassistant/")}
        assert set(configs) == {
            "homeassistant/sensor/edgevid_cam0/action/config",
            "homeassistant/binary_sensor/edgevid_cam0/golf/config",
            "homeassistant/binary_sensor/edgevid_cam0/wave/config",
            "homeassistant/binary_sensor/edgevid_cam0/motion/config",  # the motion gate (on by default)
        }
        assert len({c["unique_id"] for c in configs.values()}) == 4
        motion = configs.pop("homeassistant/binary_sensor/edgevid_cam0/motion/config")
        assert motion["device_class"] == "motion" and motion["state_topic"] == "ev/cam0/motion"
        assert motion["availability_topic"] == "ev/availability" and motion["device"]["identifiers"] == ["edgevid_cam0"]
        assert (b"ON", True) in [(p, r) for t, p, r in got if t == "ev/cam0/motion"]  # the clip moves
        state = json.loads([p for t, p, _ in got if t == "ev/cam0/state"][-1])
        for c in configs.values():
            assert {"name", "unique_id", "state_topic", "availability_topic", "device", "value_template"} <= set(c)
            assert c["availability_topic"] == "ev/availability" and c["state_topic"] in topics
            assert c["device"]["identifiers"] == ["edgevid_cam0"]
            out = render(c["value_template"], state)
            assert out in ("ON", "OFF") if "payload_on" in c else out == state["action"]
        assert (
            render(configs["homeassistant/sensor/edgevid_cam0/action/config"]["value_template"], state)
            == state["action"]
        )

        # Broker restart: the daemon reconnects and messages flow again (status reports it)
        b.terminate()
        b.wait(10)
        time.sleep(1.0)
        b = broker(port)
        n = len(listener.msgs)
        got = listener.wait(
            lambda g: (
                sum(t == "ev/cam0/prediction" for t, _, _ in g[n:]) >= 3
                and any(t == "ev/status" and json.loads(p)["outputs"]["mqtt"]["reconnects"] >= 1 for t, p, _ in g[n:])
            ),
            60,
        )
        assert b"online" in [p for t, p, _ in got[n:] if t == "ev/availability"]
        assert any(t.startswith("homeassistant/") for t, _, _ in got[n:])  # discovery sent again to the fresh broker
        assert proc.poll() is None

        # kill -9: no goodbye from the daemon, the broker publishes its last will
        n = len(listener.msgs)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        listener.wait(lambda g: ("ev/availability", b"offline") in [(t, p) for t, p, _ in g[n:]], 20)
    finally:
        if proc.poll() is None:
            stop_daemon(proc)
        listener.close()
        b.terminate()
        b.wait(10)


def test_mqtt_status_counts_drops_while_the_broker_is_away(tmp_path, env):
    """No broker: the daemon serves ZeroMQ as usual, the MQTT queue stays bounded, drops are counted."""
    from daemon_util import Subscriber

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    cfg = write_config(
        tmp_path / "q.toml",
        endpoint,
        [{"id": "cam0", "uri": str(CLIP), "loop": True}],
        extra=f'\n[mqtt]\nhost = "127.0.0.1"\nport = {free_port()}\nqueue = 5\n',
    )
    sub = Subscriber(endpoint)
    proc = start_daemon(cfg, env)
    try:
        msgs = sub.until(lambda g: any(m["type"] == "status" and m["outputs"]["mqtt"]["dropped"] > 0 for _, m in g), 60)
    finally:
        code, err = stop_daemon(proc)
        sub.close()
    assert code == 0, err
    st = [m for _, m in msgs if m["type"] == "status"][-1]["outputs"]["mqtt"]
    assert st["connected"] is False and st["queued"] <= 5 and st["dropped"] > 0 and st["sent"] == 0
    assert any(m["type"] == "prediction" for _, m in msgs)  # ZeroMQ never waits for the broker


def test_mqtt_binary_sensor_for_a_label_the_head_lacks_is_a_config_error(tmp_path, env):
    from conftest import run_cli

    cfg = write_config(
        tmp_path / "q.toml",
        f"tcp://127.0.0.1:{free_port()}",
        [{"id": "cam0", "uri": str(CLIP)}],
        extra=f'\n[mqtt]\nhost = "127.0.0.1"\nport = {free_port()}\nbinary_sensors = ["dance"]\n',
    )
    proc = run_cli("run", "--config", str(cfg), env=env, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "mqtt.binary_sensors: ['dance'] are not labels of the head" in proc.stderr


def _tls_broker(tmp_path, port: int) -> tuple[subprocess.Popen, Path]:
    """Mosquitto with TLS (a CA made here, server certificate for 127.0.0.1) and a password file."""
    d = tmp_path / "tls"
    d.mkdir()

    def ssl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=edgevid test CA",
    )
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    ssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    )
    passwd = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    subprocess.run([passwd, "-c", "-b", str(d / "passwd"), "edgevid", "s3cret"], check=True, capture_output=True)
    (d / "mosquitto.conf").write_text(
        f"user root\nlistener {port} 127.0.0.1\nallow_anonymous false\npassword_file {d / 'passwd'}\n"
        f"cafile {d / 'ca.crt'}\ncertfile {d / 'server.crt'}\nkeyfile {d / 'server.key'}\n"
    )
    proc = subprocess.Popen(
        [MOSQUITTO, "-c", str(d / "mosquitto.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    import socket

    end = time.monotonic() + 10
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, d / "ca.crt"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"mosquitto (TLS) did not listen: {proc.stderr.read()}")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_mqtt_over_tls_with_username_and_password(tmp_path, env):
    """The daemon connects with TLS (the CA from tls_ca) and a password; a wrong password is
    refused by the broker and reported in status while ZeroMQ goes on."""
    from daemon_util import Subscriber

    port = free_port()
    b, ca = _tls_broker(tmp_path, port)
    try:
        for password, ok in (("s3cret", True), ("wrong", False)):
            endpoint = f"tcp://127.0.0.1:{free_port()}"
            cfg = write_config(
                tmp_path / f"t{ok}.toml",
                endpoint,
                [{"id": "cam0", "uri": str(CLIP), "loop": True}],
                extra=f'\n[mqtt]\nhost = "127.0.0.1"\nport = {port}\nusername = "edgevid"\npassword = "{password}"\n'
                f'tls_ca = "{ca}"\n',
            )
            sub = Subscriber(endpoint)
            proc = start_daemon(cfg, env)
            try:

                def seen(g):
                    st = [m["outputs"]["mqtt"] for _, m in g if m["type"] == "status"]
                    preds = any(m["type"] == "prediction" for _, m in g)
                    return bool(st) and preds and (st[-1]["sent"] > 0 if ok else st[-1]["last_error"] is not None)

                msgs = sub.until(seen, 60)
            finally:
                code, err = stop_daemon(proc)
                sub.close()
            assert code == 0, err
            st = [m["outputs"]["mqtt"] for _, m in msgs if m["type"] == "status"][-1]
            if ok:
                assert st["connected"] and st["sent"] > 0 and st["last_error"] is None
            else:
                assert not st["connected"] and st["sent"] == 0 and "refused" in st["last_error"]
                assert any(m["type"] == "prediction" for _, m in msgs)
    finally:
        b.terminate()
        b.wait(10)


# -- reliability round three --------------------------------------------------------------------------
BAD_TOPICS = [
    ('discovery_prefix = "ha/#"', "mqtt.discovery_prefix", "wildcard '#'"),
    ('discovery_prefix = "ha/+/x"', "mqtt.discovery_prefix", "wildcard '+'"),
    ('topic_prefix = "ev\\u0000x"', "mqtt.topic_prefix", "NUL"),
    ('discovery_prefix = "ha\\u0000"', "mqtt.discovery_prefix", "NUL"),
    ('topic_prefix = "ev\\nx"', "mqtt.topic_prefix", "U+000A"),
    ('topic_prefix = "$SYS/ev"', "mqtt.topic_prefix", "'$'"),
    (f'topic_prefix = "{"e" * 65460}"', "mqtt.topic_prefix", "65460 bytes long; at most 65459"),
    (f'discovery_prefix = "{"h" * 70000}"', "mqtt.discovery_prefix", "70000 bytes long"),
    ('binary_sensors = ["golf/x"]', "mqtt.binary_sensors", "'/'"),
    ('client_id = "a\\u0000b"', "mqtt.client_id", "NUL"),
    ('host = "broker name"', "mqtt.host", "host name"),
]


@pytest.mark.parametrize("line,key,needle", BAD_TOPICS)
def test_topics_brokers_refuse_are_config_errors_naming_the_key(tmp_path, env, line, key, needle):
    """Before: `config check` said ok; at run time paho's thread died (wildcard, struct.error on a
    long prefix) or the broker dropped the connection on every publish (NUL, control characters)."""
    from conftest import run_cli

    cfg = write_config(
        tmp_path / "q.toml",
        f"tcp://127.0.0.1:{free_port()}",
        [{"id": "cam0", "uri": str(CLIP)}],
        extra=f'\n[mqtt]\nhost = "127.0.0.1"\nport = {free_port()}\n{line}\n',
    )
    if line.startswith("host"):
        cfg.write_text(cfg.read_text().replace('host = "127.0.0.1"\n', ""))
    proc = run_cli("config", "check", str(cfg), env=env, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("edgevid: error:")]
    assert len(errors) == 1 and key in errors[0] and needle in errors[0] and "q.toml" in errors[0], proc.stderr[-500:]


def test_the_longest_topic_prefix_allowed_works_against_a_real_broker(env):
    """The limit is MQTT's, not a guess: at the longest prefix config allows, every topic the
    daemon publishes (65535 bytes for the prediction of a 64-character source id) reaches the broker."""
    from edgevid.config import MqttConfig
    from edgevid.messages import ModelIds, Prediction, PredictionLatency, Score
    from edgevid.outputs.mqtt import MqttOutput

    port = free_port()
    b = broker(port)
    listener = Listener(port)
    sid = "s" * 64
    prefix = "p" * (65535 - len(f"/{sid}/prediction"))
    cfg = MqttConfig(
        host="127.0.0.1", port=port, topic_prefix=prefix, binary_sensors=["golf"], discovery_prefix="h" * 65184
    )
    out = MqttOutput(cfg, [sid], ["golf", "wave"], "test")
    try:
        pred = Prediction(
            source=sid,
            seq=1,
            label="golf",
            score=0.9,
            window_start=0,
            window_end=1,
            top=[Score(label="golf", score=0.9)],
            models=ModelIds(extractor="a", head="b"),
            frames=8,
            gaps=0,
            new_frames=8,
            latency=PredictionLatency(extract_ms=1, head_ms=1, floor_ms=2, capture_to_publish_ms=1),
        )
        got = listener.wait(lambda g: any(t == f"{prefix}/availability" for t, _, _ in g), 20)
        out.send(f"pred/{sid}", pred)
        got = listener.wait(lambda g: any(t.endswith("/prediction") for t, _, _ in g), 20)
        topics = {t for t, _, _ in got}
        assert f"{prefix}/{sid}/prediction" in topics and len(f"{prefix}/{sid}/prediction") == 65535
        assert any(t.startswith("h" * 65184 + "/binary_sensor/") for t in topics)
        assert out.status().connected and out.status().dropped == 0
    finally:
        out.close()
        listener.close()
        b.terminate()
        b.wait(10)


def test_inflight_rule_on_a_fake_clock():
    """What `status` calls a broker that stopped taking messages, on paho's own message handles:
    the oldest message not taken waits ack_timeout; a (re)connection restarts the wait."""
    from paho.mqtt.client import MQTTErrorCode, MQTTMessageInfo

    from edgevid.outputs.mqtt import Inflight

    infl = Inflight(limit=3, ack_timeout=10.0)
    infl.restart(0.0)
    a, b, c = MQTTMessageInfo(1), MQTTMessageInfo(2), MQTTMessageInfo(3)
    infl.add(a, 1.0)
    infl.add(b, 2.0)
    assert not infl.full() and not infl.stalled(10.9) and infl.waited(10.9) == pytest.approx(9.9)
    assert infl.stalled(11.0)
    a._set_as_published()  # paho: written (QoS 0) or acknowledged (QoS 1)
    assert infl.sweep() == (1, 0) and len(infl) == 1
    assert not infl.stalled(11.9) and infl.stalled(12.0)  # now b is the oldest
    infl.add(c, 12.0)
    infl.add(MQTTMessageInfo(4), 12.5)
    assert infl.full()
    infl.restart(13.0)  # reconnected: paho sends QoS 1 again, the wait starts over
    assert not infl.stalled(22.9) and infl.stalled(23.0)
    b.rc = MQTTErrorCode.MQTT_ERR_CONN_LOST  # paho drops QoS 0 packets with the connection
    b._set_as_published()
    assert infl.sweep() == (0, 1) and len(infl) == 2 and not infl.full()
    c._set_as_published()
    assert infl.sweep() == (1, 0) and infl.waited(30.0) == pytest.approx(17.0)


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_a_hung_broker_holds_a_bounded_number_of_messages_and_is_reported_not_connected():
    """A broker that keeps the TCP connection but stops (SIGSTOP) with a long keepalive. Before:
    paho's QoS-0 queue grew without bound (RSS 118 -> 264 MB in 150 s in the daemon) while status
    said connected, queued 0, dropped 0. Now: at most `queue` + INFLIGHT messages are held, every
    other one is counted, the broker is reported not connected, and it recovers on SIGCONT."""
    import os

    from pydantic import BaseModel

    from edgevid.config import MqttConfig
    from edgevid.outputs.mqtt import INFLIGHT, MqttOutput

    class Blob(BaseModel):
        data: str

    port = free_port()
    b = broker(port)
    out = MqttOutput(
        MqttConfig(host="127.0.0.1", port=port, keepalive=3600, queue=50, ack_timeout=1, discovery_prefix=None),
        ["cam0"],
        ["golf"],
        "test",
    )
    try:
        end = time.monotonic() + 20
        while not out.status().connected and time.monotonic() < end:
            time.sleep(0.05)
        assert out.status().connected
        os.kill(b.pid, signal.SIGSTOP)
        before = _rss_mb()
        blob = Blob(data="x" * 8000)
        total = 0
        for _ in range(200):  # 20,000 messages of 8 kB: 160 MB, handed over as fast as the sender takes them
            for _ in range(100):
                out.send("blob", blob)
                total += 1
            end = time.monotonic() + 0.05
            while not out.queue.empty() and time.monotonic() < end:
                time.sleep(0.002)
        end = time.monotonic() + 30
        while out.status().connected and time.monotonic() < end:
            time.sleep(0.05)
        st = out.status()
        grown = _rss_mb() - before
        assert not st.connected and "broker stopped acknowledging" in st.last_error, st
        assert st.queued <= 50 + INFLIGHT and st.sent + st.dropped + st.queued == total, st
        assert st.dropped >= total - 50 - INFLIGHT - 2000, st  # what the kernel's socket buffers took counts as sent
        assert grown < 60, f"RSS grew {grown:.0f} MB with the broker stopped"
        os.kill(b.pid, signal.SIGCONT)  # the broker takes everything again
        end = time.monotonic() + 30
        while not (out.status().connected and out.status().queued == 0) and time.monotonic() < end:
            time.sleep(0.05)
        after = out.status()
        assert after.connected and after.queued == 0 and after.last_error is None, after
        assert after.sent + after.dropped == total and after.sent > st.sent
    finally:
        os.kill(b.pid, signal.SIGCONT)
        out.close()
        b.kill()
        b.wait(10)


def test_daemon_status_reports_a_hung_broker_and_its_recovery(tmp_path, env):
    """The daemon's own status over ZeroMQ, with the broker SIGSTOPped (keepalive 3600 s): before,
    `connected` stayed true with `queued 0`, `dropped 0`; now it goes false with the reason, drops
    are counted, the queue stays bounded, and it is true again after SIGCONT."""
    import os

    from edgevid.outputs.mqtt import INFLIGHT

    from daemon_util import Subscriber

    port = free_port()
    b = broker(port)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    cfg = write_config(
        tmp_path / "h.toml",
        endpoint,
        [{"id": "cam0", "uri": str(CLIP), "loop": True}],
        extra=f'\n[mqtt]\nhost = "127.0.0.1"\nport = {port}\nkeepalive = 3600\nack_timeout = 1\nqueue = 5\n',
    )
    sub = Subscriber(endpoint, topics=("status",))
    proc = start_daemon(cfg, env)

    def mqtt_state(g):
        return [m["outputs"]["mqtt"] for _, m in g if m["type"] == "status"]

    try:
        assert any(
            s["connected"] and s["sent"] > 0
            for s in mqtt_state(sub.until(lambda g: any(s["connected"] and s["sent"] > 0 for s in mqtt_state(g)), 60))
        ), "never connected"
        os.kill(b.pid, signal.SIGSTOP)
        hung = [
            s
            for s in mqtt_state(
                sub.until(lambda g: any(not s["connected"] and s["dropped"] > 0 for s in mqtt_state(g)), 60)
            )
        ]
        assert hung and not hung[-1]["connected"], f"still reported connected: {hung[-1:]}"
        st = hung[-1]
        assert "broker stopped acknowledging" in st["last_error"] and st["queued"] <= 5 + INFLIGHT, st
        os.kill(b.pid, signal.SIGCONT)
        back = mqtt_state(
            sub.until(lambda g: any(s["connected"] and s["sent"] > st["sent"] for s in mqtt_state(g)), 60)
        )
        assert back and back[-1]["connected"], f"not connected again: {back[-1:]}"
        again = back[-1]
        assert again["last_error"] is None and again["dropped"] >= st["dropped"], again
        os.kill(b.pid, signal.SIGSTOP)  # and the daemon is stopped while the broker hangs: it still exits 0, in time
    finally:
        sub.close()
        code, err = stop_daemon(proc)
        os.kill(b.pid, signal.SIGCONT)
        b.kill()
        b.wait(10)
    assert code == 0 and "Traceback" not in err, err[-2000:]
    assert "broker stopped acknowledging" in err and "the broker takes messages again" in err
