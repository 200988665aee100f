"""FrameQueue at the edge of its capacity, the ``-1`` "count the frame's events" sentinel, and the
wake-ups of waiting threads (the gaps a mutation run found in tests/unit/test_eventqueue.py)."""

from __future__ import annotations

import threading

import pytest

from massive_rt.enums import Overflow
from massive_rt.eventqueue import KIND_DATA, KIND_EVENT, FrameQueue, Item
from tests.unit.test_eventqueue import JOIN_TIMEOUT, SignallingCondition, StopProbe, ThreadResult, data, drain, labels


def frame(payload: bytes, received_at_ns: int = 0) -> Item:
    """A frame of bytes as the reader queues it: its events not counted yet (``-1``)."""
    return [KIND_DATA, payload, received_at_ns, -1]


def trades(n: int) -> bytes:
    return ("[" + ",".join('{"ev":"T","sym":"A","p":1}' for _ in range(n)) + "]").encode()


class NotifiedOnly(threading.Condition):
    """A condition whose timed waits ignore their timeout: only a notify wakes the waiter.

    Makes "woken at once by a notify" testable apart from "found it at its next poll"."""

    def wait(self, timeout: float | None = None) -> bool:
        return super().wait(None)


# ============================================================================================
# Exactly full


@pytest.mark.parametrize("overflow", list(Overflow), ids=str)
def test_a_put_that_fills_the_queue_exactly_is_accepted(overflow: Overflow) -> None:
    drops: list[int] = []
    queue = FrameQueue(10, overflow, on_drop=drops.append)
    queue.put(data(4, "a"))
    queue.put(data(5, "b"))

    assert queue.put(data(1, "last")) is True  # 4 + 5 + 1 == 10: no overflow yet

    assert queue.queued_events == 10
    assert queue.high_water == 10
    assert (queue.dropped_events, queue.dropped_frames, drops) == (0, 0, [])
    assert labels(drain(queue)) == ["D:a", "D:b", "D:last"]


@pytest.mark.parametrize("overflow", list(Overflow), ids=str)
def test_one_at_a_time_up_to_capacity_then_the_policy_applies(overflow: Overflow) -> None:
    queue = FrameQueue(3, overflow)
    assert [queue.put(data(1, name)) for name in "abc"] == [True, True, True]
    assert (queue.queued_events, queue.dropped_events) == (3, 0)

    probe = StopProbe()
    probe.stop.set()  # a blocking put gives up at once instead of waiting for room
    accepted = queue.put(data(1, "d"), should_stop=probe)

    if overflow is Overflow.DROP_OLDEST:
        assert accepted is True
        assert labels(drain(queue)) == ["X:1", "D:b", "D:c", "D:d"]
    elif overflow is Overflow.DROP_NEWEST:
        assert accepted is False
        assert labels(drain(queue)) == ["D:a", "D:b", "D:c", "X:1"]
    else:
        assert accepted is False
        assert probe.calls == 1
        assert labels(drain(queue)) == ["D:a", "D:b", "D:c"]


def test_a_new_queue_is_empty_open_and_has_seen_nothing() -> None:
    queue = FrameQueue(5)
    assert (len(queue), queue.queued_events, queue.high_water) == (0, 0, 0)
    assert (queue.dropped_events, queue.dropped_frames) == (0, 0)
    assert queue.closed is False
    queue.close()
    assert queue.closed is True


# ============================================================================================
# The -1 sentinel: a frame of bytes whose events the queue counts


def test_a_frame_of_bytes_is_counted_one_event_per_ev_key() -> None:
    queue = FrameQueue(100)
    item = frame(trades(3))

    assert queue.put(item) is True

    assert item[3] == 3  # counted in place, so get() and clear() subtract the same number
    assert queue.queued_events == 3
    assert queue.get(0) is item
    assert queue.queued_events == 0


def test_a_frame_of_bytes_without_an_ev_key_counts_as_one_event() -> None:
    queue = FrameQueue(100)
    item = frame(b'{"status":"odd"}')
    queue.put(item)
    assert item[3] == 1
    assert queue.queued_events == 1


def test_a_counted_frame_is_not_counted_again() -> None:
    queue = FrameQueue(100)
    item: Item = [KIND_DATA, trades(5), 0, 2]  # already counted (by whoever made it): trusted
    queue.put(item)
    assert item[3] == 2
    assert queue.queued_events == 2


def test_the_sentinel_counts_against_the_capacity() -> None:
    queue = FrameQueue(4, Overflow.DROP_NEWEST)
    assert queue.put(frame(trades(3))) is True
    assert queue.put(frame(trades(1))) is True  # exactly full
    assert queue.put(frame(trades(1))) is False
    assert queue.dropped_events == 1
    assert queue.queued_events == 4


# ============================================================================================
# block: the room a waiting put needs, and who wakes it


def test_block_resumes_once_the_queue_would_be_exactly_full() -> None:
    queue = FrameQueue(4, Overflow.BLOCK)
    for name in "abc":
        queue.put(data(1, name))
    probe = StopProbe()
    producer = ThreadResult(lambda: queue.put(data(2, "two"), should_stop=probe))  # 3 + 2 > 4: waits
    assert probe.waiting.wait(JOIN_TIMEOUT)

    assert labels([queue.get(0)]) == ["D:a"]  # 2 + 2 == 4: room enough

    done = producer.done.wait(JOIN_TIMEOUT / 2)
    probe.stop.set()  # never hang the test if the put did not notice the room
    assert done, "a blocked put must resume once its frame fits exactly"
    assert producer.join() is True
    assert queue.queued_events == 4


