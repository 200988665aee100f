"""RedisStreamSource: an event source for the adapter that reads the streams a sink writes.

The entry format is :mod:`massive_rt.redis._wire`'s; delivery semantics (at least once per
consumer group, acknowledgements after the consumer completed) are described in :mod:`massive_rt.redis`.
Loss inside Redis is reported, in order with the data: ``gap`` statuses for producer sequences
that vanished (:mod:`massive_rt.redis._continuity`), ``stream_reset`` when a group had to be
re-created.
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from .._lifecycle import ThreadedSource
from .._util import RateLimitedLog
from .._validate import require_int, require_name, require_number
from ..config import ReconnectPolicy
from ..consumer import InlineGate
from ..enums import ConnectionState, Market, Overflow
from ..errors import ClientClosedError, ConfigurationError, WaitTimeoutError
from ..eventqueue import KIND_EVENT, KIND_OBJECTS, Item
from ..models import Event, StatusMessage
from ._client import DEFAULT_URL, new_client, reconnect_policy, redis_errors, require_url, safe_url
from ._continuity import Candidate, ContinuityChecker, Gap, missing_runs
from ._wire import (
    DEFAULT_STREAM,
    ZERO_ID,
    EntryDecoder,
    parse_id,
    sequence_of,
    template_fields,
    template_regex,
)

__all__ = ["RedisSourceStats", "RedisStreamSource"]

logger = logging.getLogger(__name__)

_VERIFY_PAGE = 1000  # entries per XRANGE when telling vanished entries from other consumers' ones
_VERIFY_PAGES = 100  # beyond that, the rest of a hole is reported as missing (never silent)


@attrs.frozen(kw_only=True)
class RedisSourceStats:
    """Counters of a :class:`RedisStreamSource`.

    Attributes:
        name: the source name (``connection`` of its own status events).
        state: NEW, CONNECTING, STREAMING, BACKOFF, FAILED or STOPPED.
        connected: the last Redis round trip succeeded.
        group: the consumer group.
        consumer: this consumer's name in the group.
        streams: the streams read.
        read: entries taken from Redis (new, own pending and claimed).
        claimed: of which claimed from idle consumers with ``XAUTOCLAIM``.
        repeats_skipped: entries Redis handed out again while already in flight here (not re-delivered).
        acked: entries acknowledged.
        in_flight: entries read and not acknowledged yet (queued, being handled, or awaiting XACK).
        lost: pending entries whose data was trimmed (``MAXLEN``) or deleted before delivery.
        gaps: ``gap`` statuses sent: runs of producer sequences that exist nowhere in the stream.
        missing: entries those gaps add up to (published by a sink, never read by the group).
        stream_resets: ``stream_reset`` statuses sent: groups re-created because Redis lost them.
        events_decoded: events decoded from entries.
        decode_errors: entries that could not be decoded (delivered as ``decode_error`` statuses).
        errors: failed Redis round trips.
        reconnects: recoveries after Redis was unreachable.
        queue_frames: batches queued for the consumer.
    """

    name: str
    state: ConnectionState
    connected: bool
    group: str
    consumer: str
    streams: tuple[str, ...]
    read: int
    claimed: int
    repeats_skipped: int
    acked: int
    in_flight: int
    lost: int
    gaps: int
    missing: int
    stream_resets: int
    events_decoded: int
    decode_errors: int
    errors: int
    reconnects: int
    queue_frames: int


class _Entries:
    """A batch of entries of one stream, queued for the consumer: ``[(id, fields), ...]`` where
    fields are a flat ``[k1, v1, ...]`` list (or a dict, for claimed entries)."""

    __slots__ = ("entries", "stream")

    def __init__(self, stream: str, entries: list[tuple[bytes, Any]]) -> None:
        self.stream = stream
        self.entries = entries


_consumer_numbers = itertools.count(1)


class RedisStreamSource(ThreadedSource):
    """An event source for :class:`~massive_rt.RealTimeDataAdapter` reading Redis Streams.

    Reads the streams a :class:`RedisStreamSink` writes, with a consumer group, on its own daemon
    thread (``massive-rt-redis-source-<name>``), and delivers the same typed events (decoded with
    :class:`massive_rt.protocol.Decoder` of the entry's market, on the consumer's thread). Events
    keep the upstream ``connection`` and ``received_at_ns``, so the adapter's latency is end to
    end. Forwarded statuses arrive as :class:`~massive_rt.StatusMessage` (their ``error``, if any,
    as a :class:`~massive_rt.MassiveRTError` with the original text); the source's own lifecycle
    (``state`` transitions, ``disconnected`` from Redis) arrives as statuses named after ``name``.
    See :mod:`massive_rt.redis` for the exact at-least-once semantics.

    Loss is reported as statuses named after ``name``, in order with the events: ``gap`` when
    entries of a :class:`RedisStreamSink` vanished before this group read them (``dropped`` =
    how many, ``channels`` = ``(stream,)``, ``gap_start_ns``/``gap_end_ns`` = upstream receive
    times of the entries around the hole, the producer sequences in ``message``), and
    ``stream_reset`` when the group (or the whole stream) vanished and was re-created
    (``channels`` = ``(stream,)``). ``stats()`` counts both.

    The streams are fixed at construction: :meth:`subscribe` and :meth:`unsubscribe` raise
    :class:`~massive_rt.ConfigurationError` when given channels (channels are chosen by the
    publishing side; pick streams here).

    Args:
        url: Redis URL.
        streams: stream names, or ``{stream: market}``.
        group: consumer group (created with ``MKSTREAM`` when missing).
        consumer: this consumer's name in the group; default ``<host>-<pid>-<name>-<n>``. Give a
            stable name to re-read your own unacknowledged entries right away after a restart.
        start_id: where a newly created group starts: ``"$"`` (only new entries, default) or
            ``"0"`` (everything still in the stream). A group that vanished while running
            (Redis lost its data) is re-created from ``"0"`` so nothing that survived is skipped,
            and reported as a ``stream_reset`` status.
        block_ms: longest wait of one ``XREADGROUP``; also bounds acknowledgement delay and stop.
        count: most entries per read.
        queue_size: most entries waiting for the consumer (Redis holds the rest: backpressure,
            never drops).
        market: market of entries that carry none and whose stream name does not tell.
        template: stream name template used to parse the market out of a stream name.
        claim_min_idle_ms: idle time after which another consumer's pending entry is claimed.
        claim_interval: seconds between ``XAUTOCLAIM`` passes (one runs at start).
        reconnect: backoff between attempts while Redis is unreachable (``max_attempts``
            consecutive failures end the source in FAILED).
        socket_timeout: seconds before a Redis call is considered failed (must exceed ``block_ms``).
        name: source name.
    """

    _THREAD_PREFIX = "massive-rt-redis-source-"

    def __init__(
        self,
        url: str = DEFAULT_URL,
        streams: Iterable[str] | Mapping[str, Market | str] = (),
        *,
        group: str = "massive-rt",
        consumer: str | None = None,
        start_id: str = "$",
        block_ms: int = 250,
        count: int = 500,
        queue_size: int = 20_000,
        market: Market | str | None = None,
        template: str = DEFAULT_STREAM,
        claim_min_idle_ms: int = 30_000,
        claim_interval: float = 5.0,
        reconnect: ReconnectPolicy | None = None,
        socket_timeout: float = 5.0,
        name: str = "redis-source",
    ) -> None:
        require_url(url)
        if isinstance(streams, str):
            streams = (streams,)
        configured: dict[str, Market | None] = {}
        for stream_name in streams:
            if not isinstance(stream_name, str) or not stream_name:
                raise ConfigurationError(f"stream {stream_name!r} must be a non-empty string", field="streams")
            value = streams[stream_name] if isinstance(streams, Mapping) else None
            configured[stream_name] = None if value is None else Market.coerce(value, "streams")
        if not configured:
            raise ConfigurationError("streams must name at least one stream", field="streams")
        require_name("group", group)
        if consumer is not None:
            require_name("consumer", consumer)
        if not isinstance(start_id, str) or not start_id:
            raise ConfigurationError(f"start_id={start_id!r} must be '$', '0' or a stream id", field="start_id")
        require_int("block_ms", block_ms)
        require_int("count", count)
        require_int("queue_size", queue_size)
        require_int("claim_min_idle_ms", claim_min_idle_ms, minimum=0)
        require_number("claim_interval", claim_interval, strict=True)
        backoff = reconnect_policy(reconnect)
        require_number("socket_timeout", socket_timeout, strict=True)
        if socket_timeout * 1000 <= block_ms:
            raise ConfigurationError(f"socket_timeout={socket_timeout!r} must exceed block_ms={block_ms} ms",
                                     field="socket_timeout")  # fmt: skip
        require_name("name", name)
        fallback = None if market is None else Market.coerce(market, "market")
        template_fields(template, "template")
        pattern = template_regex(template)
        for stream_name, known in configured.items():
            if known is None:
                match = pattern.match(stream_name)
                if match is not None and "market" in match.groupdict():
                    try:
                        known = Market.coerce(match.group("market"), "market")
                    except ConfigurationError:
                        known = None
                configured[stream_name] = known if known is not None else fallback

        self._conn_errors, self._response_error = redis_errors()
        self._url = url
        self._stream_markets = configured
        self._streams = tuple(configured)
        self._group = group
        self._auto_consumer = consumer is None
        self._consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{name}-{next(_consumer_numbers)}"
        self._start_id = start_id
        self._block_ms = block_ms
        self._count = count
        self._queue_size = queue_size
        self._claim_min_idle_ms = claim_min_idle_ms
        self._claim_interval = float(claim_interval)
        self._policy = backoff
        self._socket_timeout = float(socket_timeout)
        self._name = name
        self._init_consumer(name, fallback or Market.STOCKS, queue_size, Overflow.BLOCK, False, logger)

        self._init_lifecycle()
        self._ready_event = threading.Event()
        self._stop_deadline = float("inf")
        self._state = ConnectionState.NEW
        self._fatal: BaseException | None = None
        self._client: Any = new_client(url, self._socket_timeout, f"massive-rt-{name}")  # connects on first use
        self._client.set_response_callback("XREADGROUP", _raw_reply)

        # consumer side (under _handout_lock): events decoded → their entry, in order; handed out, not completed
        self._handout_lock = threading.Lock()
        self._fifo: collections.deque[tuple[str, bytes] | None] = collections.deque()
        self._handed: list[tuple[str, bytes]] = []
        self._consumer_thread: threading.Thread | None = None
        # completed, to acknowledge (under _ack_lock); the source thread sends them
        self._ack_lock = threading.Lock()
        self._to_ack: dict[str, list[bytes]] = {}
        self._ack_wake = threading.Event()
        # source thread only
        self._in_flight: dict[str, set[bytes]] = {s: set() for s in self._streams}
        self._in_flight_count = 0
        self._history: dict[str, bytes] = {}
        self._setup_needed = True
        self._recovering = False
        self._sessions = 0
        self._next_claim = 0.0
        self._connected = False
        self._connected_since: float | None = None
        self._attempt = 0
        self._read = 0
        self._claimed = 0
        self._repeats = 0
        self._acked = 0
        self._lost = 0
        self._continuity = ContinuityChecker()
        self._gaps = 0
        self._missing = 0
        self._stream_resets = 0
        self._gap_log = RateLimitedLog(logger, logging.WARNING)
        self._errors = 0
        self._reconnects = 0
        self._error_log = RateLimitedLog(logger, logging.ERROR)
        self._entry_decoder = EntryDecoder(name, self._error_log)  # used by the consumer thread only

    # ------------------------------------------------------------------ EventSource API

    @property
    def name(self) -> str:
        """The source name."""
        return self._name

    @property
    def streams(self) -> tuple[str, ...]:
        """The streams read."""
        return self._streams

    @property
    def stream_markets(self) -> dict[str, Market | None]:
        """``{stream: market}``: each stream's market as configured or read from its name (None:
        from each entry's own ``market`` field)."""
        return dict(self._stream_markets)

    def connection_markets(self) -> dict[str, Market]:
        """The market of each upstream connection whose events were decoded so far (an entry's
        ``market`` field, else its stream's); known before those events are handed out. Any thread."""
        return dict(self._entry_decoder.markets)

    @property
    def group(self) -> str:
        """The consumer group."""
        return self._group

    @property
    def consumer(self) -> str:
        """This consumer's name in the group."""
        return self._consumer

    @property
    def state(self) -> ConnectionState:
        """NEW, CONNECTING, STREAMING, BACKOFF, FAILED or STOPPED."""
        return self._state

    @property
    def subscriptions(self) -> frozenset[str]:
        """The streams read (the source has no channels of its own)."""
        return frozenset(self._streams)

    def wait_ready(self, timeout: float | None = None) -> RedisStreamSource:
        """Wait until connected with every group in place (after that, new entries are read).

        Raises:
            WaitTimeoutError: not ready within ``timeout``.
            ClientClosedError: the source stopped or failed first.
        """
        self._require_started("wait_ready()")
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._ready_event.is_set():
            if self._state.is_terminal:
                raise ClientClosedError(f"source {self._state.value}", connection=self._name)
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise WaitTimeoutError(f"not connected to Redis after {timeout}s", connection=self._name)
            self._ready_event.wait(0.05 if remaining is None else min(0.05, remaining))
        return self

    def subscribe(self, *channels: str, **_: Any) -> tuple[str, ...]:
        """Not supported: the streams are fixed at construction. Raises if given channels."""
        if channels:
            raise ConfigurationError(
                f"{type(self).__name__} reads the streams given at construction ({', '.join(self._streams)}); "
                "channels are chosen by the publishing side",
                field="channels",
            )
        return ()

    def unsubscribe(self, *channels: str, **_: Any) -> tuple[str, ...]:
        """Not supported: the streams are fixed at construction. Raises if given channels."""
        return self.subscribe(*channels)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop reading; let the consumer finish what is queued, acknowledge it, and end.

        Waits up to ``timeout`` for the consumer (the adapter's dispatcher) to take and complete
        the queued events, sending their acknowledgements; what is not completed by then stays
        pending in the group and is re-delivered later (at least once). Idempotent; any thread.
        Called from the thread that calls :meth:`drain` (e.g. from a handler, on the adapter's
        dispatcher), it does not wait: the reader finishes in the background within ``timeout``.
        """
        require_number("timeout", timeout)
        with self._life_lock:
            if not self._stop_requested.is_set():
                self._stop_deadline = time.monotonic() + timeout * 0.8
            self._stop_requested.set()
            thread = self._thread
        self._ack_wake.set()
        if thread is None:
            if self._state is not ConnectionState.STOPPED:
                self._state = ConnectionState.STOPPED
                self._queue.close()
            return
        current = threading.current_thread()
        if thread is not current and current is not self._consumer_thread:
            thread.join(timeout)

    def commit(self) -> int:
        """Mark every event handed out so far as processed (acknowledged soon); returns how many entries.

        ``drain()`` and ``get()`` do this themselves for the previous hand-out; call it when you
        consume with ``get()`` and will not call it again for a while.
        """
        with self._handout_lock:
            return self._complete_locked()

    def drain(self, max_frames: int = 32) -> list[Event]:
        """Return what is queued now (never blocks); completes the previous hand-out (see :mod:`massive_rt.redis`)."""
        with self._handout_lock:
            self._consumer_thread = threading.current_thread()
            self._complete_locked()
            events = super().drain(max_frames)
            if events:
                self._hand_out_locked(len(events))
            return events

    def get(self, timeout: float | None = None) -> Event:
        """Return the next event; completes the previous hand-out (see :mod:`massive_rt.redis`).

        Raises:
            queue.Empty: nothing arrived within ``timeout``.
            ClientClosedError: the source stopped and every event was consumed.
        """
        with self._handout_lock:
            self._complete_locked()
            event = super().get(timeout)
            self._hand_out_locked(1)
            return event

    def stats(self) -> RedisSourceStats:
        """Counters (cheap; any thread)."""
        entries = self._entry_decoder
        return RedisSourceStats(
            name=self._name, state=self._state, connected=self._connected, group=self._group,
            consumer=self._consumer, streams=self._streams, read=self._read, claimed=self._claimed,
            repeats_skipped=self._repeats, acked=self._acked, in_flight=self._in_flight_count, lost=self._lost,
            gaps=self._gaps, missing=self._missing, stream_resets=self._stream_resets,
            events_decoded=entries.decoded, decode_errors=entries.errors, errors=self._errors,
            reconnects=self._reconnects, queue_frames=len(self._queue),
        )  # fmt: skip

    def __repr__(self) -> str:
        url = safe_url(self._url)
        return f"RedisStreamSource(name={self._name!r}, url={url!r}, group={self._group!r}, streams={self._streams!r})"

    @property
    def pending(self) -> bool:
        """True also while the last hand-out awaits completion: the next ``drain()`` acknowledges it."""
        return bool(self._handed) or super().pending

    def set_inline(self, gate: InlineGate | None) -> bool:
        """Refused: acknowledgements follow the ``drain()``/``get()`` hand-outs, so events from
        Redis always reach the adapter through its dispatcher thread. Returns False."""
        return False

    def _closed_reason(self) -> str:
        if self._fatal is not None:
            return f"source failed: {self._fatal}"
        return "source is stopped"

    # ------------------------------------------------------------------ consumer side

    def _complete_locked(self) -> int:
        handed = self._handed
        if not handed:
            return 0
        with self._ack_lock:
            to_ack = self._to_ack
            for stream_name, entry_id in handed:
                ids = to_ack.get(stream_name)
                if ids is None:
                    to_ack[stream_name] = [entry_id]
                else:
                    ids.append(entry_id)
        count = len(handed)
        handed.clear()
        self._ack_wake.set()
        return count

    def _hand_out_locked(self, count: int) -> None:
        fifo = self._fifo
        handed = self._handed
        for _ in range(min(count, len(fifo))):
            ref = fifo.popleft()
            if ref is not None:
                handed.append(ref)

    def _decode_item(self, item: Item) -> list[Event]:
        payload = item[1]
        if item[0] == KIND_OBJECTS and isinstance(payload, _Entries):
            markets = self._stream_markets
            return self._entry_decoder.decode(payload.stream, payload.entries, markets.get(payload.stream), self._fifo)
        events = super()._decode_item(item)
        self._fifo.extend(itertools.repeat(None, len(events)))
        return events

    # ------------------------------------------------------------------ reader thread

    def _status(self, status: str, message: str, state: ConnectionState | None = None,
                error: BaseException | None = None, **fields: Any) -> None:  # fmt: skip
        if state is not None:
            self._state = state
        event = StatusMessage(status=status, message=message, state=state, error=error, connection=self._name,
                              received_at_ns=time.time_ns(), **fields)  # fmt: skip
        self._queue.put([KIND_EVENT, event, event.received_at_ns, 0])

    def _run(self) -> None:
        self._status("state", f"connecting to {safe_url(self._url)}", ConnectionState.CONNECTING)
        try:
            while not self._stop_requested.is_set():
                try:
                    self._step()
                except self._conn_errors as exc:
                    if not self._on_failure(exc):
                        return
                except self._response_error as exc:
                    if "NOGROUP" in str(exc):  # the group (or the stream) vanished: Redis lost data or a FLUSH
                        self._errors += 1
                        logger.warning("[%s] consumer group %s is missing (%s); re-creating it from 0 "
                                       "(stream_reset)", self._name, self._group, exc)  # fmt: skip
                        self._setup_needed = True
                        continue
                    self._error_log("[%s] Redis refused a command: %s", self._name, exc)
                    if not self._on_failure(exc):
                        return
        except BaseException as exc:
            self._fatal = exc
            logger.critical("[%s] redis source crashed", self._name, exc_info=True)
            raise
        finally:
            self._finish()

    def _step(self) -> None:
        client = self._client
        if self._setup_needed:
            self._setup(client)
        self._flush_acks(client)
        room = self._queue_size - self._queue.queued_events
        if room <= 0:
            self._ack_wake.wait(0.05)
            self._ack_wake.clear()
            return
        if time.monotonic() >= self._next_claim:
            self._claim(client, room)
            self._next_claim = time.monotonic() + self._claim_interval
            return
        if self._history:
            self._read_history(client, room)
        else:
            self._read_new(client, room)

    def _setup(self, client: Any) -> None:
        client.ping()
        start_id = self._start_id if self._sessions == 0 else "0"
        for stream_name in self._streams:
            try:
                client.xgroup_create(stream_name, self._group, id=start_id, mkstream=True)
                logger.info("[%s] created consumer group %s on %s at %s", self._name, self._group, stream_name,
                            start_id)  # fmt: skip
            except self._response_error as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            else:
                if self._sessions:  # it existed in an earlier session: Redis lost it
                    self._stream_reset(stream_name)
        self._history = dict.fromkeys(self._streams, b"0-0")  # own pending entries first (after a crash/outage)
        self._setup_needed = False
        self._next_claim = 0.0
        first = self._sessions == 0
        if self._recovering:
            self._reconnects += 1
            self._recovering = False
        self._sessions += 1
        self._mark_connected()
        if first:
            self._ready_event.set()
        self._status("state", f"reading {len(self._streams)} streams as {self._group}/{self._consumer}",
                     ConnectionState.STREAMING)  # fmt: skip

    def _stream_reset(self, stream_name: str) -> None:
        self._stream_resets += 1
        logger.warning("[%s] consumer group %s of %s was lost and re-created from 0 (stream_reset)", self._name,
                       self._group, stream_name)  # fmt: skip
        self._status("stream_reset", f"consumer group {self._group} of {stream_name} vanished (Redis restarted "
                     "without persistence, or the stream or group was deleted) and was re-created: reading what "
                     "the stream holds again from 0; entries lost with it are reported as gap statuses",
                     channels=(stream_name,))  # fmt: skip

    def _mark_connected(self) -> None:
        if not self._connected:
            self._connected = True
            self._connected_since = time.monotonic()

    def _on_failure(self, exc: BaseException) -> bool:
        """Count, report and back off after a failed round trip; False when giving up."""
        self._errors += 1
        now = time.monotonic()
        was_connected = self._connected
        if self._connected_since is not None and now - self._connected_since >= self._policy.reset_after:
            self._attempt = 0
        self._connected = False
        self._connected_since = None
        self._setup_needed = True
        self._recovering = self._sessions > 0
        if was_connected:
            logger.warning("[%s] Redis unreachable (%s); reconnecting with backoff", self._name, exc)
            self._status("disconnected", f"Redis unreachable: {exc}")
        self._attempt += 1
        if self._policy.gives_up_after(self._attempt):
            self._fatal = exc
            logger.error("[%s] giving up after %d failed attempts: %s", self._name, self._attempt, exc)
            self._status("failed", f"gave up after {self._attempt} attempts: {exc}", ConnectionState.FAILED, exc)
            return False
        self._state = ConnectionState.BACKOFF
        self._stop_requested.wait(self._policy.delay(self._attempt - 1))
        return True

    def _flush_acks(self, client: Any) -> None:
        with self._ack_lock:
            if not self._to_ack:
                return
            batch, self._to_ack = self._to_ack, {}
        try:
            pipe = client.pipeline(transaction=False)
            for stream_name, ids in batch.items():
                for start in range(0, len(ids), 1000):
                    pipe.execute_command("XACK", stream_name, self._group, *ids[start : start + 1000])
            pipe.execute()
        except BaseException:
            with self._ack_lock:
                for stream_name, ids in batch.items():
                    self._to_ack[stream_name] = ids + self._to_ack.get(stream_name, [])
            raise
        for stream_name, ids in batch.items():
            in_flight = self._in_flight.get(stream_name)
            if in_flight is not None:
                before = len(in_flight)
                in_flight.difference_update(ids)
                self._in_flight_count -= before - len(in_flight)
            self._acked += len(ids)

    def _claim(self, client: Any, room: int) -> None:
        for stream_name in self._streams:
            cursor: bytes | str = "0-0"
            while room > 0:
                reply = client.xautoclaim(stream_name, self._group, self._consumer, self._claim_min_idle_ms,
                                          start_id=cursor, count=min(self._count, room))  # fmt: skip
                cursor, entries = reply[0], reply[1]
                deleted = reply[2] if len(reply) > 2 else []
                if deleted:
                    self._lost += len(deleted)
                    logger.warning("[%s] %d pending entries of %s were trimmed before delivery (lost)",
                                   self._name, len(deleted), stream_name)  # fmt: skip
                room -= self._enqueue(stream_name, entries, claimed=True)
                if parse_id(cursor) == ZERO_ID:
                    break

    def _read_history(self, client: Any, room: int) -> None:
        reply = client.xreadgroup(self._group, self._consumer, dict(self._history), count=min(self._count, room))
        seen: set[str] = set()
        for raw_name, entries in _stream_items(reply):
            stream_name = raw_name.decode() if isinstance(raw_name, bytes) else raw_name
            seen.add(stream_name)
            if not entries:
                self._history.pop(stream_name, None)
                continue
            self._history[stream_name] = entries[-1][0]
            self._enqueue(stream_name, entries)
        for stream_name in list(self._history):
            if stream_name not in seen:
                del self._history[stream_name]

    def _read_new(self, client: Any, room: int) -> None:
        streams = dict.fromkeys(self._streams, ">")
        reply = client.xreadgroup(self._group, self._consumer, streams, count=min(self._count, room),
                                  block=self._block_ms)  # fmt: skip
        for raw_name, entries in _stream_items(reply):
            stream_name = raw_name.decode() if isinstance(raw_name, bytes) else raw_name
            self._enqueue(stream_name, entries)

    def _enqueue(self, stream_name: str, entries: Sequence[Any], claimed: bool = False) -> int:
        in_flight = self._in_flight.setdefault(stream_name, set())
        fresh: list[tuple[bytes, Any]] = []
        gone: list[bytes] = []
        for entry_id, fields in entries:
            if entry_id in in_flight:
                self._repeats += 1
                continue
            if not fields:
                gone.append(entry_id)
                continue
            fresh.append((entry_id, fields))
            in_flight.add(entry_id)
        if gone:  # deleted while pending: acknowledge so they leave the pending list; never silent
            self._lost += len(gone)
            logger.warning("[%s] %d pending entries of %s were trimmed before delivery (lost)", self._name,
                           len(gone), stream_name)  # fmt: skip
            with self._ack_lock:
                self._to_ack.setdefault(stream_name, []).extend(gone)
        if fresh:
            self._in_flight_count += len(fresh)
            self._read += len(fresh)
            if claimed:
                self._claimed += len(fresh)
            self._put_checked(stream_name, fresh)
        return len(fresh)

    def _put_checked(self, stream_name: str, fresh: list[tuple[bytes, Any]]) -> None:
        """Queue ``fresh`` entries, each ``gap`` status right before the entry after its hole."""
        observe = self._continuity.observe
        start = 0
        for index, (entry_id, fields) in enumerate(fresh):
            stamp = sequence_of(fields)
            if stamp is None:
                continue
            candidate = observe(stream_name, stamp[0], stamp[1], entry_id, stamp[2])
            if candidate is None:
                continue
            present = self._still_in_stream(candidate)
            gaps = missing_runs(candidate, present)
            unseen = self._unseen_own(candidate) if present else []
            if not gaps and not unseen:
                continue
            if index > start:
                self._queue.put([KIND_OBJECTS, _Entries(stream_name, fresh[start:index]), time.time_ns(),
                                 index - start])  # fmt: skip
                start = index
            for gap in gaps:  # in sequence order: the unseen entries before each gap, then the gap
                split = next((i for i, e in enumerate(unseen) if _seq_in(candidate, e[1]) >= gap.first), len(unseen))
                if split:
                    self._enqueue(stream_name, unseen[:split])
                    unseen = unseen[split:]
                self._report_gap(gap)
            if unseen:
                self._enqueue(stream_name, unseen)
        if start < len(fresh):
            self._queue.put([KIND_OBJECTS, _Entries(stream_name, fresh[start:]), time.time_ns(), len(fresh) - start])

    def _still_in_stream(self, candidate: Candidate) -> list[int]:
        """Sequences of ``candidate``'s epoch that still exist between the entries around its hole
        (read by other consumers of the group, or not yet claimed): those are not missing."""
        present: list[int] = []
        low = candidate.after_id
        high = candidate.before_id
        for _ in range(_VERIFY_PAGES):
            try:
                page = self._client.xrange(candidate.stream, min=low, max=high, count=_VERIFY_PAGE)
            except (*self._conn_errors, self._response_error) as exc:
                # The entries are read already: they must be queued, so the hole is reported unchecked.
                logger.warning("[%s] could not look into a hole of %d entries of %s (%s); reported as missing",
                               self._name, candidate.last - candidate.first + 1, candidate.stream, exc)  # fmt: skip
                return present
            for _entry_id, fields in page:
                stamp = sequence_of(fields)
                if stamp is not None and stamp[0] == candidate.epoch:
                    present.append(stamp[1])
            if len(page) < _VERIFY_PAGE:
                return present
            ms, seq = parse_id(page[-1][0])
            low = f"{ms}-{seq + 1}".encode()
        logger.warning("[%s] more than %d entries of %s lie around a hole of %d; the rest is reported missing",
                       self._name, _VERIFY_PAGE * _VERIFY_PAGES, candidate.stream,
                       candidate.last - candidate.first + 1)  # fmt: skip
        return present

    def _unseen_own(self, candidate: Candidate) -> list[tuple[bytes, Any]]:
        """Entries of the hole pending to this very consumer that it never saw: an ``XREADGROUP`` of
        ours that Redis ran after we had given up on it (its reply lost, e.g. held on a half-open
        link and delivered after the reconnect). They are ours to deliver, before the entry after
        the hole. (Pending entries of other consumers are theirs.)"""
        unseen: list[tuple[bytes, Any]] = []
        in_flight = self._in_flight.get(candidate.stream, set())
        before = parse_id(candidate.before_id)
        cursor = candidate.after_id
        for _ in range(_VERIFY_PAGES):
            try:
                reply = self._client.xreadgroup(self._group, self._consumer, {candidate.stream: cursor},
                                                count=_VERIFY_PAGE)  # fmt: skip
            except (*self._conn_errors, self._response_error) as exc:
                # Still pending here: read again (after the entries already read) at the next reconnect.
                logger.warning("[%s] could not read back this consumer's pending entries in a hole of %s (%s)",
                               self._name, candidate.stream, exc)  # fmt: skip
                return unseen
            entries = [entry for _name, page in _stream_items(reply) for entry in page]
            for entry_id, fields in entries:
                if parse_id(entry_id) >= before:
                    return unseen
                if entry_id not in in_flight:
                    unseen.append((entry_id, fields))
            if len(entries) < _VERIFY_PAGE:
                return unseen
            cursor = entries[-1][0]
        return unseen

    def _report_gap(self, gap: Gap) -> None:
        self._gaps += 1
        self._missing += gap.count
        epoch = gap.epoch.decode("utf-8", "replace")
        self._gap_log("[%s] %d entries of %s vanished before group %s read them (producer %s, sequence %d..%d)",
                      self._name, gap.count, gap.stream, self._group, epoch, gap.first, gap.last)  # fmt: skip
        self._status("gap", f"{gap.count} entries of {gap.stream} vanished before group {self._group} read them "
                     f"(producer {epoch}, sequence {gap.first}..{gap.last}): Redis lost or trimmed them",
                     channels=(gap.stream,), dropped=gap.count, gap_start_ns=gap.after_ns or None,
                     gap_end_ns=gap.before_ns or None)  # fmt: skip

    def _consumed(self) -> bool:
        return not len(self._queue) and not self._ready and not self._fifo and not self._handed

    def _finish(self) -> None:
        self._queue.close()
        deadline = self._stop_deadline if self._stop_requested.is_set() else time.monotonic()
        client = self._client
        while True:
            done = self._consumed()
            try:
                self._flush_acks(client)
            except (*self._conn_errors, self._response_error) as exc:
                logger.warning("[%s] could not acknowledge at stop (%s); those entries will be re-delivered",
                               self._name, exc)  # fmt: skip
                break
            remaining = deadline - time.monotonic()
            if done or remaining <= 0:
                break
            self._ack_wake.wait(min(remaining, 0.05))
            self._ack_wake.clear()
        if self._in_flight_count:
            logger.info("[%s] %d entries left unacknowledged in group %s; they will be re-delivered",
                        self._name, self._in_flight_count, self._group)  # fmt: skip
        elif self._auto_consumer and self._connected:
            self._forget_consumer(client)
        if self._state is not ConnectionState.FAILED:
            self._status("state", "stopped", ConnectionState.STOPPED)
        self._client = None
        try:
            client.close()
        except Exception:  # pragma: no cover - closing a broken connection
            logger.debug("[%s] close failed", self._name, exc_info=True)

    def _forget_consumer(self, client: Any) -> None:
        """Remove an auto-named consumer with nothing pending, so groups do not collect dead names."""
        try:
            for stream_name in self._streams:
                if client.xpending_range(stream_name, self._group, "-", "+", 1, self._consumer):
                    return
            for stream_name in self._streams:
                client.xgroup_delconsumer(stream_name, self._group, self._consumer)
        except (*self._conn_errors, self._response_error):
            logger.debug("[%s] could not remove consumer %s", self._name, self._consumer, exc_info=True)


def _seq_in(candidate: Candidate, fields: Any) -> int:
    """The producer sequence of an entry if it belongs to ``candidate``'s epoch, else 0."""
    stamp = sequence_of(fields)
    return stamp[1] if stamp is not None and stamp[0] == candidate.epoch else 0


def _raw_reply(response: Any, **_options: Any) -> Any:
    """Response callback keeping ``XREADGROUP`` replies as sent (redis-py's per-entry dicts cost ~40%)."""
    return response


def _stream_items(reply: Any) -> list[tuple[Any, Any]]:
    """``[(stream, entries), ...]`` of an ``XREADGROUP`` reply (RESP2 list or RESP3 map)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return list(reply.items())
    return [(item[0], item[1]) for item in reply]
