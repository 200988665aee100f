"""Fixtures shared by the integration suites (each module provides its own ``server``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import massive_rt as mrt
from massive_rt.connection import MassiveWebSocketClient
from massive_rt.testing import MockMassiveServer

KEY = "test-key"
FAST = mrt.ReconnectPolicy(initial_delay=0.01, max_delay=0.05)


@pytest.fixture
def make_client(server: MockMassiveServer) -> Iterator[Callable[..., MassiveWebSocketClient]]:
    """Clients of the module's ``server`` with a fast reconnect policy, stopped after the test."""
    clients: list[MassiveWebSocketClient] = []

    def make(**kwargs: Any) -> MassiveWebSocketClient:
        options: dict[str, Any] = {"api_key": KEY, "url": server.url("stocks"), "reconnect": FAST}
        options.update(kwargs)
        client = MassiveWebSocketClient(**options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.stop()
