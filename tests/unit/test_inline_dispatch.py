"""``RealTimeDataAdapter(dispatch="inline")``: readers run callbacks when the dispatcher is idle.

What must hold: every event is delivered once and in order per connection; callbacks never run
concurrently, across any number of connections; statuses still go through the dispatcher in
order; ``stop()`` from an inline callback neither deadlocks nor waits; a BaseException in an
inline callback ends dispatching but not the connection; a pool's replacement connection does
not overtake its predecessor's queued events. (The rest of the adapter's behaviour runs in both
modes in test_realtime_adapter.py.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

import massive_rt as mrt
from massive_rt.adapter import RealTimeDataAdapter
from massive_rt.connection import MassiveWebSocketClient
from massive_rt.consumer import InlineGate
from massive_rt.eventqueue import KIND_EVENT, KIND_OBJECTS
from massive_rt.pool import ConnectionPool
from massive_rt.synthetic import SyntheticSource
from massive_rt.testing import MockMassiveServer
from tests.conftest import wait_until
from tests.support import FAST, KEY

pytestmark = pytest.mark.timeout(60)

WAIT = 10.0


def trade(sym: str = "AAPL", q: int = 0) -> dict[str, object]:
    return {"ev": "T", "sym": sym, "p": 100.0 + q, "s": 100, "t": 1, "q": q}


@pytest.fixture
def make_adapter(make_adapter: Callable[..., RealTimeDataAdapter]) -> Callable[..., RealTimeDataAdapter]:
    """The shared factory, dispatching inline unless a test says otherwise."""

    def make(source: object, **kwargs: object) -> RealTimeDataAdapter:
        kwargs.setdefault("dispatch", "inline")
        return make_adapter(source, **kwargs)

    return make


class Trades:
    """Records trades with the thread that delivered each; waitable; flags overlapping calls."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, str]] = []
        self.cond = threading.Condition()
        self._inside = threading.Lock()
        self.overlaps = 0

    def __call__(self, event: mrt.EquityTrade) -> None:
        if not self._inside.acquire(blocking=False):
            self.overlaps += 1  # another callback is running right now
            self._inside.acquire()
        try:
            with self.cond:
                self.seen.append((event.symbol or "", event.sequence_number or 0, threading.current_thread().name))
                self.cond.notify_all()
        finally:
            self._inside.release()

    def wait(self, count: int) -> list[tuple[str, int, str]]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.seen) >= count, WAIT), f"{len(self.seen)} of {count}"
            return list(self.seen)


def on_reader() -> bool:
    return threading.current_thread().name.startswith("massive-rt-reader-")


def publish_until(server: MockMassiveServer, happened: threading.Event, symbol: str = "AAPL") -> int:
    """Publish single trades, one after the other, until ``happened`` is set (the handler saw one
    on the reader thread). The very first may well go through the dispatcher (it may be busy with
    the statuses of the connect); later ones, each sent once the last was handled, find it idle.
    Returns how many were published."""
    for q in range(200):
        server.publish([trade(symbol, q)])
        if happened.wait(0.05):
            return q + 1
    raise AssertionError("no trade was dispatched on the reader thread")


def test_dispatch_mode_is_validated_and_reported() -> None:
    source = SyntheticSource(["T.*"], seed=1)
    with pytest.raises(mrt.ConfigurationError, match="dispatch"):
        RealTimeDataAdapter(source, dispatch="fast")
    assert RealTimeDataAdapter(source).dispatch == "adaptive"  # the default
    assert RealTimeDataAdapter(source, dispatch="inline").stats().dispatch == "inline"
    assert RealTimeDataAdapter(source, dispatch="thread").stats().dispatch == "thread"


def test_inline_runs_callbacks_on_the_reader_thread_in_order(server: MockMassiveServer, make_adapter) -> None:
    client = MassiveWebSocketClient(api_key=KEY, url=server.url(), reconnect=FAST, subscriptions=["T.*"])
    trades = Trades()
    adapter = make_adapter(client)
    adapter.on(mrt.EquityTrade, trades)
    adapter.start()
    assert client.wait_acked(["T.*"], WAIT)

    for q in range(100):  # one at a time: the dispatcher is idle when each arrives
        server.publish([trade(q=q)])
        trades.wait(q + 1)
    server.publish([trade(q=i) for i in range(100, 400)], batch=1)  # bursts: queue or inline, in order
    server.publish([trade(q=i) for i in range(400, 1000)], batch=10)
    seen = trades.wait(1000)

    assert [q for _, q, _ in seen] == list(range(1000))
    reader = f"massive-rt-reader-{client.name}"
    assert {name for _, _, name in seen} <= {"massive-rt-dispatcher", reader}
    assert sum(name == reader for _, _, name in seen[:100]) >= 90
    stats = adapter.stats()
    assert stats.dispatched_inline == sum(name == reader for _, _, name in seen)
    assert trades.overlaps == 0


