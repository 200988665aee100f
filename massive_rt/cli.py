"""The ``massive-rt`` command: ``stream``, ``serve`` and ``bench``. The only module that prints.

* ``massive-rt stream T.AAPL Q.AAPL AM.*`` streams from Massive when ``MASSIVE_API_KEY`` (or
  ``--api-key``) is set; without a key (or with ``--demo``) it starts a local
  :class:`~massive_rt.testing.MockMassiveServer` streaming a :class:`~massive_rt.synthetic.SyntheticMarket`
  and connects to it through the whole stack: client (or pool) → adapter → printer.
* ``massive-rt serve`` runs that mock server alone, for your own programs to connect to.
* ``massive-rt bench`` is a quick loopback throughput check (the real harness is ``benchmarks/``).

Threads: events are formatted and written to stdout by the adapter's dispatcher thread (the
printer is an adapter handler). The main thread only waits for the stop condition (Ctrl-C,
SIGTERM, ``--duration``, ``--limit``) and redraws the status line. Everything else goes to stderr
through :class:`_Console`, which also owns the live status line when stderr is a terminal.

Exit codes: 0 done (including Ctrl-C, SIGTERM and a closed pipe), 1 runtime failure (refused key,
port in use ...), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import csv
import io
import json
import logging
import math
import os
import selectors
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

import attrs

from . import __version__
from .adapter import RealTimeDataAdapter
from .config import ClientConfig
from .connection import MassiveWebSocketClient
from .enums import ConnectionState, Market
from .errors import AuthenticationError, ConfigurationError, MassiveRTError
from .models import (
    CryptoQuote,
    CryptoTrade,
    CurrencyAgg,
    EquityAgg,
    EquityQuote,
    EquityTrade,
    Event,
    FairMarketValue,
    ForexQuote,
    FuturesAgg,
    FuturesQuote,
    FuturesTrade,
    Imbalance,
    IndexValue,
    LaunchpadValue,
    Level2Book,
    LimitUpLimitDown,
    MarketEvent,
    StatusMessage,
    UnknownEvent,
)
from .pool import ConnectionPool
from .protocol import parse_channels
from .synthetic import DEFAULT_CRYPTO, DEFAULT_STOCKS, SyntheticMarket

if TYPE_CHECKING:
    from .testing.server import MockMassiveServer

__all__ = ["main"]

PROG = "massive-rt"
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

DEMO_KEY = "demo"
#: Default speed-up of the demo's simulated clock: a minute bar every 3 s of wall time, so a
#: 15-second ``make run`` shows trades, quotes and several AM bars. ``--speed 1`` is real time.
DEFAULT_SPEED = 20.0
_SIMULATED = {Market.STOCKS: DEFAULT_STOCKS, Market.CRYPTO: DEFAULT_CRYPTO}
_TICKS = {Market.STOCKS: ("T", "Q"), Market.CRYPTO: ("XT", "XQ")}
_BARS = {Market.STOCKS: ("A", "AM"), Market.CRYPTO: ("XA", "XAS")}

try:  # optional (the "fast" extra): about 5x faster than json for --format jsonl
    import orjson

    def _dumps(obj: Any) -> str:
        try:
            return orjson.dumps(obj).decode()
        except TypeError:  # e.g. an integer beyond 64 bits in an UnknownEvent: let json decide
            return json.dumps(obj, separators=(",", ":"))

except ImportError:  # pragma: no cover - depends on the environment

    def _dumps(obj: Any) -> str:
        return json.dumps(obj, separators=(",", ":"))


class UsageError(Exception):
    """A bad combination of arguments argparse cannot catch: reported on one line, exit 2."""


# ----------------------------------------------------------------------------------------- stderr


class _Console:
    """Everything the CLI writes to stderr, and the live status line when stderr is a terminal.

    The status line sits on the terminal's last line; any other output first erases it and then
    redraws it below. When stdout is the same terminal, the printer writes its lines through
    :meth:`stdout_line` for the same reason. The lock is taken only in that terminal case and once
    per status refresh, never while blocking on anything but the terminal itself.
    """

    def __init__(self, err: TextIO, out: TextIO) -> None:
        self._err = err
        self._out = out
        self.live = _isatty(err)
        self.shared_terminal = self.live and _isatty(out)
        self._lock = threading.Lock()
        self._status = ""

    def message(self, text: str) -> None:
        """Write one line (or several) to stderr, keeping the status line below it."""
        with self._lock:
            self._write_err(f"\r\x1b[K{text}\n{self._status}" if self._status else text + "\n")

    def status(self, text: str) -> None:
        """Show ``text`` as the live status line (no-op unless stderr is a terminal)."""
        if not self.live:
            return
        with self._lock:
            self._status = text
            self._write_err("\r\x1b[K" + text)

    def clear_status(self) -> None:
        """Remove the status line (before the summary)."""
        with self._lock:
            if self._status:
                self._status = ""
                self._write_err("\r\x1b[K")

    def stdout_line(self, line: str) -> None:
        """Write an event line to the terminal shared with the status line (dispatcher thread).

        Raises:
            BrokenPipeError: stdout is gone (the printer handles it).
        """
        with self._lock:
            self._out.write("\r\x1b[K" + line)
            self._out.flush()
            if self._status:
                self._write_err(self._status)

    def _write_err(self, text: str) -> None:
        try:
            self._err.write(text)
            self._err.flush()
        except (OSError, ValueError):  # stderr closed (e.g. `2>&1 | head`): nothing left to tell
            self.live = False
            self._status = ""


class _ConsoleHandler(logging.Handler):
    """Routes the library's log records through the console, so they do not garble the status line."""

    def __init__(self, console: _Console) -> None:
        super().__init__()
        self._console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._console.message(self.format(record))
        except Exception:  # logging must never take the CLI down
            self.handleError(record)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


