"""Slow downstream consumers: isolated, counted, then closed as Massive closes them."""

from __future__ import annotations

import statistics
import time

import massive_rt as mrt
from massive_rt.relay import ConsumerStats, MassiveRelay
from massive_rt.testing import MockMassiveServer
from tests.conftest import wait_until
from tests.relay._support import RawClient, event
from tests.relay.conftest import Clients, RawClients, Relays

ROUND = 1000  # events per round; far below consumer_buffer, so a reading client never overflows


def test_a_stalled_consumer_does_not_delay_the_others_and_ends_with_slow_consumer(
    upstream: MockMassiveServer, relays: Relays, clients: Clients, raw_clients: RawClients
) -> None:
    # close_timeout=30: had the stalled client any hold on the others, a round would take 30 s.
    relay = relays(consumer_buffer=4 * ROUND, socket_buffer=64 * 1024, close_timeout=30.0)
    stalled = raw_clients(relay.url("stocks"), rcvbuf=4096)
    stalled.auth()
    stalled.subscribe("T.*")  # ... and from now on it never reads
    healthy = [clients(relay.url("stocks"), "T.*") for _ in range(3)]
    for client in healthy:
        client.wait_ready(10)
    assert upstream.wait_for_subscribed("T.*", 10)

    published = 0
    rounds: list[float] = []
    latencies: list[int] = []
    after_overflow = 0
    while after_overflow < 3:
        assert published < 60 * ROUND, "the stalled client never overflowed"
        started = time.monotonic()
        upstream.publish([event("T", "AAPL", published + i, t=time.time_ns()) for i in range(ROUND)], batch=100)
        published += ROUND
        for client in healthy:  # each healthy client gets the whole round, in order, before the next one
            got = 0
            while got < ROUND:
                item = client.get(timeout=10)
                if isinstance(item, mrt.StatusMessage):
                    assert not item.from_server, item  # never a slow_consumer, gap ... for them
                    continue
                assert isinstance(item, mrt.EquityTrade)
                assert item.sequence_number == published - ROUND + got
                latencies.append(item.received_at_ns - (item.timestamp or 0))
                got += 1
        rounds.append(time.monotonic() - started)
        (mine,) = [c for c in relay.stats().consumers if c.id == "c1"]
        if mine.slow_consumer:
            after_overflow += 1

    # The others were served promptly all along, before and after the stalled one overflowed.
    assert max(rounds) < 5.0, rounds
    assert statistics.median(latencies) < 0.5e9
    stats = relay.stats()
    assert stats.slow_consumers == 1
    assert stats.upstream.dropped_events == 0  # the upstream reader never backed up
    assert [c.dropped_events for c in stats.consumers if c.id != "c1"] == [0, 0, 0]
    (mine,) = [c for c in stats.consumers if c.id == "c1"]
    assert mine.dropped_events > 0

    # The stalled client now reads: what it had been sent, then slow_consumer, then a close (1008).
    objects, code = stalled.read_to_close()
    data = [o for o in objects if o["ev"] != "status"]
    assert [o for o in objects if o["ev"] == "status"] == [
        {"ev": "status", "status": "slow_consumer",
         "message": "Consumer too slow: more than 4000 events waiting; closing the connection."},
    ]  # fmt: skip
    assert objects[-1]["status"] == "slow_consumer"
    assert code == 1008
    assert [o["q"] for o in data] == list(range(len(data)))  # a prefix of the stream, no holes
    assert relay.wait_for(lambda: len(relay.active_connections()) == 3, 10)
    (mine,) = [c for c in relay.stats().consumers if c.id == "c1"]
    assert mine.closed
    assert len(data) + mine.dropped_events == published  # every event: sent or counted as dropped


BURST = 2000  # events of the one frame a stalled consumer's writer is left stuck in (~220 KB)


