"""BarClock: a "minute closed" signal with every subscribed symbol's minute bar, quiet ones filled.

Bars are collected by an adapter handler (on the thread that runs the adapter's callbacks) into
the minute of their ``start_timestamp`` (event time). The clock's own thread
(``massive-rt-barclock``) closes a minute when the time source passes its end plus ``grace`` (the
bars of a minute arrive after it ends; ``grace`` absorbs their delay and clock skew), or earlier
as soon as every explicitly subscribed symbol's bar for it is in. It then calls
``on_minute(minute, bars)`` once per minute, in order, with no minute skipped. A bar for a minute
already closed goes to ``on_late(minute, bar)`` and is counted.

Both callbacks run on the clock thread, one at a time, never concurrently with each other (but
concurrently with the adapter's callbacks). An exception from one is logged and counted; the clock
carries on. The thread waits on a condition (woken by bars that complete a minute, by
:meth:`BarClock.wake` and by :meth:`BarClock.stop`) with a timeout of at most half a second.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from ._sourceview import subscribed_channels
from ._util import RateLimitedLog
from ._validate import require_int, require_number
from .enums import AdapterState
from .errors import ClientClosedError, ConfigurationError
from .models import MarketEvent

__all__ = ["BarClock", "BarClockStats", "BarSlot"]

logger = logging.getLogger(__name__)

MINUTE_MS = 60_000
MINUTE_CHANNELS = ("AM", "CA", "XA")
_MAX_WAIT = 0.5  # longest wait between two looks at the time source and the adapter's state, seconds
_MAX_BACKLOG = 1_440  # minutes the clock catches up after a jump of the time source; beyond, it skips
_LATE_QUEUE = 10_000  # late bars waiting for on_late, at most
_PER_BAR_FIELDS = ("vwap", "average_size", "avg_trade_size", "fractional_volume", "total_value")

MinuteHandler = Callable[[int, Mapping[str, "BarSlot"]], Any]
LateHandler = Callable[[int, MarketEvent], Any]


@attrs.frozen(kw_only=True)
class BarSlot:
    """One symbol's place in a closed minute.

    Attributes:
        symbol: the symbol (or pair).
        minute: start of the minute, epoch milliseconds (the bars' ``start_timestamp`` unit).
        bar: the bar as received; or, when ``filled``, a bar of the same class made from the
            previous close (``open=high=low=close``, ``volume=0``, the per-bar averages None); or
            None when the symbol had no bar and nothing to fill from (no earlier close, or
            ``fill_empty=False``).
        filled: True when ``bar`` was made up, not received.
    """

    symbol: str
    minute: int
    bar: MarketEvent | None
    filled: bool = False


@attrs.frozen(kw_only=True)
class BarClockStats:
    """Counters of a :class:`BarClock`.

    Attributes:
        running: the clock thread is alive.
        minutes_emitted: ``on_minute`` calls made.
        bars_received: bars collected in time for their minute.
        bars_filled: slots filled from a previous close.
        bars_missing: slots left empty (no bar, nothing to fill from).
        late_bars: bars for a minute already emitted (each passed to ``on_late`` unless dropped).
        late_dropped: late bars dropped because 10,000 were already waiting for ``on_late``.
        out_of_range: bars too far ahead of the time source (``max_ahead``), or without a symbol or
            start time: logged, not collected.
        skipped_minutes: minutes never emitted because the time source jumped more than a day ahead.
        callback_errors: exceptions raised by ``on_minute`` / ``on_late`` (each logged).
        pending_minutes: minutes holding bars, not emitted yet.
        next_minute: the next minute to emit (epoch ms), None before ``start()``.
        evaluated_at: the time-source reading (epoch seconds) of the clock's last completed look:
            everything due by then has been emitted.
    """

    running: bool
    minutes_emitted: int
    bars_received: int
    bars_filled: int
    bars_missing: int
    late_bars: int
    late_dropped: int
    out_of_range: int
    skipped_minutes: int
    callback_errors: int
    pending_minutes: int
    next_minute: int | None
    evaluated_at: float | None


def _symbol_of(bar: Any) -> str | None:
    symbol = getattr(bar, "symbol", None)
    if symbol is None:
        symbol = getattr(bar, "pair", None)
    return symbol if isinstance(symbol, str) else None


def _filled_from(previous: MarketEvent, minute: int, now_ns: int) -> MarketEvent | None:
    close = getattr(previous, "close", None)
    if close is None:
        return None
    changes: dict[str, Any] = {"open": close, "high": close, "low": close, "volume": 0, "start_timestamp": minute,
                               "end_timestamp": minute + MINUTE_MS, "received_at_ns": now_ns}  # fmt: skip
    names = attrs.fields_dict(type(previous))
    changes.update({name: None for name in _PER_BAR_FIELDS if name in names})
    if "transactions" in names:
        changes["transactions"] = 0
    return attrs.evolve(previous, **changes)


class BarClock:
    """Calls ``on_minute(minute, bars)`` once per closed minute with every subscribed symbol's bar.

    Example::

        def on_minute(minute: int, bars: Mapping[str, mrt.BarSlot]) -> None:
            for symbol, slot in bars.items():
                print(minute, symbol, slot.bar and slot.bar.close, "filled" if slot.filled else "")

        clock = mrt.BarClock(adapter, "AM", grace=2.0, on_minute=on_minute)
        with adapter, clock:
            adapter.run_forever()

    The symbols of a minute: the explicit tickers of ``<channel>.<ticker>`` subscriptions on the
    adapter's source (read at each close, so later subscribes count), every symbol seen so far when
    ``<channel>.*`` is subscribed, and any symbol that sent a bar for that minute.

    Threads: the bars are collected on the adapter's callback thread (a short lock, no user code);
    ``on_minute`` and ``on_late`` run on the clock's ``massive-rt-barclock`` thread, in minute
    order, ``on_late`` for minute M always after ``on_minute(M)``. The thread ends on :meth:`stop`,
    or by itself within half a second once the adapter is stopped; a minute not closed by then is
    not emitted.

    Args:
        adapter: the adapter whose bars are collected.
        channel: a per-minute bar channel: ``"AM"`` (stocks, options, indices, futures),
            ``"CA"`` (forex) or ``"XA"`` (crypto).
        grace: seconds after a minute's end (on the time source) before it closes without waiting
            for missing bars.
        fill_empty: give a symbol with no bar in a minute a bar made from its previous close.
        on_minute: ``on_minute(minute, bars)``: ``minute`` the start in epoch ms, ``bars``
            ``{symbol: BarSlot}`` sorted by symbol.
        on_late: ``on_late(minute, bar)`` for a bar whose minute was already emitted.
        clock: the time source, epoch seconds (default :func:`time.time`); tests pass a fake one
            and call :meth:`wake` after moving it.
        max_ahead: minutes ahead of the time source a bar may start; later ones are refused as
            out of range (a bad timestamp would otherwise hold memory until then).
    """

    def __init__(
        self,
        adapter: Any,
        channel: str = "AM",
        *,
        grace: float = 2.0,
        fill_empty: bool = True,
        on_minute: MinuteHandler | None = None,
        on_late: LateHandler | None = None,
        clock: Callable[[], float] = time.time,
        max_ahead: int = 5,
    ) -> None:
        if not callable(getattr(adapter, "on", None)) or not callable(getattr(adapter, "off", None)):
            raise ConfigurationError(f"adapter={adapter!r} is not a RealTimeDataAdapter", field="adapter")
        if channel not in MINUTE_CHANNELS:
            raise ConfigurationError(f"channel={channel!r} must be a minute-bar channel: {', '.join(MINUTE_CHANNELS)}",
                                     field="channel")  # fmt: skip
        for field, value in (("on_minute", on_minute), ("on_late", on_late), ("clock", clock)):
            if value is not None and not callable(value):
                raise ConfigurationError(f"{field}={value!r} is not callable", field=field)
        self._grace_ms = round(require_number("grace", grace) * 1000)
        self._max_ahead_ms = require_int("max_ahead", max_ahead) * MINUTE_MS
        self._adapter = adapter
        self._channel = channel
        self._fill_empty = bool(fill_empty)
        self._on_minute = on_minute
        self._on_late = on_late
        self._clock = clock
        self._cond = threading.Condition(threading.Lock())
        self._stop = threading.Event()
        self._life_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        # Under _cond:
        self._pending: dict[int, dict[str, MarketEvent]] = {}
        self._late: collections.deque[tuple[int, MarketEvent]] = collections.deque()
        self._last: dict[str, tuple[int, MarketEvent]] = {}  # symbol -> (minute, its latest bar)
        self._seen: set[str] = set()
        self._expected: frozenset[str] = frozenset()
        self._wildcard = False
        self._next: int | None = None
        self._evaluated_at: float | None = None
        self._counts: collections.Counter[str] = collections.Counter()
        self._warn = RateLimitedLog(logger, logging.WARNING)
        self._error_log = RateLimitedLog(logger, logging.ERROR)
        adapter.on(channel, self._collect)

    # -------------------------------------------------------------- the adapter's callback thread

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _collect(self, bar: Any) -> None:
        symbol = _symbol_of(bar)
        start = getattr(bar, "start_timestamp", None)
        now_ms = self._now_ms()
        if symbol is None or type(start) is not int or start - now_ms > self._max_ahead_ms:
            with self._cond:
                self._counts["out_of_range"] += 1
            self._warn("bar clock: a %s bar not collected (symbol %r, start %r; time source at %d ms)",
                       self._channel, symbol, start, now_ms)  # fmt: skip
            return
        minute = start - start % MINUTE_MS
        with self._cond:
            self._seen.add(symbol)
            if self._next is not None and minute < self._next:
                self._take_late(minute, symbol, bar)
                self._cond.notify()
                return
            bars = self._pending.setdefault(minute, {})
            bars[symbol] = bar
            self._counts["bars_received"] += 1
            if minute == self._next and self._complete(bars):
                self._cond.notify()

    def _take_late(self, minute: int, symbol: str, bar: MarketEvent) -> None:
        """Under the lock: a bar whose minute was emitted (or began before the clock started)."""
        self._counts["late_bars"] += 1
        last = self._last.get(symbol)
        if last is None or last[0] <= minute:  # a real close beats a filled one for the next fill
            self._last[symbol] = (minute, bar)
        if len(self._late) >= _LATE_QUEUE:
            self._counts["late_dropped"] += 1
            self._warn("bar clock: a late %s bar of %s dropped: %d late bars already wait for on_late",
                       self._channel, symbol, _LATE_QUEUE)  # fmt: skip
            return
        self._late.append((minute, bar))

    def _complete(self, bars: Mapping[str, MarketEvent]) -> bool:
        return bool(self._expected) and not self._wildcard and self._expected.issubset(bars)

    # -------------------------------------------------------------- the clock thread

    def _subscribed(self) -> tuple[frozenset[str], bool]:
        explicit: set[str] = set()
        wildcard = False
        prefix = self._channel + "."
        try:
            channels = subscribed_channels(self._adapter.source)
        except ClientClosedError:
            return self._expected, self._wildcard
        for market_channels in channels.values():
            for channel in market_channels:
                if channel.startswith(prefix):
                    ticker = channel[len(prefix) :]
                    if ticker == "*":
                        wildcard = True
                    else:
                        explicit.add(ticker)
        return frozenset(explicit), wildcard

    def _run(self) -> None:
        while not self._stop.is_set():
            if getattr(self._adapter, "state", None) is AdapterState.STOPPED:
                logger.info("bar clock: the adapter stopped; the clock stops")
                return
            expected, wildcard = self._subscribed()
            with self._cond:
                self._expected, self._wildcard = expected, wildcard
                now = self._clock()
                due = self._take_due(int(now * 1000))
                late = list(self._late)
                self._late.clear()
                if not due and not late:
                    self._evaluated_at = now
                    self._cond.wait(self._wait_for(int(now * 1000)))
                    continue
            for minute, bar in late:
                self._call(self._on_late, "on_late", minute, bar)
            for minute, slots in due:
                self._call(self._on_minute, "on_minute", minute, slots)
            with self._cond:
                self._counts["minutes_emitted"] += len(due)
                self._evaluated_at = now

    def _wait_for(self, now_ms: int) -> float:
        if self._next is None:
            return _MAX_WAIT
        return min(_MAX_WAIT, max(0.001, (self._next + MINUTE_MS + self._grace_ms - now_ms) / 1000))

    def _take_due(self, now_ms: int) -> list[tuple[int, dict[str, BarSlot]]]:
        """Under the lock: close every minute that is due, oldest first (a bounded number)."""
        if self._next is None:
            return []
        behind = (now_ms - self._next) // MINUTE_MS - _MAX_BACKLOG
        if behind > 0:
            self._counts["skipped_minutes"] += behind
            logger.warning("bar clock: the time source jumped %d minutes ahead; %d minutes are not emitted",
                           behind + _MAX_BACKLOG, behind)  # fmt: skip
            for minute in [m for m in self._pending if m < self._next + behind * MINUTE_MS]:
                del self._pending[minute]
            self._next += behind * MINUTE_MS
        due: list[tuple[int, dict[str, BarSlot]]] = []
        while len(due) <= _MAX_BACKLOG:
            minute = self._next
            bars = self._pending.get(minute, {})
            if now_ms < minute + MINUTE_MS + self._grace_ms and not self._complete(bars):
                break
            self._pending.pop(minute, None)
            due.append((minute, self._close(minute, bars)))
            self._next = minute + MINUTE_MS
        return due

    def _close(self, minute: int, bars: Mapping[str, MarketEvent]) -> dict[str, BarSlot]:
        symbols = set(self._expected).union(bars)
        if self._wildcard:
            symbols |= self._seen
        now_ns = time.time_ns()
        slots: dict[str, BarSlot] = {}
        for symbol in sorted(symbols):
            bar = bars.get(symbol)
            if bar is not None:
                self._last[symbol] = (minute, bar)
                slots[symbol] = BarSlot(symbol=symbol, minute=minute, bar=bar)
                continue
            last = self._last.get(symbol)
            filled = _filled_from(last[1], minute, now_ns) if self._fill_empty and last is not None else None
            if filled is None:
                self._counts["bars_missing"] += 1
                slots[symbol] = BarSlot(symbol=symbol, minute=minute, bar=None)
            else:
                self._counts["bars_filled"] += 1
                self._last[symbol] = (minute, filled)
                slots[symbol] = BarSlot(symbol=symbol, minute=minute, bar=filled, filled=True)
        return slots

    def _call(self, handler: Callable[..., Any] | None, name: str, *args: Any) -> None:
        if handler is None:
            return
        try:
            handler(*args)
        except Exception as exc:
            with self._cond:
                self._counts["callback_errors"] += 1
            self._error_log("bar clock: %s raised %s", name, type(exc).__name__, exc_info=exc)

    # -------------------------------------------------------------- lifecycle (any thread)

    def start(self) -> BarClock:
        """Start the clock thread; the first minute emitted is the one the time source is in. Idempotent.

        Raises:
            ClientClosedError: the clock was stopped (clocks are not restartable).
        """
        with self._life_lock:
            if self._stop.is_set():
                raise ClientClosedError("bar clock was stopped; create a new one")
            if self._thread is not None:
                return self
            expected, wildcard = self._subscribed()
            now_ms = self._now_ms()
            with self._cond:
                self._expected, self._wildcard = expected, wildcard
                self._next = now_ms - now_ms % MINUTE_MS
                for minute in sorted(m for m in self._pending if m < self._next):
                    for symbol, bar in self._pending.pop(minute).items():
                        self._counts["bars_received"] -= 1
                        self._take_late(minute, symbol, bar)
            self._thread = threading.Thread(target=self._run, name="massive-rt-barclock", daemon=True)
            self._thread.start()
        return self

    def wake(self) -> None:
        """Look at the time source now (after a test moved a fake one); safe from any thread."""
        with self._cond:
            self._cond.notify_all()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the clock and unregister its handler; minutes not closed yet are not emitted.

        Idempotent, from any thread (from ``on_minute`` it returns at once). Returns False if the
        thread was still in a callback at the deadline (it ends once the callback returns).
        """
        require_number("timeout", timeout)
        with self._life_lock:
            first = not self._stop.is_set()
            self._stop.set()
            thread = self._thread
        if first:
            self._adapter.off(self._channel, self._collect)
        self.wake()
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def __enter__(self) -> BarClock:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stats(self) -> BarClockStats:
        """Counters (cheap; any thread)."""
        thread = self._thread
        with self._cond:
            counts = dict(self._counts)
            return BarClockStats(
                running=thread is not None and thread.is_alive(),
                minutes_emitted=counts.get("minutes_emitted", 0),
                bars_received=counts.get("bars_received", 0),
                bars_filled=counts.get("bars_filled", 0),
                bars_missing=counts.get("bars_missing", 0),
                late_bars=counts.get("late_bars", 0),
                late_dropped=counts.get("late_dropped", 0),
                out_of_range=counts.get("out_of_range", 0),
                skipped_minutes=counts.get("skipped_minutes", 0),
                callback_errors=counts.get("callback_errors", 0),
                pending_minutes=len(self._pending),
                next_minute=self._next,
                evaluated_at=self._evaluated_at,
            )

    def __repr__(self) -> str:
        return f"BarClock(channel={self._channel!r}, grace={self._grace_ms / 1000:g}, next_minute={self._next})"
