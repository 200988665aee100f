"""``massive-rt serve``: run the local mock Massive server alone, streaming a synthetic market.

For your own programs to connect to, until Ctrl-C or SIGTERM (a :class:`~massive_rt.testing.MockMassiveServer`
streaming a :class:`~massive_rt.synthetic.SyntheticMarket`; needs the ``testing`` extra).
"""

from __future__ import annotations

import argparse
import logging
import time

from ..enums import Market
from ..synthetic import SyntheticMarket
from .console import (
    EXIT_FAILURE,
    EXIT_OK,
    PROG,
    AddParser,
    Console,
    Stop,
    UsageError,
    exit_code,
    port,
    positive,
    wait,
)
from .demo import DEFAULT_SPEED, DEMO_KEY, SIMULATED, TICKS, load_server_class, time_base

__all__ = ["register", "run"]

logger = logging.getLogger(__name__)


def register(add_parser: AddParser, common: argparse.ArgumentParser) -> None:
    """Add the ``serve`` subcommand (``common``: the options every subcommand accepts)."""
    serve = add_parser(
        "serve",
        parents=[common],
        help="run a local mock Massive server with synthetic data",
        description="Run MockMassiveServer streaming a synthetic market until Ctrl-C.",
    )
    serve.add_argument("--port", type=port, default=8765, help="port (default 8765; 0 picks a free one)")
    serve.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    serve.add_argument("--market", default="stocks", help="stocks (default) or crypto")
    serve.add_argument("--symbols", nargs="+", metavar="SYMBOL", help="symbols to simulate (default: liquid ones)")
    serve.add_argument("--rate", type=positive(float), default=1000.0, metavar="R",
                       help="events per second (default 1000)")  # fmt: skip
    serve.add_argument("--speed", type=positive(float), default=DEFAULT_SPEED, metavar="X",
                       help=f"simulated clock speed-up (default {DEFAULT_SPEED:g})")  # fmt: skip
    serve.add_argument("--seed", type=int, help="random seed")
    serve.add_argument("--keys", nargs="+", default=[DEMO_KEY], metavar="KEY",
                       help=f"API keys that authenticate (default: {DEMO_KEY})")  # fmt: skip
    serve.add_argument("--max-connections", type=positive(int), metavar="N",
                       help="connection limit per key, like a Massive account")  # fmt: skip


def run(args: argparse.Namespace, console: Console) -> int:
    """Run ``massive-rt serve`` until Ctrl-C or SIGTERM; returns the exit code."""
    market = Market.coerce(args.market, "market")
    if market not in SIMULATED:
        raise UsageError(f"the synthetic market simulates stocks and crypto only, not {market.value!r}")
    symbols = tuple(args.symbols) if args.symbols else SIMULATED[market]
    simulated = SyntheticMarket(symbols, market=market, seed=args.seed,
                                rate=args.rate / (args.speed * len(symbols)), **time_base(args.speed))  # fmt: skip
    server_class = load_server_class()
    server = server_class(api_keys=args.keys, host=args.host, port=args.port, max_connections=args.max_connections,
                          name="serve")  # fmt: skip
    stop = Stop()
    with stop.on_signals():
        try:
            server.start()
        except OSError as exc:
            stop.close()
            console.message(f"{PROG}: error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
            return EXIT_FAILURE
        try:
            handle = server.stream(simulated, rate=args.rate, market=market)
            url = server.url(market)
            channels = " ".join(f"'{p}.*'" for p in TICKS[market])
            console.message("\n".join([
                f"{PROG}: mock Massive server listening on {url}",
                f"  streaming the synthetic {market.value} market ({', '.join(symbols)}) at {args.rate:g} events/s, "
                f"clock {args.speed:g}x real time",
                f"  keys: {', '.join(args.keys)}",
                f"  connect: {PROG} stream {channels} --url {url} --api-key {args.keys[0]}",
                f"  or:      MassiveWebSocketClient(api_key={args.keys[0]!r}, url={url!r}, "
                f"subscriptions=['{TICKS[market][0]}.*'])",
                "  Ctrl-C to stop",
            ]))  # fmt: skip
            started = time.monotonic()

            def refresh() -> None:
                connections = len(server.active_connections())
                console.status(f"{connections} connection(s)  {handle.delivered:,} events delivered")

            wait(stop, None, refresh if console.live else None)
            console.clear_status()
            delivered, connections = handle.delivered, len(server.connections)
        finally:
            server.close()
            stop.close()
    console.message(f"{PROG}: served {delivered:,} events over {connections} connection(s) in "
                    f"{time.monotonic() - started:.1f} s")  # fmt: skip
    return exit_code(EXIT_OK, stop.signum)
