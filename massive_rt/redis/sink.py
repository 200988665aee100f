"""RedisStreamSink: publishes every event of an adapter to Redis Streams, from its own thread.

The entry format is :mod:`massive_rt.redis._wire`'s; delivery semantics (at most once, never
silently lossy, idempotent retries) are described in :mod:`massive_rt.redis`. Every entry carries
the sink's producer epoch and a per-stream sequence, so consumers detect entries Redis lost; at
start the sink reads Redis's persistence settings and warns once when a restart could lose data.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import attrs

from .._util import RateLimitedLog
from .._validate import require_int, require_name, require_number
from ..config import ReconnectPolicy
from ..enums import Market, Overflow
from ..errors import ClientClosedError, ConfigurationError
from ..models import Event, StatusMessage
from ._client import DEFAULT_URL, new_connection, reconnect_policy, redis_errors, require_url, safe_url
from ._wire import (
    DEFAULT_STREAM,
    ZERO_ID,
    Entry,
    EntryEncoder,
    StreamId,
    id_bulk,
    int_bulk,
    new_epoch,
    pack,
    parse_id,
    sequence_of,
    template_fields,
)

if TYPE_CHECKING:
    from ..adapter import RealTimeDataAdapter

__all__ = ["DEFAULT_STATUSES", "RedisSinkStats", "RedisStreamSink", "persistence_of"]

logger = logging.getLogger(__name__)

#: Status codes the sink forwards by default (to the ``{ev}="status"`` stream of the market).
DEFAULT_STATUSES: Final = frozenset({"disconnected", "gap", "dropped", "failed"})

_TOO_SMALL: Final = "equal or smaller than the target stream top item"
_NEGATIVE_TTL: Final = 1.0  # seconds an unresolvable connection name stays cached as such
_LOSSY: Final = {
    "none": "a restart loses every entry not read yet",
    "rdb": "a restart loses the entries written since the last snapshot",
}


@attrs.frozen(kw_only=True)
class RedisSinkStats:
    """Counters of a :class:`RedisStreamSink`.

    ``received == published + dropped + skipped + buffered`` whenever the sink is quiescent.

    Attributes:
        name: the sink name.
        running: its writer thread is alive.
        connected: the last Redis round trip succeeded.
        received: events the adapter handed to the sink (market events and forwarded statuses).
        published: entries written and acknowledged by Redis.
        dropped: events that will never be written (buffer overflow, refused by Redis, market not
            resolvable, stop timeout); each one is also logged (rate-limited).
        buffered: events waiting in the buffer or being written now.
        skipped: events that cannot be published (``RawFrame`` of raw connections).
        announced: ``dropped`` status entries the sink wrote itself so consumers see its gaps.
        errors: failed Redis round trips and refused entries.
        reconnects: recoveries after Redis was unreachable.
        streams: distinct streams written.
        high_water: largest buffer occupancy seen.
        last_error: text of the last error, if any.
        epoch: the producer epoch stamped on every entry (new at every sink start).
        persistence: what Redis keeps across a restart, read at start with ``CONFIG GET``:
            ``none``, ``rdb`` (snapshots only), ``aof-always``, ``aof-everysec``, ``aof-no`` (the
            AOF fsync policy), or ``unknown`` (not read yet, or ``CONFIG`` is not allowed).
    """

    name: str
    running: bool
    connected: bool
    received: int
    published: int
    dropped: int
    buffered: int
    skipped: int
    announced: int
    errors: int
    reconnects: int
    streams: int
    high_water: int
    last_error: str | None
    epoch: str
    persistence: str


class RedisStreamSink:
    """Publishes every event of an adapter to Redis Streams, from its own thread.

    The adapter's dispatcher only appends each event to a bounded local buffer (a deque under a
    condition): no serialization and no I/O happen on it, so a slow or unreachable Redis never
    delays your other handlers or the Massive connections. The writer thread
    (``massive-rt-redis-sink-<name>``) takes up to ``batch`` events at a time, serializes them and
    writes them with one pipelined round trip of ``XADD <stream> MAXLEN ~ <maxlen> <id> ...``.
    While Redis is unreachable it retries with backoff (:class:`~massive_rt.ReconnectPolicy`;
    ``max_attempts`` is ignored: the sink never gives up) and the buffer fills; once full, events
    are dropped (``overflow``), counted in ``stats().dropped`` and logged (rate-limited). After
    the recovery, it writes a ``dropped`` status entry per upstream connection (when ``"dropped"``
    is forwarded) so consumers see the gap.

    Each entry carries the sink's producer ``epoch`` (new at every start) and ``seq`` (1, 2, 3 …
    per stream), so a :class:`RedisStreamSource` reports entries that vanished inside Redis (a
    restart without persistence, ``MAXLEN`` trimming past a lagging group) as ``gap`` statuses.
    When the writer first reaches Redis it reads ``appendonly``, ``appendfsync`` and ``save``
    (``stats().persistence``) and logs one WARNING when a Redis restart could lose entries; a
    server that refuses ``CONFIG`` is noted at INFO and changes nothing else.

    Market of an event: ``market=`` if given, else ``resolver(event)`` if given, else the market
    of the adapter source's connection named ``event.connection`` (clients, pools and the
    synthetic source expose it), else the source's own ``market``. An event whose market cannot
    be resolved is dropped (counted and logged): pass ``market=`` or ``resolver=`` for sources
    that do not expose one (e.g. a :class:`RedisStreamSource` being re-published).

    Handlers are registered by :meth:`start` (events before it are not captured) and removed by
    :meth:`stop`; start the sink before the adapter (``with sink, adapter:``).

    Args:
        adapter: the adapter whose events to publish.
        url: Redis URL (``redis://[:password@]host:port/db``, ``rediss://`` for TLS, ``unix://``).
        stream: stream name template with ``{market}`` and/or ``{ev}``.
        maxlen: approximate cap per stream (``XADD MAXLEN ~``); None keeps everything.
        batch: events per pipelined write.
        buffer: capacity of the local buffer, in events.
        market: the market of every event (skips resolution).
        resolver: ``resolver(event) -> Market | str``, called on the sink thread.
        statuses: status codes to forward (``"*"`` for all, None or ``()`` for none).
        overflow: ``drop_oldest`` (default: keep the freshest) or ``drop_newest``.
        reconnect: backoff between attempts while Redis is unreachable.
        socket_timeout: seconds before a Redis call is considered failed.
        name: sink name (thread name, logs, Redis client name).
    """

    def __init__(
        self,
        adapter: RealTimeDataAdapter,
        url: str = DEFAULT_URL,
        *,
        stream: str = DEFAULT_STREAM,
        maxlen: int | None = 1_000_000,
        batch: int = 500,
        buffer: int = 100_000,
        market: Market | str | None = None,
        resolver: Callable[[Event], Market | str] | None = None,
        statuses: Iterable[str] | str | None = DEFAULT_STATUSES,
        overflow: Overflow | str = Overflow.DROP_OLDEST,
        reconnect: ReconnectPolicy | None = None,
        socket_timeout: float = 5.0,
        name: str = "redis-sink",
    ) -> None:
        if not callable(getattr(adapter, "on", None)) or not callable(getattr(adapter, "off", None)):
            raise ConfigurationError(f"adapter={adapter!r} is not a RealTimeDataAdapter", field="adapter")
        require_url(url)
        template_fields(stream)
        if maxlen is not None:
            require_int("maxlen", maxlen)
        require_int("batch", batch)
        require_int("buffer", buffer)
        if resolver is not None and not callable(resolver):
            raise ConfigurationError(f"resolver={resolver!r} is not callable", field="resolver")
        policy = Overflow.coerce(overflow, "overflow")
        if policy is Overflow.BLOCK:
            raise ConfigurationError("overflow='block' would block the dispatcher; use drop_oldest or drop_newest",
                                     field="overflow")  # fmt: skip
        backoff = reconnect_policy(reconnect)
        require_number("socket_timeout", socket_timeout, strict=True)
        require_name("name", name)
        if statuses is None:
            forwarded: frozenset[str] | None = frozenset()
        elif statuses == "*":
            forwarded = None
        elif isinstance(statuses, str):
            forwarded = frozenset({statuses})
        else:
            forwarded = frozenset(statuses)
        self._conn_errors, self._response_error = redis_errors()
        self._adapter = adapter
        self._url = url
        self._template = stream
        self._epoch = new_epoch()
        self._encoder = EntryEncoder(stream, maxlen, self._epoch)
        self._seqs: dict[str, int] = {}  # writer thread: last producer sequence per stream
        self._persistence = "unknown"
        self._probed = False
        self._batch = batch
        self._capacity = buffer
        self._fixed_market = None if market is None else Market.coerce(market, "market")
        self._resolver = resolver
        self._statuses = forwarded
        self._drop_oldest = policy is Overflow.DROP_OLDEST
        self._policy = backoff
        self._socket_timeout = float(socket_timeout)
        self._name = name

        self._cond = threading.Condition(threading.Lock())
        self._buffer: collections.deque[Event] = collections.deque()
        self._idle = False
        self._closed = False  # handlers removed: late events are counted as dropped
        self._stopping = False
        self._deadline = float("inf")
        self._interrupt = threading.Event()
        self._pause = threading.Event()  # never set: a plain bounded wait
        self._thread: threading.Thread | None = None
        self._life_lock = threading.Lock()
        # One redis-py Connection (it connects on first use), used by the writer thread only.
        self._conn: Any = new_connection(url, self._socket_timeout, f"massive-rt-{name}")

        self._received = 0
        self._published = 0
        self._dropped = 0
        self._skipped = 0
        self._announced = 0
        self._inflight = 0
        self._errors = 0
        self._reconnects = 0
        self._high_water = 0
        self._last_error: str | None = None
        self._unannounced: collections.Counter[str] = collections.Counter()

        self._connected = False
        self._down_since: float | None = None
        self._up_since: float | None = None
        self._attempt = 0
        self._last_ids: dict[str, StreamId] = {}
        self._markets: dict[str, Market] = {}
        self._unresolved: dict[str, float] = {}
        self._drop_log = RateLimitedLog(logger, logging.WARNING)
        self._error_log = RateLimitedLog(logger, logging.ERROR)

    # ------------------------------------------------------------------ public API

    @property
    def name(self) -> str:
        """The sink name."""
        return self._name

    @property
    def running(self) -> bool:
        """True while the writer thread is alive."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    @property
    def epoch(self) -> str:
        """The producer epoch stamped on every entry of this sink (``epoch`` field)."""
        return self._epoch.decode()

    @property
    def persistence(self) -> str:
        """What Redis keeps across a restart, as read at start (see :class:`RedisSinkStats`)."""
        return self._persistence

    def stream_name(self, market: Market | str, ev: str) -> str:
        """The stream an event of ``market`` with code ``ev`` goes to."""
        return self._encoder.stream_name(Market.coerce(market, "market"), ev)

    def start(self) -> RedisStreamSink:
        """Register on the adapter and start the writer thread. Idempotent.

        Raises:
            ClientClosedError: the sink was stopped (sinks are not restartable).
        """
        with self._life_lock:
            if self._stopping:
                raise ClientClosedError(f"sink {self._name} was stopped; create a new one")
            if self._thread is not None:
                return self
            self._thread = threading.Thread(target=self._run, name=f"massive-rt-redis-sink-{self._name}", daemon=True)
            self._thread.start()
            self._adapter.on("*", self._on_event)
            if self._statuses is None or self._statuses:
                self._adapter.on(StatusMessage, self._on_status)
        logger.info("redis sink %s publishing to %s (streams %s)", self._name, safe_url(self._url), self._template)
        return self

    def stop(self, timeout: float = 5.0) -> bool:
        """Unregister, write what is buffered within ``timeout`` seconds, and stop. Idempotent.

        Events still buffered when the time is up are counted in ``dropped`` (and logged).
        Safe from any thread, including a handler.

        Returns:
            True if the writer thread ended within ``timeout``.
        """
        require_number("timeout", timeout)
        with self._life_lock:
            thread = self._thread
            first = not self._stopping
            if first:
                self._adapter.off("*", self._on_event)
                self._adapter.off(StatusMessage, self._on_status)
        with self._cond:
            if first:  # leave the thread a margin to finish before join() gives up
                self._deadline = time.monotonic() + timeout * 0.8
            self._stopping = True
            self._closed = True
            self._cond.notify_all()
        self._interrupt.set()
        if thread is None:
            return True
        if thread is not threading.current_thread():
            thread.join(timeout)
        alive = thread.is_alive()
        if alive:
            logger.warning("redis sink %s: writer still busy after %.1fs; it ends at its next check",
                           self._name, timeout)  # fmt: skip
        return not alive

    def stats(self) -> RedisSinkStats:
        """Counters (cheap; any thread)."""
        with self._cond:
            return RedisSinkStats(
                name=self._name, running=self.running, connected=self._connected, received=self._received,
                published=self._published, dropped=self._dropped, buffered=len(self._buffer) + self._inflight,
                skipped=self._skipped, announced=self._announced, errors=self._errors,
                reconnects=self._reconnects, streams=len(self._last_ids), high_water=self._high_water,
                last_error=self._last_error, epoch=self._epoch.decode(), persistence=self._persistence,
            )  # fmt: skip

    def __enter__(self) -> RedisStreamSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"RedisStreamSink(name={self._name!r}, url={safe_url(self._url)!r}, stream={self._template!r})"

    # ------------------------------------------------------------------ dispatcher side (keep tiny)

    def _on_event(self, event: Event) -> None:
        cond = self._cond
        with cond:
            self._received += 1
            buffer = self._buffer
            size = len(buffer)
            if size < self._capacity and not self._closed:
                buffer.append(event)
                if size >= self._high_water:
                    self._high_water = size + 1
                if self._idle:
                    cond.notify()
                return
            if self._closed:
                lost = event
            elif self._drop_oldest:
                lost = buffer.popleft()
                buffer.append(event)
            else:
                lost = event
            self._dropped += 1
            self._unannounced[lost.connection] += 1
            dropped = self._dropped
        self._drop_log(
            "redis sink %s: buffer full (%d events) or sink stopped; Redis unreachable or slow: %d dropped so far",
            self._name, self._capacity, dropped,
        )  # fmt: skip

    def _on_status(self, event: StatusMessage) -> None:
        if self._statuses is None or event.status in self._statuses:
            self._on_event(event)

    # ------------------------------------------------------------------ writer thread

    def _run(self) -> None:
        try:
            self._probe_persistence()
            while True:
                events = self._take()
                if events is None:
                    return
                if not self._probed:
                    self._probe_persistence()
                entries = self._encode(events)
                self._write(entries)
                with self._cond:
                    self._inflight = 0
                if self._unannounced and self._connected and not self._past_deadline():
                    self._announce_drops()
        except BaseException:
            logger.critical("redis sink %s: writer crashed", self._name, exc_info=True)
            raise
        finally:
            with self._cond:
                leftover = len(self._buffer) + self._inflight
                self._buffer.clear()
                self._inflight = 0
                self._dropped += leftover
                self._closed = True
            if leftover:
                logger.warning("redis sink %s: %d buffered events not published before the stop timeout (dropped)",
                               self._name, leftover)  # fmt: skip
            conn, self._conn = self._conn, None
            if conn is not None:
                try:
                    conn.disconnect()
                except Exception:  # pragma: no cover - closing a broken connection
                    logger.debug("redis sink %s: close failed", self._name, exc_info=True)

    def _probe_persistence(self) -> None:
        """Read what Redis keeps across a restart; warn once if a restart could lose entries."""
        try:
            replies = self._roundtrip([pack(b"CONFIG", b"GET", name) for name in (b"appendonly", b"appendfsync",
                                                                                  b"save")])  # fmt: skip
        except self._conn_errors:
            return  # unreachable: the write path reports it; read again before the next write
        self._probed = True
        refused = next((reply for reply in replies if isinstance(reply, Exception)), None)
        if refused is not None:
            logger.info("redis sink %s: cannot read Redis's persistence settings (%s); consumers still detect "
                        "entries lost in a restart", self._name, refused)  # fmt: skip
            return
        self._persistence = persistence_of(*(_config_value(reply) for reply in replies))
        risk = _LOSSY.get(self._persistence)
        if risk is not None:
            logger.warning("redis sink %s: Redis at %s has persistence %r: %s (consumers report it as gap and "
                           "stream_reset statuses); set appendonly yes to keep them", self._name,
                           safe_url(self._url), self._persistence, risk)  # fmt: skip
        else:
            logger.info("redis sink %s: Redis persistence %s", self._name, self._persistence)

    def _take(self) -> list[Event] | None:
        with self._cond:
            buffer = self._buffer
            while not buffer:
                if self._stopping:
                    return None
                self._idle = True
                self._cond.wait()
                self._idle = False
            if self._stopping and time.monotonic() >= self._deadline:
                return None
            n = min(self._batch, len(buffer))
            popleft = buffer.popleft
            events = [popleft() for _ in range(n)]
            self._inflight = n
            return events

    def _past_deadline(self) -> bool:
        return self._stopping and time.monotonic() >= self._deadline

    def _encode(self, events: list[Event], announce: bool = False) -> list[Entry]:
        out, skipped, dropped = self._encoder.encode(events, self._market_of, self._not_encoded)
        if (skipped or dropped) and not announce:
            with self._cond:
                self._skipped += skipped
                self._dropped += dropped
                self._inflight -= skipped + dropped
                if dropped:
                    self._errors += dropped
        return out

    def _not_encoded(self, event: Event, error: Exception | None) -> None:
        if error is None:
            self._error_log(
                "redis sink %s: cannot tell the market of connection %r (pass market= or resolver=); "
                "event dropped", self._name, event.connection,
            )  # fmt: skip
        else:
            self._error_log("redis sink %s: cannot serialize %s (%s); event dropped", self._name,
                            type(event).__name__, error)  # fmt: skip

    def _roundtrip(self, commands: list[bytes]) -> list[Any]:
        """Send packed commands in one write; return one reply (or ResponseError) per command."""
        conn = self._conn
        try:
            conn.send_packed_command([b"".join(commands)])
            read = conn.read_response
            error = self._response_error
            results: list[Any] = []
            for _ in range(len(commands)):
                try:
                    results.append(read())
                except error as exc:
                    results.append(exc)
            return results
        except BaseException:
            conn.disconnect()
            raise

    def _market_of(self, event: Event) -> Market | None:
        if self._fixed_market is not None:
            return self._fixed_market
        if self._resolver is not None:
            try:
                return Market.coerce(self._resolver(event), "market")
            except Exception as exc:
                self._error_log("redis sink %s: resolver raised %s for %r", self._name, type(exc).__name__,
                                event.connection, exc_info=exc)  # fmt: skip
                return None
        name = event.connection
        market = self._markets.get(name)
        if market is not None:
            return market
        now = time.monotonic()
        if self._unresolved.get(name, 0.0) > now:
            return None
        source = self._adapter.source
        try:
            clients: Sequence[Any] = source.clients()
        except Exception:
            clients = ()
        for client in (*clients, source):
            client_name, client_market = getattr(client, "name", None), getattr(client, "market", None)
            if isinstance(client_name, str) and client_market is not None:
                try:
                    self._markets[client_name] = Market.coerce(client_market, "market")
                except ConfigurationError:
                    continue
        market = self._markets.get(name)
        if market is None and getattr(source, "market", None) is not None:
            try:
                market = self._markets[name] = Market.coerce(source.market, "market")  # type: ignore[attr-defined]
            except ConfigurationError:
                market = None
        if market is None:
            self._unresolved[name] = now + _NEGATIVE_TTL
        return market

    def _write(self, entries: list[Entry], announce: bool = False) -> list[Entry]:
        """Write ``entries`` (retrying through outages) until written, refused, or the stop deadline;
        returns those not written (refused, or left at the deadline)."""
        pending = entries
        lost: list[Entry] = []
        verify = False  # after a failed round trip: find out what the server applied before re-sending
        id_retries = 0
        last_ids = self._last_ids
        while pending:
            if self._past_deadline():
                self._settle(0, len(pending), announce)
                return lost + pending
            try:
                unknown = {e.stream for e in pending if e.stream not in last_ids}
                check = {e.stream for e in pending if e.id is not None} if verify else set()
                if unknown or check:
                    tops = self._tops(unknown | check)
                    self._succeeded()
                    for name, top in tops.items():
                        last_ids[name] = max(last_ids.get(name, ZERO_ID), top)
                    if check:
                        pending = self._unwritten(pending, tops, announce)
                    verify = False
                    if not pending:
                        break
                self._assign(pending)
                results = self._roundtrip([b"".join((e.head, id_bulk(e.id), e.tail, int_bulk(e.seq))) for e in pending])
                too_small = [e for e, result in zip(pending, results, strict=True)
                             if isinstance(result, Exception) and _TOO_SMALL in str(result)]  # fmt: skip
                landed = self._already_written(too_small) if too_small else set()
            except self._conn_errors as exc:
                self._failed(exc)
                verify = True
                self._backoff()
                continue
            self._succeeded()
            retry: list[Entry] = []
            written_count = refused = 0
            for entry, result in zip(pending, results, strict=True):
                if not isinstance(result, Exception) or id(entry) in landed:
                    written_count += 1
                elif _TOO_SMALL in str(result) and id_retries < 3:
                    # Another writer (or a stream recreated behind our back) moved the top: re-sync, re-send.
                    last_ids.pop(entry.stream, None)
                    entry.id = None
                    retry.append(entry)
                else:
                    refused += 1
                    lost.append(entry)
                    self._error_log("redis sink %s: Redis refused an entry of %s: %s (dropped)", self._name,
                                    entry.stream, result)  # fmt: skip
            if refused:
                with self._cond:
                    self._errors += refused
                    self._last_error = "entry refused by Redis"
            self._settle(written_count, refused, announce)
            pending = retry
            id_retries += 1
        return lost

    def _unwritten(self, pending: list[Entry], tops: dict[str, StreamId], announce: bool) -> list[Entry]:
        """After a failed round trip: settle the entries the stream holds as ours; the rest, to send.

        An id at or below the stream's top was either written by our attempt (its reply lost) or
        taken by another writer: the stream's entry at that id tells (our epoch and sequence). Ours
        are written; the others get a new id above the top (same sequence: not a gap).
        """
        doubtful = [e for e in pending if e.id is not None and e.id <= tops[e.stream]]
        if not doubtful:
            return pending
        landed = self._already_written(doubtful)
        self._settle(len(landed), 0, announce)
        for entry in doubtful:
            if id(entry) not in landed:
                entry.id = None  # taken by another writer: re-assigned above the top
        return [e for e in pending if id(e) not in landed]

    def _already_written(self, entries: list[Entry]) -> set[int]:
        """``id()`` of the ``entries`` the stream holds at their ids with this sink's epoch and
        sequence: an attempt of ours that Redis ran though we never had its reply (cut, or landed
        after we gave up on it). Those are written and must not be written again."""
        by_stream: dict[str, list[Entry]] = {}
        for entry in entries:
            by_stream.setdefault(entry.stream, []).append(entry)
        names = list(by_stream)
        replies = self._roundtrip([
            pack(b"XRANGE", name.encode(), b"%d-%d" % min(e.id for e in by_stream[name] if e.id is not None),
                 b"%d-%d" % max(e.id for e in by_stream[name] if e.id is not None))
            for name in names
        ])  # fmt: skip
        landed: set[int] = set()
        for name, reply in zip(names, replies, strict=True):
            if isinstance(reply, Exception):
                continue
            stored = {parse_id(entry_id): sequence_of(fields) for entry_id, fields in reply}
            for entry in by_stream[name]:
                stamp = stored.get(entry.id) if entry.id is not None else None
                if stamp is not None and stamp[0] == self._epoch and stamp[1] == entry.seq:
                    landed.add(id(entry))
        return landed

    def _tops(self, streams: set[str]) -> dict[str, StreamId]:
        """Each stream's last generated id (0-0 when it does not exist)."""
        ordered = sorted(streams)
        results = self._roundtrip([pack(b"XINFO", b"STREAM", name.encode()) for name in ordered])
        return {
            name: ZERO_ID if isinstance(result, Exception) else _last_generated_id(result)
            for name, result in zip(ordered, results, strict=True)
        }

    def _assign(self, entries: list[Entry]) -> None:
        last_ids = self._last_ids
        seqs = self._seqs
        for entry in entries:
            if entry.id is not None:
                continue
            last_ms, last_seq = last_ids[entry.stream]
            entry.id = (entry.ms, 0) if entry.ms > last_ms else (last_ms, last_seq + 1)
            last_ids[entry.stream] = entry.id
            if not entry.seq:  # kept when only the id is re-assigned, so a retry is not a gap
                entry.seq = seqs[entry.stream] = seqs.get(entry.stream, 0) + 1

    def _settle(self, written: int, lost: int, announce: bool) -> None:
        with self._cond:
            if announce:
                self._announced += written
                return
            self._inflight -= written + lost
            self._published += written
            self._dropped += lost
        if lost and self._past_deadline():
            logger.warning("redis sink %s: %d events not published before the stop timeout (dropped)",
                           self._name, lost)  # fmt: skip

    def _failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        with self._cond:
            self._errors += 1
            self._last_error = f"{type(exc).__name__}: {exc}"
            was_connected, self._connected = self._connected, False
            buffered = len(self._buffer) + self._inflight
        if self._up_since is not None and now - self._up_since >= self._policy.reset_after:
            self._attempt = 0
        self._up_since = None
        if self._down_since is None:
            self._down_since = now
            if was_connected or self._reconnects == 0:
                logger.warning("redis sink %s: Redis unreachable (%s); buffering (%d/%d) and retrying",
                               self._name, exc, buffered, self._capacity)  # fmt: skip

    def _succeeded(self) -> None:
        if self._connected:
            return
        now = time.monotonic()
        down_since, self._down_since = self._down_since, None
        self._up_since = now
        with self._cond:
            self._connected = True
            if down_since is not None:
                self._reconnects += 1
            dropped = self._dropped
        if down_since is not None:
            logger.info("redis sink %s: Redis reachable again after %.1fs (%d events dropped in total)",
                        self._name, now - down_since, dropped)  # fmt: skip

    def _backoff(self) -> None:
        delay = self._policy.delay(self._attempt)
        self._attempt += 1
        if self._stopping:
            self._pause.wait(max(0.0, min(delay, self._deadline - time.monotonic())))
        else:
            self._interrupt.wait(delay)

    def _announce_drops(self) -> None:
        """Write one ``dropped`` status per upstream connection that lost events in the sink."""
        if self._statuses is not None and "dropped" not in self._statuses:
            with self._cond:
                self._unannounced.clear()
            return
        with self._cond:
            counts, self._unannounced = self._unannounced, collections.Counter()
        now = time.time_ns()
        entries: list[Entry] = []
        owners: dict[int, tuple[str, int]] = {}
        for connection, count in counts.items():
            status = StatusMessage(
                status="dropped", dropped=count, connection=connection, received_at_ns=now,
                message=f"{count} events dropped by redis sink {self._name} (buffer full while Redis was "
                "unreachable or slow)",
            )  # fmt: skip
            for entry in self._encode([status], announce=True):
                entries.append(entry)
                owners[id(entry)] = (connection, count)
        not_written = self._write(entries, announce=True)
        if not_written:  # refused (or cut by stop): announced again after a later batch, never lost
            with self._cond:
                for entry in not_written:
                    connection, count = owners[id(entry)]
                    self._unannounced[connection] += count


def _last_generated_id(info: Any) -> StreamId:
    """``last-generated-id`` out of an ``XINFO STREAM`` reply (parsed dict or flat list)."""
    if isinstance(info, Mapping):
        raw = info.get(b"last-generated-id", info.get("last-generated-id"))
    elif isinstance(info, (list, tuple)):
        pairs = dict(zip(info[::2], info[1::2], strict=False))
        raw = pairs.get(b"last-generated-id", pairs.get("last-generated-id"))
    else:
        raw = None
    return parse_id(raw) if isinstance(raw, (bytes, str)) else ZERO_ID


def persistence_of(appendonly: str, appendfsync: str, save: str) -> str:
    """``none``, ``rdb``, ``aof-always``, ``aof-everysec`` or ``aof-no`` from three ``CONFIG GET`` values."""
    if appendonly == "yes":
        return f"aof-{appendfsync or 'everysec'}"
    return "rdb" if save.strip() else "none"


def _config_value(reply: Any) -> str:
    """The value of a one-parameter ``CONFIG GET`` reply (flat list or map)."""
    if isinstance(reply, Mapping):
        values = list(reply.values())
    elif isinstance(reply, (list, tuple)):
        values = list(reply[1::2])
    else:
        values = []
    value = values[0] if values else b""
    return value.decode() if isinstance(value, bytes) else str(value)
