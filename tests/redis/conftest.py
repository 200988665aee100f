"""A real redis-server per test (free port on 127.0.0.1, own temp dir) and an upstream pipeline.

Without ``redis-server`` on PATH (or the ``redis`` package) these tests skip, unless
``MASSIVE_RT_REQUIRE_REDIS=1`` (CI), which turns the skip into a failure.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import massive_rt as mrt
from massive_rt.adapter import RealTimeDataAdapter
from massive_rt.connection import MassiveWebSocketClient
from massive_rt.testing import MockMassiveServer
from tests.conftest import wait_until

KEY = "test-key"
FAST = mrt.ReconnectPolicy(initial_delay=0.01, max_delay=0.05)
#: Backoff of the Redis ends in tests: quick, but not a hot loop.
QUICK = mrt.ReconnectPolicy(initial_delay=0.02, max_delay=0.2)
WAIT = 15.0


def _unavailable(server: bool) -> str | None:
    if server and shutil.which("redis-server") is None:
        return "redis-server is not on PATH (apt-get install redis-server)"
    try:
        import redis  # noqa: F401
    except ImportError:
        return "the redis package is not installed (pip install 'massive-rt[redis]')"
    return None


def require_redis(server: bool = True) -> None:
    """Skip (or fail under MASSIVE_RT_REQUIRE_REDIS=1) without redis-server on PATH (``server``) or
    the redis package."""
    reason = _unavailable(server)
    if reason is None:
        return
    if os.environ.get("MASSIVE_RT_REQUIRE_REDIS") == "1":
        pytest.fail(f"MASSIVE_RT_REQUIRE_REDIS=1 but {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One redis-server process; ``restart()`` keeps the port (and, with ``aof=True``, the data).

    ``extra`` are more ``redis-server`` arguments (e.g. ``("--rename-command", "CONFIG", "")``).
    """

    def __init__(self, directory: Path, aof: bool = False, extra: tuple[str, ...] = ()) -> None:
        self.directory = directory
        self.aof = aof
        self.extra = extra
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> Any:
        import redis

        return redis.Redis(port=self.port, socket_timeout=5)

    def start(self, port: int | None = None) -> RedisServer:
        for _ in range(5):  # a free port may be taken by another worker before redis binds it
            self.port = port or free_port()
            args = [
                "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
                "--save", "", "--appendonly", "yes" if self.aof else "no", "--appendfsync", "always",
                "--daemonize", "no", "--logfile", str(self.directory / "redis.log"), *self.extra,
            ]  # fmt: skip
            self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            proc = self.proc
            if wait_until(lambda p=proc: p.poll() is not None or self._pings(), 10.0) and proc.poll() is None:
                return self
            if port is not None:
                break
        raise RuntimeError(f"redis-server did not start: {(self.directory / 'redis.log').read_text()[-2000:]}")

    def _pings(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Graceful shutdown (SIGTERM): with AOF, everything acknowledged is on disk."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL, as a crash: nothing is saved on the way out."""
        proc = self.proc
        if proc is None:
            return
        proc.kill()
        proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start(self.port)

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    require_redis()
    server = RedisServer(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def aof_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    require_redis()
    server = RedisServer(tmp_path, aof=True).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mock_server() -> Iterator[MockMassiveServer]:
    with MockMassiveServer(api_keys={KEY}, name="redis-upstream") as srv:
        yield srv


class Recorder:
    """A handler that records every event and lets a test wait on a condition (no polling)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.market: list[mrt.Event] = []
        self.statuses: list[mrt.StatusMessage] = []

    def __call__(self, event: mrt.Event) -> None:
        with self.cond:
            if isinstance(event, mrt.StatusMessage):
                self.statuses.append(event)
            else:
                self.market.append(event)
            self.cond.notify_all()

    def wait(self, predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout)

    def wait_count(self, count: int, timeout: float = WAIT) -> bool:
        return self.wait(lambda: len(self.market) >= count, timeout)

    def events(self) -> list[mrt.Event]:
        with self.cond:
            return list(self.market)

    def by_stream(self) -> dict[tuple[str, str | None], list[mrt.Event]]:
        """Events per (upstream connection, ev): each is one stream's share, in order."""
        out: dict[tuple[str, str | None], list[mrt.Event]] = {}
        for event in self.events():
            out.setdefault((event.connection, event.event_type), []).append(event)  # type: ignore[attr-defined]
        return out


class Managed:
    """Collects things to stop at the end of a test, in reverse order."""

    def __init__(self) -> None:
        self.stoppers: list[Callable[[], object]] = []

    def add(self, stop: Callable[[], object]) -> None:
        self.stoppers.append(stop)


@pytest.fixture
def managed() -> Iterator[Managed]:
    m = Managed()
    yield m
    for stop in reversed(m.stoppers):
        stop()


def trades(start: int, count: int, sym: str = "AAPL") -> list[dict[str, object]]:
    return [{"ev": "T", "sym": sym, "p": 100.0 + (q % 100) / 8, "s": 100, "t": 1_700_000_000_000 + q, "q": q,
             "c": [12, 37], "x": 4} for q in range(start, start + count)]  # fmt: skip


def quotes(start: int, count: int, sym: str = "MSFT") -> list[dict[str, object]]:
    return [{"ev": "Q", "sym": sym, "bp": 400.0, "ap": 400.02 + q / 1000, "bs": 1, "as": 2, "t": 1_700_000_000_000 + q,
             "q": q} for q in range(start, start + count)]  # fmt: skip


def upstream_client(server: MockMassiveServer, channels: tuple[str, ...] = ("T.*", "Q.*")) -> MassiveWebSocketClient:
    return MassiveWebSocketClient(api_key=KEY, url=server.url(), subscriptions=channels, reconnect=FAST,
                                  name="up-stocks")  # fmt: skip


def start_adapter(adapter: RealTimeDataAdapter, managed: Managed) -> RealTimeDataAdapter:
    managed.add(adapter.stop)
    adapter.start()
    return adapter
