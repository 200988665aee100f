"""The status page over HTTP (no browser here: tests/operating/test_browser.py drives one): its
assets ship in the package, its JSON and event stream follow the connections, the key never
reaches it, and every thread it starts ends with it."""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

import massive_rt as mrt
from massive_rt.testing import MockMassiveServer
from massive_rt.web import StatusServer, serve_status, status_app
from massive_rt.web.snapshot import page_snapshot, sample
from tests.conftest import wait_until
from tests.operating.conftest import get
from tests.support import KEY
from tests.test_cli import ROOT


def trade(sym: str, q: int) -> dict[str, object]:
    return {"ev": "T", "sym": sym, "p": 100.0 + q, "s": 100, "t": 1, "q": q}


def events(url: str, count: int, timeout: float = 5.0) -> Iterator[dict[str, Any]]:
    """The first ``count`` snapshots of the page's event stream."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    try:
        connection.request("GET", parts.path + "events")
        response = connection.getresponse()
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        for _ in range(count):
            line = b""
            while not line.startswith(b"data: "):
                line = response.readline()
                assert line, "the stream ended early"
            yield json.loads(line[len(b"data: ") :])
    finally:
        connection.close()


@pytest.fixture
def streaming(
    server: MockMassiveServer,
    make_client: Callable[..., mrt.MassiveWebSocketClient],
    make_adapter: Callable[..., mrt.RealTimeDataAdapter],
) -> Iterator[tuple[mrt.RealTimeDataAdapter, StatusServer]]:
    adapter = make_adapter(make_client(subscriptions=["T.AAPL", "T.MSFT"]))
    adapter.on(mrt.EquityTrade, lambda trade: None)
    page = serve_status(adapter, interval=0.05)
    adapter.start().wait_ready(5)
    try:
        yield adapter, page
    finally:
        page.stop()


def test_the_page_and_its_assets_are_served_by_the_package_with_nothing_from_the_internet(
    streaming: tuple[mrt.RealTimeDataAdapter, StatusServer],
) -> None:
    _, page = streaming
    status, content_type, html = get(page.url)
    assert (status, content_type) == (200, "text/html; charset=utf-8")
    linked = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sorted(linked) == ["static/status.css", "static/status.js"]
    for asset, kind in (("static/status.js", "text/javascript"), ("static/status.css", "text/css")):
        status, content_type, body = get(page.url + asset)
        assert status == 200
        assert content_type.startswith(kind)
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", body), asset  # the SVG namespace is a name
    with pytest.raises(Exception, match="404"):
        get(page.url + "static/../app.py")


def test_the_json_snapshot_and_the_event_stream_follow_the_connection_and_never_hold_the_key(
    server: MockMassiveServer, streaming: tuple[mrt.RealTimeDataAdapter, StatusServer]
) -> None:
    adapter, page = streaming
    client = adapter.source.clients()[0]
    server.publish([trade(sym, q) for q in range(10) for sym in ("AAPL", "MSFT")])
    assert wait_until(lambda: adapter.stats().dispatched >= 20, 5)

    def row() -> dict[str, Any]:
        (only,) = json.loads(get(page.url + "status.json")[2])["connections"]
        return dict(only)

    assert wait_until(lambda: row()["events"] == 20, 5)
    current = row()
    assert current["name"] == client.name
    assert current["state"] == "streaming"
    assert current["subscriptions"] == 2
    assert current["dropped"] == 0
    assert current["reconnects"] == 0
    assert max(current["history"]) > 0  # the 20 events show as a rate in some interval

    stream = list(events(page.url, 3))
    assert [s["connections"][0]["name"] for s in stream] == [client.name] * 3
    assert stream[-1]["adapter"]["dispatched"] >= 20
    assert stream[-1]["adapter"]["latency_p50_us"] > 0
    everything = get(page.url)[2] + get(page.url + "status.json")[2] + json.dumps(stream)
    assert KEY not in everything


def test_a_dropped_connection_shows_as_backoff_then_streaming_among_the_statuses(
    server: MockMassiveServer, streaming: tuple[mrt.RealTimeDataAdapter, StatusServer]
) -> None:
    adapter, page = streaming
    server.drop_all()
    assert wait_until(lambda: adapter.source.stats().reconnects == 1, 5)
    adapter.wait_ready(5)

    def statuses() -> list[tuple[str, str | None]]:
        snapshot = json.loads(get(page.url + "status.json")[2])
        return [(h["status"], h["state"]) for h in reversed(snapshot["happenings"])]

    def backoff_then_streaming() -> bool:
        seen = statuses()
        return ("state", "backoff") in seen and ("state", "streaming") in seen[seen.index(("state", "backoff")) :]

    assert wait_until(backoff_then_streaming, 5)
    assert wait_until(lambda: json.loads(get(page.url + "status.json")[2])["connections"][0]["reconnects"] == 1, 5)


def test_the_sampler_and_the_streams_end_with_the_adapter(
    make_client: Callable[..., mrt.MassiveWebSocketClient], make_adapter: Callable[..., mrt.RealTimeDataAdapter]
) -> None:
    adapter = make_adapter(make_client(subscriptions=["T.AAPL"]))
    app = status_app(adapter, interval=0.05)
    with serve_status(app) as page:
        adapter.start().wait_ready(5)
        assert next(events(page.url, 1))["stopped"] is False
        adapter.stop()
        assert wait_until(lambda: app.stopped, 5)
        last = list(events(page.url, 1))[-1]
        assert last["stopped"] is True
        assert last["connections"][0]["state"] == "stopped"


def test_a_target_without_stats_and_bad_settings_are_refused_with_the_field() -> None:
    with pytest.raises(mrt.ConfigurationError, match=r"has no stats\(\)"):
        status_app(object())
    with pytest.raises(mrt.ConfigurationError, match=r"^interval=0 must be"):
        status_app(_Pool(), interval=0)
    with pytest.raises(mrt.ConfigurationError, match=r"^history=1 must be"):
        status_app(_Pool(), history=1)


class _Conn:
    def __init__(self, name: str, events: int) -> None:
        self.name, self.market, self.state, self.events_decoded = name, "stocks", mrt.ConnectionState.STREAMING, events
        self.url = f"wss://example/{KEY}"


class _Pool:
    def __init__(self, *members: _Conn) -> None:
        self.per_connection = members

    def stats(self) -> _Pool:
        return self


def test_rates_are_the_differences_of_counts_over_time_and_a_restart_counts_no_negative_rate() -> None:
    """Pure: the page's rows from samples of a pool's stats."""
    samples = [
        sample(_Pool(_Conn("a", 0), _Conn("b", 0)), now=10.0),
        sample(_Pool(_Conn("a", 50), _Conn("b", 10)), now=10.5),
        sample(_Pool(_Conn("a", 60), _Conn("b", 0)), now=11.0),  # b was recycled: it counts from zero
    ]
    rows = {row["name"]: row for row in page_snapshot(samples, [])["connections"]}
    assert rows["a"]["history"] == [100.0, 20.0]
    assert rows["a"]["events_per_second"] == 20.0
    assert rows["b"]["history"] == [20.0, 0.0]
    assert KEY not in json.dumps(page_snapshot(samples, []))  # only listed fields reach the page


def test_the_readme_screenshot_of_the_status_page_is_in_the_repository() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    raw = r"https://raw\.githubusercontent\.com/massive-rt/massive-rt/main/"
    (image,) = re.findall(r"!\[[^]]*\]\(" + raw + r"([^)]+)\)", readme)
    assert (ROOT / image).stat().st_size > 10_000


def test_mounted_under_a_prefix_the_bare_prefix_redirects_to_its_slash() -> None:
    """Mounted at /status (Flask's DispatcherMiddleware, as the README shows), a request for /status
    must become /status/: the page's relative addresses (static/…, events) resolve under it."""
    app = status_app(mrt.RealTimeDataAdapter(mrt.SyntheticSource(["T.AAPL"])))
    replies: list[tuple[str, dict[str, str]]] = []

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        replies.append((status, dict(headers)))

    try:
        app({"REQUEST_METHOD": "GET", "SCRIPT_NAME": "/status", "PATH_INFO": "", "QUERY_STRING": "x=1"},
            start_response)  # fmt: skip
        body = b"".join(app({"REQUEST_METHOD": "GET", "SCRIPT_NAME": "/status", "PATH_INFO": "/"}, start_response))
    finally:
        app.stop()
    assert replies[0] == ("301 Moved Permanently", {"Location": "/status/?x=1", "Content-Length": "0"})
    assert replies[1][0] == "200 OK"
    assert b'src="static/status.js"' in body  # relative: under the mount once the slash is there


def test_extra_routes_are_served_beside_the_page_but_never_over_one_of_its_paths(
    serve_wsgi: Callable[[Any], str],
) -> None:
    def hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello from " + environ["PATH_INFO"].encode()]

    adapter = mrt.RealTimeDataAdapter(mrt.SyntheticSource(["T.AAPL"]))
    for taken in ("/", "/events", "/status.json", "/static/status.js", "metrics"):
        with pytest.raises(mrt.ConfigurationError, match=r"^routes\["):
            status_app(adapter, routes={taken: hello})
    app = status_app(adapter, routes={"/metrics": hello})
    try:
        url = serve_wsgi(app)
        assert get(url + "/metrics") == (200, "text/plain", "hello from /metrics")
        assert "massive_rt" in get(url + "/")[2]
    finally:
        app.stop()
