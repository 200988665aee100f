"""The client against scripted servers that do what MockMassiveServer never does on its own:
frames before the auth reply, bare objects, data mixed with acks, a limit refusal that ends in a
TCP drop, and a crash inside the reader thread."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme
from websockets.sync.server import ServerConnection, serve

import massive_rt as mrt
from massive_rt.testing import MockMassiveServer
from tests.conftest import wait_until

CONNECTED = '[{"ev":"status","status":"connected","message":"Connected Successfully"}]'
AUTH_OK = '{"ev":"status","status":"auth_success","message":"authenticated"}'  # a bare object, not an array


@pytest.fixture
def scripted() -> Iterator[Callable[[Callable[[ServerConnection], None]], str]]:
    """Start a websockets server that runs ``script`` for each connection; yield its URL."""
    servers = []

    def start(script: Callable[[ServerConnection], None]) -> str:
        def handler(ws: ServerConnection) -> None:
            try:
                script(ws)
                for _ in ws:  # keep the connection open until the client leaves
                    pass
            except Exception:  # the client closing mid-script is fine here
                pass

        server = serve(handler, "127.0.0.1", 0, compression=None)
        thread = threading.Thread(target=server.serve_forever, name="test-scripted-server", daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"ws://127.0.0.1:{server.socket.getsockname()[1]}/stocks"

    yield start
    for server, thread in servers:
        server.shutdown()
        thread.join(5)


def test_frames_before_the_auth_reply_are_ignored_and_a_bare_status_is_understood(scripted) -> None:
    def script(ws: ServerConnection) -> None:
        ws.send(CONNECTED)
        ws.recv(timeout=5)  # auth
        ws.send("this is not JSON")  # before auth: ignored (logged), never delivered
        ws.send('[{"ev":"T","sym":"EARLY","p":1}]')  # data before auth: ignored
        ws.send(AUTH_OK)
        ws.recv(timeout=5)  # subscribe
        # one ack then data in the same frame, the other ack later: data that arrives while the
        # client is still subscribing counts as the stream starting
        ws.send('[{"ev":"status","status":"success","message":"subscribed to: T.AAPL"},{"ev":"T","sym":"AAPL"}]')
        ws.send('[{"ev":"status","status":"success","message":"subscribed to: T.MSFT"}]')

    client = mrt.MassiveWebSocketClient(api_key="k", url=scripted(script), subscriptions=["T.AAPL", "T.MSFT"])
    with client:
        client.wait_ready(5)
        trades = []
        while not trades:
            event = client.get(timeout=5)
            if isinstance(event, mrt.EquityTrade):
                trades.append(event)
        assert trades[0].symbol == "AAPL"
        assert wait_until(lambda: client.acked == frozenset({"T.AAPL", "T.MSFT"}), 5)
        assert client.stats().decode_errors == 0


def limit_then_tcp_drop(ws: ServerConnection) -> None:
    ws.send(CONNECTED)
    ws.recv(timeout=5)
    ws.send("[" + AUTH_OK + "]")
    ws.send('[{"ev":"status","status":"max_connections","message":"Maximum number of connections exceeded."}]')
    socket.socket.shutdown(ws.socket, socket.SHUT_RDWR)  # no close frame


@pytest.mark.allow_errors(
    r"failed: refused at connect: the account's connection limit is reached",
    logger="massive_rt.connection",
)
def test_a_limit_refusal_followed_by_a_tcp_drop_is_final(scripted) -> None:
    client = mrt.MassiveWebSocketClient(api_key="k", url=scripted(limit_then_tcp_drop))
    with client:
        assert wait_until(lambda: client.state is mrt.ConnectionState.FAILED, 5)
        assert isinstance(client.error, mrt.ConnectionLimitError)
        assert client.stats().reconnects == 0


def test_with_on_limit_retry_a_limit_refusal_followed_by_a_tcp_drop_waits_the_cooldown(scripted) -> None:
    client = mrt.MassiveWebSocketClient(api_key="k", url=scripted(limit_then_tcp_drop), on_limit="retry",
                                        reconnect=mrt.ReconnectPolicy(initial_delay=0.01, max_delay=0.02))  # fmt: skip
    with client:
        cooldown = client.get(timeout=5)
        while not (isinstance(cooldown, mrt.StatusMessage) and cooldown.status == "limit_cooldown"):
            cooldown = client.get(timeout=5)  # the limit's cooldown, not the 10-20 ms reconnect backoff
        assert "retrying in 60s" in cooldown.message
        assert client.state is mrt.ConnectionState.BACKOFF
        assert client.stats().reconnects == 0


@pytest.mark.allow_errors(r"^\[[\w-]+\] reader thread crashed$", logger="massive_rt.connection")
@pytest.mark.allow_errors(
    r"failed: reader thread crashed: RuntimeError: a bug in the reader$",
    logger="massive_rt.connection",
)
def test_a_crash_inside_the_reader_ends_failed_not_silent(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(self: mrt.MassiveWebSocketClient) -> None:
        raise RuntimeError("a bug in the reader")

    monkeypatch.setattr(mrt.MassiveWebSocketClient, "_session", explode)
    client = mrt.MassiveWebSocketClient(api_key="k", url="ws://127.0.0.1:9/stocks")
    with client:
        assert wait_until(lambda: client.state is mrt.ConnectionState.FAILED, 5)
        assert "reader thread crashed" in (client.error.message if client.error else "")
        failed = [e for e in client.iter_events(timeout=1) if isinstance(e, mrt.StatusMessage) and e.status == "failed"]
        assert failed


@pytest.mark.allow_errors(r"failed: TLS certificate verification failed: ", logger="massive_rt.connection")
def test_a_ca_directory_is_used_as_capath(tmp_path: Path) -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    empty_dir = tmp_path / "cas"
    empty_dir.mkdir()
    with MockMassiveServer(api_keys={"k"}, ssl_context=server_context) as server:
        client = mrt.MassiveWebSocketClient(api_key="k", url=server.url(), ca_certs=str(empty_dir))
        with client:  # a directory without our CA: verification fails, once, for good
            assert wait_until(lambda: client.state is mrt.ConnectionState.FAILED, 5)
            assert "certificate" in (client.error.message if client.error else "").lower()


def test_a_zero_timeout_stop_forces_the_socket_shut_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with MockMassiveServer(api_keys={"k"}) as server:
        client = mrt.MassiveWebSocketClient(api_key="k", url=server.url(), subscriptions=["T.AAPL"])
        # The reader is held for sure in a callback it runs itself (inline): a reader merely waiting
        # for room in a full queue sees the stop request within 50 ms, and on a loaded machine it
        # was sometimes gone before stop(timeout=0) looked, so nothing was said. Only a trade the
        # reader runs holds it: one that went through the dispatcher (busy with the connect's
        # statuses) holds nothing the stop waits for, so trades go out until the reader has one.
        adapter = mrt.RealTimeDataAdapter(client, dispatch="inline")
        entered, release = threading.Event(), threading.Event()

        def stuck(_event: mrt.Event) -> None:
            if threading.current_thread().name.startswith("massive-rt-reader-"):
                entered.set()
                release.wait(10)

        adapter.on(mrt.EquityTrade, stuck)
        adapter.start()
        try:
            client.wait_ready(5)
            for q in range(100):
                server.publish([{"ev": "T", "sym": "AAPL", "q": q}], batch=1)
                if entered.wait(0.05):
                    break
            assert entered.is_set()
            client.stop(timeout=0)  # no time to wait: shut the socket down, warn, return at once
            assert "did not stop within" in caplog.text
            assert client.reader_alive
        finally:
            release.set()
            adapter.stop()  # and a normal stop then joins the reader
        assert client.state is mrt.ConnectionState.STOPPED
        assert not client.reader_alive


def test_after_a_fork_every_client_of_the_parent_refuses_use() -> None:
    from massive_rt import connection

    client = mrt.MassiveWebSocketClient(api_key="k", url="ws://127.0.0.1:9/stocks")
    connection._after_fork_in_child()  # what os.register_at_fork runs in a child process
    try:
        with pytest.raises(mrt.ClientClosedError, match="fork"):
            client.subscribe("T.AAPL")
        with pytest.raises(mrt.ClientClosedError, match="fork"):
            client.get(timeout=0)
    finally:
        client._forked = False
        client.stop()


def _acks(channels: list[str]) -> str:
    return json.dumps([{"ev": "status", "status": "success", "message": f"subscribed to: {c}"} for c in channels])


def _subscribed(ws: ServerConnection) -> list[str]:
    frame = json.loads(ws.recv(timeout=5))
    assert frame["action"] == "subscribe"
    return str(frame["params"]).split(",")


NOT_AUTHORIZED = '[{"ev":"status","status":"error","message":"not authorized"}]'


def test_refusals_are_charged_one_channel_each_and_a_slow_ack_is_never_a_refusal(scripted) -> None:
    """3 unentitled channels and 1,500 others in two frames, the second acked after 0.6 s: only
    the 3 are refused (the old client reported 614 of the others refused, then acked)."""
    refused = ["NOI.AAA", "NOI.BBB", "NOI.CCC"]
    tickers = [f"T.S{i:04d}" for i in range(1500)]

    def script(ws: ServerConnection) -> None:
        ws.send(CONNECTED)
        ws.recv(timeout=5)
        ws.send("[" + AUTH_OK + "]")
        first = _subscribed(ws)
        for _ in (c for c in first if c in refused):
            ws.send(NOT_AUTHORIZED)  # refusals come before the acks of the same request
        ws.send(_acks([c for c in first if c not in refused]))
        second = _subscribed(ws)
        threading.Event().wait(0.6)  # the server is slow to ack this one (simulated, not a sync)
        ws.send(_acks(second))

    client = mrt.MassiveWebSocketClient(api_key="k", url=scripted(script), subscriptions=[*refused, *tickers])
    with client:
        client.wait_ready(10)
        assert client.wait_acked(tickers, 10)
        statuses = [e for e in client.drain(10_000) if isinstance(e, mrt.StatusMessage)]
    errors = [s for s in statuses if s.status == "subscription_error"]
    assert sorted(c for s in errors for c in s.channels) == refused
    assert all(isinstance(s.error, mrt.SubscriptionError) for s in errors)
    assert not [s for s in statuses if s.status == "subscription_unconfirmed"]


def test_a_refusal_naming_its_channel_refuses_that_one(scripted) -> None:
    def script(ws: ServerConnection) -> None:
        ws.send(CONNECTED)
        ws.recv(timeout=5)
        ws.send("[" + AUTH_OK + "]")
        _subscribed(ws)
        ws.send('[{"ev":"status","status":"error","message":"not authorized: NOI.BBB"}]')
        ws.send(_acks(["T.AAPL", "NOI.AAA"]))

    client = mrt.MassiveWebSocketClient(api_key="k", url=scripted(script),
                                        subscriptions=["NOI.AAA", "NOI.BBB", "T.AAPL"])  # fmt: skip
    with client:
        client.wait_ready(5)
        errors = [e for e in client.drain() if isinstance(e, mrt.StatusMessage) and e.status == "subscription_error"]
    assert [e.channels for e in errors] == [("NOI.BBB",)]


def test_a_lost_ack_is_unconfirmed_then_confirmed_when_it_comes(scripted, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("massive_rt._session.ACK_TIMEOUT", 0.2)
    late = threading.Event()

    def script(ws: ServerConnection) -> None:
        ws.send(CONNECTED)
        ws.recv(timeout=5)
        ws.send("[" + AUTH_OK + "]")
        _subscribed(ws)
        ws.send(_acks(["T.AAPL"]))  # T.MSFT's ack is late, past the ack timeout
        late.wait(5)
        ws.send(_acks(["T.MSFT"]))

    client = mrt.MassiveWebSocketClient(api_key="k", url=scripted(script), subscriptions=["T.AAPL", "T.MSFT"])
    with client:
        client.wait_ready(5)
        unconfirmed = next(e for e in client.iter_events(timeout=5)
                           if isinstance(e, mrt.StatusMessage) and e.status == "subscription_unconfirmed")  # fmt: skip
        assert unconfirmed.channels == ("T.MSFT",)
        late.set()
        confirmed = next(e for e in client.iter_events(timeout=5)
                         if isinstance(e, mrt.StatusMessage) and e.status == "subscription_confirmed")  # fmt: skip
        assert confirmed.channels == ("T.MSFT",)
        assert client.acked == {"T.AAPL", "T.MSFT"}
