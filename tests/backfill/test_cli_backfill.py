"""``massive-rt stream --demo --backfill --drop-every S``: the local server drops the connection and the
gaps are refilled from the demo's local REST mock, each trade printed once, in order per symbol."""

from __future__ import annotations

import json
import re
from collections import defaultdict

import pytest

from tests.test_cli import run


@pytest.mark.timeout(90)
def test_stream_demo_backfill_refills_forced_drops() -> None:
    result = run("stream", "T.AAPL", "T.MSFT", "--demo", "--backfill", "--drop-every", "1.5", "--duration", "6",
                 "--format", "jsonl", "--seed", "7", timeout=60)  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert "--backfill: REST history from a local mock at http://127.0.0.1:" in result.stderr
    done = re.findall(r"backfill_done: backfilled (\d+) event\(s\) for 2 symbol\(s\)", result.stderr)
    assert done, result.stderr
    assert "backfilling it over REST" in result.stderr
    assert "if it matters" not in result.stderr  # no advice to backfill while the backfill runs
    by_symbol: dict[str, list[int]] = defaultdict(list)
    origins: set[str] = set()
    for line in result.stdout.splitlines():
        event = json.loads(line)
        by_symbol[event["symbol"]].append(event["sequence_number"])
        origins.add(event["origin"])
    if any(int(n) for n in done):
        assert origins == {"live", "rest"}
    assert set(by_symbol) == {"AAPL", "MSFT"}
    for symbol, sequences in by_symbol.items():
        assert sequences == sorted(set(sequences)), f"{symbol}: a trade twice or out of order"


def test_drop_every_without_the_demo_is_a_usage_error() -> None:
    result = run("stream", "T.AAPL", "--api-key", "k", "--drop-every", "1")
    assert result.returncode == 2
    assert "--drop-every" in result.stderr