def _writer_stuck_in_the_burst(consumer: ConsumerStats) -> bool:
    """The writer of ``consumer`` has taken the burst's one frame from its buffer and not finished it.

    The frame (~220 KB) is many times what the socket buffers between the writer and a client that
    never reads can hold (``socket_buffer=16 KB`` send, ``rcvbuf=4096`` receive): once taken, the
    writer is, or is about to be, blocked in its send with bytes of the frame left, and stays so
    until the connection ends. It must be one frame: from a burst of many, the writer may take only
    the first few — which the socket buffers hold whole — while the rest is still in its buffer.
    """
    return (
        consumer.buffer_high_water == BURST  # the frame was buffered (the consumer's only put so far) ...
        and consumer.buffered_events == 0  # ... then taken by the writer (no overflow emptied the buffer) ...
        and not consumer.slow_consumer
        and consumer.sent_events == 0  # ... which has not finished writing it
    )


def _block_the_writer(upstream: MockMassiveServer, relay: MassiveRelay, stalled: RawClient) -> None:
    """Leave the stalled client's writer stuck mid-frame (see _writer_stuck_in_the_burst)."""
    stalled.auth()
    stalled.subscribe("T.*")
    assert upstream.wait_for_subscribed("T.*", 10)
    upstream.publish([event("T", "AAPL", i) for i in range(BURST)], batch=BURST)  # one frame, ~220 KB

    def writer_stuck() -> bool:
        (consumer,) = relay.stats().consumers
        return _writer_stuck_in_the_burst(consumer)

    assert wait_until(writer_stuck, 10)


def test_a_consumer_stuck_mid_frame_past_close_timeout_is_dropped_without_a_close_frame(
    upstream: MockMassiveServer, relays: Relays, raw_clients: RawClients
) -> None:
    relay = relays(consumer_buffer=5000, socket_buffer=16 * 1024, close_timeout=0.3)
    stalled = raw_clients(relay.url("stocks"), rcvbuf=4096)
    _block_the_writer(upstream, relay, stalled)
    upstream.publish([event("T", "AAPL", i) for i in range(2000, 8000)], batch=100)  # overflows
    assert relay.wait_for(lambda: not relay.active_connections(), 10)
    objects, code = stalled.read_to_close()
    assert code is None  # no status could follow the half-written data: the TCP connection ended
    assert objects == []  # the start of the burst's frame only
    assert upstream.wait_for(lambda: not any(c.subscriptions for c in upstream.active_connections()), 10)
    stats = relay.stats()
    assert stats.slow_consumers == 1
    assert stats.consumers[0].closed
    # Everything buffered when it overflowed (the first burst is lost mid-frame, not dropped); the rest
    # of the second burst counts too unless it reached the forwarder after the connection had ended.
    assert relay.consumer_buffer < stats.consumers[0].dropped_events <= 6000


def test_stop_is_bounded_with_writers_blocked_on_stalled_consumers(
    upstream: MockMassiveServer, relays: Relays, raw_clients: RawClients
) -> None:
    relay = relays(consumer_buffer=100_000, socket_buffer=16 * 1024, close_timeout=1.0)
    stalled = [raw_clients(relay.url("stocks"), rcvbuf=4096) for _ in range(3)]
    healthy = raw_clients(relay.url("stocks"))
    for client in [*stalled, healthy]:
        client.auth()
        client.subscribe("T.*")
    assert upstream.wait_for_subscribed("T.*", 10)
    upstream.publish([event("T", "AAPL", i) for i in range(BURST)], batch=BURST)  # one frame, ~220 KB
    assert len(healthy.recv_until(lambda o: o.get("q") == BURST - 1)) == BURST

    def writers_blocked() -> bool:
        return len([c for c in relay.stats().consumers if _writer_stuck_in_the_burst(c)]) == 3

    assert wait_until(writers_blocked, 10)
    started = time.monotonic()
    relay.stop()  # never waits behind the blocked writers one after the other
    assert time.monotonic() - started < relay.close_timeout + 2.0
    assert healthy.read_to_close() == ([], 1001)  # the reading consumer is closed cleanly
    assert not relay.stats().running
    assert relay.stats().slow_consumers == 0
