"""MassiveRelay: one set of upstream Massive connections, shared by many local clients.

Massive allows one connection per asset class per account; two processes on one key evict each
other forever. A relay holds the upstream connections (a :class:`~massive_rt.ConnectionPool`)
and serves any number of downstream consumers over Massive's own protocol, so every Massive
client — ``massive_rt``, the official ``massive`` client, anything else — pointed at
:meth:`MassiveRelay.url` just works::

    with MassiveRelay(api_key=os.environ["MASSIVE_API_KEY"], api_keys={"local-key"}) as relay:
        print(relay.url("stocks"))          # ws://127.0.0.1:<port>/stocks
        ...                                 # clients connect with key "local-key"

What downstream clients see:

* The protocol of Massive (the server side is :class:`massive_rt._server.ProtocolServer`, the
  same code as :class:`~massive_rt.testing.MockMassiveServer`): ``connected``, ``auth`` against
  the relay-local ``api_keys``, per-channel acks — immediate, given by the relay itself.
* Exactly the events of their channels (``<ev>.*`` and ``<ev>.<ticker>``), in upstream order.
* Upstream reconnects only as status objects, in order with the data, sent to the consumers
  whose channels the upstream connection carries: ``disconnected`` and ``gap`` (their messages
  and extra keys carry ``gap_start_ns``/``gap_end_ns`` to backfill from, see
  :func:`~massive_rt.protocol.status_fields`), ``dropped`` (the upstream queue
  overflowed), and ``upstream_<status>`` for anything else the upstream side reports
  (``upstream_subscription_error``, ``upstream_failed``, ``upstream_recycled``,
  ``upstream_max_connections`` ...).
* A consumer that does not keep up is treated as Massive treats one: its buffer of
  ``consumer_buffer`` events overflows, the events are dropped and counted, it gets a
  ``slow_consumer`` status and a close (1008). It never slows the upstream reader or the others.

Upstream, the relay subscribes the union of the downstream channels, reference-counted: the
first downstream subscriber of a channel subscribes it upstream, the last one to unsubscribe or
disconnect unsubscribes it. (The pool then leaves out tickers whose wildcard it carries:
``T.AAPL`` is not sent upstream while ``T.*`` is.)

Threads: the protocol server's (``massive-rt-relay-serve-<name>``, per connection
``massive-rt-relay-conn-<name>-<id>`` and ``massive-rt-relay-recv-<name>-<id>``), one
``massive-rt-relay-writer-<name>-<id>`` per downstream connection (drains its buffer into the
socket), one ``massive-rt-relay-forwarder-<name>`` that drains the pool's connections, routes
and encodes, and the pool's own. :meth:`MassiveRelay.stop` joins all of them.

Forwarding cost: an upstream frame is parsed once; its objects are grouped by the exact set of
consumers that receive them; each group is encoded once into one frame shared by every consumer
of the set — and when a whole frame goes to one set (the common case), the upstream bytes are
forwarded as they are, not re-encoded.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import attrs

try:
    from ._server import POLICY_VIOLATION, ProtocolServer, ServerConn
except ModuleNotFoundError as exc:  # the one dependency of the relay extra
    if (exc.name or "").split(".")[0] != "websockets":
        raise
    raise ModuleNotFoundError(
        "massive_rt.relay needs the 'websockets' package: pip install 'massive-rt[relay]'", name=exc.name
    ) from exc
from ._json import dumps
from ._validate import require_int, require_name, require_number
from .config import LimitRetry
from .consumer import fast_loads
from .enums import Feed, Market
from .errors import ClientClosedError, ConfigurationError, MassiveRTError, SubscriptionError
from .framing import encode_frame, join_frames
from .models import MarketEvent, RawFrame, StatusMessage, UnknownEvent, to_wire
from .pool import ConnectionPool, PoolStats
from .protocol import MARKET_EVENTS, status_fields, status_frame

__all__ = ["ConsumerStats", "MassiveRelay", "RelayStats", "main", "run_relay"]

logger = logging.getLogger(__name__)

#: Upstream statuses forwarded under their own name; every other one becomes ``upstream_<status>``.
_VERBATIM = frozenset({"disconnected", "gap", "dropped"})
#: Upstream statuses that concern the upstream connection only (state transitions).
_LOCAL_ONLY = frozenset({"state"})
#: Upstream statuses that name the channels they concern (else: every channel of the connection).
_PER_CHANNEL = frozenset({"subscription_error", "subscription_unconfirmed", "subscription_confirmed"})

_WRITE_CHUNK = 256 * 1024  # bytes per send: a slow consumer holds its send mutex at most this long
_DRAIN_FRAMES = 64  # upstream frames taken from one connection per round (fairness between connections)
_YIELD = 0.0002  # seconds the forwarder pauses when a consumer's buffer is past half full

#: market → ev → the wire key holding the symbol (``sym``, ``pair``, ``p`` or ``T``).
_SYMBOL_KEYS: dict[str, dict[str, str]] = {
    market.value: {
        ev: next(key for key, attr in cls.WIRE if attr in ("symbol", "ticker", "pair")) for ev, cls in events.items()
    }
    for market, events in MARKET_EVENTS.items()
}

_Subscribers = frozenset["_Sender"]
#: Routing table of one market: (``{ev: subscribers of <ev>.*}``, ``{(ev, ticker): subscribers}``).
_Table = tuple[dict[str, _Subscribers], dict[tuple[str, str], _Subscribers]]
_EMPTY_TABLE: _Table = ({}, {})
K = TypeVar("K", str, tuple[str, str])


# ------------------------------------------------------------------------------------------------
# Statistics


@attrs.frozen(kw_only=True)
class ConsumerStats:
    """One downstream connection, as :meth:`MassiveRelay.stats` saw it.

    Attributes:
        id: the relay's connection id (``"c1"`` ...).
        market: market path the consumer connected to.
        remote_address: the consumer's ``(host, port)``.
        authenticated: it sent a valid relay key.
        subscriptions: its channels.
        sent_events, sent_frames, sent_bytes: written to its socket so far.
        dropped_events: events discarded because its buffer overflowed.
        buffered_events: events waiting in its buffer now.
        buffer_high_water: most events ever waiting at once.
        slow_consumer: True once it overflowed (it is then closed with ``slow_consumer``).
        closed: True once the connection ended.
    """

    id: str
    market: str
    remote_address: Any
    authenticated: bool
    subscriptions: frozenset[str]
    sent_events: int
    sent_frames: int
    sent_bytes: int
    dropped_events: int
    buffered_events: int
    buffer_high_water: int
    slow_consumer: bool
    closed: bool


@attrs.frozen(kw_only=True)
class RelayStats:
    """Snapshot of a relay.

    Attributes:
        name: relay name.
        url: ``ws://host:port/`` (append a market path).
        running: serving now.
        downstream_connections: open downstream connections (authenticated or not).
        upstream_channels: channels subscribed upstream (with at least one downstream subscriber).
        frames_in, events_in: upstream data frames and objects taken from the pool.
        events_unrouted: upstream objects no consumer was subscribed to (e.g. after an
            unsubscribe, before the upstream one took effect).
        events_sent, events_dropped: totals since the start, over every consumer (those no longer
            listed in ``consumers`` included).
        slow_consumers: consumers closed as slow since the start.
        consumers: open consumers, then the most recently closed ones.
        upstream: the pool's own stats.
    """

    name: str
    url: str
    running: bool
    downstream_connections: int
    upstream_channels: int
    frames_in: int
    events_in: int
    events_unrouted: int
    events_sent: int
    events_dropped: int
    slow_consumers: int
    consumers: tuple[ConsumerStats, ...]
    upstream: PoolStats


# ------------------------------------------------------------------------------------------------
# One consumer's buffer and writer


class _Sender:
    """The bounded buffer of one downstream connection, drained by its own writer thread.

    The forwarder thread :meth:`put` s encoded frames (shared between consumers) without ever
    blocking; the writer takes everything buffered at once and writes it in a few system calls.
    """

    __slots__ = (
        "buffered",
        "cond",
        "conn",
        "deadline",
        "dropped",
        "ended",
        "frames",
        "high_water",
        "limit",
        "sent_bytes",
        "sent_events",
        "sent_frames",
        "slow",
        "waiting",
    )

    def __init__(self, conn: ServerConn, limit: int) -> None:
        self.conn = conn
        self.limit = limit
        self.cond = threading.Condition(threading.Lock())
        self.frames: list[bytes] = []
        self.buffered = 0
        self.high_water = 0
        self.sent_events = 0
        self.sent_frames = 0
        self.sent_bytes = 0
        self.dropped = 0
        self.slow = False  # overflowed: the writer sends slow_consumer and closes
        self.ended = False  # the connection is gone or the relay stops: the writer exits
        self.waiting = False
        self.deadline: float | None = None  # when a slow consumer's close gives up and drops TCP

    def put(self, frames: list[bytes], events: int, close_timeout: float) -> int:
        """Buffer encoded frames holding ``events`` events in all (statuses count 0).

        Returns the events now buffered, or -1 when this put overflowed the buffer (the consumer
        is then slow: everything buffered is dropped and the writer closes the connection).
        """
        with self.cond:
            if self.ended:  # gone: the events were not for it anymore
                return 0
            if self.slow:
                self.dropped += events
                return 0
            buffered = self.buffered + events
            if buffered > self.limit:
                self.dropped += buffered
                self.frames = []
                self.buffered = 0
                self.slow = True
                self.deadline = time.monotonic() + close_timeout
                self.cond.notify()
                return -1
            self.frames += frames
            self.buffered = buffered
            if buffered > self.high_water:
                self.high_water = buffered
            if self.waiting:
                self.cond.notify()
            return buffered

    def end(self) -> None:
        with self.cond:
            self.ended = True
            self.cond.notify()

    def give_up(self) -> bool:
        """The writer abandons a blocked send: the relay stops, or a slow consumer's time is up."""
        deadline = self.deadline
        return self.ended or (deadline is not None and time.monotonic() > deadline)

    def stats(self) -> ConsumerStats:
        conn = self.conn
        return ConsumerStats(
            id=conn.id, market=conn.market.value, remote_address=conn.remote_address,
            authenticated=conn.authenticated, subscriptions=conn.subscriptions, sent_events=self.sent_events,
            sent_frames=self.sent_frames, sent_bytes=self.sent_bytes, dropped_events=self.dropped,
            buffered_events=self.buffered, buffer_high_water=self.high_water, slow_consumer=self.slow,
            closed=conn.closed,
        )  # fmt: skip


