"""Historical data over Massive's REST API, as the stream's own event classes.

:class:`RestHistory` (in :mod:`massive_rt.rest.history`) needs the official client:
``pip install 'massive-rt[rest]'``. The conversion functions of :mod:`massive_rt.rest.convert`
need nothing beyond the base install. Importing this package is cheap: the client module (and
``massive``) is imported on first use of one of its names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .convert import SnapshotState, agg_event, quote_event, rest_ticker, snapshot_state, trade_event

if TYPE_CHECKING:
    from .history import DEFAULT_REST_URL, RETRY_STATUSES, FetchResult, RestHistory

__all__ = [
    "DEFAULT_REST_URL",
    "RETRY_STATUSES",
    "FetchResult",
    "RestHistory",
    "SnapshotState",
    "agg_event",
    "quote_event",
    "rest_ticker",
    "snapshot_state",
    "trade_event",
]

_LAZY = {"DEFAULT_REST_URL", "RETRY_STATUSES", "FetchResult", "RestHistory"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        try:
            from . import history
        except ModuleNotFoundError as exc:
            missing = (exc.name or "").partition(".")[0]
            if missing in ("massive", "urllib3"):  # the official client, or the HTTP library it brings
                raise ModuleNotFoundError(
                    f"massive_rt.rest needs the official 'massive' package ({missing} is missing): "
                    "pip install 'massive-rt[rest]'",
                    name=exc.name,
                ) from exc
            raise
        return getattr(history, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
