"""Redis Streams fan-out: publish an adapter's events, and consume them elsewhere as an event source.

One process holds the Massive connections and publishes; any number of services, on any
machine, consume the same typed events through the same :class:`~massive_rt.RealTimeDataAdapter`
API::

    # publisher
    adapter = RealTimeDataAdapter(pool)
    with RedisStreamSink(adapter, "redis://cache:6379/0"), adapter:
        adapter.subscribe("T.*", "Q.*", market="stocks")
        ...

    # consumer, anywhere
    source = RedisStreamSource("redis://cache:6379/0", ["massive:stocks:T", "massive:stocks:Q"])
    with RealTimeDataAdapter(source) as adapter:
        adapter.on(EquityTrade, handle_trade)

Streams and entries
    One stream per ``(market, ev)``, named by a template (default ``massive:{market}:{ev}``, e.g.
    ``massive:stocks:T``, ``massive:futures/cme:A``; forwarded statuses go to ``ev="status"``).
    One entry per event, with the fields ``d`` (the event's wire dict as compact JSON, with the
    official keys, see :func:`massive_rt.models.to_wire`), ``ev``, ``market``, ``connection``
    (the upstream connection) and ``received_at_ns`` (when the upstream connection read it). Entry
    ids are ``<receive time in ms>-<n>`` (kept increasing per stream), so ``XRANGE`` by time works,
    and they make the sink's retries idempotent (below).

Delivery semantics
    *Sink* — at most once per event, and never silently lossy: every event handed to the sink is
    eventually ``published`` (written and acknowledged by Redis), or counted in ``dropped`` (the
    bounded buffer overflowed while Redis was unreachable or slow, Redis refused the entry, its
    market could not be resolved, or ``stop()`` ran out of time), or ``skipped`` (``RawFrame``).
    ``received == published + dropped + skipped + buffered`` at every quiescent moment. Writes that
    failed mid-pipeline are retried after a reconnect without duplicates: the sink compares the
    ids it assigned with the stream's last id and re-sends only what is missing (this assumes the
    sink is the only writer of its streams — use one sink per stream set).

    *Source* — at least once per consumer group. An entry is acknowledged (``XACK``) only after
    the events decoded from it were handed out by :meth:`RedisStreamSource.drain` (or
    :meth:`~RedisStreamSource.get`) **and** the consumer came back for more: the adapter's
    dispatcher calls ``drain()`` again only after every handler returned for the previous batch,
    so "the next ``drain()``/``get()`` call" (or :meth:`~RedisStreamSource.commit`) is the
    completion signal. Acknowledgements are sent by the source's own thread (never on the
    dispatcher), at the latest ``block_ms`` after completion. Entries that were read but not
    completed when the process dies stay pending in the group: a consumer with the same name
    re-reads them on start, and any consumer of the group claims them with ``XAUTOCLAIM`` once
    they have been idle for ``claim_min_idle_ms`` (checked on start and every ``claim_interval``
    seconds). So a handler may see an event again after a crash (or when ``stop()`` timed out
    before its acknowledgement was sent), never zero times while the entry still exists. Within
    one consumer, entries of a stream are delivered in stream order; claimed entries of another
    consumer arrive when claimed. Several consumers of one group share the work (each entry goes
    to one of them); distinct groups each receive everything.

Threads: the sink writes on ``massive-rt-redis-sink-<name>``, the source reads and acknowledges on
``massive-rt-redis-source-<name>``; both are daemons joined by ``stop()``. The ``redis`` package is
imported when a sink or source is constructed, never at ``import massive_rt``.
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import os
import re
import socket
import string
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import attrs

from .._util import RateLimitedLog
from .._validate import require_int, require_name, require_number
from ..config import ReconnectPolicy
from ..consumer import InlineGate, QueueConsumer, fast_loads
from ..enums import ConnectionState, Market, Overflow
from ..errors import ClientClosedError, ConfigurationError, MassiveRTError, WaitTimeoutError
from ..eventqueue import KIND_EVENT, KIND_OBJECTS, Item
from ..models import Event, MarketEvent, StatusMessage, UnknownEvent, to_wire
from ..protocol import Decoder

if TYPE_CHECKING:
    from ..adapter import RealTimeDataAdapter

__all__ = [
    "DEFAULT_STATUSES",
    "DEFAULT_STREAM",
    "DEFAULT_URL",
    "RedisSinkStats",
    "RedisSourceStats",
    "RedisStreamSink",
    "RedisStreamSource",
]

logger = logging.getLogger(__name__)

#: Where both ends connect by default.
DEFAULT_URL: Final = "redis://127.0.0.1:6379/0"
#: Stream name template; ``{market}`` is the market value (``stocks``, ``futures/cme``), ``{ev}`` the ev code.
DEFAULT_STREAM: Final = "massive:{market}:{ev}"
#: Status codes the sink forwards by default (to the ``{ev}="status"`` stream of the market).
DEFAULT_STATUSES: Final = frozenset({"disconnected", "gap", "dropped", "failed"})

_STATUS_EV: Final = "status"
_STATUS_EV_BYTES: Final = b"status"
_UNKNOWN_EV: Final = "unknown"
_TOO_SMALL: Final = "equal or smaller than the target stream top item"
_ZERO_ID: Final = (0, 0)
_NEGATIVE_TTL: Final = 1.0  # seconds an unresolvable connection name stays cached as such

StreamId = tuple[int, int]


# ---------------------------------------------------------------------------------------------- helpers


def _import_redis() -> Any:
    """The ``redis`` module, imported on first use (``pip install 'massive-rt[redis]'``)."""
    try:
        import redis
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("massive_rt.sinks.redis needs the 'redis' package: pip install 'massive-rt[redis]'") from exc
    return redis


def _new_client(url: str, socket_timeout: float, client_name: str) -> Any:
    """A ``redis.Redis`` with redis-py's own retries disabled: we reconnect with our policy."""
    redis = _import_redis()
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    try:
        return redis.Redis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 0),
            client_name=client_name,
        )
    except ValueError as exc:  # redis-py's own URL validation
        raise ConfigurationError(f"url: {exc}", field="url") from None


