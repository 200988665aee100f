"""The relay end to end with massive_rt clients only (no official client), so that ``make test-min``
runs it on the oldest ``websockets`` the ``relay`` extra admits; tests/relay covers the details."""

from __future__ import annotations

import queue

import massive_rt as mrt
from massive_rt.relay import MassiveRelay
from massive_rt.testing import MockMassiveServer

UP_KEY, LOCAL_KEY = "up-key", "local-key"
FAST = mrt.ReconnectPolicy(initial_delay=0.02, max_delay=0.1)


def test_a_relay_forwards_its_upstream_to_a_client_then_stops_with_every_thread() -> None:
    with MockMassiveServer(api_keys={UP_KEY}, max_connections=1, name="upstream", close_timeout=0.5) as upstream:
        relay = MassiveRelay(
            api_key=UP_KEY, url=upstream.url, api_keys={LOCAL_KEY}, client_options={"reconnect": FAST},
            close_timeout=1.0,
        ).start()  # fmt: skip
        client = mrt.MassiveWebSocketClient(
            api_key=LOCAL_KEY, url=relay.url("stocks"), subscriptions=["T.AAPL"], reconnect=FAST
        )
        try:
            with client:
                client.wait_ready(10)
                assert upstream.wait_for_subscribed(["T.AAPL"], 10)
                upstream.publish([{"ev": "T", "sym": "AAPL", "p": 190.5, "s": 100, "t": 1_700_000_000_000}])
                upstream.publish([{"ev": "T", "sym": "MSFT", "p": 410.0, "s": 5, "t": 1_700_000_000_001}])

                received = []
                while not received:
                    try:
                        event = client.get(timeout=10)
                    except queue.Empty:
                        break
                    if isinstance(event, mrt.EquityTrade):
                        received.append(event)
                assert [(t.symbol, t.price, t.size) for t in received] == [("AAPL", 190.5, 100)]
        finally:
            relay.stop()
        assert relay.active_connections() == []
