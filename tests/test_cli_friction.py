"""What a new user's first runs hit, each answered on one line with what to do: a URL without its
market path, a refused key, and Ctrl-C's exit status (130, after the same clean stop as SIGTERM).
Subprocesses against servers on 127.0.0.1, no sleeps."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from massive_rt.recording import RecordingHeader, RecordingReader, RecordingWriter
from massive_rt.recording.fileformat import KIND_DATA
from massive_rt.testing import MockMassiveServer
from tests.test_cli import CLI, ROOT, TIMEOUT, Running, clean_env, run
from tests.test_cli import cli as cli  # the fixture, shared

WRONG_KEY = "s3cret-wrong-key-0123456789"


@pytest.fixture
def server() -> Iterator[MockMassiveServer]:
    with MockMassiveServer(api_keys={"right-key"}, name="friction") as mock:
        yield mock


def base_url(server: MockMassiveServer) -> str:
    return server.url("stocks").rsplit("/", 1)[0]  # ws://127.0.0.1:PORT, no market path


# ------------------------------------------------------------------------------- URL without market


@pytest.mark.allow_errors(r"HTTP 404", logger="massive_rt.connection")
def test_a_url_without_the_market_path_says_which_url_was_meant(server: MockMassiveServer) -> None:
    base = base_url(server)

    result = run("stream", "T.AAPL", "--url", base, "--api-key", "right-key")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    error = next(line for line in result.stderr.splitlines() if "massive-rt: error:" in line)
    assert "HTTP 404" in error
    assert f"the URL has no market path: did you mean {base}/stocks?" in error
    assert "stocks, options, forex, crypto, indices, futures" in error


@pytest.mark.allow_errors(r"HTTP 404", logger="massive_rt.connection")
def test_a_url_with_a_wrong_path_names_that_path(server: MockMassiveServer) -> None:
    base = base_url(server)

    result = run("stream", "T.AAPL", "--url", base + "/stonks", "--api-key", "right-key")

    assert result.returncode == 1
    error = next(line for line in result.stderr.splitlines() if "massive-rt: error:" in line)
    assert f"/stonks is not a market path: did you mean {base}/stocks?" in error  # not "the URL has no market path"


@pytest.mark.allow_errors(r"HTTP 404", logger="massive_rt.connection")
def test_a_404_on_a_url_that_names_a_market_keeps_the_general_advice(server: MockMassiveServer) -> None:
    url = base_url(server) + "/v9/stocks"  # names a market, still not the server's path

    result = run("stream", "T.AAPL", "--url", url, "--api-key", "right-key")

    assert result.returncode == 1
    assert "did you mean" not in result.stderr
    assert "check url=, feed= and market=" in result.stderr


@pytest.mark.allow_errors(r"HTTP 404", logger="massive_rt.connection")
def test_a_pool_whose_every_connection_failed_for_good_ends_on_one_error_line(server: MockMassiveServer) -> None:
    # It ran to its --duration with no event and exit 0 before: the pool's members failed for good
    # (a 404 is not retried) and only the library's ERROR log line said so.
    result = run("stream", "T.AAPL", "T.MSFT", "--url", base_url(server), "--api-key", "right-key", "--pool", "2",
                 "--duration", str(TIMEOUT * 2))  # fmt: skip

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    error = next(line for line in result.stderr.splitlines() if "massive-rt: error:" in line)
    assert "HTTP 404" in error


# --------------------------------------------------------------------------------------- wrong key


@pytest.mark.parametrize("command", ["stream", "record"])
def test_a_refused_key_is_one_line_naming_what_to_check_never_the_key(
    server: MockMassiveServer, command: str, tmp_path: Path
) -> None:
    extra = ["-o", str(tmp_path / "r.mrt")] if command == "record" else []

    result = run(command, "T.AAPL", *extra, "--url", server.url("stocks"), "--api-key", WRONG_KEY)

    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("massive-rt")]
    assert errors[-1] == (
        "massive-rt: error: authentication failed: the server refused the API key; check --api-key or "
        "MASSIVE_API_KEY (-v shows the server's reply)"
    )
    if command == "stream":
        assert result.stderr.splitlines() == errors[-1:]  # nothing else on stderr
    else:  # the recording's summary, then the error: no log lines about the refusal
        assert not any(" WARNING " in line or " ERROR " in line for line in result.stderr.splitlines())
    assert WRONG_KEY not in result.stderr + result.stdout


def test_a_refused_key_from_the_environment_is_not_shown_either(server: MockMassiveServer) -> None:
    env = {**clean_env(), "MASSIVE_API_KEY": WRONG_KEY}
    result = subprocess.run([*CLI, "stream", "T.AAPL", "--url", server.url("stocks")], capture_output=True,
                            text=True, env=env, cwd=ROOT, timeout=TIMEOUT, check=False)  # fmt: skip

    assert result.returncode == 1
    assert "authentication failed" in result.stderr
    assert "MASSIVE_API_KEY" in result.stderr
    assert WRONG_KEY not in result.stderr + result.stdout


def test_verbose_shows_the_servers_reply_to_a_refused_key(server: MockMassiveServer) -> None:
    result = run("stream", "T.AAPL", "-v", "--url", server.url("stocks"), "--api-key", WRONG_KEY)

    assert result.returncode == 1
    assert re.search(r"WARNING massive_rt\.connection: \[[^\]]+\] server status auth_failed", result.stderr)
    assert WRONG_KEY not in result.stderr


# ------------------------------------------------------------------------------------------ Ctrl-C


def test_ctrl_c_ends_record_with_130_and_a_whole_recording(cli: Callable[..., Running], tmp_path: Path) -> None:
    path = tmp_path / "int.mrt"
    proc = cli("record", "T.*", "-o", str(path), "--demo", "--rate", "500")
    proc.wait_for(r"recording the synthetic market")

    proc.proc.send_signal(signal.SIGINT)
    code, _, err = proc.finish()

    assert code == 130, err
    assert "recorded" in err
    assert "Traceback" not in err
    reader = RecordingReader(path)
    list(reader)
    assert reader.end is not None
    assert reader.end.complete  # stopped cleanly: the end marker is written


def test_ctrl_c_ends_replay_with_130_after_its_summary(cli: Callable[..., Running], tmp_path: Path) -> None:
    path = tmp_path / "long.mrt"
    writer = RecordingWriter(path, RecordingHeader(codec="gzip", markets=("stocks",)), block_bytes=256)
    second = 1_000_000_000
    for i in range(600):  # ten minutes at the recorded pace
        frame = json.dumps([{"ev": "T", "sym": "A", "p": 1.0, "s": 1, "t": 1_750_000_000_000 + i, "q": i}])
        writer.append(1_750_000_000 * second + i * second, "c1", KIND_DATA, frame.encode(), "stocks")
    writer.close()
    proc = cli("replay", str(path), "--format", "jsonl")
    assert json.loads(proc.next_line())["sequence_number"] == 0

    proc.proc.send_signal(signal.SIGINT)
    code, _, err = proc.finish()

    assert code == 130, err
    assert re.search(r"replayed \d+ events", err)


def test_ctrl_c_ends_a_replay_server_with_130(cli: Callable[..., Running], tmp_path: Path) -> None:
    path = tmp_path / "served.mrt"
    RecordingWriter(path, RecordingHeader(codec="gzip", markets=("stocks",))).close()
    proc = cli("replay", str(path), "--serve", "0")
    proc.wait_for(r"serving .* on ws://127\.0\.0\.1:\d+/<market>")

    proc.proc.send_signal(signal.SIGINT)
    code, _, err = proc.finish()

    assert code == 130, err
    assert "served 0 frames" in err


def test_ctrl_c_ends_relay_with_130_and_sigterm_with_0(cli: Callable[..., Running], server: MockMassiveServer) -> None:
    upstream = base_url(server) + "/{market}"
    codes = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        proc = cli("relay", "--port", "0", "--api-key", "right-key", "--upstream-url", upstream)
        proc.wait_for(r"listening on ws://127\.0\.0\.1:\d+/")
        proc.proc.send_signal(signum)
        code, _, err = proc.finish()
        assert "forwarded" in err, err
        codes[signum] = code
    assert codes == {signal.SIGINT: 130, signal.SIGTERM: 0}


def test_the_exit_codes_are_documented() -> None:
    doc = (ROOT / "docs" / "cli.md").read_text()
    for code, meaning in (("0", "done"), ("1", "failure"), ("2", "arguments"), ("3", "cut"), ("130", "Ctrl-C")):
        assert re.search(rf"^\| `{code}` \|.*{meaning}", doc, re.MULTILINE | re.IGNORECASE), code
