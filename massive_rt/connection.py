"""MassiveWebSocketClient: one WebSocket connection, one daemon reader thread, one bounded queue.

Threads and ownership (see ``docs/threading.md``):

* The **reader thread** (``massive-rt-reader-<name>``) owns the socket. It connects,
  authenticates, sends (un)subscribe frames, answers and sends pings, reads frames, handles
  control statuses and puts frames on the queue. It never calls user code and never sleeps
  except in the interruptible backoff wait.
* **Any thread** may call ``subscribe``/``unsubscribe``/``stop``/``stats``: they change desired
  state under a short lock and wake the reader through a socket pair; no lock is ever held
  across socket I/O or a wait.
* The **consumer** (your thread calling ``get``/``iter_events``, or the adapter's dispatcher)
  decodes frames into typed events, batch by batch, off the reader thread.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import random
import socket
import ssl
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable
from typing import Any

import attrs
import websocket

from ._lifecycle import ThreadedSource
from ._readwait import ReadWait
from ._session import Outcome, Session
from ._transport import StopRequested, Transport, describe, refused_upgrade, shown_url
from ._util import ConnectionLogger, seconds, snapshot_dict
from ._validate import require_number
from .config import ClientConfig, LimitRetry, ReconnectPolicy, limit_retry_for, mask_secret
from .consumer import check_timeout
from .dedupe import DuplicateFilter
from .enums import ConnectionState, Feed, Market, Overflow
from .errors import (
    ClientClosedError,
    ConfigurationError,
    ConnectionClosedError,
    ConnectionLimitError,
    MassiveRTError,
    WaitTimeoutError,
)
from .eventqueue import BYTES_PER_EVENT, KIND_EVENT
from .framing import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameParser,
    FrameTooLargeError,
    ProtocolViolationError,
)
from .models import Event, StatusMessage
from .protocol import (
    effective_channels,
    parse_channels,
    wildcard_of,
)
from .relief import (
    BACKLOG_BYTES,
    BACKLOG_FRAMES,
    BACKLOG_SECONDS,
    BATCH_FRAMES,
    RECV_BYTES,
    STATUS_MARK,
    STATUS_WINDOW,
    TLS_RECORD_BYTES,
    ReliefReader,
    ReliefSession,
    frame_error_outcome,
    queue_batch,
)

__all__ = ["ConnectionStats", "MassiveWebSocketClient"]

logger = logging.getLogger(__name__)

# How long get() waits, at the end of the stream, for the reader that has just closed the queue.
_END_OF_STREAM_JOIN = 1.0
_names = itertools.count(1)
_live_clients: weakref.WeakSet[MassiveWebSocketClient] = weakref.WeakSet()


FORK_ADVICE = (
    "create clients after the fork (gunicorn: the post_fork hook or the app's first request; uWSGI: "
    "@postfork; Celery: worker_process_init), or run one relay (massive-rt relay) that every worker "
    "connects to; with gunicorn, --preload creates them in the master"
)


_fork_warned_in: int | None = None  # the pid that logged the misuse line (once per process)


def _after_fork_in_child() -> None:
    for client in list(_live_clients):
        client._mark_forked()


def _backlog_waiting(parser: FrameParser, waiter: ReadWait, overdue: bool) -> bool:
    """``"adaptive"``, at a full batch of a read or at its end: True if ``BACKLOG_BYTES`` more wait past
    what the reader has taken of its read (unparsed, or still on the socket: a TLS read returns
    one 16 KB record at most, so the rest of a flood is there), or anything more waits and the
    read is ``overdue`` (its callbacks kept the reader from the socket ``BACKLOG_SECONDS``). Where
    the socket cannot tell, a full batch is enough."""
    left = parser.buffered
    if left >= BACKLOG_BYTES or (overdue and left):
        return True
    unread = waiter.unread()
    if unread is None:
        return True
    waiting = left + unread
    return waiting >= BACKLOG_BYTES or (overdue and waiting > 0)


def _warn_forked(name: str) -> None:
    """One line per process, at the first use of an inherited client (not at the fork: a relay's
    own connections live on in a gunicorn master and are never touched by its workers)."""
    global _fork_warned_in
    pid = os.getpid()
    if _fork_warned_in != pid:
        _fork_warned_in = pid
        logger.warning("process %d uses massive_rt client %s, which was created before this process was "
                       "forked and does not run here: %s", pid, name, FORK_ADVICE)  # fmt: skip


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@attrs.frozen(kw_only=True)
class ConnectionStats:
    """A snapshot of one connection's counters, taken by :meth:`MassiveWebSocketClient.stats`.

    Attributes:
        name: connection name.
        market: market of the connection.
        url: endpoint, without any ``user:password@`` part or query (never contains the key).
        state: state at the time of the snapshot.
        connected_since: wall-clock seconds when the current session authenticated, or None.
        reconnects: sessions started after the first.
        frames_received: data and status frames read from the socket.
        bytes_received: payload bytes read.
        events_decoded: events produced by the consumer side so far.
        decode_errors: frames or objects that could not be decoded.
        unknown_events: objects delivered as UnknownEvent.
        dropped_events: events discarded by the overflow policy.
        dropped_frames: frames discarded by the overflow policy.
        duplicates_suppressed: events dropped as duplicates (``dedupe``; 0 when off).
        queue_events: events waiting in the queue (exact: counted in the queued frames when
            asked, so a long queue makes ``stats()`` take a few ms).
        queue_high_water: most events ever waiting at once: the larger of the most any
            ``stats()`` call counted (exact then) and an estimate from ``queue_high_water_bytes``
            and the average size of the events received so far (decoded, queued or dropped).
        subscriptions: desired channels.
        acked: channels the server confirmed on the current session.
        last_message_age: seconds since the last frame was read (None before any).
        pings_sent: WebSocket pings sent.
        last_error: description of the last failure, if any.
        healthy: streaming, with a message read within the age threshold (see
            :meth:`MassiveWebSocketClient.stats`).
        health_reason: why not, when not healthy (else None).
        rejected_status_fields: structured fields of server statuses ignored for a wrong type
            (a relay's ``gap_start_ns``, ``dropped``, ``last_seen`` …; logged at DEBUG).
        queue_bytes: bytes of frames waiting in the queue (what its bound counts).
        queue_high_water_bytes: most bytes ever waiting at once (at most the bound, or one
            frame larger than it).
        queue_capacity_bytes: the queue's bound in bytes (``queue_bytes``, or ``queue_size * 128``).
    """

    name: str
    market: str
    url: str
    state: ConnectionState
    connected_since: float | None
    reconnects: int
    frames_received: int
    bytes_received: int
    events_decoded: int
    decode_errors: int
    unknown_events: int
    dropped_events: int
    dropped_frames: int
    duplicates_suppressed: int
    queue_events: int
    queue_high_water: int
    subscriptions: int
    acked: int
    last_message_age: float | None
    pings_sent: int
    last_error: str | None
    healthy: bool
    health_reason: str | None
    rejected_status_fields: int = 0
    queue_bytes: int = 0
    queue_high_water_bytes: int = 0
    queue_capacity_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (for a health endpoint); it holds no secret."""
        return snapshot_dict(self)


class MassiveWebSocketClient(ThreadedSource, ReliefReader):
    """One Massive WebSocket connection with its own daemon reader thread and a bounded queue.

    Example::

        with MassiveWebSocketClient(api_key="...", subscriptions=["T.AAPL", "AM.*"]) as client:
            client.wait_ready(timeout=10)
            for event in client.iter_events():
                print(event)

    Args:
        api_key: Massive API key; ``None`` reads ``MASSIVE_API_KEY`` now. May also be a
            :class:`ClientConfig`, in which case the other arguments are ignored.
        market: :class:`Market` or its value (``"stocks"``, ``"crypto"``, ``"futures/cme"`` ...).
        feed: :class:`Feed`, its name (``"realtime"``, ``"delayed"``) or any ``host[:port]``.
        url: full endpoint override (``ws://127.0.0.1:8765/stocks``); wins over ``feed``.
        subscriptions: channels to subscribe on every (re)connect, e.g. ``("T.AAPL", "AM.*")``.
        reconnect: the :class:`ReconnectPolicy`.
        queue_size: queue capacity in events, approximately: the queue is bounded in bytes, and
            this becomes ``queue_size * 128`` bytes once (128: the nominal size of a trade or
            quote; larger events fit fewer). ``queue_bytes`` sets the bound directly.
        overflow: what a full queue does (:class:`Overflow`); the default keeps the socket drained.
        ping_interval: seconds between WebSocket pings (None disables them).
        ping_timeout: seconds without any byte received (a pong or data) after a ping before the
            connection is declared dead and re-established. A half-open connection is detected
            more than ``ping_timeout`` and at most ``ping_interval + ping_timeout`` after the
            last byte it received (40 s at the defaults; lower ``ping_interval`` to detect sooner).
        stale_after: seconds without data while subscribed before reconnecting (None: off).
        connect_timeout: bound of name resolution + TCP connect + TLS + upgrade + auth reply,
            seconds (see :mod:`massive_rt.resolver`).
        name: connection name used in logs, thread names, events and stats.
        raw: deliver data frames as :class:`RawFrame` instead of typed events.
        max_message_size: larger messages close the connection (1009) and reconnect.
        on_limit: what ``max_connections`` does. The limit either refuses a connection at
            connect (status ``limit_refused``) or evicts one that had streamed past
            ``reconnect.reset_after`` because another connection on the key took its slot
            (status ``evicted``). ``"auto"`` (default) fails a refused connection (the slot is
            someone else's; retrying would evict them) and retries an evicted one; ``"fail"``
            fails both; ``"retry"`` or a :class:`LimitRetry` retries both. Retries wait a long,
            growing cooldown, at most ``LimitRetry.per_hour`` times an hour, so two holders of
            one key never evict each other in a loop.
        dedupe: drop an event equal in identity (ev, symbol, exchange, id, sequence number,
            timestamp; see :class:`DuplicateFilter` for which events have one) to one seen among
            the last 100,000 (``True``), the last ``n`` (an int), or share a
            :class:`DuplicateFilter` between sources. Off by default; counted in
            ``stats().duplicates_suppressed``. Costs about 0.7 times the decoding time and ~300
            bytes per remembered trade. Not applied with ``raw=True``.
        validate_channels: a channel prefix this library does not know yet: ``"strict"``
            (default) refuses it, ``"warn"`` subscribes it with a warning (once per prefix),
            ``"off"`` subscribes it; its events arrive as :class:`UnknownEvent`. Malformed
            channels are refused in every mode.
        ca_certs: CA bundle for ``wss`` (else ``SSL_CERT_FILE``, ``REQUESTS_CA_BUNDLE``, system).
        ssl_context: a ready ``ssl.SSLContext`` for ``wss`` (wins over ``ca_certs``).
        websocket_options: extra options for websocket-client's handshake (``header``,
            ``http_proxy_host``, ``http_proxy_port``, ``http_proxy_auth``, ``proxy_type`` ...).
        last_seen_limit: ``disconnected`` and ``gap`` statuses list, per symbol and event type,
            the last event delivered before the disconnect (``StatusMessage.last_seen``): at most
            this many, the most recently received; the rest are counted and summarised. Marks
            are kept for the 100,000 most recently received symbols per event type (older ones
            are forgotten); 0 keeps none (no per-event cost, statuses without ``last_seen``).
        queue_bytes: the queue's bound in bytes of queued frames (>= 1; None: from
            ``queue_size``). Frames are sized by their length, so the bound costs nothing per
            event whatever the events' size; drops are still counted in exact events.
        config: a :class:`ClientConfig` (alternative to the arguments above).
    """

    _NOUN = "client"
    _THREAD_PREFIX = "massive-rt-reader-"

    def __init__(
        self,
        api_key: str | ClientConfig | None = None,
        market: Market | str = Market.STOCKS,
        feed: Feed | str = Feed.REALTIME,
        url: str | None = None,
        subscriptions: Iterable[str] = (),
        reconnect: ReconnectPolicy | None = None,
        queue_size: int = 100_000,
        overflow: Overflow | str = Overflow.DROP_OLDEST,
        ping_interval: float | None = 20.0,
        ping_timeout: float = 20.0,
        stale_after: float | None = None,
        connect_timeout: float = 10.0,
        name: str | None = None,
        raw: bool = False,
        *,
        max_message_size: int = 16 * 1024 * 1024,
        on_limit: str | LimitRetry = "auto",
        dedupe: bool | int | DuplicateFilter = False,
        validate_channels: str = "strict",
        ca_certs: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        websocket_options: dict[str, Any] | None = None,
        last_seen_limit: int = 1_000,
        queue_bytes: int | None = None,
        config: ClientConfig | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if isinstance(api_key, ClientConfig):
            config, api_key = api_key, None
        if config is None:
            config = ClientConfig(
                api_key=api_key if api_key is not None else os.environ.get("MASSIVE_API_KEY"),
                market=market,
                feed=feed,
                url=url,
                subscriptions=subscriptions,
                reconnect=reconnect if reconnect is not None else ReconnectPolicy(),
                queue_size=queue_size,
                overflow=overflow,
                ping_interval=ping_interval,
                ping_timeout=ping_timeout,
                stale_after=stale_after,
                connect_timeout=connect_timeout,
                name=name,
                raw=raw,
                max_message_size=max_message_size,
                on_limit=on_limit,
                dedupe=dedupe.window if isinstance(dedupe, DuplicateFilter) else dedupe,
                validate_channels=validate_channels,
                ca_certs=ca_certs,
                ssl_context=ssl_context,
                websocket_options=websocket_options or {},
                last_seen_limit=last_seen_limit,
                queue_bytes=queue_bytes,
            )
        elif not isinstance(config, ClientConfig):
            # Never echo the value: a mapping passed by mistake may hold the key.
            raise ConfigurationError(f"config must be a ClientConfig, not {type(config).__name__}", field="config")
        if not config.api_key:
            raise ConfigurationError("api_key is required: pass api_key= or set MASSIVE_API_KEY", field="api_key")
        if config.name is None:
            config = config.evolve(name=f"{config.market.value.replace('/', '-')}-{next(_names)}")
        self._config = config
        self._name: str = config.name or ""
        self._url = config.resolved_url
        self._shown_url = shown_url(self._url)  # for logs, statuses, errors, stats and repr
        self._log = ConnectionLogger(logger, {"connection": self._name})
        self._rng = rng if rng is not None else random.Random()

        # Shared state, guarded by _lock (never held across I/O, waits or user code).
        self._lock = threading.Lock()
        self._init_lifecycle()  # _life_lock (start/stop only, so stop() never waits on _lock), _thread
        self._cond = threading.Condition(self._lock)
        channels = parse_channels(config.subscriptions, config.market, config.validate_channels)
        self._desired: dict[str, None] = dict.fromkeys(channels)
        self._acked: set[str] = set()
        self._state = ConnectionState.NEW
        self._fatal: MassiveRTError | None = None
        self._last_error: str | None = None
        self._connected_since: float | None = None
        self._forked = False

        # Reader-thread state.
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._transport: Transport | None = None  # the current session's socket
        self._sessions = 0
        self._frames = 0
        self._bytes = 0
        self._pings = 0
        self._most_queued_events = 0  # the most events a stats() call found queued, or estimated
        self._last_frame_mono: float | None = None
        self._limit_retries: deque[float] = deque()  # start times of the last hour's limit retries (monotonic)

        self._init_consumer(self._name, config.market, config.queue_capacity_bytes, config.overflow, config.raw,
                            self._log, config.last_seen_limit, queue_unit="bytes")  # fmt: skip
        # Statuses the reader let through inside data frames, found by the consumer's decoder and
        # acted on by the reader (acks, refusals, the limit): a deque, appended on any thread.
        self._statuses_in_data: deque[dict[str, Any]] = deque()
        if isinstance(dedupe, DuplicateFilter):
            self._dedupe = dedupe  # shared with other sources (a pool's connections)
        elif config.dedupe:
            self._dedupe = DuplicateFilter(config.dedupe)
        self._decoder.on_server_status = self._on_status_in_data
        # The protocol between the bytes (auth, acks, refusals, statuses, timers): sans-I/O.
        self._proto = Session(
            config, self._name, emit=self._emit, set_state=self._set_state, put=self._sink,
            stopping=self._stop_requested.is_set, desired=self._effective_desired, update_acked=self._update_acked,
            log=self._log,
        )  # fmt: skip
        _live_clients.add(self)

    # ------------------------------------------------------------------ public API

    @property
    def name(self) -> str:
        """The connection name."""
        return self._name

    @property
    def market(self) -> Market:
        """The market this connection streams."""
        return self._config.market

    @property
    def config(self) -> ClientConfig:
        """The (immutable) configuration."""
        return self._config

    @property
    def url(self) -> str:
        """The endpoint URL."""
        return self._url

    @property
    def state(self) -> ConnectionState:
        """Current :class:`ConnectionState`."""
        return self._state

    @property
    def reader_alive(self) -> bool:
        """True while this client's reader thread runs (started, not yet ended)."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    @property
    def subscriptions(self) -> frozenset[str]:
        """The desired channels (applied now or on the next connect)."""
        self._check_usable()
        with self._lock:
            return frozenset(self._desired)

    @property
    def acked(self) -> frozenset[str]:
        """Channels the server confirmed on the current session."""
        self._check_usable()
        with self._lock:
            return frozenset(self._acked)

    @property
    def error(self) -> MassiveRTError | None:
        """The terminal error once the client is FAILED, else None."""
        # _fail() records the error just before the state changes: never show one without the other.
        return self._fatal if self._state is ConnectionState.FAILED else None

    def _before_thread(self) -> None:
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    def wait_ready(self, timeout: float | None = None) -> MassiveWebSocketClient:
        """Block until authenticated and the initial subscriptions are acknowledged (STREAMING).

        Raises:
            AuthenticationError: the key was refused.
            ConnectionLimitError: the account's connection limit was hit.
            ConnectionClosedError: reconnect attempts were exhausted.
            ClientClosedError: the client was stopped (or never started).
            WaitTimeoutError: ``timeout`` passed first (also a ``TimeoutError``).
        """
        self._check_usable()
        check_timeout(timeout)
        with self._cond:
            self._require_started("wait_ready()")
            ok = self._cond.wait_for(self._ready_or_terminal, timeout)
            state, fatal, last = self._state, self._fatal, self._last_error
        if state is ConnectionState.FAILED and fatal is not None:
            raise fatal
        if state is ConnectionState.STOPPED:
            raise ClientClosedError("client was stopped", connection=self._name)
        if not ok:
            detail = f"; last error: {last}" if last else ""
            raise WaitTimeoutError(f"not ready after {timeout}s (state {state.value}){detail}", connection=self._name)
        return self

    def _ready_or_terminal(self) -> bool:
        return self._state is ConnectionState.STREAMING or self._state.is_terminal

    def wait_acked(self, channels: Iterable[str], timeout: float | None = None) -> bool:
        """Wait until the server has acknowledged every channel in ``channels``; False on timeout.

        A ticker covered by a subscribed wildcard (``T.AAPL`` with ``T.*``) is not sent on its own:
        it counts as acknowledged once its wildcard is.
        """
        self._check_usable()
        check_timeout(timeout)
        wanted = set(parse_channels(channels, self._config.market, self._config.validate_channels))

        def confirmed() -> bool:
            acked = self._acked
            return all(c in acked or wildcard_of(c) in acked for c in wanted)

        with self._cond:
            return self._cond.wait_for(lambda: confirmed() or self._state.is_terminal, timeout) and confirmed()

    def subscribe(self, *channels: str) -> tuple[str, ...]:
        """Add channels to the desired set; applied now if connected, else on connect.

        Thread-safe and idempotent; returns the channels that were not already desired.

        Raises:
            ConfigurationError: a channel is malformed or not valid for this market.
            ClientClosedError: the client was stopped.
        """
        self._check_open()
        valid = parse_channels(channels, self._config.market, self._config.validate_channels)
        with self._lock:
            added = tuple(c for c in valid if c not in self._desired)
            self._desired.update(dict.fromkeys(added))
        if added:
            self._wake()
        return added

    def unsubscribe(self, *channels: str) -> tuple[str, ...]:
        """Remove channels from the desired set; returns those that were desired. Thread-safe.

        Raises:
            ClientClosedError: the client was stopped.
        """
        self._check_open()
        valid = parse_channels(channels, self._config.market, self._config.validate_channels)
        with self._lock:
            removed = tuple(c for c in valid if c in self._desired)
            for channel in removed:
                del self._desired[channel]
        if removed:
            self._wake()
        return removed

    def unsubscribe_all(self) -> tuple[str, ...]:
        """Remove every desired channel; returns them. Thread-safe.

        Raises:
            ClientClosedError: the client was stopped.
        """
        self._check_open()
        with self._lock:
            removed = tuple(self._desired)
            self._desired.clear()
        if removed:
            self._wake()
        return removed

    def stats(self, max_message_age: float | None = None) -> ConnectionStats:
        """A consistent-enough snapshot of the counters (cheap; safe from any thread).

        Works in a forked child too (where the client does not run), reporting it unhealthy.

        Args:
            max_message_age: ``healthy`` requires a frame (data, status or pong) read within this
                many seconds; default ``stale_after`` if set, else ``ping_interval +
                ping_timeout`` (the server answers every ping), else no age check.
        """
        last = self._last_frame_mono
        decode = self._decoder.stats
        # In a forked child a parent's thread may have held the lock at the fork: never take it there.
        with self._lock if not self._forked else contextlib.nullcontext():
            state, since, desired, acked, error = (
                self._state, self._connected_since, len(self._desired), len(self._acked), self._last_error
            )  # fmt: skip
        age = None if last is None else time.monotonic() - last
        reason = self._health_problem(state, age, error, max_message_age)
        queued_events = self._queue.count_events(locked=not self._forked)
        return ConnectionStats(
            name=self._name,
            market=self._config.market.value,
            url=self._shown_url,
            state=state,
            connected_since=since,
            reconnects=max(0, self._sessions - 1),
            rejected_status_fields=self._proto.rejected_status_fields,
            frames_received=self._frames,
            bytes_received=self._bytes,
            events_decoded=decode.events,
            decode_errors=decode.decode_errors,
            unknown_events=decode.unknown_events,
            dropped_events=self._queue.dropped_events,
            dropped_frames=self._queue.dropped_frames,
            duplicates_suppressed=self._suppressed,
            queue_events=queued_events,
            queue_high_water=self._high_water_events(queued_events, decode.events),
            queue_bytes=self._queue.queued,
            queue_high_water_bytes=self._queue.high_water,
            queue_capacity_bytes=self._queue.capacity,
            subscriptions=desired,
            acked=acked,
            last_message_age=age,
            pings_sent=self._pings,
            last_error=error,
            healthy=reason is None,
            health_reason=reason,
        )

    def _high_water_events(self, queued_events: int, events_decoded: int) -> int:
        """The queue's high-water mark in events (a bytes queue counts no events as they come)."""
        high_water_bytes = self._queue.high_water
        received = events_decoded + queued_events + self._queue.dropped_events
        if not high_water_bytes:
            estimate = 0
        elif not received or not self._bytes:  # nothing to average yet: the nominal size
            estimate = max(1, high_water_bytes // BYTES_PER_EVENT)
        else:  # bytes_received also holds frame headers and statuses: a slight underestimate
            estimate = max(1, round(high_water_bytes * received / self._bytes))
        most = max(self._most_queued_events, estimate, queued_events)
        self._most_queued_events = most
        return most

    def _health_problem(
        self, state: ConnectionState, age: float | None, error: str | None, max_age: float | None
    ) -> str | None:
        if self._forked:
            _warn_forked(self._name)
            return f"created in the parent of a forked process; it does not run here: {FORK_ADVICE}"
        if state is not ConnectionState.STREAMING:
            return f"state {state.value}{f': {error}' if error else ''}"
        config = self._config
        if max_age is None:
            max_age = config.stale_after or (
                config.ping_interval + config.ping_timeout if config.ping_interval else None
            )
        if max_age is not None and age is not None and age > max_age:
            return f"no message for {age:.1f}s (more than {max_age:g}s)"
        return None

    def stop(self, timeout: float = 5.0) -> None:
        """Close the connection and stop the reader thread. Idempotent; safe from any thread,
        a consumer loop, or a signal handler. Interrupts connect, backoff and recv.

        Events already queued stay available to ``get``/``drain``; after them ``get`` raises
        :class:`ClientClosedError`.
        """
        require_number("timeout", timeout)
        deadline = time.monotonic() + timeout
        thread = self.request_stop()
        if thread is None or thread is threading.current_thread():
            self._stop_relief(deadline)  # it ends within its interval, even while a callback runs here
            return
        if self._queue.held_by_current_thread():
            # A signal handler interrupted this thread inside get(): the reader needs the queue this
            # thread holds to finish, and has it once the handler returns (get() then waits for it).
            self._log.debug("stop() from a signal handler inside get(): the reader ends after it returns")
            return
        try:
            thread.join(timeout / 2)
        except RuntimeError:  # called (from a signal handler) while start() was starting it
            return  # it sees the stop request as soon as it runs
        if thread.is_alive():
            # Blocked in a send or a TLS read: force the socket shut so the thread sees EOF.
            transport = self._transport
            if transport is not None:
                transport.force_shut()
            thread.join(timeout / 2)
            if thread.is_alive():
                self._log.warning("reader thread did not stop within %.1fs", timeout)
        self._stop_relief(deadline)

    def _stop_relief(self, deadline: float) -> None:
        # The relief thread ends within its interval of the stop request; a pong it is sending to a
        # peer that does not read ends when the reader's join above shut the socket down.
        if not self._join_relief(max(0.1, deadline - time.monotonic())):
            self._log.warning("relief reader thread did not stop by the deadline")

    def request_stop(self) -> threading.Thread | None:
        """Ask the reader thread to stop and return at once (``stop`` = this + join).

        Returns the reader thread to join, or None if it never started.
        """
        with self._life_lock:
            self._stop_requested.set()
            thread = self._thread
        self._wake()
        self._rouse_relief()
        transport = self._transport
        if transport is not None:
            # The TLS and WebSocket handshakes block in websocket-client/ssl, not in our select:
            # shutting the socket down is what interrupts them.
            transport.interrupt()
        if thread is None:
            self._finish_without_thread()
        return thread

    def continue_gap_from(self, previous: MassiveWebSocketClient) -> None:
        """Before start: report the first data of this client as closing ``previous``'s gap.

        Used by the pool when it replaces a connection, so the ``disconnected`` status of the old
        one is followed by a ``gap`` status (with the window to backfill) on the new one.
        """
        before = previous._proto
        gap = before.gap_start_ns if before.gap_start_ns is not None else before.last_data_ns
        if gap is not None and self._thread is None:
            self._proto.continue_gap(gap)
            self.continue_marks_from(previous)

    def emit_status(self, status: str, message: str, error: MassiveRTError | None = None) -> None:
        """Put a status event in this connection's stream, in order with its data.

        Used by the pool to announce recycling; any thread.
        """
        self._check_usable()
        self._emit(StatusMessage(status=status, message=message, error=error, connection=self._name,
                                 received_at_ns=time.time_ns()))  # fmt: skip

    def __repr__(self) -> str:
        return (
            f"MassiveWebSocketClient(name={self._name!r}, market={self._config.market.value!r}, "
            f"url={self._shown_url!r}, state={self._state.value!r}, api_key={mask_secret(self._config.api_key)})"
        )

    __str__ = __repr__

    # ------------------------------------------------------------------ consumer helpers

    def _await_end(self) -> None:
        # The reader closes the queue as its last step. Waiting for it here means the end of the
        # stream leaves no thread behind, even after a stop() that could not wait (signal handler).
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(_END_OF_STREAM_JOIN)

    def _closed_reason(self) -> str:
        if self._fatal is not None:
            return f"client failed: {self._fatal.message}"
        return "client is stopped"

    def _check_usable(self) -> None:
        if self._forked:
            _warn_forked(self._name)
            raise ClientClosedError(
                f"this client was created in the parent of a forked process and does not run here: {FORK_ADVICE}",
                connection=self._name,
            )

    # ------------------------------------------------------------------ state

    def _on_status_in_data(self, obj: dict[str, Any]) -> None:
        """A status object among data, found by the consumer (any thread): hand it to the reader."""
        self._statuses_in_data.append(obj)
        self._wake()

    def _sink_changed(self) -> None:
        self._proto.set_sink(self._sink)

    def _effective_desired(self) -> list[str]:
        with self._lock:
            # A ticker its wildcard covers stays desired but is not sent while the wildcard is
            # (the pool's rule): nothing is delivered twice, and it is sent again if the wildcard goes.
            return effective_channels(self._desired)

    def _update_acked(self, added: Iterable[str], removed: Iterable[str], clear: bool) -> None:
        with self._cond:
            if clear:
                self._acked.clear()
            self._acked.update(added)
            self._acked.difference_update(removed)
            self._cond.notify_all()

    def _wake(self) -> None:
        wake = self._wake_w
        if wake is not None:
            with contextlib.suppress(OSError):
                wake.send(b"\0")

    def _set_state(self, state: ConnectionState, message: str = "", error: MassiveRTError | None = None) -> None:
        with self._cond:
            if self._state is state and error is None:
                return
            self._state = state
            if error is not None:
                self._last_error = error.message
            if state is ConnectionState.STREAMING:
                self._connected_since = time.time()
            else:
                self._connected_since = None
            self._cond.notify_all()
        self._log.info("state %s%s", state.value, f": {message}" if message else "")
        self._emit(StatusMessage(status="state", state=state, message=message, error=error, connection=self._name,
                                 received_at_ns=time.time_ns()))  # fmt: skip

    def _emit(self, event: Event) -> None:
        self._queue.put([KIND_EVENT, event, event.received_at_ns, 0])

    def _finish_without_thread(self) -> None:
        with self._cond:
            if self._state is ConnectionState.STOPPED:
                return
        self._set_state(ConnectionState.STOPPED, "stopped")
        self._queue.close()
        self._close_wake()

    def _close_wake(self) -> None:
        for sock in (self._wake_r, self._wake_w):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()

    # ------------------------------------------------------------------ reader thread

    def _run(self) -> None:
        failed = False
        try:
            failed = self._run_sessions()
        except BaseException as exc:  # a bug must not die silently: report it and end FAILED
            self._log.exception("reader thread crashed")
            error = MassiveRTError(f"reader thread crashed: {type(exc).__name__}: {exc}", connection=self._name)
            self._fail(error)
            failed = True
            if not isinstance(exc, Exception):
                raise
        finally:
            self._end_relief()
            if self._transport is not None:
                self._transport.close()
            if not failed:
                self._set_state(ConnectionState.STOPPED, "stopped")
            self._queue.close()
            self._close_wake()

    def _run_sessions(self) -> bool:
        """Run sessions with backoff until stopped (False) or failed (True)."""
        policy = self._config.reconnect
        failures = 0
        while not self._stop_requested.is_set():
            outcome = self._session()
            if outcome.stopped or self._stop_requested.is_set():
                return False
            if outcome.fatal:
                self._fail(outcome.error or MassiveRTError(outcome.reason, connection=self._name))
                return True
            streamed_since = self._proto.streaming_started
            streamed = -1.0 if streamed_since is None else time.monotonic() - streamed_since
            if streamed >= policy.reset_after or (
                policy.reset_on_data and self._proto.delivered_data and streamed >= policy.min_data_session
            ):
                failures = 0
            failures += 1
            with self._lock:
                self._last_error = outcome.reason
            if policy.gives_up_after(failures):
                error = ConnectionClosedError(
                    f"gave up after {failures} consecutive failed attempts; last: {outcome.reason}",
                    code=outcome.close_code, connection=self._name,
                )  # fmt: skip
                self._fail(error)
                return True
            limit = (
                limit_retry_for(self._config.on_limit, outcome.error.evicted)
                if isinstance(outcome.error, ConnectionLimitError) else None
            )  # fmt: skip
            if limit is not None:
                # Retrying soon would evict the holder of the slot, which would then evict us.
                delay = limit.schedule(self._limit_retries, time.monotonic())
                message = (f"{outcome.reason}; retrying in {seconds(delay)} (at most {limit.per_hour} "
                           "retries an hour: on_limit)")  # fmt: skip
                self._emit(StatusMessage(status="limit_cooldown", message=message, error=outcome.error,
                                         connection=self._name, received_at_ns=time.time_ns()))  # fmt: skip
            else:
                delay = policy.delay(failures - 1, self._rng)
                message = f"{outcome.reason}; reconnecting in {delay:.2f}s (attempt {failures})"
            self._set_state(ConnectionState.BACKOFF, message, error=outcome.error)
            if self._stop_requested.wait(delay):
                return False
        return False

    def _fail(self, error: MassiveRTError) -> None:
        with self._lock:
            self._fatal = error
        self._log.error("failed: %s", error.message)
        self._set_state(ConnectionState.FAILED, error.message, error=error)
        self._emit(
            StatusMessage(status="failed", message=error.message, error=error, state=ConnectionState.FAILED,
                          connection=self._name, received_at_ns=time.time_ns())
        )  # fmt: skip

    # -- one session

    def _session(self) -> Outcome:
        self._sessions += 1
        self._proto.reset()
        self._drain_wake()
        self._set_state(ConnectionState.CONNECTING, self._shown_url)
        started = time.monotonic()
        transport = self._transport = Transport(
            self._url, self._config, self._stop_requested, self._wake_r, self._drain_wake, self._name
        )
        try:
            transport.open(started + self._config.connect_timeout)
        except StopRequested:
            return Outcome("stopped", stopped=True)
        except ConfigurationError as exc:  # e.g. an unreadable CA bundle: retrying cannot fix it
            transport.close()
            return Outcome(f"TLS configuration error: {exc.message}", error=exc, fatal=True)
        except ssl.SSLCertVerificationError as exc:
            return Outcome(
                f"TLS certificate verification failed for {self._shown_url}: {exc.verify_message or exc}",
                error=MassiveRTError(f"TLS certificate verification failed: {exc.verify_message or exc}",
                                     connection=self._name),
                fatal=True,
            )  # fmt: skip
        except websocket.WebSocketBadStatusException as exc:
            transport.close()
            return refused_upgrade(exc, self._shown_url, self._name)
        except (OSError, websocket.WebSocketException, ValueError) as exc:
            transport.close()
            return Outcome(f"connect failed: {describe(exc)}")
        try:
            return self._stream(transport, started)
        finally:
            self._proto.end()

    def _stream(self, transport: Transport, started: float) -> Outcome:
        """Authenticate, subscribe and read until the session ends: the transport side of the
        session, feeding :class:`~massive_rt._session.Session` messages and the clock."""
        ws, sock = transport.ws, transport.sock
        assert ws is not None
        assert sock is not None
        proto = self._proto
        parser = FrameParser(self._config.max_message_size)
        auth_frame = proto.begin(started)
        self._last_frame_mono = time.monotonic()
        waiter = ReadWait(sock, self._wake_r)
        stop = self._stop_requested.is_set
        # Raw frames stay one item each (RawFrame per frame; the relay's input).
        batch_frames = 1 if self._config.raw else BATCH_FRAMES
        relief_session = ReliefSession(sock, ws, parser, proto)
        relief = None  # the relief latch, once an adaptive adapter adopted this connection
        try:
            # The peer may already be gone (reset right after the upgrade): a lost session, not a crash.
            # Framed here rather than by ws.send, whose trace (websocket.enableTrace) would log the key.
            sock.sendall(websocket.ABNF.create_frame(auth_frame, websocket.ABNF.OPCODE_TEXT).format())
            while True:
                # 1. Wait for bytes or a wake-up, bounded by the nearest timer.
                timeout = proto.next_timeout(time.monotonic())
                pending = isinstance(sock, ssl.SSLSocket) and sock.pending()
                if relief is None and self._relief is not None:
                    relief = self._relief
                    relief.begin(relief_session)
                # What the relief reader left of a read it took over comes before any new read.
                left = relief is not None and relief.messages
                ready = 0 if pending or left else waiter.wait(timeout)
                if stop():
                    return Outcome("stopped", stopped=True)
                data = b""
                if not left and (pending or ready & 1):
                    try:
                        data = sock.recv(RECV_BYTES)
                    except ssl.SSLWantReadError:
                        data = None  # type: ignore[assignment]
                    except (OSError, ssl.SSLError) as exc:
                        return proto.lost(f"connection lost: {describe(exc)}")
                    received_at_ns = time.time_ns()  # as the bytes leave the socket: latency counts from here
                    if data == b"":
                        return proto.closed_without_frame()
                if ready & 2:
                    self._drain_wake()
                    _send_texts(ws, proto.sync_subscriptions())
                now = time.monotonic()
                # 2. Frames.
                if left:
                    assert relief is not None
                    outcome = self.handle_messages(relief, transport)
                    if outcome is not None:
                        return outcome
                    if stop():
                        return Outcome("stopped", stopped=True)
                elif data:
                    self._bytes += len(data)
                    self._last_frame_mono = proto.recv_mono = now
                    parser.feed(data)
                    if relief is not None:
                        relief.received_at_ns = received_at_ns  # for a takeover during this read
                        self._backlog = False
                        read_from = self._frames
                        gate = relief.gate
                        clock = time.perf_counter if gate is None else gate.clock
                        overdue_at = clock() + BACKLOG_SECONDS  # this read's callbacks have kept the socket long
                    # Consecutive data frames of this read go to the queue as one item (up to
                    # BATCH_FRAMES); any other frame first sends them on, so order is kept.
                    batch: list[bytes] = []
                    try:
                        for opcode, payload in parser.messages():
                            self._frames += 1
                            if (opcode in (OP_TEXT, OP_BINARY) and proto.authenticated
                                    and STATUS_MARK not in payload[:STATUS_WINDOW]):  # fmt: skip
                                batch.append(payload)
                                if len(batch) < batch_frames:
                                    continue
                                message = None
                            else:
                                message = opcode, payload
                            if batch:
                                if relief is not None:
                                    # Parked while the batch's callbacks run: a takeover goes on from it.
                                    relief.held = message
                                    if (message is None and not self._backlog
                                            and self._frames - read_from >= BACKLOG_FRAMES
                                            and _backlog_waiting(parser, waiter, clock() >= overdue_at)):  # fmt: skip
                                        self._backlog = True  # the rest of this read: the dispatcher's
                                queue_batch(proto, batch, received_at_ns)
                                batch = []
                                if relief is not None:
                                    if relief.taken:  # the relief reader has the rest of this read
                                        if not relief.reclaim(parser, stop):
                                            return Outcome("stopped", stopped=True)
                                        if message is not None:
                                            self._frames -= 1  # counted again where the relief reader left it
                                        break
                                    relief.held = None
                                if message is None:
                                    continue
                            if opcode in (OP_TEXT, OP_BINARY):
                                outcome = proto.on_control_frame(payload, received_at_ns)
                                if outcome is not None:
                                    return outcome
                                # Data objects in a status frame run callbacks too.
                                if relief is not None and relief.taken:
                                    if not relief.reclaim(parser, stop):
                                        return Outcome("stopped", stopped=True)
                                    break
                            elif opcode == OP_PING:
                                ws.pong(payload)
                            elif opcode == OP_PONG:
                                proto.on_pong()
                            elif opcode == OP_CLOSE:
                                reply, outcome = proto.on_close(payload)
                                transport.send_close(reply, "")
                                return outcome
                        if batch:
                            # A read that never filled a batch can still be one of many waiting (a TLS
                            # read returns one record: 16 KB, a dozen frames of 1 KB).
                            # And its last frames go on too once its callbacks have kept the socket long.
                            if relief is not None and not self._backlog:
                                overdue = clock() >= overdue_at
                                record = len(data) >= TLS_RECORD_BYTES
                                if (overdue or record) and _backlog_waiting(parser, waiter, overdue):
                                    self._backlog = True
                            queue_batch(proto, batch, received_at_ns)
                            if relief is not None and relief.taken and not relief.reclaim(parser, stop):
                                return Outcome("stopped", stopped=True)
                    except (FrameTooLargeError, ProtocolViolationError) as exc:
                        if batch:  # the frames before the refused one were whole: deliver them
                            if relief is not None:
                                relief.park_error(exc)  # a takeover stops there, not past it
                            queue_batch(proto, batch, received_at_ns)
                            if relief is not None and relief.taken and not relief.take_back(stop):
                                return Outcome("stopped", stopped=True)
                        return frame_error_outcome(exc, proto, transport)
                    if stop():
                        return Outcome("stopped", stopped=True)
                while self._statuses_in_data:
                    outcome = proto.on_status(self._statuses_in_data.popleft(), time.time_ns(), delivered=True)
                    if outcome is not None:
                        return outcome
                _send_texts(ws, proto.take_frames())  # the subscriptions, once authenticated
                # 3. Timers.
                tick = proto.tick(now, self._bytes, bool(self._desired))
                if tick.ping:
                    ws.ping()
                    self._pings += 1
                if tick.outcome is not None:
                    return tick.outcome
        except (OSError, websocket.WebSocketException) as exc:
            return proto.lost(f"connection lost: {describe(exc)}")
        finally:
            graceful = True
            if relief is not None:
                if relief.relieved:
                    # Stopping, and its relief thread has not handed the socket back (blocked in a
                    # pong to a peer that does not read): shut the socket under it, send nothing.
                    transport.force_shut()
                    graceful = False
                relief.end()
            waiter.close()
            transport.close(graceful=graceful)

    def _drain_wake(self) -> None:
        wake = self._wake_r
        if wake is not None:
            with contextlib.suppress(OSError):
                while wake.recv(4096):
                    pass


def _send_texts(ws: websocket.WebSocket, frames: list[str]) -> None:
    for frame in frames:
        ws.send(frame)
