"""The relief reader: under ``dispatch="adaptive"`` a callback stuck on a reader no longer stalls its socket.

Every test blocks a callback on a reader thread on an Event the test releases, so "stuck" means
exactly that, whatever the machine's speed. While it is blocked the server sends more frames (and
a ping, a status, a close); the tests assert they are read off the socket and queued (the
connection's queue holds them, the server gets its pong) before the callback is released, and
that afterwards every event arrives once, in order, with callbacks never overlapping.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable

import pytest

import massive_rt as mrt
from massive_rt.connection import MassiveWebSocketClient
from massive_rt.pool import ConnectionPool
from massive_rt.testing import MockMassiveServer
from tests.conftest import wait_until
from tests.support import FAST, KEY

pytestmark = pytest.mark.timeout(60)

WAIT = 10.0
BURST_FRAMES = 8  # frames of one burst: one read, one queue item, when the reader gets them at once
RELIEF = "massive-rt-relief-"


def trade(sym: str = "AAPL", q: int = 0) -> dict[str, object]:
    return {"ev": "T", "sym": sym, "p": 100.0 + q, "s": 100, "t": 1, "q": q}


def on_reader() -> bool:
    return threading.current_thread().name.startswith("massive-rt-reader-")


def relief_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(RELIEF)]


class Stream:
    """Records trades ``(symbol, q)`` and statuses ``("status", name)`` in delivery order; counts
    overlapping callbacks; blocks the callback of one trade, when it runs on a reader, until
    ``release``; sets ``inline`` once any trade ran on a reader."""

    def __init__(self, block: tuple[str, int] | None = None) -> None:
        self.seen: list[tuple[str, object]] = []
        self.cond = threading.Condition()
        self._inside = threading.Lock()
        self.overlaps = 0
        self.block = block
        self.inline = threading.Event()
        self.entered = threading.Event()
        self.release = threading.Event()
        self.blocked_on = ""

    def __call__(self, event: mrt.Event) -> None:
        if not self._inside.acquire(blocking=False):
            self.overlaps += 1
            self._inside.acquire()
        try:
            if isinstance(event, mrt.StatusMessage):
                key: tuple[str, object] = ("status", event.status)
            else:
                key = (event.symbol or "", event.sequence_number or 0)  # type: ignore[union-attr]
            with self.cond:
                self.seen.append(key)
                self.cond.notify_all()
            if key[0] != "status" and on_reader():
                self.inline.set()
                if key == self.block and not self.entered.is_set():
                    self.blocked_on = threading.current_thread().name
                    self.entered.set()
                    self.release.wait(WAIT * 3)
        finally:
            self._inside.release()

    def trades(self, symbol: str) -> list[object]:
        with self.cond:
            return [q for s, q in self.seen if s == symbol]

    def wait_trades(self, symbol: str, count: int) -> list[object]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.trades(symbol)) >= count, WAIT), self.trades(symbol)
        return self.trades(symbol)


def warm_up(server: MockMassiveServer, stream: Stream, symbol: str, first: int = 0) -> int:
    """Publish single trades from ``first`` until one runs on a reader (the inline path is open
    and idle); return the next sequence number."""
    stream.inline.clear()
    for q in range(first, first + 200):
        server.publish([trade(symbol, q)])
        if stream.inline.wait(0.05):
            stream.wait_trades(symbol, q + 1)
            return q + 1
    raise AssertionError("no trade was dispatched on a reader thread")


def block_on_reader(server: MockMassiveServer, stream: Stream, symbol: str, frames: int = 1,
                    frame_events: int = 1, blocked_at: int = 0) -> int:  # fmt: skip
    """Publish ``frames`` frames of ``frame_events`` trades at once, the trade at ``blocked_at``
    blocking on a reader; return the next sequence number. A burst that the dispatcher took
    instead (it was busy at that moment) is delivered in full, and the next one tries again."""
    nxt = 0
    for _ in range(5):
        first = warm_up(server, stream, symbol, nxt)
        nxt = first + frames * frame_events
        stream.block = (symbol, first + blocked_at)
        server.publish([trade(symbol, q) for q in range(first, nxt)], batch=frame_events)
        assert wait_until(lambda: stream.entered.is_set() or len(stream.trades(symbol)) >= nxt, WAIT)  # noqa: B023
        if stream.entered.is_set():
            assert stream.blocked_on.startswith("massive-rt-reader-")
            return nxt
    raise AssertionError("the blocking trade never ran on a reader")


def adaptive_client(server: MockMassiveServer, make_adapter: Callable[..., mrt.RealTimeDataAdapter],
                    stream: Stream) -> tuple[MassiveWebSocketClient, mrt.RealTimeDataAdapter]:  # fmt: skip
    client = MassiveWebSocketClient(api_key=KEY, url=server.url(), reconnect=FAST, subscriptions=["T.*"])
    # A budget clock that never moves: only a relief hands over, whatever the machine's load.
    adapter = make_adapter(client, dispatch="adaptive", clock=lambda: 0.0)
    adapter.on(mrt.EquityTrade, stream)
    adapter.on_status(stream)
    adapter.start()
    assert client.wait_acked(["T.*"], WAIT)
    return client, adapter


@pytest.mark.parametrize(
    ("frame_events", "blocked_at"),
    [(1, position) for position in range(BURST_FRAMES)] + [(3, 0), (3, 4), (3, 11), (3, 23)],
)
def test_a_stuck_callback_does_not_stall_its_socket_and_order_holds(
    server: MockMassiveServer, make_adapter: Callable[..., mrt.RealTimeDataAdapter], frame_events: int,
    blocked_at: int,
) -> None:  # fmt: skip
    stream = Stream()
    client, adapter = adaptive_client(server, make_adapter, stream)
    (conn,) = server.active_connections()
    try:
        nxt = block_on_reader(server, stream, "AAPL", BURST_FRAMES, frame_events, blocked_at)
        rng = random.Random(blocked_at * 31 + frame_events)
        later = 0
        while later < 40:  # more frames, in frames of random sizes, while the callback is stuck
            count = rng.randint(1, 7)
            server.publish([trade("AAPL", q) for q in range(nxt, nxt + count)], batch=rng.randint(1, 4))
            nxt += count
            later += count
        pong = server.ping(conn)
        # Read off the socket while the callback is still blocked: the frames after the blocked
        # one (the rest of its read and everything later) wait in the queue, the ping is answered.
        frames_after = BURST_FRAMES - blocked_at // frame_events - 1
        queued = frames_after * frame_events + later
        assert wait_until(lambda: client.stats().queue_events == queued, WAIT), client.stats().queue_events
        assert pong.wait(WAIT)
        assert not stream.release.is_set()
        assert client.stats().queue_events == queued
        assert adapter.stats().reliefs == 1
    finally:
        stream.release.set()
    assert stream.wait_trades("AAPL", nxt) == list(range(nxt))  # once each, in order
    assert stream.overlaps == 0
    stats = adapter.stats()
    assert (stats.reliefs, stats.handovers) == (1, 1)
    # The reader took its socket back, wherever in its read the callback was stuck.
    latch = client._relief
    assert latch is not None
    assert wait_until(lambda: not latch.relieved, WAIT)
    assert not latch.taken


def test_a_status_and_a_close_during_a_takeover_are_handled_after_the_reader_is_back_in_order(
    server: MockMassiveServer, make_adapter: Callable[..., mrt.RealTimeDataAdapter]
) -> None:
    stream = Stream()
    client, adapter = adaptive_client(server, make_adapter, stream)
    (conn,) = server.active_connections()
    try:
        first = block_on_reader(server, stream, "AAPL") - 1
        server.publish([trade("AAPL", q) for q in range(first + 1, first + 6)], batch=2)
        assert wait_until(lambda: adapter.stats().reliefs == 1 and client.stats().queue_events == 5, WAIT)
        server.send_raw('[{"ev":"status","status":"notice","message":"between data"}]', conn)
        server.publish([trade("AAPL", q) for q in range(first + 6, first + 9)], batch=1)
        server.send_status("force_disconnect", "during a takeover", close_code=1000, connection=conn)
        # The relief reader stops at the status frame: it and what follows wait for the reader.
        assert client.state is mrt.ConnectionState.STREAMING
    finally:
        stream.release.set()
    # The reader handles the status and the close as without relief, in order with the data.
    assert wait_until(lambda: client.stats().reconnects == 1, WAIT)
    assert client.wait_acked(["T.*"], WAIT)
    server.publish([trade("AAPL", first + 9)])
    stream.wait_trades("AAPL", first + 10)
    with stream.cond:
        seen = list(stream.seen)
    order = [key for key in seen if key[0] == "AAPL" or key in (("status", "notice"), ("status", "force_disconnect"))]
    at = order.index(("AAPL", first))
    assert order[at:] == [
        *[("AAPL", q) for q in range(first, first + 6)],
        ("status", "notice"),
        *[("AAPL", q) for q in range(first + 6, first + 9)],
        ("status", "force_disconnect"),
        ("AAPL", first + 9),
    ]
    assert stream.trades("AAPL") == list(range(first + 10))
    assert stream.overlaps == 0
    assert client.stats().reconnects == 1


def test_a_status_in_the_read_being_delivered_stays_between_the_frames_around_it(
    server: MockMassiveServer, make_adapter: Callable[..., mrt.RealTimeDataAdapter]
) -> None:
    # One read: two trades, a status, two trades; the first trade's callback is stuck. The reader
    # had taken the status from the parser when it handed the two trades on, so the relief reader
    # must get it from there (it stops at it, queueing only the second trade), not skip it.
    stream = Stream()
    client, adapter = adaptive_client(server, make_adapter, stream)
    (conn,) = server.active_connections()
    nxt = 0
    try:
        for _ in range(5):
            first = warm_up(server, stream, "AAPL", nxt)
            nxt = first + 4
            stream.block = ("AAPL", first)
            frames_before = client.stats().frames_received
            frames = [json.dumps([trade("AAPL", q)]) for q in range(first, nxt)]
            frames.insert(2, '[{"ev":"status","status":"notice","message":"inside a read"}]')
            server.publish_raw_frames(frames, connection=conn)
            assert wait_until(lambda: stream.entered.is_set() or len(stream.trades("AAPL")) >= nxt, WAIT)  # noqa: B023
            if stream.entered.is_set():
                break
        assert stream.entered.is_set()
        assert wait_until(lambda: adapter.stats().reliefs == 1, WAIT)
        server.publish([trade("AAPL", nxt)])  # after the status: left on the socket for the reader
        nxt += 1
        assert wait_until(lambda: client.stats().queue_events == 1, WAIT)
        assert ("status", "notice") not in stream.seen
    finally:
        stream.release.set()
    assert stream.wait_trades("AAPL", nxt) == list(range(nxt))
    with stream.cond:
        order = [key for key in stream.seen if key[0] == "AAPL" or key == ("status", "notice")]
    at = order.index(("AAPL", first))
    assert order[at:] == [("AAPL", first), ("AAPL", first + 1), ("status", "notice"),
                          *[("AAPL", q) for q in range(first + 2, nxt)]]  # fmt: skip
    assert stream.overlaps == 0
    assert client.stats().frames_received - frames_before == 6  # each frame counted once, the status too


def test_a_disconnect_during_a_takeover_is_acted_on_when_the_callback_returns(
    server: MockMassiveServer, make_adapter: Callable[..., mrt.RealTimeDataAdapter]
) -> None:
    stream = Stream()
    client, _adapter = adaptive_client(server, make_adapter, stream)
    (conn,) = server.active_connections()
    try:
        nxt = block_on_reader(server, stream, "AAPL")
        server.publish([trade("AAPL", q) for q in range(nxt, nxt + 4)], batch=2)
        nxt += 4
        assert wait_until(lambda: client.stats().queue_events == 4, WAIT)
        server.kick(conn)  # the relief reader reads EOF and leaves it to the reader
        assert wait_until(lambda: not server.active_connections(), WAIT)
        assert client.stats().reconnects == 0
    finally:
        stream.release.set()
    assert wait_until(lambda: client.stats().reconnects == 1, WAIT)
    assert client.wait_acked(["T.*"], WAIT)
    server.publish([trade("AAPL", nxt)])
    nxt += 1
    assert stream.wait_trades("AAPL", nxt) == list(range(nxt))
    assert stream.overlaps == 0


def test_a_callback_stuck_after_a_quiet_spell_is_relieved_too(
    server: MockMassiveServer, make_adapter: Callable[..., mrt.RealTimeDataAdapter]
) -> None:
    stream = Stream()
    client, adapter = adaptive_client(server, make_adapter, stream)
    latch = client._relief
    assert latch is not None
    nxt = warm_up(server, stream, "AAPL")
    try:
        for _ in range(5):
            # Quiet: the relief thread stops polling; the next delivery on the reader rouses it.
            assert wait_until(lambda: latch.dozing, WAIT)
            stream.block = ("AAPL", nxt)
            server.publish([trade("AAPL", nxt)])
            nxt += 1
            assert wait_until(lambda: stream.entered.is_set() or len(stream.trades("AAPL")) >= nxt, WAIT)  # noqa: B023
            if stream.entered.is_set():
                break
        assert stream.entered.is_set()
        server.publish([trade("AAPL", q) for q in range(nxt, nxt + 10)], batch=2)
        nxt += 10
        assert wait_until(lambda: client.stats().queue_events == 10, WAIT)
    finally:
        stream.release.set()
    assert stream.wait_trades("AAPL", nxt) == list(range(nxt))
    assert adapter.stats().reliefs == 1


def test_stop_during_a_takeover_returns_and_the_relief_thread_ends(
    server: MockMassiveServer, make_adapter: Callable[..., mrt.RealTimeDataAdapter]
) -> None:
    stream = Stream()
    client, adapter = adaptive_client(server, make_adapter, stream)
    assert relief_threads() == [RELIEF + client.name]
    try:
        block_on_reader(server, stream, "AAPL")
        assert wait_until(lambda: adapter.stats().reliefs == 1, WAIT)
        stopper = threading.Thread(target=adapter.stop, kwargs={"timeout": 1.0}, name="test-stopper", daemon=True)
        stopper.start()
        stopper.join(WAIT)  # bounded: never waits for the stuck callback
        assert not stopper.is_alive()
        assert not client.relief_alive
        assert relief_threads() == []
        assert client.reader_alive  # stuck in the callback: reported as not stopped (a WARNING), as before
    finally:
        stream.release.set()
    assert wait_until(lambda: not client.reader_alive, WAIT)
    assert client.state is mrt.ConnectionState.STOPPED


def test_a_pool_of_three_keeps_reading_while_one_callback_is_stuck(
    server: MockMassiveServer, make_adapter: Callable[..., mrt.RealTimeDataAdapter]
) -> None:
    pool = ConnectionPool(api_key=KEY, max_connections=3, max_subscriptions_per_connection=1, url=server.url)
    pool.subscribe("T.A", "T.B", "T.C")
    stream = Stream()
    adapter = make_adapter(pool, dispatch="adaptive", clock=lambda: 0.0)
    adapter.on(mrt.EquityTrade, stream)
    adapter.start()
    pool.wait_ready(WAIT)
    assert len(pool.connections) == 3
    assert sorted(relief_threads()) == sorted(RELIEF + c.name for c in pool.connections)
    nxt = dict.fromkeys("ABC", 0)
    by_symbol = {next(iter(c.subscriptions))[2:]: c for c in pool.connections}
    try:
        nxt["A"] = block_on_reader(server, stream, "A")
        for symbol in "ABC":
            server.publish([trade(symbol, q) for q in range(nxt[symbol], nxt[symbol] + 30)], batch=3)
            nxt[symbol] += 30
        # Callbacks never overlap, so nothing is dispatched meanwhile; but every socket is read,
        # the stuck connection's by its relief reader: each queue holds its 30 events.
        assert wait_until(lambda: [by_symbol[s].stats().queue_events for s in "ABC"] == [30] * 3, WAIT)
    finally:
        stream.release.set()
    for symbol in "ABC":
        assert stream.wait_trades(symbol, nxt[symbol]) == list(range(nxt[symbol])), symbol
    assert stream.overlaps == 0
    assert adapter.stats().reliefs == 1


@pytest.mark.parametrize("dispatch", ["thread", "inline"])
def test_thread_and_inline_modes_start_no_relief_thread(
    server: MockMassiveServer, make_adapter: Callable[..., mrt.RealTimeDataAdapter], dispatch: str
) -> None:
    client = MassiveWebSocketClient(api_key=KEY, url=server.url(), reconnect=FAST, subscriptions=["T.*"])
    stream = Stream()
    adapter = make_adapter(client, dispatch=dispatch)
    adapter.on(mrt.EquityTrade, stream)
    adapter.start()
    assert client.wait_acked(["T.*"], WAIT)
    server.publish([trade("AAPL", q) for q in range(20)], batch=2)
    assert stream.wait_trades("AAPL", 20) == list(range(20))
    assert relief_threads() == []
    assert not client.relief_alive
    assert adapter.stats().reliefs == 0


@pytest.mark.allow_errors(r"failed", logger="massive_rt.connection")
def test_a_reader_that_fails_on_its_own_takes_its_relief_thread_with_it(
    server: MockMassiveServer, make_adapter: Callable[..., mrt.RealTimeDataAdapter]
) -> None:
    # A refused key ends the reader FAILED with no stop(): its relief thread kept running (and kept
    # the client alive) until someone called stop().
    client = MassiveWebSocketClient(api_key="not-" + KEY, url=server.url(), reconnect=FAST, subscriptions=["T.*"])
    adapter = make_adapter(client, dispatch="adaptive")
    adapter.start()
    assert wait_until(lambda: client.state is mrt.ConnectionState.FAILED and not client.reader_alive, WAIT)
    assert wait_until(lambda: not client.relief_alive, WAIT)
    assert RELIEF + client.name not in relief_threads()
    # A gate offered after the reader ended starts nothing.
    client.set_inline(mrt.consumer.InlineGate(lambda events: None, relief_after=0.005))
    assert not client.relief_alive
