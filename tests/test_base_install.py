"""A base install (websocket-client and attrs, no extras): what works without ``websockets``, and what
says which extra to install instead of failing with a bare ``No module named 'websockets'``.

Each test runs a fresh interpreter whose ``websockets`` cannot be imported: a directory on
``PYTHONPATH`` (searched before site-packages) holds a ``websockets`` module that raises the very
error a missing package raises.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.test_cli import ROOT, TIMEOUT, clean_env

HINT = "pip install 'massive-rt[testing]'"


@pytest.fixture
def no_websockets(tmp_path: Path) -> dict[str, str]:
    """An environment for subprocesses in which ``import websockets`` fails as if not installed."""
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "websockets.py").write_text(
        'raise ModuleNotFoundError("No module named \'websockets\'", name="websockets")\n', encoding="utf-8"
    )
    env = clean_env()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(blocked), env.get("PYTHONPATH")) if p)
    probe = subprocess.run(
        [sys.executable, "-c", "import websockets.sync.server"],
        capture_output=True, text=True, env=env, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    assert probe.returncode == 1
    assert "ModuleNotFoundError: No module named 'websockets'" in probe.stderr
    return env


def test_the_synthetic_example_runs_on_a_base_install(no_websockets: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "synthetic_no_key.py"), "--duration", "1"],
        capture_output=True, text=True, env=no_websockets, cwd=ROOT, timeout=TIMEOUT, check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "source: SyntheticSource(" in result.stdout
    assert "trade " in result.stdout
    events = int(result.stdout.rsplit("received ", 1)[1].split()[0])
    assert events > 0


def test_the_massive_server_fixture_without_websockets_names_the_extra_to_install(
    no_websockets: dict[str, str], tmp_path: Path
) -> None:
    test_file = tmp_path / "test_uses_fixture.py"
    test_file.write_text(
        textwrap.dedent(
            """
            def test_needs_the_mock_server(massive_server):
                pass
            """
        ),
        encoding="utf-8",
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(test_file), "-p", "no:cacheprovider", "-p", "no:randomly", "-q"],
        capture_output=True, text=True, env=no_websockets, cwd=tmp_path, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr

    assert result.returncode == 1, output  # the test errored in its setup; pytest itself ran
    assert "1 error" in output, output
    errors = re.findall(r"^E\s+(ModuleNotFoundError: .*)$", output, re.MULTILINE)
    assert errors, output
    assert errors[-1] == f"ModuleNotFoundError: massive_rt.testing needs the 'websockets' package: {HINT}", output


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        (
            "from massive_rt.testing import MockMassiveServer",
            f"massive_rt.testing needs the 'websockets' package: {HINT}",
        ),
        (
            "from massive_rt.relay import MassiveRelay",
            "massive_rt.relay needs the 'websockets' package: pip install 'massive-rt[relay]'",
        ),
    ],
    ids=["testing", "relay"],
)
def test_importing_a_module_that_needs_websockets_names_the_extra_to_install(
    no_websockets: dict[str, str], statement: str, message: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", statement], capture_output=True, text=True, env=no_websockets, timeout=TIMEOUT,
        check=False,
    )  # fmt: skip

    assert result.returncode == 1
    assert result.stderr.rstrip().splitlines()[-1] == f"ModuleNotFoundError: {message}"


def test_recording_without_zstandard_falls_back_to_gzip_and_replays(tmp_path: Path) -> None:
    """``massive-rt[record]`` brings zstandard; without it a recording is gzip and replays the same."""
    blocked = tmp_path / "no-zstd"
    blocked.mkdir()
    (blocked / "zstandard.py").write_text(
        'raise ModuleNotFoundError("No module named \'zstandard\'", name="zstandard")\n', encoding="utf-8"
    )
    env = clean_env()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(blocked), env.get("PYTHONPATH")) if p)
    script = textwrap.dedent(f"""
        import massive_rt as mrt
        from massive_rt.recording import RecordingReader

        path = {str(tmp_path / "s.mrt")!r}
        source = mrt.SyntheticSource(["T.AAPL"], rate=None, seed=3)
        recorder = mrt.Recorder(source, path).start()
        live = []
        with source:
            while len(live) < 50:
                live.extend(source.drain())
        recorder.stop()
        assert RecordingReader(path).header.codec == "gzip"
        with mrt.ReplaySource(path, speed=None) as replay:
            again = [replay.get(timeout=10) for _ in range(len(live))]
        assert [e for e in again if e.event_type != "status"] == [e for e in live if e.event_type != "status"]
        try:
            mrt.Recorder(mrt.SyntheticSource(["T.AAPL"]), path + ".2", codec="zstd")
        except mrt.ConfigurationError as exc:
            print("zstd refused:", exc)
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT,
                            timeout=TIMEOUT, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "codec='zstd' needs zstandard: pip install 'massive-rt[record]'" in result.stdout
    assert result.stdout.rstrip().endswith("ok")


@pytest.mark.parametrize("blocked_module", ["urllib3", "massive"])
def test_rest_without_its_extra_names_the_extra(tmp_path: Path, blocked_module: str) -> None:
    """A base install has neither the official client nor urllib3 (which history.py imports first)."""
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    error = f'raise ModuleNotFoundError("No module named \'{blocked_module}\'", name="{blocked_module}")\n'
    (blocked / f"{blocked_module}.py").write_text(error, encoding="utf-8")
    env = clean_env()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(blocked), env.get("PYTHONPATH")) if p)
    result = subprocess.run([sys.executable, "-c", "from massive_rt.rest import RestHistory"], capture_output=True,
                            text=True, env=env, cwd=ROOT, timeout=TIMEOUT, check=False)  # fmt: skip
    # history.py imports urllib3 first, so on an install without it (make test-min) urllib3 is what is named.
    missing = blocked_module if importlib.util.find_spec("urllib3") is not None else "urllib3"
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last == (f"ModuleNotFoundError: massive_rt.rest needs the official 'massive' package ({missing} "
                    "is missing): pip install 'massive-rt[rest]'")  # fmt: skip
