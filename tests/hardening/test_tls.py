"""TLS: verification on by default and fatal when it fails (one attempt, no retry storm), the CA
bundle from ``ca_certs`` / ``SSL_CERT_FILE`` / ``REQUESTS_CA_BUNDLE`` (in that order, docs/protocol.md
§5.1) or a ready ``ssl_context``; and websocket-client's proxy options, through a real HTTP
CONNECT proxy, for ``ws://`` and ``wss://``.

Certificates come from ``trustme``: a throw-away CA and a leaf for 127.0.0.1/localhost.
"""

from __future__ import annotations

import http.server
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

import massive_rt as mrt
from massive_rt.testing import MockMassiveServer
from tests.hardening._support import FAST, KEY, ConnectProxy, trade, until_streaming

CA_ENV = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "SSL_CERT_DIR", "WEBSOCKET_CLIENT_CA_BUNDLE")
PROXY_ENV = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "no_proxy", "NO_PROXY", "all_proxy")


class CountingContext(ssl.SSLContext):
    """A server context that counts the TCP connections it wraps (one per attempt)."""

    wrapped = 0
    _count_lock = threading.Lock()

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:  # type: ignore[override]
        with self._count_lock:
            self.wrapped += 1
        return super().wrap_socket(*args, **kwargs)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="module")
def other_ca_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tls-other") / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*CA_ENV, *PROXY_ENV):
        monkeypatch.delenv(name, raising=False)


def tls_server(ca: trustme.CA, *hosts: str) -> tuple[MockMassiveServer, CountingContext]:
    context = CountingContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(*(hosts or ("127.0.0.1", "localhost"))).configure_cert(context)
    return MockMassiveServer(api_keys={KEY}, ssl_context=context, name="tls"), context


@pytest.fixture
def server(ca: trustme.CA) -> Iterator[tuple[MockMassiveServer, CountingContext]]:
    srv, context = tls_server(ca)
    with srv:
        context.wrapped = 0  # the listening socket itself was wrapped once
        yield srv, context


def streams(server: MockMassiveServer, **options: Any) -> mrt.EquityTrade:
    """Connect with ``options``, subscribe, and return the first trade that arrives."""
    client = mrt.MassiveWebSocketClient(api_key=KEY, url=server.url(), subscriptions=["T.TLS"], reconnect=FAST,
                                        **options)  # fmt: skip
    with client:
        until_streaming(client)
        server.publish([trade(1, "TLS")])
        return next(e for e in client.iter_events(timeout=10) if isinstance(e, mrt.EquityTrade))


def refused(server: MockMassiveServer, **options: Any) -> mrt.MassiveWebSocketClient:
    """Connect with ``options``, expect a fatal TLS failure; return the stopped client."""
    client = mrt.MassiveWebSocketClient(api_key=KEY, url=server.url(), reconnect=FAST, **options)
    with client:
        with pytest.raises(mrt.MassiveRTError) as info:
            client.wait_ready(10)
        assert client.state is mrt.ConnectionState.FAILED
        assert info.value is client.error
    return client


def test_the_server_really_speaks_tls(server: tuple[MockMassiveServer, CountingContext]) -> None:
    assert server[0].url().startswith("wss://127.0.0.1:")


@pytest.mark.allow_errors(r"failed: TLS certificate verification failed: ", logger="massive_rt.connection")
def test_default_verification_fails_once_and_for_good(server: tuple[MockMassiveServer, CountingContext]) -> None:
    srv, context = server
    client = refused(srv)
    assert isinstance(client.error, mrt.MassiveRTError)
    text = str(client.error)
    assert "TLS certificate verification failed" in text
    assert "unable to get local issuer certificate" in text
    assert "certificate verification failed" in (client.stats().last_error or "")
    statuses = [e for e in client.iter_events(timeout=0) if isinstance(e, mrt.StatusMessage)]
    assert [s.status for s in statuses][-1] == "failed"
    assert context.wrapped == 1, "a certificate error must not be retried"
    assert not srv.connections  # never got as far as the WebSocket handshake


def test_ca_certs_connects_and_streams(server: tuple[MockMassiveServer, CountingContext], ca_file: Path) -> None:
    event = streams(server[0], ca_certs=str(ca_file))
    assert (event.symbol, event.sequence_number) == ("TLS", 1)


@pytest.mark.parametrize("variable", ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"])
def test_ca_bundle_environment_variables_are_honoured(
    server: tuple[MockMassiveServer, CountingContext], ca_file: Path, variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, str(ca_file))
    assert streams(server[0]).symbol == "TLS"


@pytest.mark.allow_errors(r"failed: TLS certificate verification failed: ", logger="massive_rt.connection")
def test_ca_bundle_precedence_is_ca_certs_then_ssl_cert_file_then_requests_ca_bundle(
    server: tuple[MockMassiveServer, CountingContext],
    ca_file: Path,
    other_ca_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    srv, _ = server
    monkeypatch.setenv("SSL_CERT_FILE", str(other_ca_file))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_file))
    refused(srv)  # SSL_CERT_FILE (the wrong CA) wins over REQUESTS_CA_BUNDLE
    assert streams(srv, ca_certs=str(ca_file)).symbol == "TLS"  # ca_certs wins over both
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other_ca_file))
    assert streams(srv).symbol == "TLS"


