"""Keep benchmarks/soak.py (run by ``make soak``, not by ``make test``) working: a small run of it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parents[2] / "benchmarks" / "soak.py"


def run_soak(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SOAK), *args], capture_output=True, text=True, timeout=120, check=False,
        cwd=SOAK.parent.parent,
    )  # fmt: skip


def row(output: str, name: str) -> str:
    match = re.search(rf"^{re.escape(name)}\s+(.+)$", output, re.MULTILINE)
    assert match, f"no {name!r} row in:\n{output}"
    return match.group(1)


def number(text: str) -> int:
    return int(text.split()[0].replace(",", ""))


@pytest.mark.slow
def test_small_soak_holds_every_invariant() -> None:
    result = run_soak("--events", "50000", "--every", "10000")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "OK: every invariant held" in out
    published, delivered = number(row(out, "events")), number(row(out, "delivered"))
    dropped = number(row(out, "dropped"))
    assert published == 50_000
    assert delivered + dropped == published
    assert dropped > 0  # the bursts into a stalled handler really exercised the drop accounting
    assert row(out, "reconnects").startswith("4 (4 forced)")
    start, end = (int(n) for n in row(out, "threads start/end").split(" / "))
    assert start == end


@pytest.mark.slow
def test_a_failed_invariant_exits_non_zero() -> None:
    # An impossible memory budget: the run itself is fine, the check must fail and say why.
    result = run_soak("--events", "3000", "--every", "1000", "--max-rss-growth-mb", "-1")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL: RSS grew" in result.stdout
    assert "OK: every invariant held" not in result.stdout


@pytest.mark.slow
def test_small_soak_with_backfill_keeps_the_ledger_and_refills_every_lost_trade() -> None:
    result = run_soak("--events", "30000", "--every", "10000", "--backfill", "--lost", "200")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "OK: every invariant held" in out
    published, delivered = number(row(out, "events")), number(row(out, "delivered"))
    dropped, held = number(row(out, "dropped")), number(row(out, "hold-dropped"))
    assert published == 30_000
    assert delivered + dropped + held == published
    assert number(row(out, "lost in flight")) == 400
    backfilled = row(out, "backfilled")
    assert backfilled.startswith("400 lost + ")
    assert " in 2 gaps" in backfilled
