"""The consuming side of a connection's queue, shared by every event source.

Frames are decoded into typed events here, on the consumer's thread (your thread calling
``get``, or the adapter's dispatcher), batch by batch, never on the reader thread.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ._json import loads as fast_loads
from ._util import RateLimitedLog
from ._validate import require_int, require_number
from .dedupe import DuplicateFilter
from .enums import Market, Overflow
from .errors import ClientClosedError
from .eventqueue import DATA_KINDS, KIND_DATA, KIND_EVENT, KIND_FRAMES, KIND_OBJECTS, FrameQueue, Item, Unit
from .marks import GAP_STATUSES, DeliveryMarks
from .models import Event, RawFrame, StatusMessage
from .protocol import MARKET_EVENTS, Decoder
from .speedups import ready_get

if TYPE_CHECKING:
    from .relief import ReliefLatch

__all__ = ["InlineGate", "QueueConsumer", "check_timeout", "fast_loads"]

# Frames get() decodes per refill besides the item it waited for (a read's item counts its frames):
# amortises the queue lock. 31 measured ~15% slower at frames of 10 (3 reads' items, ~480 events
# decoded ahead, against 2 and ~320; likely the CPU cache); 3, 7 and 15 alike; 0 (one item) 4% slower.
_REFILL_FRAMES = 15


def check_timeout(timeout: float | None, field: str = "timeout") -> None:
    """Raise :class:`ConfigurationError` unless ``timeout`` is None or a finite number >= 0."""
    if timeout is not None:
        require_number(field, timeout)


class InlineGate:
    """Lets a producer thread run the consumer's dispatch itself while the consumer is idle.

    The adapter's ``dispatch="inline"`` and ``"adaptive"`` modes: a producer (a connection's reader thread) that has
    a data frame, finds its own queue empty and ``lock`` free, decodes the frame and calls
    ``dispatch(events)`` on its own thread, saving the hand-off to the consumer thread (a
    wake-up and a GIL switch). Whoever dispatches holds ``lock`` (the adapter's dispatcher takes
    it for each drain-and-dispatch), so callbacks never run concurrently and a connection's
    events keep their order. ``open = False`` sends everything through the queue again;
    ``wanted`` (set while the dispatcher waits for the lock) makes producers queue instead of
    taking the lock, so a flooding connection cannot keep the dispatcher from the others.
    ``"adaptive"`` closes ``open`` after a slow inline dispatch and reopens it later.

    ``relief_after`` (``"adaptive"`` only; None otherwise): a connection whose reader has been
    in one frame's callbacks for about this long lets its relief reader (:mod:`massive_rt.relief`)
    take over the socket and close ``open``; each such takeover adds one to ``reliefs``. ``clock``
    (seconds) is the adapter's: a reader times its reads' inline callbacks with it
    (:data:`massive_rt.relief.BACKLOG_SECONDS`).
    """

    __slots__ = ("clock", "dispatch", "lock", "open", "relief_after", "reliefs", "wanted")

    def __init__(self, dispatch: Callable[[list[Event]], None], relief_after: float | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:  # fmt: skip
        self.dispatch = dispatch
        self.clock = clock
        self.lock = threading.Lock()
        self.open = True
        self.wanted = False
        self.relief_after = relief_after
        self.reliefs = 0  # only a relief reader whose reader holds ``lock`` adds to it: one writer at a time


class QueueConsumer:
    """Mixin: ``get``/``iter_events``/``drain`` over a :class:`FrameQueue` filled by a producer thread."""

    _inline_gate: InlineGate | None = None
    _forked = False  # set on a client in a forked child: then every call goes through _check_usable()
    _dedupe: DuplicateFilter | None = None  # opt-in: events already seen are dropped after decoding
    _suppressed = 0  # duplicates this consumer dropped (the filter may be shared with others)
    _marks: DeliveryMarks | None = None  # per symbol, the last event decoded (None: raw, nothing decoded)
    _predecessor_marks: DeliveryMarks | None = None  # a pool replacement's: the gap it closes was theirs
    _tap: Callable[[QueueConsumer, Item], None] | None = None  # set_tap(): sees every item taken
    _relief: ReliefLatch | None = None  # "adaptive" on a connection: its relief reader may take over
    # A read being delivered inline while a tap is set: [frames, tapped, taken, received_at_ns]
    # (the frames taken but not shown to the tap yet are frames[tapped:taken]; see _flush_untapped).
    _untapped: list[Any] | None = None
    _backlog = False  # "adaptive": the producer's current read is a backlog, for the dispatcher (offer queues)

    _name: str
    _queue: FrameQueue
    _decoder: Decoder
    _ready: deque[Event]
    _consume_lock: threading.Lock
    _raw: bool
    _overflow: Overflow
    _drop_log: RateLimitedLog

    def _init_consumer(
        self,
        name: str,
        market: Market,
        queue_size: int,
        overflow: Overflow,
        raw: bool,
        log: logging.Logger | logging.LoggerAdapter,  # type: ignore[type-arg]
        last_seen_limit: int | None = None,
        queue_unit: Unit = "events",
    ) -> None:
        """``queue_size`` is the queue's capacity in ``queue_unit``s (see :class:`FrameQueue`).
        ``last_seen_limit``: keep per-symbol marks for ``disconnected``/``gap`` statuses and list
        at most this many (None: keep none; a source whose gaps are not a connection's)."""
        self._raw = raw
        self._overflow = overflow
        self._queue = FrameQueue(queue_size, overflow, on_drop=self._on_drop, unit=queue_unit)
        #: How the producer hands over an item: the queue's ``put``, or :meth:`offer` while an
        #: inline gate is set (swapped, never wrapped, so the queue-only path has no extra call).
        self._sink: Callable[[Item, Callable[[], bool] | None], bool] = self._queue.put
        self._drop_log = RateLimitedLog(log, logging.WARNING)
        if not raw and last_seen_limit:  # 0 or None: no marks at all
            self._marks = DeliveryMarks(MARKET_EVENTS[market], last_seen_limit)
        self._decoder = Decoder(market, name, loads=fast_loads, marks=self._marks)
        self._consume_lock = threading.Lock()
        self._ready = deque()
        if ready_get is not None and type(self).get is QueueConsumer.get:
            # get()'s fast path in C: an instance attribute in front of the method, which it calls
            # whenever nothing decoded is waiting. Removed in a forked child (_mark_forked). A
            # class patch made after this does not reach the instance (docs/testing.md says so).
            self.get = ready_get(self._ready, QueueConsumer.get.__get__(self))  # type: ignore[method-assign]

    def get(self, timeout: float | None = None) -> Event:
        """Return the next event (typed, a :class:`StatusMessage`, or a :class:`RawFrame`).

        Decoding happens here, on the calling thread. Safe from several threads.

        Raises:
            queue.Empty: nothing arrived within ``timeout``.
            ClientClosedError: the source stopped (or failed) and every event was consumed, or
                it was never started (at once: waiting would never end).
        """
        ready = self._ready
        if ready and not self._forked:  # fast path: events of frames already decoded
            try:
                return ready.popleft()
            except IndexError:  # another consumer took the last one
                pass
        check_timeout(timeout)
        self._check_consumable()
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._consume_lock.acquire(timeout=-1 if timeout is None else timeout):
            raise queue.Empty
        try:
            while True:
                while not ready:
                    remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                    item = self._queue.get(remaining)
                    if item is None:
                        if self._queue.closed and not len(self._queue):
                            self._await_end()
                            raise ClientClosedError(self._closed_reason(), connection=self._name)
                        raise queue.Empty
                    ready.extend(self._decode_item(item))
                    for more in self._queue.get_many(_REFILL_FRAMES):  # decode what else is there, at once
                        ready.extend(self._decode_item(more))
                    if self._marks is not None:
                        self._marks.bound()
                try:
                    return ready.popleft()
                except IndexError:  # a fast-path get() on another thread took the last one
                    continue
        finally:
            self._consume_lock.release()

    def _mark_forked(self) -> None:
        """In a forked child: every call goes through the checks (which report the misuse)."""
        self._forked = True
        self.__dict__.pop("get", None)  # the C fast path would skip them

    def iter_events(self, timeout: float | None = None) -> Iterator[Event]:
        """Yield events until the source stops or fails (and its queue is drained).

        Args:
            timeout: also stop after this many seconds without any event (None: never).

        Raises (at once, not at the first iteration):
            ClientClosedError: the source was never started, or belongs to the parent of a
                forked process (a silently empty stream would hide the mistake).
            ConfigurationError: a negative ``timeout``.
        """
        check_timeout(timeout)
        self._check_consumable()
        return self._iterate(timeout)

    def _iterate(self, timeout: float | None) -> Iterator[Event]:
        while True:
            try:
                yield self.get(timeout)
            except (queue.Empty, ClientClosedError):
                return

    def drain(self, max_frames: int = 32) -> list[Event]:
        """Decode and return what is queued now (up to ``max_frames`` frames, counting each frame
        of a read queued as one item; at least one item); never blocks.

        For consumers that multiplex many sources, such as the adapter's dispatcher.

        Raises:
            ClientClosedError: the source was never started.
        """
        require_int("max_frames", max_frames)
        self._check_consumable()
        with self._consume_lock:
            if self._ready:
                out = list(self._ready)
                self._ready.clear()
            else:
                out = []
            decode = self._decode_item
            dedupe = self._dedupe
            tap = self._tap
            decoder = self._decoder
            for item in self._queue.get_many(max_frames):
                kind = item[0]
                if kind == KIND_FRAMES and dedupe is None and tap is None:
                    out += decoder.decode_frames(item[1], item[2])
                elif kind == KIND_DATA and not self._raw and dedupe is None and tap is None:
                    out += decoder.decode(item[1], item[2])
                else:
                    out += decode(item)
            if self._marks is not None:
                self._marks.bound()
            return out

    def wait(self, timeout: float | None) -> bool:
        """Wait until something is queued (True) or ``timeout`` passes / the source ends."""
        return bool(self._ready) or self._queue.wait(timeout)

    @property
    def pending(self) -> bool:
        """True when events are queued or decoded but not taken yet (lock-free, a hint)."""
        return bool(self._ready) or bool(len(self._queue))

    @property
    def exhausted(self) -> bool:
        """True when the source is stopped or failed and nothing is left to consume."""
        return self._queue.closed and not len(self._queue) and not self._ready

    def set_listener(self, listener: Callable[[], None] | None) -> None:
        """Register ``listener()``, called on the producer thread when data arrives in an empty
        queue (and when the source ends). Used by the adapter's dispatcher; keep it tiny."""
        self._queue.set_listener(listener)

    def set_inline(self, gate: InlineGate | None) -> bool:
        """Let the producer thread dispatch its frames through ``gate`` when the consumer is idle
        (None: always queue). Returns False when this source cannot (the default can)."""
        self._inline_gate = gate
        self._sink = self._queue.put if gate is None else self.offer
        self._sink_changed()
        return True

    @property
    def overflow_policy(self) -> Overflow:
        """The full-queue policy (its name is in this consumer's ``dropped`` statuses)."""
        return self._overflow

    @property
    def inline_enabled(self) -> bool:
        """True while an adapter's gate is set (``dispatch="inline"`` or ``"adaptive"``): the producer
        dispatches inline whenever that gate is open and free."""
        return self._inline_gate is not None

    def offer(self, item: Item, should_stop: Callable[[], bool] | None = None) -> bool:
        """Producer side: dispatch ``item`` on this thread when the inline gate allows (a data item,
        no backlog, the queue empty and open, the consumer idle), else queue it. Returns what
        ``put`` returns."""
        queue = self._queue
        if (item[0] in DATA_KINDS and not self._backlog and not len(queue) and not queue.closed
                and self._deliver_inline(item)):  # fmt: skip
            return True
        return queue.put(item, should_stop)

    def continue_marks_from(self, previous: QueueConsumer) -> None:
        """Before start: carry on ``previous``'s per-symbol marks (a pool's replacement connection),
        so the ``gap`` status this one reports has the marks of ``previous``'s disconnect."""
        marks, theirs = self._marks, previous._marks
        if marks is not None and theirs is not None:
            marks.adopt(theirs)
            self._predecessor_marks = theirs

    def _sink_changed(self) -> None:
        """Hook: ``_sink`` changed (a client passes it on to its session)."""

    def _deliver_inline(self, item: Item) -> bool:
        """On the producer thread: decode and dispatch ``item`` now if the gate allows; else False."""
        gate = self._inline_gate
        if gate is None or not gate.open or gate.wanted or not gate.lock.acquire(blocking=False):
            return False
        try:
            # Under the gate nobody drains: an empty queue means nothing older is still waiting.
            if not gate.open or len(self._queue) or self._ready or not self._consume_lock.acquire(blocking=False):
                return False
            if item[0] == KIND_FRAMES:
                self._consume_lock.release()
                self._deliver_frames_inline(gate, item)
                return True
            try:
                events = self._decode_item(item)
                if self._marks is not None:
                    self._marks.tick()
            finally:
                self._consume_lock.release()
            if events:
                relief = self._relief
                if relief is None:
                    gate.dispatch(events)
                else:
                    relief.busy += 1  # odd: in a callback (what the relief reader watches)
                    if relief.dozing:
                        relief.wake.set()
                    try:
                        gate.dispatch(events)
                    finally:
                        relief.leave()
            return True
        finally:
            gate.lock.release()

    def _deliver_frames_inline(self, gate: InlineGate, item: Item) -> None:
        """Under the gate: a read's frames, decoded and dispatched one frame at a time (so
        ``"adaptive"`` times each frame's callbacks, as for frames queued one by one). If the gate
        closes on the way (a hand-over, ``stop()``) or the dispatcher waits for it, the frames not
        dispatched yet are queued."""
        if self._relief is not None:
            self._deliver_frames_relieved(gate, item, self._relief)
            return
        frames = item[1]
        received_at_ns = item[2]
        take = self._take_frame
        untapped = None if self._tap is None else self._begin_untapped(frames, received_at_ns)
        taken = 0
        try:
            for frame in frames:
                if taken and (not gate.open or gate.wanted):  # handed over, stopping, or the dispatcher's turn
                    rest = frames[taken:]
                    # The queue is still empty (its only producer is this thread), so order holds.
                    self._queue.put([KIND_FRAMES, rest, received_at_ns, -1] if len(rest) > 1
                                    else [KIND_DATA, rest[0], received_at_ns, -1])  # fmt: skip
                    return
                taken += 1
                events = take(frame, received_at_ns, untapped, taken)
                if events:
                    gate.dispatch(events)
        finally:
            if untapped is not None:
                self._end_untapped()

    def _begin_untapped(self, frames: list[bytes], received_at_ns: int) -> list[Any]:
        """A read delivered inline with a tap set: its frames reach the tap as one item once its
        callbacks ran (one tap call per read, as for a queued read) — or sooner, in order, if
        anything else of this consumer is decoded or the tap changes meanwhile (a callback's
        drain(), a relief reader's takeover, a recorder stopped in a callback)."""
        untapped = self._untapped = [frames, 0, 0, received_at_ns]
        return untapped

    def _end_untapped(self) -> None:
        with self._consume_lock:
            self._flush_untapped()
            self._untapped = None

    def _flush_untapped(self) -> None:
        """Under the consume lock: show the tap the frames of the read being delivered inline
        taken since the last flush, as one item."""
        untapped = self._untapped
        if untapped is None:
            return
        frames, tapped, taken = untapped[0], untapped[1], untapped[2]
        if taken <= tapped:
            return
        untapped[1] = taken
        tap = self._tap
        if tap is not None:
            part = frames if tapped == 0 and taken == len(frames) else frames[tapped:taken]
            tap(self, [KIND_FRAMES, part, untapped[3], -1] if len(part) > 1 else [KIND_DATA, part[0], untapped[3], -1])

    def _take_frame(self, frame: bytes, received_at_ns: int, untapped: list[Any] | None, taken: int) -> list[Event]:
        """The ``taken``-th frame of a read delivered inline, decoded without the tap (the read
        reaches it whole, see :meth:`_begin_untapped`). Under the consume lock, but not across the
        callbacks: they may call get() or drain(). Never raw: a reader batches only the frames
        it does not pass on raw."""
        with self._consume_lock:
            if untapped is not None:
                untapped[2] = taken
            events = self._decoder.decode(frame, received_at_ns)
            dedupe = self._dedupe
            if dedupe is not None:
                events = self._without_duplicates(dedupe, events)
            if self._marks is not None:
                self._marks.tick()
        return events

    def _deliver_frames_relieved(self, gate: InlineGate, item: Item, relief: ReliefLatch) -> None:
        """:meth:`_deliver_frames_inline` with a relief reader watching: the frames not taken yet
        wait in ``relief.rest``, so a relief reader that takes over while a callback runs queues
        them (before anything it reads) and this thread stops after that callback."""
        frames = item[1]
        rest: deque[bytes] = deque(frames)
        received_at_ns = item[2]
        relief.rest, relief.rest_ns = rest, received_at_ns
        take = self._take_frame
        untapped = None if self._tap is None else self._begin_untapped(frames, received_at_ns)
        taken = 0
        try:
            while rest:
                if taken and (not gate.open or gate.wanted):
                    # Between callbacks (busy is even): the relief reader cannot take over meanwhile.
                    relief.queue_rest(self._queue)
                    return
                frame = rest.popleft()
                taken += 1
                events = take(frame, received_at_ns, untapped, taken)
                if events:
                    relief.busy += 1
                    if relief.dozing:
                        relief.wake.set()
                    try:
                        gate.dispatch(events)
                    finally:
                        took_over = relief.leave()
                    if took_over:
                        return  # the relief reader queued the rest and reads the socket until we take it back
        except BaseException:
            # A crashing reader: no later takeover may queue these frames, out of order. (Not on
            # a takeover's return: the relief thread is queuing them, maybe still.)
            rest.clear()
            raise
        finally:
            if untapped is not None:
                self._end_untapped()

    @property
    def tap(self) -> Callable[[QueueConsumer, Item], None] | None:
        """The tap :meth:`set_tap` installed, or None."""
        return self._tap

    def set_tap(self, tap: Callable[[QueueConsumer, Item], None] | None) -> None:
        """Call ``tap(self, item)`` with every item as it is taken to be decoded (None: stop).

        Items are ``[kind, payload, received_at_ns, events]`` as queued, in the order the
        consumer sees them (``dropped`` markers where the events went missing); the frames of one
        read queued together come as one ``KIND_FRAMES`` item (``payload`` is the list of frames;
        a read delivered inline comes the same way, once its callbacks ran — sooner, in order, if
        anything else of this consumer is decoded meanwhile — and if the rest of a read was
        queued on the way, the frames delivered and the rest come as separate items). The tap
        runs on the consuming thread (or a reader delivering inline) under the consume lock: it
        must not block or raise, and must not change the item. Used by :class:`~massive_rt.Recorder`.
        A tap replaced or removed while a read is being delivered inline is first shown that
        read's frames taken until then; one set where there was none sees the next read on.
        """
        if self._untapped is not None:  # a read under way inline: its frames taken so far go to the old tap
            with self._consume_lock:
                self._flush_untapped()
        self._tap = tap

    def _decode_item(self, item: Item) -> list[Event]:
        kind, payload, received_at_ns = item[0], item[1], item[2]
        tap = self._tap
        if tap is not None and self._untapped is not None:
            self._flush_untapped()  # a read delivered inline is older than anything decoded during its callbacks
        if kind == KIND_EVENT:
            marks = self._marks
            if marks is not None and payload.__class__ is StatusMessage and payload.status in GAP_STATUSES:
                payload = marks.on_status(payload, self._predecessor_marks)
                item = [KIND_EVENT, payload, received_at_ns, item[3]]
            if tap is not None:  # after the marks: a recording replays the status as delivered
                tap(self, item)
            return [payload]
        if kind == KIND_FRAMES:  # never raw: the reader batches only frames it does not pass on raw
            if tap is not None:  # the whole read at once: a recorder costs one call per read, not per frame
                tap(self, item)
            events = self._decoder.decode_frames(payload, received_at_ns)
            dedupe = self._dedupe
            return events if dedupe is None else self._without_duplicates(dedupe, events)
        if tap is not None:
            tap(self, item)
        if kind == KIND_DATA:
            if self._raw:
                return [RawFrame(data=payload, received_at_ns=received_at_ns, connection=self._name)]
            events = self._decoder.decode(payload, received_at_ns)
            dedupe = self._dedupe
            return events if dedupe is None else self._without_duplicates(dedupe, events)
        if kind == KIND_OBJECTS:
            events = self._decoder.decode_objects(payload, received_at_ns)
            dedupe = self._dedupe
            return events if dedupe is None else self._without_duplicates(dedupe, events)
        return [
            StatusMessage(
                status="dropped",
                message=f"{payload} events dropped by the {self._overflow.value} overflow policy",
                dropped=payload,
                received_at_ns=received_at_ns,
                connection=self._name,
            )
        ]

    def _without_duplicates(self, dedupe: DuplicateFilter, events: list[Event]) -> list[Event]:
        kept = dedupe.filter(events)
        if kept is not events:
            self._suppressed += len(events) - len(kept)
        return kept

    def _on_drop(self, events: int) -> None:
        self._drop_log(
            "queue full (%d %s): dropped %d events (%s); %d dropped in total",
            self._queue.capacity, self._queue.unit, events, self._overflow.value, self._queue.dropped_events,
        )  # fmt: skip

    def _check_usable(self) -> None:
        """Raise if the source may not be used (e.g. after fork); the default allows everything."""

    def _check_consumable(self) -> None:
        """Raise if events cannot be taken (never started, forked); the default only checks usable."""
        self._check_usable()

    def _closed_reason(self) -> str:
        return "source is stopped"

    def _await_end(self) -> None:
        """Before ``get`` reports the end (queue closed and drained): let the producer finish.
        The default has nothing to wait for."""
