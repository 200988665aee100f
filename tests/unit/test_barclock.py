"""BarClock against a real MockMassiveServer, driven by a fake time source: minute closes, grace,
quiet symbols filled, late bars, exactly once per minute, callback errors, wildcards, shutdown."""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

import massive_rt as mrt
from massive_rt.testing import MockMassiveServer
from tests.conftest import wait_until

KEY = "test-key"
FAST = mrt.ReconnectPolicy(initial_delay=0.01, max_delay=0.05)
M0 = 1_700_000_040_000  # a minute's start, epoch ms
MIN = 60_000


class FakeTime:
    """The clock's time source: epoch seconds that move only when the test says."""

    def __init__(self, ms: int) -> None:
        self.now = ms / 1000

    def __call__(self) -> float:
        return self.now

    def set_ms(self, ms: int) -> float:
        self.now = ms / 1000
        return self.now


def am(sym: str, minute: int, close: float, volume: int = 100) -> dict[str, Any]:
    return {"ev": "AM", "sym": sym, "o": close - 1, "h": close + 1, "l": close - 2, "c": close, "v": volume,
            "vw": close, "s": minute, "e": minute + MIN}  # fmt: skip


class Harness:
    """An adapter on a client of the mock server, a BarClock on it and what its callbacks got."""

    def __init__(self, server: MockMassiveServer, channels: tuple[str, ...], **clock_options: Any) -> None:
        self.server = server
        self.time = FakeTime(M0 + 10_000)
        self.minutes: queue.Queue[tuple[int, Mapping[str, mrt.BarSlot]]] = queue.Queue()
        self.late: queue.Queue[tuple[int, mrt.MarketEvent]] = queue.Queue()
        client = mrt.MassiveWebSocketClient(api_key=KEY, url=server.url(), reconnect=FAST, subscriptions=channels)
        self.adapter = mrt.RealTimeDataAdapter(client)
        clock_options.setdefault("on_minute", lambda minute, bars: self.minutes.put((minute, bars)))
        clock_options.setdefault("on_late", lambda minute, bar: self.late.put((minute, bar)))
        self.clock = mrt.BarClock(self.adapter, "AM", grace=2.0, clock=self.time, **clock_options)
        self.adapter.start()
        client.wait_ready(5)
        assert client.wait_acked(channels, 5)
        self.clock.start()

    def publish(self, *bars: dict[str, Any]) -> None:
        """Publish bars and wait until the clock has collected them (in time or late)."""
        stats = self.clock.stats()
        before = stats.bars_received + stats.late_bars
        self.server.publish(list(bars))
        assert wait_until(lambda: self.clock.stats().bars_received + self.clock.stats().late_bars == before + len(bars))

    def advance_to(self, ms: int) -> None:
        """Move the time source, wake the clock and wait until it has looked at the new time."""
        now = self.time.set_ms(ms)
        self.clock.wake()
        assert wait_until(lambda: (self.clock.stats().evaluated_at or 0) >= now)

    def next_minute(self) -> tuple[int, Mapping[str, mrt.BarSlot]]:
        return self.minutes.get(timeout=5)

    def stop(self) -> None:
        self.clock.stop()
        self.adapter.stop()


@pytest.fixture
def harness(server: MockMassiveServer) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(*channels: str, **options: Any) -> Harness:
        made.append(Harness(server, channels, **options))
        return made[-1]

    yield make
    for h in made:
        h.stop()


@pytest.fixture
def server() -> Iterator[MockMassiveServer]:
    with MockMassiveServer(api_keys={KEY}) as srv:
        yield srv


def test_a_minute_closes_once_every_subscribed_symbols_bar_is_in_without_waiting_for_grace(harness) -> None:
    h = harness("AM.AAPL", "AM.MSFT")
    h.publish(am("AAPL", M0, 10.0))
    h.advance_to(M0 + 30_000)  # the minute is not over, MSFT not in: nothing yet
    assert h.minutes.empty()

    h.publish(am("MSFT", M0, 20.0))
    minute, bars = h.next_minute()  # the time source did not move: complete, closed at once
    assert minute == M0
    assert list(bars) == ["AAPL", "MSFT"]
    assert [(s.bar.close, s.filled) for s in bars.values()] == [(10.0, False), (20.0, False)]  # type: ignore[union-attr]


def test_a_minute_with_a_quiet_symbol_closes_after_the_grace_with_it_filled_from_its_previous_close(harness) -> None:
    h = harness("AM.AAPL", "AM.QUIET")
    h.publish(am("AAPL", M0, 10.0), am("QUIET", M0, 5.0))
    assert h.next_minute()[0] == M0
    h.publish(am("AAPL", M0 + MIN, 11.0))

    h.advance_to(M0 + 2 * MIN + 1_999)  # the minute ended, the grace (2 s) not yet
    assert h.minutes.empty()
    h.advance_to(M0 + 2 * MIN + 2_000)
    minute, bars = h.next_minute()

    assert minute == M0 + MIN
    aapl, quiet = bars["AAPL"], bars["QUIET"]
    assert (aapl.filled, aapl.bar.close) == (False, 11.0)  # type: ignore[union-attr]
    assert quiet.filled
    assert isinstance(quiet.bar, mrt.EquityAgg)
    bar = quiet.bar
    assert (bar.open, bar.high, bar.low, bar.close, bar.volume, bar.vwap) == (5.0, 5.0, 5.0, 5.0, 0, None)
    assert (bar.symbol, bar.event_type) == ("QUIET", "AM")
    assert (bar.start_timestamp, bar.end_timestamp) == (M0 + MIN, M0 + 2 * MIN)
    assert h.clock.stats().bars_filled == 1


