"""``massive-rt replay``: print a recording's events (a :class:`~massive_rt.ReplaySource`), or serve it.

``massive-rt replay today.mrt`` prints the recorded events at their recorded pace (``--speed N``:
N times faster; ``--speed max``: as fast as possible) in the ``stream`` command's formats: ``table``,
``jsonl``, or ``csv`` (one header row, then one row per event in the one column set of
:data:`~massive_rt.cli.formats.CSV_COLUMNS` for every event class — trades and quotes side by side,
empty where a class has no such field — so ``pandas.read_csv`` loads it as it is).
``--serve PORT`` instead serves the recording on ``ws://127.0.0.1:PORT/<market>`` with
:meth:`MockMassiveServer.replay <massive_rt.testing.MockMassiveServer.replay>` (any API key
authenticates); it starts when the first client subscribes and ends with the recording.

Threads: events are printed by the adapter's dispatcher; the main thread waits for the end (or
Ctrl-C, SIGTERM) and redraws the progress line when stderr is a terminal.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from pathlib import Path

from ..adapter import RealTimeDataAdapter
from ..recording import ReplaySource
from .console import EXIT_FAILURE, EXIT_OK, PROG, AddParser, Console, Stop, exit_code, port, silence_stdout
from .demo import load_server_class
from .formats import CsvFormat, Format, JsonlFormat, Printer, TableFormat

__all__ = ["register", "run"]

logger = logging.getLogger(__name__)

_TICK = 0.1  # seconds between checks for the end (and progress redraws)


def speed(text: str) -> float | None:
    """An argparse type: a positive speed-up factor, or ``max`` (None: as fast as possible)."""
    if text == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or 'max'") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0 (or 'max')")
    return value


def register(add_parser: AddParser, common: argparse.ArgumentParser) -> None:
    """Add the ``replay`` subcommand (``common``: the options every subcommand accepts)."""
    replay = add_parser(
        "replay",
        parents=[common],
        help="print or serve a recording",
        description="Print a recording's events at the recorded pace, or serve it to clients (--serve).",
    )
    replay.add_argument("file", metavar="FILE", help="the recording (rotated parts follow)")
    replay.add_argument("--speed", type=speed, default=1.0, metavar="N",
                        help="N times the recorded pace (default 1), or 'max' for as fast as possible")  # fmt: skip
    replay.add_argument("--format", choices=("table", "jsonl", "csv"), default="table",
                        help="output format (csv: one header row, the same columns for every event)")  # fmt: skip
    replay.add_argument("--serve", type=port, metavar="PORT",
                        help="serve it on ws://127.0.0.1:PORT/<market> instead (0 picks a free port)")  # fmt: skip


def run(args: argparse.Namespace, console: Console) -> int:
    """Run ``massive-rt replay``; returns the exit code (130 after Ctrl-C)."""
    path = Path(args.file)
    if args.serve is not None:
        return _serve(path, args, console)
    source = ReplaySource(path, speed=args.speed)
    fmt: Format = TableFormat(source.market, ()) if args.format == "table" else (
        JsonlFormat() if args.format == "jsonl" else CsvFormat()
    )  # fmt: skip
    stop = Stop()
    # Recorded "failed" statuses are history, not this replay failing: source.error says that.
    printer = Printer(sys.stdout, fmt, console, stop.set, fatal_on_failure=False, verbose=args.verbose > 0)
    adapter = RealTimeDataAdapter(source, on_event=printer.on_event, dispatch="thread")  # the threads named above
    adapter.on_status(printer.on_status)
    started = time.monotonic()
    with stop.on_signals():
        try:
            printer.start(fmt.header())
            adapter.start()
            while not stop.wait(_TICK) and not source.exhausted:
                if console.live:
                    console.status(f"replaying: {source.stats().records:,} records  {printer.printed:,} events")
        finally:
            printer_closed = printer.closed
            adapter.stop(timeout=5.0, drain=not printer_closed)
            stop.close()
    console.clear_status()
    if printer.broken_pipe:
        silence_stdout()
    end = source.end
    where = "" if end is None or end.complete else f"; {end.reason}, stopped at byte {end.offset} of {end.size}"
    console.message(f"{PROG}: replayed {printer.printed:,} events in {time.monotonic() - started:.1f} s{where}")
    if source.error is not None or printer.error is not None:
        console.message(f"{PROG}: error: {source.error or printer.error}")
        return EXIT_FAILURE
    return exit_code(EXIT_OK, stop.signum)


def _serve(path: Path, args: argparse.Namespace, console: Console) -> int:
    server = load_server_class()(api_keys=None, port=args.serve, name="replay")
    stop = Stop()
    with stop.on_signals():
        try:
            try:
                server.start()
            except OSError as exc:
                console.message(f"{PROG}: error: cannot listen on 127.0.0.1:{args.serve}: {exc.strerror or exc}")
                return EXIT_FAILURE
            handle = server.replay(path, speed=args.speed, wait_for_subscribers=1)
            console.message(f"{PROG}: serving {path} on {server.url('stocks').rsplit('/', 1)[0]}/<market> "
                            "(any API key); it starts when a client subscribes")  # fmt: skip
            while not stop.wait(_TICK) and handle.running:
                if console.live:
                    console.status(f"serving: {handle.records:,} records  {handle.delivered:,} events delivered")
        finally:
            server.close()
            stop.close()
    console.clear_status()
    console.message(f"{PROG}: served {handle.frames:,} frames, {handle.delivered:,} events delivered")
    if handle.error is not None:
        console.message(f"{PROG}: error: {handle.error}")
        return EXIT_FAILURE
    return exit_code(EXIT_OK, stop.signum)
