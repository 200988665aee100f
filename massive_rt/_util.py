"""Small internal helpers shared by the threaded modules."""

from __future__ import annotations

import enum
import logging
import math
import threading
import time
from collections.abc import MutableMapping
from typing import Any

import attrs

__all__ = ["ConnectionLogger", "RateLimitedLog", "percentiles", "seconds", "snapshot_dict"]


class ConnectionLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefixes every record with ``[<connection name>]`` and sets ``record.connection``."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        name = self.extra["connection"] if self.extra else "?"
        kwargs.setdefault("extra", {}).setdefault("connection", name)
        return f"[{name}] {msg}", kwargs


class RateLimitedLog:
    """Logs at most once per ``interval`` seconds, summarising what was suppressed meanwhile."""

    def __init__(self, log: logging.Logger | logging.LoggerAdapter, level: int, interval: float = 5.0) -> None:  # type: ignore[type-arg]
        self._log = log
        self._level = level
        self._interval = interval
        self._lock = threading.Lock()
        self._next = 0.0
        self._suppressed = 0

    def __call__(self, msg: str, *args: Any, exc_info: Any = None) -> bool:
        """Log ``msg % args`` unless one was logged less than ``interval`` ago; True if logged."""
        now = time.monotonic()
        with self._lock:
            if now < self._next:
                self._suppressed += 1
                return False
            self._next = now + self._interval
            suppressed, self._suppressed = self._suppressed, 0
        if suppressed:
            msg = f"{msg} (+{suppressed} similar suppressed)"
        self._log.log(self._level, msg, *args, exc_info=exc_info)
        return True


def percentiles(samples: list[int] | list[float], points: tuple[float, ...] = (50, 90, 99, 99.9)) -> dict[str, float]:
    """Nearest-rank percentiles of ``samples`` as ``{"p50": ..., "p99": ...}`` (empty → {})."""
    if not samples:
        return {}
    ordered = sorted(samples)
    out: dict[str, float] = {}
    for point in points:
        rank = min(len(ordered) - 1, max(0, math.ceil(point / 100 * len(ordered)) - 1))
        label = f"p{point:g}".replace(".", "_")
        out[label] = float(ordered[rank])
    return out


def seconds(value: float) -> str:
    """A wait for humans: ``"30s"``, ``"0.25s"``."""
    return f"{value:.0f}s" if value >= 10 else f"{value:.2g}s"


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if attrs.has(type(value)):
        return snapshot_dict(value)
    if isinstance(value, (list, tuple, frozenset, set)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    to_dict = getattr(value, "to_dict", None)
    return to_dict() if callable(to_dict) else repr(value)


def snapshot_dict(snapshot: Any) -> dict[str, Any]:
    """A stats snapshot (an attrs instance) as JSON-ready data: enums as their values, nested
    snapshots as dicts, tuples as lists. Snapshots hold no secret, so neither does this."""
    return {field.name: _plain(getattr(snapshot, field.name)) for field in attrs.fields(type(snapshot))}
