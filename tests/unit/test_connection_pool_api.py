"""ConnectionPool's API pinned exactly, mostly without a server: its arguments and their refusals,
placement (wildcards, caps, the options quote cap, the account limit), leases, ``clients`` and
``version``, ``stats``, ``wait_ready`` and ``stop``. A pool that is not started creates its
connections without starting them, so placement is tested here without any socket."""

from __future__ import annotations

import threading
import types
from collections.abc import Callable, Iterator

import pytest

import massive_rt as mrt
from massive_rt.connection import MassiveWebSocketClient
from massive_rt.enums import ConnectionState
from massive_rt.pool import ConnectionPool
from massive_rt.testing import MockMassiveServer
from tests.conftest import wait_until
from tests.support import FAST, KEY

MARKETS = ("'stocks', 'options', 'forex', 'crypto', 'indices', 'futures', 'futures/cme', 'futures/cbot', "
           "'futures/nymex', 'futures/comex'")  # fmt: skip
GAVE_UP = pytest.mark.allow_errors(r"failed: gave up after 1 consecutive failed attempts",
                                   logger="massive_rt.connection")  # fmt: skip


@pytest.fixture
def pools() -> Iterator[Callable[..., ConnectionPool]]:
    made: list[ConnectionPool] = []

    def make(**kwargs: object) -> ConnectionPool:
        kwargs.setdefault("api_key", KEY)
        kwargs.setdefault("health_interval", 3600.0)
        pool = ConnectionPool(**kwargs)  # type: ignore[arg-type]
        made.append(pool)
        return pool

    yield make
    for pool in made:
        pool.stop()


def refusal(**kwargs: object) -> tuple[str, str | None]:
    kwargs.setdefault("api_key", KEY)
    with pytest.raises(mrt.ConfigurationError) as caught:
        ConnectionPool(**kwargs)  # type: ignore[arg-type]
    return caught.value.message, caught.value.field


# ----------------------------------------------------------------------------- arguments


def test_the_defaults() -> None:
    default = ConnectionPool(api_key=KEY)
    assert (default.name, default.max_connections) == ("pool", 1)
    assert default._health_interval == 1.0  # a supervisor check every second
    assert default._dedupe is None  # dedupe is opt-in
    assert default.stats().duplicates_suppressed == 0
    default.stop()


@pytest.mark.parametrize(
    ("kwargs", "message", "field"),
    [
        ({"max_connections": 0}, "max_connections=0 must be an int >= 1", "max_connections"),
        ({"max_subscriptions_per_connection": 0}, "max_subscriptions_per_connection=0 must be an int >= 1",
         "max_subscriptions_per_connection"),
        ({"health_interval": 0}, "health_interval=0 must be a finite number > 0", "health_interval"),
        ({"idle_timeout": -1}, "idle_timeout=-1 must be a finite number >= 0", "idle_timeout"),
        ({"name": "a b"}, "name='a b' must be a non-empty string without whitespace", "name"),
        ({"url": 5}, "url=5 must be a URL string, a callable market -> URL, or None", "url"),
        ({"client_options": {"reconnect": 5}}, "client_options['reconnect'] must be a ReconnectPolicy",
         "client_options"),
        ({"market": "nope"}, f"market='nope' is not one of {MARKETS}", "market"),
        ({"client_options": {"zzz": 1, "bogus": 2}}, "client_options: unknown option(s) 'bogus', 'zzz'",
         "client_options"),
        ({"api_key": 5}, "api_key must be a string or None", "api_key"),
        ({"url": "http://x"}, "url='http://x' must be a ws:// or wss:// URL with a host", "url"),
        ({"feed": "bad feed"},
         "feed='bad feed' is neither a known feed nor a 'host[:port]' string (use url= for a full URL)", "feed"),
        ({"client_options": {"queue_size": 0}}, "queue_size=0 must be an int >= 1", "queue_size"),
    ],
    ids=lambda value: None if isinstance(value, dict) else "",
)  # fmt: skip
def test_each_refused_argument_says_why(kwargs: dict[str, object], message: str, field: str) -> None:
    assert refusal(**kwargs) == (message, field)


