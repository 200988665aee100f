"""Fixtures of the operating suite: a WSGI app served on 127.0.0.1 by the standard library."""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def serve_wsgi() -> Iterator[Callable[[Any], str]]:
    """``serve_wsgi(app) -> base URL``: one plain wsgiref server per call, shut down after the test."""
    servers: list[tuple[WSGIServer, threading.Thread]] = []

    def serve(app: Any) -> str:
        httpd = make_server("127.0.0.1", 0, app, handler_class=_Quiet)
        thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                  name="test-wsgi-server", daemon=True)  # fmt: skip
        thread.start()
        servers.append((httpd, thread))
        return f"http://127.0.0.1:{httpd.server_port}"

    yield serve
    for httpd, thread in servers:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def get(url: str, timeout: float = 5.0) -> tuple[int, str, str]:
    """``(status, content type, body)`` of a GET."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.headers.get("Content-Type", ""), response.read().decode()
