"""Loss inside Redis is never silent: gap and stream_reset statuses, and the sink's persistence check.

Every test runs a real redis-server on 127.0.0.1 (tests/redis/conftest.py).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import massive_rt as mrt
from massive_rt.adapter import RealTimeDataAdapter
from massive_rt.sinks import RedisStreamSink, RedisStreamSource
from massive_rt.testing import MockMassiveServer
from tests.conftest import wait_until
from tests.redis.conftest import (
    QUICK,
    WAIT,
    Managed,
    RedisServer,
    require_redis,
    start_adapter,
    trades,
    upstream_client,
)

STREAM = "massive:stocks:T"
_SEQUENCES = re.compile(r"sequence (\d+)\.\.(\d+)")


class Log:
    """Every event and status a consumer adapter delivers, in delivery order."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.items: list[mrt.Event] = []

    def __call__(self, event: mrt.Event) -> None:
        with self.cond:
            self.items.append(event)
            self.cond.notify_all()

    def wait(self, predicate: object, timeout: float = WAIT) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout)  # type: ignore[arg-type]

    def trades(self) -> list[int]:
        with self.cond:
            return [e.sequence_number for e in self.items if isinstance(e, mrt.EquityTrade)]  # type: ignore[misc]

    def statuses(self, status: str, connection: str) -> list[mrt.StatusMessage]:
        with self.cond:
            return [e for e in self.items if isinstance(e, mrt.StatusMessage) and e.status == status
                    and e.connection == connection]  # fmt: skip


def missing_of(gaps: list[mrt.StatusMessage]) -> set[int]:
    """Producer sequences the gap statuses name, checked against their ``dropped`` counts."""
    out: set[int] = set()
    for gap in gaps:
        match = _SEQUENCES.search(gap.message)
        assert match is not None, gap.message
        first, last = int(match.group(1)), int(match.group(2))
        assert gap.dropped == last - first + 1
        assert gap.channels == (STREAM,)
        out.update(range(first, last + 1))
    return out


