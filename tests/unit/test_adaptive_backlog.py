"""``dispatch="adaptive"`` under a backlog: a read with more frames than one callback round
(``massive_rt.relief.BACKLOG_FRAMES``) and more bytes than a burst (``BACKLOG_BYTES`` past them),
or whose callbacks have kept the reader from its socket ``BACKLOG_SECONDS`` with more waiting,
goes to the dispatcher thread, as under ``"thread"``, so the reader reads on while the callbacks
run; small reads, and bursts of small frames, are dispatched inline.

Before this, a reader that found its queue empty dispatched a whole flood inline, frame by frame,
and kept doing so: one thread read, decoded and ran callbacks with no overlap (adaptive measured
14% below ``"thread"`` at frames of 10 and 41% below at frames of 1).
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

import massive_rt as mrt
from massive_rt.relief import BACKLOG_BYTES, BACKLOG_FRAMES, BACKLOG_SECONDS
from massive_rt.testing import MockMassiveServer
from tests.support import FAST, KEY

pytestmark = pytest.mark.timeout(60)

WAIT = 10.0
FLOOD = 2_000  # frames of one trade each, written at once: any read of it holds far more than BACKLOG_FRAMES


class Deliveries:
    """Sequence numbers of AAPL trades in delivery order, with the thread that ran each callback."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.seen: list[tuple[int, str]] = []

    def __call__(self, event: mrt.EquityTrade) -> None:
        with self.cond:
            self.seen.append((event.sequence_number or 0, threading.current_thread().name))
            self.cond.notify_all()

    def wait(self, count: int) -> list[tuple[int, str]]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.seen) >= count, WAIT), len(self.seen)
            return list(self.seen)


def trade(q: int) -> dict[str, object]:
    return {"ev": "T", "sym": "AAPL", "p": 100.0, "s": 1, "t": 1, "q": q}


def warm_up(server: MockMassiveServer, deliveries: Deliveries) -> int:
    """Publish single trades until one runs on a reader (the dispatcher is done with the
    subscription's statuses, the inline path idle); return the next sequence number."""
    for q in range(200):
        server.publish([trade(q)], batch=1)
        if deliveries.wait(q + 1)[-1][1].startswith("massive-rt-reader-"):
            return q + 1
    raise AssertionError("no trade was dispatched on a reader thread")


def start_adaptive(server: MockMassiveServer, make_adapter: Callable[..., mrt.RealTimeDataAdapter],
                   deliveries: Deliveries, **options: Any) -> mrt.RealTimeDataAdapter:  # fmt: skip
    client = mrt.MassiveWebSocketClient(api_key=KEY, url=server.url(), reconnect=FAST, subscriptions=["T.*"],
                                        **options)  # fmt: skip
    # A budget clock that never moves: no callback ever counts as slow, so only the backlog
    # rule can send frames to the dispatcher.
    adapter = make_adapter(client, dispatch="adaptive", clock=lambda: 0.0)
    adapter.on(mrt.EquityTrade, deliveries)
    adapter.start()
    assert client.wait_acked(["T.*"], WAIT)
    return adapter


def test_a_flood_goes_to_the_dispatcher_and_small_reads_return_inline(
    server: MockMassiveServer, make_adapter: Callable[..., mrt.RealTimeDataAdapter]
) -> None:
    deliveries = Deliveries()
    adapter = start_adaptive(server, make_adapter, deliveries)
    first = warm_up(server, deliveries)
    server.publish([trade(q) for q in range(first, first + FLOOD)], batch=1)
    seen = deliveries.wait(first + FLOOD)
    assert [q for q, _ in seen] == list(range(first + FLOOD))  # once each, in order
    on_dispatcher = [q for q, name in seen if name == "massive-rt-dispatcher"]
    assert [q for q in on_dispatcher if q >= first], "the whole flood ran on the reader thread"
    stats = adapter.stats()
    assert stats.dispatched_on_dispatcher == len(on_dispatcher) + stats.status_events
    assert stats.handovers == 0  # not a slow callback's hand-over: the gate stayed open
    assert stats.inline_active

    # The backlog is gone: single frames, each sent after the last was delivered, run inline.
    for q in range(first + FLOOD, first + FLOOD + 5):
        server.publish([trade(q)], batch=1)
        q_seen, name = deliveries.wait(q + 1)[-1]
        assert q_seen == q
        assert name.startswith("massive-rt-reader-"), name


