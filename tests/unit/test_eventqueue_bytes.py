"""FrameQueue bounded in bytes (a connection's queue): frames weigh their length, nothing scans a
frame for its events until it is dropped, and every policy still counts the exact events it
drops."""

from __future__ import annotations

import threading

import pytest

from massive_rt.enums import Overflow
from massive_rt.eventqueue import BYTES_PER_EVENT, KIND_DATA, KIND_DROPPED, KIND_OBJECTS, FrameQueue, Item, item_events
from tests.unit.test_eventqueue import JOIN_TIMEOUT, StopProbe, drain, status


def trades(n: int, tag: str = "A") -> bytes:
    return ("[" + ",".join(f'{{"ev":"T","sym":"{tag}","p":1}}' for _ in range(n)) + "]").encode()


def frame(payload: bytes, received_at_ns: int = 0) -> Item:
    """A frame as the reader queues it: not measured yet (``-1``)."""
    return [KIND_DATA, payload, received_at_ns, -1]


def bytes_queue(capacity: int, overflow: Overflow = Overflow.DROP_OLDEST, drops: list[int] | None = None) -> FrameQueue:
    return FrameQueue(capacity, overflow, on_drop=None if drops is None else drops.append, unit="bytes")


def test_a_frame_weighs_its_length_and_the_queue_counts_its_events_only_when_asked() -> None:
    queue = bytes_queue(10_000)
    one, three = trades(1), trades(3)
    queue.put(frame(one))
    queue.put(frame(three))

    assert queue.queued == len(one) + len(three)
    assert queue.high_water == len(one) + len(three)
    assert queue.queued_events == 4  # counted in the queued frames, exactly
    assert queue.unit == "bytes"
    assert queue.max_events == 10_000 // BYTES_PER_EVENT
    drain(queue)
    assert (queue.queued, queue.queued_events, queue.high_water) == (0, 0, len(one) + len(three))


def test_put_does_not_count_a_frames_events() -> None:
    class Uncountable(bytes):
        def count(self, *_args: object) -> int:  # type: ignore[override]
            raise AssertionError("put() scanned the frame")

    queue = bytes_queue(1_000)
    payload = Uncountable(trades(2))
    assert queue.put(frame(payload)) is True
    assert queue.queued == len(payload)


def test_drop_oldest_at_the_byte_bound_counts_the_exact_events_of_the_frames_dropped() -> None:
    drops: list[int] = []
    a, b, c = trades(3, "a"), trades(5, "b"), trades(2, "c")
    queue = bytes_queue(len(a) + len(b), drops=drops)
    queue.put(frame(a))
    queue.put(frame(b))  # exactly full

    assert queue.put(frame(c)) is True  # needs room: a goes (3 events); a and b are bigger than c

    assert drops == [3]
    assert (queue.dropped_events, queue.dropped_frames) == (3, 1)
    items = drain(queue)
    assert [item[0] for item in items] == [KIND_DROPPED, KIND_DATA, KIND_DATA]
    assert items[0][1] == 3
    assert [item[1] for item in items[1:]] == [b, c]


def test_drop_oldest_drops_as_many_frames_as_the_incoming_bytes_need() -> None:
    drops: list[int] = []
    small = [trades(1, t) for t in "abcd"]
    big = trades(4, "z")
    queue = bytes_queue(sum(map(len, small)), drops=drops)
    for payload in small:
        queue.put(frame(payload))

    queue.put(frame(big))  # 4 events' bytes: all four one-event frames have to go

    assert drops == [4]
    assert [item[1] for item in drain(queue)] == [4, big]


def test_drop_newest_counts_the_exact_events_of_the_refused_frame() -> None:
    drops: list[int] = []
    kept = trades(2)
    queue = bytes_queue(len(kept), Overflow.DROP_NEWEST, drops)
    queue.put(frame(kept))

    assert queue.put(frame(trades(7))) is False
    assert queue.put(frame(trades(1))) is False

    assert drops == [7, 1]
    assert (queue.dropped_events, queue.dropped_frames) == (8, 2)
    assert [item[1] for item in drain(queue)] == [kept, 8]  # one marker, merged


