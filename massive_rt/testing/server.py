"""A real local WebSocket server that speaks Massive's protocol, with fault injection.

:class:`MockMassiveServer` listens on ``127.0.0.1`` (a free port by default) using the
``websockets`` library's threaded server and behaves like Massive's real-time endpoints as far as
they are documented or observed (``PROTOCOL.md`` §2-§3, §8): the ``connected`` greeting, ``auth``,
per-channel ``subscribe``/``unsubscribe`` acks, wildcards, dotted tickers, silently ignored unknown
channels, ``not authorized`` for unentitled channels, ``Invalid JSON``, the per-key connection
limit (``max_connections`` then close 1008), and ``auth_timeout``. On top of that it injects
faults: abrupt TCP drops, clean closes with any code, arbitrary status frames, raw and malformed
frames, stalls (no data and no pongs, like a half-open socket), restarts on the same port and a
slow-consumer kill.

Threads: one ``massive-rt-mock-serve-<name>`` accept loop, and per connection a
``massive-rt-mock-conn-<name>-<id>`` handler thread and a ``massive-rt-mock-recv-<name>-<id>``
reader thread (both created by ``websockets``, renamed here), plus short-lived
``massive-rt-mock-close-<name>-<id>`` threads that bound a clean close, a
``massive-rt-mock-shutdown-<name>`` thread while stopping, and the ``massive-rt-mock-stream``
threads of :meth:`MockMassiveServer.stream`. All are daemons and :meth:`MockMassiveServer.close`
joins every one of them.

Every public method is thread-safe. One lock guards the server's bookkeeping and is never held
during socket I/O; frames go out under each connection's own ``websockets`` send mutex, so frames
written by the fast path never interleave with frames the library writes (pongs, close frames).
"""

from __future__ import annotations

import http
import itertools
import json
import logging
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

import attrs

try:  # optional (the "fast" extra)
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None  # type: ignore[assignment]
from websockets.exceptions import ConnectionClosed, ProtocolError
from websockets.frames import Close
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.sync.server import Server, ServerConnection, serve

from ..config import mask_secret
from ..enums import Market
from ..errors import ConfigurationError
from ..models import MarketEvent, to_wire
from ..protocol import event_symbol, parse_channel, parse_control, split_params, status_frame

__all__ = [
    "ConnectionInfo",
    "EventSource",
    "MockMassiveServer",
    "ReceivedMessage",
    "StreamHandle",
]

logger = logging.getLogger(__name__)

THREAD_PREFIX = "massive-rt-mock-"

# Status replies (PROTOCOL.md §2.2). "auth_required" comes from the SPEC's SubscribeEvent enum; its
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
#: Close code of :meth:`MockMassiveServer.close` (1001, going away).
GOING_AWAY = 1001

_MARKETS: dict[str, Market] = {m.value: m for m in Market}
_SEND_CHUNK = 1 << 20  # bytes per sendall(): big enough to amortise, small enough to let pongs through
_TEXT, _BINARY = 0x1, 0x2


def _frame(payload: bytes, opcode: int = _TEXT) -> bytes:
    """Encode one unmasked, unfragmented server frame (RFC 6455 §5.2)."""
    n = len(payload)
    if n < 126:
        return bytes((0x80 | opcode, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, n) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, n) + payload


def _chunks(frames: Iterable[bytes], limit: int = _SEND_CHUNK) -> list[bytes]:
    """Join encoded frames into buffers of about ``limit`` bytes, split only at frame boundaries."""
    out: list[bytes] = []
    pending: list[bytes] = []
    size = 0
    for frame in frames:
        pending.append(frame)
        size += len(frame)
        if size >= limit:
            out.append(b"".join(pending))
            pending, size = [], 0
    if pending:
        out.append(b"".join(pending))
    return out


_json_encode = json.JSONEncoder(separators=(",", ":")).encode


def _encode(obj: Any) -> bytes:
    """Compact JSON (``orjson`` when installed: ~10x faster than ``json``)."""
    if _orjson is not None:
        try:
            return _orjson.dumps(obj)
        except TypeError:  # e.g. a non-str key or an int beyond 64 bits: let json decide
            pass
    return _json_encode(obj).encode()


def _statuses(pairs: Iterable[tuple[str, str]]) -> str:
    """One JSON array holding a status object per ``(status, message)`` pair."""
    return "[" + ",".join(status_frame(status, message)[1:-1] for status, message in pairs) + "]"


