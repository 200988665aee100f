"""Every example runs offline (no key, no network) and receives events; the user-test example passes."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import pytest

from tests.test_cli import ROOT, TIMEOUT, Running, clean_env

EXAMPLES = ROOT / "examples"
SCRIPTS = [
    "quickstart.py",
    "iterate_events.py",
    "pool_many_symbols.py",
    "synthetic_no_key.py",
    "legacy_sync_service.py",
]


def run_example(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True, text=True, env=clean_env(), cwd=ROOT, timeout=TIMEOUT, check=False,
    )  # fmt: skip


def received(output: str) -> int:
    """N from the "received N events" line every example ends with."""
    match = re.search(r"^received (\d+) events", output, re.MULTILINE)
    assert match, output[-2000:]
    return int(match.group(1))


def test_every_example_script_is_run_here() -> None:
    scripts = {p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith(("_", "test_"))}
    assert scripts == set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_runs_offline_and_receives_events(script: str) -> None:
    result = run_example(script, "--duration", "2")

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert received(result.stdout) > 0


def test_legacy_service_serves_health_and_stops_on_sigterm() -> None:
    proc = Running(sys.executable, str(EXAMPLES / "legacy_sync_service.py"), "--duration", "60")
    try:
        proc.wait_for(r"^health: http://127\.0\.0\.1:\d+/health$", stream="stdout")
        health = proc.wait_for(r"^GET /health -> (\d+) (.*)$", stream="stdout")
        assert health.group(1) == "200"
        assert '"status": "ok"' in health.group(2)

        proc.proc.send_signal(signal.SIGTERM)  # long before --duration
        code, out, err = proc.finish()
    finally:
        proc.close()
    assert code == 0, err
    assert received(out) > 0


def test_the_user_test_example_passes() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "examples/test_my_service.py", "-p", "no:cacheprovider", "-q"],
        capture_output=True, text=True, env=clean_env(), cwd=ROOT, timeout=TIMEOUT, check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b3 passed\b", result.stdout)
