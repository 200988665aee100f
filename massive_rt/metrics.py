"""Prometheus metrics for any adapter or source, read from its ``stats()`` at scrape time.

``instrument(adapter)`` registers one collector with a ``prometheus_client`` registry (the
default one unless told). Nothing runs on the hot path: no counter is incremented per event;
each scrape calls ``stats()`` once per instrumented object and turns the snapshot into samples
(a few microseconds per connection, see ``benchmarks/bench_metrics.py``). Serve the registry as
``prometheus_client`` documents: ``start_http_server(9100)``, or mount ``make_wsgi_app()`` into
a Flask/Django service.

What is exported, each series labelled ``connection`` and ``market`` where it applies:

* per connection (client, pool member, synthetic, Redis or replay source):
  ``massive_rt_events_received_total``, ``massive_rt_events_dropped_total``,
  ``massive_rt_decode_errors_total``, ``massive_rt_reconnects_total``,
  ``massive_rt_frames_received_total`` (a relay's upstream connections forward frames undecoded),
  ``massive_rt_connection_state{state}`` (one series per state, 1 for the current one),
  ``massive_rt_queue_events``, ``massive_rt_queue_high_water``, ``massive_rt_subscriptions``,
  ``massive_rt_last_message_age_seconds``;
* per adapter (labelled ``source``): ``massive_rt_dispatched_total``,
  ``massive_rt_handler_errors_total{handler}`` and ``massive_rt_dispatch_latency_seconds``, a
  summary of the receive → callback latency: quantiles over the adapter's recent samples,
  ``_count`` and ``_sum`` over every sample since the start (one or two per batch of events);
* per adapter with a ``backfill`` (labelled ``source``, and ``connection`` for the gapped
  connection's counters): ``massive_rt_backfill_gaps_total``, ``massive_rt_backfill_requests_total``
  (symbol windows fetched), ``massive_rt_backfill_events_total``,
  ``massive_rt_backfill_duplicates_total``, ``massive_rt_backfill_failed_total``,
  ``massive_rt_backfill_partial_total``, ``massive_rt_backfill_not_backfillable_total``,
  ``massive_rt_backfill_held_events_total``, ``massive_rt_backfill_hold_overflow_total``;
  gauges ``massive_rt_backfill_in_flight`` and ``massive_rt_backfill_last_duration_seconds``;
* per pool: ``massive_rt_pool_recycled_total``; per relay: ``massive_rt_relay_*``; per Redis
  sink or source: ``massive_rt_redis_sink_*`` / ``massive_rt_redis_source_*``; per recorder
  (labelled by its first file): ``massive_rt_recorder_*``.

Counters never go down: a pool recycles a dead connection under the same name and the new
client counts from zero, so the collector keeps, per series, what the earlier clients had
counted at the last scrape and adds it (events a replaced client counted after that scrape are
in the pool's lifetime totals, ``PoolStats``, not in the series).

Needs the ``metrics`` extra (``pip install 'massive-rt[metrics]'``).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from .enums import ConnectionState
from .errors import ConfigurationError

try:
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.registry import Collector
except ModuleNotFoundError as exc:  # pragma: no cover - exercised by tests/test_base_install.py
    if exc.name == "prometheus_client" or (exc.name or "").startswith("prometheus_client."):
        raise ModuleNotFoundError(
            "massive_rt.metrics needs the 'prometheus_client' package: pip install 'massive-rt[metrics]'",
            name=exc.name,
        ) from exc
    raise

__all__ = ["StatsCollector", "instrument", "samples"]

logger = logging.getLogger(__name__)

PREFIX = "massive_rt_"
_QUANTILES = {"p50": "0.5", "p90": "0.9", "p99": "0.99", "p99_9": "0.999"}

# (metric suffix, help, stats attribute) per kind of snapshot; an attribute a snapshot lacks is skipped.
_CONNECTION_COUNTERS = (
    ("events_received", "Events decoded from the connection's frames.", "events_decoded"),
    ("events_dropped", "Events discarded by the queue's overflow policy.", "dropped_events"),
    ("decode_errors", "Frames or objects that could not be decoded.", "decode_errors"),
    ("reconnects", "Sessions started after the first.", "reconnects"),
    (
        "frames_received",
        "Data and status frames read from the socket (a relay's upstream decodes no events).",
        "frames_received",
    ),
)
_CONNECTION_GAUGES = (
    ("queue_events", "Events waiting in the connection's queue.", "queue_events"),
    ("queue_high_water", "Most events ever waiting at once in the connection's queue.", "queue_high_water"),
    ("subscriptions", "Channels the connection wants.", "subscriptions"),
    ("last_message_age_seconds", "Seconds since the last frame was read.", "last_message_age"),
)
_RELAY_COUNTERS = (
    ("relay_frames_in", "Frames the relay read upstream.", "frames_in"),
    ("relay_events_in", "Events the relay read upstream.", "events_in"),
    ("relay_events_sent", "Events the relay wrote to its consumers.", "events_sent"),
    ("relay_events_dropped", "Events dropped for slow consumers.", "events_dropped"),
    ("relay_slow_consumers", "Consumers disconnected as slow.", "slow_consumers"),
)
_REDIS_SINK_COUNTERS = (
    ("redis_sink_received", "Events handed to the Redis sink.", "received"),
    ("redis_sink_published", "Events written to Redis.", "published"),
    ("redis_sink_dropped", "Events the Redis sink dropped.", "dropped"),
    ("redis_sink_errors", "Redis errors of the sink.", "errors"),
    ("redis_sink_reconnects", "Reconnections of the sink to Redis.", "reconnects"),
)
_REDIS_SOURCE_COUNTERS = (
    ("redis_source_read", "Entries read from Redis.", "read"),
    ("redis_source_acked", "Entries acknowledged.", "acked"),
    ("redis_source_lost", "Entries known lost.", "lost"),
    ("redis_source_gaps", "Gaps found in the producer's sequence.", "gaps"),
    ("redis_source_missing", "Entries missing from the producer's sequence.", "missing"),
    ("redis_source_stream_resets", "Streams or groups found reset.", "stream_resets"),
    ("redis_source_errors", "Redis errors of the source.", "errors"),
)
_RECORDER_COUNTERS = (
    ("recorder_records", "Records written by the recorder.", "records"),
    ("recorder_bytes_written", "Bytes the recorder wrote.", "bytes_written"),
    ("recorder_dropped", "Records the recorder dropped.", "dropped"),
    ("recorder_unrecordable", "Items the recorder could not record.", "unrecordable"),
)

# (metric suffix, help, key of BackfillStats.by_connection), each labelled source and connection.
_BACKFILL_COUNTERS = (
    ("backfill_gaps", "Gaps a backfill planned (with at least one symbol to refill).", "gaps"),
    ("backfill_requests", "Symbol windows the backfill fetched over REST (one per symbol per gap).", "symbols"),
    ("backfill_events", "Backfilled events delivered.", "events"),
    ("backfill_duplicates", "Events left out at the backfill's seams.", "duplicates"),
    ("backfill_failed", "Symbol fetches that failed or were stopped.", "failed"),
    ("backfill_partial", "Symbols with part of their gap not refilled (a budget, a hold overflow).", "partial"),
    ("backfill_not_backfillable", "Channels of gapped connections not backfillable (wildcards, no REST history).",
     "not_backfillable"),
    ("backfill_held_events", "Live events held while their symbol's backfill ran.", "held"),
    ("backfill_hold_overflow", "Held live events discarded beyond hold_limit.", "held_dropped"),
)  # fmt: skip

Labels = tuple[tuple[str, str], ...]


class _Families:
    """Metric families built during one scrape, in first-seen order."""

    def __init__(self, floors: _CounterFloors) -> None:
        self._floors = floors
        self._families: dict[str, Metric] = {}

    def _family(
        self, kind: str, name: str, documentation: str, labels: Iterable[str]
    ) -> CounterMetricFamily | GaugeMetricFamily:
        family = self._families.get(name)
        if not isinstance(family, (CounterMetricFamily, GaugeMetricFamily)):
            maker = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            family = maker(PREFIX + name, documentation, labels=list(labels))
            self._families[name] = family
        return family

    def counter(self, name: str, documentation: str, labels: Mapping[str, str], value: float) -> None:
        family = self._family("counter", name, documentation, labels)
        family.add_metric(list(labels.values()), self._floors.monotonic(name, labels, value))

    def gauge(self, name: str, documentation: str, labels: Mapping[str, str], value: float | None) -> None:
        family = self._family("gauge", name, documentation, labels)
        if value is not None:
            family.add_metric(list(labels.values()), float(value))

    def summary(
        self, name: str, documentation: str, labels: Mapping[str, str], quantiles_us: Mapping[str, float],
        count: int, sum_us: float,
    ) -> None:  # fmt: skip
        """Quantiles (over recent samples) plus ``_count`` and ``_sum`` (since the start, monotonic)."""
        family = self._families.get(name)
        if family is None:
            family = Metric(PREFIX + name, documentation, "summary")
            self._families[name] = family
        for key, quantile in _QUANTILES.items():
            if key in quantiles_us:
                family.add_sample(PREFIX + name, {**labels, "quantile": quantile}, quantiles_us[key] / 1e6)
        floors = self._floors
        family.add_sample(PREFIX + name + "_count", dict(labels), floors.monotonic(name + "_count", labels, count))
        family.add_sample(PREFIX + name + "_sum", dict(labels), floors.monotonic(name + "_sum", labels, sum_us / 1e6))

    def __iter__(self) -> Iterator[Metric]:
        return iter(self._families.values())


class _CounterFloors:
    """Keeps counters monotonic across a reset (a recycled connection counts from zero)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[tuple[str, Labels], float] = {}
        self._offset: dict[tuple[str, Labels], float] = {}

    def monotonic(self, name: str, labels: Mapping[str, str], value: float) -> float:
        key = (name, tuple(labels.items()))
        with self._lock:
            last = self._last.get(key, 0.0)
            if value < last:
                self._offset[key] = self._offset.get(key, 0.0) + last
            self._last[key] = value
            return self._offset.get(key, 0.0) + value


