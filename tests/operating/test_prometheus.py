"""Prometheus metrics: scraped over HTTP from a real server while the mock streams, parsed with
``prometheus_client.parser``; every metric present with its type and labels, counters never
decrease, values equal to ``stats()``."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest, make_wsgi_app, start_http_server
from prometheus_client.parser import text_string_to_metric_families

import massive_rt as mrt
from massive_rt.metrics import StatsCollector, instrument
from massive_rt.testing import MockMassiveServer
from tests.conftest import wait_until
from tests.operating.conftest import get
from tests.support import KEY
from tests.test_cli import TIMEOUT, clean_env

COUNTERS = ("events_received", "events_dropped", "decode_errors", "reconnects")
GAUGES = ("queue_events", "queue_high_water", "last_message_age_seconds", "subscriptions")


def trade(sym: str, q: int) -> dict[str, object]:
    return {"ev": "T", "sym": sym, "p": 100.0 + q, "s": 100, "t": 1, "q": q}


def scrape(url: str) -> dict[str, Any]:
    """The families of one scrape, by name (a counter's name is without ``_total``)."""
    status, content_type, body = get(url)
    assert status == 200
    assert content_type.startswith("text/plain")
    return {family.name: family for family in text_string_to_metric_families(body)}


def values(family: Any, suffix: str = "") -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value for s in family.samples if s.name == family.name + suffix}


def by_connection(family: Any, suffix: str = "") -> dict[str, float]:
    return {s.labels["connection"]: s.value for s in family.samples if s.name == family.name + suffix}


@pytest.mark.allow_errors(r"^handler \S+ raised ValueError on EquityTrade", logger="massive_rt.adapter")
def test_a_scrape_over_http_exports_every_connection_of_a_pool_with_types_labels_and_stats_values(
    server: MockMassiveServer,
    make_pool: Callable[..., mrt.ConnectionPool],
    make_adapter: Callable[..., mrt.RealTimeDataAdapter],
    serve_wsgi: Callable[[Any], str],
) -> None:
    pool = make_pool(max_subscriptions_per_connection=1)
    adapter = make_adapter(pool)
    seen: list[int] = []
    done = threading.Event()

    def fussy(event: mrt.EquityTrade) -> None:
        seen.append(1)
        if len(seen) >= 20:
            done.set()
        if event.symbol == "MSFT":
            raise ValueError("this handler dislikes MSFT")

    adapter.on(mrt.EquityTrade, fussy)
    registry = CollectorRegistry()
    instrument(adapter, registry)
    url = serve_wsgi(make_wsgi_app(registry)) + "/metrics"
    adapter.start()
    adapter.subscribe("T.AAPL", "T.MSFT")
    adapter.wait_ready(5)
    assert len(pool.connections) == 2

    server.publish([trade(sym, q) for q in range(10) for sym in ("AAPL", "MSFT")])
    assert done.wait(5)
    first = scrape(url)
    server.publish([trade(sym, q) for q in range(10, 20) for sym in ("AAPL", "MSFT")])
    assert wait_until(lambda: pool.stats().events_decoded >= 40, 5)
    assert wait_until(lambda: len(seen) >= 40, 5)
    second = scrape(url)
    stats = adapter.stats()

    names = {c.name for c in pool.connections}
    for name in COUNTERS:
        assert second[f"massive_rt_{name}"].type == "counter", name
        assert set(by_connection(second[f"massive_rt_{name}"], "_total")) == names, name
    for name in GAUGES:
        assert second[f"massive_rt_{name}"].type == "gauge", name
        assert set(by_connection(second[f"massive_rt_{name}"])) == names, name
    state = second["massive_rt_connection_state"]
    assert state.type == "gauge"
    assert {s.labels["state"] for s in state.samples} == {s.value for s in mrt.ConnectionState}
    assert all(s.labels["market"] == "stocks" for s in state.samples)
    streaming = {s.labels["connection"] for s in state.samples if s.value == 1.0}
    assert streaming == names
    assert all(s.labels["state"] == "streaming" for s in state.samples if s.value == 1.0)

    # Counters only ever go up between the two scrapes, and moved with the second batch.
    for name in (*COUNTERS, "dispatched", "handler_errors"):
        before, after = values(first[f"massive_rt_{name}"], "_total"), values(second[f"massive_rt_{name}"], "_total")
        assert all(after[k] >= v for k, v in before.items()), name
    received = by_connection(second["massive_rt_events_received"], "_total")
    assert sum(received.values()) == 40
    assert sum(by_connection(first["massive_rt_events_received"], "_total").values()) == 20

    # The values are those of stats() (the stream is quiet now: nothing moves between the two).
    per = {c.name: c for c in stats.source.per_connection}
    assert received == {n: float(c.events_decoded) for n, c in per.items()}
    assert by_connection(second["massive_rt_subscriptions"]) == {n: float(c.subscriptions) for n, c in per.items()}
    assert by_connection(second["massive_rt_queue_high_water"]) == {
        n: float(c.queue_high_water) for n, c in per.items()
    }
    errors = second["massive_rt_handler_errors"]
    assert errors.type == "counter"
    assert {s.labels["handler"]: s.value for s in errors.samples if s.name.endswith("_total")} == {
        h: float(n) for h, n in stats.errors_by_handler.items()
    }
    assert stats.errors_by_handler
    assert next(iter(stats.errors_by_handler.values())) == 20
    latency = second["massive_rt_dispatch_latency_seconds"]
    assert latency.type == "summary"
    quantiles = {s.labels["quantile"]: s.value for s in latency.samples if s.name == latency.name}
    assert set(quantiles) == {"0.5", "0.9", "0.99", "0.999"}
    assert 0 < quantiles["0.5"] <= quantiles["0.99"] < 5
    # A proper summary: _count and _sum since the start, never decreasing, equal to stats().
    (count,) = values(latency, "_count").values()
    (total,) = values(latency, "_sum").values()
    (count_before,) = values(first["massive_rt_dispatch_latency_seconds"], "_count").values()
    (total_before,) = values(first["massive_rt_dispatch_latency_seconds"], "_sum").values()
    assert 0 < count_before <= count
    assert 0 < total_before <= total
    assert count == stats.latency_samples_total > 0
    assert total == pytest.approx(stats.latency_sum_us / 1e6)
    assert 0 < total / count < 5  # a mean latency in seconds
    assert stats.latency_samples_total <= 2 * stats.dispatched  # at most two samples per batch of events
    assert second["massive_rt_pool_recycled"].type == "counter"
    dispatched = values(second["massive_rt_dispatched"], "_total")
    assert list(dispatched.values()) == [float(stats.dispatched)]


