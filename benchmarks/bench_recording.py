"""Recording benchmark (issue 16): codecs on a demo stream, typed throughput with and without a
recorder (same run), replay as fast as possible vs live.

Numbers, not a test: ``python benchmarks/bench_recording.py``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

import massive_rt as mrt
from massive_rt._json import dumps
from massive_rt.eventqueue import KIND_DATA
from massive_rt.recording import RecordingHeader, RecordingWriter
from massive_rt.recording.fileformat import KIND_OBJECTS


def codecs(events: int) -> None:
    market = mrt.SyntheticMarket(None, seed=1)
    frames = [dumps(market.next_events(10)) for _ in range(events // 10)]
    raw = sum(len(f) for f in frames)
    print(f"demo stream: {events} events in {len(frames)} frames, {raw / events:.1f} raw bytes/event")
    with tempfile.TemporaryDirectory() as tmp:
        for codec in ("zstd", "gzip", "none"):
            path = Path(tmp) / f"{codec}.mrt"
            started = time.perf_counter()
            writer = RecordingWriter(path, RecordingHeader(codec=codec))
            for i, frame in enumerate(frames):
                writer.append(i, "c", KIND_OBJECTS, frame)
            writer.close()
            took = time.perf_counter() - started
            print(
                f"  {codec:5} {writer.bytes_written / events:6.1f} bytes/event ({writer.bytes_written / raw:5.1%} of "
                f"the raw frames)  {raw / took / 1e6:6.1f} MB/s raw in"
            )


def burst(items: int, max_buffer_bytes: int, frame_bytes: int = 1_000) -> None:
    """A burst far faster than the writer: the buffer holds ``max_buffer_bytes``, the rest are
    counted as lost; traced peak memory stays near the bound."""
    source = mrt.SyntheticSource(("T.*",), rate=None, clock=None)
    with tempfile.TemporaryDirectory() as tmp:
        recorder = mrt.Recorder(source, Path(tmp) / "burst.mrt", max_buffer_bytes=max_buffer_bytes,
                                buffer_size=items).start()  # fmt: skip
        frame = b"[" + b"x" * (frame_bytes - 2) + b"]"
        tracemalloc.start()
        for i in range(items):
            recorder(source, [KIND_DATA, frame[:-1] + bytes([93 + i % 2]), i, 10])  # a new bytes object each
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        recorder.stop()
        stats = recorder.stats()
    print(
        f"burst of {items:,} x {frame_bytes} B frames into max_buffer_bytes={max_buffer_bytes:,}: peak "
        f"{peak / 1e6:.1f} MB traced, {stats.dropped:,} counted as lost, {stats.records:,} records written"
    )


def typed(seconds: float, record: bool, tmp: str) -> tuple[float, float]:
    """Events/s into a counting callback, and the process's CPU µs per event (less noisy than
    the rate on a shared machine: it counts what the recorder adds, not what the neighbours take)."""
    source = mrt.SyntheticSource(("T.*", "Q.*"), rate=None, seed=2, batch=20, clock=None)
    adapter = mrt.RealTimeDataAdapter(source)
    count = [0]

    def on_event(_: mrt.Event) -> None:
        count[0] += 1

    adapter.on("*", on_event)
    recorder = mrt.Recorder(source, Path(tmp) / f"t{time.monotonic_ns()}.mrt") if record else None
    if recorder is not None:
        recorder.start()
    cpu = time.process_time()
    adapter.start()
    threading.Event().wait(seconds)
    adapter.stop(drain=False)
    done = count[0]
    if recorder is not None:
        recorder.stop()
        stats = recorder.stats()
        print(f"  recorder: {stats.records} records, ratio {stats.compression_ratio:.1f}, dropped {stats.dropped}")
    return done / seconds, (time.process_time() - cpu) * 1e6 / max(done, 1)


def replay(path: Path) -> float:
    source = mrt.ReplaySource(path, speed=None)
    adapter = mrt.RealTimeDataAdapter(source)
    count = [0]
    adapter.on("*", lambda _: count.__setitem__(0, count[0] + 1))
    started = time.perf_counter()
    adapter.start()
    while not source.exhausted:
        threading.Event().wait(0.01)
    adapter.stop()
    return count[0] / (time.perf_counter() - started)


def alternating(seconds: float, rounds: int, tmp: str) -> tuple[list[float], list[float]]:
    """Typed throughput without and with a recorder, alternating in the same run (the machine's
    load drifts: alternating spreads it over both sides); each round's ratio is printed."""
    without: list[float] = []
    with_rec: list[float] = []
    for i in range(rounds):
        off, off_cpu = typed(seconds, False, tmp)
        on, on_cpu = typed(seconds, True, tmp)
        without.append(off)
        with_rec.append(on)
        print(
            f"  round {i + 1}: {off:,.0f} ev/s without, {on:,.0f} ev/s with ({on / off:.1%}); CPU "
            f"{off_cpu:.2f} vs {on_cpu:.2f} µs/event"
        )
    return without, with_rec


