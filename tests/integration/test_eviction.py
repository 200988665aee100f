"""The connection limit ends a connection in two ways, each with its own status and policy:
refused at connect (``limit_refused``, fails by default) and evicted after streaming
(``evicted``, retried after a long cooldown by default). Against MockMassiveServer with
``max_connections=1`` and Massive's reported ``evict="oldest"``: two clients, two pools, and a
relay behind one key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import massive_rt as mrt
from massive_rt.relay import MassiveRelay
from massive_rt.testing import MockMassiveServer
from tests.conftest import wait_until
from tests.support import FAST, KEY

LOCAL = "local-key"
# reset_after=0: any session that reached streaming counts as having streamed (no sleeping in
# tests); the default 30 s keeps a connection refused within seconds of connecting "refused".
STREAMED = mrt.ReconnectPolicy(initial_delay=0.01, max_delay=0.05, reset_after=0.0)


def limit_statuses(events: list[mrt.Event]) -> list[mrt.StatusMessage]:
    wanted = ("max_connections", "evicted", "limit_refused", "limit_cooldown", "failed")
    return [e for e in events if isinstance(e, mrt.StatusMessage) and e.status in wanted]


@pytest.fixture
def oldest() -> Iterator[MockMassiveServer]:
    with MockMassiveServer(api_keys={KEY}, max_connections=1, evict="oldest", close_timeout=0.5) as server:
        yield server


def test_an_evicted_client_reports_evicted_and_waits_a_long_cooldown(oldest: MockMassiveServer) -> None:
    with mrt.MassiveWebSocketClient(api_key=KEY, url=oldest.url(), subscriptions=["T.AAPL"], reconnect=STREAMED,
                                    name="long-running") as first:  # fmt: skip
        first.wait_ready(5)
        with mrt.MassiveWebSocketClient(api_key=KEY, url=oldest.url(), subscriptions=["T.MSFT"], reconnect=FAST,
                                        name="newcomer") as second:  # fmt: skip
            second.wait_ready(5)
            assert wait_until(lambda: first.state is mrt.ConnectionState.BACKOFF, 5)
            statuses = limit_statuses(first.drain())
            assert [s.status for s in statuses] == ["max_connections", "evicted", "limit_cooldown"]
            evicted = statuses[1]
            assert isinstance(evicted.error, mrt.ConnectionLimitError)
            assert evicted.error.evicted
            assert evicted.message.startswith("evicted after streaming ")
            assert "retrying in 60s" in statuses[2].message
            # The evicted one does not come straight back to evict the newcomer.
            assert not oldest.wait_for(lambda: len(oldest.connections) > 2, 1.0)
            assert second.state is mrt.ConnectionState.STREAMING
            assert first.error is None  # not failed: it will retry


@pytest.mark.allow_errors(
    r"failed: refused at connect: the account's connection limit is reached",
    logger="massive_rt.connection",
)
def test_a_client_refused_at_connect_reports_limit_refused_and_fails() -> None:
    with (
        MockMassiveServer(api_keys={KEY}, max_connections=1, evict="newest") as newest,
        mrt.MassiveWebSocketClient(api_key=KEY, url=newest.url(), reconnect=FAST) as holder,
    ):
        holder.wait_ready(5)
        with mrt.MassiveWebSocketClient(api_key=KEY, url=newest.url(), reconnect=FAST) as refused:
            assert wait_until(lambda: refused.state is mrt.ConnectionState.FAILED, 5)
            with pytest.raises(mrt.ConnectionLimitError, match="refused at connect") as caught:
                refused.wait_ready(5)
            assert not caught.value.evicted
            statuses = limit_statuses(refused.drain())
            assert [s.status for s in statuses] == ["max_connections", "limit_refused", "failed"]
            assert len(newest.connections) == 2  # never retried
            assert holder.state is mrt.ConnectionState.STREAMING


@pytest.mark.allow_errors(
    r"failed: evicted after streaming \S+: another connection on this key took the slot",
    logger="massive_rt.connection",
)
def test_on_limit_fail_fails_an_evicted_client_too(oldest: MockMassiveServer) -> None:
    with mrt.MassiveWebSocketClient(api_key=KEY, url=oldest.url(), reconnect=STREAMED, on_limit="fail") as first:
        first.wait_ready(5)
        with mrt.MassiveWebSocketClient(api_key=KEY, url=oldest.url(), reconnect=FAST) as second:
            second.wait_ready(5)
            assert wait_until(lambda: first.state is mrt.ConnectionState.FAILED, 5)
            assert isinstance(first.error, mrt.ConnectionLimitError)
            assert first.error.evicted
            assert [s.status for s in limit_statuses(first.drain())] == ["max_connections", "evicted", "failed"]


@pytest.mark.allow_errors(
    r"failed: evicted after streaming \S+: another connection on this key took the slot",
    logger="massive_rt.connection",
)
def test_an_evicted_pool_connection_is_replaced_after_the_cooldown_not_at_once(oldest: MockMassiveServer) -> None:
    first = mrt.ConnectionPool(api_key=KEY, url=oldest.url, health_interval=0.01, name="first",
                               client_options={"reconnect": STREAMED})  # fmt: skip
    second = mrt.ConnectionPool(api_key=KEY, url=oldest.url, health_interval=0.01, name="second",
                                client_options={"reconnect": FAST})  # fmt: skip
    try:
        first.subscribe("T.AAPL")
        first.start().wait_ready(5)
        victim = first.connections[0]
        second.subscribe("T.MSFT")
        second.start().wait_ready(5)
        assert wait_until(lambda: victim.state is mrt.ConnectionState.FAILED, 5)
        assert isinstance(victim.error, mrt.ConnectionLimitError)
        assert victim.error.evicted

        def cooling_down() -> bool:
            first.check_health()
            return any(s.status == "limit_cooldown" for s in limit_statuses(list(victim.drain())))

        assert wait_until(cooling_down, 5)
        assert first.stats().failed == ()  # it will be replaced: not failed for good
        assert first.error is None
        for _ in range(20):
            first.check_health()
            second.check_health()
        assert len(oldest.connections) == 2  # no fight: one eviction, the retry an hour's budget away
        assert second.stats().healthy
    finally:
        first.stop()
        second.stop()


@pytest.mark.allow_errors(
    r"failed: evicted after streaming \S+: another connection on this key took the slot",
    logger="massive_rt.connection",
)
def test_a_relay_evicted_upstream_waits_its_cooldown_while_the_other_holder_streams(
    oldest: MockMassiveServer,
) -> None:
    relay = MassiveRelay(api_key=KEY, url=oldest.url, api_keys={LOCAL}, close_timeout=1.0,
                         client_options={"reconnect": STREAMED})  # fmt: skip
    with relay, mrt.MassiveWebSocketClient(api_key=LOCAL, url=relay.url(), subscriptions=["T.AAPL"]) as downstream:
        downstream.wait_ready(5)
        assert oldest.wait_for_subscribed(["T.AAPL"], 5)
        with mrt.MassiveWebSocketClient(api_key=KEY, url=oldest.url(), reconnect=FAST) as other:
            other.wait_ready(5)
            upstream = relay.upstream

            def evicted() -> bool:
                stats = upstream.stats()
                return any("evicted after streaming" in (c.last_error or "") for c in stats.per_connection)

            assert wait_until(evicted, 5)
            assert not oldest.wait_for(lambda: len(oldest.connections) > 2, 1.0)
            assert upstream.stats().failed == ()
            assert other.state is mrt.ConnectionState.STREAMING
