"""The adapter's routing, without threads: ``on`` (what it accepts), ``_resolve`` (which handlers
an event reaches, in which order, once each) and ``_dispatch`` (dedupe, handler errors, counters).

The adapter is never started here: events go straight into ``_dispatch``, as the dispatcher
thread (or a reader, ``dispatch="inline"``) hands them over."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

import massive_rt as mrt
from massive_rt.adapter import RealTimeDataAdapter


class QuietSource:
    """An event source with nothing to say (the adapter is never started)."""

    def start(self) -> QuietSource:
        return self

    def stop(self, timeout: float = 5.0) -> None:
        pass

    def clients(self) -> list[Any]:
        return []

    def set_listener(self, listener: Callable[[], None] | None) -> None:
        pass

    def subscribe(self, *channels: str) -> None:
        pass

    def unsubscribe(self, *channels: str) -> None:
        pass

    def stats(self) -> None:
        return None


def make(**kwargs: Any) -> RealTimeDataAdapter:
    return RealTimeDataAdapter(QuietSource(), **kwargs)  # type: ignore[arg-type]


def trade(sym: str = "AAPL", q: int = 0, received_at_ns: int | None = None) -> mrt.EquityTrade:
    ns = time.time_ns() if received_at_ns is None else received_at_ns
    return mrt.EquityTrade(event_type="T", symbol=sym, price=1.0, size=1, timestamp=1, sequence_number=q,
                           received_at_ns=ns)  # fmt: skip


def quote(sym: str = "AAPL") -> mrt.EquityQuote:
    return mrt.EquityQuote(event_type="Q", symbol=sym, received_at_ns=time.time_ns())


def status(text: str = "connected") -> mrt.StatusMessage:
    return mrt.StatusMessage(status=text, message="m", received_at_ns=time.time_ns())


class Calls:
    """Handlers that write their name into one shared log, in call order."""

    def __init__(self) -> None:
        self.log: list[tuple[str, object]] = []

    def handler(self, name: str) -> Callable[[mrt.Event], None]:
        def record(event: mrt.Event) -> None:
            self.log.append((name, event))

        record.__qualname__ = name
        return record

    def names(self) -> list[str]:
        return [name for name, _ in self.log]


# ============================================================================================
# on: what may be registered


@pytest.mark.parametrize("key", [mrt.EquityTrade, mrt.MarketEvent, mrt.Event, mrt.StatusMessage, "T", "AM", "XT",
                                 "V", "*"])  # fmt: skip
def test_on_accepts_event_classes_ev_codes_and_the_wildcard(key: object) -> None:
    adapter = make()
    handler = Calls().handler("h")
    assert adapter.on(key, handler) is handler  # type: ignore[arg-type]


def test_on_refuses_a_class_that_is_not_an_event() -> None:
    with pytest.raises(mrt.ConfigurationError) as caught:
        make().on(dict, print)
    assert caught.value.message == "key=dict is not an Event class (e.g. mrt.EquityTrade)"
    assert caught.value.field == "key"


@pytest.mark.parametrize("key", ["ZZ", "", "t", "status", 5, None, b"T"], ids=repr)
def test_on_refuses_a_key_that_is_no_ev_code(key: object) -> None:
    with pytest.raises(mrt.ConfigurationError) as caught:
        make().on(key, print)  # type: ignore[arg-type]
    assert caught.value.message.startswith(f"key={key!r} must be an Event class, '*' or an ev code: A, AM, C, ")
    assert caught.value.field == "key"


def test_on_refuses_a_handler_that_is_not_callable() -> None:
    with pytest.raises(mrt.ConfigurationError) as caught:
        make().on("T", 5)  # type: ignore[call-overload]
    assert (caught.value.message, caught.value.field) == ("handler=5 is not callable", "handler")


def test_on_as_a_decorator_registers_and_returns_the_function() -> None:
    adapter = make()
    seen: list[mrt.Event] = []

    @adapter.on(mrt.EquityTrade)
    def on_trade(event: mrt.Event) -> None:
        seen.append(event)

    assert callable(on_trade)
    event = trade()
    adapter._dispatch([event])
    assert seen == [event]


def test_the_decorator_validates_the_key_at_once() -> None:
    with pytest.raises(mrt.ConfigurationError, match="key="):
        make().on("nope")


def test_on_event_is_a_wildcard_handler() -> None:
    calls = Calls()
    adapter = make(on_event=calls.handler("all"))
    events = [trade(), quote(), status()]
    adapter._dispatch(events)
    assert calls.log == [("all", events[0]), ("all", events[1])]  # market events only


# ============================================================================================
# _resolve: which handlers, in which order, once each


def test_a_market_event_reaches_the_wildcard_then_its_classes_then_its_ev_code() -> None:
    calls = Calls()
    adapter = make()
    adapter.on("T", calls.handler("ev"))
    adapter.on(mrt.Event, calls.handler("Event"))
    adapter.on(mrt.EquityTrade, calls.handler("EquityTrade"))
    adapter.on(mrt.MarketEvent, calls.handler("MarketEvent"))
    adapter.on("*", calls.handler("wildcard"))
    adapter.on(mrt.EquityQuote, calls.handler("EquityQuote"))
    adapter.on("Q", calls.handler("Q"))
    adapter.on_status(calls.handler("status"))

    adapter._dispatch([trade()])

    assert calls.names() == ["wildcard", "EquityTrade", "MarketEvent", "Event", "ev"]


def test_a_status_reaches_status_handlers_and_its_classes_but_not_the_wildcard_nor_ev_codes() -> None:
    calls = Calls()
    adapter = make()
    adapter.on("*", calls.handler("wildcard"))
    adapter.on(mrt.StatusMessage, calls.handler("StatusMessage"))
    adapter.on(mrt.Event, calls.handler("Event"))
    adapter.on_status(calls.handler("status-1"))
    adapter.on_status(calls.handler("status-2"))
    adapter.on("T", calls.handler("ev"))

    adapter._dispatch([status()])

    assert calls.names() == ["status-1", "status-2", "StatusMessage", "Event"]
    assert adapter.stats().status_events == 1


def test_a_handler_registered_under_several_keys_runs_once_per_event() -> None:
    calls = Calls()
    handler = calls.handler("h")
    adapter = make(on_event=handler)
    adapter.on(mrt.EquityTrade, handler)
    adapter.on("T", handler)
    adapter.on(mrt.Event, handler)
    adapter.on_status(handler)

    adapter._dispatch([trade(), status()])

    assert calls.names() == ["h", "h"]


def test_an_unknown_event_reaches_the_wildcard_and_its_class_only() -> None:
    calls = Calls()
    adapter = make(on_event=calls.handler("wildcard"))
    adapter.on(mrt.UnknownEvent, calls.handler("UnknownEvent"))
    adapter.on("T", calls.handler("T"))
    unknown = [mrt.UnknownEvent(event_type="ZZ", data={"ev": "ZZ"}, received_at_ns=time.time_ns()),
               mrt.UnknownEvent(event_type=None, data={}, received_at_ns=time.time_ns())]  # fmt: skip

    adapter._dispatch(unknown)

    assert calls.names() == ["wildcard", "UnknownEvent", "wildcard", "UnknownEvent"]


def test_ev_code_handlers_see_only_their_code_whatever_the_class() -> None:
    calls = Calls()
    adapter = make()
    adapter.on("T", calls.handler("T"))
    adapter.on("Q", calls.handler("Q"))
    events = [trade(), quote(), trade("MSFT")]

    adapter._dispatch(events)

    assert calls.log == [("T", events[0]), ("Q", events[1]), ("T", events[2])]


def test_routes_are_cached_and_rebuilt_when_handlers_change() -> None:
    calls = Calls()
    adapter = make()
    first = calls.handler("first")
    adapter.on(mrt.EquityTrade, first)
    adapter._dispatch([trade()])
    assert adapter._routing == (False, {mrt.EquityTrade: (first,)})  # no ev-code handler: cached per class

    adapter.on("T", calls.handler("second"))  # a new handler: the cached route is dropped
    adapter._dispatch([trade()])
    assert adapter.off(mrt.EquityTrade, first) is True
    adapter._dispatch([trade()])
    adapter.on_status(calls.handler("status"))
    adapter._dispatch([trade()])

    assert calls.names() == ["first", "first", "second", "second", "second"]
    assert adapter.off(mrt.EquityTrade, first) is False


def test_a_route_is_cached_per_class_and_ev_code() -> None:
    adapter = make()
    adapter.on("T", Calls().handler("T"))
    adapter._dispatch([trade(), quote(), status()])
    keyed_by_ev, routes = adapter._routing
    assert keyed_by_ev is True
    assert set(routes) == {(mrt.EquityTrade, "T"), (mrt.EquityQuote, "Q"), (mrt.StatusMessage, "status")}
    assert len(routes[(mrt.EquityTrade, "T")]) == 1
    assert routes[(mrt.EquityQuote, "Q")] == ()


# ============================================================================================
# _dispatch: errors, dedupe, counters


@pytest.mark.allow_errors(r"^handler boom raised ZeroDivisionError on EquityTrade", logger="massive_rt.adapter")
def test_a_failing_handler_is_reported_and_the_others_still_run() -> None:
    calls = Calls()
    adapter = make()

    def boom(event: mrt.Event) -> None:
        raise ZeroDivisionError("no")

    boom.__qualname__ = "boom"
    adapter.on("*", boom)
    adapter.on(mrt.EquityTrade, calls.handler("after"))
    errors: list[tuple[type, object, object]] = []
    adapter.on_error(lambda exc, event, handler: errors.append((type(exc), event, handler)))
    events = [trade(q=1), trade(q=2)]

    adapter._dispatch(events)

    assert calls.log == [("after", events[0]), ("after", events[1])]
    assert errors == [(ZeroDivisionError, events[0], boom), (ZeroDivisionError, events[1], boom)]
    stats = adapter.stats()
    assert (stats.handler_errors, stats.errors_by_handler, stats.dispatched) == (2, {"boom": 2}, 2)


def test_dispatched_counts_every_event_handled_or_not() -> None:
    adapter = make()
    adapter._dispatch([trade(), quote(), status()])
    adapter._dispatch([trade()])
    assert adapter.stats().dispatched == 4
    assert adapter.stats().status_events == 1


def test_latency_is_sampled_for_the_first_and_the_last_event_of_a_batch() -> None:
    adapter = make()
    now = time.time_ns()
    adapter._dispatch([trade(received_at_ns=now - 5_000_000)])  # one event: one sample, about 5 ms
    assert len(adapter._latency) == 1
    batch = [trade(received_at_ns=now - ms * 1_000_000) for ms in (9, 400, 1)]
    adapter._dispatch(batch)
    samples = [s / 1_000_000 for s in adapter._latency]  # ms
    assert len(samples) == 3
    assert 5 <= samples[0] < 5 + 60_000  # receive -> dispatch: the time since it was received, not a sum
    assert 9 <= samples[1] < 9 + 60_000  # the first event of the batch
    assert 1 <= samples[2] < 300  # its last, not its second (400 ms old)


def test_duplicates_are_dropped_before_the_handlers_and_not_counted_as_dispatched() -> None:
    calls = Calls()
    adapter = make(dedupe=True, on_event=calls.handler("all"))
    first = trade(q=1)
    adapter._dispatch([first, trade(q=2)])
    adapter._dispatch([trade(q=1)])  # the same trade again (another connection, a reconnect's seam)

    assert [e.sequence_number for _, e in calls.log] == [1, 2]  # type: ignore[attr-defined]
    stats = adapter.stats()
    assert (stats.dispatched, stats.duplicates_suppressed) == (2, 1)
    assert len(adapter._latency) == 2  # nothing dispatched, nothing sampled


def test_a_shared_duplicate_filter_is_used_as_it_is() -> None:
    shared = mrt.DuplicateFilter(10)
    adapter = make(dedupe=shared)
    adapter._dispatch([trade(q=1), trade(q=1)])
    assert shared.suppressed == 1
    assert adapter.stats().dispatched == 1


class NoHistory:
    """A history that is never asked: nothing here has a gap."""

    def _never(self, *args: object, **kwargs: object) -> Any:
        raise AssertionError("no gap, no fetch")

    trades = quotes = aggs = _never

    def close(self) -> None:
        pass


def test_with_an_idle_backfill_every_live_event_still_reaches_its_handlers_in_order() -> None:
    """``_dispatch`` passes each batch through the backfill first (it holds events of symbols being
    refilled); with no gap it holds nothing, and an emptied batch would be the only thing skipped."""
    adapter = make(backfill=mrt.Backfill(history=NoHistory()))
    calls = Calls()
    adapter.on(mrt.EquityTrade, calls.handler("trade"))
    batch: list[mrt.Event] = [trade(q=1), trade("MSFT", q=2), trade(q=3)]
    adapter._dispatch(list(batch))
    assert [event for _, event in calls.log] == batch
    assert adapter.stats().dispatched == 3
