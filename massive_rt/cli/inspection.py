"""``massive-rt inspect``: what a recording holds and whether it is whole (``recording.summary.summarize``).

Prints the time range, events per ``ev`` code and per symbol, the connections, gaps and drops, the
codec (with a ``pip install 'massive-rt[record]'`` hint when a gzip recording is read where
zstandard is missing), and each file's health: ``whole``, ``cut at byte N of M`` (a crash mid-write: everything before N
replays) or ``corrupt at byte N``, and one ``health`` line: ``ok``, ``cut: FILE at byte N of M``
or ``CORRUPT: FILE at byte N``. ``--json`` prints the same as one JSON object.

Exit codes (docs/cli.md): 0 every file whole, 1 a file corrupt (or not a recording), 3 a file cut
(readable up to the offset reported, but it did not end cleanly: a crash, or still being written).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from .._json import dumps_str
from ..recording.summary import RecordingSummary, summarize
from .console import EXIT_FAILURE, EXIT_OK, PROG, AddParser, Console
from .record import ZSTD_HINT, codec_line

__all__ = ["EXIT_CUT", "register", "report", "run"]

#: ``inspect``'s exit code for a recording that reads up to a cut (no end marker) but is not corrupt.
EXIT_CUT = 3

logger = logging.getLogger(__name__)

_TOP_SYMBOLS = 20


def register(add_parser: AddParser, common: argparse.ArgumentParser) -> None:
    """Add the ``inspect`` subcommand (``common``: the options every subcommand accepts)."""
    inspect = add_parser(
        "inspect",
        parents=[common],
        help="summarize a recording and check its health",
        description="Time range, events per ev code and symbol, connections, gaps, drops and file health.",
    )
    inspect.add_argument("file", metavar="FILE", help="the recording (rotated parts follow)")
    inspect.add_argument("--json", action="store_true", help="one JSON object instead of the text report")
    inspect.add_argument("--symbols", type=int, default=_TOP_SYMBOLS, metavar="N",
                         help=f"symbols listed (most events first; default {_TOP_SYMBOLS})")  # fmt: skip


def _utc(ns: int | None) -> str:
    if ns is None:
        return "-"
    seconds, rest = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + f".{rest // 1_000_000:03d} UTC"


def report(summary: RecordingSummary, symbols: int = _TOP_SYMBOLS) -> str:
    """The text report of ``summary``."""
    span = 0.0 if summary.first_ns is None or summary.last_ns is None else (summary.last_ns - summary.first_ns) / 1e9
    lines = [
        f"time range   {_utc(summary.first_ns)} .. {_utc(summary.last_ns)}  ({span:.1f} s)",
        f"records      {summary.records:,}",
        f"events       {summary.events:,}",
    ]
    lines += [f"  {ev:<10} {n:>12,}" for ev, n in summary.by_ev.items()]
    if summary.by_symbol:
        lines.append(f"symbols      {len(summary.by_symbol):,} (ev.symbol, most events first)")
        lines += [f"  {ev}.{sym:<20} {n:>10,}" for (ev, sym), n in list(summary.by_symbol.items())[:symbols]]
    lines.append(f"connections  {len(summary.connections)}")
    lines += [
        f"  {c.name} ({c.market or '?'}): {c.frames:,} frames, {c.events:,} events, {c.statuses:,} statuses"
        for c in summary.connections
    ]
    gaps = ", ".join(f"{conn} {seconds:.1f} s" for conn, seconds in summary.gaps) or "none"
    lines.append(f"gaps         {len(summary.gaps)}  ({gaps})")
    lines.append(f"disconnects  {summary.disconnects}")
    lines.append(f"dropped      {summary.dropped:,} events (overflow policy), "
                 f"{summary.recorder_dropped:,} items (recorder buffer)")  # fmt: skip
    lines.append(f"codec        {codec_line(summary.codec) if summary.codec else '-'}")
    lines.append("files")
    for f in summary.files:
        detail = f"  ({f.detail})" if f.detail else ""
        lines.append(f"  {f.path}: {f.describe()}, {f.codec}, {f.records:,} records, {f.size:,} bytes{detail}")
    lines.append(f"health       {_health(summary)}")
    return "\n".join(lines) + "\n"


def _health(summary: RecordingSummary) -> str:
    if summary.health == "ok":
        return "ok"
    if summary.health == "corrupt":
        bad = next(f for f in summary.files if f.state == "corrupt")
        return f"CORRUPT: {bad.path} at byte {bad.offset} ({bad.detail})"
    cut = [f for f in summary.files if f.state == "cut"]
    where = "; ".join(f"{f.path} at byte {f.offset} of {f.size}" for f in cut)
    return f"cut: {where} (no end marker: everything before the offset replays)"


def run(args: argparse.Namespace, console: Console) -> int:
    """Run ``massive-rt inspect``; returns the exit code (0 whole, 1 corrupt, :data:`EXIT_CUT` cut)."""

    def progress(records: int, at_ns: int) -> None:
        console.status(f"inspecting: {records:,} records  at {_utc(at_ns)}")

    summary = summarize(Path(args.file), progress if console.live else None)
    console.clear_status()
    sys.stdout.write(dumps_str(summary.to_dict()) + "\n" if args.json else report(summary, args.symbols))
    sys.stdout.flush()
    if args.json and codec_line(summary.codec) != summary.codec:  # the text report says it on its codec line
        console.message(f"{PROG}: note: {ZSTD_HINT}")
    if not summary.healthy:
        corrupt = next(f for f in summary.files if f.state == "corrupt")
        console.message(f"{PROG}: error: {corrupt.path} is corrupt at byte {corrupt.offset}: {corrupt.detail}")
        return EXIT_FAILURE
    if not summary.complete:
        cut = next(f for f in summary.files if f.state == "cut")
        console.message(f"{PROG}: warning: {cut.path} was cut at byte {cut.offset} of {cut.size}: {cut.detail}")
        return EXIT_CUT
    return EXIT_OK
