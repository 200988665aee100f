"""A Flask app whose every gunicorn worker serves fresh prices.

    GET /price/<symbol>  200 {"symbol", "price", "size", "timestamp", "age_s", "pid"}
                         503 {"error", "pid"} while this worker's feed is not healthy
    GET /health          200 {"healthy": true, "pid", "stats"}   (stats: adapter.stats().to_dict())
                         503 {"healthy": false, "error", "pid", ...}

Each worker process owns its market data: one MassiveWebSocketClient and a RealTimeDataAdapter
whose callbacks keep the last trade of each symbol in a dict. gunicorn.conf.py creates
it in the ``post_fork`` hook (:func:`start_feed`) and stops it in ``worker_exit``
(:func:`stop_feed`). Never at import time: with ``--preload`` the import runs in the gunicorn
master, and a client started there is copied into every worker without its threads; massive_rt
then reports it as unhealthy (or raises ``ClientClosedError``), which this app answers with a 503
naming the fix instead of stale prices or a stack trace.
"""

from __future__ import annotations

import os
import time
from typing import Any

from flask import Flask, Response, jsonify

from massive_rt import EquityTrade, MassiveRTError, MassiveWebSocketClient, RealTimeDataAdapter

SYMBOLS = tuple(s.strip().upper() for s in os.environ.get("SYMBOLS", "AAPL,MSFT,NVDA").split(",") if s.strip())


class PriceFeed:
    """One worker's market data: a client, and an adapter keeping the last trade per symbol.

    The adapter's callbacks, one at a time, are the only writer of :attr:`last`; request handlers
    only read it (a dict lookup is atomic), so no lock is needed.
    """

    def __init__(self, api_key: str | None, url: str | None, symbols: tuple[str, ...] = SYMBOLS, **options: Any):
        self.pid = os.getpid()
        self.client = MassiveWebSocketClient(
            api_key, url=url, subscriptions=[f"T.{s}" for s in symbols], name=f"worker-{self.pid}", **options
        )
        self.adapter = RealTimeDataAdapter(self.client)
        self.adapter.on(EquityTrade, self._on_trade)
        self.last: dict[str, EquityTrade] = {}

    def _on_trade(self, trade: EquityTrade) -> None:  # the adapter's reader or dispatcher thread
        if trade.symbol is not None and trade.price is not None:
            self.last[trade.symbol] = trade

    def start(self) -> PriceFeed:
        self.adapter.start()  # connects in the background: a worker boots at once, /health says when it streams
        return self

    def stop(self) -> None:
        self.adapter.stop()  # stops the client too; bounded


_feed: PriceFeed | None = None  # this process's feed


def start_feed(api_key: str | None, url: str | None, **options: Any) -> PriceFeed:
    """Create and start this process's feed (gunicorn: in ``post_fork``). Any other option goes to
    the client (``on_limit="retry"`` ...)."""
    global _feed
    if _feed is not None and _feed.pid == os.getpid():
        return _feed
    # A feed made by the parent process (imported with --preload) is a dead copy: leave it alone.
    _feed = PriceFeed(api_key, url, **options).start()
    return _feed


def stop_feed() -> None:
    """Stop this process's feed (gunicorn: in ``worker_exit``). Idempotent."""
    global _feed
    feed, _feed = _feed, None
    if feed is not None and feed.pid == os.getpid():
        feed.stop()


app = Flask(__name__)


def _unavailable(error: str | None, **extra: Any) -> tuple[Response, int]:
    return jsonify(error=error or "unavailable", pid=os.getpid(), **extra), 503


def _current_feed() -> PriceFeed:
    if _feed is None:
        raise _NoFeed
    return _feed


class _NoFeed(Exception):
    pass


@app.errorhandler(_NoFeed)
def no_feed(_: _NoFeed) -> tuple[Response, int]:
    return _unavailable("no market data client in this process: start_feed() belongs in gunicorn's post_fork hook "
                        "(see gunicorn.conf.py)", healthy=False)  # fmt: skip


@app.errorhandler(MassiveRTError)
def market_data_error(exc: MassiveRTError) -> tuple[Response, int]:
    # e.g. ClientClosedError in a worker that inherited a client from the gunicorn master:
    # its message names the fix. A 503 with the reason, not a 500 with a stack trace.
    return _unavailable(str(exc), healthy=False)


@app.get("/health")
def health() -> tuple[Response, int]:
    stats = _current_feed().adapter.stats()
    if stats.healthy:
        return jsonify(healthy=True, pid=os.getpid(), stats=stats.to_dict()), 200
    # The first cause: the adapter's end, or the connection's state, silence or fork.
    return _unavailable(stats.health_reason, healthy=False, stats=stats.to_dict())


@app.get("/price/<symbol>")
def price(symbol: str) -> tuple[Response, int]:
    feed = _current_feed()
    symbol = symbol.upper()
    if symbol not in SYMBOLS:
        return jsonify(error=f"{symbol} is not subscribed (SYMBOLS: {', '.join(SYMBOLS)})", pid=os.getpid()), 404
    stats = feed.client.stats()  # cheap: a snapshot of counters
    if not stats.healthy:
        return _unavailable(stats.health_reason)
    trade = feed.last.get(symbol)
    if trade is None:
        return _unavailable(f"no trade of {symbol} received yet by this worker")
    return jsonify(
        symbol=symbol,
        price=trade.price,
        size=trade.size,
        timestamp=trade.timestamp,
        age_s=round(time.time() - trade.received_at_ns / 1e9, 3),  # since this worker received it
        pid=os.getpid(),
    ), 200
