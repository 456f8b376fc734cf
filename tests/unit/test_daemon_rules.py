"""The daemon's timing and policy rules, driven in-process with a fake clock (no models, no threads)."""

from __future__ import annotations

from dataclasses import dataclass

from edgevid.daemon.feed import BATCH, FeedQueue, Segment, Slots
from edgevid.daemon.load import LoadMeter, OverloadLog
from edgevid.daemon.status import Rates
from edgevid.timing import Fill


@dataclass
class Frame:
    fid: int
    mono: float


def _hand(q: FeedQueue, sid: str, frames: list[Frame], paused: bool = False) -> None:
    q.fills(sid, [Fill(f.fid, f, False) for f in frames], frames, paused)


def test_live_frames_oldest_first_across_sources_then_files_in_turn():
    q = FeedQueue({"a": True, "b": True, "f1": False, "f2": False}, batch=8)
    _hand(q, "a", [Frame(1, 10.0), Frame(2, 10.2)])
    _hand(q, "b", [Frame(1, 10.1)])
    _hand(q, "f1", [Frame(i, 0.0) for i in range(1, 4)])
    _hand(q, "f2", [Frame(i, 0.0) for i in range(1, 4)])
    taken = q.take(now=10.3)
    assert [(sid, f.fid) for sid, f in taken.batch] == [
        ("a", 1),
        ("b", 1),
        ("a", 2),
        ("f1", 1),
        ("f2", 1),
        ("f1", 2),
        ("f2", 2),
        ("f1", 3),
    ]
    assert [type(e) for e in taken.events["a"]] == [Slots] and taken.touched == {"a", "b", "f1", "f2"}
    rest = q.take(now=10.3)
    assert [(sid, f.fid) for sid, f in rest.batch] == [("f2", 3)] and rest.events == {}


def test_a_live_backlog_older_than_the_lag_limit_is_cut_whole_files_never():
    q = FeedQueue({"cam": True, "file": False}, max_lag=1.0)
    _hand(q, "cam", [Frame(1, 0.0), Frame(2, 0.5), Frame(3, 0.9)])
    _hand(q, "file", [Frame(1, 0.0)])
    assert q.take(now=1.0).cut == {}  # exactly at the limit: kept
    q2 = FeedQueue({"cam": True, "file": False}, max_lag=1.0)
    _hand(q2, "cam", [Frame(1, 0.0), Frame(2, 0.5), Frame(3, 0.9)])
    _hand(q2, "file", [Frame(1, 0.0)])
    taken = q2.take(now=1.01)
    assert taken.cut == {"cam": [1, 2, 3]}  # the oldest is late: all of it goes, one clean gap
    assert [(sid, f.fid) for sid, f in taken.batch] == [("file", 1)]  # a file waits, it is never cut


def test_a_segment_drops_the_stretch_that_ended_and_a_paused_source_queues_nothing():
    q = FeedQueue({"cam": True})
    _hand(q, "cam", [Frame(1, 0.0)])
    q.segment("cam")
    _hand(q, "cam", [Frame(2, 0.1)], paused=True)
    taken = q.take(now=0.2)
    assert taken.batch == [] and [type(e) for e in taken.events["cam"]] == [Slots, Segment, Slots]
    assert taken.events["cam"][2].paused and q.idle()


def test_a_file_is_full_at_its_queue_limit_and_batches_are_bounded():
    q = FeedQueue({"file": False, "cam": True}, file_queue=4)
    _hand(q, "file", [Frame(i, 0.0) for i in range(4)])
    _hand(q, "cam", [Frame(i, 5.0) for i in range(20)])
    assert q.full("file") and not q.full("cam")
    taken = q.take(now=5.0)
    assert len(taken.batch) == BATCH and {sid for sid, _ in taken.batch} == {"cam"}  # live first, one invoke's worth
    assert q.full("file") and not q.drained("cam")  # the file still waits behind the live backlog


def test_load_meter_cost_and_demand_are_moving_averages_and_paused_sources_keep_theirs():
    m = LoadMeter(now=0.0)
    m.busy(0.08, 8)
    m.tick(0.5, {"a": 5, "b": 5}, measured={"a", "b"})
    assert m.cost_s == 0.01 and m.demand == {"a": 10.0, "b": 10.0}
    m.busy(0.16, 8)
    m.tick(1.0, {"a": 15, "b": 10}, measured={"a"})  # b paused: its rate does not count
    assert abs(m.cost_s - (0.7 * 0.01 + 0.3 * 0.02)) < 1e-12
    assert abs(m.demand["a"] - (0.7 * 10 + 0.3 * 20)) < 1e-9 and m.demand["b"] == 10.0
    m.tick(1.5, {"a": 15, "b": 10}, measured={"a"})  # no frames extracted: the cost stays
    assert abs(m.cost_s - 0.013) < 1e-12


def test_overload_is_logged_once_then_at_most_every_minute_and_its_end_once():
    log = OverloadLog(every=60.0)
    said = [
        (t, log.update(t, over, "need 2.0 s/s"))
        for t, over in [(0, True), (30, True), (61, True), (100, True), (130, False), (131, False), (140, True)]
    ]
    assert [(t, x) for t, x in said if x] == [
        (0, ("warning", "overloaded: need 2.0 s/s")),
        (61, ("warning", "overloaded: need 2.0 s/s")),
        (130, ("info", "overload over: serving every source")),
        (140, ("warning", "overloaded: need 2.0 s/s")),
    ]


def test_rates_count_since_the_last_heartbeat_and_a_scrape_only_peeks():
    r = Rates(started=0.0)
    assert r.of("a", 2.0, frames_in=50, extracted=20, peek=True) == (25.0, 10.0)
    assert r.of("a", 2.0, frames_in=50, extracted=20) == (25.0, 10.0)
    assert r.of("a", 4.0, frames_in=70, extracted=40) == (10.0, 10.0)


def test_a_sighup_at_any_moment_is_answered_once_never_lost():
    """The rule behind SIGHUP (edgevid.hangup.Hangups): counted by the handler, answered by a config
    read after it, acted on once serving; several waiting are one reload."""
    from edgevid.hangup import RELOADING, SERVING, STOPPING, Hangups

    h = Hangups()
    h.handler()  # before the config is read (delivered once unblocked after an exec)
    token = h.reading()
    h.handler()  # while it is read: not known to be in it
    h.read(token)
    h.handler()  # loading models, before READY
    assert h.action() == "wait" and h.action() == "wait"  # remembered, nothing done yet
    h.phase = SERVING
    assert h.action() == "reload"
    token = h.reading()
    h.read(token)  # that reload's preflight read the config
    assert h.action() == "none"
    h.handler()
    h.handler()
    assert h.action() == "reload"  # two in a row: one reload
    token = h.reading()
    h.phase = RELOADING
    h.handler()  # while stopping for the exec: the new process reads the config after it
    assert h.action() == "covered" and h.action() == "none"
    h.phase = STOPPING
    h.handler()
    assert h.action() == "ignore" and h.action() == "none"
    woke = []
    h.wake = lambda: woke.append(1)
    h.handler()
    h.wake = lambda: (_ for _ in ()).throw(RuntimeError("loop closed"))
    h.handler()  # a closing loop never raises into the interrupted code
    assert woke == [1] and h.received == 9
