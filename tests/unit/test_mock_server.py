"""MockMassiveServer, driven over real sockets by a plain websocket-client: protocol and faults."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import websocket
from hypothesis import given
from hypothesis import strategies as st
from websocket import ABNF, WebSocketConnectionClosedException, WebSocketTimeoutException

from massive_rt.models import EquityTrade
from massive_rt.protocol import channel_matches
from massive_rt.protocol import routes_to as _routes
from massive_rt.testing import ConnectionInfo, MockMassiveServer, ReceivedMessage
from massive_rt.testing import pytest_plugin as plugin_module
from tests.conftest import wait_until
from tests.support import KEY


def trade(sym: str, seq: int = 0, ev: str = "T") -> dict[str, Any]:
    return {"ev": ev, "sym": sym, "x": 4, "i": str(seq), "z": 3, "p": 190.5, "s": 100, "t": 1_700_000_000_000, "q": seq}


def status(status: str, message: str) -> dict[str, str]:
    return {"ev": "status", "status": status, "message": message}


class Client:
    """A plain websocket-client connection with helpers for Massive's protocol."""

    def __init__(self, url: str, **options: Any) -> None:
        self.ws = websocket.create_connection(url, timeout=5, skip_utf8_validation=True, **options)

    def send(self, action: str, params: str) -> None:
        self.ws.send(json.dumps({"action": action, "params": params}))

    def recv_frame(self) -> Any:
        opcode, data = self.ws.recv_data()
        assert opcode == ABNF.OPCODE_TEXT
        return json.loads(data)

    def recv_until(self, last: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        """Read objects until one satisfies ``last``; return all of them (in order)."""
        out: list[dict[str, Any]] = []
        while True:
            for item in self.recv_frame():
                out.append(item)
                if last(item):
                    return out

    def expect_close_frame(self) -> tuple[int, str]:
        """Read until a close frame; return its code and reason (the client answers it)."""
        while True:
            opcode, data = self.ws.recv_data(control_frame=True)
            if opcode == ABNF.OPCODE_CLOSE:
                return int.from_bytes(data[:2], "big"), data[2:].decode()

    def expect_abrupt_close(self) -> None:
        """Read until the TCP connection ends; fail on a close frame."""
        try:
            while True:
                opcode, _ = self.ws.recv_data(control_frame=True)
                assert opcode != ABNF.OPCODE_CLOSE, "expected an abrupt close, got a close frame"
        except (WebSocketConnectionClosedException, ConnectionResetError, BrokenPipeError):
            return

    def close(self) -> None:
        try:
            self.ws.close(timeout=1)
        except (OSError, websocket.WebSocketException):
            pass
        self.ws.shutdown()  # type: ignore[no-untyped-call]


Servers = Callable[..., MockMassiveServer]
Clients = Callable[..., Client]


@pytest.fixture
def servers() -> Iterator[Servers]:
    started: list[MockMassiveServer] = []

    def make(**kwargs: Any) -> MockMassiveServer:
        kwargs.setdefault("api_keys", {KEY})
        kwargs.setdefault("close_timeout", 0.5)
        server = MockMassiveServer(**kwargs).start()
        started.append(server)
        return server

    yield make
    for server in reversed(started):
        server.close()


@pytest.fixture
def server(servers: Servers) -> MockMassiveServer:
    return servers()


@pytest.fixture
def clients(servers: Servers) -> Iterator[Clients]:
    opened: list[Client] = []

    def connect(url: str, *, key: str | None = KEY, subscribe: str | None = None, **options: Any) -> Client:
        client = Client(url, **options)
        opened.append(client)
        assert client.recv_frame() == [status("connected", "Connected Successfully")]
        if key is not None:
            client.send("auth", key)
            assert client.recv_frame() == [status("auth_success", "authenticated")]
        if subscribe is not None:
            client.send("subscribe", subscribe)
            client.recv_frame()
        return client

    yield connect
    for client in opened:
        client.close()


# ---------------------------------------------------------------------------------------------
# Handshake and authentication


def test_connected_is_the_first_frame_then_auth_succeeds(server: MockMassiveServer) -> None:
    client = Client(server.url())
    try:
        assert client.recv_frame() == [{"ev": "status", "status": "connected", "message": "Connected Successfully"}]
        client.send("auth", KEY)
        assert client.recv_frame() == [{"ev": "status", "status": "auth_success", "message": "authenticated"}]
        assert server.wait_for_connections(1, timeout=5)
        (info,) = server.connections
        assert (info.id, info.market, info.authenticated, info.key, info.closed) == ("c1", "stocks", True, KEY, False)
    finally:
        client.close()


def test_bad_key_gets_auth_failed_then_an_abrupt_close(server: MockMassiveServer, clients: Clients) -> None:
    client = clients(server.url(), key=None)
    client.send("auth", "wrong-key")
    assert client.recv_frame() == [status("auth_failed", "authentication failed")]
    client.expect_abrupt_close()
    assert server.wait_for(lambda: server.connections[0].closed, timeout=5)
    assert not server.connections[0].authenticated


def test_api_keys_none_accepts_any_key(servers: Servers, clients: Clients) -> None:
    server = servers(api_keys=None)
    clients(server.url(), key="anything-at-all")
    assert server.connections[0].authenticated


def test_no_auth_within_auth_timeout_gets_auth_timeout_and_close_1008(servers: Servers, clients: Clients) -> None:
    server = servers(auth_timeout=0.2)
    client = clients(server.url(), key=None)
    assert client.recv_frame() == [status("auth_timeout", "No authentication request received.")]
    assert client.expect_close_frame() == (1008, "")


def test_auth_in_time_is_not_timed_out(servers: Servers, clients: Clients) -> None:
    server = servers(auth_timeout=0.5)
    client = clients(server.url(), subscribe="T.AAPL")
    assert not server.wait_for(lambda: server.connections[0].closed, timeout=0.7)
    assert server.publish([trade("AAPL", 1)]) == 1
    assert client.recv_frame()[0]["q"] == 1


def test_subscribe_before_auth_is_refused_and_connection_stays_open(
    server: MockMassiveServer, clients: Clients
) -> None:
    client = clients(server.url(), key=None)
    client.send("subscribe", "T.AAPL")
    assert client.recv_frame() == [status("auth_required", "not authenticated")]
    assert server.connections[0].subscriptions == frozenset()
    client.send("auth", KEY)
    assert client.recv_frame() == [status("auth_success", "authenticated")]


def test_unknown_market_path_is_refused_with_404(server: MockMassiveServer) -> None:
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        websocket.create_connection(server.url("nonsense"), timeout=5)
    assert info.value.status_code == 404
    assert server.connections == []


def test_invalid_json_gets_an_error_and_the_connection_stays_open(server: MockMassiveServer, clients: Clients) -> None:
    client = clients(server.url())
    client.ws.send("{\u201caction\u201d: \u201csubscribe\u201d}")  # curly quotes, as in client-examples #12
    assert client.recv_frame() == [status("error", "Invalid JSON")]
    client.send("subscribe", "T.AAPL")
    assert client.recv_frame() == [status("success", "subscribed to: T.AAPL")]


# ---------------------------------------------------------------------------------------------
# Subscriptions


def test_batched_mode_acks_every_param_in_one_frame(server: MockMassiveServer, clients: Clients) -> None:
    client = clients(server.url())
    client.send("subscribe", "T.AAPL, Q.MSFT,AM.*")  # spaces after commas are tolerated
    assert client.recv_frame() == [
        status("success", "subscribed to: T.AAPL"),
        status("success", "subscribed to: Q.MSFT"),
        status("success", "subscribed to: AM.*"),
    ]
    assert server.wait_for_subscribed(["T.AAPL", "Q.MSFT", "AM.*"], timeout=5)


def test_separate_mode_acks_each_param_in_its_own_frame(servers: Servers, clients: Clients) -> None:
    server = servers(ack_mode="separate")
    client = clients(server.url())
    client.send("subscribe", "T.AAPL,Q.MSFT")
    assert client.recv_frame() == [status("success", "subscribed to: T.AAPL")]
    assert client.recv_frame() == [status("success", "subscribed to: Q.MSFT")]


def test_dotted_ticker_is_acked_and_routed(server: MockMassiveServer, clients: Clients) -> None:
    client = clients(server.url())
    client.send("subscribe", "T.BRK.B")
    assert client.recv_frame() == [status("success", "subscribed to: T.BRK.B")]
    assert server.publish([trade("BRK.A"), trade("BRK.B")]) == 1
    assert [e["sym"] for e in client.recv_frame()] == ["BRK.B"]


def test_unknown_channel_is_silently_ignored_unknown_ticker_is_acked(
    server: MockMassiveServer, clients: Clients
) -> None:
    client = clients(server.url())
    client.send("subscribe", "ZZ.AAPL,XT.BTC-USD,T.NOTATICKER,garbage")  # XT is crypto-only
    assert client.recv_frame() == [status("success", "subscribed to: T.NOTATICKER")]
    assert server.connections[0].subscriptions == frozenset({"T.NOTATICKER"})


def test_unentitled_channels_get_not_authorized_before_the_acks(servers: Servers, clients: Clients) -> None:
    server = servers(unentitled=["NOI", "Q.TSLA"])
    client = clients(server.url())
    client.send("subscribe", "T.AAPL,NOI.*,Q.TSLA,Q.MSFT")
    assert client.recv_frame() == [status("error", "not authorized"), status("error", "not authorized")]
    assert client.recv_frame() == [
        status("success", "subscribed to: T.AAPL"),
        status("success", "subscribed to: Q.MSFT"),
    ]
    assert server.connections[0].subscriptions == frozenset({"T.AAPL", "Q.MSFT"})


def test_unentitled_error_precedes_acks_in_separate_mode(servers: Servers, clients: Clients) -> None:
    server = servers(unentitled=["NOI.*"], ack_mode="separate")
    client = clients(server.url())
    client.send("subscribe", "T.AAPL,NOI.AAPL")
    assert client.recv_frame() == [status("error", "not authorized")]
    assert client.recv_frame() == [status("success", "subscribed to: T.AAPL")]


def test_unsubscribe_is_acked_and_stops_delivery(server: MockMassiveServer, clients: Clients) -> None:
    client = clients(server.url(), subscribe="T.AAPL,T.MSFT")
    client.send("unsubscribe", "T.AAPL")
    assert client.recv_frame() == [status("success", "unsubscribed to: T.AAPL")]
    assert server.connections[0].subscriptions == frozenset({"T.MSFT"})
    assert server.publish([trade("AAPL", 1), trade("MSFT", 2)]) == 1
    assert [e["sym"] for e in client.recv_frame()] == ["MSFT"]


# ---------------------------------------------------------------------------------------------
# Routing and publishing


def test_wildcard_gets_every_symbol_and_exact_channel_only_its_own(server: MockMassiveServer, clients: Clients) -> None:
    everything = clients(server.url(), subscribe="T.*")
    aapl_only = clients(server.url(), subscribe="T.AAPL")
    events = [trade("AAPL", 1), trade("MSFT", 2), trade("AAPL", 3)]
    assert server.publish(events) == 3 + 2
    assert [e["q"] for e in everything.recv_frame()] == [1, 2, 3]
    assert [e["q"] for e in aapl_only.recv_frame()] == [1, 3]


def test_second_aggregate_wildcard_does_not_receive_minute_aggregates(
    server: MockMassiveServer, clients: Clients
) -> None:
    client = clients(server.url(), subscribe="A.*")
    agg = {"ev": "AM", "sym": "AAPL", "o": 1.0, "c": 1.0, "s": 1, "e": 2}
    assert server.publish([agg, {**agg, "ev": "A"}, {**agg, "ev": "A", "sym": "MSFT"}]) == 2
    assert [(e["ev"], e["sym"]) for e in client.recv_frame()] == [("A", "AAPL"), ("A", "MSFT")]


def test_events_route_only_to_their_market(server: MockMassiveServer, clients: Clients) -> None:
    stocks = clients(server.url("stocks"), subscribe="T.*")
    crypto = clients(server.url("crypto"), subscribe="XT.*")
    assert server.publish([{"ev": "XT", "pair": "BTC-USD", "p": 1.5, "s": 0.1}], market="crypto") == 1
    assert server.publish([trade("AAPL", 7)], market="stocks") == 1
    assert crypto.recv_frame() == [{"ev": "XT", "pair": "BTC-USD", "p": 1.5, "s": 0.1}]
    assert stocks.recv_frame()[0]["q"] == 7


def test_symbol_keys_per_schema_are_used_for_routing(server: MockMassiveServer, clients: Clients) -> None:
    luld = clients(server.url(), subscribe="LULD.MSFT")
    forex = clients(server.url("forex"), subscribe="C.USD/CNH")
    band = {"ev": "LULD", "T": "MSFT", "h": 218.96, "l": 198.11}
    assert server.publish([band, {**band, "T": "AAPL"}]) == 1
    assert luld.recv_frame() == [band]
    quote = {"ev": "C", "p": "USD/CNH", "a": 6.83366, "b": 6.83363, "t": 1}
    assert server.publish([{**quote, "p": "EUR/USD"}, quote], market="forex") == 1
    assert forex.recv_frame() == [quote]


def test_publish_groups_events_in_frames_of_batch_preserving_order(server: MockMassiveServer, clients: Clients) -> None:
    client = clients(server.url(), subscribe="T.*")
    assert server.publish([trade("AAPL", i) for i in range(25)], batch=10) == 25
    frames = [client.recv_frame() for _ in range(3)]
    assert [len(f) for f in frames] == [10, 10, 5]
    assert [e["q"] for f in frames for e in f] == list(range(25))


def test_publish_accepts_model_instances(server: MockMassiveServer, clients: Clients) -> None:
    client = clients(server.url(), subscribe="T.AAPL")
    event = EquityTrade(event_type="T", symbol="AAPL", price=190.5, size=100, conditions=[12], timestamp=5)
    assert server.publish([event]) == 1
    assert client.recv_frame() == [{"ev": "T", "sym": "AAPL", "p": 190.5, "s": 100, "c": [12], "t": 5}]


def test_publish_skips_unsubscribed_and_unauthenticated_connections(
    server: MockMassiveServer, clients: Clients
) -> None:
    clients(server.url(), key=None)
    clients(server.url())
    assert server.publish([trade("AAPL")]) == 0


def test_publish_raw_frames_reaches_authenticated_connections_without_filter(
    server: MockMassiveServer, clients: Clients
) -> None:
    subscribed_elsewhere = clients(server.url(), subscribe="Q.MSFT")
    unauthenticated = clients(server.url(), key=None)
    frames: list[str | bytes] = ['[{"ev":"T","sym":"AAPL","q":1}]', b'[{"ev":"T","sym":"AAPL","q":2}]']
    assert server.publish_raw_frames(frames) == 2
    assert subscribed_elsewhere.recv_frame() == [{"ev": "T", "sym": "AAPL", "q": 1}]
    assert subscribed_elsewhere.recv_frame() == [{"ev": "T", "sym": "AAPL", "q": 2}]
    unauthenticated.ws.settimeout(0.2)
    with pytest.raises(WebSocketTimeoutException):
        unauthenticated.recv_frame()


def test_prepared_raw_frames_are_sent_as_often_as_asked(server: MockMassiveServer, clients: Clients) -> None:
    client = clients(server.url(), subscribe="T.AAPL")
    prepared = server.prepare_raw_frames(['[{"ev":"T","sym":"AAPL","q":1}]', b'[{"ev":"T","sym":"AAPL","q":2}]'])
    assert prepared.count == 2
    assert "bytes>" in repr(prepared)

    assert server.publish_raw_frames(prepared) == 2
    assert server.publish_raw_frames(prepared) == 2
    assert [client.recv_frame()[0]["q"] for _ in range(4)] == [1, 2, 1, 2]
    assert server.publish_raw_frames(server.prepare_raw_frames([])) == 0


def test_large_publish_arrives_complete_and_in_order(server: MockMassiveServer, clients: Clients) -> None:
    client = clients(server.url(), subscribe="T.*")
    total = 20_000  # several send buffers of 1 MiB
    received: list[int] = []
    reader = threading.Thread(target=lambda: received.extend(e["q"] for _ in range(total) for e in client.recv_frame()))
    reader.start()
    assert server.publish([trade("AAPL", i) for i in range(total)], batch=1) == total
    reader.join(40)  # 12 s with four workers on two loaded cores; 10 s was too short there
    assert not reader.is_alive(), f"{len(received):,} of {total:,} frames read in 40 s"
    assert received == list(range(total))


@given(
    subscriptions=st.frozensets(st.sampled_from(["T.*", "T.AAPL", "A.*", "AM.AAPL", "T.BRK.B", "Q.MSFT"])),
    ev=st.sampled_from(["T", "A", "AM", "Q", "status", None]),
    symbol=st.sampled_from(["AAPL", "BRK.B", "MSFT", "*", None, 5]),
)
def test_routing_rule_equals_protocol_channel_matches(
    subscriptions: frozenset[str], ev: str | None, symbol: object
) -> None:
    expected = any(channel_matches(ch, ev, symbol) for ch in subscriptions)  # type: ignore[arg-type]
    assert _routes(subscriptions, ev, symbol) == expected


# ---------------------------------------------------------------------------------------------
# Connection limit


def test_max_connections_evicts_the_newest_with_1008(servers: Servers, clients: Clients) -> None:
    server = servers(max_connections=1)
    first = clients(server.url(), subscribe="T.*")
    second = clients(server.url("crypto"))  # the limit counts across markets
    assert second.recv_frame() == [status("max_connections", "Maximum number of websocket connections exceeded.")]
    assert second.expect_close_frame() == (1008, "")
    assert server.wait_for(lambda: server.connections[1].closed, timeout=5)
    assert server.connections[1].evicted
    assert not server.connections[0].evicted
    assert server.max_concurrent(KEY) == 2  # Massive also authenticates the extra connection first
    assert server.publish([trade("AAPL", 1)]) == 1
    assert first.recv_frame()[0]["q"] == 1


def test_max_connections_evicts_the_oldest_when_asked(servers: Servers, clients: Clients) -> None:
    server = servers(max_connections=1, evict="oldest")
    first = clients(server.url(), subscribe="T.*")
    second = clients(server.url(), subscribe="T.*")
    assert first.recv_frame() == [status("max_connections", "Maximum number of websocket connections exceeded.")]
    assert first.expect_close_frame() == (1008, "")
    assert server.wait_for(lambda: server.connections[0].closed, timeout=5)
    assert server.publish([trade("AAPL", 2)]) == 1
    assert second.recv_frame()[0]["q"] == 2
    assert [c.id for c in server.active_connections()] == ["c2"]


def test_evicting_a_stalled_oldest_connection_ends_its_stall(servers: Servers, clients: Clients) -> None:
    server = servers(max_connections=1, evict="oldest")
    first = clients(server.url())
    server.stall("c1")
    clients(server.url())
    assert first.recv_frame() == [status("max_connections", "Maximum number of websocket connections exceeded.")]
    assert first.expect_close_frame() == (1008, "")
    assert not server.connections[0].stalled


def test_max_concurrent_counts_sequential_connections_once(servers: Servers, clients: Clients) -> None:
    server = servers(max_connections=2)
    for _ in range(3):
        client = clients(server.url())
        client.close()
        assert server.wait_for(lambda: not server.active_connections(), timeout=5)
    assert server.max_concurrent(KEY) == 1
    assert server.max_concurrent() == 1
    assert server.max_concurrent("other-key") == 0
    assert len(server.connections) == 3


# ---------------------------------------------------------------------------------------------
# Fault injection


def test_send_status_then_close_with_its_code(server: MockMassiveServer, clients: Clients) -> None:
    client = clients(server.url())
    assert server.send_status("force_disconnect", "bye now", close_code=4001, connection="c1", reason="later") == 1
    assert client.recv_frame() == [status("force_disconnect", "bye now")]
    assert client.expect_close_frame() == (4001, "later")


def test_send_status_without_code_keeps_connection_open(server: MockMassiveServer, clients: Clients) -> None:
    client = clients(server.url())
    server.send_status("slow_consumer", "you are slow")
    assert client.recv_frame() == [status("slow_consumer", "you are slow")]
    assert server.publish_raw_frames(["[]"]) == 1
    assert client.recv_frame() == []


def test_send_raw_text_binary_and_invalid_utf8(server: MockMassiveServer, clients: Clients) -> None:
    client = clients(server.url())
    assert server.send_raw('{"not": "an array"}') == 1
    assert client.ws.recv_data() == (ABNF.OPCODE_TEXT, b'{"not": "an array"}')
    server.send_raw(b'[{"ev":"T"}]', connection="c1")
    assert client.ws.recv_data() == (ABNF.OPCODE_BINARY, b'[{"ev":"T"}]')
    server.send_raw(b"[\xff\xfe]", text_frame_bytes=True)
    assert client.ws.recv_data() == (ABNF.OPCODE_TEXT, b"[\xff\xfe]")
    huge = "[" + ",".join(['{"ev":"T","sym":"AAPL"}'] * 100_000) + "]"  # 2.3 MB, 64-bit length
    server.send_raw(huge)
    assert client.ws.recv_data() == (ABNF.OPCODE_TEXT, huge.encode())


def test_drop_all_closes_abruptly_without_close_frame(server: MockMassiveServer, clients: Clients) -> None:
    one, two = clients(server.url()), clients(server.url("options"))
    assert server.drop_all() == 2
    one.expect_abrupt_close()
    two.expect_abrupt_close()
    assert server.wait_for(lambda: not server.active_connections(), timeout=5)


def test_kick_drops_only_that_connection(server: MockMassiveServer, clients: Clients) -> None:
    kicked = clients(server.url(), subscribe="T.*")
    kept = clients(server.url(), subscribe="T.*")
    server.kick("c1")
    kicked.expect_abrupt_close()
    assert server.wait_for(lambda: server.connections[0].closed, timeout=5)
    assert server.publish([trade("AAPL", 3)]) == 1
    assert kept.recv_frame()[0]["q"] == 3
    with pytest.raises(KeyError):
        server.kick("c99")


def test_close_connection_performs_a_clean_close_with_code(server: MockMassiveServer, clients: Clients) -> None:
    client = clients(server.url())
    server.close_connection(server.connections[0], code=4002, reason="maintenance")
    assert client.expect_close_frame() == (4002, "maintenance")
    assert server.wait_for(lambda: server.connections[0].closed, timeout=5)


def test_close_connection_rejects_codes_that_cannot_be_sent(server: MockMassiveServer, clients: Clients) -> None:
    clients(server.url())
    with pytest.raises(ValueError, match="1006"):
        server.close_connection("c1", code=1006)


def test_stall_withholds_data_and_pongs_until_resume(server: MockMassiveServer, clients: Clients) -> None:
    client = clients(server.url(), subscribe="T.*")
    assert server.stall() == 1
    assert server.connections[0].stalled
    fresh = clients(server.url(), subscribe="T.*")  # opened after stall(): not stalled
    assert server.publish([trade("AAPL", 1)]) == 1
    assert fresh.recv_frame()[0]["q"] == 1
    fresh.ws.ping(b"fresh")
    assert fresh.ws.recv_data(control_frame=True) == (ABNF.OPCODE_PONG, b"fresh")

    client.ws.ping(b"anyone")
    client.ws.settimeout(0.3)
    with pytest.raises(WebSocketTimeoutException):
        client.ws.recv_data(control_frame=True)
    client.ws.settimeout(5)
    server.resume()
    assert client.ws.recv_data(control_frame=True) == (ABNF.OPCODE_PONG, b"anyone")
    assert [c.stalled for c in server.connections] == [False, False]
    assert server.publish([trade("AAPL", 2)]) == 2
    assert client.recv_frame()[0]["q"] == 2


def test_kick_ends_a_stall(server: MockMassiveServer, clients: Clients) -> None:
    client = clients(server.url())
    server.stall("c1")
    server.kick("c1")
    client.expect_abrupt_close()
    assert server.wait_for(lambda: server.connections[0].closed, timeout=5)


def test_restart_keeps_the_port_and_clients_can_reconnect(server: MockMassiveServer, clients: Clients) -> None:
    before = clients(server.url(), subscribe="T.AAPL")
    port = server.port
    server.restart()
    before.expect_abrupt_close()
    assert server.port == port
    after = clients(server.url(), subscribe="T.AAPL")
    assert [c.id for c in server.active_connections()] == ["c2"]
    assert server.publish([trade("AAPL", 9)]) == 1
    assert after.recv_frame()[0]["q"] == 9


def test_restart_with_a_code_closes_cleanly(server: MockMassiveServer, clients: Clients) -> None:
    client = clients(server.url())
    server.restart(code=1012)
    assert client.expect_close_frame() == (1012, "")
    clients(server.url())
    assert server.wait_for_connections(1, timeout=5)


def test_slow_consumer_is_dropped_when_configured(servers: Servers, clients: Clients) -> None:
    server = servers(slow_consumer_timeout=0.2)
    client = clients(server.url(), subscribe="T.*")
    big = [trade("AAPL" * 50, i) for i in range(20_000)]  # ~6 MB: more than the socket buffers hold
    delivered = sum(server.publish(big) for _ in range(10))
    assert delivered < 10 * len(big)
    assert server.wait_for(lambda: server.connections[0].closed, timeout=5)
    client.expect_abrupt_close()


# ---------------------------------------------------------------------------------------------
# Inspection, waiting, streaming, lifecycle


def test_received_log_records_every_message_and_masks_the_key(server: MockMassiveServer, clients: Clients) -> None:
    client = clients(server.url("options"), subscribe="T.O:SPY241220P00720000, Q.*")
    client.send("unsubscribe", "T.O:SPY241220P00720000")
    client.recv_frame()
    client.ws.send("nope")
    client.recv_frame()
    log = server.received
    assert all(isinstance(m, ReceivedMessage) for m in log)
    assert [(m.connection, m.market, m.action, m.params) for m in log] == [
        ("c1", "options", "auth", ()),
        ("c1", "options", "subscribe", ("T.O:SPY241220P00720000", "Q.*")),
        ("c1", "options", "unsubscribe", ("T.O:SPY241220P00720000",)),
        ("c1", "options", None, ()),
    ]
    assert log[0].key == KEY
    assert KEY in log[0].raw
    assert log[3].raw == "nope"
    assert KEY not in repr(log)
    assert KEY not in repr(server.connections)
    assert isinstance(server.connections[0], ConnectionInfo)
    assert server.connections[0].key == KEY


def test_wait_for_returns_false_on_timeout(server: MockMassiveServer) -> None:
    started = time.monotonic()
    assert server.wait_for(lambda: bool(server.connections), timeout=0.1) is False
    assert time.monotonic() - started < 2
    assert server.wait_for_subscribed("T.AAPL", timeout=0.05) is False


def test_wait_for_wakes_on_state_changes(server: MockMassiveServer, clients: Clients) -> None:
    results: list[bool] = []
    waiter = threading.Thread(target=lambda: results.append(server.wait_for_subscribed(["T.AAPL"], timeout=5)))
    waiter.start()
    clients(server.url(), subscribe="T.AAPL")
    waiter.join(5)
    assert results == [True]


class CountingSource:
    """A deterministic EventSource: trades with increasing sequence numbers."""

    def __init__(self) -> None:
        self.seq = 0

    def next_events(self, n: int) -> list[dict[str, Any]]:
        out = [trade("AAPL", self.seq + i) for i in range(n)]
        self.seq += n
        return out


def test_stream_publishes_source_events_at_a_rate(server: MockMassiveServer, clients: Clients) -> None:
    client = clients(server.url(), subscribe="T.AAPL")
    handle = server.stream(CountingSource(), rate=2000, batch=5)
    assert any(t.name == "massive-rt-mock-stream" for t in threading.enumerate())
    got = client.recv_until(lambda e: e["q"] >= 99)
    handle.stop()
    assert not handle.running
    assert [e["q"] for e in got] == list(range(100))
    assert handle.generated >= 100
    assert handle.delivered >= 100
    assert handle.error is None


@pytest.mark.allow_errors(r"^mock mock: stream stopped by an error$", logger="massive_rt.testing.server")
def test_stream_error_ends_the_stream(server: MockMassiveServer) -> None:
    class Broken:
        def next_events(self, n: int) -> list[dict[str, Any]]:
            raise RuntimeError("source broke")

    handle = server.stream(Broken(), rate=100)
    assert handle.join(timeout=5)
    assert isinstance(handle.error, RuntimeError)
    assert handle.generated == 0


def _mock_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("massive-rt-") and t.is_alive()}


