"""LastValueCache(adapter, seed=...) from the REST snapshot (issue 15): seeded before the first live event."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import massive_rt as mrt
from massive_rt.testing import MockMassiveREST, MockMassiveServer
from tests.conftest import wait_until
from tests.support import KEY

from .conftest import history, trade

T0 = 1_700_000_000_000


def _quote(symbol: str, t_ms: int, q: int) -> dict[str, Any]:
    return {"ev": "Q", "sym": symbol, "bp": 99.0, "bs": 1, "ap": 101.0, "as": 2, "t": t_ms, "q": q}


def _bar(symbol: str, start_ms: int) -> dict[str, Any]:
    return {"ev": "AM", "sym": symbol, "o": 1.0, "h": 2.0, "l": 0.5, "c": 1.5, "v": 10, "s": start_ms,
            "e": start_ms + 60_000}  # fmt: skip


@pytest.mark.timeout(30)
def test_the_cache_is_seeded_from_the_snapshot_before_the_first_live_event(
    massive_server: MockMassiveServer, massive_rest: MockMassiveREST,
    make_client: Callable[..., mrt.MassiveWebSocketClient], make_adapter: Callable[..., mrt.RealTimeDataAdapter],
) -> None:  # fmt: skip
    massive_rest.add_events([trade("AAPL", T0, 41), _quote("AAPL", T0 + 1, 42), _bar("AAPL", T0 - 60_000),
                             trade("MSFT", T0, 7), trade("IBM", T0, 1)])  # fmt: skip
    client = make_client(subscriptions=("T.AAPL", "Q.AAPL", "AM.AAPL", "T.MSFT"), ping_interval=None)
    adapter = make_adapter(client)
    at_first_live: list[mrt.CachedValue | None] = []
    # Registered before the cache: runs before the cache stores the live trade.
    adapter.on(mrt.EquityTrade, lambda t: at_first_live.append(cache.trade("AAPL")) if not at_first_live else None)
    with history(massive_rest) as rest:
        cache = mrt.LastValueCache(adapter, seed=rest)
    seeded = cache.trade("AAPL")
    assert seeded is not None
    assert seeded.seeded
    assert seeded.value.sequence_number == 41
    assert seeded.value.origin == "rest"
    quote, bar = cache.quote("AAPL"), cache.bar("AAPL")
    assert quote is not None and quote.seeded and quote.value.sequence_number == 42  # noqa: PT018
    assert bar is not None and bar.seeded and bar.value.start_timestamp == T0 - 60_000  # noqa: PT018
    assert cache.trade("MSFT") is not None
    assert cache.trade("IBM") is None  # not subscribed
    assert cache.stats().seeded == 4

    adapter.start()
    adapter.wait_ready(5)
    assert wait_until(lambda: massive_server.publish([trade("AAPL", T0 + 5, 43)]) == 1 and bool(at_first_live), 10)
    first = at_first_live[0]
    assert first is not None and first.seeded and first.value.sequence_number == 41  # noqa: PT018
    live = cache.trade("AAPL")
    assert live is not None and not live.seeded and live.value.sequence_number == 43  # noqa: PT018


def test_a_wildcard_seeds_every_ticker_of_the_snapshot(massive_rest: MockMassiveREST) -> None:
    massive_rest.add_events([trade(s, T0, i) for i, s in enumerate(("AAPL", "MSFT", "IBM"))])
    adapter = mrt.RealTimeDataAdapter(mrt.SyntheticSource(["T.*"]))
    with history(massive_rest) as rest:
        cache = mrt.LastValueCache(adapter, seed=rest)
    assert {key.symbol for key, _ in cache.items()} == {"AAPL", "MSFT", "IBM"}
    assert all(value.seeded for _, value in cache.items())


def test_seed_true_reads_the_environment(massive_rest: MockMassiveREST, monkeypatch: pytest.MonkeyPatch) -> None:
    massive_rest.add_events([trade("AAPL", T0, 3)])
    monkeypatch.setenv("MASSIVE_API_KEY", KEY)
    monkeypatch.setenv("MASSIVE_REST_URL", massive_rest.url)
    cache = mrt.LastValueCache(mrt.RealTimeDataAdapter(mrt.SyntheticSource(["T.AAPL"])), seed=True)
    value = cache.trade("AAPL")
    assert value is not None and value.seeded  # noqa: PT018


@pytest.mark.allow_errors(r"the seed callable raised", logger="massive_rt.lastvalue")
def test_a_failed_snapshot_is_counted_and_the_cache_fills_live(massive_rest: MockMassiveREST) -> None:
    massive_rest.fail_next(401, count=5)
    with history(massive_rest, retries=0) as rest:
        cache = mrt.LastValueCache(mrt.RealTimeDataAdapter(mrt.SyntheticSource(["T.AAPL"])), seed=rest)
    assert cache.stats().seed_errors == 1
    assert len(cache) == 0
