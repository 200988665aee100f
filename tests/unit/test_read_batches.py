"""One queue item per socket read (``KIND_FRAMES``): the queue, the decoder and inline delivery
keep per-frame semantics. Each check compares a read's frames queued as one item with the same
frames queued one by one (what the reader did before batching), so no server is needed."""

from __future__ import annotations

import itertools
import json
import logging
import threading
from typing import Any

import pytest

import massive_rt as mrt
from massive_rt.consumer import InlineGate, QueueConsumer
from massive_rt.enums import Market, Overflow
from massive_rt.eventqueue import KIND_DATA, KIND_DROPPED, KIND_EVENT, KIND_FRAMES, FrameQueue, Item
from massive_rt.protocol import Decoder
from massive_rt.relief import ReliefLatch
from tests.conftest import wait_until


class Consumer(QueueConsumer):
    """A connection's consuming side (a bytes queue), fed by the test instead of a reader."""

    def __init__(self) -> None:
        self._init_consumer("c", Market.STOCKS, 1_000_000, Overflow.DROP_OLDEST, False,
                            logging.getLogger("test"), queue_unit="bytes")  # fmt: skip


TRADE = {"ev": "T", "sym": "AAPL", "x": 4, "i": "1", "z": 3, "p": 150.25, "s": 100, "c": [0], "t": 1234567890000}


def frame(q: int, events: int = 1) -> bytes:
    """A frame of ``events`` trades whose first ``q`` is ``q`` (lengths differ with the digits)."""
    return json.dumps([dict(TRADE, q=q + i) for i in range(events)], separators=(",", ":")).encode()


def contents(queue: FrameQueue) -> list[Any]:
    """The queue's stream, frame by frame: each frame's bytes, ("dropped", n), or ("status", x)."""
    out: list[Any] = []
    for item in queue.get_many(10_000):
        if item[0] == KIND_FRAMES:
            out += item[1]
        elif item[0] == KIND_DATA:
            out.append(item[1])
        elif item[0] == KIND_DROPPED:
            if out and isinstance(out[-1], tuple) and out[-1][0] == "dropped":
                out[-1] = ("dropped", out[-1][1] + item[1])  # adjacent markers are one gap
            else:
                out.append(("dropped", item[1]))
        else:
            out.append(("status", item[1]))
    return out


def reads(frames: list[bytes], split: int) -> list[Item]:
    """``frames`` as the reader queues them when each read holds ``split`` of them."""
    items: list[Item] = []
    for start in range(0, len(frames), split):
        batch = frames[start : start + split]
        items.append([KIND_FRAMES, batch, 1, -1] if len(batch) > 1 else [KIND_DATA, batch[0], 1, -1])
    return items


STREAM = [frame(q, events=1 + q % 3) for q in range(0, 300, 7)]  # 43 frames of 1-3 events, varied sizes


@pytest.mark.parametrize("overflow", [Overflow.DROP_OLDEST, Overflow.DROP_NEWEST])
@pytest.mark.parametrize("unit", ["bytes", "events"])
def test_a_full_queue_drops_exactly_the_frames_and_events_it_drops_frame_by_frame(
    overflow: Overflow, unit: Any
) -> None:
    sizes = [len(f) for f in STREAM] if unit == "bytes" else [1 + q % 3 for q in range(0, 300, 7)]
    for capacity, split in itertools.product((1, sizes[0] + 1, 3 * max(sizes), 10 * max(sizes)), (2, 3, 5, 16)):
        one_by_one = FrameQueue(capacity, overflow, unit=unit)
        batched = FrameQueue(capacity, overflow, unit=unit)
        for index, item in enumerate(reads(STREAM, split)):
            if index == 4:  # a status in between stays where it was, whatever is dropped around it
                one_by_one.put([KIND_EVENT, "s", 1, 0])
                batched.put([KIND_EVENT, "s", 1, 0])
            frames = list(item[1]) if item[0] == KIND_FRAMES else [item[1]]
            batched.put(item)
            for single in reads(frames, 1):
                one_by_one.put(single)
        case = (capacity, split)
        assert batched.dropped_events == one_by_one.dropped_events, case
        assert batched.dropped_frames == one_by_one.dropped_frames, case
        # One by one, a frame dropped later still counted towards the peak for a moment.
        assert batched.high_water <= one_by_one.high_water, case
        assert batched.queued == one_by_one.queued, case
        assert contents(batched) == contents(one_by_one), case


