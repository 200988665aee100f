"""Recording benchmark (issue 16): codecs on a demo stream, typed throughput with and without a
recorder (same run), replay as fast as possible vs live.

Numbers, not a test: ``python benchmarks/bench_recording.py``.
"""

from __future__ import annotations

import argparse
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
            print(f"  {codec:5} {writer.bytes_written / events:6.1f} bytes/event ({writer.bytes_written / raw:5.1%} of "
                  f"the raw frames)  {raw / took / 1e6:6.1f} MB/s raw in")


def burst(items: int, buffer_size: int, frame_bytes: int = 1_000) -> None:
    """A burst far faster than the writer: the buffer holds ``buffer_size`` items, the rest are
    counted as lost; peak memory stays near ``buffer_size * frame_bytes``."""
    source = mrt.SyntheticSource(("T.*",), rate=None)
    with tempfile.TemporaryDirectory() as tmp:
        recorder = mrt.Recorder(source, Path(tmp) / "burst.mrt", buffer_size=buffer_size).start()
        frame = b"[" + b"x" * (frame_bytes - 2) + b"]"
        tracemalloc.start()
        for i in range(items):
            recorder(source, [KIND_DATA, frame[:-1] + bytes([93 + i % 2]), i, 10])  # a new bytes object each
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        recorder.stop()
        stats = recorder.stats()
    print(f"burst of {items:,} x {frame_bytes} B frames into buffer_size={buffer_size:,}: peak {peak / 1e6:.1f} MB "
          f"traced (bound ~{buffer_size * (frame_bytes + 120) / 1e6:.1f} MB), {stats.dropped:,} counted as lost, "
          f"{stats.records:,} records written")


def typed(seconds: float, record: bool, tmp: str) -> tuple[float, int]:
    source = mrt.SyntheticSource(("T.*", "Q.*"), rate=None, seed=2, batch=20)
    adapter = mrt.RealTimeDataAdapter(source)
    count = [0]

    def on_event(_: mrt.Event) -> None:
        count[0] += 1

    adapter.on("*", on_event)
    recorder = mrt.Recorder(source, Path(tmp) / f"t{time.monotonic_ns()}.mrt") if record else None
    if recorder is not None:
        recorder.start()
    adapter.start()
    threading.Event().wait(seconds)
    adapter.stop(drain=False)
    done = count[0]
    if recorder is not None:
        recorder.stop()
        print(
            f"  recorder: {recorder.stats().records} records, ratio {recorder.stats().compression_ratio:.1f}, "
            f"dropped {recorder.stats().dropped}"
        )
    return done / seconds, done


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    codecs(200_000)
    burst(200_000, 10_000)
    with tempfile.TemporaryDirectory() as tmp:
        without, _ = typed(args.seconds, False, tmp)
        with_rec, _ = typed(args.seconds, True, tmp)
        print(
            f"typed throughput: {without:,.0f} ev/s without, {with_rec:,.0f} ev/s with a recorder "
            f"({with_rec / without:.0%})"
        )
        path = next(Path(tmp).glob("t*.mrt"))
        print(f"replay (speed=None): {replay(path):,.0f} ev/s vs live {with_rec:,.0f} ev/s")


if __name__ == "__main__":
    main()
