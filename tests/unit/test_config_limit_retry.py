"""LimitRetry, the cooldown after ``max_connections``: each wait (cooldown, x2, x4, capped at
max_cooldown), the per-hour budget, the bookkeeping of ``schedule`` and which ``on_limit`` retries."""

from __future__ import annotations

import collections

import pytest

import massive_rt as mrt
from massive_rt.config import LimitRetry, limit_retry_for

HOUR = 3600.0


def test_defaults_are_a_minute_growing_to_an_hour_three_times_an_hour() -> None:
    policy = LimitRetry()
    assert (policy.cooldown, policy.max_cooldown, policy.per_hour) == (60.0, 3600.0, 3)


def test_the_waits_double_after_each_retry_of_the_last_hour() -> None:
    policy = LimitRetry(cooldown=10.0, max_cooldown=1000.0, per_hour=10)
    assert policy.delay([], 100.0) == 10.0
    assert policy.delay([90.0], 100.0) == 20.0
    assert policy.delay([80.0, 90.0], 100.0) == 40.0
    assert policy.delay([70.0, 80.0, 90.0], 100.0) == 80.0


def test_a_wait_is_capped_at_max_cooldown() -> None:
    policy = LimitRetry(cooldown=10.0, max_cooldown=30.0, per_hour=10)
    assert policy.delay([99.0], 100.0) == 20.0
    assert policy.delay([98.0, 99.0], 100.0) == 30.0  # 40, capped
    assert policy.delay([float(t) for t in range(9)], 100.0) == 30.0


def test_a_huge_number_of_recent_retries_does_not_overflow() -> None:
    policy = LimitRetry(cooldown=1.0, max_cooldown=HOUR, per_hour=5000)
    assert policy.delay([float(t) for t in range(2000)], 2000.0) == HOUR


def test_retries_older_than_an_hour_no_longer_count() -> None:
    policy = LimitRetry(cooldown=10.0, max_cooldown=1000.0, per_hour=10)
    now = 10_000.0
    assert policy.delay([now - HOUR], now) == 10.0  # exactly an hour ago: out of the window
    assert policy.delay([now - HOUR + 0.5], now) == 20.0  # just inside it


def test_the_hour_budget_waits_until_its_oldest_retry_ages_out() -> None:
    policy = LimitRetry(cooldown=10.0, max_cooldown=100.0, per_hour=2)
    now = 1000.0
    assert policy.delay([now - 5.0], now) == 20.0  # one retry this hour: budget left
    # Two retries within the hour: the budget is spent; the older one (t=800) leaves the window at 4400.
    assert policy.delay([800.0, 990.0], now) == 800.0 + HOUR - now
    # The cooldown wins when it is longer than the time left in the window.
    long = LimitRetry(cooldown=3000.0, max_cooldown=HOUR, per_hour=2)
    assert long.delay([now - 3500.0, now - 3400.0], now) == HOUR


def test_the_budget_counts_back_per_hour_retries_from_the_newest() -> None:
    policy = LimitRetry(cooldown=1.0, max_cooldown=1.0, per_hour=2)
    now = 5000.0
    # Three retries in the window: the next may start an hour after the second newest (2 = per_hour back).
    assert policy.delay([now - 30.0, now - 20.0, now - 10.0], now) == (now - 20.0) + HOUR - now


def test_schedule_records_when_the_retry_will_start_and_returns_the_wait() -> None:
    policy = LimitRetry(cooldown=10.0, max_cooldown=1000.0, per_hour=3)
    retries: collections.deque[float] = collections.deque()
    assert policy.schedule(retries, 100.0) == 10.0
    assert list(retries) == [110.0]
    assert policy.schedule(retries, 120.0) == 20.0
    assert list(retries) == [110.0, 140.0]


def test_schedule_forgets_retries_an_hour_old_or_older() -> None:
    policy = LimitRetry(cooldown=10.0, max_cooldown=1000.0, per_hour=3)
    now = 20_000.0
    retries = collections.deque([now - HOUR - 1.0, now - HOUR, now - 100.0])
    assert policy.schedule(retries, now) == 20.0  # only the retry 100 s ago counts
    assert list(retries) == [now - 100.0, now + 20.0]


def test_schedule_in_a_refusal_loop_keeps_the_documented_waits() -> None:
    policy = LimitRetry(cooldown=60.0, max_cooldown=HOUR, per_hour=3)
    retries: collections.deque[float] = collections.deque()
    now = 0.0
    waits = []
    for _ in range(5):  # refused again as soon as each retry starts
        wait = policy.schedule(retries, now)
        waits.append(wait)
        now += wait
    # 60, 120, 240; then the budget (3 an hour): the 4th waits until the 1st leaves the window.
    assert waits[:3] == [60.0, 120.0, 240.0]
    assert now - waits[-1] - waits[-2] == 420.0
    assert waits[3] == 60.0 + HOUR - 420.0
    assert len(retries) <= 3 + 1


@pytest.mark.parametrize("per_hour", [0, -1, 1.5, True, "3", None])
def test_per_hour_must_be_a_positive_int(per_hour: object) -> None:
    with pytest.raises(mrt.ConfigurationError, match="per_hour") as caught:
        LimitRetry(per_hour=per_hour)  # type: ignore[arg-type]
    assert caught.value.field == "per_hour"


@pytest.mark.parametrize("field", ["cooldown", "max_cooldown"])
@pytest.mark.parametrize("value", [0, -1.0, float("inf"), float("nan"), True, "60"])
def test_cooldowns_must_be_positive_finite_numbers(field: str, value: object) -> None:
    with pytest.raises(mrt.ConfigurationError, match=field) as caught:
        LimitRetry(**{field: value})  # type: ignore[arg-type]
    assert caught.value.field == field


def test_cooldown_may_equal_max_cooldown_but_not_exceed_it() -> None:
    assert LimitRetry(cooldown=5.0, max_cooldown=5.0).cooldown == 5.0
    with pytest.raises(mrt.ConfigurationError, match=r"cooldown=6\.0 must not exceed max_cooldown=5\.0"):
        LimitRetry(cooldown=6.0, max_cooldown=5.0)


def test_evolve_validates_the_copy() -> None:
    policy = LimitRetry(cooldown=5.0)
    assert policy.evolve(per_hour=7) == LimitRetry(cooldown=5.0, per_hour=7)
    with pytest.raises(mrt.ConfigurationError, match="per_hour"):
        policy.evolve(per_hour=0)


@pytest.mark.parametrize("evicted", [False, True])
def test_which_on_limit_retries(evicted: bool) -> None:
    own = LimitRetry(cooldown=1.0)
    assert limit_retry_for(own, evicted) is own
    assert limit_retry_for("retry", evicted) == LimitRetry()
    assert limit_retry_for("fail", evicted) is None
    assert limit_retry_for("auto", evicted) == (LimitRetry() if evicted else None)
