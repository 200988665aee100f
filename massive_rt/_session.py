"""The session state machine of one connection, with no sockets and no threads (sans-I/O).

:class:`Session` is what a connection *means* between the bytes: authentication, subscription
requests and their acks and refusals, server statuses, the connection limit, the gap between
sessions, and the timers (auth reply, pings, pongs, stale data, ack timeout). The reader loop in
:mod:`massive_rt.connection` owns the socket; it feeds the session whole WebSocket messages and
the clock, sends the frames the session returns and acts on the :class:`Outcome` that ends a
session. Everything the session produces for the consumer (data items, status events, state
changes) goes through the callables it was built with, so its unit tests run on lists and a fake
clock (tests/unit/test_session.py), the shape of python-websockets' ``protocol.py`` and h11.

Per-frame cost: :meth:`Session.on_data` is the one call the reader makes per data frame (it was
a method of the client before; no call was added).
"""

from __future__ import annotations

import logging
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from ._json import loads
from ._util import seconds
from .config import ClientConfig, limit_retry_for
from .enums import ConnectionState
from .errors import AuthenticationError, ConnectionLimitError, MassiveRTError, SubscriptionError
from .eventqueue import KIND_DATA, KIND_FRAMES, KIND_OBJECTS
from .framing import parse_close_payload
from .models import Event, StatusMessage
from .protocol import build_auth, build_subscribe, build_unsubscribe, status_from_fields

__all__ = ["ACK_TIMEOUT", "Outcome", "Request", "Session", "Tick"]

logger = logging.getLogger(__name__)

#: Seconds a subscribe request may wait for its acks before its channels are reported
#: ``subscription_unconfirmed`` (a slow ack is never a refusal).
ACK_TIMEOUT = 5.0
# Timer granularity while acks are awaited (settling requests, the ack timeout).
_ACK_POLL = 0.05
# The reader wakes at least this often, timers or not.
_IDLE_WAKE = 1.0


@attrs.define
class Request:
    """A subscribe frame sent on this session whose channels await acks."""

    outstanding: set[str]
    sent_at: float


@attrs.define
class Outcome:
    """Why a session ended.

    Attributes:
        reason: one line for logs and statuses.
        error: the typed error, when there is one.
        fatal: reconnecting cannot help (a refused key, the connection limit as ``on_limit`` says).
        close_code: the close code the server sent, if any.
        stopped: ``stop()`` was asked for; not a failure.
    """

    reason: str
    error: MassiveRTError | None = None
    fatal: bool = False
    close_code: int | None = None
    stopped: bool = False


@attrs.frozen
class Tick:
    """What the timers ask for at one moment: send a ping, or end the session."""

    ping: bool = False
    outcome: Outcome | None = None


_IDLE = Tick()  # the usual answer, not allocated per read
_PING = Tick(ping=True)