def test_a_dropped_read_counts_every_event_of_every_frame() -> None:
    big = frame(100, 60)
    queue = FrameQueue(len(big) + 10, Overflow.DROP_OLDEST, unit="bytes")
    queue.put([KIND_FRAMES, [frame(1, 3), frame(10, 2), frame(20, 1)], 1, -1])
    queue.put([KIND_DATA, big, 2, -1])  # evicts the whole read
    assert (queue.dropped_events, queue.dropped_frames) == (6, 3)
    assert contents(queue) == [("dropped", 6), big]


def test_drain_budgets_count_frames_not_items() -> None:
    queue = FrameQueue(1_000_000, unit="bytes")
    for start in range(0, 64, 16):
        queue.put([KIND_FRAMES, [frame(q) for q in range(start, start + 16)], 1, -1])
    queue.put([KIND_EVENT, "s", 1, 0])
    assert [len(item[1]) for item in queue.get_many(20)] == [16, 16]  # at 16 frames, the next item pushes past 20
    assert [len(item[1]) for item in queue.get_many(1)] == [16]  # at least one item, whatever it holds
    assert len(queue.get_many(17)) == 2  # the last read and the status


def test_a_malformed_frame_in_a_read_yields_its_decode_error_and_the_others_their_events() -> None:
    frames = [frame(1, 2), b'[{"ev":"T","sym":"AAPL"', frame(5), b"[1]", frame(7)]
    batched = Decoder("stocks", "c", use_msgspec=True)
    one_by_one = Decoder("stocks", "c", use_msgspec=True)
    events = batched.decode_frames(frames, 42)
    expected = [event for f in frames for event in one_by_one.decode(f, 42)]
    assert events == expected
    kinds = [e.status if isinstance(e, mrt.StatusMessage) else e.sequence_number for e in events]  # type: ignore[attr-defined]
    assert kinds == [1, 2, "decode_error", 5, "decode_error", 7]
    assert (batched.stats.frames, batched.stats.decode_errors) == (5, 2)
    assert batched.stats == one_by_one.stats


def test_the_dict_path_decodes_a_read_like_its_frames_one_by_one() -> None:
    frames = [frame(1, 2), b"not json", frame(5)]
    events = Decoder("stocks", "c", use_msgspec=False).decode_frames(frames, 7)
    assert events == [e for f in frames for e in Decoder("stocks", "c", use_msgspec=False).decode(f, 7)]
    assert [type(e).__name__ for e in events] == ["EquityTrade", "EquityTrade", "StatusMessage", "EquityTrade"]


def test_the_tap_sees_a_read_as_one_item_with_every_frame_and_its_receive_time() -> None:
    client = Consumer()
    seen: list[tuple[int, list[bytes], int]] = []
    client.set_tap(lambda _consumer, item: seen.append((item[0], list(item[1]), item[2])))
    frames = [frame(1), frame(2, 2), frame(4)]
    client.offer([KIND_FRAMES, frames, 123, -1])
    events = client.drain()
    assert seen == [(KIND_FRAMES, frames, 123)]
    assert [e.sequence_number for e in events] == [1, 2, 3, 4]  # type: ignore[attr-defined]


def test_inline_delivery_of_a_read_dispatches_frame_by_frame_and_queues_the_rest_after_a_hand_over() -> None:
    client = Consumer()
    calls: list[list[int]] = []

    def dispatch(events: list[mrt.Event]) -> None:
        calls.append([e.sequence_number for e in events])  # type: ignore[attr-defined]
        if len(calls) == 2:
            gate.open = False  # as "adaptive" does after a slow frame

    gate = InlineGate(dispatch)
    client.set_inline(gate)
    assert client.offer([KIND_FRAMES, [frame(1, 2), frame(3), frame(4), frame(5, 2)], 9, -1])
    assert calls == [[1, 2], [3]]  # one dispatch per frame: the budget is timed per frame
    queued = client.drain(100)
    assert [e.sequence_number for e in queued] == [4, 5, 6]  # type: ignore[attr-defined]
    assert not gate.lock.locked()