def test_thread_mode_never_dispatches_on_a_reader(server: MockMassiveServer, make_adapter) -> None:
    client = MassiveWebSocketClient(api_key=KEY, url=server.url(), subscriptions=["T.*"])
    trades = Trades()
    adapter = make_adapter(client, dispatch="thread")
    adapter.on(mrt.EquityTrade, trades)
    adapter.start()
    assert client.wait_acked(["T.*"], WAIT)
    server.publish([trade(q=i) for i in range(200)], batch=1)

    assert {name for _, _, name in trades.wait(200)} == {"massive-rt-dispatcher"}
    assert adapter.stats().dispatched_inline == 0


def test_callbacks_never_overlap_and_keep_order_across_a_pool(server: MockMassiveServer, make_adapter) -> None:
    pool = ConnectionPool(api_key=KEY, max_connections=3, max_subscriptions_per_connection=1, url=server.url)
    pool.subscribe("T.A", "T.B", "T.C")
    trades = Trades()
    adapter = make_adapter(pool)
    adapter.on(mrt.EquityTrade, trades)
    adapter.start()
    pool.wait_ready(WAIT)
    assert len(pool.connections) == 3

    publishers = [
        threading.Thread(target=server.publish, args=([trade(s, i) for i in range(1500)],), kwargs={"batch": b},
                         name=f"test-publisher-{s}", daemon=True)
        for s, b in (("A", 1), ("B", 3), ("C", 10))
    ]  # fmt: skip
    for publisher in publishers:
        publisher.start()
    for publisher in publishers:
        publisher.join(WAIT)
    seen = trades.wait(4500)

    assert trades.overlaps == 0
    for symbol in "ABC":
        assert [q for s, q, _ in seen if s == symbol] == list(range(1500))
    readers = {f"massive-rt-reader-{c.name}" for c in pool.connections}
    assert {name for _, _, name in seen} <= readers | {"massive-rt-dispatcher"}


def test_statuses_go_through_the_dispatcher_in_order_with_inline_data(server: MockMassiveServer, make_adapter) -> None:
    client = MassiveWebSocketClient(api_key=KEY, url=server.url(), reconnect=FAST, subscriptions=["T.*"])
    stream: list[object] = []
    status_threads: set[str] = set()
    cond = threading.Condition()

    def record(event: mrt.Event) -> None:
        with cond:
            if isinstance(event, mrt.StatusMessage):
                status_threads.add(threading.current_thread().name)
                if event.status != "state":
                    stream.append(event.status)
            else:
                stream.append(event.sequence_number)  # type: ignore[attr-defined]
            cond.notify_all()

    adapter = make_adapter(client)
    adapter.on(mrt.EquityTrade, record)
    adapter.on_status(record)
    adapter.start()
    assert client.wait_acked(["T.*"], WAIT)
    server.publish([trade(q=i) for i in range(5)])
    with cond:
        assert cond.wait_for(lambda: len([x for x in stream if isinstance(x, int)]) == 5, WAIT)
    server.drop_all()
    assert server.wait_for(lambda: len(server.connections) == 2 and bool(server.active_connections())
                           and bool(server.active_connections()[0].subscriptions), WAIT)  # fmt: skip
    server.publish([trade(q=i) for i in range(5, 10)])
    with cond:
        assert cond.wait_for(lambda: len([x for x in stream if isinstance(x, int)]) == 10, WAIT)

    assert stream[-8:] == [3, 4, "disconnected", "gap", 5, 6, 7, 8, 9][-8:]
    assert status_threads == {"massive-rt-dispatcher"}


def test_stop_from_an_inline_callback_returns_without_waiting(server: MockMassiveServer, make_adapter) -> None:
    client = MassiveWebSocketClient(api_key=KEY, url=server.url(), subscriptions=["T.*"])
    adapter = make_adapter(client)
    returned: list[bool] = []
    done = threading.Event()

    def stop_here(event: mrt.EquityTrade) -> None:
        if on_reader() and not done.is_set():
            returned.append(adapter.stop(timeout=30))  # a deadlock would hold this for 30 s
            done.set()

    adapter.on(mrt.EquityTrade, stop_here)
    adapter.start()
    assert client.wait_acked(["T.*"], WAIT)
    publish_until(server, done)

    assert returned == [True]
    assert wait_until(lambda: not adapter.running and client.state is mrt.ConnectionState.STOPPED, WAIT)


