"""A real local HTTP server that plays Massive's REST API for backfill and snapshots, with faults.

:class:`MockMassiveREST` serves, from a bounded in-memory history with exchange timestamps:

- ``GET /v3/trades/{ticker}`` and ``GET /v3/quotes/{ticker}`` — ``timestamp``, ``timestamp.gte``/
  ``.gt``/``.lte``/``.lt`` (nanoseconds), ``sort=timestamp``, ``order=asc|desc``, ``limit``
  (default 1000, at most 50,000) and ``next_url`` pagination with an opaque ``cursor``;
- ``GET /v2/aggs/ticker/{ticker}/range/1/{minute|second}/{from}/{to}`` — ``from``/``to`` in
  milliseconds or ``YYYY-MM-DD`` (UTC), ``sort=asc|desc``, ``limit`` (default 5000), ``next_url``;
- ``GET /v2/snapshot/locale/{us|global}/markets/{stocks|crypto|forex}/tickers[?tickers=A,B]`` and
  ``.../tickers/{ticker}`` — built from the latest trade, quote and minute bar recorded.

Responses have Massive's shapes (``status``, ``request_id``, ``results``/``tickers``/``ticker``,
``resultsCount``, ``next_url``). Auth: an ``apiKey`` query parameter or ``Authorization: Bearer``;
a missing or unknown key is answered 401 ``{"status": "ERROR", "error": ...}``; an unknown path 404.

History: attach to a :class:`~massive_rt.testing.MockMassiveServer` (``ws=server``) and every event
it publishes is recorded (per market, symbol and kind, at most ``history_size`` each, oldest
dropped first); :meth:`MockMassiveREST.add_events` records events directly. Trade and quote rows
get ``sip_timestamp = t * 1_000_000`` from the stream's millisecond ``t``.

Faults, for the next matching requests: :meth:`~MockMassiveREST.fail_next` (an HTTP status,
429 with ``Retry-After``), :meth:`~MockMassiveREST.slow_next` (the answer waits, interrupted by
:meth:`~MockMassiveREST.close`), :meth:`~MockMassiveREST.truncate_next` (the body is cut in half:
invalid JSON with a consistent ``Content-Length``).

Built on the standard library's :class:`http.server.ThreadingHTTPServer`; HTTP/1.0 (one request
per connection). Threads: ``massive-rt-mock-rest-serve-<name>`` (accept loop) and one
``massive-rt-mock-rest-req-<name>`` per request; daemons, all joined by :meth:`close`.
"""

from __future__ import annotations

import base64
import collections
import datetime
import itertools
import json
import logging
import operator
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import attrs

from ..errors import ClientClosedError, ConfigurationError
from ..models import MarketEvent, to_wire
from ..protocol import event_symbol
from ..rest.convert import NS_PER_MS, rest_ticker

if TYPE_CHECKING:
    from .server import MockMassiveServer

__all__ = ["MockMassiveREST", "RestFault", "RestRequest"]

logger = logging.getLogger(__name__)

THREAD_PREFIX = "massive-rt-mock-rest-"
_KINDS = {"T": "trades", "XT": "trades", "Q": "quotes", "C": "quotes",
          "AM": "minute", "XA": "minute", "CA": "minute", "A": "second", "XAS": "second", "CAS": "second"}  # fmt: skip
_TICKER_MARKETS = {"X": "crypto", "C": "forex", "O": "options", "I": "indices"}
_MAX_LIMIT = 50_000
_BOUNDS: dict[str, Callable[[int, int], bool]] = {
    "": operator.eq,
    ".gte": operator.ge,
    ".gt": operator.gt,
    ".lte": operator.le,
    ".lt": operator.lt,
}


@attrs.frozen(kw_only=True)
class RestRequest:
    """One request the mock answered.

    Attributes:
        path: the URL path.
        params: the query parameters, ``apiKey`` removed.
        status: the HTTP status answered (0 when :meth:`MockMassiveREST.close` cut a slow answer).
        fault: the injected fault's kind, if one applied (``"status"``, ``"slow"``, ``"truncate"``).
        received_at: ``time.monotonic()`` at arrival.
    """

    path: str
    params: Mapping[str, str]
    status: int
    fault: str | None = None
    received_at: float = 0.0


