"""The Redis sink's and source's Prometheus series against a real redis-server: a mock upstream
into a sink, a consumer group reading it back; every metric present with its type and labels,
counters never decreasing across scrapes, values equal to ``stats()``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from massive_rt.adapter import RealTimeDataAdapter
from massive_rt.metrics import instrument
from massive_rt.sinks import RedisStreamSink, RedisStreamSource
from massive_rt.testing import MockMassiveServer
from tests.conftest import wait_until
from tests.operating.scrapes import assert_counters_never_decrease, only_value, scrape_registry
from tests.redis.conftest import (
    QUICK,
    Managed,
    Recorder,
    RedisServer,
    start_adapter,
    trades,
    upstream_client,
)

SINK_COUNTERS = ("received", "published", "dropped", "errors", "reconnects")
SOURCE_COUNTERS = ("read", "acked", "lost", "gaps", "missing", "stream_resets", "errors")


def test_a_sink_and_a_source_export_their_counters_equal_to_their_stats(
    redis_server: RedisServer, mock_server: MockMassiveServer, managed: Managed
) -> None:
    upstream = RealTimeDataAdapter(upstream_client(mock_server, ("T.*",)))
    sink = RedisStreamSink(upstream, redis_server.url, reconnect=QUICK, socket_timeout=2.0)
    managed.add(sink.stop)
    sink.start()
    start_adapter(upstream, managed)
    source = RedisStreamSource(redis_server.url, ["massive:stocks:T"], reconnect=QUICK, block_ms=50)
    received = Recorder()
    start_adapter(RealTimeDataAdapter(source, on_event=received), managed)
    source.wait_ready(15)
    registry = CollectorRegistry()
    instrument(sink, registry)
    instrument(source, registry)
    upstream.wait_ready(15)

    mock_server.publish(trades(0, 100))
    assert received.wait_count(100)
    assert wait_until(lambda: source.stats().acked == 100, 10)
    first = scrape_registry(registry)
    mock_server.publish(trades(100, 150))
    assert received.wait_count(250)
    assert wait_until(lambda: source.stats().acked == 250 and sink.stats().buffered == 0, 10)
    second = scrape_registry(registry)
    sink_stats, source_stats = sink.stats(), source.stats()

    assert_counters_never_decrease(first, second, [f"redis_sink_{n}" for n in SINK_COUNTERS])
    assert_counters_never_decrease(first, second, [f"redis_source_{n}" for n in SOURCE_COUNTERS])
    sink_labels = {"sink": sink_stats.name}
    for name in SINK_COUNTERS:
        assert only_value(second, f"redis_sink_{name}", "counter", sink_labels) == getattr(sink_stats, name), name
    assert only_value(second, "redis_sink_buffered", "gauge", sink_labels) == sink_stats.buffered == 0
    assert only_value(first, "redis_sink_published", "counter", sink_labels) == 100
    assert sink_stats.published == 250

    source_labels = {"connection": source_stats.name}
    for name in SOURCE_COUNTERS:
        value = only_value(second, f"redis_source_{name}", "counter", source_labels)
        assert value == getattr(source_stats, name), name
    assert (source_stats.read, source_stats.acked) == (250, 250)
    # The source is a connection like any other: events received, state, queue.
    connection = {"connection": source_stats.name, "market": ""}
    assert only_value(second, "events_received", "counter", connection) == source_stats.events_decoded == 250
    assert only_value(second, "queue_events", "gauge", connection) == source_stats.queue_frames
