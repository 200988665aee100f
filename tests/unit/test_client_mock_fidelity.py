"""The client against a MockMassiveServer that disagrees with it: slow, reordered and lost acks,
refusals that name their channel or not, statuses among data, a channel only the server knows."""

from __future__ import annotations

from typing import Any

import pytest

import massive_rt as mrt
from massive_rt.testing import MockMassiveServer
from massive_rt.testing.channels import DEFAULT_CHANNELS
from tests.support import KEY


def trade(sym: str, seq: int) -> dict[str, Any]:
    return {
        "ev": "T",
        "sym": sym,
        "x": 4,
        "i": str(seq),
        "z": 3,
        "p": 190.5,
        "s": 100,
        "t": 1_700_000_000_000,
        "q": seq,
    }


def ack(channel: str) -> dict[str, str]:
    return {"ev": "status", "status": "success", "message": f"subscribed to: {channel}"}


def statuses(events: list[mrt.Event], status: str) -> list[mrt.StatusMessage]:
    return [e for e in events if isinstance(e, mrt.StatusMessage) and e.status == status]


def next_status(client: mrt.MassiveWebSocketClient, status: str, timeout: float = 10) -> mrt.StatusMessage:
    for event in client.iter_events(timeout=timeout):
        if isinstance(event, mrt.StatusMessage) and event.status == status:
            return event
    raise AssertionError(f"no {status!r} status within {timeout}s")


@pytest.mark.timeout(60)
def test_slow_acks_after_refusals_are_never_refusals() -> None:
    """The ack bug, against the mock: 3 unentitled channels and 1,500 others (two subscribe frames),
    every reply 0.6 s late. Only the 3 are refused; the old client charged hundreds of the others."""
    refused = ["NOI.AAA", "NOI.BBB", "NOI.CCC"]
    tickers = [f"T.S{i:04d}" for i in range(1500)]
    with MockMassiveServer(api_keys={KEY}, unentitled=["NOI"], ack_delay=0.6) as server:
        client = mrt.MassiveWebSocketClient(api_key=KEY, url=server.url(), subscriptions=[*refused, *tickers])
        with client:
            client.wait_ready(20)
            assert client.wait_acked(tickers, 20)
            events = client.drain(10_000)
    errors = statuses(events, "subscription_error")
    assert sorted(c for s in errors for c in s.channels) == refused
    assert not statuses(events, "subscription_unconfirmed")


@pytest.mark.parametrize("named", [False, True])
def test_refusals_reordered_with_acks_refuse_exactly_the_unentitled(named: bool) -> None:
    wanted = [f"T.S{i:02d}" for i in range(12)] + ["Q.AAPL", "Q.MSFT"]
    with MockMassiveServer(api_keys={KEY}, entitlements=["T"], ack_mode="separate", ack_jitter=0.2, seed=3,
                           refusals_name_channel=named) as server:  # fmt: skip
        client = mrt.MassiveWebSocketClient(api_key=KEY, url=server.url(), subscriptions=wanted)
        with client:
            error = next_status(client, "subscription_error")
            channels = list(error.channels)
            if len(channels) < 2:  # one refusal each when they name their channel
                channels += next_status(client, "subscription_error").channels
            assert sorted(channels) == ["Q.AAPL", "Q.MSFT"]
            assert client.wait_acked(wanted[:12], 10)
            assert not statuses(client.drain(), "subscription_unconfirmed")


def test_a_lost_ack_is_unconfirmed_and_an_ack_among_data_confirms_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """An ack that comes inside a data frame, after data: the reader only looks for statuses at the
    start of a frame, so the consumer's decoder hands it back (the old client never confirmed it)."""
    monkeypatch.setattr("massive_rt._session.ACK_TIMEOUT", 0.3)
    with MockMassiveServer(api_keys={KEY}, lost_acks=["T.MSFT"]) as server:
        client = mrt.MassiveWebSocketClient(api_key=KEY, url=server.url(), subscriptions=["T.AAPL", "T.MSFT"])
        with client:
            assert next_status(client, "subscription_unconfirmed").channels == ("T.MSFT",)
            assert client.acked == {"T.AAPL"}
            assert server.publish([trade("AAPL", 1), ack("T.MSFT"), trade("MSFT", 2)]) == 3
            assert next_status(client, "subscription_confirmed").channels == ("T.MSFT",)
            assert client.wait_acked(["T.MSFT"], 5)


def test_statuses_among_data_reach_the_stream_in_place() -> None:
    note = {"ev": "status", "status": "notice", "message": "market closes early"}
    with MockMassiveServer(api_keys={KEY}) as server:
        client = mrt.MassiveWebSocketClient(api_key=KEY, url=server.url(), subscriptions=["T.AAPL"])
        with client:
            client.wait_ready(10)
            assert server.publish([trade("AAPL", 1), note, trade("AAPL", 2)], batch=3) == 3
            got = []
            for event in client.iter_events(timeout=10):
                if isinstance(event, mrt.EquityTrade) or (isinstance(event, mrt.StatusMessage) and event.from_server):
                    got.append(event)
                if len(got) == 3:
                    break
    assert [type(e).__name__ for e in got] == ["EquityTrade", "StatusMessage", "EquityTrade"]
    assert (got[1].status, got[1].message) == ("notice", "market closes early")  # type: ignore[union-attr]
    assert [got[0].sequence_number, got[2].sequence_number] == [1, 2]  # type: ignore[union-attr]


def test_a_channel_only_the_server_knows_arrives_as_unknown_event_with_validation_relaxed() -> None:
    crypto = {"crypto": [*DEFAULT_CHANNELS["crypto"], "XS"]}
    with MockMassiveServer(api_keys={KEY}, channels=crypto) as server:
        with pytest.raises(mrt.ConfigurationError, match="XS"):
            mrt.MassiveWebSocketClient(api_key=KEY, url=server.url("crypto"), market="crypto",
                                       subscriptions=["XS.BTC-USD"])  # fmt: skip
        client = mrt.MassiveWebSocketClient(api_key=KEY, url=server.url("crypto"), market="crypto",
                                            subscriptions=["XS.BTC-USD"], validate_channels="off")  # fmt: skip
        with client:
            assert client.wait_acked(["XS.BTC-USD"], 10)
            assert server.publish([{"ev": "XS", "pair": "BTC-USD", "bp": 1.5}], market="crypto") == 1
            event = next(e for e in client.iter_events(timeout=10) if isinstance(e, mrt.UnknownEvent))
    assert event.event_type == "XS"
    assert event.data["bp"] == 1.5