def test_a_symbol_never_seen_has_an_empty_slot_and_fill_empty_false_fills_nothing(harness) -> None:
    h = harness("AM.AAPL", "AM.NEVER", fill_empty=False)
    h.publish(am("AAPL", M0, 10.0))
    h.advance_to(M0 + MIN + 2_000)
    _, bars = h.next_minute()
    assert bars["NEVER"] == mrt.BarSlot(symbol="NEVER", minute=M0, bar=None, filled=False)

    h.advance_to(M0 + 2 * MIN + 2_000)  # AAPL quiet now, but fill_empty=False
    minute, bars = h.next_minute()
    assert minute == M0 + MIN
    assert (bars["AAPL"].bar, bars["AAPL"].filled) == (None, False)
    assert h.clock.stats().bars_missing == 3


def test_late_bars_go_to_on_late_are_counted_and_their_close_feeds_the_next_fill(harness) -> None:
    h = harness("AM.AAPL", "AM.MSFT")
    h.publish(am("AAPL", M0, 10.0), am("MSFT", M0, 20.0))
    assert h.next_minute()[0] == M0
    h.publish(am("AAPL", M0 + MIN, 11.0))
    h.advance_to(M0 + 2 * MIN + 2_000)
    _, bars = h.next_minute()
    assert bars["MSFT"].filled

    h.publish(am("MSFT", M0 + MIN, 21.0))  # after its minute was emitted
    minute, bar = h.late.get(timeout=5)
    assert (minute, bar.close) == (M0 + MIN, 21.0)  # type: ignore[attr-defined]
    assert h.clock.stats().late_bars == 1

    h.advance_to(M0 + 3 * MIN + 2_000)  # both quiet: MSFT is filled from the late close
    _, bars = h.next_minute()
    assert (bars["MSFT"].bar.close, bars["AAPL"].bar.close) == (21.0, 11.0)  # type: ignore[union-attr]


def test_each_minute_is_emitted_exactly_once_in_order_even_after_a_jump_of_the_time_source(harness) -> None:
    h = harness("AM.AAPL")
    h.publish(am("AAPL", M0, 10.0))
    h.advance_to(M0 + MIN + 30_000)  # complete at once, then nothing more is due
    h.advance_to(M0 + MIN + 40_000)
    h.advance_to(M0 + 5 * MIN + 2_000)  # four more minutes due at once
    h.advance_to(M0 + 5 * MIN + 3_000)

    emitted = [h.minutes.get_nowait()[0] for _ in range(h.minutes.qsize())]
    assert emitted == [M0 + i * MIN for i in range(5)]
    assert h.clock.stats().minutes_emitted == 5


@pytest.mark.allow_errors(r"^bar clock: on_minute raised ZeroDivisionError", logger="massive_rt.barclock")
def test_an_exception_in_on_minute_is_logged_and_counted_and_the_clock_carries_on(harness) -> None:
    got: queue.Queue[int] = queue.Queue()

    def on_minute(minute: int, bars: Mapping[str, mrt.BarSlot]) -> None:
        got.put(minute)
        if minute == M0:
            raise ZeroDivisionError

    h = harness("AM.AAPL", on_minute=on_minute)
    h.publish(am("AAPL", M0, 10.0))
    assert got.get(timeout=5) == M0
    h.advance_to(M0 + 2 * MIN + 2_000)
    assert got.get(timeout=5) == M0 + MIN
    assert h.clock.stats().callback_errors == 1


def test_with_a_wildcard_every_symbol_seen_so_far_is_in_each_minute(harness) -> None:
    h = harness("AM.*")
    h.publish(am("AAPL", M0, 10.0), am("MSFT", M0, 20.0))
    h.advance_to(M0 + MIN + 1_000)  # with a wildcard a minute is never complete: it waits for the grace
    assert h.minutes.empty()
    h.advance_to(M0 + MIN + 2_000)
    assert sorted(h.next_minute()[1]) == ["AAPL", "MSFT"]

    h.publish(am("NVDA", M0 + MIN, 30.0))
    h.advance_to(M0 + 2 * MIN + 2_000)
    _, bars = h.next_minute()
    assert {s: slot.filled for s, slot in bars.items()} == {"AAPL": True, "MSFT": True, "NVDA": False}


def test_bars_far_ahead_of_the_time_source_are_refused_and_counted(harness) -> None:
    h = harness("AM.AAPL")
    h.server.publish([am("AAPL", M0 + 10 * MIN, 10.0), {"ev": "AM", "sym": "AAPL", "c": 1.0}])
    assert wait_until(lambda: h.clock.stats().out_of_range == 2)
    assert h.clock.stats().pending_minutes == 0


def test_the_clock_thread_stops_with_the_adapter_and_stop_is_idempotent(harness) -> None:
    h = harness("AM.AAPL")
    assert h.clock.stats().running
    h.adapter.stop()
    assert wait_until(lambda: not h.clock.stats().running, 5)
    assert h.clock.stop() is True
    assert h.clock.stop() is True
    with pytest.raises(mrt.ClientClosedError):
        h.clock.start()


def test_bad_arguments_raise_typed_errors(server: MockMassiveServer) -> None:
    adapter = mrt.RealTimeDataAdapter(mrt.SyntheticSource(["AM.*"], rate=None))
    with pytest.raises(mrt.ConfigurationError, match="channel='T'"):
        mrt.BarClock(adapter, "T")
    with pytest.raises(mrt.ConfigurationError, match="grace=-1"):
        mrt.BarClock(adapter, grace=-1)
    with pytest.raises(mrt.ConfigurationError, match="on_minute=3"):
        mrt.BarClock(adapter, on_minute=3)  # type: ignore[arg-type]
    with pytest.raises(mrt.ConfigurationError, match="not a RealTimeDataAdapter"):
        mrt.BarClock(object())
