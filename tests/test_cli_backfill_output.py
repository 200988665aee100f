"""What ``massive-rt stream --backfill`` prints: a backfilled event says so in every format, and a gap
is announced as being backfilled, not as something to backfill (pure formatting, no server)."""

from __future__ import annotations

import csv
import io
import json

import pytest

from massive_rt import EquityTrade, Market, StatusMessage
from massive_rt.cli import CSV_COLUMNS, Console, CsvFormat, JsonlFormat, TableFormat
from massive_rt.cli.formats import Printer
from massive_rt.models import REST, with_origin


def trades() -> tuple[EquityTrade, EquityTrade]:
    fields = {"event_type": "T", "symbol": "AAPL", "price": 190.5, "size": 10, "timestamp": 1_700_000_000_000,
              "sequence_number": 7, "received_at_ns": 1, "connection": "stocks-1"}  # fmt: skip
    return EquityTrade(**fields), with_origin(EquityTrade(**fields), REST)  # type: ignore[arg-type]


def test_jsonl_and_csv_carry_the_origin_of_every_event() -> None:
    live, backfilled = trades()
    jsonl = JsonlFormat()
    assert [json.loads(jsonl.format(e))["origin"] for e in (live, backfilled)] == ["live", "rest"]
    assert CSV_COLUMNS[-1] == "origin"
    fmt = CsvFormat()
    rows = list(csv.reader(io.StringIO(fmt.header() + fmt.format(live) + fmt.format(backfilled))))  # type: ignore[operator]
    assert [dict(zip(rows[0], row, strict=True))["origin"] for row in rows[1:]] == ["live", "rest"]


def test_the_table_marks_a_backfilled_event_and_only_it() -> None:
    live, backfilled = trades()
    table = TableFormat(Market.STOCKS, ["T.AAPL"])
    assert "[rest]" not in table.format(live)
    line = table.format(backfilled)
    assert "[rest]" in line
    assert "AAPL" in line
    assert "190.5" in line


@pytest.mark.parametrize(("backfill", "expected", "unexpected"), [
    (True, "2.0 s gap; backfilling it over REST", "if it matters"),
    (False, "2.0 s gap (backfill it over REST if it matters: --backfill)", "backfilling"),
])  # fmt: skip
def test_a_gap_is_announced_as_being_backfilled_only_with_a_backfill(
    backfill: bool, expected: str, unexpected: str
) -> None:
    err, out = io.StringIO(), io.StringIO()
    printer = Printer(out, JsonlFormat(), Console(err, out), lambda: None, backfill=backfill)
    printer.on_status(StatusMessage(status="gap", gap_start_ns=1_000_000_000, gap_end_ns=3_000_000_000,
                                    connection="stocks-1", message="data resumed after a disconnect"))  # fmt: skip
    said = err.getvalue()
    assert "[stocks-1] data resumed after a " + expected in said
    assert unexpected not in said
