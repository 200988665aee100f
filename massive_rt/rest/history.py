"""RestHistory: historical trades, quotes, bars and snapshots over REST, as stream events.

A thin typed layer over the official client's :class:`massive.RESTClient` (its urllib3 pool,
retries, ``next_url`` pagination and ``base`` URL override): no HTTP code of our own. What it
adds: the URL from ``rest_url=`` or ``MASSIVE_REST_URL``, bounded timeouts, a bounded
:class:`urllib3.util.Retry` policy that honours ``Retry-After`` on 429/503 (capped), a JSON
decoder that turns a cut page into :class:`~massive_rt.RestDataError` (the official client
logs it and ends the iteration silently), typed errors, an event budget per call, and the
conversion of every row to massive_rt's own event classes (:mod:`massive_rt.rest.convert`).

Threads: none of its own. Every call runs on the caller's thread and blocks for at most the
retries' backoff plus, per attempt, ``connect_timeout + read_timeout``; one instance may be
shared by any number of threads (urllib3's pool is thread-safe). :meth:`RestHistory.close`
from any thread makes calls in progress stop at the next row and later calls raise
:class:`~massive_rt.ClientClosedError`; a read already blocked ends within ``read_timeout``.

The API key is sent only in the ``Authorization`` header (never in a URL), and appears in no
log record, ``repr`` or error message.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import attrs
import urllib3
from massive import RESTClient
from massive.exceptions import BadResponse
from urllib3.util.retry import Retry

from .._transport import shown_url
from .._validate import require_int, require_number
from ..config import mask_secret
from ..enums import Market
from ..errors import ClientClosedError, ConfigurationError, RestDataError, RestError
from ..models import MarketEvent
from .convert import SnapshotState, agg_event, quote_event, rest_ticker, snapshot_state, trade_event

__all__ = ["DEFAULT_REST_URL", "RETRY_STATUSES", "FetchResult", "RestHistory"]

logger = logging.getLogger(__name__)

#: Massive's REST endpoint, used when neither ``rest_url=`` nor ``MASSIVE_REST_URL`` is set.
DEFAULT_REST_URL = "https://api.massive.com"
#: HTTP statuses retried (with backoff, or after ``Retry-After`` when the answer has one).
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_SNAPSHOT_BATCH = 250  # tickers per snapshot request: keeps the URL short
_GAVE_UP = re.compile(r"too many (\d{3}) error responses")


@attrs.frozen(kw_only=True)
class FetchResult:
    """The events of one window, oldest first.

    Attributes:
        events: the converted events (each ``origin == "rest"``).
        complete: False when ``max_events`` stopped the fetch before the end of the window
            (more rows exist after ``events[-1]``).
    """

    events: tuple[MarketEvent, ...]
    complete: bool = True


class _StrictJSON:
    """The ``custom_json`` handed to RESTClient: a page that is not JSON raises instead of ending quietly."""

    @staticmethod
    def loads(text: str | bytes) -> Any:
        try:
            return json.loads(text)
        except ValueError as exc:
            raise RestDataError(f"a REST page is not valid JSON ({exc})") from None


def _check_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        # shown_url: a malformed URL may still carry a key in its query or userinfo
        raise ConfigurationError(f"rest_url={shown_url(value)!r} must be an http(s) URL", field="rest_url")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ConfigurationError("rest_url must not carry credentials, a query or a fragment", field="rest_url")
    return value.rstrip("/")


def _check_window(start_ns: int, end_ns: int) -> None:
    for field, value in (("start_ns", start_ns), ("end_ns", end_ns)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigurationError(f"{field}={value!r} must be an integer >= 0 (nanoseconds)", field=field)
    if end_ns < start_ns:
        raise ConfigurationError(f"end_ns={end_ns} is before start_ns={start_ns}", field="end_ns")


class RestHistory:
    """Fetches trades, quotes, bars and snapshots from Massive's REST API as stream events.

    Args:
        api_key: the key; ``None`` reads ``MASSIVE_API_KEY``.
        rest_url: base URL (``http://127.0.0.1:8080`` for a mock); ``None`` reads
            ``MASSIVE_REST_URL``, else :data:`DEFAULT_REST_URL`.
        connect_timeout: seconds per connection attempt.
        read_timeout: seconds a response may stay silent before the attempt fails.
        retries: retries per request (429, 5xx, connection and read errors), then :class:`RestError`.
        backoff_factor: urllib3's exponential backoff between retries without ``Retry-After``.
        backoff_max: cap of that backoff, in seconds.
        retry_after_max: cap, in whole seconds, of a ``Retry-After`` the server asks for.
        page_size: rows asked per page (``limit``); Massive allows up to 50,000.
        max_events: default event budget of a window fetch.
        max_connections: HTTP connections kept per host (one per thread fetching at once).

    Raises:
        ConfigurationError: no key, a bad URL or a bad bound.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        rest_url: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 10.0,
        retries: int = 3,
        backoff_factor: float = 0.1,
        backoff_max: float = 5.0,
        retry_after_max: int = 30,
        page_size: int = 50_000,
        max_events: int = 100_000,
        max_connections: int = 4,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get("MASSIVE_API_KEY")
        if not key or not isinstance(key, str):
            raise ConfigurationError("no API key: pass api_key= or set MASSIVE_API_KEY", field="api_key")
        url = rest_url if rest_url is not None else os.environ.get("MASSIVE_REST_URL") or DEFAULT_REST_URL
        self.rest_url = _check_url(url)
        self.connect_timeout = require_number("connect_timeout", connect_timeout)
        self.read_timeout = require_number("read_timeout", read_timeout)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigurationError(f"retries={retries!r} must be an integer >= 0", field="retries")
        self.page_size = require_int("page_size", page_size)
        self.max_events = require_int("max_events", max_events)
        self.retries = retries
        #: The urllib3 policy every request uses (immutable).
        self.retry_policy = Retry(
            total=retries, connect=retries, read=retries, status=retries, other=0, redirect=0,
            status_forcelist=RETRY_STATUSES, allowed_methods=frozenset({"GET"}),
            backoff_factor=require_number("backoff_factor", backoff_factor),
            backoff_max=require_number("backoff_max", backoff_max),
            respect_retry_after_header=True,
            retry_after_max=int(require_number("retry_after_max", retry_after_max)),
            raise_on_status=True,
        )  # fmt: skip
        self._key = key
        self._closed = threading.Event()
        self._client = RESTClient(
            api_key=key, connect_timeout=self.connect_timeout, read_timeout=self.read_timeout, retries=retries,
            base=self.rest_url, pagination=True, custom_json=_StrictJSON,
            maxsize=require_int("max_connections", max_connections),
            connection_pool_kw={"retries": self.retry_policy},
        )  # fmt: skip

    def __repr__(self) -> str:
        state = "closed" if self._closed.is_set() else "open"
        return f"RestHistory(rest_url={self.rest_url!r}, api_key={mask_secret(self._key)}, {state})"

    def __enter__(self) -> RestHistory:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed.is_set()

    def close(self) -> None:
        """Stop calls in progress at their next row and refuse new ones; close idle connections.

        Idempotent, from any thread.
        """
        self._closed.set()
        self._client.client.clear()

    # -- windows ---------------------------------------------------------------------------------

    def trades(
        self, symbol: str, start_ns: int, end_ns: int, *, market: Market | str = Market.STOCKS,
        max_events: int | None = None,
    ) -> FetchResult:  # fmt: skip
        """Trades of ``symbol`` with exchange time in ``[start_ns, end_ns]`` (``/v3/trades/{ticker}``).

        Stocks and options give :class:`~massive_rt.EquityTrade`, crypto
        :class:`~massive_rt.CryptoTrade`; oldest first, at most ``max_events``.

        Raises:
            RestError: refused, or still failing after the retries; :class:`RestDataError` for a cut page.
            ClientClosedError: after :meth:`close`.
            ConfigurationError: a bad window, budget or market.
        """
        value = Market.coerce(market, "market")
        if value not in (Market.STOCKS, Market.OPTIONS, Market.CRYPTO):
            raise ConfigurationError(f"market={value.value!r} has no REST trades", field="market")
        ticker = rest_ticker(symbol, value)
        return self._window(
            f"/v3/trades/{ticker}", start_ns, end_ns, max_events,
            lambda limit: self._client.list_trades(
                ticker, timestamp_gte=start_ns, timestamp_lte=end_ns, sort="timestamp", order="asc", limit=limit
            ),
            lambda row: trade_event(row, symbol, value),
        )  # fmt: skip

    def quotes(
        self, symbol: str, start_ns: int, end_ns: int, *, market: Market | str = Market.STOCKS,
        max_events: int | None = None,
    ) -> FetchResult:  # fmt: skip
        """Quotes of ``symbol`` with exchange time in ``[start_ns, end_ns]`` (``/v3/quotes/{ticker}``).

        Stocks and options give :class:`~massive_rt.EquityQuote`, forex
        :class:`~massive_rt.ForexQuote`; oldest first, at most ``max_events``. Raises as :meth:`trades`.
        """
        value = Market.coerce(market, "market")
        if value not in (Market.STOCKS, Market.OPTIONS, Market.FOREX):
            raise ConfigurationError(f"market={value.value!r} has no REST quotes", field="market")
        ticker = rest_ticker(symbol, value)
        return self._window(
            f"/v3/quotes/{ticker}", start_ns, end_ns, max_events,
            lambda limit: self._client.list_quotes(
                ticker, timestamp_gte=start_ns, timestamp_lte=end_ns, sort="timestamp", order="asc", limit=limit
            ),
            lambda row: quote_event(row, symbol, value),
        )  # fmt: skip

    def aggs(
        self, symbol: str, start_ns: int, end_ns: int, *, timespan: str = "minute",
        market: Market | str = Market.STOCKS, max_events: int | None = None,
    ) -> FetchResult:  # fmt: skip
        """Bars of ``symbol`` (``timespan`` ``"minute"`` or ``"second"``) that start in
        ``[start_ns, end_ns]`` (``/v2/aggs/ticker/{ticker}/range/1/{timespan}/{from}/{to}``, in ms).

        Stocks, options and indices give :class:`~massive_rt.EquityAgg` (``AM``/``A``), crypto and
        forex :class:`~massive_rt.CurrencyAgg`. Raises as :meth:`trades`.
        """
        value = Market.coerce(market, "market")
        if timespan not in ("minute", "second"):
            raise ConfigurationError(f"timespan={timespan!r} must be 'minute' or 'second'", field="timespan")
        if value in (Market.FUTURES, Market.FUTURES_CBOT, Market.FUTURES_CME, Market.FUTURES_COMEX,
                     Market.FUTURES_NYMEX):  # fmt: skip
            raise ConfigurationError(f"market={value.value!r} has no REST bars here", field="market")
        ticker = rest_ticker(symbol, value)
        _check_window(start_ns, end_ns)
        start_ms, end_ms = -(-start_ns // 1_000_000), end_ns // 1_000_000  # bars starting inside the window
        return self._window(
            f"/v2/aggs/ticker/{ticker}/range/1/{timespan}", start_ns, end_ns, max_events,
            lambda limit: self._client.list_aggs(
                ticker, 1, timespan, start_ms, end_ms, adjusted=True, sort="asc", limit=limit
            ),
            lambda row: agg_event(row, symbol, timespan, value),
        )  # fmt: skip

    # -- snapshots -------------------------------------------------------------------------------

    def snapshot(self, symbol: str, *, market: Market | str = Market.STOCKS) -> SnapshotState | None:
        """The current state of one ticker (``/v2/snapshot/locale/.../tickers/{ticker}``); ``None``
        when Massive has no snapshot for it. Stocks, crypto and forex (forex: the bar only).

        Raises as :meth:`trades`.
        """
        value = self._snapshot_market(market)
        ticker = rest_ticker(symbol, value)
        path = f"/v2/snapshot/locale/{'us' if value is Market.STOCKS else 'global'}/markets/{value.value}/tickers"
        try:
            found = self._guarded(path + "/" + ticker, lambda: self._client.get_snapshot_ticker(value.value, ticker))
        except RestError as exc:
            if exc.status == "NOT_FOUND":
                return None
            raise
        if found is None or isinstance(found, list):  # the official client answers [] for a body without "ticker"
            return None
        return snapshot_state(found, symbol, value)

    def snapshot_all(
        self, symbols: Sequence[str] | None = None, *, market: Market | str = Market.STOCKS
    ) -> list[SnapshotState]:
        """The state of ``symbols`` (in requests of 250 tickers), or of every ticker of the market
        when ``symbols`` is ``None`` (``/v2/snapshot/locale/.../tickers``, one response: Massive
        does not paginate it). Tickers without a snapshot are left out.

        Raises as :meth:`trades`.
        """
        value = self._snapshot_market(market)
        path = f"/v2/snapshot/locale/{'us' if value is Market.STOCKS else 'global'}/markets/{value.value}/tickers"
        by_ticker: dict[str, str] = {}
        batches: list[list[str] | None] = [None]
        if symbols is not None:
            by_ticker = {rest_ticker(s, value): s for s in symbols}
            tickers = list(by_ticker)
            batches = [tickers[i : i + _SNAPSHOT_BATCH] for i in range(0, len(tickers), _SNAPSHOT_BATCH)]
        states: list[SnapshotState] = []
        for batch in batches:
            found = self._snapshot_batch(path, value, batch)
            for snap in found:
                self._check_open()
                if snap.ticker is None:
                    continue
                states.append(snapshot_state(snap, by_ticker.get(snap.ticker, _stream_symbol(snap.ticker)), value))
        return states

    # -- internals -------------------------------------------------------------------------------

    @staticmethod
    def _snapshot_market(market: Market | str) -> Market:
        value = Market.coerce(market, "market")
        if value not in (Market.STOCKS, Market.CRYPTO, Market.FOREX):
            raise ConfigurationError(f"market={value.value!r} has no v2 snapshot", field="market")
        return value

    def _snapshot_batch(self, path: str, market: Market, tickers: list[str] | None) -> list[Any]:
        found = self._guarded(path, lambda: self._client.get_snapshot_all(market.value, tickers=tickers))
        return list(found) if isinstance(found, list) else []

    def _check_open(self) -> None:
        if self._closed.is_set():
            raise ClientClosedError("RestHistory is closed")

    def _window(
        self,
        path: str,
        start_ns: int,
        end_ns: int,
        max_events: int | None,
        rows: Callable[[int], Iterable[Any]],
        convert: Callable[[Any], MarketEvent],
    ) -> FetchResult:
        _check_window(start_ns, end_ns)
        budget = self.max_events if max_events is None else require_int("max_events", max_events)
        # One row past the budget tells "cut" from "exactly as many as allowed".
        limit = min(self.page_size, budget + 1)

        def collect() -> FetchResult:
            events: list[MarketEvent] = []
            iterator: Iterator[Any] = iter(rows(limit))
            for row in iterator:
                self._check_open()
                if len(events) == budget:
                    return FetchResult(events=tuple(events), complete=False)
                try:
                    events.append(convert(row))
                except (AttributeError, TypeError, ValueError, KeyError) as exc:  # a row missing or mistyping fields
                    raise RestDataError(f"a REST row from {path} could not be converted "
                                        f"({type(exc).__name__}: {exc})") from None  # fmt: skip
            return FetchResult(events=tuple(events))

        result: FetchResult = self._guarded(path, collect)
        cut = "" if result.complete else " (budget hit)"
        logger.debug("rest: %d event(s) from %s%s", len(result.events), path, cut)
        return result

    def _guarded(self, path: str, call: Callable[[], Any]) -> Any:
        """Run ``call`` (which does the HTTP work), turning every failure into a typed error."""
        self._check_open()
        try:
            return call()
        except RestDataError as exc:
            raise RestDataError(f"GET {path}: {self._scrub(exc.message)}", path=path) from None
        except BadResponse as exc:
            raise self._refused(path, str(exc)) from None
        except urllib3.exceptions.MaxRetryError as exc:
            if self._closed.is_set():
                raise ClientClosedError("RestHistory is closed") from None
            reason = self._scrub(str(exc.reason))
            found = _GAVE_UP.search(reason)
            raise RestError(
                f"GET {path}: gave up after {self.retries} retries: {reason}",
                path=path, status_code=int(found.group(1)) if found else None,
            ) from None  # fmt: skip
        except urllib3.exceptions.HTTPError as exc:
            if self._closed.is_set():
                raise ClientClosedError("RestHistory is closed") from None
            raise RestError(f"GET {path}: {type(exc).__name__}: {self._scrub(str(exc))}", path=path) from None

    def _refused(self, path: str, body: str) -> RestError:
        status: str | None = None
        detail = body[:200]
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        if isinstance(answer, dict):
            status = str(answer.get("status")) if answer.get("status") is not None else None
            detail = str(answer.get("error") or answer.get("message") or detail)[:200]
        return RestError(f"GET {path} refused: {status or 'error'}: {self._scrub(detail)}", path=path, status=status)

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key in text else text


def _stream_symbol(ticker: str) -> str:
    """``"X:BTCUSD"`` → ``"BTC-USD"``, ``"C:EURUSD"`` → ``"EUR/USD"`` (3-letter bases); others unchanged."""
    prefix, colon, rest = ticker.partition(":")
    if colon and prefix in ("X", "C") and len(rest) > 3:
        return f"{rest[:3]}{'-' if prefix == 'X' else '/'}{rest[3:]}"
    return ticker