@pytest.mark.parametrize(
    "option", ["api_key", "market", "url", "name", "subscriptions", "feed", "config", "on_limit", "dedupe"]
)
def test_client_options_may_not_set_what_the_pool_sets(option: str) -> None:
    assert refusal(client_options={option: "x"}) == (f"client_options may not set {option!r}", "client_options")


def test_the_key_comes_from_the_argument_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MASSIVE_API_KEY", raising=False)
    assert refusal(api_key=None) == ("api_key is required: pass api_key= or set MASSIVE_API_KEY", "api_key")
    assert refusal(api_key="") == ("api_key is required: pass api_key= or set MASSIVE_API_KEY", "api_key")
    monkeypatch.setenv("MASSIVE_API_KEY", "from-env")
    ConnectionPool(api_key=None).stop()
    assert refusal(api_key="") == ("api_key is required: pass api_key= or set MASSIVE_API_KEY", "api_key")


def test_dedupe_makes_one_shared_filter(pools) -> None:
    assert pools(dedupe=7)._dedupe.window == 7
    assert pools(dedupe=True)._dedupe is not None
    assert pools(dedupe=False)._dedupe is None


def test_every_connection_gets_the_pools_settings(pools) -> None:
    pool = pools(url="ws://127.0.0.1:9/{market}", feed="delayed", max_connections=3)
    pool.subscribe("T.A")
    pool.subscribe("XT.BTC-USD", market="crypto")
    pool.subscribe("T.ES", market="futures/cme")
    stocks, crypto, cme = pool.connections
    assert (stocks.name, crypto.name, cme.name) == ("pool-stocks-1", "pool-crypto-2", "pool-futures-cme-3")
    assert (stocks.url, crypto.url, cme.url) == ("ws://127.0.0.1:9/stocks", "ws://127.0.0.1:9/crypto",
                                                 "ws://127.0.0.1:9/futures/cme")  # fmt: skip
    assert stocks.config.feed == "delayed"
    assert stocks.config.on_limit == "fail"  # the pool decides what a connection limit means
    assert stocks.config.dedupe == 0


def test_a_url_callable_is_asked_per_market(pools) -> None:
    asked: list[mrt.Market] = []

    def url(market: mrt.Market) -> str:
        asked.append(market)
        return f"ws://127.0.0.1:9/x-{market.value}"

    pool = pools(url=url)
    pool.subscribe("XT.BTC-USD", market="crypto")
    assert pool.connections[0].url == "ws://127.0.0.1:9/x-crypto"
    assert mrt.Market.CRYPTO in asked


# ----------------------------------------------------------------------------- placement


def test_the_validate_mode_applies_to_subscribe_unsubscribe_and_assignment(pools) -> None:
    strict = pools()
    with pytest.raises(mrt.ConfigurationError):
        strict.subscribe("ZZ.A")
    assert (strict.connections, strict.subscriptions) == ((), {})  # refused before anything was placed
    with pytest.raises(mrt.ConfigurationError):
        strict.unsubscribe("ZZ.A")
    with pytest.raises(mrt.ConfigurationError):
        strict.assignment("ZZ.A")
    loose = pools(validate_channels="off")
    assert loose.subscribe("ZZ.A") == {"ZZ.A": "pool-stocks-1"}
    assert loose.assignment("ZZ.A") == "pool-stocks-1"
    assert loose.unsubscribe("ZZ.A") == ("ZZ.A",)


def test_market_arguments_are_checked_and_used(pools) -> None:
    pool = pools(max_connections=2)
    with pytest.raises(mrt.ConfigurationError) as caught:
        pool.subscribe("T.A", market="zz")
    assert (caught.value.message, caught.value.field) == (f"market='zz' is not one of {MARKETS}", "market")
    pool.subscribe("XT.BTC-USD", market="crypto")
    assert pool.assignment("XT.BTC-USD", market="crypto") == "pool-crypto-1"
    assert pool.assignment("T.A") is None  # the default market: stocks, where nothing is placed
    assert pool.unsubscribe("XT.BTC-USD", market="crypto") == ("XT.BTC-USD",)


