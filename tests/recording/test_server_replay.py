"""MockMassiveServer.replay: a recording served over the wire to real clients (massive_rt and the
official ``massive`` client), filtered by their channels, paced by the recorded receive times."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

import massive_rt as mrt
from massive_rt.recording import RecordingError, RecordingHeader, RecordingWriter, encode_status
from massive_rt.recording.fileformat import KIND_DATA, KIND_STATUS
from massive_rt.testing import MockMassiveServer
from tests._official import OfficialClient
from tests.conftest import wait_until
from tests.support import FAST, KEY

WAIT = 10.0
SEQUENCE = 60


def trade(sym: str, seq: int) -> dict[str, Any]:
    return {"ev": "T", "sym": sym, "p": 100.0 + seq / 100, "s": seq, "t": 1_700_000_000_000 + seq, "q": seq,
            "x": 4, "c": [12, 37], "z": 3}  # fmt: skip


def market_fields(event: mrt.Event) -> dict[str, Any]:
    """What the server sent: every field but where and when this client received it."""
    fields = attrs.asdict(event, recurse=False)
    del fields["received_at_ns"], fields["connection"]
    return fields


def take_market_events(client: mrt.MassiveWebSocketClient, n: int) -> list[mrt.Event]:
    """The next ``n`` market events, past the client's own statuses (state changes only)."""
    out: list[mrt.Event] = []
    while len(out) < n:
        event = client.get(WAIT)
        if isinstance(event, mrt.StatusMessage):
            assert event.status == "state", event
        else:
            out.append(event)
    return out


@pytest.fixture
def replay_server() -> Iterator[MockMassiveServer]:
    with MockMassiveServer(api_keys={KEY}, name="replay") as server:
        yield server


@pytest.fixture
def recording(server: MockMassiveServer, make_client: Any, make_adapter: Any, tmp_path: Path) -> tuple[Path, list]:
    """Sequence-numbered trades of A and B (and C, not subscribed) recorded by a live massive_rt client."""
    client = make_client(subscriptions=["T.A", "T.B"])
    path = tmp_path / "live.mrt"
    recorder = mrt.Recorder(client, path, flush_interval=0.05)
    adapter = make_adapter(client)
    live: list[mrt.Event] = []
    adapter.on("T", live.append)
    recorder.start()
    adapter.start()
    client.wait_ready(WAIT)
    for start in range(0, SEQUENCE, 10):
        server.publish([trade(s, i) for i in range(start, start + 10) for s in "ABC"], batch=7)
    assert wait_until(lambda: len(live) == 2 * SEQUENCE, WAIT)
    adapter.stop()
    assert recorder.stop()
    assert recorder.stats().records > 0
    return path, live


@pytest.mark.timeout(60)
def test_a_massive_rt_client_gets_from_the_replay_every_event_it_got_live(
    recording: tuple[Path, list[mrt.Event]], replay_server: MockMassiveServer
) -> None:
    path, live = recording
    client = mrt.MassiveWebSocketClient(api_key=KEY, url=replay_server.url("stocks"), reconnect=FAST,
                                        subscriptions=["T.A", "T.B"])  # fmt: skip
    try:
        client.start()
        client.wait_ready(WAIT)
        handle = replay_server.replay(path, speed=None)
        again = take_market_events(client, len(live))
        assert handle.join(WAIT)
    finally:
        client.stop()
    rest = []
    while client.pending:
        rest.append(client.get(WAIT))

    assert [market_fields(e) for e in again] == [market_fields(e) for e in live]
    assert [e.sequence_number for e in again if e.symbol == "A"] == list(range(SEQUENCE))  # type: ignore[attr-defined]
    assert handle.finished
    assert handle.error is None
    assert handle.end is not None
    assert handle.end.complete
    assert handle.delivered == len(live)
    assert handle.statuses_skipped > 0  # the recording client's state changes stay home
    assert [getattr(e, "status", None) for e in rest] == ["state"] * len(rest)  # no recorded status, no C