def _channel_key(channel: str) -> tuple[str, str]:
    prefix, _, ticker = channel.partition(".")
    return prefix, ticker


def _discard(table: dict[K, _Subscribers], key: K, sender: _Sender) -> bool:
    """Remove ``sender`` from the subscribers of ``key``; True when it was the last one."""
    subscribers = table.get(key)
    if subscribers is None or sender not in subscribers:
        return False
    rest = subscribers - {sender}
    if rest:
        table[key] = rest
        return False
    del table[key]
    return True


def _subscribers(table: _Table, channel: str) -> _Subscribers | None:
    prefix, ticker = _channel_key(channel)
    return table[0].get(prefix) if ticker == "*" else table[1].get((prefix, ticker))


# ------------------------------------------------------------------------------------------------
# The relay


class MassiveRelay(ProtocolServer):
    """Serve many local Massive clients from one set of upstream connections.

    Args:
        upstream: a :class:`~massive_rt.ConnectionPool` to take over (the relay starts and stops
            it, and must be its only consumer; build it with ``client_options={"raw": True}`` so
            frames are forwarded without being decoded), or ``None`` to build one from
            ``api_key``, ``max_connections``, ``feed``, ``url`` and ``client_options``.
        api_key: upstream Massive key (``None`` reads ``MASSIVE_API_KEY``).
        max_connections: the account's connection limit the upstream pool respects.
        feed: upstream feed host.
        url: upstream endpoint override: ``"ws://host:port/{market}"`` or ``market -> url``.
        client_options: extra options for each upstream connection (``reconnect``, ...).
        on_limit: what the upstream pool does when ``max_connections`` ends a connection
            (``"auto"`` by default: see :class:`~massive_rt.ConnectionPool`).
        host: interface to listen on (loopback by default).
        port: port to listen on; 0 picks a free one (see :attr:`port`).
        api_keys: relay-local keys downstream clients authenticate with; ``None`` accepts any.
        consumer_buffer: events buffered per consumer before it is closed as a slow consumer.
        name: used in thread names, logs and the upstream connection names.
        ssl_context: serve ``wss://`` with this server-side context.
        close_timeout: how long a clean close (``stop``, slow consumer) waits for the client
            before the TCP connection is dropped.
        auth_timeout: seconds a downstream client has to authenticate (``None``: no limit).
        ack_mode: ``"batched"`` or ``"separate"`` acks downstream.
        keep_closed: closed consumers remembered in :meth:`stats` and :attr:`connections`.
        socket_buffer: ``SO_SNDBUF`` of each downstream socket, in bytes (``None``: the system's
            autotuning, which may hold megabytes per consumer before ``consumer_buffer`` counts).
    """

    kind = "relay"

    def __init__(
        self,
        upstream: ConnectionPool | None = None,
        *,
        api_key: str | None = None,
        max_connections: int = 1,
        feed: Feed | str = Feed.REALTIME,
        url: str | Callable[[Market], str] | None = None,
        client_options: Mapping[str, Any] | None = None,
        on_limit: str | LimitRetry | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        api_keys: Iterable[str] | None = None,
        consumer_buffer: int = 10_000,
        name: str = "relay",
        ssl_context: ssl.SSLContext | None = None,
        close_timeout: float = 2.0,
        auth_timeout: float | None = 30.0,
        ack_mode: str = "batched",
        keep_closed: int = 100,
        socket_buffer: int | None = None,
    ) -> None:
        require_name("name", name)
        require_int("consumer_buffer", consumer_buffer)
        require_number("close_timeout", close_timeout, strict=True)
        require_int("keep_closed", keep_closed, minimum=0)
        if socket_buffer is not None:
            require_int("socket_buffer", socket_buffer)
        super().__init__(
            api_keys, host=host, port=port, auth_timeout=auth_timeout, ack_mode=ack_mode, ssl_context=ssl_context,
            name=name, close_timeout=close_timeout, keep_closed=keep_closed,
        )  # fmt: skip
        if upstream is not None:
            if not isinstance(upstream, ConnectionPool):
                raise ConfigurationError(f"upstream={upstream!r} must be a ConnectionPool or None", field="upstream")
            given = {"api_key": api_key, "url": url, "client_options": client_options, "on_limit": on_limit}
            clash = [k for k, v in given.items() if v is not None]
            if clash:
                raise ConfigurationError(f"pass either upstream= or {', '.join(clash)}=, not both", field="upstream")
            self._pool = upstream
        else:
            options = {"raw": True, **(client_options or {})}
            self._pool = ConnectionPool(
                api_key, max_connections, market=Market.STOCKS, feed=feed, url=url, name=f"{name}-upstream",
                client_options=options, on_limit="auto" if on_limit is None else on_limit,
            )  # fmt: skip
        if self._accepts_any_key() and host not in ("127.0.0.1", "::1", "localhost"):
            logger.warning("relay %s listens on %s and accepts any key: pass api_keys=", name, host)
        self.consumer_buffer = consumer_buffer
        self.socket_buffer = socket_buffer
        self._half_buffer = consumer_buffer // 2
        self._pressure = False
        self._outbox: dict[_Sender, list[Any]] = {}  # forwarder only: [frames, events] of this batch

        self._routes_lock = threading.Lock()  # serialises routing changes and the upstream (un)subscribes
        self._routes: dict[str, _Table] = {}  # market → table; replaced (copy on write), read without lock
        self._life_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop_forwarding = threading.Event()
        self._forwarder: threading.Thread | None = None
        self._stopping = False
        # Forwarder counters (written by the forwarder thread only).
        self._frames_in = 0
        self._events_in = 0
        self._unrouted = 0
        self._slow_kicks = 0
        self._forgotten_sent = 0  # what consumers no longer listed in stats() (keep_closed) had sent ...
        self._forgotten_dropped = 0  # ... and dropped: the totals never go down

    # -- public API --------------------------------------------------------------------------------

    @property
    def upstream(self) -> ConnectionPool:
        """The upstream pool."""
        return self._pool

    def start(self) -> MassiveRelay:
        """Start the upstream pool, the forwarder and the server (idempotent). Returns ``self``.

        Raises:
            ClientClosedError: after :meth:`stop`.
            OSError: the port cannot be bound (everything started is stopped again).
        """
        with self._life_lock:
            with self._lock:
                if self._is_closed():
                    raise ClientClosedError(f"MassiveRelay {self.name!r} is stopped; create a new one")
                if self._is_started():
                    return self
            self._pool.set_listener(self._wake.set)
            self._pool.start()
            if self._forwarder is None:
                self._forwarder = threading.Thread(
                    target=self._forward_loop, name=f"{self._thread_prefix}forwarder-{self.name}", daemon=True
                )
                self._forwarder.start()
            try:
                super().start()
            except BaseException:
                self.close()
                raise
        return self

    def stop(self) -> None:
        """Close every downstream connection (1001; consumers that do not read are dropped), stop
        the forwarder and the upstream pool, and join every thread. Idempotent; any thread;
        bounded (``close_timeout`` plus a few seconds at worst)."""
        self.close()

    def close(self) -> None:
        """Same as :meth:`stop`."""
        super().close()

    def __enter__(self) -> MassiveRelay:
        return self.start()

    def stats(self) -> RelayStats:
        """Counters of the relay, of every open (and recently closed) consumer, and of the pool."""
        with self._lock:  # the list and the forgotten totals together: no consumer counted twice or never
            senders = self._senders()
            forgotten_sent, forgotten_dropped = self._forgotten_sent, self._forgotten_dropped
            downstream = self._open_count()
            running = self._is_running()
        senders.sort(key=lambda s: s.conn.closed)  # open ones first, each group in arrival order
        consumers = tuple(s.stats() for s in senders)
        with self._routes_lock:
            channels = sum(len(wild) + len(named) for wild, named in self._routes.values())
        return RelayStats(
            name=self.name, url=self.url(""), running=running, downstream_connections=downstream,
            upstream_channels=channels, frames_in=self._frames_in, events_in=self._events_in,
            events_unrouted=self._unrouted, events_sent=forgotten_sent + sum(c.sent_events for c in consumers),
            events_dropped=forgotten_dropped + sum(c.dropped_events for c in consumers),
            slow_consumers=self._slow_kicks,
            consumers=consumers, upstream=self._pool.stats(),
        )  # fmt: skip

    # -- server hooks (handler threads) ------------------------------------------------------------

    def _on_open(self, conn: ServerConn) -> None:
        if self.socket_buffer is not None:
            with contextlib.suppress(OSError):
                conn.ws.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.socket_buffer)
        sender = _Sender(conn, self.consumer_buffer)
        conn.attachment = sender
        writer = threading.Thread(
            target=self._write_loop, args=(sender,), name=f"{self._thread_prefix}writer-{self.name}-{conn.id}",
            daemon=True,
        )  # fmt: skip
        self._track(writer)
        writer.start()

    def _on_subscribe(self, conn: ServerConn, channels: list[str]) -> Iterable[str]:
        sender = conn.attachment
        assert isinstance(sender, _Sender)
        market = conn.market
        with self._routes_lock:
            wild, named = self._routes.get(market.value, _EMPTY_TABLE)
            table = (wild, named)
            fresh = [c for c in channels if not _subscribers(table, c)]
            refused = self._subscribe_upstream(market, fresh) if fresh else set()
            wild, named = dict(wild), dict(named)
            for channel in channels:
                if channel in refused:
                    continue
                prefix, ticker = _channel_key(channel)
                if ticker == "*":
                    wild[prefix] = wild.get(prefix, frozenset()) | {sender}
                else:
                    named[(prefix, ticker)] = named.get((prefix, ticker), frozenset()) | {sender}
            self._routes[market.value] = (wild, named)
        return refused

    def _on_unsubscribe(self, conn: ServerConn, channels: list[str]) -> None:
        self._release(conn, channels)

    def _on_closed(self, conn: ServerConn) -> None:
        sender = conn.attachment
        if isinstance(sender, _Sender):
            sender.end()
            self._release(conn, list(conn.subscriptions))

    def _on_forgotten(self, conn: ServerConn) -> None:
        sender = conn.attachment
        if isinstance(sender, _Sender):
            self._forgotten_sent += sender.sent_events
            self._forgotten_dropped += sender.dropped

    def _closing(self) -> None:
        self._stopping = True  # downstream closes no longer unsubscribe upstream: the pool stops anyway
        # Writers blocked on consumers that do not read give up now (dropping those connections),
        # so that closing the others cleanly never waits behind them; idle writers just end.
        for sender in self._senders():
            sender.end()

    def _senders(self) -> list[_Sender]:
        with self._lock:
            return [c.attachment for c in self._all_conns() if isinstance(c.attachment, _Sender)]

    def _after_connections_closed(self) -> None:
        self._stop_forwarding.set()
        self._wake.set()
        forwarder = self._forwarder
        if forwarder is not None and forwarder is not threading.current_thread():
            forwarder.join(self.close_timeout + 3.0)
        self._pool.stop()
        for sender in self._senders():
            sender.end()

    def _release(self, conn: ServerConn, channels: Sequence[str]) -> None:
        """Remove ``conn`` from the subscribers of ``channels``; unsubscribe upstream the channels
        it was the last subscriber of."""
        sender = conn.attachment
        if not channels or not isinstance(sender, _Sender):
            return
        market = conn.market
        with self._routes_lock:
            wild, named = self._routes.get(market.value, _EMPTY_TABLE)
            wild, named = dict(wild), dict(named)
            emptied: list[str] = []
            for channel in channels:
                prefix, ticker = _channel_key(channel)
                last = _discard(wild, prefix, sender) if ticker == "*" else _discard(named, (prefix, ticker), sender)
                if last:
                    emptied.append(channel)
            self._routes[market.value] = (wild, named)
            if emptied and not self._stopping:
                try:
                    self._pool.unsubscribe(*emptied, market=market)
                except MassiveRTError as exc:
                    logger.debug("relay %s: upstream unsubscribe failed: %s", self.name, exc)

    def _subscribe_upstream(self, market: Market, channels: list[str]) -> set[str]:
        """Place channels on the upstream pool (routes lock held); returns those that found no room."""
        if self._stopping:
            return set(channels)
        try:
            self._pool.subscribe(*channels, market=market)
            return set()
        except SubscriptionError:
            pass  # all or nothing: place what fits one by one
        except MassiveRTError as exc:
            logger.warning("relay %s: cannot subscribe %d channel(s) upstream: %s", self.name, len(channels), exc)
            return set(channels)
        refused: set[str] = set()
        for channel in channels:
            try:
                self._pool.subscribe(channel, market=market)
            except MassiveRTError:
                refused.add(channel)
        if refused:
            logger.warning("relay %s: no room upstream for %s", self.name, ", ".join(sorted(refused)[:20]))
        return refused

    # -- writer threads ------------------------------------------------------------------------------

    def _write_loop(self, sender: _Sender) -> None:
        conn = sender.conn
        cond = sender.cond
        try:
            while True:
                with cond:
                    while not sender.frames and not sender.slow and not sender.ended:
                        sender.waiting = True
                        cond.wait()
                        sender.waiting = False
                    frames, sender.frames = sender.frames, []
                    events, sender.buffered = sender.buffered, 0
                    slow, ended = sender.slow, sender.ended
                if ended:
                    return
                if frames:
                    if not self._write_until(conn, join_frames(frames, _WRITE_CHUNK), sender.give_up):
                        if sender.slow and not sender.ended:
                            self._abort(conn)  # a slow consumer's time ran out mid-frame
                        return
                    sender.sent_events += events
                    sender.sent_frames += len(frames)
                    sender.sent_bytes += sum(map(len, frames))
                if slow:
                    self._close_slow(sender)
                    return
        except Exception:  # a bug must not leave the consumer hanging: drop it
            logger.exception("relay %s: writer of %s failed", self.name, conn.id)
            self._abort(conn)

    def _close_slow(self, sender: _Sender) -> None:
        """Massive's treatment of a slow consumer: a ``slow_consumer`` status, then close 1008;
        the TCP connection is dropped if it cannot be done within ``close_timeout``."""
        conn = sender.conn
        message = f"Consumer too slow: more than {sender.limit} events waiting; closing the connection."
        frame = encode_frame(status_frame("slow_consumer", message).encode())
        deadline = sender.deadline if sender.deadline is not None else time.monotonic() + self.close_timeout
        if self._write_until(conn, [frame], sender.give_up):
            sock = conn.ws.socket
            try:  # bound the close frame's send too: the client may still not be reading
                sock.settimeout(max(0.05, deadline - time.monotonic()))
                closing = self._initiate_close(conn, POLICY_VIOLATION, "")
            except OSError:
                closing = False
            finally:
                with contextlib.suppress(OSError):
                    sock.settimeout(None)
            if closing:
                conn.finished.wait(max(0.0, deadline - time.monotonic()))
        if conn.ws.recv_events_thread.is_alive():
            self._abort(conn)

    # -- forwarder thread ----------------------------------------------------------------------------

    def _forward_loop(self) -> None:
        pool, wake, stop = self._pool, self._wake, self._stop_forwarding
        while not stop.is_set():
            wake.clear()
            progressed = False
            try:
                clients = pool.clients()  # retired connections too, until their queues are empty
            except Exception:  # the forwarder must outlive any bug
                logger.exception("relay %s: listing the upstream connections failed", self.name)
                clients = ()
            for client in clients:
                try:
                    events = client.drain(_DRAIN_FRAMES)
                    if not events:
                        continue
                    progressed = True
                    self._forward(client.market.value, client.name, events)
                except Exception:  # the forwarder must outlive any bug in one batch
                    logger.exception("relay %s: forwarding a batch from %s failed", self.name, client.name)
                    continue
                if self._pressure:
                    # A consumer's buffer is past half full. Its writer may simply not have had
                    # the GIL yet (this thread keeps it for up to 5 ms): yield a moment so that
                    # writers run before a burst is mistaken for a slow consumer. This delays no
                    # upstream reader (each one fills its own queue meanwhile).
                    self._pressure = False
                    time.sleep(_YIELD)
            if not progressed:
                wake.wait(0.5)

    def _forward(self, market: str, connection: str, events: list[Any]) -> None:
        """Route one batch drained from an upstream connection; each consumer's share of the
        batch is handed over in one put (one lock round-trip and at most one wake-up)."""
        try:
            self._forward_batch(market, connection, events)
        finally:
            outbox, self._outbox = self._outbox, {}
            close_timeout = self.close_timeout
            for sender, (frames, count) in outbox.items():
                self._note(sender, sender.put(frames, count, close_timeout))

    def _post(self, sender: _Sender, frame: bytes, events: int) -> None:
        entry = self._outbox.get(sender)
        if entry is None:
            self._outbox[sender] = [[frame], events]
        else:
            entry[0].append(frame)
            entry[1] += events

    def _forward_batch(self, market: str, connection: str, events: list[Any]) -> None:
        pending: list[Any] = []  # typed events (a pool not in raw mode) turned back into wire objects
        for event in events:
            cls = event.__class__
            if cls is RawFrame:
                if pending:
                    self._route(market, pending, None)
                    pending = []
                data = event.data
                try:
                    objects = fast_loads(data)
                except (ValueError, TypeError, RecursionError):
                    logger.debug("relay %s: undecodable upstream frame dropped (%d bytes)", self.name, len(data))
                    continue
                self._frames_in += 1
                if type(objects) is list:
                    self._route(market, objects, data if isinstance(data, bytes) else data.encode())
                elif type(objects) is dict:
                    self._route(market, [objects], None)
            elif cls is StatusMessage:
                if pending:
                    self._route(market, pending, None)
                    pending = []
                self._forward_status(market, connection, event)
            elif isinstance(event, MarketEvent):
                pending.append(to_wire(event))
            elif isinstance(event, UnknownEvent) and type(event.data) is dict:
                pending.append(event.data)
        if pending:
            self._route(market, pending, None)

    def _route(self, market: str, objects: list[Any], raw: bytes | None) -> None:
        """Send each object to the consumers of its channels, keeping every consumer's order.

        The objects of a frame fall into a few distinct consumer sets. Consumers that belong to
        the same sets receive the same subsequence of the frame: it is encoded once for all of
        them. When the whole frame goes to one set (the common case) the upstream bytes are
        forwarded as they are.
        """
        self._events_in += len(objects)
        wild, named = self._routes.get(market, _EMPTY_TABLE)
        if not wild and not named:
            self._unrouted += len(objects)
            return
        symbol_keys = _SYMBOL_KEYS.get(market, {})
        groups: dict[_Subscribers, list[Any]] = {}  # consumer set → its objects, in frame order
        order: list[tuple[Any, _Subscribers]] = []  # routed objects with their set, in frame order
        unions: dict[tuple[int, int], _Subscribers] = {}
        for obj in objects:
            if type(obj) is not dict:
                continue
            ev = obj.get("ev")
            if type(ev) is not str:
                continue
            targets = wild.get(ev)
            if named:
                key = symbol_keys.get(ev)
                if key is not None:
                    symbol = obj.get(key)
                    if type(symbol) is str:
                        exact = named.get((ev, symbol))
                        if exact is not None:
                            if targets is None:
                                targets = exact
                            elif exact is not targets:
                                pair = (id(targets), id(exact))
                                both = unions.get(pair)
                                if both is None:
                                    both = unions[pair] = targets | exact
                                targets = both
            if targets is None:
                continue
            group = groups.get(targets)
            if group is None:
                groups[targets] = [obj]
            else:
                group.append(obj)
            order.append((obj, targets))
        routed = len(order)
        self._unrouted += len(objects) - routed
        if not groups:
            return
        post = self._post
        if len(groups) == 1:
            ((targets, group),) = groups.items()
            frame = encode_frame(raw if raw is not None and routed == len(objects) else dumps(group))
            for sender in targets:
                post(sender, frame, routed)
            return
        # Several sets: group the consumers by the sets they belong to.
        memberships: dict[_Sender, list[_Subscribers]] = {}
        for targets in groups:
            for sender in targets:
                member_of = memberships.get(sender)
                if member_of is None:
                    memberships[sender] = [targets]
                else:
                    member_of.append(targets)
        audiences: dict[tuple[_Subscribers, ...], list[_Sender]] = {}
        for sender, member_of in memberships.items():
            audience = audiences.get(tuple(member_of))
            if audience is None:
                audiences[tuple(member_of)] = [sender]
            else:
                audience.append(sender)
        for sets, senders in audiences.items():
            if len(sets) == 1:
                selected = groups[sets[0]]
            else:
                wanted = set(sets)
                selected = [obj for obj, targets in order if targets in wanted]
            frame = encode_frame(dumps(selected))
            count = len(selected)
            for sender in senders:
                post(sender, frame, count)

    def _note(self, sender: _Sender, buffered: int) -> None:
        """Book the result of a put: a slow consumer, or a buffer past half full."""
        if buffered < 0:
            self._slow_kicks += 1
            logger.warning("relay %s: %s is a slow consumer (more than %d events waiting): %d events dropped, "
                           "closing it", self.name, sender.conn.id, sender.limit, sender.dropped)  # fmt: skip
        elif buffered > self._half_buffer:
            self._pressure = True

    def _forward_status(self, market: str, connection: str, event: StatusMessage) -> None:
        """Tell the consumers of the channels an upstream status concerns, in order with the data."""
        status = event.status
        if status in _LOCAL_ONLY:
            return
        table = self._routes.get(market, _EMPTY_TABLE)
        if not table[0] and not table[1]:
            return
        if status in _PER_CHANNEL and event.channels:
            channels: Iterable[str] = event.channels
        else:
            channels = self._pool.subscriptions.get(connection, ())
        targets: set[_Sender] = set()
        for channel in channels:
            subscribers = _subscribers(table, channel)
            if subscribers:
                targets.update(subscribers)
        if not targets:
            return
        name = status if status in _VERBATIM else f"upstream_{status}"
        message = event.message or status
        bounds = [f"{k}={v}" for k, v in (("gap_start_ns", event.gap_start_ns), ("gap_end_ns", event.gap_end_ns)) if v]
        if bounds:
            message += f" ({', '.join(bounds)})"
        if event.channels:
            message += f" (channels: {', '.join(event.channels[:50])})"
        frame = encode_frame(dumps([status_fields(name, message, event)]))
        for sender in targets:
            self._post(sender, frame, 0)


# ------------------------------------------------------------------------------------------------
# Command line: ``massive-rt relay`` and ``python -m massive_rt.relay`` live in massive_rt.cli.relay


def main(argv: Sequence[str] | None = None, *, message: Callable[[str], None] | None = None,
         stop: threading.Event | None = None) -> int:  # fmt: skip
    """``massive-rt relay [options]``: see :func:`massive_rt.cli.relay.main` (this delegates to it)."""
    from .cli.relay import main as cli_main

    return cli_main(argv, message=message, stop=stop)


def run_relay(**options: Any) -> int:
    """Run a relay until stopped: see :func:`massive_rt.cli.relay.run_relay` (this delegates to it)."""
    from .cli.relay import run_relay as cli_run_relay

    return cli_run_relay(**options)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
