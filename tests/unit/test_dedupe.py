"""DuplicateFilter: identity keys per class, suppression and counts, exact FIFO window, order,
the no-copy fast path, thread safety, argument checks and a measured memory bound.

Pure logic: no server, no sleeps. Threads meet at barriers; the memory bound is what tracemalloc
traces, not RSS.
"""

from __future__ import annotations

import collections
import gc
import itertools
import json
import random
import sys
import threading
import tracemalloc
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from massive_rt.dedupe import DEFAULT_WINDOW, KEYED_CLASSES, DedupeStats, DuplicateFilter, identity_key
from massive_rt.errors import ConfigurationError
from massive_rt.models import (
    EVENT_CLASSES,
    CryptoTrade,
    EquityAgg,
    EquityQuote,
    EquityTrade,
    Event,
    FuturesTrade,
    Imbalance,
    LimitUpLimitDown,
    RawFrame,
    StatusMessage,
    UnknownEvent,
)
from massive_rt.protocol import MARKET_EVENTS, Decoder
from massive_rt.synthetic import SyntheticMarket
from tests.support import property_examples

T0 = 1_700_000_000_000
JOIN_TIMEOUT = 30.0

#: One event per deduplicated class, and the attributes its identity is made of.
SAMPLES: dict[type[Event], tuple[Any, tuple[str, ...]]] = {
    EquityTrade: (
        EquityTrade(event_type="T", symbol="AAPL", exchange=4, id="52983525", sequence_number=1001, timestamp=T0,
                    price=187.5, size=100, conditions=[12], tape=3),
        ("event_type", "symbol", "exchange", "id", "sequence_number", "timestamp"),
    ),
    EquityQuote: (
        EquityQuote(event_type="Q", symbol="AAPL", sequence_number=1002, timestamp=T0, bid_price=187.4,
                    ask_price=187.6, bid_size=2, ask_size=3, indicators=[1]),
        ("event_type", "symbol", "sequence_number", "timestamp"),
    ),
    LimitUpLimitDown: (
        LimitUpLimitDown(event_type="LULD", symbol="AAPL", sequence_number=1003, timestamp=T0, high_price=190.0,
                         low_price=180.0, indicators=[17]),
        ("event_type", "symbol", "sequence_number", "timestamp"),
    ),
    Imbalance: (
        Imbalance(event_type="NOI", symbol="AAPL", exchange_id=10, symbol_sequence=44, time_stamp=T0,
                  imbalance_quantity=5000, paired_quantity=10_000, book_clearing_price=187.0),
        ("event_type", "symbol", "exchange_id", "symbol_sequence", "time_stamp"),
    ),
    CryptoTrade: (
        CryptoTrade(event_type="XT", pair="BTC-USD", exchange=1, id="ab12", timestamp=T0, price=60_000.5, size=0.25,
                    received_timestamp=T0 + 3),
        ("event_type", "pair", "exchange", "id", "timestamp"),
    ),
    FuturesTrade: (
        FuturesTrade(event_type="T", symbol="ESZ5", sequence_number=77, timestamp=T0, price=6000.25, size=2),
        ("event_type", "symbol", "sequence_number", "timestamp"),
    ),
}  # fmt: skip

#: The attribute that, alone, gives each class an identity (the others set to None must not matter).
IDENTITY_FIELDS: dict[type[Event], tuple[str, ...]] = {
    EquityTrade: ("id", "sequence_number"),
    EquityQuote: ("sequence_number",),
    LimitUpLimitDown: ("sequence_number",),
    Imbalance: ("symbol_sequence",),
    CryptoTrade: ("id",),
    FuturesTrade: ("sequence_number",),
}

NEVER_SUPPRESSED: list[Event] = [
    *(cls(event_type="X") for cls in EVENT_CLASSES if cls not in KEYED_CLASSES),
    EquityAgg(event_type="AM", symbol="AAPL", open=1.0, close=2.0, start_timestamp=T0, end_timestamp=T0 + 60_000),
    StatusMessage(status="connected", message="Connected Successfully", from_server=True),
    StatusMessage(status="gap", message="gap", gap_start_ns=1, gap_end_ns=2),
    UnknownEvent(event_type="ZZ", data={"ev": "ZZ", "i": "1", "q": 1}),
    RawFrame(data=b'[{"ev":"T","sym":"AAPL","i":"1","q":1}]'),
]


