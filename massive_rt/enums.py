"""String enums used across the public API.

Every enum here is a ``str`` enum: members compare equal to their wire values and every
public function that takes one also accepts the plain string (case-insensitive), e.g.
``market="stocks"`` or ``overflow="drop_oldest"``.
"""

from __future__ import annotations

import enum
import re
from typing import TypeVar
from urllib.parse import urlsplit

from .errors import ConfigurationError

__all__ = ["AdapterState", "ConnectionState", "Feed", "Market", "Overflow", "resolve_feed_host"]

_E = TypeVar("_E", bound="_StrEnum")


class _StrEnum(str, enum.Enum):
    """A ``str`` enum that looks members up by value or name, ignoring case."""

    def __str__(self) -> str:
        return str(self.value)

    @classmethod
    def _missing_(cls, value: object) -> _StrEnum | None:
        if isinstance(value, str):
            wanted = value.strip().lower().replace("-", "_")
            for member in cls:
                if wanted in (member.value.lower(), member.name.lower()):
                    return member
        return None

    @classmethod
    def coerce(cls: type[_E], value: object, field: str) -> _E:
        """Return the member for ``value`` or raise :class:`ConfigurationError` naming ``field``."""
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(repr(m.value) for m in cls)
            raise ConfigurationError(f"{field}={value!r} is not one of {choices}", field=field) from None


class Market(_StrEnum):
    """A Massive market (cluster). The value is the URL path of its WebSocket endpoint."""

    STOCKS = "stocks"
    OPTIONS = "options"
    FOREX = "forex"
    CRYPTO = "crypto"
    INDICES = "indices"
    FUTURES = "futures"
    FUTURES_CME = "futures/cme"
    FUTURES_CBOT = "futures/cbot"
    FUTURES_NYMEX = "futures/nymex"
    FUTURES_COMEX = "futures/comex"

    @property
    def is_futures(self) -> bool:
        """True for the futures market and its per-exchange paths."""
        return self.value.startswith("futures")


class Feed(_StrEnum):
    """A Massive feed host. Any other ``host[:port]`` string is accepted where a feed is expected."""

    REALTIME = "socket.massive.com"
    DELAYED = "delayed.massive.com"
    NASDAQ = "nasdaqfeed.massive.com"
    POLYFEED = "polyfeed.massive.com"
    POLYFEED_PLUS = "polyfeedplus.massive.com"
    STARTER_FEED = "starterfeed.massive.com"
    LAUNCHPAD = "launchpad.massive.com"
    BUSINESS = "business.massive.com"
    EDGX_BUSINESS = "edgx-business.massive.com"
    IEX_BUSINESS = "iex-business.massive.com"
    DELAYED_BUSINESS = "delayed-business.massive.com"
    DELAYED_EDGX_BUSINESS = "delayed-edgx-business.massive.com"
    DELAYED_NASDAQ_LAST_SALE_BUSINESS = "delayed-nasdaq-last-sale-business.massive.com"
    DELAYED_NASDAQ_BASIC = "delayed-nasdaq-basic-business.massive.com"
    DELAYED_FULL_MARKET_BUSINESS = "delayed-fullmarket-business.massive.com"
    FULL_MARKET_BUSINESS = "fullmarket-business.massive.com"
    NASDAQ_LAST_SALE_BUSINESS = "nasdaq-last-sale-business.massive.com"
    NASDAQ_BASIC_BUSINESS = "nasdaq-basic-business.massive.com"


_HOST_PORT = re.compile(
    r"^[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?(?::[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?$"
)


def resolve_feed_host(feed: Feed | str) -> str:
    """Return the host (``host[:port]``) for a :class:`Feed` member, its name, or a host string.

    ``"realtime"``, ``"delayed"``, ``"RealTime"``, ``Feed.DELAYED`` and ``"127.0.0.1:8765"`` are all
    accepted. A string with a scheme, a path or whitespace raises :class:`ConfigurationError`.
    """
    if isinstance(feed, Feed):
        return feed.value
    if not isinstance(feed, str):
        raise ConfigurationError(f"feed={feed!r} must be a Feed or a 'host[:port]' string", field="feed")
    try:
        return Feed(feed).value
    except ValueError:
        pass
    compact = feed.lower().replace("_", "").replace("-", "")
    for member in Feed:
        if compact == member.name.lower().replace("_", ""):
            return member.value
    if not _HOST_PORT.match(feed):
        raise ConfigurationError(
            f"feed={feed!r} is neither a known feed nor a 'host[:port]' string (use url= for a full URL)",
            field="feed",
        )
    try:
        urlsplit(f"//{feed}").port  # noqa: B018 - raises ValueError on a port out of range
    except ValueError:
        raise ConfigurationError(f"feed={feed!r} has a port out of range 0-65535", field="feed") from None
    return feed


class ConnectionState(_StrEnum):
    """Lifecycle state of one connection. Transitions are reported as status events."""

    NEW = "new"
    CONNECTING = "connecting"
    AUTHENTICATING = "authenticating"
    SUBSCRIBING = "subscribing"
    STREAMING = "streaming"
    BACKOFF = "backoff"
    FAILED = "failed"
    STOPPED = "stopped"

    @property
    def is_terminal(self) -> bool:
        """True once the connection will never stream again (FAILED or STOPPED)."""
        return self in (ConnectionState.FAILED, ConnectionState.STOPPED)


class AdapterState(_StrEnum):
    """Lifecycle of a :class:`~massive_rt.RealTimeDataAdapter`."""

    NEW = "new"
    #: started: dispatching whatever the source delivers
    RUNNING = "running"
    #: every connection of the source failed for good (``adapter.error`` says why)
    FAILED = "failed"
    STOPPED = "stopped"


class Overflow(_StrEnum):
    """What a connection's bounded queue does when it is full."""

    DROP_OLDEST = "drop_oldest"
    """Discard the oldest queued events; the socket keeps being drained (default)."""
    DROP_NEWEST = "drop_newest"
    """Discard the incoming events; what is queued is kept."""
    BLOCK = "block"
    """Stop reading the socket until there is room (the server may then kick a slow consumer)."""
