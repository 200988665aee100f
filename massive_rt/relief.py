"""The relief reader: while a connection's reader is stuck in a callback, another thread reads its socket.

Under ``dispatch="adaptive"`` a connection's reader thread (R, ``massive-rt-reader-<name>``) runs
callbacks itself while they are fast. A callback cannot be moved off a thread once it runs, so a
slow one would keep R from its socket for as long as it runs. Each such connection therefore has
a relief thread (T, ``massive-rt-relief-<name>``, started when an adaptive adapter adopts the
connection, ended by the client's ``stop()``) that takes over reading while R is in a callback:

- **Watching.** R counts :attr:`ReliefLatch.busy` up as it enters one frame's callbacks (odd:
  inside) and up again, under :attr:`ReliefLatch.lock`, as it leaves. T looks at it every
  ``RELIEF_WATCH`` seconds while R was outside any delivery at the last look, and
  ``relief_after`` seconds (``max(inline_budget, RELIEF_INTERVAL)``) after a look that found R
  inside one; the same odd value twice in a row means R has been in one delivery for at least
  ``relief_after`` (at most that plus ``RELIEF_WATCH``, plus the interpreter's switch interval,
  when T notices). No clock call is added per frame. Between looks T sleeps in one lock acquire
  with a timeout (:meth:`ReliefLatch.pause`), so a look runs a few lines of Python: each look
  is a thread wake-up that can delay R's next frame, so there are few (~50 a second while R
  streams; none while it is idle: see ``_IDLE_LOOKS``). Looking every 5 ms through
  ``Event.wait`` cost the default dispatch ~3 µs at the median and ~20 µs at p99 (receive →
  callback at 1,000 events/s, A/B runs of 4 to 6 rounds).
- **Taking over.** Under the lock, while ``busy`` still holds that value: T marks the latch
  ``relieved``, closes the adapter's gate (the adaptive hand-over: later frames are queued for the
  dispatcher) and queues the frames of R's read item that R has not taken yet, before anything it
  reads. R leaves its delivery under the same lock, so either it left first (T does nothing) or
  it sees ``relieved`` and stops: the rest is T's. The dispatcher cannot dispatch what T queued
  before R's callback returns (R holds the gate), so order per connection holds and callbacks
  never overlap.
- **The read token.** Whoever holds it (R, or T while ``relieved``) owns the socket, the frame
  parser and :attr:`ReliefLatch.messages` (parsed messages not handled yet, all of one read).
  R parses and handles its reads in its own loop, as without relief (the shortest path from the
  socket to a callback). The parser's position is always just past the last message R took, and
  R hands a batch of data frames on as soon as it is complete; when a message that is not a data
  frame ends a batch, R parks it in :attr:`ReliefLatch.held` while the batch's callbacks run. So
  at a takeover T puts the held message and the parser's remaining complete messages into
  ``messages`` (:meth:`ReliefLatch.collect_rest`) and continues exactly where R stopped. T
  handles data frames (queued, never dispatched), pings (it answers: only the token holder
  sends) and pongs, and updates the byte, frame and receive-time counters the timers read; at
  anything else (a status or close frame, EOF, an error, a frame too large) it stops and leaves
  it at the front for R. When R's callback returns, R sees :attr:`ReliefLatch.taken` and asks for
  the token back (:meth:`ReliefLatch.reclaim`); T hands it over within ``relief_after``, R leaves
  the read it was parsing and handles what T left (:meth:`ReliefReader.handle_messages`) before
  it reads the socket again.
- ``stop()`` ends T within about ``relief_after`` even while R's callback is stuck; R then ends
  when its callback returns (``stop()`` reports a reader that did not end, as always).

Nothing here runs under ``dispatch="thread"`` (no latch, no thread) or ``"inline"`` (the choice of
callbacks on the reader, including a slow one's delay, is the user's there).
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import websocket

from ._session import Outcome
from ._transport import describe
from .consumer import QueueConsumer
from .eventqueue import KIND_DATA, KIND_FRAMES, FrameQueue
from .framing import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameParser,
    FrameTooLargeError,
    ProtocolViolationError,
)

if TYPE_CHECKING:
    from ._session import Session
    from ._transport import Transport
    from .consumer import InlineGate

__all__ = [
    "BACKLOG_BYTES",
    "BACKLOG_FRAMES",
    "BACKLOG_SECONDS",
    "BATCH_FRAMES",
    "OP_EOF",
    "OP_LOST",
    "OP_TOO_LARGE",
    "OP_VIOLATION",
    "RECV_BYTES",
    "RELIEF_INTERVAL",
    "RELIEF_WATCH",
    "STATUS_MARK",
    "STATUS_WINDOW",
    "TLS_RECORD_BYTES",
    "ReliefLatch",
    "ReliefReader",
    "ReliefSession",
    "frame_error_outcome",
    "queue_batch",
]

logger = logging.getLogger(__name__)

#: The shortest time a reader is in one frame's callbacks before its relief reader takes over
#: (the adapter uses ``max(inline_budget, RELIEF_INTERVAL)``: ``relief_after``), and the time
#: between the relief thread's looks after one that found the reader in a delivery.
RELIEF_INTERVAL = 0.005
#: The time between the relief thread's looks while the reader was outside any delivery at the
#: last one (or ``relief_after``, if longer): a callback stuck right after such a look is seen
#: at the next, and relieved ``relief_after`` later.
RELIEF_WATCH = 0.02
#: Bytes one ``recv`` reads.
RECV_BYTES = 256 * 1024
#: The most data frames of one read queued as one item (larger batches measured slower: cache misses).
BATCH_FRAMES = 16
#: ``"adaptive"``: a read with more messages than this is a backlog (its frames go to the dispatcher
#: thread, so reading the next read overlaps with their callbacks, as under ``dispatch="thread"``)
#: once a batch of this many data frames is full and either :data:`BACKLOG_BYTES` more wait, or
#: anything more waits and the read's callbacks have kept the reader from its socket for
#: :data:`BACKLOG_SECONDS`. Other reads (a stream the reader keeps up with, a small burst) are
#: dispatched inline, for latency.
BACKLOG_FRAMES = BATCH_FRAMES
#: ``"adaptive"``: the least that must wait past a full batch (unparsed in the read, or still on the
#: socket: a TLS read returns one 16 KB record at most) for a backlog; a read of a whole TLS record
#: or more that never fills a batch (TLS, frames of ~1 KB) is one too with this much more on the
#: socket. A burst of small frames (a server catching up after a pause: at 20,000 events/s, reads
#: of 17-100 frames of one trade, 3-15 KB) stays inline: handed to the dispatcher, its events
#: waited 160-420 us (median over 20,000 events) against ~25 us inline. Around this size the two
#: paths are level; past it the dispatcher's overlap wins (a burst of 300 one-trade frames, 22 KB:
#: its last callback 0.9-1.4 ms after the read handed over, 1.5-1.6 ms inline).
BACKLOG_BYTES = 16 * 1024
#: ``"adaptive"``: the longest a read keeps its reader from the socket (from its arrival: framing,
#: decoding and callbacks; on the adapter's ``clock``, looked at each full batch and at the end of
#: the read) before what is left of it goes to the dispatcher, if anything more waits in the read
#: or on the socket: callbacks each within ``inline_budget`` but many in a row (a read of up to
#: :data:`BACKLOG_BYTES` more than a batch) leave the socket unread for this plus one batch's
#: callbacks at most.
BACKLOG_SECONDS = 0.005
#: The most one TLS ``recv`` returns (one record): a read this long may have more behind it.
TLS_RECORD_BYTES = 16 * 1024
# Massive sends statuses as their own frames, "ev" first. Looking for the marker only near the
# start keeps the reader from scanning every data frame; a status later in a mixed array reaches
# the consumer (as a StatusMessage), whose decoder hands it back to the reader to act on.
STATUS_MARK = b"status"
STATUS_WINDOW = 40
#: Pseudo-opcodes the reading side puts in :attr:`ReliefLatch.messages` after the messages of a
#: read, for the reader to act on in order: end of stream, a failed ``recv``, a message over
#: ``max_message_size``, a WebSocket protocol violation (the payload is the exception).
OP_EOF = -1
OP_LOST = -2
OP_TOO_LARGE = -3
OP_VIOLATION = -4

_DATA_OPS = (OP_TEXT, OP_BINARY)
# A reader that asks for its socket back while stopping waits at most this long for its relief thread.
_TAKE_BACK_ON_STOP = 1.0
# Looks at an idle reader (no delivery entered or under way) before the relief thread stops
# polling and dozes until the reader's next delivery (100 ms at RELIEF_WATCH): an idle
# connection costs no wake-ups, a streaming one about 50 a second.
_IDLE_LOOKS = 5
# The longest doze between two checks of the stop request (stop() rouses it at once anyway).
_DOZE = 1.0


class ReliefSession:
    """What the relief thread needs of one session: set by the reader at the start of a session."""

    __slots__ = ("parser", "proto", "sock", "ws")

    def __init__(self, sock: Any, ws: websocket.WebSocket, parser: FrameParser, proto: Session) -> None:
        self.sock = sock
        self.ws = ws
        self.parser = parser
        self.proto = proto


class ReliefLatch:
    """The state a connection's reader and its relief thread share (see the module docstring).

    Attributes:
        gate: the adapter's gate (closed at a takeover; its ``relief_after`` is the interval), or
            None while no adaptive adapter dispatches from this connection (no takeover then).
        reader_ended: the reader thread ended (stopped or failed for good): the relief thread ends too.
        lock: guards the takeover against the reader leaving a delivery (never held across I/O).
        busy: odd while the reader is in one frame's callbacks; only the reader writes it.
        relieved: the relief thread holds the read token.
        want_back: the reader's callback returned; it waits for the token.
        dozing: the relief thread waits on ``wake`` (its reader delivered nothing inline for a
            while) instead of polling; the reader sets ``wake`` as it enters a delivery.
        wake: rouses a dozing relief thread (the reader's next delivery, or a stop).
        rest: the frames of the reader's current read item not taken yet, and their receive time.
        messages: parsed messages (and pseudo-opcodes) of one read not handled yet; the token
            holder's.
        held: the message (``(opcode, payload)``) the reader took from the parser and handles
            once the batch of data frames before it has been handed on, or None.
        taken: the relief thread took over since the reader last took the token back (the
            reader's own loop looks at it after handing frames on).
        received_at_ns: when the read those messages came from was received.
        session: the current session's socket, parser and session state (None between sessions).
    """

    __slots__ = (
        "_alarm", "_rung", "busy", "cond", "dozing", "gate", "held", "lock", "messages", "reader_ended",
        "received_at_ns", "relieved", "rest", "rest_ns", "session", "taken", "wake", "want_back",
    )  # fmt: skip

    def __init__(self, gate: InlineGate) -> None:
        self.gate: InlineGate | None = gate
        self.reader_ended = False
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.busy = 0
        self.relieved = False
        self.want_back = False
        self.rest: deque[bytes] = deque()
        self.rest_ns = 0
        self.messages: deque[tuple[int, Any]] = deque()
        self.held: tuple[int, Any] | None = None
        self.taken = False
        self.received_at_ns = 0
        self.session: ReliefSession | None = None
        self.dozing = False
        self.wake = threading.Event()
        self._alarm = threading.Lock()  # held until ring(): pause() sleeps on it
        self._alarm.acquire()
        self._rung = False

    def pause(self, seconds: float) -> bool:
        """The relief thread, between two looks at the reader: sleep ``seconds`` (one lock
        acquire: no Python runs meanwhile). True if :meth:`ring` cut it short."""
        return self._alarm.acquire(True, seconds)

    def ring(self) -> None:
        """End the relief thread's pause (or doze) at once: a stop, or the reader ended. Once is
        enough. Takes no lock (``stop()`` may run in a signal handler)."""
        if not self._rung:
            self._rung = True
            with contextlib.suppress(RuntimeError):  # two threads ringing at once: released already
                self._alarm.release()
        self.wake.set()

    def park_error(self, error: FrameTooLargeError | ProtocolViolationError) -> None:
        """The reader, handing on the frames before one the parser refused: a takeover meanwhile
        stops at the error (the parser may already be past a bad fragment: nothing after it is
        handled)."""
        self.held = (_error_opcode(error), error)

    def leave(self) -> bool:
        """The reader: one frame's callbacks returned. True if the relief thread took over meanwhile."""
        with self.lock:
            self.busy += 1
            return self.relieved

    def queue_rest(self, queue: FrameQueue, should_stop: Callable[[], bool] | None = None) -> None:
        """Queue the frames of the current read item not taken yet, as one item (order kept:
        they are the oldest frames of this connection not delivered)."""
        rest = self.rest
        frames = []
        while rest:
            frames.append(rest.popleft())
        if frames:
            ns = self.rest_ns
            queue.put([KIND_FRAMES, frames, ns, -1] if len(frames) > 1 else [KIND_DATA, frames[0], ns, -1],
                      should_stop)  # fmt: skip

    def retarget(self, gate: InlineGate | None) -> None:
        """The adapter dispatching from this connection changed (another adapter's gate, or None:
        no adaptive adapter any more): takeovers close that gate and count there, or none happen."""
        with self.lock:
            self.gate = gate

    def take_over(self, busy: int) -> bool:
        """The relief thread: take the read token if the reader is still in the delivery ``busy``."""
        with self.lock:
            if self.busy != busy or self.session is None or self.gate is None:
                return False
            self.relieved = True
            self.taken = True
            self.want_back = False
            self.gate.open = False  # the adaptive hand-over: later frames queue for the dispatcher
            self.gate.reliefs += 1
            return True

    def take_back(self, stopping: Callable[[], bool]) -> bool:
        """The reader, after its callback returned: wait until the relief thread hands the token back
        (within its interval; while stopping, at most a second). False if it gave up (stopping): the
        relief thread may still be using the socket, the parser and the messages."""
        with self.cond:
            self.taken = False
            self.want_back = True
            self.cond.notify_all()
            give_up = None
            while self.relieved:
                if stopping():
                    now = time.monotonic()
                    give_up = give_up or now + _TAKE_BACK_ON_STOP
                    if now >= give_up:
                        break
                self.cond.wait(0.05)
            self.want_back = False
            return not self.relieved

    def reclaim(self, parser: FrameParser, stopping: Callable[[], bool]) -> bool:
        """The reader, whose own loop found :attr:`taken` after handing frames on: take the token
        back (:meth:`take_back`) and leave the rest of the read it was parsing in ``messages``
        (:meth:`collect_rest`; the relief thread has normally done that already). False if it
        gave up (stopping)."""
        if not self.take_back(stopping):
            return False
        self.collect_rest(parser)
        return True

    def collect_rest(self, parser: FrameParser) -> None:
        """The token holder: put the held message, then the parser's complete messages, after
        ``messages`` (what is left of the reader's read, in order)."""
        held = self.held
        if held is not None:
            self.held = None
            self.messages.append(held)
        _parse_into(self.messages, parser)

    def hand_back(self) -> None:
        """The relief thread: the reader has the token again."""
        with self.cond:
            self.relieved = False
            self.cond.notify_all()

    def wait_for_reader(self, stopping: threading.Event, interval: float) -> None:
        """The relief thread, stopped at a frame for the reader: wait until it wants the token (or a stop)."""
        with self.cond:
            while not self.want_back and not stopping.is_set():
                self.cond.wait(interval)

    def begin(self, session: ReliefSession) -> None:
        """The reader: a new session (its socket and parser) starts; nothing of the last one is left."""
        with self.lock:
            self.messages.clear()
            self.held = None
            self.taken = False
            self.session = session

    def end(self) -> None:
        """The reader: the session ended."""
        with self.lock:
            self.session = None
            self.messages.clear()
            self.held = None


class ReliefReader(QueueConsumer):
    """Mixin for :class:`~massive_rt.MassiveWebSocketClient`: the relief thread and the
    relief-aware handling of a read (see the module docstring)."""

    _relief_thread: threading.Thread | None = None
    _reader_ended = False  # set as the reader thread ends: no relief thread starts, a running one ends
    _NOUN: str
    _life_lock: threading.RLock
    _stop_requested: threading.Event
    _frames: int
    _bytes: int
    _last_frame_mono: float | None

    def set_inline(self, gate: InlineGate | None) -> bool:
        """As :meth:`QueueConsumer.set_inline`; a gate with ``relief_after`` (``"adaptive"``) also
        starts this connection's relief thread, once."""
        accepted = super().set_inline(gate)
        adaptive = gate is not None and gate.relief_after is not None
        latch = self._relief
        if latch is not None:
            latch.retarget(gate if adaptive else None)
        elif adaptive:
            assert gate is not None
            with self._life_lock:
                if self._relief is None and not self._stop_requested.is_set() and not self._reader_ended:
                    latch = ReliefLatch(gate)
                    thread = threading.Thread(target=self._relief_run, args=(latch, gate.relief_after),
                                              name="massive-rt-relief-" + self._name, daemon=True)  # fmt: skip
                    self._relief_thread = thread
                    thread.start()
                    self._relief = latch  # from now on the reader counts its deliveries
        return accepted

    @property
    def relief_alive(self) -> bool:
        """True while this connection's relief thread runs (``dispatch="adaptive"``)."""
        thread = self._relief_thread
        return thread is not None and thread.is_alive()

    def _join_relief(self, timeout: float) -> bool:
        """After the stop request: wait for the relief thread; False if it is still running."""
        thread = self._relief_thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()

    # ------------------------------------------------------------------ relief thread

    def _relief_run(self, latch: ReliefLatch, interval: float) -> None:
        stopping = self._stop_requested
        seen = 0  # the value of busy at the last look
        relieved = 0  # the delivery taken over last (each one at most once)
        idle = 0  # looks in a row that found the reader outside any delivery, and no new one
        watch = max(interval, RELIEF_WATCH)
        try:
            while not stopping.is_set() and not latch.reader_ended:
                if idle >= _IDLE_LOOKS:
                    # Doze: the reader rouses us as it enters its next delivery. Either it sees
                    # ``dozing`` or we see its count move (both are plain stores under the GIL).
                    latch.dozing = True
                    if latch.busy == seen:
                        latch.wake.wait(_DOZE)
                    latch.dozing = False
                    latch.wake.clear()
                    idle = 0
                    seen = latch.busy
                    continue
                if latch.pause(interval if seen & 1 else watch):
                    break
                busy = latch.busy
                if busy & 1 and busy == seen and busy != relieved and latch.take_over(busy):
                    relieved = busy
                    try:
                        latch.queue_rest(self._queue, stopping.is_set)
                        self._relieve(latch, interval)
                    finally:
                        latch.hand_back()
                idle = idle + 1 if busy == seen and not busy & 1 else 0
                seen = busy
        except Exception:  # a bug: the reader keeps working without relief
            logger.exception("%s: relief reader crashed", self._name)

    def _rouse_relief(self) -> None:
        """Wake the relief thread (to see a stop request at once)."""
        latch = self._relief
        if latch is not None:
            latch.ring()

    def _end_relief(self) -> None:
        """The reader thread: it ends (stopped, or failed for good): so does the relief thread,
        within its interval (a client that failed on its own would otherwise keep it, and itself,
        alive until stop())."""
        with self._life_lock:
            self._reader_ended = True
            latch = self._relief
        if latch is not None:
            latch.reader_ended = True
            latch.ring()

    def _relieve(self, latch: ReliefLatch, interval: float) -> None:
        """Read the socket until the reader wants it back (or a frame needs the reader, or a stop)."""
        session = latch.session
        if session is None:
            return
        stopping = self._stop_requested
        sock = session.sock
        selector = selectors.DefaultSelector()
        try:
            selector.register(sock, selectors.EVENT_READ)
            latch.collect_rest(session.parser)  # the rest of the read the reader was handling
            while not stopping.is_set():
                if not self._relieve_messages(latch, session):
                    latch.wait_for_reader(stopping, interval)
                    return
                if latch.want_back:
                    return
                if (isinstance(sock, ssl.SSLSocket) and sock.pending()) or selector.select(interval):
                    self.read_messages(latch, session)
        except (OSError, ValueError, IndexError) as exc:  # the reader closed the session while stopping
            logger.debug("%s: relief reader ends its takeover: %s", self._name, exc)
        finally:
            selector.close()

    def _relieve_messages(self, latch: ReliefLatch, session: ReliefSession) -> bool:
        """Queue the data frames at the front of ``messages``, answer pings, note pongs; False at a
        message only the reader may handle (left at the front)."""
        messages = latch.messages
        proto = session.proto
        raw = self._raw
        put = self._queue.put
        should_stop = self._stop_requested.is_set
        batch: list[bytes] = []
        while messages:
            opcode, payload = messages[0]
            if opcode in _DATA_OPS and proto.authenticated and STATUS_MARK not in payload[:STATUS_WINDOW]:
                messages.popleft()
                self._frames += 1
                batch.append(payload)
                if raw or len(batch) == BATCH_FRAMES:
                    proto.on_relief_frames(batch, latch.received_at_ns, put, should_stop)
                    batch = []
                continue
            if batch:
                proto.on_relief_frames(batch, latch.received_at_ns, put, should_stop)
                batch = []
            if opcode == OP_PING:
                messages.popleft()
                self._frames += 1
                try:
                    session.ws.pong(payload)
                except (OSError, websocket.WebSocketException) as exc:
                    messages.appendleft((OP_LOST, exc))
                    return False
            elif opcode == OP_PONG:
                messages.popleft()
                self._frames += 1
                proto.on_pong()
            else:
                return False
        if batch:
            proto.on_relief_frames(batch, latch.received_at_ns, put, should_stop)
        return True

    # ------------------------------------------------------------------ both sides

    def read_messages(self, latch: ReliefLatch, session: ReliefSession) -> None:
        """One ``recv``: its messages (or what went wrong, as a pseudo-opcode) go to ``latch.messages``.
        Only the holder of the read token calls it, with ``latch.messages`` empty."""
        messages = latch.messages
        try:
            data = session.sock.recv(RECV_BYTES)
        except ssl.SSLWantReadError:
            return
        except (OSError, ssl.SSLError) as exc:
            messages.append((OP_LOST, exc))
            return
        if not data:
            messages.append((OP_EOF, b""))
            return
        latch.received_at_ns = time.time_ns()
        self._bytes += len(data)
        self._last_frame_mono = session.proto.recv_mono = time.monotonic()
        parser = session.parser
        parser.feed(data)
        _parse_into(messages, parser)

    def handle_messages(self, latch: ReliefLatch, transport: Transport) -> Outcome | None:
        """The reader: handle ``latch.messages`` (what the relief thread left of a read it took
        over) as the reader loop handles a read's messages, taking the token back whenever the
        relief thread took over again during a callback. Returns the outcome that ends the
        session, if one does."""
        session = latch.session
        assert session is not None
        proto = session.proto
        ws = session.ws
        messages = latch.messages
        raw = self._raw
        stopping = self._stop_requested.is_set
        self._backlog = len(messages) > BACKLOG_FRAMES
        batch: list[bytes] = []
        while True:
            if not messages:
                if not batch:
                    return None
                queue_batch(proto, batch, latch.received_at_ns)
                batch = []
                if latch.relieved and not latch.take_back(stopping):
                    return Outcome("stopped", stopped=True)  # gave up on the relief thread: hands off the socket
                continue
            opcode, payload = messages[0]
            if opcode in _DATA_OPS and proto.authenticated and STATUS_MARK not in payload[:STATUS_WINDOW]:
                messages.popleft()
                self._frames += 1
                batch.append(payload)
                if raw or len(batch) == BATCH_FRAMES:
                    queue_batch(proto, batch, latch.received_at_ns)
                    batch = []
                    if latch.relieved and not latch.take_back(stopping):
                        return Outcome("stopped", stopped=True)  # gave up on the relief thread: hands off the socket
                continue
            if batch:  # before popping the next message: a takeover during these callbacks starts there
                queue_batch(proto, batch, latch.received_at_ns)
                batch = []
                if latch.relieved and not latch.take_back(stopping):
                    return Outcome("stopped", stopped=True)  # gave up on the relief thread: hands off the socket
                continue
            messages.popleft()
            if opcode < 0:
                return _ended(opcode, payload, proto, transport)
            self._frames += 1
            if opcode in _DATA_OPS:
                outcome = proto.on_control_frame(payload, latch.received_at_ns)
                if outcome is not None:
                    return outcome
                if latch.relieved and not latch.take_back(stopping):  # its data objects ran callbacks here
                    return Outcome("stopped", stopped=True)  # gave up on the relief thread: hands off the socket
            elif opcode == OP_PING:
                ws.pong(payload)
            elif opcode == OP_PONG:
                proto.on_pong()
            elif opcode == OP_CLOSE:
                reply, outcome = proto.on_close(payload)
                transport.send_close(reply, "")
                return outcome


def queue_batch(proto: Session, batch: list[bytes], received_at_ns: int) -> None:
    """Hand the data frames of a read on to the session: one frame alone, several as one item."""
    if len(batch) == 1:
        proto.on_data(batch[0], received_at_ns)
    else:
        proto.on_data_frames(batch, received_at_ns)


def _parse_into(messages: deque[tuple[int, Any]], parser: FrameParser) -> None:
    """Append the parser's complete messages to ``messages``; a frame error ends them as a pseudo-opcode."""
    try:
        messages.extend(parser.messages())
    except FrameTooLargeError as exc:
        messages.append((OP_TOO_LARGE, exc))
    except ProtocolViolationError as exc:
        messages.append((OP_VIOLATION, exc))


def frame_error_outcome(error: FrameTooLargeError | ProtocolViolationError, proto: Session,
                        transport: Transport) -> Outcome:  # fmt: skip
    """A frame the parser refused: close the WebSocket with the matching code; the session is lost."""
    return _ended(_error_opcode(error), error, proto, transport)


def _error_opcode(error: FrameTooLargeError | ProtocolViolationError) -> int:
    """The pseudo-opcode of a frame the parser refused."""
    return OP_TOO_LARGE if isinstance(error, FrameTooLargeError) else OP_VIOLATION


def _ended(opcode: int, error: Any, proto: Session, transport: Transport) -> Outcome:
    """The outcome of a pseudo-opcode, as the reader loop reports it without a relief reader."""
    if opcode == OP_EOF:
        return proto.closed_without_frame()
    if opcode == OP_TOO_LARGE:
        transport.send_close(1009, "message too big")
        return proto.lost(f"closed: {error}")
    if opcode == OP_VIOLATION:
        transport.send_close(1002, "protocol error")
        return proto.lost(f"closed: WebSocket protocol error: {error}")
    return proto.lost(f"connection lost: {describe(error)}")
