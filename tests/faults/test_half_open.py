"""Half-open detection, measured through a blackholing FaultProxy (issue 18, point 5).

The documented bound (README, ClientConfig): a connection that stops delivering anything is
declared lost more than ``ping_timeout`` and at most ``ping_interval + ping_timeout`` after the
last byte it received.
"""

from __future__ import annotations

import time

import pytest

import massive_rt as mrt
from massive_rt.testing import Direction, FaultProxy, MockMassiveServer
from tests.conftest import wait_until

KEY = "test-key"
PING_INTERVAL = 1.0
PING_TIMEOUT = 1.0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("flowing", [False, True], ids=["quiet", "data-flowing"])
def test_a_blackholed_connection_is_declared_lost_within_the_documented_bound(
    fault_proxy: FaultProxy, massive_server: MockMassiveServer, flowing: bool
) -> None:
    client = mrt.MassiveWebSocketClient(api_key=KEY, url=fault_proxy.url("stocks"), subscriptions=["T.AAPL"],
                                        ping_interval=PING_INTERVAL, ping_timeout=PING_TIMEOUT, connect_timeout=1.0,
                                        reconnect=mrt.ReconnectPolicy(initial_delay=60, max_delay=60))  # fmt: skip
    with client:
        client.wait_ready(10)
        if flowing:
            massive_server.publish([{"ev": "T", "sym": "AAPL", "p": 1.0, "s": 1, "t": 1}])
            assert wait_until(lambda: client.stats().frames_received >= 3)  # connected, auth, ack, the trade
        # Let pings and pongs go round once, so the watch state is whatever steady state gives.
        pings = client.stats().pings_sent
        assert wait_until(lambda: client.stats().pings_sent > pings, timeout=5)
        blackholed_at = time.monotonic()
        fault_proxy.set_faults(Direction.BOTH, blackhole=True)
        if flowing:  # published into the blackhole: held by the proxy, never reaches the client
            massive_server.publish([{"ev": "T", "sym": "AAPL", "p": 1.0, "s": 2, "t": 2}])
        assert wait_until(lambda: client.state is not mrt.ConnectionState.STREAMING, timeout=10)
        detected_at = time.monotonic()
        last_byte_sent = fault_proxy.stats().last_downstream_at
        assert client.stats().last_error == f"no pong and no data within ping_timeout={PING_TIMEOUT}s"
        fault_proxy.clear_faults()
    assert last_byte_sent is not None
    # Never earlier than ping_timeout after the last byte the proxy let through (the client read it
    # no earlier than it was sent).
    assert detected_at - last_byte_sent >= PING_TIMEOUT
    # At most ping_interval + ping_timeout after it; the slack is for a loaded machine.
    assert detected_at - blackholed_at < PING_INTERVAL + 2 * PING_TIMEOUT
