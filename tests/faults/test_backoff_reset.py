"""The backoff counter resets after a session that delivered data (issue 18, point 5):
``ReconnectPolicy.reset_on_data``. Observed through the BACKOFF statuses' attempt numbers."""

from __future__ import annotations

import re

import pytest

import massive_rt as mrt
from massive_rt.testing import MockMassiveServer

KEY = "test-key"
SLOW_RESET = {"initial_delay": 0.01, "max_delay": 0.01, "reset_after": 3600, "min_data_session": 0.0}


def next_backoff_attempt(client: mrt.MassiveWebSocketClient) -> int:
    """The attempt number of the next BACKOFF status (``... reconnecting in 0.01s (attempt N)``)."""
    while True:
        event = client.get(timeout=10)
        if isinstance(event, mrt.StatusMessage) and event.state is mrt.ConnectionState.BACKOFF:
            match = re.search(r"\(attempt (\d+)\)$", event.message or "")
            assert match, event.message
            return int(match.group(1))


def lose_sessions(
    server: MockMassiveServer, client: mrt.MassiveWebSocketClient, count: int, with_data: bool
) -> list[int]:
    attempts = []
    for n in range(count):
        client.wait_ready(10)
        if with_data:
            server.publish([{"ev": "T", "sym": "AAPL", "p": 1.0, "s": n + 1, "t": 1}])
            while not isinstance(client.get(timeout=10), mrt.EquityTrade):
                pass
        server.drop_all()
        attempts.append(next_backoff_attempt(client))
    return attempts


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("reset_on_data", "with_data", "expected"), [
    (True, True, [1, 1, 1]),    # each session delivered data: the counter starts again
    (True, False, [1, 2, 3]),   # streamed but nothing delivered: the backoff keeps growing
    (False, True, [1, 2, 3]),   # the old rule: only reset_after of streaming resets it
])  # fmt: skip
def test_a_session_that_delivered_data_resets_the_attempt_counter(
    massive_server: MockMassiveServer, reset_on_data: bool, with_data: bool, expected: list[int]
) -> None:
    policy = mrt.ReconnectPolicy(reset_on_data=reset_on_data, **SLOW_RESET)  # type: ignore[arg-type]
    client = mrt.MassiveWebSocketClient(api_key=KEY, url=massive_server.url("stocks"), subscriptions=["T.AAPL"],
                                        reconnect=policy)  # fmt: skip
    with client:
        assert lose_sessions(massive_server, client, 3, with_data) == expected


@pytest.mark.timeout(30)
def test_sessions_shorter_than_min_data_session_do_not_reset_it(massive_server: MockMassiveServer) -> None:
    """A server that sends a frame and drops at once gets the growing backoff, not a reconnect storm."""
    policy = mrt.ReconnectPolicy(**{**SLOW_RESET, "min_data_session": 3600})  # type: ignore[arg-type]
    client = mrt.MassiveWebSocketClient(api_key=KEY, url=massive_server.url("stocks"), subscriptions=["T.AAPL"],
                                        reconnect=policy)  # fmt: skip
    with client:
        assert lose_sessions(massive_server, client, 3, with_data=True) == [1, 2, 3]


def test_reset_on_data_is_validated() -> None:
    with pytest.raises(mrt.ConfigurationError, match="reset_on_data"):
        mrt.ReconnectPolicy(reset_on_data="yes")  # type: ignore[arg-type]
    with pytest.raises(mrt.ConfigurationError, match="min_data_session"):
        mrt.ReconnectPolicy(min_data_session=-1)
