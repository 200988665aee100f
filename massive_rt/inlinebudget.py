"""When ``dispatch="adaptive"`` lets reader threads run callbacks: a budget with hysteresis.

Pure bookkeeping, no threads, no clock of its own: the adapter times each inline delivery (one
frame's callbacks on a reader) and each dispatcher round, and asks this object what to do.

- **Hand-over.** An inline delivery that took longer than ``budget`` seconds sends every later
  frame through the queue and the dispatcher thread (the reader goes back to its socket).
- **Return.** The readers may run callbacks again once the dispatcher has drained every queue
  and its last ``streak`` dispatched events came in rounds of at most ``budget`` each.
- **Hysteresis.** ``streak`` starts at ``base_streak`` events; a hand-over that comes sooner
  than that after the last return (a callback that is slow now and then) doubles it, up to
  ``max_streak``; a hand-over after a longer inline stint resets it. A callback that is often
  slow therefore stays on the dispatcher, and one that is slow once costs one short detour.

Not thread-safe by itself: the adapter calls it under its gate lock (one caller at a time).
"""

from __future__ import annotations

import logging

from ._validate import require_int, require_number

__all__ = ["DEFAULT_BASE_STREAK", "DEFAULT_INLINE_BUDGET", "DEFAULT_MAX_STREAK", "InlineBudget"]

logger = logging.getLogger(__name__)

#: Seconds one frame's callbacks may take on a reader before callbacks move to the dispatcher.
DEFAULT_INLINE_BUDGET = 0.001
#: Fast events the dispatcher must deliver, after a hand-over, before readers dispatch again.
DEFAULT_BASE_STREAK = 32
#: The most fast events ever required (a callback slow again and again).
DEFAULT_MAX_STREAK = 4096


class InlineBudget:
    """Decides whether callbacks may run on reader threads (see the module docstring).

    Args:
        budget: seconds one inline delivery (one frame's callbacks) may take; > 0.
        base_streak: fast events the dispatcher delivers before readers may dispatch again.
        max_streak: the cap of the doubling streak.

    Attributes:
        inline: True while readers may run callbacks.
        handovers: times callbacks moved from the readers to the dispatcher.
        returns: times they moved back.
        streak: fast dispatcher events needed for the next return.
    """

    __slots__ = ("_base", "_fast", "_inline_events", "_max", "budget", "handovers", "inline", "returns", "streak")

    def __init__(
        self,
        budget: float = DEFAULT_INLINE_BUDGET,
        base_streak: int = DEFAULT_BASE_STREAK,
        max_streak: int = DEFAULT_MAX_STREAK,
    ) -> None:
        self.budget = require_number("inline_budget", budget, strict=True)
        require_int("base_streak", base_streak)
        require_int("max_streak", max_streak, minimum=base_streak)
        self._base = base_streak
        self._max = max_streak
        self.streak = base_streak
        self.inline = True
        self.handovers = 0
        self.returns = 0
        self._fast = 0  # fast events the dispatcher delivered since the hand-over
        self._inline_events = 0  # events delivered inline since the last return

    def after_inline(self, events: int, elapsed: float) -> bool:
        """An inline delivery of ``events`` took ``elapsed`` seconds. True: hand over now."""
        self._inline_events += events
        if elapsed <= self.budget or not self.inline:
            return False
        self._hand_over()
        return True

    def hand_over(self) -> bool:
        """Hand over now whatever the time (a relief reader took over a reader stuck in a callback,
        which the budget's clock may not show). True if callbacks were inline until now."""
        if not self.inline:
            return False
        self._hand_over()
        return True

    def _hand_over(self) -> None:
        self.inline = False
        self.handovers += 1
        # Slow again before it had stayed inline as long as the dispatcher had to prove itself:
        # make the next proof longer, so a callback slow every few events does not flap.
        flapping = self.returns > 0 and self._inline_events < self.streak
        self.streak = min(self.streak * 2, self._max) if flapping else self._base
        self._fast = 0

    def after_round(self, events: int, elapsed: float) -> None:
        """The dispatcher delivered ``events`` in one round taking ``elapsed`` seconds."""
        if self.inline:
            return
        self._fast = self._fast + events if elapsed <= self.budget else 0

    def may_return(self) -> bool:
        """The dispatcher found every queue empty: True if readers may dispatch again (now inline)."""
        if self.inline or self._fast < self.streak:
            return False
        self.inline = True
        self.returns += 1
        self._inline_events = 0
        return True
