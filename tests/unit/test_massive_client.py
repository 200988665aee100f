"""MassiveWebSocketClient against MockMassiveServer over real sockets on 127.0.0.1.

The legacy plan's 30 tests (connection lifecycle, subscriptions, messages, reconnection,
thread safety) with the real protocol, plus one regression test per legacy/official bug.
"""

from __future__ import annotations

import queue
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

import massive_rt as mrt
from massive_rt.connection import MassiveWebSocketClient
from massive_rt.testing import MockMassiveServer
from tests.conftest import wait_until
from tests.support import KEY

FAST = mrt.ReconnectPolicy(initial_delay=0.01, max_delay=0.05, reset_after=60.0)
TRADE = {
    "ev": "T",
    "sym": "AAPL",
    "x": 4,
    "i": "1",
    "z": 3,
    "p": 150.25,
    "s": 100,
    "c": [0],
    "t": 1234567890000,
    "q": 1,
}


@pytest.fixture
def make_client(server: MockMassiveServer) -> Iterator[Callable[..., MassiveWebSocketClient]]:
    clients: list[MassiveWebSocketClient] = []

    def make(**kwargs: object) -> MassiveWebSocketClient:
        options: dict[str, object] = {"api_key": KEY, "url": server.url("stocks"), "reconnect": FAST}
        options.update(kwargs)
        client = MassiveWebSocketClient(**options)  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.stop()