def test_inline_delivery_of_a_read_yields_to_a_dispatcher_waiting_for_the_gate() -> None:
    client = Consumer()
    calls: list[int] = []

    def dispatch(events: list[mrt.Event]) -> None:
        calls.append(len(events))
        gate.wanted = True

    gate = InlineGate(dispatch)
    client.set_inline(gate)
    client.offer([KIND_FRAMES, [frame(1), frame(2), frame(3)], 9, -1])
    assert calls == [1]
    assert [e.sequence_number for e in client.drain(100)] == [2, 3]  # type: ignore[attr-defined]


@pytest.mark.parametrize("relief", [False, True], ids=["reader", "relief-watched"])
def test_an_inline_read_reaches_the_tap_once_after_its_callbacks_and_a_queued_rest_once_later(relief: bool) -> None:
    # One tap call per read, as for a queued read (it was one per frame: ~1 µs a frame in a recorder).
    client = Consumer()
    seen: list[tuple[int, list[bytes]]] = []
    calls: list[list[int]] = []
    taps_during: list[int] = []  # taps so far at each callback

    def dispatch(events: list[mrt.Event]) -> None:
        calls.append([e.sequence_number for e in events])  # type: ignore[attr-defined]
        taps_during.append(len(seen))
        if len(calls) == 2:
            gate.open = False  # a hand-over: the rest of the read is queued

    gate = InlineGate(dispatch)
    client.set_inline(gate)
    if relief:
        client._relief = ReliefLatch(gate)
    client.set_tap(
        lambda _consumer, item: seen.append((item[0], list(item[1]) if item[0] == KIND_FRAMES else [item[1]]))
    )
    frames = [frame(1, 2), frame(3), frame(4), frame(5, 2)]
    assert client.offer([KIND_FRAMES, frames, 9, -1])
    assert calls == [[1, 2], [3]]
    assert seen == [(KIND_FRAMES, frames[:2])]
    assert [e.sequence_number for e in client.drain(100)] == [4, 5, 6]  # type: ignore[attr-defined]
    assert seen == [(KIND_FRAMES, frames[:2]), (KIND_FRAMES, frames[2:])]

    gate.open = True
    assert client.offer([KIND_FRAMES, [frame(7), frame(8)], 10, -1])
    assert seen[2:] == [(KIND_FRAMES, [frame(7), frame(8)])]  # a whole read taken inline: one item
    assert taps_during == [0, 0, 2, 2]  # each read's tap after its callbacks


def seqs(item: Item) -> list[int]:
    """The first sequence number of each frame of a tapped data item."""
    frames = item[1] if item[0] == KIND_FRAMES else [item[1]]
    return [json.loads(f)[0]["q"] for f in frames]


def test_a_callback_that_drains_what_a_relief_reader_queued_sees_the_tap_in_order() -> None:
    # The relief reader takes over in frame 11's callback and queues 12-14; the callback drains
    # them. The tap must show 11 before 12-14, as the consumer saw them.
    client = Consumer()
    seen: list[list[int]] = []
    client.set_tap(lambda _consumer, item: seen.append(seqs(item)))
    order: list[int] = []

    def dispatch(events: list[mrt.Event]) -> None:
        order.extend(e.sequence_number for e in events)  # type: ignore[attr-defined]
        if len(order) == 1:
            relief.session = object()  # type: ignore[assignment]
            assert relief.take_over(relief.busy)  # what the relief thread does, under the latch's lock
            relief.queue_rest(client._queue)
            order.extend(e.sequence_number for e in client.drain(100))  # type: ignore[attr-defined]

    gate = InlineGate(dispatch)
    client.set_inline(gate)
    relief = ReliefLatch(gate)
    client._relief = relief
    client.offer([KIND_FRAMES, [frame(11), frame(12), frame(13), frame(14)], 9, -1])
    assert order == [11, 12, 13, 14]
    assert seen == [[11], [12, 13, 14]]


