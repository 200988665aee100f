"""One rule for every object with a lifecycle: start after stop raises ClientClosedError (also a
RuntimeError), whatever it is — client, pool, adapter, sources, the mock server, the relay."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import massive_rt as mrt
from massive_rt.redis import RedisStreamSource
from massive_rt.relay import MassiveRelay
from massive_rt.testing import MockMassiveServer


@pytest.fixture
def upstream() -> Iterator[MockMassiveServer]:
    with MockMassiveServer(api_keys=None) as server:
        yield server


def lifecycles(upstream: MockMassiveServer) -> dict[str, tuple[Callable[[], Any], str]]:
    return {
        "client": (lambda: mrt.MassiveWebSocketClient(api_key="k", url=upstream.url()), "stop"),
        "pool": (lambda: mrt.ConnectionPool(api_key="k", url=upstream.url), "stop"),
        "adapter": (lambda: mrt.RealTimeDataAdapter(mrt.SyntheticSource(["T.*"])), "stop"),
        "synthetic source": (lambda: mrt.SyntheticSource(["T.*"]), "stop"),
        "redis source": (lambda: RedisStreamSource("redis://127.0.0.1:1/0", ["s"]), "stop"),
        "mock server": (lambda: MockMassiveServer(), "close"),
        "relay": (lambda: MassiveRelay(api_key="k", url=upstream.url), "stop"),
    }


@pytest.mark.parametrize(
    "kind", ["client", "pool", "adapter", "synthetic source", "redis source", "mock server", "relay"]
)
def test_start_after_stop_raises_client_closed_error(upstream: MockMassiveServer, kind: str) -> None:
    make, stop = lifecycles(upstream)[kind]
    thing = make()
    thing.start()
    getattr(thing, stop)()
    with pytest.raises(mrt.ClientClosedError, match=r"create a new one|stopped|closed") as caught:
        thing.start()
    assert isinstance(caught.value, RuntimeError)
    getattr(thing, stop)()  # stopping again stays harmless
