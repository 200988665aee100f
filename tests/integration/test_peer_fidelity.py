"""The official ``massive`` client against MockMassiveServer: proof that the mock speaks the real protocol.

The official client (``massive`` 2.9.1) connects, reads ``connected``, authenticates, subscribes and
parses one published event of every type it models, in every market, from the example payloads of
docs/protocol.md §4.3. Each parsed object is checked attribute by attribute: against the wire key →
attribute tables of ``massive_rt.models`` (which must agree with the official names) and, for one
event per market, against hand-written values.
"""

from __future__ import annotations

from typing import Any

import pytest
from massive.exceptions import AuthError

from massive_rt.protocol import MARKET_EVENTS
from massive_rt.testing import MockMassiveServer
from tests._official import OfficialClient

AGG = {"v": 200, "av": 8642007, "op": 25.66, "vw": 25.3981, "o": 25.39, "c": 25.39, "h": 25.39, "l": 25.39,
       "a": 25.3714, "z": 50, "s": 1610144868000, "e": 1610144869000}  # fmt: skip
FMV_T = 1678220098130

# market → (subscriptions, payloads); one payload per event type the official client models there.
CASES: dict[str, tuple[list[str], list[dict[str, Any]]]] = {
    "stocks": (
        ["T.*", "Q.MSFT", "A.*", "AM.SPCE", "LULD.MSFT", "NOI.NTEST.Q", "FMV.*", "LV.AAPL"],
        [
            {"ev": "T", "sym": "MSFT", "x": 4, "i": "12345", "z": 3, "p": 114.125, "s": 100, "c": [0, 12],
             "t": 1536036818784, "q": 3681328},
            {"ev": "Q", "sym": "MSFT", "bx": 4, "bp": 114.125, "bs": 100, "ax": 7, "ap": 114.128, "as": 160, "c": 0,
             "i": [604], "t": 1536036818784, "q": 50385480, "z": 3},
            {"ev": "A", "sym": "SPCE", **AGG},
            {"ev": "AM", "sym": "SPCE", **AGG, "otc": True},
            {"ev": "LULD", "T": "MSFT", "h": 218.96, "l": 198.11, "i": [21], "z": 3, "t": 1601316752683746,
             "q": 290317},
            {"ev": "NOI", "T": "NTEST.Q", "t": 1601318039223013600, "at": 930, "a": "M", "i": 44, "x": 10, "o": 480,
             "p": 440, "b": 25.03},
            {"ev": "FMV", "fmv": 189.22, "sym": "AAPL", "t": FMV_T},
            {"ev": "LV", "val": 189.22, "sym": "AAPL", "t": FMV_T},
        ],
    ),
    "options": (
        ["T.*", "Q.O:SPY241220P00720000", "A.*", "AM.*", "FMV.*", "LV.*"],
        [
            {"ev": "T", "sym": "O:AMC210827C00037000", "x": 65, "p": 1.54, "s": 1, "c": [233], "t": 1629820676333,
             "q": 651921857},
            {"ev": "Q", "sym": "O:SPY241220P00720000", "bx": 302, "ax": 302, "bp": 9.71, "ap": 9.81, "bs": 17,
             "as": 24, "t": 1644506128351, "q": 844090872},
            {"ev": "A", "sym": "O:ONEM220121C00025000", **AGG},
            {"ev": "AM", "sym": "O:ONEM220121C00025000", **AGG},
            {"ev": "FMV", "fmv": 7.2, "sym": "O:TSLA210903C00700000", "t": 1401715883806000000},
            {"ev": "LV", "val": 7.25, "sym": "O:TSLA210903C00700000", "t": FMV_T},
        ],
    ),
    "forex": (
        ["C.USD/CNH", "CA.*", "CAS.*", "FMV.*", "AM.*", "LV.*"],
        [
            {"ev": "C", "p": "USD/CNH", "x": "44", "a": 6.83366, "b": 6.83363, "t": 1536036818784},
            {"ev": "CA", "pair": "USD/EUR", "o": 0.8687, "c": 0.86889, "h": 0.86889, "l": 0.8686, "v": 20,
             "s": 1539145740000},
            {"ev": "CAS", "pair": "USD/EUR", "o": 0.8687, "c": 0.86889, "h": 0.86889, "l": 0.8686, "v": 3,
             "s": 1539145741000, "e": 1539145742000},
            {"ev": "FMV", "fmv": 1.0631, "sym": "C:EURUSD", "t": FMV_T},
            {"ev": "AM", "sym": "C:EURUSD", "o": 1.063, "c": 1.0631, "h": 1.0632, "l": 1.0629, "v": 10,
             "s": 1678220040000, "e": 1678220100000},
            {"ev": "LV", "val": 1.0631, "sym": "C:EURUSD", "t": FMV_T},
        ],
    ),
    "crypto": (
        ["XT.BTC-USD", "XQ.*", "XL2.*", "XA.*", "XAS.*", "FMV.*", "AM.*", "LV.*"],
        [
            {"ev": "XT", "pair": "BTC-USD", "p": 33021.9, "t": 1610462007425, "s": 0.01616617, "c": [2],
             "i": 14272084, "x": 3, "r": 1610462007576},
            {"ev": "XQ", "pair": "BTC-USD", "bp": 33052.79, "bs": 0.48, "ap": 33073.19, "as": 0.601,
             "t": 1610462411115, "x": 1, "r": 1610462411128},
            {"ev": "XL2", "pair": "BTC-USD", "t": 1610462411115, "r": 1610462411128, "x": 1,
             "b": [[33712.71, 0.18635], [33712.7, 0.134]], "a": [[33718.23, 3.5527483], [33718.24, 0.1]]},
            {"ev": "XA", "pair": "BCD-USD", "v": 951.6112, "vw": 0.7756, "z": 73, "o": 0.772, "c": 0.784, "h": 0.784,
             "l": 0.771, "s": 1610463240000, "e": 1610463300000},
            {"ev": "XAS", "pair": "BCD-USD", "v": 1.5, "vw": 0.7756, "z": 2, "o": 0.772, "c": 0.784, "h": 0.784,
             "l": 0.771, "s": 1610463240000, "e": 1610463241000},
            {"ev": "FMV", "fmv": 33021.9, "sym": "X:BTC-USD", "t": 1610462007425},
            {"ev": "AM", "sym": "X:BTC-USD", "o": 33000.0, "c": 33021.9, "h": 33050.0, "l": 32990.5, "v": 12.5,
             "s": 1610461980000, "e": 1610462040000},
            {"ev": "LV", "val": 33021.9, "sym": "X:BTC-USD", "t": 1610462007425},
        ],
    ),
    "indices": (
        ["A.I:SPX", "AM.*", "V.I:SPX"],
        [
            {"ev": "A", "sym": "I:SPX", "op": 3985.67, "o": 3988.1, "c": 3988.5, "h": 3989.0, "l": 3987.9,
             "s": 1678220098000, "e": 1678220099000},
            {"ev": "AM", "sym": "I:SPX", "op": 3985.67, "o": 3980.0, "c": 3988.5, "h": 3990.2, "l": 3979.1,
             "s": 1678220040000, "e": 1678220100000},
            {"ev": "V", "val": 3988.5, "T": "I:SPX", "t": FMV_T},
        ],
    ),
    "futures/cme": (
        ["T.*", "Q.ESZ4", "A.*", "AM.*"],
        [
            {"ev": "T", "sym": "ESZ4", "p": 5890.25, "s": 2, "t": 1733162400123, "q": 1234},
            {"ev": "Q", "sym": "ESZ4", "bp": 5890.0, "bs": 12, "bt": 1733162400100, "ap": 5890.25, "as": 7,
             "at": 1733162400101, "t": 1733162400123},
            {"ev": "A", "sym": "ESZ4", "v": 10, "dv": 58902.5, "o": 5890.0, "c": 5890.25, "h": 5890.5, "l": 5889.75,
             "n": 4, "s": 1733162400000, "e": 1733162401000},
            {"ev": "AM", "sym": "ESZ4", "v": 310, "dv": 1825981.0, "o": 5889.0, "c": 5890.25, "h": 5891.0,
             "l": 5888.5, "n": 57, "s": 1733162340000, "e": 1733162400000},
        ],
    ),
}  # fmt: skip

