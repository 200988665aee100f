"""Helpers of the compat suite: wire payloads per market, runners for ``run()`` in a thread (ours and
the official client's), and the official parse of the same payloads for comparison."""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from massive_rt.compat import WebSocketClient
from massive_rt.testing import MockMassiveServer

KEY = "compat-key"
OFFICIAL_KEY = "official-key"
TIMEOUT = 10.0
BATCH = 2  # events per published frame: every example gets several frames

# One list of wire objects per market, covering every ev the official client models there. Some
# objects lack optional keys (→ None) or carry keys no model reads (ignored); values are whatever
# JSON gives (ints where a float is usual, strings where an int is usual): nothing is coerced.
PAYLOADS: dict[str, list[dict[str, Any]]] = {
    "stocks": [
        {"ev": "T", "sym": "AAPL", "x": 11, "i": "52983525029461", "z": 3, "p": 189.52, "s": 20, "c": [14, 41],
         "t": 1700000000123, "q": 1001, "trfi": 201, "trft": 1700000000100},
        {"ev": "T", "sym": "BRK.B", "x": 4, "p": 360, "s": 1, "ds": "0.25", "t": 1700000000200, "q": 1002},
        {"ev": "Q", "sym": "AAPL", "bx": 12, "bp": 189.5, "bs": 3, "ax": 11, "ap": 189.53, "as": 2, "c": 1,
         "i": [92], "t": 1700000000300, "z": 3, "q": 1003},
        {"ev": "A", "sym": "AAPL", "v": 310, "av": 51234567, "op": 188.0, "vw": 189.4, "o": 189.4, "c": 189.52,
         "h": 189.6, "l": 189.3, "a": 188.9, "z": 45, "s": 1700000000000, "e": 1700000001000},
        {"ev": "AM", "sym": "GME", "v": 12000, "av": 900000, "o": 20, "c": 20.5, "h": 21, "l": 19.9, "s": 1700000000000,
         "e": 1700000060000, "otc": False, "dv": "12000.5", "dav": "900000.5"},
        {"ev": "LULD", "T": "AAPL", "h": 199.0, "l": 180.0, "i": [17], "z": 3, "t": 1700000000400, "q": 1004},
        {"ev": "NOI", "T": "AAPL", "t": 1700000000500, "at": 1600, "a": "C", "i": 7, "x": 10, "o": 5000, "p": 120000,
         "b": 189.51},
        {"ev": "FMV", "fmv": 189.515, "sym": "AAPL", "t": 1700000000600},
        {"ev": "LV", "val": 189.52, "sym": "AAPL", "t": 1700000000700, "extra": "ignored"},
    ],
    "options": [
        {"ev": "T", "sym": "O:SPY251219C00650000", "x": 309, "p": 4.35, "s": 2, "c": [209], "t": 1700000001000,
         "q": 2001},
        {"ev": "Q", "sym": "O:SPY251219C00650000", "bx": 300, "ax": 313, "bp": 4.3, "ap": 4.4, "bs": 50, "as": 75,
         "t": 1700000001100, "q": 2002},
        {"ev": "A", "sym": "O:SPY251219C00650000", "v": 4, "av": 1200, "op": 4.0, "vw": 4.33, "o": 4.3, "c": 4.35,
         "h": 4.36, "l": 4.3, "a": 4.2, "z": 2, "s": 1700000001000, "e": 1700000002000},
        {"ev": "AM", "sym": "O:SPY251219C00650000", "v": 40, "o": 4.1, "c": 4.35, "s": 1700000000000,
         "e": 1700000060000},
        {"ev": "FMV", "fmv": 4.351, "sym": "O:SPY251219C00650000", "t": 1700000001200},
        {"ev": "LV", "val": 4.35, "sym": "O:SPY251219C00650000", "t": 1700000001300},
    ],
    "forex": [
        {"ev": "C", "p": "USD/CAD", "x": 48, "a": 1.37012, "b": 1.37005, "t": 1700000002000},
        {"ev": "CA", "pair": "USD/CAD", "o": 1.37, "c": 1.3701, "h": 1.3702, "l": 1.3699, "v": 310, "vw": 1.37005,
         "s": 1700000000000, "e": 1700000060000, "z": 3},
        {"ev": "CAS", "pair": "USD/EUR", "o": 0.9121, "c": 0.9122, "h": 0.9123, "l": 0.912, "v": 7,
         "s": 1700000002000, "e": 1700000003000},
        {"ev": "FMV", "fmv": 1.370085, "sym": "C:USDCAD", "t": 1700000002100},
        {"ev": "AM", "sym": "C:USDCAD", "o": 1.37, "c": 1.3701, "h": 1.3702, "l": 1.3699, "v": 310,
         "s": 1700000000000, "e": 1700000060000},
        {"ev": "LV", "val": 1.3701, "sym": "C:USDCAD", "t": 1700000002200},
    ],
    "crypto": [
        {"ev": "XT", "pair": "BTC-USD", "x": 1, "i": "761", "p": 37000.5, "s": 0.0125, "c": [1], "t": 1700000003000,
         "r": 1700000003010},
        {"ev": "XQ", "pair": "BTC-USD", "bp": 37000.1, "bs": 0.5, "ap": 37000.9, "as": 1.25, "t": 1700000003100,
         "x": 1, "r": 1700000003110},
        {"ev": "XL2", "pair": "BTC-USD", "b": [[37000.1, 0.5], [37000.0, 2]], "a": [[37000.9, 1.25]],
         "t": 1700000003200, "x": 1, "r": 1700000003210},
        {"ev": "XA", "pair": "BTC-USD", "v": 12.5, "vw": 37001.2, "z": 9, "o": 36990, "c": 37000.5, "h": 37010,
         "l": 36980, "s": 1700000000000, "e": 1700000060000},
        {"ev": "XAS", "pair": "ETH-USD", "v": 1.5, "o": 2000.1, "c": 2000.3, "h": 2000.4, "l": 2000.0,
         "s": 1700000003000, "e": 1700000004000},
        {"ev": "FMV", "fmv": 37000.7, "sym": "X:BTCUSD", "t": 1700000003300},
        {"ev": "AM", "sym": "X:BTCUSD", "v": 12.5, "o": 36990, "c": 37000.5, "s": 1700000000000, "e": 1700000060000},
        {"ev": "LV", "val": 37000.5, "sym": "X:BTCUSD", "t": 1700000003400},
    ],
    "indices": [
        {"ev": "A", "sym": "I:SPX", "op": 4500.1, "o": 4510.2, "c": 4511.0, "h": 4511.3, "l": 4510.0,
         "s": 1700000004000, "e": 1700000005000},
        {"ev": "AM", "sym": "I:DJI", "op": 35000.0, "o": 35010.5, "c": 35020.25, "h": 35025.0, "l": 35005.0,
         "s": 1700000000000, "e": 1700000060000},
        {"ev": "V", "val": 4511.02, "T": "I:SPX", "t": 1700000004100},
    ],
    "futures/cme": [
        {"ev": "T", "sym": "ESZ5", "p": 5900.25, "s": 3, "t": 1700000005000, "q": 5001},
        {"ev": "Q", "sym": "ESZ5", "bp": 5900.0, "bs": 10, "bt": 1700000004990, "ap": 5900.25, "as": 4,
         "at": 1700000004995, "t": 1700000005000},
        {"ev": "A", "sym": "ESZ5", "v": 15, "dv": 88503.75, "o": 5900.0, "c": 5900.25, "h": 5900.5, "l": 5899.75,
         "n": 6, "s": 1700000005000, "e": 1700000006000},
        {"ev": "AM", "sym": "ESZ5", "v": 300, "o": 5898.0, "c": 5900.25, "n": 80, "s": 1700000000000,
         "e": 1700000060000},
    ],
}  # fmt: skip


