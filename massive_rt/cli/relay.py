"""``massive-rt relay``: run a :class:`~massive_rt.relay.MassiveRelay` from the command line.

The relay holds the upstream Massive connections (one per asset class per account) and serves any
number of local clients over Massive's own protocol until Ctrl-C, SIGTERM or ``--duration``.

The subcommand has its own parser (:func:`build_parser`): ``massive-rt`` passes everything after
``relay`` to :func:`main`, which ``python -m massive_rt.relay`` (:func:`massive_rt.relay.main`)
runs too. :func:`run_relay` is the same without the argument parsing. The relay needs the
``websockets`` package (the ``relay`` extra): :mod:`massive_rt.relay` is imported only when a relay
starts, so the ``massive-rt`` command itself runs on a base install.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence

from ..enums import Feed, resolve_feed_host
from ..errors import ConfigurationError
from .console import AddParser, CommandFailure, Console, exit_code, handling_signals, package_logging, write_stderr
from .status import page_for

__all__ = ["DEFAULT_PORT", "build_parser", "main", "register", "run", "run_relay"]

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8766


def register(add_parser: AddParser, common: argparse.ArgumentParser) -> None:
    """Add the ``relay`` subcommand, which passes its arguments through to :func:`main`."""
    relay = add_parser("relay", add_help=False, prefix_chars="+",  # its options: build_parser() below
                       help="share Massive connections with many local clients (relay --help)")  # fmt: skip
    relay.add_argument("relay_args", nargs=argparse.REMAINDER)


def run(args: argparse.Namespace, console: Console) -> int:
    """Run ``massive-rt relay ARGS...``; returns the exit code.

    Raises:
        CommandFailure: ``websockets`` is not installed (the message names the extra to install).
    """
    try:
        importlib.import_module("..relay", __package__)
    except ModuleNotFoundError as exc:
        raise CommandFailure(f"the relay needs the 'websockets' package ({exc.name} is missing): "
                         "pip install 'massive-rt[relay]'") from None  # fmt: skip
    return main(args.relay_args, message=console.message)


def build_parser(prog: str = "massive-rt relay") -> argparse.ArgumentParser:
    """The argument parser of ``massive-rt relay``."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Hold the upstream Massive connections (one per asset class per account) and serve any number "
        "of local clients over Massive's own protocol, until Ctrl-C.",
        epilog="clients connect to ws://HOST:PORT/<market> (stocks, crypto ...) with one of the --keys.",
    )
    parser.add_argument("--api-key", help="upstream Massive API key (default: $MASSIVE_API_KEY)")
    parser.add_argument("--feed", default="realtime", help="upstream feed: realtime (default), delayed, or host[:port]")
    parser.add_argument("--upstream-url", metavar="URL",
                        help="upstream endpoint, '{market}' replaced by the market path (e.g. ws://127.0.0.1:8765/"
                        "{market}); wins over --feed")  # fmt: skip
    parser.add_argument("--max-connections", type=int, default=1, metavar="N",
                        help="upstream connections the account allows (default 1)")  # fmt: skip
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free)")
    parser.add_argument("--keys", nargs="+", metavar="KEY",
                        help="relay-local keys clients authenticate with (default: any key)")  # fmt: skip
    parser.add_argument("--buffer", type=int, default=10_000, metavar="N",
                        help="events buffered per client before it is dropped as slow (default 10000)")  # fmt: skip
    parser.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: run until Ctrl-C)")
    parser.add_argument("--status-port", type=int, metavar="PORT",
                        help="serve the relay's live status page (and /metrics with the 'metrics' extra) on "
                        "127.0.0.1:PORT (0: any free port)")  # fmt: skip
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    return parser


