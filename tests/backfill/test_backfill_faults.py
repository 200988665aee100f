"""Backfill when things go wrong: wildcards, REST faults (429, 5xx, slow, cut pages), budgets, the
hold limit, stop() mid-fetch, and the key never shown. Mock servers on 127.0.0.1, no sleeps."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest

import massive_rt as mrt
from massive_rt.testing import MockMassiveREST, MockMassiveServer
from tests.conftest import wait_until
from tests.support import KEY

from .conftest import SYMBOLS, Publisher, Seen, trade

Make = Callable[..., tuple[mrt.RealTimeDataAdapter, mrt.Backfill]]


def _drop_and_resume(server: MockMassiveServer, seen: Seen, publisher: Publisher, ticks: int = 5) -> None:
    """Deliver ``ticks`` ticks, lose ``ticks`` in a drop, then publish until the gap is reported."""
    for _ in range(ticks):
        publisher.publish_once()
    assert wait_until(lambda: len(seen.trades) >= ticks * len(publisher.symbols), 10)
    before = {c.id for c in server.connections}
    assert server.drop_all() == 1
    for _ in range(ticks):  # published while disconnected: lost, in the REST history
        publisher.publish_once()
    assert wait_until(lambda: any(c.id not in before and c.subscriptions for c in server.connections), 10)
    assert wait_until(lambda: (publisher.publish_once(), bool(seen.status("gap")))[1], 10)


def _assert_exactly_once(seen: Seen, publisher: Publisher) -> None:
    for symbol in publisher.symbols:
        sequences = [t.sequence_number for t in seen.of(symbol)]
        assert len(sequences) == len(set(sequences)), f"{symbol}: duplicated"
        assert sequences == sorted(sequences), f"{symbol}: out of order"


@pytest.mark.timeout(30)
def test_a_wildcard_gap_is_reported_as_not_backfillable(
    massive_server: MockMassiveServer, backfilled: Make, seen: Seen, publisher: Publisher
) -> None:
    _, backfill = backfilled(["T.*"])
    _drop_and_resume(massive_server, seen, publisher)
    partial = seen.wait_status("backfill_partial")[0]
    assert isinstance(partial, mrt.BackfillStatus)
    assert partial.channels == ("T.*",)
    assert partial.reason == "wildcard"
    assert "not backfillable" in partial.message
    assert not seen.status("backfill_started")
    assert not [t for t in seen.trades if t.origin == "rest"]
    assert backfill.stats().not_backfillable == 1


@pytest.mark.timeout(30)
def test_explicit_tickers_are_refilled_and_the_wildcard_beside_them_reported(
    massive_server: MockMassiveServer, backfilled: Make, seen: Seen
) -> None:
    publisher = Publisher(massive_server, symbols=("AAPL",))
    backfilled(["T.AAPL", "Q.*"])
    _drop_and_resume(massive_server, seen, publisher)
    seen.wait_status("backfill_done")
    assert [s.channels for s in seen.status("backfill_partial")] == [("Q.*",)]
    assert [t.sequence_number for t in seen.of("AAPL") if t.origin == "rest"] == [5, 6, 7, 8, 9]
    _assert_exactly_once(seen, publisher)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("fault", ["429", "503"])
def test_retried_rest_faults_end_in_a_complete_backfill_without_duplicates(
    massive_server: MockMassiveServer, massive_rest: MockMassiveREST, backfilled: Make, seen: Seen, fault: str
) -> None:
    publisher = Publisher(massive_server, symbols=("AAPL", "MSFT"))
    backfilled(["T.AAPL", "T.MSFT"], rest={"retries": 3})
    if fault == "429":
        massive_rest.fail_next(429, retry_after=0, count=2, path="/v3/trades/AAPL")
    else:
        massive_rest.fail_next(503, count=3, path="/v3/trades/AAPL")
    _drop_and_resume(massive_server, seen, publisher)
    done = seen.wait_status("backfill_done")[0]
    assert isinstance(done, mrt.BackfillStatus)
    assert (done.failed, done.partial) == (0, 0)
    faulted = [r for r in massive_rest.requests if r.fault == "status"]
    assert len(faulted) == (2 if fault == "429" else 3)
    assert [t.sequence_number for t in seen.of("AAPL") if t.origin == "rest"] == [5, 6, 7, 8, 9]
    _assert_exactly_once(seen, publisher)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("fault", ["5xx", "truncated"])
def test_a_failed_fetch_is_reported_and_live_events_resume_without_duplicates(
    massive_server: MockMassiveServer, massive_rest: MockMassiveREST, backfilled: Make, seen: Seen, fault: str
) -> None:
    publisher = Publisher(massive_server, symbols=("AAPL", "MSFT"))
    _, backfill = backfilled(["T.AAPL", "T.MSFT"], rest={"retries": 2})
    if fault == "5xx":
        massive_rest.fail_next(500, count=3, path="/v3/trades/AAPL")  # one more than the retries
    else:
        massive_rest.truncate_next(path="/v3/trades/AAPL")
    _drop_and_resume(massive_server, seen, publisher)
    failed = seen.wait_status("backfill_failed")[0]
    assert isinstance(failed, mrt.BackfillStatus)
    assert failed.channels == ("T.AAPL",)
    assert failed.reason is not None
    assert "500" in failed.reason if fault == "5xx" else "JSON" in failed.reason
    done = seen.wait_status("backfill_done")[0]
    assert done.failed == 1  # type: ignore[attr-defined]
    # MSFT was refilled; AAPL's live events after the gap were released after the failure.
    assert [t.sequence_number for t in seen.of("MSFT") if t.origin == "rest"] == [5, 6, 7, 8, 9]
    assert not [t for t in seen.of("AAPL") if t.origin == "rest"]
    assert wait_until(lambda: any(t.sequence_number >= 10 for t in seen.of("AAPL")), 10)
    assert len(massive_rest.requests) <= 1 + 3 + 1  # bounded: MSFT once, AAPL 1 + retries
    assert backfill.stats().failed == 1
    _assert_exactly_once(seen, publisher)


@pytest.mark.timeout(60)
def test_a_slow_symbol_holds_only_its_own_live_events(
    massive_server: MockMassiveServer, massive_rest: MockMassiveREST, backfilled: Make, seen: Seen
) -> None:
    publisher = Publisher(massive_server, symbols=("AAPL", "MSFT"))
    backfilled(["T.AAPL", "T.MSFT"])
    massive_rest.slow_next(1.0, path="/v3/trades/AAPL")
    _drop_and_resume(massive_server, seen, publisher)
    # While AAPL's fetch is held by the server, MSFT is refilled and streams live ...
    assert wait_until(lambda: massive_rest.in_flight == 1 and any(
        t.origin == "live" and t.sequence_number >= 10 for t in seen.of("MSFT")), 10)  # fmt: skip
    if massive_rest.in_flight == 1:  # ... and AAPL shows nothing after the gap yet
        assert not [t for t in seen.of("AAPL") if t.sequence_number >= 5]
    done = seen.wait_status("backfill_done")[0]
    assert (done.failed, done.partial) == (0, 0)  # type: ignore[attr-defined]
    assert done.held >= 1  # type: ignore[attr-defined]
    assert [t.sequence_number for t in seen.of("AAPL") if t.origin == "rest"] == [5, 6, 7, 8, 9]
    _assert_exactly_once(seen, publisher)


@pytest.mark.timeout(60)
def test_live_events_beyond_the_hold_limit_are_counted_and_reported(
    massive_server: MockMassiveServer, massive_rest: MockMassiveREST, backfilled: Make, seen: Seen
) -> None:
    publisher = Publisher(massive_server, symbols=("AAPL",))
    _, backfill = backfilled(["T.AAPL"], hold_limit=3)
    massive_rest.slow_next(60.0, path="/v3/trades/AAPL")
    _drop_and_resume(massive_server, seen, publisher)
    for _ in range(10):
        publisher.publish_once()
    assert wait_until(lambda: backfill.stats().held_dropped >= 1, 10)
    published_after_gap = publisher.published["AAPL"] - 10  # ticks 10.. went live after the reconnect
    assert wait_until(lambda: backfill.stats().held + backfill.stats().held_dropped == published_after_gap, 10)
    stats = backfill.stats()
    assert stats.held == 3
    assert stats.held_dropped == published_after_gap - 3
    massive_rest.close()  # ends the held request: the fetch fails, the held events are released
    partial = seen.wait_status("backfill_partial")[0]
    assert isinstance(partial, mrt.BackfillStatus)
    assert (partial.reason, partial.dropped, partial.channels) == ("hold_limit", stats.held_dropped, ("T.AAPL",))
    assert wait_until(lambda: len(seen.of("AAPL")) == 5 + 3, 10)  # delivered before the drop + held
    assert seen.wait_status("backfill_done")[0].dropped == stats.held_dropped


@pytest.mark.timeout(30)
def test_stop_during_a_backfill_returns_in_bounded_time_and_hands_out_held_events(
    massive_server: MockMassiveServer, massive_rest: MockMassiveREST, backfilled: Make, seen: Seen
) -> None:
    publisher = Publisher(massive_server, symbols=("AAPL",))
    adapter, backfill = backfilled(["T.AAPL"])
    massive_rest.slow_next(60.0, path="/v3/trades/AAPL")
    _drop_and_resume(massive_server, seen, publisher)
    assert wait_until(lambda: massive_rest.in_flight == 1 and backfill.stats().held >= 1, 10)
    started = time.monotonic()
    adapter.stop(timeout=2.0)
    assert time.monotonic() - started < 4.0  # the request is held for 60 s
    failed = seen.status("backfill_failed")
    assert [(s.reason, s.channels) for s in failed] == [("stopped", ("T.AAPL",))]  # type: ignore[attr-defined]
    assert [t.sequence_number for t in seen.of("AAPL")][:5] == [0, 1, 2, 3, 4]
    assert len(seen.of("AAPL")) == 5 + backfill.stats().held  # held live events were handed out
    massive_rest.close()  # the worker still in the request ends with it
    assert backfill.join(10)


@pytest.mark.timeout(60)
def test_the_key_is_never_logged_nor_in_a_status(
    massive_server: MockMassiveServer, massive_rest: MockMassiveREST, backfilled: Make, seen: Seen,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    publisher = Publisher(massive_server, symbols=("AAPL", "MSFT"))
    _, backfill = backfilled(["T.AAPL", "T.MSFT"], rest={"retries": 1})
    massive_rest.fail_next(429, retry_after=0, count=1, path="/v3/trades/MSFT")
    massive_rest.fail_next(500, count=2, path="/v3/trades/AAPL")
    _drop_and_resume(massive_server, seen, publisher)
    seen.wait_status("backfill_done")
    assert seen.status("backfill_failed")
    texts = [r.getMessage() for r in caplog.records] + [str(r.exc_info) for r in caplog.records if r.exc_info]
    texts += [repr(s) for s in seen.statuses] + [repr(backfill), repr(backfill.stats())]
    assert texts
    assert not [t for t in texts if KEY in t]


def test_a_bad_bound_is_a_typed_error(massive_rest: MockMassiveREST) -> None:
    from .conftest import history

    with history(massive_rest) as rest:
        for bad in ({"max_window": 0}, {"max_events_per_gap": 0}, {"max_concurrent": True}, {"hold_limit": -1}):
            with pytest.raises(mrt.ConfigurationError) as info:
                mrt.Backfill(rest, **bad)  # type: ignore[arg-type]
            assert next(iter(bad)) in str(info.value)
    with pytest.raises(mrt.ConfigurationError, match="history="):
        mrt.Backfill(object())  # type: ignore[arg-type]


def test_a_backfill_serves_one_adapter(massive_rest: MockMassiveREST, make_adapter: Callable[..., object]) -> None:
    from .conftest import history

    backfill = mrt.Backfill(history(massive_rest))
    make_adapter(mrt.SyntheticSource(["T.AAPL"]), backfill=backfill)
    with pytest.raises(mrt.ConfigurationError, match="one per adapter"):
        make_adapter(mrt.SyntheticSource(["T.AAPL"]), backfill=backfill)


_ = (SYMBOLS, trade)


@pytest.mark.timeout(60)
def test_the_event_budget_is_reported_as_partial_with_what_was_skipped(
    massive_server: MockMassiveServer, backfilled: Make, seen: Seen
) -> None:
    publisher = Publisher(massive_server, symbols=("AAPL",))
    _, backfill = backfilled(["T.AAPL"], max_events_per_gap=2)
    _drop_and_resume(massive_server, seen, publisher)
    partial = seen.wait_status("backfill_partial")[0]
    assert isinstance(partial, mrt.BackfillStatus)
    assert partial.reason == "max_events"
    refilled = [t for t in seen.of("AAPL") if t.origin == "rest"]
    # The budget counts rows fetched: the window starts at the mark, whose own row is fetched and left out.
    assert [t.sequence_number for t in refilled] == [5]
    assert partial.skipped_from_ms == refilled[-1].timestamp
    assert partial.skipped_to_ms is not None and partial.skipped_to_ms >= publisher.t0 + 9  # noqa: PT018
    assert seen.wait_status("backfill_done")[0].partial == 1  # type: ignore[attr-defined]
    assert backfill.stats().partial == 1
    _assert_exactly_once(seen, publisher)


@pytest.mark.timeout(60)
def test_a_gap_longer_than_max_window_refills_its_most_recent_part(
    massive_server: MockMassiveServer, massive_rest: MockMassiveREST, backfilled: Make, seen: Seen
) -> None:
    publisher = Publisher(massive_server, symbols=("AAPL",))
    backfilled(["T.AAPL"], max_window=0.002)  # 2 ms of exchange time; the publisher's ticks are 1 ms apart
    _drop_and_resume(massive_server, seen, publisher)
    partial = seen.wait_status("backfill_partial")[0]
    assert isinstance(partial, mrt.BackfillStatus)
    assert partial.reason == "max_window"
    assert partial.skipped_from_ms == publisher.t0 + 4  # the mark: the last trade delivered
    refilled = [t for t in seen.of("AAPL") if t.origin == "rest"]
    assert refilled
    assert all(t.timestamp >= partial.skipped_to_ms for t in refilled)  # type: ignore[operator]
    _assert_exactly_once(seen, publisher)
