"""Commands Redis carried out whose reply the client never got: nothing lost, nothing written twice.

A client that gives up on a command (a read timeout on a half-open link, a reset) cannot tell
whether Redis ran it; worse, the bytes may still be on their way and land after the client has
reconnected and moved on (a retransmission of the old connection's data). Each test puts Redis in
the state such a command leaves, or cuts the reply with a real reset through ``FaultProxy``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest

import massive_rt as mrt
from massive_rt.adapter import RealTimeDataAdapter
from massive_rt.sinks import RedisStreamSink, RedisStreamSource
from massive_rt.testing import FaultProxy, MockMassiveServer
from tests.conftest import wait_until
from tests.redis.conftest import QUICK, WAIT, Managed, RedisServer, start_adapter, trades, upstream_client
from tests.redis.test_redis_loss import Log

STREAM = "massive:stocks:T"
FUTURE = 99_999_999_999_999  # a stream top in the future: the sink's next ids are FUTURE-1, FUTURE-2 ...


def stamped(epoch: str, seq: int, q: int) -> dict[str, str]:
    """The fields a sink writes for trade ``q`` as sequence ``seq`` of ``epoch``."""
    return {"d": json.dumps({"ev": "T", "sym": "AAPL", "p": 100.0, "s": 100, "t": 1_700_000_000_000 + q, "q": q}),
            "ev": "T", "market": "stocks", "connection": "up-stocks", "received_at_ns": str(q), "epoch": epoch,
            "seq": str(seq)}  # fmt: skip


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[FaultProxy]:
    with FaultProxy(("127.0.0.1", redis_server.port), name="redis-replies") as fault_proxy:
        yield fault_proxy


def test_an_xadd_whose_reply_was_cut_is_counted_published_once(
    redis_server: RedisServer, proxy: FaultProxy, mock_server: MockMassiveServer, managed: Managed
) -> None:
    client = upstream_client(mock_server, ("T.*",))
    upstream = RealTimeDataAdapter(client)
    sink = RedisStreamSink(upstream, f"redis://127.0.0.1:{proxy.port}/0", reconnect=QUICK, socket_timeout=2.0)
    managed.add(sink.stop)
    sink.start()
    start_adapter(upstream, managed)
    client.wait_ready(WAIT)
    mock_server.publish(trades(0, 5))
    assert wait_until(lambda: sink.stats().published == 5, WAIT)

    proxy.reset(after_bytes=1, direction="downstream")  # Redis runs the next XADDs; their replies are cut
    mock_server.publish(trades(5, 5))
    assert wait_until(lambda: sink.stats().published == 10, WAIT), sink.stats()
    stats = sink.stats()
    assert (stats.dropped, stats.reconnects) == (0, 1)
    assert proxy.stats().resets == 1
    entries = redis_server.client().xrange(STREAM)
    assert [int(fields[b"seq"]) for _, fields in entries] == list(range(1, 11))
    assert [json.loads(fields[b"d"])["q"] for _, fields in entries] == list(range(10))


def test_an_xadd_of_the_sink_that_landed_after_it_gave_up_is_not_written_twice(
    redis_server: RedisServer, mock_server: MockMassiveServer, managed: Managed
) -> None:
    """The sink re-sends an entry with the id it assigned; if its first attempt lands in between,
    Redis refuses the re-send as "equal or smaller than the top item". That entry is the sink's
    own (its epoch and sequence at that id): it was written, and must not be written again under a
    new id (a duplicate every consumer would deliver)."""
    raw = redis_server.client()
    raw.xadd(STREAM, {"d": "{}"}, id=f"{FUTURE}-0")
    client = upstream_client(mock_server, ("T.*",))
    upstream = RealTimeDataAdapter(client)
    sink = RedisStreamSink(upstream, redis_server.url, reconnect=QUICK, socket_timeout=2.0)
    managed.add(sink.stop)
    sink.start()
    start_adapter(upstream, managed)
    client.wait_ready(WAIT)
    mock_server.publish(trades(0, 1))
    assert wait_until(lambda: sink.stats().published == 1, WAIT)
    assert raw.xrange(STREAM)[-1][0] == f"{FUTURE}-1".encode()

    raw.xadd(STREAM, stamped(sink.epoch, 2, 1), id=f"{FUTURE}-2")  # what the late first attempt leaves
    mock_server.publish(trades(1, 1))
    assert wait_until(lambda: sink.stats().published == 2, WAIT), sink.stats()
    assert wait_until(lambda: sink.stats().buffered == 0, WAIT)
    entries = raw.xrange(STREAM)
    assert [(entry_id, fields.get(b"seq")) for entry_id, fields in entries] == [
        (f"{FUTURE}-0".encode(), None), (f"{FUTURE}-1".encode(), b"1"), (f"{FUTURE}-2".encode(), b"2"),
    ]  # fmt: skip
    stats = sink.stats()
    assert (stats.published, stats.dropped) == (2, 0)


@pytest.mark.timeout(60)
def test_entries_an_xreadgroup_with_a_lost_reply_left_pending_here_are_delivered_in_order(
    redis_server: RedisServer, managed: Managed
) -> None:
    """An ``XREADGROUP`` of this consumer that Redis ran after the source had given up on it (its
    reply lost) leaves entries pending to this consumer that the source never saw. They still
    exist, so they are no gap; they must be read back, before the entry after them."""
    raw = redis_server.client()
    for q in range(1, 11):
        raw.xadd(STREAM, stamped("e1", q, q))
    gate = threading.Event()
    log = Log()

    def held(event: mrt.Event) -> None:
        gate.wait(WAIT)
        log(event)

    source = RedisStreamSource(redis_server.url, [STREAM], consumer="mine", start_id="0", count=5, queue_size=5,
                               block_ms=50, reconnect=QUICK, name="mine")  # fmt: skip
    consumer = RealTimeDataAdapter(source, on_event=held, frames_per_round=1)
    consumer.on_status(log)
    start_adapter(consumer, managed)
    managed.add(gate.set)
    assert wait_until(lambda: source.stats().read == 10, WAIT), source.stats()  # 5 in hand, 5 queued: no room

    ids = {q: raw.xadd(STREAM, stamped("e1", q, q)) for q in range(11, 21)}
    raw.xdel(STREAM, ids[11])  # vanished before anyone read it: a gap, reported in its place
    lost = raw.xreadgroup("massive-rt", "mine", {STREAM: ">"}, count=3)  # 12..14, the reply that never arrived
    assert [int(fields[b"seq"]) for _, fields in lost[0][1]] == [12, 13, 14]
    gate.set()

    assert log.wait(lambda: len(log.trades()) == 19), (log.trades(), source.stats())
    assert log.trades() == [*range(1, 11), *range(12, 21)]
    (gap,) = log.statuses("gap", "mine")
    assert (gap.dropped, "sequence 11..11" in gap.message) == (1, True)
    with log.cond:
        order = [getattr(e, "sequence_number", e) for e in log.items if not isinstance(e, mrt.StatusMessage)
                 or e.status == "gap"]  # fmt: skip
    assert order[9:12] == [10, gap, 12]
    assert wait_until(lambda: source.stats().acked == 19, WAIT), source.stats()
    assert raw.xpending(STREAM, "massive-rt")["pending"] == 0
    stats = source.stats()
    assert (stats.gaps, stats.missing, stats.lost) == (1, 1, 0)


@pytest.mark.allow_errors(r"Redis refused an entry of massive:stocks:status: .*no permissions",
                          logger="massive_rt.redis.sink")
def test_a_dropped_status_redis_refuses_is_written_once_redis_accepts_it_again(
    redis_server: RedisServer, proxy: FaultProxy, mock_server: MockMassiveServer, managed: Managed
) -> None:
    """The sink's ``dropped`` status (its buffer overflowed) is how consumers learn of those events:
    refused by Redis, its count must be announced later, not lost."""
    admin = redis_server.client()
    admin.execute_command("ACL", "SETUSER", "sink", "on", "nopass", "~massive:stocks:T", "+@all")  # no status stream
    client = upstream_client(mock_server, ("T.*",))
    upstream = RealTimeDataAdapter(client)
    sink = RedisStreamSink(upstream, f"redis://sink@127.0.0.1:{proxy.port}/0", buffer=10, reconnect=QUICK,
                           socket_timeout=0.5)  # fmt: skip
    managed.add(sink.stop)
    sink.start()
    start_adapter(upstream, managed)
    client.wait_ready(WAIT)
    mock_server.publish(trades(0, 1))
    assert wait_until(lambda: sink.stats().published == 1, WAIT)

    proxy.set_faults("both", blackhole=True)
    mock_server.publish(trades(1, 30))  # a batch in flight, 10 buffered, the rest dropped
    assert wait_until(lambda: sink.stats().received == 31 and sink.stats().errors >= 1, WAIT), sink.stats()
    dropped = sink.stats().dropped
    assert dropped >= 10
    proxy.clear_faults()
    assert wait_until(lambda: sink.stats().published == 31 - dropped, WAIT), sink.stats()
    assert admin.xlen("massive:stocks:status") == 0  # the dropped status was refused

    admin.execute_command("ACL", "SETUSER", "sink", "~massive:stocks:status")
    mock_server.publish(trades(31, 1))
    assert wait_until(lambda: sink.stats().published == 32 - dropped, WAIT), sink.stats()
    assert wait_until(lambda: admin.xlen("massive:stocks:status") == 1, WAIT), sink.stats()
    (_, fields), = admin.xrange("massive:stocks:status")
    assert (json.loads(fields[b"d"])["status"], json.loads(fields[b"d"])["dropped"]) == ("dropped", dropped)
    assert sink.stats().dropped == dropped
