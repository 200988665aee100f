"""``dispatch="adaptive"``: inline while callbacks are fast, the dispatcher after one was not.

The budget is measured with an injected clock that only the test's callbacks move, so a
callback is "slow" exactly when the test says so, whatever the machine's speed. What must hold
across every hand-over and return: each connection's events arrive in order, once, none lost;
callbacks never overlap; while handed over the readers keep reading (the queues fill behind a
blocked callback); stop() closes the inline path for good.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from decimal import Decimal

import pytest

import massive_rt as mrt
from massive_rt.adapter import RealTimeDataAdapter
from massive_rt.connection import MassiveWebSocketClient
from massive_rt.pool import ConnectionPool
from massive_rt.synthetic import SyntheticSource
from massive_rt.testing import MockMassiveServer
from tests.conftest import wait_until
from tests.support import FAST, KEY

pytestmark = pytest.mark.timeout(60)

WAIT = 10.0
DISPATCHER = "massive-rt-dispatcher"
BACKLOG = 40  # queued behind a blocked callback: more than the 32 fast events a return needs


class FakeClock:
    """The adapter's budget clock; only callbacks move it (callbacks never run concurrently)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Trades:
    """Records (symbol, sequence, thread name); waitable; flags overlapping calls; runs a hook."""

    def __init__(self, hook: Callable[[mrt.EquityTrade], None] = lambda event: None) -> None:
        self.seen: list[tuple[str, int, str]] = []
        self.cond = threading.Condition()
        self._inside = threading.Lock()
        self.overlaps = 0
        self.hook = hook

    def __call__(self, event: mrt.EquityTrade) -> None:
        if not self._inside.acquire(blocking=False):
            self.overlaps += 1  # another callback is running right now
            self._inside.acquire()
        try:
            with self.cond:
                self.seen.append((event.symbol or "", event.sequence_number or 0, threading.current_thread().name))
                self.cond.notify_all()
            self.hook(event)
        finally:
            self._inside.release()

    def wait(self, count: int) -> list[tuple[str, int, str]]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.seen) >= count, WAIT), f"{len(self.seen)} of {count}"
            return list(self.seen)

    def of(self, symbol: str) -> list[int]:
        with self.cond:
            return [q for s, q, _ in self.seen if s == symbol]


def trade(sym: str = "AAPL", q: int = 0) -> dict[str, object]:
    return {"ev": "T", "sym": sym, "p": 100.0 + q, "s": 100, "t": 1, "q": q}


def on_reader() -> bool:
    return threading.current_thread().name.startswith("massive-rt-reader-")


def publish_until(server: MockMassiveServer, happened: threading.Event, symbol: str, first: int) -> int:
    """Publish single trades ``first``, ``first + 1`` … one after the other until ``happened`` is
    set (a callback ran on a reader); return the next sequence number. Early ones may go through
    the dispatcher (busy with the connect's statuses); later ones find it idle."""
    for q in range(first, first + 200):
        server.publish([trade(symbol, q)])
        if happened.wait(0.05):
            return q + 1
    raise AssertionError("no trade was dispatched on a reader thread")


