"""Shared fixtures and helpers. Every server a test starts stops by itself; no thread outlives a test;
no ERROR is logged by massive_rt unless the test says it provokes it."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

import massive_rt as mrt
from massive_rt.connection import MassiveWebSocketClient
from massive_rt.pool import ConnectionPool
from tests.support import FAST, KEY

if TYPE_CHECKING:
    from massive_rt.testing import MockMassiveServer

pytest_plugins = ["pytester"]

THREAD_PREFIX = "massive-rt-"
GUARDED_LOGGER = "massive_rt"


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.002) -> bool:
    """Wait until ``predicate()`` is true or ``timeout`` passes; return the last result.

    For state that offers no event to wait on; prefer events, queues and conditions.
    """
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        if predicate():
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return bool(predicate())
        pause.wait(min(interval, remaining))


def _library_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX) and t.is_alive()}


class _ErrorRecords(logging.Handler):
    """Keeps every ERROR and CRITICAL record (from any thread) that reaches the ``massive_rt`` logger."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _allowed_errors(item: pytest.Item) -> list[tuple[re.Pattern[str], str]]:
    """The ``allow_errors`` markers of ``item`` (and of its class and module): ``(regex, logger)`` pairs."""
    allowed: list[tuple[re.Pattern[str], str]] = []
    for marker in item.iter_markers("allow_errors"):
        logger = marker.kwargs.get("logger")
        if (
            not marker.args or set(marker.kwargs) != {"logger"} or not isinstance(logger, str)
            or not (logger == GUARDED_LOGGER or logger.startswith(GUARDED_LOGGER + "."))
            or not all(isinstance(pattern, str) for pattern in marker.args)
        ):  # fmt: skip
            pytest.fail(f"usage: @pytest.mark.allow_errors(r'message regex', ..., logger='massive_rt.<module>'), "
                        f"got {marker}", pytrace=False)  # fmt: skip
        allowed.extend((re.compile(pattern), logger) for pattern in marker.args)
    return allowed


def _describe(record: logging.LogRecord) -> str:
    text = f"{record.levelname} {record.name} [{record.threadName}]: {record.getMessage()}"
    if record.exc_info and record.exc_info[0] is not None:
        text += f" ({record.exc_info[0].__name__}: {record.exc_info[1]})"
    return text


@pytest.fixture(autouse=True)
def no_unexpected_error_logs(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test during which massive_rt logged an ERROR or CRITICAL record it did not allow.

    A supervisor or reader loop that catches an exception logs it and carries on, so without
    this a bug there passes silently. A test that provokes such a record on purpose allows it,
    narrowly: ``@pytest.mark.allow_errors(r"regex searched in the message", logger="massive_rt.pool")``
    (several regexes and several markers may be given; each record must match a regex of a
    marker whose logger is exactly its logger). Set up before ``no_thread_leaks`` and checked
    after it, so the records of the test's threads, to their end, are all in.
    """
    allowed = _allowed_errors(request.node)
    handler = _ErrorRecords()
    package_logger = logging.getLogger(GUARDED_LOGGER)
    package_logger.addHandler(handler)
    try:
        yield
    finally:
        package_logger.removeHandler(handler)
    unexpected = [
        record for record in handler.records
        if not any(record.name == logger and pattern.search(record.getMessage()) for pattern, logger in allowed)
    ]  # fmt: skip
    if unexpected:
        lines = "\n  ".join(_describe(record) for record in unexpected)
        pytest.fail(f"massive_rt logged {len(unexpected)} unexpected ERROR/CRITICAL record(s) during this test "
                    f"(allow one provoked on purpose with @pytest.mark.allow_errors(regex, logger=...)):\n  {lines}",
                    pytrace=False)  # fmt: skip


@pytest.fixture(autouse=True)
def no_thread_leaks(no_unexpected_error_logs: None) -> Iterator[None]:
    """Fail a test that leaves a ``massive-rt-*`` thread running after it ends."""
    before = _library_threads()
    yield
    leaked: set[threading.Thread] = set()

    def settled() -> bool:
        nonlocal leaked
        leaked = _library_threads() - before
        return not leaked

    if not wait_until(settled, timeout=10.0):
        pytest.fail(f"threads leaked by this test: {sorted(t.name for t in leaked)}")


# ----------------------------------------------------------------------------- shared servers and sources
# A module that needs a differently configured server (a limit, entitlements, another key) defines
# its own ``server`` fixture; the factories below then use that one.


@pytest.fixture
def server(massive_server: MockMassiveServer) -> MockMassiveServer:
    """The public ``massive_server`` fixture (a started mock accepting :data:`tests.support.KEY`)."""
    return massive_server


@pytest.fixture
def make_client(server: MockMassiveServer) -> Iterator[Callable[..., MassiveWebSocketClient]]:
    """Clients of ``server`` (stocks) with a fast reconnect policy, stopped after the test."""
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


@pytest.fixture
def make_pool(server: MockMassiveServer) -> Iterator[Callable[..., ConnectionPool]]:
    """Pools of up to 3 connections to ``server`` (health checks every 50 ms, fast reconnects;
    ``client_options`` given are merged over the fast policy), stopped after the test."""
    pools: list[ConnectionPool] = []

    def make(**kwargs: Any) -> ConnectionPool:
        client_options = {"reconnect": FAST, **kwargs.pop("client_options", {})}
        options: dict[str, Any] = {"api_key": KEY, "max_connections": 3, "url": server.url, "health_interval": 0.05,
                                   "client_options": client_options}  # fmt: skip
        options.update(kwargs)
        pool = ConnectionPool(**options)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.stop()


@pytest.fixture
def make_adapter() -> Iterator[Callable[..., mrt.RealTimeDataAdapter]]:
    """Adapters over any source (``make(source, **options)``), stopped after the test."""
    adapters: list[mrt.RealTimeDataAdapter] = []

    def make(source: Any, **kwargs: Any) -> mrt.RealTimeDataAdapter:
        adapter = mrt.RealTimeDataAdapter(source, **kwargs)
        adapters.append(adapter)
        return adapter

    yield make
    for adapter in adapters:
        adapter.stop()
