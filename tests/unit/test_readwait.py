"""The reader's wait (massive_rt._readwait.ReadWait): which of the socket and the wake-up pipe is
readable, on epoll and on the selector fallback, with hang-ups reported as readable and nothing
left open but the sockets."""

from __future__ import annotations

import os
import select
import selectors
import socket
from collections.abc import Iterator

import pytest

from massive_rt._readwait import ReadWait

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(params=["epoll", "selector", "green selector"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "selector":  # a platform without epoll
        monkeypatch.delattr(select, "epoll", raising=False)
    elif request.param == "green selector":  # what gevent or eventlet monkey-patching does
        monkeypatch.setattr(selectors, "DefaultSelector", selectors.SelectSelector)
    elif selectors.DefaultSelector is not getattr(selectors, "EpollSelector", None):
        pytest.skip("no epoll on this platform")
    return str(request.param)


@pytest.fixture
def pairs() -> Iterator[tuple[socket.socket, socket.socket, socket.socket, socket.socket]]:
    sock, peer = socket.socketpair()
    wake_r, wake_w = socket.socketpair()
    yield sock, peer, wake_r, wake_w
    for s in (sock, peer, wake_r, wake_w):
        s.close()


def test_it_tells_which_is_readable(
    backend: str, pairs: tuple[socket.socket, socket.socket, socket.socket, socket.socket]
) -> None:
    sock, peer, wake_r, wake_w = pairs
    waiter = ReadWait(sock, wake_r)
    try:
        assert (waiter._epoll is not None) == (backend == "epoll")
        assert waiter.wait(0) == 0  # nothing yet: the timeout
        assert waiter.wait(-1) == 0  # never a wait without end
        peer.send(b"data")
        assert waiter.wait(5) == 1
        wake_w.send(b"!")
        assert waiter.wait(5) == 3
        assert sock.recv(16) == b"data"
        assert waiter.wait(5) == 2
        assert wake_r.recv(16) == b"!"
        assert waiter.wait(0) == 0
    finally:
        waiter.close()


def test_unread_counts_the_bytes_waiting_on_the_socket(
    pairs: tuple[socket.socket, socket.socket, socket.socket, socket.socket],
) -> None:
    sock, peer, _, _ = pairs
    waiter = ReadWait(sock)
    try:
        if waiter.unread() is None:
            pytest.skip("no FIONREAD on this platform")
        assert waiter.unread() == 0
        peer.sendall(b"x" * 1000)
        assert waiter.wait(5) == 1
        assert waiter.unread() == 1000
        assert sock.recv(400) == b"x" * 400
        assert waiter.unread() == 600
    finally:
        waiter.close()


@pytest.mark.parametrize("end", ["shutdown", "close"])
def test_the_end_of_the_peer_counts_as_readable(
    backend: str, end: str, pairs: tuple[socket.socket, socket.socket, socket.socket, socket.socket]
) -> None:
    sock, peer, _, _ = pairs
    waiter = ReadWait(sock)  # no wake-up pipe
    try:
        if end == "close":
            peer.close()  # the peer is gone (EPOLLHUP), not only done writing
        else:
            peer.shutdown(socket.SHUT_WR)
        assert waiter.wait(5) == 1
        assert sock.recv(16) == b""  # what the reader then sees: the end of the stream
    finally:
        waiter.close()


def test_close_releases_only_its_own_descriptor(
    backend: str, pairs: tuple[socket.socket, socket.socket, socket.socket, socket.socket]
) -> None:
    sock, peer, wake_r, _ = pairs
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("no /proc/self/fd to count descriptors")
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(50):
        ReadWait(sock, wake_r).close()
    assert len(os.listdir("/proc/self/fd")) == before
    peer.send(b"x")  # the sockets are still open and usable
    assert sock.recv(1) == b"x"