def test_stop_without_drain_from_an_inline_callback_is_the_last_callback(
    server: MockMassiveServer, make_adapter
) -> None:
    client = MassiveWebSocketClient(api_key=KEY, url=server.url(), subscriptions=["T.*"])
    adapter = make_adapter(client)
    after_stop: list[int] = []
    stopped = threading.Event()

    def on_trade(event: mrt.EquityTrade) -> None:
        if stopped.is_set():
            after_stop.append(event.sequence_number or 0)
        elif on_reader() and (event.sequence_number or 0) >= 1000:
            adapter.stop(drain=False)
            stopped.set()

    adapter.on(mrt.EquityTrade, on_trade)
    adapter.start()
    assert client.wait_acked(["T.*"], WAIT)
    for burst in range(1000, 100_000, 1000):  # bursts: the reader gets many frames in one read
        server.publish([trade(q=q) for q in range(burst, burst + 300)], batch=1)
        if stopped.wait(0.2):
            break

    assert stopped.is_set()
    assert wait_until(lambda: not adapter.running and client.state is mrt.ConnectionState.STOPPED, WAIT)
    assert after_stop == []  # the reader queued what it still read; stop(drain=False) discarded it


def test_stop_from_another_thread_waits_for_a_running_inline_callback(
    server: MockMassiveServer, make_adapter, caplog: pytest.LogCaptureFixture
) -> None:
    client = MassiveWebSocketClient(api_key=KEY, url=server.url(), subscriptions=["T.*"])
    adapter = make_adapter(client)
    entered, release = threading.Event(), threading.Event()
    started_after_stop: list[int] = []
    stop_returned = threading.Event()

    def on_trade(event: mrt.EquityTrade) -> None:
        if stop_returned.is_set():
            started_after_stop.append(event.sequence_number or 0)
        if on_reader() and not entered.is_set():
            entered.set()
            release.wait(WAIT)

    adapter.on(mrt.EquityTrade, on_trade)
    adapter.start()
    assert client.wait_acked(["T.*"], WAIT)
    publish_until(server, entered)
    server.publish([trade(q=i) for i in range(5000, 5200)], batch=1)

    assert adapter.stop(timeout=0.5, drain=False) is False  # the inline callback is still running
    stop_returned.set()
    assert "still running" in caplog.text
    release.set()
    assert wait_until(lambda: not adapter.running and client.state is mrt.ConnectionState.STOPPED, WAIT)
    assert started_after_stop == []


def test_producers_queue_while_the_dispatcher_waits_for_the_gate() -> None:
    source = SyntheticSource(["T.*"], seed=3)  # not started: its queue and decoder are enough
    delivered: list[int] = []
    gate = InlineGate(lambda events: delivered.append(len(events)))
    assert source.set_inline(gate) is True
    frame = [KIND_OBJECTS, [{"ev": "T", "sym": "A", "q": 1}], 1, 1]

    gate.wanted = True
    assert source._deliver_inline(frame) is False
    gate.wanted = False
    assert source._deliver_inline(frame) is True
    gate.open = False
    assert source._deliver_inline(frame) is False
    assert delivered == [1]


def test_a_slow_inline_callback_delays_reading_and_loses_nothing(server: MockMassiveServer, make_adapter) -> None:
    client = MassiveWebSocketClient(api_key=KEY, url=server.url(), subscriptions=["T.*"], queue_size=5)
    release, entered = threading.Event(), threading.Event()
    trades = Trades()

    def slow(event: mrt.EquityTrade) -> None:
        trades(event)
        if on_reader() and not entered.is_set():
            entered.set()
            release.wait(WAIT)

    adapter = make_adapter(client)
    adapter.on(mrt.EquityTrade, slow)
    adapter.start()
    assert client.wait_acked(["T.*"], WAIT)
    first = publish_until(server, entered)
    frames_before = client.stats().frames_received
    assert server.publish([trade(q=i) for i in range(first, first + 29)], batch=1) == 29  # into the socket buffers

    assert client.stats().frames_received == frames_before  # the reader is the one running `slow`
    release.set()
    seen = trades.wait(first + 29)
    assert [q for _, q, _ in seen] == list(range(first + 29))
    assert client.stats().dropped_events == 0  # queue_size=5, yet nothing was dropped


