"""Test helpers: :class:`MockMassiveServer`, a real local server that speaks Massive's protocol.

Use it to test services built on ``massive_rt`` (or any Massive client) without a key or a
network::

    from massive_rt.testing import MockMassiveServer

    with MockMassiveServer(api_keys={"test-key"}) as server:
        url = server.url("stocks")           # ws://127.0.0.1:<free port>/stocks
        ...                                  # connect your client to url with key "test-key"
        server.wait_for_subscribed(["T.AAPL"], timeout=5)
        server.publish([{"ev": "T", "sym": "AAPL", "p": 190.1, "s": 100, "t": 1_700_000_000_000}])
        server.drop_all()                    # abrupt disconnect: does your service reconnect?

With pytest, the ``massive_server`` fixture (registered by this package's pytest plugin) yields a
started server accepting the key ``"test-key"``; ``massive_rest`` yields a started
:class:`MockMassiveREST` (Massive's REST API for backfill and snapshots) recording what
``massive_server`` publishes.

:class:`FaultProxy` (``massive_rt.testing.faultproxy``) is a fault-injecting TCP proxy to put
between a client and a server (latency, throttling, segments, resets, blackholes, tarpits,
flapping); the ``fault_proxy`` fixture yields one in front of ``massive_server``. It needs no
extra package.

The mock server requires the ``websockets`` package (``pip install massive-rt[testing]``). Importing this package
is cheap: the server module is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .faultproxy import Direction, FaultProxy, FaultProxyStats, Faults
    from .rest import MockMassiveREST, RestFault, RestRequest
    from .server import ConnectionInfo, EventSource, MockMassiveServer, ReceivedMessage, ReplayHandle, StreamHandle

__all__ = [
    "ConnectionInfo",
    "Direction",
    "EventSource",
    "FaultProxy",
    "FaultProxyStats",
    "Faults",
    "MockMassiveREST",
    "MockMassiveServer",
    "PreparedFrames",
    "ReceivedMessage",
    "ReplayHandle",
    "RestFault",
    "RestRequest",
    "StreamHandle",
]

_REST = frozenset({"MockMassiveREST", "RestFault", "RestRequest"})
_FAULT_PROXY = frozenset({"Direction", "FaultProxy", "FaultProxyStats", "Faults"})


def __getattr__(name: str) -> Any:
    if name in _REST:  # the standard library's HTTP server: no extra needed
        from . import rest

        return getattr(rest, name)
    if name in _FAULT_PROXY:  # sockets and threads only: no extra needed
        from . import faultproxy

        return getattr(faultproxy, name)
    if name in __all__:
        try:
            from . import server
        except ModuleNotFoundError as exc:
            if exc.name == "websockets" or (exc.name or "").startswith("websockets."):
                raise ModuleNotFoundError(
                    "massive_rt.testing needs the 'websockets' package: pip install 'massive-rt[testing]'",
                    name=exc.name,
                ) from exc
            raise
        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