def test_a_full_pool_says_how_full(pools) -> None:
    pool = pools(max_connections=2, max_subscriptions_per_connection=1)
    with pytest.raises(mrt.SubscriptionError) as caught:
        pool.subscribe("T.A", "T.B", "T.C")
    assert caught.value.message == "no room for 1 channel(s) on stocks: all 2 connection(s) in use and full"
    assert caught.value.channels == ("T.C",)
    assert pool.connections == ()  # all or nothing


def test_a_new_wildcard_gathers_the_tickers_it_covers_from_other_connections(pools) -> None:
    pool = pools(max_connections=4, max_subscriptions_per_connection=1, validate_channels="off")
    pool.subscribe("T.A")
    pool.subscribe("Q.A")
    pool.subscribe("AM.A")
    pool.subscribe("T.*")
    owner = pool.assignment("T.*")
    assert owner == "pool-stocks-4"
    assert pool.assignment("T.A") == owner  # moved under the wildcard
    assert pool.assignment("Q.A") == "pool-stocks-2"  # not covered: stays
    assert pool.assignment("AM.A") == "pool-stocks-3"
    assert pool.subscriptions == {"pool-stocks-1": (), "pool-stocks-2": ("Q.A",), "pool-stocks-3": ("AM.A",),
                                  "pool-stocks-4": ("T.*", "T.A")}  # fmt: skip
    assert pool.connections[3].subscriptions == {"T.*"}


def test_a_ticker_subscribed_under_a_placed_wildcard_is_assigned_to_its_connection(pools) -> None:
    pool = pools(max_connections=2, max_subscriptions_per_connection=1)
    pool.subscribe("T.*")
    assert pool.subscribe("T.NVDA") == {"T.NVDA": "pool-stocks-1"}
    assert pool.assignment("T.NVDA") == "pool-stocks-1"
    assert pool.subscriptions == {"pool-stocks-1": ("T.*", "T.NVDA")}
    assert pool.unsubscribe("T.NVDA") == ("T.NVDA",)


def test_a_wildcard_gathers_only_its_own_prefix_and_market(pools) -> None:
    pool = pools(max_connections=4, max_subscriptions_per_connection=1)
    pool.subscribe("AM.MSFT")
    pool.subscribe("T.X", market="options")
    pool.subscribe("A.*")
    assert pool.assignment("AM.MSFT") == "pool-stocks-1"  # "AM." is not "A."
    pool.subscribe("T.*")
    assert pool.assignment("T.X", market="options") == "pool-options-2"  # another market


def test_unsubscribing_what_was_never_placed_does_not_stop_the_rest(pools) -> None:
    pool = pools()
    pool.subscribe("T.A", "T.B")
    assert pool.unsubscribe("T.Z", "T.A") == ("T.A",)
    assert pool.subscriptions == {"pool-stocks-1": ("T.B",)}
    assert pool.connections[0].subscriptions == {"T.B"}


def test_options_quotes_count_against_a_cap_of_1000_per_connection(pools) -> None:
    pool = pools(max_connections=3)
    quotes = [f"Q.O:SPY2612{i:04d}C00500000" for i in range(1000)]
    pool.subscribe(*quotes[:600], market="options")
    pool.subscribe(*quotes[600:], market="options")
    assert len(pool.connections) == 1  # 1,000 quotes fit on one
    pool.subscribe("Q.O:QQQ261218C00500000", market="options")
    assert len(pool.connections) == 2
    pool.subscribe(*(f"T.O:SPY2612{i:04d}C00500000" for i in range(1200)), market="options")
    assert len(pool.connections) == 2  # trades are not capped


def test_stock_quotes_are_not_capped(pools) -> None:
    pool = pools(max_connections=2)
    pool.subscribe(*(f"Q.S{i}" for i in range(1001)))
    assert len(pool.connections) == 1