# ---------------------------------------------------------------------------------- formatting

# ev code → the label shown in the TYPE column and counted in the summary.
_LABELS = {
    "T": "trade", "XT": "trade", "Q": "quote", "XQ": "quote", "C": "quote",
    "A": "agg-1s", "XAS": "agg-1s", "CAS": "agg-1s", "AM": "agg-1m", "XA": "agg-1m", "CA": "agg-1m",
    "LULD": "luld", "NOI": "imbalance", "FMV": "fmv", "LV": "value", "V": "value", "XL2": "book",
}  # fmt: skip


def event_label(event: Event) -> str:
    """``trade``, ``quote``, ``agg-1s``, ``agg-1m`` ... for a market event; its raw ``ev`` code when
    this library does not model it (an :class:`UnknownEvent`)."""
    ev = getattr(event, "event_type", None)
    if not isinstance(ev, str) or not ev:
        return "unknown"
    return ev if isinstance(event, UnknownEvent) else _LABELS.get(ev, ev)


def _symbol(event: Event) -> str:
    for name in ("symbol", "pair", "ticker"):
        value = getattr(event, name, None)
        if value is not None:
            return str(value)
    return "-"


def _event_ms(event: Event) -> int | None:
    """The event's own time in Unix ms (aggregates: the end of their window)."""
    for name in ("timestamp", "end_timestamp", "sip_timestamp", "time_stamp"):
        value = getattr(event, name, None)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            # Every documented stamp is in ms; be lenient with µs/ns from a future or odd feed.
            value = int(value)
            while value > 100_000_000_000_000:
                value //= 1000
            return value
    return None


class _Clock:
    """``HH:MM:SS.mmm`` (UTC) from Unix ms, caching the formatted second."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def __call__(self, ms: int) -> str:
        second, milli = divmod(ms, 1000)
        if second != self._second:
            self._second = second
            self._text = time.strftime("%H:%M:%S", time.gmtime(second))
        return f"{self._text}.{milli:03d}"


def _num(value: object) -> str:
    """A price: at least 2 decimals, more only when the value has them (0.32145, 95000.50)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-" if value is None else str(value)
    if not math.isfinite(value):
        return str(value)
    whole, _, frac = f"{value:.8f}".rstrip("0").partition(".")
    return f"{whole}.{frac.ljust(2, '0')}"


