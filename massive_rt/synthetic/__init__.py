"""Synthetic market data: realistic, reproducible wire events with no API key.

:mod:`massive_rt.synthetic.market` generates them (pure: no thread, no I/O);
:mod:`massive_rt.synthetic.source` streams them into an adapter from a daemon thread.
"""

from __future__ import annotations

from .market import DEFAULT_CRYPTO, DEFAULT_STOCKS, SESSION_START_MS, SymbolState, SyntheticMarket, wall_clock_ms
from .source import SyntheticSource, SyntheticStats

__all__ = [
    "DEFAULT_CRYPTO",
    "DEFAULT_STOCKS",
    "SESSION_START_MS",
    "SymbolState",
    "SyntheticMarket",
    "SyntheticSource",
    "SyntheticStats",
    "wall_clock_ms",
]
