"""One benchmark variant per process: ``python benchmarks/variants.py VARIANT --url ... --events N``.

Prints one JSON line: events, seconds (subscribe → last event consumed), events/s, latency
percentiles when ``--rate`` > 0 — end to end (the server's send stamp → the consumer) and in the
client (the moment the client's code got the bytes from the socket → the consumer: our reader's
``received_at_ns``; for the official client, the entry of websockets' ``data_received``) — and
peak RSS. Every variant consumes the same stream from the same benchmark server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_server import channel

import massive_rt as mrt
from massive_rt._util import percentiles

KEY = "bench"
EXTRA: dict[str, Any] = {}  # variant-specific fields of the result line (the adapter's dispatch counters)


class Meter:
    """Counts events and latency samples; ``done`` is set at ``target`` events."""

    def __init__(self, target: int, latency: bool) -> None:
        self.target = target
        self.count = 0
        self.latency = latency
        self.samples: list[int] = []
        self.recv_samples: list[int] = []
        self.done = threading.Event()
        self.finished_at = 0.0
        # CPU seconds of this process (every thread) from here to the last event: a cost per event
        # that a loaded machine disturbs far less than the wall clock (connecting is included).
        self.cpu_started = time.process_time()
        self.cpu_finished = 0.0

    def add(self, n: int, stamps: list[int] | None = None, received: list[int] | None = None) -> None:
        """Count ``n`` events at once (a frame's worth: the official client's handler gets lists)."""
        if stamps and self.latency:
            now = time.time_ns()
            self.samples.extend(now - t for t in stamps)
            if received:
                self.recv_samples.extend(now - t for t in received)
        self.count += n
        if self.count >= self.target and not self.done.is_set():
            self._finish()

    def handler(self) -> Callable[[Any], None]:
        """A per-event handler as light as a user's: a count (and the two latency samples)."""
        target = self.target
        count = 0
        finish = self._finish
        samples, recv_samples = self.samples, self.recv_samples

        def on_event(event: Any) -> None:
            nonlocal count
            count += 1
            if count == target:
                self.count = count
                finish()

        def on_event_timed(event: Any) -> None:
            nonlocal count
            now = time.time_ns()
            samples.append(now - event.timestamp)
            recv_samples.append(now - event.received_at_ns)
            count += 1
            if count == target:
                self.count = count
                finish()

        return on_event_timed if self.latency else on_event

    def _finish(self) -> None:
        self.finished_at = time.perf_counter()
        self.cpu_finished = time.process_time()
        self.done.set()


def mrt_client(url: str, meter: Meter, ch: str, mode: str) -> float:
    client = mrt.MassiveWebSocketClient(KEY, url=url, queue_size=10_000_000, raw=mode == "raw", ping_interval=None)
    client.start()
    client.wait_ready(10)
    started = time.perf_counter()
    client.subscribe(ch)
    trade = mrt.EquityTrade
    on_event = meter.handler()
    if mode == "get":
        get = client.get
        remaining = meter.target
        while remaining:
            event = get(30)
            if event.__class__ is trade:
                on_event(event)
                remaining -= 1
    else:
        while not meter.done.is_set():
            client.wait(30)
            events = client.drain()
            if mode == "raw":
                meter.add(sum(e.data.count(b'"ev"') for e in events if e.__class__ is mrt.RawFrame))  # type: ignore[attr-defined]
            else:
                for event in events:
                    if event.__class__ is trade:
                        on_event(event)
    client.stop()
    return started


def note_dispatch(adapter: Any) -> None:
    """The adapter's dispatch counters into the result line (where its events were delivered)."""
    stats = adapter.stats()
    EXTRA.update(dispatched_inline=stats.dispatched_inline, dispatched_on_dispatcher=stats.dispatched_on_dispatcher,
                 handovers=stats.handovers, inline_returns=stats.inline_returns)  # fmt: skip


