"""Fan-out: many downstream clients of both kinds, overlapping channels, one upstream connection."""

from __future__ import annotations

import random

from websocket import ABNF

import massive_rt as mrt
from massive_rt.relay import MassiveRelay
from massive_rt.testing import MockMassiveServer
from tests._official import OfficialClient
from tests.relay._support import (
    UP_KEY,
    effective,
    event,
    expected_for,
    key_of,
    mrt_key,
    official_key,
    take_until,
)
from tests.relay.conftest import Clients, Officials, RawClients

SYMBOLS = ["AAPL", "MSFT", "BRK.B", "TSLA", "NVDA"]
END = "AM.END"  # every client subscribes it; the last event published is on it

# 20 overlapping subscription sets: wildcards, exact channels, both at once, dotted tickers.
SUBSCRIPTIONS: list[list[str]] = [
    ["T.*"],
    ["Q.*"],
    ["T.*", "Q.*"],
    ["T.AAPL"],
    ["T.AAPL", "T.*"],  # overlap: each AAPL trade still arrives once
    ["Q.MSFT", "T.MSFT"],
    ["T.BRK.B", "Q.BRK.B"],
    ["T.TSLA", "Q.NVDA", "T.NVDA"],
    ["Q.*", "T.AAPL", "T.MSFT"],
    ["T.AAPL", "Q.AAPL"],
    ["T.*"],
    ["Q.TSLA"],
    ["T.MSFT", "T.BRK.B", "T.TSLA"],
    ["Q.*", "Q.AAPL"],
    ["T.NVDA"],
    ["T.AAPL", "Q.MSFT", "T.BRK.B"],
    ["Q.AAPL", "Q.MSFT", "Q.BRK.B", "Q.TSLA", "Q.NVDA"],
    ["T.*", "Q.TSLA"],
    ["T.ZZZZ"],  # acked, never any data: receives only the end marker
    ["T.TSLA", "T.*", "Q.*"],
]
OFFICIAL = {1, 4, 6, 9, 12, 15, 17, 19}  # which of the 20 run the official `massive` client


def test_twenty_clients_each_get_exactly_their_events_in_order_over_one_upstream_connection(
    upstream: MockMassiveServer, relay: MassiveRelay, clients: Clients, officials: Officials
) -> None:
    subscriptions = [[*channels, END] for channels in SUBSCRIPTIONS]
    downstream: list[OfficialClient | mrt.MassiveWebSocketClient] = []
    for i, channels in enumerate(subscriptions):
        if i in OFFICIAL:
            downstream.append(officials(relay.port, channels))
        else:
            downstream.append(clients(relay.url("stocks"), *channels))
    for client in downstream:
        if isinstance(client, mrt.MassiveWebSocketClient):
            client.wait_ready(15)
    # massive_rt clients leave out the tickers their own wildcards cover; the official client sends all
    sent = [channels if i in OFFICIAL else effective(channels) for i, channels in enumerate(subscriptions)]
    wanted = sorted(sorted(channels) for channels in sent)
    assert relay.wait_for(lambda: sorted(sorted(c.subscriptions) for c in relay.active_connections()) == wanted, 15)
    union = {channel for channels in subscriptions for channel in channels}
    assert upstream.wait_for(lambda: upstream.active_connections()[0].subscriptions == effective(union), 15)

    rng = random.Random(7)
    events = [event(rng.choice("TQ"), rng.choice(SYMBOLS), seq) for seq in range(1500)]
    end = event("AM", "END", len(events))
    assert upstream.publish([*events, end], batch=40) == len(events) + 1

    for client, channels in zip(downstream, subscriptions, strict=True):
        expected = [*expected_for(channels, events), key_of(end)]
        if isinstance(client, OfficialClient):
            got = [official_key(m) for m in client.take_until(lambda m: m.event_type == "AM")]
        else:
            items = take_until(client, lambda e: mrt_key(e) == key_of(end))
            got = [k for k in map(mrt_key, items) if k is not None]
        assert got == expected, channels

    # One upstream connection for the twenty, and Massive's limit never crossed.
    assert upstream.max_concurrent(UP_KEY) == 1
    assert len(upstream.connections) == 1
    stats = relay.stats()
    assert stats.downstream_connections == 20
    assert stats.upstream_channels == len(union)
    assert stats.events_in == len(events) + 1
    assert stats.events_dropped == 0
    assert stats.events_sent == sum(len(expected_for(ch, [*events, end])) for ch in subscriptions)

    relay.stop()  # 1001: the official clients' connect() returns normally
    for client in downstream:
        if isinstance(client, OfficialClient):
            client.thread.join(10)
            assert client.error is None


def test_overlapping_sets_keep_each_consumers_order_and_deliver_once(
    upstream: MockMassiveServer, relay: MassiveRelay, raw_clients: RawClients
) -> None:
    sets = {"a": "T.*", "b": "T.AAPL,Q.*", "c": "T.AAPL,T.*,Q.MSFT", "d": "Q.MSFT"}
    consumers = {}
    for name, params in sets.items():
        client = raw_clients(relay.url("stocks"))
        client.auth()
        client.subscribe(params + ",AM.END")
        consumers[name] = client
    assert upstream.wait_for_subscribed({"T.*", "Q.*", "AM.END"}, 10)  # the pool leaves T.AAPL, Q.MSFT out
    # One upstream frame whose objects go to four different sets of consumers, interleaved.
    events = [
        {"ev": ev, "sym": sym, "q": seq}
        for seq, (ev, sym) in enumerate([("T", "AAPL"), ("T", "MSFT"), ("Q", "MSFT"), ("T", "AAPL"), ("Q", "TSLA"),
                                         ("T", "TSLA"), ("Q", "MSFT"), ("T", "AAPL")])
    ]  # fmt: skip
    end = {"ev": "AM", "sym": "END", "v": 99}
    assert upstream.publish([*events, end], batch=100) > 0
    for name, client in consumers.items():
        got = [key_of(o) for o in client.recv_until(lambda o: o.get("sym") == "END")]
        assert got == [*expected_for(sets[name].split(","), events), key_of(end)], name
    assert relay.stats().events_dropped == 0


def test_a_frame_for_one_set_of_consumers_is_forwarded_byte_for_byte(
    upstream: MockMassiveServer, relay: MassiveRelay, raw_clients: RawClients
) -> None:
    client = raw_clients(relay.url("stocks"))
    client.auth()
    client.subscribe("T.*")
    assert upstream.wait_for_subscribed("T.*", 10)
    frame = '[{"ev":"T","sym":"AAPL","p":1.25,"q":1,"extra":{"kept":[1,2]}}, {"ev":"T","sym":"MSFT","q":2}]'
    assert upstream.publish_raw_frames([frame]) == 1
    opcode, data = client.ws.recv_data()
    assert opcode == ABNF.OPCODE_TEXT
    assert data.decode() == frame  # not re-encoded: spacing and unknown fields intact
