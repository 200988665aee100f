"""Redis Streams fan-out: publish an adapter's events, and consume them elsewhere as an event source.

One process holds the Massive connections and publishes; any number of services, on any
machine, consume the same typed events through the same :class:`~massive_rt.RealTimeDataAdapter`
API::

    # publisher
    adapter = RealTimeDataAdapter(pool)
    with RedisStreamSink(adapter, "redis://cache:6379/0"), adapter:
        adapter.subscribe("T.*", "Q.*", market="stocks")
        ...

    # consumer, anywhere
    source = RedisStreamSource("redis://cache:6379/0", ["massive:stocks:T", "massive:stocks:Q"])
    with RealTimeDataAdapter(source) as adapter:
        adapter.on(EquityTrade, handle_trade)

Streams and entries
    One stream per ``(market, ev)``, named by a template (default ``massive:{market}:{ev}``, e.g.
    ``massive:stocks:T``, ``massive:futures/cme:A``; forwarded statuses go to ``ev="status"``).
    One entry per event, with the fields ``d`` (the event's wire dict as compact JSON, with the
    official keys, see :func:`massive_rt.models.to_wire`), ``ev``, ``market``, ``connection``
    (the upstream connection) and ``received_at_ns`` (when the upstream connection read it). Entry
    ids are ``<receive time in ms>-<n>`` (kept increasing per stream), so ``XRANGE`` by time works,
    and they make the sink's retries idempotent (below). Each entry also carries its producer's
    ``epoch`` (new at every sink start) and ``seq`` (1, 2, 3 … per stream and epoch).

Delivery semantics
    *Sink* — at most once per event, and never silently lossy: every event handed to the sink is
    eventually ``published`` (written and acknowledged by Redis), or counted in ``dropped`` (the
    bounded buffer overflowed while Redis was unreachable or slow, Redis refused the entry, its
    market could not be resolved, or ``stop()`` ran out of time), or ``skipped`` (``RawFrame``).
    ``received == published + dropped + skipped + buffered`` at every quiescent moment. Writes that
    failed mid-pipeline are retried after a reconnect without duplicates: the sink looks up the
    ids it assigned (``XRANGE``) and counts those holding its epoch and sequence as written (Redis
    ran them, the reply was lost, or they landed late), re-sending only the rest (use one sink per
    stream set).

    *Source* — at least once per consumer group. An entry is acknowledged (``XACK``) only after
    the events decoded from it were handed out by :meth:`RedisStreamSource.drain` (or
    :meth:`~RedisStreamSource.get`) **and** the consumer came back for more: the adapter's
    dispatcher calls ``drain()`` again only after every handler returned for the previous batch,
    so "the next ``drain()``/``get()`` call" (or :meth:`~RedisStreamSource.commit`) is the
    completion signal. Acknowledgements are sent by the source's own thread (never on the
    dispatcher), at the latest ``block_ms`` after completion. Entries that were read but not
    completed when the process dies stay pending in the group: a consumer with the same name
    re-reads them on start, and any consumer of the group claims them with ``XAUTOCLAIM`` once
    they have been idle for ``claim_min_idle_ms`` (checked on start and every ``claim_interval``
    seconds). So a handler may see an event again after a crash (or when ``stop()`` timed out
    before its acknowledgement was sent), never zero times while the entry still exists. Within
    one consumer, entries of a stream are delivered in stream order; claimed entries of another
    consumer arrive when claimed. Several consumers of one group share the work (each entry goes
    to one of them); distinct groups each receive everything.

    *Inside Redis* — what survives a Redis restart depends on its persistence settings (the
    sink reads them at start, ``stats().persistence``, and warns once when a restart could lose
    entries). Whatever they are, loss is reported: entries of a producer that vanished before the
    group read them arrive as a ``gap`` status (``dropped`` = how many), a group that vanished and
    was re-created as ``stream_reset`` (both in order with the events; see
    :class:`RedisStreamSource` and ``docs/redis.md``).

Threads: the sink writes on ``massive-rt-redis-sink-<name>``, the source reads and acknowledges on
``massive-rt-redis-source-<name>``; both are daemons joined by ``stop()``. The ``redis`` package is
imported when a sink or source is constructed, never at ``import massive_rt`` (nor at ``import
massive_rt.redis``).

Modules: :mod:`~massive_rt.redis.sink` (:class:`RedisStreamSink`), :mod:`~massive_rt.redis.source`
(:class:`RedisStreamSource`), ``_wire`` (the entry format, both directions), ``_continuity`` (producer
sequences: which entries vanished) and ``_client`` (the redis-py import, clients and reconnect policy
both use). Loggers: ``massive_rt.redis.sink`` and
``massive_rt.redis.source``. :mod:`massive_rt.sinks.redis` re-exports this package.
"""

from __future__ import annotations

from ._client import DEFAULT_URL
from ._wire import DEFAULT_STREAM
from .sink import DEFAULT_STATUSES, RedisSinkStats, RedisStreamSink
from .source import RedisSourceStats, RedisStreamSource

__all__ = [
    "DEFAULT_STATUSES",
    "DEFAULT_STREAM",
    "DEFAULT_URL",
    "RedisSinkStats",
    "RedisSourceStats",
    "RedisStreamSink",
    "RedisStreamSource",
]
