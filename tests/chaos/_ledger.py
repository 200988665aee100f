"""The chaos suite's two halves: a publisher of sequence-numbered trades and the ledger that checks
what a consumer saw against what was published.

The accounting invariant, per symbol: every published sequence number was delivered exactly once
and in order, or it lies inside a reported window — a ``gap`` status, between the two deliveries
around the hole, whose ``last_seen`` mark for that symbol is the delivery before the hole — or it
is counted in a ``dropped`` status between them. Nothing else may happen.
"""

from __future__ import annotations

import os
import threading
from collections import defaultdict
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

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.seen: dict[str, list[tuple[str, Any]]] = defaultdict(list)  # symbol -> [("T", q) | ("gap", mark q)]
        self.dropped_since: dict[str, int] = defaultdict(int)  # dropped counted since that symbol's last delivery
        self.last: dict[str, int] = {}
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
            for sym in self.last:
                self.dropped_since[sym] += status.dropped
        elif status.status == "gap":
            for mark in status.last_seen:
                if mark.ev == "T":
                    self.seen[mark.symbol].append(("gap", mark.sequence))

    def _trade(self, trade: mrt.EquityTrade) -> None:
        sym, q = trade.symbol, trade.sequence_number
        assert sym is not None
        assert isinstance(q, int)
        previous = self.last.get(sym)
        if previous is not None:
            if q <= previous:
                self.problems.append(f"{sym}: {q} delivered after {previous} (duplicate or reordered)")
            elif q > previous + 1:
                how = self._explain(sym, previous, q)
                if how is None:
                    self.problems.append(f"{sym}: {q - previous - 1} trades after q={previous} lost with no "
                                         f"gap window starting there and no drop reported")  # fmt: skip
                else:
                    self.holes[sym].append((previous, q, how))
        self.seen[sym].append(("T", q))
        self.last[sym] = q
        self.dropped_since[sym] = 0

    def _explain(self, sym: str, previous: int, q: int) -> str | None:
        """How the hole (previous, q) was reported, if it was."""
        for kind, value in reversed(self.seen[sym]):
            if kind == "T":
                break
            if kind == "gap" and value == previous:
                return "gap"
        if self.dropped_since[sym] >= q - previous - 1:
            return "dropped"
        return None

    def wait_for(self, last: dict[str, int], timeout: float) -> bool:
        """Wait until every symbol's last published sequence number was delivered."""
        with self.cond:
            return self.cond.wait_for(lambda: all(self.last.get(s, 0) >= q for s, q in last.items()), timeout)

    def verify(self, published: dict[str, int]) -> dict[str, int]:
        """Assert the accounting invariant; return counts (delivered, holes by kind) for the report."""
        with self.cond:
            assert self.problems == [], "\n".join(self.problems[:20])
            delivered = sum(sum(1 for kind, _ in entries if kind == "T") for entries in self.seen.values())
            missing = sum(b - a - 1 for holes in self.holes.values() for a, b, _ in holes)
            for sym, q in published.items():
                assert self.last.get(sym) == q, f"{sym}: last delivered {self.last.get(sym)}, published {q}"
            return {"delivered": delivered, "missing_in_windows": missing,
                    "gaps": sum(1 for s in self.statuses if s.status == "gap"),
                    "dropped_statuses": sum(1 for s in self.statuses if s.status == "dropped")}  # fmt: skip


def run_phases(phases: Sequence[tuple[str, Callable[[], object]]], each: float, stop: threading.Event) -> None:
    """Apply each fault for ``each`` seconds (waiting on ``stop``, so a failing test ends early)."""
    for _name, apply in phases:
        apply()
        if stop.wait(each):
            return
