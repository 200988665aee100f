"""A LastValueCache behind a RedisStreamSource files each event under its upstream connection's
market (the entries name it), and reads default to the streams' market: real redis-server, real
mock upstream, no stocks-by-default."""

from __future__ import annotations

import pytest

import massive_rt as mrt
from massive_rt.adapter import RealTimeDataAdapter
from massive_rt.pool import ConnectionPool
from massive_rt.sinks import RedisStreamSink, RedisStreamSource
from massive_rt.testing import MockMassiveServer
from tests.conftest import wait_until
from tests.redis.conftest import FAST, KEY, QUICK, WAIT, Managed, RedisServer, start_adapter, trades


def crypto(count: int) -> list[dict[str, object]]:
    return [{"ev": "XT", "pair": "BTC-USD", "p": 60_000.0 + q, "s": 0.5, "t": 1_700_000_000_000 + q, "x": 1,
             "i": str(q)} for q in range(count)]  # fmt: skip


def cached_consumer(url: str, streams: list[str], managed: Managed) -> tuple[RedisStreamSource, mrt.LastValueCache]:
    group = "-".join(s.rsplit(":", 1)[-1] for s in streams)  # a group each: each reads every entry
    source = RedisStreamSource(url, streams, reconnect=QUICK, block_ms=50, group=group, name=f"source-{group}")
    adapter = RealTimeDataAdapter(source)
    cache = mrt.LastValueCache(adapter)
    start_adapter(adapter, managed)
    source.wait_ready(WAIT)
    return source, cache


@pytest.mark.timeout(60)
def test_events_are_cached_under_their_upstream_connections_market(
    redis_server: RedisServer, mock_server: MockMassiveServer, managed: Managed
) -> None:
    pool = ConnectionPool(api_key=KEY, max_connections=2, url=mock_server.url, health_interval=0.05,
                          client_options={"reconnect": FAST})  # fmt: skip
    upstream = RealTimeDataAdapter(pool)
    sink = RedisStreamSink(upstream, redis_server.url, reconnect=QUICK, socket_timeout=2.0)
    managed.add(sink.stop)
    sink.start()
    start_adapter(upstream, managed)
    pool.subscribe("T.*", market="stocks")
    pool.subscribe("XT.*", market="crypto")
    pool.wait_ready(WAIT)
    mixed, mixed_cache = cached_consumer(redis_server.url, ["massive:stocks:T", "massive:crypto:XT"], managed)
    _only, crypto_cache = cached_consumer(redis_server.url, ["massive:crypto:XT"], managed)
    assert (mixed_cache.market, crypto_cache.market) == ("stocks", "crypto")  # the streams' one market, or stocks

    mock_server.publish(trades(0, 3))
    mock_server.publish(crypto(3), market="crypto")

    def last_trades_cached() -> bool:  # each cache holds the last of the three trades (not merely one)
        mixed_btc = mixed_cache.trade("BTC-USD", market="crypto")
        mixed_aapl = mixed_cache.trade("AAPL")
        only_btc = crypto_cache.trade("BTC-USD")
        return (len(mixed_cache) == 2 and mixed_btc is not None and mixed_btc.value.price == 60_002.0
                and mixed_aapl is not None and mixed_aapl.value.sequence_number == 2
                and only_btc is not None and only_btc.value.price == 60_002.0)  # fmt: skip

    assert wait_until(last_trades_cached, WAIT)

    assert mixed_cache.trade("AAPL") is not None
    btc = mixed_cache.trade("BTC-USD", market="crypto")
    assert btc is not None
    assert btc.value.price == 60_002.0
    assert mixed_cache.trade("BTC-USD") is None  # not filed under stocks
    assert {(key.kind, key.market, key.symbol) for key, _ in mixed_cache.snapshot().items()} == {
        ("trade", "stocks", "AAPL"), ("trade", "crypto", "BTC-USD")}  # fmt: skip
    assert {key.market for key, _ in crypto_cache.snapshot().items()} == {"crypto"}
    assert set(mixed.connection_markets().values()) == {mrt.Market.STOCKS, mrt.Market.CRYPTO}
    assert mixed.stream_markets == {"massive:stocks:T": mrt.Market.STOCKS, "massive:crypto:XT": mrt.Market.CRYPTO}
