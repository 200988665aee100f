"""The server side of Massive's protocol, shared by the mock server and the relay.

:class:`ProtocolServer` runs a ``websockets`` threaded server on a local port and speaks
Massive's real-time protocol to any number of clients (``docs/protocol.md`` §2-§3): the ``connected``
greeting, ``auth`` (with an optional per-key connection limit and ``auth_timeout``), per-channel
``subscribe``/``unsubscribe`` acks, wildcards, dotted tickers, silently ignored unknown channels,
``not authorized`` refusals, ``Invalid JSON``. It keeps the bookkeeping of every connection
(:class:`ConnectionInfo` snapshots, high-water marks, state-change waits) and owns the socket
primitives: frame building, a fast writer that puts many frames in one system call under each
connection's send mutex, clean and abrupt closes, and thread naming and joining.

Subclasses decide what the server *is* through a few hooks: :meth:`ProtocolServer._authorize`
(which keys authenticate), :meth:`ProtocolServer._entitled` (which channels are refused),
:meth:`ProtocolServer._on_open`, :meth:`ProtocolServer._on_subscribe` (may refuse channels),
:meth:`ProtocolServer._on_unsubscribe`, :meth:`ProtocolServer._on_closed` and
:meth:`ProtocolServer._record`. :class:`massive_rt.testing.MockMassiveServer` adds fault
injection and publishing; :class:`massive_rt.relay.MassiveRelay` forwards an upstream feed.

Threads (``<kind>`` is the subclass's :attr:`ProtocolServer.kind`): one
``massive-rt-<kind>-serve-<name>`` accept loop, and per connection a
``massive-rt-<kind>-conn-<name>-<id>`` handler thread and a ``massive-rt-<kind>-recv-<name>-<id>``
reader thread (both created by ``websockets``, renamed here), plus short-lived
``massive-rt-<kind>-close-<name>-<id>`` threads that bound a clean close and a
``massive-rt-<kind>-shutdown-<name>`` thread while stopping. All are daemons; :meth:`close`
joins every thread registered with :meth:`ProtocolServer._track`.

One lock guards the bookkeeping and is never held during socket I/O; frames go out under each
connection's own ``websockets`` send mutex, so frames written by the fast path never interleave
with frames the library writes (pongs, close frames).
"""

from __future__ import annotations

import http
import inspect
import itertools
import json
import logging
import re
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar
from urllib.parse import urlsplit

import attrs
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.sync.server import Server, ServerConnection, serve

from .config import mask_secret
from .enums import Market
from .errors import ClientClosedError, ConfigurationError
from .framing import encode_frame
from .protocol import parse_channel, parse_control, split_params, status_array

__all__ = ["ConnectionInfo", "ProtocolServer", "ServerConn", "market_path"]

logger = logging.getLogger(__name__)


class _MaskAuthFilter(logging.Filter):
    """websockets logs every frame at DEBUG; a client's auth frame carries its API key."""

    _PARAMS = re.compile(r'("params"\s*:\s*")[^"]*')

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if "auth" in text and "params" in text:
            record.msg, record.args = self._PARAMS.sub(r"\1***", text), ()
        return True


#: The logger websockets' server writes to (frames at DEBUG), with API keys masked.
wire_logger = logging.getLogger(f"{__name__}.wire")
wire_logger.addFilter(_MaskAuthFilter())

# Status replies (docs/protocol.md §2.2). "auth_required" comes from the SPEC's SubscribeEvent enum; its
# text and whether the real server sends it at all are unverified (see MockMassiveServer docs).
CONNECTED = ("connected", "Connected Successfully")
AUTH_SUCCESS = ("auth_success", "authenticated")
AUTH_FAILED = ("auth_failed", "authentication failed")
AUTH_TIMEOUT = ("auth_timeout", "No authentication request received.")
AUTH_REQUIRED = ("auth_required", "not authenticated")
MAX_CONNECTIONS = ("max_connections", "Maximum number of websocket connections exceeded.")
NOT_AUTHORIZED = ("error", "not authorized")
INVALID_JSON = ("error", "Invalid JSON")

#: Close code sent after ``max_connections`` and ``auth_timeout`` (1008, policy violation).
POLICY_VIOLATION = 1008
#: Close code of :meth:`ProtocolServer.close` (1001, going away).
GOING_AWAY = 1001

_MARKETS: dict[str, Market] = {m.value: m for m in Market}

# The websockets versions we support (>= 13) differ in two parts of the threaded server we use,
# detected here from their signatures rather than from version numbers:
# - serve(ping_interval=) exists from 15.0 on, where the server sends keepalive pings by default;
#   before 15.0 it sends none (the behaviour we want) and the keyword is passed on to
#   socket.create_server(), which refuses it.
# - Server.shutdown(close_connections=) exists from 17.0 on, where shutdown() closes every open
#   connection with 1001 unless told not to, then joins the handler threads. Before 17.0 it only
#   closes the listening socket. We close connections ourselves (cleanly or abruptly, see
#   _stop_server) and join the handler threads ourselves (each registers with _track as it starts).
_SERVE_PING_OPTIONS: dict[str, Any] = (
    {"ping_interval": None} if "ping_interval" in inspect.signature(serve).parameters else {}
)
_SHUTDOWN_OPTIONS: dict[str, Any] = (
    {"close_connections": False} if "close_connections" in inspect.signature(Server.shutdown).parameters else {}
)