def test_close_joins_every_thread_and_is_idempotent(clients: Clients) -> None:
    before = _mock_threads()
    server = MockMassiveServer(close_timeout=0.3).start()
    client = clients(server.url(), subscribe="T.*")
    clients(server.url(), key=None)
    server.stream(CountingSource(), rate=50)
    server.stall("c2")
    server.close_connection("c1", code=1000)  # leaves a closer thread
    started = time.monotonic()
    server.close()
    server.close()
    assert time.monotonic() - started < 5
    assert _mock_threads() - before == set()
    assert client.expect_close_frame() == (1000, "")
    with pytest.raises(RuntimeError):
        server.start()


def test_close_is_bounded_while_a_publisher_is_blocked_on_a_client_that_does_not_read(
    servers: Servers, clients: Clients
) -> None:
    before = _mock_threads()
    server = servers(close_timeout=0.3)
    clients(server.url(), subscribe="T.*")  # never reads
    handle = server.stream(CountingSource(), rate=5_000_000, batch=100)
    tick = threading.Event()
    deadline = time.monotonic() + 10
    while handle.generated < 20_000 and time.monotonic() < deadline:  # then it soon outruns the socket buffers
        tick.wait(0.01)  # the stream offers no event to wait on
    assert handle.generated >= 20_000
    started = time.monotonic()
    server.close()
    assert time.monotonic() - started < 8
    assert not handle.running
    assert _mock_threads() - before == set()