@pytest.mark.timeout(60)
def test_the_official_client_gets_the_replayed_events_of_its_channels(
    recording: tuple[Path, list[mrt.Event]], replay_server: MockMassiveServer
) -> None:
    path, live = recording
    official = OfficialClient(replay_server.port, "stocks", ["T.A"], api_key=KEY)
    assert replay_server.wait_for_subscribed(["T.A"], timeout=WAIT)
    handle = replay_server.replay(path, speed=None)
    wanted = [e for e in live if e.symbol == "A"]  # type: ignore[attr-defined]
    parsed = official.take(len(wanted))
    assert handle.join(WAIT)
    assert handle.delivered == len(wanted)
    replay_server.close()  # 1001 going away: the official client's connect() returns normally
    official.thread.join(WAIT)
    assert official.error is None

    for ours, theirs in zip(wanted, parsed, strict=True):
        assert type(theirs).__name__ == type(ours).__name__
        for _, attr in type(ours).WIRE:  # type: ignore[attr-defined]
            assert getattr(theirs, attr) == getattr(ours, attr), attr
    assert official.messages.empty()


def write_recording(path: Path, frames: list[tuple[int, bytes]], statuses: int = 0) -> None:
    writer = RecordingWriter(path, RecordingHeader(codec="none", markets=("stocks",)))
    for at, frame in frames:
        writer.append(at, "c1", KIND_DATA, frame, "stocks")
    for i in range(statuses):
        status = mrt.StatusMessage(status="gap", message="recorded locally", connection="c1", received_at_ns=i)
        writer.append(frames[-1][0], "c1", KIND_STATUS, encode_status(status), "stocks")
    writer.close()


@pytest.mark.timeout(30)
def test_a_replay_waits_for_subscribers_and_is_paced_by_the_recorded_times(
    replay_server: MockMassiveServer, tmp_path: Path
) -> None:
    path = tmp_path / "paced.mrt"
    second = 1_000_000_000
    write_recording(path, [(10 * second, b'[{"ev":"T","sym":"A","q":1}]'), (10 * second + second // 2,
                    b'[{"ev":"T","sym":"A","q":2},{"ev":"Q","sym":"A"}]')], statuses=2)  # fmt: skip
    handle = replay_server.replay(path, speed=2.0, wait_for_subscribers=1)
    client = mrt.MassiveWebSocketClient(api_key=KEY, url=replay_server.url("stocks"), reconnect=FAST,
                                        subscriptions=["T.A"])  # fmt: skip
    try:
        assert handle.running  # nobody subscribed yet: nothing published
        assert handle.records == 0
        client.start()
        (first,) = take_market_events(client, 1)
        started = time.monotonic()
        (second_trade,) = take_market_events(client, 1)
        waited = time.monotonic() - started
        assert handle.join(WAIT)
    finally:
        client.stop()
    assert [first.sequence_number, second_trade.sequence_number] == [1, 2]  # type: ignore[union-attr]
    assert waited >= 0.2  # 0.5 s recorded apart at speed 2: a lower bound, never flaky under load
    assert (handle.records, handle.frames, handle.delivered, handle.statuses_skipped) == (4, 2, 2, 2)


def test_stopping_a_replay_ends_it_and_a_bad_file_fails_at_once(
    replay_server: MockMassiveServer, tmp_path: Path
) -> None:
    path = tmp_path / "slow.mrt"
    write_recording(path, [(0, b'[{"ev":"T","sym":"A"}]'), (3_600 * 10**9, b'[{"ev":"T","sym":"A"}]')])
    handle = replay_server.replay(path, speed=1.0)
    assert wait_until(lambda: handle.records == 1, WAIT)
    handle.stop()
    assert not handle.running
    assert not handle.finished
    assert handle.records == 1

    not_a_recording = tmp_path / "x.mrt"
    not_a_recording.write_bytes(b"hello")
    with pytest.raises(RecordingError, match="not a massive_rt recording"):
        replay_server.replay(not_a_recording)
    with pytest.raises(mrt.ConfigurationError, match="speed"):
        replay_server.replay(path, speed=0)


def test_closing_the_server_ends_a_replay_waiting_for_subscribers(tmp_path: Path) -> None:
    path = tmp_path / "wait.mrt"
    write_recording(path, [(0, b'[{"ev":"T","sym":"A"}]')])
    server = MockMassiveServer(api_keys={KEY}).start()
    handle = server.replay(path, wait_for_subscribers=1)
    server.close()
    assert handle.join(WAIT)
    assert handle.records == 0