def _qty(value: object) -> str:
    """A size or volume: thousands separators; fractional (crypto) sizes to 4 significant digits."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-" if value is None else str(value)
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}".rstrip("0").rstrip(".") if abs(value) >= 1 else f"{value:.4g}"
    return f"{int(value):,}"


def _fields(event: Event, *pairs: tuple[str, str]) -> str:
    """``label value`` pairs for the DETAILS column, skipping absent attributes."""
    parts = []
    for label, name in pairs:
        value = getattr(event, name, None)
        if value is None:
            continue
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        elif isinstance(value, float):
            value = _num(value)
        parts.append(f"{label} {value}")
    return "  ".join(parts)


_QUOTES = (EquityQuote, CryptoQuote, ForexQuote, FuturesQuote)
_TRADES = (EquityTrade, CryptoTrade, FuturesTrade)
_AGGREGATES = (EquityAgg, CurrencyAgg, FuturesAgg)


def _columns(event: Event) -> tuple[str, str, str]:
    """(price, size, details) for the table."""
    if isinstance(event, _QUOTES):
        sizes = "" if isinstance(event, ForexQuote) else f"{_qty(event.bid_size)} / {_qty(event.ask_size)}"
        exchanges = _fields(event, ("bx", "bid_exchange_id"), ("ax", "ask_exchange_id"), ("x", "exchange_id"))
        return f"{_num(event.bid_price)} / {_num(event.ask_price)}", sizes, exchanges
    if isinstance(event, _TRADES):
        return _num(event.price), _qty(event.size), _fields(event, ("x", "exchange"), ("c", "conditions"),
                                                            ("trf", "trf_id"))  # fmt: skip
    if isinstance(event, _AGGREGATES):
        ohlc = _fields(event, ("o", "open"), ("h", "high"), ("l", "low"), ("vw", "vwap"), ("n", "transactions"))
        return _num(event.close), _qty(event.volume), ohlc
    if isinstance(event, LimitUpLimitDown):
        return f"{_num(event.low_price)} - {_num(event.high_price)}", "", _fields(event, ("i", "indicators"))
    if isinstance(event, Imbalance):
        details = _fields(event, ("paired", "paired_quantity"), ("auction", "auction_type"), ("x", "exchange_id"))
        return _num(event.book_clearing_price), _qty(event.imbalance_quantity), details
    if isinstance(event, FairMarketValue):
        return _num(event.fmv), "", ""
    if isinstance(event, (IndexValue, LaunchpadValue)):
        return _num(event.value), "", ""
    if isinstance(event, Level2Book):
        bids, asks = event.bid_prices or [], event.ask_prices or []
        top = f"{_num(bids[0][0])} / {_num(asks[0][0])}" if bids and asks else "-"
        return top, "", f"levels {len(bids)}/{len(asks)}"
    if isinstance(event, UnknownEvent):
        return "", "", _dumps(event.data)[:120]
    return "", "", ""


class TableFormat:
    """Aligned, human-readable lines: time (UTC, from the event), symbol, type, price, size, details."""

    def __init__(self, market: Market, channels: Sequence[str]) -> None:
        longest = max((len(c.partition(".")[2]) for c in channels if not c.endswith(".*")), default=0)
        self._sym = max(longest, 21 if market is Market.OPTIONS else 8)
        # Crypto and forex carry long prices and fractional sizes; stock quotes fit narrower columns.
        self._price, self._size = (21, 19) if market in (Market.CRYPTO, Market.FOREX) else (17, 13)
        self._clock = _Clock()

    def header(self) -> str | None:
        return self._row("TIME (UTC)", "SYMBOL", "TYPE", "PRICE", "SIZE", "DETAILS")

    def _row(self, when: str, symbol: str, label: str, price: str, size: str, details: str) -> str:
        line = f"{when:<12}  {symbol:<{self._sym}}  {label:<9} {price:<{self._price}} {size:>{self._size}}  {details}"
        return line.rstrip() + "\n"

    def format(self, event: Event) -> str:
        ms = _event_ms(event)
        when = self._clock(ms if ms is not None else event.received_at_ns // 1_000_000)
        price, size, details = _columns(event)
        return self._row(when, _symbol(event), event_label(event), price, size, details)


_BASE_FIELDS = ("received_at_ns", "connection")
_REPEAT_SIGNAL = 0.5  # seconds: a second SIGINT/SIGTERM sooner than this is the same request


def _field_names(cls: type) -> tuple[str, ...]:
    """The event's own attributes (official names) first, then ``received_at_ns`` and ``connection``."""
    names = tuple(f.name for f in attrs.fields(cls))
    return tuple(n for n in names if n not in _BASE_FIELDS) + _BASE_FIELDS


class JsonlFormat:
    """One compact JSON object per event, keyed by the official attribute names."""

    def __init__(self) -> None:
        self._names: dict[type, tuple[str, ...]] = {}

    def header(self) -> str | None:
        return None

    def format(self, event: Event) -> str:
        cls = type(event)
        names = self._names.get(cls)
        if names is None:
            names = self._names[cls] = _field_names(cls)
        return _dumps({name: getattr(event, name) for name in names}) + "\n"


#: One row shape for every kind of event: the official attribute names where the event has them.
CSV_COLUMNS = (
    "event_type", "symbol", "timestamp", "price", "size", "bid_price", "bid_size", "ask_price", "ask_size",
    "open", "high", "low", "close", "volume", "vwap", "start_timestamp", "end_timestamp", "exchange",
    "received_at_ns", "connection",
)  # fmt: skip


class CsvFormat:
    """CSV with a header; columns :data:`CSV_COLUMNS`, empty where an event has no such attribute."""

    def __init__(self) -> None:
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\n")

    def _line(self, row: Sequence[object]) -> str:
        self._buffer.seek(0)
        self._buffer.truncate()
        self._writer.writerow(row)
        return self._buffer.getvalue()

    def header(self) -> str | None:
        return self._line(CSV_COLUMNS)

    def format(self, event: Event) -> str:
        row: list[object] = []
        for name in CSV_COLUMNS:
            if name == "symbol":
                value: object = _symbol(event)
            elif name == "timestamp":
                value = getattr(event, "timestamp", None) or getattr(event, "sip_timestamp", None)
            elif name == "price":
                value = getattr(event, "price", None) or getattr(event, "fmv", None) or getattr(event, "value", None)
            elif name == "exchange":
                value = getattr(event, "exchange", None) or getattr(event, "exchange_id", None)
            else:
                value = getattr(event, name, None)
            row.append("" if value is None or isinstance(value, (list, dict)) else value)
        return self._line(row)


Format = TableFormat | JsonlFormat | CsvFormat


# -------------------------------------------------------------------------------------- printer


