"""The bounded, thread-safe queue between a connection's reader thread and its consumer.

Items are whole frames, or the data frames of one socket read (``KIND_FRAMES``: one lock
round-trip per read, not per frame or event; kept and dropped frame by frame). A queue bounds either
events (``unit="events"``: sources that know each item's event count) or bytes
(``unit="bytes"``: a connection's frames, sized by ``len()`` instead of scanning every frame for
its events). Status items are never discarded. Drops are counted in exact events (only the
frames being dropped are scanned) and turned into one in-order ``dropped`` marker that the
consumer sees exactly where the missing events were.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Literal

from .enums import Overflow

__all__ = [
    "BYTES_PER_EVENT", "DATA_KINDS", "KIND_DATA", "KIND_DROPPED", "KIND_EVENT", "KIND_FRAMES", "KIND_OBJECTS",
    "FrameQueue", "Item", "Unit", "item_events",
]  # fmt: skip

#: payload is a frame's bytes (or str), decoded by the consumer.
KIND_DATA = 0
#: payload is a ready :class:`~massive_rt.models.Event` (status messages).
KIND_EVENT = 1
#: payload is a list of already-decoded JSON objects (a frame the reader had to parse).
KIND_OBJECTS = 2
#: payload is the number of events discarded at this point of the stream.
KIND_DROPPED = 3
#: payload is a list of data frames (bytes) from one socket read, all received at ``received_at_ns``:
#: one queue item for up to a read's worth of frames (the reader batches consecutive data frames).
KIND_FRAMES = 4

#: The kinds of item that carry events (counted against the capacity, dropped by the policy).
DATA_KINDS = (KIND_DATA, KIND_OBJECTS, KIND_FRAMES)
_EV_MARK = b'"ev"'

#: The nominal wire size of one event (a trade or a quote is 100-140 bytes of JSON): an event
#: count such as ``queue_size`` becomes a byte bound once, as ``queue_size * BYTES_PER_EVENT``.
BYTES_PER_EVENT = 128

#: What a queue's capacity counts.
Unit = Literal["events", "bytes"]

#: ``[kind, payload, received_at_ns, size]``, always these four. A list, not a record class:
#: one is built per frame on the reader's hot path, and a slotted record costs ~2.5x a list
#: literal to build (measured; ~5% of throughput at one event per frame); a list also lets a drop
#: marker grow in place. ``size`` is what the item weighs against the capacity: its events in an
#: events queue, its bytes in a bytes queue; -1 (a ``KIND_DATA`` frame, a ``KIND_FRAMES`` read) is
#: measured by :meth:`FrameQueue.put` (events: its ``"ev"`` keys; bytes: the frames' lengths).
Item = list[Any]


def item_events(item: Item) -> int:
    """The exact number of events a data item of a bytes queue carries (scans a frame's bytes)."""
    payload = item[1]
    kind = item[0]
    if kind == KIND_DATA:
        return payload.count(_EV_MARK if isinstance(payload, bytes) else '"ev"') or 1
    if kind == KIND_FRAMES:
        return sum(frame.count(_EV_MARK) or 1 for frame in payload)
    return len(payload)


class FrameQueue:
    """Bounded FIFO of frames with an overflow policy.

    Args:
        capacity: the bound, in ``unit``s (a single item larger than that is still accepted
            when nothing else is queued).
        overflow: ``drop_oldest`` discards the oldest data frames to make room, ``drop_newest``
            discards the incoming frame, ``block`` makes :meth:`put` wait for room.
        on_drop: called (outside the lock, on the putting thread) with the number of events
            each time frames are discarded; used for counting and rate-limited logging.
        unit: ``"events"`` (each item's ``size`` is its event count) or ``"bytes"`` (its
            payload's length for a frame; the producer's estimate for decoded objects).
    """

    def __init__(
        self,
        capacity: int,
        overflow: Overflow = Overflow.DROP_OLDEST,
        on_drop: Callable[[int], None] | None = None,
        unit: Unit = "events",
    ) -> None:
        if unit not in ("events", "bytes"):
            raise ValueError(f"unit={unit!r} must be 'events' or 'bytes'")
        self.capacity = capacity
        self.unit: Unit = unit
        self.overflow = overflow
        self._on_drop = on_drop
        self._items: deque[Item] = deque()
        self._size = 0  # sum of the queued items' sizes, in units
        self._in_bytes = unit == "bytes"
        # Re-entrant only so that held_by_current_thread() can answer: a signal handler that
        # interrupts a consumer inside get() runs while this thread holds the lock.
        self._lock = threading.RLock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._waiting = 0  # threads in _not_empty.wait(): put() notifies only when there are some
        self._closed = False
        self._listener: Callable[[], None] | None = None
        self.dropped_events = 0
        self.dropped_frames = 0
        #: The most units (events or bytes) ever queued at once.
        self.high_water = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def max_events(self) -> int:
        """The capacity of an events queue; of a bytes queue, that many bytes over
        :data:`BYTES_PER_EVENT` (the nominal event size it was converted from)."""
        return self.capacity // BYTES_PER_EVENT if self._in_bytes else self.capacity

    @property
    def queued(self) -> int:
        """Units (events or bytes) currently queued (without the lock: exact enough for stats)."""
        return self._size

    @property
    def queued_events(self) -> int:
        """Events currently queued. An events queue knows it; a bytes queue counts the events of
        a snapshot of its frames (O(queued bytes), outside the lock: for stats, not a hot path)."""
        return self.count_events()

    def count_events(self, locked: bool = True) -> int:
        """:attr:`queued_events`; ``locked=False`` takes the snapshot without the lock (only where
        no other thread can use the queue: a forked child, whose copy of the lock a parent's
        thread may have held at the fork)."""
        if not self._in_bytes:
            return self._size
        if locked:
            with self._lock:
                snapshot = [item for item in self._items if item[0] in DATA_KINDS]
        else:
            snapshot = [item for item in self._items if item[0] in DATA_KINDS]
        return sum(map(item_events, snapshot))

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called; remaining items can still be taken."""
        return self._closed

    def set_listener(self, listener: Callable[[], None] | None) -> None:
        """Call ``listener()`` (outside the lock) whenever an item arrives in an empty queue.

        One consumer thread can wait on many queues this way (the adapter's dispatcher).
        """
        self._listener = listener

    def _events_of(self, item: Item) -> int:
        return item_events(item) if self._in_bytes else item[3]

    def put(self, item: Item, should_stop: Callable[[], bool] | None = None) -> bool:
        """Add an item; return False if it was discarded (``drop_newest``; for a read's frames: any
        of them) or the queue closed.

        With ``block`` this waits for room, checking ``should_stop()`` at least every 50 ms.
        A read's frames (``KIND_FRAMES``) are kept and dropped as if they came one by one.
        """
        size = item[3]
        if size < 0:  # a frame (or a read's frames) not measured yet
            if item[0] == KIND_FRAMES:
                size = item[3] = sum(map(self._weight, item[1]))
            else:
                size = item[3] = len(item[1]) if self._in_bytes else item[1].count(_EV_MARK) or 1
        dropped = 0
        one_by_one: Item | None = None
        with self._lock:
            if self._closed and item[0] != KIND_EVENT:
                return False  # status events still get through, so a late "why" is never lost
            was_empty = not self._items
            if item[0] in DATA_KINDS and self._size + size > self.capacity:
                if self.overflow is Overflow.BLOCK and item[0] == KIND_FRAMES:
                    one_by_one = item  # put frame by frame (below): those that fit go in, then it waits
                    item = []
                elif self.overflow is Overflow.DROP_NEWEST and item[0] == KIND_FRAMES:
                    dropped = self._put_frames_dropping_newest(item)
                    item = []  # queued (what fitted) and marked (the rest) already
                elif self.overflow is Overflow.DROP_OLDEST and item[0] == KIND_FRAMES and size > self.capacity:
                    # As frames one by one: everything queued goes first, then the read's own
                    # first frames make way for its last ones.
                    dropped = self._drop_oldest(self.capacity + 1, item[2])
                    own, size = self._trim_oversized_frames(item)
                    dropped += own
                elif self.overflow is Overflow.DROP_NEWEST and not self._size:
                    pass  # a frame larger than the whole queue is still taken when nothing else is queued
                elif self.overflow is Overflow.DROP_NEWEST:
                    dropped = self._events_of(item)
                    self._mark_dropped_at_tail(dropped, item[2], 1)
                    item = []
                elif self.overflow is Overflow.DROP_OLDEST:
                    dropped = self._drop_oldest(size, item[2])
                else:
                    while self._size + size > self.capacity and self._size and not self.closed:
                        if should_stop is not None and should_stop():
                            return False
                        self._not_full.wait(0.05)
                    if self.closed:
                        return False
                    was_empty = not self._items  # the consumer may have emptied it meanwhile
            if item:
                self._append(item, size)
        if one_by_one is not None:
            received_at_ns = one_by_one[2]
            for frame in one_by_one[1]:
                if not self.put([KIND_DATA, frame, received_at_ns, self._weight(frame)], should_stop):
                    return False
            return True
        if dropped and self._on_drop is not None:
            self._on_drop(dropped)
        if was_empty and self._listener is not None:
            self._listener()
        return not (dropped and self.overflow is Overflow.DROP_NEWEST)

    def _append(self, item: Item, size: int) -> None:
        self._items.append(item)
        self._size += size
        if self._size > self.high_water:
            self.high_water = self._size
        if self._waiting:
            self._not_empty.notify_all()  # get() and wait() may both be waiting

    def _weight(self, frame: bytes) -> int:
        return len(frame) if self._in_bytes else frame.count(_EV_MARK) or 1

    def _trim_oversized_frames(self, item: Item) -> tuple[int, int]:
        """``drop_oldest`` for a read's frames that alone exceed the capacity (nothing else is
        queued any more): its first frames are dropped (marked at the tail) until the rest fits,
        or one is left. Returns (events dropped, size of what stays)."""
        batch = item[1]
        size = item[3]
        first = 0
        while size > self.capacity and first < len(batch) - 1:
            size -= self._weight(batch[first])
            first += 1
        dropped = sum(frame.count(_EV_MARK) or 1 for frame in batch[:first])
        if first:
            self._mark_dropped_at_tail(dropped, item[2], first)
        item[1] = batch[first:]
        item[3] = size
        return dropped, size

    def _put_frames_dropping_newest(self, item: Item) -> int:
        """``drop_newest`` for a read's frames, as if they came one by one: each frame that fits
        (or is the first into an empty queue) is queued, each other one dropped and marked in
        its place; consecutive kept frames stay one item. Returns the events dropped."""
        received_at_ns = item[2]
        dropped = 0
        run: list[bytes] = []
        run_size = 0
        for frame in item[1]:
            weight = self._weight(frame)
            if self._size + run_size + weight <= self.capacity or not (self._size + run_size):
                run.append(frame)
                run_size += weight
                continue
            if run:
                self._append([KIND_FRAMES, run, received_at_ns, run_size] if len(run) > 1
                             else [KIND_DATA, run[0], received_at_ns, run_size], run_size)  # fmt: skip
                run, run_size = [], 0
            events = frame.count(_EV_MARK) or 1
            dropped += events
            self._mark_dropped_at_tail(events, received_at_ns, 1)
        if run:
            self._append([KIND_FRAMES, run, received_at_ns, run_size] if len(run) > 1
                         else [KIND_DATA, run[0], received_at_ns, run_size], run_size)  # fmt: skip
        return dropped

    def _mark_dropped_at_tail(self, events: int, received_at_ns: int, frames: int) -> None:
        self.dropped_events += events
        self.dropped_frames += frames
        if self._items and self._items[-1][0] == KIND_DROPPED:
            self._items[-1][1] += events
        else:
            self._items.append([KIND_DROPPED, events, received_at_ns, 0])
            if self._waiting:
                self._not_empty.notify_all()

    def _drop_oldest(self, incoming: int, received_at_ns: int) -> int:
        # Status items carry no size and are kept, in order; earlier drop markers are merged.
        kept: list[Item] = []
        dropped = merged = frames = 0
        items = self._items
        while items and self._size + incoming > self.capacity:
            old = items.popleft()
            if old[0] == KIND_FRAMES:
                # A read's frames are dropped as frames, oldest first: only as many as make room.
                batch = old[1]
                taken = 0
                while taken < len(batch) and self._size + incoming > self.capacity:
                    frame = batch[taken]
                    weight = self._weight(frame)
                    self._size -= weight
                    old[3] -= weight
                    dropped += frame.count(_EV_MARK) or 1
                    taken += 1
                frames += taken
                if taken < len(batch):
                    old[1] = batch[taken:]
                    items.appendleft(old)
                continue
            if old[0] in DATA_KINDS:
                self._size -= old[3]
                dropped += self._events_of(old)
                frames += 1
            elif old[0] == KIND_DROPPED:
                merged += old[1]
            else:
                kept.append(old)
        if dropped or merged:
            if items and items[0][0] == KIND_DROPPED:
                items[0][1] += dropped + merged
            else:
                items.appendleft([KIND_DROPPED, dropped + merged, received_at_ns, 0])
        items.extendleft(reversed(kept))
        self.dropped_events += dropped
        self.dropped_frames += frames
        return dropped

    def get(self, timeout: float | None) -> Item | None:
        """Remove and return the oldest item, waiting up to ``timeout`` (None: forever).

        Returns None on timeout, or at once when the queue is closed and empty.
        """
        with self._lock:
            if not self._items:
                if self._closed:
                    return None
                self._wait_not_empty(timeout)
                if not self._items:
                    return None
            item = self._items.popleft()
            self._size -= item[3]
            if self.overflow is Overflow.BLOCK:
                self._not_full.notify()
            return item

    def get_many(self, max_frames: int) -> list[Item]:
        """Remove and return items worth up to ``max_frames`` frames (a read's batch counts its
        frames; at least one item), without waiting."""
        with self._lock:
            items = self._items
            if not items:
                return []
            out: list[Item] = []
            frames = 0
            taken = 0
            while items and frames < max_frames:
                item = items.popleft()
                out.append(item)
                taken += item[3]
                frames += len(item[1]) if item[0] == KIND_FRAMES else 1
            self._size -= taken
            if self.overflow is Overflow.BLOCK:
                self._not_full.notify()
            return out

    def wait(self, timeout: float | None) -> bool:
        """Wait until an item is available (True) or ``timeout`` passes or the queue closes."""
        with self._lock:
            if not self._items and not self._closed:
                self._wait_not_empty(timeout)
            return bool(self._items)

    def _wait_not_empty(self, timeout: float | None) -> None:
        self._waiting += 1
        try:
            self._not_empty.wait(timeout)
        finally:
            self._waiting -= 1

    def held_by_current_thread(self) -> bool:
        """Whether the calling thread holds the queue's lock.

        Only a signal handler can see True: it ran while its thread was inside one of the queue's
        methods (a consumer interrupted in ``get``). Whoever waits for the producer there waits in
        vain: the producer needs this lock, and gets it when the handler returns.
        """
        is_owned = getattr(self._lock, "_is_owned", None)  # what threading.Condition itself asks an RLock
        return bool(is_owned()) if is_owned is not None else False

    def close(self) -> None:
        """Refuse further data and wake every waiter. Items already queued stay available;
        status events (``KIND_EVENT``) are still accepted."""
        with self._lock:
            self._closed = True
            self._not_empty.notify_all()
            self._not_full.notify_all()
        if self._listener is not None:
            self._listener()

    def clear(self) -> int:
        """Discard everything queued; return the number of events discarded."""
        with self._lock:
            events: int = sum(self._events_of(item) for item in self._items if item[0] in DATA_KINDS)
            self._items.clear()
            self._size = 0
            self._not_full.notify_all()
            return events
