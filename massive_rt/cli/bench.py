"""``massive-rt bench``: a quick loopback throughput check (the real harness is ``benchmarks/``).

A local :class:`~massive_rt.testing.MockMassiveServer` publishes N pre-encoded trades to one
:class:`~massive_rt.MassiveWebSocketClient`; the rate is printed to stdout as a small table.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time

from .._json import dumps
from ..connection import MassiveWebSocketClient
from ..enums import Market
from ..models import MarketEvent
from ..synthetic import SyntheticMarket
from .console import EXIT_FAILURE, EXIT_OK, PROG, AddParser, Console, positive
from .demo import load_server_class

__all__ = ["register", "run"]

logger = logging.getLogger(__name__)


def register(add_parser: AddParser, common: argparse.ArgumentParser) -> None:
    """Add the ``bench`` subcommand (``common``: the options every subcommand accepts)."""
    bench = add_parser(
        "bench",
        parents=[common],
        help="quick loopback throughput check",
        description="Publish N pre-encoded trades from a local mock server to one client; print the rate.",
    )
    bench.add_argument("--events", type=positive(int), default=200_000, metavar="N", help="events (default 200000)")
    bench.add_argument("--batch", type=positive(int), default=10, metavar="K", help="events per frame (default 10)")


def _bench_frames(events: int, batch: int) -> list[bytes]:
    """``events`` realistic trades, pre-encoded as JSON arrays of ``batch`` events."""
    simulated = SyntheticMarket(market=Market.STOCKS, seed=7, channels=("T",))
    wires = simulated.next_events(events)
    return [dumps(wires[i : i + batch]) for i in range(0, len(wires), batch)]


def run(args: argparse.Namespace, console: Console) -> int:
    """Run ``massive-rt bench``; prints the table to stdout and returns the exit code."""
    frames = _bench_frames(args.events, args.batch)
    server_class = load_server_class()
    received = 0
    with server_class(api_keys={"bench"}, name="bench") as server:
        # "block" makes the count exact: a slower consumer slows the socket instead of dropping.
        client = MassiveWebSocketClient("bench", url=server.url("stocks"), subscriptions=("T.*",), overflow="block",
                                        name="bench")  # fmt: skip
        with client:
            client.wait_ready(timeout=10)
            prepared = server.prepare_raw_frames(frames)  # framed before the clock starts: not the client's time
            publisher = threading.Thread(target=server.publish_raw_frames, args=(prepared,),
                                         name="massive-rt-bench-publisher", daemon=True)  # fmt: skip
            started = time.monotonic()
            publisher.start()
            deadline = started + 30 + args.events / 20_000
            while received < args.events and time.monotonic() < deadline:
                events = client.drain(256)
                if events:
                    received += sum(1 for e in events if isinstance(e, MarketEvent))
                else:
                    client.wait(0.5)
            seconds = time.monotonic() - started
            publisher.join(5)
    if received < args.events:
        console.message(f"{PROG}: error: received {received:,} of {args.events:,} events before timing out")
        return EXIT_FAILURE
    rows = [("events", f"{received:,}"), ("frames", f"{len(frames):,}"), ("seconds", f"{seconds:.3f}"),
            ("events/s", f"{received / seconds:,.0f}"), ("frames/s", f"{len(frames) / seconds:,.0f}")]  # fmt: skip
    print(f"loopback: MockMassiveServer -> MassiveWebSocketClient.drain(), {args.batch} events per frame")
    print("  ".join(f"{name:>10}" for name, _ in rows))
    print("  ".join(f"{value:>10}" for _, value in rows))
    return EXIT_OK