@pytest.mark.allow_errors(r"failed: TLS certificate verification failed: ", logger="massive_rt.connection")
def test_an_ssl_context_is_used_as_given(
    server: tuple[MockMassiveServer, CountingContext], ca_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    srv, _ = server
    assert streams(srv, ssl_context=ssl.create_default_context(cafile=str(ca_file))).symbol == "TLS"
    bare = ssl.create_default_context()  # the system store only (made before the variable is set)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # would make it work, but ssl_context wins
    client = refused(srv, ssl_context=bare, ca_certs=str(ca_file))
    assert "TLS certificate verification failed" in str(client.error)


@pytest.mark.allow_errors(r"failed: TLS certificate verification failed: ", logger="massive_rt.connection")
def test_a_certificate_for_another_host_is_refused(ca: trustme.CA, ca_file: Path) -> None:
    srv, context = tls_server(ca, "example.com")
    with srv:
        context.wrapped = 0
        client = refused(srv, ca_certs=str(ca_file))
        assert "mismatch" in str(client.error).lower()
        assert context.wrapped == 1


@pytest.mark.allow_errors(r"failed: cannot load CA certificates from SSL_CERT_FILE=", logger="massive_rt.connection")
def test_an_unreadable_ca_bundle_in_the_environment_fails_before_connecting(
    server: tuple[MockMassiveServer, CountingContext], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    srv, context = server
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    client = refused(srv)
    assert isinstance(client.error, mrt.ConfigurationError)
    assert client.error.field == "SSL_CERT_FILE"
    assert "missing.pem" in str(client.error)
    not_pem = tmp_path / "not-a-bundle.pem"
    not_pem.write_text("hello")
    monkeypatch.setenv("SSL_CERT_FILE", str(not_pem))
    assert isinstance(refused(srv).error, mrt.ConfigurationError)
    assert context.wrapped == 0, "no TCP connection is opened with a broken TLS configuration"


@pytest.mark.parametrize("secure", [False, True], ids=["ws", "wss"])
def test_proxy_options_pass_through_to_an_http_connect_proxy(ca: trustme.CA, ca_file: Path, secure: bool) -> None:
    srv, _ = tls_server(ca) if secure else (MockMassiveServer(api_keys={KEY}, name="proxied"), None)
    options: dict[str, Any] = {"ca_certs": str(ca_file)} if secure else {}
    with srv, ConnectProxy() as proxy:
        event = streams(srv, websocket_options={
            "http_proxy_host": "127.0.0.1", "http_proxy_port": proxy.port, "proxy_type": "http",
            "http_proxy_auth": ("proxy-user", "proxy-pass"),
            "http_no_proxy": ["no-proxy.invalid"],  # otherwise websocket-client may bypass the proxy for loopback
        }, **options)  # fmt: skip
        assert event.symbol == "TLS"
    assert [target for target, _ in proxy.requests] == [f"127.0.0.1:{srv.port}"]
    assert proxy.requests[0][1]["proxy-authorization"].startswith("Basic ")
    assert proxy.bytes_down > 0
    if secure:
        assert proxy.first_up[:1] == b"\x16", "the tunnel carries TLS (a handshake record first)"
        assert KEY.encode() not in proxy.first_up
    else:
        assert proxy.first_up.startswith(b"GET /stocks HTTP/1.1\r\n")


@pytest.mark.allow_errors(r"failed: TLS certificate verification failed: ", logger="massive_rt.connection")
def test_a_proxied_wss_connection_still_verifies_the_certificate(ca: trustme.CA) -> None:
    srv, _ = tls_server(ca)
    with srv, ConnectProxy() as proxy:
        client = refused(srv, websocket_options={
            "http_proxy_host": "127.0.0.1", "http_proxy_port": proxy.port, "proxy_type": "http",
            "http_no_proxy": ["no-proxy.invalid"],
        })  # fmt: skip
        assert "certificate verif" in str(client.error).lower()
    assert len(proxy.requests) == 1


@pytest.mark.allow_errors(r"failed: HTTP \d{3} [\w ]+ from ws://", logger="massive_rt.connection")
def test_a_redirect_is_not_followed_through_a_proxy_either() -> None:
    """The key must never go to a host the URL did not name (websocket-client follows 3 redirects by default)."""
    with MockMassiveServer(api_keys=None, name="elsewhere") as elsewhere, ConnectProxy() as proxy:
        location = elsewhere.url("stocks")

        class Redirect(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(301)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        redirector = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
        serving = threading.Thread(target=redirector.serve_forever, kwargs={"poll_interval": 0.05}, name="redirect")
        serving.start()
        try:
            client = mrt.MassiveWebSocketClient(
                api_key=KEY, url=f"ws://127.0.0.1:{redirector.server_address[1]}/stocks", reconnect=FAST,
                websocket_options={"http_proxy_host": "127.0.0.1", "http_proxy_port": proxy.port,
                                   "proxy_type": "http", "http_no_proxy": ["no-proxy.invalid"]},
            )  # fmt: skip
            with client, pytest.raises(mrt.HandshakeError, match=r"HTTP 301 .*redirected to 127\.0\.0\.1"):
                client.start().wait_ready(5)
        finally:
            redirector.shutdown()
            redirector.server_close()
            serving.join(5)
        assert len(proxy.requests) == 1  # one attempt, through the proxy
        assert not elsewhere.connections  # the redirect target never heard from us, let alone the key
