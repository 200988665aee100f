"""Downstream protocol and upstream reference counting."""

from __future__ import annotations

from collections import Counter

import massive_rt as mrt
from massive_rt.relay import MassiveRelay
from massive_rt.testing import MockMassiveServer
from tests.relay._support import FAST, UP_KEY, event
from tests.relay.conftest import Clients, RawClients, Relays


def status(status: str, message: str) -> dict[str, str]:
    return {"ev": "status", "status": status, "message": message}


def upstream_requests(server: MockMassiveServer) -> list[tuple[str, str]]:
    """Every (action, channel) the relay sent upstream, in order."""
    return [(m.action, p) for m in server.received if m.action in ("subscribe", "unsubscribe") for p in m.params]


def upstream_channels(server: MockMassiveServer) -> set[str]:
    return {ch for c in server.active_connections() for ch in c.subscriptions}


def test_upstream_subscriptions_follow_the_union_of_downstream_ones(
    upstream: MockMassiveServer, relay: MassiveRelay, raw_clients: RawClients
) -> None:
    a = raw_clients(relay.url("stocks"))
    a.auth()
    assert a.subscribe("T.AAPL,Q.MSFT") == [status("success", "subscribed to: T.AAPL"),
                                           status("success", "subscribed to: Q.MSFT")]  # fmt: skip
    assert upstream.wait_for(lambda: upstream_channels(upstream) == {"T.AAPL", "Q.MSFT"}, 10)

    b = raw_clients(relay.url("stocks"))
    b.auth()
    b.subscribe("T.AAPL,AM.*")  # T.AAPL is already upstream: only AM.* goes up
    assert upstream.wait_for(lambda: upstream_channels(upstream) == {"T.AAPL", "Q.MSFT", "AM.*"}, 10)

    # A drops T.AAPL: B still has it, so nothing goes upstream. Q.TSLA is a barrier: the relay's
    # upstream connection sends its changes in order, so an unsubscribe would have arrived first.
    a.send("unsubscribe", "T.AAPL")
    assert a.recv() == [status("success", "unsubscribed to: T.AAPL")]
    assert a.subscribe("Q.TSLA") == [status("success", "subscribed to: Q.TSLA")]
    assert upstream.wait_for(lambda: "Q.TSLA" in upstream_channels(upstream), 10)
    assert ("unsubscribe", "T.AAPL") not in upstream_requests(upstream)

    b.close()  # B was the last holder of T.AAPL and AM.*
    assert upstream.wait_for(lambda: upstream_channels(upstream) == {"Q.MSFT", "Q.TSLA"}, 10)

    a.drop()  # an abrupt disconnect releases everything too
    assert upstream.wait_for(lambda: upstream_channels(upstream) == set(), 10)

    requests = upstream_requests(upstream)
    channels = {"T.AAPL", "Q.MSFT", "AM.*", "Q.TSLA"}
    assert Counter(ch for action, ch in requests if action == "subscribe") == Counter(channels)  # each once
    assert Counter(ch for action, ch in requests if action == "unsubscribe") == Counter(channels)  # when the last left
    assert relay.wait_for(lambda: not relay.active_connections(), 5)
    assert relay.stats().upstream_channels == 0
    assert len(upstream.connections) == 1  # the upstream connection stays up, idle


def test_a_downstream_wildcard_covers_tickers_upstream_and_hands_them_back(
    upstream: MockMassiveServer, relay: MassiveRelay, raw_clients: RawClients
) -> None:
    ticker = raw_clients(relay.url("stocks"))
    ticker.auth()
    ticker.subscribe("T.AAPL")
    assert upstream.wait_for(lambda: upstream_channels(upstream) == {"T.AAPL"}, 10)
    wildcard = raw_clients(relay.url("stocks"))
    wildcard.auth()
    wildcard.subscribe("T.*")
    assert upstream.wait_for(lambda: upstream_channels(upstream) == {"T.*"}, 10)  # one upstream copy of AAPL
    upstream.publish([event("T", "AAPL", 1), event("T", "MSFT", 2)], batch=2)
    assert ticker.recv() == [event("T", "AAPL", 1)]
    assert wildcard.recv() == [event("T", "AAPL", 1), event("T", "MSFT", 2)]

    wildcard.close()  # the ticker's holder remains: T.AAPL goes back upstream on its own
    assert upstream.wait_for(lambda: upstream_channels(upstream) == {"T.AAPL"}, 10)
    upstream.publish([event("T", "MSFT", 3), event("T", "AAPL", 4)], batch=2)
    assert ticker.recv() == [event("T", "AAPL", 4)]


def test_massive_rt_clients_unsubscribing_and_stopping_release_upstream_channels(
    upstream: MockMassiveServer, relay: MassiveRelay, clients: Clients
) -> None:
    one = clients(relay.url("stocks"), "T.AAPL", "AM.*")
    two = clients(relay.url("stocks"), "AM.*")
    one.wait_ready(10)
    two.wait_ready(10)
    assert upstream.wait_for(lambda: upstream_channels(upstream) == {"T.AAPL", "AM.*"}, 10)
    one.unsubscribe("T.AAPL", "AM.*")
    assert upstream.wait_for(lambda: upstream_channels(upstream) == {"AM.*"}, 10)
    two.stop()
    assert upstream.wait_for(lambda: upstream_channels(upstream) == set(), 10)
    one.subscribe("Q.MSFT")
    assert upstream.wait_for(lambda: upstream_channels(upstream) == {"Q.MSFT"}, 10)


