"""A read's frames (``KIND_FRAMES``) at the edges of each overflow policy, pinned in exact numbers:
which frames stay, the size each item carries, where each drop marker lands, its count and its
receive time, and what ``on_drop`` and the listener see (the paths a mutation run left untested;
tests/unit/test_read_batches.py compares whole streams with the same frames queued one by one)."""

from __future__ import annotations

from massive_rt.enums import Overflow
from massive_rt.eventqueue import KIND_DATA, KIND_FRAMES, FrameQueue, Item, item_events
from tests.unit.test_eventqueue import data, status
from tests.unit.test_eventqueue import dropped as marker
from tests.unit.test_eventqueue_bytes import trades

#: A frame without an "ev" key (a status-like object, or one the server sent malformed): one event.
NO_EV = b'[{"status":"x"}]'


def read(frames: list[bytes], received_at_ns: int) -> Item:
    """A read's frames as the reader queues them: not measured yet (``-1``)."""
    return [KIND_FRAMES, list(frames), received_at_ns, -1]


def everything(queue: FrameQueue) -> list[Item]:
    return queue.get_many(10_000)


# ============================================================================================
# Counting a read's events


def test_item_events_counts_each_frame_of_a_read_and_one_for_a_frame_without_ev_keys() -> None:
    item = read([trades(3, "a"), NO_EV, trades(2, "b")], 1)
    assert item_events(item) == 6

    queue = FrameQueue(10_000, unit="bytes")
    queue.put(item)
    assert queue.queued == sum(map(len, item[1]))
    assert queue.queued_events == 6
    assert queue.clear() == 6


def test_an_events_queue_weighs_a_frame_without_ev_keys_as_one_event() -> None:
    queue = FrameQueue(100)
    item = read([trades(2, "a"), NO_EV], 1)
    queue.put(item)
    assert (item[3], queue.queued, queue.high_water) == (3, 3, 3)


# ============================================================================================
# drop_oldest


def test_a_read_larger_than_an_empty_queue_drops_its_first_frames_until_the_rest_fits_exactly() -> None:
    drops: list[int] = []
    queue = FrameQueue(3, Overflow.DROP_OLDEST, on_drop=drops.append)
    keep = [trades(1, "c"), trades(1, "d"), trades(1, "e")]

    assert queue.put(read([trades(1, "a"), NO_EV, *keep], 77)) is True

    # 5 events into 3: two frames go (the frame without "ev" counts one event); at exactly 3 it stops.
    assert everything(queue) == [marker(2, 77), [KIND_FRAMES, keep, 77, 3]]
    assert (queue.dropped_events, queue.dropped_frames, drops) == (2, 2, [2])
    assert queue.high_water == 3


def test_a_read_larger_than_the_queue_evicts_what_is_queued_and_its_own_first_frame_as_one_drop() -> None:
    drops: list[int] = []
    queue = FrameQueue(3, Overflow.DROP_OLDEST, on_drop=drops.append)
    queue.put(data(2, "old", received_at_ns=1))
    keep = [trades(1, "b"), trades(1, "c"), trades(1, "d")]

    queue.put(read([trades(1, "a"), *keep], 77))

    # One gap: the queued frame's 2 events and the read's first frame, stamped with the read's time.
    assert everything(queue) == [marker(3, 77), [KIND_FRAMES, keep, 77, 3]]
    assert (queue.dropped_events, queue.dropped_frames, drops) == (3, 2, [3])


def test_a_read_of_exactly_the_capacity_evicts_the_queued_frames_and_leaves_a_later_status_after_the_gap() -> None:
    queue = FrameQueue(3, Overflow.DROP_OLDEST)
    queue.put(data(2, "old", received_at_ns=1))
    queue.put(status("s"))
    frames = [trades(1, "a"), trades(1, "b"), trades(1, "c")]

    queue.put(read(frames, 77))

    # The status came after the dropped frame: the gap stays before it, the read whole after it.
    assert everything(queue) == [marker(2, 77), status("s"), [KIND_FRAMES, frames, 77, 3]]
    assert (queue.dropped_events, queue.dropped_frames) == (2, 1)


def test_evicting_part_of_a_queued_read_leaves_the_rest_weighing_what_it_holds() -> None:
    queue = FrameQueue(4, Overflow.DROP_OLDEST)
    rest = [trades(1, "b"), trades(1, "c")]
    queue.put(read([NO_EV, trades(1, "a"), *rest], 1))

    queue.put(data(2, "new", received_at_ns=9))

    # Room for 2 events: the read's first two frames go (the one without "ev" counts one event).
    assert (queue.dropped_events, queue.dropped_frames, queue.queued) == (2, 2, 4)
    assert queue.get(0) == marker(2, 9)
    assert queue.get(0) == [KIND_FRAMES, rest, 1, 2]
    assert queue.queued == 2  # taking the rest of the read took exactly its weight
    assert queue.get(0) == data(2, "new", received_at_ns=9)
    assert queue.queued == 0


# ============================================================================================
# drop_newest


def test_drop_newest_queues_a_single_kept_frame_as_a_frame_and_kept_neighbours_as_one_read() -> None:
    drops: list[int] = []
    queue = FrameQueue(5, Overflow.DROP_NEWEST, on_drop=drops.append)
    queue.put(data(2, "old", received_at_ns=1))
    first, big, *rest = [trades(1, "a"), trades(3, "b"), trades(1, "c"), trades(1, "d")]

    assert queue.put(read([first, big, *rest], 55)) is False

    assert everything(queue) == [
        data(2, "old", received_at_ns=1),
        [KIND_DATA, first, 55, 1],  # one frame kept before the gap: a plain frame, not a read of one
        marker(3, 55),
        [KIND_FRAMES, rest, 55, 2],  # the two after it fit together: one read item
    ]
    assert (queue.dropped_events, queue.dropped_frames, drops) == (3, 1, [3])


def test_drop_newest_queues_a_single_last_kept_frame_as_a_frame() -> None:
    queue = FrameQueue(5, Overflow.DROP_NEWEST)
    queue.put(data(2, "old", received_at_ns=1))
    kept, big, last = [trades(1, "a"), trades(1, "b")], trades(3, "c"), trades(1, "d")

    queue.put(read([*kept, big, last], 55))

    assert everything(queue) == [
        data(2, "old", received_at_ns=1),
        [KIND_FRAMES, kept, 55, 2],
        marker(3, 55),
        [KIND_DATA, last, 55, 1],
    ]
    assert queue.high_water == 5


def test_drop_newest_into_a_full_queue_counts_every_dropped_frame_in_one_marker_and_one_call() -> None:
    drops: list[int] = []
    queue = FrameQueue(2, Overflow.DROP_NEWEST, on_drop=drops.append)
    queue.put(data(2, "old", received_at_ns=1))

    assert queue.put(read([NO_EV, trades(2, "a")], 55)) is False

    assert everything(queue) == [data(2, "old", received_at_ns=1), marker(3, 55)]
    assert (queue.dropped_events, queue.dropped_frames, drops) == (3, 2, [3])


def test_a_read_that_overflows_an_empty_drop_newest_queue_wakes_the_listener_once() -> None:
    calls: list[int] = []
    queue = FrameQueue(2, Overflow.DROP_NEWEST)
    queue.set_listener(lambda: calls.append(len(queue)))

    assert queue.put(read([trades(1, "a"), trades(3, "b"), trades(1, "c")], 55)) is False

    assert calls == [3]  # the kept first frame, the gap, the kept last frame: all there when it runs
    queue.put(read([trades(1, "d"), trades(1, "e")], 56))  # into a queue that was not empty
    assert calls == [3]
