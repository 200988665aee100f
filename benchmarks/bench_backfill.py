"""Gap backfill (issue 15): not a timed test, a measurement. Run: ``python benchmarks/bench_backfill.py``.

1. **Reconnect → backfill done** for a 10 s gap at 5,000 events/s: a client subscribed to 10 explicit
   tickers (``T.S0`` … ``T.S9``) with a :class:`~massive_rt.Backfill` on a MockMassiveREST (loopback);
   one live trade per symbol sets the marks, 50,000 trades spanning 10 s of exchange time go into the
   REST history only (lost), the server drops the connection, and after the reconnect one live trade
   per symbol closes the gap. Timed: the ``gap`` status reaching its handler → ``backfill_done``
   reaching its handler (fetch over HTTP, conversion, seam, delivery of the 50,000 to a counting
   callback), and ``backfill_done.duration_s``. ``REPS`` runs.
2. **Typed throughput with backfill enabled but idle vs without**: the adapter's dispatch of
   pre-decoded trades and quotes (the ``bench_lastvalue`` ``ListSource``: no socket, so the adapter's
   own cost is what is compared), with and without ``backfill=`` (no gap ever comes), alternating in
   the same run, ``ROUNDS`` each; medians.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_lastvalue import ListSource, decoded_frames

import massive_rt as mrt
from massive_rt.rest import RestHistory
from massive_rt.testing import MockMassiveREST, MockMassiveServer

KEY = "bench-key"
SYMBOLS = [f"S{i}" for i in range(10)]
GAP_SECONDS = 10
RATE = 5_000
REPS = 3
ROUNDS = 7
EVENTS = 400_000


def _trade(symbol: str, t_ms: int, q: int) -> dict[str, Any]:
    return {"ev": "T", "sym": symbol, "p": 100.0, "s": 1, "t": t_ms, "q": q, "x": 4, "i": str(q)}


def reconnect_to_done() -> tuple[float, float, int]:
    """One 10 s gap: (seconds gap handler → done handler, done.duration_s, events backfilled)."""
    with MockMassiveServer(api_keys={KEY}) as server, MockMassiveREST(api_keys={KEY}, ws=server) as rest:
        backfill = mrt.Backfill(RestHistory(KEY, rest_url=rest.url), max_events_per_gap=RATE * GAP_SECONDS * 2)
        fast = mrt.ReconnectPolicy(initial_delay=0.01, max_delay=0.05)
        channels = [f"T.{s}" for s in SYMBOLS]
        client = mrt.MassiveWebSocketClient(api_key=KEY, url=server.url(), subscriptions=channels, reconnect=fast)
        adapter = mrt.RealTimeDataAdapter(client, backfill=backfill)
        count = 0
        live = threading.Event()
        gap_at: list[float] = []
        done: list[tuple[float, mrt.StatusMessage]] = []
        finished = threading.Event()

        def on_trade(_trade: mrt.EquityTrade) -> None:
            nonlocal count
            count += 1
            if count == len(SYMBOLS):
                live.set()

        def on_status(status: mrt.StatusMessage) -> None:
            if status.status == "gap":
                gap_at.append(time.perf_counter())
            elif status.status == "backfill_done":
                done.append((time.perf_counter(), status))
                finished.set()

        adapter.on(mrt.EquityTrade, on_trade)
        adapter.on_status(on_status)
        with adapter:
            adapter.wait_ready(10)
            t0 = time.time_ns() // 1_000_000 - 60_000
            server.publish([_trade(s, t0, 0) for s in SYMBOLS])
            if not live.wait(10):
                raise SystemExit("the first live trades did not arrive")
            lost = [_trade(SYMBOLS[i % len(SYMBOLS)], t0 + 1 + i * 1000 // RATE, 1 + i // len(SYMBOLS))
                    for i in range(RATE * GAP_SECONDS)]  # fmt: skip
            rest.add_events(lost)
            server.drop_all()
            resumed = [_trade(s, t0 + 1 + GAP_SECONDS * 1000, 1 + RATE * GAP_SECONDS) for s in SYMBOLS]
            deadline = time.monotonic() + 10
            while not gap_at and time.monotonic() < deadline:
                server.publish(resumed)
                live.wait(0.05)  # the client is reconnecting: offer the resuming trades again
            if not finished.wait(120):
                raise SystemExit("backfill_done did not arrive")
        at, status = done[0]
        return at - gap_at[0], float(status.duration_s), int(status.events)  # type: ignore[attr-defined]


class _IdleHistory:
    """A history that is never asked (no gap comes)."""

    def trades(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("no gap: never called")

    quotes = aggs = trades

    def close(self) -> None:
        pass


def dispatch_rate(frames: list[list[mrt.Event]], backfill: bool) -> float:
    total = sum(map(len, frames))
    count = 0
    done = threading.Event()

    def on_event(_event: mrt.Event) -> None:
        nonlocal count
        count += 1
        if count == total:
            done.set()

    adapter = mrt.RealTimeDataAdapter(ListSource(frames), on_event=on_event,  # type: ignore[arg-type]
                                      backfill=mrt.Backfill(_IdleHistory()) if backfill else None)  # type: ignore[arg-type]  # fmt: skip
    start = time.perf_counter()
    adapter.start()
    done.wait(120)
    elapsed = time.perf_counter() - start
    adapter.stop()
    return total / elapsed


def main() -> None:
    print(f"## Reconnect → backfill done: {GAP_SECONDS} s gap at {RATE:,} events/s, {len(SYMBOLS)} symbols")
    print("| run | gap → done handler (s) | done.duration_s | events |")
    print("|---|---:|---:|---:|")
    for rep in range(REPS):
        wall, duration, events = reconnect_to_done()
        print(f"| {rep + 1} | {wall:.3f} | {duration:.3f} | {events:,} |")
    frames = decoded_frames(EVENTS)
    rates: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(ROUNDS):
        for enabled in (False, True):
            rates[enabled].append(dispatch_rate(frames, enabled))
    without, with_idle = statistics.median(rates[False]), statistics.median(rates[True])
    print(f"\n## Typed dispatch, backfill idle vs none ({EVENTS:,} events x {ROUNDS}, alternating; medians)")
    print("| adapter | events/s |")
    print("|---|---:|")
    print(f"| without backfill | {without:,.0f} |")
    print(f"| backfill=, idle | {with_idle:,.0f} |")
    print(f"| difference | {100 * (with_idle - without) / without:+.1f}% |")


if __name__ == "__main__":
    main()
