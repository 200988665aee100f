"""Massive's wire protocol, with no I/O: channels, control messages and frame decoding.

Everything here is pure and thread-agnostic; the connection, the mock server and the tests
share it. See ``docs/protocol.md`` for the sources behind each rule.
"""

from __future__ import annotations

import json
import logging
import reprlib
import sys
from collections.abc import Callable, Iterable, Iterator
from collections.abc import Set as AbstractSet
from typing import Any

import attrs

from ._structdecode import bind_marks, compile_builder, struct_frame_decoder
from .enums import Market
from .errors import ConfigurationError
from .marks import DeliveryMarks, symbol_attribute
from .models import (
    CryptoQuote,
    CryptoTrade,
    CurrencyAgg,
    EquityAgg,
    EquityQuote,
    EquityTrade,
    Event,
    FairMarketValue,
    ForexQuote,
    FuturesAgg,
    FuturesQuote,
    FuturesTrade,
    Imbalance,
    IndexValue,
    LaunchpadValue,
    Level2Book,
    LimitUpLimitDown,
    MarketEvent,
    StatusMessage,
    SymbolMark,
    UnknownEvent,
)

__all__ = [
    "MARKET_EVENTS",
    "VALIDATE_MODES",
    "Channel",
    "Decoder",
    "build_auth",
    "build_subscribe",
    "build_unsubscribe",
    "check_validate_mode",
    "channel_matches",
    "effective_channels",
    "event_symbol",
    "parse_channel",
    "parse_channels",
    "parse_control",
    "routes_to",
    "status_array",
    "status_fields",
    "status_frame",
    "status_from_fields",
    "wildcard_of",
]

logger = logging.getLogger(__name__)

_FUTURES_EVENTS: dict[str, type[MarketEvent]] = {
    "T": FuturesTrade,
    "Q": FuturesQuote,
    "A": FuturesAgg,
    "AM": FuturesAgg,
}

#: (market, ev) → event class. The same ``ev`` means different schemas in different markets.
MARKET_EVENTS: dict[Market, dict[str, type[MarketEvent]]] = {
    Market.STOCKS: {"T": EquityTrade, "Q": EquityQuote, "A": EquityAgg, "AM": EquityAgg, "LULD": LimitUpLimitDown,
                    "NOI": Imbalance, "FMV": FairMarketValue, "LV": LaunchpadValue},
    Market.OPTIONS: {"T": EquityTrade, "Q": EquityQuote, "A": EquityAgg, "AM": EquityAgg, "FMV": FairMarketValue,
                     "LV": LaunchpadValue},
    Market.FOREX: {"C": ForexQuote, "CA": CurrencyAgg, "CAS": CurrencyAgg, "FMV": FairMarketValue, "AM": EquityAgg,
                   "LV": LaunchpadValue},
    Market.CRYPTO: {"XT": CryptoTrade, "XQ": CryptoQuote, "XL2": Level2Book, "XA": CurrencyAgg, "XAS": CurrencyAgg,
                    "FMV": FairMarketValue, "AM": EquityAgg, "LV": LaunchpadValue},
    Market.INDICES: {"A": EquityAgg, "AM": EquityAgg, "V": IndexValue},
    Market.FUTURES: _FUTURES_EVENTS,
    Market.FUTURES_CME: _FUTURES_EVENTS,
    Market.FUTURES_CBOT: _FUTURES_EVENTS,
    Market.FUTURES_NYMEX: _FUTURES_EVENTS,
    Market.FUTURES_COMEX: _FUTURES_EVENTS,
}  # fmt: skip

#: Wire keys that carry the symbol, per event class (LULD, NOI and V use ``T``; currencies ``pair``/``p``).
_SYMBOL_KEYS: dict[type[MarketEvent], str] = {
    cls: next(key for key, attr in cls.WIRE if attr in ("symbol", "ticker", "pair"))
    for cls in {c for table in MARKET_EVENTS.values() for c in table.values()}
}

#: Subscribe prefixes that accept no wildcard, per market (options quotes: 1,000 contracts per connection).
_NO_WILDCARD: dict[Market, frozenset[str]] = {Market.OPTIONS: frozenset({"Q"})}