def events(market: str, *evs: str) -> list[dict[str, Any]]:
    """The payloads of ``market`` whose ``ev`` is one of ``evs``."""
    return [p for p in PAYLOADS[market] if p["ev"] in evs]


def frames(payloads: Sequence[dict[str, Any]], batch: int = BATCH) -> list[list[dict[str, Any]]]:
    """How ``MockMassiveServer.publish(payloads, batch=batch)`` splits them into frames."""
    return [list(payloads[i : i + batch]) for i in range(0, len(payloads), batch)]


def official_models(market: str, objects: Sequence[dict[str, Any]]) -> list[Any]:
    """The official client's models for one decoded frame (``massive.websocket.models.parse``)."""
    models = pytest.importorskip("massive.websocket.models")
    return list(models.parse(list(objects), logging.getLogger("tests.compat.official"), models.Market(market)))


def view(model: Any) -> tuple[str, dict[str, Any]]:
    """A model as (class name, fields in order): what must match between ours and the official one."""
    return type(model).__name__, dataclasses.asdict(model)


def views(batch: Sequence[Any]) -> list[tuple[str, dict[str, Any]]]:
    return [view(m) for m in batch]


def expected_batches(market: str, payloads: Sequence[dict[str, Any]], batch: int = BATCH) -> list[list[Any]]:
    """The official handler calls for ``payloads`` published ``batch`` per frame, as views."""
    out = [views(official_models(market, frame)) for frame in frames(payloads, batch)]
    return [b for b in out if b]