def changed(value: Any) -> Any:
    """A different value of the same kind."""
    return value + "X" if isinstance(value, str) else value + 1


def trade(i: int, symbol: str = "AAPL", **fields: Any) -> EquityTrade:
    """A distinct stock trade per ``i`` (id, sequence number and timestamp all follow ``i``)."""
    values: dict[str, Any] = {"event_type": "T", "symbol": symbol, "exchange": 4, "id": str(i), "sequence_number": i,
                              "timestamp": T0 + i, "price": 10.0, "size": 100}  # fmt: skip
    values.update(fields)
    return EquityTrade(**values)


def keys_of(events: list[Event]) -> list[Any]:
    return [identity_key(e) for e in events]


# --------------------------------------------------------------------------- identity per class


@pytest.mark.parametrize("cls", list(SAMPLES), ids=lambda c: c.__name__)
def test_a_copy_is_suppressed_and_counted_per_class(cls: type[Event]) -> None:
    event, _ = SAMPLES[cls]
    # A copy read on another connection at another time.
    copy = attrs.evolve(event, received_at_ns=123, connection="other")
    dedupe = DuplicateFilter()
    assert dedupe.filter([event]) == [event]
    assert dedupe.filter([copy]) == []
    assert dedupe.filter([event, copy]) == []
    assert dedupe.suppressed == 3
    assert dedupe.stats() == DedupeStats(window=DEFAULT_WINDOW, size=1, events=4, checked=4, suppressed=3, unkeyed=0)


@pytest.mark.parametrize("cls", list(SAMPLES), ids=lambda c: c.__name__)
def test_identity_keys_are_the_documented_fields(cls: type[Event]) -> None:
    event, fields = SAMPLES[cls]
    assert identity_key(event) == tuple(getattr(event, name) for name in fields)


@pytest.mark.parametrize(("cls", "field"), [(cls, f) for cls, (_, fields) in SAMPLES.items() for f in fields],
                         ids=lambda x: x if isinstance(x, str) else x.__name__)  # fmt: skip
def test_a_different_identity_field_is_not_a_duplicate(cls: type[Event], field: str) -> None:
    event, _ = SAMPLES[cls]
    other = attrs.evolve(event, **{field: changed(getattr(event, field))})
    dedupe = DuplicateFilter()
    assert dedupe.filter([event, other]) == [event, other]
    assert dedupe.suppressed == 0
    assert dedupe.size == 2


@pytest.mark.parametrize("cls", list(SAMPLES), ids=lambda c: c.__name__)
def test_values_outside_the_identity_do_not_matter(cls: type[Event]) -> None:
    # The identity is what the source assigned: a copy with another price is still the same event.
    event, fields = SAMPLES[cls]
    others = {
        a.name: changed(getattr(event, a.name))
        for a in attrs.fields(cls)
        if a.name not in fields and isinstance(getattr(event, a.name), (int, float, str))
        and not isinstance(getattr(event, a.name), bool)
    }  # fmt: skip
    assert others  # the samples do carry non-identity values
    dedupe = DuplicateFilter()
    assert dedupe.filter([event, attrs.evolve(event, **others)]) == [event]


@pytest.mark.parametrize("cls", list(SAMPLES), ids=lambda c: c.__name__)
def test_without_its_identity_fields_an_event_is_never_suppressed(cls: type[Event]) -> None:
    event, _ = SAMPLES[cls]
    bare = attrs.evolve(event, **dict.fromkeys(IDENTITY_FIELDS[cls]))
    dedupe = DuplicateFilter()
    batch = [bare, bare, attrs.evolve(bare)]
    assert dedupe.filter(batch) is batch
    assert identity_key(bare) is None
    assert dedupe.stats() == DedupeStats(window=DEFAULT_WINDOW, size=0, events=3, checked=0, suppressed=0, unkeyed=3)


