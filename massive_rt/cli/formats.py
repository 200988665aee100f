"""How ``massive-rt stream`` shows events and statuses: the output formats and the printer.

* :class:`TableFormat` (``--format table``): aligned, human-readable lines.
* :class:`JsonlFormat` (``--format jsonl``): one compact JSON object per event, keyed by the
  official attribute names (JSON from :mod:`massive_rt._json`: orjson when installed, else the
  standard library, with the same output either way).
* :class:`CsvFormat` (``--format csv``): one row shape, :data:`CSV_COLUMNS`, for every event.
* :class:`Printer`: the adapter handlers that write formatted events to stdout and status events
  to the console (run by the adapter, one callback at a time).
"""

from __future__ import annotations

import collections
import csv
import io
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import TextIO

import attrs

from .._json import dumps_str
from ..enums import ConnectionState, Market
from ..errors import AuthenticationError, MassiveRTError
from ..models import (
    LIVE,
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
from .console import PROG, Console

__all__ = ["CSV_COLUMNS", "CsvFormat", "Format", "JsonlFormat", "Printer", "TableFormat", "event_label"]

logger = logging.getLogger(__name__)

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
        return "", "", dumps_str(event.data)[:120]
    return "", "", ""


class TableFormat:
    """Aligned, human-readable lines: time (UTC, from the event), symbol, type, price, size, details
    (led by ``[rest]`` for a backfilled event)."""

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
        if event.origin != LIVE:  # backfilled (--backfill): say so where a reader looks
            details = f"[{event.origin}]  {details}" if details else f"[{event.origin}]"
        return self._row(when, _symbol(event), event_label(event), price, size, details)


_BASE_FIELDS = ("received_at_ns", "connection")


def _field_names(cls: type) -> tuple[str, ...]:
    """The event's own attributes (official names) first, then ``received_at_ns``, ``connection``
    and ``origin`` (``"live"``, or ``"rest"`` for a backfilled event)."""
    names = tuple(f.name for f in attrs.fields(cls))
    return (*(n for n in names if n not in _BASE_FIELDS), *_BASE_FIELDS, "origin")


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
        return dumps_str({name: getattr(event, name) for name in names}) + "\n"


#: One row shape for every kind of event: the official attribute names where the event has them.
CSV_COLUMNS = (
    "event_type", "symbol", "timestamp", "price", "size", "bid_price", "bid_size", "ask_price", "ask_size",
    "open", "high", "low", "close", "volume", "vwap", "start_timestamp", "end_timestamp", "exchange",
    "received_at_ns", "connection", "origin",
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
    """The adapter handlers that write events to stdout (run by the adapter, one at a time).

    Each line is flushed as it is written (line-buffered), so a pipe sees events live. A closed
    pipe (``| head``) ends the stream quietly. After ``limit`` market events it prints nothing
    more and calls ``done()``. With ``backfill`` (an adapter with a Backfill: ``--backfill``) a gap is
    announced as being backfilled rather than as something to backfill.
    """

    def __init__(
        self,
        out: TextIO,
        fmt: Format,
        console: Console,
        done: Callable[[], None],
        *,
        limit: int | None = None,
        fatal_on_failure: bool = True,
        verbose: bool = False,
        backfill: bool = False,
    ) -> None:
        self._out = out
        self._format = fmt.format
        self._console = console
        self._done = done
        self._limit = limit
        self._fatal_on_failure = fatal_on_failure
        self._verbose = verbose
        self._backfill = backfill
        self._write = console.stdout_line if console.shared_terminal else self._write_line
        self.counts: collections.Counter[str] = collections.Counter()
        self.printed = 0
        self.closed = False
        self.broken_pipe = False
        self.error: BaseException | None = None
        self._header: str | None = None

    def start(self, header: str | None, *, when_ready: bool = False) -> None:
        """Print ``header`` now, or with ``when_ready`` once a connection is streaming (or before
        the first event): a connection that fails first leaves stdout empty."""
        if when_ready:
            self._header = header
        elif header is not None:
            self._emit(header)

    def _ready(self) -> None:
        header, self._header = self._header, None
        if header is not None:
            self._emit(header)

    def on_event(self, event: Event) -> None:
        if self.closed or not isinstance(event, (MarketEvent, UnknownEvent)):
            return
        if self._header is not None:
            self._ready()
        if not self._emit(self._format(event)):
            return
        self.counts[event_label(event)] += 1
        self.printed += 1
        if self._limit is not None and self.printed >= self._limit:
            self.close()

    def on_status(self, status: StatusMessage) -> None:
        if self.closed:
            return
        if status.status == "adapter_failed" or (
            status.status == "failed" and (self._fatal_on_failure or isinstance(status.error, AuthenticationError))
        ):
            # A lone client never comes back from FAILED, and a refused key stays refused (a pool
            # recycles its other failed connections by itself, until every one failed for good:
            # the adapter's adapter_failed).
            self.error = status.error or MassiveRTError(status.message or "connection failed")
            self.close()
            return
        if status.state is ConnectionState.STREAMING and self._header is not None:
            self._ready()
        text = self._describe(status)
        if text is not None:
            self._console.message(f"{PROG}: [{status.connection}] {text}")

    def _describe(self, status: StatusMessage) -> str | None:
        """The line to show for a status event, or None when the library's log already tells it
        (server statuses, drops, refused channels, recycling: WARNING and up)."""
        if status.status == "gap" and status.gap_start_ns is not None and status.gap_end_ns is not None:
            seconds = (status.gap_end_ns - status.gap_start_ns) / 1e9
            if self._backfill:  # the adapter's Backfill is on it: its statuses follow
                return f"data resumed after a {seconds:.1f} s gap; backfilling it over REST"
            return f"data resumed after a {seconds:.1f} s gap (backfill it over REST if it matters: --backfill)"
        if status.status.startswith("backfill_"):
            return f"{status.status}: {status.message}"
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
