"""Name resolution counts against ``connect_timeout`` and ``stop()`` interrupts it (issue 18, point 4).

A hung system resolver is simulated by replacing ``socket.getaddrinfo`` (what the library calls,
old code and new), or through the documented hook ``massive_rt.resolver.lookup``.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

import massive_rt as mrt
from massive_rt import resolver
from tests.conftest import wait_until

HOST = "massive-rt-hung-dns.invalid"
NO_RETRY = mrt.ReconnectPolicy(max_attempts=0)


@pytest.fixture
def hung(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, str], list[str]]]:
    """``hung(module_attr)``: make that lookup hang until the test ends; returns the hosts asked for."""
    release = threading.Event()
    asked: list[str] = []

    def install(target: str, attr: str) -> list[str]:
        def hang(host: str, *args: object, **kwargs: object) -> list[object]:
            asked.append(host)
            release.wait(60)
            raise socket.gaierror(socket.EAI_AGAIN, "released by the test")

        monkeypatch.setattr(socket if target == "socket" else resolver, attr, hang)
        return asked

    yield install
    release.set()  # the abandoned resolver threads end before the thread-leak check


def reader_alive(client: mrt.MassiveWebSocketClient) -> bool:
    return any(t.name == f"massive-rt-reader-{client.name}" and t.is_alive() for t in threading.enumerate())


@pytest.mark.allow_errors(r"DNS resolution of .* did not finish within connect_timeout", logger="massive_rt.connection")
def test_a_hung_resolver_fails_the_attempt_within_connect_timeout(hung) -> None:
    asked = hung("socket", "getaddrinfo")
    client = mrt.MassiveWebSocketClient(api_key="k", url=f"ws://{HOST}:9/stocks", connect_timeout=0.5,
                                        reconnect=NO_RETRY)  # fmt: skip
    with client:
        # Not a WaitTimeoutError in CONNECTING: the one attempt fails at its connect deadline.
        with pytest.raises(mrt.ConnectionClosedError, match=rf"DNS resolution of {HOST} did not finish within "
                           r"connect_timeout=0.5s"):  # fmt: skip
            client.wait_ready(10)
        assert client.state is mrt.ConnectionState.FAILED
    assert asked == [HOST]


def test_stop_interrupts_a_hung_resolution(hung) -> None:
    asked = hung("socket", "getaddrinfo")
    client = mrt.MassiveWebSocketClient(api_key="k", url=f"ws://{HOST}:9/stocks", connect_timeout=3600)
    client.start()
    assert wait_until(lambda: asked == [HOST])
    assert client.state is mrt.ConnectionState.CONNECTING
    client.stop(2.0)
    assert not reader_alive(client)
    assert client.state is mrt.ConnectionState.STOPPED


def test_an_abandoned_resolution_is_counted_and_the_client_retries(hung) -> None:
    asked = hung("resolver", "lookup")
    before = resolver.abandoned_resolutions()
    client = mrt.MassiveWebSocketClient(api_key="k", url=f"ws://{HOST}:9/stocks", connect_timeout=0.2,
                                        reconnect=mrt.ReconnectPolicy(initial_delay=0.01, max_delay=0.01))  # fmt: skip
    with client:
        assert wait_until(lambda: resolver.abandoned_resolutions() - before >= 3, timeout=10)  # attempts go on
        assert "DNS resolution" in (client.stats().last_error or "")
        # ... waiting on the one lookup still hung: a hung resolver costs one thread, not one per attempt
        assert asked == [HOST]
        resolving = [t for t in threading.enumerate() if t.name.startswith("massive-rt-resolve-") and t.is_alive()]
        assert len(resolving) == 1


@pytest.mark.allow_errors(r"gave up after 1 consecutive failed attempts", logger="massive_rt.connection")
def test_a_literal_ip_is_resolved_without_a_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[str] = []
    real_start = threading.Thread.start

    def spy(self: threading.Thread) -> None:
        started.append(self.name)
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", spy)
    assert resolver.is_ip_literal("127.0.0.1")
    assert resolver.is_ip_literal("::1")
    assert not resolver.is_ip_literal("localhost")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = mrt.MassiveWebSocketClient(api_key="k", url=f"ws://127.0.0.1:{listener.getsockname()[1]}/stocks",
                                            connect_timeout=0.3, reconnect=NO_RETRY)  # fmt: skip
        with client:
            assert wait_until(lambda: client.state is not mrt.ConnectionState.CONNECTING
                              and client.stats().last_error is not None)  # fmt: skip
    assert any(name.startswith("massive-rt-reader-") for name in started)
    assert not [name for name in started if name.startswith("massive-rt-resolve-")]
