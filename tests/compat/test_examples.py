"""The official client's WebSocket examples (``examples/websocket/`` of massive-com/client-python),
each rebuilt with only the import line changed, against the mock server.

An example builds a client and subscribes as the original does; the only other change is where it
connects: ``feed="127.0.0.1:<port>", secure=False`` instead of Massive's host (and its handler
collects instead of printing). For each one: the handler's batches (one per frame) hold exactly
the models the official ``parse`` makes of the same frames; ``close()`` from inside the handler
ends ``run()``; ``close()`` from another thread ends ``run()``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from massive_rt.compat import EquityTrade, Feed, Market, WebSocketClient, WebSocketMessage
from massive_rt.testing import MockMassiveServer
from tests.compat._support import (
    KEY,
    PAYLOADS,
    Running,
    close_after,
    events,
    expected_batches,
    frames,
    publish_when_subscribed,
    views,
)

pytestmark = pytest.mark.timeout(30)


class CountingJson:
    """A ``custom_json`` module stand-in (the custom-json example passes one): json, counted."""

    def __init__(self) -> None:
        self.loads_calls = 0
        self.lock = threading.Lock()

    def loads(self, text: str | bytes) -> Any:
        with self.lock:
            self.loads_calls += 1
        return json.loads(text)

    def dumps(self, obj: Any) -> str:
        return json.dumps(obj)


# ---- the examples, as written upstream but for the import line and where they connect ----------


def simple(host: str) -> WebSocketClient:  # simple.py
    return WebSocketClient(subscriptions=["T.*"], verbose=True, feed=host, secure=False)


def raw(host: str) -> WebSocketClient:  # raw.py
    return WebSocketClient(subscriptions=["T.*"], raw=True, feed=host, secure=False)


def stocks(host: str) -> WebSocketClient:  # stocks-ws.py
    client = WebSocketClient(feed=host, secure=False)  # MASSIVE_API_KEY environment variable is used
    client.subscribe("A.*")  # all aggregates
    return client


def options(host: str) -> WebSocketClient:  # options-ws.py
    client = WebSocketClient(market=Market.Options, feed=host, secure=False)
    client.subscribe("A.*")  # aggregates (per second)
    return client


def crypto(host: str) -> WebSocketClient:  # crypto.py
    client = WebSocketClient(market=Market.Crypto, feed=host, secure=False)
    client.subscribe("XA.*")  # all crypto pair
    return client


def forex(host: str) -> WebSocketClient:  # forex.py
    client = WebSocketClient(market=Market.Forex, feed=host, secure=False)
    client.subscribe("CA.USD/CAD")
    client.subscribe("CA.USD/EUR")
    client.subscribe("CA.USD/AUD")
    return client


def indices(host: str) -> WebSocketClient:  # indices.py
    client = WebSocketClient(market=Market.Indices, feed=host, secure=False)
    client.subscribe("AM.I:SPX")  # Standard & Poor's 500
    client.subscribe("AM.I:DJI")  # Dow Jones Industrial Average
    client.subscribe("AM.I:NDX")  # Nasdaq-100
    client.subscribe("AM.I:VIX")  # Volatility Index
    client.subscribe("V.I:SPX")  # one of the example's commented-out lines, to get IndexValue too
    return client


def fmv(host: str) -> WebSocketClient:  # fmv.py (feed=Feed.Business upstream)
    assert Feed.Business.value == "business.massive.com"
    client = WebSocketClient(feed=host, market=Market.Stocks, verbose=True, secure=False)
    client.subscribe("FMV.*")  # all ticker symbols
    return client


def launchpad(host: str) -> WebSocketClient:  # launchpad.py (feed=Feed.Launchpad upstream)
    client = WebSocketClient(api_key=KEY, feed=host, market=Market.Stocks, secure=False)
    client.subscribe("AM.*")  # all aggregates
    client.subscribe("LV.*")  # the example's commented-out launchpad values
    return client


CUSTOM_JSON = CountingJson()


def custom_json(host: str) -> WebSocketClient:  # custom-json.py
    return WebSocketClient(subscriptions=["T.*"], custom_json=CUSTOM_JSON, feed=host, secure=False)


def aggs(host: str) -> WebSocketClient:  # aggs.py: a handler object that picks EquityTrade by type()
    return WebSocketClient(subscriptions=["T.*"], feed=host, secure=False)


@dataclass(frozen=True)
class Example:
    name: str
    build: Callable[[str], WebSocketClient]
    market: str
    channels: tuple[str, ...]  # what the server must have subscribed before events are published
    payloads: list[dict[str, Any]] = field(default_factory=list)


T_ONLY = [*events("stocks", "T"), {"ev": "T", "sym": "MSFT", "p": 410.5, "s": 5, "t": 1700000009000}]
EXAMPLES = [
    Example("simple", simple, "stocks", ("T.*",), T_ONLY),
    Example("raw", raw, "stocks", ("T.*",), T_ONLY),
    Example("stocks", stocks, "stocks", ("A.*",),
            [*events("stocks", "A"), {"ev": "A", "sym": "TSLA", "v": 1, "o": 250, "c": 250.5},
             {"ev": "A", "sym": "NVDA", "v": 9, "otc": True}]),
    Example("options", options, "options", ("A.*",),
            [*events("options", "A"), {"ev": "A", "sym": "O:TSLA251219C00300000", "v": 2, "c": 3.1},
             {"ev": "A", "sym": "O:AAPL251219P00150000", "v": 1, "c": 0.05}]),
    Example("crypto", crypto, "crypto", ("XA.*",),
            [*events("crypto", "XA"), {"ev": "XA", "pair": "ETH-USD", "v": 3.5, "o": 2000, "c": 2001},
             {"ev": "XA", "pair": "SOL-USD", "v": 100, "vw": 60.1, "z": 4}]),
    Example("forex", forex, "forex", ("CA.USD/CAD", "CA.USD/EUR", "CA.USD/AUD"),
            [*events("forex", "CA"), {"ev": "CA", "pair": "USD/EUR", "o": 0.91, "c": 0.92, "v": 4},
             {"ev": "CA", "pair": "USD/AUD", "o": 1.51, "c": 1.52, "v": 2}]),
    Example("indices", indices, "indices", ("AM.I:SPX", "AM.I:DJI", "AM.I:NDX", "AM.I:VIX", "V.I:SPX"),
            [*events("indices", "AM", "V"), {"ev": "AM", "sym": "I:VIX", "o": 14.1, "c": 14.3}]),
    Example("fmv", fmv, "stocks", ("FMV.*",),
            [*events("stocks", "FMV"), {"ev": "FMV", "fmv": 410.52, "sym": "MSFT", "t": 1700000009100},
             {"ev": "FMV", "fmv": 250, "sym": "TSLA"}]),
    Example("launchpad", launchpad, "stocks", ("AM.*", "LV.*"),
            [*events("stocks", "AM", "LV"), {"ev": "LV", "val": 410.5, "sym": "MSFT", "t": 1}]),
    Example("custom-json", custom_json, "stocks", ("T.*",), T_ONLY),
    Example("aggs", aggs, "stocks", ("T.*",), T_ONLY),
]  # fmt: skip


@pytest.fixture(params=EXAMPLES, ids=lambda e: e.name)
def example(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Example:
    monkeypatch.setenv("MASSIVE_API_KEY", KEY)  # the examples take the key from the environment
    ex: Example = request.param
    assert len(frames(ex.payloads)) >= 2, "every example gets several frames"
    return ex


def test_every_example_pattern_is_covered() -> None:
    upstream = {"simple", "raw", "stocks", "options", "crypto", "forex", "indices", "fmv", "launchpad", "custom-json"}
    assert upstream <= {e.name for e in EXAMPLES}


def test_the_example_gets_the_official_batches_and_closes_from_its_handler(
    example: Example, server: MockMassiveServer, host: str
) -> None:
    client = example.build(host)
    received: list[Any] = []
    wanted = len(frames(example.payloads))
    counted = {"trades": 0}

    def handle_msg(msgs: list[WebSocketMessage]) -> None:  # the example's handler, collecting
        received.append(msgs)
        if example.name == "aggs":
            for m in msgs:
                if type(m) == EquityTrade:  # noqa: E721 - what aggs.py does
                    counted["trades"] += 1
        if len(received) == wanted:
            client.close()

    publisher = publish_when_subscribed(server, example.channels, example.market, example.payloads)
    watchdog = close_after(client, 20)
    client.run(handle_msg)  # returns because the handler closed the client
    watchdog.cancel()
    publisher.join(10)
    assert not watchdog.fired.is_set(), f"run() did not end by itself; got {received}"  # type: ignore[attr-defined]

    if example.name == "raw":
        assert all(isinstance(frame, str) for frame in received)
        assert [json.loads(frame) for frame in received] == frames(example.payloads)  # what raw.py prints
    else:
        assert [views(batch) for batch in received] == expected_batches(example.market, example.payloads)
    if example.name == "custom-json":
        assert CUSTOM_JSON.loads_calls >= wanted
    if example.name == "aggs":
        assert counted["trades"] == len(example.payloads)
    # the connection is gone once run() returned
    assert server.wait_for(lambda: all(c.closed for c in server.connections), 10)
    assert not client.running


def test_the_example_is_closed_from_another_thread(example: Example, server: MockMassiveServer, host: str) -> None:
    client = example.build(host)
    with Running(client) as running:
        publisher = publish_when_subscribed(server, example.channels, example.market, example.payloads)
        first = running.take(1)[0]
        publisher.join(10)
        client.close()  # from the test's thread, while run() blocks in its own
        running.join()
    assert running.error is None
    if example.name == "raw":
        assert json.loads(first) == frames(example.payloads)[0]
    else:
        assert views(first) == expected_batches(example.market, example.payloads)[0]
    assert server.wait_for(lambda: all(c.closed for c in server.connections), 10)


def test_each_example_payload_set_exists_for_its_market() -> None:
    for ex in EXAMPLES:
        assert ex.market in PAYLOADS
        assert all(p["ev"] in {c.partition(".")[0] for c in ex.channels} for p in ex.payloads), ex.name
