"""Plain TCP peers for the fault proxy's own tests: an echo server and a firehose, on 127.0.0.1:0."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = True

    def __init__(self, handler: type[socketserver.BaseRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.accepted = 0
        self.stop = threading.Event()
        self.sent = 0

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        self.accepted += 1
        super().process_request(request, client_address)


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.settimeout(10)
        try:
            while data := self.request.recv(65536):
                self.request.sendall(data)
        except OSError:
            pass


class _Firehose(socketserver.BaseRequestHandler):
    """Sends 4 KB blocks until the peer goes away or the test ends (never reads)."""

    def handle(self) -> None:
        server: _Server = self.server  # type: ignore[assignment]
        self.request.settimeout(0.05)
        block = b"x" * 4096
        while not server.stop.is_set():
            try:
                server.sent += self.request.send(block)
            except TimeoutError:
                continue
            except OSError:
                return


def _serve(handler: type[socketserver.BaseRequestHandler]) -> Iterator[_Server]:
    server = _Server(handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="test-tcp-peer", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def echo_server() -> Iterator[_Server]:
    """A TCP echo server on 127.0.0.1 (``.server_address``, ``.accepted``)."""
    yield from _serve(_Echo)


@pytest.fixture
def firehose() -> Iterator[_Server]:
    """A TCP server that sends as fast as its peer lets it and never reads (``.sent``)."""
    yield from _serve(_Firehose)
