"""``massive-rt record``, ``replay`` and ``inspect`` as users run them: subprocesses, loopback only, no sleeps."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import re
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import massive_rt as mrt
from massive_rt.cli import CSV_COLUMNS
from massive_rt.recording import CorruptRecordingError, RecordingHeader, RecordingReader, RecordingWriter, encode_status
from massive_rt.recording.fileformat import KIND_DATA, KIND_DROPPED, KIND_STATUS
from tests.test_cli import CLI, ROOT, TIMEOUT, Running, clean_env, run
from tests.test_cli import cli as cli  # the fixture, shared

SECOND = 1_000_000_000
T0 = 1_750_000_000 * SECOND  # 2025-06-15 15:06:40 UTC


def trade(sym: str, seq: int) -> dict[str, Any]:
    return {"ev": "T", "sym": sym, "p": 100.0 + seq, "s": seq + 1, "t": 1_750_000_000_000 + seq, "q": seq}


def status(kind: str, at: int, **fields: Any) -> bytes:
    return encode_status(mrt.StatusMessage(status=kind, message=kind, connection="c1", received_at_ns=at, **fields))


def write_recording(path: Path, *, span_ns: int = 4 * SECOND, frames: int = 40) -> None:
    """``frames`` frames of a trade of A and one of B (sequence numbers), spread over ``span_ns``;
    one disconnect with a 1.5 s gap after it and a drop marker of 7 events in the middle."""
    writer = RecordingWriter(path, RecordingHeader(codec="gzip", markets=("stocks",)), block_bytes=512)
    step = span_ns // frames
    for i in range(frames):
        at = T0 + i * step
        writer.append(at, "c1", KIND_DATA, json.dumps([trade("A", i), trade("B", i)]).encode(), "stocks")
        if i == frames // 2:
            writer.append(at, "c1", KIND_STATUS, status("state", at, state=mrt.ConnectionState.BACKOFF), "stocks")
            writer.append(at, "c1", KIND_STATUS, status("gap", at, gap_start_ns=at - 3 * SECOND // 2, gap_end_ns=at),
                          "stocks")  # fmt: skip
            writer.append(at, "c1", KIND_DROPPED, b'{"dropped": 7, "overflow": "drop_oldest"}', "stocks")
    writer.close()


def test_inspect_reports_range_events_connections_gaps_drops_and_a_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "r.mrt"
    write_recording(path)

    result = run("inspect", str(path), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["first_ns"] == T0
    assert summary["last_ns"] == T0 + 39 * (4 * SECOND // 40)
    assert summary["events"] == 80
    assert summary["by_ev"] == {"T": 80}
    assert summary["by_symbol"] == {"T.A": 40, "T.B": 40}
    assert [(c["name"], c["market"], c["frames"], c["events"], c["statuses"]) for c in summary["connections"]] == [
        ("c1", "stocks", 40, 80, 3)
    ]
    assert summary["gaps"] == [["c1", 1.5]]
    assert (summary["disconnects"], summary["dropped"], summary["recorder_dropped"]) == (1, 7, 0)
    assert [(f["state"], f["records"]) for f in summary["files"]] == [("whole", 43)]
    assert summary["healthy"] is True

    text = run("inspect", str(path)).stdout
    assert "time range   2025-06-15 15:06:40.000 UTC .. 2025-06-15 15:06:43.900 UTC  (3.9 s)" in text
    assert re.search(r"gaps +1 +\(c1 1\.5 s\)", text)
    assert f"{path}: whole, gzip, 43 records" in text
    assert "health       ok\n" in text


def test_inspect_reports_where_a_cut_file_stops_and_where_a_corrupt_one_breaks(tmp_path: Path) -> None:
    path = tmp_path / "r.mrt"
    write_recording(path)
    data = path.read_bytes()
    cut = tmp_path / "cut.mrt"
    cut.write_bytes(data[: len(data) * 2 // 3])
    reader = RecordingReader(cut)
    whole = len(list(reader))
    assert reader.end is not None

    result = run("inspect", str(cut), "--json")
    assert result.returncode == 3, result.stderr
    inspected = json.loads(result.stdout)
    (health,) = inspected["files"]
    assert (health["state"], health["offset"], health["records"]) == ("cut", reader.end.offset, whole)
    assert (inspected["health"], inspected["healthy"], inspected["complete"]) == ("cut", True, False)
    text = run("inspect", str(cut))
    assert text.returncode == 3
    assert f"cut at byte {reader.end.offset} of {len(data) * 2 // 3}" in text.stdout
    health_line = f"health       cut: {cut} at byte {reader.end.offset} of {len(data) * 2 // 3} (no end marker"
    assert health_line in text.stdout
    assert "health       ok" not in text.stdout
    assert f"warning: {cut} was cut at byte {reader.end.offset}" in text.stderr

    corrupt = tmp_path / "corrupt.mrt"
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    corrupt.write_bytes(bytes(flipped))
    with pytest.raises(CorruptRecordingError) as caught:
        list(RecordingReader(corrupt))
    result = run("inspect", str(corrupt))
    assert result.returncode == 1
    assert f"corrupt at byte {caught.value.offset}" in result.stdout
    assert f"health       CORRUPT: {corrupt} at byte {caught.value.offset}" in result.stdout
    assert "Traceback" not in result.stderr
    assert f"error: {corrupt} is corrupt at byte {caught.value.offset}: {caught.value.reason}\n" in result.stderr
    assert str(corrupt) not in result.stderr.split(" is corrupt at byte ", 1)[1]  # said once, not twice

    replayed = run("replay", str(corrupt), "--speed", "max", "--format", "jsonl")
    assert replayed.returncode == 1
    errors = [line for line in replayed.stderr.splitlines() if "ERROR" in line or "error:" in line]
    assert errors == [f"massive-rt: error: {caught.value}"]  # one line: the replay's own ERROR log is not echoed


def test_replay_prints_every_recorded_event_in_order_as_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "r.mrt"
    write_recording(path)

    result = run("replay", str(path), "--speed", "max", "--format", "jsonl")

    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(e["symbol"], e["sequence_number"]) for e in lines] == [(s, i) for i in range(40) for s in "AB"]
    assert {e["connection"] for e in lines} == {"c1"}
    assert lines[0]["received_at_ns"] == T0
    assert "replayed 80 events" in result.stderr


def test_replay_serve_serves_the_recording_to_a_client_that_subscribes(cli: Callable[..., Running],
                                                                      tmp_path: Path) -> None:  # fmt: skip
    path = tmp_path / "r.mrt"
    write_recording(path)
    proc = cli("replay", str(path), "--serve", "0", "--speed", "max")
    port = proc.wait_for(r"serving .* on ws://127\.0\.0\.1:(\d+)/<market>").group(1)

    client = mrt.MassiveWebSocketClient("any-key", url=f"ws://127.0.0.1:{port}/stocks", subscriptions=["T.B"])
    got: list[mrt.EquityTrade] = []
    with client:
        while len(got) < 40:
            event = client.get(TIMEOUT)
            if isinstance(event, mrt.EquityTrade):
                got.append(event)
        code, _, err = proc.finish()  # the recording ended: the server closed and the command exited

    assert code == 0, err
    assert [(e.symbol, e.sequence_number) for e in got] == [("B", i) for i in range(40)]
    assert "served 40 frames, 40 events delivered" in err


def test_record_demo_writes_a_rotated_recording_that_inspect_and_replay_agree_on(tmp_path: Path) -> None:
    path = tmp_path / "demo.mrt"
    result = run("record", "T.*", "Q.*", "-o", str(path), "--demo", "--duration", "1.5", "--max-bytes", "2048")
    assert result.returncode == 0, result.stderr
    recorded = int(re.search(r"recorded ([\d,]+) events", result.stderr).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert recorded > 0
    assert path.exists()
    assert path.with_name("demo.1.mrt").exists()  # rotated by size

    summary = json.loads(run("inspect", str(path), "--json").stdout)
    assert summary["events"] == recorded
    assert set(summary["by_ev"]) <= {"T", "Q"}
    assert len(summary["files"]) > 1
    assert {f["state"] for f in summary["files"]} == {"whole"}
    replayed = run("replay", str(path), "--speed", "max", "--format", "jsonl")
    assert len(replayed.stdout.splitlines()) == recorded

    again = run("record", "T.*", "-o", str(path), "--demo", "--duration", "1")
    assert again.returncode == 2
    assert "exists" in again.stderr


def test_replay_draws_its_progress_on_a_terminal(tmp_path: Path) -> None:
    path = tmp_path / "r.mrt"
    write_recording(path, span_ns=SECOND // 2, frames=10)  # paced at speed 1: at least 0.45 s long
    master, slave = pty.openpty()
    proc = subprocess.Popen([*CLI, "replay", str(path), "--format", "jsonl"], stdout=subprocess.DEVNULL,
                            stderr=slave, env=clean_env(), cwd=ROOT)  # fmt: skip
    os.close(slave)
    chunks: list[bytes] = []

    def read_terminal() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the process closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read_terminal, name="test-cli-pty", daemon=True)
    reader.start()
    try:
        code = proc.wait(TIMEOUT)
        reader.join(TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(TIMEOUT)
        os.close(master)
    terminal = b"".join(chunks).decode()
    assert code == 0, terminal
    assert re.search(r"\r\x1b\[Kreplaying: [\d,]+ records  [\d,]+ events", terminal)
    assert "replayed 20 events" in terminal


def quote(sym: str, seq: int) -> dict[str, Any]:
    return {"ev": "Q", "sym": sym, "bp": 99.5 + seq, "bs": 3, "ap": 100.5 + seq, "as": 4, "t": 1_750_000_000_000 + seq,
            "q": seq, "bx": 11, "ax": 12}  # fmt: skip


def test_replay_csv_is_one_header_then_one_row_per_trade_and_quote_loadable_as_a_table(tmp_path: Path) -> None:
    path = tmp_path / "tq.mrt"
    writer = RecordingWriter(path, RecordingHeader(codec="gzip", markets=("stocks",)))
    for i in range(5):
        writer.append(T0 + i, "c1", KIND_DATA, json.dumps([trade("A", i), quote("A", i)]).encode(), "stocks")
    writer.append(T0 + 9, "c1", KIND_STATUS, status("gap", T0 + 9, gap_start_ns=T0, gap_end_ns=T0 + 9), "stocks")
    writer.close()

    result = run("replay", str(path), "--speed", "max", "--format", "csv")

    assert result.returncode == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == 1 + 10  # statuses are not rows
    assert all(len(row) == len(CSV_COLUMNS) for row in rows)
    records = [dict(zip(CSV_COLUMNS, row, strict=True)) for row in rows[1:]]
    assert [(r["event_type"], r["symbol"]) for r in records] == [("T", "A"), ("Q", "A")] * 5
    trades, quotes = records[0::2], records[1::2]
    assert [float(r["price"]) for r in trades] == [100.0 + i for i in range(5)]
    assert [int(r["size"]) for r in trades] == [i + 1 for i in range(5)]
    assert [(float(r["bid_price"]), float(r["ask_price"]), int(r["bid_size"])) for r in quotes] == [
        (99.5 + i, 100.5 + i, 3) for i in range(5)
    ]
    assert all(r["bid_price"] == "" for r in trades)  # a column a class lacks is empty, not shifted
    assert [int(r["received_at_ns"]) for r in records] == [T0 + i // 2 for i in range(10)]
    assert {r["connection"] for r in records} == {"c1"}
