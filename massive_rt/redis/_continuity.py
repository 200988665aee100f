"""Continuity of producer sequences in a stream: which entries vanished between two that a source read.

Pure logic, no I/O and no threads (the source's reader thread owns one :class:`ContinuityChecker`).

Every entry a :class:`~massive_rt.redis.RedisStreamSink` writes carries its producer ``epoch`` (an
opaque token, new at every sink start) and ``seq`` (1, 2, 3 … per stream and epoch, in stream
order). Per ``(stream, epoch)`` the checker remembers the highest sequence seen and the entry that
carried it:

- the first entry of an epoch sets the baseline (a source that starts with ``$`` joins mid-stream);
- ``seq == last + 1`` is continuity;
- ``seq <= last`` is a repeat (at-least-once re-delivery, a group re-read from ``0``, a claimed
  entry): not a gap, nothing changes;
- ``seq > last + 1`` is a :class:`Candidate`: ``last + 1 .. seq - 1`` were not seen here. Whether
  they vanished or went to another consumer of the same group, only the stream can tell: the
  source looks up what still exists between the two entries and :func:`missing_runs` gives the
  sequences that exist nowhere.

Several producers writing one stream interleave; each epoch is checked on its own. At most
``max_epochs`` epochs are remembered per stream (the first one seen is forgotten first; an epoch
seen again after that starts a new baseline).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import attrs

__all__ = ["Candidate", "ContinuityChecker", "Gap", "missing_runs"]

#: Epochs remembered per stream (each sink start is a new one).
DEFAULT_MAX_EPOCHS: Final = 256


@attrs.frozen(kw_only=True)
class Candidate:
    """Sequences ``first .. last`` of ``epoch`` in ``stream`` were not seen between two entries.

    Attributes:
        stream: the stream.
        epoch: the producer epoch.
        first: first sequence not seen.
        last: last sequence not seen.
        after_id: id of the entry before the hole (the last one seen of the epoch).
        before_id: id of the entry after the hole (the one just seen).
        after_ns: ``received_at_ns`` of the entry before the hole.
        before_ns: ``received_at_ns`` of the entry after the hole.
    """

    stream: str
    epoch: bytes
    first: int
    last: int
    after_id: bytes
    before_id: bytes
    after_ns: int
    before_ns: int


@attrs.frozen(kw_only=True)
class Gap:
    """Sequences ``first .. last`` (``count`` entries) of ``epoch`` in ``stream`` vanished."""

    stream: str
    epoch: bytes
    first: int
    last: int
    after_ns: int
    before_ns: int

    @property
    def count(self) -> int:
        """How many entries vanished."""
        return self.last - self.first + 1


class ContinuityChecker:
    """Follows ``(stream, epoch) -> last sequence`` and reports holes as :class:`Candidate`.

    Attributes:
        repeats: entries seen with a sequence at or below the last one of their epoch.
    """

    def __init__(self, max_epochs: int = DEFAULT_MAX_EPOCHS) -> None:
        self._max_epochs = max_epochs
        self._last: dict[str, dict[bytes, tuple[int, bytes, int]]] = {}
        self.repeats = 0

    def observe(self, stream: str, epoch: bytes, seq: int, entry_id: bytes, received_at_ns: int) -> Candidate | None:
        """Note one entry, in the order read; a :class:`Candidate` when sequences were skipped."""
        epochs = self._last.get(stream)
        if epochs is None:
            epochs = self._last[stream] = {}
        seen = epochs.get(epoch)
        if seen is None:
            if len(epochs) >= self._max_epochs:
                del epochs[next(iter(epochs))]
            epochs[epoch] = (seq, entry_id, received_at_ns)
            return None
        last, last_id, last_ns = seen
        if seq <= last:
            self.repeats += 1
            return None
        epochs[epoch] = (seq, entry_id, received_at_ns)
        if seq == last + 1:
            return None
        return Candidate(stream=stream, epoch=epoch, first=last + 1, last=seq - 1, after_id=last_id,
                         before_id=entry_id, after_ns=last_ns, before_ns=received_at_ns)  # fmt: skip


def missing_runs(candidate: Candidate, present: Iterable[int]) -> list[Gap]:
    """The runs of ``candidate``'s sequences that are not in ``present`` (those that still exist)."""
    out: list[Gap] = []
    expected = candidate.first
    for seq in sorted({seq for seq in present if candidate.first <= seq <= candidate.last}):
        if seq > expected:
            out.append(_gap(candidate, expected, seq - 1))
        expected = seq + 1
    if expected <= candidate.last:
        out.append(_gap(candidate, expected, candidate.last))
    return out


def _gap(candidate: Candidate, first: int, last: int) -> Gap:
    return Gap(stream=candidate.stream, epoch=candidate.epoch, first=first, last=last, after_ns=candidate.after_ns,
               before_ns=candidate.before_ns)  # fmt: skip