@pytest.fixture
def config_refusing_redis(tmp_path: Path) -> Iterator[RedisServer]:
    require_redis()
    server = RedisServer(tmp_path, extra=("--rename-command", "CONFIG", "")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.timeout(90)
def test_a_redis_crash_without_persistence_reports_exactly_the_entries_it_lost(
    redis_server: RedisServer, mock_server: MockMassiveServer, managed: Managed
) -> None:
    client = upstream_client(mock_server, ("T.*",))
    upstream = RealTimeDataAdapter(client)
    sink = RedisStreamSink(upstream, redis_server.url, batch=100, reconnect=QUICK, socket_timeout=1.0)
    managed.add(sink.stop)
    sink.start()
    start_adapter(upstream, managed)
    client.wait_ready(WAIT)

    # A consumer that lags: its handler holds the first batch until the crash is over, so the
    # group has read 150 of the first 1,000 entries (one batch in hand, 100 queued) when Redis dies.
    gate = threading.Event()
    log = Log()

    def lagging(event: mrt.Event) -> None:
        gate.wait(WAIT)
        log(event)

    mock_server.publish(trades(0, 1000))
    assert wait_until(lambda: sink.stats().published == 1000, WAIT)
    source = RedisStreamSource(redis_server.url, [STREAM], start_id="0", count=50, queue_size=100, block_ms=50,
                               reconnect=QUICK, socket_timeout=1.0, name="lagging")  # fmt: skip
    consumer = RealTimeDataAdapter(source, on_event=lagging, frames_per_round=1)
    consumer.on_status(log)
    start_adapter(consumer, managed)
    managed.add(gate.set)  # first thing at teardown: never leave the dispatcher waiting
    assert wait_until(lambda: source.stats().read == 150, WAIT), source.stats()
    assert sink.persistence == "none"

    redis_server.kill()
    redis_server.start(redis_server.port)  # same port, empty: the 850 unread entries and the group are gone
    mock_server.publish(trades(1000, 500))
    assert wait_until(lambda: sink.stats().published == 1500, WAIT), sink.stats()
    gate.set()

    def accounted() -> bool:
        delivered = len(log.trades())
        reported = sum(g.dropped for g in log.statuses("gap", "lagging"))
        return delivered + reported >= 1500

    assert log.wait(accounted), (len(log.trades()), source.stats(), sink.stats())
    stats = sink.stats()
    assert (stats.received, stats.published, stats.dropped, stats.buffered) == (1500, 1500, 0, 0)

    delivered = log.trades()
    assert len(delivered) == len(set(delivered))  # nothing twice
    assert delivered == sorted(delivered)
    gaps = log.statuses("gap", "lagging")
    # Stream T holds only trades: the producer sequence of trade q is q + 1.
    vanished = {seq - 1 for seq in missing_of(gaps)}
    assert vanished == set(range(1500)) - set(delivered)  # exactly the events that were published, never delivered
    assert len(delivered) + sum(g.dropped for g in gaps) == 1500 == stats.published
    assert vanished == set(range(150, 1000))
    # In order with the data: the gap comes after the last event before the hole, before the first after it.
    order = log.items
    (gap_at,) = [i for i, e in enumerate(order) if isinstance(e, mrt.StatusMessage) and e.status == "gap"]
    before = [e.sequence_number for e in order[:gap_at] if isinstance(e, mrt.EquityTrade)]
    after = [e.sequence_number for e in order[gap_at:] if isinstance(e, mrt.EquityTrade)]
    assert (max(before), min(after)) == (149, 1000)
    assert gaps[0].gap_start_ns == next(e for e in order if getattr(e, "sequence_number", None) == 149).received_at_ns
    assert gaps[0].gap_end_ns == next(e for e in order if getattr(e, "sequence_number", None) == 1000).received_at_ns

    resets = log.statuses("stream_reset", "lagging")
    assert len(resets) == 1
    assert resets[0].channels == (STREAM,)
    assert order.index(resets[0]) < gap_at
    sstats = source.stats()
    assert (sstats.gaps, sstats.missing, sstats.stream_resets) == (1, 850, 1)


@pytest.mark.timeout(60)
def test_entries_other_consumers_read_are_no_gap_and_deleted_ones_are(
    redis_server: RedisServer, managed: Managed
) -> None:
    raw = redis_server.client()
    raw.xgroup_create(STREAM, "massive-rt", id="0", mkstream=True)
    ids: dict[tuple[bytes, int], bytes] = {}

    def add(first: int, last: int) -> None:  # two producers, interleaved
        for seq in range(first, last + 1):
            for epoch in (b"p1", b"p2"):
                q = seq if epoch == b"p1" else 10_000 + seq
                ids[epoch, seq] = raw.xadd(STREAM, {
                    "d": f'{{"ev":"T","sym":"AAPL","q":{q}}}', "ev": "T", "market": "stocks", "connection": "up",
                    "received_at_ns": str(seq), "epoch": epoch, "seq": str(seq),
                })  # fmt: skip

    gate = threading.Event()
    log = Log()

    def held(event: mrt.Event) -> None:
        gate.wait(WAIT)
        log(event)

    add(1, 10)  # 20 entries: 10 in the handler's hand, 10 queued, then the reader waits for room
    source = RedisStreamSource(redis_server.url, [STREAM], consumer="mine", count=10, queue_size=10, block_ms=50,
                               reconnect=QUICK, name="mine")  # fmt: skip
    consumer = RealTimeDataAdapter(source, on_event=held, frames_per_round=1)
    consumer.on_status(log)
    start_adapter(consumer, managed)
    managed.add(gate.set)
    assert wait_until(lambda: source.stats().read == 20, WAIT), source.stats()

    add(11, 30)  # 40 entries
    taken = raw.xreadgroup("massive-rt", "other", {STREAM: ">"}, count=10)  # another consumer takes 10
    assert [seq for _id, f in taken[0][1] for seq in [int(f[b"seq"])]] == [11, 11, 12, 12, 13, 13, 14, 14, 15, 15]
    raw.xdel(STREAM, ids[b"p1", 20], ids[b"p2", 24], ids[b"p2", 25])  # vanished before anyone read them
    gate.set()

    expected = 60 - 10 - 3
    assert log.wait(lambda: len(log.trades()) == expected), (len(log.trades()), source.stats())
    assert wait_until(lambda: source.stats().acked == expected)
    gaps = log.statuses("gap", "mine")
    assert sorted((g.dropped, g.message.split("(producer ")[1].split(",")[0]) for g in gaps) == [(1, "p1"), (2, "p2")]
    assert [m for g in gaps for m in _SEQUENCES.findall(g.message)] in (
        [("20", "20"), ("24", "25")], [("24", "25"), ("20", "20")],
    )  # fmt: skip
    stats = source.stats()
    assert (stats.gaps, stats.missing, stats.stream_resets) == (2, 3, 0)


def test_the_sink_warns_once_when_a_restart_would_lose_data(
    redis_server: RedisServer, mock_server: MockMassiveServer, managed: Managed, caplog: pytest.LogCaptureFixture
) -> None:
    sink_logger = "massive_rt.redis.sink"
    caplog.set_level(logging.INFO, logger=sink_logger)
    client = upstream_client(mock_server, ("T.*",))
    upstream = RealTimeDataAdapter(client)
    sink = RedisStreamSink(upstream, redis_server.url, reconnect=QUICK, name="lossy")
    managed.add(sink.stop)
    sink.start()
    start_adapter(upstream, managed)
    client.wait_ready(WAIT)
    for start in (0, 10, 20):
        mock_server.publish(trades(start, 10))
        assert wait_until(lambda s=start: sink.stats().published == s + 10, WAIT)
    assert sink.stats().persistence == "none"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == sink_logger]
    assert warnings == [
        f"redis sink lossy: Redis at {redis_server.url} has persistence 'none': a restart loses every entry not read "
        "yet (consumers report it as gap and stream_reset statuses); set appendonly yes to keep them"
    ]
    fields = redis_server.client().xrange(STREAM)[-1][1]
    assert (fields[b"epoch"].decode(), fields[b"seq"]) == (sink.epoch, b"30")