def test_one_subscribe_never_opens_more_than_max_connections(pools) -> None:
    pool = pools(max_connections=2, max_subscriptions_per_connection=1)
    pool.subscribe("T.A")
    with pytest.raises(mrt.SubscriptionError):
        pool.subscribe("T.B", "T.C")
    assert len(pool.connections) == 1


def test_version_grows_with_every_change_of_the_sources(pools) -> None:
    pool = pools(max_connections=3, max_subscriptions_per_connection=1)
    seen = [pool.version]
    pool.subscribe("T.A")
    seen.append(pool.version)
    pool.subscribe("T.B")
    seen.append(pool.version)
    lease = pool.acquire()
    seen.append(pool.version)
    pool.release(lease, close=True)
    seen.append(pool.version)
    assert seen == sorted(set(seen)), seen  # strictly increasing: never back to a value the adapter saw


# ----------------------------------------------------------------------------- leases


def test_acquire_takes_the_least_loaded_connection_counting_leases(pools) -> None:
    pool = pools(max_connections=2, max_subscriptions_per_connection=3)
    pool.subscribe("T.A", "T.B", "T.C", "T.D")  # pool-stocks-1 full, pool-stocks-2 with one
    pool.unsubscribe("T.B", "T.C")  # one channel each
    first = pool.acquire()
    second = pool.acquire()
    assert (first.name, second.name) == ("pool-stocks-1", "pool-stocks-2")  # the lease counts as load


def test_acquire_opens_a_connection_when_every_one_is_full(pools) -> None:
    pool = pools(max_connections=2, max_subscriptions_per_connection=1)
    pool.subscribe("T.A")
    leased = pool.acquire(timeout=None)
    assert leased.name == "pool-stocks-2"  # pool-stocks-1 has as many channels as its cap


def test_acquire_refuses_a_bad_timeout_and_times_out_when_full(pools) -> None:
    pool = pools(max_connections=1, max_subscriptions_per_connection=1)
    with pytest.raises(mrt.ConfigurationError):
        pool.acquire(timeout=-1)
    pool.subscribe("T.A")
    with pytest.raises(mrt.WaitTimeoutError) as caught:
        pool.acquire(timeout=0.01)
    assert caught.value.message == "no stocks connection available within 0.01s: 1/1 connections in use"


def test_the_listener_is_told_about_new_connections_only(pools) -> None:
    pool = pools(max_connections=2)
    calls: list[int] = []
    pool.set_listener(lambda: calls.append(1))
    pool.acquire()
    assert len(calls) == 1
    pool.acquire()  # the same connection again: nothing new
    assert len(calls) == 1
    pool.subscribe("T.A")  # placed on it: nothing new
    assert len(calls) == 1
    pool.subscribe("XT.BTC-USD", market="crypto")  # a new connection
    assert len(calls) == 2


def test_release_refusals_say_why(pools) -> None:
    pool = pools()
    with pytest.raises(mrt.ConfigurationError) as caught:
        pool.release("pool-stocks-1")  # type: ignore[arg-type]
    assert (caught.value.message, caught.value.field) == (
        "client='pool-stocks-1' must be a connection acquired from this pool", "client"
    )  # fmt: skip
    leased = pool.acquire()
    impostor = MassiveWebSocketClient(api_key=KEY, name=leased.name)  # same name, another connection
    with pytest.raises(mrt.ConfigurationError) as caught:
        pool.release(impostor)
    assert (caught.value.message, caught.value.field) == ("pool-stocks-1 is not a connection of pool pool", "client")
    pool.release(leased)
    with pytest.raises(mrt.ConfigurationError) as caught:
        pool.release(leased)
    assert (caught.value.message, caught.value.field) == ("pool-stocks-1 is not leased", "client")


def test_release_with_close_keeps_a_connection_that_still_has_channels(pools) -> None:
    pool = pools()
    pool.subscribe("T.A")
    leased = pool.acquire()
    pool.release(leased, close=True)
    assert pool.connections == (leased,)
    assert leased.state is ConnectionState.NEW  # not stopped


