"""Relay fan-out benchmark: events per second delivered through a MassiveRelay to 1, 10 and 50 consumers.

Three processes, so that no two sides share a GIL:

* the **upstream**: a MockMassiveServer writing pre-encoded trade frames to the relay's upstream
  connection as fast as the socket takes them;
* the **relay** (this process): a MassiveRelay with one upstream connection;
* the **consumers**: one process reading N downstream WebSocket connections with a selector and
  counting the events in each frame without decoding them — the cheapest possible consumer, so the
  numbers measure the relay, not the clients.

Two stream shapes: ``same`` (every consumer subscribes ``T.*``: each upstream frame goes to one set of
consumers and is forwarded as it is) and ``split`` (half the consumers subscribe ``T.BENCH``, half
``T.OTHER``, and every upstream frame mixes both tickers: each frame is split and re-encoded once
per half). Time runs from the upstream's first write to the last event counted by the consumers.

Usage: ``python benchmarks/bench_relay.py [--events N] [--batch K] [--consumers 1 10 50] [--reps R]``
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import selectors
import statistics
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import websocket

from massive_rt.framing import OP_CLOSE, OP_TEXT, FrameParser
from massive_rt.relay import MassiveRelay
from massive_rt.testing import MockMassiveServer

TEMPLATE = {"ev": "T", "sym": "BENCH", "x": 4, "i": "52983525029461", "z": 3, "p": 187.235, "s": 100,
            "c": [12, 37], "t": 1_700_000_000_000, "q": 0}  # fmt: skip


def frames(events: int, batch: int, split: bool) -> list[bytes]:
    """Pre-encoded upstream frames; with ``split`` every frame alternates BENCH and OTHER trades."""
    out = []
    for start in range(0, events, batch):
        objs = [dict(TEMPLATE, q=i, sym="OTHER" if split and i % 2 else "BENCH")
                for i in range(start, min(events, start + batch))]  # fmt: skip
        out.append(json.dumps(objs, separators=(",", ":")).encode())
    return out


# ------------------------------------------------------------------------------------------ upstream


def upstream_process(pipe: Connection) -> None:
    """Serve until told to stop; on ``("go", frames)`` write them to every connection, timed."""
    with MockMassiveServer(api_keys=None, name="bench-upstream") as server:
        pipe.send(server.port)
        while True:
            command = pipe.recv()
            if command[0] == "stop":
                return
            _, payload = command
            started = time.monotonic()
            server.publish_raw_frames(payload, "stocks")
            pipe.send(started)


# ------------------------------------------------------------------------------------------ consumers


def consumers_process(pipe: Connection) -> None:
    """On ``(url, channels, expected)``: connect one consumer per channel, report ready, count every
    consumer up to ``expected`` events, then report the time the last one completed."""
    while True:
        command = pipe.recv()
        if command is None:
            return
        url, channels, expected = command
        socks = []
        for channel in channels:
            ws = websocket.create_connection(url, timeout=10, skip_utf8_validation=True)
            ws.recv()  # connected
            ws.send(json.dumps({"action": "auth", "params": "bench"}))
            ws.recv()  # auth_success
            ws.send(json.dumps({"action": "subscribe", "params": channel}))
            ws.recv()  # the ack
            sock = ws.sock
            sock.setblocking(False)
            socks.append((ws, sock))
        selector = selectors.DefaultSelector()
        counts = [0] * len(socks)
        parsers = [FrameParser(64 * 1024 * 1024) for _ in socks]
        for index, (_, sock) in enumerate(socks):
            selector.register(sock, selectors.EVENT_READ, index)
        pipe.send("ready")
        pending = len(socks)
        finished = 0.0
        while pending:
            for key, _ in selector.select(timeout=30):
                index = key.data
                try:
                    data = key.fileobj.recv(4 * 1024 * 1024)  # type: ignore[union-attr]
                except BlockingIOError:
                    continue
                if not data:
                    raise SystemExit(f"consumer {index} lost its connection")
                parser = parsers[index]
                parser.feed(data)
                for opcode, payload in parser.messages():
                    if opcode == OP_TEXT:
                        counts[index] += payload.count(b'"ev"')
                    elif opcode == OP_CLOSE:
                        raise SystemExit(f"consumer {index} closed by the relay: {payload!r}")
                if counts[index] >= expected:
                    selector.unregister(key.fileobj)
                    pending -= 1
                    finished = time.monotonic()
        selector.close()
        pipe.send(finished)
        for ws, _ in socks:
            ws.sock.setblocking(True)
            ws.close(timeout=1)


# ------------------------------------------------------------------------------------------ runs


def run(upstream: Connection, consumers: Connection, port: int, n: int, events: int, batch: int, shape: str) -> dict:
    relay = MassiveRelay(
        api_key="bench", url=f"ws://127.0.0.1:{port}/{{market}}", consumer_buffer=100_000_000,
        client_options={"queue_size": 100_000_000, "ping_interval": None}, name="bench",
    ).start()  # fmt: skip
    try:
        split = shape == "split"
        channels = [("T.OTHER" if split and i % 2 else "T.BENCH") if split else "T.*" for i in range(n)]
        expected = events // 2 if split else events
        consumers.send((relay.url("stocks"), channels, expected))
        assert consumers.recv() == "ready"
        wanted = set(channels)
        deadline = time.monotonic() + 10
        while not wanted <= {c for info in relay.upstream.connections for c in info.acked}:
            if time.monotonic() > deadline:
                raise SystemExit("the relay did not subscribe upstream in time")
            time.sleep(0.01)
        upstream.send(("go", frames(events, batch, split)))
        started = upstream.recv()
        finished = consumers.recv()
        elapsed = finished - started
        stats = relay.stats()
        assert stats.events_dropped == 0, stats
        assert stats.slow_consumers == 0, stats
        delivered = expected * n
        return {"consumers": n, "shape": shape, "seconds": elapsed, "upstream_eps": events / elapsed,
                "delivered_eps": delivered / elapsed}  # fmt: skip
    finally:
        relay.stop()


def environment() -> str:
    import websockets

    try:
        import orjson

        fast = f"orjson {orjson.__version__}"
    except ImportError:  # pragma: no cover
        fast = "stdlib json (no orjson)"
    return (f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; Python {platform.python_version()}; "
            f"{os.cpu_count()} cores; websockets {websockets.__version__}; {fast}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="upstream events per run (default 100000)")
    parser.add_argument("--batch", type=int, default=10, help="events per upstream frame (default 10)")
    parser.add_argument("--consumers", type=int, nargs="+", default=[1, 10, 50], help="fan-outs (default 1 10 50)")
    parser.add_argument("--shapes", nargs="+", default=["same", "split"], choices=["same", "split"])
    parser.add_argument("--reps", type=int, default=3, help="runs per cell; the median is reported (default 3)")
    args = parser.parse_args()

    context = multiprocessing.get_context("spawn")
    up_parent, up_child = context.Pipe()
    co_parent, co_child = context.Pipe()
    up = context.Process(target=upstream_process, args=(up_child,), name="bench-upstream", daemon=True)
    co = context.Process(target=consumers_process, args=(co_child,), name="bench-consumers", daemon=True)
    up.start()
    co.start()
    port = up_parent.recv()
    rows = []
    try:
        for shape in args.shapes:
            for n in args.consumers:
                results = [run(up_parent, co_parent, port, n, args.events, args.batch, shape) for _ in range(args.reps)]
                rows.append({
                    "shape": shape, "consumers": n,
                    "upstream_eps": statistics.median(r["upstream_eps"] for r in results),
                    "delivered_eps": statistics.median(r["delivered_eps"] for r in results),
                    "seconds": statistics.median(r["seconds"] for r in results),
                })  # fmt: skip
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    finally:
        up_parent.send(("stop",))
        co_parent.send(None)
        up.join(10)
        co.join(10)

    print(f"Measured {environment()}.")
    print(f"{args.events:,} upstream trades in frames of {args.batch}; median of {args.reps} run(s); upstream, relay "
          "and consumers in three processes.\n")  # fmt: skip
    print("| stream | consumers | upstream events/s | events/s delivered (all consumers) | seconds |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        label = "same channels (forwarded as is)" if row["shape"] == "same" else "split in two (re-encoded)"
        print(f"| {label} | {row['consumers']} | {row['upstream_eps']:,.0f} | {row['delivered_eps']:,.0f} | "
              f"{row['seconds']:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