def test_block_polls_should_stop_at_least_every_50_ms() -> None:
    queue = FrameQueue(1, Overflow.BLOCK)
    queue.put(data(1, "full"))
    timeouts: list[float | None] = []

    class Recording(threading.Condition):
        def wait(self, timeout: float | None = None) -> bool:
            timeouts.append(timeout)
            return super().wait(0)

    queue._not_full = Recording(queue._lock)  # type: ignore[attr-defined]
    calls = 0

    def should_stop() -> bool:
        nonlocal calls
        calls += 1
        return calls > 3

    assert queue.put(data(1, "next"), should_stop=should_stop) is False
    assert len(timeouts) == 3
    assert all(t is not None and 0 < t <= 0.05 for t in timeouts), timeouts


@pytest.mark.parametrize("take", ["get", "get_many", "clear"])
def test_taking_from_a_blocking_queue_wakes_a_waiting_put_at_once(take: str) -> None:
    queue = FrameQueue(1, Overflow.BLOCK)
    queue.put(data(1, "full"))
    entered = threading.Event()

    class Signalling(NotifiedOnly):
        def wait(self, timeout: float | None = None) -> bool:
            entered.set()
            return super().wait(timeout)

    queue._not_full = Signalling(queue._lock)  # type: ignore[attr-defined]
    probe = StopProbe()
    producer = ThreadResult(lambda: queue.put(data(1, "next"), should_stop=probe))
    assert entered.wait(JOIN_TIMEOUT)

    if take == "get":
        queue.get(0)
    elif take == "get_many":
        queue.get_many(5)
    else:
        queue.clear()

    woken = producer.done.wait(JOIN_TIMEOUT / 2)
    if not woken:  # release it for good: a notify under the lock, with stop requested
        probe.stop.set()
        with queue._lock:  # type: ignore[attr-defined]
            queue._not_full.notify_all()  # type: ignore[attr-defined]
    assert woken, f"{take}() did not notify the put waiting for room"
    assert producer.join() is True


def test_a_blocked_put_that_lands_in_a_queue_emptied_meanwhile_wakes_the_listener() -> None:
    """The adapter's dispatcher sleeps until the listener runs (or its 0.5 s poll): a frame that
    waited for room and then arrives in the queue the dispatcher has just emptied must wake it."""
    calls: list[int] = []
    queue = FrameQueue(1, Overflow.BLOCK)
    queue.set_listener(lambda: calls.append(len(queue)))
    queue.put(data(1, "full"))
    probe = StopProbe()
    producer = ThreadResult(lambda: queue.put(data(1, "next"), should_stop=probe))
    assert probe.waiting.wait(JOIN_TIMEOUT)  # the put found the queue full and waits for room

    assert labels([queue.get(0)]) == ["D:full"]  # the consumer empties the queue

    assert producer.join() is True
    assert calls == [1, 1]  # one wake-up per arrival in an empty queue


def test_a_blocked_put_that_lands_behind_a_queued_frame_does_not_call_the_listener_again() -> None:
    calls: list[int] = []
    queue = FrameQueue(2, Overflow.BLOCK)
    queue.set_listener(lambda: calls.append(len(queue)))
    queue.put(data(1, "a"))
    queue.put(data(1, "b"))
    probe = StopProbe()
    producer = ThreadResult(lambda: queue.put(data(1, "c"), should_stop=probe))
    assert probe.waiting.wait(JOIN_TIMEOUT)

    assert labels([queue.get(0)]) == ["D:a"]  # room for one more, "b" still queued

    assert producer.join() is True
    assert calls == [1]  # only "a" arrived in an empty queue
    assert labels(drain(queue)) == ["D:b", "D:c"]


# ============================================================================================
# Waiting consumers


def test_a_consumer_still_waiting_after_another_gave_up_is_woken_by_put() -> None:
    """put() notifies only while some thread waits: the count of waiters must stay exact."""
    queue = FrameQueue(10)
    entered = threading.Event()
    queue._not_empty = SignallingCondition(queue._lock, entered)  # type: ignore[attr-defined]
    first = ThreadResult(lambda: queue.wait(None))
    assert entered.wait(JOIN_TIMEOUT)
    entered.clear()
    second = ThreadResult(lambda: queue.get(JOIN_TIMEOUT))
    assert entered.wait(JOIN_TIMEOUT)

    # Wake the first waiter without an item (a close would wake both): a bare notify.
    with queue._lock:  # type: ignore[attr-defined]
        queue._not_empty.notify(1)  # type: ignore[attr-defined]
    assert first.join() is False  # woke, nothing there
    assert not second.done.is_set()

    item = data(1, "x")
    queue.put(item)

    assert second.done.wait(JOIN_TIMEOUT / 2), "put() did not wake the consumer that was still waiting"
    assert second.join() is item


def test_put_of_a_status_wakes_a_waiting_consumer() -> None:
    queue = FrameQueue(1)
    queue.put(data(1, "full"))
    queue.get(0)
    entered = threading.Event()
    queue._not_empty = SignallingCondition(queue._lock, entered)  # type: ignore[attr-defined]
    consumer = ThreadResult(lambda: queue.get(JOIN_TIMEOUT))
    assert entered.wait(JOIN_TIMEOUT)
    item: Item = [KIND_EVENT, "status", 0, 0]
    queue.put(item)
    assert consumer.join() is item
