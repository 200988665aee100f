"""A connection the pool replaces hands its marks to the replacement: the replacement's ``gap``
status says where each symbol's data stopped on the connection that died (issue 18, point 2)."""

from __future__ import annotations

import threading

import pytest

import massive_rt as mrt
from massive_rt.pool import ConnectionPool
from massive_rt.testing import MockMassiveServer
from tests.conftest import wait_until
from tests.support import KEY

ONE_RETRY = mrt.ReconnectPolicy(max_attempts=1, initial_delay=0.01, max_delay=0.01)


def trades(first: int, last: int) -> list[dict[str, object]]:
    return [{"ev": "T", "sym": sym, "p": 1.0, "s": 1, "t": 1_000 + q, "q": q}
            for q in range(first, last + 1) for sym in ("AAA", "BBB")]  # fmt: skip


@pytest.mark.timeout(30)
@pytest.mark.allow_errors(r"failed: gave up after 2 consecutive failed attempts", logger="massive_rt.connection")
def test_the_replacement_s_gap_carries_the_marks_of_the_connection_it_replaced(
    massive_server: MockMassiveServer,
) -> None:
    pool = ConnectionPool(api_key=KEY, url=massive_server.url, health_interval=0.05,
                          client_options={"reconnect": ONE_RETRY})  # fmt: skip
    adapter = mrt.RealTimeDataAdapter(pool)
    seen: list[mrt.Event] = []
    cond = threading.Condition()

    def record(event: mrt.Event) -> None:
        with cond:
            seen.append(event)
            cond.notify_all()

    adapter.on(mrt.EquityTrade, record)
    adapter.on_status(record)

    def delivered() -> list[int]:
        return [e.sequence_number for e in seen if isinstance(e, mrt.EquityTrade) and e.symbol == "AAA"]

    with adapter:
        pool.subscribe("T.AAA", "T.BBB")
        adapter.wait_ready(10)
        massive_server.publish(trades(1, 3))
        with cond:
            assert cond.wait_for(lambda: delivered() == [1, 2, 3], 10)
        old = pool.connections[0]
        massive_server.drop_all()  # failure 1: it reconnects by itself
        assert wait_until(lambda: old.stats().reconnects == 1 and old.state is mrt.ConnectionState.STREAMING, 10)
        assert massive_server.wait_for_subscribed(["T.AAA", "T.BBB"], 10)
        # No data in between: a session that delivered data would reset the attempt count (reset_on_data).
        massive_server.drop_all()  # failure 2 > max_attempts: it fails and the pool replaces it
        assert wait_until(lambda: pool.stats().recycled == 1, 10)
        assert wait_until(lambda: old not in pool.clients(), 10)
        assert massive_server.wait_for_subscribed(["T.AAA", "T.BBB"], 10)
        massive_server.publish(trades(9, 9))
        with cond:
            assert cond.wait_for(lambda: delivered()[-1:] == [9], 10)
        new = pool.connections[0]
        gaps = [e for e in seen if isinstance(e, mrt.StatusMessage) and e.status == "gap" and e.connection == new.name]
    assert new is not old  # a new client (under the same name)
    assert len(gaps) == 1
    marks = {(m.symbol, m.ev): (m.timestamp, m.sequence) for m in gaps[0].last_seen}
    assert marks == {("AAA", "T"): (1_003, 3), ("BBB", "T"): (1_003, 3)}  # where the old connection stopped