def test_release_with_close_retires_an_idle_connection(pools) -> None:
    pool = pools()
    leased = pool.acquire()
    pool.release(leased, close=True)
    assert pool.connections == ()
    assert leased.state is ConnectionState.STOPPED
    assert pool.clients() == (leased,)  # retired, until its last statuses are drained
    leased.drain()
    assert pool.clients() == ()


# ----------------------------------------------------------------------------- the supervisor's view


def test_failed_for_good_and_usable(pools) -> None:
    pool = pools(on_limit="auto")
    failed = ConnectionState.FAILED

    def client(state: ConnectionState, error: Exception | None) -> MassiveWebSocketClient:
        return types.SimpleNamespace(state=state, error=error)  # type: ignore[return-value]

    refused = mrt.AuthenticationError("no")
    evicted = mrt.ConnectionLimitError("evicted", evicted=True)
    at_connect = mrt.ConnectionLimitError("refused")
    gave_up = mrt.ConnectionClosedError("gave up")
    assert pool._failed_for_good(client(failed, refused)) is True
    assert pool._failed_for_good(client(ConnectionState.STREAMING, refused)) is False  # not failed (yet)
    assert pool._failed_for_good(client(failed, None)) is False
    assert pool._failed_for_good(client(failed, evicted)) is False  # "auto" retries an eviction
    assert pool._failed_for_good(client(failed, at_connect)) is True  # ... not a refusal at connect
    assert pool._failed_for_good(client(failed, gave_up)) is False  # the pool replaces those
    member = types.SimpleNamespace(retiring=True, client=client(ConnectionState.STREAMING, None))
    assert pool._usable(member) is False  # type: ignore[arg-type]
    member.retiring = False
    assert pool._usable(member) is True  # type: ignore[arg-type]


def test_check_health_leaves_connections_of_a_pool_not_started_alone(pools) -> None:
    pool = pools()
    pool.subscribe("T.A")
    assert pool.check_health() == 0
    assert pool.connections[0].state is ConnectionState.NEW


def test_check_health_without_idle_timeout_keeps_idle_connections(pools) -> None:
    pool = pools()
    pool.release(pool.acquire())
    pool.unsubscribe_all()
    assert pool.check_health() == 0
    assert len(pool.connections) == 1


def test_idle_timeout_closes_only_connections_without_channels_or_leases(pools) -> None:
    pool = pools(idle_timeout=0.0, max_connections=3)
    pool.subscribe("T.A")
    pool.acquire(market="crypto")
    pool.release(pool.acquire(market="options"))
    assert pool.check_health() == 1
    assert [c.name for c in pool.connections] == ["pool-stocks-1", "pool-crypto-2"]


def test_idle_time_counts_from_when_the_connection_became_idle(pools) -> None:
    pool = pools(idle_timeout=100.0)
    pool.subscribe("T.A", "T.B")
    member = pool._members["pool-stocks-1"]
    member.idle_since -= 1000  # placed long ago
    pool.unsubscribe("T.A")  # still a channel: not idle
    member.idle_since -= 1000
    pool.unsubscribe("T.B")  # idle from now
    assert pool.check_health() == 0
    pool.subscribe("T.C")
    member.idle_since -= 1000
    pool.unsubscribe_all()  # idle from now, too
    assert pool.check_health() == 0
    member.idle_since -= 1000
    assert pool.check_health() == 1


def test_the_listener_is_woken_when_an_idle_connection_is_closed(pools) -> None:
    pool = pools(idle_timeout=0.0)
    pool.release(pool.acquire())
    calls: list[int] = []
    pool._listener = lambda: calls.append(1)  # the pool's own wake-up only (set_listener gives it to clients too)
    assert pool.check_health() == 1
    assert calls == [1]