@pytest.mark.parametrize(
    ("cls", "field"), [(cls, f) for cls, fields in IDENTITY_FIELDS.items() for f in fields if len(fields) > 1],
    ids=lambda x: x if isinstance(x, str) else x.__name__,
)  # fmt: skip
def test_either_identity_field_alone_is_enough(cls: type[Event], field: str) -> None:
    # Options trades carry a sequence number but no trade id.
    event, _ = SAMPLES[cls]
    others = [f for f in IDENTITY_FIELDS[cls] if f != field]
    partial = attrs.evolve(event, **dict.fromkeys(others))
    dedupe = DuplicateFilter()
    assert dedupe.filter([partial, attrs.evolve(partial)]) == [partial]
    assert dedupe.suppressed == 1


@pytest.mark.parametrize("event", NEVER_SUPPRESSED, ids=lambda e: f"{type(e).__name__}-{e.event_type}")
def test_events_without_identity_and_statuses_are_never_suppressed(event: Event) -> None:
    dedupe = DuplicateFilter(window=1)
    batch = [event, event, attrs.evolve(event)]
    assert dedupe.filter(batch) is batch
    assert dedupe.filter([event]) == [event]
    assert dedupe.stats() == DedupeStats(window=1, size=0, events=4, checked=0, suppressed=0, unkeyed=4)


def test_a_subclass_of_a_keyed_class_is_not_deduplicated() -> None:
    @attrs.frozen(kw_only=True)
    class Custom(EquityTrade):
        note: str = ""

    event = Custom(event_type="T", symbol="AAPL", id="1", sequence_number=1, timestamp=T0)
    dedupe = DuplicateFilter()
    assert dedupe.filter([event, event]) == [event, event]


def test_an_unhashable_identity_value_passes_without_raising() -> None:
    # The decoder keeps values as the server sent them: a malformed frame may hold a list as an id.
    odd = trade(1, id=["1"])
    dedupe = DuplicateFilter()
    good = trade(2)
    assert dedupe.filter([odd, good, odd, good]) == [odd, good, odd]
    assert dedupe.stats() == DedupeStats(window=DEFAULT_WINDOW, size=1, events=4, checked=2, suppressed=1, unkeyed=2)


def test_classes_sharing_an_ev_code_never_share_a_key_shape() -> None:
    # Keys start with ev; where two keyed classes can carry the same ev (T: stock or futures trade),
    # their keys differ in length, so equal values in both can never make them equal.
    shapes: dict[tuple[str, int], set[type[Event]]] = collections.defaultdict(set)
    for table in MARKET_EVENTS.values():
        for ev, cls in table.items():
            if cls in KEYED_CLASSES:
                sample = attrs.evolve(SAMPLES[cls][0], event_type=ev)
                shapes[(ev, len(identity_key(sample) or ()))].add(cls)
    assert shapes
    assert all(len(classes) == 1 for classes in shapes.values()), shapes
    futures = FuturesTrade(event_type="T", symbol="X", sequence_number=1, timestamp=T0)
    stock = EquityTrade(event_type="T", symbol="X", sequence_number=1, timestamp=T0)
    assert DuplicateFilter().filter([futures, stock]) == [futures, stock]


def test_every_keyed_class_has_a_sample() -> None:
    assert set(SAMPLES) == set(KEYED_CLASSES) == set(IDENTITY_FIELDS)


# --------------------------------------------------------------------------- decoded from the wire


