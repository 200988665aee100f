"""ReliefLatch: the takeover of a stuck reader's socket and the way back, as pure state changes.

No threads: each call stands for one side (R, the reader; T, the relief thread) at one moment.
"""

from __future__ import annotations

from collections import deque

from massive_rt.consumer import InlineGate
from massive_rt.enums import Overflow
from massive_rt.eventqueue import KIND_DATA, KIND_FRAMES, FrameQueue
from massive_rt.relief import ReliefLatch, ReliefSession


def latch_in_a_session() -> ReliefLatch:
    latch = ReliefLatch(InlineGate(lambda events: None, relief_after=0.005))
    latch.begin(ReliefSession(sock=None, ws=None, parser=None, proto=None))  # type: ignore[arg-type]
    return latch


def test_the_relief_thread_takes_over_only_the_delivery_it_saw_and_only_in_a_session() -> None:
    latch = ReliefLatch(InlineGate(lambda events: None, relief_after=0.005))
    latch.busy = 1
    assert latch.take_over(1) is False  # no session yet: nothing to read
    latch = latch_in_a_session()
    latch.busy = 1  # R entered a delivery
    assert latch.take_over(3) is False  # another delivery than the one T saw twice
    assert latch.leave() is False  # R left before any takeover: it carries on
    assert latch.take_over(1) is False  # busy moved on (2): too late
    latch.busy += 1  # R entered the next delivery (3)
    assert latch.take_over(3) is True
    assert (latch.relieved, latch.gate.open, latch.gate.reliefs) == (True, False, 1)
    assert latch.leave() is True  # R sees the takeover as its callback returns: it stops there


def test_the_frames_the_reader_has_not_taken_are_queued_as_one_item_in_order() -> None:
    queue = FrameQueue(1 << 20, Overflow.DROP_OLDEST, unit="bytes")
    latch = latch_in_a_session()
    latch.rest, latch.rest_ns = deque([b"[1]", b"[2]", b"[3]"]), 7
    latch.queue_rest(queue)
    assert queue.get_many(10) == [[KIND_FRAMES, [b"[1]", b"[2]", b"[3]"], 7, 9]]
    latch.rest.append(b"[4]")
    latch.queue_rest(queue)
    latch.queue_rest(queue)  # nothing left: nothing queued
    assert queue.get_many(10) == [[KIND_DATA, b"[4]", 7, 3]]


def test_the_reader_takes_the_token_back_at_once_when_it_was_handed_back() -> None:
    latch = latch_in_a_session()
    latch.busy = 1
    assert latch.take_over(1)
    latch.hand_back()
    assert latch.take_back(lambda: False) is True  # returns: the token is back
    assert (latch.relieved, latch.want_back) == (False, False)
    latch.end()
    assert latch.session is None
    assert not latch.messages


def test_a_stopping_reader_gives_up_on_a_relief_thread_that_keeps_the_token_and_says_so() -> None:
    # The relief thread is blocked (a pong to a peer that does not read): the stopping reader must
    # not go on with the socket, the parser or the messages — take_back tells it (False).
    latch = latch_in_a_session()
    latch.busy = 1
    assert latch.take_over(1)
    assert latch.take_back(lambda: True) is False  # after its bounded wait (about a second)
    assert latch.relieved is True
    assert latch.want_back is False


def test_a_latch_without_an_adaptive_gate_never_takes_over_and_a_new_gate_gets_the_takeover() -> None:
    latch = latch_in_a_session()
    first = latch.gate
    assert first is not None
    latch.retarget(None)  # the adapter went (or dispatches "thread" / "inline" now)
    latch.busy = 1
    assert latch.take_over(1) is False
    assert (latch.relieved, first.open, first.reliefs) == (False, True, 0)
    second = InlineGate(lambda events: None, relief_after=0.005)
    latch.retarget(second)  # another adaptive adapter adopted the connection
    assert latch.take_over(1) is True
    assert (second.open, second.reliefs) == (False, 1)
    assert (first.open, first.reliefs) == (True, 0)