# Keep a subscribe/unsubscribe frame well under any plausible server limit (none is documented).
DEFAULT_MAX_PARAMS_CHARS = 8_000


@attrs.frozen(order=True)
class Channel:
    """A subscription: ``<prefix>.<ticker>``, e.g. ``T.AAPL``, ``T.BRK.B``, ``AM.*``.

    The ticker is everything after the *first* dot, so dotted tickers work.
    """

    prefix: str
    ticker: str

    def __str__(self) -> str:
        return f"{self.prefix}.{self.ticker}"

    @property
    def is_wildcard(self) -> bool:
        """True for ``<prefix>.*`` (every ticker of the channel)."""
        return self.ticker == "*"


def _bad(channel: object, why: str) -> ConfigurationError:
    return ConfigurationError(f"channel {channel!r} {why}", field="channels")


#: ``validate_channels`` modes: what a channel prefix this library does not know yet does.
VALIDATE_MODES = ("strict", "warn", "off")
_warned_prefixes: set[tuple[str, str]] = set()


def check_validate_mode(value: object, field: str = "validate_channels") -> str:
    """``value`` if it is a ``validate_channels`` mode, else :class:`ConfigurationError`."""
    if value not in VALIDATE_MODES:
        raise ConfigurationError(f"{field}={value!r} must be one of {', '.join(map(repr, VALIDATE_MODES))}",
                                 field=field)  # fmt: skip
    return str(value)


def parse_channel(text: object, market: Market | str = Market.STOCKS, validate: str = "strict") -> Channel:
    """Parse and validate one channel for ``market``.

    Args:
        validate: what a prefix the market does not have (yet) does: ``"strict"`` refuses it,
            ``"warn"`` accepts it and logs a warning once per prefix, ``"off"`` accepts it
            (Massive adds channels; their events arrive as :class:`UnknownEvent`). Malformed
            channels are refused in every mode.

    Raises:
        ConfigurationError: naming the channel, for a non-string, whitespace or commas, a missing
            dot, an empty prefix or ticker, a prefix the market does not have (``strict``), a
            partial wildcard, or a wildcard where the market allows none (options quotes).
    """
    market = Market.coerce(market, "market")
    if not isinstance(text, str):
        raise _bad(text, "is not a string")
    if not text:
        raise _bad(text, "is empty")
    if "," in text or any(c.isspace() for c in text):
        raise _bad(text, "contains a comma or whitespace; pass channels as separate arguments")
    prefix, dot, ticker = text.partition(".")
    if not dot:
        raise _bad(text, "has no '.' between the channel prefix and the ticker (e.g. 'T.AAPL')")
    if not prefix:
        raise _bad(text, "has an empty channel prefix")
    if not ticker:
        raise _bad(text, "has an empty ticker")
    events = MARKET_EVENTS[market]
    if prefix not in events:
        known = ", ".join(sorted(events))
        if validate == "strict":
            raise _bad(text, f"has prefix {prefix!r}, which market {market.value!r} does not have (known: {known}; "
                       "validate_channels='warn' subscribes it anyway)")  # fmt: skip
        if validate == "warn" and (market.value, prefix) not in _warned_prefixes:
            _warned_prefixes.add((market.value, prefix))
            logger.warning("channel prefix %r is not one massive_rt knows for %s (known: %s): subscribing anyway; "
                           "its events arrive as UnknownEvent", prefix, market.value, known)  # fmt: skip
    if "*" in ticker:
        if ticker != "*":
            raise _bad(text, "uses '*' inside a ticker; only '<prefix>.*' is a wildcard")
        if prefix in _NO_WILDCARD.get(market, frozenset()):
            raise _bad(text, f"is a wildcard, which {market.value} {prefix} does not allow")
    return Channel(prefix, ticker)