def _new_connection(url: str, socket_timeout: float, client_name: str) -> Any:
    """One redis-py ``Connection`` (not connected yet) for hand-packed pipelines; no redis-py retries."""
    redis = _import_redis()
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    try:
        pool = redis.ConnectionPool.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 0),
            client_name=client_name,
        )
    except ValueError as exc:  # redis-py's own URL validation
        raise ConfigurationError(f"url: {exc}", field="url") from None
    return pool.make_connection()


def _bulk(value: bytes) -> bytes:
    """One RESP bulk string."""
    return b"$%d\r\n%s\r\n" % (len(value), value)


def _pack(*args: bytes) -> bytes:
    """One RESP command."""
    return b"*%d\r\n" % len(args) + b"".join(_bulk(a) for a in args)


def _errors() -> tuple[tuple[type[BaseException], ...], type[BaseException]]:
    """(connection-level errors, ``ResponseError``) of redis-py."""
    exceptions = _import_redis().exceptions
    return (exceptions.ConnectionError, exceptions.TimeoutError, OSError), exceptions.ResponseError


try:  # optional, measured faster (the "fast" extra); falls back per call on what orjson refuses
    import orjson

    def _dumps(obj: Any) -> bytes:
        try:
            return orjson.dumps(obj)
        except TypeError:  # e.g. an int beyond 64 bits in an UnknownEvent's data
            return _json_dumps(obj)

except ImportError:  # pragma: no cover - depends on the environment

    def _dumps(obj: Any) -> bytes:
        return _json_dumps(obj)


_json_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _json_dumps(obj: Any) -> bytes:
    return _json_encode(obj).encode()


