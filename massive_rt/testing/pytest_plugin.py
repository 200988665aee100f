"""pytest plugin (entry point ``pytest11: massive_rt``): the ``massive_server`` and ``massive_rest`` fixtures.

Kept import-light on purpose: installing massive_rt must not slow down or break anyone else's
pytest run, so the server (and ``websockets``) is imported only when a test uses the fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .rest import MockMassiveREST
    from .server import MockMassiveServer

__all__ = ["massive_rest", "massive_server"]


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