@pytest.mark.parametrize("use_msgspec", [True, False], ids=["msgspec", "dict-path"])
def test_decoded_copies_are_suppressed_across_frames_and_connections(use_msgspec: bool) -> None:
    stock = {"ev": "T", "sym": "AAPL", "x": 4, "i": "7", "z": 3, "p": 1.5, "s": 100, "t": T0, "q": 9}
    option = {"ev": "T", "sym": "O:AAPL250117C00150000", "x": 65, "p": 2.5, "s": 1, "t": T0, "q": 10}
    bar = {"ev": "AM", "sym": "AAPL", "v": 10, "o": 1.0, "c": 1.0, "h": 1.0, "l": 1.0, "s": T0, "e": T0 + 60_000}
    frame = json.dumps([stock, option, bar, stock]).encode()
    first = Decoder("stocks", "c1", use_msgspec=use_msgspec).decode(frame, 1)
    again = Decoder("options", "c2", use_msgspec=use_msgspec).decode(json.dumps([option, bar]).encode(), 2)
    dedupe = DuplicateFilter()
    assert [type(e).__name__ for e in dedupe.filter(first)] == ["EquityTrade", "EquityTrade", "EquityAgg"]
    assert dedupe.filter(again) == [again[1]]
    assert dedupe.stats() == DedupeStats(window=DEFAULT_WINDOW, size=2, events=6, checked=4, suppressed=2, unkeyed=2)


# --------------------------------------------------------------------------- window


@pytest.mark.parametrize("window", [1, 2, 3, 10, 97])
def test_a_key_is_remembered_for_exactly_window_newer_keys(window: int) -> None:
    dedupe = DuplicateFilter(window)
    old = trade(0)
    assert dedupe.filter([old]) == [old]
    newer = [trade(i) for i in range(1, window)]
    assert dedupe.filter(newer) == newer  # window - 1 newer keys: old still held
    assert dedupe.filter([old]) == []
    assert dedupe.size == window
    assert dedupe.filter([trade(window)]) == [trade(window)]  # the window-th newer key evicts it
    assert dedupe.size == window
    assert dedupe.filter([old]) == [old]  # passes again, and starts a new stay
    assert dedupe.filter([old]) == []
    assert dedupe.filter([trade(1)]) == [trade(1)]  # evicted by old's return (or, window 1, before)


def test_repeats_do_not_extend_a_keys_stay() -> None:
    # FIFO over first sightings: suppressed copies do not refresh the key.
    dedupe = DuplicateFilter(3)
    a, b, c, d = (trade(i) for i in range(4))
    assert dedupe.filter([a, b, a, c, a]) == [a, b, c]
    assert dedupe.filter([d, a]) == [d, a]  # d evicted a despite its recent repeats


def test_eviction_inside_one_batch_is_exact() -> None:
    dedupe = DuplicateFilter(2)
    a, b, c = trade(1), trade(2), trade(3)
    # [a] [a b] (a held) [b c] [c a] [a b] [b c] (c held)
    assert dedupe.filter([a, b, a, c, a, b, c, c]) == [a, b, c, a, b, c]
    assert dedupe.size == 2


def test_events_without_identity_do_not_take_window_space() -> None:
    dedupe = DuplicateFilter(1)
    a = trade(1)
    bars = [EquityAgg(event_type="AM", symbol="AAPL", start_timestamp=T0 + i) for i in range(5)]
    assert dedupe.filter([a, *bars, a]) == [a, *bars]


def reference(batches: list[list[Event]], window: int) -> list[list[Event]]:
    """The specification, written the slow and obvious way."""
    held: list[Any] = []
    out = []
    for batch in batches:
        kept = []
        for event in batch:
            key = identity_key(event)
            if key is None:
                kept.append(event)
            elif key not in held:
                held.append(key)
                del held[:-window]
                kept.append(event)
        out.append(kept)
    return out


events_strategy = st.lists(
    st.one_of(
        st.builds(trade, st.integers(0, 12), st.sampled_from(["A", "B"])),
        st.builds(lambda i: trade(0, id=None, sequence_number=None, timestamp=T0 + i), st.integers(0, 3)),
        st.builds(
            lambda i: EquityQuote(event_type="Q", symbol="A", sequence_number=i, timestamp=T0), st.integers(0, 5)
        ),
        st.builds(lambda i: EquityAgg(event_type="A", symbol="A", start_timestamp=i), st.integers(0, 3)),
        st.builds(lambda s: StatusMessage(status=s), st.sampled_from(["gap", "state"])),
    ),
    max_size=80,
)


