"""A recorder's Prometheus series: a synthetic stream recorded to a real file, scraped while it
records and after it stopped; types and labels, counters never decreasing, values of ``stats()``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

import massive_rt as mrt
from massive_rt.metrics import instrument
from tests.conftest import wait_until
from tests.operating.scrapes import assert_counters_never_decrease, only_value, scrape_registry

COUNTERS = ("records", "bytes_written", "dropped", "unrecordable")


def test_a_recorder_exports_its_counters_labelled_by_its_file(make_adapter: Any, tmp_path: Path) -> None:
    source = mrt.SyntheticSource(("T.*",), rate=None, seed=3, queue_size=1_000)
    adapter = make_adapter(source)
    events: list[mrt.Event] = []
    adapter.on("*", events.append)
    path = tmp_path / "metrics.mrt"
    recorder = mrt.Recorder(adapter, path, codec="gzip", flush_interval=0.01).start()
    registry = CollectorRegistry()
    instrument(recorder, registry)
    adapter.start()
    assert wait_until(lambda: recorder.stats().bytes_written > 0, 10)
    first = scrape_registry(registry)
    assert wait_until(lambda: recorder.stats().records > 2 * only_value(first, "recorder_records", "counter",
                                                                       {"recorder": str(path)}), 10)  # fmt: skip
    second = scrape_registry(registry)
    adapter.stop()
    assert recorder.stop()
    final = scrape_registry(registry)
    stats = recorder.stats()

    labels = {"recorder": str(path)}
    assert_counters_never_decrease(first, second, [f"recorder_{n}" for n in COUNTERS])
    assert_counters_never_decrease(second, final, [f"recorder_{n}" for n in COUNTERS])
    assert only_value(second, "recorder_records", "counter", labels) > only_value(first, "recorder_records", "counter",
                                                                                   labels)  # fmt: skip
    for name in COUNTERS:
        assert only_value(final, f"recorder_{name}", "counter", labels) == getattr(stats, name), name
    assert only_value(final, "recorder_buffered", "gauge", labels) == stats.buffered == 0
    assert stats.bytes_written == path.stat().st_size