def _template_fields(template: object, field: str = "stream") -> tuple[str, ...]:
    """Validate a stream name template; return its placeholders (a subset of market, ev)."""
    if not isinstance(template, str) or not template:
        raise ConfigurationError(f"{field}={template!r} must be a non-empty string", field=field)
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigurationError(f"{field}={template!r} is not a valid template: {exc}", field=field) from None
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in ("market", "ev") or spec or conversion:
            raise ConfigurationError(
                f"{field}={template!r}: only the placeholders {{market}} and {{ev}} are allowed", field=field
            )
        if name in names:
            raise ConfigurationError(f"{field}={template!r} uses {{{name}}} twice", field=field)
        names.append(name)
    return tuple(names)


def _template_regex(template: str) -> re.Pattern[str]:
    parts: list[str] = []
    for literal, name, _spec, _conversion in string.Formatter().parse(template):
        parts.append(re.escape(literal))
        if name is not None:
            parts.append(f"(?P<{name}>.+?)")
    return re.compile("".join(parts) + r"\Z")


def _coerce_market(value: object, field: str = "market") -> Market:
    return Market.coerce(value, field)  # type: ignore[return-value]


def _parse_id(raw: bytes | str) -> StreamId:
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _id_bulk(stream_id: StreamId | None) -> bytes:
    """A stream id as a RESP bulk string (ids are assigned before packing)."""
    ms, seq = stream_id or _ZERO_ID
    text = b"%d-%d" % (ms, seq)
    return b"$%d\r\n%s\r\n" % (len(text), text)


def _last_generated_id(info: Any) -> StreamId:
    """``last-generated-id`` out of an ``XINFO STREAM`` reply (parsed dict or flat list)."""
    if isinstance(info, Mapping):
        raw = info.get(b"last-generated-id", info.get("last-generated-id"))
    elif isinstance(info, (list, tuple)):
        pairs = dict(zip(info[::2], info[1::2], strict=False))
        raw = pairs.get(b"last-generated-id", pairs.get("last-generated-id"))
    else:
        raw = None
    return _parse_id(raw) if isinstance(raw, (bytes, str)) else _ZERO_ID


def _field_map(fields: Any) -> dict[bytes, Any]:
    """An entry's fields by name, from a flat ``[k1, v1, k2, v2, ...]`` reply or a dict."""
    if isinstance(fields, dict):
        return fields
    return dict(zip(fields[::2], fields[1::2], strict=False))


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


def _status_wire(status: StatusMessage) -> dict[str, Any]:
    """A forwarded status as a JSON-able dict (``error`` becomes its text)."""
    out: dict[str, Any] = {"ev": _STATUS_EV, "status": status.status}
    if status.message:
        out["message"] = status.message
    if status.state is not None:
        out["state"] = str(getattr(status.state, "value", status.state))
    if status.error is not None:
        out["error"] = f"{type(status.error).__name__}: {status.error}"
    if status.channels:
        out["channels"] = list(status.channels)
    if status.dropped:
        out["dropped"] = status.dropped
    if status.gap_start_ns is not None:
        out["gap_start_ns"] = status.gap_start_ns
    if status.gap_end_ns is not None:
        out["gap_end_ns"] = status.gap_end_ns
    if status.from_server:
        out["from_server"] = True
    return out


def _status_from_wire(data: Mapping[str, Any], received_at_ns: int, connection: str) -> StatusMessage:
    """Rebuild a forwarded status (the inverse of :func:`_status_wire`)."""
    state: Any = data.get("state")
    if isinstance(state, str):
        try:
            state = ConnectionState(state)
        except ValueError:
            pass
    error = data.get("error")
    channels = data.get("channels")
    return StatusMessage(
        status=str(data.get("status", "")),
        message=str(data.get("message", "")),
        state=state,
        error=MassiveRTError(str(error), connection=connection) if error else None,
        channels=tuple(str(c) for c in channels) if isinstance(channels, list) else (),
        dropped=int(data.get("dropped", 0) or 0),
        gap_start_ns=data.get("gap_start_ns"),
        gap_end_ns=data.get("gap_end_ns"),
        from_server=bool(data.get("from_server", False)),
        received_at_ns=received_at_ns,
        connection=connection,
    )


def _default_policy() -> ReconnectPolicy:
    return ReconnectPolicy(initial_delay=0.05, max_delay=2.0, reset_after=5.0)


# ---------------------------------------------------------------------------------------------- sink


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


