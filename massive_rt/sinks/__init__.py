"""Fan-out of an adapter's events to other processes and machines.

:class:`RedisStreamSink` publishes every event of a :class:`~massive_rt.RealTimeDataAdapter` to
Redis Streams and :class:`RedisStreamSource` turns those streams back into the same typed events
for another adapter; both live in :mod:`massive_rt.redis` (re-exported here and by
:mod:`massive_rt.sinks.redis`). Both need the ``redis`` package (``pip install 'massive-rt[redis]'``);
it is imported only when one of them is constructed, so ``import massive_rt`` and
``import massive_rt.sinks`` never require it.
"""

from __future__ import annotations

from .redis import (
    DEFAULT_STATUSES,
    DEFAULT_STREAM,
    DEFAULT_URL,
    RedisSinkStats,
    RedisSourceStats,
    RedisStreamSink,
    RedisStreamSource,
)

__all__ = [
    "DEFAULT_STATUSES",
    "DEFAULT_STREAM",
    "DEFAULT_URL",
    "RedisSinkStats",
    "RedisSourceStats",
    "RedisStreamSink",
    "RedisStreamSource",
]
