"""Cost of ``dedupe=True``: DuplicateFilter.filter per event vs decoding, and the memory of its window.

Run with ``python benchmarks/bench_dedupe.py [--events N] [--window W] [--reps R] [--quick]``.

The stream is the synthetic stock market's trades (``SyntheticMarket``, ``T`` only), JSON-encoded in
frames of 10 as the server sends them and decoded by :class:`massive_rt.protocol.Decoder` (the
msgspec path when installed). Two streams: no duplicates, and about 1% of the events replaced by a
copy of an event from the previous 100 frames (well inside the window, so each copy is suppressed).

* **throughput**: each repetition uses a fresh decoder and filter; a window's worth of frames is
  filtered first (steady state: every new key evicts one), then the measured frames are processed
  in chunks of 10 frames, timing the decoding of a chunk and then its filtering separately (a
  chunk at a time, so only ~100 events are alive at once, as in a consumer that keeps up: holding
  many decoded events makes the garbage collector slow decoding down). "dedupe off"
  is decoding alone; "dedupe on" adds ``filter``. The garbage collector stays on (as in a client).
  Shown: min and median over the repetitions, which alternate between the streams.
* **memory**: bytes traced by ``tracemalloc`` that a filter holding a full window keeps after the
  events themselves are gone (the keys, the strings and integers they keep alive, the set and the
  queue), with a breakdown by ``sys.getsizeof``.
* **structures**: the FIFO-set candidates on the same keys (steady-state admit + evict, min of 3
  runs, and bytes per entry for the structure alone), and the key extraction (``operator.attrgetter`` vs the plain
  function the filter uses).
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import operator
import platform
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from massive_rt import dedupe
from massive_rt.dedupe import DEFAULT_WINDOW, DuplicateFilter
from massive_rt.models import Event
from massive_rt.protocol import Decoder
from massive_rt.synthetic import SyntheticMarket

BATCH = 10
CHUNK = 10  # frames per timed chunk: few events alive at once, as in a client that keeps up
DUP_REACH = 100  # a copy repeats an event of one of the previous DUP_REACH frames


def make_frames(n_events: int, dup_rate: float, seed: int = 1) -> list[bytes]:
    """``n_events`` synthetic trades in JSON frames of ``BATCH``; ``dup_rate`` of them copies of recent ones."""
    objs = SyntheticMarket(market="stocks", seed=seed, channels=["T"]).next_events(n_events)
    rng = random.Random(seed)
    frames: list[bytes] = []
    for start in range(0, n_events, BATCH):
        batch = objs[start : start + BATCH]
        if dup_rate and start >= BATCH * DUP_REACH:
            for j in range(len(batch)):
                if rng.random() < dup_rate:
                    batch[j] = dict(objs[start - rng.randrange(1, BATCH * DUP_REACH)])
        frames.append(json.dumps(batch, separators=(",", ":")).encode())
    return frames


def run_once(warm: list[bytes], measured: list[bytes], window: int) -> dict[str, float]:
    """One repetition: fill a fresh filter's window, then time decode and filter chunk by chunk."""
    decoder = Decoder("stocks", "bench")
    decode = decoder.decode
    flt = DuplicateFilter(window)
    for frame in warm:
        flt.filter(decode(frame))
    before = flt.stats()
    decode_ns = filter_ns = 0
    events = 0
    for start in range(0, len(measured), CHUNK):
        chunk = measured[start : start + CHUNK]
        t0 = time.perf_counter_ns()
        batches = [decode(frame) for frame in chunk]
        t1 = time.perf_counter_ns()
        for batch in batches:
            flt.filter(batch)
        t2 = time.perf_counter_ns()
        decode_ns += t1 - t0
        filter_ns += t2 - t1
        events += sum(map(len, batches))
    after = flt.stats()
    assert after.size == min(window, after.checked)
    return {
        "decode": decode_ns / events,
        "filter": filter_ns / events,
        "suppressed_pct": 100 * (after.suppressed - before.suppressed) / events,
    }