def parse_channels(
    channels: Iterable[object], market: Market | str = Market.STOCKS, validate: str = "strict"
) -> tuple[str, ...]:
    """Validate ``channels`` for ``market`` (``validate``: see :func:`parse_channel`); return them
    as strings, de-duplicated, in first-seen order.

    A channel already in canonical form is the caller's own string, interned (:func:`sys.intern`):
    every table that holds it (the caller's list, a client's desired and acknowledged sets, a
    pool's assignment, the session's requests) shares that one copy."""
    if isinstance(channels, str):
        channels = (channels,)
    seen: dict[str, None] = {}
    for text in channels:
        canonical = str(parse_channel(text, market, validate))
        seen[sys.intern(text if text.__class__ is str and text == canonical else canonical)] = None
    return tuple(seen)


def wildcard_of(channel: str) -> str:
    """The wildcard channel that covers ``channel``: ``T.AAPL`` → ``T.*``."""
    return channel.partition(".")[0] + ".*"


def effective_channels(channels: Iterable[str]) -> list[str]:
    """The channels to send upstream, in order: a ticker is left out while its prefix's wildcard
    is there (``T.AAPL`` with ``T.*``), so the server never has a reason to deliver it twice."""
    listed = list(channels)
    wildcards = {c for c in listed if c.endswith(".*")}
    return [c for c in listed if c.endswith(".*") or wildcard_of(c) not in wildcards]


def channel_matches(channel: str, ev: str, symbol: object) -> bool:
    """True when an event ``ev`` for ``symbol`` belongs to ``channel`` (exact prefix, ``*`` or ticker)."""
    prefix, _, ticker = channel.partition(".")
    return prefix == ev and (ticker == "*" or ticker == symbol)


def event_symbol(market: Market | str, data: dict[str, Any]) -> Any:
    """Return the symbol of a wire object (``sym``, ``pair``, ``p`` or ``T`` depending on its schema)."""
    cls = MARKET_EVENTS[Market.coerce(market, "market")].get(data.get("ev"))  # type: ignore[arg-type]
    if cls is None:
        return data.get("sym", data.get("pair", data.get("T")))
    return data.get(_SYMBOL_KEYS[cls])


def build_auth(api_key: str) -> str:
    """The auth frame. Contains the key: never log it."""
    return json.dumps({"action": "auth", "params": api_key}, separators=(",", ":"))


def _batched(action: str, channels: Iterable[str], max_chars: int) -> list[str]:
    frames: list[str] = []
    batch: list[str] = []
    size = 0
    for channel in channels:
        if batch and size + len(channel) > max_chars:
            frames.append(json.dumps({"action": action, "params": ",".join(batch)}, separators=(",", ":")))
            batch, size = [], 0
        batch.append(channel)
        size += len(channel) + 1
    if batch:
        frames.append(json.dumps({"action": action, "params": ",".join(batch)}, separators=(",", ":")))
    return frames


def build_subscribe(channels: Iterable[str], max_chars: int = DEFAULT_MAX_PARAMS_CHARS) -> list[str]:
    """Subscribe frames for ``channels``, split so no ``params`` exceeds ``max_chars``."""
    return _batched("subscribe", channels, max_chars)


def build_unsubscribe(channels: Iterable[str], max_chars: int = DEFAULT_MAX_PARAMS_CHARS) -> list[str]:
    """Unsubscribe frames for ``channels``, split so no ``params`` exceeds ``max_chars``."""
    return _batched("unsubscribe", channels, max_chars)


def parse_control(text: str | bytes) -> tuple[str, str] | None:
    """Parse a client→server control frame into ``(action, params)``; ``None`` if it is not one."""
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(message, dict):
        return None
    action, params = message.get("action"), message.get("params", "")
    if not isinstance(action, str) or not isinstance(params, str):
        return None
    return action, params


def split_params(params: str) -> Iterator[str]:
    """Split a ``params`` string into channels, tolerating spaces after commas."""
    for part in params.split(","):
        part = part.strip()
        if part:
            yield part


def status_frame(status: str, message: str) -> str:
    """A server status frame: ``[{"ev":"status","status":...,"message":...}]``."""
    return json.dumps([{"ev": "status", "status": status, "message": message}], separators=(",", ":"))


def status_array(pairs: Iterable[tuple[str, str]]) -> str:
    """One server frame holding a status object per ``(status, message)`` pair."""
    return "[" + ",".join(status_frame(status, message)[1:-1] for status, message in pairs) + "]"