def test_check_health_looks_at_every_connection(pools, monkeypatch: pytest.MonkeyPatch) -> None:
    pool = pools(max_connections=3, max_subscriptions_per_connection=1, idle_timeout=0.0)
    pool.subscribe("T.A", "T.B")
    pool.release(pool.acquire())  # a third, idle
    first = pool.connections[0]
    state = MassiveWebSocketClient.state.fget
    failed = property(lambda self: ConnectionState.FAILED if self is first else state(self))  # type: ignore[misc]
    monkeypatch.setattr(MassiveWebSocketClient, "state", failed)
    real = pool._failed_for_good
    monkeypatch.setattr(pool, "_failed_for_good", lambda client: client is first or real(client))
    pool._members[pool.connections[1].name].retiring = True  # being closed by someone else
    assert pool.check_health() == 1  # the idle one, after a failed-for-good one and a retiring one
    assert len(pool.connections) == 2


# ----------------------------------------------------------------------------- stats


def test_stats_of_a_pool_before_start_and_after_stop(pools) -> None:
    pool = pools(name="p1", max_connections=4)
    pool.subscribe("T.A", "T.B")
    stats = pool.stats()
    assert (stats.name, stats.connections, stats.max_connections, stats.channels) == ("p1", 1, 4, 2)
    assert (stats.events_decoded, stats.dropped_events, stats.reconnects, stats.recycled) == (0, 0, 0, 0)
    assert (stats.duplicates_suppressed, stats.leases, stats.failed, stats.degraded) == (0, 0, (), False)
    assert (stats.healthy, stats.health_reason) == (False, "pool is not started")
    assert stats.to_dict()["name"] == "p1"
    pool.stop()
    assert pool.stats().health_reason == "pool is stopped"


# ----------------------------------------------------------------------------- with a server


@pytest.fixture
def server() -> Iterator[MockMassiveServer]:
    with MockMassiveServer(api_keys={KEY}, max_connections=5) as srv:
        yield srv


def trade(sym: str, q: int) -> dict[str, object]:
    return {"ev": "T", "sym": sym, "p": 1.0, "s": 1, "t": 1, "q": q}


def test_start_stop_and_the_supervisor(server: MockMassiveServer, pools, monkeypatch: pytest.MonkeyPatch) -> None:
    pool = pools(url=server.url, health_interval=0.01)
    gate = threading.Event()
    entered = threading.Event()

    def slow_check() -> int:
        entered.set()
        gate.wait(5)
        return 0

    monkeypatch.setattr(pool, "check_health", slow_check)
    pool.start()
    supervisor = pool._supervisor
    assert supervisor is not None
    assert (supervisor.name, supervisor.daemon) == ("massive-rt-pool-supervisor", True)
    assert entered.wait(5)
    threading.Timer(0.2, gate.set).start()
    pool.stop(timeout=5)
    assert not supervisor.is_alive()  # stop() waited for the check in progress
    with pytest.raises(mrt.ClientClosedError) as caught:
        pool.start()
    assert caught.value.message == "pool pool is stopped"
    with pytest.raises(mrt.ClientClosedError) as caught:
        pool.subscribe("T.A")
    assert caught.value.message == "pool pool is stopped"
    with pytest.raises(mrt.ConfigurationError) as refused:
        pool.stop(timeout=-1)
    assert refused.value.field == "timeout"


def test_wait_ready_without_a_timeout_and_with_less_than_a_second(pools) -> None:
    with MockMassiveServer(api_keys={KEY}, ack_delay=0.2) as slow:
        pool = pools(url=slow.url, max_connections=2).start()
        pool.subscribe("T.A")
        with pytest.raises(mrt.ConfigurationError):
            pool.wait_ready(-1)
        assert pool.wait_ready(None) is pool
        pool.subscribe("XT.BTC-USD", market="crypto")
        crypto = pool.connections[1]
        assert wait_until(lambda: crypto.state is ConnectionState.SUBSCRIBING, 5)  # its acks come 0.2 s late
        assert pool.wait_ready(0.99) is pool  # less than a second left is still time


def test_wait_ready_names_every_connection_not_ready(pools) -> None:
    pool = pools(url="ws://127.0.0.1:9/{market}", max_connections=2, client_options={"reconnect": FAST}).start()
    pool.subscribe("T.A")
    pool.subscribe("XT.BTC-USD", market="crypto")
    with pytest.raises(mrt.WaitTimeoutError) as caught:
        pool.wait_ready(0.2)
    assert caught.value.message == "connections not ready after 0.2s: pool-stocks-1, pool-crypto-2"


