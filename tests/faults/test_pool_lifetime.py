"""Pool stats keep lifetime totals across recycling (issue 18, point 5): the counters of a
connection the pool replaced are not forgotten, before or after its queue is drained."""

from __future__ import annotations

import threading

import pytest

import massive_rt as mrt
from massive_rt.pool import ConnectionPool
from massive_rt.testing import MockMassiveServer
from tests.conftest import wait_until

KEY = "test-key"
ONE_RETRY = mrt.ReconnectPolicy(max_attempts=1, initial_delay=0.01, max_delay=0.01)


@pytest.mark.timeout(30)
@pytest.mark.allow_errors(r"failed: gave up after 2 consecutive failed attempts", logger="massive_rt.connection")
def test_pool_stats_keep_the_counters_of_recycled_connections(massive_server: MockMassiveServer) -> None:
    pool = ConnectionPool(api_key=KEY, url=massive_server.url, health_interval=0.05,
                          client_options={"reconnect": ONE_RETRY})  # fmt: skip
    adapter = mrt.RealTimeDataAdapter(pool)
    trades: list[int] = []
    got = threading.Condition()

    @adapter.on(mrt.EquityTrade)
    def on_trade(trade: mrt.EquityTrade) -> None:
        with got:
            trades.append(trade.size)
            got.notify_all()

    with adapter:
        pool.subscribe("T.AAPL")
        adapter.wait_ready(10)
        massive_server.publish([{"ev": "T", "sym": "AAPL", "p": 1.0, "s": i, "t": 1} for i in range(5)])
        with got:
            assert got.wait_for(lambda: len(trades) == 5, 10)
        old = pool.connections[0]
        massive_server.drop_all()  # failure 1: the connection reconnects
        assert wait_until(lambda: old.stats().reconnects == 1 and old.state is mrt.ConnectionState.STREAMING, 10)
        assert massive_server.wait_for_subscribed(["T.AAPL"], 10)
        before = pool.stats()
        assert before.reconnects == 1
        massive_server.drop_all()  # failure 2 > max_attempts: FAILED, and the pool recycles it
        assert wait_until(lambda: pool.stats().recycled == 1, 10)
        assert pool.stats().reconnects >= before.reconnects  # the retired connection still counts
        assert wait_until(lambda: old not in pool.clients(), 10)  # drained by the adapter, dropped
        after = pool.stats()
        assert after.reconnects == 1 + pool.connections[0].stats().reconnects
        assert after.events_decoded >= before.events_decoded >= 5
        assert after.dropped_events == 0