def throughput(events: int, window: int, reps: int, dup_rate: float) -> str:
    warm_events = window  # enough distinct trades to fill the window before timing
    streams = {
        "no duplicates": make_frames(warm_events + events, 0.0),
        f"~{dup_rate:.0%} duplicates": make_frames(warm_events + events, dup_rate),
    }
    results: dict[str, list[dict[str, float]]] = {name: [] for name in streams}
    for rep in range(reps):
        order = list(streams) if rep % 2 == 0 else list(reversed(streams))
        for name in order:
            frames = streams[name]
            split = warm_events // BATCH
            results[name].append(run_once(frames[:split], frames[split:], window))
            last = results[name][-1]
            print(f"  {name:16s} rep {rep + 1}: decode {last['decode']:,.0f} ns/ev, filter {last['filter']:,.0f} "
                  f"ns/ev", file=sys.stderr)  # fmt: skip
    lines = [
        f"### Throughput: {events:,} trades in frames of {BATCH}, window {window:,} (full), {reps} repetitions",
        "",
        "| stream | decode (dedupe off) ns/ev min / median | filter ns/ev min / median | dedupe on ns/ev "
        "(median) | filter ÷ decode | suppressed |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, runs in results.items():
        dec = sorted(r["decode"] for r in runs)
        flt = sorted(r["filter"] for r in runs)
        ratio = statistics.median(r["filter"] / r["decode"] for r in runs)
        lines.append(f"| {name} | {dec[0]:,.0f} / {statistics.median(dec):,.0f} | {flt[0]:,.0f} / "
                     f"{statistics.median(flt):,.0f} | {statistics.median(dec) + statistics.median(flt):,.0f} | "
                     f"{ratio:.2f} | {runs[0]['suppressed_pct']:.2f}% |")  # fmt: skip
    return "\n".join(lines)


def memory(window: int) -> str:
    """Bytes a full window holds once the events are gone, traced and broken down."""
    frames = make_frames(window + 10 * BATCH, 0.0, seed=2)
    decoder = Decoder("stocks", "bench")
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    flt = DuplicateFilter(window)
    for frame in frames:
        flt.filter(decoder.decode(frame))
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert flt.size == window

    keys = list(flt._order)
    tuples = sum(sys.getsizeof(key) for key in keys)
    objects: dict[int, int] = {}
    for key in keys:
        for value in key:
            if sys.getrefcount(value) < 100:  # skip shared ones ('T', small ints): not held by the window alone
                objects[id(value)] = sys.getsizeof(value)
    containers = sys.getsizeof(flt._seen) + sys.getsizeof(flt._order)
    del keys
    per = traced / window
    return "\n".join([
        f"### Memory of a full window ({window:,} stock-trade keys)",
        "",
        "| what | bytes | per key |",
        "|---|---:|---:|",
        f"| traced by tracemalloc (total held) | {traced:,} | {per:.0f} |",
        f"| key tuples (getsizeof) | {tuples:,} | {tuples / window:.0f} |",
        f"| strings and ints kept alive by the keys | {sum(objects.values()):,} | "
        f"{sum(objects.values()) / window:.0f} |",
        f"| set + deque | {containers:,} | {containers / window:.0f} |",
    ])  # fmt: skip


def _time_structure(name: str, keys: list[Any], window: int, ops: int) -> tuple[float, float]:
    """Steady-state ns per admit+evict and structure bytes per entry of one FIFO-set candidate."""
    fill, stream = keys[:window], keys[window : window + ops]
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    if name == "set + deque (chosen)":
        seen: Any = set(fill)
        order: Any = collections.deque(fill)
    elif name == "set + list ring":
        seen, order = set(fill), list(fill)
    elif name == "OrderedDict":
        seen, order = collections.OrderedDict.fromkeys(fill), None
    else:
        seen, order = dict.fromkeys(fill), None
    size = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    t0 = time.perf_counter_ns()
    if name == "set + deque (chosen)":
        add, discard, push, pop = seen.add, seen.discard, order.append, order.popleft
        for key in stream:
            add(key)
            push(key)
            discard(pop())
    elif name == "set + list ring":
        add, discard, pos = seen.add, seen.discard, 0
        for key in stream:
            add(key)
            discard(order[pos])
            order[pos] = key
            pos = pos + 1 if pos + 1 < window else 0
    elif name == "OrderedDict":
        popitem = seen.popitem
        for key in stream:
            seen[key] = None
            popitem(last=False)
    else:
        for key in stream:
            seen[key] = None
            del seen[next(iter(seen))]  # the oldest: iteration skips the deleted prefix each time
    elapsed = time.perf_counter_ns() - t0
    return elapsed / len(stream), size / window


def structures(window: int, ops: int) -> str:
    frames = make_frames(window + ops, 0.0, seed=3)
    decoder = Decoder("stocks", "bench")
    events: list[Event] = [e for frame in frames for e in decoder.decode(frame)]
    key_of = dedupe._equity_trade_key
    keys = [key_of(e) for e in events]
    lines = [
        f"### FIFO-set candidates ({window:,} keys held, {ops:,} admit + evict)",
        "",
        "| structure | ns per admit + evict (min of 3) | structure bytes per key |",
        "|---|---:|---:|",
    ]
    names = ("set + deque (chosen)", "set + list ring", "OrderedDict", "dict as ordered set")
    measured: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for rep in range(3):
        for name in names if rep % 2 == 0 else reversed(names):
            measured[name].append(_time_structure(name, keys, window, ops))
    for name, runs in measured.items():
        lines.append(f"| {name} | {min(ns for ns, _ in runs):,.0f} | {runs[0][1]:.0f} |")

    getter = operator.attrgetter("event_type", "symbol", "exchange", "id", "sequence_number", "timestamp")
    sample = events[:100_000]
    timings: dict[str, list[float]] = {"operator.attrgetter": [], "plain function (chosen)": []}
    for _ in range(5):
        for label, fn in (("operator.attrgetter", getter), ("plain function (chosen)", key_of)):
            t0 = time.perf_counter_ns()
            for event in sample:
                fn(event)
            timings[label].append((time.perf_counter_ns() - t0) / len(sample))
    lines += ["", "| key extraction (EquityTrade) | ns/event, min of 5 |", "|---|---:|"]
    lines += [f"| {label} | {min(values):,.0f} |" for label, values in timings.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=300_000, help="measured events per repetition")
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--dup-rate", type=float, default=0.01)
    parser.add_argument("--structure-ops", type=int, default=50_000, help="admit+evict operations per structure")
    parser.add_argument("--quick", action="store_true", help="smaller run (20,000 events, window 10,000, 3 reps)")
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.window, args.reps, args.structure_ops = 20_000, 10_000, 3, 10_000
    sections: list[Callable[[], str]] = [
        lambda: throughput(args.events, args.window, args.reps, args.dup_rate),
        lambda: memory(args.window),
        lambda: structures(args.window, args.structure_ops),
    ]
    print(f"Python {platform.python_version()}; {platform.machine()}; decoder: "
          f"{'msgspec' if Decoder('stocks')._structs is not None else 'dict path'}\n")  # fmt: skip
    for section in sections:
        print(section(), end="\n\n", flush=True)


if __name__ == "__main__":
    main()