def live(rounds: int, events: int, batch: int, dispatch: str = "adaptive") -> None:
    """The adapter over a real connection (the benchmark server of ``run.py``, loopback) without
    and with a Recorder on its client, each in a fresh process, alternating: the recorder's share
    of a fast path (the synthetic comparison above includes the generator's cost, ~14 µs/event)."""
    import multiprocessing
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_server
    from run import repeat

    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    server = context.Process(target=bench_server.serve, args=(child,), name="bench-server", daemon=True)
    server.start()
    url = f"ws://127.0.0.1:{parent.recv()}/stocks"
    try:
        base = "massive_rt adapter" if dispatch == "adaptive" else f"massive_rt adapter {dispatch}"
        variants = [base, f"{base} recorded"]
        results = repeat(url, variants, rounds, events=events, batch=batch)
    finally:
        parent.send("stop")
        server.join(10)
    for i, (off, on) in enumerate(zip(results[variants[0]], results[variants[1]], strict=True)):
        print(f"  round {i + 1}: {on['eps'] / off['eps']:.1%}; CPU {off['cpu_us_per_event']:.2f} vs "
              f"{on['cpu_us_per_event']:.2f} µs/event; events dispatched inline {off.get('dispatched_inline', 0):,} "
              f"without, {on.get('dispatched_inline', 0):,} with the recorder")  # fmt: skip
    without = [r["eps"] for r in results[variants[0]]]
    with_rec = [r["eps"] for r in results[variants[1]]]
    ratios = sorted(on / off for off, on in zip(without, with_rec, strict=True))
    cpu_off = statistics.median(r["cpu_us_per_event"] for r in results[variants[0]])
    cpu_on = statistics.median(r["cpu_us_per_event"] for r in results[variants[1]])
    last = results[variants[1]][-1]
    print(
        f"live adapter (dispatch={dispatch}), {events:,} trades in frames of {batch}, {rounds} alternating rounds: "
        f"median "
        f"{statistics.median(without):,.0f} ev/s without, {statistics.median(with_rec):,.0f} ev/s with a recorder "
        f"({last['codec']}, {last['recorded_bytes'] / events:.1f} bytes/event, {last['recorded_dropped']} lost); "
        f"ratio median {statistics.median(ratios):.1%} (min {ratios[0]:.1%}, max {ratios[-1]:.1%}); CPU "
        f"{cpu_off:.2f} vs {cpu_on:.2f} µs/event"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--typed-only", action="store_true", help="only the with/without recorder comparison")
    parser.add_argument("--live", action="store_true",
                        help="only the comparison over a real loopback connection (the benchmark server)")
    parser.add_argument("--events", type=int, default=300_000, help="with --live: trades per run")
    parser.add_argument("--batch", type=int, default=10, help="with --live: trades per frame")
    parser.add_argument("--dispatch", choices=("adaptive", "thread", "inline"), default="adaptive",
                        help="with --live: the adapter's dispatch mode (default: adaptive, the adapter's default)")
    args = parser.parse_args()
    if args.live:
        live(args.rounds, args.events, args.batch, args.dispatch)
        return
    if not args.typed_only:
        codecs(200_000)
        burst(200_000, 8 << 20)
    with tempfile.TemporaryDirectory() as tmp:
        without, with_rec = alternating(args.seconds, args.rounds, tmp)
        ratios = sorted(on / off for off, on in zip(without, with_rec, strict=True))
        print(
            f"typed throughput over {args.rounds} alternating rounds: median {statistics.median(without):,.0f} ev/s "
            f"without, {statistics.median(with_rec):,.0f} ev/s with a recorder; ratio median "
            f"{statistics.median(ratios):.1%} (min {ratios[0]:.1%}, max {ratios[-1]:.1%}); sum-ratio "
            f"{sum(with_rec) / sum(without):.1%}"
        )
        if not args.typed_only:
            path = next(Path(tmp).glob("t*.mrt"))
            print(f"replay (speed=None): {replay(path):,.0f} ev/s vs live {statistics.median(with_rec):,.0f} ev/s")


if __name__ == "__main__":
    main()
