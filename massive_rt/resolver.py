"""Name resolution bounded by ``connect_timeout`` and interruptible by ``stop()``.

``socket.getaddrinfo`` cannot be cancelled and may block for as long as the system resolver
likes (tens of seconds with an unreachable DNS server). So a host name is resolved on a
short-lived daemon thread (``massive-rt-resolve-<connection>``; one per address at a time, shared
by every connection resolving it meanwhile) that the reader waits on, up to
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


class _Lookup:
    """One ``lookup(host, port)`` on its own daemon thread, shared by every :class:`Resolution` of
    that address while it runs (a hung resolver costs one thread per address, not one per attempt)."""

    def __init__(self, host: str, port: int, name: str) -> None:
        self.host = host
        self.port = port
        self.done = False
        self.infos: list[AddressInfo] | None = None
        self.error: OSError | None = None
        self.waiters: list[threading.Event] = []  # woken when done; guarded by _lock
        self.thread = threading.Thread(target=self._run, name=f"massive-rt-resolve-{name}", daemon=True)

    def _run(self) -> None:
        infos: list[AddressInfo] | None = None
        error: OSError | None = None
        try:
            infos = lookup(self.host, self.port)
        except OSError as exc:
            error = exc
        except Exception as exc:  # a broken hook must not leave the reader waiting for nothing
            error = OSError(f"resolver failed: {type(exc).__name__}: {exc}")
        with _lock:
            self.infos, self.error, self.done = infos, error, True
            if _in_flight.get((self.host, self.port)) is self:
                del _in_flight[(self.host, self.port)]
            waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            waiter.set()


_in_flight: dict[tuple[str, int], _Lookup] = {}


class Resolution:
    """A wait for the addresses of ``host:port``; the lookup runs on a daemon thread, shared with
    any other resolution of the same address still running.

    Args:
        host: the name to resolve.
        port: the port to put in the addresses.
        name: the connection name, for the thread name and logs.
    """

    def __init__(self, host: str, port: int, name: str = "") -> None:
        self.host = host
        self._wake = threading.Event()
        self._cancelled = False
        start = False
        with _lock:
            running = _in_flight.get((host, port))
            if running is None:
                running = _in_flight[(host, port)] = _Lookup(host, port, name)
                start = True
            running.waiters.append(self._wake)
        self._lookup = running
        if start:
            running.thread.start()

    def cancel(self) -> None:
        """Wake the waiter at once (``stop()``, any thread); :meth:`wait` then returns None."""
        self._cancelled = True
        self._wake.set()

    def wait(self, deadline: float, timeout_text: str = "connect_timeout") -> list[AddressInfo] | None:
        """Wait for the addresses until ``deadline`` (monotonic).

        Returns:
            The addresses, or None when :meth:`cancel` was called.

        Raises:
            TimeoutError: the deadline passed first (the resolution is abandoned, counted, logged).
            OSError: the lookup failed (``socket.gaierror`` for an unknown name).
        """
        running = self._lookup
        self._wake.wait(max(0.0, deadline - time.monotonic()))
        with _lock:
            done = running.done
            if not done and self._wake in running.waiters:
                running.waiters.remove(self._wake)
        if self._cancelled:
            return None
        if not done:
            global _abandoned
            with _lock:
                _abandoned += 1
            logger.warning("DNS resolution of %s did not finish within %s; abandoned (its thread %s ends when "
                           "the system resolver returns)", self.host, timeout_text, running.thread.name)  # fmt: skip
            raise TimeoutError(f"DNS resolution of {self.host} did not finish within {timeout_text}")
        if running.error is not None:
            raise running.error
        assert running.infos is not None
        return running.infos
