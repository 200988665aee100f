"""Name resolution bounded by ``connect_timeout`` and interruptible by ``stop()``.

``socket.getaddrinfo`` cannot be cancelled and may block for as long as the system resolver
likes (tens of seconds with an unreachable DNS server). So a host name is resolved on a
short-lived daemon thread (``massive-rt-resolve-<connection>``) that the reader waits on, up to
the connect deadline or until ``stop()`` cancels the wait. A resolution that outlives its
deadline is *abandoned*: the reader reports a connect failure (``TimeoutError: DNS resolution of
<host> did not finish within connect_timeout``) and goes on with its backoff, while the thread
ends on its own when the OS resolver returns. Abandoned resolutions are logged (WARNING) and
counted (:func:`abandoned_resolutions`). A literal IP address (``127.0.0.1``, ``::1``) is
resolved inline, with no thread.

Tests replace the lookup itself by monkeypatching :func:`lookup` (the one hook)::

    monkeypatch.setattr(massive_rt.resolver, "lookup", lambda host, port: hang_forever())
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from typing import Any

__all__ = ["AddressInfo", "Resolution", "abandoned_resolutions", "is_ip_literal", "lookup"]

logger = logging.getLogger(__name__)

#: One entry of ``socket.getaddrinfo``: ``(family, type, proto, canonname, sockaddr)``.
AddressInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, Any]

_lock = threading.Lock()
_abandoned = 0


def lookup(host: str, port: int) -> list[AddressInfo]:
    """The blocking lookup every resolution runs (``socket.getaddrinfo`` for TCP): the hook
    tests monkeypatch to simulate a slow or hung resolver."""
    return list(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))


def is_ip_literal(host: str) -> bool:
    """True for a literal IPv4 or IPv6 address, which needs no resolver."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def abandoned_resolutions() -> int:
    """Resolutions given up at their deadline in this process so far (their threads may still be
    waiting on the OS resolver)."""
    with _lock:
        return _abandoned


class Resolution:
    """One lookup of ``host:port`` on its own daemon thread, started at construction.

    Args:
        host: the name to resolve.
        port: the port to put in the addresses.
        name: the connection name, for the thread name and logs.
    """

    def __init__(self, host: str, port: int, name: str = "") -> None:
        self.host = host
        self._port = port
        self._done = threading.Event()
        self._cancelled = False
        self._infos: list[AddressInfo] | None = None
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name=f"massive-rt-resolve-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._infos = lookup(self.host, self._port)
        except OSError as exc:
            self._error = exc
        except Exception as exc:  # a broken hook must not leave the reader waiting for nothing
            self._error = OSError(f"resolver failed: {type(exc).__name__}: {exc}")
        finally:
            self._done.set()

    def cancel(self) -> None:
        """Wake the waiter at once (``stop()``, any thread); :meth:`wait` then returns None."""
        self._cancelled = True
        self._done.set()

    def wait(self, deadline: float, timeout_text: str = "connect_timeout") -> list[AddressInfo] | None:
        """Wait for the addresses until ``deadline`` (monotonic).

        Returns:
            The addresses, or None when :meth:`cancel` was called.

        Raises:
            TimeoutError: the deadline passed first (the resolution is abandoned, counted, logged).
            OSError: the lookup failed (``socket.gaierror`` for an unknown name).
        """
        finished = self._done.wait(max(0.0, deadline - time.monotonic()))
        if self._cancelled:
            return None
        if not finished:
            global _abandoned
            with _lock:
                _abandoned += 1
            logger.warning("DNS resolution of %s did not finish within %s; abandoned (its thread %s ends when "
                           "the system resolver returns)", self.host, timeout_text, self._thread.name)  # fmt: skip
            raise TimeoutError(f"DNS resolution of {self.host} did not finish within {timeout_text}")
        if self._error is not None:
            raise self._error
        assert self._infos is not None
        return self._infos