def _value(snapshot: Any, attribute: str) -> Any:
    value = getattr(snapshot, attribute, None)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _connection(out: _Families, snapshot: Any) -> None:
    labels = {"connection": str(snapshot.name), "market": str(getattr(snapshot, "market", "") or "")}
    for suffix, documentation, attribute in _CONNECTION_COUNTERS:
        value = _value(snapshot, attribute)
        if value is not None:
            out.counter(suffix, documentation, labels, value)
    current = str(getattr(snapshot.state, "value", snapshot.state))
    for state in ConnectionState:
        out.gauge("connection_state", "1 for the connection's current state, 0 for the others.",
                  {**labels, "state": state.value}, 1.0 if state.value == current else 0.0)  # fmt: skip
    for suffix, documentation, attribute in _CONNECTION_GAUGES:
        value = _value(snapshot, attribute)
        if attribute == "queue_events" and value is None:
            value = _value(snapshot, "queue_frames")  # sources that count queued frames, not events
        out.gauge(suffix, documentation, labels, value)
    for suffix, documentation, attribute in _REDIS_SOURCE_COUNTERS:
        value = _value(snapshot, attribute)
        if value is not None and hasattr(snapshot, "group"):
            out.counter(suffix, documentation, {"connection": str(snapshot.name)}, value)