def test_stats_pass_max_message_age_and_count_duplicates(server: MockMassiveServer, pools) -> None:
    pool = pools(url=server.url, dedupe=True).start()
    pool.subscribe("T.A")
    pool.wait_ready(5)
    server.publish([trade("A", 1)])
    server.publish([trade("A", 1)])
    client = pool.connections[0]
    got: list[mrt.Event] = []
    assert wait_until(lambda: bool(got.extend(client.drain()) or pool.stats().duplicates_suppressed == 1), 5)
    stats = pool.stats()
    assert stats.events_decoded >= 1
    assert stats.healthy
    assert wait_until(lambda: not pool.stats(max_message_age=0.01).healthy, 5)


def test_a_listener_set_late_reaches_every_connection(server: MockMassiveServer, pools) -> None:
    pool = pools(url=server.url, max_connections=2).start()
    pool.subscribe("T.A")
    woken = threading.Event()
    pool.set_listener(woken.set)
    pool.subscribe("XT.BTC-USD", market="crypto")  # a connection made after: it gets it too
    pool.wait_ready(5)
    for client in pool.connections:
        client.drain()
    woken.clear()
    server.publish([trade("A", 1)])
    assert woken.wait(5)
    for client in pool.connections:
        client.drain()
    woken.clear()
    server.publish([{"ev": "XT", "pair": "BTC-USD", "p": 1.0, "s": 1, "t": 1}], market="crypto")
    assert woken.wait(5)


@GAVE_UP
def test_a_recycled_connection_keeps_its_channels_leases_and_says_why(server: MockMassiveServer, pools) -> None:
    pool = pools(url=server.url, client_options={"reconnect": mrt.ReconnectPolicy(max_attempts=0)}).start()
    pool.subscribe("T.A")
    leased = pool.acquire()
    pool.wait_ready(5)
    server.kick(server.active_connections()[0].id)
    assert wait_until(lambda: leased.state is ConnectionState.FAILED, 5)
    assert pool.check_health() == 1
    replacement = pool.connections[0]
    assert pool.subscriptions == {replacement.name: ("T.A",)}
    assert pool.clients()[0] is leased  # the old one first, until drained
    statuses = [e for e in replacement.drain() if isinstance(e, mrt.StatusMessage) and e.status == "recycled"]
    assert [e.message for e in statuses] == [
        "replaced a connection that ended (gave up after 1 consecutive failed attempts; last: server closed the TCP "
        "connection without a close frame)"
    ]
    pool.release(leased)  # the lease moved to the replacement with the name
    leased.drain()
    assert pool.clients() == (replacement,)


def test_a_connection_stopped_by_hand_is_not_replaced(server: MockMassiveServer, pools) -> None:
    pool = pools(url=server.url).start()
    pool.subscribe("T.A")
    pool.wait_ready(5)
    client = pool.connections[0]
    client.stop()
    assert pool.check_health() == 0
    assert pool.connections == (client,)


# ----------------------------------------------------------------------------- more of the supervisor


def _pretend(monkeypatch: pytest.MonkeyPatch, client: MassiveWebSocketClient, *, state: ConnectionState,
             error: mrt.MassiveRTError | None = None, reader_alive: bool = False) -> None:  # fmt: skip
    """Make ``client`` look (to the pool) like a connection in ``state`` with ``error``."""
    for name, value in (("state", state), ("error", error), ("reader_alive", reader_alive)):
        real = getattr(MassiveWebSocketClient, name).fget
        monkeypatch.setattr(MassiveWebSocketClient, name, property(
            lambda self, real=real, value=value: value if self is client else real(self)))  # fmt: skip


