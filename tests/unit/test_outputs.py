"""Every output reports what it sent and what it dropped, or that it cannot know (ZeroMQ)."""

from __future__ import annotations

import time

import zmq

from edgevid.config import PublishConfig
from edgevid.messages import Status
from edgevid.outputs.zeromq import Publisher


def test_zeromq_output_counts_what_it_sent_and_says_it_cannot_count_drops():
    ctx = zmq.Context()
    pub = Publisher(PublishConfig(endpoint="inproc://outputs-test", send_hwm=2), context=ctx)
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 2)
    sub.connect("inproc://outputs-test")
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    time.sleep(0.2)  # the subscription reaches the publisher
    try:
        for i in range(500):
            pub.send("status", Status(seq=i, uptime_s=0.0, sources=[]))
        st = pub.status()
        # The subscriber holds 2 and reads none: PUB dropped the rest for it without telling us.
        assert st.sent == 500 and st.dropped is None and st.connected and pub.name == "zmq"
        got = 0
        while sub.poll(100):
            sub.recv_multipart()
            got += 1
        assert 2 <= got < 500
    finally:
        sub.close(linger=0)
        pub.close()
        ctx.term()