def _adapter(out: _Families, snapshot: Any, source: str) -> None:
    labels = {"source": source}
    out.counter("dispatched", "Events handed to the adapter's handlers.", labels, snapshot.dispatched)
    for handler, count in sorted(snapshot.errors_by_handler.items()):
        out.counter("handler_errors", "Exceptions raised by a handler.", {**labels, "handler": handler}, count)
    out.summary("dispatch_latency_seconds",
                "Receive to callback latency: quantiles over recent samples; count and sum since the start.",
                labels, snapshot.latency_us, int(getattr(snapshot, "latency_samples_total", 0)),
                float(getattr(snapshot, "latency_sum_us", 0.0)))  # fmt: skip


def _backfill(out: _Families, snapshot: Any, source: str) -> None:
    """The ``massive_rt_backfill_*`` series of an adapter's ``BackfillStats``."""
    labels = {"source": source}
    for connection, counts in sorted(snapshot.by_connection.items()):
        for suffix, documentation, key in _BACKFILL_COUNTERS:
            out.counter(suffix, documentation, {**labels, "connection": connection}, counts.get(key, 0))
    out.gauge("backfill_in_flight", "Symbol fetches planned and not delivered yet.", labels, snapshot.in_flight)
    out.gauge("backfill_last_duration_seconds", "Seconds from the last finished gap to its backfill_done.",
              labels, snapshot.last_duration_s)  # fmt: skip


def _counters(out: _Families, snapshot: Any, table: Iterable[tuple[str, str, str]], labels: Mapping[str, str]) -> None:
    for suffix, documentation, attribute in table:
        value = _value(snapshot, attribute)
        if value is not None:
            out.counter(suffix, documentation, labels, value)