def test_a_connection_whose_reader_ended_without_failing_is_replaced(
    server: MockMassiveServer, pools, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = pools(url=server.url).start()
    pool.subscribe("T.A")
    pool.wait_ready(5)
    old = pool.connections[0]
    _pretend(monkeypatch, old, state=ConnectionState.STREAMING)  # a reader that died without a word
    assert pool.check_health() == 1
    replacement = pool.connections[0]
    assert replacement is not old
    statuses = [e.message for e in replacement.drain() if isinstance(e, mrt.StatusMessage) and e.status == "recycled"]
    assert statuses == ["replaced a connection that ended (reader thread ended)"]


def test_a_connection_cooling_down_does_not_stop_the_check_of_the_others(
    server: MockMassiveServer, pools, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = pools(url=server.url, max_connections=2, idle_timeout=0.0).start()
    pool.subscribe("T.A")
    pool.wait_ready(5)
    evicted = pool.connections[0]
    pool.release(pool.acquire(market="crypto"))  # idle: to close
    _pretend(monkeypatch, evicted, state=ConnectionState.FAILED,
             error=mrt.ConnectionLimitError("evicted", evicted=True))  # fmt: skip
    assert pool.check_health() == 1  # the idle one; the evicted one waits its cooldown ("auto" retries it)
    assert pool.connections == (evicted,)
    cooldown = [e.message for e in evicted.drain() if isinstance(e, mrt.StatusMessage) and e.status == "limit_cooldown"]
    assert cooldown == ["max_connections: retrying in 60s (at most 3 retries an hour: on_limit)"]
    assert pool.check_health() == 0  # still cooling down


def test_degraded_when_some_connections_failed_for_good(pools, monkeypatch: pytest.MonkeyPatch) -> None:
    pool = pools(max_connections=2)
    pool.subscribe("T.A")
    pool.subscribe("XT.BTC-USD", market="crypto")
    crypto = pool.connections[1]
    _pretend(monkeypatch, crypto, state=ConnectionState.FAILED, error=mrt.AuthenticationError("refused"))
    stats = pool.stats()
    assert (stats.failed, stats.degraded) == (("pool-crypto-2",), True)
    assert pool.error is None  # not every connection
    _pretend(monkeypatch, pool.connections[0], state=ConnectionState.FAILED, error=mrt.AuthenticationError("no"))
    assert pool.stats().degraded is False  # all of them: failed, not degraded
    assert isinstance(pool.error, mrt.AuthenticationError)


def test_acquire_without_a_timeout_waits_for_room(pools) -> None:
    pool = pools(max_connections=1, max_subscriptions_per_connection=1)
    pool.subscribe("T.A")
    got: list[MassiveWebSocketClient] = []
    waiter = threading.Thread(target=lambda: got.append(pool.acquire(timeout=None)), name="test-acquire")
    waiter.start()
    assert not wait_until(lambda: bool(got), 0.1)
    pool.unsubscribe("T.A")  # room again
    waiter.join(5)
    assert [c.name for c in got] == ["pool-stocks-1"]


def test_repr_masks_the_key(pools) -> None:
    pool = pools(api_key="SECRET-KEY", name="p2", max_connections=2)
    pool.subscribe("T.A")
    assert repr(pool) == "ConnectionPool(name='p2', connections=1/2, channels=1, api_key='***')"


def test_version_is_unchanged_when_clients_drops_a_drained_connection(pools) -> None:
    pool = pools(max_connections=3)
    first, second = pool.acquire(), pool.acquire(market="crypto")
    pool.release(first, close=True)
    pool.release(second, close=True)
    assert pool.clients() == (first, second)
    first.drain()
    before = pool.version
    assert pool.clients() == (second,)  # the drained one is dropped ...
    assert pool.version == before  # ... which `version` already counted
    second.drain()
    assert pool.version > before
    after = pool.version
    assert pool.clients() == ()
    assert pool.version == after


def test_two_unhealthy_connections_are_both_named(pools) -> None:
    pool = pools(url="ws://127.0.0.1:9/{market}", max_connections=2, client_options={"reconnect": FAST}).start()
    pool.subscribe("T.A")
    pool.subscribe("XT.BTC-USD", market="crypto")
    reason = pool.stats().health_reason or ""
    assert reason.startswith("pool-stocks-1: "), reason
    assert "; pool-crypto-2: " in reason, reason