def test_acks_are_immediate_even_while_upstream_is_stalled(
    upstream: MockMassiveServer, relay: MassiveRelay, raw_clients: RawClients
) -> None:
    warm = raw_clients(relay.url("stocks"))
    warm.auth()
    warm.subscribe("T.MSFT")
    assert upstream.wait_for_subscribed("T.MSFT", 10)
    assert upstream.stall() == 1  # upstream answers nothing now

    client = raw_clients(relay.url("stocks"))
    assert client.auth() == [status("auth_success", "authenticated")]
    assert client.subscribe("T.AAPL") == [status("success", "subscribed to: T.AAPL")]
    assert "T.AAPL" not in upstream_channels(upstream)

    upstream.resume()
    assert upstream.wait_for_subscribed("T.AAPL", 10)
    assert upstream.publish([{"ev": "T", "sym": "AAPL", "q": 1}]) == 1
    assert client.recv() == [{"ev": "T", "sym": "AAPL", "q": 1}]


def test_relay_keys_are_its_own_and_the_protocol_is_massives(
    upstream: MockMassiveServer, relay: MassiveRelay, raw_clients: RawClients
) -> None:
    refused = raw_clients(relay.url("stocks"))
    assert refused.auth(UP_KEY) == [status("auth_failed", "authentication failed")]  # not a relay key
    assert refused.read_to_close() == ([], None)  # then a TCP drop, like Massive
    client = raw_clients(relay.url("crypto"))
    assert client.subscribe("XT.*") == [status("auth_required", "not authenticated")]
    client.auth()
    # Unknown prefix and malformed params are ignored; acks per accepted channel.
    assert client.subscribe("XT.BTC-USD, ZZ.AAPL,T.AAPL,XQ.*") == [
        status("success", "subscribed to: XT.BTC-USD"), status("success", "subscribed to: XQ.*"),
    ]  # fmt: skip
    client.ws.send("{not json")
    assert client.recv() == [status("error", "Invalid JSON")]
    assert upstream.wait_for_subscribed({"XT.BTC-USD", "XQ.*"}, 10, market="crypto")
    assert upstream.publish([{"ev": "XT", "pair": "BTC-USD", "p": 1.0, "q": 5}], market="crypto") == 1
    assert client.recv() == [{"ev": "XT", "pair": "BTC-USD", "p": 1.0, "q": 5}]
    info = [c for c in relay.active_connections() if c.market == "crypto"]
    assert [c.subscriptions for c in info] == [frozenset({"XT.BTC-USD", "XQ.*"})]
    assert upstream.max_concurrent(UP_KEY) == 1  # one market at a time on a one-connection account


def test_channels_that_find_no_room_upstream_are_refused_downstream(
    upstream: MockMassiveServer, relays: Relays, raw_clients: RawClients
) -> None:
    pool = mrt.ConnectionPool(
        UP_KEY, max_connections=1, max_subscriptions_per_connection=2, url=upstream.url,
        client_options={"raw": True, "reconnect": FAST},
    )  # fmt: skip
    relay = relays(upstream=pool)
    client = raw_clients(relay.url("stocks"))
    client.auth()
    assert client.subscribe("T.AAPL,T.MSFT,T.TSLA") == [status("error", "not authorized")]  # first, like Massive
    assert client.recv() == [status("success", "subscribed to: T.AAPL"), status("success", "subscribed to: T.MSFT")]
    other = raw_clients(relay.url("stocks"))
    other.auth()
    # Already upstream: shared without needing room.
    assert other.subscribe("T.MSFT") == [status("success", "subscribed to: T.MSFT")]
    assert upstream.wait_for(lambda: upstream_channels(upstream) == {"T.AAPL", "T.MSFT"}, 10)
    assert [c.subscriptions for c in relay.active_connections()] == [frozenset({"T.AAPL", "T.MSFT"}),
                                                                      frozenset({"T.MSFT"})]  # fmt: skip


def test_a_pool_in_typed_mode_is_forwarded_too(
    upstream: MockMassiveServer, relays: Relays, raw_clients: RawClients
) -> None:
    pool = mrt.ConnectionPool(UP_KEY, url=upstream.url, client_options={"reconnect": FAST})  # not raw
    relay = relays(upstream=pool)
    client = raw_clients(relay.url("stocks"))
    client.auth()
    client.subscribe("T.AAPL,Q.*")
    assert upstream.wait_for_subscribed({"T.AAPL", "Q.*"}, 10)
    events = [
        {"ev": "T", "sym": "AAPL", "p": 1.5, "s": 10, "t": 5, "q": 1},
        {"ev": "T", "sym": "MSFT", "p": 2.5, "s": 10, "t": 5, "q": 2},
        {"ev": "Q", "sym": "MSFT", "bp": 1.0, "ap": 1.2, "t": 6, "q": 3},
    ]
    upstream.publish(events, batch=3)
    assert client.recv() == [events[0], events[2]]  # decoded upstream, re-encoded from the models