def mrt_adapter(url: str, meter: Meter, ch: str, dispatch: str | None = None, record: bool = False) -> float:
    """The adapter with ``dispatch`` (None: the default, "adaptive")."""
    import tempfile

    from massive_rt.adapter import RealTimeDataAdapter

    client = mrt.MassiveWebSocketClient(KEY, url=url, queue_size=10_000_000, ping_interval=None)
    adapter = RealTimeDataAdapter(client) if dispatch is None else RealTimeDataAdapter(client, dispatch=dispatch)
    adapter.on(mrt.EquityTrade, meter.handler())
    recorder = None
    if record:  # a Recorder on the client (issue 16's target: >= 90% of the adapter without one)
        folder = tempfile.mkdtemp(prefix="massive-rt-bench-")
        recorder = mrt.Recorder(client, Path(folder) / "bench.mrt").start()
    adapter.start()
    client.wait_ready(10)
    started = time.perf_counter()
    adapter.subscribe(ch)
    meter.done.wait(120)
    note_dispatch(adapter)
    adapter.stop()
    if recorder is not None:
        recorder.stop()
        recorded = recorder.stats()
        EXTRA.update(recorded_records=recorded.records, recorded_dropped=recorded.dropped,
                     recorded_bytes=recorded.bytes_written, codec=recorder.codec)  # fmt: skip
        for part in recorded.files:
            Path(part).unlink(missing_ok=True)
    return started


def pool_variant(url: str, meter: Meter, events: int, batch: int, rate: int, connections: int) -> float:
    """A pool of ``connections`` connections, each carrying an equal share of the stream."""
    from massive_rt.adapter import RealTimeDataAdapter
    from massive_rt.pool import ConnectionPool

    pool = ConnectionPool(KEY, max_connections=connections, max_subscriptions_per_connection=1, url=url,
                          client_options={"queue_size": 10_000_000, "ping_interval": None})  # fmt: skip
    adapter = RealTimeDataAdapter(pool)  # the default dispatch, as "massive_rt adapter": 1 vs 3 connections
    adapter.on(mrt.EquityTrade, meter.handler())
    # Warm the connections first (same as the single-connection variant's wait_ready).
    placeholders = [f"T.WARM{i}" for i in range(connections)]
    pool.subscribe(*placeholders)
    adapter.start()
    pool.wait_ready(10)
    share = events // connections
    started = time.perf_counter()
    for i, placeholder in enumerate(placeholders):
        owner = pool.assignment(placeholder)
        client = next(c for c in pool.connections if c.name == owner)
        client.subscribe(channel(share + (events - share * connections if i == 0 else 0), batch, rate))
    meter.done.wait(120)
    note_dispatch(adapter)
    adapter.stop()
    return started


def official(url: str, meter: Meter, ch: str, raw: bool) -> float:
    from massive import WebSocketClient
    from websockets.asyncio.connection import Connection

    # The client's receive stamp: when websockets gets the bytes from asyncio's transport.
    received_at = [0]
    data_received = Connection.data_received

    def stamped(self: Connection, data: bytes) -> None:
        received_at[0] = time.time_ns()
        data_received(self, data)

    Connection.data_received = stamped  # type: ignore[method-assign]
    host = url.split("//", 1)[1].split("/", 1)[0]
    client = WebSocketClient(api_key=KEY, feed=host, market="stocks", secure=False, raw=raw, subscriptions=[ch])
    state = {"started": 0.0}

    async def handle(msgs: object) -> None:
        if raw:
            data = msgs if isinstance(msgs, bytes) else str(msgs).encode()
            if data.startswith(b'[{"ev":"T"'):
                meter.add(data.count(b'"ev"'))
        else:
            if meter.latency:
                meter.add(len(msgs), [m.timestamp for m in msgs],  # type: ignore[union-attr, attr-defined]
                          [received_at[0]] * len(msgs))  # type: ignore[arg-type]  # fmt: skip
            else:
                meter.add(len(msgs))  # type: ignore[arg-type]
        if meter.done.is_set():
            await client.close()

    state["started"] = time.perf_counter()
    asyncio.run(client.connect(handle))
    return state["started"]


def raw_ceiling(url: str, meter: Meter, ch: str) -> float:
    import websocket

    ws = websocket.create_connection(url, skip_utf8_validation=True)
    ws.recv()
    ws.send(json.dumps({"action": "auth", "params": KEY}))
    ws.recv()
    started = time.perf_counter()
    ws.send(json.dumps({"action": "subscribe", "params": ch}))
    while not meter.done.is_set():
        data = ws.recv()
        if data.startswith('[{"ev":"T"'):
            meter.add(data.count('"ev"'))
    ws.close()
    return started