def _is_int(value: object) -> bool:
    return type(value) is int and value >= 0


def _is_number(value: object) -> bool:
    return type(value) in (int, float)


def status_fields(status: str, message: str, event: StatusMessage) -> dict[str, Any]:
    """A server status object carrying ``event``'s numbers as extra keys (a relay forwarding an
    upstream status): ``gap_start_ns``, ``gap_end_ns``, ``dropped``, ``channels`` and
    ``last_seen`` (``[{"sym", "ev", "t", "q", "r"}]``, ``last_seen_omitted``,
    ``last_seen_omitted_oldest``), each only when set. Clients that do not know them ignore them;
    :func:`status_from_fields` reads them back."""
    obj: dict[str, Any] = {"ev": "status", "status": status, "message": message}
    if event.gap_start_ns is not None:
        obj["gap_start_ns"] = event.gap_start_ns
    if event.gap_end_ns is not None:
        obj["gap_end_ns"] = event.gap_end_ns
    if event.dropped:
        obj["dropped"] = event.dropped
    if event.channels:
        obj["channels"] = list(event.channels)
    if event.last_seen or event.last_seen_omitted:
        obj["last_seen"] = [{"sym": m.symbol, "ev": m.ev, "t": m.timestamp, "q": m.sequence, "r": m.received_at_ns}
                            for m in event.last_seen]  # fmt: skip
        obj["last_seen_omitted"] = event.last_seen_omitted
        obj["last_seen_omitted_oldest"] = event.last_seen_omitted_oldest
    return obj


def _marks_from(value: object) -> tuple[SymbolMark, ...] | None:
    if type(value) is not list:
        return None
    marks = []
    for item in value:
        if type(item) is not dict or type(item.get("ev")) is not str or not _is_int(item.get("r", 0)):
            return None
        symbol = item.get("sym")
        if type(symbol) is not str:
            return None
        marks.append(SymbolMark(symbol=symbol, ev=item["ev"], timestamp=item.get("t"), sequence=item.get("q"),
                                received_at_ns=item.get("r", 0)))  # fmt: skip
    return tuple(marks)


