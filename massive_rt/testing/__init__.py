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

Requires the ``websockets`` package (``pip install massive-rt[testing]``). Importing this package
is cheap: the server module is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .rest import MockMassiveREST, RestFault, RestRequest
    from .server import ConnectionInfo, EventSource, MockMassiveServer, ReceivedMessage, StreamHandle

__all__ = [
    "ConnectionInfo",
    "EventSource",
    "MockMassiveREST",
    "MockMassiveServer",
    "PreparedFrames",
    "ReceivedMessage",
    "RestFault",
    "RestRequest",
    "StreamHandle",
]

_REST = {"MockMassiveREST", "RestFault", "RestRequest"}


def __getattr__(name: str) -> Any:
    if name in _REST:  # the standard library's HTTP server: no extra needed
        from . import rest

        return getattr(rest, name)
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
