"""Chaos through Redis: MockMassiveServer -> client -> adapter -> RedisStreamSink -> FaultProxy ->
redis-server -> FaultProxy -> RedisStreamSource -> adapter -> ledger, with the faults on the sink's
link, on the source's link, or on both at once.

The faults share ``CHAOS_SECONDS`` (``make test``: 3 s in all; ``make chaos`` runs minutes): latency
with jitter; on the sink's link, Redis refusing every ``XADD`` of the sink (an ACL); a 64 KB/s
throttle; one-byte segments; a reset in the middle of a command (client -> Redis) and one in the
middle of a reply (Redis -> client); a blackhole both ways (half-open: each end's read timeout,
``socket_timeout`` = 0.3 s here, finds it); a flapping link. Then the faults clear and every
symbol's last published trade must arrive.

The ledger is a counted one (``tests/chaos/_ledger.py``): every trade published is delivered once,
in order, or its symbol's hole is reported — by a source ``gap`` (entries that exist nowhere in the
stream, counted exactly) or by a sink ``dropped`` (its buffer of 500 overflowed while the link was
slow or down; the status travels on the status stream and may trail) — and the trades missing equal
the counts reported. A write Redis refused is counted twice in the counters (the sink's ``dropped``
and the source's ``gap``) and announced once (the gap): the sink's counters are checked against
that rule too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import massive_rt as mrt
from massive_rt.redis import RedisStreamSink, RedisStreamSource
from massive_rt.testing import FaultProxy, MockMassiveServer
from tests.chaos._ledger import CHAOS_SECONDS, Ledger, Publisher, run_phases
from tests.conftest import wait_until
from tests.redis.conftest import RedisServer
from tests.redis.conftest import redis_server as redis_server  # the fixture, shared
from tests.support import FAST, KEY

pytestmark = [pytest.mark.timeout(90 + 3 * CHAOS_SECONDS)]

SYMBOLS = ("AAA", "BBB", "CCC", "DDD", "EEE", "FFF")
STREAMS = ("massive:stocks:T", "massive:stocks:status")
QUICK = mrt.ReconnectPolicy(initial_delay=0.02, max_delay=0.2)
#: A half-open link is found by the Redis client's read timeout (no pings on a Redis connection).
SOCKET_TIMEOUT = 0.3


@pytest.fixture
def server() -> Iterator[MockMassiveServer]:
    with MockMassiveServer(api_keys={KEY}, name="chaos-redis") as srv:
        yield srv


@pytest.fixture
def sink_proxy(redis_server: RedisServer) -> Iterator[FaultProxy]:
    with FaultProxy(("127.0.0.1", redis_server.port), seed=11, name="chaos-sink") as proxy:
        yield proxy


@pytest.fixture
def source_proxy(redis_server: RedisServer) -> Iterator[FaultProxy]:
    with FaultProxy(("127.0.0.1", redis_server.port), seed=13, name="chaos-source") as proxy:
        yield proxy


def redis_url(proxy: FaultProxy, user: str = "") -> str:
    return f"redis://{user}@127.0.0.1:{proxy.port}/0" if user else f"redis://127.0.0.1:{proxy.port}/0"


SINK_USER = "chaos-sink"


@pytest.fixture
def refuse(redis_server: RedisServer) -> Callable[[bool], None]:
    """Redis refuses (NOPERM), or accepts again, every ``XADD`` of the sink's user."""
    admin = redis_server.client()
    admin.execute_command("ACL", "SETUSER", SINK_USER, "on", "nopass", "~*", "&*", "+@all")

    def apply(on: bool) -> None:
        admin.execute_command("ACL", "SETUSER", SINK_USER, "-xadd" if on else "+xadd")

    return apply