def _routes(subscriptions: frozenset[str], ev: object, symbol: object) -> bool:
    """True when a ``subscriptions`` set receives an event ``ev`` for ``symbol``.

    The O(1) form of ``any(protocol.channel_matches(ch, ev, symbol) for ch in subscriptions)``:
    the only channels that match are ``<ev>.*`` and ``<ev>.<symbol>``.
    """
    if not isinstance(ev, str):
        return False
    return f"{ev}.*" in subscriptions or (isinstance(symbol, str) and f"{ev}.{symbol}" in subscriptions)


def _market_value(market: Market | str) -> str:
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
class ReceivedMessage:
    """One message a client sent, as the server received it.

    Attributes:
        connection: id of the connection (``"c1"``, ``"c2"`` ...).
        market: market path of the connection (``"stocks"`` ...).
        action: ``"auth"``, ``"subscribe"``, ``"unsubscribe"``, any other action string, or ``None``
            when the message was not a control message (invalid JSON, not an object ...).
        params: the channels of a subscribe/unsubscribe (split on commas, spaces stripped); empty
            for ``auth`` and non-control messages.
        key: the API key of an ``auth`` message (masked in ``repr``).
        raw: the message text exactly as received (bytes decoded as UTF-8 with replacement). Not in
            ``repr``: for ``auth`` it contains the key.
        received_at: wall-clock time (``time.time()``) of receipt.
    """

    connection: str
    market: str
    action: str | None
    params: tuple[str, ...] = ()
    key: str | None = attrs.field(default=None, repr=mask_secret)
    raw: str = attrs.field(default="", repr=False)
    received_at: float = 0.0


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


class EventSource(Protocol):
    """What :meth:`MockMassiveServer.stream` needs: e.g. ``massive_rt.synthetic.SyntheticMarket``."""

    def next_events(self, n: int) -> Sequence[Mapping[str, Any]]:
        """Return the next ``n`` wire dicts."""
        ...


# ------------------------------------------------------------------------------------------------
# Internals


@attrs.define(eq=False)
class _Conn:
    """Mutable bookkeeping of one connection. Guarded by the server lock (``ws`` is immutable)."""

    id: str
    market: Market
    ws: _MockServerConnection
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

    def info(self) -> ConnectionInfo:
        return ConnectionInfo(
            id=self.id, market=self.market.value, authenticated=self.authenticated, key=self.key,
            subscriptions=self.subscriptions, opened_at=self.opened_at, closed=self.closed,
            closed_at=self.closed_at, stalled=self.stalled, evicted=self.evicted,
            remote_address=self.remote_address,
        )  # fmt: skip


class _MockServerConnection(ServerConnection):
    """A ``ServerConnection`` that names its threads and reports closing before the peer can see it.

    A subclass is created per server with ``owner`` set (see ``MockMassiveServer._start_server``).
    """

    owner: MockMassiveServer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.mock_conn: _Conn | None = None
        super().__init__(*args, **kwargs)
        # Runs in the handler thread websockets started for this socket (already named).
        self.recv_events_thread.name = f"{THREAD_PREFIX}recv-{self.owner.name}"
        self.owner._track(threading.current_thread(), self.recv_events_thread)

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


