"""Issue 18, point 2: ``disconnected`` and ``gap`` statuses carry, per symbol, the last event delivered.

Events the server sent but the client never got (lost in flight) carry exchange timestamps older
than the receive-time window (``gap_start_ns``); the per-symbol marks bound them from below.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import massive_rt as mrt
from massive_rt.connection import MassiveWebSocketClient
from massive_rt.testing import MockMassiveServer

from ..conftest import wait_until

SYMBOLS = ("AAPL", "MSFT", "NVDA")


@pytest.fixture
def server() -> Iterator[MockMassiveServer]:
    with MockMassiveServer(api_keys={"test-key"}, name="gapmarks") as server:
        yield server


def _trade(symbol: str, t_ms: int, q: int) -> dict[str, Any]:
    return {"ev": "T", "sym": symbol, "x": 4, "i": str(q), "z": 3, "p": 100.0, "s": 1, "t": t_ms, "q": q}


def _quote(symbol: str, t_ms: int, q: int) -> dict[str, Any]:
    return {"ev": "Q", "sym": symbol, "bp": 1.0, "bs": 1, "ap": 1.1, "as": 1, "t": t_ms, "q": q}


def _take_until(client: MassiveWebSocketClient, done: Callable[[list[mrt.Event]], bool]) -> list[mrt.Event]:
    events: list[mrt.Event] = []
    deadline = time.monotonic() + 10
    while not done(events):
        assert time.monotonic() < deadline, f"gave up after {len(events)} events: {events[-3:]}"
        try:
            events.append(client.get(timeout=0.5))
        except queue.Empty:
            continue
    return events


def _market(events: list[mrt.Event]) -> list[mrt.MarketEvent]:
    return [e for e in events if isinstance(e, mrt.MarketEvent)]


def _status(events: list[mrt.Event], code: str) -> mrt.StatusMessage:
    found = [e for e in events if isinstance(e, mrt.StatusMessage) and e.status == code]
    assert len(found) == 1, [e for e in events if isinstance(e, mrt.StatusMessage)]
    return found[0]


@pytest.mark.parametrize("dispatch_via", ["get", "drain"])
def test_lost_in_flight_events_lie_inside_the_per_symbol_window(
    server: MockMassiveServer, make_client: Callable[..., MassiveWebSocketClient], dispatch_via: str
) -> None:
    client = make_client(subscriptions=("T.*", "Q.*"), ping_interval=None).start()
    assert client.wait_ready(5)
    base = time.time_ns() // 1_000_000 - 60_000  # exchange time a minute ago: lost events predate receipt
    delivered: list[dict[str, Any]] = []
    for k in range(30):
        symbol = SYMBOLS[k % 3]
        delivered.append(_trade(symbol, base + k, 1000 + k))
        if k % 2:
            delivered.append(_quote(symbol, base + k, 5000 + k))
    assert server.publish(delivered, batch=7) == len(delivered)
    if dispatch_via == "get":
        got = _market(_take_until(client, lambda evs: len(_market(evs)) == len(delivered)))
    else:
        taken: list[mrt.Event] = []
        assert wait_until(lambda: bool(taken.extend(client.drain()) or len(_market(taken)) == len(delivered)), 10)
        got = _market(taken)
    assert [e.sequence_number for e in got] == [d["q"] for d in delivered]  # type: ignore[attr-defined]

    # Sent, never delivered: the connection is partitioned, then dropped.
    assert server.stall() == 1
    lost = [_trade(s, base + 100 + i, 2000 + i) for i, s in enumerate(SYMBOLS)] + [_quote("AAPL", base + 200, 9000)]
    server.publish(lost)
    before = {info.id for info in server.connections}
    server.drop_all()
    assert wait_until(lambda: any(info.id not in before for info in server.connections), 10)
    resumed = [_trade("AAPL", base + 300, 3000)]
    assert wait_until(lambda: server.publish(resumed) == 1, 10)
    events = _take_until(client, lambda evs: any(getattr(e, "sequence_number", None) == 3000 for e in evs))

    disconnected, gap = _status(events, "disconnected"), _status(events, "gap")
    expected: dict[tuple[str, str], tuple[int, int]] = {}
    for d in delivered:
        expected[(d["ev"], d["sym"])] = (d["t"], d["q"])
    for status in (disconnected, gap):
        marks = {(m.ev, m.symbol): (m.timestamp, m.sequence) for m in status.last_seen}
        assert marks == expected
        assert status.last_seen_omitted == 0
        assert status.last_seen_omitted_oldest is None
    assert gap.gap_end_ns is not None
    assert gap.gap_start_ns is not None
    marks = {(m.ev, m.symbol): m for m in gap.last_seen}
    for event in lost:
        mark = marks[(event["ev"], event["sym"])]
        # The receive-time window misses them (their exchange time predates the last receipt) ...
        assert event["t"] * 1_000_000 < gap.gap_start_ns
        # ... the per-symbol window [mark, gap end] holds them.
        assert mark.timestamp < event["t"] <= gap.gap_end_ns // 1_000_000
        assert mark.sequence < event["q"]


def test_marks_list_the_most_recent_symbols_and_summarise_the_rest(
    server: MockMassiveServer, make_client: Callable[..., MassiveWebSocketClient]
) -> None:
    client = make_client(subscriptions=("T.*",), ping_interval=None, last_seen_limit=2).start()
    assert client.wait_ready(5)
    symbols = [f"S{i}" for i in range(5)]
    for i, symbol in enumerate(symbols):  # one frame each: receive times increase with i
        assert server.publish([_trade(symbol, 1_000 + i, i)]) == 1
        assert isinstance(_take_until(client, lambda evs: bool(_market(evs)))[-1], mrt.EquityTrade)
    server.drop_all()
    disconnected = _take_until(client, lambda evs: any(getattr(e, "status", "") == "disconnected" for e in evs))[-1]
    assert isinstance(disconnected, mrt.StatusMessage)
    assert [(m.symbol, m.timestamp, m.sequence) for m in disconnected.last_seen] == [("S4", 1004, 4), ("S3", 1003, 3)]
    assert disconnected.last_seen_omitted == 3
    assert disconnected.last_seen_omitted_oldest == 1000


def test_raw_clients_carry_no_marks(
    server: MockMassiveServer, make_client: Callable[..., MassiveWebSocketClient]
) -> None:
    client = make_client(subscriptions=("T.*",), ping_interval=None, raw=True).start()
    assert client.wait_ready(5)
    assert server.publish([_trade("AAPL", 1, 1)]) == 1
    assert isinstance(_take_until(client, lambda evs: isinstance(evs[-1:] and evs[-1], mrt.RawFrame))[-1], mrt.RawFrame)
    server.drop_all()
    events = _take_until(client, lambda evs: any(getattr(e, "status", "") == "disconnected" for e in evs))
    disconnected = events[-1]
    assert isinstance(disconnected, mrt.StatusMessage)
    assert disconnected.last_seen == ()
    assert disconnected.last_seen_omitted == 0


def test_marks_are_bounded_and_forget_the_oldest_symbols_first() -> None:
    """A wildcard over a huge universe must not keep an event per symbol forever (pure logic)."""
    from massive_rt.marks import DeliveryMarks

    marks = DeliveryMarks(["T"], limit=10, capacity=100)
    table = marks.by_ev["T"]
    for n in range(101):
        table[f"S{n}"] = mrt.EquityTrade(symbol=f"S{n}", timestamp=n, sequence_number=n, received_at_ns=n)
    marks.bound()
    assert len(table) == 75  # the oldest quarter forgotten
    assert sorted(table, key=lambda s: int(s[1:]))[:1] == ["S26"]
    assert "S100" in table
    assert marks.forgotten == 26
    snapshot = marks.snapshot()
    assert [m.sequence for m in snapshot.marks] == list(range(100, 90, -1))
    assert (snapshot.omitted, snapshot.omitted_oldest) == (65, 26)


def test_last_seen_limit_zero_keeps_no_marks(server: MockMassiveServer, make_client: Any) -> None:
    client = make_client(subscriptions=["T.AAPL"], last_seen_limit=0)
    client.start().wait_ready(10)
    server.publish([{"ev": "T", "sym": "AAPL", "p": 1.0, "s": 1, "t": 5, "q": 1}])
    event = client.get(timeout=10)
    while not isinstance(event, mrt.EquityTrade):  # state statuses first
        event = client.get(timeout=10)
    server.drop_all()
    status = client.get(timeout=10)
    while not (isinstance(status, mrt.StatusMessage) and status.status == "disconnected"):
        status = client.get(timeout=10)
    assert (status.last_seen, status.last_seen_omitted) == ((), 0)
