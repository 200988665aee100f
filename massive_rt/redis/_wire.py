"""The stream entry format: events to Redis stream entries (:class:`EntryEncoder`) and back (:class:`EntryDecoder`).

Stream names
    A template with ``{market}`` and/or ``{ev}`` (default :data:`DEFAULT_STREAM`,
    ``massive:{market}:{ev}``); forwarded statuses go to ``ev="status"``, objects without an ``ev``
    to ``ev="unknown"``.

Entry fields, in this order
    ``d`` (the event's wire dict as compact JSON: :func:`massive_rt.models.to_wire` of a market
    event, the data of an :class:`~massive_rt.UnknownEvent`, the JSON-able form of a forwarded
    :class:`~massive_rt.StatusMessage`), ``ev``, ``market`` (the market value), ``connection``
    (the upstream connection), ``received_at_ns`` (decimal), ``epoch`` (the producer epoch: an
    opaque token, new at every sink start) and ``seq`` (the producer sequence: 1, 2, 3 … per
    stream and epoch, in stream order). The decoder reads that layout and the older one without
    ``epoch``/``seq`` directly, and any other order (entries written by someone else) by field
    name; :func:`sequence_of` reads the producer stamp (None for entries without one, which are
    not checked for continuity). Readers of the older layout read the new one by field name.

Entry ids
    ``<ms>-<seq>`` (:data:`StreamId`); the sink assigns them, so XADD commands are packed around
    the id (:class:`Entry`, :func:`id_bulk`).

The format carries no version field: an entry is what the fields above say.

Producer stamps and continuity checks: :mod:`massive_rt.redis._continuity`.
"""

from __future__ import annotations

import collections
import logging
import re
import secrets
import string
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from .._json import dumps, loads
from .._util import RateLimitedLog
from ..enums import ConnectionState, Market
from ..errors import ConfigurationError, MassiveRTError
from ..models import Event, MarketEvent, StatusMessage, UnknownEvent, to_wire
from ..protocol import Decoder, status_fields, status_from_fields

__all__ = [
    "DEFAULT_STREAM",
    "ZERO_ID",
    "Entry",
    "EntryDecoder",
    "EntryEncoder",
    "StreamId",
    "id_bulk",
    "int_bulk",
    "new_epoch",
    "pack",
    "parse_id",
    "sequence_of",
    "template_fields",
    "template_regex",
]

logger = logging.getLogger(__name__)

#: Stream name template; ``{market}`` is the market value (``stocks``, ``futures/cme``), ``{ev}`` the ev code.
DEFAULT_STREAM: Final = "massive:{market}:{ev}"

_STATUS_EV: Final = "status"
_STATUS_EV_BYTES: Final = b"status"
_UNKNOWN_EV: Final = "unknown"

#: A stream entry id, ``(ms, seq)``.
StreamId = tuple[int, int]
ZERO_ID: Final[StreamId] = (0, 0)


# ---------------------------------------------------------------------------------------------- stream names


def template_fields(template: object, field: str = "stream") -> tuple[str, ...]:
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


def template_regex(template: str) -> re.Pattern[str]:
    """A pattern matching the stream names of ``template``, with a group per placeholder."""
    parts: list[str] = []
    for literal, name, _spec, _conversion in string.Formatter().parse(template):
        parts.append(re.escape(literal))
        if name is not None:
            parts.append(f"(?P<{name}>.+?)")
    return re.compile("".join(parts) + r"\Z")


# ---------------------------------------------------------------------------------------------- ids and RESP


