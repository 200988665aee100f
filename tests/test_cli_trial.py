"""What a new user's trial of the wheel hit, each now one line or one mention: a failed handshake,
a file or port that cannot be used, an unknown channel prefix, the recording's codec, ``--version``
at a narrow terminal, a cut recording replayed, and a missing extra. Subprocesses against servers
and ports on 127.0.0.1, no sleeps."""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from massive_rt.errors import ConfigurationError
from massive_rt.recording import RecordingHeader, RecordingWriter
from massive_rt.recording.fileformat import KIND_DATA
from massive_rt.testing import MockMassiveServer
from tests.test_cli import CLI, ROOT, TIMEOUT, clean_env, run

ZSTD_HINT = "pip install 'massive-rt[record]'"


@pytest.fixture
def server() -> Iterator[MockMassiveServer]:
    with MockMassiveServer(api_keys={"right-key"}, name="trial") as mock:
        yield mock


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 that something is listening on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        yield listener.getsockname()[1]


def blocking(tmp_path: Path, module: str) -> dict[str, str]:
    """An environment in which ``import module`` fails as if it were not installed."""
    blocked = tmp_path / f"no-{module}"
    blocked.mkdir()
    (blocked / f"{module}.py").write_text(
        f'raise ModuleNotFoundError("No module named \'{module}\'", name="{module}")\n', encoding="utf-8"
    )
    env = clean_env()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(blocked), env.get("PYTHONPATH")) if p)
    return env


def run_in(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=TIMEOUT,
                          check=False)  # fmt: skip


