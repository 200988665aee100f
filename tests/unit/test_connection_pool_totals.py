"""ConnectionPool's lifetime totals and its tap, in the pool's own unit tests (so the mutation run
of ``pool`` reaches them): the counters of a connection the pool closed stay in ``stats()`` while
it is retired and after it is drained, exactly once; ``set_tap`` reaches the current, retired and
future connections, and None takes it off again."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import massive_rt as mrt
from massive_rt.connection import MassiveWebSocketClient
from massive_rt.pool import ConnectionPool
from massive_rt.testing import MockMassiveServer
from tests.conftest import wait_until
from tests.support import KEY

NEVER = 3600.0  # no supervisor rounds of its own: the tests call check_health themselves


@pytest.fixture
def pools() -> Iterator[Callable[..., ConnectionPool]]:
    made: list[ConnectionPool] = []

    def make(**kwargs: Any) -> ConnectionPool:
        kwargs.setdefault("api_key", KEY)
        kwargs.setdefault("health_interval", NEVER)
        pool = ConnectionPool(**kwargs)
        made.append(pool)
        return pool

    yield make
    for pool in made:
        pool.stop()


def trade(sym: str, size: int) -> dict[str, object]:
    return {"ev": "T", "sym": sym, "p": 1.0, "s": size, "t": 1}


def totals(stats: mrt.PoolStats | mrt.ConnectionStats) -> tuple[int, int, int]:
    return stats.events_decoded, stats.dropped_events, stats.reconnects


def drain_all(client: MassiveWebSocketClient) -> list[mrt.Event]:
    events: list[mrt.Event] = []
    while batch := client.drain():
        events.extend(batch)
    return events


# ----------------------------------------------------------------------------- lifetime totals


@pytest.mark.timeout(30)
def test_stats_keep_the_counters_of_a_closed_connection_once(server: MockMassiveServer, pools) -> None:
    # The queue bounds bytes: 100 hold two of these one-trade frames (~42 bytes each), not three.
    pool = pools(url=server.url, idle_timeout=0.0, client_options={"queue_bytes": 100}).start()
    pool.subscribe("T.A")
    pool.wait_ready(5)
    old = pool.connections[0]
    server.drop_all()  # one reconnect
    assert wait_until(lambda: old.stats().reconnects == 1 and old.state is mrt.ConnectionState.STREAMING, 10)
    assert server.wait_for_subscribed(["T.A"], 10)
    for size in range(1, 5):  # four frames into a queue of two: some are dropped
        server.publish([trade("A", size)])
    assert wait_until(lambda: old.stats().dropped_events >= 1 and old.stats().queue_events == 2, 10)
    assert [e for e in drain_all(old) if isinstance(e, mrt.EquityTrade)]  # decoded: counted
    # While it runs, the pool's totals are the connection's (a frame may still be on its way).
    assert wait_until(lambda: totals(pool.stats()) == totals(old.stats()), 10)
    pool.unsubscribe("T.A")
    assert pool.check_health() == 1  # idle: closed and retired
    assert pool.connections == ()
    first = totals(old.stats())
    assert first[0] >= 1, first  # decoded
    assert first[1] >= 1, first  # dropped
    assert first[2] == 1, first  # reconnected once

    assert totals(pool.stats()) == first  # retired, not drained yet: still counted
    assert totals(pool.stats()) == first  # ... and a snapshot does not add it twice
    drain_all(old)
    assert old.exhausted
    first = totals(old.stats())  # final now
    assert old not in pool.clients()  # drained: dropped from the sources, its counters kept
    assert totals(pool.stats()) == first
    assert totals(pool.stats()) == first

    pool.subscribe("T.B")  # a new connection adds its own counters to the former ones
    pool.wait_ready(5)
    new = pool.connections[0]
    assert server.wait_for_subscribed(["T.B"], 10)
    server.publish([trade("B", 7)])
    assert wait_until(lambda: any(isinstance(e, mrt.EquityTrade) for e in new.drain()), 10)
    assert totals(new.stats())[0] >= 1
    assert totals(pool.stats()) == added(first, totals(new.stats()))

    pool.unsubscribe("T.B")  # the second one closes too: both are kept, added up
    assert pool.check_health() == 1
    drain_all(new)
    assert pool.clients() == ()
    assert totals(pool.stats()) == added(first, totals(new.stats()))


def added(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(x + y for x, y in zip(a, b, strict=True))


# ----------------------------------------------------------------------------- tap


def test_set_tap_reaches_current_retired_and_future_connections(pools) -> None:
    pool = pools(max_connections=3)
    current = pool.acquire()
    retired = pool.acquire(market="crypto")
    pool.release(retired, close=True)
    assert retired in pool.clients()
    assert retired not in pool.connections
    assert pool.tap is None

    def tap(consumer: object, item: list[Any]) -> None:
        del consumer, item

    pool.set_tap(tap)
    assert pool.tap is tap
    assert (current.tap, retired.tap) == (tap, tap)
    future = pool.acquire(market="forex")
    assert future.tap is tap

    pool.set_tap(None)
    assert pool.tap is None
    assert (current.tap, retired.tap, future.tap) == (None, None, None)


def test_a_pool_tap_sees_what_its_connections_deliver(server: MockMassiveServer, pools) -> None:
    pool = pools(url=server.url).start()
    seen: list[tuple[str, int]] = []
    pool.set_tap(lambda consumer, item: seen.append((consumer.name, item[0])))
    pool.subscribe("T.A")
    pool.wait_ready(5)
    client = pool.connections[0]
    drain_all(client)
    seen.clear()
    server.publish([trade("A", 1)])
    assert wait_until(lambda: any(isinstance(e, mrt.EquityTrade) for e in client.drain()), 10)
    assert (client.name, 0) in seen  # kind 0: a data frame, as queued