class HandOver:
    """A callback hook: the first trade run on a reader "takes" a second (over the budget); the
    first one after that (on the dispatcher) blocks until ``release``; later ones on a reader set
    ``back``."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.slow = threading.Event()
        self.blocked = threading.Event()
        self.release = threading.Event()
        self.back = threading.Event()
        self.blocked_on = ""

    def __call__(self, event: mrt.EquityTrade) -> None:
        if not self.slow.is_set():
            if on_reader():
                self.clock.advance(1.0)
                self.slow.set()
        elif not self.blocked.is_set():
            self.blocked_on = threading.current_thread().name
            self.blocked.set()
            self.release.wait(WAIT)
        elif self.release.is_set() and on_reader():
            self.back.set()


def test_within_budget_callbacks_run_on_the_reader(
    server: MockMassiveServer, make_adapter: Callable[..., RealTimeDataAdapter]
) -> None:
    client = MassiveWebSocketClient(api_key=KEY, url=server.url(), reconnect=FAST, subscriptions=["T.*"])
    trades = Trades()
    adapter = make_adapter(client, dispatch="adaptive", clock=FakeClock())  # a clock that never moves
    adapter.on(mrt.EquityTrade, trades)
    adapter.start()
    assert client.wait_acked(["T.*"], WAIT)

    for q in range(100):  # one at a time: the dispatcher is idle when each arrives
        server.publish([trade(q=q)])
        trades.wait(q + 1)

    seen = trades.wait(100)
    assert [q for _, q, _ in seen] == list(range(100))
    assert sum(name.startswith("massive-rt-reader-") for _, _, name in seen) >= 90
    stats = adapter.stats()
    assert (stats.dispatch, stats.inline_active, stats.handovers, stats.inline_returns) == ("adaptive", True, 0, 0)


def test_a_slow_callback_hands_over_the_reader_keeps_reading_and_order_holds_across_and_back(
    server: MockMassiveServer, make_adapter: Callable[..., RealTimeDataAdapter]
) -> None:
    client = MassiveWebSocketClient(api_key=KEY, url=server.url(), reconnect=FAST, subscriptions=["T.*"])
    clock = FakeClock()
    hand_over = HandOver(clock)
    trades = Trades(hand_over)
    adapter = make_adapter(client, dispatch="adaptive", clock=clock)
    adapter.on(mrt.EquityTrade, trades)
    adapter.start()
    assert client.wait_acked(["T.*"], WAIT)

    nxt = publish_until(server, hand_over.slow, "AAPL", 0)
    stats = adapter.stats()
    assert (stats.handovers, stats.inline_active) == (1, False)
    server.publish([trade(q=nxt)])  # handed over: the dispatcher runs it, and it blocks
    assert hand_over.blocked.wait(WAIT)
    assert hand_over.blocked_on == DISPATCHER
    server.publish([trade(q=q) for q in range(nxt + 1, nxt + 1 + BACKLOG)], batch=1)
    # The reader is not the one blocked: it reads on, and the queue fills behind the callback.
    assert wait_until(lambda: client.stats().queue_events == BACKLOG, WAIT)
    hand_over.release.set()
    nxt += 1 + BACKLOG
    seen = trades.wait(nxt)
    first_handed = nxt - 1 - BACKLOG
    assert {name for _, _, name in seen[first_handed:]} == {DISPATCHER}  # none ran on the reader meanwhile

    # The dispatcher drained the queue with 41 fast events (a return needs 32): readers again.
    assert wait_until(lambda: adapter.stats().inline_active, WAIT)
    end = publish_until(server, hand_over.back, "AAPL", nxt)
    seen = trades.wait(end)
    assert [q for _, q, _ in seen] == list(range(end))  # in order, none twice, none lost
    assert trades.overlaps == 0
    stats = adapter.stats()
    assert (stats.handovers, stats.inline_returns) == (1, 1)
    assert stats.dispatched_inline == sum(name.startswith("massive-rt-reader-") for _, _, name in seen)
    assert stats.dispatched_on_dispatcher >= sum(name == DISPATCHER for _, _, name in seen)


def test_a_hand_over_on_one_connection_of_a_pool_holds_order_on_all_three(
    server: MockMassiveServer, make_adapter: Callable[..., RealTimeDataAdapter]
) -> None:
    pool = ConnectionPool(api_key=KEY, max_connections=3, max_subscriptions_per_connection=1, url=server.url)
    pool.subscribe("T.A", "T.B", "T.C")
    clock = FakeClock()
    hand_over = HandOver(clock)
    trades = Trades(hand_over)
    adapter = make_adapter(pool, dispatch="adaptive", clock=clock)
    adapter.on(mrt.EquityTrade, trades)
    adapter.start()
    pool.wait_ready(WAIT)
    assert len(pool.connections) == 3
    nxt = dict.fromkeys("ABC", 0)

    nxt["A"] = publish_until(server, hand_over.slow, "A", 0)
    assert adapter.stats().handovers == 1
    server.publish([trade("B", nxt["B"])])  # another connection: the dispatcher runs it too
    assert hand_over.blocked.wait(WAIT)
    assert hand_over.blocked_on == DISPATCHER
    nxt["B"] += 1
    for symbol in "ABC":
        server.publish([trade(symbol, q) for q in range(nxt[symbol], nxt[symbol] + BACKLOG)], batch=1)
        nxt[symbol] += BACKLOG
    # Every reader reads on: each connection's queue holds its whole backlog.
    assert wait_until(lambda: [c.stats().queue_events for c in pool.connections] == [BACKLOG] * 3, WAIT)
    hand_over.release.set()
    trades.wait(sum(nxt.values()))

    assert wait_until(lambda: adapter.stats().inline_active, WAIT)
    nxt["C"] = publish_until(server, hand_over.back, "C", nxt["C"])
    seen = trades.wait(sum(nxt.values()))
    for symbol in "ABC":
        assert trades.of(symbol) == list(range(nxt[symbol])), symbol
    assert len(seen) == sum(nxt.values())
    assert trades.overlaps == 0
    stats = adapter.stats()
    assert (stats.handovers, stats.inline_returns) == (1, 1)


def test_callbacks_never_overlap_while_the_mode_flips_under_load(
    server: MockMassiveServer, make_adapter: Callable[..., RealTimeDataAdapter]
) -> None:
    pool = ConnectionPool(api_key=KEY, max_connections=3, max_subscriptions_per_connection=1, url=server.url)
    pool.subscribe("T.A", "T.B", "T.C")
    clock = FakeClock()

    def every_40th_is_slow(event: mrt.EquityTrade) -> None:
        if (event.sequence_number or 0) % 40 == 39:
            clock.advance(1.0)

    trades = Trades(every_40th_is_slow)
    adapter = make_adapter(pool, dispatch="adaptive", clock=clock)
    adapter.on(mrt.EquityTrade, trades)
    adapter.start()
    pool.wait_ready(WAIT)
    assert len(pool.connections) == 3

    publishers = [
        threading.Thread(target=server.publish, args=([trade(s, i) for i in range(1500)],), kwargs={"batch": b},
                         name=f"test-publisher-{s}", daemon=True)
        for s, b in (("A", 1), ("B", 3), ("C", 10))
    ]  # fmt: skip
    for publisher in publishers:
        publisher.start()
    for publisher in publishers:
        publisher.join(WAIT)
    seen = trades.wait(4500)

    assert trades.overlaps == 0
    for symbol in "ABC":
        assert trades.of(symbol) == list(range(1500)), symbol
    readers = {f"massive-rt-reader-{c.name}" for c in pool.connections}
    assert {name for _, _, name in seen} <= readers | {DISPATCHER}
    stats = adapter.stats()
    assert stats.handovers - stats.inline_returns in (0, 1)
    assert stats.dispatched_inline + stats.dispatched_on_dispatcher >= 4500


def test_stop_closes_the_inline_path_for_good_even_after_a_hand_over() -> None:
    adapter = RealTimeDataAdapter(SyntheticSource(["T.*"], seed=1), dispatch="adaptive", clock=FakeClock())
    budget = adapter._budget
    assert budget is not None
    for stopped in (False, True):
        assert budget.after_inline(1, 1.0) is True
        adapter._gate.open = False  # as the reader does when it hands over
        budget.after_round(budget.streak, 0.0)
        if stopped:
            adapter.stop()
        adapter._return_inline()  # the dispatcher, idle with every queue empty
        assert adapter.stats().inline_active is (not stopped)
    assert (adapter.stats().handovers, adapter.stats().inline_returns) == (2, 1)


@pytest.mark.parametrize("budget", [0, -1, float("nan"), "1ms"])
def test_a_bad_inline_budget_is_refused_in_every_mode(budget: object) -> None:
    source = SyntheticSource(["T.*"], seed=1)
    for dispatch in ("adaptive", "thread", "inline"):
        with pytest.raises(mrt.ConfigurationError, match="inline_budget"):
            RealTimeDataAdapter(source, dispatch=dispatch, inline_budget=budget)  # type: ignore[arg-type]
    with pytest.raises(mrt.ConfigurationError, match="clock"):
        RealTimeDataAdapter(source, dispatch="adaptive", clock=0.001)  # type: ignore[arg-type]


@pytest.mark.parametrize("reading", [None, "12:00", True, Decimal("1.5")])
def test_an_adaptive_clock_that_returns_no_seconds_is_refused(reading: object) -> None:
    # Reader threads call it too: a bad one would end the connection there, not the dispatching.
    source = SyntheticSource(["T.*"], seed=1)
    with pytest.raises(mrt.ConfigurationError, match=r"clock\(\) returned") as caught:
        RealTimeDataAdapter(source, dispatch="adaptive", clock=lambda: reading)  # type: ignore[arg-type,return-value]
    assert caught.value.field == "clock"
    RealTimeDataAdapter(source, dispatch="thread", clock=lambda: reading)  # type: ignore[arg-type,return-value]  # unused there


def test_thread_and_inline_report_no_hand_overs() -> None:
    source = SyntheticSource(["T.*"], seed=1)
    thread, inline = RealTimeDataAdapter(source, dispatch="thread"), RealTimeDataAdapter(source, dispatch="inline")
    assert (thread.stats().inline_active, inline.stats().inline_active) == (False, True)
    assert (thread.stats().handovers, inline.stats().handovers) == (0, 0)


class SlowLog(logging.Handler):
    """Logging a handler's error "takes" 10 ms on the adapter's clock (a traceback takes ms)."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.records = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.records += 1
        self.clock.advance(0.010)


