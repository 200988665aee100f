"""Issue 18, point 3: the relay forwards upstream statuses with their numbers as structured fields.

A massive_rt client behind the relay gets them typed (``gap_start_ns``, ``gap_end_ns``,
``dropped``, ``channels``, ``last_seen``), as one connected directly would; the official client
ignores the extra keys and keeps working.
"""

from __future__ import annotations

import re

import massive_rt as mrt
from massive_rt.protocol import status_from_fields
from massive_rt.relay import MassiveRelay
from massive_rt.testing import MockMassiveServer
from tests.relay._support import UP_KEY, event, mrt_key, take_until
from tests.relay.conftest import Clients, Officials, RawClients


def _drop_upstream_and_resume(upstream: MockMassiveServer, channels: set[str]) -> None:
    assert upstream.drop_all() == 1
    assert upstream.wait_for(lambda: len(upstream.connections) == 1, 10)
    assert upstream.wait_for_subscribed(channels, 10)


def test_a_client_behind_the_relay_gets_typed_gap_statuses(
    upstream: MockMassiveServer, relay: MassiveRelay, clients: Clients, raw_clients: RawClients
) -> None:
    client = clients(relay.url("stocks"), "T.AAPL", "T.MSFT")
    client.wait_ready(10)
    raw = raw_clients(relay.url("stocks"))
    raw.auth()
    raw.subscribe("T.*")
    assert upstream.wait_for_subscribed({"T.*"}, 10)
    upstream.publish([event("T", "AAPL", 1, t=1_000), event("T", "MSFT", 2, t=1_001)])
    take_until(client, lambda e: mrt_key(e) == ("T", "MSFT", 2))

    _drop_upstream_and_resume(upstream, {"T.*"})
    upstream.publish([event("T", "AAPL", 3, t=2_000)])

    items = take_until(client, lambda e: mrt_key(e) == ("T", "AAPL", 3))
    disconnected, gap = (e for e in items if isinstance(e, mrt.StatusMessage) and e.from_server)
    assert (disconnected.status, gap.status) == ("disconnected", "gap")
    assert isinstance(disconnected.gap_start_ns, int)
    assert disconnected.gap_start_ns > 0
    assert gap.gap_start_ns == disconnected.gap_start_ns
    assert isinstance(gap.gap_end_ns, int)
    assert gap.gap_end_ns >= gap.gap_start_ns
    numbers = dict(re.findall(r"(gap_(?:start|end)_ns)=(\d+)", gap.message))  # the text still says the same
    assert (int(numbers["gap_start_ns"]), int(numbers["gap_end_ns"])) == (gap.gap_start_ns, gap.gap_end_ns)
    # Per symbol, the last trade this client got before the upstream dropped.
    for status in (disconnected, gap):
        assert {(m.symbol, m.timestamp, m.sequence) for m in status.last_seen} == {
            ("AAPL", 1_000, 1),
            ("MSFT", 1_001, 2),
        }

    objects = raw.recv_until(lambda o: o.get("q") == 3)
    statuses = [o for o in objects if o["ev"] == "status"]
    assert [o["status"] for o in statuses] == ["disconnected", "gap"]
    assert statuses[0]["gap_start_ns"] == gap.gap_start_ns
    assert (statuses[1]["gap_start_ns"], statuses[1]["gap_end_ns"]) == (gap.gap_start_ns, gap.gap_end_ns)


def test_the_official_client_behind_the_relay_ignores_the_extra_status_fields(
    upstream: MockMassiveServer, relay: MassiveRelay, officials: Officials
) -> None:
    official = officials(relay.port, ["T.AAPL"])
    assert upstream.wait_for_subscribed({"T.AAPL"}, 10)
    upstream.publish([event("T", "AAPL", 1)])
    assert official.take_until(lambda m: getattr(m, "sequence_number", None) == 1)[-1].symbol == "AAPL"

    _drop_upstream_and_resume(upstream, {"T.AAPL"})
    upstream.publish([event("T", "AAPL", 2)])
    after = official.take_until(lambda m: getattr(m, "sequence_number", None) == 2)
    assert [getattr(m, "sequence_number", None) for m in after][-1] == 2
    assert official.error is None
    relay.stop()


def test_status_fields_of_the_wrong_type_are_ignored() -> None:
    fields, rejected = status_from_fields({
        "ev": "status", "status": "gap", "message": "m", "gap_start_ns": "1", "gap_end_ns": 5, "dropped": -1,
        "channels": ["T.A", 3], "last_seen": [{"sym": "A", "ev": "T", "t": 1, "q": 2, "r": 3}],
        "last_seen_omitted": True, "last_seen_omitted_oldest": "x",
    })  # fmt: skip
    assert fields == {"gap_end_ns": 5, "last_seen": (mrt.SymbolMark(symbol="A", ev="T", timestamp=1, sequence=2,
                                                                    received_at_ns=3),)}  # fmt: skip
    assert sorted(rejected) == sorted(["gap_start_ns", "dropped", "channels", "last_seen_omitted",
                                       "last_seen_omitted_oldest"])  # fmt: skip
    assert status_from_fields({"last_seen": [{"sym": ["A"], "ev": "T"}]}) == ({}, ["last_seen"])


def test_a_server_status_with_malformed_fields_still_arrives(upstream: MockMassiveServer) -> None:
    client = mrt.MassiveWebSocketClient(UP_KEY, url=upstream.url("stocks"), subscriptions=("T.AAPL",), name="direct")
    try:
        client.start().wait_ready(10)
        bad = '[{"ev":"status","status":"gap","message":"m","gap_start_ns":"x","dropped":[1],"gap_end_ns":7}]'
        assert upstream.send_raw(bad) == 1
        status = take_until(client, lambda e: isinstance(e, mrt.StatusMessage) and e.from_server)[-1]
        assert isinstance(status, mrt.StatusMessage)
        assert (status.status, status.gap_start_ns, status.gap_end_ns, status.dropped) == ("gap", None, 7, 0)
        assert client.stats().rejected_status_fields == 2  # gap_start_ns and dropped, counted
    finally:
        client.stop()
