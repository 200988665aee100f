"""``massive-rt stream``: print live events from Massive, or from a synthetic market with no API key.

``massive-rt stream T.AAPL Q.AAPL AM.*`` streams from Massive when ``MASSIVE_API_KEY`` (or
``--api-key``) is set; without a key (or with ``--demo``) it starts a local
:class:`~massive_rt.testing.MockMassiveServer` streaming a :class:`~massive_rt.synthetic.SyntheticMarket`
and connects to it through the whole stack: client (or pool) → adapter → printer.

Threads: events are formatted and written to stdout by the adapter's dispatcher thread (the
:class:`~massive_rt.cli.formats.Printer` is an adapter handler). The main thread only waits for the
stop condition (Ctrl-C, SIGTERM, ``--duration``, ``--limit``) and redraws the status line.
"""

from __future__ import annotations

import argparse
import collections
import logging
import math
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs

from ..adapter import RealTimeDataAdapter
from ..backfill import Backfill
from ..config import ClientConfig
from ..connection import MassiveWebSocketClient
from ..enums import ConnectionState, Market
from ..pool import ConnectionPool
from .console import (
    EXIT_FAILURE,
    EXIT_OK,
    PROG,
    AddParser,
    CommandFailure,
    Console,
    Stop,
    UsageError,
    add_channel_options,
    channels_from,
    exit_code,
    failure_line,
    positive,
    silence_stdout,
    wait,
)
from .demo import DEFAULT_SPEED, DEMO_KEY, api_key_from, demo_market, load_server_class
from .formats import CsvFormat, Format, JsonlFormat, Printer, TableFormat
from .status import page_for

if TYPE_CHECKING:
    from ..testing.rest import MockMassiveREST
    from ..testing.server import MockMassiveServer

__all__ = ["register", "run"]

logger = logging.getLogger(__name__)


def register(add_parser: AddParser, common: argparse.ArgumentParser) -> None:
    """Add the ``stream`` subcommand (``common``: the options every subcommand accepts)."""
    stream = add_parser(
        "stream",
        parents=[common],
        help="print live events",
        description="Print live events from Massive, or from a synthetic market with no API key.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  massive-rt stream T.AAPL Q.AAPL 'AM.*'                    # no key: the synthetic market\n"
        "  massive-rt stream 'XT.*' --market crypto --format jsonl --limit 100\n"
        "  MASSIVE_API_KEY=... massive-rt stream 'T.*' --pool 2      # Massive, over 2 connections",
    )
    add_channel_options(stream)
    stream.add_argument("--market", default="stocks", help="stocks (default), options, forex, crypto, indices, futures")
    stream.add_argument("--feed", default="realtime", help="realtime (default), delayed, or a host[:port]")
    stream.add_argument("--url", help="full WebSocket URL, e.g. ws://127.0.0.1:8765/stocks (wins over --feed)")
    stream.add_argument("--api-key", help="Massive API key (default: $MASSIVE_API_KEY)")
    stream.add_argument("--demo", action="store_true", help="stream the synthetic market even with an API key")
    stream.add_argument("--format", choices=("table", "jsonl", "csv"), default="table", help="output format")
    stream.add_argument("--duration", type=positive(float), metavar="S", help="stop after S seconds")
    stream.add_argument("--limit", type=positive(int), metavar="N", help="stop after N events")
    stream.add_argument("--pool", type=positive(int), metavar="N", help="spread the channels over N connections")
    stream.add_argument("--rate", type=positive(float), default=200.0, metavar="R",
                        help="demo: events per second generated (default 200)")  # fmt: skip
    stream.add_argument("--speed", type=positive(float), default=DEFAULT_SPEED, metavar="X",
                        help=f"demo: simulated clock speed-up (default {DEFAULT_SPEED:g}: a minute bar every "
                        f"{60 / DEFAULT_SPEED:g} s; 1 = real time)")  # fmt: skip
    stream.add_argument("--seed", type=int, help="demo: random seed (same seed, same market)")
    stream.add_argument("--backfill", action="store_true",
                        help="refill each reconnect's gap over REST (explicit tickers; MASSIVE_REST_URL or Massive's; "
                        "the demo serves REST from its local mock) — needs 'massive-rt[rest]'")  # fmt: skip
    stream.add_argument("--drop-every", type=positive(float), metavar="S",
                        help="demo: the local server drops its connections every S s (see --backfill)")  # fmt: skip
    stream.add_argument("--status-port", type=int, metavar="PORT",
                        help="serve the live status page on 127.0.0.1:PORT (0: any free port)")  # fmt: skip