@settings(max_examples=property_examples(300), deadline=None)
@given(events=events_strategy, window=st.integers(1, 20), cuts=st.lists(st.integers(0, 80), max_size=10))
def test_matches_the_reference_for_any_stream_window_and_batching(events: list[Event], window: int,
                                                                  cuts: list[int]) -> None:  # fmt: skip
    bounds = sorted({0, len(events), *(c for c in cuts if c <= len(events))})
    batches = [events[a:b] for a, b in itertools.pairwise(bounds)]
    dedupe = DuplicateFilter(window)
    got = []
    for batch in batches:
        kept = dedupe.filter(batch)
        assert dedupe.size <= window
        got.append(kept)
    expected = reference(batches, window)
    assert [[id(e) for e in b] for b in got] == [[id(e) for e in b] for b in expected]
    stats = dedupe.stats()
    assert stats.events == len(events)
    assert stats.suppressed == len(events) - sum(map(len, expected))
    assert stats.size == min(window, len({k for k in keys_of(events) if k is not None}))


# --------------------------------------------------------------------------- order and the fast path


def test_order_is_kept_and_the_input_list_untouched() -> None:
    a, b, c = trade(1), trade(2), trade(3)
    status = StatusMessage(status="gap")
    bar = EquityAgg(event_type="AM", symbol="AAPL")
    dedupe = DuplicateFilter()
    assert dedupe.filter([b]) == [b]
    batch = [status, a, b, bar, a, c, status, b, c, bar]
    snapshot = list(batch)
    kept = dedupe.filter(batch)
    assert [id(e) for e in kept] == [id(e) for e in [status, a, bar, c, status, bar]]
    assert kept is not batch
    assert batch == snapshot


def test_the_same_list_comes_back_when_nothing_is_suppressed() -> None:
    dedupe = DuplicateFilter()
    batch: list[Event] = [trade(1), StatusMessage(status="gap"), trade(2)]
    assert dedupe.filter(batch) is batch
    empty: list[Event] = []
    assert dedupe.filter(empty) is empty
    copy = [trade(1)]
    assert dedupe.filter(copy) is not copy


def test_one_lock_acquisition_per_batch() -> None:
    class CountingLock:
        def __init__(self) -> None:
            self.lock = threading.Lock()
            self.acquired = 0

        def __enter__(self) -> None:
            self.lock.acquire()
            self.acquired += 1

        def __exit__(self, *exc: object) -> None:
            self.lock.release()

    dedupe = DuplicateFilter()
    counting = CountingLock()
    dedupe._lock = counting  # type: ignore[assignment]
    batch: list[Event] = [trade(i % 50) for i in range(100)]
    assert len(dedupe.filter(batch)) == 50
    assert counting.acquired == 1


# --------------------------------------------------------------------------- threads


