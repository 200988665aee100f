"""ConnectionPool.check_health called directly (with and without a listener), the limit cooldown's
status, and the wildcard rule upstream: a ticker a placed ``T.*`` covers is not sent, and is sent
again when ``T.*`` goes."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator

import pytest

import massive_rt as mrt
from massive_rt.connection import MassiveWebSocketClient
from massive_rt.pool import ConnectionPool
from massive_rt.testing import MockMassiveServer
from tests.conftest import wait_until
from tests.support import KEY

GIVE_UP = mrt.ReconnectPolicy(max_attempts=0)
NEVER = 3600.0  # a supervisor that never looks on its own: the test calls check_health itself
# A connection that gives up (max_attempts=0) logs its end at ERROR, on purpose: the pool replaces it.
GAVE_UP = pytest.mark.allow_errors(r"^\[pool-stocks-1\] failed: gave up after 1 consecutive failed attempts",
                                   logger="massive_rt.connection")  # fmt: skip


@pytest.fixture
def server() -> Iterator[MockMassiveServer]:
    with MockMassiveServer(api_keys={KEY}, max_connections=3, evict="newest") as srv:
        yield srv


@pytest.fixture
def make_pool(make_pool: Callable[..., ConnectionPool]) -> Callable[..., ConnectionPool]:
    """The shared factory with the supervisor's checks off: these tests call ``check_health`` themselves."""
    return functools.partial(make_pool, health_interval=NEVER)


class Listener:
    """Counts the adapter's wake-ups."""

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            self.calls += 1


def fail_the_connection(server: MockMassiveServer, pool: ConnectionPool) -> MassiveWebSocketClient:
    """Kick the pool's only connection; with ``max_attempts=0`` it gives up (FAILED) for the pool to replace."""
    client = pool.connections[0]
    server.kick(server.active_connections()[0].id)
    assert wait_until(lambda: client.state is mrt.ConnectionState.FAILED, 5)
    return client


# ----------------------------------------------------------------------------- check_health


class TestCheckHealthDirectly:
    def test_nothing_to_do_without_a_listener(self, make_pool) -> None:
        pool = make_pool().start()
        pool.subscribe("T.AAPL")
        pool.wait_ready(5)
        assert pool.check_health() == 0
        assert pool.stats().recycled == 0

    @GAVE_UP
    def test_a_failed_connection_is_recycled_without_a_listener(self, server: MockMassiveServer, make_pool) -> None:
        pool = make_pool(client_options={"reconnect": GIVE_UP}).start()
        pool.subscribe("T.AAPL")
        pool.wait_ready(5)
        old = fail_the_connection(server, pool)

        assert pool.check_health() == 1  # no adapter: no listener to wake, and no error either

        replacement = pool.connections[0]
        assert replacement is not old
        assert replacement.name == old.name
        assert pool.stats().recycled == 1
        replacement.wait_ready(5)
        assert server.wait_for_subscribed(["T.AAPL"], 5)
        assert pool.check_health() == 0

    @GAVE_UP
    def test_the_listener_is_woken_only_when_something_changed(self, server: MockMassiveServer, make_pool) -> None:
        pool = make_pool(client_options={"reconnect": GIVE_UP}).start()
        listener = Listener()
        pool.set_listener(listener)
        pool.subscribe("T.AAPL")
        pool.wait_ready(5)
        before = listener.calls
        assert pool.check_health() == 0
        assert pool.check_health() == 0
        assert listener.calls == before  # nothing recycled or closed: no wake-up from check_health

        fail_the_connection(server, pool)
        before = listener.calls
        assert pool.check_health() == 1
        assert listener.calls >= before + 1

    def test_an_idle_connection_is_closed_without_a_listener(self, server: MockMassiveServer, make_pool) -> None:
        pool = make_pool(idle_timeout=0.0).start()
        client = pool.acquire()
        client.wait_ready(5)
        pool.release(client)

        assert pool.check_health() == 1

        assert pool.connections == ()
        assert client.state is mrt.ConnectionState.STOPPED
        assert server.wait_for(lambda: not server.active_connections(), 5)

    @GAVE_UP
    def test_a_supervised_pool_recycles_without_logging_an_error(self, server: MockMassiveServer, make_pool) -> None:
        """The supervisor swallows what check_health raises (at ERROR): the autouse guard fails on it."""
        pool = make_pool(health_interval=0.02, client_options={"reconnect": GIVE_UP}).start()
        pool.subscribe("T.AAPL")
        pool.wait_ready(5)
        old = fail_the_connection(server, pool)
        assert wait_until(lambda: pool.connections[0] is not old, 5)
        pool.connections[0].wait_ready(5)