@pytest.mark.allow_errors(r"handler .* raised ValueError", logger="massive_rt.adapter")
def test_logging_a_handler_error_is_not_charged_to_the_callbacks_budget(
    server: MockMassiveServer, make_adapter: Callable[..., RealTimeDataAdapter]
) -> None:
    client = MassiveWebSocketClient(api_key=KEY, url=server.url(), reconnect=FAST, subscriptions=["T.*"])
    clock = FakeClock()
    inline = threading.Event()

    def fails(event: mrt.EquityTrade) -> None:
        if on_reader():
            inline.set()
            raise ValueError("a handler bug")

    adapter = make_adapter(client, dispatch="adaptive", clock=clock)
    adapter.on(mrt.EquityTrade, fails)
    slow_log = SlowLog(clock)
    adapter_logger = logging.getLogger("massive_rt.adapter")
    adapter_logger.addHandler(slow_log)
    try:
        adapter.start()
        assert client.wait_acked(["T.*"], WAIT)
        publish_until(server, inline, "AAPL", 0)
        # Counted once the inline delivery (and its budget decision) is over.
        assert wait_until(lambda: adapter.stats().dispatched_inline >= 1, WAIT)
    finally:
        adapter_logger.removeHandler(slow_log)
    assert slow_log.records >= 1  # the error was logged, and that "took" 10 ms
    stats = adapter.stats()
    assert (stats.handovers, stats.inline_active) == (0, True)  # the handler itself took no time
