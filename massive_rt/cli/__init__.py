"""The ``massive-rt`` command: ``stream``, ``serve``, ``bench``, ``relay``, ``record``, ``replay`` and
``inspect``. The only package that prints.

* ``massive-rt stream T.AAPL Q.AAPL AM.*`` prints live events from Massive when ``MASSIVE_API_KEY``
  (or ``--api-key``) is set; without a key (or with ``--demo``), from a synthetic market played by
  a local mock server (:mod:`.stream`).
* ``massive-rt serve`` runs that mock server alone, for your own programs to connect to (:mod:`.serve`).
* ``massive-rt bench`` is a quick loopback throughput check; the real harness is ``benchmarks/`` (:mod:`.bench`).
* ``massive-rt relay`` shares Massive connections with many local clients (:mod:`.relay`).
* ``massive-rt record`` writes channels to a recording, ``massive-rt replay`` prints or serves one,
  ``massive-rt inspect`` summarizes one and checks its health (:mod:`.record`, :mod:`.replay`,
  :mod:`.inspection`).
* ``massive-rt status`` serves the live status page of a stream; ``stream --status-port`` too (:mod:`.status`).

Events go to stdout (:mod:`.formats`); everything else goes to stderr through a
:class:`~.console.Console`, which also owns the live status line when stderr is a terminal.

Exit codes (docs/cli.md): 0 done (including SIGTERM and a closed pipe), 1 runtime failure (refused
key, port in use, a corrupt recording ...), 2 bad arguments, 3 ``inspect`` found a cut recording,
130 stopped by Ctrl-C (SIGINT; after the same clean stop and summary as SIGTERM).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from .. import __version__, speedups
from . import bench, inspection, record, relay, replay, serve, status, stream
from .console import EXIT_INTERRUPTED, PROG, Console, ConsoleHandler, FailureEcho, error_exit, package_logging

# The output formats, importable from here as before the CLI became a package.
from .formats import CSV_COLUMNS as CSV_COLUMNS
from .formats import CsvFormat as CsvFormat
from .formats import JsonlFormat as JsonlFormat
from .formats import TableFormat as TableFormat

__all__ = ["main"]

logger = logging.getLogger(__name__)

#: A command's run function: the parsed arguments and the console in, the exit code out.
Command = Callable[[argparse.Namespace, Console], int]

_COMMANDS: dict[str, Command] = {
    "stream": stream.run, "serve": serve.run, "bench": bench.run, "relay": relay.run, "record": record.run,
    "replay": replay.run, "inspect": inspection.run, "status": status.run,
}  # fmt: skip


#: The commands that print a connection's final failure on their own error line (on one client;
#: a pool replaces a failed connection, so its ``failed:`` log line is the only report).
_REPORT_FAILURES = ("stream", "status", "record")


class _Version(argparse.Action):
    """``--version``: the line as it is (argparse's own action wraps it at the terminal's width)."""

    def __init__(self, option_strings: Sequence[str], version: str, dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str | None = None) -> None:  # fmt: skip
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)
        self.version = version

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:  # fmt: skip
        sys.stdout.write(self.version + "\n")
        sys.stdout.flush()
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``massive-rt``."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Real-time market data from Massive (formerly Polygon.io), threaded and synchronous.",
        epilog="Without MASSIVE_API_KEY, 'stream' plays a synthetic market through a local mock server.",
    )
    parser.add_argument("--version", action=_Version, version=f"{PROG} {__version__} (accelerator: {speedups.STATUS})",
                        help="show the version and the accelerator's status, then exit")  # fmt: skip
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    # -v after the command too; SUPPRESS keeps a subcommand from resetting the count given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    stream.register(commands.add_parser, common)
    serve.register(commands.add_parser, common)
    bench.register(commands.add_parser, common)
    relay.register(commands.add_parser, common)
    record.register(commands.add_parser, common)
    replay.register(commands.add_parser, common)
    inspection.register(commands.add_parser, common)
    status.register(commands.add_parser, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``massive-rt`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    console = Console(sys.stderr, sys.stdout)
    command = _COMMANDS[args.command]
    handler = ConsoleHandler(console)
    if not args.verbose:  # the command's own error line says it, with what to check
        every_failure = args.command in _REPORT_FAILURES and getattr(args, "pool", None) is None
        handler.addFilter(FailureEcho(every_failure, cuts=args.command == "replay"))
    with package_logging(handler, args.verbose, PROG):
        try:
            return command(args, console)
        except KeyboardInterrupt:  # only before the signal handlers are installed
            return EXIT_INTERRUPTED
        except Exception as exc:  # every command's failures end here, on one line
            ending = error_exit(args.command, exc)
            if ending is None:
                raise
            console.clear_status()
            console.message(ending[0])
            return ending[1]
