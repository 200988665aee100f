"""Soak: a million events through a 3-connection pool into an adapter, with a reconnect every 100,000.

Run with ``make soak`` (or ``python benchmarks/soak.py``). It checks, and exits 1 when one fails:

* **accounting**: every event the server wrote to a socket is either delivered to the handler or
  counted as dropped by the overflow policy (``delivered + dropped == published``), the dropped
  status events add up to the connections' own ``dropped_events`` counters, and no event is
  delivered twice or out of order (sequence numbers strictly increase per symbol);
* **reconnects**: each forced drop is followed by exactly one reconnect of that connection, which
  re-subscribes its channels, and the other connections never disconnect;
* **memory**: RSS grows less than ``--max-rss-growth-mb`` between the end of warm-up (the first
  reconnect cycle) and the end;
* **threads**: no thread growth between warm-up and the end, and none left after shutdown.

With ``--backfill`` the adapter has a :class:`~massive_rt.Backfill` on a ``MockMassiveREST`` that
serves the same sequence-numbered trades (its history is what the server published), and before
each forced drop ``--lost`` trades of the victim's symbols are put in the REST history only (as if
published while the connection was down): the ledger becomes ``delivered + dropped + hold-dropped
== published + lost``, every lost trade must arrive once as backfilled (``origin == "rest"``), in
order with the live ones, and no backfill may fail or be partial. A backfill also refills what a
queue dropped (``drop_oldest``) between a symbol's mark and its first live event after the
reconnect: those events were counted in a ``dropped`` status and then arrive backfilled. So the
ledger is kept apart: ``live + dropped + hold-dropped == published`` (the stream's),
``backfilled lost == lost`` (each lost trade exactly once) and ``refilled <= dropped``.

How the accounting stays exact: ``MockMassiveServer.publish`` returns how many events it actually
wrote, summed over connections (a connection that is down or not subscribed receives nothing and
is not counted). A connection is only dropped *between* publishes, after the adapter has consumed
everything published so far, and publishing resumes only once the replacement session is
subscribed and acknowledged; so no event is ever in flight on a socket that dies.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script from a checkout: import the package next to it
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import massive_rt as mrt
from massive_rt.adapter import RealTimeDataAdapter
from massive_rt.pool import ConnectionPool
from massive_rt.testing import MockMassiveREST, MockMassiveServer

KEY = "soak-key"
THREAD_PREFIX = "massive-rt-"
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """Current resident set size (``/proc/self/statm``; peak RSS from ``getrusage`` elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * PAGE
    except OSError:  # not Linux: the peak is the best cheap approximation
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def library_threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX) and t.is_alive())


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    """Poll a counter that has no event of its own (a benchmark harness, not library code)."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        pause.wait(0.002)


class Tracker:
    """The handlers: count deliveries and drops, check order, and signal a consumption target."""

    def __init__(self, symbols: Sequence[str]) -> None:
        self.delivered = 0
        self.dropped = 0
        self.out_of_order = 0
        self.last: dict[str, int] = dict.fromkeys(symbols, -1)
        self.statuses: dict[str, list[str]] = {}
        self.target = 0
        self.reached = threading.Event()
        self.hold = False  # set by the harness: the next trade blocks until ``gate`` opens
        self.gate = threading.Event()
        self.blocked = threading.Event()
        self.gate_timeout = 30.0
        self.backfilled = 0  # lost trades delivered by the backfill
        self.refilled = 0  # backfilled trades that had been published on the stream (a queue dropped them)
        self.lost_keys: set[tuple[str, int]] = set()
        self.hold_dropped = 0  # live events a backfill discarded beyond its hold_limit
        self.backfill_statuses: dict[str, int] = {}

    def on_trade(self, event: mrt.EquityTrade) -> None:
        if self.hold:  # a consumer that stalls (GC pause, slow database ...) while data keeps coming
            self.hold = False
            self.blocked.set()
            self.gate.wait(self.gate_timeout)
        seq = event.sequence_number
        if event.origin != "rest":
            self.delivered += 1
        elif (event.symbol, seq) in self.lost_keys:
            self.backfilled += 1
        else:
            self.refilled += 1
        if seq <= self.last[event.symbol]:  # type: ignore[operator, index]
            self.out_of_order += 1
        self.last[event.symbol] = seq  # type: ignore[index, assignment]
        if self.accounted >= self.target:
            self.reached.set()

    @property
    def accounted(self) -> int:
        """Live deliveries, drops and lost trades backfilled (refills of dropped ones left out)."""
        return self.delivered + self.dropped + self.hold_dropped + self.backfilled

    def on_status(self, event: mrt.StatusMessage) -> None:
        if event.status.startswith("backfill_"):
            self.backfill_statuses[event.status] = self.backfill_statuses.get(event.status, 0) + 1
            if event.status == "backfill_partial" and event.reason == "hold_limit":  # type: ignore[attr-defined]
                self.hold_dropped += event.dropped
        if event.status == "dropped":
            self.dropped += event.dropped
            if self.accounted >= self.target:
                self.reached.set()
        elif event.status in ("disconnected", "gap"):
            self.statuses.setdefault(event.connection, []).append(event.status)

    def wait_consumed(self, published: int, timeout: float) -> None:
        """Wait until every published event was delivered or counted as dropped."""
        self.target = published
        deadline = time.monotonic() + timeout
        while self.accounted < published:
            self.reached.clear()  # then look again: a wake-up can be early (an older target), never lost
            if self.accounted >= published:
                break
            if not self.reached.wait(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(
                    f"consumption stalled: published {published}, delivered {self.delivered}, dropped {self.dropped}"
                )


def build_chunk(symbols: Sequence[str], next_seq: dict[str, int], size: int) -> list[dict[str, Any]]:
    """The next ``size`` trades, round-robin over ``symbols`` (across calls), each with its symbol's
    next sequence number."""
    chunk: list[dict[str, Any]] = []
    count = len(symbols)
    start = sum(next_seq.values())
    for i in range(start, start + size):
        sym = symbols[i % count]
        seq = next_seq[sym]
        next_seq[sym] = seq + 1
        chunk.append({"ev": "T", "sym": sym, "x": 4, "i": str(seq), "z": 3, "p": 100.0 + (seq % 100) / 100,
                      "s": 100, "c": [0], "t": 1_700_000_000_000 + seq, "q": seq})  # fmt: skip
    return chunk


def run(args: argparse.Namespace) -> int:
    connections = args.connections
    per_conn = args.symbols_per_connection
    symbols = [f"S{c}X{s}" for c in range(connections) for s in range(per_conn)]
    channels = [f"T.{s}" for s in symbols]
    tracker = Tracker(symbols)
    next_seq = dict.fromkeys(symbols, 0)
    failures: list[str] = []
    threads_before = library_threads()

    # No connection limit on the mock: its kick() marks the connection closed only once its handler
    # thread notices, so a fast reconnect can be counted as a fourth connection and evicted. The
    # soak checks instead that exactly one new connection follows each forced drop.
    server = MockMassiveServer(api_keys={KEY}, name="soak")
    server.start()
    pool = ConnectionPool(
        api_key=KEY, max_connections=connections, max_subscriptions_per_connection=per_conn, url=server.url,
        name="soak", client_options={
            "reconnect": mrt.ReconnectPolicy(initial_delay=0.01, max_delay=0.05),
            "queue_size": args.queue_size,
        },
    )  # fmt: skip
    rest: MockMassiveREST | None = None
    backfill: mrt.Backfill | None = None
    if args.backfill:
        from massive_rt.rest import RestHistory

        # History per symbol: enough for a cycle's lost trades and the seam around them, bounded so
        # that the RSS check after warm-up still holds.
        rest = MockMassiveREST(api_keys={KEY}, ws=server, history_size=max(1_000, 4 * args.lost)).start()
        backfill = mrt.Backfill(RestHistory(KEY, rest_url=rest.url), hold_limit=args.hold_limit)
    adapter = RealTimeDataAdapter(pool, backfill=backfill)
    adapter.on(mrt.EquityTrade, tracker.on_trade)
    adapter.on_status(tracker.on_status)
    generated = published = 0  # events made / events the server actually wrote to a socket
    lost = 0  # events put in the REST history only, as if published while a connection was down
    kicks: list[str] = []
    gone: set[str] = set()
    bursts = overflowing = 0
    rss_start = rss_end = 0
    threads_start: list[str] = []
    threads_end: list[str] = []
    started = time.perf_counter()
    try:
        pool.subscribe(*channels)
        adapter.start()
        pool.wait_ready(10)
        if not server.wait_for_subscribed(channels, 10):
            raise TimeoutError("initial subscriptions never reached the server")
        owners = {name: [c for c in channels if pool.assignment(c) == name] for name in pool.subscriptions}
        started = time.perf_counter()
        next_kick = args.every
        next_burst = args.every // 2 if args.burst else args.events  # bursts mid-cycle, kicks at cycle ends
        rotation = 0
        while generated < args.events:
            if generated >= next_burst:
                next_burst += args.every
                bursts += 1
                made, written, overflowed = burst(server, pool, tracker, symbols, next_seq, args,
                                                  args.events - generated)  # fmt: skip
                overflowing += overflowed
                generated += made
                published += written
            else:
                size = min(args.chunk, args.events - generated, next_burst - generated, next_kick - generated)
                generated += size
                published += server.publish(build_chunk(symbols, next_seq, size), batch=args.batch)
            if generated >= next_kick:
                next_kick += args.every
                if generated >= args.events:
                    break
                tracker.wait_consumed(published + lost, args.timeout)
                if not rss_start:  # warm-up done: the first cycle ran every code path once
                    gc.collect()
                    rss_start = rss_bytes()
                    threads_start = library_threads()
                victim = sorted(owners)[rotation % len(owners)]
                rotation += 1
                if rest is not None and args.lost:
                    victims = [channel.partition(".")[2] for channel in owners[victim]]
                    missed = build_chunk(victims, next_seq, args.lost)
                    tracker.lost_keys.update((str(t["sym"]), int(t["q"])) for t in missed)
                    rest.add_events(missed)
                    lost += args.lost
                kick(server, pool, victim, owners[victim], gone, args.timeout)
                kicks.append(victim)
        tracker.wait_consumed(published + lost, args.timeout)
        elapsed = time.perf_counter() - started
        gc.collect()
        rss_end = rss_bytes()
        threads_end = library_threads()
        stats = pool.stats()
        server_connections = len(server.connections)
        statuses = {name: list(seen) for name, seen in tracker.statuses.items()}  # before stop() adds its own
        backfill_stats = None if backfill is None else backfill.stats()
    finally:
        adapter.stop(timeout=10)
        server.close()
        if rest is not None:
            rest.close()
    if not rss_start:  # too few events for a reconnect cycle: measure from the start of streaming
        rss_start = rss_end
        threads_start = threads_end

    dropped_by_client = stats.dropped_events
    reconnects = stats.reconnects
    growth_mb = (rss_end - rss_start) / 2**20
    if published != generated:
        failures.append(f"the server wrote {published} of {generated} events (a connection was down?)")
    if tracker.delivered + tracker.dropped + tracker.hold_dropped != published:
        failures.append(
            f"accounting: delivered {tracker.delivered} + dropped {tracker.dropped} + hold-dropped "
            f"{tracker.hold_dropped} != published {published}"
        )
    if backfill_stats is not None:
        if tracker.backfilled != lost or backfill_stats.events != tracker.backfilled + tracker.refilled:
            failures.append(f"{lost} trades lost in flight, {tracker.backfilled} of them delivered backfilled, "
                            f"{tracker.refilled} refilled (backfill counted {backfill_stats.events})")  # fmt: skip
        if tracker.refilled > tracker.dropped:
            failures.append(f"{tracker.refilled} refilled, more than the {tracker.dropped} dropped")
        if backfill_stats.failed or backfill_stats.partial or backfill_stats.in_flight:
            failures.append(f"backfill: {backfill_stats.failed} failed, {backfill_stats.partial} partial, "
                            f"{backfill_stats.in_flight} in flight at the end")  # fmt: skip
    if tracker.dropped != dropped_by_client:
        failures.append(f"dropped status events add up to {tracker.dropped}, connections counted {dropped_by_client}")
    if tracker.out_of_order:
        failures.append(f"{tracker.out_of_order} events delivered twice or out of order")
    if overflowing and not tracker.dropped:
        failures.append(f"{overflowing} bursts overflowed every queue and nothing was dropped")
    if server_connections != connections + len(kicks):
        failures.append(f"{server_connections} connections reached the server for {connections} + {len(kicks)} drops")
    if reconnects != len(kicks):
        failures.append(f"{reconnects} reconnects for {len(kicks)} forced drops")
    expected_statuses = {name: ["disconnected", "gap"] * kicks.count(name) for name in set(kicks)}
    if statuses != expected_statuses:
        failures.append(f"disconnect/gap statuses {statuses} != expected {expected_statuses}")
    if stats.recycled:
        failures.append(f"{stats.recycled} connections recycled (a reconnect should have been enough)")
    if growth_mb >= args.max_rss_growth_mb:
        failures.append(f"RSS grew {growth_mb:.1f} MB after warm-up (limit {args.max_rss_growth_mb} MB)")
    if len(threads_end) > len(threads_start):
        failures.append(f"threads grew from {threads_start} to {threads_end}")
    try:
        wait_for(lambda: library_threads() == threads_before, 10, "library threads to end")
    except TimeoutError:
        failures.append(f"threads left after shutdown: {sorted(set(library_threads()) - set(threads_before))}")

    rows = [
        ("events", f"{published:,}"),
        ("seconds", f"{elapsed:.1f}"),
        ("events/s", f"{published / elapsed:,.0f}"),
        ("delivered", f"{tracker.delivered:,}" + ("" if backfill is None else " (live)")),
        ("dropped", f"{tracker.dropped:,} (in {bursts} bursts into a stalled handler)"),
        ("reconnects", f"{reconnects} ({len(kicks)} forced)"),
        *(
            []
            if backfill_stats is None
            else [
                ("lost in flight", f"{lost:,} (in the REST history only)"),
                (
                    "backfilled",
                    f"{tracker.backfilled:,} lost + {tracker.refilled:,} refilled drops in "
                    f"{backfill_stats.gaps} gaps (last {backfill_stats.last_duration_s or 0:.3f} s)",
                ),
                ("hold-dropped", f"{tracker.hold_dropped:,} (held live events beyond hold_limit)"),
                ("seam duplicates", f"{backfill_stats.duplicates:,} (left out)"),
            ]
        ),
        ("RSS start/end", f"{rss_start / 2**20:.1f} / {rss_end / 2**20:.1f} MB ({growth_mb:+.1f} MB)"),
        ("threads start/end", f"{len(threads_start)} / {len(threads_end)}"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"soak: {connections} connections, {len(symbols)} symbols, queue_size {args.queue_size:,}, "
          f"one drop every {args.every:,} events")  # fmt: skip
    print("-" * (width + 30))
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print("-" * (width + 30))
    if failures:
        for failure in failures:
            print(f"FAIL: {failure}")
        return 1
    print("OK: every invariant held")
    return 0


def burst(
    server: MockMassiveServer,
    pool: ConnectionPool,
    tracker: Tracker,
    symbols: Sequence[str],
    next_seq: dict[str, int],
    args: argparse.Namespace,
    budget: int,
) -> tuple[int, int, bool]:
    """Stall the handler, publish ``--burst`` x queue_size events per connection, then release it.

    Every connection receives more than its queue holds while nothing is consumed, so each one
    drops (``drop_oldest``); the drops must show up as ``dropped`` status events. Returns the
    number of events made, the number the server wrote, and whether every queue overflowed.
    """
    before = {s.name: s.dropped_events for s in pool.stats().per_connection}
    tracker.gate.clear()
    tracker.blocked.clear()
    tracker.hold = True
    trigger = min(budget, len(symbols))
    written = server.publish(build_chunk(symbols, next_seq, trigger), batch=args.batch)  # the one that blocks
    try:
        if not tracker.blocked.wait(args.timeout):
            raise TimeoutError("the handler never picked up the burst trigger")
        # Never past the middle of the cycle, so a burst cannot cross a drop point.
        remaining = max(
            0, min(budget - trigger, int(args.burst * args.queue_size * len(before)), args.every // 2 - trigger)
        )
        made = trigger + remaining
        while remaining > 0:
            size = min(args.chunk, remaining)
            written += server.publish(build_chunk(symbols, next_seq, size), batch=args.batch)
            remaining -= size
        overflowed = made - trigger > len(before) * args.queue_size + len(symbols)
        if overflowed:  # every queue overflows: wait until each reader has seen its share
            wait_for(lambda: all(s.dropped_events > before[s.name] for s in pool.stats().per_connection),
                     args.timeout, "every connection to drop during the burst")  # fmt: skip
    finally:
        tracker.hold = False
        tracker.gate.set()
    return made, written, overflowed


def kick(
    server: MockMassiveServer, pool: ConnectionPool, victim: str, channels: list[str], gone: set[str], timeout: float
) -> None:
    """Drop ``victim``'s socket on the server side; return once its new session is subscribed.

    ``gone`` holds the server ids dropped so far (the mock may list one as open for a moment).
    """
    wanted = set(channels)
    (old,) = [c.id for c in server.active_connections() if c.subscriptions == wanted and c.id not in gone]
    client = next(c for c in pool.connections if c.name == victim)
    reconnects = client.stats().reconnects
    gone.add(old)
    server.kick(old)

    def resubscribed() -> bool:
        return any(c.id not in gone and c.subscriptions == wanted for c in server.active_connections())

    if not server.wait_for(resubscribed, timeout):
        raise TimeoutError(f"{victim} did not re-subscribe {sorted(wanted)} within {timeout}s")
    # The server routes by its own subscription state; the client must also be past the reconnect.
    wait_for(lambda: client.stats().reconnects > reconnects, timeout, f"{victim} to count its reconnect")
    if not client.wait_acked(channels, timeout):
        raise TimeoutError(f"{victim} never saw the acks of {sorted(wanted)}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000, help="events to publish (default 1,000,000)")
    parser.add_argument("--every", type=int, default=100_000, help="drop one connection every N events")
    parser.add_argument("--connections", type=int, default=3, help="pool size (default 3)")
    parser.add_argument("--symbols-per-connection", type=int, default=4, help="T.<symbol> channels per connection")
    parser.add_argument("--chunk", type=int, default=3_000, help="events per publish() call")
    parser.add_argument("--batch", type=int, default=10, help="events per WebSocket frame")
    parser.add_argument(
        "--queue-size",
        type=int,
        default=None,
        help="per-connection queue in events (default: --every / 20, at most 5,000)",
    )
    parser.add_argument(
        "--burst",
        type=float,
        default=1.5,
        help="once per cycle, stall the handler and publish this many queues' worth of events\n"
        "per connection (drops guaranteed when > 1); 0 disables",
    )
    parser.add_argument(
        "--backfill",
        action="store_true",
        help="give the adapter a Backfill on a MockMassiveREST serving the same trades",
    )
    parser.add_argument(
        "--lost",
        type=int,
        default=300,
        help="with --backfill: trades of the victim's symbols lost in flight before each drop",
    )
    parser.add_argument("--hold-limit", type=int, default=100_000, help="with --backfill: the Backfill's hold_limit")
    parser.add_argument("--max-rss-growth-mb", type=float, default=10.0, help="RSS growth limit after warm-up")
    parser.add_argument("--timeout", type=float, default=30.0, help="bound of each wait, seconds")
    args = parser.parse_args(argv)
    if args.queue_size is None:
        args.queue_size = min(5_000, max(100, args.every // 20))
    for name in ("events", "every", "connections", "symbols_per_connection", "chunk", "batch", "queue_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except (TimeoutError, mrt.MassiveRTError) as exc:  # everything was stopped on the way out
        print(f"FAIL: soak aborted: {type(exc).__name__}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
