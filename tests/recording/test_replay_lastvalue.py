"""A LastValueCache behind a ReplaySource files each event under its recorded connection's market,
not the recording's first market: a real pool recorded from the mock server, replayed from a file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import massive_rt as mrt
from massive_rt.testing import MockMassiveServer
from tests.conftest import wait_until

WAIT = 10.0


@pytest.mark.timeout(60)
def test_a_two_market_recording_replays_into_the_cache_under_each_connections_market(
    server: MockMassiveServer, make_pool: Any, make_adapter: Any, tmp_path: Path
) -> None:
    pool = make_pool(max_connections=2)
    path = tmp_path / "two-markets.mrt"
    recorder = mrt.Recorder(pool, path, flush_interval=0.05)
    live = make_adapter(pool)
    seen: list[mrt.Event] = []
    live.on("*", seen.append)
    recorder.start()
    live.start()
    pool.subscribe("T.AAPL", market="stocks")
    pool.subscribe("XT.*", market="crypto")
    pool.wait_ready(WAIT)
    assert server.publish([{"ev": "T", "sym": "AAPL", "p": 190.0, "s": 1, "t": 1_700_000_000_000, "q": 1}]) == 1
    server.publish([{"ev": "XT", "pair": "BTC-USD", "p": 60_000.0, "s": 0.5, "t": 1_700_000_000_001, "x": 1,
                     "i": "1"}], market="crypto")  # fmt: skip
    assert wait_until(lambda: len(seen) == 2, WAIT)
    live.stop()
    assert recorder.stop()

    source = mrt.ReplaySource(path, speed=None)
    adapter = make_adapter(source)
    cache = mrt.LastValueCache(adapter)
    adapter.start()
    assert wait_until(lambda: source.exhausted and len(cache) == 2, WAIT)
    btc = cache.trade("BTC-USD", market="crypto")
    assert btc is not None
    assert btc.value.price == 60_000.0
    assert cache.trade("AAPL", market="stocks") is not None
    assert cache.trade("BTC-USD", market=cache.market if cache.market != "crypto" else "stocks") is None
    assert set(source.connection_markets().values()) == {mrt.Market.STOCKS, mrt.Market.CRYPTO}