@pytest.mark.allow_errors(
    r"^a handler raised SystemExit on a reader thread \(dispatch='inline'\): dispatching ends$",
    logger="massive_rt.adapter",
)
def test_a_base_exception_in_an_inline_callback_ends_dispatching_not_the_connection(
    server: MockMassiveServer, make_adapter, caplog: pytest.LogCaptureFixture
) -> None:
    client = MassiveWebSocketClient(api_key=KEY, url=server.url(), subscriptions=["T.*"])
    adapter = make_adapter(client)
    raised = threading.Event()

    def fatal(event: mrt.EquityTrade) -> None:
        if on_reader():
            raised.set()
            raise SystemExit(3)

    adapter.on(mrt.EquityTrade, fatal)
    adapter.start()
    assert client.wait_acked(["T.*"], WAIT)
    publish_until(server, raised)

    assert wait_until(lambda: not adapter.running, WAIT)
    assert "dispatching ends" in caplog.text
    queued = client.stats().queue_events
    server.publish([trade(q=i) for i in range(1000, 1010)], batch=1)
    assert wait_until(lambda: client.stats().queue_events == queued + 10, WAIT)  # queued, no longer dispatched
    assert client.state is mrt.ConnectionState.STREAMING
    assert adapter.stats().handler_errors == 0


@pytest.mark.allow_errors(
    r"failed: gave up after \d+ consecutive failed attempts; last: server closed the TCP connection",
    logger="massive_rt.connection",
)
def test_a_replacement_connection_never_overtakes_its_predecessor(server: MockMassiveServer, make_adapter) -> None:
    pool = ConnectionPool(api_key=KEY, max_connections=1, url=server.url,
                          client_options={"reconnect": mrt.ReconnectPolicy(max_attempts=0)})  # fmt: skip
    trades = Trades()
    hold, holding = threading.Event(), threading.Event()

    def on_status(status: mrt.StatusMessage) -> None:
        if status.status == "hold":  # holds the dispatcher, and so the gate: readers must queue
            holding.set()
            hold.wait(WAIT)

    adapter = make_adapter(pool)
    adapter.on(mrt.EquityTrade, trades)
    adapter.on_status(on_status)
    adapter.start()
    pool.subscribe("T.A")
    pool.wait_ready(WAIT)
    old = pool.connections[0]
    assert old.wait_acked(["T.A"], WAIT)
    server.send_status("hold", "hold the dispatcher")
    assert holding.wait(WAIT)
    backlog = 3000
    server.publish([trade("A", i) for i in range(backlog)], batch=1)
    assert wait_until(lambda: old.stats().queue_events == backlog, WAIT)

    server.kick(server.active_connections()[0].id)
    assert wait_until(lambda: pool.stats().recycled == 1 and pool.connections[0] is not old, WAIT)
    replacement = pool.connections[0]
    assert replacement.wait_acked(["T.A"], WAIT)
    # Until its predecessor is drained the replacement may not deliver inline (it would overtake).
    assert not replacement.inline_enabled
    hold.set()  # the dispatcher now works through the backlog, 32 frames a round, the gate free between
    server.publish([trade("A", i) for i in range(backlog, backlog + 10)], batch=1)

    seen = trades.wait(backlog + 10)
    assert [q for _, q, _ in seen] == list(range(backlog + 10))
    assert trades.overlaps == 0
    assert wait_until(lambda: replacement.inline_enabled, WAIT)  # adopted once it is drained


def test_synthetic_source_dispatches_inline_on_its_generator_thread(make_adapter) -> None:
    source = SyntheticSource(["T.*"], seed=7, rate=2_000)
    trades = Trades()
    adapter = make_adapter(source)
    adapter.on(mrt.EquityTrade, trades)
    adapter.start()

    seen = trades.wait(300)
    assert f"massive-rt-synthetic-{source.name}" in {name for _, _, name in seen}
    assert trades.overlaps == 0


class BareSource:
    """A minimal third-party source: no ``pending``, no ``set_inline``."""

    name = "bare"

    def __init__(self, events: list[mrt.Event]) -> None:
        self._events = events
        self.exhausted = False

    def drain(self, max_frames: int = 256) -> list[mrt.Event]:
        out, self._events = self._events, []
        return out

    def start(self) -> None: ...

    def stop(self, timeout: float = 0) -> None:
        self.exhausted = True

    def clients(self) -> list[BareSource]:
        return [self]

    def set_listener(self, listener: object) -> None: ...

    def subscribe(self, *channels: str) -> None: ...

    def unsubscribe(self, *channels: str) -> None: ...

    def stats(self) -> None: ...


