"""Events per second through RedisStreamSink and RedisStreamSource, on a local redis-server.

Run with ``python benchmarks/bench_redis.py [--events N] [--reps R]`` (needs ``redis-server`` on
PATH and ``pip install 'massive-rt[redis]'``). A private redis-server is started on a free port
(no persistence) and stopped at the end.

* **sink**: realistic typed events (the synthetic market's trades, quotes and aggregates, decoded
  once up front) are dispatched by a real :class:`RealTimeDataAdapter` (from a trivial in-memory
  source, as fast as it can) to the sink; timed until Redis acknowledged the last entry. Also
  shown: the cost of the sink's handler on the dispatcher thread.
* **source**: a :class:`RedisStreamSource` behind a real adapter reads those streams back
  (consumer group, typed decoding, acknowledgements) into a counting handler; timed until the
  last event was handled.
* **end to end**: both at once (sink and source in one process, sharing the GIL), as fast as
  possible; then **paced** at a steady rate, with the receive→callback latency the consuming
  adapter measures (events keep their upstream receive time across Redis).

Throughput is wall clock; "CPU µs/event" is the process CPU time (every thread) per event, which
is steadier than wall clock on a busy machine.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import massive_rt as mrt
from massive_rt.protocol import Decoder
from massive_rt.sinks import RedisStreamSink, RedisStreamSource
from massive_rt.synthetic import SyntheticMarket


class _Prepared:
    """A drainable over a fixed list of events (the adapter's EventSource protocol, in memory)."""

    def __init__(self, events: list[mrt.Event], chunk: int = 100) -> None:
        self.name = "bench"
        self.market = mrt.Market.STOCKS
        self._chunks = [events[i : i + chunk] for i in range(0, len(events), chunk)]
        self._next = 0
        self._listener: Callable[[], None] | None = None
        self.go = threading.Event()

    def drain(self, max_frames: int = 32) -> list[mrt.Event]:
        if not self.go.is_set():
            return []
        out: list[mrt.Event] = []
        for chunk in self._chunks[self._next : self._next + max_frames]:
            out += chunk
        self._next += max_frames
        return out

    @property
    def exhausted(self) -> bool:
        return self._next >= len(self._chunks)

    def start(self) -> None:
        pass

    def stop(self, timeout: float = 5.0) -> None:
        pass

    def clients(self) -> Sequence[_Prepared]:
        return (self,)

    def set_listener(self, listener: Callable[[], None] | None) -> None:
        self._listener = listener

    def release(self) -> None:
        self.go.set()
        if self._listener is not None:
            self._listener()

    def subscribe(self, *channels: str) -> None:
        pass

    def unsubscribe(self, *channels: str) -> None:
        pass

    def stats(self) -> None:
        return None


class _Paced(_Prepared):
    """Releases ``chunk`` fresh events every ``interval`` seconds (decoded at release: fresh receive times)."""

    def __init__(self, wires: list[dict[str, Any]], rate: float, chunk: int = 50) -> None:
        super().__init__([])
        self._wires = [wires[i : i + chunk] for i in range(0, len(wires), chunk)]
        self._interval = chunk / rate
        self._decoder = Decoder("stocks", "bench")
        self._ready: list[mrt.Event] = []
        self._lock = threading.Lock()
        self._done = False
        self._thread = threading.Thread(target=self._run, name="bench-paced", daemon=True)

    def release(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        next_at = time.monotonic()
        pause = threading.Event()
        for wires in self._wires:
            next_at += self._interval
            pause.wait(max(0.0, next_at - time.monotonic()))
            events = self._decoder.decode_objects(wires, time.time_ns())
            with self._lock:
                self._ready += events
            if self._listener is not None:
                self._listener()
        self._done = True

    def drain(self, max_frames: int = 32) -> list[mrt.Event]:
        with self._lock:
            out, self._ready = self._ready, []
        return out

    @property
    def exhausted(self) -> bool:
        return self._done and not self._ready


def start_redis(directory: str) -> tuple[subprocess.Popen[bytes], int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", directory,
                             "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return proc, port
        except OSError:
            threading.Event().wait(0.02)
    proc.kill()
    raise SystemExit("redis-server did not start")


def make_wires(count: int) -> list[dict[str, Any]]:
    return SyntheticMarket(["AAPL", "MSFT", "NVDA", "AMZN", "TSLA"], seed=7).next_events(count)


def make_events(count: int) -> list[mrt.Event]:
    wires = make_wires(count)
    decoder = Decoder("stocks", "bench")
    now = time.time_ns()
    return [e for i in range(0, count, 100) for e in decoder.decode_objects(wires[i : i + 100], now + i)]


def wait_for(predicate: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("benchmark timed out")
        pause.wait(0.001)


def bench_sink(url: str, events: list[mrt.Event]) -> dict[str, float]:
    source = _Prepared(events)
    adapter = mrt.RealTimeDataAdapter(source)  # type: ignore[arg-type]
    handler_ns: list[int] = []
    stamp: list[int] = [0]

    def before(_event: mrt.Event) -> None:
        stamp[0] = time.perf_counter_ns()

    def after(_event: mrt.Event) -> None:
        handler_ns.append(time.perf_counter_ns() - stamp[0])

    adapter.on("*", before)
    sink = RedisStreamSink(adapter, url, buffer=len(events) + 1)
    sink.start()
    adapter.on("*", after)
    adapter.start()
    started, cpu = time.perf_counter(), time.process_time()
    source.release()
    wait_for(lambda: sink.stats().published == len(events))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    adapter.stop()
    sink.stop()
    stats = sink.stats()
    assert stats.dropped == 0, stats
    assert stats.published == len(events), stats
    handler_ns.sort()
    return {"eps": len(events) / elapsed, "cpu_us": cpu / len(events) * 1e6,
            "handler_p50_ns": handler_ns[len(handler_ns) // 2],
            "handler_p99_ns": handler_ns[int(len(handler_ns) * 0.99)]}  # fmt: skip


def bench_source(url: str, streams: list[str], expected: int, group: str) -> dict[str, float]:
    source = RedisStreamSource(url, streams, group=group, start_id="0", block_ms=100)
    count = [0]
    done = threading.Event()

    def handle(_event: mrt.Event) -> None:
        count[0] += 1
        if count[0] == expected:
            done.set()

    adapter = mrt.RealTimeDataAdapter(source, on_event=handle)
    started, cpu = time.perf_counter(), time.process_time()
    adapter.start()
    if not done.wait(120):
        raise SystemExit(f"source delivered {count[0]}/{expected}")
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    adapter.stop()
    stats = source.stats()
    assert stats.acked == expected, stats
    assert stats.in_flight == 0, stats
    return {"eps": expected / elapsed, "cpu_us": cpu / expected * 1e6}


def bench_end_to_end(url: str, upstream_source: _Prepared, total: int, streams: list[str],
                     tag: str) -> dict[str, float]:  # fmt: skip
    upstream = mrt.RealTimeDataAdapter(upstream_source)  # type: ignore[arg-type]
    sink = RedisStreamSink(upstream, url, stream=tag + ":{market}:{ev}", buffer=total + 1).start()
    consumer = RedisStreamSource(url, [s.replace("massive:", f"{tag}:") for s in streams], group=tag, block_ms=20)
    count = [0]
    done = threading.Event()

    def handle(_event: mrt.Event) -> None:
        count[0] += 1
        if count[0] == total:
            done.set()

    downstream = mrt.RealTimeDataAdapter(consumer, on_event=handle)
    downstream.start()
    consumer.wait_ready(10)
    upstream.start()
    started = time.perf_counter()
    upstream_source.release()
    if not done.wait(120):
        raise SystemExit(f"end to end delivered {count[0]}/{total}")
    elapsed = time.perf_counter() - started
    latency = downstream.stats().latency_us
    downstream.stop()
    upstream.stop()
    sink.stop()
    return {"eps": total / elapsed, "p50_ms": latency["p50"] / 1000, "p99_ms": latency["p99"] / 1000}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--rate", type=float, default=5_000.0, help="events/s of the paced end-to-end run")
    args = parser.parse_args(argv)
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not on PATH")
    try:
        import hiredis  # noqa: F401

        parser_name = "hiredis"
    except ImportError:
        parser_name = "pure Python (pip install hiredis for ~2-3x)"
    events = make_events(args.events)
    kinds: dict[str, int] = {}
    for event in events:
        kinds[event.event_type] = kinds.get(event.event_type, 0) + 1  # type: ignore[attr-defined]
    streams = [f"massive:stocks:{ev}" for ev in sorted(kinds)]
    results: dict[str, list[dict[str, float]]] = {"sink": [], "source": [], "end to end": [], "paced": []}
    paced_wires = make_wires(int(args.rate * 3))
    with tempfile.TemporaryDirectory() as directory:
        proc, port = start_redis(directory)
        url = f"redis://127.0.0.1:{port}/0"
        try:
            import redis

            client: Any = redis.Redis(port=port)
            for rep in range(args.reps):
                client.flushall()
                results["sink"].append(bench_sink(url, events))
                results["source"].append(bench_source(url, streams, len(events), group=f"bench-{rep}"))
                client.flushall()
                results["end to end"].append(bench_end_to_end(url, _Prepared(events), len(events), streams, "e2e"))
                paced = _Paced(paced_wires, args.rate)
                results["paced"].append(bench_end_to_end(url, paced, len(paced_wires), streams, f"paced{rep}"))
                print(f"  rep {rep + 1}: sink {results['sink'][-1]['eps']:,.0f} ev/s, source "
                      f"{results['source'][-1]['eps']:,.0f} ev/s, end to end {results['end to end'][-1]['eps']:,.0f} "
                      "ev/s", file=sys.stderr)  # fmt: skip
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
    mix = ", ".join(f"{ev} {n:,}" for ev, n in sorted(kinds.items()))
    print(f"\n{args.events:,} events ({mix}); Python {sys.version.split()[0]}; redis-py parser: {parser_name}; "
          f"{args.reps} runs, median (min-max)\n")  # fmt: skip
    print("| path | events/s | CPU µs/event | notes |")
    print("|---|---:|---:|---|")
    for path, runs in results.items():
        eps = sorted(r["eps"] for r in runs)
        cell = f"{statistics.median(eps):,.0f} ({eps[0]:,.0f}-{eps[-1]:,.0f})"
        cpu = f"{statistics.median(r['cpu_us'] for r in runs):.1f}" if "cpu_us" in runs[0] else "-"
        if path == "sink":
            p50 = statistics.median(r["handler_p50_ns"] for r in runs)
            p99 = statistics.median(r["handler_p99_ns"] for r in runs)
            note = f"adapter → sink → Redis acked; handler on the dispatcher p50 {p50:,.0f} ns, p99 {p99:,.0f} ns"
        elif path == "source":
            note = "Redis → source (XREADGROUP, decode, XACK) → adapter handler"
        elif path == "end to end":
            note = "adapter → sink → Redis → source → adapter, both in one process (shared GIL), as fast as possible"
        else:
            p50 = statistics.median(r["p50_ms"] for r in runs)
            p99 = statistics.median(r["p99_ms"] for r in runs)
            note = f"same, paced at {args.rate:,.0f} ev/s: latency recv→callback p50 {p50:.1f} ms, p99 {p99:.1f} ms"
        print(f"| {path} | {cell} | {cpu} | {note} |")


if __name__ == "__main__":
    main()