@pytest.fixture
def frequent_switches() -> Iterator[None]:
    """Make the interpreter switch threads as often as it can, so unguarded sections interleave."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


@pytest.mark.parametrize("window", [100_000, 500])
def test_threads_filtering_overlapping_batches_deliver_each_key_once(frequent_switches: None, window: int) -> None:
    unique = [trade(i, symbol=f"S{i % 7}") for i in range(2_000)]
    threads_count = 4
    dedupe = DuplicateFilter(window)
    barrier = threading.Barrier(threads_count)
    delivered: list[list[EquityTrade]] = [[] for _ in range(threads_count)]
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            stream = [attrs.evolve(e, connection=f"c{n}") for e in unique]
            random.Random(n).shuffle(stream)
            barrier.wait(JOIN_TIMEOUT)
            for start in range(0, len(stream), 10):
                delivered[n].extend(dedupe.filter(stream[start : start + 10]))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,), name=f"test-dedupe-{n}") for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
    assert not any(t.is_alive() for t in threads)
    assert not errors
    keys = collections.Counter(identity_key(e) for batch in delivered for e in batch)
    assert len(keys) == len(unique)
    # With room for every key, each is delivered exactly once overall; with a smaller window, a
    # thread may legitimately pass a key again once it was evicted, but never lose one, and the
    # counters, the set and the queue must still agree.
    if window >= len(unique):
        assert set(keys.values()) == {1}
        assert dedupe.suppressed == (threads_count - 1) * len(unique)
    stats = dedupe.stats()
    assert stats.size == min(window, stats.checked - stats.suppressed)
    assert stats.events == threads_count * len(unique)
    assert stats.suppressed + sum(keys.values()) == stats.events
    assert len(dedupe._seen) == len(dedupe._order) == stats.size


# --------------------------------------------------------------------------- arguments, stats


@pytest.mark.parametrize("window", [0, -1, 1.5, "10", True, None, 10**3 + 0.0])
def test_a_bad_window_raises_configuration_error_naming_it(window: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        DuplicateFilter(window)
    assert info.value.field == "window"
    assert "window" in str(info.value)
    assert "\n" not in str(info.value)


def test_defaults_stats_repr_and_clear() -> None:
    dedupe = DuplicateFilter()
    assert dedupe.window == DEFAULT_WINDOW == 100_000
    assert DuplicateFilter(1).window == 1
    a = trade(1)
    dedupe.filter([a, a, StatusMessage(status="gap")])
    assert dedupe.stats().to_dict() == {"window": DEFAULT_WINDOW, "size": 1, "events": 3, "checked": 2,
                                        "suppressed": 1, "unkeyed": 1}  # fmt: skip
    assert repr(dedupe) == "DuplicateFilter(window=100000, size=1, suppressed=1)"
    dedupe.clear()
    assert dedupe.size == 0
    assert dedupe.filter([a]) == [a]  # forgotten
    assert dedupe.suppressed == 1  # counters kept


# --------------------------------------------------------------------------- memory and work per event


def decoded_trade_frames(events: int, seed: int) -> list[bytes]:
    objs = SyntheticMarket(market="stocks", seed=seed, channels=["T"]).next_events(events)
    return [json.dumps(objs[i : i + 10], separators=(",", ":")).encode() for i in range(0, events, 10)]


@pytest.mark.performance
def test_a_full_default_window_stays_under_its_memory_bound() -> None:
    # Measured about 316 bytes per stock-trade key (benchmarks/bench_dedupe.py): the tuple, the strings
    # and integers it keeps alive, the set and deque slots. The ceiling is generous (450 B/key), but it
    # fails if the filter kept the events themselves; the last quarter shows the window stays bounded.
    window = DEFAULT_WINDOW
    more = window // 4
    frames = decoded_trade_frames(window + more, seed=11)
    decoder = Decoder("stocks", "c")
    dedupe = DuplicateFilter()
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for frame in frames[: window // 10]:
            dedupe.filter(decoder.decode(frame))
        gc.collect()
        full = tracemalloc.get_traced_memory()[0] - base
        assert dedupe.size == window
        for frame in frames[window // 10 :]:
            dedupe.filter(decoder.decode(frame))
            assert dedupe.size <= window
        gc.collect()
        after = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert dedupe.size == window
    assert dedupe.stats().checked == window + more
    assert full < 450 * window, f"{full / window:.0f} bytes per key"
    assert after < full * 1.05, f"{full:,} bytes at a full window, {after:,} after a quarter window more"


@pytest.mark.performance
def test_filtering_makes_few_calls_per_event() -> None:
    # Machine-independent: every Python or C call a profile hook sees, per event, in steady state
    # (7 per new trade when written: the key function, dict.get, set.add, len, append, popleft,
    # discard). One lock per batch, not per event, keeps it there.
    window = 1_000
    frames = decoded_trade_frames(3_000, seed=12)
    decoder = Decoder("stocks", "c")
    batches = [decoder.decode(frame) for frame in frames]
    dedupe = DuplicateFilter(window)
    for batch in batches[: window // 10]:
        dedupe.filter(batch)
    calls = 0

    def count(frame: Any, event: str, arg: Any) -> None:
        nonlocal calls
        if event in ("call", "c_call"):
            calls += 1

    measured = batches[window // 10 :]
    sys.setprofile(count)
    try:
        for batch in measured:
            dedupe.filter(batch)
    finally:
        sys.setprofile(None)
    events = sum(map(len, measured))
    assert dedupe.stats().checked == window + events
    assert calls / events <= 8, f"{calls / events:.1f} calls per event"