class Printer:
    """The adapter handlers that write events to stdout (they run on the dispatcher thread).

    Each line is flushed as it is written (line-buffered), so a pipe sees events live. A closed
    pipe (``| head``) ends the stream quietly. After ``limit`` market events it prints nothing
    more and calls ``done()``.
    """

    def __init__(
        self,
        out: TextIO,
        fmt: Format,
        console: _Console,
        done: Callable[[], None],
        *,
        limit: int | None = None,
        fatal_on_failure: bool = True,
        verbose: bool = False,
    ) -> None:
        self._out = out
        self._format = fmt.format
        self._console = console
        self._done = done
        self._limit = limit
        self._fatal_on_failure = fatal_on_failure
        self._verbose = verbose
        self._write = console.stdout_line if console.shared_terminal else self._write_line
        self.counts: collections.Counter[str] = collections.Counter()
        self.printed = 0
        self.closed = False
        self.broken_pipe = False
        self.error: BaseException | None = None

    def start(self, header: str | None) -> None:
        if header is not None:
            self._emit(header)

    def on_event(self, event: Event) -> None:
        if self.closed or not isinstance(event, (MarketEvent, UnknownEvent)):
            return
        if not self._emit(self._format(event)):
            return
        self.counts[event_label(event)] += 1
        self.printed += 1
        if self._limit is not None and self.printed >= self._limit:
            self.close()

    def on_status(self, status: StatusMessage) -> None:
        if self.closed:
            return
        if status.status == "failed" and (self._fatal_on_failure or isinstance(status.error, AuthenticationError)):
            # A lone client never comes back from FAILED, and a refused key stays refused (a pool
            # recycles its other failed connections by itself).
            self.error = status.error or MassiveRTError(status.message or "connection failed")
            self.close()
            return
        text = self._describe(status)
        if text is not None:
            self._console.message(f"{PROG}: [{status.connection}] {text}")

    def _describe(self, status: StatusMessage) -> str | None:
        """The line to show for a status event, or None when the library's log already tells it
        (server statuses, drops, refused channels, recycling: WARNING and up)."""
        if status.status == "gap" and status.gap_start_ns is not None and status.gap_end_ns is not None:
            seconds = (status.gap_end_ns - status.gap_start_ns) / 1e9
            return f"data resumed after a {seconds:.1f} s gap (backfill it over REST if it matters)"
        if status.status != "state" or self._verbose:  # -v logs every transition
            return None
        detail = f": {status.message}" if status.message else ""
        if status.state is ConnectionState.STREAMING:
            return f"streaming{detail}"
        if status.state is ConnectionState.BACKOFF:
            return f"disconnected{detail}"
        return None

    def close(self) -> None:
        """Print nothing more; wake the main thread."""
        self.closed = True
        self._done()

    def _emit(self, line: str) -> bool:
        try:
            self._write(line)
        except BrokenPipeError:
            self.broken_pipe = True
            self.close()
            return False
        except ValueError:  # stdout was closed under us
            self.close()
            return False
        return True

    def _write_line(self, line: str) -> None:
        self._out.write(line)
        self._out.flush()


# ---------------------------------------------------------------------------------- stopping


class _Stop:
    """The main thread's wake-up: set by SIGINT/SIGTERM, or by the dispatcher (limit, closed pipe).

    Not a ``threading.Event``: ``Event.set()`` in a signal handler deadlocks if the signal lands
    while the main thread holds the Event's internal lock (inside ``Event.wait``). Here the handler
    only sets a flag; ``signal.set_wakeup_fd`` writes to a socket pair from C, and the main thread
    waits on that socket with ``selectors``. The dispatcher wakes it through the same socket.
    """

    def __init__(self) -> None:
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._flag = False
        self.signals = 0
        self._first_signal = 0.0

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        """Wake the main thread (any thread; lock-free)."""
        self._flag = True
        with contextlib.suppress(OSError):  # full buffer: a wake-up is pending anyway
            self._wake_w.send(b"\0")

    def wait(self, timeout: float | None) -> bool:
        """True once set; False when ``timeout`` passes first."""
        if not self._flag and self._selector.select(timeout):
            with contextlib.suppress(OSError):
                self._wake_r.recv(4096)
        return self._flag

    @contextlib.contextmanager
    def on_signals(self) -> Iterator[None]:
        """Let SIGINT and SIGTERM set this (a second one, while shutting down, exits at once —
        unless it comes within half a second of the first: ``timeout`` and service managers
        signal a process and then its group, and that is one request, not two)."""
        if threading.current_thread() is not threading.main_thread():
            yield  # only the main thread can handle signals (e.g. main() called from a thread)
            return

        def handler(signum: int, _frame: FrameType | None) -> None:
            now = time.monotonic()
            if self.signals and now - self._first_signal >= _REPEAT_SIGNAL:
                os._exit(128 + signum)
            if not self.signals:
                self._first_signal = now
            self.signals += 1
            self._flag = True  # the wakeup fd has already woken the selector

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        previous_fd = signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        try:
            yield
        finally:
            signal.set_wakeup_fd(previous_fd)
            for sig, old in previous.items():
                signal.signal(sig, old)

    def close(self) -> None:
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()


