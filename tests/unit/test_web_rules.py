"""The web page's bounded parts without a daemon: the snapshot slot's rate and demand gate on a fake
clock, the per-source rings and event lists, the viewer limit and the slow-viewer drop, the
loopback rules (config and Host header) and the [web] config errors."""

from __future__ import annotations

import asyncio

import cv2
import numpy as np
import pytest

from edgevid.config import WebConfig, is_loopback
from edgevid.errors import ConfigError
from edgevid.messages import Event, ModelIds, Prediction, PredictionLatency, Score, Status
from edgevid.web import state as web_state
from edgevid.web.server import host_is_loopback
from edgevid.web.snapshot import MAX_WIDTH, SnapshotSlot, encode_snapshot
from edgevid.web.state import EVENTS_MAX, VIEWER_QUEUE, VIEWERS_MAX, WebState, ring_size


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def frame(w: int = 640, h: int = 480) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (h, w, 3), dtype=np.uint8)


def test_snapshot_slot_encodes_only_while_watched_and_at_most_its_rate():
    clock = Clock()
    slot = SnapshotSlot(fps=2.0, clock=clock)
    img = frame()
    for i in range(30):  # nobody asked: 30 frames offered, none encoded
        slot.offer(img, clock.t + i * 0.1, 0.0)
    assert slot.encoded == 0 and slot.take() is None
    # A viewer asked at t = 100: frames 0.1 s apart for 3 s give at most 2 JPEGs a second.
    for i in range(30):
        slot.offer(img, clock.t + i * 0.1, 1000.0 + i)
    assert slot.encoded == 6
    jpeg, wall = slot.take()
    decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (240, MAX_WIDTH, 3) and wall == 1025.0
    # Nobody asks for longer than WANTED_S: encoding stops, and the old JPEG is not shown as live.
    for i in range(100):
        slot.offer(img, clock.t + 3 + i * 0.1, 0.0)
    assert slot.encoded == 11  # 103.0 ... 105.0 (WANTED_S after the ask at 100) at 2 a second, then none
    clock.t += 20
    assert slot.take() is None


def test_snapshot_keeps_small_frames_and_aspect_ratio():
    assert cv2.imdecode(np.frombuffer(encode_snapshot(frame(160, 120)), np.uint8), 1).shape == (120, 160, 3)
    assert cv2.imdecode(np.frombuffer(encode_snapshot(frame(1920, 1080)), np.uint8), 1).shape == (180, 320, 3)


def prediction(seq: int, t: float, label: str = "wave", source: str = "cam0") -> Prediction:
    return Prediction(
        source=source,
        seq=seq,
        label=label,
        score=0.9,
        window_start=t - 1.2,
        window_end=t,
        top=[Score(label=label, score=0.9), Score(label="pour", score=0.05)],
        models=ModelIds(extractor="x", head="y"),
        frames=12,
        gaps=0,
        new_frames=5,
        latency=PredictionLatency(extract_ms=1, head_ms=1, floor_ms=1, capture_to_publish_ms=1),
    )


def event(seq: int, t: float) -> Event:
    return Event(
        source="cam0",
        seq=seq,
        id=f"e{seq}",
        phase="start",
        label="wave",
        score=0.9,
        best_score=0.9,
        started_at=t,
        duration_s=1.0,
        window_start=t - 1.2,
        window_end=t,
        prediction_seq=seq,
    )


