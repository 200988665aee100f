"""A running client against a hostile server: every fault is survived, nothing is lost silently.

Each hostile frame goes to a live, STREAMING client over a real socket; a sentinel trade follows
it on the same connection (``Stream.roundtrip``), which proves that the reader is alive, the
session is the same one (no reconnect) and every undecodable frame was counted and reported
once as a ``decode_error`` status. Wrong-typed fields are delivered as they are, like the
official client does (``models`` does not coerce).
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import massive_rt as mrt
from massive_rt.consumer import fast_loads
from massive_rt.framing import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_TEXT
from massive_rt.protocol import MARKET_EVENTS
from massive_rt.testing import MockMassiveServer
from tests.hardening._support import (
    FAST,
    KEY,
    SENTINEL,
    RawConnection,
    RawServer,
    Stream,
    encode_frame,
    expected_accounting,
    fuzz_settings,
    is_decode_error,
    trade,
)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=16),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=6), children, max_size=6),
    max_leaves=30,
)
STOCK_SCHEMAS = sorted(MARKET_EVENTS[mrt.Market.STOCKS].items())
KNOWN_EVS = [ev for ev, _ in STOCK_SCHEMAS]
wire_objects = st.builds(
    lambda ev, fields: {"ev": ev, **fields},
    st.sampled_from([*KNOWN_EVS, "XT", "ZZ", "", "t"]) | json_scalars.filter(lambda v: v != "status"),
    st.dictionaries(st.sampled_from(["sym", "p", "s", "c", "t", "q", "bp", "ap"]) | st.text(max_size=4), json_values,
                    max_size=6),
)  # fmt: skip
frames = st.one_of(
    json_values,
    wire_objects,
    st.lists(st.one_of(wire_objects, json_values), max_size=8),
).filter(lambda v: "status" not in json.dumps(v))
STATUS_MIX = [
    {"ev": "status", "status": "success", "message": f"subscribed to: T.{SENTINEL}"},
    {"ev": "T", "sym": "MIX", "p": 1.5, "s": 2, "q": 1},
    {"ev": "status", "status": "info", "message": "hello"},
]


@st.composite
def mangled(draw: st.DrawFn) -> bytes:
    """Almost-JSON: a valid frame (data, or statuses mixed with data) truncated, with bytes
    replaced, inserted or deleted; mostly invalid, sometimes valid in a surprising way."""
    data = bytearray(json.dumps(draw(st.one_of(frames, st.just(STATUS_MIX)))).encode())
    for _ in range(draw(st.integers(1, 3))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        edit = draw(st.sampled_from(["truncate", "replace", "insert", "delete"]))
        if edit == "truncate":
            del data[at:]
        elif edit == "replace":
            data[at] = draw(st.integers(0, 255))
        elif edit == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        else:
            del data[at : at + draw(st.integers(1, 8))]
    return bytes(data)


@pytest.fixture
def stream() -> Iterator[Stream]:
    with MockMassiveServer(api_keys={KEY}, name="hostile") as server:
        client = mrt.MassiveWebSocketClient(
            api_key=KEY, url=server.url("stocks"), subscriptions=[f"T.{SENTINEL}"], reconnect=FAST, name="hostile"
        )
        with client:
            yield Stream(server, client)


def check_accounting(events: list[mrt.Event], payload: bytes) -> None:
    """Every element of the frame became exactly one event, or the frame one decode_error."""
    expected = expected_accounting(payload)
    if expected is None:  # statuses the reader may act on: roundtrip() checked the invariants
        return
    objects, errors = expected
    assert sum(1 for e in events if is_decode_error(e)) == errors, events
    assert sum(1 for e in events if not is_decode_error(e)) == objects, events


# ----------------------------------------------------------------------------- fuzzing


def test_random_binary_frames_never_stop_the_stream(stream: Stream) -> None:
    @fuzz_settings()
    @given(st.binary(max_size=4096))
    def check(payload: bytes) -> None:
        events = stream.roundtrip(lambda: stream.server.send_raw(payload))
        check_accounting(events, payload)

    check()


def test_random_bytes_in_text_frames_never_stop_the_stream(stream: Stream) -> None:
    # Text frames that are not UTF-8: websockets refuses to send them, the mock writes them raw.
    @fuzz_settings()
    @given(st.binary(max_size=4096) | mangled())
    def check(payload: bytes) -> None:
        events = stream.roundtrip(lambda: stream.server.send_raw(payload, text_frame_bytes=True))
        check_accounting(events, payload)

    check()


def test_random_json_values_are_delivered_or_reported_one_for_one(stream: Stream) -> None:
    @fuzz_settings()
    @given(frames)
    def check(value: Any) -> None:
        text = json.dumps(value, ensure_ascii=False)
        events = stream.roundtrip(lambda: stream.server.send_raw(text))
        check_accounting(events, text.encode())
        objects = value if isinstance(value, list) else [value]
        delivered = [e for e in events if not is_decode_error(e)]
        for event, obj in zip(delivered, [o for o in objects if isinstance(o, dict)], strict=True):
            if isinstance(event, mrt.UnknownEvent):
                assert event.data == fast_loads(json.dumps(obj))
            else:
                assert isinstance(event, mrt.MarketEvent)
                assert event.event_type == obj["ev"]

    check()


def test_wrong_typed_fields_of_real_schemas_are_delivered_as_they_are(stream: Stream) -> None:
    @fuzz_settings()
    @given(st.data())
    def check(data: st.DataObject) -> None:
        ev, cls = data.draw(st.sampled_from(STOCK_SCHEMAS), label="schema")
        key, attr = data.draw(st.sampled_from([pair for pair in cls.WIRE if pair[0] != "ev"]), label="field")
        hostile = data.draw(json_values, label="value")
        obj = {wire: 1 for wire, _ in cls.WIRE} | {"ev": ev, key: hostile}
        text = json.dumps([obj])
        events = stream.roundtrip(lambda: stream.server.send_raw(text))
        assert len(events) == 1, events
        (event,) = events
        assert type(event) is cls
        assert getattr(event, attr) == json.loads(text)[0][key]  # exact, as msgspec decodes it

    check()


@pytest.mark.parametrize(
    "obj",
    [
        {"ev": "T", "sym": "AAPL", "p": "abc", "s": [1], "c": "0", "t": -1, "q": {"a": None}},
        {"ev": "Q", "sym": 5, "bp": True, "ap": None, "bs": "ten", "i": "x"},
        {"ev": "AM", "sym": ["AAPL"], "o": {"x": 1}, "v": -5.5, "s": "start", "e": False},
        {"ev": "T", "sym": "x" * 10_000, "p": 10**30, "s": -(10**30)},
    ],
    ids=["trade", "quote", "agg", "huge-values"],
)
def test_explicit_wrong_types_are_delivered_as_is(stream: Stream, obj: dict[str, Any]) -> None:
    text = json.dumps([obj])
    (event,) = stream.roundtrip(lambda: stream.server.send_raw(text))
    assert isinstance(event, mrt.MarketEvent)
    assert event.event_type == obj["ev"]
    wire = dict(type(event).WIRE)
    for key, value in json.loads(text)[0].items():  # exact: integers beyond 64 bits stay integers
        assert getattr(event, wire[key]) == value


@pytest.mark.parametrize("ev", [5, [1], {"a": 1}, None, True, "", "t", "ZZ"], ids=repr)
def test_objects_with_a_hostile_ev_arrive_as_unknown_events(stream: Stream, ev: object) -> None:
    obj = {"ev": ev, "sym": "AAPL", "p": 1}
    before = stream.client.stats().unknown_events
    (event,) = stream.roundtrip(lambda: stream.server.send_raw(json.dumps([obj])))
    assert isinstance(event, mrt.UnknownEvent)
    assert event.data == obj
    assert event.event_type == (ev if isinstance(ev, str) else None)
    assert stream.client.stats().unknown_events == before + 1


# ----------------------------------------------------------------------------- size and shape


def test_an_array_of_10k_trades_arrives_complete_and_in_order(stream: Stream) -> None:
    batch = [trade(seq, symbol="BULK") for seq in range(10_000)]
    events = stream.roundtrip(lambda: stream.server.send_raw(json.dumps(batch)))
    assert [e.sequence_number for e in events if isinstance(e, mrt.EquityTrade)] == list(range(10_000))
    assert len(events) == 10_000


def test_an_array_of_10k_non_objects_reports_every_element(stream: Stream) -> None:
    before = stream.client.stats().decode_errors
    events = stream.roundtrip(lambda: stream.server.send_raw(json.dumps(list(range(10_000)))))
    assert len(events) == 10_000
    assert all(is_decode_error(e) for e in events)
    assert stream.client.stats().decode_errors == before + 10_000


@pytest.mark.parametrize("depth", [50, 900, 5_000, 100_000])
@pytest.mark.parametrize("shape", ["arrays", "objects", "inside-a-trade"])
def test_deeply_nested_values(stream: Stream, depth: int, shape: str) -> None:
    if shape == "arrays":
        text = "[" * depth + "]" * depth
    elif shape == "objects":
        text = '{"a":' * depth + "1" + "}" * depth
    else:
        nested = '{"a":' * depth + "1" + "}" * depth
        text = '[{"ev":"T","sym":"AAPL","p":1.5,"c":' + nested + "}]"
    payload = text.encode()
    events = stream.roundtrip(lambda: stream.server.send_raw(text))
    check_accounting(events, payload)
    for error in filter(is_decode_error, events):
        assert any(why in error.message for why in ("not valid JSON", "not an object", "not a JSON array"))


def test_frames_over_one_megabyte_below_the_limit(stream: Stream) -> None:
    big_trades = [trade(seq, symbol="BIG", i="x" * 200) for seq in range(6_000)]
    text = json.dumps(big_trades)
    assert len(text) > 1_500_000
    events = stream.roundtrip(lambda: stream.server.send_raw(text))
    assert [e.sequence_number for e in events] == list(range(6_000))

    huge_field = json.dumps([trade(1, symbol="BIG", i="y" * 2_000_000)])
    (event,) = stream.roundtrip(lambda: stream.server.send_raw(huge_field))
    assert isinstance(event, mrt.EquityTrade)
    assert event.id == "y" * 2_000_000

    garbage = b"\x00\xff" * 800_000
    (error,) = stream.roundtrip(lambda: stream.server.send_raw(garbage))
    assert is_decode_error(error)
    assert len(error.message) < 2_000, "the report must preview the frame, not copy it"


@pytest.mark.parametrize(
    "bad",
    [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\x80abc", b"\xf8\x88\x80\x80\x80"],
    ids=["ff", "overlong", "surrogate", "truncated", "lone-continuation", "five-byte"],
)
def test_invalid_utf8_in_a_text_frame_is_one_decode_error(stream: Stream, bad: bytes) -> None:
    payload = b'[{"ev":"T","sym":"' + bad + b'","p":1.0,"s":1}]'
    events = stream.roundtrip(lambda: stream.server.send_raw(payload, text_frame_bytes=True))
    assert len(events) == 1
    assert is_decode_error(events[0])


def test_lone_surrogate_escapes_are_delivered_or_reported(stream: Stream) -> None:
    text = '[{"ev":"T","sym":"\\ud800","p":1.0}]'  # valid JSON text, not valid Unicode
    events = stream.roundtrip(lambda: stream.server.send_raw(text))
    check_accounting(events, text.encode())


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_literals(stream: Stream, literal: str) -> None:
    # Not JSON (RFC 8259). orjson (the "fast" extra, used when installed) refuses the frame:
    # one decode_error. The stdlib parser accepts them: the trade arrives with a float.
    text = f'[{{"ev":"T","sym":"AAPL","p":{literal},"s":1}}]'
    events = stream.roundtrip(lambda: stream.server.send_raw(text))
    assert len(events) == 1
    try:
        fast_loads(text)
    except ValueError:
        assert is_decode_error(events[0])
        assert "not valid JSON" in events[0].message
    else:
        assert isinstance(events[0], mrt.EquityTrade)
        assert events[0].price is not None
        assert not math.isfinite(events[0].price)


def test_duplicate_keys_take_the_last_value(stream: Stream) -> None:
    text = '[{"ev":"Q","ev":"T","sym":"AAPL","p":1.0,"p":2.0,"s":1,"s":"two"}]'
    (event,) = stream.roundtrip(lambda: stream.server.send_raw(text))
    assert isinstance(event, mrt.EquityTrade)
    assert (event.price, event.size) == (2.0, "two")


def test_a_bare_object_and_a_binary_frame_are_decoded(stream: Stream) -> None:
    # The official client crashes on a non-array frame (docs/protocol.md §5.6); here it is one event.
    (event,) = stream.roundtrip(lambda: stream.server.send_raw(json.dumps(trade(1, symbol="OBJ"))))
    assert isinstance(event, mrt.EquityTrade)
    assert event.symbol == "OBJ"
    (event,) = stream.roundtrip(lambda: stream.server.send_raw(json.dumps([trade(2, symbol="BIN")]).encode()))
    assert isinstance(event, mrt.EquityTrade)
    assert event.symbol == "BIN"


@pytest.mark.parametrize("payload", [b"", b" ", b"null", b"[]", b"{}", b"[[]]", b'"status"', b"[1, {}]"])
def test_degenerate_frames(stream: Stream, payload: bytes) -> None:
    events = stream.roundtrip(lambda: stream.server.send_raw(payload, text_frame_bytes=True))
    check_accounting(events, payload)


# ----------------------------------------------------------------------------- control replies


def test_acks_for_channels_never_requested_are_ignored(stream: Stream) -> None:
    client = stream.client
    frames = (
        [{"ev": "status", "status": "success", "message": "subscribed to: T.NEVER,Q.ASKED"}],
        [{"ev": "status", "status": "success", "message": "subscribed to: "}],
        [{"ev": "status", "status": "success", "message": "unsubscribed to: T.NOTHING"}],
    )
    for frame in frames:
        stream.roundtrip(lambda frame=frame: stream.server.send_raw(json.dumps(frame)))
    assert client.acked == frozenset({f"T.{SENTINEL}"})
    assert client.acked <= client.subscriptions
    assert client.stats().acked == 1


@pytest.mark.parametrize(
    "status",
    [
        {"ev": "status", "status": "success", "message": "something new happened"},
        {"ev": "status", "status": "success"},
        {"ev": "status", "status": "connected", "message": "again?"},
    ],
    ids=["unexpected-message", "no-message", "second-greeting"],
)
def test_benign_statuses_with_unexpected_content_are_survived(stream: Stream, status: dict[str, Any]) -> None:
    events = stream.roundtrip(lambda: stream.server.send_raw(json.dumps([status])))
    assert not [e for e in events if is_decode_error(e)]
    assert stream.client.acked == frozenset({f"T.{SENTINEL}"})


@pytest.mark.parametrize(
    ("status", "reported"),
    [
        ({"ev": "status", "status": "brand_new_status", "message": "hello"}, ("brand_new_status", "hello")),
        ({"ev": "status", "status": 5, "message": ["not", "text"]}, ("", "the server sent '' without a message")),
        ({"ev": "status"}, ("", "the server sent '' without a message")),
        ({"ev": "status", "status": "error", "message": "unsolicited error"}, ("error", "unsolicited error")),
    ],
    ids=["unknown", "wrong-types", "empty", "unsolicited-error"],
)
def test_unexpected_statuses_are_delivered_not_swallowed(
    stream: Stream, status: dict[str, Any], reported: tuple[str, str]
) -> None:
    events = stream.roundtrip(lambda: stream.server.send_raw(json.dumps([status])))
    from_server = [e for e in events if isinstance(e, mrt.StatusMessage) and e.from_server]
    assert [(e.status, e.message) for e in from_server] == [reported]


def test_status_objects_mixed_with_data_in_one_array(stream: Stream) -> None:
    ack = {"ev": "status", "status": "success", "message": f"subscribed to: T.{SENTINEL}"}
    odd = {"ev": "status", "status": "odd_one", "message": "between trades"}
    # Status first: the reader parses the frame, acts on the status, queues the data after it.
    events = stream.roundtrip(lambda: stream.server.send_raw(json.dumps([ack, trade(1, "MIX"), trade(2, "MIX")])))
    assert [e.sequence_number for e in events if isinstance(e, mrt.EquityTrade)] == [1, 2]
    events = stream.roundtrip(lambda: stream.server.send_raw(json.dumps([odd, trade(3, "MIX")])))
    assert [type(e).__name__ for e in events] == ["StatusMessage", "EquityTrade"]
    assert (events[0].status, events[0].from_server) == ("odd_one", True)
    # Status later in the array: decoded by the consumer, in place, never dropped.
    events = stream.roundtrip(lambda: stream.server.send_raw(json.dumps([trade(4, "MIX"), odd, trade(5, "MIX"), 7])))
    assert [type(e).__name__ for e in events] == ["EquityTrade", "StatusMessage", "EquityTrade", "StatusMessage"]
    assert (events[1].status, events[1].message) == ("odd_one", "between trades")
    assert is_decode_error(events[3])


@pytest.mark.allow_errors(r"^handler \S+\.on_trade raised \w+ on EquityTrade", logger="massive_rt.adapter")
def test_hostile_frames_through_an_adapter_never_stop_dispatching(stream: Stream) -> None:
    errors: list[tuple[BaseException, mrt.Event]] = []
    seen: list[int] = []
    done = threading.Event()
    last = 40

    def on_trade(event: mrt.EquityTrade) -> None:
        seen.append(event.price * event.size + 0.0)  # type: ignore[operator]
        if event.sequence_number == last:
            done.set()

    adapter = mrt.RealTimeDataAdapter(stream.client)
    adapter.on(mrt.EquityTrade, on_trade)
    adapter.on_error(lambda exc, event, _handler: errors.append((exc, event)))
    with adapter:
        assert adapter.running
        for seq in range(1, last + 1):
            if seq % 2:
                stream.server.send_raw(json.dumps([trade(seq, "ADP", p="abc", s=[1])]))
            else:
                stream.server.send_raw(b"\xff garbage", text_frame_bytes=True)
                stream.server.send_raw(json.dumps([trade(seq, "ADP")]))
        assert done.wait(10), "the dispatcher stopped before the last trade"
        stats = adapter.stats()
    assert stats.running
    assert not adapter.running
    assert len(seen) == last // 2
    assert stats.handler_errors == last // 2 == len(errors)
    assert all(isinstance(exc, TypeError) for exc, _ in errors)
    assert stream.client.stats().decode_errors == last // 2
    assert stream.client.stats().reconnects == 0


# ----------------------------------------------------------------------------- faults that end a session


def test_a_message_over_max_message_size_reconnects_with_a_clear_reason() -> None:
    with MockMassiveServer(api_keys={KEY}) as server:
        client = mrt.MassiveWebSocketClient(
            api_key=KEY, url=server.url(), subscriptions=[f"T.{SENTINEL}"], reconnect=FAST,
            max_message_size=64 * 1024,
        )  # fmt: skip
        with client:
            stream = Stream(server, client)
            server.send_raw(json.dumps([trade(1, i="x" * 100_000)]))
            states: list[mrt.StatusMessage] = []
            for event in client.iter_events(timeout=10):
                if isinstance(event, mrt.StatusMessage) and event.status == "state":
                    states.append(event)
                    if event.state is mrt.ConnectionState.STREAMING:
                        break
            assert [s.state for s in states][:1] == [mrt.ConnectionState.BACKOFF]
            assert "max_message_size=65536" in states[0].message
            stats = client.stats()
            assert stats.reconnects == 1
            assert stats.last_error is not None
            assert "message of" in stats.last_error
            assert "exceeds max_message_size=65536" in stats.last_error
            assert stream.roundtrip(lambda: None) == []
        assert len(server.connections) == 2


def test_a_server_that_never_answers_auth_is_retried_after_connect_timeout() -> None:
    def silent(conn: RawConnection) -> None:
        conn.handshake()
        conn.send_status("connected", "Connected Successfully")
        conn.drain_until_closed()

    with RawServer(silent) as raw:
        client = mrt.MassiveWebSocketClient(api_key=KEY, url=raw.url(), connect_timeout=0.3, reconnect=FAST)
        with client:
            assert raw.wait_for(lambda: len(raw.connections) >= 3, 10), "the client did not retry"
            with pytest.raises(mrt.WaitTimeoutError) as info:
                client.wait_ready(0.05)
            assert client.state is not mrt.ConnectionState.FAILED
        assert "no auth reply within connect_timeout=0.3s" in str(info.value)
        assert "no auth reply within connect_timeout=0.3s" in (client.stats().last_error or "")
        first = raw.connections[0]
        assert raw.wait_for(lambda: bool(first.close_codes), 5)
        assert [action for action, _ in first.controls] == ["auth"]
        assert first.close_codes == [1000]
        assert not raw.errors


def test_a_connection_reset_right_after_the_upgrade_is_retried_not_fatal() -> None:
    def flaky(conn: RawConnection) -> None:
        conn.handshake()
        if conn.index < 5:
            conn.reset()
        else:
            conn.serve_massive()

    with RawServer(flaky) as raw:
        client = mrt.MassiveWebSocketClient(api_key=KEY, url=raw.url(), subscriptions=["T.AAPL"], reconnect=FAST)
        with client:
            client.wait_ready(10)
            assert client.state is mrt.ConnectionState.STREAMING
            assert client.stats().reconnects >= 5
            assert client.acked == {"T.AAPL"}
        assert not raw.errors


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (encode_frame(b"[]", OP_TEXT, rsv=4), "reserved bits"),
        (encode_frame(b"[]", 0x3), "unknown opcode"),
        (encode_frame(b"x" * 126, OP_PING), "control frame"),
        (encode_frame(b"[]", OP_CONT), "continuation frame without a message"),
        (encode_frame(b"[", OP_TEXT, fin=False) + encode_frame(b"]", OP_BINARY), "new data frame before"),
        (encode_frame(b"\x03\xe8", OP_CLOSE, fin=False), "control frame"),
    ],
    ids=["rsv", "opcode-3", "long-ping", "orphan-continuation", "interleaved", "fragmented-close"],
)
def test_websocket_protocol_violations_close_with_1002_and_reconnect(frame: bytes, reason: str) -> None:
    def violating(conn: RawConnection) -> None:
        conn.handshake()
        if conn.index == 0:
            conn.send_status("connected", "Connected Successfully")
            conn.recv()
            conn.send_status("auth_success", "authenticated")
            conn.send_raw(encode_frame(json.dumps([trade(1, "OK")]).encode()) + frame)
            conn.drain_until_closed()
        else:
            conn.serve_massive()

    with RawServer(violating) as raw:
        client = mrt.MassiveWebSocketClient(api_key=KEY, url=raw.url(), reconnect=FAST)
        with client:
            first = next(e for e in client.iter_events(timeout=10) if isinstance(e, mrt.EquityTrade))
            assert first.symbol == "OK"
            assert raw.wait_for(lambda: len(raw.connections) >= 2, 10)
            client.wait_ready(10)
            last_error = client.stats().last_error or ""
        assert raw.wait_for(lambda: bool(raw.connections[0].close_codes), 5)
        assert raw.connections[0].close_codes == [1002]
        assert "WebSocket protocol error" in last_error
        assert reason in last_error
        assert not raw.errors


def test_a_fragmented_message_is_reassembled() -> None:
    text = json.dumps([trade(1, "FRAG"), trade(2, "FRAG")]).encode()

    def fragmenting(conn: RawConnection) -> None:
        conn.handshake()
        conn.send_status("connected", "Connected Successfully")
        conn.recv()
        conn.send_status("auth_success", "authenticated")
        conn.send_raw(encode_frame(text[:10], OP_TEXT, fin=False) + encode_frame(b"", OP_PING)
                      + encode_frame(text[10:30], OP_CONT, fin=False) + encode_frame(text[30:], OP_CONT))  # fmt: skip
        conn.drain_until_closed()

    with RawServer(fragmenting) as raw:
        client = mrt.MassiveWebSocketClient(api_key=KEY, url=raw.url(), reconnect=FAST)
        with client:
            trades: list[mrt.EquityTrade] = []
            for event in client.iter_events(timeout=10):
                if isinstance(event, mrt.EquityTrade):
                    trades.append(event)
                    if len(trades) == 2:
                        break
            assert raw.wait_for(lambda: any(op == 0xA for op, _ in raw.connections[0].messages), 5)
        assert [t.sequence_number for t in trades] == [1, 2]
        assert not raw.errors


@fuzz_settings()
@given(st.binary(min_size=1, max_size=64))
def test_random_bytes_after_the_upgrade_never_crash_the_reader(garbage: bytes) -> None:
    # Not frames at all: the client must end the session (protocol error, oversize, EOF) or
    # keep waiting, and in every case stop cleanly; never crash, never fail for good.
    def noisy(conn: RawConnection) -> None:
        conn.handshake()
        conn.send_raw(garbage)
        conn.drain_until_closed(timeout=5)

    with RawServer(noisy) as raw:
        client = mrt.MassiveWebSocketClient(api_key=KEY, url=raw.url(), reconnect=FAST, connect_timeout=0.1)
        with client:
            assert raw.wait_for(lambda: len(raw.connections) >= 2, 5), "the session never ended"
        assert client.state is mrt.ConnectionState.STOPPED
        assert client.error is None
        assert not raw.errors
