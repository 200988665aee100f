"""The relay's Prometheus collector against a real relay: an upstream mock, a client that reads and
one that stalls until the relay drops it as slow; every metric present with its type and labels,
counters never decreasing across scrapes, values equal to ``stats()``."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

import massive_rt as mrt
from massive_rt.metrics import instrument
from massive_rt.relay import RelayStats
from massive_rt.testing import MockMassiveServer
from tests.conftest import wait_until
from tests.operating.scrapes import assert_counters_never_decrease, only_value, scrape_registry, series
from tests.relay._support import event
from tests.relay.conftest import Clients, RawClients, Relays

BURST = 2000  # one frame of ~220 KB: far more than the stalled client's socket buffers hold
TOTAL = BURST + 30_000  # the stalled client's writer is stuck in the burst: the rest overflows its buffer
SETTLED = ("frames_in", "events_in", "events_sent", "events_dropped", "slow_consumers")  # RelayStats fields
RELAY_COUNTERS = ("relay_frames_in", "relay_events_in", "relay_events_sent", "relay_events_dropped",
                  "relay_slow_consumers")  # fmt: skip


def test_a_relay_exports_its_fan_out_its_consumers_and_its_upstream_connection(
    upstream: MockMassiveServer, relays: Relays, clients: Clients, raw_clients: RawClients
) -> None:
    relay = relays(consumer_buffer=20_000, socket_buffer=16 * 1024, close_timeout=0.3)
    registry = CollectorRegistry()
    instrument(relay, registry)
    reader = clients(relay.url("stocks"), "T.*", queue_size=100_000)
    reader.wait_ready(10)
    stalled = raw_clients(relay.url("stocks"), rcvbuf=4096)
    stalled.auth()
    stalled.subscribe("T.*")
    assert upstream.wait_for_subscribed("T.*", 10)

    trades: list[mrt.Event] = []

    def read(count: int) -> bool:
        trades.extend(e for e in reader.drain() if isinstance(e, mrt.EquityTrade))
        return len(trades) >= count

    upstream.publish([event("T", "AAPL", i) for i in range(BURST)], batch=BURST)
    assert wait_until(lambda: read(BURST), 10)
    first = scrape_registry(registry)
    # The stalled one overflows; the reader is waited for after every 1,000 events, so that on a
    # loaded machine it is never the one 20,000 events behind (it was, once, and was dropped too).
    for start in range(BURST, TOTAL, 1000):
        upstream.publish([event("T", "AAPL", i) for i in range(start, start + 1000)], batch=100)
        assert wait_until(lambda end=start + 1000: read(end), 10)
    assert wait_until(lambda: relay.stats().slow_consumers == 1, 10)
    assert relay.wait_for(lambda: len(relay.active_connections()) == 1, 10)
    # A writer counts what it sent once its send returns, which can be after the client read it
    # (on a loaded machine, long enough for two snapshots to agree before it counts): wait for the
    # reader's TOTAL to be counted, then scrape between two equal snapshots, so the scrape and
    # stats() see the same totals.
    assert wait_until(lambda: relay.stats().events_sent >= TOTAL, 10)
    scraped: list[tuple[dict[str, Any], RelayStats]] = []

    def settled() -> bool:
        before = relay.stats()
        scraped[:] = [(scrape_registry(registry), relay.stats())]
        after = scraped[0][1]
        return all(getattr(before, name) == getattr(after, name) for name in SETTLED)

    assert wait_until(settled, 10)
    second, stats = scraped[0]

    labels = {"relay": stats.name}
    assert_counters_never_decrease(first, second, (*RELAY_COUNTERS, "frames_received", "reconnects"))
    assert only_value(second, "relay_frames_in", "counter", labels) == stats.frames_in
    assert only_value(second, "relay_events_in", "counter", labels) == stats.events_in == TOTAL
    assert only_value(second, "relay_events_sent", "counter", labels) == stats.events_sent >= TOTAL
    assert only_value(second, "relay_events_dropped", "counter", labels) == stats.events_dropped > 0
    assert only_value(second, "relay_slow_consumers", "counter", labels) == stats.slow_consumers == 1
    assert only_value(second, "relay_consumers", "gauge", labels) == stats.downstream_connections == 1
    assert only_value(first, "relay_consumers", "gauge", labels) == 2
    assert only_value(first, "relay_events_dropped", "counter", labels) == 0

    # The upstream side: the pool and its one connection, labelled like any connection.
    (member,) = stats.upstream.per_connection
    conn = {"connection": member.name, "market": "stocks"}
    # The relay forwards the upstream frames without decoding them: frames count, events do not.
    assert only_value(second, "events_received", "counter", conn) == member.events_decoded == 0
    assert (
        only_value(second, "frames_received", "counter", conn) == member.frames_received >= 1 + (TOTAL - BURST) // 100
    )
    assert only_value(second, "pool_recycled", "counter", {"pool": stats.upstream.name}) == 0
    state = series(second["massive_rt_connection_state"])
    assert state[tuple(sorted({**conn, "state": "streaming"}.items()))] == 1.0
    assert sum(state.values()) == 1.0
    assert len(state) == len(mrt.ConnectionState)


def test_the_fan_out_totals_never_go_down_when_a_closed_consumer_is_forgotten(
    upstream: MockMassiveServer, relays: Relays, clients: Clients
) -> None:
    """``keep_closed=0``: a consumer leaves ``stats().consumers`` as it closes; what it was sent stays
    in ``events_sent`` (it was a sum over the consumers listed, so it fell, and the exported counter
    jumped by the whole earlier total when it did)."""
    relay = relays(keep_closed=0)
    registry = CollectorRegistry()
    instrument(relay, registry)
    leaving, staying = clients(relay.url("stocks"), "T.*"), clients(relay.url("stocks"), "T.*")
    leaving.wait_ready(10)
    staying.wait_ready(10)
    assert upstream.wait_for_subscribed("T.*", 10)
    upstream.publish([event("T", "AAPL", i) for i in range(10)])
    assert wait_until(lambda: relay.stats().events_sent == 20, 10)

    def sent() -> float:
        return only_value(scrape_registry(registry), "relay_events_sent", "counter", {"relay": relay.name})

    assert sent() == 20
    leaving.stop()
    assert relay.wait_for(lambda: len(relay.active_connections()) == 1, 10)
    assert len(relay.stats().consumers) == 1  # the closed one is forgotten
    assert relay.stats().events_sent == 20
    upstream.publish([event("T", "AAPL", i) for i in range(10, 15)])
    assert wait_until(lambda: relay.stats().events_sent == 25, 10)
    assert sent() == 25