def parse_id(raw: bytes | str) -> StreamId:
    """``b"<ms>-<seq>"`` (or ``"<ms>"``) as ``(ms, seq)``."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _bulk(value: bytes) -> bytes:
    """One RESP bulk string."""
    return b"$%d\r\n%s\r\n" % (len(value), value)


def pack(*args: bytes) -> bytes:
    """One RESP command."""
    return b"*%d\r\n" % len(args) + b"".join(_bulk(a) for a in args)


def id_bulk(stream_id: StreamId | None) -> bytes:
    """A stream id as a RESP bulk string (ids are assigned before packing)."""
    ms, seq = stream_id or ZERO_ID
    text = b"%d-%d" % (ms, seq)
    return b"$%d\r\n%s\r\n" % (len(text), text)


def int_bulk(value: int) -> bytes:
    """A decimal integer as a RESP bulk string."""
    text = b"%d" % value
    return b"$%d\r\n%s\r\n" % (len(text), text)


def new_epoch() -> bytes:
    """A producer epoch: the start time (ns, hex) and 32 random bits, unique per sink start."""
    return b"%x-%08x" % (time.time_ns(), secrets.randbits(32))


def sequence_of(fields: Any) -> tuple[bytes, int, int] | None:
    """``(epoch, seq, received_at_ns)`` of an entry's fields (flat list or dict), or None when it
    carries no valid producer stamp (``received_at_ns`` is 0 when absent or invalid)."""
    if (
        len(fields) == 14 and not isinstance(fields, dict) and fields[12] == b"seq" and fields[10] == b"epoch"
        and fields[8] == b"received_at_ns"
    ):  # fmt: skip
        epoch, raw, received = fields[11], fields[13], fields[9]
    else:
        named = _field_map(fields)
        epoch, raw, received = named.get(b"epoch"), named.get(b"seq"), named.get(b"received_at_ns")
        if epoch is None or raw is None:
            return None
    try:
        seq = int(raw)
    except ValueError:
        return None
    try:
        return epoch, seq, int(received) if received else 0
    except ValueError:
        return epoch, seq, 0


# ---------------------------------------------------------------------------------------------- encoding


class Entry:
    """One stream entry to write, as RESP around its id and sequence, both assigned before its first write.

    The whole command is ``head + id_bulk(id) + tail + int_bulk(seq)``.
    """

    __slots__ = ("head", "id", "ms", "seq", "stream", "tail")

    def __init__(self, stream: str, ms: int, head: bytes, tail: bytes) -> None:
        self.stream = stream
        self.ms = ms
        self.head = head  # *<n> XADD <stream> [MAXLEN ~ <maxlen>]
        self.tail = tail  # d <json> ev <ev> market <market> connection <name> received_at_ns <ns> epoch <e> seq
        self.id: StreamId | None = None
        self.seq = 0


class EntryEncoder:
    """Packs events as ``XADD`` commands (:class:`Entry`) for the streams of ``template``.

    Args:
        template: stream name template (validated by :func:`template_fields`).
        maxlen: approximate cap per stream (``MAXLEN ~``); None for none.
        epoch: the producer epoch stamped on every entry (:func:`new_epoch`).
    """

    def __init__(self, template: str, maxlen: int | None, epoch: bytes) -> None:
        self._template = template
        self._epoch = epoch
        self._trim: tuple[bytes, ...] = () if maxlen is None else (b"MAXLEN", b"~", b"%d" % maxlen)
        self._names: dict[tuple[Market, str], str] = {}
        self._parts: dict[tuple[str, str], tuple[bytes, bytes, bytes]] = {}

    def stream_name(self, market: Market, ev: str) -> str:
        """The stream of the events of ``market`` with code ``ev``."""
        return self._template.format(market=market.value, ev=ev)

    def encode(
        self,
        events: Iterable[Event],
        market_of: Callable[[Event], Market | None],
        failed: Callable[[Event, Exception | None], object],
    ) -> tuple[list[Entry], int, int]:
        """The entries of ``events``, in order, and how many were skipped and how many failed.

        Skipped: events with no stream (``RawFrame``). Failed: those whose market ``market_of``
        could not tell (None), then those whose data is not serializable; ``failed(event, error)``
        is called for each (``error`` None for an unknown market).
        """
        out: list[Entry] = []
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
            market = market_of(event)
            if market is None:
                dropped += 1
                failed(event, None)
                continue
            try:
                payload = dumps(wire)
            except (TypeError, ValueError) as exc:
                dropped += 1
                failed(event, exc)
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
                             b"$%d\r\n%s\r\n" % (len(received), received), parts[2]))  # fmt: skip
            out.append(Entry(stream, received_at_ns // 1_000_000, parts[0], tail))
        return out, skipped, dropped

    def _entry_parts(self, stream: str, ev: str, market: Market, connection: str) -> tuple[bytes, bytes, bytes]:
        """The constant RESP around an entry of ``stream`` from ``connection`` (cached)."""
        args = (b"XADD", stream.encode(), *self._trim)
        head = b"*%d\r\n" % (len(args) + 15) + b"".join(_bulk(a) for a in args)
        middle = b"\r\n" + b"".join(_bulk(a) for a in (
            b"ev", ev.encode(), b"market", market.value.encode(), b"connection", connection.encode(), b"received_at_ns",
        ))  # fmt: skip
        stamp = _bulk(b"epoch") + _bulk(self._epoch) + _bulk(b"seq")
        if len(self._parts) >= 10_000:
            self._parts.clear()
        parts = self._parts[(stream, connection)] = (head, middle, stamp)
        return parts


def _status_wire(status: StatusMessage) -> dict[str, Any]:
    """A forwarded status as a JSON-able dict (``error`` becomes its text); its numbers and marks
    are the keys a relay forwards (:func:`~massive_rt.protocol.status_fields`)."""
    out = status_fields(status.status, status.message, status)
    out["ev"] = _STATUS_EV
    if not status.message:
        del out["message"]
    if status.state is not None:
        out["state"] = str(getattr(status.state, "value", status.state))
    if status.error is not None:
        out["error"] = f"{type(status.error).__name__}: {status.error}"
    if status.from_server:
        out["from_server"] = True
    return out


# ---------------------------------------------------------------------------------------------- decoding


class EntryDecoder:
    """Turns entries read from a stream back into events (one event per entry, in order).

    Market events are decoded with :class:`massive_rt.protocol.Decoder` of the entry's market,
    a run of consecutive entries with the same market, connection and receive time at once.
    An entry that cannot be decoded becomes a ``decode_error`` status (counted in ``errors``,
    logged through ``error_log``).

    Args:
        name: stamped as ``connection`` on entries that carry none and on ``decode_error`` statuses.
        error_log: where decode errors are reported.

    Attributes:
        decoded: market events decoded so far.
        errors: entries that could not be decoded so far.
        markets: ``{upstream connection: market}`` of the market events decoded so far (bounded).
    """

    def __init__(self, name: str, error_log: RateLimitedLog) -> None:
        self.name = name
        self.decoded = 0
        self.errors = 0
        self._error_log = error_log
        self._decoders: dict[Market, Decoder] = {}
        self._market_names: dict[bytes, Market | None] = {}
        self._connections: dict[bytes, str] = {}
        self.markets: dict[str, Market] = {}

    def decode(
        self,
        stream_name: str,
        entries: list[tuple[bytes, Any]],
        default_market: Market | None,
        refs: collections.deque[tuple[str, bytes] | None],
    ) -> list[Event]:
        """Events of ``entries`` (``[(id, fields), ...]`` of ``stream_name``, fields a flat
        ``[k1, v1, ...]`` list or a dict); appends ``(stream_name, id)`` to ``refs`` per event.

        ``default_market`` is the market of entries that name none (or an unknown one).
        """
        out: list[Event] = []
        parse = loads
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
                if connection not in self.markets and len(self.markets) < 10_000:
                    self.markets[connection] = market
                out.extend(decoder.decode_objects(run, received_at_ns))  # one event per object, in order
                self.decoded += len(run)
                run.clear()

        for entry_id, fields in entries:
            if (
                (len(fields) == 14 or len(fields) == 10) and not isinstance(fields, dict) and fields[0] == b"d"
                and fields[2] == b"ev"
                and fields[4] == b"market" and fields[6] == b"connection" and fields[8] == b"received_at_ns"
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
                    obj = parse(data)
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
                    refs.append((stream_name, entry_id))
                    continue
            flush()
            run_key = None
            _market, connection, received_at_ns = self._entry_meta(key, default_market)
            if problem is None and isinstance(obj, dict):
                out.append(_status_from_wire(obj, received_at_ns, connection))
            else:
                problem = problem or "is a status that is not a JSON object"
                self.errors += 1
                out.append(StatusMessage(
                    status="decode_error", message=f"entry {entry_id.decode()} of {stream_name} {problem}",
                    received_at_ns=received_at_ns, connection=self.name,
                ))  # fmt: skip
                self._error_log("[%s] entry %s of %s %s; delivered as a decode_error status",
                                self.name, entry_id.decode(), stream_name, problem)  # fmt: skip
            refs.append((stream_name, entry_id))
        flush()
        return out

    def _entry_meta(self, key: tuple[Any, Any, Any], default_market: Market | None) -> tuple[Market | None, str, int]:
        """(market, connection, received_at_ns) out of an entry's raw fields."""
        raw_market, raw_conn, raw_time = key
        market = self._market_from(raw_market, default_market)
        connection = self._connection_name(raw_conn) if raw_conn else self.name
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
            market: Market | None = Market.coerce(raw.decode("utf-8", "replace"), "market")
        except ConfigurationError:
            market = None
        if len(self._market_names) < 1000:
            self._market_names[raw] = market
        return market or default


def _field_map(fields: Any) -> dict[bytes, Any]:
    """An entry's fields by name, from a flat ``[k1, v1, k2, v2, ...]`` reply or a dict."""
    if isinstance(fields, dict):
        return fields
    return dict(zip(fields[::2], fields[1::2], strict=False))


def _status_from_wire(data: Mapping[str, Any], received_at_ns: int, connection: str) -> StatusMessage:
    """Rebuild a forwarded status (the inverse of :func:`_status_wire`); numbers and marks of the
    wrong type are left out, as from a relay."""
    state: Any = data.get("state")
    if isinstance(state, str):
        try:
            state = ConnectionState(state)
        except ValueError:
            pass
    error = data.get("error")
    fields, _rejected = status_from_fields(dict(data))
    return StatusMessage(
        status=str(data.get("status", "")),
        message=str(data.get("message", "")),
        state=state,
        error=MassiveRTError(str(error), connection=connection) if error else None,
        from_server=bool(data.get("from_server", False)),
        received_at_ns=received_at_ns,
        connection=connection,
        **fields,
    )
