"""Fixtures: an upstream MockMassiveServer (one connection per key), relays on it, and downstream clients.

Everything a fixture starts is stopped by it, in reverse order; every thread is joined.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import massive_rt as mrt
from massive_rt.relay import MassiveRelay
from massive_rt.testing import MockMassiveServer
from tests._official import OfficialClient
from tests.relay._support import FAST, LOCAL_KEY, UP_KEY, RawClient


@pytest.fixture
def upstream() -> Iterator[MockMassiveServer]:
    """Plays Massive: accepts only the relay's key, and only one connection with it."""
    with MockMassiveServer(api_keys={UP_KEY}, max_connections=1, name="upstream", close_timeout=0.5) as server:
        yield server


Relays = Callable[..., MassiveRelay]


@pytest.fixture
def relays(upstream: MockMassiveServer) -> Iterator[Relays]:
    """``relays(**options)`` starts a relay on ``upstream`` (stopped after the test)."""
    made: list[MassiveRelay] = []

    def make(**options: Any) -> MassiveRelay:
        if "upstream" not in options:
            options.setdefault("api_key", UP_KEY)
            options.setdefault("url", upstream.url)
            options.setdefault("client_options", {"reconnect": FAST})
        options.setdefault("api_keys", {LOCAL_KEY})
        options.setdefault("close_timeout", 1.0)
        relay = MassiveRelay(**options)
        made.append(relay)
        return relay.start()

    yield make
    for relay in reversed(made):
        relay.stop()


@pytest.fixture
def relay(relays: Relays) -> MassiveRelay:
    return relays()


Clients = Callable[..., mrt.MassiveWebSocketClient]


@pytest.fixture
def clients() -> Iterator[Clients]:
    """``clients(url, *channels, **options)``: a started massive_rt client on the relay."""
    made: list[mrt.MassiveWebSocketClient] = []

    def make(url: str, *channels: str, **options: Any) -> mrt.MassiveWebSocketClient:
        options.setdefault("reconnect", FAST)
        options.setdefault("name", f"down-{len(made) + 1}")
        client = mrt.MassiveWebSocketClient(LOCAL_KEY, url=url, subscriptions=channels, **options)
        made.append(client)
        return client.start()

    yield make
    for client in made:
        client.stop()


RawClients = Callable[..., RawClient]


@pytest.fixture
def raw_clients() -> Iterator[RawClients]:
    made: list[RawClient] = []

    def make(url: str, **options: Any) -> RawClient:
        client = RawClient(url, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


Officials = Callable[..., OfficialClient]


@pytest.fixture
def officials() -> Iterator[Officials]:
    """Official clients; they end when their relay stops (the test stops it before this teardown)."""
    made: list[OfficialClient] = []

    def make(port: int, subscriptions: list[str]) -> OfficialClient:
        client = OfficialClient(port, "stocks", subscriptions, LOCAL_KEY)
        made.append(client)
        return client

    yield make
    for client in made:
        client.thread.join(10)
        assert not client.thread.is_alive(), "an official client outlived its relay"