def test_an_aof_server_gets_no_warning(
    aof_redis_server: RedisServer, mock_server: MockMassiveServer, managed: Managed, caplog: pytest.LogCaptureFixture
) -> None:
    client = upstream_client(mock_server, ("T.*",))
    upstream = RealTimeDataAdapter(client)
    sink = RedisStreamSink(upstream, aof_redis_server.url, reconnect=QUICK)
    managed.add(sink.stop)
    sink.start()
    assert wait_until(lambda: sink.persistence != "unknown", WAIT)
    assert sink.stats().persistence == "aof-always"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and r.name == "massive_rt.redis.sink"]


def test_a_server_that_refuses_config_is_noted_and_published_to(
    config_refusing_redis: RedisServer, mock_server: MockMassiveServer, managed: Managed,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.INFO, logger="massive_rt.redis.sink")
    client = upstream_client(mock_server, ("T.*",))
    upstream = RealTimeDataAdapter(client)
    sink = RedisStreamSink(upstream, config_refusing_redis.url, reconnect=QUICK)
    managed.add(sink.stop)
    sink.start()
    start_adapter(upstream, managed)
    client.wait_ready(WAIT)
    mock_server.publish(trades(0, 10))
    assert wait_until(lambda: sink.stats().published == 10, WAIT)
    stats = sink.stats()
    assert (stats.persistence, stats.dropped, stats.errors) == ("unknown", 0, 0)
    notes = [r for r in caplog.records if "cannot read Redis's persistence settings" in r.getMessage()]
    assert [r.levelno for r in notes] == [logging.INFO]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and r.name == "massive_rt.redis.sink"]


@pytest.mark.timeout(60)
def test_maxlen_trimming_past_a_lagging_group_is_a_gap(redis_server: RedisServer, managed: Managed) -> None:
    raw = redis_server.client()

    def add(first: int, last: int) -> None:
        for seq in range(first, last + 1):
            raw.xadd(STREAM, {
                "d": f'{{"ev":"T","sym":"AAPL","q":{seq}}}', "ev": "T", "market": "stocks", "connection": "up",
                "received_at_ns": str(seq), "epoch": "e1", "seq": str(seq),
            })  # fmt: skip

    gate = threading.Event()
    log = Log()

    def held(event: mrt.Event) -> None:
        gate.wait(WAIT)
        log(event)

    add(1, 20)
    source = RedisStreamSource(redis_server.url, [STREAM], start_id="0", count=10, queue_size=10, block_ms=50,
                               reconnect=QUICK, name="slow")  # fmt: skip
    consumer = RealTimeDataAdapter(source, on_event=held, frames_per_round=1)
    consumer.on_status(log)
    start_adapter(consumer, managed)
    managed.add(gate.set)
    assert wait_until(lambda: source.stats().read == 20, WAIT), source.stats()  # 1..20 read, the group lags
    add(21, 60)
    assert raw.xtrim(STREAM, maxlen=20, approximate=False) == 40  # 1..40 go: 21..40 were never read
    gate.set()

    assert log.wait(lambda: len(log.trades()) == 40), (log.trades(), source.stats())
    assert log.trades() == [*range(1, 21), *range(41, 61)]
    (gap,) = log.statuses("gap", "slow")
    assert missing_of([gap]) == set(range(21, 41))
    assert (gap.gap_start_ns, gap.gap_end_ns) == (20, 41)
    stats = source.stats()
    assert (stats.gaps, stats.missing, stats.stream_resets, stats.lost) == (1, 20, 0, 0)


@pytest.mark.timeout(60)
def test_a_hole_that_cannot_be_looked_into_is_still_reported(
    tmp_path: Path, managed: Managed, caplog: pytest.LogCaptureFixture
) -> None:
    require_redis()
    server = RedisServer(tmp_path, extra=("--rename-command", "XRANGE", "")).start()
    managed.add(server.stop)
    raw = server.client()
    ids = [raw.xadd(STREAM, {"d": f'{{"ev":"T","sym":"AAPL","q":{seq}}}', "ev": "T", "market": "stocks",
                             "epoch": "e1", "seq": str(seq)}) for seq in range(1, 11)]  # fmt: skip
    raw.xdel(STREAM, ids[4])
    source = RedisStreamSource(server.url, [STREAM], start_id="0", block_ms=50, reconnect=QUICK, name="blind")
    log = Log()
    consumer = RealTimeDataAdapter(source, on_event=log)
    consumer.on_status(log)
    start_adapter(consumer, managed)
    assert log.wait(lambda: len(log.trades()) == 9), source.stats()
    (gap,) = log.statuses("gap", "blind")
    assert missing_of([gap]) == {5}
    assert log.trades() == [1, 2, 3, 4, 6, 7, 8, 9, 10]
    assert any("could not look into a hole of 1 entries" in r.getMessage() for r in caplog.records)