@attrs.define
class _Meter:
    """Events per second between status refreshes."""

    printed: int = 0
    at: float = attrs.Factory(time.monotonic)

    def rate(self, printed: int) -> float:
        now = time.monotonic()
        value = (printed - self.printed) / max(now - self.at, 1e-9)
        self.printed, self.at = printed, now
        return value


def _source_health(source: MassiveWebSocketClient | ConnectionPool) -> tuple[str, int, int]:
    """(state, dropped events, reconnects) of a client or a pool."""
    if isinstance(source, ConnectionPool):
        stats = source.stats()
        states = collections.Counter(str(c.state) for c in stats.per_connection)
        streaming = states.get(str(ConnectionState.STREAMING), 0)
        state = f"streaming {streaming}/{stats.connections}" if streaming else ", ".join(sorted(states)) or "idle"
        return state, stats.dropped_events, stats.reconnects + stats.recycled
    client_stats = source.stats()
    return str(client_stats.state), client_stats.dropped_events, client_stats.reconnects


def _ms(microseconds: float | None) -> str:
    return "-" if microseconds is None else f"{microseconds / 1000:.2f} ms"


def _open_source(
    args: argparse.Namespace, key: str | None, market: Market, channels: Sequence[str], server: MockMassiveServer | None
) -> MassiveWebSocketClient | ConnectionPool:
    """One client, or with ``--pool N`` a pool whose channels spread over up to N connections."""
    if args.pool is None:
        url = server.url(market) if server is not None else args.url
        return MassiveWebSocketClient(key, market=market, feed=args.feed, url=url, subscriptions=channels,
                                      validate_channels=args.validate_channels)  # fmt: skip
    pool = ConnectionPool(
        key,
        max_connections=args.pool,
        max_subscriptions_per_connection=math.ceil(len(channels) / args.pool),
        market=market,
        feed=args.feed,
        url=server.url if server is not None else args.url,
        validate_channels=args.validate_channels,
    )
    pool.subscribe(*channels)
    return pool


def run(args: argparse.Namespace, console: Console) -> int:
    """Run ``massive-rt stream`` until Ctrl-C, SIGTERM, ``--duration`` or ``--limit``; returns the exit code
    (130 after Ctrl-C)."""
    # Validate everything before starting anything (ConfigurationError → exit 2).
    market = Market.coerce(args.market, "market")
    channels = channels_from(args, market)
    ClientConfig(market=market, feed=args.feed, url=args.url)
    key = api_key_from(args.api_key)
    demo = args.demo or key is None
    if demo and args.url is not None:
        why = "--demo streams from its own local server" if args.demo else "no API key (--api-key or MASSIVE_API_KEY)"
        raise UsageError(f"--url given but {why}; a 'massive-rt serve' server accepts --api-key demo")
    fmt: Format = TableFormat(market, channels) if args.format == "table" else (
        JsonlFormat() if args.format == "jsonl" else CsvFormat()
    )  # fmt: skip
    if args.drop_every is not None and not demo:
        raise UsageError("--drop-every drops the demo's local server's connections: use it with --demo")
    simulated = demo_market(market, channels, args.speed, args.rate, args.seed, console) if demo else None

    stop = Stop()
    printer = Printer(sys.stdout, fmt, console, stop.set, limit=args.limit, fatal_on_failure=args.pool is None,
                      verbose=args.verbose > 0, backfill=args.backfill)  # fmt: skip
    server: MockMassiveServer | None = None
    rest_mock: MockMassiveREST | None = None
    announce: list[str] = []
    with stop.on_signals():
        try:
            if simulated is not None:
                server = load_server_class()(api_keys={DEMO_KEY}, name="demo")
                server.start()
                key = DEMO_KEY
                server.stream(simulated, rate=args.rate, market=market)
                reason = "--demo" if args.demo else "no MASSIVE_API_KEY"
                # Said once the status page is up: a port in use ends the command on its error line alone.
                announce += [f"{PROG}: {reason}: streaming the synthetic market from a local mock server at "
                             f"{server.url(market)}", f"{PROG}: simulated clock {args.speed:g}x real time, "
                             f"{args.rate:g} events/s generated (seed {simulated.seed})"]  # fmt: skip
            backfill = None
            if args.backfill:
                if server is not None:
                    from ..testing.rest import MockMassiveREST

                    rest_mock = MockMassiveREST(api_keys={DEMO_KEY}, ws=server, name="demo").start()
                    announce.append(f"{PROG}: --backfill: REST history from a local mock at {rest_mock.url}")
                backfill = _backfill(key, None if rest_mock is None else rest_mock.url)
            source = _open_source(args, key, market, channels, server)
            # "thread": stdout is written by the dispatcher only (a slow pipe never runs on a reader).
            adapter = RealTimeDataAdapter(source, on_event=printer.on_event, backfill=backfill, dispatch="thread")
            adapter.on_status(printer.on_status)
            with page_for(adapter, args.status_port, console.message):
                for line in announce:
                    console.message(line)
                printer.start(fmt.header(), when_ready=True)
                drops = _Dropper(server, args.drop_every, console) if server is not None and args.drop_every else None
                return exit_code(_run_stream(args, adapter, source, printer, console, stop, drops), stop.signum)
        finally:
            if server is not None:
                server.close()
            if rest_mock is not None:
                rest_mock.close()
            stop.close()


