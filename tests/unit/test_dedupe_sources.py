"""dedupe= on a client, a pool (one filter across its connections and their replacements) and an
adapter, against MockMassiveServer: a trade published twice reaches the consumer once."""

from __future__ import annotations

import queue
from typing import Any

import pytest

import massive_rt as mrt
from massive_rt.testing import MockMassiveServer
from tests.conftest import wait_until
from tests.support import KEY


def trade(sym: str, seq: int) -> dict[str, Any]:
    return {"ev": "T", "sym": sym, "x": 4, "i": str(seq), "z": 3, "p": 190.5, "s": 100, "t": 1_700_000_000_000 + seq,
            "q": seq}  # fmt: skip


def trades_until(source: Any, last_seq: int, timeout: float = 10) -> list[int]:
    """Sequence numbers of the trades taken from ``source`` up to the one numbered ``last_seq``."""
    seen: list[int] = []
    for event in source.iter_events(timeout=timeout):
        if isinstance(event, mrt.EquityTrade):
            seen.append(event.sequence_number)
            if event.sequence_number == last_seq:
                return seen
    raise AssertionError(f"trade {last_seq} never came; saw {seen}")


@pytest.fixture
def server() -> Any:
    with MockMassiveServer(api_keys={KEY}, close_timeout=0.5) as srv:
        yield srv


@pytest.mark.parametrize("dedupe", [True, 1000, "shared filter"])
def test_a_client_with_dedupe_delivers_a_repeated_trade_once(server: MockMassiveServer, dedupe: Any) -> None:
    if dedupe == "shared filter":
        dedupe = mrt.DuplicateFilter(50)
    with mrt.MassiveWebSocketClient(api_key=KEY, url=server.url(), subscriptions=["T.*"], dedupe=dedupe) as client:
        client.wait_ready(10)
        server.publish([trade("AAPL", 1), trade("AAPL", 1), trade("MSFT", 1), trade("AAPL", 2)], batch=2)
        server.publish([trade("AAPL", 2), trade("AAPL", 3)])
        assert trades_until(client, 3) == [1, 1, 2, 3]  # AAPL 1, MSFT 1, AAPL 2, AAPL 3
        assert client.stats().duplicates_suppressed == 2


def test_without_dedupe_every_copy_is_delivered(server: MockMassiveServer) -> None:
    with mrt.MassiveWebSocketClient(api_key=KEY, url=server.url(), subscriptions=["T.*"]) as client:
        client.wait_ready(10)
        server.publish([trade("AAPL", 1), trade("AAPL", 1), trade("AAPL", 2)])
        assert trades_until(client, 2) == [1, 1, 2]
        assert client.stats().duplicates_suppressed == 0


@pytest.mark.allow_errors(
    r"failed: gave up after \d+ consecutive failed attempts; last: server closed the TCP connection",
    logger="massive_rt.connection",
)
def test_a_pool_shares_one_filter_with_the_replacement_of_a_lost_connection(server: MockMassiveServer) -> None:
    """The seam of a reconnect is where copies come from: the replacement connection remembers
    what its predecessor delivered."""
    pool = mrt.ConnectionPool(api_key=KEY, url=server.url, health_interval=0.01, dedupe=True,
                              client_options={"reconnect": mrt.ReconnectPolicy(max_attempts=0)})  # fmt: skip
    with pool:
        pool.subscribe("T.AAPL")
        pool.wait_ready(10)
        first = pool.connections[0]
        server.publish([trade("AAPL", 1), trade("AAPL", 2)])
        assert trades_until(first, 2) == [1, 2]
        server.drop_all()
        assert wait_until(lambda: pool.connections and pool.connections[0] is not first, 10)
        pool.wait_ready(10)
        server.publish([trade("AAPL", 2), trade("AAPL", 3)])  # the server re-sends the last trade
        replacement = pool.connections[0]
        assert trades_until(replacement, 3) == [3]
        assert pool.stats().duplicates_suppressed == 1
        assert replacement.stats().duplicates_suppressed == 1


@pytest.mark.parametrize("dispatch", ["thread", "inline"])
def test_an_adapter_with_dedupe_calls_handlers_once_per_trade(server: MockMassiveServer, dispatch: str) -> None:
    got: queue.Queue[int] = queue.Queue()
    client = mrt.MassiveWebSocketClient(api_key=KEY, url=server.url(), subscriptions=["T.AAPL"])
    adapter = mrt.RealTimeDataAdapter(client, dispatch=dispatch, dedupe=True)
    adapter.on(mrt.EquityTrade, lambda t: got.put(t.sequence_number))
    with adapter:
        adapter.wait_ready(10)
        server.publish([trade("AAPL", 1), trade("AAPL", 1), trade("AAPL", 2)], batch=1)
        server.publish([trade("AAPL", 1), trade("AAPL", 2), trade("AAPL", 3)])
        assert [got.get(timeout=10) for _ in range(3)] == [1, 2, 3]
        assert wait_until(lambda: adapter.stats().duplicates_suppressed == 3, 5)
        assert got.empty()


@pytest.mark.parametrize("value", ["yes", -1, 1.5, None])
def test_bad_dedupe_values_are_refused(value: Any) -> None:
    for make in (
        lambda: mrt.MassiveWebSocketClient(api_key=KEY, dedupe=value),
        lambda: mrt.ConnectionPool(api_key=KEY, dedupe=value),
        lambda: mrt.RealTimeDataAdapter(mrt.SyntheticSource(["T.*"]), dedupe=value),
    ):
        with pytest.raises(mrt.ConfigurationError, match="dedupe") as caught:
            make()
        assert caught.value.field == "dedupe"


def test_a_pool_owns_its_filter() -> None:
    with pytest.raises(mrt.ConfigurationError, match="dedupe"):
        mrt.ConnectionPool(api_key=KEY, client_options={"dedupe": True})