VARIANTS: dict[str, Callable[..., float]] = {
    "massive_rt get()": lambda url, m, ch: mrt_client(url, m, ch, "get"),
    "massive_rt drain()": lambda url, m, ch: mrt_client(url, m, ch, "drain"),
    "massive_rt adapter": mrt_adapter,
    "massive_rt adapter inline": lambda url, m, ch: mrt_adapter(url, m, ch, "inline"),
    "massive_rt adapter thread": lambda url, m, ch: mrt_adapter(url, m, ch, "thread"),
    "massive_rt adapter recorded": lambda url, m, ch: mrt_adapter(url, m, ch, record=True),
    "massive_rt adapter thread recorded": lambda url, m, ch: mrt_adapter(url, m, ch, "thread", record=True),
    "massive_rt adapter inline recorded": lambda url, m, ch: mrt_adapter(url, m, ch, "inline", record=True),
    "massive_rt raw": lambda url, m, ch: mrt_client(url, m, ch, "raw"),
    "official typed": lambda url, m, ch: official(url, m, ch, False),
    "official raw": lambda url, m, ch: official(url, m, ch, True),
    "websocket-client recv": raw_ceiling,
}


def synthetic(events: int) -> dict[str, float]:
    """SyntheticSource → adapter → a no-op callback, as fast as it goes (no server involved)."""
    from massive_rt.adapter import RealTimeDataAdapter

    done = threading.Event()
    count = 0

    def handler(_event: object) -> None:
        nonlocal count
        count += 1
        if count >= events:
            done.set()

    source = mrt.SyntheticSource(["T.*", "Q.*", "A.*", "AM.*"], seed=1, rate=None, batch=100, clock=None)
    adapter = RealTimeDataAdapter(source, on_event=handler)
    started = time.perf_counter()
    adapter.start()
    done.wait(120)
    seconds = time.perf_counter() - started
    adapter.stop(drain=False)
    return {"variant": "synthetic → adapter", "events": count, "seconds": seconds, "eps": count / seconds,
            "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}  # fmt: skip


def idle_rss(url: str, connections: int) -> dict[str, float]:
    """RSS growth per idle, authenticated connection."""
    import gc

    warm = mrt.MassiveWebSocketClient(KEY, url=url, ping_interval=None)  # imports, decoders: once per process
    warm.start()
    warm.wait_ready(10)
    warm.stop()
    gc.collect()
    before = _rss_kb()
    clients = [mrt.MassiveWebSocketClient(KEY, url=url, ping_interval=None) for _ in range(connections)]
    for client in clients:
        client.start()
    for client in clients:
        client.wait_ready(10)
    gc.collect()
    after = _rss_kb()
    for client in clients:
        client.stop()
    return {"connections": connections, "kb_per_connection": (after - before) / connections}


def _rss_kb() -> int:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() // 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("variant")
    parser.add_argument("--url", required=True)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--rate", type=int, default=0)
    parser.add_argument("--connections", type=int, default=3)
    parser.add_argument("--pad", type=int, default=0, help="characters of padding per trade (larger events)")
    args = parser.parse_args()
    if args.variant == "idle rss":
        print(json.dumps(idle_rss(args.url, args.connections)))
        return
    if args.variant == "synthetic":
        print(json.dumps(synthetic(args.events)))
        return
    meter = Meter(args.events, latency=args.rate > 0)
    if args.variant == "massive_rt pool":
        started = pool_variant(args.url, meter, args.events, args.batch, args.rate, args.connections)
    else:
        started = VARIANTS[args.variant](args.url, meter, channel(args.events, args.batch, args.rate, args.pad))
    if not meter.done.is_set():
        raise SystemExit(f"{args.variant}: only {meter.count}/{args.events} events")
    seconds = meter.finished_at - started
    result = {
        "variant": args.variant,
        "events": meter.count,
        "seconds": seconds,
        "eps": meter.count / seconds,
        "cpu_us_per_event": (meter.cpu_finished - meter.cpu_started) * 1e6 / meter.count,
        "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "accelerated": mrt.accelerated,
        "accelerator": mrt.speedups.STATUS,
        **EXTRA,
    }
    if meter.samples:
        result.update({f"lat_{k}_us": v / 1000 for k, v in percentiles(meter.samples).items()})
    if meter.recv_samples:
        result.update({f"recv_{k}_us": v / 1000 for k, v in percentiles(meter.recv_samples).items()})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