def _backfill(key: str | None, rest_url: str | None) -> Backfill:
    """A :class:`~massive_rt.Backfill` on a ``RestHistory`` (``rest_url``: None reads ``MASSIVE_REST_URL``)."""
    try:
        from ..rest import RestHistory
    except ModuleNotFoundError as exc:
        raise CommandFailure(f"--backfill needs the official 'massive' package ({exc.name} is missing): "
                         "pip install 'massive-rt[rest]'") from None  # fmt: skip
    return Backfill(RestHistory(key, rest_url=rest_url))


@attrs.define
class _Dropper:
    """``--drop-every``: drops the demo server's connections on the main thread's ticks."""

    server: MockMassiveServer
    every: float
    console: Console
    due: float = 0.0

    def __attrs_post_init__(self) -> None:
        self.due = time.monotonic() + self.every

    def tick(self) -> None:
        if time.monotonic() >= self.due:
            self.due = time.monotonic() + self.every
            dropped = self.server.drop_all()
            self.console.message(f"{PROG}: --drop-every: dropped {dropped} connection(s)")


def _run_stream(
    args: argparse.Namespace,
    adapter: RealTimeDataAdapter,
    source: MassiveWebSocketClient | ConnectionPool,
    printer: Printer,
    console: Console,
    stop: Stop,
    drops: _Dropper | None = None,
) -> int:
    meter = _Meter()

    def refresh() -> None:
        rate = meter.rate(printer.printed)
        state, dropped, reconnects = _source_health(source)
        # Status events are timed too: no event printed, no percentile shown.
        p99 = adapter.stats().latency_us.get("p99") if printer.printed else None
        console.status(f"{printer.printed:,} events  {rate:,.0f}/s  p99 {_ms(p99)}  drops {dropped:,}  "
                       f"reconnects {reconnects}  {state}")  # fmt: skip

    started = time.monotonic()
    deadline = None if args.duration is None else started + args.duration
    adapter.start()
    try:

        def tick() -> None:
            if drops is not None:
                drops.tick()
            if console.live:
                refresh()

        wait(stop, deadline, tick if console.live or drops is not None else None)
        elapsed = time.monotonic() - started
    finally:
        printer.close()
        adapter.stop(timeout=5.0, drain=False)
    console.clear_status()
    _, dropped, reconnects = _source_health(source)
    if printer.error is None or printer.printed:  # a failure before any event: its error line says it all
        _summary(console, printer, adapter.stats().latency_us, elapsed, dropped, reconnects)
    if printer.broken_pipe:
        silence_stdout()
    if printer.error is not None:
        console.message(f"{PROG}: error: {failure_line(printer.error)}")
        return EXIT_FAILURE
    return EXIT_OK


def _summary(console: Console, printer: Printer, latency_us: dict[str, float], elapsed: float, dropped: int,
             reconnects: int) -> None:  # fmt: skip
    total = printer.printed
    per_second = total / max(elapsed, 1e-9)
    lines = [f"{PROG}: summary", f"  events      {total:>10,}  in {elapsed:.1f} s  ({per_second:,.1f}/s)"]
    for label, count in sorted(printer.counts.items(), key=lambda item: (-item[1], item[0])):
        lines.append(f"    {label:<9} {count:>10,}")
    lines.append(f"  dropped     {dropped:>10,}")
    lines.append(f"  reconnects  {reconnects:>10,}")
    if total:
        lines.append(f"  latency     p50 {_ms(latency_us.get('p50'))}  p99 {_ms(latency_us.get('p99'))}  "
                     "(received -> handler)")  # fmt: skip
    else:  # the adapter's percentiles would be those of status events alone
        lines.append("  latency     none: no events received")
    console.message("\n".join(lines))