def test_reads_within_the_backlog_bound_stay_inline(
    server: MockMassiveServer, make_adapter: Callable[..., mrt.RealTimeDataAdapter]
) -> None:
    deliveries = Deliveries()
    adapter = start_adaptive(server, make_adapter, deliveries)
    sent = warm_up(server, deliveries)
    before = adapter.stats().dispatched_on_dispatcher
    # Up to BACKLOG_FRAMES frames written at once (at most one read's worth each time), each
    # burst after the last was delivered: never a backlog.
    for size in (1, BACKLOG_FRAMES // 2, BACKLOG_FRAMES):
        server.publish([trade(q) for q in range(sent, sent + size)], batch=1)
        sent += size
        seen = deliveries.wait(sent)
    assert adapter.stats().dispatched_on_dispatcher == before
    assert all(name.startswith("massive-rt-reader-") for _, name in seen[-(1 + BACKLOG_FRAMES // 2 + BACKLOG_FRAMES):])


def test_a_burst_of_many_small_frames_stays_inline(
    server: MockMassiveServer, make_adapter: Callable[..., mrt.RealTimeDataAdapter]
) -> None:
    # A server catching up after a pause: four batches' worth of one-trade frames at once, a few KB.
    # Handed to the dispatcher, such a burst's events waited 160-420 us (median) against ~25 inline.
    deliveries = Deliveries()
    adapter = start_adaptive(server, make_adapter, deliveries)
    sent = warm_up(server, deliveries)
    burst = [trade(q) for q in range(sent, sent + 4 * BACKLOG_FRAMES)]
    assert len(json.dumps(burst)) + 4 * BACKLOG_FRAMES * 4 < BACKLOG_BYTES  # frames and their headers
    before = adapter.stats().dispatched_on_dispatcher
    server.publish(burst, batch=1)
    seen = deliveries.wait(sent + len(burst))
    assert [q for q, _ in seen] == list(range(sent + len(burst)))
    assert adapter.stats().dispatched_on_dispatcher == before
    assert all(name.startswith("massive-rt-reader-") for _, name in seen[-len(burst):])


class SteppedClock:
    """The adapter's clock in seconds; it moves only when a callback advances it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_read_whose_callbacks_keep_the_socket_long_hands_the_rest_over(
    server: MockMassiveServer, make_adapter: Callable[..., mrt.RealTimeDataAdapter]
) -> None:
    # A burst of ~8 KB (below BACKLOG_BYTES) whose callbacks each stay within the budget but add
    # up: once one read's callbacks have taken BACKLOG_SECONDS, the rest of the read goes to the
    # dispatcher and the reader goes back to its socket. Before, the reader ran the whole read (up
    # to 16 KB more than a batch: ~200 such callbacks) whatever they took.
    clock = SteppedClock()
    per_callback = BACKLOG_SECONDS / 12  # a batch of 16 takes longer than BACKLOG_SECONDS
    blocker_entered, release = threading.Event(), threading.Event()
    blocker: list[int] = []
    deliveries = Deliveries()

    def on_trade(event: mrt.EquityTrade) -> None:
        if blocker and event.sequence_number == blocker[0]:
            blocker_entered.set()
            assert release.wait(WAIT)
        else:
            clock.now += per_callback
        deliveries(event)

    client = mrt.MassiveWebSocketClient(api_key=KEY, url=server.url(), reconnect=FAST, subscriptions=["T.*"])
    # A budget far above any callback here: no hand-over, and no relief reader while the blocker waits.
    adapter = make_adapter(client, dispatch="adaptive", clock=clock, inline_budget=60.0)
    adapter.on(mrt.EquityTrade, on_trade)
    adapter.start()
    assert client.wait_acked(["T.*"], WAIT)
    sent = warm_up(server, deliveries)
    # The reader waits in the blocker's callback while the burst arrives: the burst is one read.
    blocker.append(sent)
    server.publish([trade(sent)], batch=1)
    assert blocker_entered.wait(WAIT)
    burst = list(range(sent + 1, sent + 101))
    server.publish([trade(q) for q in burst], batch=1)
    release.set()
    seen = deliveries.wait(burst[-1] + 1)
    assert [q for q, _ in seen] == list(range(burst[-1] + 1))
    threads = dict(seen)
    assert threads[sent].startswith("massive-rt-reader-")
    # The first batch ran inline (the read was not overdue yet); from the second, the dispatcher.
    assert all(threads[q].startswith("massive-rt-reader-") for q in burst[:BACKLOG_FRAMES])
    assert threads[burst[BACKLOG_FRAMES]] == "massive-rt-dispatcher"
    stats = adapter.stats()
    assert stats.handovers == 0  # the backlog rule, not the budget
    assert stats.reliefs == 0
    assert stats.inline_active


def test_the_docs_state_the_backlog_bound() -> None:
    root = Path(__file__).resolve().parents[2]
    kb = BACKLOG_BYTES // 1024
    readme = " ".join((root / "README.md").read_text().split())
    assert f"more than {BACKLOG_FRAMES} frames and {kb} KB more at once" in readme
    threading_doc = " ".join((root / "docs" / "threading.md").read_text().split())
    assert f"messages ({BACKLOG_FRAMES}," in threading_doc
    assert f"at least {kb} KB (`BACKLOG_BYTES`)" in threading_doc
    ms = round(BACKLOG_SECONDS * 1000)
    assert f"{ms} ms (`BACKLOG_SECONDS`)" in threading_doc
    assert f"once its callbacks kept the reader from the socket {ms} ms" in readme


def test_raw_frames_of_a_small_read_stay_inline_too(
    server: MockMassiveServer, make_adapter: Callable[..., mrt.RealTimeDataAdapter]
) -> None:
    # Raw frames are handed on one by one; a frame with more of its read behind it is not a
    # backlog by itself (a reader once sent every raw read of two frames or more to the dispatcher).
    cond = threading.Condition()
    seen: list[tuple[int, str]] = []

    def on_raw(event: mrt.RawFrame) -> None:
        data = event.data if isinstance(event.data, bytes) else event.data.encode()
        (message,) = json.loads(data)
        with cond:
            seen.append((message["q"], threading.current_thread().name))
            cond.notify_all()

    def wait(count: int) -> list[tuple[int, str]]:
        with cond:
            assert cond.wait_for(lambda: len(seen) >= count, WAIT), len(seen)
            return list(seen)

    client = mrt.MassiveWebSocketClient(api_key=KEY, url=server.url(), reconnect=FAST, subscriptions=["T.*"],
                                        raw=True)  # fmt: skip
    adapter = make_adapter(client, dispatch="adaptive", clock=lambda: 0.0)
    adapter.on(mrt.RawFrame, on_raw)
    adapter.start()
    assert client.wait_acked(["T.*"], WAIT)
    sent = 0
    for _ in range(200):  # until one runs on the reader: the dispatcher is done with the statuses
        server.publish([trade(sent)], batch=1)
        sent += 1
        if wait(sent)[-1][1].startswith("massive-rt-reader-"):
            break
    before = adapter.stats().dispatched_on_dispatcher
    for size in (2, BACKLOG_FRAMES // 2, BACKLOG_FRAMES):
        server.publish([trade(q) for q in range(sent, sent + size)], batch=1)
        sent += size
        last = wait(sent)
    assert [q for q, _ in last] == list(range(sent))
    assert all(name.startswith("massive-rt-reader-") for _, name in last[-(2 + BACKLOG_FRAMES // 2 + BACKLOG_FRAMES):])
    assert adapter.stats().dispatched_on_dispatcher == before


@pytest.fixture(scope="module")
def tls_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_server(tls_ca: trustme.CA) -> Iterator[MockMassiveServer]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls_ca.issue_cert("127.0.0.1").configure_cert(context)
    with MockMassiveServer(api_keys={KEY}, ssl_context=context, name="tls") as server:
        yield server


@pytest.mark.parametrize(("frames", "per_frame"), [(3_000, 1), (400, 20)], ids=["small frames", "1 KB frames"])
def test_a_flood_over_tls_goes_to_the_dispatcher_too(
    tls_server: MockMassiveServer, tls_ca: trustme.CA, make_adapter: Callable[..., mrt.RealTimeDataAdapter],
    frames: int, per_frame: int,
) -> None:  # fmt: skip
    # A TLS read returns one record (16 KB at most): the rest of a flood waits on the socket, not
    # in the read. Frames of 20 trades (~1.4 KB) never fill a batch of 16 within one record.
    context = ssl.create_default_context()
    tls_ca.configure_trust(context)
    deliveries = Deliveries()
    adapter = start_adaptive(tls_server, make_adapter, deliveries, ssl_context=context)
    first = warm_up(tls_server, deliveries)
    total = frames * per_frame
    tls_server.publish([trade(q) for q in range(first, first + total)], batch=per_frame)
    seen = deliveries.wait(first + total)
    assert [q for q, _ in seen] == list(range(first + total))  # once each, in order
    assert [q for q, name in seen[first:] if name == "massive-rt-dispatcher"], "the whole flood ran on the reader"
    assert adapter.stats().handovers == 0  # the backlog rule, not a slow callback