def run_relay(
    *,
    api_key: str | None,
    feed: Feed | str = Feed.REALTIME,
    upstream_url: str | None = None,
    max_connections: int = 1,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    keys: Iterable[str] | None = None,
    consumer_buffer: int = 10_000,
    duration: float | None = None,
    status_port: int | None = None,
    stop: threading.Event | None = None,
    message: Callable[[str], None] = write_stderr,
    prog: str = "massive-rt relay",
) -> int:
    """Run a relay until ``stop`` is set, ``duration`` passes, or SIGINT/SIGTERM (main thread only).

    With ``status_port``, the relay's status page (its upstream connections) and, with the
    ``metrics`` extra, its Prometheus metrics (``/metrics``: upstream connections, consumers,
    fan-out drops) are served on 127.0.0.1:``status_port`` while it runs.

    Returns the exit code: 0 after a normal stop (SIGTERM included), 130 after SIGINT (Ctrl-C),
    1 when the relay or its page could not start.
    """
    from ..relay import MassiveRelay  # needs websockets: imported when a relay starts

    stop = stop if stop is not None else threading.Event()
    try:
        relay = MassiveRelay(
            api_key=api_key, max_connections=max_connections, feed=feed, url=upstream_url, host=host, port=port,
            api_keys=keys, consumer_buffer=consumer_buffer,
        )  # fmt: skip
    except ConfigurationError as exc:
        message(f"{prog}: error: {exc.message}")
        return 2
    signals: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        signals.append(signum)
        stop.set()

    with handling_signals(on_signal):
        try:
            try:
                relay.start()
            except OSError as exc:
                message(f"{prog}: error: cannot listen on {host}:{port}: {exc.strerror or exc}")
                return 1
            upstream = upstream_url or f"wss://{resolve_feed_host(feed)}/{{market}}"
            message(f"{prog}: listening on {relay.url('{market}')} (upstream {upstream}, "
                    f"{max_connections} connection(s) allowed)")  # fmt: skip
            message(f"{prog}: keys: {', '.join(keys) if keys else 'any'}; Ctrl-C to stop")
            started = time.monotonic()
            try:
                with page_for(relay, status_port, message):
                    stop.wait(duration)
            except CommandFailure as exc:  # the status port is in use
                message(f"{prog}: error: status page: {exc}")
                return 1
            relay.stop()  # first: the counters are final once every writer is joined
            stats = relay.stats()
            message(f"{prog}: forwarded {stats.events_in:,} upstream events, sent {stats.events_sent:,} to "
                    f"{len(stats.consumers)} client(s) in {time.monotonic() - started:.1f} s "
                    f"({stats.events_dropped:,} dropped, {stats.slow_consumers} slow consumer(s))")  # fmt: skip
            return exit_code(0, signals[0] if signals else None)
        finally:
            relay.stop()


def main(argv: Sequence[str] | None = None, *, message: Callable[[str], None] | None = None,
         stop: threading.Event | None = None) -> int:  # fmt: skip
    """``massive-rt relay [options]``: parse ``argv`` (default ``sys.argv[1:]``) and run the relay.

    Returns the exit code (0 stopped normally, 1 cannot start, 2 bad arguments).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return int(exc.code or 0)
    if (args.max_connections < 1 or args.buffer < 1 or not 0 <= args.port <= 65535
            or not 0 <= (args.status_port or 0) <= 65535):  # fmt: skip
        (message or write_stderr)(f"{parser.prog}: error: --max-connections and --buffer must be >= 1, "
                                  "--port and --status-port 0-65535")  # fmt: skip
        return 2

    def start() -> int:
        return run_relay(
            api_key=args.api_key if args.api_key is not None else os.environ.get("MASSIVE_API_KEY"),
            feed=args.feed, upstream_url=args.upstream_url, max_connections=args.max_connections, host=args.host,
            port=args.port, keys=args.keys, consumer_buffer=args.buffer, duration=args.duration,
            status_port=args.status_port, stop=stop,
            message=message or write_stderr, prog=parser.prog,
        )  # fmt: skip

    if logging.getLogger("massive_rt").handlers:  # under the massive-rt command, which installs its own
        return start()
    with package_logging(logging.StreamHandler(sys.stderr), args.verbose, parser.prog):
        return start()