# ----------------------------------------------------------------------------- limit cooldown


@pytest.mark.allow_errors(r"^\[pool-stocks-1\] failed: refused at connect: the account's connection limit",
                         logger="massive_rt.connection")  # fmt: skip
def test_the_limit_cooldown_status_names_the_wait_and_the_budget(make_pool) -> None:
    with MockMassiveServer(api_keys={KEY}, max_connections=1, evict="newest") as strict:
        holder = MassiveWebSocketClient(api_key=KEY, url=strict.url())
        try:
            holder.start()
            holder.wait_ready(5)
            pool = make_pool(url=strict.url, on_limit=mrt.LimitRetry(cooldown=90.0, max_cooldown=7200.0, per_hour=4))
            pool.start()
            pool.subscribe("T.AAPL")
            client = pool.connections[0]
            assert wait_until(lambda: client.state is mrt.ConnectionState.FAILED, 5)
            assert pool.check_health() == 0  # cooling down: nothing recycled yet
            assert pool.check_health() == 0
            statuses = [e for e in client.drain() if isinstance(e, mrt.StatusMessage) and e.status == "limit_cooldown"]
            assert [e.message for e in statuses] == [
                "max_connections: retrying in 90s (at most 4 retries an hour: on_limit)"
            ]
        finally:
            holder.stop()


# ----------------------------------------------------------------------------- wildcards upstream


class TestWildcardUpstream:
    def test_tickers_a_wildcard_covers_leave_the_upstream_subscription(
        self, server: MockMassiveServer, make_pool
    ) -> None:
        pool = make_pool(max_connections=1).start()
        pool.subscribe("T.AAPL", "T.MSFT", "Q.AAPL")
        pool.wait_ready(5)
        client = pool.connections[0]
        assert server.wait_for_subscribed(["T.AAPL", "T.MSFT", "Q.AAPL"], 5)

        pool.subscribe("T.*")

        assert client.subscriptions == {"T.*", "Q.AAPL"}
        assert server.wait_for(lambda: server.active_connections()[0].subscriptions == {"T.*", "Q.AAPL"}, 5)
        # Still placed (on the wildcard's connection): they come back when the wildcard goes.
        assert pool.assignment("T.AAPL") == client.name
        assert set(pool.subscriptions[client.name]) == {"T.AAPL", "T.MSFT", "Q.AAPL", "T.*"}

        pool.unsubscribe("T.*")

        assert client.subscriptions == {"T.AAPL", "T.MSFT", "Q.AAPL"}
        assert server.wait_for(
            lambda: server.active_connections()[0].subscriptions == {"T.AAPL", "T.MSFT", "Q.AAPL"}, 5
        )

    def test_a_ticker_subscribed_under_a_placed_wildcard_is_not_sent(
        self, server: MockMassiveServer, make_pool
    ) -> None:
        pool = make_pool(max_connections=2, max_subscriptions_per_connection=1).start()
        placed = pool.subscribe("T.*")
        pool.wait_ready(5)
        owner = placed["T.*"]

        assert pool.subscribe("T.NVDA") == {"T.NVDA": owner}  # rides on the wildcard, despite the cap of 1

        (client,) = pool.connections
        assert client.subscriptions == {"T.*"}
        pool.unsubscribe("T.*")
        assert client.subscriptions == {"T.NVDA"}
        assert server.wait_for_subscribed(["T.NVDA"], 5)

    @GAVE_UP
    def test_a_recycled_connection_subscribes_only_the_effective_channels(
        self, server: MockMassiveServer, make_pool
    ) -> None:
        pool = make_pool(max_connections=1, client_options={"reconnect": GIVE_UP}).start()
        pool.subscribe("T.AAPL", "T.*", "AM.MSFT")
        pool.wait_ready(5)
        fail_the_connection(server, pool)

        assert pool.check_health() == 1

        replacement = pool.connections[0]
        assert replacement.subscriptions == {"T.*", "AM.MSFT"}
        replacement.wait_ready(5)
        wanted = [{"T.*", "AM.MSFT"}]
        assert server.wait_for(lambda: [c.subscriptions for c in server.active_connections()] == wanted, 5)
