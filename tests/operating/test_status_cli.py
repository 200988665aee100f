"""``massive-rt status`` and ``stream --status-port``: the page of a process started with the CLI."""

from __future__ import annotations

import json
import signal

from tests.conftest import wait_until
from tests.operating.conftest import get
from tests.test_cli import CLI, Running


def rows(url: str) -> list[dict[str, object]]:
    return list(json.loads(get(url + "status.json")[2])["connections"])


def test_status_serves_the_page_of_its_stream_prints_no_events_and_stops_on_sigterm() -> None:
    proc = Running(*CLI, "status", "--port", "0", "--duration", "60", "T.AAPL")
    try:
        url = proc.wait_for(r"status page at (http://127\.0\.0\.1:\d+/)$").group(1)
        assert wait_until(lambda: any(r["state"] == "streaming" and r["events"] for r in rows(url)), 10)
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
        code, out, err = proc.finish()
    finally:
        proc.close()
    assert code == 0, err
    assert len(out.splitlines()) == 500
