"""The local mock server and the synthetic market the ``stream``, ``serve`` and ``bench`` commands share.

The mock server needs the ``websockets`` package (the ``testing`` extra): it is imported by
:func:`load_server_class` only when a command starts one, so the ``massive-rt`` command itself
runs on a base install.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..enums import Market
from ..synthetic import DEFAULT_CRYPTO, DEFAULT_STOCKS, SyntheticMarket, wall_clock_ms
from .console import PROG, CommandFailure, Console, UsageError

if TYPE_CHECKING:
    from ..testing.server import MockMassiveServer

__all__ = [
    "BARS",
    "DEFAULT_SPEED",
    "DEMO_KEY",
    "SIMULATED",
    "TICKS",
    "api_key_from",
    "demo_market",
    "load_server_class",
    "time_base",
]

logger = logging.getLogger(__name__)

#: The API key the demo's local mock server accepts (and ``massive-rt serve``'s default key).
DEMO_KEY = "demo"
#: Default speed-up of the demo's simulated clock: a minute bar every 3 s of wall time, so a
#: 15-second ``make run`` shows trades, quotes and several AM bars. ``--speed 1`` is real time.
DEFAULT_SPEED = 20.0
#: The markets the synthetic market simulates, and their default symbols.
SIMULATED = {Market.STOCKS: DEFAULT_STOCKS, Market.CRYPTO: DEFAULT_CRYPTO}
#: Per market: the trade and quote channel prefixes (always simulated).
TICKS = {Market.STOCKS: ("T", "Q"), Market.CRYPTO: ("XT", "XQ")}
#: Per market: the second and minute aggregate channel prefixes.
BARS = {Market.STOCKS: ("A", "AM"), Market.CRYPTO: ("XA", "XAS")}


def load_server_class() -> type[MockMassiveServer]:
    """:class:`~massive_rt.testing.MockMassiveServer`, imported now.

    Raises:
        CommandFailure: ``websockets`` is not installed (the message names the extra to install).
    """
    try:
        from ..testing.server import MockMassiveServer
    except ModuleNotFoundError as exc:
        raise CommandFailure(f"the local mock server needs the 'websockets' package ({exc.name} is missing): "
                         "pip install 'massive-rt[testing]'") from None  # fmt: skip
    return MockMassiveServer


def api_key_from(explicit: str | None) -> str | None:
    """``explicit`` or ``$MASSIVE_API_KEY``, stripped; None when neither is set (the demo then)."""
    key = explicit if explicit is not None else os.environ.get("MASSIVE_API_KEY")
    return key.strip() if key and key.strip() else None


def demo_market(market: Market, channels: Sequence[str], speed: float, rate: float, seed: int | None,
                 console: Console) -> SyntheticMarket:  # fmt: skip
    """The synthetic market for ``channels``, its clock sped up ``speed`` times at ``rate`` events/s."""
    if market not in SIMULATED:
        raise UsageError(f"the synthetic market simulates stocks and crypto only, not {market.value!r}; "
                         "pass an API key to stream it from Massive")  # fmt: skip
    tickers = [c.partition(".")[2] for c in channels if not c.endswith(".*")]
    symbols = tuple(dict.fromkeys(tickers)) or SIMULATED[market]
    prefixes = {c.partition(".")[0] for c in channels}
    silent = sorted(prefixes - {*TICKS[market], *BARS[market]})
    if silent:
        console.message(f"{PROG}: note: the synthetic market produces no {', '.join(silent)} events")
    # Trades and quotes are always simulated (they drive the clock and build the bars); the
    # server sends each connection only what it subscribed to.
    produced = (*TICKS[market], *(p for p in BARS[market] if p in prefixes))
    # SyntheticMarket's rate is trades + quotes per simulated second per symbol; at `rate` events/s
    # of wall time this makes simulated time run `speed` times faster than the wall clock.
    per_symbol = rate / (speed * len(symbols))
    return SyntheticMarket(symbols, market=market, seed=seed, channels=produced, rate=per_symbol,
                           **time_base(speed))  # fmt: skip


def time_base(speed: float) -> dict[str, Any]:
    """``SyntheticMarket``'s time arguments for a market ``speed`` times faster than the wall clock:
    times start at the present; at speed 1 they are the wall clock, as a live feed's (a
    ``BarClock`` then gets real bars), faster the simulated clock runs ahead of it."""
    return {"clock": wall_clock_ms if speed == 1 else None, "start_ms": wall_clock_ms()}
