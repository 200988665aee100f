"""Typed events: one frozen, slotted attrs class per Massive schema.

Attribute names follow the official ``massive`` client (``EquityTrade.price``,
``EquityQuote.bid_price``, ``EquityAgg.end_timestamp`` ...) so handler code ports over
unchanged. Every event additionally carries ``received_at_ns`` (wall-clock ``time.time_ns()``
when its frame came off the socket) and ``connection`` (the name of the connection).

Like the official client, values are not coerced: a field holds what the server's JSON held,
and a field the server omitted is ``None``. ``WIRE`` on each class maps wire keys to
attributes; :func:`to_wire` turns an event back into its wire dict.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

import attrs

__all__ = [
    "EVENT_CLASSES",
    "CryptoQuote",
    "CryptoTrade",
    "CurrencyAgg",
    "EquityAgg",
    "EquityQuote",
    "EquityTrade",
    "Event",
    "FairMarketValue",
    "ForexQuote",
    "FuturesAgg",
    "FuturesQuote",
    "FuturesTrade",
    "Imbalance",
    "LIVE",
    "REST",
    "IndexValue",
    "LaunchpadValue",
    "Level2Book",
    "LimitUpLimitDown",
    "MarketEvent",
    "RawFrame",
    "StatusMessage",
    "SymbolMark",
    "UnknownEvent",
    "to_wire",
    "with_origin",
]

_E = TypeVar("_E", bound="Event")

#: :attr:`Event.origin` of an event read from a live connection (or a source replaying one).
LIVE = "live"
#: :attr:`Event.origin` of an event converted from a REST row (backfill, snapshot).
REST = "rest"


class _Origin:
    """Holds the one slot outside attrs' fields: the origin, written only by :func:`with_origin`.

    The live decoders never store it (an unset slot reads as :data:`LIVE` through
    :attr:`Event.origin`), so marking backfilled events costs the hot path nothing.
    """

    __slots__ = ("_origin",)


# The two abstract bases are not frozen themselves (every concrete event class is): that lets
# the decoder fill a fresh instance through plain slot stores before it becomes immutable
# (see protocol._compile_maker), about twice as fast as going through the frozen __setattr__.
@attrs.define(kw_only=True)
class Event(_Origin):
    """Base of everything a connection delivers (abstract; every concrete event is frozen).

    Attributes:
        received_at_ns: ``time.time_ns()`` when the frame carrying this event was read.
        connection: name of the connection that read it.
    """

    received_at_ns: int = 0
    connection: str = ""

    @property
    def origin(self) -> str:
        """Where the event came from: :data:`LIVE` (``"live"``) or :data:`REST` (``"rest"``, backfilled).

        Not an attrs field: it takes no part in ``==``, ``repr``, :func:`attrs.evolve` or pickling
        (a copy made that way reads ``"live"``), so a backfilled trade equals its live twin.
        """
        try:
            return self._origin  # type: ignore[attr-defined,no-any-return]
        except AttributeError:
            return LIVE


@attrs.define(kw_only=True)
class MarketEvent(Event):
    """Base of the market-data events (abstract); ``WIRE`` maps wire keys to attribute names."""

    WIRE: ClassVar[tuple[tuple[str, str], ...]] = ()
    event_type: str | None = None


@attrs.frozen(kw_only=True)
class EquityTrade(MarketEvent):
    """Trade of a stock or an option contract (``T``)."""

    WIRE = (("ev", "event_type"), ("sym", "symbol"), ("x", "exchange"), ("i", "id"), ("z", "tape"), ("p", "price"),
            ("s", "size"), ("ds", "fractional_shares"), ("c", "conditions"), ("t", "timestamp"),
            ("q", "sequence_number"), ("trfi", "trf_id"), ("trft", "trf_timestamp"))  # fmt: skip
    symbol: str | None = None
    exchange: int | None = None
    id: str | None = None
    tape: int | None = None
    price: float | None = None
    size: int | None = None
    fractional_shares: str | None = None
    conditions: list[int] | None = None
    timestamp: int | None = None
    sequence_number: int | None = None
    trf_id: int | None = None
    trf_timestamp: int | None = None


@attrs.frozen(kw_only=True)
class EquityQuote(MarketEvent):
    """NBBO quote of a stock or an option contract (``Q``)."""

    WIRE = (("ev", "event_type"), ("sym", "symbol"), ("bx", "bid_exchange_id"), ("bp", "bid_price"),
            ("bs", "bid_size"), ("ax", "ask_exchange_id"), ("ap", "ask_price"), ("as", "ask_size"),
            ("c", "condition"), ("i", "indicators"), ("t", "timestamp"), ("z", "tape"),
            ("q", "sequence_number"), ("trfi", "trf_id"), ("trft", "trf_timestamp"))  # fmt: skip
    symbol: str | None = None
    bid_exchange_id: int | None = None
    bid_price: float | None = None
    bid_size: int | None = None
    ask_exchange_id: int | None = None
    ask_price: float | None = None
    ask_size: int | None = None
    condition: int | None = None
    indicators: list[int] | None = None
    timestamp: int | None = None
    tape: int | None = None
    sequence_number: int | None = None
    trf_id: int | None = None
    trf_timestamp: int | None = None


@attrs.frozen(kw_only=True)
class EquityAgg(MarketEvent):
    """Per-second (``A``) or per-minute (``AM``) aggregate of a stock, option or index."""

    WIRE = (("ev", "event_type"), ("sym", "symbol"), ("v", "volume"), ("av", "accumulated_volume"),
            ("op", "official_open_price"), ("vw", "vwap"), ("o", "open"), ("c", "close"), ("h", "high"),
            ("l", "low"), ("a", "aggregate_vwap"), ("z", "average_size"), ("s", "start_timestamp"),
            ("e", "end_timestamp"), ("otc", "otc"), ("dv", "fractional_volume"),
            ("dav", "fractional_accumulated_volume"))  # fmt: skip
    symbol: str | None = None
    volume: float | None = None
    accumulated_volume: float | None = None
    official_open_price: float | None = None
    vwap: float | None = None
    open: float | None = None
    close: float | None = None
    high: float | None = None
    low: float | None = None
    aggregate_vwap: float | None = None
    average_size: float | None = None
    start_timestamp: int | None = None
    end_timestamp: int | None = None
    otc: bool | None = None
    fractional_volume: str | None = None
    fractional_accumulated_volume: str | None = None


@attrs.frozen(kw_only=True)
class LimitUpLimitDown(MarketEvent):
    """Limit-up/limit-down price band of a stock (``LULD``). Its symbol key on the wire is ``T``."""

    WIRE = (("ev", "event_type"), ("T", "symbol"), ("h", "high_price"), ("l", "low_price"), ("i", "indicators"),
            ("z", "tape"), ("t", "timestamp"), ("q", "sequence_number"))  # fmt: skip
    symbol: str | None = None
    high_price: float | None = None
    low_price: float | None = None
    indicators: list[int] | None = None
    tape: int | None = None
    timestamp: int | None = None
    sequence_number: int | None = None


@attrs.frozen(kw_only=True)
class Imbalance(MarketEvent):
    """Net order imbalance of a stock (``NOI``)."""

    WIRE = (("ev", "event_type"), ("T", "symbol"), ("t", "time_stamp"), ("at", "auction_time"),
            ("a", "auction_type"), ("i", "symbol_sequence"), ("x", "exchange_id"), ("o", "imbalance_quantity"),
            ("p", "paired_quantity"), ("b", "book_clearing_price"))  # fmt: skip
    symbol: str | None = None
    time_stamp: int | None = None
    auction_time: int | None = None
    auction_type: str | None = None
    symbol_sequence: int | None = None
    exchange_id: int | None = None
    imbalance_quantity: int | None = None
    paired_quantity: int | None = None
    book_clearing_price: float | None = None


@attrs.frozen(kw_only=True)
class FairMarketValue(MarketEvent):
    """Fair market value (``FMV``, business feeds) of a stock, option, currency pair or crypto pair."""

    WIRE = (("ev", "event_type"), ("fmv", "fmv"), ("sym", "ticker"), ("t", "timestamp"))
    fmv: float | None = None
    ticker: str | None = None
    timestamp: int | None = None


@attrs.frozen(kw_only=True)
class LaunchpadValue(MarketEvent):
    """Launchpad value (``LV``, launchpad feed)."""

    WIRE = (("ev", "event_type"), ("val", "value"), ("sym", "symbol"), ("t", "timestamp"))
    value: float | None = None
    symbol: str | None = None
    timestamp: int | None = None


@attrs.frozen(kw_only=True)
class IndexValue(MarketEvent):
    """Value of an index (``V``). Its ticker key on the wire is ``T``."""

    WIRE = (("ev", "event_type"), ("val", "value"), ("T", "ticker"), ("t", "timestamp"))
    value: float | None = None
    ticker: str | None = None
    timestamp: int | None = None


@attrs.frozen(kw_only=True)
class ForexQuote(MarketEvent):
    """Quote of a currency pair (``C``)."""

    WIRE = (("ev", "event_type"), ("p", "pair"), ("x", "exchange_id"), ("a", "ask_price"), ("b", "bid_price"),
            ("t", "timestamp"))  # fmt: skip
    pair: str | None = None
    exchange_id: int | None = None
    ask_price: float | None = None
    bid_price: float | None = None
    timestamp: int | None = None


@attrs.frozen(kw_only=True)
class CurrencyAgg(MarketEvent):
    """Aggregate of a currency pair (``CA``/``CAS``) or crypto pair (``XA``/``XAS``)."""

    WIRE = (("ev", "event_type"), ("pair", "pair"), ("o", "open"), ("c", "close"), ("h", "high"), ("l", "low"),
            ("v", "volume"), ("vw", "vwap"), ("s", "start_timestamp"), ("e", "end_timestamp"),
            ("z", "avg_trade_size"))  # fmt: skip
    pair: str | None = None
    open: float | None = None
    close: float | None = None
    high: float | None = None
    low: float | None = None
    volume: float | None = None
    vwap: float | None = None
    start_timestamp: int | None = None
    end_timestamp: int | None = None
    avg_trade_size: float | None = None


@attrs.frozen(kw_only=True)
class CryptoTrade(MarketEvent):
    """Trade of a crypto pair (``XT``)."""

    WIRE = (("ev", "event_type"), ("pair", "pair"), ("x", "exchange"), ("i", "id"), ("p", "price"), ("s", "size"),
            ("c", "conditions"), ("t", "timestamp"), ("r", "received_timestamp"))  # fmt: skip
    pair: str | None = None
    exchange: int | None = None
    id: str | None = None
    price: float | None = None
    size: float | None = None
    conditions: list[int] | None = None
    timestamp: int | None = None
    received_timestamp: int | None = None


@attrs.frozen(kw_only=True)
class CryptoQuote(MarketEvent):
    """Quote of a crypto pair (``XQ``)."""

    WIRE = (("ev", "event_type"), ("pair", "pair"), ("bp", "bid_price"), ("bs", "bid_size"), ("ap", "ask_price"),
            ("as", "ask_size"), ("t", "timestamp"), ("x", "exchange_id"), ("r", "received_timestamp"))  # fmt: skip
    pair: str | None = None
    bid_price: float | None = None
    bid_size: float | None = None
    ask_price: float | None = None
    ask_size: float | None = None
    timestamp: int | None = None
    exchange_id: int | None = None
    received_timestamp: int | None = None


@attrs.frozen(kw_only=True)
class Level2Book(MarketEvent):
    """Level-2 book snapshot of a crypto pair (``XL2``): lists of ``[price, size]``."""

    WIRE = (("ev", "event_type"), ("pair", "pair"), ("b", "bid_prices"), ("a", "ask_prices"), ("t", "timestamp"),
            ("x", "exchange_id"), ("r", "received_timestamp"))  # fmt: skip
    pair: str | None = None
    bid_prices: list[list[float]] | None = None
    ask_prices: list[list[float]] | None = None
    timestamp: int | None = None
    exchange_id: int | None = None
    received_timestamp: int | None = None


@attrs.frozen(kw_only=True)
class FuturesTrade(MarketEvent):
    """Trade of a futures contract (``T`` on the futures markets)."""

    WIRE = (("ev", "event_type"), ("sym", "symbol"), ("p", "price"), ("s", "size"), ("t", "timestamp"),
            ("q", "sequence_number"))  # fmt: skip
    symbol: str | None = None
    price: float | None = None
    size: int | None = None
    timestamp: int | None = None
    sequence_number: int | None = None


@attrs.frozen(kw_only=True)
class FuturesQuote(MarketEvent):
    """Quote of a futures contract (``Q`` on the futures markets)."""

    WIRE = (("ev", "event_type"), ("sym", "symbol"), ("bp", "bid_price"), ("bs", "bid_size"),
            ("bt", "bid_timestamp"), ("ap", "ask_price"), ("as", "ask_size"), ("at", "ask_timestamp"),
            ("t", "sip_timestamp"))  # fmt: skip
    symbol: str | None = None
    bid_price: float | None = None
    bid_size: int | None = None
    bid_timestamp: int | None = None
    ask_price: float | None = None
    ask_size: int | None = None
    ask_timestamp: int | None = None
    sip_timestamp: int | None = None


@attrs.frozen(kw_only=True)
class FuturesAgg(MarketEvent):
    """Aggregate of a futures contract (``A``/``AM`` on the futures markets)."""

    WIRE = (("ev", "event_type"), ("sym", "symbol"), ("v", "volume"), ("dv", "total_value"), ("o", "open"),
            ("c", "close"), ("h", "high"), ("l", "low"), ("n", "transactions"), ("s", "start_timestamp"),
            ("e", "end_timestamp"))  # fmt: skip
    symbol: str | None = None
    volume: int | None = None
    total_value: float | None = None
    open: float | None = None
    close: float | None = None
    high: float | None = None
    low: float | None = None
    transactions: int | None = None
    start_timestamp: int | None = None
    end_timestamp: int | None = None


@attrs.frozen(kw_only=True)
class UnknownEvent(Event):
    """An object whose ``ev`` this library does not model for the market (or that has no ``ev``).

    Delivered, never dropped, so a new Massive channel is visible the day it appears.

    Attributes:
        event_type: the ``ev`` value as received (``None`` when the object had none).
        data: the decoded JSON value, untouched.
    """

    event_type: str | None = None
    data: Any = None


@attrs.frozen(kw_only=True)
class SymbolMark:
    """The last event of one symbol and event type that a connection delivered before a disconnect.

    Events of that symbol sent later than this mark may have been lost in flight: backfill from
    ``timestamp`` (and ``sequence``) to the gap's ``gap_end_ns``. Which fields are read per event
    class is in docs/protocol.md ("Gap windows").

    Attributes:
        symbol: the symbol (``sym``, ``pair``, ``T`` or ``p`` on the wire).
        ev: the event type (``T``, ``Q``, ``AM`` ...): trades and quotes of a symbol have marks of their own.
        timestamp: the exchange timestamp of that event as the server sent it (``t``; ``e``, the end, for
            aggregates), in the feed's unit (milliseconds on Massive's stocks feed).
        sequence: its sequence number (``q``; ``i`` for imbalances), None for event types without one.
        received_at_ns: wall-clock ns when it was read from the socket.
    """

    symbol: Any
    ev: str
    timestamp: Any = None
    sequence: Any = None
    received_at_ns: int = 0


@attrs.frozen(kw_only=True)
class StatusMessage(Event):
    """A status: from the server (``connected``, ``max_connections``, ...) or about the connection.

    Local statuses use these ``status`` codes: ``state`` (a state transition; ``state`` holds the
    new one), ``disconnected`` (``gap_start_ns`` = receive time of the last data before the drop),
    ``gap`` (first data after a reconnect; ``gap_start_ns``/``gap_end_ns`` bound the hole to
    backfill), ``dropped`` (``dropped`` events were discarded by the overflow policy),
    ``decode_error`` (a frame or object could not be decoded), ``subscription_error``
    (``channels`` refused, one refusal per channel; ``error`` is a
    :class:`~massive_rt.SubscriptionError`), ``subscription_unconfirmed`` (no ack within 5 s and
    no refusal to account for them) and ``subscription_confirmed`` (their ack came later), ``failed``
    (terminal; ``error`` says why), ``limit_refused`` (the connection limit refused this connection
    at connect) or ``evicted`` (it had streamed past ``reset_after`` when another connection on the
    key took its slot; ``error`` is a :class:`~massive_rt.ConnectionLimitError` either way),
    ``limit_cooldown`` (waiting to retry, as ``on_limit`` says) and, from an adapter,
    ``adapter_failed`` (every connection of its source failed for good). Server statuses keep
    the server's string. Every status has a message.

    Attributes:
        status: the status code.
        message: human-readable text (the server's ``message`` for server statuses).
        state: the connection state after this status, when it is a transition (for
            ``adapter_failed``: :attr:`AdapterState.FAILED <massive_rt.AdapterState>`).
        error: the exception describing a failure, if any.
        channels: channels concerned (acks, refusals).
        dropped: number of events discarded (``dropped`` statuses).
        gap_start_ns: wall-clock ns of the last data received before a disconnect.
        gap_end_ns: wall-clock ns of the first data received after the reconnect.
        last_seen: on ``disconnected`` and ``gap``: per symbol and event type delivered on the
            connection before the disconnect, the last one (:class:`SymbolMark`), most recently
            received first, at most ``last_seen_limit`` of them (empty with ``raw=True``: nothing
            is decoded).
        last_seen_omitted: how many more symbols were delivered than ``last_seen`` lists.
        last_seen_omitted_oldest: the oldest exchange timestamp among those omitted (backfill
            them from there), None when none was omitted.
        from_server: True when the server sent it.
    """

    event_type: str = "status"
    status: str = ""
    message: str = ""
    state: Any = None
    error: BaseException | None = None
    channels: tuple[str, ...] = ()
    dropped: int = 0
    gap_start_ns: int | None = None
    gap_end_ns: int | None = None
    last_seen: tuple[SymbolMark, ...] = ()
    last_seen_omitted: int = 0
    last_seen_omitted_oldest: Any = None
    from_server: bool = False


@attrs.frozen(kw_only=True)
class RawFrame(Event):
    """A data frame exactly as received, delivered instead of typed events when ``raw=True``."""

    event_type: str = "raw"
    data: bytes | str = b""


EVENT_CLASSES: tuple[type[MarketEvent], ...] = (
    EquityTrade, EquityQuote, EquityAgg, LimitUpLimitDown, Imbalance, FairMarketValue, LaunchpadValue, IndexValue,
    ForexQuote, CurrencyAgg, CryptoTrade, CryptoQuote, Level2Book, FuturesTrade, FuturesQuote, FuturesAgg,
)  # fmt: skip


def with_origin(event: _E, origin: str) -> _E:
    """Mark ``event`` (a fresh event nobody else holds yet) as coming from ``origin``; returns it.

    For converters that build events outside the live path (``massive_rt.rest``). Events are
    immutable once handed out: call this only on an event you have just built.
    """
    object.__setattr__(event, "_origin", origin)
    return event


def to_wire(event: MarketEvent) -> dict[str, Any]:
    """Return the wire dict of ``event`` (only the keys whose value is not ``None``)."""
    out: dict[str, Any] = {}
    for key, attr in type(event).WIRE:
        value = getattr(event, attr)
        if value is not None:
            out[key] = value
    return out
