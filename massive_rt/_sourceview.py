"""What a source streams, read through its public surface: the market of each connection and the
channels each market is subscribed to. Shared by the last-value cache and the bar clock."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .enums import Market
from .errors import ClientClosedError

__all__ = ["connection_markets", "default_market", "subscribed_channels"]


def _clients(source: Any) -> tuple[Any, ...]:
    clients = getattr(source, "clients", None)
    if not callable(clients):
        return ()
    try:
        return tuple(clients())
    except ClientClosedError:
        return ()


def _named_markets(holder: Any) -> dict[str, str]:
    """What ``holder.connection_markets()`` says (a Redis or replay source: the market of each
    upstream connection whose events it read), as market values."""
    named = getattr(holder, "connection_markets", None)
    if not callable(named):
        return {}
    try:
        found = named()
    except ClientClosedError:
        return {}
    return {name: market.value for name, market in found.items() if isinstance(market, Market)}


def connection_markets(source: Any) -> dict[str, str]:
    """``{connection name: market value}`` for the source's connections that name their market, and
    the upstream connections a Redis or replay source names (``connection_markets()``)."""
    found: dict[str, str] = _named_markets(source)
    for client in _clients(source):
        market = getattr(client, "market", None)
        name = getattr(client, "name", None)
        if isinstance(market, Market) and isinstance(name, str):
            found[name] = market.value
        if client is not source:
            found.update(_named_markets(client))
    return found


def default_market(source: Any) -> str:
    """The source's market (a client, a synthetic or replay source), else the one market of a Redis
    source's streams, else its first connection's, else stocks."""
    market = getattr(source, "market", None)
    if isinstance(market, Market):
        return market.value
    streams = getattr(source, "stream_markets", None)
    if isinstance(streams, dict):
        named = {m.value for m in streams.values() if isinstance(m, Market)}
        if len(named) == 1 and None not in streams.values():
            return named.pop()
    markets = list(connection_markets(source).values())
    return markets[0] if markets else Market.STOCKS.value


def subscribed_channels(source: Any) -> Mapping[str, frozenset[str]]:
    """``{market value: channels}`` desired on the source's connections (retired ones included)."""
    found: dict[str, set[str]] = {}
    for client in _clients(source):
        market = getattr(client, "market", None)
        try:
            channels = getattr(client, "subscriptions", ())
        except ClientClosedError:  # a client used after a fork
            continue
        if isinstance(market, Market) and isinstance(channels, (frozenset, set, tuple, list)):
            found.setdefault(market.value, set()).update(c for c in channels if isinstance(c, str))
    return {market: frozenset(channels) for market, channels in found.items()}
