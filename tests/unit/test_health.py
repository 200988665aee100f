"""Health snapshots: ``stats().healthy``/``health_reason`` and ``to_dict()`` for a health endpoint."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

import massive_rt as mrt
from massive_rt.testing import MockMassiveServer
from tests.conftest import wait_until

KEY = "SECRET-test-key-4242"


@pytest.fixture
def server() -> Iterator[MockMassiveServer]:
    with MockMassiveServer(api_keys={KEY}) as srv:
        yield srv


def test_a_streaming_client_is_healthy_and_its_snapshot_is_json(server: MockMassiveServer) -> None:
    with mrt.MassiveWebSocketClient(api_key=KEY, url=server.url(), subscriptions=["T.AAPL"]) as client:
        before = client.stats()
        assert (before.healthy, before.health_reason is not None) == (False, True)  # not streaming yet
        client.wait_ready(5)
        stats = client.stats()
        assert (stats.healthy, stats.health_reason) == (True, None)
        data = stats.to_dict()
        assert data["state"] == "streaming"
        assert data["healthy"] is True
        assert data["name"] == client.name
        text = json.dumps(data)
        assert KEY not in text
        assert json.loads(text) == data


def test_a_silent_connection_is_unhealthy_past_the_age_threshold(server: MockMassiveServer) -> None:
    with mrt.MassiveWebSocketClient(api_key=KEY, url=server.url(), subscriptions=["T.AAPL"]) as client:
        client.wait_ready(5)
        assert wait_until(lambda: (client.stats().last_message_age or 0) > 0.05, 5)
        stale = client.stats(max_message_age=0.05)
        assert stale.healthy is False
        assert (stale.health_reason or "").startswith("no message for ")
        assert client.stats(max_message_age=60).healthy is True


def test_the_default_age_threshold_follows_the_pings() -> None:
    with MockMassiveServer(api_keys={KEY}) as srv:
        client = mrt.MassiveWebSocketClient(api_key=KEY, url=srv.url(), ping_interval=0.05, ping_timeout=0.05)
        with client:
            client.wait_ready(5)
            srv.stall()  # no pong, no data: the reader drops it after ping_timeout, and says why
            assert wait_until(lambda: not client.stats().healthy, 5)
            reason = client.stats().health_reason or ""
            assert reason.startswith(("no message for", "state "))


@pytest.mark.allow_errors(r"failed: authentication failed$", logger="massive_rt.connection")
def test_a_failed_client_says_why(server: MockMassiveServer) -> None:
    with mrt.MassiveWebSocketClient(api_key="wrong", url=server.url()) as client:
        assert wait_until(lambda: client.state is mrt.ConnectionState.FAILED, 5)
        stats = client.stats()
        assert (stats.healthy, stats.health_reason) == (False, "state failed: authentication failed")


def test_pool_and_adapter_snapshots_nest_and_stay_secret_free(server: MockMassiveServer) -> None:
    pool = mrt.ConnectionPool(api_key=KEY, url=server.url, max_connections=2, max_subscriptions_per_connection=1)
    assert pool.stats().health_reason == "pool is not started"
    pool.subscribe("T.AAPL", "T.MSFT")
    adapter = mrt.RealTimeDataAdapter(pool)
    assert adapter.stats().health_reason == "adapter new"
    with adapter:
        adapter.wait_ready(5)
        stats = adapter.stats()
        assert (stats.healthy, stats.state, stats.source.healthy) == (True, mrt.AdapterState.RUNNING, True)
        data = adapter.stats().to_dict()
        assert data["state"] == "running"
        assert [c["state"] for c in data["source"]["per_connection"]] == ["streaming", "streaming"]
        assert data["source"]["failed"] == []
        assert data["source"]["degraded"] is False
        assert KEY not in json.dumps(data)
    stopped = adapter.stats()
    assert (stopped.healthy, stopped.health_reason) == (False, "adapter stopped")


def test_a_synthetic_source_is_healthy_while_it_streams() -> None:
    adapter = mrt.RealTimeDataAdapter(mrt.SyntheticSource(["T.*"], seed=9))
    with adapter:
        assert wait_until(lambda: adapter.stats().healthy, 5)
        assert adapter.stats().to_dict()["source"]["state"] == "streaming"