def test_start_http_server_serves_the_metrics_as_prometheus_client_documents(
    make_client: Callable[..., mrt.MassiveWebSocketClient],
) -> None:
    client = make_client(subscriptions=["T.AAPL"]).start()
    client.wait_ready(5)
    registry = CollectorRegistry()
    instrument(client, registry)
    httpd, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        families = scrape(f"http://127.0.0.1:{httpd.server_port}/metrics")
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
    state = families["massive_rt_connection_state"]
    assert {s.labels["state"] for s in state.samples if s.value == 1.0} == {"streaming"}
    assert {s.labels["connection"] for s in state.samples} == {client.name}


@pytest.mark.timeout(30)
@pytest.mark.allow_errors(r"failed: gave up after 1 consecutive failed attempts", logger="massive_rt.connection")
def test_counters_of_a_recycled_connection_never_decrease(
    server: MockMassiveServer,
    make_pool: Callable[..., mrt.ConnectionPool],
    make_adapter: Callable[..., mrt.RealTimeDataAdapter],
) -> None:
    pool = make_pool(client_options={"reconnect": mrt.ReconnectPolicy(max_attempts=0)})
    adapter = make_adapter(pool).start()
    adapter.subscribe("T.AAPL")
    adapter.wait_ready(5)
    registry = CollectorRegistry()
    instrument(adapter, registry)
    old = pool.connections[0]
    labels = {"connection": old.name, "market": "stocks"}
    server.publish([trade("AAPL", q) for q in range(5)])
    assert wait_until(lambda: old.stats().events_decoded == 5, 5)
    assert registry.get_sample_value("massive_rt_events_received_total", labels) == 5

    server.kick(server.active_connections()[0].id)  # max_attempts=0: the client gives up, the pool recycles it
    assert wait_until(lambda: pool.connections and pool.connections[0] is not old, 5)
    assert pool.connections[0].name == old.name
    assert pool.connections[0].stats().events_decoded == 0  # the replacement counts from zero ...
    assert registry.get_sample_value("massive_rt_events_received_total", labels) == 5  # ... the series does not
    assert registry.get_sample_value("massive_rt_pool_recycled_total", {"pool": pool.stats().name}) == 1


def test_a_counter_that_restarts_from_zero_keeps_rising_from_its_last_value() -> None:
    """Pure: the collector over a source whose counter goes 3, 7, then restarts (0, 2, 2, 10)."""
    counts = iter((3, 7, 0, 2, 2, 10))

    class Restarting:
        def stats(self) -> _Connection:
            return _Connection(events_decoded=next(counts))

    collector = StatsCollector()
    collector.add(Restarting())

    def received() -> float:
        (family,) = [f for f in collector.collect() if f.name == "massive_rt_events_received"]
        return float(family.samples[0].value)

    assert [received() for _ in range(6)] == [3, 7, 7, 9, 9, 17]


class _Connection:
    def __init__(self, events_decoded: int) -> None:
        self.name = "c0"
        self.market = "stocks"
        self.state = mrt.ConnectionState.STREAMING
        self.events_decoded = events_decoded


def test_instrument_refuses_an_object_without_stats() -> None:
    with pytest.raises(mrt.ConfigurationError, match=r"has no stats\(\)"):
        instrument(object(), CollectorRegistry())


def test_the_key_never_appears_in_a_scrape(make_client: Callable[..., mrt.MassiveWebSocketClient]) -> None:
    client = make_client(subscriptions=["T.AAPL"]).start()
    client.wait_ready(5)
    registry = CollectorRegistry()
    instrument(client, registry)
    text = generate_latest(registry).decode()
    assert "massive_rt_connection_state" in text
    assert KEY not in text


def test_without_prometheus_client_the_import_names_the_extra_and_the_package_does_not_need_it(
    tmp_path: Path,
) -> None:
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "prometheus_client.py").write_text(
        'raise ModuleNotFoundError("No module named \'prometheus_client\'", name="prometheus_client")\n',
        encoding="utf-8",
    )
    env = clean_env()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(blocked), env.get("PYTHONPATH")) if p)
    code = (
        "import massive_rt, massive_rt.web, sys; assert 'prometheus_client' not in sys.modules; "
        "import massive_rt.metrics"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=TIMEOUT,
                            check=False)  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert result.stderr.rstrip().splitlines()[-1] == (
        "ModuleNotFoundError: massive_rt.metrics needs the 'prometheus_client' package: "
        "pip install 'massive-rt[metrics]'"
    )
