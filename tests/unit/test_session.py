"""The sans-I/O session, with no socket, no thread and a fake clock: every status path, every
timer, ack and refusal attribution, the connection limit and the gap between sessions."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pytest

import massive_rt as mrt
from massive_rt._session import ACK_TIMEOUT, Outcome, Session
from massive_rt.config import ClientConfig
from massive_rt.enums import ConnectionState
from massive_rt.eventqueue import KIND_DATA, KIND_FRAMES, KIND_OBJECTS


def frame(*objects: dict[str, Any]) -> bytes:
    return json.dumps(list(objects)).encode()


def status(name: str, message: str = "") -> dict[str, Any]:
    return {"ev": "status", "status": name, "message": message}


def ack(*channels: str) -> bytes:
    return frame(*(status("success", f"subscribed to: {c}") for c in channels))


class Harness:
    """A session wired to lists and a clock the test moves."""

    def __init__(self, desired: Iterable[str] = ("T.AAPL", "T.MSFT"), **config: Any) -> None:
        config.setdefault("ping_interval", None)
        self.config = ClientConfig(api_key="secret-key", **config)
        self.now = 1000.0
        self.wall = 1_700_000_000_000_000_000
        self.events: list[mrt.Event] = []
        self.states: list[tuple[ConnectionState, str, Any]] = []
        self.items: list[list[Any]] = []
        self.stopping = False
        self.desired = list(desired)
        self.acked: set[str] = set()
        self.session = Session(
            self.config, "c1", emit=self.events.append, set_state=lambda *a: self.states.append(a),
            put=lambda item, _give_up: self.items.append(item), stopping=lambda: self.stopping,
            desired=lambda: list(self.desired), update_acked=self.update_acked, clock=lambda: self.now,
            wall_ns=lambda: self.wall,
        )  # fmt: skip

    def update_acked(self, added: Iterable[str], removed: Iterable[str], clear: bool) -> None:
        if clear:
            self.acked.clear()
        self.acked.update(added)
        self.acked.difference_update(removed)

    def open(self) -> str:
        self.session.reset()
        return self.session.begin(self.now)

    def feed(self, payload: bytes) -> Outcome | None:
        return self.session.on_control_frame(payload, self.wall)

    def authenticate(self) -> list[str]:
        self.open()
        assert self.feed(frame(status("auth_success", "authenticated"))) is None
        return self.session.take_frames()

    def streaming(self) -> None:
        frames = self.authenticate()
        assert frames
        self.feed(ack(*self.desired))
        assert self.state is ConnectionState.STREAMING

    @property
    def state(self) -> ConnectionState:
        return self.states[-1][0]

    def statuses(self, name: str) -> list[mrt.StatusMessage]:
        return [e for e in self.events if isinstance(e, mrt.StatusMessage) and e.status == name]


# ----------------------------------------------------------------------------- auth


def test_begin_returns_the_auth_frame_and_waits_for_the_reply() -> None:
    h = Harness()
    assert json.loads(h.open()) == {"action": "auth", "params": "secret-key"}
    assert h.state is ConnectionState.AUTHENTICATING
    assert not h.session.authenticated
    assert h.session.sync_subscriptions() == []  # nothing goes out before auth


def test_auth_success_sends_the_subscriptions_and_acks_make_it_stream() -> None:
    h = Harness()
    frames = h.authenticate()
    assert [json.loads(f) for f in frames] == [{"action": "subscribe", "params": "T.AAPL,T.MSFT"}]
    assert h.state is ConnectionState.SUBSCRIBING
    assert h.session.take_frames() == []  # taken once
    h.feed(ack("T.AAPL"))
    assert h.acked == {"T.AAPL"}
    assert h.state is ConnectionState.SUBSCRIBING
    h.feed(ack("T.MSFT"))
    assert h.acked == {"T.AAPL", "T.MSFT"}
    assert h.states[-1][:2] == (ConnectionState.STREAMING, "subscriptions acknowledged")


def test_auth_success_without_subscriptions_streams_at_once() -> None:
    h = Harness(desired=())
    assert h.authenticate() == []
    assert h.states[-1][:2] == (ConnectionState.STREAMING, "authenticated; no subscriptions pending")


def test_the_older_auth_reply_spelling_is_understood() -> None:
    h = Harness(desired=())
    h.open()
    h.feed(frame(status("success", "authenticated")))
    assert h.session.authenticated


def test_auth_failed_is_fatal_and_reported() -> None:
    h = Harness()
    h.open()
    outcome = h.feed(frame(status("auth_failed", "authentication failed")))
    assert outcome is not None
    assert outcome.fatal
    assert isinstance(outcome.error, mrt.AuthenticationError)
    [reported] = h.statuses("auth_failed")
    assert reported.from_server
    assert reported.error is outcome.error


def test_no_auth_reply_in_time_ends_the_session() -> None:
    h = Harness(connect_timeout=10)
    h.open()
    h.now += 9.9
    assert h.session.tick(h.now, 0, True).outcome is None
    h.now += 0.1
    outcome = h.session.tick(h.now, 0, True).outcome
    assert outcome is not None
    assert not outcome.fatal
    assert outcome.reason == "no auth reply within connect_timeout=10s"


def test_frames_before_auth_are_ignored() -> None:
    h = Harness()
    h.open()
    assert h.feed(frame(status("connected", "Connected Successfully"))) is None
    assert h.events == []
    assert h.feed(b"not json") is None
    assert h.feed(frame({"ev": "T", "sym": "AAPL"})) is None
    assert h.items == []


# ----------------------------------------------------------------------------- data and statuses


def test_data_makes_the_session_stream_and_is_queued_as_it_came() -> None:
    h = Harness()
    h.authenticate()
    h.session.recv_mono = h.now
    h.session.on_data(b'[{"ev":"T"}]', 42)
    assert h.items == [[KIND_DATA, b'[{"ev":"T"}]', 42, -1]]
    assert h.states[-1][:2] == (ConnectionState.STREAMING, "data arriving")
    assert h.session.last_data_ns == 42


def test_a_read_s_frames_are_queued_as_one_item_and_make_the_session_stream() -> None:
    h = Harness()
    h.authenticate()
    h.session.recv_mono = h.now
    h.session.on_data_frames([b"[1]", b"[2]"], 43)
    assert h.items == [[KIND_FRAMES, [b"[1]", b"[2]"], 43, -1]]
    assert h.states[-1][:2] == (ConnectionState.STREAMING, "data arriving")
    assert h.session.last_data_ns == 43


def test_frames_the_relief_reader_read_go_to_the_given_put_never_the_session_s_sink() -> None:
    # The reader may be inside the session's sink (an inline callback): the relief reader's frames
    # go straight to the queue's put with the stop check it was given.
    h = Harness()
    h.session.continue_gap(40)
    h.authenticate()
    h.session.recv_mono = h.now
    assert not h.session.delivered_data
    queued: list[tuple[list[Any], bool]] = []

    def stop_check() -> bool:
        return True

    def put(item: list[Any], stopping: Any) -> None:
        queued.append((item, stopping is stop_check))

    h.session.on_relief_frames([b"[1]"], 50, put, stop_check)
    h.session.on_relief_frames([b"[2]", b"[3]"], 51, put, stop_check)
    assert queued == [([KIND_DATA, b"[1]", 50, -1], True), ([KIND_FRAMES, [b"[2]", b"[3]"], 51, -1], True)]
    assert h.items == []  # not the session's own sink
    [gap] = h.statuses("gap")  # the first data closes the gap, as any data does
    assert (gap.gap_start_ns, gap.gap_end_ns) == (40, 50)
    assert h.states[-1][:2] == (ConnectionState.STREAMING, "data arriving")
    assert h.session.last_data_ns == 51
    assert h.session.delivered_data  # it counts for reset_on_data like any data
    h.session.on_relief_frames([b"[4]"], 52, put, stop_check)
    assert len(h.statuses("gap")) == 1


def test_statuses_and_data_in_one_frame_are_split() -> None:
    h = Harness()
    h.authenticate()
    payload = frame(status("success", "subscribed to: T.AAPL"), {"ev": "T", "sym": "AAPL"})
    assert h.feed(payload) is None
    assert h.acked == {"T.AAPL"}
    # Sized as the bytes of the frame they came in (a connection's queue bounds bytes).
    assert h.items == [[KIND_OBJECTS, [{"ev": "T", "sym": "AAPL"}], h.wall, len(payload)]]


def test_in_raw_mode_a_split_frame_goes_on_as_received() -> None:
    h = Harness(raw=True)
    h.authenticate()
    payload = frame(status("success", "subscribed to: T.AAPL"), {"ev": "T", "sym": "AAPL"})
    assert h.feed(payload) is None
    assert h.acked == {"T.AAPL"}  # the status was acted on ...
    assert h.items == [[KIND_DATA, payload, h.wall, -1]]  # ... and the frame is delivered whole (the queue sizes it)


def test_an_undecodable_frame_after_auth_goes_to_the_consumer_to_report() -> None:
    h = Harness()
    h.authenticate()
    h.feed(b"{broken")
    assert h.items[0][0] == KIND_DATA


def test_other_server_statuses_are_delivered_and_a_bare_object_is_a_frame() -> None:
    h = Harness()
    h.streaming()
    h.feed(json.dumps(status("notice", "hello")).encode())
    h.feed(frame({"ev": "status", "status": 5}))
    notice, odd = h.statuses("notice"), h.statuses("")
    assert notice[0].message == "hello"
    assert odd[0].message == "the server sent '' without a message"


@pytest.mark.parametrize("name", ["slow_consumer", "force_disconnect", "auth_timeout"])
def test_a_closing_status_names_the_reason_of_the_drop_that_follows(name: str) -> None:
    h = Harness()
    h.streaming()
    h.feed(frame(status(name, "bye")))
    outcome = h.session.closed_without_frame()
    assert outcome.reason == f"server sent {name}: bye"
    assert h.statuses(name)[0].from_server


def test_a_status_found_among_data_acts_without_being_delivered_twice() -> None:
    h = Harness()
    h.authenticate()
    assert h.session.on_status(status("success", "subscribed to: T.AAPL"), 1, delivered=True) is None
    assert h.acked == {"T.AAPL"}
    h.session.on_status(status("notice", "x"), 1, delivered=True)
    assert h.statuses("notice") == []


# ----------------------------------------------------------------------------- acks and refusals


def test_unnamed_refusals_are_charged_one_channel_each_to_the_channels_left_without_ack() -> None:
    h = Harness(desired=("NOI.A", "T.AAPL", "NOI.B", "T.MSFT"))
    h.authenticate()
    h.feed(frame(status("error", "not authorized"), status("error", "not authorized")))
    assert h.statuses("subscription_error") == []  # not yet: 4 channels wait, 2 refusals
    h.feed(ack("T.AAPL", "T.MSFT"))
    [refused] = h.statuses("subscription_error")
    assert refused.channels == ("NOI.A", "NOI.B")
    assert isinstance(refused.error, mrt.SubscriptionError)
    assert h.state is ConnectionState.STREAMING


def test_a_refusal_naming_a_waiting_channel_refuses_that_one() -> None:
    h = Harness(desired=("NOI.A", "NOI.B", "T.AAPL"))
    h.authenticate()
    h.feed(frame(status("error", "not authorized: NOI.B")))
    [refused] = h.statuses("subscription_error")
    assert refused.channels == ("NOI.B",)


def test_a_slow_ack_is_unconfirmed_after_the_timeout_then_confirmed() -> None:
    h = Harness()
    h.authenticate()
    h.feed(ack("T.AAPL"))
    h.now += ACK_TIMEOUT - 0.01
    h.session.tick(h.now, 0, True)
    assert h.statuses("subscription_unconfirmed") == []
    h.now += 0.01
    h.session.tick(h.now, 0, True)
    [unconfirmed] = h.statuses("subscription_unconfirmed")
    assert unconfirmed.channels == ("T.MSFT",)
    assert h.statuses("subscription_error") == []
    assert h.state is ConnectionState.STREAMING
    h.feed(ack("T.MSFT"))
    assert h.statuses("subscription_confirmed")[0].channels == ("T.MSFT",)
    assert h.acked == {"T.AAPL", "T.MSFT"}


def test_unconfirmed_channels_with_stray_refusals_say_so() -> None:
    h = Harness(desired=("T.AAPL", "T.MSFT", "T.NVDA"))
    h.authenticate()
    h.feed(frame(status("error", "not authorized")))
    h.now += ACK_TIMEOUT
    h.session.tick(h.now, 0, True)
    [unconfirmed] = h.statuses("subscription_unconfirmed")
    assert "1 refusal(s) naming no channel" in unconfirmed.message


def test_refusals_nothing_waits_for_are_delivered_as_server_errors() -> None:
    h = Harness(desired=("T.AAPL",))
    h.streaming()
    h.feed(frame(status("error", "something else")))
    assert h.statuses("error")[0].message == "something else"


def test_an_ack_for_a_channel_never_asked_for_is_ignored() -> None:
    h = Harness(desired=("T.AAPL",))
    h.authenticate()
    h.feed(ack("T.AAPL", "T.EVIL"))
    assert h.acked == {"T.AAPL"}
    h.feed(frame(status("success", "something odd")))
    assert h.acked == {"T.AAPL"}


def test_unsubscribing_sends_the_frame_and_settles_what_waited() -> None:
    h = Harness()
    h.authenticate()
    h.feed(ack("T.AAPL"))
    h.desired = ["T.AAPL"]
    frames = h.session.sync_subscriptions()
    assert [json.loads(f) for f in frames] == [{"action": "unsubscribe", "params": "T.MSFT"}]
    h.session.tick(h.now, 0, True)
    assert h.state is ConnectionState.STREAMING
    h.feed(frame(status("success", "unsubscribed to: T.AAPL")))
    assert h.acked == set()


# ----------------------------------------------------------------------------- pings, stale data


def test_pings_are_due_every_interval_and_a_missing_pong_ends_the_session() -> None:
    h = Harness(ping_interval=20, ping_timeout=10)
    h.streaming()
    h.now += 19.9
    assert not h.session.tick(h.now, 100, True).ping
    h.now += 0.1
    assert h.session.tick(h.now, 100, True).ping
    h.now += 10
    tick = h.session.tick(h.now, 100, True)  # nothing read since the ping
    assert tick.outcome is not None
    assert tick.outcome.reason == "no pong and no data within ping_timeout=10s"


def test_data_or_a_pong_keeps_the_session_alive() -> None:
    h = Harness(ping_interval=20, ping_timeout=10)
    h.streaming()
    h.now += 20
    assert h.session.tick(h.now, 100, True).ping
    h.now += 10
    assert h.session.tick(h.now, 5000, True).outcome is None  # bytes flowed: alive
    h.session.on_pong()
    h.now += 10
    assert h.session.tick(h.now, 5000, True).outcome is None


def test_no_data_for_stale_after_while_subscribed_ends_the_session() -> None:
    h = Harness(stale_after=30)
    h.streaming()
    h.now += 29
    assert h.session.tick(h.now, 0, True).outcome is None
    assert h.session.tick(h.now + 1, 0, False).outcome is None  # nothing subscribed: quiet is fine
    h.now += 1
    outcome = h.session.tick(h.now, 0, True).outcome
    assert outcome is not None
    assert outcome.reason == "no data for stale_after=30s while subscribed"


def test_the_next_timeout_is_the_nearest_timer() -> None:
    h = Harness(ping_interval=20, connect_timeout=5)
    h.open()
    assert h.session.next_timeout(h.now) == pytest.approx(1.0)  # the idle wake-up
    h.now += 4.5
    assert h.session.next_timeout(h.now) == pytest.approx(0.5)  # the auth deadline
    h.feed(frame(status("auth_success")))
    assert h.session.next_timeout(h.now) == pytest.approx(0.05)  # acks awaited
    assert h.session.next_timeout(h.now + 100) == 0.0


# ----------------------------------------------------------------------------- limit, close, gap


def test_max_connections_right_after_connect_is_a_refusal_and_final() -> None:
    h = Harness()
    h.authenticate()
    h.feed(frame(status("max_connections", "Maximum number of websocket connections exceeded.")))
    assert [e.status for e in h.events if isinstance(e, mrt.StatusMessage)][-2:] == ["max_connections", "limit_refused"]
    reply, outcome = h.session.on_close(b"\x03\xf0")  # 1008
    assert reply == 1008
    assert outcome.fatal
    assert isinstance(outcome.error, mrt.ConnectionLimitError)
    assert not outcome.error.evicted
    assert outcome.reason.startswith("server closed (1008): refused at connect")


def test_max_connections_after_streaming_past_reset_after_is_an_eviction_and_retried() -> None:
    h = Harness(reconnect=mrt.ReconnectPolicy(reset_after=30))
    h.streaming()
    h.now += 30
    h.feed(frame(status("max_connections", "")))
    [evicted] = h.statuses("evicted")
    assert evicted.message.startswith("evicted after streaming 30s")
    outcome = h.session.closed_without_frame()
    assert not outcome.fatal  # on_limit="auto"
    assert isinstance(outcome.error, mrt.ConnectionLimitError)
    assert outcome.error.evicted


@pytest.mark.parametrize(("code", "reply"), [(1000, 1000), (1001, 1001), (1005, None), (4000, 1000), (None, 1000)])
def test_the_close_reply_echoes_a_valid_code(code: int | None, reply: int | None) -> None:
    h = Harness()
    h.streaming()
    payload = b"" if code is None else code.to_bytes(2, "big") + b"going"
    got, outcome = h.session.on_close(payload)
    assert got == (reply if reply is not None else 1000)
    assert outcome.close_code == code
    assert not outcome.fatal


def test_a_stop_we_asked_for_is_not_a_failure() -> None:
    h = Harness()
    h.streaming()
    h.stopping = True
    assert h.session.lost("connection lost").stopped


def test_a_session_that_streamed_leaves_a_gap_closed_by_the_next_data() -> None:
    h = Harness()
    h.streaming()
    h.session.on_data(b"[]", 100)
    h.session.end()
    [disconnected] = h.statuses("disconnected")
    assert disconnected.gap_start_ns == 100
    assert h.acked == set()
    h.streaming()
    h.session.on_data(b"[]", 250)
    [gap] = h.statuses("gap")
    assert (gap.gap_start_ns, gap.gap_end_ns) == (100, 250)
    h.session.on_data(b"[]", 260)
    assert len(h.statuses("gap")) == 1


def test_stopping_leaves_no_gap_and_a_session_without_data_none() -> None:
    h = Harness()
    h.streaming()
    h.session.end()  # streamed but no data yet
    assert h.statuses("disconnected") == []
    h.streaming()
    h.session.on_data(b"[]", 1)
    h.stopping = True
    h.session.end()
    assert h.statuses("disconnected") == []


def test_a_replacement_continues_its_predecessors_gap() -> None:
    h = Harness()
    h.session.continue_gap(77)
    h.streaming()
    h.session.on_data(b"[]", 99)
    assert (h.statuses("gap")[0].gap_start_ns, h.statuses("gap")[0].gap_end_ns) == (77, 99)


def test_half_open_is_detected_ping_timeout_after_the_first_ping_since_the_last_byte() -> None:
    # Data flows while a ping goes unanswered, then stops (half-open): the watch restarts at the
    # first ping after the last byte, so detection is at most ping_interval + ping_timeout after
    # that byte (not twice ping_timeout, as when an old watch was extended by the data).
    h = Harness(ping_interval=5, ping_timeout=20)
    h.streaming()
    start = h.now
    received = 100
    detected = None
    for second in range(1, 80):
        h.now = start + second
        if second <= 11:
            received += 100  # the last byte arrives at second 11
        tick = h.session.tick(h.now, received, True)
        if tick.outcome is not None:
            detected = second
            break
    assert detected == 15 + 20  # the first ping after the last byte (second 15) + ping_timeout
    assert 20 < detected - 11 <= 5 + 20


def test_a_relay_s_structured_status_fields_become_typed_and_bad_ones_are_counted() -> None:
    h = Harness()
    h.authenticate()
    one_extra = {**status("gap", "resumed"), "gap_end_ns": 7}  # four keys: the extra one is read
    assert h.feed(frame(one_extra)) is None
    bad = {**status("disconnected", "lost"), "gap_start_ns": "x", "dropped": -1, "gap_end_ns": 9}
    assert h.feed(frame(bad)) is None
    assert h.feed(frame({**status("dropped", "d"), "dropped": "many"})) is None
    served = [e for e in h.events if e.from_server]
    assert [(e.status, e.gap_end_ns, e.gap_start_ns, e.dropped) for e in served] == [
        ("gap", 7, None, 0), ("disconnected", 9, None, 0), ("dropped", None, None, 0)]  # fmt: skip
    assert h.session.rejected_status_fields == 3  # counted, summed over statuses
    assert h.feed(frame(status("gap", "bare"))) is None
    assert h.session.rejected_status_fields == 3


def test_delivered_data_is_true_only_for_the_session_that_received_data() -> None:
    h = Harness()
    assert not h.session.delivered_data  # no session yet
    h.authenticate()
    assert not h.session.delivered_data  # open, nothing received
    assert h.feed(frame({"ev": "T", "sym": "AAPL"})) is None
    assert h.session.delivered_data
    h.session.reset()  # the next attempt, before its transport opens
    assert not h.session.delivered_data
    h.now += 1.0
    h.open()
    assert not h.session.delivered_data  # the data was the previous session's
