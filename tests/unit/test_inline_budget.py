"""InlineBudget: when ``dispatch="adaptive"`` hands callbacks to the dispatcher and takes them back.

Pure logic: elapsed times are given, not measured.
"""

from __future__ import annotations

import pytest

import massive_rt as mrt
from massive_rt.inlinebudget import DEFAULT_BASE_STREAK, DEFAULT_INLINE_BUDGET, InlineBudget

SLOW = 1.0  # seconds: far over any budget here
FAST = 0.0


def handed_over(base_streak: int = 4, max_streak: int = 32) -> InlineBudget:
    budget = InlineBudget(0.001, base_streak=base_streak, max_streak=max_streak)
    assert budget.after_inline(1, SLOW) is True
    return budget


def test_defaults_are_a_millisecond_and_a_streak_of_32() -> None:
    budget = InlineBudget()
    assert (budget.budget, budget.streak, DEFAULT_INLINE_BUDGET, DEFAULT_BASE_STREAK) == (0.001, 32, 0.001, 32)
    assert (budget.inline, budget.handovers, budget.returns) == (True, 0, 0)


def test_deliveries_within_budget_stay_inline() -> None:
    budget = InlineBudget(0.001)
    for _ in range(1000):
        assert budget.after_inline(10, 0.001) is False  # exactly the budget is within it
    assert (budget.inline, budget.handovers) == (True, 0)


def test_one_delivery_over_budget_hands_over_once() -> None:
    budget = InlineBudget(0.001)
    assert budget.after_inline(1, 0.0011) is True
    assert (budget.inline, budget.handovers) == (False, 1)
    assert budget.after_inline(1, SLOW) is False  # already handed over (a delivery that was under way)
    assert budget.handovers == 1


def test_return_needs_the_whole_streak_of_fast_events_and_an_idle_dispatcher() -> None:
    budget = handed_over(base_streak=4)
    assert budget.may_return() is False
    budget.after_round(3, FAST)
    assert budget.may_return() is False  # 3 of 4
    budget.after_round(1, FAST)
    assert budget.may_return() is True
    assert (budget.inline, budget.returns) == (True, 1)
    assert budget.may_return() is False  # already inline


def test_a_slow_round_starts_the_streak_again() -> None:
    budget = handed_over(base_streak=4)
    budget.after_round(3, FAST)
    budget.after_round(1, SLOW)
    budget.after_round(3, FAST)
    assert budget.may_return() is False
    budget.after_round(1, FAST)
    assert budget.may_return() is True


def test_rounds_while_inline_do_not_count() -> None:
    budget = InlineBudget(0.001, base_streak=4)
    budget.after_round(100, FAST)  # frames that queued anyway while inline
    assert budget.after_inline(1, SLOW) is True
    assert budget.may_return() is False


def test_a_callback_slow_again_soon_after_each_return_doubles_the_streak_up_to_the_cap() -> None:
    budget = handed_over(base_streak=4, max_streak=16)
    streaks = []
    for _ in range(4):
        budget.after_round(budget.streak, FAST)
        assert budget.may_return() is True
        budget.after_inline(1, FAST)
        assert budget.after_inline(1, SLOW) is True  # 2 events inline: fewer than the streak
        streaks.append(budget.streak)
    assert streaks == [8, 16, 16, 16]
    assert (budget.handovers, budget.returns) == (5, 4)


def test_a_long_inline_stint_resets_the_streak() -> None:
    budget = handed_over(base_streak=4, max_streak=64)
    budget.after_round(4, FAST)
    budget.may_return()
    budget.after_inline(1, SLOW)
    assert budget.streak == 8
    budget.after_round(8, FAST)
    budget.may_return()
    budget.after_inline(8, FAST)  # as long inline as the dispatcher had to prove itself
    budget.after_inline(1, SLOW)
    assert budget.streak == 4


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"budget": 0}, "inline_budget"),
        ({"budget": -0.001}, "inline_budget"),
        ({"budget": float("inf")}, "inline_budget"),
        ({"budget": "1ms"}, "inline_budget"),
        ({"budget": True}, "inline_budget"),
        ({"base_streak": 0}, "base_streak"),
        ({"base_streak": 8, "max_streak": 4}, "max_streak"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(mrt.ConfigurationError, match=field) as raised:
        InlineBudget(**kwargs)  # type: ignore[arg-type]
    assert raised.value.field == field


def test_a_relief_hands_over_whatever_the_time_once_and_the_streak_rules_apply() -> None:
    budget = InlineBudget(0.001, base_streak=4, max_streak=32)
    assert budget.hand_over() is True  # a relief reader took over: hand over even at FAST
    assert (budget.inline, budget.handovers, budget.streak) == (False, 1, 4)
    assert budget.hand_over() is False  # already handed over
    budget.after_round(4, FAST)
    assert budget.may_return() is True
    assert budget.hand_over() is True  # soon after the return: flapping doubles the streak
    assert (budget.handovers, budget.streak) == (2, 8)
