"""Serving a WSGI app (the status page) with the standard library, one thread per request.

``wsgiref``'s server handles one request at a time, and an event stream is a request that lasts:
this one gives each request a named daemon thread (``massive-rt-status-http-request``), runs its
accept loop on ``massive-rt-status-http``, and on :meth:`StatusServer.stop` ends the app's
streams, the loop and every request thread.
"""

from __future__ import annotations

import logging
import socketserver
import threading
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from .app import StatusApp, status_app

__all__ = ["StatusServer", "serve_status"]

logger = logging.getLogger(__name__)


class _Handler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("status page: %s", format % args)


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request_threads: list[threading.Thread] = []
        self.request_threads_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(target=self.process_request_thread, args=(request, client_address),
                                  name="massive-rt-status-http-request", daemon=True)  # fmt: skip
        with self.request_threads_lock:
            self.request_threads = [t for t in self.request_threads if t.is_alive()]
            self.request_threads.append(thread)
        thread.start()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A browser closing its event stream mid-write is the normal end of a page, not an error.
        logger.debug("status page: request from %s ended early", client_address)


class StatusServer:
    """A running status page server; :meth:`stop` ends it (also a context manager).

    Attributes:
        app: the :class:`StatusApp` served.
    """

    def __init__(self, app: StatusApp, host: str, port: int) -> None:
        self.app = app
        self._httpd = make_server(host, port, app, server_class=_ThreadingServer, handler_class=_Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="massive-rt-status-http", daemon=True)  # fmt: skip
        self._stopped = False

    def start(self) -> StatusServer:
        """Start the sampler and the accept loop."""
        self.app.start()
        self._thread.start()
        logger.info("status page: %s", self.url)
        return self

    @property
    def port(self) -> int:
        """The port listened on (the one chosen when asked for 0)."""
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """``http://host:port/``."""
        host = str(self._httpd.server_address[0])
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.port}/"

    def stop(self, timeout: float = 5.0) -> None:
        """End the streams, the accept loop and the request threads (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        self.app.stop(timeout)
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join(timeout)
        server: Any = self._httpd
        with server.request_threads_lock:
            threads = list(server.request_threads)
        for thread in threads:
            thread.join(timeout)
        self._httpd.server_close()

    def __enter__(self) -> StatusServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def serve_status(target: Any, host: str = "127.0.0.1", port: int = 0, *, interval: float = 1.0) -> StatusServer:
    """Serve the status page of ``target`` (an adapter, source or a :class:`StatusApp`); started.

    Args:
        target: what to show, or an app made by :func:`~massive_rt.web.status_app`.
        host: interface to listen on (default loopback only: the page has no authentication).
        port: port (0: any free one; see :attr:`StatusServer.port`).
        interval: seconds between samples, when ``target`` is not an app already.

    Raises:
        OSError: the port is taken.
    """
    app = target if isinstance(target, StatusApp) else status_app(target, interval=interval)
    return StatusServer(app, host, port).start()