def test_rings_hold_history_s_at_the_hop_and_count_what_ages_out():
    assert ring_size(300, 0.5) == 601 and ring_size(3600, 0.1) == web_state.HISTORY_MAX
    st = WebState({"cam0": 0.5}, history_s=10)
    for i in range(100):
        st.message("pred/cam0", prediction(i + 1, 1000 + i * 0.5))
    view = st.source_json("cam0")
    assert len(view["history"]) == 21 and view["aged_out"] == 79 and view["last"]["seq"] == 100
    assert view["history"][0]["seq"] == 80 and view["last"]["top"][0] == ["wave", 0.9]
    assert [p["seq"] for p in st.source_json("cam0", since=1049.0)["history"]] == [100]
    for i in range(EVENTS_MAX + 20):
        st.message("event/cam0", event(i + 1, 1000 + i))
    assert len(st.source_json("cam0")["events"]) == EVENTS_MAX
    st.message("pred/other", prediction(1, 1000, source="other"))  # not a configured source: ignored
    st.message("status", Status(seq=1, uptime_s=1.0, sources=[]))
    assert st.status is not None and set(st.sources) == {"cam0"}


def test_viewers_are_limited_and_a_slow_one_is_dropped_not_waited_for():
    async def run() -> None:
        st = WebState({"cam0": 0.5}, history_s=60)
        viewers = [st.join() for _ in range(VIEWERS_MAX)]
        assert all(viewers) and st.join() is None and st.refused == 1
        fast, slow = viewers[0], viewers[1]
        for i in range(VIEWER_QUEUE + 50):
            st.message("pred/cam0", prediction(i + 1, 1000 + i))
            while fast.queue.qsize():  # the fast viewer reads everything as it comes
                fast.queue.get_nowait()
        # The slow viewers got VIEWER_QUEUE frames and then the end of their stream, never more.
        assert slow.lagged and slow.queue.qsize() == VIEWER_QUEUE + 1
        items = [slow.queue.get_nowait() for _ in range(VIEWER_QUEUE + 1)]
        assert items[-1] is None and items[0].startswith(b"event: prediction\ndata: {")
        assert not fast.lagged and st.lagged == VIEWERS_MAX - 1 and st.dropped == (VIEWERS_MAX - 1) * 50
        st.leave(slow)
        assert st.join() is not None

    asyncio.run(run())


@pytest.mark.parametrize(
    "listen, loopback",
    [("127.0.0.1:8090", True), ("127.1.2.3:80", True), ("localhost:8090", True), ("[::1]:8090", True)]
    + [("0.0.0.0:8090", False), ("[::]:8090", False), ("192.168.1.5:8090", False), ("pi.local:8090", False)],
)
def test_loopback_listen(listen, loopback):
    assert is_loopback(listen) is loopback


@pytest.mark.parametrize(
    "host, ok",
    [("127.0.0.1:8090", True), ("localhost:8090", True), ("[::1]:8090", True), ("LOCALHOST", True)]
    + [("evil.example:8090", False), ("127.0.0.1.evil.example", False), ("192.168.1.5:8090", False), ("", False)],
)
def test_host_header_rule_without_a_token(host, ok):
    assert host_is_loopback(host) is ok


def test_web_config_errors_name_their_key(tmp_path):
    from edgevid.config import load_config

    def err(table: str) -> str:
        p = tmp_path / "c.toml"
        p.write_text(f'[[sources]]\nid = "a"\nuri = "a.avi"\n[web]\n{table}\n')
        with pytest.raises(ConfigError) as exc:
            load_config(p, environ={})
        return str(exc.value)

    assert "web.token: required when web.listen (0.0.0.0:8090) is not a loopback address" in err(
        'listen = "0.0.0.0:8090"'
    )
    assert "web.token: String should have at least 16 characters" in err('listen = "0.0.0.0:1"\ntoken = "short"')
    assert "web.token: printable ASCII" in err('token = "0123456789abcdef 0123"')
    assert "web.listen: Value error, expected host:port" in err('listen = "8090"')
    assert "web.snapshot_fps: Input should be less than or equal to 5" in err("snapshot_fps = 30")
    assert "web.history_s: Input should be greater than or equal to 10" in err("history_s = 1")
    assert "web.colour: unknown key" in err("colour = 1")
    assert WebConfig().listen is None and WebConfig(listen="0.0.0.0:1", token="x" * 16).token