def wait_subscribed(server: MockMassiveServer, channels: Sequence[str], market: str, key: str = KEY) -> None:
    """Wait until an open connection authenticated with ``key`` has every channel subscribed."""

    def ready() -> bool:
        return any(
            c.key == key and not c.closed and c.market == market and set(channels) <= c.subscriptions
            for c in server.connections
        )

    assert server.wait_for(ready, TIMEOUT), f"{channels} not subscribed on {market} with {key}"


def publish_when_subscribed(
    server: MockMassiveServer, channels: Sequence[str], market: str, payloads: Sequence[dict[str, Any]]
) -> threading.Thread:
    """A named daemon thread that publishes ``payloads`` (``BATCH`` per frame) once ``channels`` are
    subscribed: for tests whose own thread is blocked in ``run()``."""

    def publish() -> None:
        wait_subscribed(server, channels, market)
        server.publish(payloads, market=market, batch=BATCH)

    thread = threading.Thread(target=publish, name="compat-test-publisher", daemon=True)
    thread.start()
    return thread


def close_after(client: WebSocketClient, seconds: float) -> threading.Timer:
    """A watchdog that closes ``client`` if a test's ``run()`` is still blocked after ``seconds``,
    so a failure is an assertion rather than a hung test. ``fired()`` tells whether it did."""
    fired = threading.Event()

    def close() -> None:
        fired.set()
        client.close()

    timer = threading.Timer(seconds, close)
    timer.name = "compat-test-watchdog"
    timer.daemon = True
    timer.fired = fired  # type: ignore[attr-defined]
    timer.start()
    return timer


class Running:
    """``client.run(handler)`` in a named daemon thread; each batch goes on :attr:`batches`.

    ``on_batch(batch)`` (optional) runs inside the handler, on the run thread. Use it as a context
    manager: leaving closes the client and joins the thread.
    """

    def __init__(self, client: WebSocketClient, on_batch: Callable[[Any], None] | None = None) -> None:
        self.client = client
        self.on_batch = on_batch
        self.batches: queue.Queue[Any] = queue.Queue()
        self.calls = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="compat-test-run", daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            self.client.run(self._handle)
        except BaseException as exc:
            self.error = exc

    def _handle(self, batch: Any) -> None:
        self.calls += 1
        self.batches.put(batch)
        if self.on_batch is not None:
            self.on_batch(batch)

    def take(self, n: int, timeout: float = TIMEOUT) -> list[Any]:
        """The next ``n`` batches."""
        return [self.batches.get(timeout=timeout) for _ in range(n)]

    def join(self, timeout: float = TIMEOUT) -> None:
        """Wait for ``run()`` to return (it must)."""
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "run() did not return"

    def stop(self, timeout: float = TIMEOUT) -> None:
        """Close the client until ``run()`` returns (a close before ``run()`` connected is a no-op,
        so it is repeated), then join."""
        deadline = time.monotonic() + timeout
        while self.thread.is_alive() and time.monotonic() < deadline:
            if self.client.running:
                self.client.close()
            self.thread.join(0.05)
        self.join(0)


class OfficialRunning:
    """The official client's ``run(handler)`` in a named daemon thread, recording its batches.

    ``run`` returns when the server closes the connection cleanly (``end()``).
    """

    def __init__(self, server: MockMassiveServer, market: str, channels: Sequence[str], raw: bool = False) -> None:
        massive = pytest.importorskip("massive")
        self.server = server
        self.client = massive.WebSocketClient(
            api_key=OFFICIAL_KEY, feed=f"127.0.0.1:{server.port}", market=market, secure=False,
            subscriptions=list(channels), max_reconnects=0, raw=raw,
        )  # fmt: skip
        self.batches: queue.Queue[Any] = queue.Queue()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="compat-test-official", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.client.run(self.batches.put, proxy=None)
        except BaseException as exc:
            self.error = exc

    def take(self, n: int, timeout: float = TIMEOUT) -> list[Any]:
        return [self.batches.get(timeout=timeout) for _ in range(n)]

    def end(self) -> None:
        """Close its connection cleanly from the server (1000): the official ``run`` then returns."""
        for conn in self.server.active_connections():
            if conn.key == OFFICIAL_KEY:
                self.server.close_connection(conn, 1000)
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive(), "the official run() did not return"


def drain(q: queue.Queue[Any]) -> Iterator[Any]:
    """What is on ``q`` now."""
    while True:
        try:
            yield q.get_nowait()
        except queue.Empty:
            return
