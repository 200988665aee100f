"""Sanity bounds on speed, memory and resilience of several connections at once (ORIGIN.md §4.5).

The legacy targets are kept as *bounds that must hold even on a loaded 2-core machine under
coverage and xdist*; they are generous on purpose and say nothing about how fast massive_rt
really is (that lives in ``benchmarks/``). Each test records what it measured with
the ``measured`` fixture (printed, so ``pytest -rP -m performance`` shows the margins; also kept in
each test's ``user_properties`` for report plugins).
"""

from __future__ import annotations

import gc
import json
import os
import re
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import pytest

import massive_rt as mrt
from massive_rt.adapter import RealTimeDataAdapter
from massive_rt.connection import MassiveWebSocketClient
from massive_rt.pool import ConnectionPool
from massive_rt.testing import MockMassiveServer
from tests.conftest import wait_until
from tests.support import KEY

pytestmark = pytest.mark.performance

WAIT = 15.0  # bound of every wait; never reached when green
PAGE = os.sysconf("SC_PAGE_SIZE")


def trade(sym: str, q: int) -> dict[str, Any]:
    return {"ev": "T", "sym": sym, "x": 4, "p": 100.0 + q % 100, "s": 100, "t": 1_700_000_000_000 + q, "q": q}


def rss() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * PAGE


def pct(samples: list[float], point: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(point / 100 * len(ordered)) - 1))]


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture
def measured(request: pytest.FixtureRequest) -> Callable[[str, object], None]:
    """Record a measured value on stdout and in the test's ``user_properties``.

    Not ``record_property``: that one warns under ``--junitxml`` (junit_family xunit2), and warnings
    are errors in this project.
    """

    def record(name: str, value: object) -> None:
        request.node.user_properties.append((name, value))
        print(f"MEASURED {request.node.name}: {name} = {value}")

    return record


