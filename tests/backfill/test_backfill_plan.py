"""The pure parts of the backfill: the plan of a gap and the seam rules (no server)."""

from __future__ import annotations

import massive_rt as mrt
from massive_rt.backfill import plan_gap
from massive_rt.backfill.plan import window_ns
from massive_rt.backfill.seam import Position, Watermark, cut, position
from massive_rt.models import REST, with_origin


def _trade(q: int | None, t: int) -> mrt.EquityTrade:
    return mrt.EquityTrade(event_type="T", symbol="AAPL", price=1.0, size=1, timestamp=t, sequence_number=q)


def _gap(**fields: object) -> mrt.StatusMessage:
    return mrt.StatusMessage(status="gap", connection="c", gap_start_ns=5_000_000_000, **fields)  # type: ignore[arg-type]


def test_a_plan_starts_each_symbol_at_its_mark_and_skips_wildcards_and_channels_without_history() -> None:
    gap = _gap(last_seen=(mrt.SymbolMark(symbol="AAPL", ev="T", timestamp=1_234, sequence=9),))
    plan = plan_gap(gap, ["T.AAPL", "Q.MSFT", "T.*", "LULD.AAPL", "AM.AAPL"], mrt.Market.STOCKS)
    by_channel = {t.channel: t for t in plan.targets}
    assert set(by_channel) == {"T.AAPL", "Q.MSFT", "AM.AAPL"}
    aapl = by_channel["T.AAPL"]
    assert (aapl.method, aapl.start_ms, aapl.sequence, aapl.marked) == ("trades", 1_234, 9, True)
    msft = by_channel["Q.MSFT"]  # no mark: from the gap's start (receive time taken as exchange time)
    assert (msft.method, msft.start_ms, msft.sequence, msft.marked) == ("quotes", 5_000, None, False)
    assert (by_channel["AM.AAPL"].method, by_channel["AM.AAPL"].timespan) == ("aggs", "minute")
    assert dict(plan.skipped) == {"T.*": "wildcard", "LULD.AAPL": "not_backfillable"}


def test_crypto_and_forex_channels_map_to_their_rest_endpoints() -> None:
    crypto = plan_gap(_gap(), ["XT.BTC-USD", "XQ.BTC-USD", "XA.BTC-USD"], mrt.Market.CRYPTO)
    assert [(t.channel, t.method) for t in crypto.targets] == [("XA.BTC-USD", "aggs"), ("XT.BTC-USD", "trades")]
    assert crypto.skipped == (("XQ.BTC-USD", "not_backfillable"),)
    forex = plan_gap(_gap(), ["C.EUR/USD", "CA.EUR/USD"], mrt.Market.FOREX)
    assert [(t.channel, t.method) for t in forex.targets] == [("C.EUR/USD", "quotes"), ("CA.EUR/USD", "aggs")]


def test_the_window_covers_whole_milliseconds() -> None:
    assert window_ns(10, 12) == (10_000_000, 12_999_999)
    assert window_ns(10, 9) == (10_000_000, 10_999_999)


def test_the_seam_uses_sequence_numbers_when_both_sides_have_them() -> None:
    events = [_trade(q, 100) for q in range(5)]  # all in one millisecond
    kept, dropped = cut(events, Position(100, 1), position(_trade(4, 100)))
    assert [e.sequence_number for e in kept] == [2, 3]
    assert dropped == 3


def test_the_seam_falls_back_to_exchange_time_strictly() -> None:
    events = [_trade(None, t) for t in (99, 100, 101, 102, 103)]
    kept, _ = cut(events, Position(100), position(_trade(None, 103)))
    assert [e.timestamp for e in kept] == [101, 102]


def test_a_watermark_drops_live_repeats_of_backfilled_events_only() -> None:
    with_sequence = Watermark.of([with_origin(_trade(q, 100 + q), REST) for q in (3, 4)])
    assert with_sequence.covers(_trade(4, 104))
    assert not with_sequence.covers(_trade(5, 104))
    backfilled = [with_origin(_trade(None, t), REST) for t in (10, 11)]
    without = Watermark.of(backfilled)
    assert without.covers(_trade(None, 10))
    assert without.covers(_trade(None, 11))  # equal to the backfilled one (origin is not part of ==)
    other_in_same_ms = mrt.EquityTrade(event_type="T", symbol="AAPL", price=2.0, size=1, timestamp=11)
    assert not without.covers(other_in_same_ms)
    assert not without.covers(_trade(None, 12))