def market_path(market: Market | str) -> str:
    """The URL path of ``market`` (a :class:`Market` or its value), checked."""
    if isinstance(market, Market):
        return market.value
    value = str(market).strip("/")
    if value not in _MARKETS:
        choices = ", ".join(sorted(_MARKETS))
        raise ConfigurationError(f"market={market!r} is not one of {choices}", field="market")
    return value


# ------------------------------------------------------------------------------------------------
# Public value objects


@attrs.frozen(kw_only=True)
class ConnectionInfo:
    """Snapshot of one connection the server accepted.

    Attributes:
        id: ``"c1"``, ``"c2"`` ... in order of arrival (never reused, also across restarts).
        market: market path the client connected to.
        authenticated: True once it sent a valid key.
        key: the key it sent with ``auth`` (masked in ``repr``), ``None`` before.
        subscriptions: channels currently subscribed.
        opened_at: wall-clock time the WebSocket handshake completed.
        closed: True once the connection started closing (close frame sent/received or TCP gone).
        closed_at: wall-clock time it was marked closed.
        stalled: True while :meth:`MockMassiveServer.stall` holds it.
        evicted: True when it was chosen for eviction by the connection limit.
        remote_address: the client's ``(host, port)``.
    """

    id: str
    market: str
    authenticated: bool
    key: str | None = attrs.field(repr=mask_secret)
    subscriptions: frozenset[str]
    opened_at: float
    closed: bool
    closed_at: float | None
    stalled: bool
    evicted: bool
    remote_address: Any


# ------------------------------------------------------------------------------------------------
# Internals


@attrs.define(eq=False)
class ServerConn:
    """Mutable bookkeeping of one connection. Guarded by the server lock (``ws`` is immutable).

    ``attachment`` belongs to the subclass (the relay keeps its per-consumer sender there).
    """

    id: str
    market: Market
    ws: _ProtocolServerConnection
    opened_at: float
    remote_address: Any
    key: str | None = None
    authenticated: bool = False
    subscriptions: frozenset[str] = frozenset()  # replaced, never mutated: cheap snapshots
    closed: bool = False
    closed_at: float | None = None
    evicted: bool = False
    stalled: bool = False
    stall_held: bool = False  # True while stall() owns ws.protocol_mutex
    # Set once the closing handshake is over on our side (EOF sent) or the socket is gone: from then
    # on dropping the TCP connection loses nothing, so closes need not wait for the client's EOF.
    finished: threading.Event = attrs.field(factory=threading.Event)
    attachment: Any = None

    def info(self) -> ConnectionInfo:
        return ConnectionInfo(
            id=self.id, market=self.market.value, authenticated=self.authenticated, key=self.key,
            subscriptions=self.subscriptions, opened_at=self.opened_at, closed=self.closed,
            closed_at=self.closed_at, stalled=self.stalled, evicted=self.evicted,
            remote_address=self.remote_address,
        )  # fmt: skip


class _ProtocolServerConnection(ServerConnection):
    """A ``ServerConnection`` that names its threads and reports closing before the peer can see it.

    A subclass is created per server with ``owner`` set (see ``ProtocolServer._start_server``).
    """

    owner: ProtocolServer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.mock_conn: ServerConn | None = None
        super().__init__(*args, **kwargs)
        # Runs in the handler thread websockets started for this socket (already named).
        self.recv_events_thread.name = f"{self.owner._thread_prefix}recv-{self.owner.name}"
        self.owner._track(self.recv_events_thread)

    def send_data(self) -> None:
        # Called with protocol_mutex held, before the bytes of a close frame / EOF reach the peer:
        # marking the connection closed here means a client that saw its connection end can never
        # observe it still counted as open (max_concurrent stays exact while a pool recycles).
        conn = self.mock_conn
        if conn is None:
            super().send_data()
            return
        if not conn.closed and self.protocol.state in (State.CLOSING, State.CLOSED):
            self.owner._mark_closed(conn)
        super().send_data()
        if self.protocol.eof_sent or self.protocol.state is State.CLOSED:
            conn.finished.set()


# ------------------------------------------------------------------------------------------------
# The server


