"""``massive-rt record``: record channels to a file (:class:`~massive_rt.Recorder`), from Massive or the demo.

``massive-rt record T.AAPL Q.AAPL -o today.mrt`` records from Massive when ``MASSIVE_API_KEY`` (or
``--api-key``) is set; without a key (or with ``--demo``), from the synthetic market played by a
local mock server, like ``massive-rt stream``. It records until Ctrl-C, SIGTERM or ``--duration``,
then stops the adapter, then the recorder (which writes the end marker), and prints a summary.

Threads: the adapter's dispatcher only counts events (the recorder taps what it takes); the
recorder writes on its own thread; the main thread waits and redraws the status line.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..adapter import RealTimeDataAdapter
from ..config import ClientConfig
from ..connection import MassiveWebSocketClient
from ..enums import Market
from ..models import Event, StatusMessage
from ..recording import Recorder
from ..recording.fileformat import CODECS, default_codec
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
    wait,
)
from .demo import DEFAULT_SPEED, DEMO_KEY, api_key_from, demo_market, load_server_class

if TYPE_CHECKING:
    from ..testing.server import MockMassiveServer

__all__ = ["ZSTD_HINT", "codec_line", "register", "run"]

logger = logging.getLogger(__name__)

#: Said once when a recording is gzip because zstandard is missing.
ZSTD_HINT = "zstandard is not installed: pip install 'massive-rt[record]' for zstd (smaller and faster)"


def codec_line(codec: str, chosen: bool = True) -> str:
    """``codec``, plus :data:`ZSTD_HINT` when it is gzip because zstandard is missing (``chosen``:
    the codec was the default's choice, not the user's ``--codec``)."""
    return f"{codec}  ({ZSTD_HINT})" if chosen and codec == "gzip" and default_codec() != "zstd" else codec


def register(add_parser: AddParser, common: argparse.ArgumentParser) -> None:
    """Add the ``record`` subcommand (``common``: the options every subcommand accepts)."""
    record = add_parser(
        "record",
        parents=[common],
        help="record channels to a file",
        description="Record what massive_rt receives on CHANNELs to FILE (frames as received, statuses, drops).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  massive-rt record 'T.*' 'Q.*' -o demo.mrt --duration 10     # no key: the synthetic market\n"
        "  MASSIVE_API_KEY=... massive-rt record 'T.*' -o today.mrt --rotate hourly",
    )
    add_channel_options(record)
    record.add_argument("-o", "--output", required=True, metavar="FILE", help="the recording to create")
    record.add_argument("--market", default="stocks", help="stocks (default), options, forex, crypto, indices, futures")
    record.add_argument("--feed", default="realtime", help="realtime (default), delayed, or a host[:port]")
    record.add_argument("--url", help="full WebSocket URL (wins over --feed)")
    record.add_argument("--api-key", help="Massive API key (default: $MASSIVE_API_KEY)")
    record.add_argument("--demo", action="store_true", help="record the synthetic market even with an API key")
    record.add_argument("--duration", type=positive(float), metavar="S", help="stop after S seconds")
    record.add_argument("--rotate", choices=("hourly",), help="start a new part every UTC hour")
    record.add_argument("--max-bytes", type=positive(int), metavar="N", help="start a new part after N bytes")
    record.add_argument("--codec", choices=tuple(CODECS), help="zstd (default when installed), gzip or none")
    record.add_argument("--rate", type=positive(float), default=200.0, metavar="R",
                        help="demo: events per second generated (default 200)")  # fmt: skip
    record.add_argument("--seed", type=int, help="demo: random seed")


def run(args: argparse.Namespace, console: Console) -> int:
    """Run ``massive-rt record`` until Ctrl-C, SIGTERM or ``--duration``; returns the exit code (130 after
    Ctrl-C, once the recording is closed)."""
    market = Market.coerce(args.market, "market")
    channels = channels_from(args, market)
    ClientConfig(market=market, feed=args.feed, url=args.url)
    key = api_key_from(args.api_key)
    demo = args.demo or key is None
    if demo and args.url is not None:
        raise UsageError("--url given but the demo records from its own local server; pass --api-key")
    path = Path(args.output)
    if path.exists():
        raise UsageError(f"{path} exists; a recording never overwrites a file")
    if not path.parent.is_dir():  # before the demo starts: one error line, nothing before it
        raise CommandFailure(f"cannot create {path}: no directory {path.parent}")
    simulated = demo_market(market, channels, DEFAULT_SPEED, args.rate, args.seed, console) if demo else None

    stop = Stop()
    server: MockMassiveServer | None = None
    with stop.on_signals():
        try:
            url = args.url
            if simulated is not None:
                server = load_server_class()(api_keys={DEMO_KEY}, name="demo")
                server.start()
                key, url = DEMO_KEY, server.url(market)
                server.stream(simulated, rate=args.rate, market=market)
                console.message(f"{PROG}: {'--demo' if args.demo else 'no MASSIVE_API_KEY'}: recording the "
                                f"synthetic market from a local mock server at {url}")  # fmt: skip
            client = MassiveWebSocketClient(key, market=market, feed=args.feed, url=url, subscriptions=channels,
                                            validate_channels=args.validate_channels)  # fmt: skip
            recorder = Recorder(client, path, codec=args.codec, rotate=args.rotate, max_bytes=args.max_bytes)
            return exit_code(_record(args, client, recorder, console, stop), stop.signum)
        finally:
            if server is not None:
                server.close()
            stop.close()


def _record(args: argparse.Namespace, client: MassiveWebSocketClient, recorder: Recorder, console: Console,
            stop: Stop) -> int:  # fmt: skip
    events = [0]
    failure: list[BaseException] = []

    def on_event(_: Event) -> None:
        events[0] += 1

    def on_status(status: StatusMessage) -> None:
        if status.status == "failed":  # a lone client never comes back from FAILED
            failure.append(status.error or RuntimeError(status.message))
            stop.set()

    adapter = RealTimeDataAdapter(client, on_event=on_event, dispatch="thread")  # the threads named above
    adapter.on_status(on_status)

    def refresh() -> None:
        stats = recorder.stats()
        console.status(f"{events[0]:,} events  {stats.records:,} records  {stats.bytes_written:,} bytes  "
                       f"dropped {stats.dropped:,}")  # fmt: skip

    started = time.monotonic()
    recorder.start()
    try:
        adapter.start()
        deadline = None if args.duration is None else started + args.duration
        wait(stop, deadline, refresh if console.live else None)
    finally:
        adapter.stop(timeout=5.0)
        recorder.stop()
    console.clear_status()
    stats = recorder.stats()
    console.message("\n".join([
        f"{PROG}: recorded {events[0]:,} events in {time.monotonic() - started:.1f} s",
        f"  records     {stats.records:>12,}",
        f"  bytes       {stats.bytes_written:>12,}  (compression {stats.compression_ratio:.1f}x)",
        f"  dropped     {stats.dropped:>12,}",
        f"  codec       {codec_line(recorder.codec, chosen=args.codec is None)}",
        f"  files       {' '.join(stats.files)}",
    ]))  # fmt: skip
    if stats.error is not None:
        console.message(f"{PROG}: error: writing stopped: {stats.error}")
        return EXIT_FAILURE
    if failure:
        console.message(f"{PROG}: error: {failure_line(failure[0])}")
        return EXIT_FAILURE
    return EXIT_OK
