"""ConnectionPool against MockMassiveServer with its per-key connection limit on."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest

import massive_rt as mrt
from massive_rt.connection import MassiveWebSocketClient
from massive_rt.pool import ConnectionPool
from massive_rt.testing import MockMassiveServer
from tests.conftest import wait_until
from tests.support import FAST, KEY


def trade(sym: str, q: int = 0) -> dict[str, object]:
    return {"ev": "T", "sym": sym, "p": 10.0 + q, "s": 100, "t": 1, "q": q}


@pytest.fixture
def server() -> Iterator[MockMassiveServer]:
    with MockMassiveServer(api_keys={KEY}, max_connections=3, evict="newest") as srv:
        yield srv


def collect(pool: ConnectionPool, want: int, timeout: float = 5.0) -> list[mrt.Event]:
    """Drain every connection of the pool until ``want`` market events arrived."""
    got: list[mrt.Event] = []
    deadline = time.monotonic() + timeout
    while sum(isinstance(e, mrt.MarketEvent) for e in got) < want and time.monotonic() < deadline:
        for client in pool.connections:
            got.extend(client.drain())
        if sum(isinstance(e, mrt.MarketEvent) for e in got) < want:
            threading.Event().wait(0.005)
    return got


def trades(events: list[mrt.Event]) -> list[tuple[str, int]]:
    return [(e.symbol, e.sequence_number) for e in events if isinstance(e, mrt.EquityTrade)]


# ----------------------------------------------------------------------------- lifecycle


class TestPoolLifecycle:
    def test_pool_initialization(self, make_pool) -> None:
        pool = make_pool(api_key="SECRET-KEY-123")
        assert pool.connections == ()
        assert pool.stats().connections == 0
        assert "SECRET-KEY-123" not in repr(pool)
        with pytest.raises(mrt.ConfigurationError, match="max_connections"):
            ConnectionPool(api_key=KEY, max_connections=0)
        with pytest.raises(mrt.ConfigurationError, match="max_subscriptions_per_connection"):
            ConnectionPool(api_key=KEY, max_subscriptions_per_connection=0)
        with pytest.raises(mrt.ConfigurationError, match="client_options"):
            ConnectionPool(api_key=KEY, client_options={"market": "crypto"})

    def test_pool_acquire_connection(self, server: MockMassiveServer, make_pool) -> None:
        pool = make_pool().start()
        client = pool.acquire("stocks", timeout=5)
        client.wait_ready(5)
        assert client.state is mrt.ConnectionState.STREAMING
        assert client.market is mrt.Market.STOCKS
        assert server.wait_for_connections(1, 5)
        assert pool.stats().leases == 1

    def test_pool_reuse_connection(self, server: MockMassiveServer, make_pool) -> None:
        pool = make_pool().start()
        first = pool.acquire("stocks")
        pool.release(first)
        second = pool.acquire("stocks")
        assert second is first
        assert len(pool.connections) == 1

    def test_pool_respects_max_connections(self, server: MockMassiveServer, make_pool) -> None:
        pool = make_pool(max_connections=1).start()
        stocks = pool.acquire("stocks")
        with pytest.raises(mrt.WaitTimeoutError, match="1/1 connections in use"):
            pool.acquire("crypto", timeout=0.2)
        result: list[MassiveWebSocketClient] = []
        waiter = threading.Thread(target=lambda: result.append(pool.acquire("crypto", timeout=5)),
                                  name="test-waiter", daemon=True)  # fmt: skip
        waiter.start()
        pool.release(stocks, close=True)  # frees the slot: the waiting acquire proceeds
        waiter.join(5)
        assert result
        assert result[0].market is mrt.Market.CRYPTO
        assert server.max_concurrent(KEY) == 1

    def test_pool_cleanup(self, server: MockMassiveServer, make_pool) -> None:
        pool = make_pool(max_subscriptions_per_connection=1).start()
        pool.subscribe("T.AAPL", "T.MSFT", "T.NVDA")
        pool.wait_ready(5)
        clients = pool.connections
        assert len(clients) == 3
        pool.stop()
        pool.stop()
        assert all(c.state is mrt.ConnectionState.STOPPED for c in clients)
        assert server.wait_for(lambda: not server.active_connections(), 5)
        with pytest.raises(mrt.ClientClosedError):
            pool.subscribe("T.TSLA")

    @pytest.mark.allow_errors(
        r"failed: gave up after \d+ consecutive failed attempts; last: server closed the TCP connection",
        logger="massive_rt.connection",
    )
    def test_pool_health_check_replaces_a_failed_connection(self, server: MockMassiveServer, make_pool) -> None:
        pool = make_pool(client_options={"reconnect": mrt.ReconnectPolicy(max_attempts=0)}).start()
        pool.subscribe("T.AAPL", "Q.AAPL")
        pool.wait_ready(5)
        old = pool.connections[0]
        server.kick(server.active_connections()[0].id)  # max_attempts=0: the client gives up → FAILED
        assert wait_until(lambda: pool.connections and pool.connections[0] is not old, 5)
        replacement = pool.connections[0]
        assert replacement.name == old.name
        assert old.state is mrt.ConnectionState.FAILED
        replacement.wait_ready(5)
        assert replacement.subscriptions == {"T.AAPL", "Q.AAPL"}
        assert pool.stats().recycled == 1
        assert server.wait_for_subscribed(["T.AAPL", "Q.AAPL"], 5)
        recycled = [e for e in replacement.drain() if isinstance(e, mrt.StatusMessage) and e.status == "recycled"]
        assert recycled


# ----------------------------------------------------------------------------- placement


class TestPlacement:
    def test_two_hundred_channels_with_a_cap_of_one_hundred_make_two_balanced_connections(
        self, server: MockMassiveServer, make_pool
    ) -> None:
        pool = make_pool(max_subscriptions_per_connection=100).start()
        placed = pool.subscribe(*[f"T.S{i:03d}" for i in range(200)])
        assert Counter(placed.values()) == dict.fromkeys({c.name for c in pool.connections}, 100)
        assert len(pool.connections) == 2
        pool.wait_ready(5)
        assert server.wait_for(
            lambda: sorted(len(c.subscriptions) for c in server.active_connections()) == [100, 100], 5
        )

    def test_overlapping_subscriptions_deliver_each_event_once(self, server: MockMassiveServer, make_pool) -> None:
        pool = make_pool(max_subscriptions_per_connection=2).start()
        pool.subscribe("T.AAPL", "T.MSFT")
        pool.subscribe("T.AAPL", "T.GOOG")  # AAPL is already placed: not placed again
        assert pool.assignment("T.AAPL") is not None
        assert sum("T.AAPL" in channels for channels in pool.subscriptions.values()) == 1
        pool.wait_ready(5)
        server.publish([trade("AAPL", 1), trade("MSFT", 2), trade("GOOG", 3)])
        events = collect(pool, 3)
        assert sorted(trades(events)) == [("AAPL", 1), ("GOOG", 3), ("MSFT", 2)]
        threading.Event().wait(0.05)
        assert not trades([e for c in pool.connections for e in c.drain()])  # no duplicates arrive late

    def test_full_pool_refuses_with_the_channels_that_did_not_fit(self, make_pool) -> None:
        pool = make_pool(max_connections=1, max_subscriptions_per_connection=2)
        pool.subscribe("T.A", "T.B")
        with pytest.raises(mrt.SubscriptionError) as info:
            pool.subscribe("T.C", "T.D", "T.A")
        assert info.value.channels == ("T.C", "T.D")
        assert pool.assignment("T.C") is None  # all or nothing
        assert pool.subscriptions == {pool.connections[0].name: ("T.A", "T.B")}

    def test_options_quotes_are_capped_at_one_thousand_contracts_per_connection(self, make_pool) -> None:
        pool = make_pool(market="options")
        contracts = [f"Q.O:SPY2412{i:04d}C00500000" for i in range(1001)]
        placed = pool.subscribe(*contracts)
        assert sorted(Counter(placed.values()).values()) == [1, 1000]
        pool.subscribe("T.O:SPY241220C00500000")
        assert len(pool.connections) == 2

    def test_unsubscribe_removes_the_channel_from_its_owner(self, server: MockMassiveServer, make_pool) -> None:
        pool = make_pool().start()
        pool.subscribe("T.AAPL", "T.MSFT")
        owner = pool.assignment("T.AAPL")
        assert pool.unsubscribe("T.AAPL", "T.NOPE") == ("T.AAPL",)
        assert pool.assignment("T.AAPL") is None
        client = next(c for c in pool.connections if c.name == owner)
        assert client.subscriptions == {"T.MSFT"}

    def test_a_pool_spans_several_markets(self, server: MockMassiveServer, make_pool) -> None:
        pool = make_pool().start()
        pool.subscribe("T.AAPL")
        pool.subscribe("XT.BTC-USD", market="crypto")
        pool.wait_ready(5)
        markets = sorted(c.market.value for c in pool.connections)
        assert markets == ["crypto", "stocks"]
        server.publish([{"ev": "XT", "pair": "BTC-USD", "p": 1.0}], market="crypto")
        events = collect(pool, 1)
        assert [e.pair for e in events if isinstance(e, mrt.CryptoTrade)] == ["BTC-USD"]

    def test_idle_connections_are_closed_after_idle_timeout(self, server: MockMassiveServer, make_pool) -> None:
        pool = make_pool(idle_timeout=0.1).start()
        pool.subscribe("T.AAPL")
        pool.wait_ready(5)
        pool.unsubscribe("T.AAPL")
        assert wait_until(lambda: not pool.connections, 5)
        assert server.wait_for(lambda: not server.active_connections(), 5)


# ----------------------------------------------------------------------------- failures


class TestFailures:
    def test_killing_one_of_three_leaves_the_others_streaming(self, server: MockMassiveServer, make_pool) -> None:
        pool = make_pool(max_subscriptions_per_connection=1).start()
        pool.subscribe("T.A", "T.B", "T.C")
        pool.wait_ready(5)
        for client in pool.connections:
            client.drain()
        victim_name = pool.assignment("T.B")
        victim_id = next(c.id for c in server.active_connections() if c.subscriptions == {"T.B"})
        server.kick(victim_id)
        assert server.wait_for(lambda: any(c.subscriptions == {"T.B"} and c.id != victim_id
                                           for c in server.active_connections()), 5)  # fmt: skip
        server.publish([trade("A", 1), trade("B", 2), trade("C", 3)])
        events = collect(pool, 3)
        assert sorted(trades(events)) == [("A", 1), ("B", 2), ("C", 3)]
        lost = {e.connection for e in events if isinstance(e, mrt.StatusMessage) and e.status == "disconnected"}
        assert lost <= {victim_name}  # the other two never dropped
        assert server.max_concurrent(KEY) <= 3

    def test_killing_all_recovers_all_and_nothing_is_subscribed_twice(
        self, server: MockMassiveServer, make_pool
    ) -> None:
        pool = make_pool(max_subscriptions_per_connection=2).start()
        pool.subscribe("T.A", "T.B", "T.C", "T.D", "T.E", "T.F")
        pool.wait_ready(5)
        before = len(server.connections)
        server.drop_all()
        assert server.wait_for(
            lambda: (
                len(server.connections) == before + 3
                and sorted(len(c.subscriptions) for c in server.active_connections()) == [2, 2, 2]
            ),
            5,
        )
        for info in server.connections[before:]:
            params = [
                p for m in server.received if m.connection == info.id and m.action == "subscribe" for p in m.params
            ]
            assert len(params) == len(set(params)) == 2
        server.publish([trade(s) for s in "ABCDEF"])
        assert sorted(s for s, _ in trades(collect(pool, 6))) == list("ABCDEF")

    @pytest.mark.allow_errors(
        r"failed: gave up after \d+ consecutive failed attempts; last: server closed the TCP connection",
        logger="massive_rt.connection",
    )
    def test_recycling_never_exceeds_the_account_limit(self, server: MockMassiveServer, make_pool) -> None:
        pool = make_pool(max_subscriptions_per_connection=1,
                         client_options={"reconnect": mrt.ReconnectPolicy(max_attempts=0)}).start()  # fmt: skip
        pool.subscribe("T.A", "T.B", "T.C")
        pool.wait_ready(5)
        for _ in range(3):
            server.drop_all()
            assert wait_until(
                lambda: (
                    pool.stats().recycled >= 3
                    and all(c.state is mrt.ConnectionState.STREAMING for c in pool.connections)
                ),
                10,
            )
            recycled = pool.stats().recycled
            assert recycled >= 3
        assert server.max_concurrent(KEY) <= 3
        assert not any(c.evicted for c in server.connections)

    @pytest.mark.allow_errors(r"failed: authentication failed$", logger="massive_rt.connection")
    def test_refused_key_is_reported_not_hammered(self, server: MockMassiveServer, make_pool) -> None:
        pool = make_pool(api_key="bad-key").start()
        pool.subscribe("T.AAPL")
        client = pool.connections[0]
        assert wait_until(lambda: client.state is mrt.ConnectionState.FAILED, 5)
        assert isinstance(client.error, mrt.AuthenticationError)
        pool.check_health()
        pool.check_health()
        assert pool.connections[0] is client
        assert len(server.connections) == 1

    @pytest.mark.allow_errors(
        r"failed: refused at connect: the account's connection limit is reached",
        logger="massive_rt.connection",
    )
    def test_max_connections_leaves_the_connection_failed_by_default(self, make_pool) -> None:
        with MockMassiveServer(api_keys={KEY}, max_connections=1, evict="newest") as strict:
            other_service = MassiveWebSocketClient(api_key=KEY, url=strict.url())
            try:
                other_service.start()
                other_service.wait_ready(5)
                pool = make_pool(url=strict.url).start()
                pool.subscribe("T.AAPL")
                client = pool.connections[0]
                assert wait_until(lambda: client.state is mrt.ConnectionState.FAILED, 5)
                assert isinstance(client.error, mrt.ConnectionLimitError)
                for _ in range(5):
                    assert pool.check_health() == 0
                assert len(strict.connections) == 2  # one refused attempt, never retried
                assert pool.connections == (client,)
                assert isinstance(pool.error, mrt.ConnectionLimitError)
                stats = pool.stats()
                assert (stats.failed, stats.degraded, stats.healthy) == ((client.name,), False, False)
                assert "max_connections" in (stats.health_reason or "") or "connection" in (stats.health_reason or "")
                with pytest.raises(mrt.ConnectionLimitError):
                    pool.wait_ready(1)
                statuses = [e.status for e in client.drain() if isinstance(e, mrt.StatusMessage)]
                assert "failed" in statuses
                assert "limit_cooldown" not in statuses
                assert other_service.state is mrt.ConnectionState.STREAMING
            finally:
                other_service.stop()

    @pytest.mark.allow_errors(
        r"failed: refused at connect: the account's connection limit is reached",
        logger="massive_rt.connection",
    )
    def test_max_connections_retry_is_opt_in_with_a_long_cooldown(self, make_pool) -> None:
        with MockMassiveServer(api_keys={KEY}, max_connections=1, evict="newest") as strict:
            other_service = MassiveWebSocketClient(api_key=KEY, url=strict.url())
            try:
                other_service.start()
                other_service.wait_ready(5)
                pool = make_pool(url=strict.url, on_limit=mrt.LimitRetry(cooldown=30.0)).start()
                pool.subscribe("T.AAPL")
                client = pool.connections[0]
                assert wait_until(lambda: client.state is mrt.ConnectionState.FAILED, 5)
                for _ in range(5):
                    pool.check_health()
                assert len(strict.connections) == 2  # one refused attempt, then a 30 s cooldown
                cooldown = [
                    e for e in client.drain() if isinstance(e, mrt.StatusMessage) and e.status == "limit_cooldown"
                ]
                assert [e.message for e in cooldown] == [
                    "max_connections: retrying in 30s (at most 3 retries an hour: on_limit)"
                ]
                assert pool.error is None  # it will retry: not failed for good
                assert other_service.state is mrt.ConnectionState.STREAMING
            finally:
                other_service.stop()

    @pytest.mark.allow_errors(
        r"failed: refused at connect: the account's connection limit is reached",
        logger="massive_rt.connection",
    )
    def test_limit_retries_stop_at_the_hourly_budget(self, make_pool) -> None:
        """Two holders of one key fight at most ``per_hour`` times an hour, whatever the cooldown."""
        with MockMassiveServer(api_keys={KEY}, max_connections=1, evict="newest") as strict:
            other_service = MassiveWebSocketClient(api_key=KEY, url=strict.url())
            try:
                other_service.start()
                other_service.wait_ready(5)
                pool = make_pool(url=strict.url, on_limit=mrt.LimitRetry(cooldown=0.02, per_hour=2)).start()
                pool.subscribe("T.AAPL")
                seen: list[str] = []

                def budget_spent() -> bool:
                    for conn in pool.clients():  # retired connections too: the status is on the refused one
                        seen.extend(e.message for e in conn.drain()
                                    if isinstance(e, mrt.StatusMessage) and e.status == "limit_cooldown")  # fmt: skip
                    return len(seen) == 3

                assert wait_until(budget_spent, 10)
                assert [m.split(" (")[0] for m in seen[:2]] == [
                    "max_connections: retrying in 0.02s",  # the cooldown, then twice it
                    "max_connections: retrying in 0.04s",
                ]
                assert seen[2].startswith("max_connections: retrying in 3600s")  # the third waits out the hour
                for _ in range(5):
                    pool.check_health()
                assert len(strict.connections) == 1 + 3  # the holder, the first attempt and two retries
                assert pool.stats().recycled == 2
            finally:
                other_service.stop()

    @pytest.mark.allow_errors(
        r"failed: refused at connect: the account's connection limit is reached",
        logger="massive_rt.connection",
    )
    @pytest.mark.allow_errors(
        r"failed: evicted after streaming \S+: another connection on this key took the slot",
        logger="massive_rt.connection",
    )
    @pytest.mark.parametrize("retry", [False, True], ids=["fail", "retry"])
    def test_two_pools_on_one_key_do_not_fight(self, retry: bool) -> None:
        """Massive evicts the older connection; today two pools evicted each other 6 times in 8 s."""
        limit = mrt.LimitRetry(cooldown=0.02, per_hour=2) if retry else "fail"
        with MockMassiveServer(api_keys={KEY}, max_connections=1, evict="oldest") as srv:
            first = ConnectionPool(api_key=KEY, url=srv.url, health_interval=0.01, on_limit=limit,
                                   client_options={"reconnect": FAST})  # fmt: skip
            second = ConnectionPool(api_key=KEY, url=srv.url, health_interval=0.01, on_limit=limit,
                                    client_options={"reconnect": FAST})  # fmt: skip
            try:
                first.subscribe("T.AAPL")
                first.start().wait_ready(5)
                second.subscribe("T.MSFT")
                second.start()
                budget = 1 + (2 if retry else 0)  # each pool: its first connection, plus its hourly retries

                def settled() -> bool:
                    for pool in (first, second):
                        for _ in range(3):
                            pool.check_health()
                    return len(srv.connections) >= 2 * budget or (
                        not retry and any(p.stats().failed for p in (first, second))
                    )

                assert wait_until(settled, 10)
                # Past the budget nobody reconnects, however often the supervisors look.
                for _ in range(20):
                    first.check_health()
                    second.check_health()
                assert len(srv.connections) <= 2 * budget
                assert srv.wait_for(lambda: len(srv.active_connections()) <= 1, 5)
            finally:
                first.stop()
                second.stop()

    @pytest.mark.allow_errors(
        r"failed: gave up after \d+ consecutive failed attempts; last: server closed the TCP connection",
        logger="massive_rt.connection",
    )
    def test_stop_during_recycling(self, server: MockMassiveServer, make_pool) -> None:
        pool = make_pool(max_subscriptions_per_connection=1,
                         client_options={"reconnect": mrt.ReconnectPolicy(max_attempts=0)}).start()  # fmt: skip
        pool.subscribe("T.A", "T.B", "T.C")
        pool.wait_ready(5)
        server.drop_all()
        assert wait_until(lambda: pool.stats().recycled >= 1, 5)
        pool.stop(timeout=5)
        assert all(c.state.is_terminal for c in pool.connections)
        assert server.wait_for(lambda: not server.active_connections(), 5)


# ----------------------------------------------------------------------------- concurrency


class TestPoolConcurrency:
    def test_concurrent_connection_acquisition(self, server: MockMassiveServer, make_pool) -> None:
        pool = make_pool().start()
        barrier = threading.Barrier(10)
        leased: list[MassiveWebSocketClient] = []
        lock = threading.Lock()

        def take() -> None:
            barrier.wait(5)
            client = pool.acquire("stocks", timeout=5)
            with lock:
                leased.append(client)

        threads = [threading.Thread(target=take, name=f"test-acquire-{i}", daemon=True) for i in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert len(leased) == 10
        assert len({id(c) for c in leased}) == 1  # shared, not one socket per caller
        assert pool.stats().leases == 10
        assert server.wait_for_connections(1, 5)
        assert server.max_concurrent(KEY) == 1

    def test_concurrent_subscription_routing(self, server: MockMassiveServer, make_pool) -> None:
        pool = make_pool(max_subscriptions_per_connection=1).start()
        threads = [threading.Thread(target=pool.subscribe, args=(ch,), name=f"test-sub-{ch}", daemon=True)
                   for ch in ("T.AAPL", "T.GOOGL")]  # fmt: skip
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(5)
        assert pool.assignment("T.AAPL") != pool.assignment("T.GOOGL")
        pool.wait_ready(5)
        server.publish([trade("AAPL", 1), trade("GOOGL", 2)])
        events = collect(pool, 2)
        routed = {e.symbol: e.connection for e in events if isinstance(e, mrt.EquityTrade)}
        assert routed == {"AAPL": pool.assignment("T.AAPL"), "GOOGL": pool.assignment("T.GOOGL")}

    def test_connection_count_tracking(self, server: MockMassiveServer, make_pool) -> None:
        pool = make_pool(max_subscriptions_per_connection=2).start()
        pool.subscribe("T.A", "T.B", "T.C")
        pool.wait_ready(5)
        stats = pool.stats()
        assert stats.connections == 2 == len(server.active_connections())
        assert stats.channels == 3
        assert sorted(s.subscriptions for s in stats.per_connection) == [1, 2]

    def test_fifty_threads_churning_end_consistent_without_deadlock(self, server: MockMassiveServer, make_pool) -> None:
        pool = make_pool(max_subscriptions_per_connection=200).start()
        barrier = threading.Barrier(50)
        errors: list[BaseException] = []

        def churn(worker: int) -> None:
            try:
                barrier.wait(5)
                for i in range(10):
                    pool.subscribe(f"T.W{worker}N{i}")
                    if i % 3 == 0:
                        pool.unsubscribe(f"T.W{worker}N{i}")
                    if i % 4 == 0:
                        pool.release(pool.acquire("stocks", timeout=5))
            except mrt.SubscriptionError:
                pass  # the pool may be full; that is an allowed outcome, not an inconsistency
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=churn, args=(w,), name=f"test-churn-{w}", daemon=True) for w in range(50)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        assert not any(t.is_alive() for t in threads), "deadlock"
        assert not errors
        placed = pool.subscriptions
        everywhere = [c for channels in placed.values() for c in channels]
        assert len(everywhere) == len(set(everywhere))  # never on two connections
        for client in pool.connections:
            assert client.subscriptions == set(placed[client.name])
        assert len(pool.connections) <= 3
        assert pool.stats().leases == 0


# ----------------------------------------------------------------------------- API edges


class TestPoolApiEdges:
    def test_context_manager_starts_and_stops(self, server: MockMassiveServer) -> None:
        with ConnectionPool(api_key=KEY, max_connections=2, url=server.url) as pool:
            assert pool.max_connections == 2
            pool.subscribe("T.AAPL")
            pool.wait_ready(5)
        assert all(c.state is mrt.ConnectionState.STOPPED for c in pool.connections)
        with pytest.raises(mrt.ClientClosedError):
            pool.start()

    def test_wait_ready_names_the_connections_that_are_not_ready(self, make_pool) -> None:
        pool = make_pool(url="ws://127.0.0.1:9/{market}").start()  # discard port: nothing listens
        pool.subscribe("T.AAPL")
        with pytest.raises(mrt.WaitTimeoutError, match="pool-stocks-1"):
            pool.wait_ready(0.2)

    def test_unsubscribe_all_empties_every_connection(self, server: MockMassiveServer, make_pool) -> None:
        pool = make_pool(max_subscriptions_per_connection=2).start()
        pool.subscribe("T.A", "T.B", "T.C", "T.*", market="stocks")
        pool.subscribe("XT.BTC-USD", market="crypto")
        pool.wait_ready(5)
        assert pool.unsubscribe_all() == 5
        assert all(not channels for channels in pool.subscriptions.values())
        assert server.wait_for(lambda: all(not c.subscriptions for c in server.active_connections()), 5)

    def test_releasing_what_was_not_leased_is_refused(self, make_pool) -> None:
        pool = make_pool().start()
        client = pool.acquire("stocks")
        pool.release(client)
        with pytest.raises(mrt.ConfigurationError, match="not leased"):
            pool.release(client)
        stranger = MassiveWebSocketClient(api_key=KEY, name="stranger")
        with pytest.raises(mrt.ConfigurationError, match="not a connection of pool"):
            pool.release(stranger)
        stranger.stop()

    def test_health_check_on_a_stopped_pool_does_nothing(self, make_pool) -> None:
        pool = make_pool().start()
        pool.subscribe("T.AAPL")
        pool.stop()
        assert pool.check_health() == 0

    @pytest.mark.allow_errors(r"^pool pool: health check failed$", logger="massive_rt.pool")
    def test_a_supervisor_bug_is_logged_and_survived(self, make_pool, monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
        calls = threading.Semaphore(0)

        def broken() -> int:
            calls.release()
            raise RuntimeError("bug in a health check")

        pool = make_pool(health_interval=0.01)
        monkeypatch.setattr(pool, "check_health", broken)
        pool.start()
        assert calls.acquire(timeout=5)
        assert calls.acquire(timeout=5)  # still running after the first failure
        pool.stop()
        assert "health check failed" in caplog.text