def _wait(stop: _Stop, deadline: float | None, tick: Callable[[], None] | None) -> None:
    """Block until ``stop`` is set or ``deadline`` passes, calling ``tick`` about once a second."""
    while not stop.is_set():
        timeout = 1.0 if tick is not None else None
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            timeout = remaining if timeout is None else min(timeout, remaining)
        if stop.wait(timeout):
            return
        if tick is not None:
            tick()


# --------------------------------------------------------------------------------------- stream


def _api_key(explicit: str | None) -> str | None:
    key = explicit if explicit is not None else os.environ.get("MASSIVE_API_KEY")
    return key.strip() if key and key.strip() else None


def _demo_market(market: Market, channels: Sequence[str], speed: float, rate: float, seed: int | None,
                 console: _Console) -> SyntheticMarket:  # fmt: skip
    """The synthetic market for ``channels``, its clock sped up ``speed`` times at ``rate`` events/s."""
    if market not in _SIMULATED:
        raise UsageError(f"the synthetic market simulates stocks and crypto only, not {market.value!r}; "
                         "pass an API key to stream it from Massive")  # fmt: skip
    tickers = [c.partition(".")[2] for c in channels if not c.endswith(".*")]
    symbols = tuple(dict.fromkeys(tickers)) or _SIMULATED[market]
    prefixes = {c.partition(".")[0] for c in channels}
    silent = sorted(prefixes - {*_TICKS[market], *_BARS[market]})
    if silent:
        console.message(f"{PROG}: note: the synthetic market produces no {', '.join(silent)} events")
    # Trades and quotes are always simulated (they drive the clock and build the bars); the
    # server sends each connection only what it subscribed to.
    produced = (*_TICKS[market], *(p for p in _BARS[market] if p in prefixes))
    # SyntheticMarket's rate is trades + quotes per simulated second per symbol; at `rate` events/s
    # of wall time this makes simulated time run `speed` times faster than the wall clock.
    per_symbol = rate / (speed * len(symbols))
    return SyntheticMarket(symbols, market=market, seed=seed, channels=produced, rate=per_symbol)


def _load_server_class() -> type[MockMassiveServer]:
    try:
        from .testing.server import MockMassiveServer
    except ModuleNotFoundError as exc:
        raise UsageError(f"the local mock server needs the 'websockets' package ({exc.name} is missing): "
                         "pip install 'massive-rt[testing]'") from None  # fmt: skip
    return MockMassiveServer


@attrs.define
class _Meter:
    """Events per second between status refreshes."""

    printed: int = 0
    at: float = attrs.Factory(time.monotonic)

    def rate(self, printed: int) -> float:
        now = time.monotonic()
        value = (printed - self.printed) / max(now - self.at, 1e-9)
        self.printed, self.at = printed, now
        return value


def _source_health(source: MassiveWebSocketClient | ConnectionPool) -> tuple[str, int, int]:
    """(state, dropped events, reconnects) of a client or a pool."""
    if isinstance(source, ConnectionPool):
        stats = source.stats()
        states = collections.Counter(str(c.state) for c in stats.per_connection)
        streaming = states.get(str(ConnectionState.STREAMING), 0)
        state = f"streaming {streaming}/{stats.connections}" if streaming else ", ".join(sorted(states)) or "idle"
        return state, stats.dropped_events, stats.reconnects + stats.recycled
    client_stats = source.stats()
    return str(client_stats.state), client_stats.dropped_events, client_stats.reconnects


def _ms(microseconds: float | None) -> str:
    return "-" if microseconds is None else f"{microseconds / 1000:.2f} ms"


def _open_source(
    args: argparse.Namespace, key: str | None, market: Market, channels: Sequence[str], server: MockMassiveServer | None
) -> MassiveWebSocketClient | ConnectionPool:
    """One client, or with ``--pool N`` a pool whose channels spread over up to N connections."""
    if args.pool is None:
        url = server.url(market) if server is not None else args.url
        return MassiveWebSocketClient(key, market=market, feed=args.feed, url=url, subscriptions=channels)
    pool = ConnectionPool(
        key,
        max_connections=args.pool,
        max_subscriptions_per_connection=math.ceil(len(channels) / args.pool),
        market=market,
        feed=args.feed,
        url=server.url if server is not None else args.url,
    )
    pool.subscribe(*channels)
    return pool


