"""FrameQueue: FIFO order, overflow policies, drop markers, counters, blocking and closing.

Threads synchronise through Events, joins and the ``should_stop`` probe that a blocked ``put``
calls while it waits; nothing sleeps.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from massive_rt.enums import Overflow
from massive_rt.eventqueue import KIND_DATA, KIND_DROPPED, KIND_EVENT, FrameQueue, Item

JOIN_TIMEOUT = 10.0


def data(events: int, name: str = "", received_at_ns: int = 0) -> Item:
    """A data frame carrying ``events`` events."""
    return [KIND_DATA, (name or f"frame-{events}").encode(), received_at_ns, events]


def status(name: str, received_at_ns: int = 0) -> Item:
    """A status item (never dropped, counts no events)."""
    return [KIND_EVENT, name, received_at_ns, 0]


def dropped(count: int, received_at_ns: int = 0) -> Item:
    return [KIND_DROPPED, count, received_at_ns, 0]


def drain(queue: FrameQueue) -> list[Item]:
    out: list[Item] = []
    while (item := queue.get(0)) is not None:
        out.append(item)
    return out


def labels(items: list[Item]) -> list[str]:
    """Compact view: ``D:<payload>``, ``S:<name>``, ``X:<dropped count>``."""
    out = []
    for kind, payload, _, _ in items:
        if kind == KIND_DATA:
            out.append(f"D:{payload.decode()}")
        elif kind == KIND_EVENT:
            out.append(f"S:{payload}")
        else:
            out.append(f"X:{payload}")
    return out


class ThreadResult:
    """Runs ``target`` in a named thread and keeps its return value."""

    def __init__(self, target: Callable[[], Any]) -> None:
        self.value: Any = None
        self.done = threading.Event()

        def run() -> None:
            try:
                self.value = target()
            finally:
                self.done.set()

        self.thread = threading.Thread(target=run, name="test-eventqueue-worker", daemon=True)
        self.thread.start()

    def join(self) -> Any:
        self.thread.join(JOIN_TIMEOUT)
        assert not self.thread.is_alive(), "worker thread did not finish"
        return self.value


class SignallingCondition(threading.Condition):
    """A Condition that sets ``entered`` each time a thread starts waiting on it."""

    def __init__(self, lock: Any, entered: threading.Event) -> None:
        super().__init__(lock)
        self.entered = entered

    def wait(self, timeout: float | None = None) -> bool:
        self.entered.set()
        return super().wait(timeout)


class StopProbe:
    """A ``should_stop`` callable: reports that a blocked ``put`` is waiting, stops it on request."""

    def __init__(self) -> None:
        self.waiting = threading.Event()
        self.stop = threading.Event()
        self.calls = 0

    def __call__(self) -> bool:
        self.calls += 1
        self.waiting.set()
        return self.stop.is_set()


# ============================================================================================
# Basics


@pytest.mark.parametrize("overflow", list(Overflow), ids=str)
def test_items_come_out_in_fifo_order(overflow: Overflow) -> None:
    queue = FrameQueue(100, overflow)
    items = [data(1, "a"), status("s1"), data(2, "b"), data(3, "c"), status("s2")]

    for item in items:
        assert queue.put(item) is True

    assert len(queue) == 5
    assert queue.queued_events == 6
    assert drain(queue) == items
    assert (len(queue), queue.queued_events) == (0, 0)


def test_items_are_returned_as_the_same_objects() -> None:
    queue = FrameQueue(10)
    item = data(1)

    queue.put(item)

    assert queue.get(0) is item


def test_get_returns_none_on_timeout() -> None:
    queue = FrameQueue(10)

    assert queue.get(0) is None
    assert queue.get(0.01) is None


def test_get_many_returns_up_to_max_items_in_order() -> None:
    queue = FrameQueue(100)
    items = [data(1, "a"), status("s"), data(2, "b"), data(3, "c")]
    for item in items:
        queue.put(item)

    first = queue.get_many(2)
    assert first == items[:2]
    assert queue.queued_events == 5
    rest = queue.get_many(10)
    assert rest == items[2:]
    assert queue.queued_events == 0
    assert queue.get_many(10) == []


def test_wait_reports_whether_an_item_is_available() -> None:
    queue = FrameQueue(10)

    assert queue.wait(0) is False
    queue.put(data(1))
    assert queue.wait(0) is True
    assert queue.wait(None) is True


def test_clear_discards_everything_and_returns_the_data_events() -> None:
    queue = FrameQueue(100)
    for item in (data(3), status("s"), data(4)):
        queue.put(item)

    assert queue.clear() == 7
    assert (len(queue), queue.queued_events) == (0, 0)
    assert queue.get(0) is None


def test_high_water_is_the_most_events_ever_queued() -> None:
    queue = FrameQueue(100)

    queue.put(data(4))
    queue.put(data(3))
    queue.get(0)
    queue.put(data(5))
    queue.put(status("s"))

    assert queue.queued_events == 8
    assert queue.high_water == 8
    drain(queue)
    queue.put(data(2))
    assert queue.high_water == 8


def test_status_items_never_count_against_capacity() -> None:
    queue = FrameQueue(2, Overflow.DROP_NEWEST)
    queue.put(data(2))

    assert all(queue.put(status(f"s{i}")) for i in range(50))
    assert len(queue) == 51
    assert queue.dropped_events == 0


# ============================================================================================
# drop_oldest


def test_drop_oldest_discards_the_oldest_data_frame_and_marks_the_head() -> None:
    drops: list[int] = []
    queue = FrameQueue(10, Overflow.DROP_OLDEST, on_drop=drops.append)
    for item in (data(4, "d1"), status("s1"), data(4, "d2"), data(2, "d3")):
        queue.put(item)

    assert queue.put(data(3, "d4", received_at_ns=99)) is True

    items = drain(queue)
    assert labels(items) == ["X:4", "S:s1", "D:d2", "D:d3", "D:d4"]
    assert items[0] == dropped(4, received_at_ns=99)
    assert (queue.dropped_events, queue.dropped_frames) == (4, 1)
    assert drops == [4]


def test_drop_oldest_keeps_status_items_in_order_before_the_marker() -> None:
    drops: list[int] = []
    queue = FrameQueue(10, Overflow.DROP_OLDEST, on_drop=drops.append)
    for item in (status("s0"), data(4, "d1"), status("s1"), data(4, "d2"), data(2, "d3")):
        queue.put(item)

    queue.put(data(7, "d4"))

    assert labels(drain(queue)) == ["S:s0", "S:s1", "X:8", "D:d3", "D:d4"]
    assert (queue.dropped_events, queue.dropped_frames) == (8, 2)
    assert drops == [8]


def test_drop_oldest_merges_consecutive_drops_into_one_marker() -> None:
    drops: list[int] = []
    queue = FrameQueue(10, Overflow.DROP_OLDEST, on_drop=drops.append)
    for item in (status("s0"), data(4, "d1"), status("s1"), data(4, "d2"), data(2, "d3")):
        queue.put(item)
    queue.put(data(7, "d4"))  # drops d1, d2 (8 events)

    queue.put(data(3, "d5"))  # drops d3 (2 events)

    assert labels(drain(queue)) == ["S:s0", "S:s1", "X:10", "D:d4", "D:d5"]
    assert (queue.dropped_events, queue.dropped_frames) == (10, 3)
    assert drops == [8, 2]


def test_drop_oldest_merges_into_a_marker_left_at_the_head() -> None:
    queue = FrameQueue(4, Overflow.DROP_OLDEST)
    for name in "abcd":
        queue.put(data(1, name))

    for name in "efg":
        queue.put(data(1, name))

    assert labels(drain(queue)) == ["X:3", "D:d", "D:e", "D:f", "D:g"]
    assert (queue.dropped_events, queue.dropped_frames) == (3, 3)


def test_drop_oldest_starts_a_new_marker_after_the_consumer_took_the_old_one() -> None:
    queue = FrameQueue(2, Overflow.DROP_OLDEST)
    for name in "abc":
        queue.put(data(1, name))
    assert labels([queue.get(0)]) == ["X:1"]  # type: ignore[list-item]

    queue.put(data(1, "d"))

    assert labels(drain(queue)) == ["X:1", "D:c", "D:d"]
    assert queue.dropped_events == 2


def test_drop_oldest_counts_events_not_frames() -> None:
    queue = FrameQueue(100, Overflow.DROP_OLDEST)
    queue.put(data(60, "big"))
    queue.put(data(30, "mid"))

    queue.put(data(20, "new"))

    assert labels(drain(queue)) == ["X:60", "D:mid", "D:new"]
    assert queue.high_water == 90


def test_drop_oldest_does_not_drop_when_the_frame_fits_exactly() -> None:
    queue = FrameQueue(10, Overflow.DROP_OLDEST)
    queue.put(data(6))

    assert queue.put(data(4)) is True

    assert queue.dropped_events == 0
    assert queue.queued_events == 10


# ============================================================================================
# drop_newest


def test_drop_newest_refuses_the_incoming_frame_and_marks_the_tail() -> None:
    drops: list[int] = []
    queue = FrameQueue(5, Overflow.DROP_NEWEST, on_drop=drops.append)
    queue.put(data(3, "d1"))
    queue.put(data(2, "d2"))

    assert queue.put(data(1, "d3", received_at_ns=7)) is False

    items = list(queue.get_many(10))
    assert labels(items) == ["D:d1", "D:d2", "X:1"]
    assert items[-1] == dropped(1, received_at_ns=7)
    assert (queue.dropped_events, queue.dropped_frames) == (1, 1)
    assert drops == [1]


def test_drop_newest_merges_consecutive_drops_at_the_tail() -> None:
    drops: list[int] = []
    queue = FrameQueue(5, Overflow.DROP_NEWEST, on_drop=drops.append)
    queue.put(data(3, "d1"))
    queue.put(data(2, "d2"))

    results = [
        queue.put(data(1, "d3")),
        queue.put(data(2, "d4")),
        queue.put(status("s")),
        queue.put(data(1, "d5")),
    ]

    assert results == [False, False, True, False]
    assert labels(drain(queue)) == ["D:d1", "D:d2", "X:3", "S:s", "X:1"]
    assert (queue.dropped_events, queue.dropped_frames) == (4, 3)
    assert drops == [1, 2, 1]


def test_drop_newest_accepts_again_once_there_is_room() -> None:
    queue = FrameQueue(5, Overflow.DROP_NEWEST)
    queue.put(data(3, "d1"))
    queue.put(data(2, "d2"))
    queue.put(data(2, "refused"))
    queue.get(0)

    assert queue.put(data(3, "d3")) is True

    assert labels(drain(queue)) == ["D:d2", "X:2", "D:d3"]
    assert queue.queued_events == 0
    assert queue.high_water == 5


def test_drop_markers_count_no_events() -> None:
    queue = FrameQueue(2, Overflow.DROP_NEWEST)
    queue.put(data(2))
    queue.put(data(2))

    assert queue.queued_events == 2
    assert len(queue) == 2


# ============================================================================================
# A frame larger than the capacity


@pytest.mark.parametrize(
    "overflow",
    [
        Overflow.DROP_OLDEST,
        Overflow.BLOCK,
        pytest.param(
            Overflow.DROP_NEWEST,
        ),
    ],
    ids=str,
)
def test_a_frame_larger_than_capacity_is_accepted_into_an_empty_queue(overflow: Overflow) -> None:
    calls: list[str] = []
    queue = FrameQueue(10, overflow)
    queue.set_listener(lambda: calls.append("arrived"))

    assert queue.put(data(50, "huge")) is True

    assert labels(drain(queue)) == ["D:huge"]
    assert queue.dropped_events == 0
    assert queue.high_water == 50
    assert calls == ["arrived"]


@pytest.mark.parametrize(
    "overflow",
    [
        Overflow.DROP_OLDEST,
        pytest.param(
            Overflow.DROP_NEWEST,
        ),
    ],
    ids=str,
)
def test_a_frame_larger_than_capacity_is_accepted_when_only_statuses_are_queued(overflow: Overflow) -> None:
    queue = FrameQueue(10, overflow)
    queue.put(status("s"))

    assert queue.put(data(50, "huge")) is True

    assert labels(drain(queue)) == ["S:s", "D:huge"]


def test_drop_oldest_empties_the_queue_of_data_for_an_oversized_frame() -> None:
    queue = FrameQueue(10, Overflow.DROP_OLDEST)
    for item in (data(3, "a"), status("s"), data(3, "b")):
        queue.put(item)

    assert queue.put(data(50, "huge")) is True

    assert labels(drain(queue)) == ["S:s", "X:6", "D:huge"]
    assert (queue.dropped_events, queue.dropped_frames) == (6, 2)


def test_block_admits_an_oversized_frame_once_the_queue_is_empty() -> None:
    queue = FrameQueue(10, Overflow.BLOCK)
    queue.put(data(3, "a"))
    probe = StopProbe()

    producer = ThreadResult(lambda: queue.put(data(50, "huge"), should_stop=probe))
    assert probe.waiting.wait(JOIN_TIMEOUT)
    assert labels([queue.get(JOIN_TIMEOUT)]) == ["D:a"]  # type: ignore[list-item]

    assert producer.join() is True
    assert labels(drain(queue)) == ["D:huge"]


# ============================================================================================
# block


def test_block_waits_for_room_until_a_consumer_frees_it() -> None:
    queue = FrameQueue(5, Overflow.BLOCK)
    queue.put(data(5, "full"))
    probe = StopProbe()

    producer = ThreadResult(lambda: queue.put(data(1, "next"), should_stop=probe))
    assert probe.waiting.wait(JOIN_TIMEOUT)  # the producer is inside put, waiting for room
    assert not producer.done.is_set()
    assert labels(queue.get_many(1)) == ["D:full"]

    assert producer.join() is True
    assert labels(drain(queue)) == ["D:next"]
    assert queue.dropped_events == 0


def test_block_returns_false_when_should_stop_becomes_true() -> None:
    queue = FrameQueue(5, Overflow.BLOCK)
    queue.put(data(5, "full"))
    probe = StopProbe()

    producer = ThreadResult(lambda: queue.put(data(1, "next"), should_stop=probe))
    assert probe.waiting.wait(JOIN_TIMEOUT)
    probe.stop.set()

    assert producer.join() is False
    assert labels(drain(queue)) == ["D:full"]
    assert (queue.dropped_events, queue.dropped_frames) == (0, 0)


def test_block_returns_false_when_the_queue_closes() -> None:
    queue = FrameQueue(5, Overflow.BLOCK)
    queue.put(data(5, "full"))
    probe = StopProbe()

    producer = ThreadResult(lambda: queue.put(data(1, "next"), should_stop=probe))
    assert probe.waiting.wait(JOIN_TIMEOUT)
    queue.close()

    assert producer.join() is False
    assert labels(drain(queue)) == ["D:full"]


def test_block_without_should_stop_is_woken_by_close() -> None:
    queue = FrameQueue(5, Overflow.BLOCK)
    queue.put(data(5, "full"))
    entered = threading.Event()
    queue._not_full = SignallingCondition(queue._lock, entered)  # type: ignore[attr-defined]

    producer = ThreadResult(lambda: queue.put(data(1, "next")))
    assert entered.wait(JOIN_TIMEOUT)
    queue.close()

    assert producer.join() is False


def test_block_never_blocks_status_items() -> None:
    queue = FrameQueue(1, Overflow.BLOCK)
    queue.put(data(1))

    assert queue.put(status("s"), should_stop=lambda: True) is True
    assert len(queue) == 2


def test_block_delivers_every_frame_in_order_between_threads() -> None:
    queue = FrameQueue(8, Overflow.BLOCK)
    count = 3_000

    def produce() -> bool:
        return all(queue.put(data(1 + i % 3, str(i))) for i in range(count))

    producer = ThreadResult(produce)
    received: list[str] = []
    while len(received) < count:
        item = queue.get(JOIN_TIMEOUT)
        assert item is not None
        received.append(item[1].decode())
        assert queue.queued_events <= 8

    assert producer.join() is True
    assert received == [str(i) for i in range(count)]
    assert queue.dropped_events == 0
    assert queue.high_water <= 8


# ============================================================================================
# close


def test_close_wakes_a_blocked_get_which_returns_none() -> None:
    queue = FrameQueue(10)
    entered = threading.Event()
    queue._not_empty = SignallingCondition(queue._lock, entered)  # type: ignore[attr-defined]

    consumer = ThreadResult(lambda: queue.get(None))
    assert entered.wait(JOIN_TIMEOUT)  # the consumer is waiting inside get
    queue.close()

    assert consumer.join() is None


def test_a_blocked_get_receives_an_item_put_by_another_thread() -> None:
    queue = FrameQueue(10)
    entered = threading.Event()
    queue._not_empty = SignallingCondition(queue._lock, entered)  # type: ignore[attr-defined]
    item = data(1, "hello")

    consumer = ThreadResult(lambda: queue.get(None))
    assert entered.wait(JOIN_TIMEOUT)
    queue.put(item)

    assert consumer.join() is item


def test_close_leaves_queued_items_retrievable() -> None:
    queue = FrameQueue(10)
    items = [data(1, "a"), status("s"), data(2, "b")]
    for item in items:
        queue.put(item)

    queue.close()

    assert queue.closed is True
    assert queue.put(data(1, "late")) is False
    assert queue.wait(None) is True
    assert queue.get(None) == items[0]
    assert queue.get_many(10) == items[1:]
    assert queue.get(None) is None  # closed and empty: returns at once
    assert queue.wait(None) is False
    assert (queue.dropped_events, queue.dropped_frames) == (0, 0)


def test_a_closed_queue_refuses_data_but_still_accepts_status_events() -> None:
    queue = FrameQueue(10)
    queue.put(data(1, "a"))
    queue.close()

    assert queue.put(data(1, "late")) is False
    assert queue.put(status("why it stopped")) is True

    assert labels(drain(queue)) == ["D:a", "S:why it stopped"]
    assert queue.get(None) is None


# ============================================================================================
# listener and on_drop


def test_listener_is_called_when_an_item_arrives_in_an_empty_queue() -> None:
    calls: list[int] = []
    queue = FrameQueue(10)
    queue.set_listener(lambda: calls.append(len(queue)))

    queue.put(data(1))
    queue.put(data(1))
    assert calls == [1]

    drain(queue)
    queue.put(status("s"))
    assert calls == [1, 1]

    queue.put(data(1))
    queue.close()
    assert calls == [1, 1, 2]  # close wakes the listener too


def test_listener_can_be_removed() -> None:
    calls: list[str] = []
    queue = FrameQueue(10)
    queue.set_listener(lambda: calls.append("x"))
    queue.set_listener(None)

    queue.put(data(1))
    queue.close()

    assert calls == []


def test_listener_is_not_called_for_a_refused_frame() -> None:
    calls: list[str] = []
    queue = FrameQueue(1, Overflow.DROP_NEWEST)
    queue.put(data(1))
    queue.set_listener(lambda: calls.append("x"))

    assert queue.put(data(1)) is False
    assert calls == []


def test_listener_and_on_drop_run_outside_the_lock() -> None:
    seen: list[bool] = []
    queue: FrameQueue

    def reenter(*_: object) -> None:
        # Taking the queue's lock again would deadlock if the callback ran under it.
        seen.append(queue._lock.acquire(timeout=JOIN_TIMEOUT))  # type: ignore[attr-defined]
        queue._lock.release()  # type: ignore[attr-defined]

    queue = FrameQueue(1, Overflow.DROP_OLDEST, on_drop=reenter)
    queue.set_listener(reenter)

    queue.put(data(1))
    queue.put(data(1))

    assert seen == [True, True]


def test_on_drop_is_not_called_without_drops() -> None:
    drops: list[int] = []
    queue = FrameQueue(10, Overflow.DROP_OLDEST, on_drop=drops.append)

    for _ in range(10):
        queue.put(data(1))

    assert drops == []


def test_held_by_current_thread_is_true_only_for_the_thread_inside_the_lock() -> None:
    """What a signal handler that interrupted ``get()`` asks before waiting for the producer."""
    q = FrameQueue(10, Overflow.DROP_OLDEST)
    assert not q.held_by_current_thread()
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        with q._lock:  # white box: the lock a consumer holds inside get()
            inside.set()
            release.wait(10)

    holder = threading.Thread(target=hold, name="massive-rt-test-holder", daemon=True)
    holder.start()
    try:
        assert inside.wait(10)
        assert not q.held_by_current_thread()  # held, but by another thread
    finally:
        release.set()
        holder.join(10)
    with q._lock:
        assert q.held_by_current_thread()
        assert q.get(0) is None  # and re-entrant: the queue's own methods still work
    assert not q.held_by_current_thread()