def _walk(out: _Families, snapshot: Any) -> None:
    """Turn one snapshot (and the snapshots it holds) into samples, by the fields it has."""
    if hasattr(snapshot, "dispatched") and hasattr(snapshot, "latency_us"):  # AdapterStats
        _adapter(out, snapshot, str(getattr(snapshot.source, "name", "")))
        if getattr(snapshot, "backfill", None) is not None:
            _backfill(out, snapshot.backfill, str(getattr(snapshot.source, "name", "")))
        _walk(out, snapshot.source)
    elif hasattr(snapshot, "per_connection"):  # PoolStats
        labels = {"pool": str(snapshot.name)}
        out.counter("pool_recycled", "Connections the pool replaced.", labels, snapshot.recycled)
        out.gauge("pool_connections", "Open connections of the pool.", labels, snapshot.connections)
        for member in snapshot.per_connection:
            _walk(out, member)
    elif hasattr(snapshot, "upstream") and hasattr(snapshot, "consumers"):  # RelayStats
        labels = {"relay": str(snapshot.name)}
        _counters(out, snapshot, _RELAY_COUNTERS, labels)
        out.gauge("relay_consumers", "Downstream connections of the relay.", labels, snapshot.downstream_connections)
        _walk(out, snapshot.upstream)
    elif hasattr(snapshot, "published") and hasattr(snapshot, "epoch"):  # RedisSinkStats
        labels = {"sink": str(snapshot.name)}
        _counters(out, snapshot, _REDIS_SINK_COUNTERS, labels)
        out.gauge("redis_sink_buffered", "Events waiting to be written to Redis.", labels, snapshot.buffered)
    elif hasattr(snapshot, "records") and hasattr(snapshot, "bytes_written"):  # RecorderStats
        labels = {"recorder": str(snapshot.files[0]) if snapshot.files else ""}  # its first file names it
        _counters(out, snapshot, _RECORDER_COUNTERS, labels)
        out.gauge("recorder_buffered", "Records waiting to be written.", labels, snapshot.buffered)
    elif hasattr(snapshot, "state") and hasattr(snapshot, "name"):  # one connection of any source
        _connection(out, snapshot)
    else:
        logger.warning("metrics: no metrics for a %s snapshot (unknown kind)", type(snapshot).__name__)


def samples(snapshots: Iterable[Any], floors: _CounterFloors | None = None) -> list[Metric]:
    """The metric families of ``snapshots`` (``stats()`` results), as a scrape returns them.

    Pure: no I/O, no registry. ``floors`` keeps counters monotonic across calls (a fresh one each
    call when None).
    """
    out = _Families(floors or _CounterFloors())
    for snapshot in snapshots:
        _walk(out, snapshot)
    return list(out)


class StatsCollector(Collector):
    """A ``prometheus_client`` collector that calls ``stats()`` of its targets at each scrape.

    Thread-safe: scrapes may run concurrently (each ``stats()`` is safe from any thread).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._targets: list[Callable[[], Any]] = []
        self._floors = _CounterFloors()

    def add(self, target: Any) -> None:
        """Export ``target`` (anything with ``stats()``) too."""
        stats = getattr(target, "stats", None)
        if not callable(stats):
            raise ConfigurationError(f"target={target!r} has no stats(); pass an adapter or a source", field="target")
        with self._lock:
            self._targets.append(stats)

    def collect(self) -> Iterator[Metric]:
        """One ``stats()`` per target, turned into metric families (called by the registry)."""
        with self._lock:
            targets = list(self._targets)
        return iter(samples((stats() for stats in targets), self._floors))


_COLLECTORS: weakref.WeakKeyDictionary[CollectorRegistry, StatsCollector] = weakref.WeakKeyDictionary()
_COLLECTORS_LOCK = threading.Lock()


def instrument(target: Any, registry: CollectorRegistry | None = None) -> StatsCollector:
    """Export the ``stats()`` of ``target`` (an adapter, client, pool, relay, sink …) to ``registry``.

    Call once per object; several objects share one collector per registry (so no series is
    registered twice). Safe to call before or after ``start()``.

    Args:
        target: anything with ``stats()``; an adapter exports its source's connections too.
        registry: the ``prometheus_client`` registry (default: the global ``REGISTRY``).

    Returns:
        The registry's collector.

    Raises:
        ConfigurationError: ``target`` has no ``stats()``.
    """
    registry = REGISTRY if registry is None else registry
    with _COLLECTORS_LOCK:
        collector = _COLLECTORS.get(registry)
        fresh = collector is None
        if collector is None:
            collector = _COLLECTORS[registry] = StatsCollector()
    collector.add(target)
    if fresh:
        registry.register(collector)
    return collector
