"""The chaos suite's two halves: a publisher of sequence-numbered trades and the ledger that checks
what a consumer saw against what was published.

The accounting invariant, per symbol: every published sequence number was delivered exactly once
and in order, or it lies inside a reported window — a ``gap`` status, between the two deliveries
around the hole, whose ``last_seen`` mark for that symbol is the delivery before the hole — or it
is counted in a ``dropped`` status between them. Nothing else may happen.

A counted ledger (``Ledger(counted=True)``, for a pipeline through Redis) holds the reports to
their numbers as well: a ``gap`` status without ``last_seen`` marks (a ``RedisStreamSource``'s
hole in a stream: ``dropped`` entries vanished, in order with the data) explains the holes of every
symbol it falls between; a ``dropped`` status (the ``RedisStreamSink`` announcing its buffer's
overflow, on the status stream) may arrive after the trades that follow its hole, so such holes wait
for it. At the end the numbers must add up exactly: the trades missing from every symbol's stream
equal the sum of the gaps' and the drops' ``dropped`` counts, and the holes no gap explains are
covered by the drops.
"""

from __future__ import annotations

import os
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import massive_rt as mrt
from massive_rt.testing import MockMassiveServer

#: Seconds of faults per scenario in ``make test``; ``make chaos`` runs minutes.
CHAOS_SECONDS = float(os.environ.get("MASSIVE_RT_CHAOS_SECONDS", "3"))


class Publisher:
    """A thread publishing one trade per symbol per step, ``q`` counting from 1 per symbol and ``t``
    (exchange time, ms) growing by one per step, until :meth:`stop`."""

    def __init__(self, server: MockMassiveServer, symbols: Sequence[str], *, step_every: float = 0.002) -> None:
        self.server = server
        self.symbols = list(symbols)
        self.step_every = step_every
        self.last: dict[str, int] = dict.fromkeys(self.symbols, 0)
        self.steps = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-publisher", daemon=True)

    def start(self) -> Publisher:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.step_every):  # pacing, not synchronisation
            self.steps += 1
            trades = [{"ev": "T", "sym": sym, "p": 100.0, "s": 1, "t": 1_700_000_000_000 + self.steps,
                       "q": self.last[sym] + 1} for sym in self.symbols]  # fmt: skip
            self.server.publish(trades, batch=len(trades))
            for sym in self.symbols:
                self.last[sym] += 1

    def stop(self) -> dict[str, int]:
        """Stop and return the last sequence number published per symbol."""
        self._stop.set()
        self._thread.join(10)
        assert not self._thread.is_alive(), "the publisher is stuck in publish()"
        return dict(self.last)