class Session:
    """The protocol state of one connection across its sessions (reset by :meth:`begin`).

    Args:
        config: the client's configuration (key, reconnect policy, ping and stale settings, ``on_limit``).
        name: the connection name stamped on statuses.
        emit: puts a status event in the connection's stream, in order with its data.
        set_state: the client's state change (``state, message, error``), which also emits it.
        put: puts a queue item (data frames), with a ``give_up`` callable for a blocking queue.
        stopping: True once ``stop()`` was asked for.
        desired: the channels to have on the server now (the effective set, wildcards applied).
        update_acked: ``(added, removed, clear)``: keeps the client's ``acked`` set (read by
            ``wait_acked`` on other threads) in step.
        log: the connection's logger.
        clock: monotonic seconds (a fake one in tests).
        wall_ns: wall-clock nanoseconds, for status timestamps.
    """

    def __init__(
        self,
        config: ClientConfig,
        name: str,
        *,
        emit: Callable[[Event], None],
        set_state: Callable[[ConnectionState, str, MassiveRTError | None], None],
        put: Callable[[list[Any], Callable[[], bool]], Any],
        stopping: Callable[[], bool],
        desired: Callable[[], list[str]],
        update_acked: Callable[[Iterable[str], Iterable[str], bool], None],
        log: logging.Logger | logging.LoggerAdapter = logger,  # type: ignore[type-arg]
        clock: Callable[[], float] = time.monotonic,
        wall_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self._config = config
        self._name = name
        self._emit = emit
        self._set_state = set_state
        self._put = put
        self._stopping = stopping
        self._desired = desired
        self._update_acked = update_acked
        self._log = log
        self._clock = clock
        self._wall_ns = wall_ns
        # Per session (reset by begin()).
        self.authenticated = False
        self.streaming = False
        self.streaming_started: float | None = None
        self.limit_error: ConnectionLimitError | None = None
        self.server_reason: str | None = None
        self._applied: set[str] = set()
        self.requests: deque[Request] = deque()
        # Refusals ("not authorized") that name no channel, oldest first: one per refused channel.
        self._refusals: deque[str] = deque()
        self._unconfirmed: set[str] = set()  # channels reported unconfirmed; a late ack clears them
        self._pending_frames: list[str] = []  # to send after the message being handled
        self._began: float | None = None  # when the current session's transport opened
        self._auth_deadline = 0.0
        self._next_ping: float | None = None
        self._pong_deadline: float | None = None
        self._bytes_at_ping = 0
        # Across sessions.
        #: Extra fields of server statuses ignored because of their type (logged at DEBUG).
        self.rejected_status_fields = 0
        self.last_data_ns: int | None = None
        self.gap_start_ns: int | None = None
        self._last_data_mono: float | None = None
        #: Monotonic time of the current read (set by the reader once per recv, read per data frame).
        self.recv_mono = 0.0

    def set_sink(self, put: Callable[[list[Any], Callable[[], bool]], Any]) -> None:
        """Where data items go from now on (the consumer swaps it when inline dispatch is set)."""
        self._put = put

    # ------------------------------------------------------------------ session boundaries

    def begin(self, started: float) -> str:
        """The transport is open (the attempt began at ``started``): start the auth timer and the
        pings, and return the auth frame to send."""
        config = self._config
        self._auth_deadline = started + config.connect_timeout
        now = self._clock()
        self._began = now
        self._next_ping = now + config.ping_interval if config.ping_interval else None
        self._pong_deadline = None
        self._bytes_at_ping = 0
        self._set_state(ConnectionState.AUTHENTICATING, "connected; waiting for the reply to auth", None)
        return build_auth(config.api_key or "")

    @property
    def delivered_data(self) -> bool:
        """The current (or just ended) session received data (what resets the backoff counter
        with ``ReconnectPolicy.reset_on_data``)."""
        return self._began is not None and self._last_data_mono is not None and self._last_data_mono >= self._began

    def reset(self) -> None:
        """A new connection attempt starts (before the transport opens)."""
        self._began = None
        self._pending_frames = []
        self.authenticated = False
        self.streaming = False
        self.streaming_started = None
        self.limit_error = None
        self.server_reason = None
        self._applied = set()
        self.requests.clear()
        self._refusals.clear()
        self._unconfirmed.clear()
        self._update_acked((), (), True)

    def end(self) -> None:
        """The session's transport closed: a session that streamed data leaves a gap to report."""
        if (
            self.last_data_ns is not None and self.gap_start_ns is None and self.streaming_started is not None
            and not self._stopping()  # a stop we asked for is not a gap to backfill
        ):  # fmt: skip
            self.gap_start_ns = self.last_data_ns
            self._emit(
                StatusMessage(status="disconnected", message="connection lost; events may be missing until the gap "
                              "status that follows the reconnect", gap_start_ns=self.last_data_ns,
                              connection=self._name, received_at_ns=self._wall_ns())
            )  # fmt: skip
        self.authenticated = False
        self._update_acked((), (), True)

    def continue_gap(self, gap_start_ns: int) -> None:
        """Report the first data of this session as closing a gap that began at ``gap_start_ns``."""
        self.gap_start_ns = gap_start_ns

    # ------------------------------------------------------------------ messages

    def on_data(self, payload: bytes, received_at_ns: int) -> None:
        """A data frame (authenticated, no status near its start): queue it as it is."""
        if self.gap_start_ns is not None or not self.streaming:
            self._note_first_data(received_at_ns)
        self.last_data_ns = received_at_ns
        self._last_data_mono = self.recv_mono
        # -1: the queue measures the frame only if it keeps it (not when it is dispatched inline).
        self._put([KIND_DATA, payload, received_at_ns, -1], self._stopping)

    def on_data_frames(self, payloads: list[bytes], received_at_ns: int) -> None:
        """Data frames of one socket read (two or more, in order): queue them as one item."""
        if self.gap_start_ns is not None or not self.streaming:
            self._note_first_data(received_at_ns)
        self.last_data_ns = received_at_ns
        self._last_data_mono = self.recv_mono
        self._put([KIND_FRAMES, payloads, received_at_ns, -1], self._stopping)

    def on_relief_frames(
        self,
        payloads: list[bytes],
        received_at_ns: int,
        put: Callable[[list[Any], Callable[[], bool]], Any],
        stopping: Callable[[], bool],
    ) -> None:
        """Data frames the relief reader read (while the reader runs a callback: see
        :mod:`massive_rt.relief`): as :meth:`on_data_frames`, but always queued through ``put``
        (the queue's own ``put``), never dispatched on the calling thread."""
        if self.gap_start_ns is not None or not self.streaming:
            self._note_first_data(received_at_ns)
        self.last_data_ns = received_at_ns
        self._last_data_mono = self.recv_mono
        if len(payloads) == 1:
            put([KIND_DATA, payloads[0], received_at_ns, -1], stopping)
        else:
            put([KIND_FRAMES, payloads, received_at_ns, -1], stopping)

    def on_control_frame(self, payload: bytes, received_at_ns: int) -> Outcome | None:
        """A frame that may hold statuses: act on the statuses, queue the rest."""
        try:
            decoded = loads(payload)
        except (ValueError, TypeError, RecursionError):
            decoded = None
        if type(decoded) is dict:
            decoded = [decoded]
        if type(decoded) is not list:
            if self.authenticated:  # let the consumer's decoder count and report it
                self.on_data(payload, received_at_ns)
            else:
                self._log.warning("undecodable frame before authentication ignored (%d bytes)", len(payload))
            return None
        data: list[Any] = []
        for obj in decoded:
            if type(obj) is dict and obj.get("ev") == "status":
                outcome = self.on_status(obj, received_at_ns)
                if outcome is not None:
                    return outcome
            else:
                data.append(obj)
        if data:
            if not self.authenticated:
                self._log.warning("%d data objects before authentication ignored", len(data))
                return None
            if self.gap_start_ns is not None or not self.streaming:
                self._note_first_data(received_at_ns)
            self.last_data_ns = received_at_ns
            self._last_data_mono = self._clock()
            if self._config.raw:  # the frame as received, statuses included (raw mode decodes nothing)
                self._put([KIND_DATA, payload, received_at_ns, -1], self._stopping)
            else:  # sized as the frame it came in (the queue bounds bytes)
                self._put([KIND_OBJECTS, data, received_at_ns, len(payload)], self._stopping)
        return None

    def on_status(self, obj: dict[str, Any], received_at_ns: int, *, delivered: bool = False) -> Outcome | None:
        """Act on a server status. ``delivered``: the consumer already put it in the stream (a
        status found among data), so only its effects remain."""
        status = obj.get("status")
        message = obj.get("message")
        status = status if isinstance(status, str) else ""
        message = message if isinstance(message, str) else ""
        if status == "connected":
            self._log.debug("server: connected")
            return None
        if status == "auth_success" or (status == "success" and message == "authenticated"):
            self.authenticated = True
            self._set_state(ConnectionState.SUBSCRIBING, "authenticated", None)
            self._pending_frames.extend(self.sync_subscriptions())
            if not self.requests:
                self._begin_streaming("authenticated; no subscriptions pending")
            return None
        if status == "auth_failed":
            refused = AuthenticationError(message or "authentication failed", connection=self._name, status=status)
            if not delivered:
                self._deliver_server_status(status, message, received_at_ns, refused)
            return Outcome(f"authentication failed: {message}", error=refused, fatal=True)
        if status == "success":
            self._on_ack(message)
            return None
        error: MassiveRTError | None = None
        if status == "max_connections":
            error = self.limit_error = self._classify_limit(message)
        elif status == "error" and any(r.outstanding for r in self.requests):
            self._on_refusal(message or "error")
            return None
        elif status in ("slow_consumer", "force_disconnect", "auth_timeout"):
            self.server_reason = f"server sent {status}: {message}"
        if not delivered:
            self._deliver_server_status(status, message, received_at_ns, error, obj)
        if isinstance(error, ConnectionLimitError):
            self._emit(StatusMessage(status="evicted" if error.evicted else "limit_refused", message=error.message,
                                     error=error, connection=self._name, received_at_ns=received_at_ns))  # fmt: skip
        return None

    def on_pong(self) -> None:
        self._pong_deadline = None

    def on_close(self, payload: bytes) -> tuple[int, Outcome]:
        """The server's close frame: the code to answer with, and how the session ended."""
        code, reason = parse_close_payload(payload)
        reply = code if code is not None and code < 3000 and code not in (1005, 1006) else 1000
        error = self.limit_error
        if error is not None:
            text = f"server closed ({code}): {error.message}"
            fatal = limit_retry_for(self._config.on_limit, error.evicted) is None
            return reply, Outcome(text, error=error, fatal=fatal, close_code=code)
        detail = f" ({self.server_reason})" if self.server_reason else ""
        return reply, self.lost(f"server closed the connection with code {code} {reason!r}{detail}".rstrip(), code)

    def lost(self, reason: str, code: int | None = None) -> Outcome:
        """The transport ended (or must end) for ``reason``: how the session ended."""
        if self._stopping():
            return Outcome("stopped", stopped=True)
        error = self.limit_error
        if error is not None:  # refused, then dropped without a close frame: still the limit
            fatal = limit_retry_for(self._config.on_limit, error.evicted) is None
            return Outcome(f"connection limit: {error.message}", error=error, fatal=fatal, close_code=code)
        self._log.warning("%s", reason)
        return Outcome(reason, close_code=code)

    def closed_without_frame(self) -> Outcome:
        """The server closed the TCP connection without a close frame."""
        return self.lost(self.server_reason or "server closed the TCP connection without a close frame")

    # ------------------------------------------------------------------ subscriptions

    def sync_subscriptions(self) -> list[str]:
        """The frames that make the server's set equal the desired set (after auth only)."""
        if not self.authenticated:
            return []
        desired = self._desired()
        wanted = set(desired)
        to_unsubscribe = sorted(self._applied - wanted)
        to_subscribe = [c for c in desired if c not in self._applied]
        frames = build_unsubscribe(to_unsubscribe)
        self._applied.difference_update(to_unsubscribe)
        if to_unsubscribe:
            self._update_acked((), to_unsubscribe, False)
            for request in self.requests:
                request.outstanding.difference_update(to_unsubscribe)
        now = self._clock()
        for frame in build_subscribe(to_subscribe):
            frames.append(frame)
            self.requests.append(Request(outstanding=set(loads(frame)["params"].split(",")), sent_at=now))
        self._applied.update(to_subscribe)
        if to_subscribe or to_unsubscribe:
            self._log.debug("sent subscribe %d / unsubscribe %d channels", len(to_subscribe), len(to_unsubscribe))
        return frames

    def take_frames(self) -> list[str]:
        """Frames the session queued while handling a message (the subscriptions after auth)."""
        frames, self._pending_frames = self._pending_frames, []
        return frames

    # ------------------------------------------------------------------ timers

    def next_timeout(self, now: float) -> float:
        """Seconds until the nearest timer (at most ``_IDLE_WAKE``)."""
        candidates = [now + _IDLE_WAKE]
        if not self.authenticated:
            candidates.append(self._auth_deadline)
        if self._next_ping is not None:
            candidates.append(self._next_ping)
        if self._pong_deadline is not None:
            candidates.append(self._pong_deadline)
        if self.requests:
            candidates.append(now + _ACK_POLL)
        if self._config.stale_after and self.streaming_started is not None:
            candidates.append(max(self._last_data_mono or 0.0, self.streaming_started) + self._config.stale_after)
        return max(0.0, min(candidates) - now)

    def tick(self, now: float, bytes_received: int, subscribed: bool) -> Tick:
        """Run the timers at ``now`` (``bytes_received``: the transport's total so far;
        ``subscribed``: channels are desired)."""
        config = self._config
        if not self.authenticated and now >= self._auth_deadline:
            return Tick(outcome=self.lost(f"no auth reply within connect_timeout={config.connect_timeout}s"))
        ping = False
        if self._next_ping is not None and now >= self._next_ping:
            ping = True
            self._next_ping = now + (config.ping_interval or 0)
            # A watch: nothing at all received for ping_timeout after it starts ends the session.
            # It (re)starts at a ping, and at its deadline, whenever bytes came since it started,
            # so it starts at most min(ping_interval, ping_timeout) after the last byte while a
            # watch runs, ping_interval after it otherwise: half-open is detected more than
            # ping_timeout and at most ping_interval + ping_timeout after the last byte received.
            if self._pong_deadline is None or bytes_received != self._bytes_at_ping:
                self._pong_deadline = now + config.ping_timeout
                self._bytes_at_ping = bytes_received
        if self._pong_deadline is not None and now >= self._pong_deadline:
            if bytes_received == self._bytes_at_ping:
                reason = f"no pong and no data within ping_timeout={config.ping_timeout}s"
                return Tick(ping=ping, outcome=self.lost(reason))
            self._pong_deadline = now + config.ping_timeout  # bytes came since it started: watch again
            self._bytes_at_ping = bytes_received
        if self.requests:
            self._settle_requests(now)
        if config.stale_after and self.streaming_started is not None:
            last_data = max(self._last_data_mono or 0.0, self.streaming_started)
            if subscribed and now - last_data >= config.stale_after:
                reason = f"no data for stale_after={config.stale_after}s while subscribed"
                return Tick(ping=ping, outcome=self.lost(reason))
        return _PING if ping else _IDLE

    # ------------------------------------------------------------------ internals

    def _note_first_data(self, received_at_ns: int) -> None:
        if self.gap_start_ns is not None:
            self._emit(
                StatusMessage(status="gap", message="data resumed after a disconnect; backfill between "
                              "gap_start_ns and gap_end_ns", gap_start_ns=self.gap_start_ns,
                              gap_end_ns=received_at_ns, connection=self._name, received_at_ns=received_at_ns)
            )  # fmt: skip
            self.gap_start_ns = None
        if not self.streaming:
            self._begin_streaming("data arriving")

    def _begin_streaming(self, message: str) -> None:
        self.streaming = True
        self.streaming_started = self._clock()
        self._set_state(ConnectionState.STREAMING, message, None)

    def _classify_limit(self, message: str) -> ConnectionLimitError:
        """``max_connections``: evicted when this session had streamed past ``reset_after`` (another
        connection on the key took the slot), else refused at connect."""
        server = message.strip() or "maximum number of connections exceeded"
        started = self.streaming_started
        streamed = 0.0 if started is None else self._clock() - started
        if started is not None and streamed >= self._config.reconnect.reset_after:
            text = (f"evicted after streaming {seconds(streamed)}: another connection on this key took the slot "
                    f"(max_connections: {server})")  # fmt: skip
            return ConnectionLimitError(text, connection=self._name, status="max_connections", evicted=True)
        text = f"refused at connect: the account's connection limit is reached (max_connections: {server})"
        return ConnectionLimitError(text, connection=self._name, status="max_connections")

    def _deliver_server_status(
        self, status: str, message: str, received_at_ns: int, error: MassiveRTError | None = None,
        obj: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        message = message or f"the server sent {status!r} without a message"
        self._log.warning("server status %s: %s", status, message)
        fields: dict[str, Any] = {}
        if obj is not None and len(obj) > 3:  # a relay's structured fields (see protocol.status_fields)
            fields, rejected = status_from_fields(obj)
            if rejected:
                self.rejected_status_fields += len(rejected)
                self._log.debug("server status %s: ignored field(s) of the wrong type: %s", status, ", ".join(rejected))
        self._emit(StatusMessage(status=status, message=message, error=error, from_server=True,
                                 connection=self._name, received_at_ns=received_at_ns, **fields))  # fmt: skip

    def _on_ack(self, message: str) -> None:
        verb, _, params = message.partition(":")
        channels = [c.strip() for c in params.split(",") if c.strip()]
        verb = verb.strip()
        if verb == "subscribed to":
            # Never what we did not ask; interned, so the acked set shares the desired set's strings.
            self._update_acked([sys.intern(c) for c in channels if c in self._applied], (), False)
        elif verb == "unsubscribed to":
            self._update_acked((), channels, False)
        else:
            self._log.debug("unrecognised success status: %s", message)
            return
        if verb == "subscribed to" and (self.requests or self._unconfirmed):
            for channel in channels:
                for request in self.requests:
                    if channel in request.outstanding:
                        request.outstanding.discard(channel)
                        break
            late = sorted(c for c in channels if c in self._unconfirmed)
            if late:
                self._unconfirmed.difference_update(late)
                self._emit(StatusMessage(status="subscription_confirmed", channels=tuple(late),
                                         message=f"late ack for {len(late)} channel(s) reported unconfirmed",
                                         connection=self._name, received_at_ns=self._wall_ns()))  # fmt: skip
            self._settle_requests(self._clock())

    def _on_refusal(self, message: str) -> None:
        """An ``error`` status while channels await acks: it refuses exactly one channel.

        The one it names, when it names a waiting channel; otherwise it is kept until the
        oldest request has exactly as many channels without an ack as there are such refusals
        (Massive sends the refusals of a request before the acks of its accepted channels).
        """
        named = {token.strip(" .,:;'\"") for token in message.split()}
        for request in self.requests:
            hit = sorted(named & request.outstanding)
            if hit:
                request.outstanding.discard(hit[0])
                self._refuse([hit[0]], message)
                break
        else:
            self._refusals.append(message)
        self._settle_requests(self._clock())

    def _refuse(self, channels: list[str], reason: str) -> None:
        error = SubscriptionError(f"server refused {len(channels)} channel(s): {reason}", channels=channels,
                                  connection=self._name, status="error")  # fmt: skip
        self._log.warning("subscription refused (%s): %s", reason, ", ".join(channels[:20]))
        self._emit(StatusMessage(status="subscription_error", message=error.message, error=error,
                                 channels=tuple(channels), connection=self._name,
                                 received_at_ns=self._wall_ns()))  # fmt: skip

    def _settle_requests(self, now: float) -> None:
        """Resolve requests that are fully acked, refused (one refusal per channel) or timed out.

        A slow ack is never a refusal: without enough refusals, channels still waiting after
        :data:`ACK_TIMEOUT` are reported ``subscription_unconfirmed`` (and ``subscription_confirmed``
        if their ack comes later).
        """
        while self.requests:
            request = self.requests[0]
            if not request.outstanding:
                self.requests.popleft()
                continue
            if len(self._refusals) >= len(request.outstanding):
                self.requests.popleft()
                reasons = [self._refusals.popleft() for _ in request.outstanding]
                self._refuse(sorted(request.outstanding), reasons[0])
                continue
            if now - request.sent_at >= ACK_TIMEOUT:
                self.requests.popleft()
                missing = sorted(request.outstanding)
                self._unconfirmed.update(missing)
                refused = len(self._refusals)
                self._refusals.clear()  # they belonged to these channels or to none we can tell
                detail = f" ({refused} refusal(s) naming no channel among them)" if refused else ""
                self._log.warning("no ack within %.0fs for %d channel(s)%s: %s", ACK_TIMEOUT, len(missing), detail,
                                  ", ".join(missing[:20]))  # fmt: skip
                text = f"no ack within {ACK_TIMEOUT:.0f}s for {len(missing)} channel(s){detail}"
                self._emit(StatusMessage(status="subscription_unconfirmed", channels=tuple(missing), message=text,
                                         connection=self._name, received_at_ns=self._wall_ns()))  # fmt: skip
                continue
            break
        if not self.requests and self._refusals:  # refusals no waiting channel accounts for
            for reason in self._refusals:
                self._deliver_server_status("error", reason, self._wall_ns())
            self._refusals.clear()
        if not self.requests and self.authenticated and not self.streaming:
            self._begin_streaming("subscriptions acknowledged")
