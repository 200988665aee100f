"""Memory per subscribed channel: ``python benchmarks/bench_channels.py [--channels N] [--rss] [--url URL]``.

One client subscribes ``N`` ticker channels (``T.CH0`` …) on the benchmark server (started here in
its own process unless ``--url`` names one) and waits until every one is acknowledged. Prints one
JSON line: Python heap bytes per channel (tracemalloc, the client's process, traced from before
the client was created, leaving out the frame parser's read buffer, whose size depends on how
the acknowledgements happened to arrive), or with ``--rss`` the RSS growth per channel (measured
without tracemalloc, whose own bookkeeping grows with every allocation).
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import resource
import sys
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_server

import massive_rt as mrt

KEY = "bench"


def _rss_kb() -> int:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() // 1024


def measure(url: str, channels: int, rss_only: bool = False) -> dict[str, float]:
    names = [f"T.CH{i}" for i in range(channels)]
    warm = mrt.MassiveWebSocketClient(KEY, url=url, ping_interval=None, subscriptions=["T.WARM"])
    warm.start()
    warm.wait_ready(30)
    warm.wait_acked(["T.WARM"], 30)
    warm.stop()
    gc.collect()
    rss_before = _rss_kb()
    if not rss_only:
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
    client = mrt.MassiveWebSocketClient(KEY, url=url, ping_interval=None, subscriptions=names)
    client.start()
    client.wait_ready(60)
    if not client.wait_acked(names, 120):
        raise SystemExit(f"only {client.stats().acked}/{channels} channels acknowledged")
    client.drain(1_000_000)  # the acknowledgement statuses are not kept
    gc.collect()
    if rss_only:
        rss = _rss_kb() - rss_before
        client.stop()
        return {"channels": channels, "rss_bytes_per_channel": rss * 1024 / channels}
    not_buffers = [tracemalloc.Filter(False, "*/massive_rt/framing.py")]
    after = tracemalloc.take_snapshot().filter_traces(not_buffers)
    heap = sum(stat.size_diff for stat in after.compare_to(before.filter_traces(not_buffers), "filename"))
    tracemalloc.stop()
    client.stop()
    return {"channels": channels, "heap_bytes_per_channel": heap / channels}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--channels", type=int, default=10_000)
    parser.add_argument("--url", help="a running benchmark server (default: start one)")
    parser.add_argument("--rss", action="store_true", help="RSS growth instead of the traced heap")
    args = parser.parse_args()
    if args.url:
        print(json.dumps(measure(args.url, args.channels, args.rss)))
        return
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    server = context.Process(target=bench_server.serve, args=(child,), name="bench-server", daemon=True)
    server.start()
    try:
        url = f"ws://127.0.0.1:{parent.recv()}/stocks"
        print(json.dumps(measure(url, args.channels, args.rss)))
    finally:
        parent.send("stop")
        server.join(10)


if __name__ == "__main__":
    main()
