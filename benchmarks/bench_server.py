"""The benchmark's server process: a MockMassiveServer that streams on request.

It runs in its own process so the client under test never shares a GIL with it. A client asks
for a stream by subscribing to a channel that encodes the request:
``T.BENCHN<events>B<batch>R<rate>[P<pad>]`` — ``R0`` sends everything as fast as the socket takes
it (pre-encoded frames, many per system call); ``R<n>`` paces ``n`` events per second and stamps
each event's ``t`` with the server's ``time.time_ns()`` at send, for end-to-end latency; ``P<pad>``
adds a ``pad`` string of that many characters to each trade (a field no model has: larger events).
"""

from __future__ import annotations

import json
import re
import threading
import time
from multiprocessing.connection import Connection

from massive_rt.testing import MockMassiveServer, PreparedFrames

REQUEST = re.compile(r"^T\.BENCHN(\d+)B(\d+)R(\d+)(?:P(\d+))?$")
TEMPLATE = {"ev": "T", "sym": "BENCH", "x": 4, "i": "52983525029461", "z": 3, "p": 187.235, "s": 100,
            "c": [12, 37], "t": 0, "q": 0}  # fmt: skip
_burst_cache: dict[tuple[int, int, int], PreparedFrames] = {}


def channel(events: int, batch: int, rate: int = 0, pad: int = 0) -> str:
    """The channel that asks the benchmark server for a stream."""
    return f"T.BENCHN{events}B{batch}R{rate}" + (f"P{pad}" if pad else "")


def _template(pad: int) -> dict[str, object]:
    return dict(TEMPLATE, pad="x" * pad) if pad else TEMPLATE


def _frames(events: int, batch: int, pad: int = 0) -> list[bytes]:
    now = time.time_ns()
    frames = []
    template = _template(pad)
    for start in range(0, events, batch):
        objs = [dict(template, q=i, t=now) for i in range(start, min(events, start + batch))]
        frames.append(json.dumps(objs, separators=(",", ":")).encode())
    return frames


def _prepared(events: int, batch: int, pad: int = 0) -> PreparedFrames:
    """The burst, encoded and framed once per size (run.py warms each size up before measuring)."""
    key = (events, batch, pad)
    if key not in _burst_cache:
        _burst_cache[key] = MockMassiveServer.prepare_raw_frames(_frames(events, batch, pad))
    return _burst_cache[key]


def _stream(server: MockMassiveServer, connection: str, events: int, batch: int, rate: int, pad: int = 0) -> None:
    if rate == 0:
        server.publish_raw_frames(_prepared(events, batch, pad), "stocks", connection=connection)
        return
    interval = batch / rate
    next_at = time.perf_counter()
    sent = 0
    while sent < events:
        now = time.perf_counter()
        if now < next_at:
            time.sleep(min(next_at - now, 0.001))
            continue
        count = min(batch, events - sent)
        stamp = time.time_ns()
        frame = json.dumps([dict(_template(pad), q=sent + i, t=stamp) for i in range(count)], separators=(",", ":"))
        if not server.publish_raw_frames([frame], "stocks", connection=connection):
            return  # the client went away
        sent += count
        next_at += interval


def serve(pipe: Connection) -> None:
    """Process entry point: send the port, serve stream requests until told to stop."""
    with MockMassiveServer(api_keys=None, name="bench") as server:
        pipe.send(server.port)
        served: set[tuple[str, str]] = set()

        def pending() -> list[tuple[str, str]]:
            return [(c.id, ch) for c in server.active_connections() for ch in c.subscriptions
                    if REQUEST.match(ch) and (c.id, ch) not in served]  # fmt: skip

        while not pipe.poll():
            server.wait_for(lambda: bool(pending()), 0.05)
            for connection, ch in pending():
                served.add((connection, ch))
                match = REQUEST.match(ch)
                assert match is not None
                events, batch, rate, pad = (int(g or 0) for g in match.groups())
                threading.Thread(target=_stream, args=(server, connection, events, batch, rate, pad),
                                 name="massive-rt-bench-stream", daemon=True).start()  # fmt: skip