def phases(proxies: tuple[FaultProxy, ...], refuse: Callable[[bool], None] | None = None
           ) -> list[tuple[str, Callable[[], object]]]:  # fmt: skip
    """The faults, in order, each clearing the one before; ``refuse`` (the sink's link is under test)
    adds a first phase in which Redis refuses every ``XADD`` of the sink (its ACL loses the command)."""

    def only(**faults: Any) -> Callable[[], None]:
        def apply() -> None:
            if refuse is not None:
                refuse(False)
            for proxy in proxies:
                proxy.flap(None)
                proxy.clear_faults()
                if faults:
                    proxy.set_faults("both", **faults)

        return apply

    def reset(direction: str, after_bytes: int) -> Callable[[], None]:
        def apply() -> None:
            only()()
            for proxy in proxies:
                proxy.reset(after_bytes=after_bytes, direction=direction)

        return apply

    def flapping() -> None:
        only()()
        for proxy in proxies:
            proxy.flap(every=0.3, down_for=0.1)

    def refused() -> None:
        only()()
        assert refuse is not None
        refuse(True)

    # Not first: entries a sink's epoch loses before its first entry is written are no gap (the first
    # entry a source sees is its baseline), only the sink's ``dropped`` (docs/redis.md).
    return [
        ("latency", only(latency=0.03, jitter=0.03)),
        *([("refused", refused)] if refuse is not None else []),
        ("throttle", only(throttle=64 * 1024)),
        ("segments", only(segment=1)),
        ("reset mid-command", reset("upstream", 777)),
        ("reset mid-reply", reset("downstream", 77)),
        ("blackhole", only(blackhole=True)),
        ("flapping", flapping),
        ("clear", only()),
    ]


class Pipeline:
    """The two halves, started: the publishing side into the sink, the consuming side into the ledger."""

    def __init__(self, server: MockMassiveServer, sink_url: str, source_url: str,
                 make_adapter: Callable[..., mrt.RealTimeDataAdapter]) -> None:  # fmt: skip
        self.client = mrt.MassiveWebSocketClient(api_key=KEY, url=server.url("stocks"), reconnect=FAST,
                                                 subscriptions=[f"T.{s}" for s in SYMBOLS], name="up")  # fmt: skip
        self.upstream = make_adapter(self.client)
        self.sink = RedisStreamSink(self.upstream, sink_url, batch=200, buffer=500, reconnect=QUICK,
                                    socket_timeout=SOCKET_TIMEOUT, name="chaos")  # fmt: skip
        self.source = RedisStreamSource(source_url, STREAMS, block_ms=100, reconnect=QUICK,
                                        socket_timeout=SOCKET_TIMEOUT, name="chaos")  # fmt: skip
        self.ledger = Ledger(counted=True, symbols=SYMBOLS, trade_streams=STREAMS[:1])
        self.consumer = make_adapter(self.source)
        self.consumer.on(mrt.EquityTrade, self.ledger)
        self.consumer.on_status(self.ledger)

    def start(self) -> None:
        self.consumer.start()
        self.source.wait_ready(10)  # the group exists before the first entry: nothing is read from the middle
        self.sink.start()
        self.upstream.start()
        self.upstream.wait_ready(10)

    def stop(self) -> None:
        self.upstream.stop()
        assert self.sink.stop(10), "the sink's writer did not end"
        self.consumer.stop()


def drive(pipeline: Pipeline, server: MockMassiveServer, proxies: tuple[FaultProxy, ...],
          refuse: Callable[[bool], None] | None = None) -> dict[str, int]:  # fmt: skip
    """Publish through every fault, clear them, wait for every last trade and every report; check the
    ledger and both ends' counters against it."""
    pipeline.start()
    publisher = Publisher(server, SYMBOLS).start()
    steps = phases(proxies, refuse)
    try:
        run_phases(steps, CHAOS_SECONDS / (len(steps) - 1), threading.Event())
    finally:
        published = publisher.stop()
    ledger, sink, source = pipeline.ledger, pipeline.sink, pipeline.source
    assert ledger.wait_for(published, timeout=30), (
        f"not every last trade arrived: delivered {ledger.last}, published {published}, {sink.stats()}, "
        f"{source.stats()}"
    )
    # A dropped status is written after the batch that follows the overflow: it may trail the last trade.
    assert wait_until(lambda: sink.stats().buffered == 0 and ledger.settled(), 30), diagnosis(pipeline)
    report = ledger.verify(published)
    sink_stats, source_stats = sink.stats(), source.stats()
    total = sum(published.values())
    assert sink_stats.received == total == sink_stats.published + sink_stats.dropped
    # Redis lost nothing here (no restart, no trimming): every entry the source reports missing was
    # given a sequence by the sink and never written (refused). A refused trade is counted twice, in
    # the sink's dropped and as the source's gap, and announced once (the gap); a refused dropped
    # status is no event of the sink's (a gap of the status stream), its count announced again later.
    gaps = ledger.gaps_by_stream
    assert source_stats.missing == sum(gaps.values())
    assert sink_stats.dropped == report["reported_dropped"] + gaps[STREAMS[0]]
    report.update(status_stream_gap=gaps[STREAMS[1]])
    assert (source_stats.stream_resets, source_stats.lost, source_stats.decode_errors) == (0, 0, 0)
    report.update(sink_dropped=sink_stats.dropped, sink_errors=sink_stats.errors, sink_reconnects=sink_stats.reconnects,
                  source_errors=source_stats.errors, source_reconnects=source_stats.reconnects,
                  source_repeats=source_stats.repeats_skipped)  # fmt: skip
    print(f"chaos report: {report}")
    return report


