"""The ``massive-rt`` command, end to end, as users run it: a subprocess with no API key, loopback only.

Output is read line by line as it arrives (reader threads feeding queues), so a test waits for
exactly what it needs and never sleeps.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import os
import pty
import queue
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

from massive_rt import EquityTrade, Market, MassiveWebSocketClient, StatusMessage, UnknownEvent, __version__, speedups
from massive_rt.cli import CSV_COLUMNS, CsvFormat, JsonlFormat, TableFormat
from massive_rt.models import EVENT_CLASSES

ROOT = Path(__file__).resolve().parents[1]
CLI = (sys.executable, "-m", "massive_rt")
TIMEOUT = 30.0


def clean_env() -> dict[str, str]:
    """The test environment minus MASSIVE_* (never the real feed) and pytest's own variables."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("MASSIVE_", "PYTEST_"))}


def run(*args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, env=clean_env(), cwd=ROOT, timeout=timeout, check=False
    )


class Running:
    """A subprocess whose stdout and stderr lines are queued as they arrive."""

    def __init__(self, *command: str) -> None:
        self.proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(), cwd=ROOT
        )
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        self.out: queue.Queue[str | None] = queue.Queue()
        self.err: queue.Queue[str | None] = queue.Queue()
        self.seen: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._pumps = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.out), name="test-cli-stdout", daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.err), name="test-cli-stderr", daemon=True),
        ]
        for pump in self._pumps:
            pump.start()

    @staticmethod
    def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
        with stream:
            for line in stream:
                lines.put(line)
        lines.put(None)

    def next_line(self, stream: str = "stdout", timeout: float = TIMEOUT) -> str:
        """The next line of ``stream``; fails on EOF or timeout."""
        source = self.out if stream == "stdout" else self.err
        try:
            line = source.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no {stream} line within {timeout}s; so far: {self.seen[stream][-5:]}")
        if line is None:
            source.put(None)  # keep EOF visible to later reads
            pytest.fail(f"{stream} ended (exit {self.proc.poll()}); so far: {self.seen[stream][-5:]}")
        self.seen[stream].append(line)
        return line

    def wait_for(self, pattern: str, stream: str = "stderr", timeout: float = TIMEOUT) -> re.Match[str]:
        """Read ``stream`` until a line matches ``pattern``."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.next_line(stream, max(0.0, deadline - time.monotonic())))
            if match:
                return match

    def finish(self, timeout: float = TIMEOUT) -> tuple[int, str, str]:
        """Wait for the exit; return (code, all stdout, all stderr)."""
        code = self.proc.wait(timeout)
        for pump in self._pumps:
            pump.join(timeout)
        for name, source in (("stdout", self.out), ("stderr", self.err)):
            # The pumps are done: what is left is the rest of the output, then EOF (None).
            while not source.empty() and (line := source.get_nowait()) is not None:
                self.seen[name].append(line)
        return code, "".join(self.seen["stdout"]), "".join(self.seen["stderr"])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(TIMEOUT)
        for pump in self._pumps:
            pump.join(TIMEOUT)


@pytest.fixture
def cli() -> Iterator[Callable[..., Running]]:
    """Start ``massive-rt ARGS...`` as a Running process; killed if the test leaves it behind."""
    started: list[Running] = []

    def start(*args: str) -> Running:
        started.append(Running(*CLI, *args))
        return started[-1]

    yield start
    for proc in started:
        proc.close()


# ----------------------------------------------------------------------------------------- stream


def test_stream_demo_jsonl_prints_exactly_limit_events_with_official_names() -> None:
    result = run("stream", "T.*", "Q.*", "--demo", "--limit", "20", "--format", "jsonl")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 20
    events = [json.loads(line) for line in lines]
    for event in events:
        assert event["event_type"] in ("T", "Q")
        assert {"symbol", "timestamp", "sequence_number", "received_at_ns", "connection"} <= event.keys()
        assert ("price" in event) if event["event_type"] == "T" else ({"bid_price", "ask_price"} <= event.keys())
        assert event["connection"] == "stocks-1"
    assert "summary" in result.stderr
    assert re.search(r"events\s+20\b", result.stderr)
    assert "\x1b[" not in result.stderr  # no live status line unless stderr is a terminal


def test_stream_csv_has_a_header_then_one_row_per_event() -> None:
    result = run("stream", "T.AAPL", "Q.AAPL", "--demo", "--limit", "10", "--format", "csv")

    assert result.returncode == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == 11
    for row in rows[1:]:
        record = dict(zip(CSV_COLUMNS, row, strict=True))
        assert record["event_type"] in ("T", "Q")
        assert record["symbol"] == "AAPL"
        assert float(record["price"] or record["bid_price"]) > 0


def test_stream_without_a_key_uses_the_mock_server_and_prints_an_aligned_table() -> None:
    result = run("stream", "T.AAPL", "T.MSFT", "Q.AAPL", "--limit", "15")

    assert result.returncode == 0, result.stderr
    assert re.search(
        r"no MASSIVE_API_KEY: streaming the synthetic market from a local mock server at ws://127\.0\.0\.1:\d+",
        result.stderr,
    )
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["TIME", "(UTC)", "SYMBOL", "TYPE", "PRICE", "SIZE", "DETAILS"]
    assert len(rows) == 15
    for row in rows:
        assert re.match(r"\d\d:\d\d:\d\d\.\d{3}  (AAPL|MSFT)\s", row), row
        label = row[header.index("TYPE") :].split()[0]
        assert label in ("trade", "quote")
        price = row[header.index("PRICE") :].split()[0]
        assert float(price) > 0
        if label == "quote":
            assert re.search(r"\d\.\d\d / \d+\.\d\d", row), row


def test_stream_crypto_with_a_duration_and_a_pool_spreads_channels() -> None:
    result = run(
        "stream", "XT.BTC-USD", "XQ.BTC-USD", "XT.ETH-USD", "XQ.ETH-USD", "--market", "crypto", "--pool", "2",
        "--duration", "1.5", "--format", "jsonl",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events
    assert {e["event_type"] for e in events} <= {"XT", "XQ"}
    assert {e["pair"] for e in events} == {"BTC-USD", "ETH-USD"}
    assert {e["connection"] for e in events} == {"pool-crypto-1", "pool-crypto-2"}
    seconds = re.search(r"events\s+[\d,]+\s+in ([\d.]+) s", result.stderr)
    assert seconds, result.stderr
    assert 1.5 <= float(seconds.group(1)) < 5


def test_a_stream_that_received_no_event_reports_no_latency_percentiles() -> None:
    result = run("stream", "LULD.AAPL", "--demo", "--duration", "1")  # the synthetic market makes no LULD

    assert result.returncode == 0, result.stderr
    assert re.search(r"events\s+0\s+in ", result.stderr), result.stderr
    assert re.search(r"^  latency     none: no events received$", result.stderr, re.MULTILINE), result.stderr
    assert "p50" not in result.stderr
    assert "p99" not in result.stderr


def test_stream_demo_shows_minute_bars_within_seconds() -> None:
    # The demo's simulated clock runs 20x: `make run` (15 s) shows several AM bars.
    result = run("stream", "AM.*", "--demo", "--limit", "3", "--format", "jsonl")

    assert result.returncode == 0, result.stderr
    bars = [json.loads(line) for line in result.stdout.splitlines()]
    assert [b["event_type"] for b in bars] == ["AM", "AM", "AM"]
    assert all(b["end_timestamp"] - b["start_timestamp"] == 60_000 for b in bars)


@pytest.mark.parametrize(
    ("args", "culprit"),
    [
        (["stream", "T.AAPL", "--market", "crypto"], "T.AAPL"),
        (["stream", "TAAPL"], "TAAPL"),
        (["stream", "T.AAPL", "--url", "http://x"], "http://x"),
        (["stream", "T.AAPL", "--feed", "a b"], "a b"),
        (["stream", "T.AAPL", "--market", "nowhere"], "nowhere"),
        (["stream", "T.AAPL", "--market", "options", "--demo"], "options"),
        (["stream", "T.AAPL", "--url", "ws://127.0.0.1:9/stocks"], "API key"),
    ],
    ids=["prefix-not-in-market", "malformed-channel", "bad-url", "bad-feed", "bad-market", "demo-options",
         "url-without-key"],
)  # fmt: skip
def test_bad_arguments_exit_2_with_one_line_and_no_traceback(args: list[str], culprit: str) -> None:
    result = run(*args)

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("massive-rt stream: error: ")
    assert culprit in lines[0]
    assert result.stdout == ""


def test_argparse_errors_exit_2_without_traceback() -> None:
    result = run("stream", "T.AAPL", "--limit", "0")

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "--limit" in result.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_the_stream_cleanly_with_a_summary(cli: Callable[..., Running], signum: signal.Signals) -> None:
    proc = cli("stream", "T.*", "Q.*", "--demo", "--format", "jsonl")
    first = json.loads(proc.next_line())  # streaming for real before the signal
    assert first["event_type"] in ("T", "Q")

    proc.proc.send_signal(signum)
    code, out, err = proc.finish()

    assert code == (130 if signum == signal.SIGINT else 0), err  # Ctrl-C: the shell's 128 + 2
    assert "Traceback" not in err
    assert "summary" in err
    for line in out.splitlines():
        json.loads(line)  # every line written is whole


def test_a_signal_sent_to_the_process_and_its_group_is_one_request(cli: Callable[..., Running]) -> None:
    """``timeout`` and service managers signal the process, then its group: twice within moments."""
    proc = cli("stream", "T.*", "--demo", "--format", "jsonl")
    proc.next_line()
    proc.proc.send_signal(signal.SIGTERM)
    proc.proc.send_signal(signal.SIGTERM)
    code, _, err = proc.finish()

    assert code == 0, err  # not 143: the second one did not cut the shutdown short
    assert "summary" in err


def test_a_closed_pipe_ends_the_stream_quietly() -> None:
    command = shlex.join([*CLI, "stream", "T.*", "Q.*", "--demo", "--rate", "2000"])
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", f"{command} | head -n 3"],
        capture_output=True, text=True, env=clean_env(), cwd=ROOT, timeout=TIMEOUT, check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr  # pipefail: massive-rt's own exit code
    assert len(result.stdout.splitlines()) == 3
    assert "Traceback" not in result.stderr
    assert "BrokenPipeError" not in result.stderr


def test_the_live_status_line_is_drawn_on_a_terminal() -> None:
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [*CLI, "stream", "T.*", "--demo", "--duration", "2.5", "--format", "jsonl"],
        stdout=subprocess.DEVNULL, stderr=slave, env=clean_env(), cwd=ROOT,
    )  # fmt: skip
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
    assert re.search(r"\r\x1b\[K[\d,]+ events  [\d,]+/s  p99 [\d.]+ ms  drops 0  reconnects 0  streaming", terminal)
    assert "summary" in terminal


@pytest.mark.parametrize("fmt", ["table", "jsonl", "csv"])
def test_every_event_class_formats_even_with_missing_fields(fmt: str) -> None:
    formatter = {"table": TableFormat(Market.STOCKS, ["T.*"]), "jsonl": JsonlFormat(), "csv": CsvFormat()}[fmt]
    events = [cls(event_type=cls.WIRE[0][0], received_at_ns=1) for cls in EVENT_CLASSES]
    events += [UnknownEvent(event_type="NEW", data={"ev": "NEW", "x": [1, 2]}, received_at_ns=1)]
    events += [StatusMessage(status="x")]  # never printed, but must not break a formatter either

    for event in events:
        line = formatter.format(event)
        assert line.endswith("\n")
        assert line.count("\n") == 1
        if fmt == "jsonl":
            assert json.loads(line)["received_at_ns"] == event.received_at_ns


# ------------------------------------------------------------------------------------------ serve


def test_serve_streams_to_a_client_until_sigterm(cli: Callable[..., Running]) -> None:
    proc = cli("serve", "--port", "0", "--keys", "key-1", "key-2", "--rate", "500")
    url = proc.wait_for(r"listening on (ws://127\.0\.0\.1:\d+/stocks)").group(1)
    connect_hint = proc.wait_for(r"connect: (massive-rt stream .*)").group(1)
    assert f"--url {url}" in connect_hint
    assert "--api-key key-1" in connect_hint

    with MassiveWebSocketClient("key-2", url=url, subscriptions=["T.*"]) as client:
        client.wait_ready(timeout=10)
        trade = next(e for e in client.iter_events(timeout=10) if isinstance(e, EquityTrade))
    assert trade.price is not None
    assert trade.price > 0

    proc.proc.send_signal(signal.SIGTERM)
    code, _, err = proc.finish()
    assert code == 0, err
    assert re.search(r"served [\d,]+ events over 1 connection", err)


def test_serve_reports_a_port_in_use(cli: Callable[..., Running]) -> None:
    first = cli("serve", "--port", "0")
    port = first.wait_for(r"listening on ws://127\.0\.0\.1:(\d+)/").group(1)

    result = run("serve", "--port", port)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    first.proc.send_signal(signal.SIGINT)
    assert first.finish()[0] == 130  # Ctrl-C, after a clean stop


# ------------------------------------------------------------------------------------ bench, misc


def test_bench_prints_a_throughput_table() -> None:
    result = run("bench", "--events", "20000")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = next(line for line in lines if "events/s" in line)
    assert header.split() == ["events", "frames", "seconds", "events/s", "frames/s"]
    values = lines[lines.index(header) + 1].split()
    assert values[:2] == ["20,000", "2,000"]
    assert float(values[2]) > 0
    assert int(values[3].replace(",", "")) > 0


def test_version() -> None:
    result = run("--version")

    # run() clears MASSIVE_* (MASSIVE_RT_NO_EXTENSIONS too): the accelerator is active when it is
    # built and msgspec (the fast extra, absent from make test-min) is there to feed it.
    built = importlib.util.find_spec("massive_rt._speedups") is not None
    fed = importlib.util.find_spec("msgspec") is not None
    assert result.returncode == 0
    if built and fed:
        assert result.stdout == f"massive-rt {__version__} (accelerator: active)\n"
    elif built:
        assert result.stdout == f"massive-rt {__version__} (accelerator: {speedups.IDLE_STATUS})\n"
    else:
        assert result.stdout.startswith(f"massive-rt {__version__} (accelerator: not built (")


def test_relay_subcommand_passes_its_own_options_through() -> None:
    done = run("relay", "--help")
    assert done.returncode == 0
    assert "--upstream-url" in done.stdout
    bad = run("relay", "--port", "not-a-port")
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr
