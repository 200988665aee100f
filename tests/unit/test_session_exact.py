"""The sans-I/O session's outputs compared whole: every status it emits (all fields, its error's
too), every state change, outcome and queued item, and the timers at their edges. The scenarios of
tests/unit/test_session.py check the behaviour; these pin what a user and the connection receive."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs
import pytest

import massive_rt as mrt
from massive_rt._session import ACK_TIMEOUT, Outcome, Session
from massive_rt.config import ClientConfig
from massive_rt.enums import ConnectionState
from massive_rt.eventqueue import KIND_DATA, KIND_OBJECTS
from tests.unit.test_session import Harness, ack, frame, status

AUTHENTICATING = (ConnectionState.AUTHENTICATING, "connected; waiting for the reply to auth", None)
SUBSCRIBING = (ConnectionState.SUBSCRIBING, "authenticated", None)
SERVER_LIMIT = "Maximum number of websocket connections exceeded."


def error_view(error: BaseException | None) -> tuple[Any, ...] | None:
    if error is None:
        return None
    return (
        type(error).__name__, getattr(error, "message", None), getattr(error, "connection", None),
        getattr(error, "status", None), tuple(getattr(error, "channels", ())), getattr(error, "evicted", None),
    )  # fmt: skip


def view(event: mrt.Event) -> dict[str, Any]:
    """Every field of a status, its error as a tuple of what identifies it."""
    fields = attrs.asdict(event, recurse=False)
    fields["error"] = error_view(fields.get("error"))
    return fields


def expected(**fields: Any) -> dict[str, Any]:
    base = view(mrt.StatusMessage(connection="c1"))
    base.update(fields)
    return base


def outcome_view(outcome: Outcome | None) -> tuple[Any, ...] | None:
    if outcome is None:
        return None
    return (outcome.reason, error_view(outcome.error), outcome.fatal, outcome.close_code, outcome.stopped)


class Recording(Harness):
    """A harness that also keeps the ``give_up`` callable each queued item came with."""

    def __init__(self, desired: Iterable[str] = ("T.AAPL", "T.MSFT"), **config: Any) -> None:
        super().__init__(desired, **config)
        self.give_ups: list[Any] = []

        def put(item: list[Any], give_up: Any) -> None:
            self.items.append(item)
            self.give_ups.append(give_up)

        self.session.set_sink(put)

    def views(self, name: str) -> list[dict[str, Any]]:
        return [view(e) for e in self.statuses(name)]


# ----------------------------------------------------------------------------- a new session


def test_a_new_session_is_not_authenticated_nor_streaming_and_sends_nothing() -> None:
    h = Recording()
    session = h.session
    assert (session.authenticated, session.streaming) == (False, False)
    assert (session.streaming_started, session.limit_error, session.server_reason) == (None, None, None)
    assert (session.last_data_ns, session.gap_start_ns) == (None, None)
    assert session.sync_subscriptions() == []
    assert session.take_frames() == []


def test_begin_states_it_waits_for_the_auth_reply_and_reset_forgets_the_last_session() -> None:
    h = Recording()
    h.streaming()
    h.feed(frame(status("slow_consumer", "too slow")))
    assert h.acked == {"T.AAPL", "T.MSFT"}

    h.session.reset()

    assert (h.session.authenticated, h.session.streaming, h.session.server_reason) == (False, False, None)
    assert h.session.streaming_started is None
    assert h.acked == set()
    h.session.begin(h.now)
    assert h.states[-1] == AUTHENTICATING


def test_without_a_key_the_auth_frame_carries_an_empty_key() -> None:
    h = Recording()
    h.session._config = ClientConfig(api_key=None, ping_interval=None)  # type: ignore[attr-defined]
    assert h.open() == '{"action":"auth","params":""}'


def test_set_sink_sends_later_data_to_the_new_sink() -> None:
    h = Recording()
    h.streaming()
    moved: list[list[Any]] = []
    h.session.set_sink(lambda item, _give_up: moved.append(item))
    h.session.on_data(b'[{"ev":"T"}]', 5)
    assert moved == [[KIND_DATA, b'[{"ev":"T"}]', 5, -1]]
    assert h.items == []


# ----------------------------------------------------------------------------- auth


def test_auth_success_and_the_acks_step_through_the_states_once_each() -> None:
    h = Recording()
    h.authenticate()
    h.feed(ack("T.AAPL", "T.MSFT"))
    h.session.on_data(b"[]", 10)
    h.session.on_data(b"[]", 11)
    assert h.states == [AUTHENTICATING, SUBSCRIBING, (ConnectionState.STREAMING, "subscriptions acknowledged", None)]
    assert h.session.streaming is True


def test_auth_failed_is_reported_with_the_servers_words() -> None:
    h = Recording()
    h.open()
    outcome = h.feed(frame(status("auth_failed", "bad key")))
    error = ("AuthenticationError", "bad key", "c1", "auth_failed", (), None)
    assert outcome_view(outcome) == ("authentication failed: bad key", error, True, None, False)
    assert h.views("auth_failed") == [
        expected(status="auth_failed", message="bad key", error=error, from_server=True, received_at_ns=h.wall)
    ]


def test_auth_failed_without_a_message_still_says_what_happened() -> None:
    h = Recording()
    h.open()
    outcome = h.feed(frame(status("auth_failed")))
    error = ("AuthenticationError", "authentication failed", "c1", "auth_failed", (), None)
    assert outcome_view(outcome) == ("authentication failed: ", error, True, None, False)
    assert h.views("auth_failed") == [
        expected(status="auth_failed", message="the server sent 'auth_failed' without a message", error=error,
                 from_server=True, received_at_ns=h.wall)
    ]  # fmt: skip


# ----------------------------------------------------------------------------- server statuses


@pytest.mark.parametrize("message", [5, None, ["x"]], ids=repr)
def test_a_status_whose_message_is_not_a_string_is_delivered_without_it(message: object) -> None:
    h = Recording()
    h.streaming()
    h.feed(frame({"ev": "status", "status": "slow_consumer", "message": message}))
    assert h.views("slow_consumer") == [
        expected(status="slow_consumer", message="the server sent 'slow_consumer' without a message",
                 from_server=True, received_at_ns=h.wall)
    ]  # fmt: skip
    assert h.session.server_reason == "server sent slow_consumer: "


def test_an_other_status_while_acks_are_awaited_is_no_refusal() -> None:
    h = Recording()
    h.authenticate()
    h.feed(frame(status("force_disconnect", "maintenance")))
    assert h.statuses("subscription_error") == []
    assert h.views("force_disconnect") == [
        expected(status="force_disconnect", message="maintenance", from_server=True, received_at_ns=h.wall)
    ]
    h.feed(ack("T.AAPL", "T.MSFT"))
    assert h.state is ConnectionState.STREAMING


def test_an_error_without_a_message_refuses_a_waiting_channel_as_error() -> None:
    h = Recording(desired=("T.AAPL",))
    h.authenticate()
    h.feed(frame(status("error")))
    error = ("SubscriptionError", "server refused 1 channel(s): error", "c1", "error", ("T.AAPL",), None)
    assert h.views("subscription_error") == [
        expected(status="subscription_error", message="server refused 1 channel(s): error", error=error,
                 channels=("T.AAPL",), received_at_ns=h.wall)
    ]  # fmt: skip


def test_max_connections_at_connect_is_reported_twice_whole() -> None:
    h = Recording()
    h.authenticate()
    h.feed(frame(status("max_connections", SERVER_LIMIT)))
    text = f"refused at connect: the account's connection limit is reached (max_connections: {SERVER_LIMIT})"
    error = ("ConnectionLimitError", text, "c1", "max_connections", (), False)
    assert h.views("max_connections") == [
        expected(status="max_connections", message=SERVER_LIMIT, error=error, from_server=True, received_at_ns=h.wall)
    ]
    assert h.views("limit_refused") == [
        expected(status="limit_refused", message=text, error=error, received_at_ns=h.wall)
    ]


def test_an_eviction_without_a_message_names_the_limit_itself() -> None:
    h = Recording(reconnect=mrt.ReconnectPolicy(reset_after=30))
    h.streaming()
    h.now += 45
    h.feed(frame(status("max_connections", "  ")))
    text = ("evicted after streaming 45s: another connection on this key took the slot "
            "(max_connections: maximum number of connections exceeded)")  # fmt: skip
    error = ("ConnectionLimitError", text, "c1", "max_connections", (), True)
    assert h.views("evicted") == [expected(status="evicted", message=text, error=error, received_at_ns=h.wall)]


def test_with_reset_after_zero_a_refusal_before_streaming_is_still_no_eviction() -> None:
    h = Recording(reconnect=mrt.ReconnectPolicy(reset_after=0))
    h.authenticate()
    h.feed(frame(status("max_connections", SERVER_LIMIT)))
    assert len(h.statuses("limit_refused")) == 1
    assert h.statuses("evicted") == []


# ----------------------------------------------------------------------------- close and loss


@pytest.mark.parametrize(
    ("code", "reply"), [(1000, 1000), (1008, 1008), (2999, 2999), (3000, 1000), (4001, 1000), (1005, 1000),
                        (1006, 1000), (1007, 1007)],
)  # fmt: skip
def test_the_close_reply(code: int, reply: int) -> None:
    h = Recording()
    h.streaming()
    got, outcome = h.session.on_close(code.to_bytes(2, "big") + b"bye")
    assert got == reply
    assert outcome_view(outcome) == (f"server closed the connection with code {code} 'bye'", None, False, code, False)


def test_a_close_after_a_closing_status_gives_its_reason() -> None:
    h = Recording()
    h.streaming()
    h.feed(frame(status("slow_consumer", "too slow")))
    _, outcome = h.session.on_close(b"\x03\xe8")
    assert outcome.reason == "server closed the connection with code 1000 '' (server sent slow_consumer: too slow)"


def test_a_close_after_an_eviction_is_retried_under_auto() -> None:
    h = Recording(reconnect=mrt.ReconnectPolicy(reset_after=1))
    h.streaming()
    h.now += 2
    h.feed(frame(status("max_connections", SERVER_LIMIT)))
    reply, outcome = h.session.on_close(b"\x03\xf0")
    text = f"evicted after streaming 2s: another connection on this key took the slot (max_connections: {SERVER_LIMIT})"
    error = ("ConnectionLimitError", text, "c1", "max_connections", (), True)
    assert reply == 1008
    assert outcome_view(outcome) == (f"server closed (1008): {text}", error, False, 1008, False)


def test_lost_after_a_limit_refusal_keeps_the_limit_and_the_code() -> None:
    h = Recording()
    h.authenticate()
    h.feed(frame(status("max_connections", SERVER_LIMIT)))
    outcome = h.session.lost("connection lost: reset", 1006)
    text = f"refused at connect: the account's connection limit is reached (max_connections: {SERVER_LIMIT})"
    error = ("ConnectionLimitError", text, "c1", "max_connections", (), False)
    assert outcome_view(outcome) == (f"connection limit: {text}", error, True, 1006, False)


def test_lost_after_an_eviction_under_auto_is_not_fatal() -> None:
    h = Recording(reconnect=mrt.ReconnectPolicy(reset_after=1))
    h.streaming()
    h.now += 2
    h.feed(frame(status("max_connections", SERVER_LIMIT)))
    outcome = h.session.closed_without_frame()
    assert outcome.fatal is False
    assert outcome.close_code is None


def test_the_reasons_of_a_stop_and_of_a_bare_tcp_close() -> None:
    h = Recording()
    h.streaming()
    assert outcome_view(h.session.closed_without_frame()) == (
        "server closed the TCP connection without a close frame", None, False, None, False
    )  # fmt: skip
    assert outcome_view(h.session.lost("anything", 1000)) == ("anything", None, False, 1000, False)
    h.stopping = True
    assert outcome_view(h.session.lost("anything", 1000)) == ("stopped", None, False, None, True)


# ----------------------------------------------------------------------------- data, gap, disconnect


def test_data_items_carry_the_give_up_probe() -> None:
    h = Recording()
    h.streaming()
    h.session.on_data(b"[1]", 7)
    h.feed(frame({"ev": "T", "sym": "A"}, status("success", "subscribed to: T.AAPL")))
    assert [item[0] for item in h.items] == [KIND_DATA, KIND_OBJECTS]
    assert all(give_up is not None and give_up() is False for give_up in h.give_ups)
    h.stopping = True
    assert all(give_up() is True for give_up in h.give_ups)


def test_an_undecodable_frame_after_auth_is_queued_as_it_came() -> None:
    h = Recording()
    h.streaming()
    h.feed(b"[not json")
    assert h.items == [[KIND_DATA, b"[not json", h.wall, -1]]


def test_objects_first_make_the_session_stream_and_close_a_gap() -> None:
    h = Recording(desired=())
    h.session.continue_gap(50)
    h.open()
    h.feed(frame(status("auth_success")))  # no subscriptions: streaming at once
    h.states.clear()
    h.session.end()
    h.session.reset()
    h.session.begin(h.now)
    h.session.authenticated = True  # authenticated, not streaming yet: the first objects start it
    payload = frame({"ev": "T", "sym": "A"})
    h.feed(payload)
    assert h.states[-1] == (ConnectionState.STREAMING, "data arriving", None)
    assert h.views("gap") == [
        expected(status="gap", message="data resumed after a disconnect; backfill between gap_start_ns and gap_end_ns",
                 gap_start_ns=50, gap_end_ns=h.wall, received_at_ns=h.wall)
    ]  # fmt: skip
    assert h.items == [[KIND_OBJECTS, [{"ev": "T", "sym": "A"}], h.wall, len(payload)]]


def test_objects_first_make_a_subscribed_session_stream() -> None:
    h = Recording()
    h.authenticate()  # acks still awaited: not streaming
    h.feed(frame({"ev": "T", "sym": "AAPL"}))
    assert h.states[-1] == (ConnectionState.STREAMING, "data arriving", None)
    assert h.statuses("gap") == []


def test_objects_after_a_reconnect_that_already_streams_close_the_gap() -> None:
    h = Recording()
    h.session.continue_gap(40)
    h.streaming()  # acked before any data: streaming, the gap still open
    h.feed(frame({"ev": "T", "sym": "AAPL"}))
    assert [(e["gap_start_ns"], e["gap_end_ns"]) for e in h.views("gap")] == [(40, h.wall)]
    h.feed(frame({"ev": "T", "sym": "AAPL"}))
    assert len(h.statuses("gap")) == 1


def test_a_session_that_received_objects_reports_the_disconnect_whole() -> None:
    h = Recording()
    h.streaming()
    h.feed(frame({"ev": "T", "sym": "A"}))
    h.session.end()
    assert h.views("disconnected") == [
        expected(status="disconnected", message="connection lost; events may be missing until the gap status that "
                 "follows the reconnect", gap_start_ns=h.wall, received_at_ns=h.wall)
    ]  # fmt: skip
    assert h.session.authenticated is False
    assert h.acked == set()


@pytest.mark.parametrize("path", ["bytes", "objects"])
def test_data_postpones_the_stale_deadline(path: str) -> None:
    h = Recording(stale_after=30)
    h.streaming()  # streaming since 1000
    h.now = h.session.recv_mono = 1020.0
    if path == "bytes":
        h.session.on_data(b"[]", 1)
    else:
        h.feed(frame({"ev": "T"}))
    assert h.session.next_timeout(1040.0) == pytest.approx(1.0)  # the idle wake-up: stale at 1050, not 1030
    assert h.session.next_timeout(1049.5) == pytest.approx(0.5)
    assert h.session.tick(1045.0, 0, True).outcome is None
    assert h.session.tick(1050.0, 0, True).outcome is not None


# ----------------------------------------------------------------------------- acks and refusals


def test_one_ack_may_name_several_channels() -> None:
    h = Recording()
    h.authenticate()
    h.feed(frame(status("success", "subscribed to: T.AAPL,T.MSFT")))
    assert h.acked == {"T.AAPL", "T.MSFT"}
    assert h.state is ConnectionState.STREAMING


def test_an_option_channel_with_a_colon_is_acked() -> None:
    channel = "T.O:SPY251219C00650000"
    h = Recording(desired=(channel,), market="options")
    h.authenticate()
    h.feed(ack(channel))
    assert h.acked == {channel}
    assert h.state is ConnectionState.STREAMING


def test_an_unsubscribe_ack_removes_only_its_channels() -> None:
    h = Recording()
    h.streaming()
    h.desired = ["T.AAPL"]
    h.session.sync_subscriptions()
    assert h.acked == {"T.AAPL"}
    h.feed(frame(status("success", "unsubscribed to: T.MSFT")))
    assert h.acked == {"T.AAPL"}


def test_an_unsubscribe_ack_answers_no_subscribe_request() -> None:
    h = Recording()
    h.authenticate()
    h.feed(frame(status("success", "unsubscribed to: T.AAPL")))
    h.feed(ack("T.MSFT"))
    assert h.state is ConnectionState.SUBSCRIBING  # T.AAPL's ack is still awaited
    h.feed(ack("T.AAPL"))
    assert h.state is ConnectionState.STREAMING


def test_a_late_ack_is_reported_whole() -> None:
    h = Recording(desired=("T.AAPL",))
    h.authenticate()
    h.now += ACK_TIMEOUT
    h.session.tick(h.now, 0, True)
    assert h.views("subscription_unconfirmed") == [
        expected(status="subscription_unconfirmed", channels=("T.AAPL",), message="no ack within 5s for 1 channel(s)",
                 received_at_ns=h.wall)
    ]  # fmt: skip
    h.feed(ack("T.AAPL"))
    assert h.views("subscription_confirmed") == [
        expected(status="subscription_confirmed", channels=("T.AAPL",),
                 message="late ack for 1 channel(s) reported unconfirmed", received_at_ns=h.wall)
    ]  # fmt: skip


@pytest.mark.parametrize("named", ["not authorized: T.MSFT.", "not authorized: 'T.MSFT'", 'refused "T.MSFT";'])
def test_a_refusal_naming_a_channel_in_punctuation_refuses_that_one(named: str) -> None:
    h = Recording()
    h.authenticate()
    h.feed(frame(status("error", named)))  # both channels wait: only the name tells which one
    error = ("SubscriptionError", f"server refused 1 channel(s): {named}", "c1", "error", ("T.MSFT",), None)
    assert h.views("subscription_error") == [
        expected(status="subscription_error", message=f"server refused 1 channel(s): {named}", error=error,
                 channels=("T.MSFT",), received_at_ns=h.wall)
    ]  # fmt: skip
    h.feed(ack("T.AAPL"))
    assert h.states[-1] == (ConnectionState.STREAMING, "subscriptions acknowledged", None)


def test_a_named_refusal_of_the_last_waiting_channel_settles_the_request() -> None:
    h = Recording()
    h.authenticate()
    h.feed(ack("T.AAPL"))
    h.feed(frame(status("error", "not authorized: T.MSFT")))
    assert h.states[-1] == (ConnectionState.STREAMING, "subscriptions acknowledged", None)
    assert not h.session.requests


def test_a_refusal_naming_a_crypto_pair_refuses_that_one() -> None:
    h = Recording(desired=("XT.BTC-USD", "XT.ETH-USD"), market="crypto")
    h.authenticate()
    h.feed(frame(status("error", "not authorized: XT.BTC-USD")))
    assert [e["channels"] for e in h.views("subscription_error")] == [("XT.BTC-USD",)]


def test_unnamed_refusals_give_the_first_reason() -> None:
    h = Recording()
    h.authenticate()
    h.feed(frame(status("error", "first"), status("error", "second")))
    [refusal] = h.views("subscription_error")
    assert refusal["message"] == "server refused 2 channel(s): first"
    assert refusal["channels"] == ("T.AAPL", "T.MSFT")


def test_a_refusal_every_channel_was_acked_despite_is_delivered_as_a_server_error() -> None:
    h = Recording()
    h.authenticate()
    h.feed(frame(status("error", "stray")))  # names no channel: held while two channels wait
    h.feed(frame(status("success", "subscribed to: T.AAPL,T.MSFT")))  # both acked at once: it was about neither
    assert h.statuses("subscription_error") == []
    assert h.views("error") == [expected(status="error", message="stray", from_server=True, received_at_ns=h.wall)]
    assert h.state is ConnectionState.STREAMING


def test_unconfirmed_channels_without_refusals_do_not_mention_any() -> None:
    h = Recording()
    h.authenticate()
    h.now += ACK_TIMEOUT
    h.session.tick(h.now, 0, True)
    [unconfirmed] = h.views("subscription_unconfirmed")
    assert unconfirmed["message"] == "no ack within 5s for 2 channel(s)"


def test_requests_are_settled_in_order_whatever_settles_them() -> None:
    h = Recording(desired=("T.AAPL",))
    h.authenticate()
    h.desired = ["T.AAPL", "T.MSFT"]
    h.session.sync_subscriptions()
    h.desired = ["T.AAPL", "T.MSFT", "T.NVDA"]
    h.session.sync_subscriptions()  # three requests: {AAPL}, {MSFT}, {NVDA}
    assert len(h.session.requests) == 3
    h.feed(ack("T.NVDA"))  # the last request is answered first
    h.feed(frame(status("error", "not authorized")))  # an unnamed refusal: charged to the oldest request
    assert h.state is ConnectionState.SUBSCRIBING
    assert [r["channels"] for r in h.views("subscription_error")] == [("T.AAPL",)]
    h.now += ACK_TIMEOUT
    h.session.tick(h.now, 0, True)  # MSFT times out, NVDA's request is already empty
    assert [r["channels"] for r in h.views("subscription_unconfirmed")] == [("T.MSFT",)]
    assert not h.session.requests
    assert h.states[-1] == (ConnectionState.STREAMING, "subscriptions acknowledged", None)


def test_a_refusal_settling_the_oldest_request_lets_an_answered_one_settle_too() -> None:
    h = Recording(desired=("T.AAPL",))
    h.authenticate()
    h.desired = ["T.AAPL", "T.MSFT"]
    h.session.sync_subscriptions()
    h.feed(ack("T.MSFT"))
    h.feed(frame(status("error", "no")))
    assert not h.session.requests
    assert h.state is ConnectionState.STREAMING


def test_an_ack_settling_the_oldest_request_lets_an_answered_one_settle_too() -> None:
    h = Recording(desired=("T.AAPL",))
    h.authenticate()
    h.desired = ["T.AAPL", "T.MSFT"]
    h.session.sync_subscriptions()
    h.feed(ack("T.MSFT"))
    h.feed(ack("T.AAPL"))
    assert not h.session.requests
    assert h.state is ConnectionState.STREAMING


def test_a_timeout_settling_the_oldest_request_lets_an_answered_one_settle_too() -> None:
    h = Recording(desired=("T.AAPL",))
    h.authenticate()
    h.desired = ["T.AAPL", "T.MSFT"]
    h.session.sync_subscriptions()
    h.feed(ack("T.MSFT"))
    h.now += ACK_TIMEOUT
    h.session.tick(h.now, 0, True)
    assert not h.session.requests
    assert h.state is ConnectionState.STREAMING


# ----------------------------------------------------------------------------- timers


def test_pings_recur_every_interval_from_the_last() -> None:
    h = Recording(ping_interval=20, ping_timeout=5)
    h.streaming()
    start = h.now
    assert h.session.tick(start + 20, 10, True).ping
    h.session.on_pong()
    assert not h.session.tick(start + 39.9, 10, True).ping
    assert h.session.tick(start + 40, 10, True).ping
    h.session.on_pong()
    assert h.session.tick(start + 60, 10, True).ping


def test_the_next_timeout_includes_the_pong_deadline() -> None:
    h = Recording(ping_interval=20, ping_timeout=0.5)
    h.streaming()
    assert h.session.tick(h.now + 20, 10, True).ping
    assert h.session.next_timeout(h.now + 20) == pytest.approx(0.5)


def test_the_next_timeout_ignores_stale_after_until_streaming_and_when_unset() -> None:
    h = Recording(stale_after=0.3)
    h.open()
    assert h.session.next_timeout(h.now) == pytest.approx(1.0)  # not streaming: no stale deadline yet
    h.feed(frame(status("auth_success")))
    h.feed(ack("T.AAPL", "T.MSFT"))
    assert h.session.next_timeout(h.now) == pytest.approx(0.3)
    quiet = Recording()
    quiet.streaming()
    assert quiet.session.next_timeout(quiet.now) == pytest.approx(1.0)


def test_flowing_data_pushes_the_pong_deadline_and_silence_after_it_ends_the_session() -> None:
    h = Recording(ping_interval=100, ping_timeout=10)
    h.streaming()
    start = h.now
    assert h.session.tick(start + 100, 500, True).ping  # pong due by 110
    assert h.session.tick(start + 110, 900, True).outcome is None  # bytes came: due by 120 now
    assert h.session.tick(start + 115, 900, True).outcome is None
    tick = h.session.tick(start + 120, 900, True)  # nothing since 110
    assert outcome_view(tick.outcome) == ("no pong and no data within ping_timeout=10s", None, False, None, False)
    assert tick.ping is False


def test_a_ping_due_as_the_session_ends_is_still_reported() -> None:
    h = Recording(ping_interval=10, ping_timeout=10)
    h.streaming()
    start = h.now
    assert h.session.tick(start + 10, 0, True).ping  # pong due by 20; the next ping too
    tick = h.session.tick(start + 20, 0, True)
    assert tick.ping is True
    assert tick.outcome is not None
    stale = Recording(ping_interval=30, stale_after=30)
    stale.streaming()
    tick = stale.session.tick(stale.now + 30, 0, True)
    assert (tick.ping, tick.outcome is not None) == (True, True)
    assert tick.outcome.reason == "no data for stale_after=30s while subscribed"  # type: ignore[union-attr]


def test_an_auth_timeout_tick_pings_nothing() -> None:
    h = Recording(connect_timeout=5)
    h.open()
    tick = h.session.tick(h.now + 5, 0, True)
    assert tick.ping is False
    assert outcome_view(tick.outcome) == ("no auth reply within connect_timeout=5s", None, False, None, False)


def test_sessions_are_independent_objects() -> None:
    one, two = Recording(), Recording()
    assert isinstance(one.session, Session)
    one.streaming()
    assert two.session.streaming is False
