"""Synthetic market data: realistic, reproducible wire events with no API key.

:class:`SyntheticMarket` simulates a small market and returns its events as the wire dicts
Massive sends (``{"ev": "T", "sym": "AAPL", ...}``), so they can be published by the mock
server, JSON-encoded into frames, or decoded with :class:`massive_rt.protocol.Decoder`.

The model, per symbol:

* an efficient price following a geometric random walk, with a volatility drawn once per
  symbol from the seeded generator and a realistic starting price (a small table of
  well-known tickers, otherwise a plausible seeded price);
* an NBBO re-quoted around that price on every quote event: ``bid < ask`` always, a spread
  of a few ticks, sizes in round lots, exchange ids from the real set;
* trades at the current bid or ask (sometimes at the midpoint, off-exchange), with
  heavy-tailed sizes (odd lots, round lots, occasional blocks) and a few sale conditions;
* per-second and per-minute aggregates built from exactly those trades and emitted when
  their window closes (only windows that had trades, as Massive does).

Simplifications worth knowing: every trade counts towards the aggregates (Massive's
condition-based eligibility rules are not modelled), the ``op`` official open is the first
trade of the trading day, and the trading day of stocks rolls at 09:00 UTC (04:00 New York,
standard time). Crypto trade ids are sent as strings, as the model's ``id: str`` says.

Everything random comes from the instance's own :class:`random.Random`; the global
:mod:`random` state is never read or changed (the legacy generator re-seeded it).
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Final, TypeVar

import attrs

from .._validate import field_error
from ..enums import Market

__all__ = [
    "DEFAULT_CRYPTO",
    "DEFAULT_STOCKS",
    "SESSION_START_MS",
    "SymbolState",
    "SyntheticMarket",
    "wall_clock_ms",
]

logger = logging.getLogger(__name__)

#: A handful of liquid US stocks and ETFs: the default universe of the ``stocks`` market.
DEFAULT_STOCKS: Final[tuple[str, ...]] = ("AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "SPY")
#: A handful of liquid crypto pairs: the default universe of the ``crypto`` market.
DEFAULT_CRYPTO: Final[tuple[str, ...]] = ("BTC-USD", "ETH-USD", "SOL-USD", "DOGE-USD")

#: Where the default simulated clock starts: 2025-01-06 09:30:00 New York (14:30 UTC), a Monday open.
SESSION_START_MS: Final[int] = 1_736_173_800_000


def wall_clock_ms() -> int:
    """The wall clock in Unix milliseconds: a ``clock`` (or ``start_ms``) that makes the synthetic
    events' times the present, as a live feed's are."""
    return time.time_ns() // 1_000_000


_SECOND: Final = 1_000
_MINUTE: Final = 60_000
_DAY: Final = 86_400_000
_STOCK_DAY_ROLL: Final = 9 * 3_600_000  # 04:00 New York (EST) = 09:00 UTC
_SATOSHI: Final = 100_000_000  # crypto sizes are kept as integer units of 1e-8
_SECONDS_PER_YEAR: Final = {Market.STOCKS: 252 * 23_400, Market.CRYPTO: 365 * 86_400}

# Well-known tickers: (start price, annualised volatility, tape, relative activity).
# Tapes: 1 = NYSE-listed, 2 = NYSE American/Arca-listed, 3 = Nasdaq-listed.
_KNOWN_STOCKS: Final[dict[str, tuple[float, float, int, float]]] = {
    "AAPL": (230.0, 0.25, 3, 3.0), "MSFT": (420.0, 0.24, 3, 2.0), "NVDA": (135.0, 0.50, 3, 4.0),
    "AMZN": (200.0, 0.32, 3, 2.5), "GOOGL": (175.0, 0.30, 3, 2.0), "GOOG": (176.0, 0.30, 3, 1.2),
    "META": (580.0, 0.38, 3, 2.0), "TSLA": (250.0, 0.60, 3, 4.0), "SPY": (590.0, 0.15, 2, 5.0),
    "QQQ": (510.0, 0.20, 3, 3.5), "IWM": (225.0, 0.22, 2, 1.5), "DIA": (430.0, 0.15, 2, 0.6),
    "BRK.B": (460.0, 0.18, 1, 0.8), "JPM": (240.0, 0.22, 1, 1.2), "V": (310.0, 0.20, 1, 0.8),
    "AMD": (140.0, 0.50, 3, 2.0), "NFLX": (880.0, 0.35, 3, 0.8), "AVGO": (230.0, 0.45, 3, 1.5),
    "XOM": (110.0, 0.24, 1, 0.9), "WMT": (90.0, 0.18, 1, 0.9), "KO": (62.0, 0.14, 1, 0.6),
    "PLTR": (75.0, 0.70, 3, 2.5), "INTC": (20.0, 0.45, 3, 1.5), "F": (10.0, 0.35, 1, 1.2),
}  # fmt: skip
# Well-known pairs: (start price, annualised volatility, relative activity).
_KNOWN_CRYPTO: Final[dict[str, tuple[float, float, float]]] = {
    "BTC-USD": (95_000.0, 0.55, 5.0), "ETH-USD": (3_300.0, 0.70, 4.0), "SOL-USD": (190.0, 0.90, 2.0),
    "DOGE-USD": (0.32, 1.00, 1.5), "XRP-USD": (2.2, 0.90, 1.5), "ADA-USD": (0.9, 0.95, 1.0),
    "LTC-USD": (100.0, 0.80, 0.8), "LINK-USD": (20.0, 0.95, 0.8), "AVAX-USD": (35.0, 1.00, 0.8),
}  # fmt: skip

_T = TypeVar("_T")


def _weighted_table(weights: dict[_T, float], bits: int) -> list[_T]:
    """A list of ``2**bits`` items, each repeated in proportion to its weight (largest remainder).

    Indexing it with ``getrandbits(bits)`` draws an item with (nearly) those weights in one
    cheap call, which is what keeps the generator fast.
    """
    size = 1 << bits
    total = sum(weights.values())
    exact = {item: weight * size / total for item, weight in weights.items()}
    counts = {item: int(share) for item, share in exact.items()}
    by_remainder = sorted(exact, key=lambda item: exact[item] - counts[item], reverse=True)
    for item in by_remainder[: size - sum(counts.values())]:
        counts[item] += 1
    return [item for item, count in counts.items() for _ in range(count)]


# Massive stock exchange ids. 4 is FINRA's TRFs (off-exchange prints, over a third of US volume); it never quotes.
_TRADE_EXCHANGES: Final = _weighted_table(
    {4: 36, 12: 14, 11: 9, 10: 7, 8: 6, 19: 6, 21: 5, 15: 3, 7: 3, 18: 2, 17: 2, 20: 2, 2: 2, 9: 1, 1: 1, 3: 1}, 8
)  # fmt: skip
_QUOTE_EXCHANGES: Final = _weighted_table(
    {12: 22, 11: 14, 10: 10, 8: 10, 19: 10, 21: 9, 15: 6, 7: 5, 18: 4, 17: 3, 20: 3, 2: 2, 9: 1, 1: 1}, 6
)  # fmt: skip
_TRF_IDS: Final = (201, 202, 202, 203)  # FINRA NYSE TRF, Nasdaq TRF Carteret (busiest), Nasdaq TRF Chicago
# Massive crypto exchange ids: 1 Coinbase, 2 Bitfinex, 6 Bitstamp, 10 HitBTC, 23 Kraken.
_CRYPTO_EXCHANGES: Final = _weighted_table({1: 40, 23: 25, 6: 15, 2: 12, 10: 8}, 6)
# Quote sizes in round lots (1 = 100 shares), mostly small with a tail.
_LOTS: Final = (1,) * 9 + (2,) * 6 + (3,) * 4 + (4,) * 3 + (5,) * 2 + (6, 8, 10, 12, 15, 20, 30, 50)
# Extra ticks of spread on top of a symbol's base spread (usually none).
_SPREAD_EXTRA: Final = (0,) * 11 + (1, 1, 1, 2, 3)

_DEFAULT_CHANNELS: Final = {Market.STOCKS: ("T", "Q", "A", "AM"), Market.CRYPTO: ("XT", "XQ", "XA")}
_KNOWN_CHANNELS: Final = {Market.STOCKS: ("T", "Q", "A", "AM"), Market.CRYPTO: ("XT", "XQ", "XA", "XAS")}
_DEFAULT_SYMBOLS: Final = {Market.STOCKS: DEFAULT_STOCKS, Market.CRYPTO: DEFAULT_CRYPTO}
_QUOTE_SHARE: Final = {Market.STOCKS: 0.78, Market.CRYPTO: 0.75}  # the rest of the ticks are trades


@attrs.frozen(kw_only=True)
class SymbolState:
    """A point-in-time view of one simulated symbol (see :meth:`SyntheticMarket.snapshot`).

    Attributes:
        symbol: the ticker or pair.
        bid: current best bid price.
        ask: current best ask price.
        last: price of the last trade, ``None`` before the first one.
        day_open: first trade price of the trading day, ``None`` before it.
        day_volume: volume traded so far today (shares, or coins for crypto).
        day_vwap: today's volume-weighted average price, ``None`` before the first trade.
    """

    symbol: str
    bid: float
    ask: float
    last: float | None
    day_open: float | None
    day_volume: float
    day_vwap: float | None


class _Sym:
    """Mutable state of one symbol. Prices are integer ticks; crypto sizes are integer 1e-8 units."""

    __slots__ = (
        "ask",
        "bid",
        "decimals",
        "dopen",
        "dpv",
        "dv",
        "floor",
        "mc",
        "mh",
        "mid",
        "ml",
        "mn",
        "mo",
        "mpv",
        "mv",
        "name",
        "odd",
        "quote_sizes",
        "sc",
        "scale",
        "seq",
        "sh",
        "sig",
        "sl",
        "sn",
        "so",
        "spread",
        "spv",
        "sv",
        "tape",
        "tid",
        "unit",
        "vol",
        "weight",
    )

    def __init__(self, name: str, price: float, decimals: int, vol: float, tape: int) -> None:
        self.name = name
        self.decimals = decimals
        self.scale = 10**decimals  # ticks per unit of currency
        self.tape = tape
        self.vol = vol
        self.sig = 0.0  # width of the uniform log-step per quote, set once rates are known
        self.mid = price * self.scale  # efficient price, in (fractional) ticks
        self.spread = 1  # base spread in ticks
        self.floor = 10.0  # the walk never goes below this many ticks, so prices stay > 0
        self.weight = 1.0  # relative activity: share of the ticks this symbol gets
        self.odd = 0.2  # share of odd-lot trades (stocks)
        self.unit = 1  # typical quote size in 1e-8 units (crypto)
        self.quote_sizes: tuple[float, ...] = ()  # 256 crypto quote sizes to draw from
        self.bid = 0
        self.ask = 0
        self.seq = 0
        self.tid = 0
        # Current second (s*), current minute (m*) and day (d*) accumulators: open, high, low,
        # close, volume, price*volume (ticks * units, exact integers) and trade count.
        self.so = self.sh = self.sl = self.sc = self.sv = self.spv = self.sn = 0
        self.mo = self.mh = self.ml = self.mc = self.mv = self.mpv = self.mn = 0
        self.dopen = self.dv = self.dpv = 0

    def requote(self, extra: int) -> None:
        """Place the NBBO around the efficient price with ``extra`` ticks on top of the base spread."""
        spread = self.spread + extra
        self.bid = int(self.mid) - (spread >> 1)
        self.ask = self.bid + spread


def _check_symbols(symbols: object, market: Market) -> tuple[str, ...]:
    if isinstance(symbols, str):
        symbols = (symbols,)
    if not isinstance(symbols, Iterable):
        raise field_error("symbols", f"expected a sequence of strings, got {symbols!r}")
    seen: dict[str, None] = {}
    for symbol in symbols:
        if not isinstance(symbol, str) or not symbol or symbol != symbol.strip():
            raise field_error("symbols", f"{symbol!r} is not a non-empty string without surrounding spaces")
        if any(c.isspace() or c in ",*" for c in symbol):
            raise field_error("symbols", f"{symbol!r} contains whitespace, a comma or '*'")
        if market is Market.CRYPTO:
            base, dash, quote = symbol.partition("-")
            if not (dash and base and quote and base.isalnum() and quote.isalnum()):
                raise field_error("symbols", f"crypto pair {symbol!r} is not of the form 'BASE-QUOTE' (e.g. 'BTC-USD')")
        seen[symbol] = None
    if not seen:
        raise field_error("symbols", "at least one symbol is required")
    return tuple(seen)


def _check_channels(channels: object, market: Market) -> frozenset[str]:
    if isinstance(channels, str):
        channels = (channels,)
    if not isinstance(channels, Iterable):
        raise field_error("channels", f"expected channel prefixes such as 'T' or 'AM', got {channels!r}")
    known = _KNOWN_CHANNELS[market]
    wanted: set[str] = set()
    for channel in channels:
        prefix = channel.strip().upper() if isinstance(channel, str) else channel
        if prefix not in known:
            raise field_error(
                "channels",
                f"{channel!r} is not a channel the synthetic {market.value} market produces ({', '.join(known)})",
            )
        wanted.add(prefix)
    if not wanted:
        raise field_error("channels", "at least one channel is required")
    return frozenset(wanted)


def _decimals(price: float, market: Market) -> int:
    """Quote decimals: cents for stocks at or above $1 (1/100 of a cent below), about 5 significant
    digits for crypto (cents for BTC/ETH/SOL, finer for cheap coins)."""
    if market is Market.STOCKS:
        return 2 if price >= 1.0 else 4
    return min(8, max(2, 4 - math.floor(math.log10(price))))


class SyntheticMarket:
    """A seeded simulation of a market's trades, NBBO quotes and aggregates, as wire dicts.

    The stream is a pure function of the arguments: the same seed and the same clock give the
    same events, however they are requested (``next_events(10)`` twice equals
    ``next_events(20)``). Not thread-safe: give each instance one owning thread.

    Args:
        symbols: tickers (``"AAPL"``, ``"BRK.B"``) or crypto pairs (``"BTC-USD"``); duplicates are
            dropped. Default: :data:`DEFAULT_STOCKS` or :data:`DEFAULT_CRYPTO`.
        market: ``"stocks"`` or ``"crypto"`` (a :class:`~massive_rt.Market` or its value).
        seed: seed of the instance's own generator; ``None`` draws one from the OS (read it back
            from :attr:`seed` to replay the stream).
        clock: returns the current time in Unix milliseconds; called once per simulated tick and
            never allowed to go backwards. Default: a simulated clock starting at ``start_ms``
            that advances with exponential gaps between ticks (``rate``), so the stream is
            deterministic. With a wall clock, bars appear only as real windows
            close, so a bars-only stream makes calls wait (busy) for real time to pass.
        channels: channel prefixes to emit: stocks ``T``, ``Q``, ``A``, ``AM``; crypto ``XT``,
            ``XQ``, ``XA``, ``XAS``. Default: every one but ``XAS``. The simulated market is the
            same whatever is emitted: a subset of channels gives exactly the matching part of the
            full stream.
        start_ms: where the default simulated clock starts, Unix milliseconds (ignored with a
            ``clock``). Default :data:`SESSION_START_MS`, a fixed 2025 market open, so a seeded
            stream is the same on every run; ``wall_clock_ms()`` starts it at the present.
        rate: mean trade + quote events per simulated second for an average symbol (busy
            tickers such as SPY get more, quiet ones less). Only the default clock uses it for
            time; it also scales per-tick volatility so that volatility per unit of time holds.

    Raises:
        ConfigurationError: naming the parameter (``symbols``, ``market``, ``seed``, ``clock``,
            ``channels``, ``rate`` or ``start_ms``) that is invalid.
    """

    def __init__(
        self,
        symbols: Sequence[str] | None = None,
        *,
        market: Market | str = Market.STOCKS,
        seed: int | None = None,
        clock: Callable[[], int] | None = None,
        channels: Iterable[str] | None = None,
        rate: float = 50.0,
        start_ms: int = SESSION_START_MS,
    ) -> None:
        resolved = Market.coerce(market, "market")
        if resolved not in _KNOWN_CHANNELS:
            raise field_error("market", f"{resolved.value!r} is not simulated; use 'stocks' or 'crypto'")
        self._market: Market = resolved
        self._symbols = _check_symbols(_DEFAULT_SYMBOLS[self._market] if symbols is None else symbols, self._market)
        self._channels = _check_channels(
            _DEFAULT_CHANNELS[self._market] if channels is None else channels, self._market
        )
        if seed is None:
            seed = int.from_bytes(os.urandom(8), "big")
        elif isinstance(seed, bool) or not isinstance(seed, int):
            raise field_error("seed", f"expected an int or None, got {seed!r}")
        if clock is not None and not callable(clock):
            raise field_error("clock", f"expected a callable returning Unix milliseconds, got {clock!r}")
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate < math.inf:
            raise field_error("rate", f"expected a positive, finite number of events per second, got {rate!r}")
        if isinstance(start_ms, bool) or not isinstance(start_ms, int) or start_ms < 0:
            raise field_error("start_ms", f"expected an int >= 0 (Unix milliseconds), got {start_ms!r}")
        self._seed: int = seed
        self._clock = clock
        self._rng = random.Random(seed)
        self._syms = [self._new_symbol(name) for name in self._symbols]
        self._by_name = {s.name: s for s in self._syms}
        weights = {s: s.weight for s in self._syms}
        mean_weight = sum(weights.values()) / len(weights)
        year = _SECONDS_PER_YEAR[self._market]
        for s, weight in weights.items():
            quotes_per_second = rate * weight / mean_weight * _QUOTE_SHARE[self._market]
            # Uniform steps of width sig have variance sig**2 / 12: match vol**2 per year.
            s.sig = s.vol * math.sqrt(12.0 / (year * quotes_per_second))
        pick_bits = max(10, math.ceil(math.log2(64 * len(self._syms))))
        self._pick = _weighted_table(weights, pick_bits)
        self._pick_bits = pick_bits
        self._mean_gap_ms = 1_000.0 / (rate * len(self._syms))
        # Lognormal multipliers of a pair's typical trade size (crypto sizes are heavy-tailed).
        self._trade_sizes = [math.exp(self._rng.gauss(0.0, 1.3)) for _ in range(4_096)]
        self._now = float(start_ms)
        self._last_t = start_ms if clock is None else 0
        self._sec_end = 0  # closing the (empty) first window sets the real boundaries
        self._min_end = 0
        self._day_end = 0
        self._touched_sec: list[_Sym] = []
        self._touched_min: list[_Sym] = []
        self._pending: list[dict[str, Any]] = []
        logger.debug(
            "synthetic %s market: %d symbols, seed=%d, channels=%s",
            self._market.value, len(self._symbols), seed, ",".join(sorted(self._channels)),
        )  # fmt: skip

    # ------------------------------------------------------------------ public API

    @property
    def symbols(self) -> tuple[str, ...]:
        """The simulated symbols, in the order given (duplicates removed)."""
        return self._symbols

    @property
    def market(self) -> Market:
        """The simulated market."""
        return self._market

    @property
    def seed(self) -> int:
        """The seed of this instance's generator (drawn from the OS when none was given)."""
        return self._seed

    @property
    def channels(self) -> frozenset[str]:
        """The channel prefixes emitted (``T``, ``Q``, ``A``, ``AM`` / ``XT``, ``XQ``, ``XA``, ``XAS``)."""
        return self._channels

    @property
    def time_ms(self) -> int:
        """Timestamp (Unix ms) of the latest tick: before the first one, ``start_ms`` (default
        clock) or 0 (custom clock)."""
        return self._last_t

    def next_events(self, n: int) -> list[dict[str, Any]]:
        """Return the next ``n`` events of the stream as wire dicts (fresh objects, the caller's to keep).

        Trades, quotes and bars all count towards ``n``; bars come right before the first tick
        at or after the end of their window.

        Raises:
            ConfigurationError: ``n`` is not an int >= 0 (``field="n"``).
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise field_error("n", f"expected an int >= 0, got {n!r}")
        out = self._pending
        if len(out) < n:
            if self._market is Market.STOCKS:
                self._run_stocks(out, n)
            else:
                self._run_crypto(out, n)
        self._pending = out[n:]
        del out[n:]
        return out

    def events(self) -> Iterator[dict[str, Any]]:
        """Yield the stream forever (the same events :meth:`next_events` would return).

        The generator takes events in batches, so do not mix it with :meth:`next_events` on the
        same instance.
        """
        while True:
            yield from self.next_events(256)

    def last_price(self, symbol: str) -> float | None:
        """Price of ``symbol``'s last generated trade, or ``None`` before its first one.

        Raises:
            ConfigurationError: ``symbol`` is not simulated (``field="symbol"``).
        """
        s = self._sym(symbol)
        return s.sc / s.scale if s.sc else None

    def snapshot(self) -> dict[str, SymbolState]:
        """Return the current state of every symbol, keyed by symbol (in :attr:`symbols` order)."""
        return {s.name: self._state(s) for s in self._syms}

    def __repr__(self) -> str:
        return f"SyntheticMarket(market={self._market.value!r}, symbols={self._symbols!r}, seed={self._seed})"

    # ------------------------------------------------------------------ set-up

    def _new_symbol(self, name: str) -> _Sym:
        """Draw one symbol's constants: start price, volatility, activity, spread, counters."""
        rng = self._rng
        stocks = self._market is Market.STOCKS
        known_stock = _KNOWN_STOCKS.get(name.upper()) if stocks else None
        known_pair = None if stocks else _KNOWN_CRYPTO.get(name.upper())
        if known_stock is not None:
            price, vol, tape, activity = known_stock
            price *= math.exp(rng.gauss(0.0, 0.03))
        elif known_pair is not None:
            price, vol, activity = known_pair
            price, tape = price * math.exp(rng.gauss(0.0, 0.05)), 0
        elif stocks:
            price, vol = math.exp(rng.uniform(math.log(5.0), math.log(400.0))), rng.uniform(0.2, 0.7)
            tape, activity = rng.choice((1, 1, 2, 3, 3)), rng.uniform(0.5, 2.0)
        else:
            price, vol = math.exp(rng.uniform(math.log(0.05), math.log(200.0))), rng.uniform(0.6, 1.4)
            tape, activity = 0, rng.uniform(0.5, 2.0)
        s = _Sym(name, price, _decimals(price, self._market), vol * rng.uniform(0.8, 1.25), tape)
        s.weight = activity * rng.uniform(0.8, 1.25)
        # Busier names quote tighter: SPY and AAPL sit at one tick, NFLX or an unknown name wider.
        spread_bps = (rng.uniform(0.1, 0.4) if stocks else rng.uniform(0.01, 0.3)) / math.sqrt(s.weight)
        s.spread = max(1, round(s.mid * spread_bps * 1e-4))
        s.floor = float(s.spread + 2 * max(_SPREAD_EXTRA) + 2)
        s.odd = 0.15 + min(0.45, price / 2_000.0)  # dear shares trade in odd lots more often
        s.unit = max(1, round(rng.uniform(500.0, 5_000.0) / price * _SATOSHI))  # a quote of $500-$5000
        if not stocks:  # unround sizes (0.2317 BTC), drawn once: a lookup per quote keeps the loop fast
            units = (1 + int(s.unit * rng.choice(_LOTS) * rng.uniform(0.2, 1.3)) for _ in range(256))
            s.quote_sizes = tuple(size / _SATOSHI for size in units)
        s.seq = rng.randrange(1_000_000, 50_000_000)
        s.tid = rng.randrange(1_000, 100_000)
        s.requote(0)
        return s

    def _sym(self, symbol: str) -> _Sym:
        try:
            return self._by_name[symbol]
        except (KeyError, TypeError):
            pass
        raise field_error("symbol", f"{symbol!r} is not one of the simulated symbols {self._symbols!r}")

    def _state(self, s: _Sym) -> SymbolState:
        volume = s.dv + s.sv  # the open second is merged into the day when it closes
        divisor = 1 if self._market is Market.STOCKS else _SATOSHI
        return SymbolState(
            symbol=s.name,
            bid=s.bid / s.scale,
            ask=s.ask / s.scale,
            last=s.sc / s.scale if s.sc else None,
            day_open=(s.dopen or s.so) / s.scale if (s.dopen or s.sn) else None,
            day_volume=volume / divisor if divisor > 1 else volume,
            day_vwap=round((s.dpv + s.spv) / volume / s.scale, s.decimals + 2) if volume else None,
        )

    # ------------------------------------------------------------------ generation

    def _run_stocks(self, out: list[dict[str, Any]], n: int) -> None:
        """Append ticks (and the bars they close) to ``out`` until it holds at least ``n`` events.

        One function with everything in locals: this is the hot loop (about 2 µs per event).
        """
        rng = self._rng
        rand = rng.random
        bits = rng.getrandbits
        log = math.log
        pick, pick_bits = self._pick, self._pick_bits
        clock, gap = self._clock, self._mean_gap_ms
        now, last_t, sec_end = self._now, self._last_t, self._sec_end
        quote_share = _QUOTE_SHARE[Market.STOCKS]
        emit_t, emit_q = "T" in self._channels, "Q" in self._channels
        texch, qexch, lots, extras = _TRADE_EXCHANGES, _QUOTE_EXCHANGES, _LOTS, _SPREAD_EXTRA
        touched = self._touched_sec
        append = out.append
        while len(out) < n:
            if clock is None:
                now -= log(1.0 - rand()) * gap
                t = int(now)
            else:
                t = int(clock())
                if t < last_t:
                    t = last_t
            last_t = t
            if t >= sec_end:
                sec_end = self._close_windows(t, out)
            s = pick[bits(pick_bits)]
            r = bits(32)
            if rand() < quote_share:
                mid = s.mid * (1.0 + s.sig * (rand() - 0.5))
                s.mid = mid = mid if mid > s.floor else s.floor
                spread = s.spread + extras[r & 15]
                s.bid = bid = int(mid) - (spread >> 1)
                s.ask = ask = bid + spread
                s.seq = seq = s.seq + 1 + ((r >> 4) & 7)
                if emit_q:
                    scale = s.scale
                    append({"ev": "Q", "sym": s.name, "bx": qexch[(r >> 7) & 63], "bp": bid / scale,
                            "bs": lots[(r >> 13) & 31], "ax": qexch[(r >> 18) & 63], "ap": ask / scale,
                            "as": lots[(r >> 24) & 31], "c": 0, "t": t, "q": seq, "z": s.tape})  # fmt: skip
                continue
            x = texch[r & 255]
            bid, ask = s.bid, s.ask
            price = ask if r & 512 else bid
            if x == 4 and ask - bid > 1 and r & 256:
                price = (bid + ask) >> 1  # an off-exchange print inside the spread
            u = rand()
            odd = s.odd
            if u < odd:
                size = 1 + int(99.0 * (u / odd) ** 2)  # odd lot, mostly small
            else:
                v = (u - odd) / (1.0 - odd)
                if v < 0.4:
                    size = 100
                elif v < 0.92:
                    size = 100 * (2 + int((v - 0.4) * 15.38))  # 200..900
                elif v < 0.99:
                    size = 100 * (10 + int((v - 0.92) ** 2 * 18_367.0))  # 1,000..9,900, mostly small
                else:
                    size = 100 * int(100.0 * (1.0 - (v - 0.99) * 99.9) ** -0.7)  # Pareto block >= 10,000
            if s.sn:
                if price > s.sh:
                    s.sh = price
                elif price < s.sl:
                    s.sl = price
            else:
                s.so = s.sh = s.sl = price
                touched.append(s)
            s.sc = price
            s.sv += size
            s.spv += price * size
            s.sn += 1
            s.seq = seq = s.seq + 1 + ((r >> 10) & 7)
            s.tid = tid = s.tid + 1 + ((r >> 13) & 15)
            if emit_t:
                if size < 100:
                    conditions: list[int] | None = [37]  # odd lot
                else:
                    flag = (r >> 17) & 31
                    conditions = None if flag > 2 else [14] if flag < 2 else [14, 41]  # ISO, trade-through exempt
                if conditions is None:
                    event = {"ev": "T", "sym": s.name, "x": x, "i": str(tid), "z": s.tape, "p": price / s.scale,
                             "s": size, "t": t, "q": seq}  # fmt: skip
                else:
                    event = {"ev": "T", "sym": s.name, "x": x, "i": str(tid), "z": s.tape, "p": price / s.scale,
                             "s": size, "c": conditions, "t": t, "q": seq}  # fmt: skip
                if x == 4:
                    event["trfi"] = _TRF_IDS[(r >> 22) & 3]
                    event["trft"] = t - ((r >> 24) & 15)
                append(event)
        self._now, self._last_t, self._sec_end = now, last_t, sec_end

    def _run_crypto(self, out: list[dict[str, Any]], n: int) -> None:
        """The crypto twin of :meth:`_run_stocks` (per-exchange quotes, fractional sizes, ``r`` stamps)."""
        rng = self._rng
        rand = rng.random
        bits = rng.getrandbits
        log = math.log
        pick, pick_bits = self._pick, self._pick_bits
        clock, gap = self._clock, self._mean_gap_ms
        now, last_t, sec_end = self._now, self._last_t, self._sec_end
        quote_share = _QUOTE_SHARE[Market.CRYPTO]
        emit_t, emit_q = "XT" in self._channels, "XQ" in self._channels
        exch, extras, sizes, sat = _CRYPTO_EXCHANGES, _SPREAD_EXTRA, self._trade_sizes, _SATOSHI
        touched = self._touched_sec
        append = out.append
        while len(out) < n:
            if clock is None:
                now -= log(1.0 - rand()) * gap
                t = int(now)
            else:
                t = int(clock())
                if t < last_t:
                    t = last_t
            last_t = t
            if t >= sec_end:
                sec_end = self._close_windows(t, out)
            s = pick[bits(pick_bits)]
            r = bits(32)
            if rand() < quote_share:
                mid = s.mid * (1.0 + s.sig * (rand() - 0.5))
                s.mid = mid = mid if mid > s.floor else s.floor
                spread = s.spread + extras[r & 15]
                s.bid = bid = int(mid) - (spread >> 1)
                s.ask = ask = bid + spread
                if emit_q:
                    scale, quote_sizes = s.scale, s.quote_sizes
                    append({"ev": "XQ", "pair": s.name, "bp": bid / scale, "bs": quote_sizes[(r >> 4) & 255],
                            "ap": ask / scale, "as": quote_sizes[(r >> 12) & 255], "t": t, "x": exch[(r >> 20) & 63],
                            "r": t + 5 + ((r >> 26) & 63)})  # fmt: skip
                continue
            buy = r & 1
            price = s.ask if buy else s.bid
            size = 1 + int(s.unit * 0.3 * sizes[(r >> 1) & 4095])
            if s.sn:
                if price > s.sh:
                    s.sh = price
                elif price < s.sl:
                    s.sl = price
            else:
                s.so = s.sh = s.sl = price
                touched.append(s)
            s.sc = price
            s.sv += size
            s.spv += price * size
            s.sn += 1
            s.tid = tid = s.tid + 1 + ((r >> 13) & 15)
            if emit_t:
                append({"ev": "XT", "pair": s.name, "p": price / s.scale, "s": size / sat,
                        "x": exch[(r >> 17) & 63], "i": str(tid), "c": [2] if buy else [1], "t": t,
                        "r": t + 5 + ((r >> 23) & 127)})  # fmt: skip
        self._now, self._last_t, self._sec_end = now, last_t, sec_end

    def _close_windows(self, t: int, out: list[dict[str, Any]]) -> int:
        """Emit the bars of every window that closed before ``t``; return the end of the new second.

        The second's trades are merged into the minute and the day here (once per symbol per
        second, not per trade), then the minute closes too if ``t`` passed its end. A window
        with no trades yields no bar.
        """
        stocks = self._market is Market.STOCKS
        sec_ev, min_ev = ("A", "AM") if stocks else ("XAS", "XA")
        emit_sec, emit_min = sec_ev in self._channels, min_ev in self._channels
        sec_start = self._sec_end - _SECOND
        touched_min = self._touched_min
        for s in self._touched_sec:
            if s.mn:
                s.mh = s.sh if s.sh > s.mh else s.mh
                s.ml = s.sl if s.sl < s.ml else s.ml
            else:
                s.mo, s.mh, s.ml = s.so, s.sh, s.sl
                touched_min.append(s)
            s.mc = s.sc
            s.mv += s.sv
            s.mpv += s.spv
            s.mn += s.sn
            if not s.dv:
                s.dopen = s.so
            s.dv += s.sv
            s.dpv += s.spv
            if emit_sec:
                out.append(self._bar(s, sec_ev, sec_start, _SECOND, s.so, s.sh, s.sl, s.sc, s.sv, s.spv, s.sn))
            s.sv = s.spv = s.sn = 0
        self._touched_sec.clear()
        if t >= self._min_end:
            min_start = self._min_end - _MINUTE
            for s in touched_min:
                if emit_min:
                    out.append(self._bar(s, min_ev, min_start, _MINUTE, s.mo, s.mh, s.ml, s.mc, s.mv, s.mpv, s.mn))
                s.mv = s.mpv = s.mn = 0
            touched_min.clear()
            self._min_end = (t // _MINUTE + 1) * _MINUTE
        if stocks and t >= self._day_end:
            for s in self._syms:
                s.dopen = s.dv = s.dpv = 0
            self._day_end = ((t - _STOCK_DAY_ROLL) // _DAY + 1) * _DAY + _STOCK_DAY_ROLL
        self._sec_end = (t // _SECOND + 1) * _SECOND
        return self._sec_end

    def _bar(
        self, s: _Sym, ev: str, start: int, length: int, o: int, h: int, low: int, c: int, v: int, pv: int, count: int
    ) -> dict[str, Any]:
        scale, digits = s.scale, s.decimals + 2
        high, lowest = h / scale, low / scale
        # Rounding can only move the VWAP onto a bound, never past one; clamp against float noise anyway.
        vwap = min(max(round(pv / v / scale, digits), lowest), high)
        if self._market is Market.STOCKS:
            return {"ev": ev, "sym": s.name, "v": v, "av": s.dv, "op": s.dopen / scale, "vw": vwap, "o": o / scale,
                    "c": c / scale, "h": high, "l": lowest, "a": round(s.dpv / s.dv / scale, digits),
                    "z": round(v / count), "s": start, "e": start + length}  # fmt: skip
        return {"ev": ev, "pair": s.name, "o": o / scale, "c": c / scale, "h": high, "l": lowest, "v": v / _SATOSHI,
                "vw": vwap, "z": round(v / count) / _SATOSHI, "s": start, "e": start + length}  # fmt: skip