@attrs.define(kw_only=True)
class RestFault:
    """A pending fault (see :meth:`MockMassiveREST.fail_next`). ``remaining`` counts down to 0."""

    kind: str
    remaining: int
    path: str = ""
    status: int = 503
    retry_after: int | None = None
    delay: float = 0.0


class _History:
    """Wire dicts per (market, symbol, kind), bounded; the lock guards only the map."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._rows: dict[tuple[str, str, str], collections.deque[dict[str, Any]]] = {}
        self._tickers: dict[tuple[str, str], str] = {}  # (market, REST ticker) → stream symbol

    def record(self, market: str, wires: Iterable[dict[str, Any]]) -> None:
        with self._lock:
            for wire in wires:
                kind = _KINDS.get(wire.get("ev"))  # type: ignore[arg-type]
                symbol = event_symbol(market, wire) if kind else None
                if not isinstance(symbol, str):
                    continue
                rows = self._rows.get((market, symbol, kind))  # type: ignore[arg-type]
                if rows is None:
                    rows = self._rows[(market, symbol, kind)] = collections.deque(maxlen=self._size)  # type: ignore[index]
                    self._tickers[(market, rest_ticker(symbol, market))] = symbol
                rows.append(wire)

    def rows(self, market: str, ticker: str, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            symbol = self._tickers.get((market, ticker))
            found = self._rows.get((market, symbol, kind)) if symbol is not None else None
            return list(found) if found else []

    def tickers(self, market: str) -> list[str]:
        with self._lock:
            return sorted(ticker for m, ticker in self._tickers if m == market)


class MockMassiveREST:
    """A local Massive REST server for tests (see the module docstring for what it serves).

    Args:
        api_keys: keys that authenticate; ``None`` accepts any non-empty key.
        ws: a :class:`~massive_rt.testing.MockMassiveServer` whose published events become history.
        history_size: events kept per market, symbol and kind (trades, quotes, minute, second bars).
        host: interface to bind (loopback).
        port: 0 picks a free port (see :attr:`port`).
        name: used in thread names and logs.
    """

    def __init__(
        self,
        api_keys: Iterable[str] | None = ("test-key",),
        *,
        ws: MockMassiveServer | None = None,
        history_size: int = 100_000,
        host: str = "127.0.0.1",
        port: int = 0,
        name: str = "rest",
    ) -> None:
        if isinstance(history_size, bool) or not isinstance(history_size, int) or history_size < 1:
            raise ConfigurationError(f"history_size={history_size!r} must be an integer >= 1", field="history_size")
        self._keys = None if api_keys is None else frozenset([api_keys] if isinstance(api_keys, str) else api_keys)
        self.name = name
        self._host, self._port = host, port
        self._history = _History(history_size)
        self._lock = threading.Lock()
        self._faults: list[RestFault] = []
        self._requests: collections.deque[RestRequest] = collections.deque(maxlen=10_000)
        self._threads: list[threading.Thread] = []
        self._sockets: set[socket.socket] = set()
        self._closing = threading.Event()
        self._httpd: _Server | None = None
        self._request_ids = itertools.count(1)
        self._in_flight = 0
        self._ws = ws
        if ws is not None:
            ws.add_publish_listener(self._history.record)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> MockMassiveREST:
        """Bind and serve on a daemon thread (idempotent). Returns ``self``.

        Raises:
            ClientClosedError: after :meth:`close`.
        """
        with self._lock:
            if self._closing.is_set():
                raise ClientClosedError(f"MockMassiveREST {self.name!r} is closed; create a new one")
            if self._httpd is not None:
                return self
            self._httpd = _Server((self._host, self._port), _Handler, self)
            thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                name=f"{THREAD_PREFIX}serve-{self.name}", daemon=True,
            )  # fmt: skip
            self._threads.append(thread)
        thread.start()
        logger.info("mock REST %s listening on %s", self.name, self.url)
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Stop serving: cut slow answers, close every connection, join every thread. Idempotent."""
        self._closing.set()
        if self._ws is not None:  # the WebSocket mock may outlive this one: stop recording its history
            self._ws.remove_publish_listener(self._history.record)
        with self._lock:
            httpd, self._httpd = self._httpd, None
            sockets = list(self._sockets)
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> MockMassiveREST:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        httpd = self._httpd
        if httpd is None:
            raise ClientClosedError(f"MockMassiveREST {self.name!r} is not serving")
        return int(httpd.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: pass it as ``rest_url=`` or ``MASSIVE_REST_URL``."""
        return f"http://{self._host}:{self.port}"

    # -- history ---------------------------------------------------------------------------------

    def add_events(self, events: Iterable[Mapping[str, Any] | MarketEvent], market: str = "stocks") -> None:
        """Record events (wire dicts or events, with the stream's ``t``/``s`` in milliseconds) as history."""
        wires = [to_wire(e) if isinstance(e, MarketEvent) else dict(e) for e in events]
        self._history.record(market.strip("/"), wires)

    # -- faults ----------------------------------------------------------------------------------

    def fail_next(self, status: int = 503, *, count: int = 1, retry_after: int | None = None, path: str = "") -> None:
        """Answer the next ``count`` requests (whose path starts with ``path``) with ``status``
        (and a ``Retry-After`` header when given) and Massive's error body."""
        self._add_fault(RestFault(kind="status", remaining=count, path=path, status=status, retry_after=retry_after))

    def slow_next(self, delay: float, *, count: int = 1, path: str = "") -> None:
        """Hold the next ``count`` answers for ``delay`` seconds (cut short by :meth:`close`)."""
        if not 0 <= delay < float("inf"):
            raise ConfigurationError(f"delay={delay!r} must be a finite number >= 0", field="delay")
        self._add_fault(RestFault(kind="slow", remaining=count, path=path, delay=float(delay)))

    def truncate_next(self, *, count: int = 1, path: str = "") -> None:
        """Cut the body of the next ``count`` successful answers in half (invalid JSON)."""
        self._add_fault(RestFault(kind="truncate", remaining=count, path=path))

    def _add_fault(self, fault: RestFault) -> None:
        if isinstance(fault.remaining, bool) or not isinstance(fault.remaining, int) or fault.remaining < 1:
            raise ConfigurationError(f"count={fault.remaining!r} must be an integer >= 1", field="count")
        with self._lock:
            self._faults.append(fault)

    def _take_fault(self, path: str) -> RestFault | None:
        with self._lock:
            for fault in self._faults:
                if path.startswith(fault.path):
                    fault.remaining -= 1
                    if not fault.remaining:
                        self._faults.remove(fault)
                    return fault
        return None

    # -- inspection ------------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Requests received and not yet answered (e.g. held by :meth:`slow_next`)."""
        with self._lock:
            return self._in_flight

    @property
    def requests(self) -> list[RestRequest]:
        """The requests answered so far (at most the last 10,000), oldest first."""
        with self._lock:
            return list(self._requests)

    # -- request handling (request threads) -------------------------------------------------------

    def _authorized(self, key: str | None) -> str | None:
        """None when ``key`` is accepted, else the error text."""
        if not key:
            return "API Key was not provided"
        if self._keys is not None and key not in self._keys:
            return "Unknown API Key"
        return None

    def _answer(self, path: str, params: dict[str, str], base: str) -> tuple[int, dict[str, Any]]:
        request_id = f"mock-{next(self._request_ids)}"
        parts = [p for p in path.split("/") if p]
        try:
            if len(parts) == 3 and parts[0] == "v3" and parts[1] in ("trades", "quotes"):
                return 200, self._ticks(parts[1], parts[2], params, path, base, request_id)
            if len(parts) == 9 and parts[:3] == ["v2", "aggs", "ticker"] and parts[4] == "range":
                return 200, self._aggs(parts, params, path, base, request_id)
            snapshot = parts[:3] == ["v2", "snapshot", "locale"] and parts[4::2][:2] == ["markets", "tickers"]
            if len(parts) in (7, 8) and snapshot:
                return self._snapshot(parts, params, request_id)
        except _BadRequest as exc:
            return 400, {"status": "ERROR", "request_id": request_id, "error": str(exc)}
        return 404, {"status": "NOT_FOUND", "request_id": request_id, "message": "Not Found"}

    def _page(
        self, rows: list[dict[str, Any]], params: dict[str, str], path: str, base: str, default_limit: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        offset = _int(str(params.get("_offset", "0")), "cursor")
        if offset < 0:
            raise _BadRequest("invalid cursor")
        limit = _int(params.get("limit", str(default_limit)), "limit")
        if not 1 <= limit <= _MAX_LIMIT:
            raise _BadRequest(f"limit must be between 1 and {_MAX_LIMIT}")
        page = rows[offset : offset + limit]
        if offset + limit >= len(rows):
            return page, None
        state = {k: v for k, v in params.items() if k != "_offset"} | {"_offset": str(offset + limit)}
        cursor = base64.urlsafe_b64encode(json.dumps(state).encode()).decode().rstrip("=")
        return page, f"{base}{path}?cursor={cursor}"

    def _ticks(
        self, kind: str, ticker: str, params: dict[str, str], path: str, base: str, request_id: str
    ) -> dict[str, Any]:
        market = _TICKER_MARKETS.get(ticker.partition(":")[0], "stocks") if ":" in ticker else "stocks"
        wires = self._history.rows(market, ticker, kind)
        rows = [_tick_row(w) for w in wires]
        for suffix, test in _BOUNDS.items():
            raw = params.get(f"timestamp{suffix}")
            if raw is not None:
                bound = _int(raw, "timestamp")
                rows = [r for r in rows if test(_row_ns(r), bound)]
        rows.sort(key=_row_ns, reverse=params.get("order", "asc") == "desc")
        page, next_url = self._page(rows, params, path, base, 1000)
        body: dict[str, Any] = {"results": page, "status": "OK", "request_id": request_id}
        if next_url:
            body["next_url"] = next_url
        return body

    def _aggs(self, parts: list[str], params: dict[str, str], path: str, base: str, request_id: str) -> dict[str, Any]:
        ticker, multiplier, timespan = parts[3], parts[5], parts[6]
        if multiplier != "1" or timespan not in ("minute", "second"):
            raise _BadRequest("the mock serves range/1/minute and range/1/second only")
        start, end = _ms(parts[7], end=False), _ms(parts[8], end=True)
        market = _TICKER_MARKETS.get(ticker.partition(":")[0], "stocks") if ":" in ticker else "stocks"
        rows = [_agg_row(w) for w in self._history.rows(market, ticker, timespan)]
        rows = [r for r in rows if r.get("t") is not None and start <= r["t"] <= end]
        rows.sort(key=lambda r: r["t"], reverse=params.get("sort", "asc") == "desc")
        page, next_url = self._page(rows, params, path, base, 5000)
        body: dict[str, Any] = {
            "ticker": ticker, "queryCount": len(page), "resultsCount": len(page), "adjusted": True,
            "results": page, "status": "OK", "request_id": request_id, "count": len(page),
        }  # fmt: skip
        if next_url:
            body["next_url"] = next_url
        return body

    def _snapshot(self, parts: list[str], params: dict[str, str], request_id: str) -> tuple[int, dict[str, Any]]:
        locale, market = parts[3], parts[5]
        if (market, locale) not in (("stocks", "us"), ("crypto", "global"), ("forex", "global")):
            return 404, {"status": "NOT_FOUND", "request_id": request_id, "message": "Not Found"}
        if len(parts) == 8:
            snap = self._ticker_snapshot(market, parts[7])
            if snap is None:
                return 404, {"status": "NOT_FOUND", "request_id": request_id, "message": "Ticker not found."}
            return 200, {"status": "OK", "request_id": request_id, "ticker": snap}
        wanted = params.get("tickers")
        tickers = wanted.split(",") if wanted else self._history.tickers(market)
        snaps = [s for t in tickers if (s := self._ticker_snapshot(market, t)) is not None]
        return 200, {"status": "OK", "request_id": request_id, "count": len(snaps), "tickers": snaps}

    def _ticker_snapshot(self, market: str, ticker: str) -> dict[str, Any] | None:
        trades = self._history.rows(market, ticker, "trades")
        quotes = self._history.rows(market, ticker, "quotes")
        minutes = self._history.rows(market, ticker, "minute")
        if not (trades or quotes or minutes):
            return None
        snap: dict[str, Any] = {"ticker": ticker, "todaysChange": 0, "todaysChangePerc": 0, "updated": 0}
        if trades:
            row = _tick_row(trades[-1])
            snap["lastTrade"] = {k: v for k, v in {
                "c": row.get("conditions"), "i": row.get("id"), "p": row.get("price"), "s": row.get("size"),
                "t": _row_ns(row), "x": row.get("exchange"), "q": row.get("sequence_number"), "z": row.get("tape"),
            }.items() if v is not None}  # fmt: skip
            snap["updated"] = _row_ns(row)
        if quotes and market == "stocks":
            row = _tick_row(quotes[-1])
            snap["lastQuote"] = {k: v for k, v in {
                "P": row.get("ask_price"), "S": row.get("ask_size"), "X": row.get("ask_exchange"),
                "p": row.get("bid_price"), "s": row.get("bid_size"), "x": row.get("bid_exchange"),
                "t": _row_ns(row), "q": row.get("sequence_number"), "z": row.get("tape"),
            }.items() if v is not None}  # fmt: skip
            snap["updated"] = max(snap["updated"], _row_ns(row))
        if minutes:
            bar = _agg_row(minutes[-1])
            if "av" in minutes[-1]:
                bar["av"] = minutes[-1]["av"]
            snap["min"] = bar
        return snap


class _BadRequest(Exception):
    pass


def _int(raw: str, name: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise _BadRequest(f"{name} must be an integer, got {raw!r}") from None


def _ms(raw: str, *, end: bool) -> int:
    """A ``from``/``to`` path segment: milliseconds, or a UTC date (its first or last millisecond)."""
    if raw.isdigit():
        return int(raw)
    try:
        day = datetime.datetime.strptime(raw, "%Y-%m-%d").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        raise _BadRequest(f"from/to must be milliseconds or YYYY-MM-DD, got {raw!r}") from None
    return int(day.timestamp() * 1000) + (86_400_000 - 1 if end else 0)


def _row_ns(row: dict[str, Any]) -> int:
    value = row.get("sip_timestamp", row.get("participant_timestamp"))
    return value if isinstance(value, int) else 0


def _ns(ms: Any) -> int | None:
    return ms * NS_PER_MS if isinstance(ms, int) and not isinstance(ms, bool) else None


def _tick_row(w: dict[str, Any]) -> dict[str, Any]:
    """A stream trade or quote (wire dict) → Massive's ``/v3/trades`` or ``/v3/quotes`` row."""
    ev, ns = w.get("ev"), _ns(w.get("t"))
    if ev == "T":
        row = {"conditions": w.get("c"), "exchange": w.get("x"), "id": w.get("i"), "participant_timestamp": ns,
               "price": w.get("p"), "sequence_number": w.get("q"), "sip_timestamp": ns, "size": w.get("s"),
               "tape": w.get("z"), "trf_id": w.get("trfi"), "trf_timestamp": _ns(w.get("trft")),
               "decimal_size": w.get("ds")}  # fmt: skip
    elif ev == "XT":
        row = {"conditions": w.get("c"), "exchange": w.get("x"), "id": w.get("i"), "participant_timestamp": ns,
               "price": w.get("p"), "size": w.get("s")}  # fmt: skip
    elif ev == "Q":
        row = {"ask_exchange": w.get("ax"), "ask_price": w.get("ap"), "ask_size": w.get("as"),
               "bid_exchange": w.get("bx"), "bid_price": w.get("bp"), "bid_size": w.get("bs"),
               "conditions": None if w.get("c") is None else [w["c"]], "indicators": w.get("i"),
               "participant_timestamp": ns, "sequence_number": w.get("q"), "sip_timestamp": ns, "tape": w.get("z"),
               "trf_timestamp": _ns(w.get("trft"))}  # fmt: skip
    else:  # "C", a forex quote
        row = {"ask_exchange": w.get("x"), "ask_price": w.get("a"), "bid_exchange": w.get("x"),
               "bid_price": w.get("b"), "participant_timestamp": ns}  # fmt: skip
    return {k: v for k, v in row.items() if v is not None}


def _agg_row(w: dict[str, Any]) -> dict[str, Any]:
    """A stream bar (wire dict) → Massive's ``/v2/aggs`` row (``t`` = the bar's start, ms)."""
    row = {"o": w.get("o"), "h": w.get("h"), "l": w.get("l"), "c": w.get("c"), "v": w.get("v"), "vw": w.get("vw"),
           "t": w.get("s"), "otc": w.get("otc")}  # fmt: skip
    return {k: v for k, v in row.items() if v is not None}


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer whose request threads are named, tracked daemons."""

    daemon_threads = True
    block_on_close = False  # close() joins them itself, bounded

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], mock: MockMassiveREST) -> None:
        self.mock = mock
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        mock = self.mock
        thread = threading.Thread(
            target=self.process_request_thread, args=(request, client_address),
            name=f"{THREAD_PREFIX}req-{mock.name}", daemon=True,
        )  # fmt: skip
        with mock._lock:
            mock._threads = [t for t in mock._threads if t.is_alive()]
            mock._threads.append(thread)
            mock._sockets.add(request)
        thread.start()

    def shutdown_request(self, request: Any) -> None:
        with self.mock._lock:
            self.mock._sockets.discard(request)
        super().shutdown_request(request)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "MockMassiveREST/1"
    timeout = 10.0  # a client that connects and sends nothing does not hold a thread forever

    def log_message(self, format: str, *args: Any) -> None:
        pass  # requests are recorded in MockMassiveREST.requests; the query may hold a key

    def do_GET(self) -> None:
        mock = self.server.mock
        with mock._lock:
            mock._in_flight += 1
        try:
            self._get(mock)
        finally:
            with mock._lock:
                mock._in_flight -= 1

    def _get(self, mock: MockMassiveREST) -> None:
        arrived = time.monotonic()
        split = urlsplit(self.path)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        key = query.pop("apiKey", None)
        auth = self.headers.get("Authorization", "")
        if key is None and auth.startswith("Bearer "):
            key = auth[len("Bearer ") :]
        if "cursor" in query:
            try:
                padded = query["cursor"] + "=" * (-len(query["cursor"]) % 4)
                query = dict(json.loads(base64.urlsafe_b64decode(padded)))
            except ValueError:
                query = {"_offset": "-1"}
        fault = mock._take_fault(split.path)
        headers: dict[str, str] = {}
        refused = mock._authorized(key)
        if refused is not None:
            status, body = 401, {"status": "ERROR", "request_id": "mock-auth", "error": refused}
        elif fault is not None and fault.kind == "status":
            status = fault.status
            body = {"status": "ERROR", "request_id": "mock-fault", "error": f"injected HTTP {fault.status}"}
            if fault.retry_after is not None:
                headers["Retry-After"] = str(fault.retry_after)
        else:
            base = f"http://{self.headers.get('Host') or mock.url.partition('//')[2]}"
            try:
                status, body = mock._answer(split.path, query, base)
            except Exception:  # a bug in the mock must not look like a hang to the client under test
                logger.exception("mock REST %s: answering %s failed", mock.name, split.path)
                status, body = 500, {"status": "ERROR", "request_id": "mock-bug", "error": "mock failure"}
        if fault is not None and fault.kind == "slow" and mock._closing.wait(fault.delay):
            self.close_connection = True
            self._note(split.path, query, 0, fault, arrived)
            return
        data = json.dumps(body, separators=(",", ":")).encode()
        if fault is not None and fault.kind == "truncate" and status == 200:
            data = data[: len(data) // 2]
        self._note(split.path, query, status, fault, arrived)  # before the answer: a test reading it has it
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        try:
            self.wfile.write(data)
        except OSError:
            pass  # the client went away; nothing to answer

    def _note(self, path: str, params: dict[str, str], status: int, fault: RestFault | None, arrived: float) -> None:
        record = RestRequest(path=path, params=params, status=status, fault=fault.kind if fault else None,
                             received_at=arrived)  # fmt: skip
        with self.server.mock._lock:
            self.server.mock._requests.append(record)
