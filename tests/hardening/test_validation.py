"""Every public constructor and method refuses bad arguments with a ConfigurationError that names
the parameter (``.field``) and shows the value (except a key, which is never shown).

Table-driven: one row per (call, bad value). Nothing here opens a socket or starts a thread.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import massive_rt as mrt
from massive_rt.synthetic import SyntheticMarket, SyntheticSource
from massive_rt.testing import MockMassiveServer

KEY = "validation-secret-key-91d2"
URL = "ws://127.0.0.1:9/stocks"
NAN, INF = math.nan, math.inf


class Objects:
    """Unstarted instances to call methods on (created lazily, stopped after the test)."""

    def __init__(self) -> None:
        self._made: list[Any] = []

    def _keep(self, obj: Any) -> Any:
        self._made.append(obj)
        return obj

    def client(self, **options: Any) -> mrt.MassiveWebSocketClient:
        return self._keep(mrt.MassiveWebSocketClient(api_key=KEY, url=URL, **options))

    def pool(self) -> mrt.ConnectionPool:
        return self._keep(mrt.ConnectionPool(api_key=KEY, url=URL))

    def source(self) -> SyntheticSource:
        return self._keep(SyntheticSource(rate=10.0))

    def adapter(self) -> mrt.RealTimeDataAdapter:
        return mrt.RealTimeDataAdapter(self.source())

    def close(self) -> None:
        for obj in self._made:
            obj.stop()


@pytest.fixture
def objects() -> Iterator[Objects]:
    made = Objects()
    yield made
    made.close()


def client(**kwargs: Any) -> Callable[[Objects], Any]:
    return lambda _o: mrt.MassiveWebSocketClient(**{"api_key": KEY, "url": URL, **kwargs})


def pool(**kwargs: Any) -> Callable[[Objects], Any]:
    return lambda _o: mrt.ConnectionPool(**{"api_key": KEY, "url": URL, **kwargs})


# (id, call, field, text the message must show)
ROWS: list[tuple[str, Callable[[Objects], Any], str, str | None]] = [
    # --- MassiveWebSocketClient(...)
    ("client-api_key-not-str", client(api_key=12345), "api_key", None),
    ("client-api_key-bytes", client(api_key=KEY.encode()), "api_key", None),
    ("client-api_key-empty", client(api_key=""), "api_key", None),
    ("client-market", client(market="mars"), "market", "'mars'"),
    ("client-feed", client(feed="not a host!"), "feed", "'not a host!'"),
    ("client-url-scheme", client(url="http://127.0.0.1/stocks"), "url", "http://127.0.0.1/stocks"),
    ("client-url-type", client(url=5), "url", "5"),
    ("client-url-port", client(url="ws://127.0.0.1:99999/stocks"), "url", "99999"),
    ("client-subscriptions-not-str", client(subscriptions=["T.AAPL", 5]), "subscriptions", "5"),
    ("client-subscriptions-wrong-market", client(subscriptions=["XT.BTC-USD"]), "subscriptions", "XT.BTC-USD"),
    ("client-subscriptions-no-dot", client(subscriptions="TAAPL"), "subscriptions", "TAAPL"),
    ("client-subscriptions-comma", client(subscriptions=["T.AAPL,T.MSFT"]), "subscriptions", "T.AAPL,T.MSFT"),
    ("client-options-quote-wildcard", client(market="options", subscriptions=["Q.*"]), "subscriptions", "Q.*"),
    ("client-reconnect", client(reconnect="fast"), "reconnect", "'fast'"),
    ("client-queue_size-0", client(queue_size=0), "queue_size", "0"),
    ("client-queue_size-negative", client(queue_size=-1), "queue_size", "-1"),
    ("client-queue_size-float", client(queue_size=1.5), "queue_size", "1.5"),
    ("client-queue_size-bool", client(queue_size=True), "queue_size", "True"),
    ("client-overflow", client(overflow="sometimes"), "overflow", "'sometimes'"),
    ("client-ping_interval-0", client(ping_interval=0), "ping_interval", "0"),
    ("client-ping_interval-negative", client(ping_interval=-1), "ping_interval", "-1"),
    ("client-ping_timeout-0", client(ping_timeout=0), "ping_timeout", "0"),
    ("client-stale_after-negative", client(stale_after=-1), "stale_after", "-1"),
    ("client-connect_timeout-negative", client(connect_timeout=-1), "connect_timeout", "-1"),
    ("client-connect_timeout-nan", client(connect_timeout=NAN), "connect_timeout", "nan"),
    ("client-connect_timeout-inf", client(connect_timeout=INF), "connect_timeout", "inf"),
    ("client-name-space", client(name="two words"), "name", "'two words'"),
    ("client-name-empty", client(name=""), "name", "''"),
    ("client-max_message_size", client(max_message_size=10), "max_message_size", "10"),
    ("client-ca_certs-type", client(ca_certs=5), "ca_certs", "5"),
    ("client-ca_certs-missing", client(ca_certs="/no/such/ca.pem"), "ca_certs", "/no/such/ca.pem"),
    ("client-ssl_context", client(ssl_context="tls please"), "ssl_context", None),
    ("client-websocket_options-type", client(websocket_options="abc"), "websocket_options", "'abc'"),
    ("client-websocket_options-timeout", client(websocket_options={"timeout": 5}), "websocket_options", "'timeout'"),
    ("client-websocket_options-socket", client(websocket_options={"socket": None}), "websocket_options", "'socket'"),
    ("client-websocket_options-sslopt", client(websocket_options={"sslopt": {}}), "websocket_options", "'sslopt'"),
    ("client-websocket_options-header", client(websocket_options={"header": "X: 1"}), "websocket_options", "X: 1"),
    ("client-config-type", lambda _o: mrt.MassiveWebSocketClient(config={"api_key": KEY}), "config", "dict"),
    # --- client methods
    ("client.wait_ready-negative", lambda o: o.client().wait_ready(timeout=-1), "timeout", "-1"),
    ("client.get-negative", lambda o: o.client().get(timeout=-0.5), "timeout", "-0.5"),
    ("client.iter_events-negative", lambda o: o.client().iter_events(timeout=-1), "timeout", "-1"),
    ("client.stop-negative", lambda o: o.client().stop(timeout=-1), "timeout", "-1"),
    ("client.stop-none", lambda o: o.client().stop(timeout=None), "timeout", "None"),
    ("client.stop-nan", lambda o: o.client().stop(timeout=NAN), "timeout", "nan"),
    ("client.wait_acked-negative", lambda o: o.client().wait_acked(["T.AAPL"], timeout=-1), "timeout", "-1"),
    ("client.wait_acked-channel", lambda o: o.client().wait_acked([5], timeout=0), "channels", "5"),
    ("client.subscribe-not-str", lambda o: o.client().subscribe(5), "channels", "5"),
    ("client.subscribe-wrong-market", lambda o: o.client().subscribe("XT.BTC-USD"), "channels", "XT.BTC-USD"),
    ("client.subscribe-partial-wildcard", lambda o: o.client().subscribe("T.AA*"), "channels", "T.AA*"),
    ("client.subscribe-empty-ticker", lambda o: o.client().subscribe("T."), "channels", "T."),
    (
        "client.subscribe-options-quote-wildcard",
        lambda o: o.client(market="options").subscribe("Q.*"),
        "channels",
        "Q.*",
    ),
    ("client.unsubscribe-not-str", lambda o: o.client().unsubscribe(None), "channels", "None"),
    # --- ReconnectPolicy / ClientConfig
    ("policy-initial_delay", lambda _o: mrt.ReconnectPolicy(initial_delay=-1), "initial_delay", "-1"),
    ("policy-initial_delay-nan", lambda _o: mrt.ReconnectPolicy(initial_delay=NAN), "initial_delay", "nan"),
    ("policy-max_delay", lambda _o: mrt.ReconnectPolicy(max_delay=-1), "max_delay", "-1"),
    ("policy-multiplier", lambda _o: mrt.ReconnectPolicy(multiplier=0.5), "multiplier", "0.5"),
    ("policy-jitter", lambda _o: mrt.ReconnectPolicy(jitter="some"), "jitter", "'some'"),
    ("policy-max_attempts-negative", lambda _o: mrt.ReconnectPolicy(max_attempts=-1), "max_attempts", "-1"),
    ("policy-max_attempts-float", lambda _o: mrt.ReconnectPolicy(max_attempts=1.5), "max_attempts", "1.5"),
    ("policy-reset_after", lambda _o: mrt.ReconnectPolicy(reset_after=-1), "reset_after", "-1"),
    ("policy.evolve", lambda _o: mrt.ReconnectPolicy().evolve(max_delay=-2), "max_delay", "-2"),
    ("policy.delay", lambda _o: mrt.ReconnectPolicy().delay(-1), "attempt", "-1"),
    ("config-market", lambda _o: mrt.ClientConfig(market="mars"), "market", "'mars'"),
    ("config.from_env-market", lambda _o: mrt.ClientConfig.from_env({"MASSIVE_MARKET": "mars"}), "market", "'mars'"),
    ("config.from_env-url", lambda _o: mrt.ClientConfig.from_env({"MASSIVE_WS_URL": "ftp://x"}), "url", "ftp://x"),
    ("config.evolve", lambda _o: mrt.ClientConfig().evolve(queue_size=0), "queue_size", "0"),
    # --- ConnectionPool(...) and its methods
    ("pool-max_connections", pool(max_connections=0), "max_connections", "0"),
    ("pool-max_subscriptions", pool(max_subscriptions_per_connection=0), "max_subscriptions_per_connection", "0"),
    ("pool-health_interval", pool(health_interval=0), "health_interval", "0"),
    ("pool-health_interval-nan", pool(health_interval=NAN), "health_interval", "nan"),
    ("pool-on_limit", pool(on_limit="yes"), "on_limit", "'yes'"),
    ("client-on_limit", client(on_limit=True), "on_limit", "True"),
    ("limit_retry-cooldown", lambda o: mrt.LimitRetry(cooldown=-1), "cooldown", "-1"),
    ("limit_retry-per_hour", lambda o: mrt.LimitRetry(per_hour=0), "per_hour", "0"),
    ("pool-idle_timeout", pool(idle_timeout=-1), "idle_timeout", "-1"),
    ("pool-name", pool(name=""), "name", "''"),
    ("pool-market", pool(market="mars"), "market", "'mars'"),
    ("pool-feed", pool(url=None, feed="a b"), "feed", "'a b'"),
    ("pool-url-type", pool(url=5), "url", "5"),
    ("pool-url-callable-result", pool(url=lambda market: 5), "url", "5"),
    ("pool-client_options-reserved", pool(client_options={"api_key": "x"}), "client_options", "'api_key'"),
    ("pool-client_options-unknown", pool(client_options={"bogus": 1}), "client_options", "bogus"),
    ("pool-client_options-value", pool(client_options={"queue_size": 0}), "queue_size", "0"),
    ("pool-client_options-reconnect", pool(client_options={"reconnect": 1}), "client_options", "reconnect"),
    ("pool.subscribe-channel", lambda o: o.pool().subscribe(5), "channels", "5"),
    ("pool.subscribe-market", lambda o: o.pool().subscribe("T.AAPL", market="mars"), "market", "'mars'"),
    ("pool.unsubscribe-channel", lambda o: o.pool().unsubscribe("nodot"), "channels", "nodot"),
    ("pool.assignment-channel", lambda o: o.pool().assignment(5), "channels", "5"),
    ("pool.acquire-negative", lambda o: o.pool().acquire(timeout=-1), "timeout", "-1"),
    ("pool.acquire-market", lambda o: o.pool().acquire(market="mars", timeout=0), "market", "'mars'"),
    ("pool.wait_ready-negative", lambda o: o.pool().wait_ready(timeout=-1), "timeout", "-1"),
    ("pool.stop-negative", lambda o: o.pool().stop(timeout=-1), "timeout", "-1"),
    ("pool.release-none", lambda o: o.pool().release(None), "client", "None"),
    ("pool.release-stranger", lambda o: o.pool().release(o.client(name="stranger")), "client", "stranger"),
    # --- RealTimeDataAdapter
    ("adapter-source", lambda _o: mrt.RealTimeDataAdapter(object()), "source", "object"),
    ("adapter-on_event", lambda o: mrt.RealTimeDataAdapter(o.source(), on_event=5), "handler", "5"),
    (
        "adapter-frames_per_round",
        lambda o: mrt.RealTimeDataAdapter(o.source(), frames_per_round=0),
        "frames_per_round",
        "0",
    ),
    (
        "adapter-latency_samples",
        lambda o: mrt.RealTimeDataAdapter(o.source(), latency_samples=0),
        "latency_samples",
        "0",
    ),
    ("adapter.on-key", lambda o: o.adapter().on(5, print), "key", "5"),
    ("adapter.on-empty-key", lambda o: o.adapter().on("", print), "key", "''"),
    ("adapter.on-handler", lambda o: o.adapter().on("T", "print"), "handler", "'print'"),
    ("adapter.on_status", lambda o: o.adapter().on_status(None), "handler", "None"),
    ("adapter.on_error", lambda o: o.adapter().on_error(42), "handler", "42"),
    ("adapter.stop-negative", lambda o: o.adapter().stop(timeout=-1), "timeout", "-1"),
    ("adapter.stop-nan", lambda o: o.adapter().stop(timeout=NAN), "timeout", "nan"),
    ("adapter.from_env-rate", lambda _o: mrt.RealTimeDataAdapter.from_env(environ={}, rate=-1), "rate", "-1"),
    (
        "adapter.from_env-client-option",
        lambda _o: mrt.RealTimeDataAdapter.from_env(
            environ={"MASSIVE_API_KEY": KEY, "MASSIVE_WS_URL": URL}, queue_size=0
        ),
        "queue_size",
        "0",
    ),
    # --- SyntheticSource / SyntheticMarket
    ("source-rate-negative", lambda _o: SyntheticSource(rate=-1), "rate", "-1"),
    ("source-rate-zero", lambda _o: SyntheticSource(rate=0), "rate", "0"),
    ("source-rate-nan", lambda _o: SyntheticSource(rate=NAN), "rate", "nan"),
    ("source-batch", lambda _o: SyntheticSource(batch=0), "batch", "0"),
    ("source-queue_size", lambda _o: SyntheticSource(queue_size=0), "queue_size", "0"),
    ("source-overflow", lambda _o: SyntheticSource(overflow="x"), "overflow", "'x'"),
    ("source-market", lambda _o: SyntheticSource(market="mars"), "market", "'mars'"),
    ("source-market-not-simulated", lambda _o: SyntheticSource(["T.*"], market="options"), "market", "options"),
    ("source-subscriptions", lambda _o: SyntheticSource(["XT.BTC-USD"]), "subscriptions", "XT.BTC-USD"),
    ("source-symbols", lambda _o: SyntheticSource(symbols=["A B"]), "symbols", "'A B'"),
    ("source-name", lambda _o: SyntheticSource(name=""), "name", "''"),
    ("source.subscribe", lambda o: o.source().subscribe("Q"), "channels", "'Q'"),
    ("source.get", lambda o: o.source().get(timeout=-1), "timeout", "-1"),
    ("source.stop", lambda o: o.source().stop(timeout=-1), "timeout", "-1"),
    ("source.wait_ready", lambda o: o.source().wait_ready(timeout=-1), "timeout", "-1"),
    ("market-rate", lambda _o: SyntheticMarket(rate=-1), "rate", "-1"),
    ("market-seed", lambda _o: SyntheticMarket(seed="x"), "seed", "'x'"),
    ("market-channels", lambda _o: SyntheticMarket(channels=["ZZ"]), "channels", "'ZZ'"),
    ("market-symbols", lambda _o: SyntheticMarket(symbols=[]), "symbols", None),
    ("market.next_events", lambda _o: SyntheticMarket(seed=1).next_events(-1), "n", "-1"),
    # --- MockMassiveServer (test tooling users run in their own suites)
    ("mock-max_connections", lambda _o: MockMassiveServer(max_connections=0), "max_connections", "0"),
    ("mock-evict", lambda _o: MockMassiveServer(evict="random"), "evict", "'random'"),
    ("mock-ack_mode", lambda _o: MockMassiveServer(ack_mode="x"), "ack_mode", "'x'"),
    ("mock-auth_timeout", lambda _o: MockMassiveServer(auth_timeout=0), "auth_timeout", "0"),
    ("mock.publish-batch", lambda _o: MockMassiveServer().publish([], batch=0), "batch", "0"),
]


@pytest.mark.parametrize(("call", "field", "shown"), [row[1:] for row in ROWS], ids=[row[0] for row in ROWS])
def test_bad_arguments_are_refused_naming_the_parameter(
    objects: Objects, call: Callable[[Objects], Any], field: str, shown: str | None
) -> None:
    with pytest.raises(mrt.ConfigurationError) as info:
        call(objects)
    assert info.value.field == field
    assert isinstance(info.value, ValueError)
    if shown is not None:
        assert shown in str(info.value)
    assert KEY not in str(info.value)
    assert KEY not in repr(info.value)


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda o: o.client().get(timeout=NAN), id="get-nan"),
        pytest.param(lambda o: o.client().get(timeout=INF), id="get-inf"),
        pytest.param(lambda o: o.source().get(timeout=NAN), id="source.get-nan"),
    ],
)
def test_non_finite_timeouts_are_refused(objects: Objects, call: Callable[[Objects], Any]) -> None:
    with pytest.raises(mrt.ConfigurationError) as info:
        call(objects)
    assert info.value.field == "timeout"


@pytest.mark.parametrize("max_frames", [0, -1, "many"])
def test_drain_refuses_a_bad_max_frames(objects: Objects, max_frames: Any) -> None:
    with pytest.raises(mrt.ConfigurationError) as info:
        objects.client().drain(max_frames)
    assert info.value.field == "max_frames"


def test_valid_edge_values_are_accepted(objects: Objects, tmp_path: Any) -> None:
    """The checks are not stricter than documented: zero timeouts, None, a path-like CA bundle."""
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    client = objects.client(ca_certs=bundle, ping_interval=None, stale_after=None, queue_size=1,
                            websocket_options={"header": ["X-Test: 1"], "http_proxy_timeout": 1})  # fmt: skip
    assert client.config.ca_certs == os.fspath(bundle)
    with pytest.raises(mrt.ClientClosedError):
        client.wait_ready(timeout=0)  # not started: a usage error, not a validation error
    assert client.wait_acked([], timeout=0) is True
    client.stop(timeout=0)
    # stopped: the stream ends (with the state change), not an error
    assert [e.status for e in client.iter_events(timeout=0)] == ["state"]
    assert mrt.ReconnectPolicy(initial_delay=0, max_delay=0, max_attempts=0).delay(0) == 0.0
    assert mrt.ConnectionPool(api_key=KEY, url=lambda market: URL, idle_timeout=0).name == "pool"