# Hand-written expectations for one event per market (independent of any mapping table).
SPOT_CHECKS: dict[str, tuple[str, dict[str, Any]]] = {
    "stocks": ("T", {"symbol": "MSFT", "exchange": 4, "id": "12345", "tape": 3, "price": 114.125, "size": 100,
                     "conditions": [0, 12], "timestamp": 1536036818784, "sequence_number": 3681328}),
    "options": ("Q", {"symbol": "O:SPY241220P00720000", "bid_exchange_id": 302, "bid_price": 9.71,
                      "ask_price": 9.81, "bid_size": 17, "ask_size": 24, "sequence_number": 844090872}),
    "forex": ("C", {"pair": "USD/CNH", "exchange_id": "44", "ask_price": 6.83366, "bid_price": 6.83363,
                    "timestamp": 1536036818784}),
    "crypto": ("XL2", {"pair": "BTC-USD", "bid_prices": [[33712.71, 0.18635], [33712.7, 0.134]],
                       "ask_prices": [[33718.23, 3.5527483], [33718.24, 0.1]], "exchange_id": 1,
                       "received_timestamp": 1610462411128}),
    "indices": ("V", {"value": 3988.5, "ticker": "I:SPX", "timestamp": FMV_T}),
    "futures/cme": ("Q", {"symbol": "ESZ4", "bid_price": 5890.0, "bid_size": 12, "bid_timestamp": 1733162400100,
                          "ask_timestamp": 1733162400101, "sip_timestamp": 1733162400123}),
}  # fmt: skip


