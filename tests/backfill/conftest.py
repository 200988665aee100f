"""Fixtures of the backfill suites: a steady publisher of sequence-numbered trades, and an adapter
with a backfill on the mock servers (``massive_server`` + ``massive_rest``) that records what its
callbacks see."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import attrs
import pytest

import massive_rt as mrt
from massive_rt.rest import RestHistory
from massive_rt.testing import MockMassiveREST, MockMassiveServer
from tests.conftest import wait_until
from tests.support import KEY

SYMBOLS = ("AAPL", "MSFT", "NVDA", "AMZN", "TSLA")


def trade(symbol: str, t_ms: int, q: int) -> dict[str, Any]:
    return {"ev": "T", "sym": symbol, "x": 4, "i": str(q), "z": 3, "p": 100.0 + q % 7, "s": 1, "t": t_ms, "q": q}


class Publisher:
    """Publishes one trade per symbol per tick at a steady pace (``q`` counts per symbol from 0),
    on a thread of the test's own, until :meth:`stop`."""

    def __init__(self, server: MockMassiveServer, symbols: Sequence[str] = SYMBOLS, pause: float = 0.001) -> None:
        self.server = server
        self.symbols = tuple(symbols)
        self.pause = pause
        self.published = dict.fromkeys(self.symbols, 0)
        self.t0 = time.time_ns() // 1_000_000
        self._tick = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-publisher", daemon=True)

    def start(self) -> Publisher:
        self._thread.start()
        return self

    def publish_once(self) -> None:
        batch = [trade(s, self.t0 + self._tick, self.published[s]) for s in self.symbols]
        self.server.publish(batch, batch=len(batch))
        self._tick += 1
        for s in self.symbols:
            self.published[s] += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            self.publish_once()
            self._stop.wait(self.pause)  # pacing a producer, not synchronisation

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        assert not self._thread.is_alive()


@attrs.define
class Seen:
    """What an adapter's callbacks saw, in order (appended on the callback thread)."""

    trades: list[mrt.EquityTrade] = attrs.Factory(list)
    statuses: list[mrt.StatusMessage] = attrs.Factory(list)
    order: list[mrt.Event] = attrs.Factory(list)

    def of(self, symbol: str) -> list[mrt.EquityTrade]:
        return [t for t in list(self.trades) if t.symbol == symbol]

    def status(self, code: str) -> list[mrt.StatusMessage]:
        return [s for s in list(self.statuses) if s.status == code]

    def wait_status(self, code: str, count: int = 1, timeout: float = 15.0) -> list[mrt.StatusMessage]:
        assert wait_until(lambda: len(self.status(code)) >= count, timeout), (
            f"{code} x{count} not seen; statuses: {[(s.status, s.message) for s in list(self.statuses)]}"
        )
        return self.status(code)


def history(rest: MockMassiveREST, **kwargs: Any) -> RestHistory:
    options: dict[str, Any] = {"rest_url": rest.url, "backoff_factor": 0.0, "read_timeout": 5.0} | kwargs
    return RestHistory(KEY, **options)


@pytest.fixture
def seen() -> Seen:
    return Seen()


@pytest.fixture
def publisher(massive_server: MockMassiveServer) -> Iterator[Publisher]:
    made = Publisher(massive_server)
    yield made
    made.stop() if made._thread.is_alive() else None


@pytest.fixture
def backfilled(
    make_client: Callable[..., mrt.MassiveWebSocketClient],
    make_adapter: Callable[..., mrt.RealTimeDataAdapter],
    massive_rest: MockMassiveREST,
    seen: Seen,
) -> Callable[..., tuple[mrt.RealTimeDataAdapter, mrt.Backfill]]:
    """``make(channels, dispatch=..., **backfill_options)``: a started adapter with a backfill on the mock servers."""

    def make(channels: Sequence[str], dispatch: str = "thread", **options: Any) -> tuple[mrt.RealTimeDataAdapter,
                                                                                           mrt.Backfill]:  # fmt: skip
        rest_options = options.pop("rest", {})
        backfill = mrt.Backfill(history(massive_rest, **rest_options), **options)
        client = make_client(subscriptions=tuple(channels), ping_interval=None)
        adapter = make_adapter(client, backfill=backfill, dispatch=dispatch)
        adapter.on(mrt.EquityTrade, seen.trades.append)
        adapter.on_status(seen.statuses.append)
        adapter.on("*", seen.order.append)
        adapter.on_status(seen.order.append)
        adapter.start()
        adapter.wait_ready(5)
        return adapter, backfill

    return make