def test_a_frame_larger_than_the_bound_is_taken_when_the_queue_is_empty() -> None:
    for overflow in (Overflow.DROP_NEWEST, Overflow.DROP_OLDEST):
        queue = bytes_queue(8, overflow)
        huge = trades(3)
        assert queue.put(frame(huge)) is True
        assert queue.queued == len(huge)
        assert queue.dropped_events == 0


def test_decoded_objects_weigh_the_bytes_they_came_in_and_drop_as_their_count() -> None:
    drops: list[int] = []
    queue = bytes_queue(100, drops=drops)
    queue.put([KIND_OBJECTS, [{"ev": "T"}, {"ev": "T"}], 0, 60])
    queue.put([KIND_OBJECTS, [{"ev": "Q"}], 0, 60])  # 120 > 100: the first item goes

    assert drops == [2]
    assert queue.queued == 60


def test_status_items_weigh_nothing_and_are_kept_in_order_when_frames_are_dropped() -> None:
    a, b = trades(2, "a"), trades(2, "b")
    queue = bytes_queue(len(a))
    queue.put(frame(a))
    queue.put(status("s"))
    queue.put(frame(b))

    assert [item[1] for item in drain(queue)] == [2, "s", b]


def test_block_waits_for_bytes_to_be_taken() -> None:
    first, second = trades(2, "a"), trades(2, "b")
    queue = bytes_queue(len(first), Overflow.BLOCK)
    queue.put(frame(first))
    probe = StopProbe()
    result: list[bool] = []
    putter = threading.Thread(target=lambda: result.append(queue.put(frame(second), should_stop=probe)),
                              name="test-putter", daemon=True)  # fmt: skip
    putter.start()
    assert probe.waiting.wait(JOIN_TIMEOUT)  # it waits for room (and polls for a stop)
    assert result == []

    assert queue.get(0) is not None  # bytes taken: room for the second frame
    putter.join(JOIN_TIMEOUT)

    assert result == [True]
    assert queue.dropped_events == 0
    assert [item[1] for item in drain(queue)] == [second]


def test_clear_returns_the_exact_events_discarded() -> None:
    queue = bytes_queue(10_000)
    queue.put(frame(trades(3)))
    queue.put([KIND_OBJECTS, [{}, {}], 0, 40])
    queue.put(status("s"))
    assert queue.clear() == 5
    assert queue.queued == 0


def test_item_events_counts_str_frames_and_an_empty_frame_as_one() -> None:
    assert item_events([KIND_DATA, '[{"ev":"T"},{"ev":"Q"}]', 0, -1]) == 2
    assert item_events([KIND_DATA, b"garbage", 0, -1]) == 1  # undecodable: one decode error, one event
    assert item_events([KIND_OBJECTS, [{}, {}, {}], 0, 10]) == 3


def test_an_unknown_unit_is_refused() -> None:
    with pytest.raises(ValueError, match="unit"):
        FrameQueue(10, unit="frames")  # type: ignore[arg-type]


def test_counting_without_the_lock_counts_the_same_data_events_and_skips_statuses_and_markers() -> None:
    """``count_events(locked=False)`` is what a forked child's ``stats()`` uses (its copy of the lock
    may be held for ever): the same count, from the data frames only."""
    queue = bytes_queue(len(trades(2)) + len(trades(4)), drops=[])
    queue.put(frame(trades(3, "a")))
    queue.put(status("state"))
    queue.put(frame(trades(2, "b")))
    queue.put(frame(trades(4, "c")))  # drops the oldest: a drop marker of 3 events now heads the queue
    assert [item[0] for item in list(queue._items)][:1] == [KIND_DROPPED]  # white box: the marker is queued
    assert queue.count_events(locked=False) == queue.count_events() == 2 + 4
