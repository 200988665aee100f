"""Fixtures of the compat suite: a mock server per test, and no API key or logger level leaking in
from the environment or from one test to the next."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from massive_rt.compat import client as compat_client
from massive_rt.testing import MockMassiveServer
from tests.compat._support import KEY, OFFICIAL_KEY


@pytest.fixture
def server() -> Iterator[MockMassiveServer]:
    """A started mock server accepting our key and the official client's key."""
    with MockMassiveServer(api_keys=(KEY, OFFICIAL_KEY), name="compat") as srv:
        yield srv


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No key from the developer's environment; ``verbose=True`` (which sets the compat logger to
    DEBUG, like the official client does to its own) does not outlive the test."""
    for name in compat_client.ENV_KEYS:
        monkeypatch.delenv(name, raising=False)
    level = compat_client.logger.level
    yield
    compat_client.logger.setLevel(level)


@pytest.fixture
def host(server: MockMassiveServer) -> str:
    """The ``feed`` that points a client at the mock server (with ``secure=False``)."""
    return f"127.0.0.1:{server.port}"