@pytest.mark.parametrize("dispatch", ["thread", "inline", "adaptive"])
def test_a_source_without_pending_or_set_inline_is_drained_by_the_dispatcher(make_adapter, dispatch: str) -> None:
    events = [mrt.EquityTrade(event_type="T", symbol="X", sequence_number=i) for i in range(5)]
    trades = Trades()
    adapter = make_adapter(BareSource(events), dispatch=dispatch)
    adapter.on(mrt.EquityTrade, trades)
    adapter.start()

    seen = trades.wait(5)
    assert [(s, q, name) for s, q, name in seen] == [("X", i, "massive-rt-dispatcher") for i in range(5)]


class WatchedLock:
    """The gate's lock, noting whether the gate was open each time the lock came free."""

    def __init__(self, gate: InlineGate) -> None:
        self._gate, self._lock = gate, gate.lock
        self.open_at_release: list[bool] = []

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self.open_at_release.append(self._gate.open)
        self._lock.release()


class GatedBareSource(BareSource):
    """A BareSource that is always pending and takes a gate (whose lock it watches)."""

    pending = True

    def __init__(self, events: list[mrt.Event]) -> None:
        super().__init__(events)
        self.watched: WatchedLock | None = None

    def set_inline(self, gate: InlineGate | None) -> bool:
        if gate is not None and self.watched is None:
            self.watched = WatchedLock(gate)
            gate.lock = self.watched  # type: ignore[assignment]
        return True


@pytest.mark.allow_errors(r"^dispatcher ended by SystemExit$", logger="massive_rt.adapter")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_base_exception_on_the_dispatcher_closes_the_gate_before_freeing_it(make_adapter) -> None:
    """Otherwise a reader could take the free, still open gate and dispatch once more after
    dispatching has ended (seen as a second SystemExit under ``"adaptive"``)."""
    source = GatedBareSource([mrt.EquityTrade(event_type="T", symbol="X", sequence_number=1)])
    adapter = make_adapter(source)

    def fatal(_event: mrt.EquityTrade) -> None:
        raise SystemExit(3)

    adapter.on(mrt.EquityTrade, fatal)
    adapter.start()
    assert wait_until(lambda: not adapter.running, WAIT)
    assert source.watched is not None
    assert source.watched.open_at_release
    assert source.watched.open_at_release[-1] is False


def test_redis_source_refuses_inline_delivery() -> None:
    redis_sinks = pytest.importorskip("massive_rt.sinks")
    source = redis_sinks.RedisStreamSource("redis://127.0.0.1:1/0", ["massive:stocks"])
    assert source.set_inline(InlineGate(lambda events: None)) is False


# ----------------------------------------------------------------------------- the consumer's offer()


def test_offer_dispatches_inline_only_data_into_an_empty_open_queue_with_the_gate_free() -> None:
    """The queue stays a queue: the producer-side choice between inline and queued is the
    consumer's offer(), installed as the producer's sink only while a gate is set."""
    taken: list[object] = []
    source = SyntheticSource(["T.*"], seed=1)
    assert source._sink == source._queue.put  # no gate: the queue's put itself, no extra call
    gate = InlineGate(taken.extend)
    assert source.set_inline(gate) is True
    assert source._sink == source.offer
    queue = source._queue
    data = {"ev": "T", "sym": "X", "q": 1}

    assert source.offer([KIND_OBJECTS, [data], 1, 1]) is True
    assert (len(queue), len(taken)) == (0, 1)  # dispatched inline
    assert source.offer([KIND_EVENT, "status", 2, 0]) is True
    assert (len(queue), len(taken)) == (1, 1)  # statuses always queue
    assert source.offer([KIND_OBJECTS, [data], 3, 1]) is True
    assert (len(queue), len(taken)) == (2, 1)  # not empty: queued, to keep order
    queue.get_many(10)
    gate.open = False
    assert source.offer([KIND_OBJECTS, [data], 4, 1]) is True
    assert (len(queue), len(taken)) == (1, 1)  # gate closed: queued as usual
    queue.get_many(10)
    gate.open = True
    queue.close()
    assert source.offer([KIND_OBJECTS, [data], 5, 1]) is False
    assert len(taken) == 1  # closed: never inline
    source.set_inline(None)
    assert source._sink == source._queue.put