@attrs.define(eq=False)
class StreamHandle:
    """A running :meth:`MockMassiveServer.stream`; call :meth:`stop` to end it.

    Attributes:
        generated: events taken from the source so far.
        delivered: events delivered to connections so far (sum over connections).
        error: the exception that ended the stream early, if any.
    """

    _thread: threading.Thread = attrs.field(alias="thread")
    _stop: threading.Event = attrs.field(alias="stop_event")
    generated: int = 0
    delivered: int = 0
    error: BaseException | None = None

    @property
    def running(self) -> bool:
        """True while the stream thread is alive."""
        return self._thread.is_alive()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the stream thread to end (after :meth:`stop`, a source error or server close).

        Returns:
            True when it has ended.
        """
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop the stream and join its thread (idempotent, any thread)."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)


# ------------------------------------------------------------------------------------------------
# The server


class MockMassiveServer:
    """A local Massive real-time WebSocket server for tests, with fault injection.

    Protocol (PROTOCOL.md §2-§3): every server frame is a JSON array. On connect it sends
    ``connected``; ``{"action":"auth","params":KEY}`` is answered ``auth_success`` or
    ``auth_failed`` followed by an abrupt TCP close (no close frame). Each accepted subscribe or
    unsubscribe param is acked ``subscribed to: X`` / ``unsubscribed to: X``: all acks of one
    request in one frame (``ack_mode="batched"``) or one frame each (``"separate"``). Params may
    have spaces after commas; tickers may contain dots; ``<prefix>.*`` is a wildcard. A param whose
    prefix the market does not have, or that is malformed, is silently ignored (no ack). An
    unentitled channel gets ``error``/``not authorized`` (one object per channel), sent before the
    acks of the request's accepted params. A client frame that is not JSON gets
    ``error``/``Invalid JSON``; valid JSON that is not a control message is ignored.

    Choices where the real server is unverified: subscribe/unsubscribe before ``auth`` is answered
    ``[{"ev":"status","status":"auth_required","message":"not authenticated"}]`` (the status value
    is the SPEC's; the text is ours), nothing is subscribed, and the connection stays open.
    ``auth_timeout`` is followed by a clean close with 1008. With ``max_connections``, the limit
    counts authenticated connections per key across all markets; the connection that exceeds it is
    first answered ``auth_success`` (as observed), then the evicted one (``evict``) gets
    ``max_connections`` and a close with 1008. An unknown URL path is refused with HTTP 404.
    Client pings are answered; the server sends none.

    Args:
        api_keys: keys that authenticate; ``None`` accepts any key.
        host: interface to bind.
        port: port to bind; 0 picks a free one (see :attr:`port`).
        max_connections: limit of authenticated connections per key across all markets.
        evict: ``"newest"`` (the connection over the limit is closed) or ``"oldest"``.
        unentitled: channels (``"NOI.AAPL"``) or prefixes (``"NOI"``, ``"NOI.*"``) refused with
            ``not authorized`` on every market.
        auth_timeout: seconds a client has to authenticate before ``auth_timeout``; ``None`` = no limit.
        ack_mode: ``"batched"`` or ``"separate"``.
        ssl_context: serve ``wss://`` with this server-side context.
        name: used in thread names and logs.
        close_timeout: how long a clean close waits for the client's close frame before the TCP
            connection is dropped.
        slow_consumer_timeout: when set, a send that cannot complete within this many seconds
            (the client is not reading) drops the connection abruptly, like Massive's slow-consumer
            kill. ``None`` blocks the sender until the client reads (TCP backpressure).
    """

    def __init__(
        self,
        api_keys: Iterable[str] | None = ("test-key",),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_connections: int | None = None,
        evict: str = "newest",
        unentitled: Iterable[str] = (),
        auth_timeout: float | None = None,
        ack_mode: str = "batched",
        ssl_context: ssl.SSLContext | None = None,
        name: str = "mock",
        close_timeout: float = 2.0,
        slow_consumer_timeout: float | None = None,
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
        if isinstance(unentitled, str):
            unentitled = (unentitled,)
        self._unentitled_prefixes: frozenset[str] = frozenset()
        self._unentitled_channels: frozenset[str] = frozenset()
        prefixes, channels = set(), set()
        for entry in unentitled:
            prefix, dot, ticker = entry.strip().partition(".")
            if not dot or ticker == "*":
                prefixes.add(prefix)
            else:
                channels.add(f"{prefix}.{ticker}")
        self._unentitled_prefixes, self._unentitled_channels = frozenset(prefixes), frozenset(channels)

        self.host = host
        self.name = name
        self.max_connections = max_connections
        self.evict = evict
        self.auth_timeout = auth_timeout
        self.ack_mode = ack_mode
        self.ssl_context = ssl_context
        self.close_timeout = close_timeout
        self.slow_consumer_timeout = slow_consumer_timeout
        self._requested_port = port
        self._port = port

        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._conns: dict[str, _Conn] = {}  # every connection ever accepted, in arrival order
        self._open: dict[str, _Conn] = {}  # the ones not closed: what hot paths iterate
        self._open_by_key: dict[str, int] = {}  # authenticated open connections per key
        self._received: list[ReceivedMessage] = []
        self._ids = itertools.count(1)
        self._peak = 0
        self._peak_by_key: dict[str, int] = {}
        self._threads: list[threading.Thread] = []
        self._streams: list[StreamHandle] = []
        self._ws_server: Server | None = None
        self._serve_thread: threading.Thread | None = None
        self._accepting = False
        self._started = False
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> MockMassiveServer:
        """Bind and start serving in a daemon thread (idempotent). Returns ``self``.

        Raises:
            RuntimeError: after :meth:`close`.
            OSError: when the port cannot be bound.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError(f"MockMassiveServer {self.name!r} is closed")
            if self._started:
                return self
            self._started = True
        try:
            self._start_server(self._requested_port)
        except BaseException:
            with self._lock:
                self._started = False
            raise
        logger.info("mock server %s listening on %s", self.name, self.url(""))
        return self

    def close(self) -> None:
        """Stop streams, close every connection (1001, clean, bounded by ``close_timeout``, then
        abrupt), stop listening and join every thread the server started. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            started = self._started
            streams, self._streams = self._streams, []
        for handle in streams:  # signal only: a stream blocked on a client that does not read is
            handle._stop.set()  # freed when its connection is dropped below, then joined with the rest
        if started:
            self._stop_server(GOING_AWAY)
        with self._lock:
            threads, self._threads = self._threads, []
        deadline = time.monotonic() + self.close_timeout + 3.0
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in threads if t.is_alive()]
        if alive:
            logger.warning("mock server %s: threads still alive after close(): %s", self.name, alive)
        logger.info("mock server %s closed", self.name)

    def restart(self, code: int | None = None) -> None:
        """Stop and start again on the same port; clients have to reconnect.

        Args:
            code: ``None`` (default) drops every connection abruptly, like a crashed server; a
                close code (e.g. 1012, service restart) closes them cleanly with it first.
        """
        with self._lock:
            if self._closed or not self._started:
                raise RuntimeError(f"MockMassiveServer {self.name!r} is not running")
        self._stop_server(code)
        self._start_server(self._port)
        logger.info("mock server %s restarted on port %d", self.name, self._port)

    def __enter__(self) -> MockMassiveServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running" if self._started else "new"
        return f"MockMassiveServer(name={self.name!r}, url={self.url('')!r}, {state})"

    def _start_server(self, port: int) -> None:
        conn_class = type("_MockServerConnection", (_MockServerConnection,), {"owner": self})
        ws_server = serve(
            self._handle,
            self.host,
            port,
            ssl=self.ssl_context,
            compression=None,
            process_request=self._process_request,
            ping_interval=None,  # the server answers pings but sends none
            close_timeout=self.close_timeout,
            create_connection=conn_class,
        )
        self._port = ws_server.socket.getsockname()[1]
        accept_handler = ws_server.handler

        def named_handler(sock: socket.socket, addr: Any) -> None:
            # Name websockets' per-connection thread before the TLS/HTTP handshakes it performs.
            threading.current_thread().name = f"{THREAD_PREFIX}conn-{self.name}"
            accept_handler(sock, addr)

        ws_server.handler = named_handler
        thread = threading.Thread(target=ws_server.serve_forever, name=f"{THREAD_PREFIX}serve-{self.name}", daemon=True)
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
        # shutdown(close_connections=False) closes the listener, then joins the handler threads;
        # it runs aside so that this thread can close the connections meanwhile, within a deadline.
        stopper = threading.Thread(
            target=ws_server.shutdown, kwargs={"close_connections": False},
            name=f"{THREAD_PREFIX}shutdown-{self.name}", daemon=True,
        )  # fmt: skip
        self._track(stopper)
        stopper.start()
        if serve_thread is not None:
            ws_server.socket_closed.wait(5.0)
            serve_thread.join(5.0)
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
        assert isinstance(ws, _MockServerConnection)
        assert ws.request is not None
        market = _MARKETS[urlsplit(ws.request.path).path.strip("/")]
        try:
            remote = ws.remote_address
        except OSError:
            remote = None
        with self._lock:
            conn = _Conn(id=f"c{next(self._ids)}", market=market, ws=ws, opened_at=time.time(), remote_address=remote)
            accepting = self._accepting
            if accepting:
                self._conns[conn.id] = conn
                self._open[conn.id] = conn
                ws.mock_conn = conn
                self._update_peaks()
                self._prune_threads()
                self._cond.notify_all()
        threading.current_thread().name = f"{THREAD_PREFIX}conn-{self.name}-{conn.id}"
        ws.recv_events_thread.name = f"{THREAD_PREFIX}recv-{self.name}-{conn.id}"
        if not accepting:
            ws.close(GOING_AWAY)
            return
        logger.debug("mock %s: %s connected to /%s from %s", self.name, conn.id, market.value, remote)
        try:
            self._reply(conn, CONNECTED)
            deadline = None if self.auth_timeout is None else time.monotonic() + self.auth_timeout
            while True:
                timeout = None
                if deadline is not None and not conn.authenticated:
                    timeout = max(0.0, deadline - time.monotonic())
                try:
                    message = ws.recv(timeout)
                except TimeoutError:
                    logger.debug("mock %s: %s did not authenticate in time", self.name, conn.id)
                    self._close_gracefully(conn, POLICY_VIOLATION, "", wait=True, status=AUTH_TIMEOUT)
                    break
                self._on_message(conn, message)
        except ConnectionClosed:
            pass
        finally:
            self._mark_closed(conn)
            conn.finished.set()
            logger.debug("mock %s: %s closed", self.name, conn.id)

    def _on_message(self, conn: _Conn, message: str | bytes) -> None:
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

    def _record(self, conn: _Conn, action: str | None, params: tuple[str, ...], key: str | None, raw: str) -> None:
        message = ReceivedMessage(
            connection=conn.id, market=conn.market.value, action=action, params=params, key=key, raw=raw,
            received_at=time.time(),
        )  # fmt: skip
        with self._lock:
            self._received.append(message)
            self._cond.notify_all()

    def _on_auth(self, conn: _Conn, key: str) -> None:
        if self._api_keys is not None and key not in self._api_keys:
            with self._lock:
                if not conn.closed:
                    self._count_out(conn)
                conn.key = key
                conn.authenticated = False
                self._cond.notify_all()
            logger.debug("mock %s: %s auth failed", self.name, conn.id)
            self._reply(conn, AUTH_FAILED)
            self._abort(conn)
            return
        evicted: _Conn | None = None
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
            logger.debug("mock %s: connection limit exceeded, evicting %s", self.name, evicted.id)
            self._close_gracefully(evicted, POLICY_VIOLATION, "", wait=evicted is conn, status=MAX_CONNECTIONS)

    def _is_unentitled(self, channel: str) -> bool:
        return channel in self._unentitled_channels or channel.partition(".")[0] in self._unentitled_prefixes

    def _on_subscription(self, conn: _Conn, action: str, params: str) -> None:
        if not conn.authenticated:
            self._reply(conn, AUTH_REQUIRED)
            return
        accepted: list[str] = []
        refused: list[str] = []
        for part in split_params(params):
            try:
                channel = str(parse_channel(part, conn.market))
            except ConfigurationError:
                continue  # unknown prefix for this market, malformed: silently ignored like Massive
            if action == "subscribe" and self._is_unentitled(channel):
                refused.append(channel)
            elif channel not in accepted:
                accepted.append(channel)
        with self._lock:
            if action == "subscribe":
                conn.subscriptions = conn.subscriptions.union(accepted)
            else:
                conn.subscriptions = conn.subscriptions.difference(accepted)
            self._cond.notify_all()
        # State first, acks second: a client that saw the ack can rely on being routed to.
        verb = "subscribed to" if action == "subscribe" else "unsubscribed to"
        errors = [NOT_AUTHORIZED for _ in refused]
        acks = [("success", f"{verb}: {channel}") for channel in accepted]
        if self.ack_mode == "batched":
            frames = [_statuses(group) for group in (errors, acks) if group]
        else:
            frames = [_statuses([pair]) for pair in (*errors, *acks)]
        if frames:
            self._write(conn, b"".join(_frame(f.encode()) for f in frames), wait=True)

    # -- bookkeeping (lock held by caller or taken here) -----------------------------------------

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

    def _count_out(self, conn: _Conn) -> None:
        """Remove an authenticated connection from its key's open count (lock held)."""
        if conn.authenticated and conn.key is not None:
            left = self._open_by_key.get(conn.key, 0) - 1
            if left > 0:
                self._open_by_key[conn.key] = left
            else:
                self._open_by_key.pop(conn.key, None)

    def _mark_closed(self, conn: _Conn) -> None:
        with self._lock:
            if conn.closed:
                return
            conn.closed = True
            conn.closed_at = time.time()
            if self._open.pop(conn.id, None) is not None:
                self._count_out(conn)
            self._cond.notify_all()

    def _lookup(self, connection: str | ConnectionInfo) -> _Conn:
        cid = connection.id if isinstance(connection, ConnectionInfo) else connection
        with self._lock:
            try:
                return self._conns[cid]
            except KeyError:
                raise KeyError(f"no connection {cid!r} on mock server {self.name!r}") from None

    def _open_conns(self, connection: str | ConnectionInfo | None = None, market: str | None = None) -> list[_Conn]:
        if connection is not None:
            conn = self._lookup(connection)
            return [] if conn.closed else [conn]
        with self._lock:
            return [c for c in self._open.values() if market is None or c.market.value == market]

    # -- socket I/O (never under self._lock) -------------------------------------------------------

    def _reply(self, conn: _Conn, *pairs: tuple[str, str]) -> bool:
        """Send one status frame (handler replies: waits out a stall)."""
        return self._write(conn, _frame(_statuses(pairs).encode()), wait=True)

    def _write(self, conn: _Conn, data: bytes | Sequence[bytes], *, wait: bool = False) -> bool:
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
                logger.info("mock %s: %s is not reading: dropped as a slow consumer", self.name, conn.id)
                slow = True
            except OSError as exc:
                logger.debug("mock %s: write to %s failed: %r", self.name, conn.id, exc)
                return False
            finally:
                mutex.release()
            if slow:
                self._abort(conn)
                return False
        return True

    def _abort(self, conn: _Conn) -> None:
        """Drop the TCP connection without a close frame; the reader thread then cleans up."""
        try:
            # The plain-socket method, also for TLS: SSLSocket.shutdown() would unwrap the socket
            # under the feet of the reader thread. The client sees the TCP connection end, no more.
            socket.socket.shutdown(conn.ws.socket, socket.SHUT_RDWR)
        except OSError:
            pass  # already closed
        self._release_stall(conn)

    def _initiate_close(self, conn: _Conn, code: int, reason: str) -> bool:
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
        self, conn: _Conn, code: int, reason: str, *, wait: bool, status: tuple[str, str] | None = None
    ) -> bool:
        """Clean close: ``status`` frame (if any) and close frame now; the TCP connection is dropped
        if the client has not completed the handshake within ``close_timeout``. ``wait`` blocks
        this thread meanwhile; otherwise a short-lived closer thread does. Ends a stall.

        Returns:
            True when the status frame was written.
        """
        self._release_stall(conn)
        written = status is not None and self._write(conn, _frame(_statuses([status]).encode()))
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
            closer = threading.Thread(target=finish, name=f"{THREAD_PREFIX}close-{self.name}-{conn.id}", daemon=True)
            self._track(closer)
            closer.start()
        return written

    def _release_stall(self, conn: _Conn) -> None:
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

    # -- public API: publishing --------------------------------------------------------------------

    def _targets(self, market: str) -> list[tuple[_Conn, frozenset[str]]]:
        """Authenticated, open, unstalled connections of ``market`` with their subscriptions."""
        with self._lock:
            return [
                (c, c.subscriptions) for c in self._open.values()
                if c.authenticated and not c.stalled and c.market.value == market
            ]  # fmt: skip

    def publish(
        self,
        events: Iterable[Mapping[str, Any] | MarketEvent],
        market: Market | str = "stocks",
        batch: int = 10,
    ) -> int:
        """Send events to every connection of ``market`` subscribed to a matching channel.

        A connection receives an event when it subscribed ``<ev>.<symbol>`` or ``<ev>.*``
        (``A.*`` does not receive ``AM``). Each connection's events keep their order and go out in
        frames of ``batch`` events (JSON arrays), all written with as few system calls as possible.
        Stalled connections are skipped. Blocks while a client does not read (see
        ``slow_consumer_timeout``).

        Args:
            events: wire dicts (``{"ev": "T", "sym": "AAPL", ...}``) or :class:`~massive_rt.MarketEvent`
                instances.
            market: market path of the receiving connections.
            batch: events per frame (>= 1).

        Returns:
            Number of events delivered, summed over connections.
        """
        if batch < 1:
            raise ConfigurationError(f"batch={batch!r} must be >= 1", field="batch")
        value = _market_value(market)
        targets = self._targets(value)
        if not targets:
            return 0
        wires: list[dict[str, Any]] = [
            to_wire(e) if isinstance(e, MarketEvent) else e if isinstance(e, dict) else dict(e) for e in events
        ]
        if not wires:
            return 0
        evs = [ev if isinstance(ev := w.get("ev"), str) else None for w in wires]
        symbols: dict[int, object] = {}  # computed only for channels that name tickers
        plans: dict[frozenset[str], tuple[list[bytes], int]] = {}  # connections with equal subscriptions share frames
        delivered = 0
        for conn, subs in targets:
            plan = plans.get(subs)
            if plan is None:
                wild = {ch[:-2] for ch in subs if ch.endswith(".*")}
                named = {ch.partition(".")[0] for ch in subs if not ch.endswith(".*")}
                selected: list[int] = []
                for i, ev in enumerate(evs):
                    if ev in wild:
                        selected.append(i)
                    elif ev in named:
                        if i not in symbols:
                            symbols[i] = event_symbol(value, wires[i])
                        if _routes(subs, ev, symbols[i]):
                            selected.append(i)
                # One encoder call per frame: far cheaper than one per event (allocation dominates).
                frames = (
                    _frame(_encode([wires[i] for i in selected[start : start + batch]]))
                    for start in range(0, len(selected), batch)
                )
                plan = plans[subs] = (_chunks(frames), len(selected))
            chunks, count = plan
            if count and self._write(conn, chunks):
                delivered += count
        return delivered

    def publish_raw_frames(
        self,
        frames: Sequence[str | bytes],
        market: Market | str = "stocks",
        connection: str | ConnectionInfo | None = None,
    ) -> int:
        """Send pre-encoded frames to every authenticated connection of ``market`` (no channel
        filter), or only to ``connection``.

        The fast path for benchmarks: each frame is framed once and many frames go out per system
        call. ``str`` and ``bytes`` (UTF-8) are both sent as text frames.

        Returns:
            Number of frames delivered, summed over connections.
        """
        targets = self._targets(_market_value(market))
        if connection is not None:
            wanted = connection.id if isinstance(connection, ConnectionInfo) else connection
            targets = [(conn, subs) for conn, subs in targets if conn.id == wanted]
        if not targets or not frames:
            return 0
        chunks = _chunks(_frame(f.encode() if isinstance(f, str) else f) for f in frames)
        return sum(len(frames) for conn, _ in targets if self._write(conn, chunks))

    def send_raw(
        self,
        data: str | bytes,
        connection: str | ConnectionInfo | None = None,
        *,
        text_frame_bytes: bool = False,
        market: Market | str | None = None,
    ) -> int:
        """Send one unvalidated frame: to ``connection`` or to every open connection (of ``market``).

        ``str`` goes out as a text frame, ``bytes`` as a binary frame, or as a text frame with
        ``text_frame_bytes=True`` (which can carry invalid UTF-8, something ``websockets`` refuses
        to send). Unauthenticated connections are included; stalled ones are skipped.

        Returns:
            Number of connections written to.
        """
        if isinstance(data, str):
            frame = _frame(data.encode())
        else:
            frame = _frame(bytes(data), _TEXT if text_frame_bytes else _BINARY)
        value = None if market is None else _market_value(market)
        return sum(self._write(c, frame) for c in self._open_conns(connection, value))

    def send_status(
        self,
        status: str,
        message: str,
        close_code: int | None = None,
        connection: str | ConnectionInfo | None = None,
        *,
        reason: str = "",
    ) -> int:
        """Send ``[{"ev":"status","status":status,"message":message}]``, then close with ``close_code``.

        E.g. ``send_status("slow_consumer", "...", close_code=1008)`` or
        ``send_status("force_disconnect", "...", close_code=1000)``. The close is clean (close
        frame sent before this returns; TCP dropped if the client does not answer within
        ``close_timeout``) and ends a stall; without ``close_code`` stalled connections are skipped.

        Returns:
            Number of connections the status was written to.
        """
        if close_code is not None:
            self._check_close_code(close_code, reason)
        frame = _frame(status_frame(status, message).encode())
        sent = 0
        for conn in self._open_conns(connection):
            if close_code is None:
                sent += self._write(conn, frame)
            else:
                sent += self._close_gracefully(conn, close_code, reason, wait=False, status=(status, message))
        return sent

    @staticmethod
    def _check_close_code(code: int, reason: str) -> None:
        try:
            Close(code, reason).serialize()
        except ProtocolError as exc:
            raise ConfigurationError(f"close code {code!r} cannot be sent: {exc}", field="code") from exc

    # -- public API: faults ------------------------------------------------------------------------

    def drop_all(self) -> int:
        """Drop every connection abruptly (TCP shutdown, no close frame). Returns how many."""
        conns = self._open_conns()
        for conn in conns:
            self._abort(conn)
        return len(conns)

    def kick(self, connection: str | ConnectionInfo) -> None:
        """Drop one connection abruptly (TCP shutdown, no close frame).

        Raises:
            KeyError: unknown connection id.
        """
        self._abort(self._lookup(connection))

    def close_connection(self, connection: str | ConnectionInfo, code: int = 1000, reason: str = "") -> None:
        """Close one connection cleanly with ``code`` and ``reason``; returns once the close frame is
        sent (the handshake completes in the background, bounded by ``close_timeout``).

        Raises:
            KeyError: unknown connection id.
            ConfigurationError: a code that may not be sent (e.g. 1005, 1006).
        """
        self._check_close_code(code, reason)
        self._close_gracefully(self._lookup(connection), code, reason, wait=False)

    def stall(self, connection: str | ConnectionInfo | None = None) -> int:
        """Freeze existing connections like a network partition: nothing is sent to them (published
        data is dropped, replies wait) and their pings go unanswered, until :meth:`resume`.

        Connections opened later are not stalled. Closing, kicking or restarting ends a stall.

        Returns:
            Number of connections newly stalled.
        """
        count = 0
        for conn in self._open_conns(connection):
            with self._lock:
                if conn.stalled or conn.closed:
                    continue
                conn.stalled = True
            # Owning the connection's protocol mutex stops its reader thread right after its next
            # read: incoming pings are not processed, so no pong goes out.
            if conn.ws.protocol_mutex.acquire(timeout=2.0):
                with self._lock:
                    keep = conn.stalled and not conn.closed
                    conn.stall_held = keep
                    self._cond.notify_all()
                if not keep:
                    conn.ws.protocol_mutex.release()
                    continue
                count += 1
            else:
                with self._lock:
                    conn.stalled = False
                logger.warning("mock %s: could not stall %s (a send is blocked)", self.name, conn.id)
        return count

    def resume(self, connection: str | ConnectionInfo | None = None) -> None:
        """End :meth:`stall` (for one connection or all); pending pongs and replies then go out."""
        if connection is not None:
            self._release_stall(self._lookup(connection))
            return
        with self._lock:
            conns = [c for c in self._open.values() if c.stalled]
        for conn in conns:
            self._release_stall(conn)

    # -- public API: streaming ---------------------------------------------------------------------

    def stream(
        self, source: EventSource, rate: float, market: Market | str = "stocks", batch: int = 10
    ) -> StreamHandle:
        """Publish ``source.next_events(k)`` continuously at about ``rate`` events per second.

        Runs in a daemon thread named ``massive-rt-mock-stream`` until ``handle.stop()`` or
        :meth:`close`. Events go through :meth:`publish` (channel routing, ``batch`` per frame).
        An exception from the source ends the stream (logged, kept in ``handle.error``).
        """
        if not rate > 0:
            raise ConfigurationError(f"rate={rate!r} must be > 0", field="rate")
        if batch < 1:
            raise ConfigurationError(f"batch={batch!r} must be >= 1", field="batch")
        value = _market_value(market)
        stop = threading.Event()

        def run() -> None:
            start = time.monotonic()
            max_step = max(1, min(int(rate * 0.25), 50_000))  # bounds memory and latency per step
            try:
                while not stop.is_set():
                    # Event k (0-based) is due at start + k / rate: the first goes out at once.
                    due = int((time.monotonic() - start) * rate) + 1 - handle.generated
                    if due > max_step:  # fell behind: do not burst, slide the schedule instead
                        start += (due - max_step) / rate
                        due = max_step
                    if due > 0:
                        events = source.next_events(due)
                        handle.generated += due
                        handle.delivered += self.publish(events, value, batch)
                    wait = start + handle.generated / rate - time.monotonic()
                    if wait > 0:
                        stop.wait(min(wait, 0.05))
            except Exception as exc:
                handle.error = exc
                logger.exception("mock %s: stream stopped by an error", self.name)

        thread = threading.Thread(target=run, name=f"{THREAD_PREFIX}stream", daemon=True)
        handle = StreamHandle(thread=thread, stop_event=stop)
        with self._lock:
            if self._closed:
                raise RuntimeError(f"MockMassiveServer {self.name!r} is closed")
            self._streams = [h for h in self._streams if h.running]
            self._streams.append(handle)
            self._threads.append(thread)
        thread.start()
        return handle

    # -- public API: inspection --------------------------------------------------------------------

    @property
    def received(self) -> list[ReceivedMessage]:
        """Every message clients sent, in arrival order (a copy)."""
        with self._lock:
            return list(self._received)

    @property
    def connections(self) -> list[ConnectionInfo]:
        """Snapshot of every connection accepted so far (open and closed), in arrival order."""
        with self._lock:
            return [c.info() for c in self._conns.values()]

    def active_connections(self, market: Market | str | None = None) -> list[ConnectionInfo]:
        """Snapshot of the connections not closed (of ``market``), authenticated or not."""
        value = None if market is None else _market_value(market)
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
        value = None if market is None else _market_value(market)

        def ready() -> bool:
            return sum(1 for c in self._open_conns(None, value) if c.authenticated) >= n

        return self.wait_for(ready, timeout)

    def wait_for_subscribed(
        self, channels: Iterable[str] | str, timeout: float, market: Market | str | None = None
    ) -> bool:
        """Wait until every channel is subscribed on some open connection (of ``market``)."""
        wanted = {channels} if isinstance(channels, str) else set(channels)
        value = None if market is None else _market_value(market)

        def ready() -> bool:
            have: set[str] = set()
            for c in self._open_conns(None, value):
                have |= c.subscriptions
            return wanted <= have

        return self.wait_for(ready, timeout)