def status_from_fields(obj: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The :class:`StatusMessage` fields a server status object carries as extra keys (see
    :func:`status_fields`), and the names of the keys ignored because their value had the wrong type."""
    fields: dict[str, Any] = {}
    rejected: list[str] = []
    for key in ("gap_start_ns", "gap_end_ns", "dropped", "last_seen_omitted"):
        if key in obj:
            if _is_int(obj[key]):
                fields[key] = obj[key]
            else:
                rejected.append(key)
    if "last_seen_omitted_oldest" in obj:
        oldest = obj["last_seen_omitted_oldest"]
        if oldest is None or _is_number(oldest):
            fields["last_seen_omitted_oldest"] = oldest
        else:
            rejected.append("last_seen_omitted_oldest")
    if "channels" in obj:
        channels = obj["channels"]
        if type(channels) is list and all(type(c) is str for c in channels):
            fields["channels"] = tuple(channels)
        else:
            rejected.append("channels")
    if "last_seen" in obj:
        marks = _marks_from(obj["last_seen"])
        if marks is None:
            rejected.append("last_seen")
        else:
            fields["last_seen"] = marks
    return fields, rejected


def routes_to(subscriptions: AbstractSet[str], ev: object, symbol: object) -> bool:
    """True when a connection subscribed to ``subscriptions`` receives an event ``ev`` for ``symbol``.

    The O(1) form of ``any(channel_matches(ch, ev, symbol) for ch in subscriptions)``: the only
    channels that match are ``<ev>.*`` and ``<ev>.<symbol>``.
    """
    if not isinstance(ev, str):
        return False
    return f"{ev}.*" in subscriptions or (isinstance(symbol, str) and f"{ev}.{symbol}" in subscriptions)


# ---------------------------------------------------------------------------------------------
# Decoding


Maker = Callable[[dict[str, Any], int, str], Event]


def _compile_maker(cls: type[MarketEvent], mark: str | None = None) -> Maker:
    """Build a constructor specialised for ``cls`` that reads the wire keys of a dict.

    Decoding is the hot path (hundreds of thousands of events a second): the generated function
    fills a mutable slot twin of ``cls`` with plain stores, then switches its ``__class__``
    (see :func:`massive_rt._structdecode.mutable_twin`). ``mark``: see ``compile_builder``.
    """
    fill = ["get = d.get", *(f"obj.{attr} = get({key!r})" for key, attr in cls.WIRE)]
    return compile_builder(cls, "d", fill, mark)


_CLASSES = {c for table in MARKET_EVENTS.values() for c in table.values()}
_MAKERS: dict[type[MarketEvent], Maker] = {cls: _compile_maker(cls) for cls in _CLASSES}
#: Makers that also store each event in the marks dict bound to them (see marks.DeliveryMarks).
_MARKING_MAKERS: dict[type[MarketEvent], Maker] = {cls: _compile_maker(cls, symbol_attribute(cls)) for cls in _CLASSES}


def _make_status(d: dict[str, Any], received_at_ns: int, connection: str) -> Event:
    status, message = d.get("status"), d.get("message")
    return StatusMessage(
        status=status if isinstance(status, str) else "",
        message=message if isinstance(message, str) else "",
        received_at_ns=received_at_ns,
        connection=connection,
        from_server=True,
    )


_PREVIEW = reprlib.Repr()
_PREVIEW.maxlevel, _PREVIEW.maxstring, _PREVIEW.maxother, _PREVIEW.maxlist, _PREVIEW.maxdict = 3, 100, 100, 5, 5


def _preview(data: object, limit: int = 120) -> str:
    if isinstance(data, (bytes, str)):
        text = repr(data[:limit])
        return text if len(data) <= limit else f"{text}... ({len(data)} chars)"
    try:
        text = _PREVIEW.repr(data)
    except RecursionError:  # pragma: no cover - reprlib bounds the depth already
        text = f"<{type(data).__name__}>"
    return text[:limit]


@attrs.define
class DecodeStats:
    """Counters a :class:`Decoder` keeps (read them through the connection's ``stats()``)."""

    frames: int = 0
    events: int = 0
    decode_errors: int = 0
    unknown_events: int = 0


class Decoder:
    """Turns frames of one market into events. Never raises on hostile input.

    A frame that is not JSON, not UTF-8, too deeply nested, or not an array/object yields one
    ``StatusMessage(status="decode_error")``; a non-object element yields one such status in
    place of that element; an object with an unknown or missing ``ev`` yields an
    :class:`~massive_rt.UnknownEvent` (logged once per code). A bare object instead of an array
    is decoded as a one-element array. Not thread-safe: one decoder per consuming thread.

    With msgspec installed, frames go through its struct decoder first (C speed, no dicts) and
    only the frames it refuses take the dict path; the events are the same either way.

    Args:
        market: the market whose schemas apply.
        connection: name stamped on every event.
        loads: JSON decoder of the dict path (``json.loads`` or a compatible faster one).
        use_msgspec: try the msgspec struct decoder first when msgspec is importable.
        marks: keep, per event type and symbol, the last event decoded in it (its ``by_ev``
            must hold a dict for every ``ev`` of the market).
        accelerated: build the struct path's events with the compiled accelerator
            (:mod:`massive_rt.speedups`); None: whenever it is active; False: never (same events).
    """

    def __init__(
        self,
        market: Market | str,
        connection: str = "",
        loads: Callable[[Any], Any] = json.loads,
        *,
        use_msgspec: bool = True,
        marks: DeliveryMarks | None = None,
        accelerated: bool | None = None,
    ) -> None:
        self.market: Market = Market.coerce(market, "market")
        self.connection = connection
        self._loads = loads
        events = MARKET_EVENTS[self.market]
        by_ev = None if marks is None else marks.by_ev
        self._structs = struct_frame_decoder(events, by_ev, accelerated=accelerated) if use_msgspec else None
        if by_ev is None:
            self._makers: dict[str, Maker] = {ev: _MAKERS[cls] for ev, cls in events.items()}
        else:
            self._makers = {ev: bind_marks(_MARKING_MAKERS[cls], by_ev[ev]) for ev, cls in events.items()}
        self._makers["status"] = self._make_status
        self._unknown_logged: set[object] = set()
        self.stats = DecodeStats()
        #: Called with each status object found among a frame's data (not the frames the reader
        #: already took apart): the connection acts on acks and refusals that arrive that way.
        self.on_server_status: Callable[[dict[str, Any]], None] | None = None

    def _make_status(self, d: dict[str, Any], received_at_ns: int, connection: str) -> Event:
        hook = self.on_server_status
        if hook is not None:
            hook(d)
        return _make_status(d, received_at_ns, connection)

    def decode(self, data: bytes | str, received_at_ns: int = 0) -> list[Event]:
        """Decode one frame into events, in wire order."""
        self.stats.frames += 1
        if self._structs is not None:
            events = self._structs(data, received_at_ns, self.connection)
            if events is not None:
                self.stats.events += len(events)
                return events
        return self._decode_tolerant(data, received_at_ns)

    def decode_frames(self, frames: list[bytes], received_at_ns: int = 0) -> list[Event]:
        """Decode the frames of one read into one list of events, in wire order. Each frame is
        decoded on its own (a malformed one yields its ``decode_error`` and nothing else)."""
        stats = self.stats
        stats.frames += len(frames)
        structs = self._structs
        if structs is None:
            out: list[Event] = []
            for frame in frames:
                out += self._decode_tolerant(frame, received_at_ns)
            return out
        connection = self.connection
        out = []
        for frame in frames:
            events = structs(frame, received_at_ns, connection)
            if events is None:
                out += self._decode_tolerant(frame, received_at_ns)
            else:
                stats.events += len(events)
                out += events
        return out

    def _decode_tolerant(self, data: bytes | str, received_at_ns: int) -> list[Event]:
        """The dict path: decodes what it can and reports what it cannot."""
        try:
            decoded = self._loads(data)
        except (ValueError, TypeError, RecursionError) as exc:
            # ValueError covers JSONDecodeError and UnicodeDecodeError (invalid UTF-8).
            return [
                self._decode_error(f"frame is not valid JSON ({type(exc).__name__}): {_preview(data)}", received_at_ns)
            ]
        if type(decoded) is not list:
            if type(decoded) is dict:
                decoded = [decoded]
            else:
                return [self._decode_error(f"frame is not a JSON array or object: {_preview(data)}", received_at_ns)]
        return self._decode_list(decoded, received_at_ns)

    def decode_objects(self, objects: list[Any], received_at_ns: int = 0) -> list[Event]:
        """Turn already-parsed JSON objects (one frame's worth) into events."""
        self.stats.frames += 1
        return self._decode_list(objects, received_at_ns)

    def _decode_list(self, decoded: list[Any], received_at_ns: int) -> list[Event]:
        stats = self.stats
        makers = self._makers
        connection = self.connection
        out: list[Event] = []
        append = out.append
        for item in decoded:
            try:
                maker = makers[item["ev"]]
            except (KeyError, TypeError, IndexError):
                append(self._odd_item(item, received_at_ns))
                continue
            append(maker(item, received_at_ns, connection))
        stats.events += len(out)
        return out

    def _odd_item(self, item: Any, received_at_ns: int) -> Event:
        if type(item) is not dict:
            return self._decode_error(f"array element is not an object: {_preview(item)}", received_at_ns)
        ev = item.get("ev")
        self.stats.unknown_events += 1
        key = ev if isinstance(ev, str) else f"<{type(ev).__name__}>"
        if key not in self._unknown_logged and len(self._unknown_logged) < 1000:
            self._unknown_logged.add(key)
            logger.warning(
                "[%s] unknown event type %r for market %s: delivered as UnknownEvent (logged once per type)",
                self.connection, ev, self.market.value,
            )  # fmt: skip
        return UnknownEvent(
            event_type=ev if isinstance(ev, str) else None, data=item, received_at_ns=received_at_ns,
            connection=self.connection,
        )  # fmt: skip

    def _decode_error(self, message: str, received_at_ns: int) -> StatusMessage:
        self.stats.decode_errors += 1
        return StatusMessage(
            status="decode_error", message=message, received_at_ns=received_at_ns, connection=self.connection
        )