class Recorder:
    """Handler for trades and statuses: per-connection sequence numbers and latencies, waitable."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.seqs: dict[str, list[int]] = {}
        self.statuses: dict[str, list[mrt.StatusMessage]] = {}
        self.latency_ns: list[int] = []
        self.last_ns: dict[str, int] = {}
        self.count = 0
        self.dropped = 0

    def __call__(self, event: mrt.Event) -> None:
        now = time.time_ns()
        with self.cond:
            if isinstance(event, mrt.StatusMessage):
                self.statuses.setdefault(event.connection, []).append(event)
                self.dropped += event.dropped if event.status == "dropped" else 0
            else:
                self.latency_ns.append(now - event.received_at_ns)
                self.seqs.setdefault(event.connection, []).append(event.sequence_number)  # type: ignore[attr-defined]
                self.last_ns[event.connection] = now
                self.count += 1
            self.cond.notify_all()

    def wait(self, predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout)

    def tail(self, connection: str) -> int | None:
        with self.cond:
            seqs = self.seqs.get(connection)
            return seqs[-1] if seqs else None

    def status_names(self, connection: str, *wanted: str) -> list[str]:
        with self.cond:
            return [s.status for s in self.statuses.get(connection, ()) if s.status in wanted]


def watch(make_adapter: Callable[..., RealTimeDataAdapter], source: Any) -> tuple[RealTimeDataAdapter, Recorder]:
    recorder = Recorder()
    adapter = make_adapter(source, on_event=recorder)
    adapter.on_status(recorder)
    adapter.start()
    return adapter, recorder


class Trades:
    """A finite source for ``MockMassiveServer.stream``: ``per_symbol`` trades per symbol, round-robin."""

    def __init__(self, symbols: list[str], per_symbol: int) -> None:
        self.symbols = symbols
        self.total = per_symbol * len(symbols)
        self.made = 0

    def next_events(self, n: int) -> list[dict[str, Any]]:
        count = len(self.symbols)
        out = [trade(self.symbols[i % count], i // count) for i in range(self.made, min(self.total, self.made + n))]
        self.made += len(out)
        return out


def ids_by_channel(server: MockMassiveServer) -> dict[str, str]:
    """``{channel: server connection id}`` over open, authenticated connections."""
    return {ch: c.id for c in server.active_connections() if c.authenticated for ch in c.subscriptions}


def client_named(pool: ConnectionPool, name: str) -> MassiveWebSocketClient:
    return next(c for c in pool.connections if c.name == name)


# ----------------------------------------------------------------------------- performance


class TestMultiConnectionPerformance:
    def test_connection_establishment_time(self, server: MockMassiveServer, make_pool, measured) -> None:
        pool = make_pool(max_subscriptions_per_connection=1)
        pool.subscribe("T.A", "T.B", "T.C")
        started = time.monotonic()
        pool.start()
        took = {}
        for client in pool.connections:  # TCP + upgrade + auth + subscribe acknowledged
            client.wait_ready(WAIT)
            took[client.name] = time.monotonic() - started
        measured("establishment_s", took)
        assert len(took) == 3
        assert max(took.values()) < 2.0, took  # legacy target: < 2 s per connection (all 3 in parallel here)
        assert server.wait_for_connections(3, WAIT)

    def test_subscription_latency(self, server: MockMassiveServer, make_pool, measured) -> None:
        pool = make_pool(max_subscriptions_per_connection=11)
        pool.subscribe("T.A", "T.B", "T.C")
        pool.start().wait_ready(WAIT)
        took: list[float] = []
        for i in range(30):  # spread over the three connections (least loaded first)
            channel = f"T.NEW{i}"
            started = time.monotonic()
            owner = pool.subscribe(channel)[channel]
            assert client_named(pool, owner).wait_acked([channel], WAIT)
            took.append(time.monotonic() - started)
        measured("subscribe_to_ack_ms", {"p50": statistics.median(took) * 1e3, "max": max(took) * 1e3})
        assert len({pool.assignment(f"T.NEW{i}") for i in range(30)}) == 3
        assert max(took) < 0.5, f"slowest subscribe → ack {max(took) * 1e3:.1f} ms"  # legacy target: < 500 ms

    def test_message_processing_latency(self, server: MockMassiveServer, make_pool, make_adapter,
                                        measured) -> None:  # fmt: skip
        pool = make_pool(max_subscriptions_per_connection=1)
        pool.subscribe("T.A", "T.B", "T.C")
        adapter, recorder = watch(make_adapter, pool)
        pool.wait_ready(WAIT)
        stream = server.stream(Trades(["A", "B", "C"], 300), rate=900)  # a modest 300 msg/s per connection
        try:
            assert recorder.wait(lambda: recorder.count >= 900)
        finally:
            stream.stop()
        handler_ms = [ns / 1e6 for ns in recorder.latency_ns]  # recv (reader timestamp) → callback, per event
        stats_us = adapter.stats().latency_us
        measured("recv_to_callback_ms", {"handler_p50": pct(handler_ms, 50), "handler_p99": pct(handler_ms, 99),
                                                "stats_p99": stats_us["p99"] / 1e3})  # fmt: skip
        assert len(handler_ms) == 900
        assert pct(handler_ms, 99) < 50, f"p99 recv → callback {pct(handler_ms, 99):.2f} ms"  # legacy: < 50 ms
        assert stats_us["p99"] < 50_000, stats_us

    def test_throughput_per_connection(self, server: MockMassiveServer, make_pool, make_adapter,
                                       measured) -> None:  # fmt: skip
        pool = make_pool(max_subscriptions_per_connection=1)
        pool.subscribe("T.A", "T.B", "T.C")
        _, recorder = watch(make_adapter, pool)
        pool.wait_ready(WAIT)
        started = time.time_ns()
        stream = server.stream(Trades(["A", "B", "C"], 1000), rate=1200, batch=5)  # 1000 each over ~2.5 s
        try:
            assert recorder.wait(lambda: recorder.count >= 3000, 30)
        finally:
            stream.stop()
        assert stream.delivered == 3000  # what the server wrote
        rates = {}
        for name, seqs in recorder.seqs.items():
            assert seqs == list(range(1000)), f"{name}: lost, duplicated or reordered events"
            rates[name] = 1000 / ((recorder.last_ns[name] - started) / 1e9)
        measured("msgs_per_s_per_connection", rates)
        assert len(rates) == 3
        assert pool.stats().dropped_events == 0
        assert recorder.dropped == 0
        assert min(rates.values()) >= 100, rates  # legacy target: >= 100 msg/s per connection, none dropped

    def test_memory_per_connection(self, server: MockMassiveServer, make_pool, make_adapter,
                                   measured) -> None:  # fmt: skip
        gc.collect()
        before = rss()
        pool = make_pool(max_connections=5, max_subscriptions_per_connection=20)
        symbols = [f"M{i:02d}" for i in range(100)]
        pool.subscribe(*[f"T.{s}" for s in symbols])
        _, recorder = watch(make_adapter, pool)
        pool.wait_ready(WAIT)
        assert len(pool.connections) == 5
        written = 0
        for round_ in range(50):  # 5,000 events, 1,000 per connection
            written += server.publish([trade(s, round_) for s in symbols], batch=10)
        assert written == 5000
        assert recorder.wait(lambda: recorder.count >= 5000)
        gc.collect()
        per_connection_mb = (rss() - before) / 5 / 2**20  # includes the in-process server's share: conservative
        measured("rss_growth_mb_per_connection", per_connection_mb)
        assert per_connection_mb < 50, f"{per_connection_mb:.1f} MB per connection"  # legacy target: < 50 MB

    def test_pool_overhead(self, server: MockMassiveServer, make_pool, make_adapter, measured) -> None:
        """Consumer-side cost of the same 30,000 events from a 1-connection vs a 3-connection pool.

        Every event is queued before the adapter starts, which isolates the pool's own overhead
        (round-robin over connections, per-connection draining, decoding and bookkeeping) from the
        network and the server. The bound is on work, not time: the Python and C function calls
        the dispatcher thread makes per event, counted by a profile hook between the first and the
        last event. Time is no bound on this machine: a trial's CPU time swings by ±30% on the
        shared VM (steal and cache), more than the overhead being bounded, and the benchmark
        (benchmarks/RESULTS.md, "pool overhead") measures the wall-clock side. The CPU ratio is
        still recorded. The legacy "< 10 %" bound holds on the call ratio with room to spare.
        """
        symbols, per_symbol, per_frame = ["A", "B", "C"], 10_000, 10
        total = per_symbol * len(symbols)
        encode = json.JSONEncoder(separators=(",", ":")).encode
        mixed = [trade(s, i) for i in range(per_symbol) for s in symbols]  # what a single connection carries
        frames = {
            1: {"*": [encode(mixed[i : i + per_frame]) for i in range(0, total, per_frame)]},
            3: {s: [encode([trade(s, i + j) for j in range(per_frame)]) for i in range(0, per_symbol, per_frame)]
                for s in symbols},
        }  # fmt: skip
        results: dict[int, list[tuple[int, int, int]]] = {1: [], 3: []}
        for connections in (1, 3) * 2:
            pool = make_pool(max_connections=connections, max_subscriptions_per_connection=3 // connections)
            pool.subscribe(*[f"T.{s}" for s in symbols])
            pool.start().wait_ready(WAIT)
            for client in pool.connections:
                client.drain()  # the lifecycle statuses: the adapter should see only data
            assert server.wait_for(
                lambda n=connections: len(server.active_connections()) == n, WAIT
            )  # last trial's gone
            for info in server.active_connections():
                key = "*" if connections == 1 else next(iter(info.subscriptions))[2:]
                assert (
                    sum(server.send_raw(frame, info.id) for frame in frames[connections][key])
                    == total // per_frame // connections
                )
            assert wait_until(lambda pool=pool: sum(s.queue_events for s in pool.stats().per_connection) == total,
                              WAIT)  # fmt: skip
            marks = Marks(total)
            gc.collect()
            gc.disable()  # a collection landing in one trial but not the other is noise, not overhead
            threading.setprofile(marks.profile)  # taken by the dispatcher thread when it starts
            try:
                adapter = make_adapter(pool, on_event=marks)
                adapter.start()
                assert marks.done.wait(WAIT)
                adapter.stop()
            finally:
                threading.setprofile(None)  # type: ignore[arg-type]
                gc.enable()
            (cpu0, wall0), (cpu1, wall1) = marks.marks
            results[connections].append((marks.calls, cpu1 - cpu0, wall1 - wall0))
        calls = {n: min(c for c, _, _ in runs) / total for n, runs in results.items()}
        ratio = calls[3] / calls[1]
        cpu_ratio = min(c for _, c, _ in results[3]) / min(c for _, c, _ in results[1])
        measured("pool_overhead", {"calls_ratio": ratio, "calls_per_event": calls, "cpu_ratio_profiled": cpu_ratio})
        assert calls[1] > 1  # the hook saw the dispatcher's work
        assert ratio <= 1.10, f"3-connection pool makes {ratio:.2f}x the calls per event of one connection"


class Marks:
    """Handler that reads the dispatcher thread's CPU clock (and the wall clock) at the first and last event."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.count = 0
        self.calls = 0
        self._counting = False
        self.marks: list[tuple[int, int]] = []
        self.done = threading.Event()

    def __call__(self, event: mrt.Event) -> None:
        self.count += 1
        if self.count == 1 or self.count == self.total:
            self.marks.append((time.thread_time_ns(), time.perf_counter_ns()))
            self._counting = self.count == 1
            if self.count == self.total:
                self.done.set()

    def profile(self, frame: object, event: str, arg: object) -> None:
        """A ``threading.setprofile`` hook: counts calls between the first and the last event."""
        if self._counting and (event == "call" or event == "c_call"):
            self.calls += 1


