"""A connection's queue is bounded in bytes (``queue_bytes``, or ``queue_size`` events of 128
bytes): over a real MockMassiveServer, drops at the byte bound still count exact events, frame
by frame, and ``stats()`` reports the queue in bytes and in events."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

import massive_rt as mrt
from massive_rt.connection import MassiveWebSocketClient
from massive_rt.eventqueue import KIND_DATA
from massive_rt.testing import MockMassiveServer
from tests.conftest import wait_until
from tests.support import KEY

WAIT = 10.0
TRADE = {"ev": "T", "sym": "AAPL", "x": 4, "i": "1", "z": 3, "p": 150.25, "s": 100, "c": [0], "t": 1234567890000}


def three_trade_frames(first: int, frames: int) -> list[dict[str, Any]]:
    """``frames`` frames' worth of trades (published three to a frame), every ``q`` of three digits:
    all frames have the same length."""
    return [dict(TRADE, q=first + i) for i in range(3 * frames)]


def frame_bytes(server: MockMassiveServer, make_client: Callable[..., MassiveWebSocketClient]) -> int:
    probe = make_client(subscriptions=["T.*"])
    probe.start()
    probe.wait_ready(WAIT)
    server.publish(three_trade_frames(100, 1), batch=3)
    assert wait_until(lambda: probe.stats().queue_events == 3, WAIT)
    size: int = probe.stats().queue_bytes
    probe.stop()
    return size


@pytest.mark.parametrize("overflow", ["drop_oldest", "drop_newest"])
def test_drops_at_the_byte_bound_count_the_exact_events_of_whole_frames(
    server: MockMassiveServer, make_client: Callable[..., MassiveWebSocketClient], overflow: str
) -> None:
    size = frame_bytes(server, make_client)
    client = make_client(subscriptions=["T.*"], queue_bytes=5 * size, overflow=overflow)
    client.start()
    client.wait_ready(WAIT)
    client.drain()
    before = client.stats().frames_received

    server.publish(three_trade_frames(100, 20), batch=3)  # 20 frames of 3 events; 5 frames fit
    assert wait_until(lambda: client.stats().frames_received >= before + 20, WAIT)

    stats = client.stats()
    assert (stats.queue_bytes, stats.queue_events) == (5 * size, 15)
    assert stats.queue_high_water_bytes == 5 * size
    assert stats.queue_capacity_bytes == 5 * size
    events = client.drain(1000)
    trades = [e.sequence_number for e in events if isinstance(e, mrt.EquityTrade)]
    dropped = sum(e.dropped or 0 for e in events if isinstance(e, mrt.StatusMessage) and e.status == "dropped")
    assert dropped == 45 == client.stats().dropped_events
    assert client.stats().dropped_frames == 15
    expected = range(145, 160) if overflow == "drop_oldest" else range(100, 115)
    assert trades == list(expected)


def test_queue_high_water_counts_the_events_queued_and_estimates_from_the_bytes(
    server: MockMassiveServer, make_client: Callable[..., MassiveWebSocketClient]
) -> None:
    client = make_client(subscriptions=["T.*"], queue_bytes=1_000_000)
    client.start()
    client.wait_ready(WAIT)
    server.publish(three_trade_frames(100, 10), batch=3)
    assert wait_until(lambda: client.stats().queue_events == 30, WAIT)
    # Nothing decoded yet: what is queued now is counted (the nominal 128 bytes per event, which
    # the old estimate used, made these ~70-byte trades look like 16).
    assert client.stats().queue_high_water == 30

    assert len(client.drain(1000)) >= 30
    assert client.stats().queue_high_water == 30  # a mark: it does not fall as the queue empties


def test_queue_high_water_after_drops_counts_the_dropped_events_in_the_average(
    server: MockMassiveServer, make_client: Callable[..., MassiveWebSocketClient]
) -> None:
    size = frame_bytes(server, make_client)
    client = make_client(subscriptions=["T.*"], queue_bytes=5 * size)
    client.start()
    client.wait_ready(WAIT)
    client.drain()
    before = client._frames
    server.publish(three_trade_frames(100, 20), batch=3)  # 20 frames of 3 events; 5 frames fit
    # Waits on the reader's frame count, not stats(): only the estimate may know the high water.
    assert wait_until(lambda: client._frames >= before + 20, WAIT)
    events = client.drain(1000)
    assert sum(isinstance(e, mrt.EquityTrade) for e in events) == 15

    stats = client.stats()
    assert stats.dropped_events == 45
    # 15 events at most were queued. The old estimate averaged over the decoded events only
    # (15 events for the bytes of 60): it said 4.
    assert 12 <= stats.queue_high_water <= 15


def test_queue_size_becomes_a_byte_bound_once_and_queue_bytes_wins() -> None:
    assert mrt.ClientConfig(queue_size=10).queue_capacity_bytes == 1280
    assert mrt.ClientConfig(queue_size=10, queue_bytes=5000).queue_capacity_bytes == 5000
    assert mrt.ClientConfig().queue_capacity_bytes == 100_000 * 128
    assert "queue_bytes=1280" in repr(mrt.ClientConfig(queue_size=10))
    client = MassiveWebSocketClient(api_key=KEY, url="ws://127.0.0.1:9/stocks", queue_size=3)
    assert client.stats().queue_capacity_bytes == 384
    client = MassiveWebSocketClient(api_key=KEY, url="ws://127.0.0.1:9/stocks", queue_bytes=4096)
    assert client.stats().queue_capacity_bytes == 4096


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "4096"])
def test_a_bad_queue_bytes_is_a_clear_configuration_error(bad: object) -> None:
    with pytest.raises(mrt.ConfigurationError, match=r"^queue_bytes=.* must be an int >= 1 or None$") as config:
        mrt.ClientConfig(queue_bytes=bad)  # type: ignore[arg-type]
    assert config.value.field == "queue_bytes"
    with pytest.raises(mrt.ConfigurationError, match="queue_bytes") as client:
        MassiveWebSocketClient(api_key=KEY, url="ws://127.0.0.1:9/stocks", queue_bytes=bad)  # type: ignore[arg-type]
    assert client.value.field == "queue_bytes"
    with pytest.raises(mrt.ConfigurationError, match="queue_bytes") as pool:
        mrt.ConnectionPool(api_key=KEY, client_options={"queue_bytes": bad})
    assert pool.value.field == "queue_bytes"


def test_stats_in_a_forked_child_counts_queued_events_without_the_queue_lock() -> None:
    client = MassiveWebSocketClient(api_key=KEY, url="ws://127.0.0.1:9/stocks", queue_bytes=10_000)
    client._queue.put([KIND_DATA, b'[{"ev":"T"},{"ev":"T"}]', 0, -1])
    client._forked = True  # as in a child after os.fork()
    result: list[int] = []
    client._queue._lock.acquire()  # a parent's reader may have held it at the fork: never released here
    try:
        snapshot = threading.Thread(target=lambda: result.append(client.stats().queue_events),
                                    name="test-forked-stats", daemon=True)  # fmt: skip
        snapshot.start()
        snapshot.join(WAIT)
        assert result == [2]
    finally:
        client._queue._lock.release()
        snapshot.join(WAIT)
