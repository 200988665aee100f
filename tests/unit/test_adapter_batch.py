"""RealTimeDataAdapter.on_batch: one call per delivered batch, after the per-event handlers, on the
callback thread, against a real MockMassiveServer in both dispatch modes."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

import massive_rt as mrt
from massive_rt.testing import MockMassiveServer
from tests.conftest import wait_until

KEY = "test-key"


def trade(sym: str, q: int) -> dict[str, object]:
    return {"ev": "T", "sym": sym, "p": 100.0, "s": 1, "t": 1_700_000_000_000 + q, "q": q}


@pytest.fixture
def server() -> Iterator[MockMassiveServer]:
    with MockMassiveServer(api_keys={KEY}) as srv:
        yield srv


@pytest.fixture(params=["thread", "inline"])
def adapter(request: pytest.FixtureRequest, server: MockMassiveServer) -> Iterator[mrt.RealTimeDataAdapter]:
    client = mrt.MassiveWebSocketClient(api_key=KEY, url=server.url(), subscriptions=["T.*"])
    adapter = mrt.RealTimeDataAdapter(client, dispatch=str(request.param))
    yield adapter
    adapter.stop()


def start(adapter: mrt.RealTimeDataAdapter) -> None:
    adapter.start()
    client = adapter.source
    client.wait_ready(5)
    assert client.wait_acked(["T.*"], 5)


def test_a_batch_handler_sees_every_delivered_event_once_in_order_after_the_event_handlers(
    server: MockMassiveServer, adapter: mrt.RealTimeDataAdapter
) -> None:
    per_event: list[int] = []
    order: list[tuple[str, int]] = []
    batches: list[list[int]] = []
    threads: set[str] = set()

    def on_trade(event: mrt.EquityTrade) -> None:
        per_event.append(event.sequence_number or 0)
        order.append(("event", event.sequence_number or 0))

    def on_batch(events: list[mrt.Event]) -> None:
        threads.add(threading.current_thread().name)
        trades = [e.sequence_number or 0 for e in events if isinstance(e, mrt.EquityTrade)]
        batches.append(trades)
        order.extend(("batch", q) for q in trades)

    adapter.on(mrt.EquityTrade, on_trade)
    assert adapter.on_batch(on_batch) is on_batch
    start(adapter)
    server.publish([trade("AAPL", q) for q in range(1, 51)])
    assert wait_until(lambda: sum(map(len, batches)) == 50, 5)
    assert [q for batch in batches for q in batch] == list(range(1, 51)) == per_event
    for q in range(1, 51):  # every event's handlers ran before the batch handler saw it
        assert order.index(("event", q)) < order.index(("batch", q))
    assert threads
    assert "massive-rt-" in next(iter(threads))


@pytest.mark.allow_errors(r"handler .*broken.* raised", logger="massive_rt.adapter")
def test_a_raising_batch_handler_is_counted_and_the_next_batches_still_come(
    server: MockMassiveServer, adapter: mrt.RealTimeDataAdapter
) -> None:
    seen: list[int] = []

    def broken(events: list[mrt.Event]) -> None:
        seen.extend(e.sequence_number or 0 for e in events if isinstance(e, mrt.EquityTrade))
        raise ValueError("boom")

    adapter.on_batch(broken)
    start(adapter)
    server.publish([trade("AAPL", 1)])
    assert wait_until(lambda: seen == [1], 5)
    server.publish([trade("AAPL", 2)])
    assert wait_until(lambda: seen == [1, 2], 5)
    stats = adapter.stats()
    assert stats.handler_errors >= 2
    assert any("broken" in name for name in stats.errors_by_handler)


def test_off_batch_unregisters_and_a_bad_handler_is_refused(
    server: MockMassiveServer, adapter: mrt.RealTimeDataAdapter
) -> None:
    batched: list[int] = []
    events: list[int] = []

    class Counter:
        def on_batch(self, batch: list[mrt.Event]) -> None:
            batched.extend(e.sequence_number or 0 for e in batch if isinstance(e, mrt.EquityTrade))

    counter = Counter()
    adapter.on_batch(counter.on_batch)
    adapter.on(mrt.EquityTrade, lambda e: events.append(e.sequence_number or 0))
    start(adapter)
    server.publish([trade("AAPL", 1)])
    assert wait_until(lambda: batched == [1], 5)
    assert adapter.off_batch(counter.on_batch) is True  # a bound method made again compares equal
    assert adapter.off_batch(counter.on_batch) is False
    server.publish([trade("AAPL", 2)])
    assert wait_until(lambda: events == [1, 2], 5)
    assert batched == [1]
    with pytest.raises(mrt.ConfigurationError, match="not callable"):
        adapter.on_batch(42)  # type: ignore[arg-type]