# ----------------------------------------------------------------------------- resilience


class Lockstep:
    """Publish one trade per symbol per round and wait until every *watched* connection has it."""

    def __init__(self, server: MockMassiveServer, recorder: Recorder, symbols: list[str]) -> None:
        self.server = server
        self.recorder = recorder
        self.symbols = symbols
        self.rounds = 0

    def round(self, watched: Iterable[str]) -> None:
        """``watched``: connection names that must receive this round before the next one goes out."""
        watched = list(watched)
        self.server.publish([trade(s, self.rounds) for s in self.symbols])
        expect = self.rounds
        ok = self.recorder.wait(lambda: all(self.recorder.tail(name) == expect for name in watched))
        assert ok, f"round {expect} did not reach {sorted(watched)}"
        self.rounds += 1

    def until(self, condition: Callable[[], bool], watched: Iterable[str], timeout: float = WAIT) -> float:
        """Keep the watched connections streaming until ``condition()``; return how long it took."""
        started = time.monotonic()
        while not condition():
            assert time.monotonic() - started < timeout, "condition not reached while streaming"
            self.round(watched)
        return time.monotonic() - started


class TestMultiConnectionResilience:
    def _streaming_pool(self, server, make_pool, make_adapter, symbols: list[str], **options: Any):
        pool = make_pool(max_connections=len(symbols), max_subscriptions_per_connection=1, **options)
        _, recorder = watch(make_adapter, pool)
        pool.subscribe(*[f"T.{s}" for s in symbols])
        pool.wait_ready(WAIT)
        assert server.wait_for_subscribed([f"T.{s}" for s in symbols], WAIT)
        names = {s: pool.assignment(f"T.{s}") for s in symbols}
        return pool, recorder, names, Lockstep(server, recorder, symbols)

    def _assert_unaffected(self, pool: ConnectionPool, recorder: Recorder, names: list[str], rounds: int) -> None:
        for name in names:
            assert recorder.seqs[name] == list(range(rounds)), f"{name} lost or reordered events"
            assert recorder.status_names(name, "disconnected", "gap", "recycled", "failed") == []
            assert client_named(pool, name).stats().reconnects == 0

    def test_recovery_from_network_partition(self, server: MockMassiveServer, make_pool, make_adapter,
                                             measured) -> None:  # fmt: skip
        pool, recorder, names, step = self._streaming_pool(
            server, make_pool, make_adapter, ["A", "B"], client_options={"ping_interval": 0.1, "ping_timeout": 0.3}
        )
        for _ in range(10):
            step.round(names.values())
        before = ids_by_channel(server)
        assert server.stall(before["T.A"]) == 1  # half-open: no data, no pongs, no FIN
        survivor = [names["B"]]

        def back() -> bool:
            return ids_by_channel(server).get("T.A") not in (None, before["T.A"])

        took = step.until(back, survivor)
        partitioned = client_named(pool, names["A"])
        assert partitioned.wait_acked(["T.A"], WAIT)
        resumed_from = step.rounds
        for _ in range(10):
            step.round(names.values())
        measured("partition_detect_and_resubscribe_s", took)
        assert took < 3.0, f"{took:.2f}s to detect (ping 0.1 s + timeout 0.3 s) and re-subscribe"
        assert "ping_timeout" in (partitioned.stats().last_error or "")
        assert recorder.status_names(names["A"], "disconnected", "gap") == ["disconnected", "gap"]
        assert recorder.seqs[names["A"]][-10:] == list(range(resumed_from, resumed_from + 10))  # data resumed
        assert recorder.seqs[names["A"]] == sorted(set(recorder.seqs[names["A"]]))
        self._assert_unaffected(pool, recorder, [names["B"]], step.rounds)

    @pytest.mark.allow_errors(
        r"failed: gave up after \d+ consecutive failed attempts; last: server closed the TCP connection",
        logger="massive_rt.connection",
    )
    def test_recovery_from_partial_failure(self, server: MockMassiveServer, make_pool, make_adapter,
                                           measured) -> None:  # fmt: skip
        # max_attempts=0: a dropped client gives up at once, so the pool's supervisor must replace it.
        pool, recorder, names, step = self._streaming_pool(
            server, make_pool, make_adapter, ["A", "B", "C", "D"],
            client_options={"reconnect": mrt.ReconnectPolicy(max_attempts=0)})  # fmt: skip
        for _ in range(10):
            step.round(names.values())  # everything so far consumed: nothing in flight when the socket dies
        before = ids_by_channel(server)
        victim = names["C"]
        old = client_named(pool, victim)
        server.kick(before["T.C"])
        survivors = [n for s, n in names.items() if s != "C"]

        def replaced() -> bool:
            client = client_named(pool, victim)
            return client is not old and bool(client.acked) and ids_by_channel(server).get("T.C") != before["T.C"]

        took = step.until(replaced, survivors)
        resumed_from = step.rounds
        for _ in range(10):
            step.round(names.values())
        measured("recycle_recovery_s", took)
        assert took < 5.0, f"{took:.2f}s to replace the failed connection"
        assert old.state is mrt.ConnectionState.FAILED
        assert pool.stats().recycled == 1
        assert pool.assignment("T.C") == victim
        assert "recycled" in recorder.status_names(victim, "recycled")
        assert recorder.seqs[victim][:10] == list(range(10))
        assert recorder.seqs[victim][-10:] == list(range(resumed_from, resumed_from + 10))
        self._assert_unaffected(pool, recorder, survivors, step.rounds)
        assert len(server.connections) == 5  # break before make: exactly one replacement socket

    @pytest.mark.allow_errors(
        r"failed: gave up after \d+ consecutive failed attempts; last: server closed the TCP connection",
        logger="massive_rt.connection",
    )
    def test_recycling_loses_no_queued_event(self, server: MockMassiveServer, make_pool, make_adapter) -> None:
        pool = make_pool(max_connections=1, client_options={"reconnect": mrt.ReconnectPolicy(max_attempts=0)})
        gate, entered = threading.Event(), threading.Event()
        recorder = Recorder()

        def slow(event: mrt.Event) -> None:
            recorder(event)
            if event.sequence_number == 0:  # type: ignore[attr-defined]
                entered.set()
                gate.wait(WAIT)

        # "thread": the callback blocks the dispatcher, not a reader, so the kicked connection's
        # reader sees the disconnect at once (under "adaptive" its reader acts on it when the
        # callback returns: tests/unit/test_relief_reader.py).
        adapter = make_adapter(pool, on_event=slow, dispatch="thread")
        adapter.on_status(recorder)
        adapter.start()
        pool.subscribe("T.A")
        pool.wait_ready(WAIT)
        old = pool.connections[0]
        written = server.publish([trade("A", i) for i in range(100)], batch=1)
        assert entered.wait(WAIT)
        assert wait_until(lambda: old.stats().frames_received >= 100, WAIT)  # all of it is in old's queue
        server.kick(server.active_connections()[0].id)
        assert wait_until(lambda: pool.stats().recycled == 1, WAIT)
        gate.set()
        pool.connections[0].wait_ready(WAIT)
        written += server.publish([trade("A", i) for i in range(100, 110)], batch=1)
        assert written == 110
        assert recorder.wait(lambda: recorder.count + recorder.dropped >= written, 2)

    def test_graceful_degradation_under_load(self, server: MockMassiveServer, make_client, make_adapter,
                                             measured) -> None:  # fmt: skip
        capacity = 1000
        client = make_client(subscriptions=["T.*"], queue_size=capacity, overflow="drop_oldest")
        gate, entered = threading.Event(), threading.Event()
        recorder = Recorder()

        def slow_consumer(event: mrt.Event) -> None:
            recorder(event)
            if not gate.is_set():
                entered.set()
                gate.wait(WAIT)  # stuck (a slow database, a GC pause ...) while the feed keeps coming

        adapter = make_adapter(client, on_event=slow_consumer)
        adapter.on_status(recorder)
        adapter.start()
        client.wait_ready(WAIT)
        frames_before = client.stats().frames_received
        gc.collect()
        rss_before = rss()
        published = server.publish([trade("LOAD", 0)], batch=1)
        assert entered.wait(WAIT)
        for start in range(1, 10 * capacity + 1, 1000):  # 10x what the consumer can hold
            published += server.publish([trade("LOAD", i) for i in range(start, start + 1000)], batch=10)
        assert published == 10 * capacity + 1
        assert wait_until(lambda: client.stats().frames_received >= frames_before + 1 + 10 * capacity // 10, WAIT)
        high_water = client.stats().queue_high_water_bytes
        rss_growth_mb = (rss() - rss_before) / 2**20
        gate.set()

        assert recorder.wait(lambda: recorder.count + recorder.dropped == published), (
            f"delivered {recorder.count} + dropped {recorder.dropped} != published {published}")  # fmt: skip
        stats = client.stats()
        measured("degradation", {"published": published, "delivered": recorder.count,
                                        "dropped": recorder.dropped, "high_water": high_water,
                                        "rss_growth_mb": rss_growth_mb})  # fmt: skip
        assert recorder.dropped == stats.dropped_events > 0  # every drop counted and announced
        assert high_water <= capacity * 128 == stats.queue_capacity_bytes  # memory bounded, whatever the load
        assert rss_growth_mb < 50
        seqs = recorder.seqs[client.name]
        assert seqs == sorted(seqs)
        assert seqs[-1] == 10 * capacity  # drop_oldest keeps the newest
        assert adapter.running
        assert stats.reconnects == 0
        assert client.state is mrt.ConnectionState.STREAMING
        # ... and it keeps working after the burst.
        assert server.publish([trade("LOAD", i) for i in range(20_000, 20_010)]) == 10
        assert recorder.wait(lambda: recorder.seqs[client.name][-10:] == list(range(20_000, 20_010)))
        assert recorder.count + recorder.dropped == published + 10

    def test_connection_timeout_handling(self, measured) -> None:
        # Accepts TCP (the kernel completes the handshake into the backlog) but never answers the upgrade.
        with socket.create_server(("127.0.0.1", 0), backlog=128) as listener:
            policy = mrt.ReconnectPolicy(initial_delay=0.05, multiplier=2.0, max_delay=0.4, jitter="none")
            client = MassiveWebSocketClient(api_key=KEY, url=f"ws://127.0.0.1:{listener.getsockname()[1]}/stocks",
                                            connect_timeout=0.3, reconnect=policy, name="silent")  # fmt: skip
            try:
                started = time.monotonic()
                client.start()
                with pytest.raises(mrt.WaitTimeoutError) as info:
                    client.wait_ready(1.0)
                waited = time.monotonic() - started
                assert isinstance(info.value, TimeoutError)
                assert waited < 2.0
                assert wait_until(lambda: client.stats().reconnects >= 4, WAIT)  # keeps retrying ...
                assert client.state in (mrt.ConnectionState.CONNECTING, mrt.ConnectionState.BACKOFF)
                assert "timed out" in (client.stats().last_error or "").lower()
            finally:
                stop_started = time.monotonic()
                client.stop(timeout=1.0)
                stopped_in = time.monotonic() - stop_started
            sessions = client.stats().reconnects + 1
            listener.setblocking(False)
            attempts = 0
            while True:
                try:
                    conn, _ = listener.accept()
                except BlockingIOError:
                    break
                conn.close()
                attempts += 1
        delays = [float(m.group(1)) for e in client.iter_events(timeout=0)
                  if isinstance(e, mrt.StatusMessage) and e.state is mrt.ConnectionState.BACKOFF
                  and (m := re.search(r"reconnecting in ([\d.]+)s", e.message))]  # fmt: skip
        measured("timeout_handling", {"wait_ready_s": waited, "stop_s": stopped_in, "delays": delays})
        assert delays[:4] == [0.05, 0.1, 0.2, 0.4]  # ... with exponential backoff, capped
        assert set(delays[4:]) <= {0.4}
        # One TCP connection per attempt, no storm (stop() may land between counting a session and its connect).
        assert sessions - 1 <= attempts <= sessions
        assert stopped_in < 1.5  # bounded by stop(timeout=1.0)
        assert client.state is mrt.ConnectionState.STOPPED

    def test_stop_during_an_unanswered_upgrade_is_prompt(self) -> None:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            listener.settimeout(WAIT)
            client = MassiveWebSocketClient(api_key=KEY, url=f"ws://127.0.0.1:{listener.getsockname()[1]}/stocks",
                                            connect_timeout=30, name="upgrade")  # fmt: skip
            try:
                client.start()
                conn, _ = listener.accept()
                with conn:
                    conn.settimeout(WAIT)
                    assert conn.recv(4096, socket.MSG_PEEK).startswith(b"GET ")  # the upgrade is out, unanswered
                    started = time.monotonic()
                    client.stop(timeout=5)
                    took = time.monotonic() - started
            finally:
                client.stop()
        assert client.state is mrt.ConnectionState.STOPPED
        assert took < 1.0, f"stop() took {took:.2f}s"

    def test_concurrent_connection_failures(self, server: MockMassiveServer, make_pool, make_adapter,
                                            measured) -> None:  # fmt: skip
        pool, recorder, names, step = self._streaming_pool(server, make_pool, make_adapter, ["A", "B", "C", "D"])
        for _ in range(10):
            step.round(names.values())
        before = ids_by_channel(server)
        victims = {"B": names["B"], "D": names["D"]}
        barrier = threading.Barrier(2)

        def kill(symbol: str) -> None:
            barrier.wait(WAIT)
            server.kick(before[f"T.{symbol}"])

        killers = [threading.Thread(target=kill, args=(s,), name=f"test-kill-{s}") for s in victims]
        for killer in killers:
            killer.start()
        for killer in killers:
            killer.join(WAIT)
        survivors = [names["A"], names["C"]]

        def both_back() -> bool:
            now = ids_by_channel(server)
            return all(now.get(f"T.{s}") not in (None, before[f"T.{s}"]) for s in victims)

        took = step.until(both_back, survivors)
        for symbol, name in victims.items():
            assert client_named(pool, name).wait_acked([f"T.{symbol}"], WAIT)
        resumed_from = step.rounds
        for _ in range(10):
            step.round(names.values())
        measured("concurrent_recovery_s", took)
        assert took < 5.0
        for name in victims.values():
            seqs = recorder.seqs[name]
            assert seqs[:10] == list(range(10))
            assert seqs[-10:] == list(range(resumed_from, resumed_from + 10))
            assert seqs == sorted(set(seqs))
            assert recorder.status_names(name, "disconnected", "gap") == ["disconnected", "gap"]
            assert client_named(pool, name).stats().reconnects == 1
        self._assert_unaffected(pool, recorder, survivors, step.rounds)
        assert len(server.connections) == 6  # 4 + one reconnect per victim