def diagnosis(pipeline: Pipeline) -> str:
    """What each part counted, and the holes and the reports the ledger saw, for a failure message."""
    ledger = pipeline.ledger
    with ledger.cond:
        holes = {sym: holes[:10] for sym, holes in ledger.holes.items()}
        reports = [(s.status, s.connection, s.dropped, s.message[:80]) for s in ledger.statuses
                   if s.status in ("gap", "dropped", "stream_reset")][:20]  # fmt: skip
    return (f"problems {ledger.problems[:10]}; missing {ledger.missing()}, reported {ledger.reported}; "
            f"holes {holes}; reports {reports}; {pipeline.sink.stats()}; {pipeline.source.stats()}; "
            f"{pipeline.client.stats()}")


@pytest.fixture
def pipeline(server: MockMassiveServer, redis_server: RedisServer, sink_proxy: FaultProxy, source_proxy: FaultProxy,
             refuse: Callable[[bool], None], make_adapter: Callable[..., mrt.RealTimeDataAdapter]
             ) -> Iterator[Pipeline]:  # fmt: skip
    pipe = Pipeline(server, redis_url(sink_proxy, SINK_USER), redis_url(source_proxy), make_adapter)
    try:
        yield pipe
    finally:
        pipe.stop()


REFUSED = pytest.mark.allow_errors(r"Redis refused an entry of massive:stocks:\w+: .*no permissions to run the 'xadd'",
                                   logger="massive_rt.redis.sink")  # fmt: skip


@REFUSED
def test_faults_between_the_sink_and_redis_lose_nothing_silently(
    pipeline: Pipeline, server: MockMassiveServer, sink_proxy: FaultProxy, refuse: Callable[[bool], None]
) -> None:
    report = drive(pipeline, server, (sink_proxy,), refuse)
    assert report["sink_reconnects"] >= 1, "the faults should have cut the sink's link at least once"
    assert report["reported_gap"] > 0, "the entries Redis refused are the source's gaps"


def test_faults_between_redis_and_the_source_lose_nothing_silently(
    pipeline: Pipeline, server: MockMassiveServer, source_proxy: FaultProxy
) -> None:
    report = drive(pipeline, server, (source_proxy,))
    assert report["source_reconnects"] >= 1, "the faults should have cut the source's link at least once"
    assert report["missing_in_windows"] == 0, "nothing is lost between Redis and a source"


@REFUSED
def test_faults_on_both_links_at_once_lose_nothing_silently(
    pipeline: Pipeline, server: MockMassiveServer, sink_proxy: FaultProxy, source_proxy: FaultProxy,
    refuse: Callable[[bool], None],
) -> None:  # fmt: skip
    report = drive(pipeline, server, (sink_proxy, source_proxy), refuse)
    assert report["sink_reconnects"] >= 1
    assert report["source_reconnects"] >= 1
    assert report["reported_gap"] > 0


def test_stop_ends_both_ends_within_its_timeout_while_both_links_are_blackholed(
    pipeline: Pipeline, server: MockMassiveServer, sink_proxy: FaultProxy, source_proxy: FaultProxy
) -> None:
    pipeline.start()
    publisher = Publisher(server, SYMBOLS).start()
    try:
        for proxy in (sink_proxy, source_proxy):
            proxy.set_faults("both", blackhole=True)
        # Each end finds the half-open link by its read timeout (SOCKET_TIMEOUT), then keeps retrying.
        assert wait_until(lambda: pipeline.sink.stats().errors >= 1 and pipeline.source.stats().errors >= 1, 20)
    finally:
        publisher.stop()
    pipeline.upstream.stop()
    assert pipeline.sink.stop(2.0), "the sink's writer did not end within stop()'s timeout"
    stats = pipeline.sink.stats()
    assert stats.buffered == 0
    assert stats.received == stats.published + stats.dropped > stats.published  # what was left is counted
    pipeline.source.stop(2.0)
    assert pipeline.source.state is mrt.ConnectionState.STOPPED