@pytest.mark.parametrize("market", list(CASES))
def test_official_client_parses_every_event_type(server: MockMassiveServer, market: str) -> None:
    subscriptions, payloads = CASES[market]
    assert {p["ev"] for p in payloads} == set(MARKET_EVENTS[market])  # type: ignore[index]
    official = OfficialClient(server.port, market, subscriptions, api_key="test-key")
    assert server.wait_for_subscribed(subscriptions, timeout=10, market=market)

    assert server.publish(payloads, market=market, batch=3) == len(payloads)
    parsed = official.take(len(payloads))

    for payload, obj in zip(payloads, parsed, strict=True):
        ours = MARKET_EVENTS[market][payload["ev"]]  # type: ignore[index]
        assert type(obj).__name__ == ours.__name__, payload
        for key, attr in ours.WIRE:
            assert getattr(obj, attr) == payload.get(key), (payload["ev"], attr)
    ev, expected = SPOT_CHECKS[market]
    (obj,) = [o for o, p in zip(parsed, payloads, strict=True) if p["ev"] == ev]
    assert {name: getattr(obj, name) for name in expected} == expected

    # Massive-style handshake as the official client performed it.
    actions = [(m.action, m.params) for m in server.received]
    assert actions[0] == ("auth", ())
    assert actions[1][0] == "subscribe"
    assert sorted(actions[1][1]) == sorted(subscriptions)

    server.close()  # 1001 going away: the official client's connect() returns normally
    official.thread.join(10)
    assert not official.thread.is_alive()
    assert official.error is None


def test_official_client_raises_auth_error_on_a_bad_key(server: MockMassiveServer) -> None:
    official = OfficialClient(server.port, "stocks", ["T.*"], api_key="wrong-key")
    official.thread.join(10)
    assert not official.thread.is_alive()
    assert isinstance(official.error, AuthError)
    assert str(official.error) == "authentication failed"


def test_official_client_reconnects_after_an_abrupt_drop_and_resubscribes(server: MockMassiveServer) -> None:
    official = OfficialClient(server.port, "stocks", ["T.AAPL"], api_key="test-key")
    official.client.max_reconnects = 3
    assert server.wait_for_subscribed(["T.AAPL"], timeout=10)
    server.drop_all()
    assert server.wait_for(lambda: len([c for c in server.connections if c.subscriptions]) == 2, timeout=10)
    assert server.wait_for_subscribed(["T.AAPL"], timeout=10)
    assert server.publish([{"ev": "T", "sym": "AAPL", "p": 1.5, "s": 1, "t": 1, "q": 1}]) == 1
    (trade,) = official.take(1)
    assert (trade.symbol, trade.price) == ("AAPL", 1.5)
    server.close()
    official.thread.join(10)
    assert official.error is None