def test_close_says_going_away_to_connected_clients(server: MockMassiveServer, clients: Clients) -> None:
    client = clients(server.url())
    closer = threading.Thread(target=server.close)
    closer.start()
    assert client.expect_close_frame() == (1001, "")
    closer.join(5)
    assert not closer.is_alive()


def test_start_is_idempotent_and_url_uses_the_bound_port() -> None:
    with MockMassiveServer(name="urls") as server:
        assert server.start() is server
        assert server.port > 0
        assert server.url() == f"ws://127.0.0.1:{server.port}/stocks"
        assert server.url("futures/cme").endswith("/futures/cme")
        assert "running" in repr(server)


def test_invalid_configuration_is_refused() -> None:
    for kwargs in ({"evict": "random"}, {"ack_mode": "bulk"}, {"max_connections": 0}, {"auth_timeout": 0}):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            MockMassiveServer(**kwargs)


def test_massive_server_fixture_serves_test_key(massive_server: MockMassiveServer, clients: Clients) -> None:
    client = clients(massive_server.url("crypto"), subscribe="XT.*")
    assert massive_server.publish([{"ev": "XT", "pair": "BTC-USD", "p": 1.0}], market="crypto") == 1
    assert client.recv_frame() == [{"ev": "XT", "pair": "BTC-USD", "p": 1.0}]