def _cmd_stream(args: argparse.Namespace, console: _Console) -> int:
    # Validate everything before starting anything (ConfigurationError → exit 2).
    market: Market = Market.coerce(args.market, "market")  # type: ignore[assignment]
    channels = parse_channels(args.channels, market)
    ClientConfig(market=market, feed=args.feed, url=args.url)
    key = _api_key(args.api_key)
    demo = args.demo or key is None
    if demo and args.url is not None:
        why = "--demo streams from its own local server" if args.demo else "no API key (--api-key or MASSIVE_API_KEY)"
        raise UsageError(f"--url given but {why}; a 'massive-rt serve' server accepts --api-key demo")
    fmt: Format = TableFormat(market, channels) if args.format == "table" else (
        JsonlFormat() if args.format == "jsonl" else CsvFormat()
    )  # fmt: skip
    simulated = _demo_market(market, channels, args.speed, args.rate, args.seed, console) if demo else None

    stop = _Stop()
    printer = Printer(sys.stdout, fmt, console, stop.set, limit=args.limit, fatal_on_failure=args.pool is None,
                      verbose=args.verbose > 0)  # fmt: skip
    server: MockMassiveServer | None = None
    with stop.on_signals():
        try:
            if simulated is not None:
                server = _load_server_class()(api_keys={DEMO_KEY}, name="demo")
                server.start()
                key = DEMO_KEY
                server.stream(simulated, rate=args.rate, market=market)
                reason = "--demo" if args.demo else "no MASSIVE_API_KEY"
                console.message(f"{PROG}: {reason}: streaming the synthetic market from a local mock server at "
                                f"{server.url(market)}")  # fmt: skip
                console.message(f"{PROG}: simulated clock {args.speed:g}x real time, {args.rate:g} events/s "
                                f"generated (seed {simulated.seed})")  # fmt: skip
            source = _open_source(args, key, market, channels, server)
            adapter = RealTimeDataAdapter(source, on_event=printer.on_event)
            adapter.on_status(printer.on_status)
            printer.start(fmt.header())
            return _run_stream(args, adapter, source, printer, console, stop)
        finally:
            if server is not None:
                server.close()
            stop.close()


def _run_stream(
    args: argparse.Namespace,
    adapter: RealTimeDataAdapter,
    source: MassiveWebSocketClient | ConnectionPool,
    printer: Printer,
    console: _Console,
    stop: _Stop,
) -> int:
    meter = _Meter()

    def refresh() -> None:
        rate = meter.rate(printer.printed)
        state, dropped, reconnects = _source_health(source)
        # Status events are timed too: no event printed, no percentile shown.
        p99 = adapter.stats().latency_us.get("p99") if printer.printed else None
        console.status(f"{printer.printed:,} events  {rate:,.0f}/s  p99 {_ms(p99)}  drops {dropped:,}  "
                       f"reconnects {reconnects}  {state}")  # fmt: skip

    started = time.monotonic()
    deadline = None if args.duration is None else started + args.duration
    adapter.start()
    try:
        _wait(stop, deadline, refresh if console.live else None)
        elapsed = time.monotonic() - started
    finally:
        printer.close()
        adapter.stop(timeout=5.0, drain=False)
    console.clear_status()
    _, dropped, reconnects = _source_health(source)
    if printer.error is None or printer.printed:  # a failure before any event: its error line says it all
        _summary(console, printer, adapter.stats().latency_us, elapsed, dropped, reconnects)
    if printer.broken_pipe:
        _silence_stdout()
    if printer.error is not None:
        console.message(f"{PROG}: error: {printer.error}")
        return EXIT_FAILURE
    return EXIT_OK


def _summary(console: _Console, printer: Printer, latency_us: dict[str, float], elapsed: float, dropped: int,
             reconnects: int) -> None:  # fmt: skip
    total = printer.printed
    per_second = total / max(elapsed, 1e-9)
    lines = [f"{PROG}: summary", f"  events      {total:>10,}  in {elapsed:.1f} s  ({per_second:,.1f}/s)"]
    for label, count in sorted(printer.counts.items(), key=lambda item: (-item[1], item[0])):
        lines.append(f"    {label:<9} {count:>10,}")
    lines.append(f"  dropped     {dropped:>10,}")
    lines.append(f"  reconnects  {reconnects:>10,}")
    if total:
        lines.append(f"  latency     p50 {_ms(latency_us.get('p50'))}  p99 {_ms(latency_us.get('p99'))}  "
                     "(received -> handler)")  # fmt: skip
    else:  # the adapter's percentiles would be those of status events alone
        lines.append("  latency     none: no events received")
    console.message("\n".join(lines))