def next_of(
    client: MassiveWebSocketClient, cls: type, timeout: float = 5.0, where: Callable[[object], bool] | None = None
):
    """Consume events until one of ``cls`` (matching ``where``) arrives."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no {cls.__name__} within {timeout}s")
        event = client.get(timeout=remaining)
        if isinstance(event, cls) and (where is None or where(event)):
            return event


def statuses(client: MassiveWebSocketClient, timeout: float = 0.2) -> list[mrt.StatusMessage]:
    return [e for e in client.iter_events(timeout=timeout) if isinstance(e, mrt.StatusMessage)]


def subscribed_on(server: MockMassiveServer, connection_id: str) -> list[str]:
    return [p for m in server.received if m.connection == connection_id and m.action == "subscribe" for p in m.params]


# ----------------------------------------------------------------------------- A. lifecycle


class TestConnectionLifecycle:
    def test_client_initialization_with_valid_api_key(self) -> None:
        client = MassiveWebSocketClient(api_key="SECRET-KEY-123", market="crypto", name="c1")
        assert client.state is mrt.ConnectionState.NEW
        assert client.market is mrt.Market.CRYPTO
        assert client.url == "wss://socket.massive.com/crypto"
        assert "SECRET-KEY-123" not in repr(client)
        assert "SECRET-KEY-123" not in repr(client.config)
        client.stop()
        assert client.state is mrt.ConnectionState.STOPPED

    def test_initialization_without_any_key_is_a_configuration_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("MASSIVE_API_KEY", raising=False)
        with pytest.raises(mrt.ConfigurationError) as info:
            MassiveWebSocketClient()
        assert info.value.field == "api_key"

    def test_api_key_is_read_from_the_environment_at_construction(
        self, monkeypatch: pytest.MonkeyPatch, server: MockMassiveServer
    ) -> None:
        monkeypatch.setenv("MASSIVE_API_KEY", KEY)
        with MassiveWebSocketClient(url=server.url()) as client:
            client.wait_ready(5)
        assert any(m.action == "auth" and m.key == KEY for m in server.received)

    def test_connect_successful_connection(self, server: MockMassiveServer, make_client) -> None:
        client = make_client(name="life")
        client.start()
        client.wait_ready(5)
        assert client.state is mrt.ConnectionState.STREAMING
        assert server.wait_for(lambda: any(c.authenticated for c in server.active_connections()), 5)
        assert "massive-rt-reader-life" in {t.name for t in threading.enumerate()}
        assert client.stats().connected_since is not None

    def test_connect_with_retry_on_failure(self) -> None:
        probe = MockMassiveServer(api_keys={KEY})
        probe.start()
        port = probe.port
        probe.close()
        client = MassiveWebSocketClient(api_key=KEY, url=f"ws://127.0.0.1:{port}/stocks", reconnect=FAST)
        try:
            client.start()
            assert wait_until(lambda: client.stats().reconnects >= 2, 5), "client did not retry"
            with MockMassiveServer(api_keys={KEY}, port=port):
                client.wait_ready(5)
                assert client.state is mrt.ConnectionState.STREAMING
        finally:
            client.stop()

    def test_connect_timeout_handling(self) -> None:
        # A TCP listener that accepts and then never answers the WebSocket upgrade.
        with socket.create_server(("127.0.0.1", 0)) as listener:
            port = listener.getsockname()[1]
            client = MassiveWebSocketClient(
                api_key=KEY, url=f"ws://127.0.0.1:{port}/stocks", connect_timeout=0.3, reconnect=FAST
            )
            try:
                client.start()
                with pytest.raises(mrt.WaitTimeoutError) as info:
                    client.wait_ready(1.5)
                assert isinstance(info.value, TimeoutError)
                assert client.stats().last_error is not None
                assert "timed out" in client.stats().last_error.lower()
            finally:
                client.stop()

    def test_connect_already_connected(self, server: MockMassiveServer, make_client) -> None:
        client = make_client()
        client.start()
        client.start()
        client.wait_ready(5)
        client.start()
        assert len(server.connections) == 1
        assert sum(t.name == f"massive-rt-reader-{client.name}" for t in threading.enumerate()) == 1

    def test_disconnect_cleanup(self, server: MockMassiveServer, make_client) -> None:
        client = make_client(subscriptions=["T.AAPL"])
        client.start()
        client.wait_ready(5)
        client.stop()
        assert client.state is mrt.ConnectionState.STOPPED
        assert server.wait_for(lambda: not server.active_connections(), 5)
        assert client.subscriptions == frozenset({"T.AAPL"})  # desired state is kept
        while True:  # queued events stay readable; then the client says it is closed
            try:
                client.get(timeout=1)
            except mrt.ClientClosedError:
                break
        with pytest.raises(mrt.ClientClosedError):
            client.start()

    def test_connection_state_transitions(self, make_client) -> None:
        client = make_client(subscriptions=["T.AAPL"])
        client.start()
        client.wait_ready(5)
        client.stop()
        states = [
            e.state for e in client.iter_events(timeout=1) if isinstance(e, mrt.StatusMessage) and e.status == "state"
        ]
        assert states == [
            mrt.ConnectionState.CONNECTING,
            mrt.ConnectionState.AUTHENTICATING,
            mrt.ConnectionState.SUBSCRIBING,
            mrt.ConnectionState.STREAMING,
            mrt.ConnectionState.STOPPED,
        ]


# ----------------------------------------------------------------------------- B. subscriptions


class TestSubscriptionManagement:
    def test_subscribe_single_ticker(self, server: MockMassiveServer, make_client) -> None:
        client = make_client()
        client.start()
        client.wait_ready(5)
        assert client.subscribe("T.AAPL") == ("T.AAPL",)
        assert client.wait_acked(["T.AAPL"], 5)
        assert server.wait_for_subscribed(["T.AAPL"], 5)

    def test_subscribe_multiple_tickers(self, server: MockMassiveServer, make_client) -> None:
        channels = [f"T.SYM{i}" for i in range(150)]
        client = make_client(subscriptions=channels)
        client.start()
        client.wait_ready(5)
        assert client.acked == frozenset(channels)
        assert server.wait_for_subscribed(channels, 5)

    def test_subscribe_duplicate_ticker(self, server: MockMassiveServer, make_client) -> None:
        client = make_client(subscriptions=["T.AAPL"])
        client.start()
        client.wait_ready(5)
        assert client.subscribe("T.AAPL", "T.AAPL") == ()
        assert client.subscribe("Q.AAPL") == ("Q.AAPL",)
        assert client.wait_acked(["Q.AAPL"], 5)
        assert subscribed_on(server, server.connections[0].id) == ["T.AAPL", "Q.AAPL"]

    def test_subscribe_while_disconnected(self, server: MockMassiveServer, make_client) -> None:
        client = make_client()
        client.subscribe("T.AAPL", "T.BRK.B")  # before start: desired state, applied on connect
        client.start()
        client.wait_ready(5)
        assert client.acked == frozenset({"T.AAPL", "T.BRK.B"})
        assert server.wait_for_subscribed(["T.AAPL", "T.BRK.B"], 5)

    def test_subscription_confirmation_handling(self, make_client) -> None:
        client = make_client(subscriptions=["T.AAPL", "AM.*"])
        client.start()
        client.wait_ready(5)
        assert client.acked == frozenset({"T.AAPL", "AM.*"})
        assert client.stats().acked == 2

    def test_unsubscribe_ticker(self, server: MockMassiveServer, make_client) -> None:
        client = make_client(subscriptions=["T.AAPL", "T.MSFT"])
        client.start()
        client.wait_ready(5)
        assert client.unsubscribe("T.AAPL", "T.NOPE") == ("T.AAPL",)
        assert server.wait_for(lambda: server.active_connections()[0].subscriptions == {"T.MSFT"}, 5)
        assert wait_until(lambda: client.acked == frozenset({"T.MSFT"}), 5)
        server.publish([TRADE, dict(TRADE, sym="MSFT")])
        trade = next_of(client, mrt.EquityTrade)
        assert trade.symbol == "MSFT"

    def test_unsubscribe_all(self, server: MockMassiveServer, make_client) -> None:
        client = make_client(subscriptions=["T.AAPL", "Q.AAPL", "AM.*"])
        client.start()
        client.wait_ready(5)
        assert set(client.unsubscribe_all()) == {"T.AAPL", "Q.AAPL", "AM.*"}
        assert client.subscriptions == frozenset()
        assert server.wait_for(lambda: server.active_connections()[0].subscriptions == frozenset(), 5)

    def test_subscribe_a_wildcard_never_touches_am_channels(self, server: MockMassiveServer, make_client) -> None:
        client = make_client(subscriptions=["AM.AAPL"])
        client.start()
        client.wait_ready(5)
        client.subscribe("A.*")
        assert client.wait_acked(["A.*"], 5)
        assert client.subscriptions == frozenset({"AM.AAPL", "A.*"})
        assert not [m for m in server.received if m.action == "unsubscribe"]

    def test_channels_for_the_wrong_market_are_refused_at_the_api(self, make_client) -> None:
        client = make_client()
        with pytest.raises(mrt.ConfigurationError, match=r"XT\.BTC-USD"):
            client.subscribe("XT.BTC-USD")
        with pytest.raises(mrt.ConfigurationError, match=r"T\.AAPL,T\.MSFT"):
            client.subscribe("T.AAPL,T.MSFT")
        assert client.subscriptions == frozenset()

    def test_thousand_channels_are_sent_in_batches(self, server: MockMassiveServer, make_client) -> None:
        channels = [f"Q.TICKER{i:04d}" for i in range(1000)]
        client = make_client(subscriptions=channels)
        client.start()
        client.wait_ready(10)
        frames = [m for m in server.received if m.action == "subscribe"]
        assert len(frames) > 1
        assert all(len(m.raw) < 9000 for m in frames)
        assert [p for m in frames for p in m.params] == channels

    def test_refused_channels_are_reported_as_subscription_error(self, make_client) -> None:
        with MockMassiveServer(api_keys={KEY}, unentitled={"NOI"}) as srv:
            client = make_client(url=srv.url(), subscriptions=["T.AAPL", "NOI.*"])
            client.start()
            client.wait_ready(5)
            refused = next_of(client, mrt.StatusMessage, where=lambda e: e.status == "subscription_error")
            assert refused.channels == ("NOI.*",)
            assert isinstance(refused.error, mrt.SubscriptionError)
            assert refused.error.channels == ("NOI.*",)
            assert "not authorized" in refused.message
            assert client.acked == frozenset({"T.AAPL"})

    def test_unknown_channels_are_reported_unconfirmed_not_silently_ignored(
        self, make_client, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr("massive_rt._session.ACK_TIMEOUT", 0.3)
        client = make_client()
        client.start()
        client.wait_ready(5)
        # A channel the mock (like Massive) silently ignores: valid for us, unknown to the server.
        client._config.market  # noqa: B018
        client._desired["ZZ.AAPL"] = None
        client._wake()
        unconfirmed = next_of(client, mrt.StatusMessage, where=lambda e: e.status == "subscription_unconfirmed")
        assert unconfirmed.channels == ("ZZ.AAPL",)


# ----------------------------------------------------------------------------- C. messages


class TestMessageHandling:
    @pytest.fixture
    def streaming(self, make_client) -> MassiveWebSocketClient:
        client = make_client(subscriptions=["T.*", "Q.*", "A.*", "AM.*", "LULD.*", "NOI.*"])
        client.start()
        client.wait_ready(5)
        return client

    def test_on_message_trade_event(self, server: MockMassiveServer, streaming: MassiveWebSocketClient) -> None:
        server.publish([{"ev": "T", "sym": "AAPL", "p": 150.25, "s": 100, "t": 1234567890000}])
        trade = next_of(streaming, mrt.EquityTrade)
        assert (trade.symbol, trade.price, trade.size, trade.timestamp) == ("AAPL", 150.25, 100, 1234567890000)
        assert trade.connection == streaming.name
        assert abs(trade.received_at_ns - time.time_ns()) < 10 * 10**9

    def test_on_message_quote_event(self, server: MockMassiveServer, streaming: MassiveWebSocketClient) -> None:
        server.publish([{"ev": "Q", "sym": "AAPL", "ap": 150.10, "as": 1000, "bp": 150.00, "bs": 2000}])
        quote = next_of(streaming, mrt.EquityQuote)
        assert (quote.bid_price, quote.bid_size, quote.ask_price, quote.ask_size) == (150.00, 2000, 150.10, 1000)
        assert quote.timestamp is None  # absent on the wire: None, never a made-up 0

    def test_on_message_aggregate_event(self, server: MockMassiveServer, streaming: MassiveWebSocketClient) -> None:
        bar = {
            "ev": "AM",
            "sym": "AAPL",
            "v": 200,
            "av": 8642007,
            "op": 25.66,
            "vw": 25.3981,
            "o": 25.39,
            "c": 25.39,
            "h": 25.39,
            "l": 25.39,
            "a": 25.3714,
            "z": 50,
            "s": 1610144868000,
            "e": 1610144869000,
        }
        server.publish([bar])
        agg = next_of(streaming, mrt.EquityAgg)
        assert agg.event_type == "AM"  # legacy B8: minute bars were labelled "A"
        assert (agg.accumulated_volume, agg.official_open_price, agg.average_size) == (8642007, 25.66, 50)
        assert (agg.start_timestamp, agg.end_timestamp) == (1610144868000, 1610144869000)

    def test_on_message_authentication(self, server: MockMassiveServer, streaming: MassiveWebSocketClient) -> None:
        auth = [m for m in server.received if m.action == "auth"]
        assert len(auth) == 1
        assert auth[0].key == KEY
        assert KEY not in repr(auth[0])

    def test_on_message_invalid_format(self, server: MockMassiveServer, streaming: MassiveWebSocketClient) -> None:
        server.send_raw("this is not json")
        server.publish([TRADE])
        error = next_of(streaming, mrt.StatusMessage, where=lambda e: e.status == "decode_error")
        assert "not valid JSON" in error.message
        assert next_of(streaming, mrt.EquityTrade).price == 150.25
        assert streaming.stats().decode_errors == 1
        assert streaming.state is mrt.ConnectionState.STREAMING

    def test_on_message_unknown_event_type(self, server: MockMassiveServer, streaming: MassiveWebSocketClient) -> None:
        server.send_raw('[{"ev":"NEWCHAN","sym":"AAPL","x":1}]')
        unknown = next_of(streaming, mrt.UnknownEvent)
        assert unknown.event_type == "NEWCHAN"
        assert unknown.data == {"ev": "NEWCHAN", "sym": "AAPL", "x": 1}
        assert streaming.stats().unknown_events == 1

    def test_non_array_frame_and_status_without_message_do_not_kill_the_reader(
        self, server: MockMassiveServer, streaming: MassiveWebSocketClient
    ) -> None:
        server.send_raw('{"ev":"T","sym":"MSFT","p":1.5}')  # the official client dies on this
        server.send_raw('[{"ev":"status","status":"warning"}]')  # and on this (KeyError 'message')
        server.publish([TRADE])
        assert next_of(streaming, mrt.EquityTrade).symbol == "MSFT"
        warning = next_of(streaming, mrt.StatusMessage, where=lambda e: e.status == "warning")
        assert warning.message == "the server sent 'warning' without a message"  # every status has one
        assert warning.from_server
        assert next_of(streaming, mrt.EquityTrade).symbol == "AAPL"
        assert streaming.state is mrt.ConnectionState.STREAMING

    def test_dotted_tickers(self, server: MockMassiveServer, make_client) -> None:
        client = make_client(subscriptions=["T.BRK.B"])
        client.start()
        client.wait_ready(5)
        server.publish([dict(TRADE, sym="BRK.A"), dict(TRADE, sym="BRK.B", p=410.5)])
        trade = next_of(client, mrt.EquityTrade)
        assert (trade.symbol, trade.price) == ("BRK.B", 410.5)

    def test_binary_frames_are_decoded(self, server: MockMassiveServer, streaming: MassiveWebSocketClient) -> None:
        server.send_raw(b'[{"ev":"T","sym":"AAPL","p":2.5}]')
        assert next_of(streaming, mrt.EquityTrade).price == 2.5

    def test_raw_mode_delivers_frames_untouched(self, server: MockMassiveServer, make_client) -> None:
        client = make_client(subscriptions=["T.*"], raw=True)
        client.start()
        client.wait_ready(5)
        server.publish([TRADE])
        frame = next_of(client, mrt.RawFrame)
        assert frame.data.startswith(b"[")
        assert b'"sym":"AAPL"' in frame.data

    def test_message_processing_is_off_the_reader_thread(
        self, server: MockMassiveServer, streaming: MassiveWebSocketClient
    ) -> None:
        # Nothing consumes: the reader keeps reading and queueing (no decode on its thread).
        server.publish([TRADE] * 50, batch=10)
        assert wait_until(lambda: streaming.stats().queue_events >= 50, 5)
        assert streaming.stats().events_decoded == 0
        events = [e for e in streaming.drain() if isinstance(e, mrt.EquityTrade)]
        assert len(events) == 50


# ----------------------------------------------------------------------------- D. reconnection


class TestReconnectionAndResilience:
    def test_automatic_reconnection_on_disconnect(self, server: MockMassiveServer, make_client) -> None:
        client = make_client(subscriptions=["T.AAPL"])
        client.start()
        client.wait_ready(5)
        first = server.active_connections()[0].id
        server.kick(first)
        assert server.wait_for(
            lambda: any(c.id != first and c.authenticated and c.subscriptions for c in server.active_connections()), 5
        )
        second = next(c.id for c in server.active_connections() if c.id != first)
        assert subscribed_on(server, second) == ["T.AAPL"]

    def test_reconnect_replays_desired_subscriptions_b1(self, server: MockMassiveServer, make_client) -> None:
        client = make_client(subscriptions=["T.AAPL", "Q.AAPL"])
        client.start()
        client.wait_ready(5)
        client.subscribe("AM.*")
        client.unsubscribe("Q.AAPL")
        assert client.wait_acked(["AM.*"], 5)
        server.drop_all()
        assert server.wait_for(
            lambda: (
                len(server.connections) == 2
                and server.active_connections()
                and server.active_connections()[0].subscriptions == {"T.AAPL", "AM.*"}
            ),
            5,
        )
        server.publish([TRADE])
        assert next_of(client, mrt.EquityTrade).symbol == "AAPL"

    @pytest.mark.allow_errors(
        r"failed: gave up after \d+ consecutive failed attempts; last: connect failed: ConnectionRefusedError",
        logger="massive_rt.connection",
    )
    def test_max_reconnect_attempts_ends_failed_with_a_terminal_status_b5(self) -> None:
        probe = MockMassiveServer(api_keys={KEY})
        probe.start()
        port = probe.port
        probe.close()
        policy = mrt.ReconnectPolicy(initial_delay=0.01, max_delay=0.02, max_attempts=3)
        client = MassiveWebSocketClient(api_key=KEY, url=f"ws://127.0.0.1:{port}/stocks", reconnect=policy)
        try:
            client.start()
            with pytest.raises(mrt.ConnectionClosedError, match="gave up after 4"):
                client.wait_ready(5)
            assert client.state is mrt.ConnectionState.FAILED
            failed = next_of(client, mrt.StatusMessage, where=lambda e: e.status == "failed")
            assert isinstance(failed.error, mrt.ConnectionClosedError)
            assert client.stats().reconnects == 3
            leftovers = list(client.iter_events(timeout=2))  # consumers learn it ended, never hang
            assert all(isinstance(e, mrt.StatusMessage) for e in leftovers)
            with pytest.raises(mrt.ClientClosedError):
                client.get(timeout=2)
        finally:
            client.stop()

    def test_reconnect_delay_backoff(self, server: MockMassiveServer, make_client) -> None:
        policy = mrt.ReconnectPolicy(initial_delay=0.02, multiplier=2.0, max_delay=0.08, jitter="none")
        probe = MockMassiveServer(api_keys={KEY})
        probe.start()
        port = probe.port
        probe.close()
        client = make_client(url=f"ws://127.0.0.1:{port}/stocks", reconnect=policy)
        client.start()
        assert wait_until(lambda: client.stats().reconnects >= 4, 5)
        client.stop()
        delays = [
            float(m.group(1))
            for e in client.iter_events(timeout=1)
            if isinstance(e, mrt.StatusMessage) and (m := re.search(r"reconnecting in ([0-9.]+)s", e.message))
        ]
        assert delays[:4] == [0.02, 0.04, 0.08, 0.08]

    def test_reconnection_preserves_subscriptions(self, server: MockMassiveServer, make_client) -> None:
        client = make_client(subscriptions=["T.AAPL"])
        client.start()
        client.wait_ready(5)
        for cycle in range(2):
            server.drop_all()
            assert server.wait_for(
                lambda c=cycle: (
                    len(server.connections) == c + 2
                    and bool(server.active_connections())
                    and server.active_connections()[0].subscriptions == {"T.AAPL"}
                ),
                5,
            )
        assert client.subscriptions == frozenset({"T.AAPL"})
        server.publish([TRADE])
        assert next_of(client, mrt.EquityTrade).symbol == "AAPL"

    def test_rapid_disconnect_reconnect(self, server: MockMassiveServer, make_client) -> None:
        client = make_client(subscriptions=["T.AAPL", "Q.MSFT"])
        client.start()
        client.wait_ready(5)
        for cycle in range(5):
            server.drop_all()
            assert server.wait_for(
                lambda c=cycle: (
                    len(server.connections) == c + 2 and any(x.subscriptions for x in server.active_connections())
                ),
                5,
            )
        for info in server.connections:
            params = subscribed_on(server, info.id)
            assert sorted(params) == ["Q.MSFT", "T.AAPL"], info.id  # never subscribed twice
        assert client.stats().reconnects == 5

    def test_one_reconnect_chain_per_failure_b3(self, server: MockMassiveServer, make_client) -> None:
        client = make_client(subscriptions=["T.AAPL"])
        client.start()
        client.wait_ready(5)
        server.drop_all()
        assert server.wait_for(
            lambda: (
                len(server.connections) == 2
                and server.active_connections()
                and server.active_connections()[0].authenticated
            ),
            5,
        )
        client.wait_ready(5)
        assert client.stats().reconnects == 1
        assert len(server.active_connections()) == 1

    def test_server_close_1000_we_did_not_ask_for_reconnects(self, server: MockMassiveServer, make_client) -> None:
        client = make_client(subscriptions=["T.AAPL"])
        client.start()
        client.wait_ready(5)
        server.close_connection(server.active_connections()[0].id, code=1000)
        assert server.wait_for(
            lambda: (
                len(server.connections) == 2
                and server.active_connections()
                and server.active_connections()[0].subscriptions
            ),
            5,
        )
        assert client.stats().reconnects == 1

    def test_network_partition_is_detected_by_ping_timeout(self, server: MockMassiveServer, make_client) -> None:
        client = make_client(subscriptions=["T.AAPL"], ping_interval=0.1, ping_timeout=0.3)
        client.start()
        client.wait_ready(5)
        server.stall()
        assert wait_until(lambda: client.stats().reconnects >= 1 and client.state is mrt.ConnectionState.STREAMING, 5)
        assert "ping_timeout" in (client.stats().last_error or "")

    def test_stale_data_watchdog_reconnects_b6(self, server: MockMassiveServer, make_client) -> None:
        client = make_client(subscriptions=["T.AAPL"], stale_after=0.3, ping_interval=None)
        client.start()
        client.wait_ready(5)
        assert wait_until(lambda: client.stats().reconnects >= 1, 5)
        assert "stale_after" in (client.stats().last_error or "")

    def test_gap_is_reported_around_a_disconnect(self, server: MockMassiveServer, make_client) -> None:
        client = make_client(subscriptions=["T.*"])
        client.start()
        client.wait_ready(5)
        server.publish([TRADE])
        before = next_of(client, mrt.EquityTrade)
        server.drop_all()
        disconnected = next_of(client, mrt.StatusMessage, where=lambda e: e.status == "disconnected")
        assert disconnected.gap_start_ns == before.received_at_ns
        client.wait_ready(5)
        assert server.wait_for(
            lambda: bool(server.active_connections()) and server.active_connections()[0].subscriptions, 5
        )
        server.publish([dict(TRADE, p=151.0)])
        gap = next_of(client, mrt.StatusMessage, where=lambda e: e.status == "gap")
        after = next_of(client, mrt.EquityTrade)
        assert gap.gap_start_ns == before.received_at_ns
        assert gap.gap_end_ns == after.received_at_ns
        assert after.price == 151.0

    @pytest.mark.allow_errors(r"failed: authentication failed$", logger="massive_rt.connection")
    def test_auth_failure_is_not_retried_b7(self, server: MockMassiveServer, make_client) -> None:
        client = make_client(api_key="wrong-key")
        client.start()
        with pytest.raises(mrt.AuthenticationError, match="authentication failed"):
            client.wait_ready(5)
        assert client.state is mrt.ConnectionState.FAILED
        assert len(server.connections) == 1
        assert client.stats().reconnects == 0

    @pytest.mark.allow_errors(
        r"failed: refused at connect: the account's connection limit is reached",
        logger="massive_rt.connection",
    )
    def test_max_connections_does_not_start_a_storm_b7(self, make_client) -> None:
        with MockMassiveServer(api_keys={KEY}, max_connections=1, evict="newest") as srv:
            first = make_client(url=srv.url(), name="holder")
            first.start()
            first.wait_ready(5)
            second = make_client(url=srv.url(), name="intruder")
            second.start()
            # Like Massive, the mock answers auth_success first and evicts afterwards.
            assert wait_until(lambda: second.state is mrt.ConnectionState.FAILED, 5)
            assert isinstance(second.error, mrt.ConnectionLimitError)
            with pytest.raises(mrt.ConnectionLimitError):
                second.wait_ready(5)
            assert len(srv.connections) == 2  # one attempt, no storm
            assert first.state is mrt.ConnectionState.STREAMING

    @pytest.mark.allow_errors(
        r"failed: gave up after \d+ consecutive failed attempts; last: server closed \(1008\): refused at connect",
        logger="massive_rt.connection",
    )
    def test_max_connections_retry_is_opt_in_and_backs_off(self, make_client) -> None:
        with MockMassiveServer(api_keys={KEY}, max_connections=1, evict="newest") as srv:
            holder = make_client(url=srv.url())
            holder.start()
            holder.wait_ready(5)
            policy = mrt.ReconnectPolicy(initial_delay=0.05, max_delay=0.1, max_attempts=2)
            retrier = make_client(url=srv.url(), on_limit=mrt.LimitRetry(cooldown=0.02), reconnect=policy)
            retrier.start()
            assert wait_until(lambda: retrier.state is mrt.ConnectionState.FAILED, 5)
            assert isinstance(retrier.error, mrt.ConnectionClosedError)
            assert "max_connections" in retrier.error.message
            assert len(srv.connections) == 4  # holder + 1 attempt + 2 retries
            statuses = [e.status for e in retrier.drain() if isinstance(e, mrt.StatusMessage)]
            assert statuses.count("limit_cooldown") == 2

    def test_limit_retries_wait_out_the_hourly_budget(self, make_client) -> None:
        """With on_limit retrying, a refused client never fights in a loop: after per_hour retries it waits."""
        with MockMassiveServer(api_keys={KEY}, max_connections=1, evict="newest") as srv:
            holder = make_client(url=srv.url())
            holder.start()
            holder.wait_ready(5)
            retrier = make_client(url=srv.url(), on_limit=mrt.LimitRetry(cooldown=0.02, per_hour=2))
            retrier.start()
            messages: list[str] = []

            def third_wait() -> bool:
                messages.extend(e.message for e in retrier.drain()
                                if isinstance(e, mrt.StatusMessage) and e.status == "limit_cooldown")  # fmt: skip
                return len(messages) >= 3

            assert wait_until(third_wait, 5)
            assert "retrying in 3600s" in messages[2]
            assert retrier.state is mrt.ConnectionState.BACKOFF
            assert len(srv.connections) == 1 + 3
            assert holder.state is mrt.ConnectionState.STREAMING
            retrier.stop(timeout=2)
            assert retrier.state is mrt.ConnectionState.STOPPED

    def test_two_retrying_clients_on_one_key_do_not_evict_each_other_in_a_loop(self, make_client) -> None:
        """Massive evicts the older connection: retrying both holders used to fight forever."""
        with MockMassiveServer(api_keys={KEY}, max_connections=1, evict="oldest") as srv:
            first = make_client(url=srv.url(), on_limit="retry")
            first.start()
            first.wait_ready(5)
            second = make_client(url=srv.url(), on_limit="retry")
            second.start()
            assert wait_until(lambda: first.state is mrt.ConnectionState.BACKOFF, 5)  # evicted, cooling down
            # With the reconnect policy's 10-50 ms backoff they used to trade places dozens of times here.
            assert not srv.wait_for(lambda: len(srv.connections) > 2, 1.5)
            assert second.state is mrt.ConnectionState.STREAMING
            cooldowns = [e.message for e in first.drain() if isinstance(e, mrt.StatusMessage)
                         and e.status == "limit_cooldown"]  # fmt: skip
            assert len(cooldowns) == 1
            assert "retrying in 60s" in cooldowns[0]

    def test_slow_consumer_status_is_reported_and_reconnected(self, server: MockMassiveServer, make_client) -> None:
        client = make_client(subscriptions=["T.AAPL"])
        client.start()
        client.wait_ready(5)
        server.send_status("slow_consumer", "you are too slow", close_code=1008)
        status = next_of(client, mrt.StatusMessage, where=lambda e: e.status == "slow_consumer")
        assert status.from_server
        assert wait_until(lambda: client.stats().reconnects == 1 and client.state is mrt.ConnectionState.STREAMING, 5)
        assert "slow_consumer" in (client.stats().last_error or "")

    def test_oversized_frame_closes_and_reconnects_with_a_reason(self, server: MockMassiveServer, make_client) -> None:
        client = make_client(subscriptions=["T.AAPL"], max_message_size=2048)
        client.start()
        client.wait_ready(5)
        server.send_raw("[" + ",".join(['{"ev":"T","sym":"AAPL"}'] * 200) + "]")
        assert wait_until(lambda: client.stats().reconnects == 1, 5)
        assert "max_message_size" in (client.stats().last_error or "")
        client.wait_ready(5)


# ----------------------------------------------------------------------------- overflow


class TestBackpressure:
    def _flood(self, server: MockMassiveServer, client: MassiveWebSocketClient, frames: int) -> None:
        before = client.stats().frames_received
        for i in range(frames):
            server.publish([dict(TRADE, q=i)], batch=1)
        assert wait_until(lambda: client.stats().frames_received >= before + frames, 10)

    def _ten_frames(self, server: MockMassiveServer, make_client) -> int:
        """Bytes of ten one-trade frames whose ``q`` has two digits (the queue bounds bytes)."""
        probe = make_client(subscriptions=["T.*"])
        probe.start()
        probe.wait_ready(5)
        server.publish([dict(TRADE, q=10)], batch=1)
        assert wait_until(lambda: probe.stats().queue_events == 1, 5)
        size: int = probe.stats().queue_bytes
        probe.stop()
        return 10 * size

    def test_drop_oldest_keeps_the_newest_and_counts_exactly(self, server: MockMassiveServer, make_client) -> None:
        capacity = self._ten_frames(server, make_client)
        client = make_client(subscriptions=["T.*"], queue_bytes=capacity, overflow="drop_oldest")
        client.start()
        client.wait_ready(5)
        client.drain()
        self._flood(server, client, 25)
        events = client.drain(1000)
        trades = [e.sequence_number for e in events if isinstance(e, mrt.EquityTrade)]
        dropped = [e for e in events if isinstance(e, mrt.StatusMessage) and e.status == "dropped"]
        assert trades == list(range(15, 25))  # ten frames of two-digit q fill the bytes exactly
        assert sum(d.dropped for d in dropped) == 15 == client.stats().dropped_events
        assert events.index(dropped[0]) < events.index(next(e for e in events if isinstance(e, mrt.EquityTrade)))

    def test_drop_newest_keeps_the_oldest_and_counts_exactly(self, server: MockMassiveServer, make_client) -> None:
        capacity = self._ten_frames(server, make_client)
        client = make_client(subscriptions=["T.*"], queue_bytes=capacity, overflow="drop_newest")
        client.start()
        client.wait_ready(5)
        client.drain()
        self._flood(server, client, 25)
        events = client.drain(1000)
        trades = [e.sequence_number for e in events if isinstance(e, mrt.EquityTrade)]
        dropped = [e for e in events if isinstance(e, mrt.StatusMessage) and e.status == "dropped"]
        assert trades == list(range(10))  # q 0-9: one byte shorter each, so q=10 no longer fits
        assert sum(d.dropped for d in dropped) == 15 == client.stats().dropped_events

    def test_block_loses_nothing(self, server: MockMassiveServer, make_client) -> None:
        client = make_client(subscriptions=["T.*"], queue_size=5, overflow="block")
        client.start()
        client.wait_ready(5)
        sender = threading.Thread(
            target=lambda: [server.publish([dict(TRADE, q=i)], batch=1) for i in range(50)],
            name="test-sender",
            daemon=True,
        )
        sender.start()
        got = [next_of(client, mrt.EquityTrade).sequence_number for _ in range(50)]
        sender.join(5)
        assert got == list(range(50))
        assert client.stats().dropped_events == 0


# ----------------------------------------------------------------------------- stop


class TestStop:
    def test_stop_during_connect(self) -> None:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            client = MassiveWebSocketClient(
                api_key=KEY, url=f"ws://127.0.0.1:{listener.getsockname()[1]}/stocks", connect_timeout=30
            )
            client.start()
            assert wait_until(lambda: client.state is mrt.ConnectionState.CONNECTING, 5)
            started = time.monotonic()
            client.stop(timeout=5)
            assert time.monotonic() - started < 4
            assert client.state is mrt.ConnectionState.STOPPED

    def test_stop_during_backoff(self) -> None:
        probe = MockMassiveServer(api_keys={KEY})
        probe.start()
        port = probe.port
        probe.close()
        client = MassiveWebSocketClient(
            api_key=KEY,
            url=f"ws://127.0.0.1:{port}/stocks",
            reconnect=mrt.ReconnectPolicy(initial_delay=60, max_delay=60, jitter="none"),
        )
        client.start()
        assert wait_until(lambda: client.state is mrt.ConnectionState.BACKOFF, 5)
        started = time.monotonic()
        client.stop(timeout=5)
        assert time.monotonic() - started < 2
        assert client.state is mrt.ConnectionState.STOPPED

    def test_stop_with_a_full_blocking_queue(self, server: MockMassiveServer, make_client) -> None:
        client = make_client(subscriptions=["T.*"], queue_size=2, overflow="block")
        client.start()
        client.wait_ready(5)
        assert server.wait_for_subscribed(["T.*"], 5)  # else the trades may go out before it listens
        for i in range(10):
            server.publish([dict(TRADE, q=i)], batch=1)
        assert wait_until(lambda: client.stats().queue_events >= 2, 5)
        started = time.monotonic()
        client.stop(timeout=5)
        assert time.monotonic() - started < 2
        assert client.state is mrt.ConnectionState.STOPPED

    def test_stop_twice_and_from_another_thread_while_a_consumer_waits(self, make_client) -> None:
        client = make_client()
        client.start()
        client.wait_ready(5)
        client.drain()
        outcome: queue.Queue[object] = queue.Queue()

        def consume() -> None:
            try:
                while True:
                    client.get(timeout=None)
            except mrt.ClientClosedError as exc:
                outcome.put(exc)

        consumer = threading.Thread(target=consume, name="test-consumer", daemon=True)
        consumer.start()
        stopper = threading.Thread(target=client.stop, name="test-stopper", daemon=True)
        stopper.start()
        assert isinstance(outcome.get(timeout=5), mrt.ClientClosedError)
        stopper.join(5)
        client.stop()
        consumer.join(5)
        assert not consumer.is_alive()

    def test_stop_before_start(self) -> None:
        client = MassiveWebSocketClient(api_key=KEY)
        client.stop()
        client.stop()
        assert client.state is mrt.ConnectionState.STOPPED
        assert [e.state for e in client.iter_events()] == [mrt.ConnectionState.STOPPED]
        with pytest.raises(mrt.ClientClosedError):
            client.get(timeout=0.1)


# ----------------------------------------------------------------------------- E. thread safety


class TestThreadSafety:
    def test_concurrent_subscription_requests(self, server: MockMassiveServer, make_client) -> None:
        client = make_client()
        client.start()
        client.wait_ready(5)
        barrier = threading.Barrier(20)

        def churn(worker: int) -> None:
            barrier.wait(5)
            for i in range(20):
                client.subscribe(f"T.W{worker}S{i}", f"Q.W{worker}S{i}")
                client.unsubscribe(f"Q.W{worker}S{i}")

        threads = [threading.Thread(target=churn, args=(w,), name=f"test-churn-{w}", daemon=True) for w in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        expected = {f"T.W{w}S{i}" for w in range(20) for i in range(20)}
        assert client.subscriptions == expected
        assert server.wait_for(lambda: server.active_connections()[0].subscriptions == expected, 10)

    def test_concurrent_message_processing(self, server: MockMassiveServer, make_client) -> None:
        client = make_client(subscriptions=["T.*"])
        client.start()
        client.wait_ready(5)
        client.drain()
        seen: list[int] = []
        lock = threading.Lock()

        def consume() -> None:
            for event in client.iter_events(timeout=1):
                if isinstance(event, mrt.EquityTrade):
                    with lock:
                        seen.append(event.sequence_number)

        consumers = [threading.Thread(target=consume, name=f"test-consumer-{i}", daemon=True) for i in range(4)]
        for consumer in consumers:
            consumer.start()
        server.publish([dict(TRADE, q=i) for i in range(2000)], batch=10)
        for consumer in consumers:
            consumer.join(10)
        assert sorted(seen) == list(range(2000))

    def test_connection_lock_mechanism(self, server: MockMassiveServer, make_client) -> None:
        client = make_client()
        barrier = threading.Barrier(10)

        def start() -> None:
            barrier.wait(5)
            client.start()

        threads = [threading.Thread(target=start, name=f"test-start-{i}", daemon=True) for i in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(5)
        client.wait_ready(5)
        assert len(server.connections) == 1


# ----------------------------------------------------------------------------- edges


class TestEdges:
    def test_attempt_counter_resets_after_stable_streaming(self, server: MockMassiveServer, make_client) -> None:
        policy = mrt.ReconnectPolicy(initial_delay=0.01, max_delay=0.02, max_attempts=1, reset_after=0.0)
        client = make_client(subscriptions=["T.AAPL"], reconnect=policy)
        client.start()
        client.wait_ready(5)
        for cycle in range(3):  # more drops than max_attempts allows in a row: each came after streaming
            server.drop_all()
            assert server.wait_for(
                lambda c=cycle: (
                    len(server.connections) == c + 2
                    and bool(server.active_connections())
                    and server.active_connections()[0].subscriptions == {"T.AAPL"}
                ),
                5,
            )
            # Streaming again (acks in) before the next drop: only then was the session stable.
            assert wait_until(
                lambda c=cycle: client.state is mrt.ConnectionState.STREAMING and client.stats().reconnects == c + 1, 5
            )
        assert client.state is not mrt.ConnectionState.FAILED
        assert client.stats().reconnects == 3

    def test_wait_ready_after_stop_says_the_client_is_closed(self, make_client) -> None:
        client = make_client()
        client.start()
        client.wait_ready(5)
        client.stop()
        with pytest.raises(mrt.ClientClosedError, match="stopped"):
            client.wait_ready(1)

    def test_unsubscribing_before_the_ack_settles_the_request(self, server: MockMassiveServer, make_client) -> None:
        client = make_client()
        client.start()
        client.wait_ready(5)
        client.subscribe("T.AAPL", "T.MSFT")
        client.unsubscribe("T.AAPL")
        assert server.wait_for(lambda: server.active_connections()[0].subscriptions == {"T.MSFT"}, 5)
        assert wait_until(lambda: client.acked == frozenset({"T.MSFT"}), 5)
        assert client.state is mrt.ConnectionState.STREAMING

    def test_unsubscribing_what_is_not_desired_sends_nothing(self, server: MockMassiveServer, make_client) -> None:
        client = make_client()
        client.start()
        client.wait_ready(5)
        assert client.unsubscribe("T.NOPE") == ()
        assert client.unsubscribe_all() == ()
        client.subscribe("T.AAPL")
        assert client.wait_acked(["T.AAPL"], 5)
        assert [m.action for m in server.received] == ["auth", "subscribe"]

    def test_data_before_the_acks_counts_as_streaming(self, make_client) -> None:
        with MockMassiveServer(api_keys={KEY}, ack_mode="separate") as srv:
            client = make_client(url=srv.url(), subscriptions=[f"T.S{i}" for i in range(50)] + ["T.AAPL"])
            client.start()
            assert wait_until(
                lambda: client.state in (mrt.ConnectionState.SUBSCRIBING, mrt.ConnectionState.STREAMING), 5
            )
            assert srv.wait_for_subscribed(["T.AAPL"], 5)
            srv.publish([TRADE])
            assert next_of(client, mrt.EquityTrade).symbol == "AAPL"
            client.wait_ready(5)
