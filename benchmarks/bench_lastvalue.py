"""Cost of a LastValueCache on the dispatcher, and its read rate from 8 threads while streaming.

Run with ``python benchmarks/bench_lastvalue.py [--events N] [--reps R] [--quick]``.

* **dispatch path**: the adapter alone, no socket and no decoding: a source (the adapter's public
  ``EventSource`` protocol) hands it ``--events`` pre-decoded trades and quotes of 50 symbols, 10 per
  frame, and the adapter dispatches them to a no-op ``on("*")`` handler, with and without a cache,
  alternating. The difference is the cache's cost per event on the dispatcher, with nothing to hide
  it; it is then set against the adapter's end-to-end typed throughput.
* **end to end**: a MockMassiveServer (this process, 127.0.0.1) sends ``--events`` trades and
  quotes of 50 symbols in frames of 10, prepared once; a client + ``RealTimeDataAdapter`` (typed
  events, a no-op ``on("*")`` handler counting them) receives them, with and without a cache
  attached, alternating in the same run. Throughput is first frame sent → last event dispatched.
  The cost per event is ``1/with - 1/without`` from the medians.
* **reads**: while the same stream flows into a cached adapter, 8 threads call
  ``cache.trade(symbol)`` (symbols in turn) as fast as they can; reads/s summed over the threads.

Numbers depend on the machine (and on the load of its other users): read them as ratios.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import massive_rt as mrt
from massive_rt.testing import MockMassiveServer

KEY = "bench"
SYMBOLS = [f"S{i:02d}" for i in range(50)]
BATCH = 10
READERS = 8


def make_frames(events: int) -> list[str]:
    objs: list[dict[str, object]] = []
    for q in range(events):
        sym = SYMBOLS[q % len(SYMBOLS)]
        if q % 2:
            objs.append({"ev": "Q", "sym": sym, "bp": 99.5, "bs": 1, "ap": 100.5, "as": 1, "t": q, "q": q})
        else:
            objs.append({"ev": "T", "sym": sym, "p": 100.0, "s": 1, "t": q, "q": q, "x": 4, "i": str(q)})
    return [json.dumps(objs[i : i + BATCH], separators=(",", ":")) for i in range(0, events, BATCH)]


class Run:
    """One client + adapter (and cache, when ``cached``) on the server."""

    def __init__(self, server: MockMassiveServer, cached: bool) -> None:
        self.count = 0
        self.target = 0
        self.done = threading.Event()
        client = mrt.MassiveWebSocketClient(api_key=KEY, url=server.url(), subscriptions=["T.*", "Q.*"],
                                            queue_size=2_000_000, overflow="block")  # fmt: skip
        self.adapter = mrt.RealTimeDataAdapter(client, on_event=self.on_event)
        self.cache = mrt.LastValueCache(self.adapter) if cached else None
        self.adapter.start()
        client.wait_ready(10)
        client.wait_acked(["T.*", "Q.*"], 10)

    def on_event(self, _event: mrt.Event) -> None:
        self.count += 1
        if self.count == self.target:
            self.done.set()

    def stream(self, server: MockMassiveServer, frames: mrt.testing.PreparedFrames, events: int) -> float:
        self.count, self.target = 0, events
        self.done.clear()
        start = time.perf_counter()
        server.publish_raw_frames(frames)
        if not self.done.wait(120):
            raise SystemExit(f"only {self.count} of {events} events arrived")
        return events / (time.perf_counter() - start)

    def stop(self) -> None:
        self.adapter.stop()


class ListSource:
    """Hands the adapter pre-decoded events, ``BATCH`` per frame (the adapter's EventSource protocol)."""

    name = "list"

    def __init__(self, frames: list[list[mrt.Event]]) -> None:
        self._frames = frames
        self._next = 0
        self.exhausted = False

    def drain(self, max_frames: int = 16) -> list[mrt.Event]:
        taken = self._frames[self._next : self._next + max_frames]
        self._next += len(taken)
        self.exhausted = self._next >= len(self._frames)
        return [event for frame in taken for event in frame]

    def clients(self) -> tuple[ListSource, ...]:
        return (self,)

    def start(self) -> ListSource:
        return self

    def stop(self, timeout: float = 0) -> None:
        pass

    def set_listener(self, listener: object) -> None:
        pass

    def subscribe(self, *channels: str) -> None:
        pass

    def unsubscribe(self, *channels: str) -> None:
        pass

    def stats(self) -> dict[str, object]:
        return {}


def dispatch_rate(frames: list[list[mrt.Event]], cached: bool) -> float:
    count = 0
    done = threading.Event()
    total = sum(map(len, frames))

    def on_event(_event: mrt.Event) -> None:
        nonlocal count
        count += 1
        if count == total:
            done.set()

    adapter = mrt.RealTimeDataAdapter(ListSource(frames), on_event=on_event)  # type: ignore[arg-type]
    if cached:
        mrt.LastValueCache(adapter)
    start = time.perf_counter()
    adapter.start()
    done.wait(120)
    elapsed = time.perf_counter() - start
    adapter.stop()
    return total / elapsed


def decoded_frames(events: int) -> list[list[mrt.Event]]:
    from massive_rt.protocol import Decoder

    decoder = Decoder("stocks", "bench")
    return [decoder.decode(frame.encode()) for frame in make_frames(events)]


def reads_while_streaming(server: MockMassiveServer, frames: mrt.testing.PreparedFrames, events: int) -> float:
    run = Run(server, cached=True)
    cache = run.cache
    assert cache is not None
    stop = threading.Event()
    reads = [0] * READERS

    def reader(index: int) -> None:
        n = 0
        trade = cache.trade
        while not stop.is_set():
            for symbol in SYMBOLS:
                trade(symbol)
            n += len(SYMBOLS)
        reads[index] = n

    threads = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(READERS)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    rate = run.stream(server, frames, events)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    run.stop()
    print(f"  reads while streaming: dispatch {rate:,.0f} ev/s", file=sys.stderr)
    return sum(reads) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="20,000 events, 3 repetitions")
    args = parser.parse_args()
    events, reps = (20_000, 3) if args.quick else (args.events, args.reps)
    events -= events % BATCH
    decoded = decoded_frames(events)
    path: dict[str, list[float]] = {"without cache": [], "with cache": []}
    for cached in (False, True):  # warm-up, discarded
        dispatch_rate(decoded, cached)
    for rep in range(reps):
        for cached in (False, True) if rep % 2 == 0 else (True, False):
            name = "with cache" if cached else "without cache"
            path[name].append(dispatch_rate(decoded, cached))
            print(f"  dispatch path {name:13s} rep {rep + 1}: {path[name][-1]:,.0f} ev/s", file=sys.stderr)
    with MockMassiveServer(api_keys={KEY}) as server:
        frames = server.prepare_raw_frames(make_frames(events))
        runs = {"without cache": Run(server, cached=False), "with cache": Run(server, cached=True)}
        try:
            for run in runs.values():  # warm-up, discarded
                run.stream(server, frames, events)
            rates: dict[str, list[float]] = {name: [] for name in runs}
            for rep in range(reps):
                order = list(runs) if rep % 2 == 0 else list(reversed(runs))
                for name in order:
                    rates[name].append(runs[name].stream(server, frames, events))
                    print(f"  {name:13s} rep {rep + 1}: {rates[name][-1]:,.0f} ev/s", file=sys.stderr)
        finally:
            for run in runs.values():
                run.stop()
        read_rate = reads_while_streaming(server, frames, events)
    print(f"Python {platform.python_version()}; {events:,} trades+quotes of {len(SYMBOLS)} symbols in frames of "
          f"{BATCH}; {reps} alternating repetitions (medians)\n")  # fmt: skip
    print("| measure | adapter | min ev/s | median ev/s | max ev/s |")
    print("|---|---|---:|---:|---:|")
    for title, table in (("dispatch path", path), ("end to end", rates)):
        for name, values in table.items():
            print(f"| {title} | {name} | {min(values):,.0f} | {statistics.median(values):,.0f} | {max(values):,.0f} |")
    path_without, path_with = (statistics.median(path[n]) for n in ("without cache", "with cache"))
    cost_ns = 1e9 * (1 / path_with - 1 / path_without)
    print(f"\ndispatch path: the cache costs {cost_ns:,.0f} ns per event ({100 * (1 - path_with / path_without):.1f}% "
          "of the dispatch path alone)")  # fmt: skip
    without, with_ = (statistics.median(rates[n]) for n in ("without cache", "with cache"))
    print(f"end to end: {100 * (1 - with_ / without):.1f}% (noisy: the server shares this process); that "
          f"cost per event at the adapter's median end-to-end rate here ({without:,.0f} ev/s) is "
          f"{100 * cost_ns * without / 1e9:.1f}%")  # fmt: skip
    print(f"reads from {READERS} threads while streaming: {read_rate:,.0f} reads/s")


if __name__ == "__main__":
    main()