class _Entry:
    """One stream entry to write, as RESP around its id; ``id`` is assigned before its first write."""

    __slots__ = ("head", "id", "ms", "stream", "tail")

    def __init__(self, stream: str, ms: int, head: bytes, tail: bytes) -> None:
        self.stream = stream
        self.ms = ms
        self.head = head  # *<n> XADD <stream> [MAXLEN ~ <maxlen>]
        self.tail = tail  # d <json> ev <ev> market <market> connection <name> received_at_ns <ns>
        self.id: StreamId | None = None


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
        if not isinstance(url, str) or not url:
            raise ConfigurationError(f"url={url!r} must be a non-empty Redis URL", field="url")
        _template_fields(stream)
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
        if reconnect is not None and not isinstance(reconnect, ReconnectPolicy):
            raise ConfigurationError(f"reconnect={reconnect!r} must be a ReconnectPolicy", field="reconnect")
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
        self._redis = _import_redis()
        self._conn_errors, self._response_error = _errors()
        self._adapter = adapter
        self._url = url
        self._template = stream
        self._trim: tuple[bytes, ...] = () if maxlen is None else (b"MAXLEN", b"~", b"%d" % maxlen)
        self._batch = batch
        self._capacity = buffer
        self._fixed_market = None if market is None else _coerce_market(market)
        self._resolver = resolver
        self._statuses = forwarded
        self._drop_oldest = policy is Overflow.DROP_OLDEST
        self._policy = reconnect if reconnect is not None else _default_policy()
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
        self._conn: Any = _new_connection(url, self._socket_timeout, f"massive-rt-{name}")
        self._parts: dict[tuple[str, str], tuple[bytes, bytes]] = {}

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
        self._names: dict[tuple[Market, str], str] = {}
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

    def stream_name(self, market: Market | str, ev: str) -> str:
        """The stream an event of ``market`` with code ``ev`` goes to."""
        return self._template.format(market=_coerce_market(market).value, ev=ev)

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
        logger.info("redis sink %s publishing to %s (streams %s)", self._name, self._safe_url(), self._template)
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
                last_error=self._last_error,
            )  # fmt: skip

    def __enter__(self) -> RedisStreamSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"RedisStreamSink(name={self._name!r}, url={self._safe_url()!r}, stream={self._template!r})"

    def _safe_url(self) -> str:
        return re.sub(r"//[^@/]*@", "//***@", self._url)

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
            while True:
                events = self._take()
                if events is None:
                    return
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

    def _encode(self, events: list[Event], announce: bool = False) -> list[_Entry]:
        out: list[_Entry] = []
        names = self._names
        template = self._template
        skipped = dropped = 0
        for event in events:
            if isinstance(event, MarketEvent):
                wire: Any = to_wire(event)
                ev = event.event_type or _UNKNOWN_EV
            elif isinstance(event, UnknownEvent):
                wire = event.data
                ev = event.event_type or _UNKNOWN_EV
            elif isinstance(event, StatusMessage):
                wire = _status_wire(event)
                ev = _STATUS_EV
            else:  # RawFrame: a whole undecoded frame has no (market, ev) stream
                skipped += 1
                continue
            market = self._market_of(event)
            if market is None:
                dropped += 1
                self._error_log(
                    "redis sink %s: cannot tell the market of connection %r (pass market= or resolver=); "
                    "event dropped", self._name, event.connection,
                )  # fmt: skip
                continue
            try:
                payload = _dumps(wire)
            except (TypeError, ValueError) as exc:
                dropped += 1
                self._error_log("redis sink %s: cannot serialize %s (%s); event dropped", self._name,
                                type(event).__name__, exc)  # fmt: skip
                continue
            key = (market, ev)
            stream = names.get(key)
            if stream is None:
                stream = names[key] = template.format(market=market.value, ev=ev)
            parts = self._parts.get((stream, event.connection))
            if parts is None:
                parts = self._entry_parts(stream, ev, market, event.connection)
            received_at_ns = event.received_at_ns
            received = b"%d" % received_at_ns
            tail = b"".join((b"$1\r\nd\r\n$%d\r\n" % len(payload), payload, parts[1],
                             b"$%d\r\n%s\r\n" % (len(received), received)))  # fmt: skip
            out.append(_Entry(stream, received_at_ns // 1_000_000, parts[0], tail))
        if (skipped or dropped) and not announce:
            with self._cond:
                self._skipped += skipped
                self._dropped += dropped
                self._inflight -= skipped + dropped
                if dropped:
                    self._errors += dropped
        return out

    def _entry_parts(self, stream: str, ev: str, market: Market, connection: str) -> tuple[bytes, bytes]:
        """The constant RESP around an entry of ``stream`` from ``connection`` (cached)."""
        args = (b"XADD", stream.encode(), *self._trim)
        head = b"*%d\r\n" % (len(args) + 11) + b"".join(_bulk(a) for a in args)
        middle = b"\r\n" + b"".join(_bulk(a) for a in (
            b"ev", ev.encode(), b"market", market.value.encode(), b"connection", connection.encode(), b"received_at_ns",
        ))  # fmt: skip
        if len(self._parts) >= 10_000:
            self._parts.clear()
        parts = self._parts[(stream, connection)] = (head, middle)
        return parts

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
                return _coerce_market(self._resolver(event))
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
                    self._markets[client_name] = _coerce_market(client_market)
                except ConfigurationError:
                    continue
        market = self._markets.get(name)
        if market is None and getattr(source, "market", None) is not None:
            try:
                market = self._markets[name] = _coerce_market(source.market)  # type: ignore[attr-defined]
            except ConfigurationError:
                market = None
        if market is None:
            self._unresolved[name] = now + _NEGATIVE_TTL
        return market

    def _write(self, entries: list[_Entry], announce: bool = False) -> None:
        """Write ``entries`` (retrying through outages) until written, refused, or the stop deadline."""
        pending = entries
        verify = False  # after a failed round trip: find out what the server applied before re-sending
        id_retries = 0
        last_ids = self._last_ids
        while pending:
            if self._past_deadline():
                self._settle(0, len(pending), announce)
                return
            try:
                unknown = {e.stream for e in pending if e.stream not in last_ids}
                check = {e.stream for e in pending if e.id is not None} if verify else set()
                if unknown or check:
                    tops = self._tops(unknown | check)
                    if check:
                        written = [e for e in pending if e.id is not None and e.id <= tops[e.stream]]
                        if written:
                            pending = [e for e in pending if e.id is None or e.id > tops[e.stream]]
                            self._settle(len(written), 0, announce)
                    for name, top in tops.items():
                        last_ids[name] = max(last_ids.get(name, _ZERO_ID), top)
                    verify = False
                    if not pending:
                        break
                self._assign(pending)
                results = self._roundtrip([b"".join((e.head, _id_bulk(e.id), e.tail)) for e in pending])
            except self._conn_errors as exc:
                self._failed(exc)
                verify = True
                self._backoff()
                continue
            self._succeeded()
            retry: list[_Entry] = []
            written_count = refused = 0
            for entry, result in zip(pending, results, strict=True):
                if not isinstance(result, Exception):
                    written_count += 1
                elif _TOO_SMALL in str(result) and id_retries < 3:
                    # Another writer (or a stream recreated behind our back) moved the top: re-sync, re-send.
                    last_ids.pop(entry.stream, None)
                    entry.id = None
                    retry.append(entry)
                else:
                    refused += 1
                    self._error_log("redis sink %s: Redis refused an entry of %s: %s (dropped)", self._name,
                                    entry.stream, result)  # fmt: skip
            if refused:
                with self._cond:
                    self._errors += refused
                    self._last_error = "entry refused by Redis"
            self._settle(written_count, refused, announce)
            pending = retry
            id_retries += 1

    def _tops(self, streams: set[str]) -> dict[str, StreamId]:
        """Each stream's last generated id (0-0 when it does not exist)."""
        ordered = sorted(streams)
        results = self._roundtrip([_pack(b"XINFO", b"STREAM", name.encode()) for name in ordered])
        return {
            name: _ZERO_ID if isinstance(result, Exception) else _last_generated_id(result)
            for name, result in zip(ordered, results, strict=True)
        }

    def _assign(self, entries: list[_Entry]) -> None:
        last_ids = self._last_ids
        for entry in entries:
            if entry.id is not None:
                continue
            last_ms, last_seq = last_ids[entry.stream]
            entry.id = (entry.ms, 0) if entry.ms > last_ms else (last_ms, last_seq + 1)
            last_ids[entry.stream] = entry.id

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
        statuses: list[Event] = [
            StatusMessage(
                status="dropped", dropped=count, connection=connection, received_at_ns=now,
                message=f"{count} events dropped by redis sink {self._name} (buffer full while Redis was "
                "unreachable or slow)",
            )
            for connection, count in counts.items()
        ]  # fmt: skip
        self._write(self._encode(statuses, announce=True), announce=True)


# ---------------------------------------------------------------------------------------------- source


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


class RedisStreamSource(QueueConsumer):
    """An event source for :class:`~massive_rt.RealTimeDataAdapter` reading Redis Streams.

    Reads the streams a :class:`RedisStreamSink` writes, with a consumer group, on its own daemon
    thread (``massive-rt-redis-source-<name>``), and delivers the same typed events (decoded with
    :class:`massive_rt.protocol.Decoder` of the entry's market, on the consumer's thread). Events
    keep the upstream ``connection`` and ``received_at_ns``, so the adapter's latency is end to
    end. Forwarded statuses arrive as :class:`~massive_rt.StatusMessage` (their ``error``, if any,
    as a :class:`~massive_rt.MassiveRTError` with the original text); the source's own lifecycle
    (``state`` transitions, ``disconnected`` from Redis) arrives as statuses named after ``name``.
    See the module documentation for the exact at-least-once semantics.

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
            (Redis lost its data) is re-created from ``"0"`` so nothing that survived is skipped.
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
        if not isinstance(url, str) or not url:
            raise ConfigurationError(f"url={url!r} must be a non-empty Redis URL", field="url")
        if isinstance(streams, str):
            streams = (streams,)
        configured: dict[str, Market | None] = {}
        for stream_name in streams:
            if not isinstance(stream_name, str) or not stream_name:
                raise ConfigurationError(f"stream {stream_name!r} must be a non-empty string", field="streams")
            value = streams[stream_name] if isinstance(streams, Mapping) else None
            configured[stream_name] = None if value is None else _coerce_market(value, "streams")
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
        if reconnect is not None and not isinstance(reconnect, ReconnectPolicy):
            raise ConfigurationError(f"reconnect={reconnect!r} must be a ReconnectPolicy", field="reconnect")
        require_number("socket_timeout", socket_timeout, strict=True)
        if socket_timeout * 1000 <= block_ms:
            raise ConfigurationError(f"socket_timeout={socket_timeout!r} must exceed block_ms={block_ms} ms",
                                     field="socket_timeout")  # fmt: skip
        require_name("name", name)
        fallback = None if market is None else _coerce_market(market)
        _template_fields(template, "template")
        pattern = _template_regex(template)
        for stream_name, known in configured.items():
            if known is None:
                match = pattern.match(stream_name)
                if match is not None and "market" in match.groupdict():
                    try:
                        known = _coerce_market(match.group("market"))
                    except ConfigurationError:
                        known = None
                configured[stream_name] = known if known is not None else fallback

        self._redis = _import_redis()
        self._conn_errors, self._response_error = _errors()
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
        self._policy = reconnect if reconnect is not None else _default_policy()
        self._socket_timeout = float(socket_timeout)
        self._name = name
        self._init_consumer(name, fallback or Market.STOCKS, queue_size, Overflow.BLOCK, False, logger)

        self._lock = threading.Lock()
        self._stop_requested = threading.Event()
        self._ready_event = threading.Event()
        self._stop_deadline = float("inf")
        self._thread: threading.Thread | None = None
        self._state = ConnectionState.NEW
        self._fatal: BaseException | None = None
        self._client: Any = _new_client(url, self._socket_timeout, f"massive-rt-{name}")  # connects on first use
        self._client.set_response_callback("XREADGROUP", _raw_reply)

        # consumer side (under _handout_lock): events decoded → their entry, in order; handed out, not completed
        self._handout_lock = threading.Lock()
        self._fifo: collections.deque[tuple[str, bytes] | None] = collections.deque()
        self._handed: list[tuple[str, bytes]] = []
        self._consumer_thread: threading.Thread | None = None
        self._decoders: dict[Market, Decoder] = {}
        self._market_names: dict[bytes, Market | None] = {}
        self._connections: dict[bytes, str] = {}
        self._decode_errors = 0
        self._events_decoded = 0
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
        self._errors = 0
        self._reconnects = 0
        self._error_log = RateLimitedLog(logger, logging.ERROR)

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

    def clients(self) -> tuple[RedisStreamSource, ...]:
        """Event sources for the adapter: this source alone."""
        return (self,)

    def start(self) -> RedisStreamSource:
        """Start the reader thread (it creates missing groups). Idempotent."""
        with self._lock:
            if self._thread is not None:
                return self
            if self._stop_requested.is_set():
                raise ClientClosedError("source was stopped; create a new one", connection=self._name)
            self._thread = threading.Thread(target=self._run, name=f"massive-rt-redis-source-{self._name}",
                                            daemon=True)  # fmt: skip
            self._thread.start()
        return self

    def wait_ready(self, timeout: float | None = None) -> RedisStreamSource:
        """Wait until connected with every group in place (after that, new entries are read).

        Raises:
            WaitTimeoutError: not ready within ``timeout``.
            ClientClosedError: the source stopped or failed first.
        """
        if self._thread is None:
            raise ClientClosedError("call start() before wait_ready()", connection=self._name)
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
        with self._lock:
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
        """Return what is queued now (never blocks); completes the previous hand-out (see module doc)."""
        with self._handout_lock:
            self._consumer_thread = threading.current_thread()
            self._complete_locked()
            events = super().drain(max_frames)
            if events:
                self._hand_out_locked(len(events))
            return events

    def get(self, timeout: float | None = None) -> Event:
        """Return the next event; completes the previous hand-out (see module doc).

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
        return RedisSourceStats(
            name=self._name, state=self._state, connected=self._connected, group=self._group,
            consumer=self._consumer, streams=self._streams, read=self._read, claimed=self._claimed,
            repeats_skipped=self._repeats, acked=self._acked, in_flight=self._in_flight_count, lost=self._lost,
            events_decoded=self._events_decoded, decode_errors=self._decode_errors, errors=self._errors,
            reconnects=self._reconnects, queue_frames=len(self._queue),
        )  # fmt: skip

    def __enter__(self) -> RedisStreamSource:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        url = re.sub(r"//[^@/]*@", "//***@", self._url)
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
            return self._decode_entries(payload)
        events = super()._decode_item(item)
        self._fifo.extend(itertools.repeat(None, len(events)))
        return events

    def _decode_entries(self, batch: _Entries) -> list[Event]:
        out: list[Event] = []
        fifo = self._fifo
        stream_name = batch.stream
        default_market = self._stream_markets.get(stream_name)
        loads = fast_loads
        run: list[Any] = []
        run_key: tuple[Any, Any, Any] | None = None  # the raw (market, connection, received_at_ns) of the run
        run_meta: tuple[Market, str, int] = (Market.STOCKS, "", 0)

        def flush() -> None:
            if run:
                market, connection, received_at_ns = run_meta
                decoder = self._decoders.get(market)
                if decoder is None:
                    decoder = self._decoders[market] = Decoder(market, connection, loads=loads)
                decoder.connection = connection
                out.extend(decoder.decode_objects(run, received_at_ns))  # one event per object, in order
                self._events_decoded += len(run)
                run.clear()

        for entry_id, fields in batch.entries:
            if (
                len(fields) == 10 and fields[0] == b"d" and fields[2] == b"ev" and fields[4] == b"market"
                and fields[6] == b"connection" and fields[8] == b"received_at_ns"
            ):  # fmt: skip
                data, ev, key = fields[1], fields[3], (fields[5], fields[7], fields[9])
            else:  # written by someone else: fields by name
                named = _field_map(fields)
                data, ev = named.get(b"d"), named.get(b"ev")
                key = (named.get(b"market"), named.get(b"connection"), named.get(b"received_at_ns"))
            obj: Any = None
            problem: str | None = None
            if data is None:
                problem = "has no 'd' field"
            else:
                try:
                    obj = loads(data)
                except (ValueError, TypeError, RecursionError) as exc:
                    problem = f"'d' is not valid JSON ({type(exc).__name__})"
            if problem is None and ev != _STATUS_EV_BYTES:
                if key != run_key:
                    flush()
                    market, connection, received_at_ns = self._entry_meta(key, default_market)
                    if market is not None:
                        run_key, run_meta = key, (market, connection, received_at_ns)
                    else:
                        run_key = None
                        problem = "names no market (pass market= or a {stream: market} mapping)"
                if problem is None:
                    run.append(obj)
                    fifo.append((stream_name, entry_id))
                    continue
            flush()
            run_key = None
            _market, connection, received_at_ns = self._entry_meta(key, default_market)
            if problem is None and isinstance(obj, dict):
                out.append(_status_from_wire(obj, received_at_ns, connection))
            else:
                problem = problem or "is a status that is not a JSON object"
                self._decode_errors += 1
                out.append(StatusMessage(
                    status="decode_error", message=f"entry {entry_id.decode()} of {stream_name} {problem}",
                    received_at_ns=received_at_ns, connection=self._name,
                ))  # fmt: skip
                self._error_log("[%s] entry %s of %s %s; delivered as a decode_error status",
                                self._name, entry_id.decode(), stream_name, problem)  # fmt: skip
            fifo.append((stream_name, entry_id))
        flush()
        return out

    def _entry_meta(self, key: tuple[Any, Any, Any], default_market: Market | None) -> tuple[Market | None, str, int]:
        """(market, connection, received_at_ns) out of an entry's raw fields."""
        raw_market, raw_conn, raw_time = key
        market = self._market_from(raw_market, default_market)
        connection = self._connection_name(raw_conn) if raw_conn else self._name
        try:
            received_at_ns = int(raw_time) if raw_time else time.time_ns()
        except ValueError:
            received_at_ns = time.time_ns()
        return market, connection, received_at_ns

    def _connection_name(self, raw: bytes) -> str:
        name = self._connections.get(raw)
        if name is None:
            name = raw.decode("utf-8", "replace")
            if len(self._connections) < 10_000:
                self._connections[raw] = name
        return name

    def _market_from(self, raw: bytes | None, default: Market | None) -> Market | None:
        if not raw:
            return default
        if raw in self._market_names:
            return self._market_names[raw] or default
        try:
            market: Market | None = _coerce_market(raw.decode("utf-8", "replace"))
        except ConfigurationError:
            market = None
        if len(self._market_names) < 1000:
            self._market_names[raw] = market
        return market or default

    # ------------------------------------------------------------------ reader thread

    def _status(self, status: str, message: str, state: ConnectionState | None = None,
                error: BaseException | None = None) -> None:  # fmt: skip
        if state is not None:
            self._state = state
        event = StatusMessage(status=status, message=message, state=state, error=error, connection=self._name,
                              received_at_ns=time.time_ns())  # fmt: skip
        self._queue.put([KIND_EVENT, event, event.received_at_ns, 0])

    def _run(self) -> None:
        self._status("state", f"connecting to {self._safe_url()}", ConnectionState.CONNECTING)
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
                        logger.warning("[%s] consumer group %s is missing (%s); re-creating it from 0",
                                       self._name, self._group, exc)  # fmt: skip
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
                if _parse_id(cursor) == _ZERO_ID:
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
            self._queue.put([KIND_OBJECTS, _Entries(stream_name, fresh), time.time_ns(), len(fresh)])
        return len(fresh)

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

    def _safe_url(self) -> str:
        return re.sub(r"//[^@/]*@", "//***@", self._url)