def record_demo(path: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = run_in(env or clean_env(), "record", "T.*", "-o", str(path), "--demo", "--duration", "0.5", *extra)
    assert result.returncode == 0, result.stderr
    return result


# ------------------------------------------------------------------- 6: a failed handshake, one line


@pytest.mark.allow_errors(r"HTTP 404", logger="massive_rt.connection")
def test_a_failed_handshake_is_one_line_and_prints_no_table_header(server: MockMassiveServer) -> None:
    base = server.url("stocks").rsplit("/", 1)[0]  # no market path: the server answers 404

    result = run("stream", "T.AAPL", "--url", base, "--api-key", "right-key")

    assert result.returncode == 1
    assert result.stdout == ""  # no "TIME (UTC) SYMBOL ..." header before the failure
    [line] = result.stderr.splitlines()
    assert line.startswith("massive-rt: error: [stocks-1] HTTP 404")


def test_a_refused_key_prints_no_table_header(server: MockMassiveServer) -> None:
    result = run("stream", "T.AAPL", "--url", server.url("stocks"), "--api-key", "wrong-key")

    assert result.returncode == 1
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.allow_errors(r"HTTP 404", logger="massive_rt.connection")
def test_verbose_still_logs_the_failure_the_error_line_reports(server: MockMassiveServer) -> None:
    base = server.url("stocks").rsplit("/", 1)[0]

    result = run("stream", "T.AAPL", "-v", "--url", base, "--api-key", "right-key")

    assert result.returncode == 1
    assert "ERROR massive_rt.connection: [stocks-1] failed: HTTP 404" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("massive-rt: error: [stocks-1] HTTP 404")


def _record(message: str, *args: object, level: int = logging.ERROR, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("massive_rt.connection", level, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    return record


def test_the_failure_filter_keeps_what_no_error_line_reports() -> None:
    from massive_rt.cli.console import FailureEcho

    one_client, pool = FailureEcho(every_failure=True), FailureEcho(every_failure=False)
    failed = _record("[stocks-1] failed: %s", "HTTP 404", connection="stocks-1")

    assert not one_client.filter(failed)  # the command's error line says it
    assert pool.filter(failed)  # a pool replaces the connection: this log line is the only report
    refusal = _record("[stocks-1] server status %s: %s", "auth_failed", "no", level=logging.WARNING,
                      connection="stocks-1")  # fmt: skip
    assert not pool.filter(refusal)  # a refused key is reported by every command
    assert not pool.filter(failed)
    other = _record("[stocks-1] callback raised", connection="stocks-1")
    assert one_client.filter(other)
    cut = _record("cut", level=logging.WARNING, recording_cut="x.mrt")
    assert one_client.filter(cut)
    assert not FailureEcho(every_failure=False, cuts=True).filter(cut)


# ---------------------------------------------------------- 7: files and ports, one line, no traceback


@pytest.mark.parametrize(
    "args",
    [
        ["inspect", "nonexist.mrt"],
        ["replay", "nonexist.mrt"],
        ["record", "T.*", "-o", "/nonexistent-dir/x.mrt", "--demo"],
    ],
    ids=["inspect", "replay", "record"],
)
def test_a_file_that_cannot_be_used_is_one_error_line(args: list[str]) -> None:
    result = run(*args)

    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"massive-rt {args[0]}: error: ")
    assert ("nonexist.mrt" in line) or ("/nonexistent-dir" in line)


@pytest.mark.parametrize("command", ["status", "stream"])
def test_a_status_port_in_use_is_one_error_line(command: str, busy_port: int) -> None:
    port_option = "--port" if command == "status" else "--status-port"

    result = run(command, "T.AAPL", "--demo", port_option, str(busy_port))

    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"massive-rt {command}: error: cannot listen on 127.0.0.1:{busy_port}: Address already in use"
    ]


# ------------------------------------------------------------------ 8: an unknown channel prefix


def test_an_unknown_prefix_is_refused_with_the_flag_that_accepts_it() -> None:
    result = run("stream", "X.AAPL", "--demo")

    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert "--validate-channels warn subscribes it anyway" in line
    assert "validate_channels='warn'" not in line


def test_validate_channels_warn_streams_an_unknown_prefix() -> None:
    result = run("stream", "X.AAPL", "T.AAPL", "--demo", "--validate-channels", "warn", "--limit", "1")

    assert result.returncode == 0, result.stderr
    assert "subscribing anyway" in result.stderr
    assert result.stdout.splitlines()[0].startswith("TIME (UTC)")


def test_the_mode_comes_from_the_flag_then_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from massive_rt.cli.console import channels_from

    def args(mode: str | None) -> argparse.Namespace:
        return argparse.Namespace(channels=["X.AAPL"], validate_channels=mode)

    monkeypatch.delenv("MASSIVE_VALIDATE_CHANNELS", raising=False)
    with pytest.raises(ConfigurationError, match="--validate-channels warn"):
        channels_from(args(None), "stocks")  # type: ignore[arg-type]
    assert channels_from(args("off"), "stocks") == ("X.AAPL",)  # type: ignore[arg-type]
    monkeypatch.setenv("MASSIVE_VALIDATE_CHANNELS", "off")
    from_env = args(None)
    assert channels_from(from_env, "stocks") == ("X.AAPL",)  # type: ignore[arg-type]
    assert from_env.validate_channels == "off"  # what the client is then built with
    with pytest.raises(ConfigurationError, match="--validate-channels warn"):
        channels_from(args("strict"), "stocks")  # type: ignore[arg-type]
    monkeypatch.setenv("MASSIVE_VALIDATE_CHANNELS", "loose")
    with pytest.raises(ConfigurationError, match="MASSIVE_VALIDATE_CHANNELS='loose'"):
        channels_from(args(None), "stocks")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- 9: the codec is said


@pytest.mark.timeout(90)
def test_record_and_inspect_say_the_codec(tmp_path: Path) -> None:
    zstd, gzip = tmp_path / "z.mrt", tmp_path / "g.mrt"

    assert "  codec       zstd\n" in record_demo(zstd).stderr
    recorded = record_demo(gzip, "--codec", "gzip").stderr

    assert "  codec       gzip\n" in recorded  # chosen by the user: no hint
    assert ZSTD_HINT not in recorded
    text = run("inspect", str(zstd))
    assert text.returncode == 0, text.stderr
    assert "codec        zstd\n" in text.stdout
    assert f"{zstd}: whole, zstd," in text.stdout
    as_json = json.loads(run("inspect", str(gzip), "--json").stdout)
    assert as_json["codec"] == "gzip"
    assert [f["codec"] for f in as_json["files"]] == ["gzip"]


@pytest.mark.timeout(90)
def test_without_zstandard_record_and_inspect_hint_the_extra_once(tmp_path: Path) -> None:
    env = blocking(tmp_path, "zstandard")
    path = tmp_path / "r.mrt"

    recorded = record_demo(path, env=env).stderr
    text = run_in(env, "inspect", str(path))
    as_json = run_in(env, "inspect", str(path), "--json")

    assert recorded.count(ZSTD_HINT) == 1
    assert "  codec       gzip  (zstandard is not installed" in recorded
    assert text.returncode == 0, text.stderr
    assert (text.stdout + text.stderr).count(ZSTD_HINT) == 1
    assert "codec        gzip  (zstandard is not installed" in text.stdout
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["codec"] == "gzip"
    assert as_json.stderr.count(ZSTD_HINT) == 1


# -------------------------------------------------------------------------------------- 10: minor


def test_version_is_one_line_at_any_terminal_width() -> None:
    result = run_in({**clean_env(), "COLUMNS": "20"}, "--version")

    assert result.returncode == 0
    assert len(result.stdout.splitlines()) == 1
    assert result.stdout.startswith("massive-rt ")


def test_a_cut_recording_is_reported_once_when_replayed(tmp_path: Path) -> None:
    path = tmp_path / "cut.mrt"
    writer = RecordingWriter(path, RecordingHeader(codec="gzip", markets=("stocks",)), block_bytes=256)
    for i in range(50):
        frame = json.dumps([{"ev": "T", "sym": "A", "p": 1.0, "s": 1, "t": 1_750_000_000_000 + i, "q": i}])
        writer.append(1_750_000_000_000_000_000 + i, "c1", KIND_DATA, frame.encode(), "stocks")
    writer.close()
    with path.open("r+b") as f:  # the end marker and the last block's tail gone, as after a crash
        f.truncate(path.stat().st_size - 20)

    result = run("replay", str(path), "--speed", "max", "--format", "jsonl")

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()  # what came before the cut replays
    assert result.stderr.count("stopped at byte") == 1
    assert "WARNING" not in result.stderr


def test_a_missing_extra_exits_1_naming_it(tmp_path: Path) -> None:
    result = run_in(blocking(tmp_path, "websockets"), "stream", "T.AAPL", "--demo", "--limit", "1")

    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "massive-rt stream: error: the local mock server needs the 'websockets' package (websockets is missing): "
        "pip install 'massive-rt[testing]'"
    ]


def test_the_cli_doc_sends_a_missing_extra_to_exit_1() -> None:
    doc = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    failure_row = next(line for line in doc.splitlines() if line.startswith("| `1` |"))
    assert "missing extra" in failure_row
    assert "file that cannot be opened" in failure_row
