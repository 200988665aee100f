"""The adapter's dispatch fast path: routes cached per event class while no handler is keyed by
an ev code, one call per event for a class with a single handler, the same statuses and errors as
the general path, and a cache that a handler added or removed at runtime (even from inside a
callback) invalidates."""

from __future__ import annotations

import pytest

import massive_rt as mrt
from tests.unit.test_adapter_routing import Calls, make, quote, status, trade


def test_routes_are_cached_once_per_class_without_ev_code_handlers() -> None:
    calls = Calls()
    adapter = make()
    adapter.on(mrt.EquityTrade, calls.handler("trades"))
    adapter.on(mrt.Event, calls.handler("every"))

    adapter._dispatch([trade(), trade("MSFT"), quote(), trade("IBM")])

    keyed_by_ev, routes = adapter._routing
    assert keyed_by_ev is False
    assert set(routes) == {mrt.EquityTrade, mrt.EquityQuote}
    assert calls.names() == ["trades", "every", "trades", "every", "every", "trades", "every"]


def test_a_single_handler_class_reaches_its_handler_in_order_between_other_classes() -> None:
    calls = Calls()
    adapter = make()
    adapter.on(mrt.EquityTrade, calls.handler("T"))  # one handler: the single-call path
    adapter.on(mrt.EquityQuote, calls.handler("Q1"))
    adapter.on(mrt.EquityQuote, calls.handler("Q2"))  # two: the loop
    seen: list[str] = []
    adapter.on_status(lambda event: seen.append(event.status))
    events = [trade("A"), quote("B"), status("s1"), trade("C"), trade("D"), quote("E")]

    adapter._dispatch(events)

    assert calls.log == [("T", events[0]), ("Q1", events[1]), ("Q2", events[1]), ("T", events[3]),
                         ("T", events[4]), ("Q1", events[5]), ("Q2", events[5])]  # fmt: skip
    assert seen == ["s1"]
    assert adapter.stats().status_events == 1
    assert adapter.stats().dispatched == 6


@pytest.mark.allow_errors(r"^handler only raised ValueError on EquityTrade", logger="massive_rt.adapter")
def test_a_single_handler_that_raises_is_counted_reported_and_the_next_event_still_delivered() -> None:
    adapter = make()
    got: list[int] = []

    def only(event: mrt.EquityTrade) -> None:
        if event.sequence_number == 2:
            raise ValueError("bad")
        got.append(event.sequence_number or 0)

    only.__qualname__ = "only"
    adapter.on(mrt.EquityTrade, only)
    errors: list[tuple[type, object, object]] = []
    adapter.on_error(lambda exc, event, handler: errors.append((type(exc), event, handler)))
    events = [trade(q=1), trade(q=2), trade(q=3)]

    adapter._dispatch(events)

    assert got == [1, 3]
    assert errors == [(ValueError, events[1], only)]
    stats = adapter.stats()
    assert (stats.handler_errors, stats.errors_by_handler) == (1, {"only": 1})


def test_a_class_with_no_handler_is_cached_as_empty_and_skipped() -> None:
    calls = Calls()
    adapter = make()
    adapter.on(mrt.EquityQuote, calls.handler("Q"))

    adapter._dispatch([trade(), trade(), quote()])

    assert adapter._routing[1][mrt.EquityTrade] == ()
    assert calls.names() == ["Q"]


def test_a_handler_added_from_a_callback_applies_from_the_next_batch() -> None:
    calls = Calls()
    adapter = make()
    late = calls.handler("late")

    def first(event: mrt.Event) -> None:
        calls.log.append(("first", event))
        if len(calls.log) == 1:
            adapter.on(mrt.EquityTrade, late)  # registration during a dispatch drops the cache

    adapter.on(mrt.EquityTrade, first)
    adapter._dispatch([trade(), trade()])
    adapter._dispatch([trade()])

    assert calls.names() == ["first", "first", "first", "late"]
    assert adapter._routing[1] == {mrt.EquityTrade: (first, late)}


def test_removing_the_only_handler_empties_the_route() -> None:
    calls = Calls()
    adapter = make()
    handler = calls.handler("h")
    adapter.on(mrt.EquityTrade, handler)
    adapter._dispatch([trade()])
    assert adapter._routing[1] == {mrt.EquityTrade: (handler,)}

    assert adapter.off(mrt.EquityTrade, handler) is True
    adapter._dispatch([trade()])

    assert calls.names() == ["h"]
    assert adapter._routing[1] == {mrt.EquityTrade: ()}


def test_an_ev_code_handler_switches_to_class_and_ev_routes_and_back_when_removed() -> None:
    calls = Calls()
    adapter = make()
    agg = calls.handler("agg")
    adapter.on(mrt.EquityAgg, agg)
    per_minute = calls.handler("AM")
    adapter.on("AM", per_minute)  # EquityAgg carries both "A" and "AM": the class alone cannot route
    second = mrt.EquityAgg(event_type="A", symbol="X", received_at_ns=1)
    minute = mrt.EquityAgg(event_type="AM", symbol="X", received_at_ns=1)

    adapter._dispatch([second, minute])
    assert adapter._routing[0] is True
    assert adapter.off("AM", per_minute) is True
    adapter._dispatch([second, minute])

    assert calls.log == [("agg", second), ("agg", minute), ("AM", minute), ("agg", second), ("agg", minute)]
    assert adapter._routing == (False, {mrt.EquityAgg: (agg,)})
