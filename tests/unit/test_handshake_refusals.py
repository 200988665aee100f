"""A WebSocket upgrade answered with an HTTP status: final or retried, and always said in one line."""

from __future__ import annotations

import http.server
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

import massive_rt as mrt
from tests.conftest import wait_until
from tests.support import KEY

FAST = mrt.ReconnectPolicy(initial_delay=0.01, max_delay=0.02)
HTML = (
    b"<!DOCTYPE HTML>\n<html lang='en'>\n<head>\n<title>Error response</title>\n</head>\n<body>\n"
    b"<h1>Error response</h1>\n<p>Error code: %d</p>\n<p>Message: File not found.</p>\n" + b"<p>padding</p>\n" * 50
    + b"</body>\n</html>\n"
)  # fmt: skip


class StatusServer(http.server.ThreadingHTTPServer):
    """Answers every request with ``status`` and an HTML page, counting the requests."""

    daemon_threads = True

    def __init__(self, status: int) -> None:
        self.status = status
        self.requests = 0
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def url(self, path: str = "/stocks") -> str:
        return f"ws://127.0.0.1:{self.server_address[1]}{path}"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: StatusServer

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.requests += 1
        body = HTML.replace(b"%d", str(self.server.status).encode())
        self.send_response(self.server.status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_server(request: pytest.FixtureRequest) -> Iterator[StatusServer]:
    server = StatusServer(request.param)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="test-http")
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def one_line(text: str) -> bool:
    return "\n" not in text and "<" not in text and len(text) < 400


@pytest.mark.allow_errors(r"failed: HTTP \d{3} [\w ]+ from ws://", logger="massive_rt.connection")
@pytest.mark.parametrize(
    ("http_server", "expected"),
    [
        (404, "HTTP 404 Not Found from {url}: not a Massive WebSocket endpoint"),
        (403, "HTTP 403 Forbidden from {url}: refused before authentication"),
        (400, "HTTP 400 Bad Request from {url}: the server refused the WebSocket upgrade"),
        (301, "HTTP 301 Moved Permanently from {url}: redirected"),
    ],
    indirect=["http_server"],
)
def test_a_final_http_answer_fails_at_once_in_one_line(
    http_server: StatusServer, expected: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="massive_rt")
    url = http_server.url()
    client = mrt.MassiveWebSocketClient(api_key=KEY, url=url, reconnect=FAST)
    statuses: list[mrt.StatusMessage] = []
    adapter = mrt.RealTimeDataAdapter(client)
    adapter.on_status(statuses.append)
    adapter.start()
    try:
        with pytest.raises(mrt.HandshakeError) as caught:
            adapter.wait_ready(5)
        assert caught.value.message.startswith(expected.format(url=url))
        assert caught.value.status_code == http_server.status
        assert one_line(caught.value.message)
        assert wait_until(lambda: adapter.state is mrt.AdapterState.FAILED, 5)
        assert client.state is mrt.ConnectionState.FAILED
        assert http_server.requests == 1  # never retried
    finally:
        adapter.stop()
    assert statuses
    assert all(one_line(s.message) for s in statuses)
    for record in caplog.records:
        assert one_line(record.getMessage()), record.getMessage()
    assert KEY not in caplog.text


@pytest.mark.parametrize("http_server", [503, 429], indirect=True)
def test_overload_and_rate_limit_answers_are_retried_with_backoff(
    http_server: StatusServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="massive_rt")
    client = mrt.MassiveWebSocketClient(api_key=KEY, url=http_server.url(), reconnect=FAST)
    client.start()
    try:
        assert wait_until(lambda: http_server.requests >= 3, 5)
        assert client.state is not mrt.ConnectionState.FAILED
        assert client.error is None
        last = client.stats().last_error or ""
        assert last.startswith(f"HTTP {http_server.status}")
        assert "not accepting connections now" in last
    finally:
        client.stop()
    for record in caplog.records:
        assert one_line(record.getMessage()), record.getMessage()


@pytest.mark.parametrize("http_server", [404], indirect=True)
def test_the_cli_against_a_plain_web_server_says_so_in_a_few_lines(http_server: StatusServer) -> None:
    """Today: 75 lines in 4 s against ``python -m http.server`` (the HTML page, over and over)."""
    env = {**os.environ, "MASSIVE_API_KEY": KEY, "PYTHONPATH": os.getcwd()}
    proc = subprocess.run(
        [sys.executable, "-m", "massive_rt", "stream", "T.AAPL", "--url", http_server.url(), "--duration", "3"],
        capture_output=True, text=True, timeout=30, env=env, check=False,
    )  # fmt: skip
    output = (proc.stdout + proc.stderr).strip().splitlines()
    assert proc.returncode != 0
    assert any("HTTP 404 Not Found" in line and "not a Massive WebSocket endpoint" in line for line in output), output
    assert len(output) <= 12, output  # the error once, then the run's summary
    assert sum("HTTP 404" in line for line in output) <= 2, output  # logged once, and the exit's error line
    assert not any("<" in line for line in output)
    assert http_server.requests == 1


@pytest.mark.allow_errors(r"failed: HTTP \d{3} [\w ]+ from ws://", logger="massive_rt.connection")
@pytest.mark.parametrize("http_server", [404], indirect=True)
def test_a_pool_does_not_replace_a_connection_refused_for_good(http_server: StatusServer) -> None:
    pool = mrt.ConnectionPool(api_key=KEY, url=lambda market: http_server.url(f"/{market.value}"), health_interval=0.01)
    pool.subscribe("T.AAPL")
    adapter = mrt.RealTimeDataAdapter(pool)
    try:
        adapter.start()
        assert wait_until(lambda: adapter.state is mrt.AdapterState.FAILED, 5)
        assert isinstance(adapter.error, mrt.HandshakeError)
        assert isinstance(pool.error, mrt.HandshakeError)
        for _ in range(5):
            assert pool.check_health() == 0  # a new connection would get the same 404
        assert pool.stats().recycled == 0
        assert http_server.requests == 1
    finally:
        adapter.stop()


@pytest.mark.allow_errors(r"failed: HTTP \d{3} [\w ]+ from ws://", logger="massive_rt.connection")
@pytest.mark.parametrize("http_server", [404], indirect=True)
def test_credentials_in_the_url_stay_out_of_messages_snapshots_and_reprs(
    http_server: StatusServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="massive_rt")
    port = http_server.server_address[1]
    url = f"ws://proxy-user:proxy-secret@127.0.0.1:{port}/stocks?token=query-secret"
    client = mrt.MassiveWebSocketClient(api_key=KEY, url=url, reconnect=FAST)
    with client, pytest.raises(mrt.HandshakeError) as caught:
        client.start().wait_ready(5)
    shown = f"ws://127.0.0.1:{port}/stocks"
    assert f"from {shown}:" in caught.value.message
    texts = [caught.value.message, repr(client), str(client.stats().to_dict()), caplog.text,
             *(e.message for e in client.drain() if isinstance(e, mrt.StatusMessage))]  # fmt: skip
    for text in texts:
        assert "secret" not in text, text
    assert client.stats().url == shown
