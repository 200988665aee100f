"""A fault-injecting TCP proxy for tests: a real socket between a client and a server.

:class:`FaultProxy` listens on ``127.0.0.1`` (a free port), connects every accepted connection
to the upstream address, and forwards bytes both ways through per-direction faults that can be
changed while it runs: latency and seeded jitter, throttling, small segments, blackholes
(half-open: nothing forwarded, nothing answered), resets (RST now, or after N more bytes so a
frame is cut mid-way), tarpits (accepted, never connected upstream) and outages or flapping
(every connection cut, new ones refused). It knows nothing of WebSocket or Massive, so it sits
in front of :class:`~massive_rt.testing.MockMassiveServer`, a relay, Redis or your own server.

Threads (named daemons, all stopped and joined by :meth:`FaultProxy.close`):
``massive-rt-faultproxy-<name>`` accepts; ``massive-rt-faultproxy-<name>-<id>-up`` and ``-down``
forward one direction of one connection; ``massive-rt-faultproxy-<name>-flap`` cuts every
connection periodically while :meth:`FaultProxy.flap` is on.

Memory is bounded like a real network: a direction that cannot forward (blackholed, throttled,
a peer that does not read) holds at most ``buffer_limit`` bytes and then stops reading from its
source, so the sender's socket buffers fill and the sender sees backpressure.

Fault changes take effect within ``_TICK`` (50 ms) on connections already open.
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import logging
import random
import select
import socket
import struct
import threading
import time
from collections import deque
from typing import Any

import attrs

__all__ = ["Direction", "FaultProxy", "FaultProxyStats", "Faults"]

logger = logging.getLogger(__name__)

_TICK = 0.05  # longest wait of any proxy thread: how soon fault changes and close() are seen
_RECV = 64 * 1024
_names = itertools.count(1)


class Direction(str, enum.Enum):
    """Which way a fault applies: ``upstream`` is client → server, ``downstream`` server → client."""

    UPSTREAM = "upstream"
    DOWNSTREAM = "downstream"
    BOTH = "both"

    def covers(self, direction: Direction) -> bool:
        """True when a fault set for ``self`` applies to ``direction`` (one of the two ways)."""
        return self is Direction.BOTH or self is direction


def _non_negative(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, not {value!r}")


def _positive_or_none(instance: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"{attribute.name} must be > 0 or None, not {value!r}")


@attrs.frozen(kw_only=True)
class Faults:
    """The faults of one direction (immutable; :meth:`FaultProxy.set_faults` swaps them).

    Attributes:
        latency: seconds every chunk is held before it is forwarded.
        jitter: plus a uniform random ``[0, jitter)`` seconds per chunk (seeded by the proxy's
            ``seed``); bytes are never reordered, as on a TCP stream.
        throttle: bytes per second forwarded at most (None: unlimited).
        segment: bytes written per send at most, with ``TCP_NODELAY`` (1: one byte per segment).
        blackhole: forward nothing and answer nothing; the connection stays open (half-open).
            Bytes read while blackholed are held (up to ``buffer_limit``) and forwarded when the
            blackhole is lifted, as TCP retransmission would.
    """

    latency: float = attrs.field(default=0.0, validator=_non_negative)
    jitter: float = attrs.field(default=0.0, validator=_non_negative)
    throttle: float | None = attrs.field(default=None, validator=_positive_or_none)
    segment: int | None = attrs.field(default=None, validator=_positive_or_none)
    blackhole: bool = False


@attrs.frozen(kw_only=True)
class FaultProxyStats:
    """Counters of a :class:`FaultProxy`, from :meth:`FaultProxy.stats`.

    Attributes:
        connections: connections accepted so far (tarpitted and refused ones included).
        active: connections being forwarded now.
        bytes_upstream: bytes forwarded client → server.
        bytes_downstream: bytes forwarded server → client.
        resets: forwarded connections the proxy ended with a RST (:meth:`FaultProxy.reset`,
            ``after_bytes``, outages and flapping).
        refused: connections accepted during an outage and reset at once.
        tarpitted: connections held by the tarpit (never connected upstream).
        upstream_failures: connections whose upstream connect failed (reset at once).
        buffered_high_water: most bytes one direction of one connection ever held.
        last_downstream_at: ``time.monotonic()`` when a byte last went to a client, or None.
    """

    connections: int
    active: int
    bytes_upstream: int
    bytes_downstream: int
    resets: int
    refused: int
    tarpitted: int
    upstream_failures: int
    buffered_high_water: int
    last_downstream_at: float | None


def _abort(sock: socket.socket, reset: bool) -> None:
    """Close ``sock``; with ``reset``, SO_LINGER 0 makes the kernel send a RST instead of a FIN."""
    if reset:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class _Connection:
    """One proxied connection: two sockets and the two pumps between them."""

    def __init__(self, proxy: FaultProxy, ident: int, client: socket.socket, upstream: socket.socket) -> None:
        self.ident = ident
        self.client = client
        self.upstream = upstream
        self.done = threading.Event()
        self._reset = False
        self._lock = threading.Lock()
        self._running = 2
        self.pumps = {
            Direction.UPSTREAM: _Pump(proxy, self, Direction.UPSTREAM, client, upstream),
            Direction.DOWNSTREAM: _Pump(proxy, self, Direction.DOWNSTREAM, upstream, client),
        }
        self.threads = [
            threading.Thread(target=pump.run, name=f"massive-rt-faultproxy-{proxy.name}-{ident}-"
                             f"{'up' if d is Direction.UPSTREAM else 'down'}", daemon=True)
            for d, pump in self.pumps.items()
        ]  # fmt: skip

    def abort(self, reset: bool) -> bool:
        """End the connection (RST with ``reset``); the pumps stop and the last one closes the
        sockets. Returns False when it had already ended."""
        with self._lock:
            if self.done.is_set():
                return False
            self._reset = reset
            self.done.set()
        for sock in (self.client, self.upstream):
            # SHUT_RD sends nothing, but wakes a pump waiting in select on this socket.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RD)
        return True

    def pump_finished(self) -> None:
        # One direction ending (a half-close passed on) leaves the other forwarding until its
        # own end: only the last pump ends the connection.
        with self._lock:
            self._running -= 1
            last = self._running == 0
            if last:
                self.done.set()
        if last:
            _abort(self.client, self._reset)
            _abort(self.upstream, self._reset)


class _Pump:
    """One direction of one connection: reads its source into a bounded buffer and writes it to
    its destination when its faults allow. Runs on its own thread; sockets are non-blocking and
    every wait is at most ``_TICK``."""

    def __init__(self, proxy: FaultProxy, conn: _Connection, direction: Direction,
                 src: socket.socket, dst: socket.socket) -> None:  # fmt: skip
        self._proxy = proxy
        self._conn = conn
        self._direction = direction
        self._src = src
        self._dst = dst
        self._buffer: deque[tuple[float, bytes]] = deque()  # (due time, bytes), in stream order
        self._buffered = 0
        self._last_due = 0.0
        self._next_send = 0.0
        self._eof = False
        self._lock = threading.Lock()  # the reset budget against the write that spends it
        self._reset_budget: int | None = None  # bytes to forward before the connection is reset

    def reset_after(self, count: int) -> None:
        """Reset the connection once ``count`` more bytes have been forwarded (any thread)."""
        with self._lock:
            self._reset_budget = count

    def run(self) -> None:
        try:
            self._loop()
        except OSError as exc:  # a peer reset or vanished: pass it on as a reset
            logger.debug("faultproxy %s connection %d %s: %s", self._proxy.name, self._conn.ident,
                         self._direction.value, exc)  # fmt: skip
            self._conn.abort(reset=True)
        finally:
            self._conn.pump_finished()

    def _loop(self) -> None:
        proxy, conn = self._proxy, self._conn
        while not conn.done.is_set():
            faults = proxy.faults(self._direction)
            now = time.monotonic()
            wait = _TICK
            want_write = False
            if self._buffer and not faults.blackhole:
                ready_at = max(self._buffer[0][0], self._next_send)
                if ready_at <= now:
                    want_write = True
                else:
                    wait = min(wait, ready_at - now)
            elif self._eof and not self._buffer:
                with contextlib.suppress(OSError):
                    self._dst.shutdown(socket.SHUT_WR)  # pass the half-close on
                return
            want_read = not self._eof and self._buffered < proxy.buffer_limit
            if not want_read and not want_write:
                conn.done.wait(wait)
                continue
            readable, writable, _ = select.select([self._src] if want_read else [],
                                                  [self._dst] if want_write else [], [], wait)  # fmt: skip
            if conn.done.is_set():
                return
            if readable:
                self._read(faults)
            if writable:
                self._write(faults)

    def _read(self, faults: Faults) -> None:
        try:
            data = self._src.recv(min(_RECV, self._proxy.buffer_limit - self._buffered))
        except BlockingIOError:
            return
        if not data:
            self._eof = True
            return
        due = time.monotonic() + faults.latency + (self._proxy.jitter_sample(faults.jitter) if faults.jitter else 0.0)
        self._last_due = due = max(due, self._last_due)
        self._buffer.append((due, data))
        self._buffered += len(data)
        self._proxy.note_buffered(self._buffered)

    def _write(self, faults: Faults) -> None:
        with self._lock:  # a non-blocking send: never held across a wait
            self._write_locked(faults)

    def _write_locked(self, faults: Faults) -> None:
        due, chunk = self._buffer[0]
        size = len(chunk)
        if faults.segment is not None:
            size = min(size, faults.segment)
        if faults.throttle is not None:
            size = min(size, max(1, int(faults.throttle * _TICK)))
        if self._reset_budget is not None:
            size = min(size, self._reset_budget)
        sent = 0
        if size:
            try:
                sent = self._dst.send(chunk[:size])
            except BlockingIOError:
                return
        if sent == len(chunk):
            self._buffer.popleft()
        else:
            self._buffer[0] = (due, chunk[sent:])
        self._buffered -= sent
        self._proxy.note_forwarded(self._direction, sent)
        if faults.throttle is not None:
            self._next_send = max(self._next_send, time.monotonic()) + sent / faults.throttle
        if self._reset_budget is not None:
            self._reset_budget -= sent
            if self._reset_budget <= 0 and self._conn.abort(reset=True):
                self._proxy.note_reset()


class FaultProxy:
    """A TCP proxy on ``127.0.0.1`` that injects network faults between a client and ``upstream``.

    Example::

        with MockMassiveServer(api_keys={"k"}) as server, FaultProxy(("127.0.0.1", server.port)) as proxy:
            client = MassiveWebSocketClient(api_key="k", url=proxy.url("stocks"), ...)
            proxy.set_faults(Direction.DOWNSTREAM, latency=0.3, throttle=64_000)
            proxy.reset(after_bytes=100)          # cut the next frame mid-way with a RST
            proxy.set_faults(Direction.BOTH, blackhole=True)   # half-open

    Every method is thread-safe and returns at once (faults apply within 50 ms).

    Args:
        upstream: ``(host, port)`` every accepted connection is forwarded to.
        upstream_faults: faults client → server at start.
        downstream_faults: faults server → client at start.
        tarpit: accept new connections but never connect them upstream nor answer.
        buffer_limit: bytes one direction of one connection holds at most before it stops
            reading from its source.
        seed: seed of the jitter.
        connect_timeout: bound of each upstream connect, seconds.
        name: used in thread names and logs.
    """

    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        upstream_faults: Faults | None = None,
        downstream_faults: Faults | None = None,
        tarpit: bool = False,
        buffer_limit: int = 256 * 1024,
        seed: int | None = None,
        connect_timeout: float = 5.0,
        name: str | None = None,
    ) -> None:
        if buffer_limit < 1:
            raise ValueError(f"buffer_limit must be >= 1, not {buffer_limit!r}")
        self.upstream = upstream
        self.name = name or str(next(_names))
        self.buffer_limit = buffer_limit
        self._connect_timeout = connect_timeout
        self._faults = {
            Direction.UPSTREAM: upstream_faults or Faults(),
            Direction.DOWNSTREAM: downstream_faults or Faults(),
        }
        self._tarpit = tarpit
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._conns: dict[int, _Connection] = {}
        self._held: list[socket.socket] = []  # tarpitted connections
        self._threads: list[threading.Thread] = []
        self._ids = itertools.count(1)
        self._down_until = 0.0
        self._flapper: tuple[threading.Thread, threading.Event] | None = None
        self._listener: socket.socket | None = None
        self._port = 0
        self._counts = dict.fromkeys(("connections", "bytes_upstream", "bytes_downstream", "resets", "refused",
                                      "tarpitted", "upstream_failures", "buffered_high_water"), 0)  # fmt: skip
        self._last_downstream_at: float | None = None

    # -- lifecycle

    def start(self) -> FaultProxy:
        """Bind ``127.0.0.1:0`` and start accepting; returns self."""
        if self._listener is not None:
            return self
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        self._listener = listener
        self._port = listener.getsockname()[1]
        self._spawn(self._accept_loop, f"massive-rt-faultproxy-{self.name}")
        logger.info("fault proxy %s on 127.0.0.1:%d -> %s:%d", self.name, self._port, *self.upstream)
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting, close every connection, stop and join every thread (idempotent)."""
        self._stopping.set()
        self.flap(None)
        with self._lock:
            conns = list(self._conns.values())
            held, self._held = self._held, []
            threads = list(self._threads)
        for conn in conns:
            conn.abort(reset=False)
        for sock in held:
            _abort(sock, reset=False)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
        alive = [t.name for t in threads if t.is_alive()]
        if alive:
            logger.warning("fault proxy %s: threads still running after close: %s", self.name, alive)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FaultProxy(name={self.name!r}, port={self._port}, upstream={self.upstream!r})"

    # -- addresses

    @property
    def port(self) -> int:
        """The bound port (0 before :meth:`start`)."""
        return self._port

    @property
    def address(self) -> tuple[str, int]:
        """``("127.0.0.1", port)``."""
        return ("127.0.0.1", self._port)

    def url(self, path: str = "stocks", scheme: str = "ws") -> str:
        """``<scheme>://127.0.0.1:<port>/<path>``, e.g. a Massive market path through the proxy."""
        return f"{scheme}://127.0.0.1:{self._port}/{path.strip('/')}"

    # -- faults

    def faults(self, direction: Direction | str) -> Faults:
        """The faults of one direction now (``upstream`` or ``downstream``)."""
        return self._faults[Direction(direction)]

    def set_faults(self, direction: Direction | str = Direction.BOTH, **changes: object) -> None:
        """Change some faults of a direction (``upstream``, ``downstream`` or ``both``), e.g.
        ``set_faults("downstream", latency=0.2, jitter=0.1)``; ``Faults()`` fields only.

        Raises:
            TypeError: an unknown field; ValueError: a bad value.
        """
        which = Direction(direction)
        with self._lock:
            for each in (Direction.UPSTREAM, Direction.DOWNSTREAM):
                if which.covers(each):
                    self._faults[each] = attrs.evolve(self._faults[each], **changes)  # type: ignore[arg-type]

    def clear_faults(self) -> None:
        """No latency, throttle, segmenting or blackhole either way; tarpit, outage and flap off."""
        with self._lock:
            self._faults = {Direction.UPSTREAM: Faults(), Direction.DOWNSTREAM: Faults()}
            self._tarpit = False
            self._down_until = 0.0
        self.flap(None)

    def tarpit(self, on: bool = True) -> None:
        """Hold new connections without connecting them upstream or answering (until :meth:`reset`
        or :meth:`close`); connections already forwarded are not affected."""
        with self._lock:
            self._tarpit = on

    def reset(self, after_bytes: int | None = None, direction: Direction | str = Direction.DOWNSTREAM) -> int:
        """RST every live connection now (tarpitted ones too), or, with ``after_bytes``, after that
        many more bytes go ``direction`` on each live connection (so a frame is cut mid-way).

        Returns:
            Connections reset now, or armed.
        """
        with self._lock:
            conns = list(self._conns.values())
            held: list[socket.socket] = []
            if after_bytes is None:
                held, self._held = self._held, []
        if after_bytes is not None:
            which = Direction(direction)
            for conn in conns:
                for each, pump in conn.pumps.items():
                    if which.covers(each):
                        pump.reset_after(after_bytes)
            return len(conns)
        count = sum(conn.abort(reset=True) for conn in conns)
        for sock in held:
            _abort(sock, reset=True)
        with self._lock:
            self._counts["resets"] += count
        return count + len(held)

    def outage(self, seconds: float) -> int:
        """Reset every live connection and refuse (accept, then RST) new ones for ``seconds``.

        Returns:
            Connections reset.
        """
        with self._lock:
            self._down_until = time.monotonic() + seconds
        return self.reset()

    def flap(self, every: float | None, down_for: float = 0.0) -> None:
        """Cut every connection every ``every`` seconds (a server restarting), each time refusing
        new ones for ``down_for`` seconds; ``None`` stops flapping."""
        with self._lock:
            old, self._flapper = self._flapper, None
        if old is not None:
            old[1].set()
            old[0].join(2 * _TICK + 1.0)
        if every is None or self._stopping.is_set():
            return
        if every <= 0:
            raise ValueError(f"every must be > 0, not {every!r}")
        stop = threading.Event()

        def run() -> None:
            while not stop.wait(every) and not self._stopping.is_set():
                self.outage(down_for)

        thread = threading.Thread(target=run, name=f"massive-rt-faultproxy-{self.name}-flap", daemon=True)
        with self._lock:
            self._flapper = (thread, stop)
            self._threads.append(thread)
        thread.start()

    # -- counters

    def stats(self) -> FaultProxyStats:
        """A snapshot of the counters."""
        with self._lock:
            return FaultProxyStats(active=sum(not c.done.is_set() for c in self._conns.values()),
                                   last_downstream_at=self._last_downstream_at, **self._counts)  # fmt: skip

    # -- for the pumps (any proxy thread)

    def jitter_sample(self, jitter: float) -> float:
        """A seeded uniform sample in ``[0, jitter)``."""
        with self._lock:
            return self._rng.random() * jitter

    def note_forwarded(self, direction: Direction, count: int) -> None:
        """Count ``count`` bytes forwarded ``direction``."""
        with self._lock:
            if direction is Direction.UPSTREAM:
                self._counts["bytes_upstream"] += count
            else:
                self._counts["bytes_downstream"] += count
                if count:
                    self._last_downstream_at = time.monotonic()

    def note_buffered(self, held: int) -> None:
        """Track the most bytes a direction held."""
        with self._lock:
            if held > self._counts["buffered_high_water"]:
                self._counts["buffered_high_water"] = held

    def note_reset(self) -> None:
        """Count a connection reset by ``after_bytes``."""
        with self._lock:
            self._counts["resets"] += 1

    # -- accepting

    def _spawn(self, target: object, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)  # type: ignore[arg-type]
        with self._lock:  # started under the lock: close() never joins a thread not started yet
            self._threads.append(thread)
            thread.start()

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stopping.is_set():
            readable, _, _ = select.select([listener], [], [], _TICK)
            if not readable or self._stopping.is_set():
                continue
            try:
                client, _ = listener.accept()
            except OSError:
                continue
            self._admit(client)

    def _admit(self, client: socket.socket) -> None:
        with self._lock:
            self._counts["connections"] += 1
            refused = time.monotonic() < self._down_until
            tarpit = self._tarpit and not refused
            if refused:
                self._counts["refused"] += 1
            elif tarpit:
                self._counts["tarpitted"] += 1
                self._held.append(client)
        if refused:
            _abort(client, reset=True)
            return
        if tarpit:
            return
        try:
            upstream = socket.create_connection(self.upstream, timeout=self._connect_timeout)
        except OSError as exc:
            logger.warning("fault proxy %s: upstream %s:%d unreachable: %s", self.name, *self.upstream, exc)
            with self._lock:
                self._counts["upstream_failures"] += 1
            _abort(client, reset=True)
            return
        for sock in (client, upstream):
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Connection(self, next(self._ids), client, upstream)
        with self._lock:
            if self._stopping.is_set():
                conn.done.set()
            self._conns[conn.ident] = conn
            self._conns = {k: c for k, c in self._conns.items() if not (c.done.is_set() and c.ident != conn.ident)}
            self._threads = [t for t in self._threads if t.is_alive()]
            if not conn.done.is_set():  # started under the lock: close() never joins one not started
                self._threads.extend(conn.threads)
                for thread in conn.threads:
                    thread.start()
        if conn.done.is_set():
            _abort(client, reset=False)
            _abort(upstream, reset=False)