def _silence_stdout() -> None:
    """After a closed pipe, point stdout at /dev/null so the interpreter's final flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


# ---------------------------------------------------------------------------------------- serve


def _cmd_serve(args: argparse.Namespace, console: _Console) -> int:
    market: Market = Market.coerce(args.market, "market")  # type: ignore[assignment]
    if market not in _SIMULATED:
        raise UsageError(f"the synthetic market simulates stocks and crypto only, not {market.value!r}")
    symbols = tuple(args.symbols) if args.symbols else _SIMULATED[market]
    simulated = SyntheticMarket(symbols, market=market, seed=args.seed,
                                rate=args.rate / (args.speed * len(symbols)))  # fmt: skip
    server_class = _load_server_class()
    server = server_class(api_keys=args.keys, host=args.host, port=args.port, max_connections=args.max_connections,
                          name="serve")  # fmt: skip
    stop = _Stop()
    with stop.on_signals():
        try:
            server.start()
        except OSError as exc:
            stop.close()
            console.message(f"{PROG}: error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
            return EXIT_FAILURE
        try:
            handle = server.stream(simulated, rate=args.rate, market=market)
            url = server.url(market)
            channels = " ".join(f"'{p}.*'" for p in _TICKS[market])
            console.message("\n".join([
                f"{PROG}: mock Massive server listening on {url}",
                f"  streaming the synthetic {market.value} market ({', '.join(symbols)}) at {args.rate:g} events/s, "
                f"clock {args.speed:g}x real time",
                f"  keys: {', '.join(args.keys)}",
                f"  connect: {PROG} stream {channels} --url {url} --api-key {args.keys[0]}",
                f"  or:      MassiveWebSocketClient(api_key={args.keys[0]!r}, url={url!r}, "
                f"subscriptions=['{_TICKS[market][0]}.*'])",
                "  Ctrl-C to stop",
            ]))  # fmt: skip
            started = time.monotonic()

            def refresh() -> None:
                connections = len(server.active_connections())
                console.status(f"{connections} connection(s)  {handle.delivered:,} events delivered")

            _wait(stop, None, refresh if console.live else None)
            console.clear_status()
            delivered, connections = handle.delivered, len(server.connections)
        finally:
            server.close()
            stop.close()
    console.message(f"{PROG}: served {delivered:,} events over {connections} connection(s) in "
                    f"{time.monotonic() - started:.1f} s")  # fmt: skip
    return EXIT_OK


# ---------------------------------------------------------------------------------------- bench


def _bench_frames(events: int, batch: int) -> list[bytes]:
    """``events`` realistic trades, pre-encoded as JSON arrays of ``batch`` events."""
    simulated = SyntheticMarket(market=Market.STOCKS, seed=7, channels=("T",))
    wires = simulated.next_events(events)
    return [_dumps(wires[i : i + batch]).encode() for i in range(0, len(wires), batch)]


def _cmd_bench(args: argparse.Namespace, console: _Console) -> int:
    frames = _bench_frames(args.events, args.batch)
    server_class = _load_server_class()
    received = 0
    with server_class(api_keys={"bench"}, name="bench") as server:
        # "block" makes the count exact: a slower consumer slows the socket instead of dropping.
        client = MassiveWebSocketClient("bench", url=server.url("stocks"), subscriptions=("T.*",), overflow="block",
                                        name="bench")  # fmt: skip
        with client:
            client.wait_ready(timeout=10)
            prepared = server.prepare_raw_frames(frames)  # framed before the clock starts: not the client's time
            publisher = threading.Thread(target=server.publish_raw_frames, args=(prepared,),
                                         name="massive-rt-bench-publisher", daemon=True)  # fmt: skip
            started = time.monotonic()
            publisher.start()
            deadline = started + 30 + args.events / 20_000
            while received < args.events and time.monotonic() < deadline:
                events = client.drain(256)
                if events:
                    received += sum(1 for e in events if isinstance(e, MarketEvent))
                else:
                    client.wait(0.5)
            seconds = time.monotonic() - started
            publisher.join(5)
    if received < args.events:
        console.message(f"{PROG}: error: received {received:,} of {args.events:,} events before timing out")
        return EXIT_FAILURE
    rows = [("events", f"{received:,}"), ("frames", f"{len(frames):,}"), ("seconds", f"{seconds:.3f}"),
            ("events/s", f"{received / seconds:,.0f}"), ("frames/s", f"{len(frames) / seconds:,.0f}")]  # fmt: skip
    print(f"loopback: MockMassiveServer -> MassiveWebSocketClient.drain(), {args.batch} events per frame")
    print("  ".join(f"{name:>10}" for name, _ in rows))
    print("  ".join(f"{value:>10}" for _, value in rows))
    return EXIT_OK


# ----------------------------------------------------------------------------------------- main


def _positive(kind: Callable[[str], float]) -> Callable[[str], Any]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid number") from None
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
        return value

    parse.__name__ = kind.__name__
    return parse


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 65535")
    return value


def _cmd_relay(args: argparse.Namespace, console: _Console) -> int:
    try:
        from .relay import main as relay_main
    except ModuleNotFoundError as exc:
        raise UsageError(f"the relay needs the 'websockets' package ({exc.name} is missing): "
                         "pip install 'massive-rt[relay]'") from None  # fmt: skip
    return relay_main(args.relay_args, message=console.message)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``massive-rt``."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Real-time market data from Massive (formerly Polygon.io), threaded and synchronous.",
        epilog="Without MASSIVE_API_KEY, 'stream' plays a synthetic market through a local mock server.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    # -v after the command too; SUPPRESS keeps a subcommand from resetting the count given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    stream = commands.add_parser(
        "stream",
        parents=[common],
        help="print live events",
        description="Print live events from Massive, or from a synthetic market with no API key.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  massive-rt stream T.AAPL Q.AAPL 'AM.*'                    # no key: the synthetic market\n"
        "  massive-rt stream 'XT.*' --market crypto --format jsonl --limit 100\n"
        "  MASSIVE_API_KEY=... massive-rt stream 'T.*' --pool 2      # Massive, over 2 connections",
    )
    stream.add_argument("channels", nargs="+", metavar="CHANNEL", help="e.g. T.AAPL, Q.MSFT, AM.* (quote the *)")
    stream.add_argument("--market", default="stocks", help="stocks (default), options, forex, crypto, indices, futures")
    stream.add_argument("--feed", default="realtime", help="realtime (default), delayed, or a host[:port]")
    stream.add_argument("--url", help="full WebSocket URL, e.g. ws://127.0.0.1:8765/stocks (wins over --feed)")
    stream.add_argument("--api-key", help="Massive API key (default: $MASSIVE_API_KEY)")
    stream.add_argument("--demo", action="store_true", help="stream the synthetic market even with an API key")
    stream.add_argument("--format", choices=("table", "jsonl", "csv"), default="table", help="output format")
    stream.add_argument("--duration", type=_positive(float), metavar="S", help="stop after S seconds")
    stream.add_argument("--limit", type=_positive(int), metavar="N", help="stop after N events")
    stream.add_argument("--pool", type=_positive(int), metavar="N", help="spread the channels over N connections")
    stream.add_argument("--rate", type=_positive(float), default=200.0, metavar="R",
                        help="demo: events per second generated (default 200)")  # fmt: skip
    stream.add_argument("--speed", type=_positive(float), default=DEFAULT_SPEED, metavar="X",
                        help=f"demo: simulated clock speed-up (default {DEFAULT_SPEED:g}: a minute bar every "
                        f"{60 / DEFAULT_SPEED:g} s; 1 = real time)")  # fmt: skip
    stream.add_argument("--seed", type=int, help="demo: random seed (same seed, same market)")

    serve = commands.add_parser(
        "serve",
        parents=[common],
        help="run a local mock Massive server with synthetic data",
        description="Run MockMassiveServer streaming a synthetic market until Ctrl-C.",
    )
    serve.add_argument("--port", type=_port, default=8765, help="port (default 8765; 0 picks a free one)")
    serve.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    serve.add_argument("--market", default="stocks", help="stocks (default) or crypto")
    serve.add_argument("--symbols", nargs="+", metavar="SYMBOL", help="symbols to simulate (default: liquid ones)")
    serve.add_argument("--rate", type=_positive(float), default=1000.0, metavar="R",
                       help="events per second (default 1000)")  # fmt: skip
    serve.add_argument("--speed", type=_positive(float), default=DEFAULT_SPEED, metavar="X",
                       help=f"simulated clock speed-up (default {DEFAULT_SPEED:g})")  # fmt: skip
    serve.add_argument("--seed", type=int, help="random seed")
    serve.add_argument("--keys", nargs="+", default=[DEMO_KEY], metavar="KEY",
                       help=f"API keys that authenticate (default: {DEMO_KEY})")  # fmt: skip
    serve.add_argument("--max-connections", type=_positive(int), metavar="N",
                       help="connection limit per key, like a Massive account")  # fmt: skip

    bench = commands.add_parser(
        "bench",
        parents=[common],
        help="quick loopback throughput check",
        description="Publish N pre-encoded trades from a local mock server to one client; print the rate.",
    )
    bench.add_argument("--events", type=_positive(int), default=200_000, metavar="N", help="events (default 200000)")
    bench.add_argument("--batch", type=_positive(int), default=10, metavar="K", help="events per frame (default 10)")
    relay = commands.add_parser("relay", add_help=False, prefix_chars="+",  # its options: massive_rt.relay.main
                                help="share Massive connections with many local clients (relay --help)")  # fmt: skip
    relay.add_argument("relay_args", nargs=argparse.REMAINDER)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``massive-rt`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    console = _Console(sys.stderr, sys.stdout)
    handler = _ConsoleHandler(console)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s %(name)s: %(message)s"))
    package_logger = logging.getLogger("massive_rt")
    package_logger.addHandler(handler)
    previous_level = package_logger.level
    package_logger.setLevel(logging.DEBUG if args.verbose > 1 else logging.INFO if args.verbose else logging.WARNING)
    command = {"stream": _cmd_stream, "serve": _cmd_serve, "bench": _cmd_bench, "relay": _cmd_relay}[args.command]
    try:
        return command(args, console)
    except (ConfigurationError, UsageError) as exc:
        console.message(f"{PROG} {args.command}: error: {_one_line(exc)}")
        return EXIT_USAGE
    except MassiveRTError as exc:
        console.message(f"{PROG} {args.command}: error: {_one_line(exc)}")
        return EXIT_FAILURE
    except KeyboardInterrupt:  # only before the signal handlers are installed
        return 130
    finally:
        package_logger.removeHandler(handler)
        package_logger.setLevel(previous_level)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
