"""pytest plugin (entry point ``pytest11: massive_rt``): the ``massive_server``, ``massive_rest`` and
``fault_proxy`` fixtures.

Kept import-light on purpose: installing massive_rt must not slow down or break anyone else's
pytest run, so the server (and ``websockets``) is imported only when a test uses the fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .faultproxy import FaultProxy
    from .rest import MockMassiveREST
    from .server import MockMassiveServer

__all__ = ["fault_proxy", "massive_rest", "massive_server"]


@pytest.fixture
def massive_server() -> Iterator[MockMassiveServer]:
    """A started :class:`~massive_rt.testing.MockMassiveServer` accepting the key ``"test-key"``.

    Function-scoped; closed (every connection and thread) after the test. Without ``websockets``
    installed, the test errors with the install hint (``pip install 'massive-rt[testing]'``).
    """
    from . import MockMassiveServer  # the package's lazy import: it turns a missing websockets into the hint

    server = MockMassiveServer(api_keys={"test-key"}, name="fixture")
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def massive_rest(massive_server: MockMassiveServer) -> Iterator[MockMassiveREST]:
    """A started :class:`~massive_rt.testing.MockMassiveREST` accepting ``"test-key"``, whose history
    is everything the ``massive_server`` fixture publishes (point ``rest_url=`` at ``massive_rest.url``).

    Function-scoped; closed (every thread) after the test.
    """
    from .rest import MockMassiveREST

    rest = MockMassiveREST(api_keys={"test-key"}, ws=massive_server, name="fixture")
    rest.start()
    try:
        yield rest
    finally:
        rest.close()


@pytest.fixture
def fault_proxy(massive_server: MockMassiveServer) -> Iterator[FaultProxy]:
    """A started :class:`~massive_rt.testing.FaultProxy` in front of ``massive_server``, no faults.

    Connect clients to ``fault_proxy.url("stocks")``; change faults while they run
    (``fault_proxy.set_faults("downstream", blackhole=True)``). Closed, every connection and
    thread, after the test (before the server).
    """
    from .faultproxy import FaultProxy

    with FaultProxy(("127.0.0.1", massive_server.port), name="fixture") as proxy:
        yield proxy
