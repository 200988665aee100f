"""The local mock server and the synthetic market the ``stream``, ``serve`` and ``bench`` commands share.

The mock server needs the ``websockets`` package (the ``testing`` extra): it is imported by
:func:`load_server_class` only when a command starts one, so the ``massive-rt`` command itself
runs on a base install.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..enums import Market
from ..synthetic import DEFAULT_CRYPTO, DEFAULT_STOCKS
from .console import UsageError

if TYPE_CHECKING:
    from ..testing.server import MockMassiveServer

__all__ = ["BARS", "DEFAULT_SPEED", "DEMO_KEY", "SIMULATED", "TICKS", "load_server_class"]

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
        UsageError: ``websockets`` is not installed (the message names the extra to install).
    """
    try:
        from ..testing.server import MockMassiveServer
    except ModuleNotFoundError as exc:
        raise UsageError(f"the local mock server needs the 'websockets' package ({exc.name} is missing): "
                         "pip install 'massive-rt[testing]'") from None  # fmt: skip
    return MockMassiveServer