class ProtocolServer:
    """A local server speaking Massive's real-time protocol; subclass it (see the module docs).

    Args:
        api_keys: keys that authenticate; ``None`` accepts any key.
        host: interface to bind.
        port: port to bind; 0 picks a free one (see :attr:`port`).
        max_connections: limit of authenticated connections per key across all markets.
        evict: ``"newest"`` (the connection over the limit is closed) or ``"oldest"``.
        auth_timeout: seconds a client has to authenticate before ``auth_timeout``; ``None`` = no limit.
        ack_mode: ``"batched"`` (all acks of a request in one frame) or ``"separate"``.
        ssl_context: serve ``wss://`` with this server-side context.
        name: used in thread names and logs.
        close_timeout: how long a clean close waits for the client's close frame before the TCP
            connection is dropped.
        slow_consumer_timeout: when set, a send of :meth:`_write` that cannot complete within this
            many seconds drops the connection abruptly. ``None`` blocks the sender until the
            client reads (TCP backpressure).
        keep_closed: how many closed connections :attr:`connections` remembers (``None``: all).

    Subclass API — the underscore members below are the contract with subclasses (the mock server
    and the relay); nothing else of this class is theirs to touch:

    * hooks to override (handler threads unless noted): ``_authorize``, ``_accept_channel``,
      ``_entitled``, ``_on_open``, ``_on_subscribe``, ``_on_unsubscribe``, ``_on_closed``,
      ``_record``, ``_send_subscription_replies`` (with ``_reply_frames`` to build the default
      reply), ``_refusal``, ``_closing`` and ``_after_connections_closed`` (any thread);
    * writers (never under the lock): ``_write``, ``_write_until``, ``_abort``,
      ``_initiate_close``, ``_close_gracefully``, ``_release_stall``;
    * bookkeeping: ``_lock`` / ``_cond`` (the one lock of the server's state, never held during
      I/O), ``_lookup``, ``_open_conns``, ``_all_conns``, ``_track`` (threads that ``close`` joins),
      ``_thread_prefix``, ``_is_running``, ``_is_started``, ``_is_closed``, ``_open_count``,
      ``_accepts_any_key``, and ``_restart_server`` (close every connection, listen
      again on the same port).
    """

    #: Middle part of thread names (``massive-rt-<kind>-...``); set by subclasses.
    kind: ClassVar[str] = "server"

    def __init__(
        self,
        api_keys: Iterable[str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_connections: int | None = None,
        evict: str = "newest",
        auth_timeout: float | None = None,
        ack_mode: str = "batched",
        ssl_context: ssl.SSLContext | None = None,
        name: str = "server",
        close_timeout: float = 2.0,
        slow_consumer_timeout: float | None = None,
        keep_closed: int | None = None,
    ) -> None:
        if isinstance(api_keys, str):
            api_keys = (api_keys,)
        self._api_keys: frozenset[str] | None = None if api_keys is None else frozenset(api_keys)
        if max_connections is not None and (isinstance(max_connections, bool) or max_connections < 1):
            raise ConfigurationError(
                f"max_connections={max_connections!r} must be >= 1 or None", field="max_connections"
            )
        if evict not in ("newest", "oldest"):
            raise ConfigurationError(f"evict={evict!r} must be 'newest' or 'oldest'", field="evict")
        if ack_mode not in ("batched", "separate"):
            raise ConfigurationError(f"ack_mode={ack_mode!r} must be 'batched' or 'separate'", field="ack_mode")
        for field, value in (("auth_timeout", auth_timeout), ("slow_consumer_timeout", slow_consumer_timeout)):
            if value is not None and not value > 0:
                raise ConfigurationError(f"{field}={value!r} must be > 0 or None", field=field)
        if not close_timeout > 0:
            raise ConfigurationError(f"close_timeout={close_timeout!r} must be > 0", field="close_timeout")
        if keep_closed is not None and (isinstance(keep_closed, bool) or keep_closed < 0):
            raise ConfigurationError(f"keep_closed={keep_closed!r} must be >= 0 or None", field="keep_closed")

        self.host = host
        self.name = name
        self.max_connections = max_connections
        self.evict = evict
        self.auth_timeout = auth_timeout
        self.ack_mode = ack_mode
        self.ssl_context = ssl_context
        self.close_timeout = close_timeout
        self.slow_consumer_timeout = slow_consumer_timeout
        self._keep_closed = keep_closed
        self._thread_prefix = f"massive-rt-{self.kind}-"
        self._requested_port = port
        self._port = port

        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._conns: dict[str, ServerConn] = {}  # every connection accepted (see keep_closed), in arrival order
        self._open: dict[str, ServerConn] = {}  # the ones not closed: what hot paths iterate
        self._closed_ids: deque[str] = deque()  # closed connections still in _conns, oldest first
        self._open_by_key: dict[str, int] = {}  # authenticated open connections per key
        self._ids = itertools.count(1)
        self._peak = 0
        self._peak_by_key: dict[str, int] = {}
        self._threads: list[threading.Thread] = []
        self._ws_server: Server | None = None
        self._serve_thread: threading.Thread | None = None
        self._accepting = False
        self._started = False
        self._closed = False

    # -- hooks for subclasses ----------------------------------------------------------------------

    def _authorize(self, key: str) -> bool:
        """Whether ``key`` authenticates (handler thread)."""
        return self._api_keys is None or key in self._api_keys

    def _accept_channel(self, conn: ServerConn, param: str) -> str | None:
        """The channel a subscribe/unsubscribe ``param`` names on ``conn``'s market, or None when
        the server ignores it silently (unknown prefix, malformed). Default: massive_rt's table."""
        try:
            return str(parse_channel(param, conn.market))
        except ConfigurationError:
            return None

    def _entitled(self, conn: ServerConn, channel: str) -> bool:
        """Whether ``conn`` may subscribe ``channel``; refused ones get ``not authorized``."""
        return True

    def _send_subscription_replies(
        self, conn: ServerConn, action: str, refused: list[str], accepted: list[str]
    ) -> None:
        """Answer a subscribe/unsubscribe (handler thread, after ``conn``'s state changed):
        ``not authorized`` per refused channel, then one ack per accepted one, framed by ``ack_mode``."""
        frames = self._reply_frames(action, refused, accepted)
        if frames:
            self._write(conn, b"".join(encode_frame(f.encode()) for f in frames), wait=True)

    def _refusal(self, channel: str) -> tuple[str, str]:
        """The ``(status, message)`` refusing ``channel``: ``("error", "not authorized")`` as observed."""
        return NOT_AUTHORIZED

    def _reply_frames(self, action: str, refused: list[str], accepted: list[str]) -> list[str]:
        """The JSON texts of a subscription reply: errors first, then acks; batched or one each."""
        verb = "subscribed to" if action == "subscribe" else "unsubscribed to"
        errors = [self._refusal(channel) for channel in refused]
        acks = [("success", f"{verb}: {channel}") for channel in accepted]
        if self.ack_mode == "batched":
            return [status_array(group) for group in (errors, acks) if group]
        return [status_array([pair]) for pair in (*errors, *acks)]

    def _on_open(self, conn: ServerConn) -> None:
        """A connection was accepted and registered (handler thread, before ``connected``)."""

    def _on_subscribe(self, conn: ServerConn, channels: list[str]) -> Iterable[str]:
        """``conn`` subscribes ``channels`` (new to it, valid, entitled), before its state changes
        and before the acks go out (handler thread, no lock held). Returns the channels to refuse
        with ``not authorized`` instead."""
        return ()

    def _on_unsubscribe(self, conn: ServerConn, channels: list[str]) -> None:
        """``conn`` unsubscribed ``channels`` (those it had), after its state changed (handler thread)."""

    def _on_closed(self, conn: ServerConn) -> None:
        """The connection ended; ``conn.subscriptions`` is final (handler thread, last hook)."""

    def _on_forgotten(self, conn: ServerConn) -> None:
        """A closed connection leaves :attr:`connections` (``keep_closed``); under the server lock:
        no I/O, no wait. Subclasses keep what its counters had reached."""

    def _record(self, conn: ServerConn, action: str | None, params: tuple[str, ...], key: str | None, raw: str) -> None:
        """Called for every message a client sends (handler thread). The default keeps nothing."""

    def _closing(self) -> None:
        """:meth:`close` began: stop producers before the connections close (any thread)."""

    def _after_connections_closed(self) -> None:
        """:meth:`close` closed every connection; the threads have not been joined yet."""

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Any:
        """Bind and start serving in a daemon thread (idempotent). Returns ``self``.

        Raises:
            ClientClosedError: after :meth:`close` (a closed server cannot be started again).
            OSError: when the port cannot be bound.
        """
        with self._lock:
            if self._closed:
                raise ClientClosedError(f"{type(self).__name__} {self.name!r} is closed; create a new one")
            if self._started:
                return self
            self._started = True
        try:
            self._start_server(self._requested_port)
        except BaseException:
            with self._lock:
                self._started = False
            raise
        logger.info("%s server %s listening on %s", self.kind, self.name, self.url(""))
        return self

    def close(self) -> None:
        """Close every connection (1001, clean, bounded by ``close_timeout``, then abrupt), stop
        listening and join every thread the server started. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            started = self._started
        self._closing()
        if started:
            self._stop_server(GOING_AWAY)
        self._after_connections_closed()
        deadline = time.monotonic() + self.close_timeout + 3.0
        joined: list[threading.Thread] = []
        while time.monotonic() < deadline:
            # Again until none is new: a handler thread the accept loop started just before it
            # stopped registers itself (and its reader) while we join the others.
            with self._lock:
                threads, self._threads = self._threads, []
            if not threads:
                break
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join(max(0.0, deadline - time.monotonic()))
            joined.extend(threads)
        alive = [t.name for t in joined if t.is_alive()]
        if alive:
            logger.warning("%s server %s: threads still alive after close(): %s", self.kind, self.name, alive)
        logger.info("%s server %s closed", self.kind, self.name)

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running" if self._started else "new"
        return f"{type(self).__name__}(name={self.name!r}, url={self.url('')!r}, {state})"

    def _start_server(self, port: int) -> None:
        conn_class = type(f"_{type(self).__name__}Connection", (_ProtocolServerConnection,), {"owner": self})
        ws_server = serve(
            self._handle,
            self.host,
            port,
            ssl=self.ssl_context,
            compression=None,
            process_request=self._process_request,
            close_timeout=self.close_timeout,
            create_connection=conn_class,
            logger=wire_logger,
            **_SERVE_PING_OPTIONS,  # the server answers pings but sends none
        )
        self._port = ws_server.socket.getsockname()[1]
        accept_handler = ws_server.handler

        def named_handler(sock: socket.socket, addr: Any) -> None:
            # Name websockets' per-connection thread before the TLS/HTTP handshakes it performs, and
            # register it for close() to join (websockets < 17 does not track it).
            thread = threading.current_thread()
            thread.name = f"{self._thread_prefix}conn-{self.name}"
            self._track(thread)
            accept_handler(sock, addr)

        ws_server.handler = named_handler
        thread = threading.Thread(
            target=ws_server.serve_forever, name=f"{self._thread_prefix}serve-{self.name}", daemon=True
        )
        with self._lock:
            self._ws_server = ws_server
            self._serve_thread = thread
            self._accepting = True
        thread.start()

    def _stop_server(self, code: int | None) -> None:
        """Stop accepting, close every connection (cleanly with ``code`` or abruptly), join threads."""
        with self._lock:
            ws_server, serve_thread = self._ws_server, self._serve_thread
            self._ws_server = self._serve_thread = None
            self._accepting = False
        if ws_server is None:
            return
        # shutdown() closes the listener (websockets >= 17: then joins the handler threads); it runs
        # aside so that this thread can close the connections meanwhile, within a deadline.
        stopper = threading.Thread(
            target=ws_server.shutdown, kwargs=_SHUTDOWN_OPTIONS,
            name=f"{self._thread_prefix}shutdown-{self.name}", daemon=True,
        )  # fmt: skip
        self._track(stopper)
        stopper.start()
        if serve_thread is not None:
            serve_thread.join(5.0)  # the accept loop has ended: no handler thread starts after this
        # No new handler runs now; handlers registering late see _accepting False and close themselves.
        with self._lock:
            conns = list(self._open.values())
        deadline = time.monotonic() + self.close_timeout
        for conn in conns:
            self._release_stall(conn)
            if code is None or not self._initiate_close(conn, code, ""):
                self._abort(conn)
        for conn in conns:
            conn.finished.wait(max(0.0, deadline - time.monotonic()))
            if conn.ws.recv_events_thread.is_alive():
                self._abort(conn)
        stopper.join(self.close_timeout + 3.0)
        for conn in conns:
            conn.ws.recv_events_thread.join(1.0)

    # -- websockets callbacks (handler threads) ----------------------------------------------------

    def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path.strip("/")
        if path not in _MARKETS:
            return ws.respond(http.HTTPStatus.NOT_FOUND, f"Unknown market path {request.path!r}.\n")
        return None

    def _handle(self, ws: ServerConnection) -> None:
        assert isinstance(ws, _ProtocolServerConnection)
        assert ws.request is not None
        market = _MARKETS[urlsplit(ws.request.path).path.strip("/")]
        try:
            remote = ws.remote_address
        except OSError:
            remote = None
        with self._lock:
            conn = ServerConn(
                id=f"c{next(self._ids)}", market=market, ws=ws, opened_at=time.time(), remote_address=remote
            )
            accepting = self._accepting
            if accepting:
                self._conns[conn.id] = conn
                self._open[conn.id] = conn
                ws.mock_conn = conn
                self._update_peaks()
                self._prune_threads()
                self._cond.notify_all()
        threading.current_thread().name = f"{self._thread_prefix}conn-{self.name}-{conn.id}"
        ws.recv_events_thread.name = f"{self._thread_prefix}recv-{self.name}-{conn.id}"
        if not accepting:
            ws.close(GOING_AWAY)
            return
        logger.debug("%s %s: %s connected to /%s from %s", self.kind, self.name, conn.id, market.value, remote)
        try:
            self._on_open(conn)
            self._reply(conn, CONNECTED)
            deadline = None if self.auth_timeout is None else time.monotonic() + self.auth_timeout
            while True:
                timeout = None
                if deadline is not None and not conn.authenticated:
                    timeout = max(0.0, deadline - time.monotonic())
                try:
                    message = ws.recv(timeout)
                except TimeoutError:
                    logger.debug("%s %s: %s did not authenticate in time", self.kind, self.name, conn.id)
                    self._close_gracefully(conn, POLICY_VIOLATION, "", wait=True, status=AUTH_TIMEOUT)
                    break
                self._on_message(conn, message)
        except ConnectionClosed:
            pass
        finally:
            self._mark_closed(conn)
            conn.finished.set()
            try:
                self._on_closed(conn)
            finally:
                logger.debug("%s %s: %s closed", self.kind, self.name, conn.id)

    def _on_message(self, conn: ServerConn, message: str | bytes) -> None:
        raw = message if isinstance(message, str) else message.decode("utf-8", "replace")
        control = parse_control(message)
        if control is None:
            try:
                json.loads(message)
            except (ValueError, RecursionError):
                self._record(conn, None, (), None, raw)
                self._reply(conn, INVALID_JSON)
                return
            self._record(conn, None, (), None, raw)  # valid JSON but not a control message: ignored
            return
        action, params = control
        if action == "auth":
            self._record(conn, action, (), params, raw)
            self._on_auth(conn, params)
        elif action in ("subscribe", "unsubscribe"):
            self._record(conn, action, tuple(split_params(params)), None, raw)
            self._on_subscription(conn, action, params)
        else:
            self._record(conn, action, tuple(split_params(params)), None, raw)

    def _on_auth(self, conn: ServerConn, key: str) -> None:
        if not self._authorize(key):
            with self._lock:
                if not conn.closed:
                    self._count_out(conn)
                conn.key = key
                conn.authenticated = False
                self._cond.notify_all()
            logger.debug("%s %s: %s auth failed", self.kind, self.name, conn.id)
            self._reply(conn, AUTH_FAILED)
            self._abort(conn)
            return
        evicted: ServerConn | None = None
        with self._lock:
            first = not conn.authenticated
            if first and not conn.closed:
                self._open_by_key[key] = self._open_by_key.get(key, 0) + 1
            elif not first and conn.key != key and not conn.closed:  # re-auth with another valid key
                self._count_out(conn)
                self._open_by_key[key] = self._open_by_key.get(key, 0) + 1
            conn.key = key
            conn.authenticated = True
            if first and self.max_connections is not None:
                holders = [c for c in self._open.values() if c.key == key and c.authenticated and not c.evicted]
                if len(holders) > self.max_connections:
                    evicted = conn if self.evict == "newest" else holders[0]
                    evicted.evicted = True
            self._update_peaks()
            self._cond.notify_all()
        self._reply(conn, AUTH_SUCCESS)
        if evicted is not None:
            logger.debug("%s %s: connection limit exceeded, evicting %s", self.kind, self.name, evicted.id)
            self._close_gracefully(evicted, POLICY_VIOLATION, "", wait=evicted is conn, status=MAX_CONNECTIONS)

    def _on_subscription(self, conn: ServerConn, action: str, params: str) -> None:
        if not conn.authenticated:
            self._reply(conn, AUTH_REQUIRED)
            return
        accepted: list[str] = []
        refused: list[str] = []
        for part in split_params(params):
            channel = self._accept_channel(conn, part)
            if channel is None:
                continue  # unknown prefix for this market, malformed: silently ignored like Massive
            if action == "subscribe" and not self._entitled(conn, channel):
                refused.append(channel)
            elif channel not in accepted:
                accepted.append(channel)
        if action == "subscribe":
            with self._lock:
                new = [c for c in accepted if c not in conn.subscriptions]
            if new:
                rejected = set(self._on_subscribe(conn, new))
                if rejected:
                    refused.extend(c for c in accepted if c in rejected)
                    accepted = [c for c in accepted if c not in rejected]
            with self._lock:
                conn.subscriptions = conn.subscriptions.union(accepted)
                self._cond.notify_all()
        else:
            with self._lock:
                removed = [c for c in accepted if c in conn.subscriptions]
                conn.subscriptions = conn.subscriptions.difference(accepted)
                self._cond.notify_all()
            if removed:
                self._on_unsubscribe(conn, removed)
        # State first, acks second: a client that saw the ack can rely on being routed to.
        self._send_subscription_replies(conn, action, refused, accepted)

    # -- bookkeeping (lock held by caller or taken here) -----------------------------------------

    def _is_running(self) -> bool:
        """Started and not closed (under the lock or not: a snapshot)."""
        return self._started and not self._closed

    def _is_closed(self) -> bool:
        """:meth:`close` was called (a closed server never starts again)."""
        return self._closed

    def _is_started(self) -> bool:
        """:meth:`start` ran (and the server may have been closed since)."""
        return self._started

    def _accepts_any_key(self) -> bool:
        """Built with ``api_keys=None``: every key authenticates."""
        return self._api_keys is None

    def _open_count(self) -> int:
        """How many connections are open now."""
        return len(self._open)

    def _all_conns(self) -> list[ServerConn]:
        """Every connection remembered, open or closed (see ``keep_closed``), in arrival order."""
        with self._lock:
            return list(self._conns.values())

    def _restart_server(self, code: int | None) -> None:
        """Stop listening and close every connection (``code``: cleanly with it, else abruptly),
        then listen again on the same port.

        Raises:
            ClientClosedError: the server is not running (never started, or closed).
        """
        with self._lock:
            if not self._is_running():
                raise ClientClosedError(f"{type(self).__name__} {self.name!r} is not running")
        self._stop_server(code)
        self._start_server(self._port)

    def _track(self, *threads: threading.Thread) -> None:
        with self._lock:
            self._threads.extend(threads)

    def _prune_threads(self) -> None:
        if len(self._threads) > 64:
            self._threads = [t for t in self._threads if t.is_alive() or t.ident is None]

    def _update_peaks(self) -> None:
        """Record the current counts in the high-water marks (lock held)."""
        self._peak = max(self._peak, len(self._open))
        for key, count in self._open_by_key.items():
            if count > self._peak_by_key.get(key, 0):
                self._peak_by_key[key] = count

    def _count_out(self, conn: ServerConn) -> None:
        """Remove an authenticated connection from its key's open count (lock held)."""
        if conn.authenticated and conn.key is not None:
            left = self._open_by_key.get(conn.key, 0) - 1
            if left > 0:
                self._open_by_key[conn.key] = left
            else:
                self._open_by_key.pop(conn.key, None)

    def _mark_closed(self, conn: ServerConn) -> None:
        with self._lock:
            if conn.closed:
                return
            conn.closed = True
            conn.closed_at = time.time()
            if self._open.pop(conn.id, None) is not None:
                self._count_out(conn)
            if self._keep_closed is not None:
                self._closed_ids.append(conn.id)
                while len(self._closed_ids) > self._keep_closed:
                    forgotten = self._conns.pop(self._closed_ids.popleft(), None)
                    if forgotten is not None:
                        self._on_forgotten(forgotten)
            self._cond.notify_all()

    def _lookup(self, connection: str | ConnectionInfo) -> ServerConn:
        cid = connection.id if isinstance(connection, ConnectionInfo) else connection
        with self._lock:
            try:
                return self._conns[cid]
            except KeyError:
                raise KeyError(f"no connection {cid!r} on {self.kind} server {self.name!r}") from None

    def _open_conns(
        self, connection: str | ConnectionInfo | None = None, market: str | None = None
    ) -> list[ServerConn]:
        if connection is not None:
            conn = self._lookup(connection)
            return [] if conn.closed else [conn]
        with self._lock:
            return [c for c in self._open.values() if market is None or c.market.value == market]

    # -- socket I/O (never under self._lock) -------------------------------------------------------

    def _reply(self, conn: ServerConn, *pairs: tuple[str, str]) -> bool:
        """Send one status frame (handler replies: waits out a stall)."""
        return self._write(conn, encode_frame(status_array(pairs).encode()), wait=True)

    def _write(self, conn: ServerConn, data: bytes | Sequence[bytes], *, wait: bool = False) -> bool:
        """Write encoded frames to ``conn`` under its send mutex, if the WebSocket is OPEN.

        ``data`` is frame bytes or a sequence of buffers of whole frames (one ``sendall`` each).
        ``wait=True`` (handler replies) waits out a stall; otherwise a stalled connection is
        skipped. Returns True when everything was written.
        """
        chunks: Sequence[bytes] = (data,) if isinstance(data, bytes) else data
        ws = conn.ws
        mutex = ws.protocol_mutex
        sock = ws.socket
        timeout = self.slow_consumer_timeout
        for chunk in chunks:
            while not mutex.acquire(timeout=0.05):
                if conn.closed or (conn.stalled and not wait):
                    return False
            slow = False
            try:
                if ws.protocol.state is not State.OPEN or ws.send_in_progress or (conn.stalled and not wait):
                    return False
                if timeout is None:
                    sock.sendall(chunk)
                else:
                    sock.settimeout(timeout)
                    try:
                        sock.sendall(chunk)
                    finally:
                        sock.settimeout(None)
            except TimeoutError:  # socket.timeout is TimeoutError
                logger.info("%s %s: %s is not reading: dropped as a slow consumer", self.kind, self.name, conn.id)
                slow = True
            except OSError as exc:
                logger.debug("%s %s: write to %s failed: %r", self.kind, self.name, conn.id, exc)
                return False
            finally:
                mutex.release()
            if slow:
                self._abort(conn)
                return False
        return True

    def _write_until(
        self, conn: ServerConn, chunks: Sequence[bytes], give_up: Callable[[], bool], poll: float = 0.05
    ) -> bool:
        """Write whole buffers of frames to ``conn`` under its send mutex, however long the client
        takes to read, but checking ``give_up()`` every ``poll`` seconds meanwhile.

        The writer of long-lived streams (one thread per connection): it never leaves a frame
        half-written, so a connection it gives up on mid-buffer is dropped abruptly (TCP shutdown).
        Returns True when everything was written; False when the connection is not OPEN (or
        closes), or ``give_up()`` turned true.
        """
        ws = conn.ws
        mutex = ws.protocol_mutex
        sock = ws.socket
        for chunk in chunks:
            while not mutex.acquire(timeout=poll):
                if conn.closed or give_up():
                    return False
            abandoned = False
            try:
                if ws.protocol.state is not State.OPEN or ws.send_in_progress:
                    return False
                view = memoryview(chunk)
                sock.settimeout(poll)
                try:
                    while view:
                        try:
                            sent = sock.send(view)
                        except TimeoutError:
                            if give_up():
                                abandoned = True
                                break
                            continue
                        view = view[sent:]
                finally:
                    sock.settimeout(None)
            except OSError as exc:
                logger.debug("%s %s: write to %s failed: %r", self.kind, self.name, conn.id, exc)
                return False
            finally:
                mutex.release()
            if abandoned:
                self._abort(conn)
                return False
        return True

    def _abort(self, conn: ServerConn) -> None:
        """Drop the TCP connection without a close frame; the reader thread then cleans up."""
        try:
            # The plain-socket method, also for TLS: SSLSocket.shutdown() would unwrap the socket
            # under the feet of the reader thread. The client sees the TCP connection end, no more.
            socket.socket.shutdown(conn.ws.socket, socket.SHUT_RDWR)
        except OSError:
            pass  # already closed
        # Count it closed now, not when its handler thread notices: a client that reconnects at
        # once must not be refused with max_connections because of the socket just dropped.
        self._mark_closed(conn)
        self._release_stall(conn)

    def _initiate_close(self, conn: ServerConn, code: int, reason: str) -> bool:
        """Send a close frame now (no waiting). False when it could not be sent."""
        ws = conn.ws
        self._release_stall(conn)
        if not ws.protocol_mutex.acquire(timeout=1.0):
            return False
        try:
            if ws.protocol.state is not State.OPEN or ws.send_in_progress:
                return False
            ws.protocol.send_close(code, reason)
            ws.send_data()
            return True
        except OSError:
            return False
        finally:
            ws.protocol_mutex.release()

    def _close_gracefully(
        self, conn: ServerConn, code: int, reason: str, *, wait: bool, status: tuple[str, str] | None = None
    ) -> bool:
        """Clean close: ``status`` frame (if any) and close frame now; the TCP connection is dropped
        if the client has not completed the handshake within ``close_timeout``. ``wait`` blocks
        this thread meanwhile; otherwise a short-lived closer thread does. Ends a stall.

        Returns:
            True when the status frame was written.
        """
        self._release_stall(conn)
        written = status is not None and self._write(conn, encode_frame(status_array([status]).encode()))
        if not self._initiate_close(conn, code, reason):
            self._abort(conn)
            return written
        reader = conn.ws.recv_events_thread

        def finish() -> None:
            conn.finished.wait(self.close_timeout)
            if reader.is_alive():
                self._abort(conn)

        if wait:
            finish()
        else:
            closer = threading.Thread(
                target=finish, name=f"{self._thread_prefix}close-{self.name}-{conn.id}", daemon=True
            )
            self._track(closer)
            closer.start()
        return written

    def _release_stall(self, conn: ServerConn) -> None:
        with self._lock:
            held = conn.stall_held
            conn.stall_held = False
            conn.stalled = False
            if held:
                self._cond.notify_all()
        if held:
            conn.ws.protocol_mutex.release()

    # -- public API: addresses ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (the requested one before :meth:`start`)."""
        return self._port

    def url(self, market: Market | str = "stocks") -> str:
        """``ws://<host>:<port>/<market>`` (``wss://`` with an ``ssl_context``)."""
        scheme = "wss" if self.ssl_context is not None else "ws"
        host = f"[{self.host}]" if ":" in self.host else self.host
        path = market.value if isinstance(market, Market) else str(market).strip("/")
        return f"{scheme}://{host}:{self._port}/{path}"

    # -- public API: inspection --------------------------------------------------------------------

    @property
    def connections(self) -> list[ConnectionInfo]:
        """Snapshot of every connection accepted so far (open and closed), in arrival order."""
        with self._lock:
            return [c.info() for c in self._conns.values()]

    def active_connections(self, market: Market | str | None = None) -> list[ConnectionInfo]:
        """Snapshot of the connections not closed (of ``market``), authenticated or not."""
        value = None if market is None else market_path(market)
        return [c.info() for c in self._open_conns(None, value)]

    def max_concurrent(self, key: str | None = None) -> int:
        """Highest number of simultaneously open connections seen (authenticated or not); with
        ``key``, of authenticated connections using that key (across markets)."""
        with self._lock:
            return self._peak if key is None else self._peak_by_key.get(key, 0)

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` is true; re-checked on every state change (connect, auth,
        message, subscription change, stall, close). Returns its last value.

        ``predicate`` runs with the server lock held (re-entrant, so it may call this server's
        properties); it must be quick and must not block.
        """
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def wait_for_connections(self, n: int, timeout: float, market: Market | str | None = None) -> bool:
        """Wait until at least ``n`` authenticated connections (of ``market``) are open."""
        value = None if market is None else market_path(market)

        def ready() -> bool:
            return sum(1 for c in self._open_conns(None, value) if c.authenticated) >= n

        return self.wait_for(ready, timeout)

    def wait_for_subscribed(
        self, channels: Iterable[str] | str, timeout: float, market: Market | str | None = None
    ) -> bool:
        """Wait until every channel is subscribed on some open connection (of ``market``)."""
        wanted = {channels} if isinstance(channels, str) else set(channels)
        value = None if market is None else market_path(market)

        def ready() -> bool:
            have: set[str] = set()
            for c in self._open_conns(None, value):
                have |= c.subscriptions
            return wanted <= have

        return self.wait_for(ready, timeout)