def test_pytest_plugin_is_registered_by_entry_point(request: pytest.FixtureRequest) -> None:
    assert request.config.pluginmanager.get_plugin("massive_rt") is plugin_module


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl command not available to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return cert, key


def test_wss_with_an_ssl_context(servers: Servers, clients: Clients, tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = servers(ssl_context=context)
    assert server.url().startswith("wss://127.0.0.1:")
    client = clients(server.url(), subscribe="T.*", sslopt={"ca_certs": str(cert)})
    assert server.publish([trade("AAPL", 4)]) == 1
    assert client.recv_frame()[0]["q"] == 4


# ---------------------------------------------------------------------------------------------
# Playing Massive either way: its own channel table, entitlements, slow, reordered and lost acks,
# statuses among data


def test_the_channel_table_is_the_servers_own() -> None:
    import ast

    import massive_rt.testing.channels as channels_module
    from massive_rt.protocol import MARKET_EVENTS

    tree = ast.parse(Path(channels_module.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not any(name and "protocol" in name for name in imported)
    # Today the two agree; a difference must be a deliberate choice of one test, not drift.
    client_table = {market.value: frozenset(events) for market, events in MARKET_EVENTS.items()}
    assert dict(channels_module.DEFAULT_CHANNELS) == client_table


def test_a_channel_the_client_does_not_know_can_be_added_to_the_server(servers: Servers, clients: Clients) -> None:
    from massive_rt.testing.channels import DEFAULT_CHANNELS

    default = servers()
    client = clients(default.url("crypto"))
    client.send("subscribe", "XS.BTC-USD,XT.BTC-USD")
    assert client.recv_frame() == [status("success", "subscribed to: XT.BTC-USD")]  # XS: ignored
    newer = servers(channels={"crypto": [*DEFAULT_CHANNELS["crypto"], "XS"]})
    client = clients(newer.url("crypto"))
    client.send("subscribe", "XS.BTC-USD")
    assert client.recv_frame() == [status("success", "subscribed to: XS.BTC-USD")]
    assert newer.publish([{"ev": "XS", "pair": "BTC-USD", "bp": 1.0}], market="crypto") == 1
    assert client.recv_frame() == [{"ev": "XS", "pair": "BTC-USD", "bp": 1.0}]


def test_the_server_ignores_malformed_params_and_an_options_quote_wildcard(
    server: MockMassiveServer, clients: Clients
) -> None:
    client = clients(server.url("options"))
    client.send("subscribe", "Q.*,T.,.X,T.A B,T.A*,Q.O:SPY241220P00720000")
    assert client.recv_frame() == [status("success", "subscribed to: Q.O:SPY241220P00720000")]


def test_entitlements_refuse_everything_else(servers: Servers, clients: Clients) -> None:
    server = servers(entitlements=["T", "Q.AAPL", "crypto:XT.*"])
    client = clients(server.url())
    client.send("subscribe", "T.*,Q.AAPL,Q.MSFT,AM.*,XT.BTC-USD")  # XT is not a stocks channel: ignored
    assert client.recv_frame() == [status("error", "not authorized"), status("error", "not authorized")]
    assert client.recv_frame() == [status("success", "subscribed to: T.*"), status("success", "subscribed to: Q.AAPL")]
    crypto = clients(server.url("crypto"))
    crypto.send("subscribe", "XT.BTC-USD,XQ.BTC-USD")
    assert crypto.recv_frame() == [status("error", "not authorized")]
    assert crypto.recv_frame() == [status("success", "subscribed to: XT.BTC-USD")]


def test_entitlements_per_key_with_a_default(servers: Servers, clients: Clients) -> None:
    server = servers(api_keys={"a", "b", "c"}, entitlements={"a": ["T"], "*": ["Q"]}, refusals_name_channel=True)
    a = clients(server.url(), key="a")
    a.send("subscribe", "T.AAPL,Q.AAPL")
    assert a.recv_frame() == [status("error", "not authorized: Q.AAPL")]
    assert a.recv_frame() == [status("success", "subscribed to: T.AAPL")]
    b = clients(server.url(), key="b")
    b.send("subscribe", "T.AAPL,Q.AAPL")
    assert b.recv_frame() == [status("error", "not authorized: T.AAPL")]
    assert b.recv_frame() == [status("success", "subscribed to: Q.AAPL")]
    nothing = servers(api_keys={"a", "b"}, entitlements={"a": ["T"]})
    b = clients(nothing.url(), key="b")
    b.send("subscribe", "T.AAPL")
    assert b.recv_frame() == [status("error", "not authorized")]


def test_a_delayed_ack_comes_after_data_of_the_channel_it_acks(servers: Servers, clients: Clients) -> None:
    server = servers(ack_delay=1.5)
    client = clients(server.url())
    sent = time.monotonic()
    client.send("subscribe", "T.AAPL")
    assert server.wait_for_subscribed(["T.AAPL"], timeout=5)  # the server's state changes at once
    assert server.publish([trade("AAPL", 1)]) == 1
    assert client.recv_frame()[0]["q"] == 1
    assert client.recv_frame() == [status("success", "subscribed to: T.AAPL")]
    assert time.monotonic() - sent >= 1.5


def test_jittered_acks_of_one_request_can_overtake_each_other(servers: Servers, clients: Clients) -> None:
    server = servers(ack_mode="separate", ack_jitter=0.3, seed=7)
    client = clients(server.url())
    wanted = [f"T.S{i:02d}" for i in range(20)]
    client.send("subscribe", ",".join(wanted))
    acked = [client.recv_frame()[0]["message"].removeprefix("subscribed to: ") for _ in wanted]
    assert sorted(acked) == wanted
    assert acked != wanted  # with this seed the draws reorder them


def test_lost_acks_are_never_sent_but_the_subscription_holds(servers: Servers, clients: Clients) -> None:
    server = servers(lost_acks=["T.MSFT", "AM"])
    client = clients(server.url())
    client.send("subscribe", "T.AAPL,T.MSFT,AM.*")
    assert client.recv_frame() == [status("success", "subscribed to: T.AAPL")]
    assert server.connections[0].subscriptions == frozenset({"T.AAPL", "T.MSFT", "AM.*"})
    assert server.acks_lost == 2
    assert server.publish([trade("MSFT", 5)]) == 1
    assert client.recv_frame()[0]["q"] == 5
    every = servers(ack_loss=1.0)
    client = clients(every.url())
    client.send("subscribe", "T.AAPL,Q.AAPL")
    assert every.wait_for_subscribed(["T.AAPL", "Q.AAPL"], timeout=5)
    assert every.publish([trade("AAPL", 6)]) == 1
    assert client.recv_frame()[0]["q"] == 6  # no ack came first
    assert every.acks_lost == 2


def test_statuses_published_among_events_go_out_in_place(server: MockMassiveServer, clients: Clients) -> None:
    subscribed = clients(server.url(), subscribe="T.AAPL")
    bare = clients(server.url())
    note = status("success", "subscribed to: T.AAPL")
    assert server.publish([trade("AAPL", 1), note, trade("MSFT", 2), trade("AAPL", 3)]) == 4
    assert subscribed.recv_frame() == [trade("AAPL", 1), note, trade("AAPL", 3)]
    assert bare.recv_frame() == [note]


def test_closing_drops_replies_still_waiting_and_joins_their_thread(servers: Servers, clients: Clients) -> None:
    server = servers(ack_delay=3600)  # a close that waited for it would hit the test's timeout
    client = clients(server.url())
    client.send("subscribe", "T.AAPL")
    assert server.wait_for_subscribed(["T.AAPL"], timeout=5)
    # the reply is scheduled just after the subscription is recorded: wait for its thread
    assert wait_until(lambda: any(t.name == "massive-rt-mock-acks-mock" for t in threading.enumerate()))
    server.close()
    assert not any(t.name == "massive-rt-mock-acks-mock" for t in threading.enumerate())


@pytest.mark.parametrize(
    "options",
    [{"ack_delay": -1}, {"ack_jitter": float("nan")}, {"ack_loss": 1.5}, {"ack_delay": True}, {"entitlements": [""]}],
)
def test_bad_fidelity_options_are_refused(options: dict[str, Any]) -> None:
    from massive_rt.errors import ConfigurationError

    with pytest.raises(ConfigurationError):
        MockMassiveServer(**options)
