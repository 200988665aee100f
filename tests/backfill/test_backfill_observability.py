"""Backfill counters where operators look (issue 15): ``AdapterStats.backfill``, the Prometheus
``massive_rt_backfill_*`` series scraped over HTTP and parsed with ``prometheus_client.parser``, and
the status page (JSON snapshot and event stream) — after a real gap on the mock servers."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.parser import text_string_to_metric_families

import massive_rt as mrt
from massive_rt.metrics import instrument
from massive_rt.testing import MockMassiveServer
from massive_rt.web import serve_status
from tests.conftest import wait_until
from tests.operating.conftest import get
from tests.operating.test_status_page import events

from .conftest import SYMBOLS, Publisher, Seen

Make = Callable[..., tuple[mrt.RealTimeDataAdapter, mrt.Backfill]]


def _one_gap(server: MockMassiveServer, seen: Seen, publisher: Publisher) -> None:
    publisher.start()
    assert wait_until(lambda: len(seen.trades) >= 5 * len(SYMBOLS), 10)
    assert server.drop_all() == 1
    seen.wait_status("backfill_done")
    publisher.stop()


@pytest.mark.timeout(60)
def test_adapter_stats_carry_the_backfill_counters_per_connection(
    massive_server: MockMassiveServer, backfilled: Make, seen: Seen, publisher: Publisher
) -> None:
    adapter, backfill = backfilled([f"T.{s}" for s in SYMBOLS])
    assert adapter.stats().backfill == backfill.stats()
    assert adapter.stats().backfill.last_duration_s is None  # type: ignore[union-attr]
    _one_gap(massive_server, seen, publisher)
    stats = adapter.stats().backfill
    assert stats is not None
    (done,) = seen.status("backfill_done")
    rest = [t for t in seen.trades if t.origin == "rest"]
    assert rest, "the drop lost nothing: the test proves nothing"
    assert (stats.name, stats.gaps, stats.symbols, stats.in_flight, stats.events) == (
        "backfill", 1, len(SYMBOLS), 0, len(rest))  # fmt: skip
    assert stats.last_duration_s is not None
    assert stats.last_duration_s >= done.duration_s
    connection = adapter.source.name
    assert stats.by_connection[connection]["events"] == len(rest)
    assert stats.by_connection[connection]["gaps"] == 1
    assert adapter.stats().to_dict()["backfill"]["by_connection"][connection]["events"] == len(rest)
    plain = mrt.RealTimeDataAdapter(mrt.SyntheticSource(["T.*"], rate=None))
    assert plain.stats().backfill is None


def _scrape(url: str) -> dict[str, Any]:
    status, _type, body = get(url)
    assert status == 200
    return {family.name: family for family in text_string_to_metric_families(body)}


@pytest.mark.timeout(60)
def test_backfill_counters_are_scraped_as_prometheus_series_labelled_by_source_and_connection(
    massive_server: MockMassiveServer, backfilled: Make, seen: Seen, publisher: Publisher
) -> None:
    adapter, backfill = backfilled([f"T.{s}" for s in SYMBOLS])
    registry = CollectorRegistry()
    instrument(adapter, registry)
    httpd, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        url = f"http://127.0.0.1:{httpd.server_port}/metrics"
        before = _scrape(url)
        assert before["massive_rt_backfill_in_flight"].type == "gauge"
        assert "massive_rt_backfill_events" not in before  # no gapped connection yet: no series
        _one_gap(massive_server, seen, publisher)
        families = _scrape(url)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
    stats = backfill.stats()
    labels = {"source": adapter.source.name, "connection": adapter.source.name}
    expected = {"gaps": 1, "requests": len(SYMBOLS), "events": stats.events, "duplicates": stats.duplicates,
                "failed": 0, "partial": 0, "not_backfillable": 0, "held_events": stats.held,
                "hold_overflow": 0}  # fmt: skip
    for name, value in expected.items():
        family = families[f"massive_rt_backfill_{name}"]
        assert family.type == "counter", name
        (sample,) = [s for s in family.samples if s.name.endswith("_total")]
        assert (sample.labels, sample.value) == (labels, value), name
    assert expected["events"] > 0
    (in_flight,) = families["massive_rt_backfill_in_flight"].samples
    assert (in_flight.labels, in_flight.value) == ({"source": adapter.source.name}, 0)
    (duration,) = families["massive_rt_backfill_last_duration_seconds"].samples
    assert duration.value == pytest.approx(stats.last_duration_s)


@pytest.mark.timeout(60)
def test_the_status_page_shows_backfills_as_they_happen_and_their_counters(
    massive_server: MockMassiveServer, backfilled: Make, seen: Seen, publisher: Publisher
) -> None:
    adapter, backfill = backfilled([f"T.{s}" for s in SYMBOLS])
    page = serve_status(adapter, interval=0.05)
    try:
        _one_gap(massive_server, seen, publisher)

        def snapshot() -> dict[str, Any]:
            return json.loads(get(page.url + "status.json")[2])  # type: ignore[no-any-return]

        assert wait_until(lambda: (snapshot()["adapter"]["backfill"] or {}).get("events") == backfill.stats().events, 5)
        shown = snapshot()
        codes = [h["status"] for h in reversed(shown["happenings"])]  # newest first on the page
        assert [c for c in codes if c in ("gap", "backfill_started", "backfill_done")] == [
            "gap", "backfill_started", "backfill_done"]  # fmt: skip
        done = next(h for h in shown["happenings"] if h["status"] == "backfill_done")
        assert done["message"].startswith(f"backfilled {backfill.stats().events} event(s)")
        counters = shown["adapter"]["backfill"]
        assert (counters["gaps"], counters["in_flight"], counters["failed"], counters["hold_overflow"]) == (1, 0, 0, 0)
        assert counters["last_duration_s"] is not None
        (streamed,) = events(page.url, 1)
        assert streamed["adapter"]["backfill"] == counters
        assert "backfill_done" in [h["status"] for h in streamed["happenings"]]
    finally:
        page.stop()