def test_a_status_drained_during_an_inline_read_is_tapped_between_its_frames() -> None:
    client = Consumer()
    seen: list[object] = []
    client.set_tap(lambda _c, item: seen.append(item[1].status if item[0] == KIND_EVENT else seqs(item)))
    order: list[object] = []

    def dispatch(events: list[mrt.Event]) -> None:
        order.extend(getattr(e, "sequence_number", None) or getattr(e, "status", None) for e in events)
        if len(order) == 1:  # another thread's status (a pool's recycling) arrives; the callback drains it
            status = mrt.StatusMessage(status="recycling", message="x", connection="c", received_at_ns=1)
            client._queue.put([KIND_EVENT, status, 1, 0])
            order.extend(e.status for e in client.drain(100))  # type: ignore[attr-defined]

    client.set_inline(InlineGate(dispatch))
    client.offer([KIND_FRAMES, [frame(11), frame(12), frame(13)], 9, -1])
    assert order == [11, "recycling", 12, 13]
    assert seen == [[11], "recycling", [12, 13]]


def test_a_tap_removed_in_a_callback_first_gets_the_frames_taken_so_far() -> None:
    # A recorder stopped in a handler ("record until event X"): X and the frames before it are in the file.
    client = Consumer()
    first: list[list[int]] = []
    second: list[list[int]] = []
    client.set_tap(lambda _c, item: first.append(seqs(item)))
    calls: list[int] = []

    def dispatch(events: list[mrt.Event]) -> None:
        calls.append(events[0].sequence_number)  # type: ignore[attr-defined]
        if len(calls) == 2:
            client.set_tap(lambda _c, item: second.append(seqs(item)))
        elif len(calls) == 3:
            client.set_tap(None)

    client.set_inline(InlineGate(dispatch))
    client.offer([KIND_FRAMES, [frame(11), frame(12), frame(13), frame(14)], 9, -1])
    assert calls == [11, 12, 13, 14]
    assert (first, second) == ([[11, 12]], [[13]])


def test_get_decodes_at_most_sixteen_frames_per_refill() -> None:
    # The item waited for plus up to 15 frames: 31 measured ~15% slower at frames of 10.
    consumer = Consumer()
    for q in range(40):
        consumer._queue.put([KIND_DATA, frame(2 * q, events=2), 1, -1])
    first = consumer.get(0)
    assert isinstance(first, mrt.EquityTrade)
    assert first.sequence_number == 0
    assert len(consumer._queue) == 40 - 16
    assert [consumer.get(0).sequence_number for _ in range(31)] == list(range(1, 32))  # type: ignore[union-attr]
    assert len(consumer._queue) == 24  # 32 events decoded: the refill's, nothing more yet


def take_frames(queue: FrameQueue, count: int) -> list[bytes]:
    """Take ``count`` frames off ``queue`` as a consumer does, item by item (waiting for each)."""
    taken: list[bytes] = []
    while len(taken) < count:
        item = queue.get(5)
        assert item is not None
        taken += item[1] if item[0] == KIND_FRAMES else [item[1]]
    return taken


def test_block_puts_a_reads_frames_one_by_one_never_over_the_bound() -> None:
    # As frames one by one: those that fit go in at once, the put waits for room for the rest
    # (it waited for room for the whole read before: a consumer saw one frame where three fit,
    # and a read larger than the bound went in whole once the queue was empty).
    frames = [frame(q) for q in range(100, 106)]
    size = len(frames[0])
    queue = FrameQueue(3 * size, Overflow.BLOCK, unit="bytes")
    assert queue.put([KIND_DATA, frames[0], 1, -1])
    putter = threading.Thread(target=queue.put, args=([KIND_FRAMES, frames[1:], 2, -1],), name="test-putter",
                              daemon=True)  # fmt: skip
    putter.start()
    assert wait_until(lambda: queue.queued == 3 * size, 5), queue.queued  # two of the read's frames fit
    taken = take_frames(queue, len(frames))
    putter.join(5)
    assert not putter.is_alive()
    assert taken == frames
    assert queue.high_water == 3 * size


def test_block_takes_a_read_larger_than_the_bound_frame_by_frame_into_an_empty_queue() -> None:
    frames = [frame(q) for q in range(100, 105)]
    size = len(frames[0])
    queue = FrameQueue(2 * size, Overflow.BLOCK, unit="bytes")
    putter = threading.Thread(target=queue.put, args=([KIND_FRAMES, frames, 1, -1],), name="test-putter",
                              daemon=True)  # fmt: skip
    putter.start()
    taken = take_frames(queue, len(frames))
    putter.join(5)
    assert taken == frames
    assert queue.high_water == 2 * size  # the bound holds (it took all five at once before)
