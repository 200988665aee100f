"""What the status page shows, computed from ``stats()`` snapshots: pure functions, no I/O.

A page snapshot is a JSON-ready dict: the adapter's counters (when the target is an adapter; its
backfill's too when it has one),
one row per connection (state, subscriptions, events/s with its recent history, drops,
reconnects, last message age) and the latest noteworthy statuses. Only fields listed here reach
the page: a snapshot's ``url`` or ``last_error`` never does, so no key can leak through them.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

__all__ = ["Sample", "connection_snapshots", "page_snapshot", "sample"]

#: One observation: ``(monotonic seconds, {connection: events so far})`` plus the stats it came from.
Sample = tuple[float, dict[str, int], Any]


def connection_snapshots(snapshot: Any) -> Iterator[Any]:
    """The per-connection snapshots inside ``snapshot`` (adapter, pool, relay or one source)."""
    if hasattr(snapshot, "dispatched") and hasattr(snapshot, "source"):  # AdapterStats
        yield from connection_snapshots(snapshot.source)
    elif hasattr(snapshot, "per_connection"):  # PoolStats
        for member in snapshot.per_connection:
            yield from connection_snapshots(member)
    elif hasattr(snapshot, "upstream") and hasattr(snapshot, "consumers"):  # RelayStats
        yield from connection_snapshots(snapshot.upstream)
    elif hasattr(snapshot, "state") and hasattr(snapshot, "name"):
        yield snapshot


def sample(snapshot: Any, now: float | None = None) -> Sample:
    """A :data:`Sample` of ``snapshot`` taken at ``now`` (default: the monotonic clock)."""
    counts = {str(c.name): int(getattr(c, "events_decoded", 0) or 0) for c in connection_snapshots(snapshot)}
    return (time.monotonic() if now is None else now, counts, snapshot)


def _rates(samples: Sequence[Sample], name: str) -> list[float]:
    """Events per second of connection ``name`` between consecutive samples (a restart counts as 0)."""
    rates: list[float] = []
    for (t0, before, _), (t1, after, _) in itertools.pairwise(samples):
        if name in before and name in after and t1 > t0:
            rates.append(round(max(0, after[name] - before[name]) / (t1 - t0), 3))
        else:
            rates.append(0.0)
    return rates


def _state(value: Any) -> str:
    return str(getattr(value, "value", value))


def _adapter(snapshot: Any) -> dict[str, Any] | None:
    if not (hasattr(snapshot, "dispatched") and hasattr(snapshot, "latency_us")):
        return None
    latency: Mapping[str, float] = snapshot.latency_us
    backfill = getattr(snapshot, "backfill", None)
    return {
        "state": _state(snapshot.state),
        "healthy": bool(snapshot.healthy),
        "health_reason": snapshot.health_reason,
        "dispatched": int(snapshot.dispatched),
        "handler_errors": int(snapshot.handler_errors),
        "latency_p50_us": latency.get("p50"),
        "latency_p99_us": latency.get("p99"),
        "backfill": None if backfill is None else _backfill(backfill),
    }


def _backfill(stats: Any) -> dict[str, Any]:
    duration = stats.last_duration_s
    return {
        "gaps": int(stats.gaps),
        "events": int(stats.events),
        "in_flight": int(stats.in_flight),
        "failed": int(stats.failed),
        "partial": int(stats.partial),
        "not_backfillable": int(stats.not_backfillable),
        "held": int(stats.held),
        "hold_overflow": int(stats.held_dropped),
        "last_duration_s": None if duration is None else round(float(duration), 3),
    }


def page_snapshot(samples: Sequence[Sample], happenings: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The page's data from ``samples`` (oldest first; the last is the current state)."""
    if not samples:
        return {"adapter": None, "connections": [], "happenings": list(happenings), "interval": None}
    _, _, current = samples[-1]
    rows = []
    for connection in connection_snapshots(current):
        name = str(connection.name)
        history = _rates(samples, name)
        age = getattr(connection, "last_message_age", None)
        rows.append({
            "name": name,
            "market": str(getattr(connection, "market", "") or ""),
            "state": _state(connection.state),
            "healthy": bool(getattr(connection, "healthy", True)),
            "subscriptions": int(getattr(connection, "subscriptions", 0) or 0),
            "events": int(getattr(connection, "events_decoded", 0) or 0),
            "events_per_second": history[-1] if history else 0.0,
            "history": history,
            "dropped": int(getattr(connection, "dropped_events", 0) or 0),
            "reconnects": int(getattr(connection, "reconnects", 0) or 0),
            "last_message_age": None if age is None else round(float(age), 3),
        })  # fmt: skip
    span = samples[-1][0] - samples[0][0]
    return {"adapter": _adapter(current), "connections": rows, "happenings": list(happenings), "span": round(span, 1)}