class Ledger:
    """A handler (for an adapter or a drain loop) keeping, per symbol, the stream a consumer saw."""

    def __init__(self, *, counted: bool = False, symbols: Sequence[str] = (), trade_streams: Sequence[str] = ()
                 ) -> None:  # fmt: skip
        """``counted``: reports carry exact counts, drops may trail (see the module docstring);
        ``symbols``: their sequences start at 1 here, so a hole before the first delivery counts too;
        ``trade_streams``: only gaps of these streams count as missing trades (a gap of the status
        stream counts statuses; all are kept in ``gaps_by_stream``)."""
        self.counted = counted
        self.trade_streams = frozenset(trade_streams)
        self.gaps_by_stream: Counter[str] = Counter()
        self.cond = threading.Condition()
        self.seen: dict[str, list[tuple[str, Any]]] = defaultdict(list)  # symbol -> [("T", q) | ("gap", mark q)]
        self.dropped_since: dict[str, int] = defaultdict(int)  # dropped counted since that symbol's last delivery
        self.last: dict[str, int] = dict.fromkeys(symbols, 0)
        self.stream_gap_since: set[str] = set()  # symbols with an unmarked (stream) gap since their last delivery
        self.reported = {"gap": 0, "dropped": 0}  # sums of the reports' ``dropped`` counts (counted ledger)
        self.statuses: list[mrt.StatusMessage] = []
        self.holes: dict[str, list[tuple[int, int, str]]] = defaultdict(list)  # symbol -> (after, before, how)
        self.problems: list[str] = []

    def __call__(self, event: mrt.Event) -> None:
        with self.cond:
            if isinstance(event, mrt.StatusMessage):
                self._status(event)
            elif isinstance(event, mrt.EquityTrade):
                self._trade(event)
            self.cond.notify_all()

    def _status(self, status: mrt.StatusMessage) -> None:
        self.statuses.append(status)
        if status.status == "dropped":
            self.reported["dropped"] += status.dropped
            for sym in self.last:
                self.dropped_since[sym] += status.dropped
        elif status.status == "gap":
            for mark in status.last_seen:
                if mark.ev == "T":
                    self.seen[mark.symbol].append(("gap", mark.sequence))
            if self.counted and not status.last_seen:
                for stream in status.channels:
                    self.gaps_by_stream[stream] += status.dropped
                if not self.trade_streams or self.trade_streams.intersection(status.channels):
                    self.reported["gap"] += status.dropped
                    self.stream_gap_since.update(self.last)

    def _trade(self, trade: mrt.EquityTrade) -> None:
        sym, q = trade.symbol, trade.sequence_number
        assert sym is not None
        assert isinstance(q, int)
        previous = self.last.get(sym)
        if previous is not None:
            if q <= previous:  # the stream goes on from ``previous``: a duplicate opens no phantom hole
                self.problems.append(f"{sym}: {q} delivered after {previous} (duplicate or reordered)")
                return
            if q > previous + 1:
                how = self._explain(sym, previous, q)
                if how is None and self.counted:
                    how = "dropped later"  # settled by the totals in verify()
                if how is None:
                    self.problems.append(f"{sym}: {q - previous - 1} trades after q={previous} lost with no "
                                         f"gap window starting there and no drop reported")  # fmt: skip
                else:
                    self.holes[sym].append((previous, q, how))
        self.seen[sym].append(("T", q))
        self.last[sym] = q
        self.dropped_since[sym] = 0
        self.stream_gap_since.discard(sym)

    def _explain(self, sym: str, previous: int, q: int) -> str | None:
        """How the hole (previous, q) was reported, if it was."""
        for kind, value in reversed(self.seen[sym]):
            if kind == "T":
                break
            if kind == "gap" and value == previous:
                return "gap"
        if sym in self.stream_gap_since:
            return "stream gap"
        if self.dropped_since[sym] >= q - previous - 1:
            return "dropped"
        return None

    def wait_for(self, last: dict[str, int], timeout: float) -> bool:
        """Wait until every symbol's last published sequence number was delivered."""
        with self.cond:
            return self.cond.wait_for(lambda: all(self.last.get(s, 0) >= q for s, q in last.items()), timeout)

    def missing(self, how: str | None = None) -> int:
        """Trades missing in the holes seen so far (only those explained as ``how``, if given)."""
        with self.cond:
            return sum(b - a - 1 for holes in self.holes.values() for a, b, kind in holes if how in (None, kind))

    def settled(self) -> bool:
        """A counted ledger: every missing trade is reported (the trailing drop reports arrived)."""
        with self.cond:
            return self.missing() == self.reported["gap"] + self.reported["dropped"]

    def verify(self, published: dict[str, int]) -> dict[str, int]:
        """Assert the accounting invariant; return counts (delivered, holes by kind) for the report."""
        with self.cond:
            assert self.problems == [], "\n".join(self.problems[:20])
            delivered = sum(sum(1 for kind, _ in entries if kind == "T") for entries in self.seen.values())
            missing = self.missing()
            for sym, q in published.items():
                assert self.last.get(sym) == q, f"{sym}: last delivered {self.last.get(sym)}, published {q}"
            report = {"delivered": delivered, "missing_in_windows": missing,
                      "gaps": sum(1 for s in self.statuses if s.status == "gap"),
                      "dropped_statuses": sum(1 for s in self.statuses if s.status == "dropped")}  # fmt: skip
            if self.counted:
                assert delivered + missing == sum(published.values()), (delivered, missing, published)
                assert missing == self.reported["gap"] + self.reported["dropped"], (
                    f"{missing} trades missing, reported: {self.reported}"
                )
                waiting = self.missing("dropped later")
                assert waiting <= self.reported["dropped"], (
                    f"{waiting} trades missing with no gap before them, only {self.reported['dropped']} "
                    "reported dropped"
                )
                report.update(reported_gap=self.reported["gap"], reported_dropped=self.reported["dropped"])
            return report


def run_phases(phases: Sequence[tuple[str, Callable[[], object]]], each: float, stop: threading.Event) -> None:
    """Apply each fault for ``each`` seconds (waiting on ``stop``, so a failing test ends early)."""
    for _name, apply in phases:
        apply()
        if stop.wait(each):
            return
