"""Recorder and ReplaySource end to end: a pool on the mock server with a drop-all and an
overflow, a synthetic source, rotation, stop() flushing, the key kept out of files."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import attrs
import pytest

import massive_rt as mrt
from massive_rt.recording import RecordingReader, decode_status
from massive_rt.recording.fileformat import KIND_DATA, KIND_STATUS
from massive_rt.testing import MockMassiveServer
from tests.conftest import wait_until
from tests.support import KEY

WAIT = 10.0


def normalized(event: mrt.Event) -> tuple[str, dict[str, Any]]:
    """Every field; an error as its type name and message (exceptions compare by identity)."""
    fields = attrs.asdict(event, recurse=False)
    error = fields.get("error")
    if error is not None:
        fields["error"] = (getattr(error, "type_name", type(error).__name__), getattr(error, "message", str(error)))
    return type(event).__name__, fields


def replayed(paths: Any, make_adapter: Any, expected: int, **options: Any) -> list[mrt.Event]:
    source = mrt.ReplaySource(paths, speed=None, **options)
    adapter = make_adapter(source)
    out: list[mrt.Event] = []
    adapter.on("*", out.append)
    adapter.on_status(out.append)
    adapter.start()
    assert wait_until(lambda: source.exhausted and len(out) >= expected, WAIT)
    adapter.stop()
    return out


def trade(sym: str, seq: int) -> dict[str, Any]:
    return {"ev": "T", "sym": sym, "p": 100.0 + seq / 100, "s": seq, "t": 1_700_000_000_000 + seq, "q": seq}


@pytest.mark.timeout(60)
def test_a_pool_recording_with_a_reconnect_and_drops_replays_field_for_field(
    server: MockMassiveServer, make_pool: Any, make_adapter: Any, tmp_path: Path
) -> None:
    pool = make_pool(max_connections=2, max_subscriptions_per_connection=1,
                     client_options={"queue_size": 20, "overflow": "drop_oldest"})  # fmt: skip
    path = tmp_path / "pool.mrt"
    recorder = mrt.Recorder(pool, path, flush_interval=0.05)
    adapter = make_adapter(pool)
    live: list[mrt.Event] = []
    gate = threading.Event()
    blocked = threading.Event()

    def on_trade(event: mrt.Event) -> None:
        live.append(event)
        if getattr(event, "sequence_number", None) == 1_000:  # hold the dispatcher: the queues overflow
            blocked.set()
            gate.wait(WAIT)

    adapter.on("*", on_trade)
    adapter.on_status(live.append)
    recorder.start()
    pool.subscribe("T.A", "T.B")
    adapter.start()
    pool.wait_ready(WAIT)
    assert server.publish([trade(s, i) for i in range(10) for s in "AB"]) == 20
    assert wait_until(lambda: sum(isinstance(e, mrt.EquityTrade) for e in live) == 20, WAIT)

    assert server.publish([trade("A", 1_000)], batch=1) == 1
    assert blocked.wait(WAIT)
    server.publish([trade("A", 1_001 + i) for i in range(100)], batch=1)
    assert wait_until(lambda: sum(c.stats().dropped_events for c in pool.connections) > 0, WAIT)
    gate.set()

    seen = {c.id for c in server.connections}
    assert server.drop_all() == 2
    assert wait_until(lambda: {c.id for c in server.active_connections()}.isdisjoint(seen)
                      and len(server.active_connections()) == 2, WAIT)  # fmt: skip
    for client in pool.connections:
        assert client.wait_acked(client.subscriptions, WAIT)
    assert server.publish([trade(s, 2_000 + i) for i in range(10) for s in "AB"]) == 20
    assert wait_until(lambda: sum(getattr(e, "sequence_number", 0) >= 2_000 for e in live) == 20, WAIT)
    adapter.stop()
    assert recorder.stop()

    statuses = [e.status for e in live if isinstance(e, mrt.StatusMessage)]
    assert {"dropped", "disconnected", "gap"} <= set(statuses)
    reader = RecordingReader(path)
    assert recorder.stats().records == len(list(reader))
    assert reader.end is not None
    assert reader.end.complete
    again = replayed(path, make_adapter, len(live))
    assert [normalized(e) for e in again] == [normalized(e) for e in live]
    assert {e.connection for e in again if isinstance(e, mrt.EquityTrade)} == {c.name for c in pool.connections}


@pytest.mark.timeout(60)
def test_recording_a_synthetic_source_while_it_stops_flushes_everything_and_rotates_losing_nothing(
    make_adapter: Any, tmp_path: Path
) -> None:
    source = mrt.SyntheticSource(("T.*", "Q.*"), rate=None, seed=7, batch=20, queue_size=2_000)
    path = tmp_path / "synthetic.mrt"
    recorder = mrt.Recorder(source, path, max_bytes=16_384, flush_interval=0.01)
    adapter = make_adapter(source)
    live: list[mrt.Event] = []
    adapter.on("*", live.append)
    adapter.on_status(live.append)
    recorder.start()
    adapter.start()
    assert wait_until(lambda: len(live) > 20_000, WAIT)
    adapter.stop()  # the source stops while the recorder still records; the adapter drains the rest
    assert recorder.stop()

    stats = recorder.stats()
    assert len(stats.files) > 2
    assert stats.dropped == 0
    assert stats.error is None
    assert all(Path(f).exists() for f in stats.files)
    assert stats.compression_ratio > 1.5
    again = replayed(path, make_adapter, len(live))
    assert [normalized(e) for e in again] == [normalized(e) for e in live]


def test_replay_filters_by_channel_and_time_and_statuses_pass(make_adapter: Any, tmp_path: Path) -> None:
    source = mrt.SyntheticSource(("T.*", "Q.*"), symbols=("AAPL", "MSFT"), rate=None, seed=3, queue_size=500)
    path = tmp_path / "s.mrt"
    recorder = mrt.Recorder(source, path)
    adapter = make_adapter(source)
    live: list[mrt.Event] = []
    adapter.on("*", live.append)
    recorder.start()
    adapter.start()
    assert wait_until(lambda: len(live) > 2_000, WAIT)
    adapter.stop()
    recorder.stop()

    wanted = [e for e in live if isinstance(e, mrt.EquityTrade) and e.symbol == "AAPL"]
    again = replayed(path, make_adapter, len(wanted), channels=["T.AAPL"])
    assert [normalized(e) for e in again if not isinstance(e, mrt.StatusMessage)] == [normalized(e) for e in wanted]
    middle = live[len(live) // 2].received_at_ns
    later = [e for e in live if e.received_at_ns >= middle]
    assert [normalized(e) for e in replayed(path, make_adapter, len(later), start=middle)
            if not isinstance(e, mrt.StatusMessage)] == [normalized(e) for e in later]  # fmt: skip


def test_the_key_is_never_in_a_recording(server: MockMassiveServer, make_client: Any, tmp_path: Path) -> None:
    client = make_client(subscriptions=["T.A"])
    path = tmp_path / "key.mrt"
    with mrt.Recorder(client, path, codec="none") as recorder:
        client.start()
        client.wait_ready(WAIT)
        server.publish([trade("A", 1)])
        assert client.get(WAIT) is not None
        while client.pending:
            client.get(WAIT)
    assert KEY not in repr(recorder)
    data = path.read_bytes()
    assert KEY.encode() not in data
    assert b"state" in data  # the statuses are in there, in clear: the check looked at real content
    reader = RecordingReader(path)
    assert KEY not in reader.header.to_json().decode()
    assert reader.header.connections == (client.name,)
    assert reader.header.subscriptions == ("T.A",)


class _TapOnly:
    """A source reduced to what a recorder needs, so the test drives the tap itself."""

    name = "fake"
    market = mrt.Market.STOCKS
    overflow_policy = mrt.Overflow.DROP_OLDEST
    subscriptions = ("T.*",)

    def __init__(self) -> None:
        self.tap: Any = None

    def set_tap(self, tap: Any) -> None:
        self.tap = tap

    def clients(self) -> tuple[_TapOnly, ...]:
        return (self,)


def test_a_full_recorder_buffer_counts_and_marks_what_it_lost_never_blocking(tmp_path: Path) -> None:
    source = _TapOnly()
    path = tmp_path / "lossy.mrt"
    recorder = mrt.Recorder(source, path, buffer_size=1).start()
    sent = 100_000
    for i in range(sent):
        source.tap(source, [0, b'[{"ev":"T","sym":"A"}]', i, 1])
    assert recorder.stop()

    stats = recorder.stats()
    records = list(RecordingReader(path))
    lost = [decode_status(r.payload) for r in records if r.kind == KIND_STATUS]
    data = [r for r in records if r.kind == KIND_DATA]
    assert stats.dropped > 0
    assert source.tap is None
    assert all(s.status == "recorder_dropped" for s in lost)
    assert len(data) + sum(s.dropped for s in lost) == sent
    assert sum(s.dropped for s in lost) == stats.dropped


def test_hourly_rotation_starts_a_part_at_each_hour_of_receive_time(tmp_path: Path) -> None:
    source = _TapOnly()
    path = tmp_path / "hourly.mrt"
    recorder = mrt.Recorder(source, path, rotate="hourly").start()
    hour = 3_600 * 10**9
    times = [10 * hour + 1, 10 * hour + 2, 11 * hour, 11 * hour + 5, 13 * hour]
    for at in times:
        source.tap(source, [0, b'[{"ev":"T","sym":"A"}]', at, 1])
    assert recorder.stop()

    files = recorder.stats().files
    assert len(files) == 3
    assert [[r.received_at_ns for r in RecordingReader(f)] for f in files] == [times[:2], times[2:4], times[4:]]
    assert [RecordingReader(f).header.part for f in files] == [0, 1, 2]
