"""Redis Streams sink and source: moved to :mod:`massive_rt.redis`; this module re-exports it.

``from massive_rt.sinks.redis import RedisStreamSink`` keeps working. Logs come from
``massive_rt.redis.sink`` and ``massive_rt.redis.source`` (formerly ``massive_rt.sinks.redis``).
"""

from __future__ import annotations

from ..redis import (
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
