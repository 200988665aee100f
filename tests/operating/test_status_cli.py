"""``massive-rt status`` and ``stream --status-port``: the page of a process started with the CLI."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

import massive_rt as mrt
from massive_rt.testing import MockMassiveServer
from tests.conftest import wait_until
from tests.operating.conftest import get
from tests.operating.scrapes import only_value, parse
from tests.support import KEY
from tests.test_cli import CLI, ROOT, TIMEOUT, Running, clean_env


def rows(url: str) -> list[dict[str, object]]:
    return list(json.loads(get(url + "status.json")[2])["connections"])


def test_status_serves_the_page_of_its_stream_prints_no_events_and_stops_on_sigterm() -> None:
    proc = Running(*CLI, "status", "--port", "0", "--duration", "60", "T.AAPL")
    try:
        url = proc.wait_for(r"status page at (http://127\.0\.0\.1:\d+/)$").group(1)
        assert wait_until(lambda: any(r["state"] == "streaming" and r["events"] for r in rows(url)), 10)
        received = parse(get(url + "metrics")[2])["massive_rt_events_received"]
        assert received.type == "counter"
        assert sum(s.value for s in received.samples if s.name.endswith("_total")) > 0
        proc.proc.send_signal(signal.SIGTERM)
        code, out, err = proc.finish()
    finally:
        proc.close()
    assert code == 0, err
    assert out == ""
    assert "summary" in err


def test_stream_with_a_status_port_prints_events_and_serves_the_page() -> None:
    proc = Running(*CLI, "stream", "--status-port", "0", "--format", "jsonl", "--limit", "500", "--rate", "1000", "T.*")
    try:
        url = proc.wait_for(r"status page at (http://127\.0\.0\.1:\d+/)$").group(1)
        assert "massive_rt" in get(url)[2]
        families = parse(get(url + "metrics")[2])  # the same port serves the stream's metrics
        assert families["massive_rt_connection_state"].type == "gauge"
        assert families["massive_rt_dispatch_latency_seconds"].type == "summary"
        code, out, err = proc.finish()
    finally:
        proc.close()
    assert code == 0, err
    assert len(out.splitlines()) == 500


@pytest.mark.timeout(90)
def test_a_relay_with_a_status_port_serves_its_page_and_its_metrics_until_sigterm(
    server: MockMassiveServer, make_client: Callable[..., mrt.MassiveWebSocketClient]
) -> None:
    upstream = f"ws://127.0.0.1:{server.port}/{{market}}"
    proc = Running(*CLI, "relay", "--api-key", KEY, "--upstream-url", upstream, "--port", "0", "--status-port", "0",
                   "--duration", "80")  # fmt: skip
    try:
        relay_url = proc.wait_for(r"listening on (ws://127\.0\.0\.1:\d+/)\{market\}").group(1)
        page = proc.wait_for(r"status page at (http://127\.0\.0\.1:\d+/)$").group(1)
        assert proc.wait_for(r"Prometheus metrics at (\S+)$").group(1) == page + "metrics"
        client = make_client(url=relay_url + "stocks", subscriptions=["T.AAPL"]).start()
        client.wait_ready(10)
        assert server.wait_for_subscribed("T.AAPL", 10)
        server.publish([{"ev": "T", "sym": "AAPL", "p": 1.0 + q, "s": 1, "t": 1, "q": q} for q in range(25)])
        received: list[mrt.Event] = []
        assert wait_until(lambda: bool(received.extend(client.drain())) or len(received) >= 25, 10)

        def relay_sent() -> float:
            return only_value(parse(get(page + "metrics")[2]), "relay_events_sent", "counter", {"relay": "relay"})

        assert wait_until(lambda: relay_sent() == 25, 10)
        families = parse(get(page + "metrics")[2])
        assert only_value(families, "relay_consumers", "gauge", {"relay": "relay"}) == 1
        assert only_value(families, "relay_events_dropped", "counter", {"relay": "relay"}) == 0
        assert only_value(families, "relay_events_in", "counter", {"relay": "relay"}) == 25
        # The page: the relay's upstream connection (once the sampler has seen it, within a second or so).
        assert wait_until(lambda: [(r["market"], r["state"]) for r in rows(page)] == [("stocks", "streaming")], 10)
        assert KEY not in get(page + "status.json")[2] + get(page + "metrics")[2]
        proc.proc.send_signal(signal.SIGTERM)
        code, _, err = proc.finish()
    finally:
        proc.close()
    assert code == 0, err
    assert "forwarded 25 upstream events, sent 25 to 1 client(s)" in err


def test_without_prometheus_client_the_page_is_served_and_says_how_to_get_metrics(tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "prometheus_client.py").write_text(
        'raise ModuleNotFoundError("No module named \'prometheus_client\'", name="prometheus_client")\n',
        encoding="utf-8",
    )
    env = clean_env()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(blocked), env.get("PYTHONPATH")) if p)
    done = subprocess.run([*CLI, "stream", "--status-port", "0", "--format", "jsonl", "--limit", "50", "T.*"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=TIMEOUT, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 50
    assert re.search(r"status page at http://127\.0\.0\.1:\d+/\n", done.stderr)
    assert "no /metrics without prometheus_client: pip install 'massive-rt[metrics]'" in done.stderr
