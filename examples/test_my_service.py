"""Testing your own service against a real local server, with the ``massive_server`` fixture.

    pip install 'massive-rt[testing]' pytest     # the extra brings websockets, not pytest
    pytest examples/test_my_service.py
    # from a checkout of massive_rt, whose pytest settings use pytest-timeout: make install first

Installing massive_rt registers a pytest plugin whose ``massive_server`` fixture is a started
MockMassiveServer (a real WebSocket server on 127.0.0.1 speaking Massive's protocol) that accepts
the key "test-key". Point your service at ``massive_server.url("stocks")``, publish the events
your test needs, and inject faults (drop_all, kick, stall, send_status ...) to check recovery.
No key, no network, no sleeps: every wait below is on a condition with a timeout.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from massive_rt import EquityTrade, MassiveWebSocketClient, RealTimeDataAdapter, ReconnectPolicy
from massive_rt.testing import MockMassiveServer


class PriceBoard:
    """The "service" under test: the last trade price of a few symbols."""

    def __init__(self, api_key: str, url: str, symbols: list[str]) -> None:
        # A short reconnect delay keeps the recovery test fast; production code keeps the default.
        self.client = MassiveWebSocketClient(
            api_key,
            url=url,
            subscriptions=[f"T.{symbol}" for symbol in symbols],
            reconnect=ReconnectPolicy(initial_delay=0.05, max_delay=0.2),
        )
        self.adapter = RealTimeDataAdapter(self.client)
        self.adapter.on(EquityTrade, self._on_trade)
        self._prices: dict[str, float] = {}
        self._changed = threading.Condition()

    def start(self) -> PriceBoard:
        self.adapter.start()
        self.client.wait_ready(timeout=5)
        return self

    def stop(self) -> None:
        self.adapter.stop()

    def _on_trade(self, trade: EquityTrade) -> None:
        with self._changed:
            if trade.symbol is not None and trade.price is not None:
                self._prices[trade.symbol] = trade.price
            self._changed.notify_all()

    def price(self, symbol: str) -> float | None:
        with self._changed:
            return self._prices.get(symbol)

    def wait_for_price(self, symbol: str, price: float, timeout: float = 5.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._prices.get(symbol) == price, timeout)


def trade(symbol: str, price: float) -> dict[str, object]:
    """A trade as Massive sends it on the wire."""
    return {"ev": "T", "sym": symbol, "p": price, "s": 100, "x": 4, "t": 1_736_173_800_000}


@pytest.fixture
def board(massive_server: MockMassiveServer) -> Iterator[PriceBoard]:
    service = PriceBoard("test-key", massive_server.url("stocks"), ["AAPL", "MSFT"]).start()
    yield service
    service.stop()


def test_board_keeps_the_last_trade_price(massive_server: MockMassiveServer, board: PriceBoard) -> None:
    massive_server.publish([trade("AAPL", 190.10), trade("MSFT", 415.00), trade("AAPL", 190.25)])

    assert board.wait_for_price("AAPL", 190.25)
    assert board.wait_for_price("MSFT", 415.00)


def test_board_ignores_symbols_it_did_not_subscribe(massive_server: MockMassiveServer, board: PriceBoard) -> None:
    # The server only routes subscribed channels; events arrive in order, so once AAPL is in,
    # a TSLA trade published before it would have been seen already.
    massive_server.publish([trade("TSLA", 250.00), trade("AAPL", 191.00)])

    assert board.wait_for_price("AAPL", 191.00)
    assert board.price("TSLA") is None


def test_board_recovers_after_the_connection_drops(massive_server: MockMassiveServer, board: PriceBoard) -> None:
    (first,) = massive_server.active_connections()
    massive_server.kick(first)  # abrupt TCP drop, no close frame: like a network failure

    # The client reconnects and re-subscribes by itself; wait until the server sees it.
    def resubscribed() -> bool:
        return any(
            c.id != first.id and not c.closed and {"T.AAPL", "T.MSFT"} <= c.subscriptions
            for c in massive_server.connections
        )

    assert massive_server.wait_for(resubscribed, timeout=5)
    massive_server.publish([trade("AAPL", 192.50)])
    assert board.wait_for_price("AAPL", 192.50)
