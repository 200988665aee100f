"""A read's frames queued as one item, over a real MockMassiveServer: frames written in one
system call (``publish_raw_frames``) reach the consumer exactly as frames sent one by one do —
a malformed frame costs only its own ``decode_error``, a status between data frames stays in its
place, and a recorder tap sees every frame with its receive time."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import massive_rt as mrt
from massive_rt.connection import MassiveWebSocketClient
from massive_rt.recording import RecordingReader
from massive_rt.recording.fileformat import KIND_DATA
from massive_rt.testing import MockMassiveServer

WAIT = 10.0
TRADE = {"ev": "T", "sym": "AAPL", "x": 4, "i": "1", "z": 3, "p": 150.25, "s": 100, "c": [0], "t": 1234567890000}


def trades(*qs: int) -> str:
    return json.dumps([dict(TRADE, q=q) for q in qs], separators=(",", ":"))


def take(client: MassiveWebSocketClient, count: int) -> list[mrt.Event]:
    """The next ``count`` events other than state changes."""
    out: list[mrt.Event] = []
    while len(out) < count:
        event = client.get(WAIT)
        if not (isinstance(event, mrt.StatusMessage) and event.status == "state"):
            out.append(event)
    return out


def label(event: mrt.Event) -> Any:
    return event.status if isinstance(event, mrt.StatusMessage) else event.sequence_number  # type: ignore[attr-defined]


def test_a_malformed_frame_and_a_status_inside_one_write_keep_their_places(
    server: MockMassiveServer, make_client: Callable[..., MassiveWebSocketClient]
) -> None:
    client = make_client()
    client.start()
    client.wait_ready(WAIT)
    frames = [trades(1, 2), '[{"ev":"T","sym":"AAPL","q":', trades(3),
              '[{"ev":"status","status":"warning","message":"w"}]', trades(4), "[7]", trades(5, 6)]  # fmt: skip
    assert server.publish_raw_frames(frames) == len(frames)

    events = take(client, 9)
    assert [label(e) for e in events] == [1, 2, "decode_error", 3, "warning", 4, "decode_error", 5, 6]
    stats = client.stats()
    assert stats.decode_errors == 2
    assert stats.frames_received >= len(frames)


def test_a_recorder_sees_every_frame_of_a_write_with_its_receive_time(
    server: MockMassiveServer, make_client: Callable[..., MassiveWebSocketClient], tmp_path: Path
) -> None:
    client = make_client()
    path = tmp_path / "reads.mrt"
    recorder = mrt.Recorder(client, path, flush_interval=0.05)
    recorder.start()
    client.start()
    client.wait_ready(WAIT)
    frames = [trades(3 * i, 3 * i + 1, 3 * i + 2) for i in range(40)]
    assert server.publish_raw_frames(frames) == 40

    events = take(client, 120)
    assert [e.sequence_number for e in events] == list(range(120))  # type: ignore[attr-defined]
    assert recorder.stop()
    records = [r for r in RecordingReader(path) if r.kind == KIND_DATA]
    assert [r.payload for r in records] == [f.encode() for f in frames]
    assert [r.received_at_ns for r in records] == [e.received_at_ns for e in events[::3]]
