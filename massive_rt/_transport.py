"""One connection attempt's transport: TCP, TLS, the WebSocket upgrade and the close, with
``stop()`` able to interrupt every blocking step. No protocol here (that is
:mod:`massive_rt._session`), no thread of its own (the reader thread runs it).
"""

from __future__ import annotations

import contextlib

# getaddrinfo imports encodings.idna on first use, in a reader thread. A fork in the middle of
# that import (a gunicorn master starting a relay while it forks workers) would leave the child
# with the module's import lock held forever: import it now, with the library.
import encodings.idna  # noqa: F401
import errno
import http
import logging
import os
import re
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import websocket

from . import resolver
from ._session import Outcome
from .config import ClientConfig
from .enums import Market
from .errors import ConfigurationError, HandshakeError

__all__ = ["StopRequested", "Transport", "describe", "refused_upgrade", "shown_url"]

logger = logging.getLogger(__name__)

USER_AGENT = "massive-rt (python websocket-client)"
_CLOSE_GRACE = 0.25
_DESCRIBE_LIMIT = 200


class StopRequested(Exception):
    """Raised inside the reader when stop() interrupts a blocking step."""


class Transport:
    """The socket of one session: opened by :meth:`open` (interruptible by ``stop_requested`` and
    the wake-up socket), closed by :meth:`close`.

    Args:
        url: the endpoint (``ws://`` or ``wss://``).
        config: TLS settings, ``connect_timeout`` and ``websocket_options``.
        stop_requested: set by ``stop()``; checked between every blocking step.
        wake_r: the reading end of the client's wake-up socket pair (``stop()`` writes to it).
        drain_wake: empties ``wake_r``.
        name: the connection name (for the resolver thread's name).
    """

    def __init__(
        self,
        url: str,
        config: ClientConfig,
        stop_requested: threading.Event,
        wake_r: socket.socket | None,
        drain_wake: Callable[[], None],
        name: str = "",
    ) -> None:
        self._url = url
        self._config = config
        self._stop_requested = stop_requested
        self._wake_r = wake_r
        self._drain_wake = drain_wake
        self._name = name
        self._resolution: resolver.Resolution | None = None  # a host name being resolved
        #: The live socket (TCP, then TLS), published as soon as it exists so stop() can shut it.
        self.sock: socket.socket | None = None
        self.ws: websocket.WebSocket | None = None
        #: True during the TLS and WebSocket handshakes, which block outside our select.
        self.handshaking = False
        self._close_sent = False

    def interrupt(self) -> None:
        """From stop() on any thread: end a wait for name resolution, and shut the socket if a
        handshake is blocking on it."""
        resolution = self._resolution
        if resolution is not None:
            resolution.cancel()
        sock = self.sock
        if self.handshaking and sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def force_shut(self) -> None:
        """From stop() on any thread: shut the socket whatever the reader is blocked in."""
        sock = self.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def open(self, deadline: float) -> None:
        """Connect, TLS, upgrade, by ``deadline`` (monotonic).

        Raises:
            StopRequested: stop() interrupted it.
            ConfigurationError: the CA bundle cannot be loaded.
            ssl.SSLCertVerificationError, websocket.WebSocketBadStatusException, OSError,
                websocket.WebSocketException, ValueError: as the steps raise them.
        """
        parts = urlsplit(self._url)
        secure = parts.scheme == "wss"
        host = parts.hostname or ""
        port = parts.port or (443 if secure else 80)
        options = dict(self._config.websocket_options)
        header = [*options.pop("header", []), f"User-Agent: {USER_AGENT}"]
        context = self._tls_context() if secure else None
        proxied = any(k.startswith("http_proxy") or k == "proxy_type" for k in options)
        ws = websocket.WebSocket(skip_utf8_validation=True, sslopt={"context": context} if proxied and context else {})
        sock: socket.socket
        if proxied:
            # websocket-client tunnels through the proxy itself (not interruptible by stop()).
            handshake(ws, self._url, timeout=remaining(deadline), header=header, suppress_origin=True,
                       redirect_limit=0, **options)  # fmt: skip
            if ws.sock is None:
                raise OSError("proxy handshake returned no socket")
            sock = ws.sock
        else:
            sock = self._open_tcp(host, port, deadline)
            self.sock = sock
            self.handshaking = True
            try:
                if self._stop_requested.is_set():
                    raise StopRequested
                if context is not None:
                    sock.settimeout(remaining(deadline))
                    # Publish the TLS socket before its handshake, so stop() shuts down the live one.
                    sock = context.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
                    self.sock = sock
                    if self._stop_requested.is_set():
                        raise StopRequested
                    sock.do_handshake()
                sock.settimeout(remaining(deadline))
                handshake(ws, self._url, socket=sock, timeout=remaining(deadline), header=header,
                           suppress_origin=True, redirect_limit=0, **options)  # fmt: skip
            finally:
                self.handshaking = False
        self.sock = sock
        self.ws = ws
        sock.settimeout(max(self._config.connect_timeout, 1.0))
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._stop_requested.is_set():
            raise StopRequested

    def _resolve(self, host: str, port: int, deadline: float) -> list[resolver.AddressInfo]:
        """The addresses of ``host``, by ``deadline`` and interruptible by stop() (a name is
        resolved on a short-lived thread, see :mod:`massive_rt.resolver`; a literal IP inline)."""
        if resolver.is_ip_literal(host):
            return list(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        resolution = self._resolution = resolver.Resolution(host, port, self._name)
        try:
            if self._stop_requested.is_set():
                raise StopRequested
            infos = resolution.wait(deadline, f"connect_timeout={self._config.connect_timeout:g}s")
        finally:
            self._resolution = None
        if infos is None or self._stop_requested.is_set():
            raise StopRequested
        return infos

    def _open_tcp(self, host: str, port: int, deadline: float) -> socket.socket:
        infos = self._resolve(host, port, deadline)
        last: OSError | None = None
        for family, kind, proto, _, address in infos:
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                err = sock.connect_ex(address)
                if err not in (0, errno.EINPROGRESS):
                    raise OSError(err, os.strerror(err))
                with selectors.DefaultSelector() as sel:
                    sel.register(sock, selectors.EVENT_WRITE)
                    if self._wake_r is not None:
                        sel.register(self._wake_r, selectors.EVENT_READ)
                    while True:
                        ready = {key.fileobj for key, _ in sel.select(remaining(deadline))}
                        if self._stop_requested.is_set():
                            raise StopRequested
                        if sock in ready:
                            break
                        if not ready:
                            raise TimeoutError(f"TCP connect to {host}:{port} timed out")
                        self._drain_wake()
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(err, os.strerror(err))
                sock.setblocking(True)
                return sock
            except StopRequested:
                sock.close()
                raise
            except OSError as exc:
                sock.close()
                last = exc
        raise last or OSError(f"no address for {host}:{port}")

    def _tls_context(self) -> ssl.SSLContext:
        """``ssl_context``, else a verifying context trusting ``ca_certs``, ``SSL_CERT_FILE`` or
        ``REQUESTS_CA_BUNDLE`` (the first set) or the system store.

        Raises:
            ConfigurationError: the CA bundle cannot be loaded (fatal: retrying cannot fix it).
        """
        if self._config.ssl_context is not None:
            return self._config.ssl_context
        context = ssl.create_default_context()
        for field, ca in (("ca_certs", self._config.ca_certs), ("SSL_CERT_FILE", os.environ.get("SSL_CERT_FILE")),
                          ("REQUESTS_CA_BUNDLE", os.environ.get("REQUESTS_CA_BUNDLE"))):  # fmt: skip
            if ca:
                try:
                    if os.path.isdir(ca):
                        context.load_verify_locations(capath=ca)
                    else:
                        context.load_verify_locations(cafile=ca)
                except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                    raise ConfigurationError(f"cannot load CA certificates from {field}={ca!r}: {describe(exc)}",
                                             field=field) from exc  # fmt: skip
                break
        return context

    def send_close(self, code: int, reason: str) -> None:
        """Send a close frame once (errors ignored: the socket may already be gone)."""
        ws = self.ws
        if ws is None or self._close_sent:
            return
        self._close_sent = True
        with contextlib.suppress(OSError, websocket.WebSocketException, ValueError):
            ws.send_close(code, reason.encode())

    def close(self, graceful: bool = False) -> None:
        """Close the socket; ``graceful`` sends a close frame first (bounded by a short grace)."""
        sock, ws = self.sock, self.ws
        self.sock = None
        self.ws = None
        if sock is None:
            return
        if graceful and ws is not None:
            # Tell the server we are going; never wait for its reply beyond a short grace.
            with contextlib.suppress(OSError):
                sock.settimeout(_CLOSE_GRACE)
            self.ws = ws
            self.send_close(1000, "")
            self.ws = None
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()


def refused_upgrade(exc: websocket.WebSocketBadStatusException, shown: str, name: str) -> Outcome:
    """The server answered the WebSocket upgrade with an HTTP status instead of 101.

    429 and 5xx are passing conditions (rate limit, overload, deploy): retried with backoff.
    Any other answer (4xx: wrong path, wrong host, a proxy refusing; 3xx: a redirect we do not
    follow) will be the same on every attempt, so it is final.
    """
    code = getattr(exc, "status_code", None)
    reason = getattr(exc, "status_message", None) or (http_phrase(code) if isinstance(code, int) else None)
    what = f"HTTP {code}{f' {reason}' if isinstance(reason, str) and reason else ''} from {shown}"
    body = excerpt(getattr(exc, "resp_body", None))
    detail = f" (body: {body})" if body else ""
    if isinstance(code, int) and (code == 429 or code >= 500):
        return Outcome(f"{what}: the server is not accepting connections now{detail}")
    if code == 404:
        why = f"not a Massive WebSocket endpoint ({_market_hint(shown)})"
    elif code in (401, 403):
        why = "refused before authentication (a proxy or firewall? Massive refuses bad keys after connecting)"
    elif isinstance(code, int) and 300 <= code < 400:
        headers = getattr(exc, "resp_headers", None) or {}
        target = urlsplit(str(headers.get("location") or "")).hostname  # the host only: a query may hold a token
        to = f" to {target}" if target else ""
        why = f"redirected{to}; massive_rt does not follow redirects (pass the final url=)"
    else:
        why = "the server refused the WebSocket upgrade"
    error = HandshakeError(f"{what}: {why}{detail}", status_code=code, connection=name)
    return Outcome(error.message, error=error, fatal=True)


def _market_hint(shown: str) -> str:
    """What to check after a 404: when the URL's path names no market, the URL that would."""
    parts = urlsplit(shown)
    path = parts.path.strip("/")
    markets = [m.value for m in Market]
    if path in markets or any(segment in markets for segment in path.split("/")):
        return "check url=, feed= and market="
    base = parts._replace(path="", query="", fragment="").geturl()
    known = ", ".join(m for m in markets if "/" not in m)
    which = f"/{path} is not a market path" if path else "the URL has no market path"
    return f"{which}: did you mean {base}/stocks? The path names the market: {known}"


def handshake(ws: websocket.WebSocket, url: str, **options: Any) -> None:
    """websocket-client's opening handshake (its ``connect`` is untyped).

    Raises:
        websocket.WebSocketBadStatusException: any answer but 101, redirects included
            (websocket-client reports an unfollowed redirect as a bare "Redirect limit exhausted").
    """
    try:
        ws.connect(url, **options)  # type: ignore[no-untyped-call]
    except websocket.WebSocketBadStatusException:
        raise
    except websocket.WebSocketException as exc:
        response = getattr(ws, "handshake_response", None)
        status = getattr(response, "status", None)
        if not isinstance(status, int) or not 300 <= status < 400:
            raise
        headers = getattr(response, "headers", None) or {}
        raise websocket.WebSocketBadStatusException(
            f"redirect {status} to {headers.get('location')}", status, http_phrase(status), headers, None
        ) from exc


def http_phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


def remaining(deadline: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("connect_timeout elapsed")
    return remaining


def describe(exc: BaseException) -> str:
    """One line for logs and statuses: exceptions may carry a server's multi-line answer."""
    text = " ".join((str(exc) or type(exc).__name__).split())
    if len(text) > _DESCRIBE_LIMIT:
        text = text[: _DESCRIBE_LIMIT - 1] + "…"
    return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text


def shown_url(url: str) -> str:
    """``url`` without what may be a credential: a ``user:password@`` part and the query."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=host, query="", fragment="").geturl()


def excerpt(body: object, limit: int = 60) -> str:
    """A short single-line excerpt of an HTTP response body (HTML tags and whitespace removed)."""
    if not isinstance(body, (bytes, bytearray)) or not body:
        return ""
    text = bytes(body[: limit * 16]).decode("utf-8", errors="replace")
    text = re.sub(r"(?is)<(head|script|style)\b.*?</\1\s*>", " ", text)  # a page's title repeats its heading
    text = " ".join(re.sub(r"<[^>]*>", " ", text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
