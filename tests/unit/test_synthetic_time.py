"""The synthetic source's events carry the present as their time (or its clock's), so a BarClock
and a LastValueCache behave on it as on a live feed; ``clock=None`` keeps the fixed 2025 session.

The BarClock test drives the source and the clock with one fake time source: no real minute passes.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Mapping

import pytest

import massive_rt as mrt
from massive_rt.cli.demo import time_base
from massive_rt.synthetic import SESSION_START_MS, SyntheticMarket, wall_clock_ms
from tests.conftest import wait_until

MIN = 60_000
M0 = 1_800_000_000_000 // MIN * MIN  # a minute start in 2027, far from the fixed 2025 session


class FakeTime:
    """One time source for the source (Unix ms) and the BarClock (epoch seconds)."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def millis(self) -> int:
        return self.ms

    def seconds(self) -> float:
        return self.ms / 1000


@pytest.mark.timeout(60)
def test_a_bar_clock_over_the_synthetic_source_receives_its_real_bars_none_late() -> None:
    fake = FakeTime(M0 + 1_000)
    adapter = mrt.RealTimeDataAdapter(mrt.SyntheticSource(("T.AAPL", "AM.AAPL"), seed=5, clock=fake.millis))
    traded = threading.Event()
    adapter.on(mrt.EquityTrade, lambda _trade: traded.set())
    minutes: queue.Queue[tuple[int, Mapping[str, mrt.BarSlot]]] = queue.Queue()
    clock = mrt.BarClock(adapter, "AM", grace=2.0, clock=fake.seconds,
                         on_minute=lambda minute, bars: minutes.put((minute, bars)))  # fmt: skip
    with adapter, clock:
        for minute in (M0, M0 + MIN):
            assert traded.wait(10)  # AAPL traded in this minute: it has a bar to report
            traded.clear()
            fake.ms = minute + MIN + 500  # the minute ended; within the grace, so only its bar closes it
            clock.wake()
            closed, bars = minutes.get(timeout=10)
            slot = bars["AAPL"]
            assert closed == minute
            assert isinstance(slot.bar, mrt.EquityAgg)
            assert not slot.filled
            assert (slot.bar.start_timestamp, slot.bar.end_timestamp) == (minute, minute + MIN)
            assert slot.bar.volume > 0
        stats = clock.stats()

    assert stats.bars_received >= 2
    assert (stats.late_bars, stats.bars_filled) == (0, 0)


@pytest.mark.timeout(30)
def test_from_env_without_a_key_streams_events_stamped_with_the_present() -> None:
    before = wall_clock_ms()
    adapter = mrt.RealTimeDataAdapter.from_env(("T.AAPL",), environ={}, seed=2)
    cache = mrt.LastValueCache(adapter)
    with adapter:
        assert wait_until(lambda: cache.trade("AAPL") is not None, 10)
        last = cache.trade("AAPL")
    after = wall_clock_ms()

    assert last is not None
    assert isinstance(last.value, mrt.EquityTrade)
    assert before <= last.value.timestamp <= after


def test_clock_none_is_the_fixed_reproducible_2025_session() -> None:
    def first_times(source: mrt.SyntheticSource) -> list[int]:
        return [e["t"] for e in source.generator.next_events(50) if "t" in e]

    one = first_times(mrt.SyntheticSource(("T.*",), seed=8, clock=None))
    two = first_times(mrt.SyntheticSource(("T.*",), seed=8, clock=None))
    later = first_times(mrt.SyntheticSource(("T.*",), seed=8, clock=None, start_ms=M0))

    assert one == two
    assert SESSION_START_MS <= one[0] < SESSION_START_MS + MIN
    assert M0 <= later[0] < M0 + MIN


def test_start_ms_is_validated() -> None:
    with pytest.raises(mrt.ConfigurationError, match="start_ms"):
        mrt.SyntheticSource(("T.*",), clock=None, start_ms=-1)


@pytest.mark.parametrize("speed", [1.0, 20.0])
def test_the_demo_and_serve_markets_start_at_the_present_and_run_at_the_wall_clock_at_speed_1(speed: float) -> None:
    before = wall_clock_ms()
    market = SyntheticMarket(("AAPL",), seed=4, **time_base(speed))
    times = [e["t"] for e in market.next_events(200) if "t" in e]
    after = wall_clock_ms()

    assert before <= times[0]
    if speed == 1.0:  # the wall clock itself
        assert times[-1] <= after
