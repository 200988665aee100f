"""The compiled accelerator (massive_rt._speedups) builds exactly the events the Python path builds.

Both paths run in this process: ``accelerated=False`` forces the generated Python converters,
``accelerated=True`` the C builders. Every event class of every market is compared field by
field, on Hypothesis-drawn values (missing optionals, unicode, integers beyond 64 bits, floats),
together with what ``==``, ``hash``, ``repr``, ``origin`` and the delivery marks see. Malformed
frames must come out the same on both, and building must neither leak references nor memory.
"""

from __future__ import annotations

import gc
import importlib
import json
import math
import os
import sys
import tracemalloc
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from massive_rt import _structdecode, speedups
from massive_rt.enums import Market
from massive_rt.marks import DeliveryMarks
from massive_rt.models import EquityTrade, Event, MarketEvent
from massive_rt.protocol import MARKET_EVENTS, Decoder
from tests.support import property_examples

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not speedups.ACTIVE, reason=f"the accelerator is {speedups.STATUS}"),
]

CLASS_CASES = [(market, ev, cls) for market in Market for ev, cls in MARKET_EVENTS[market].items()]
CLASS_IDS = [f"{m.value}-{ev}" for m, ev, _ in CLASS_CASES]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # unbounded: beyond 64 bits msgspec keeps exact ints
    st.integers(min_value=2**63, max_value=2**200),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),  # any unicode but lone surrogates, which JSON text cannot carry
)
values = st.recursive(
    scalars,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=4), kids, max_size=3),
    max_leaves=6,
)


def _decoders(market: Market, marks: bool = False) -> tuple[Decoder, Decoder]:
    def make(accelerated: bool) -> Decoder:
        delivery = DeliveryMarks(MARKET_EVENTS[market]) if marks else None
        return Decoder(market, "conn", use_msgspec=True, marks=delivery, accelerated=accelerated)

    return make(True), make(False)


def _assert_same_event(ours: Event, reference: Event) -> None:
    assert type(ours) is type(reference)
    for field in attrs.fields(type(reference)):
        mine, theirs = getattr(ours, field.name), getattr(reference, field.name)
        assert type(mine) is type(theirs), field.name
        assert mine == theirs or (isinstance(mine, float) and math.isnan(mine) and math.isnan(theirs)), field.name
    assert ours == reference
    assert hash(ours) == hash(reference) if _hashable(reference) else True
    assert repr(ours) == repr(reference)
    assert ours.origin == reference.origin == "live"
    assert gc.is_tracked(ours) == gc.is_tracked(reference)


def _hashable(event: Event) -> bool:
    try:
        hash(event)
    except TypeError:
        return False
    return True


def test_the_accelerator_is_active_and_reported() -> None:
    import massive_rt

    assert massive_rt.accelerated is True
    assert speedups.STATUS == "active"
    assert Decoder("stocks", accelerated=False)._structs is not Decoder("stocks")._structs


@pytest.mark.skipif(not os.environ.get("MASSIVE_RT_REQUIRE_EXTENSIONS"), reason="CI only (.ci/run sets it)")
def test_ci_builds_the_accelerator() -> None:
    assert speedups.ACTIVE, speedups.STATUS


@pytest.mark.parametrize(("market", "ev", "cls"), CLASS_CASES, ids=CLASS_IDS)
def test_every_class_of_every_market_builds_the_same_event_on_both_paths(
    market: Market, ev: str, cls: type[MarketEvent]
) -> None:
    keys = [key for key, _ in cls.WIRE if key != "ev"]
    full = {
        key: (f"välue-{key}-😀" if i % 3 == 0 else i * 1.25 if i % 3 == 1 else 2**70 + i) for i, key in enumerate(keys)
    }
    frame = json.dumps([{"ev": ev, **full}, {"ev": ev}, {"ev": ev, keys[0]: None}]).encode()
    fast, slow = _decoders(market)

    ours, reference = fast.decode(frame, 12_345), slow.decode(frame, 12_345)

    assert [type(e) for e in ours] == [cls, cls, cls]
    for mine, theirs in zip(ours, reference, strict=True):
        _assert_same_event(mine, theirs)
    assert all(getattr(ours[1], attr) is None for key, attr in cls.WIRE if key != "ev")
    assert fast.stats == slow.stats


@settings(max_examples=property_examples(200), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_events_of_every_class_are_the_same_field_by_field(data: st.DataObject) -> None:
    market, ev, cls = data.draw(st.sampled_from(CLASS_CASES))
    objects = []
    for _ in range(data.draw(st.integers(1, 5))):
        keys = data.draw(st.lists(st.sampled_from([k for k, _ in cls.WIRE if k != "ev"]), unique=True))
        objects.append({"ev": ev, **{key: data.draw(values) for key in keys}})
    frame = json.dumps(objects, ensure_ascii=data.draw(st.booleans())).encode()
    received = data.draw(st.integers(0, 2**64))
    fast, slow = _decoders(market, marks=True)

    ours, reference = fast.decode(frame, received), slow.decode(frame, received)

    assert len(ours) == len(reference) == len(objects)
    for mine, theirs in zip(ours, reference, strict=True):
        _assert_same_event(mine, theirs)
    assert fast.stats == slow.stats


@pytest.mark.parametrize(
    "frame",
    [
        b'[{"ev":"T","sym":"A"},{"sym":"no ev"}]',  # an object without ev: the whole frame goes the dict way
        b'[{"ev":"T","sym":"A"},{"ev":"NEW","sym":"B"}]',  # an ev unknown to the market
        b'[{"ev":"T","sym":"A"},7]',  # a non-object element
        b'[{"ev":"T","sym":"A","p":"not a number","s":[1,{"x":null}],"c":"12"}]',  # wrong types, kept as sent
        b'[{"ev":"T","sym":["unhashable"]},{"ev":"Q","sym":{"also":"unhashable"}}]',  # not marked, delivered
        b'{"ev":"T","sym":"A"}',  # a bare object
        b'[{"ev":"T","sym":"A"',  # truncated
        b"\xff\xfe",  # not UTF-8
        b"[" * 5000 + b"]" * 5000,  # too deep
        b"[]",
        b'"a string"',
    ],
)
def test_malformed_frames_come_out_the_same_on_both_paths(frame: bytes) -> None:
    fast, slow = _decoders(Market.STOCKS, marks=True)

    ours, reference = fast.decode(frame, 1), slow.decode(frame, 1)

    assert len(ours) == len(reference)
    for mine, theirs in zip(ours, reference, strict=True):
        _assert_same_event(mine, theirs)
    assert fast.stats == slow.stats


def test_marks_hold_the_same_last_event_per_symbol_on_both_paths() -> None:
    frame = b'[{"ev":"T","sym":"A","q":1},{"ev":"T","sym":"B","q":2},{"ev":"T","sym":"A","q":3},{"ev":"Q","sym":"A"}]'
    marks = {flag: DeliveryMarks(MARKET_EVENTS[Market.STOCKS]) for flag in (True, False)}
    decoders = {flag: Decoder("stocks", "c", marks=marks[flag], accelerated=flag) for flag in (True, False)}

    events = {flag: decoder.decode(frame, 5) for flag, decoder in decoders.items()}

    for flag in (True, False):
        trades = marks[flag].by_ev["T"]
        assert trades == {"A": events[flag][2], "B": events[flag][1]}
        assert trades["A"] is events[flag][2]  # the event delivered, not a copy
    assert marks[True].by_ev == marks[False].by_ev


def _wire_table() -> tuple[Any, dict[type, Any], dict[type, Any]]:
    """The stocks msgspec decoder and, per struct class, its compiled and its Python converter."""
    table = tuple(sorted(MARKET_EVENTS[Market.STOCKS].items()))
    decode, _, compiled = _structdecode._build(table, True)
    _, _, python = _structdecode._build(table, False)
    return decode, {s: c for s, (_, c, _) in compiled.items()}, {s: c for s, (_, c, _) in python.items()}


def test_the_same_structs_give_events_whose_fields_are_the_very_same_objects() -> None:
    decode, compiled, python = _wire_table()
    items = decode(b'[{"ev":"T","sym":"AAPL","p":1.5,"c":[1,2],"t":123456789012345678901234},{"ev":"AM","sym":"B"}]')
    connection, received = "c", 2**65

    ours = speedups.build_events(items, compiled, received, connection)
    reference = speedups.build_events_python(items, python, received, connection)

    assert all(type(builder) is not type(_wire_table) for builder in compiled.values())  # compiled, not functions
    for mine, theirs in zip(ours, reference, strict=True):
        for field in attrs.fields(type(theirs)):
            if field.name != "event_type":
                assert getattr(mine, field.name) is getattr(theirs, field.name), field.name


def test_building_leaks_no_references_and_no_memory() -> None:
    decode, compiled, _ = _wire_table()
    symbol, connection, received = "LEAKCHECK", "leak-conn", 2**70
    items = decode(json.dumps([{"ev": "T", "sym": symbol, "c": [1, 2], "p": 1.5}] * 10).encode())
    conditions = items[0].f7  # c, the eighth wire key of a trade
    marks: dict[Any, Any] = {}
    marking = {type(items[0]): compiled[type(items[0])].bind(marks)}
    unhashable = decode(b'[{"ev":"T","sym":["x"]}]')
    watched = (items[0].f0, connection, received, conditions)
    before = [sys.getrefcount(obj) for obj in watched]

    def build_and_drop() -> None:
        for _ in range(2_000):
            speedups.build_events(items, compiled, received, connection)
            speedups.build_events(items, marking, received, connection)
            speedups.build_events(unhashable, {type(unhashable[0]): marking[type(items[0])]}, received, connection)
        marks.clear()

    build_and_drop()  # warm-up: caches, free lists
    gc.collect()
    tracemalloc.start()
    try:
        build_and_drop()
        gc.collect()
        first, _ = tracemalloc.get_traced_memory()
        for _ in range(3):
            build_and_drop()
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # 84,000 more events built and dropped: a leak of even one byte per event would show.
    assert after - first < 16_384
    assert [sys.getrefcount(obj) for obj in watched] == before


def test_a_builder_refuses_a_struct_of_another_class_without_crashing() -> None:
    decode, compiled, _ = _wire_table()
    trade, agg = decode(b'[{"ev":"T","sym":"A"},{"ev":"AM","sym":"B"}]')

    with pytest.raises(TypeError, match="expected a _WireT"):
        compiled[type(trade)](agg, 1, "c")
    with pytest.raises(KeyError):
        speedups.build_events([trade], {}, 1, "c")


def test_a_class_whose_layout_is_not_plain_slots_gets_no_builder_and_the_python_path_is_kept() -> None:
    native = importlib.import_module("massive_rt._speedups")
    decode, _, _ = _wire_table()
    struct = type(decode(b'[{"ev":"T"}]')[0])
    fields = tuple(f"f{i}" for i in range(len(EquityTrade.WIRE) - 1))
    attributes = tuple(attr for key, attr in EquityTrade.WIRE if key != "ev")

    @attrs.frozen(kw_only=True)
    class Extended(EquityTrade):
        extra: int = 0

    @attrs.frozen(kw_only=True)
    class Same(EquityTrade):
        pass

    @attrs.define(slots=False, kw_only=True)
    class WithDict:
        event_type: Any = None
        received_at_ns: int = 0
        connection: str = ""

    assert speedups.builder(Extended, struct, "T", fields, attributes, "symbol") is None  # a field it cannot fill
    assert speedups.builder(WithDict, struct, "T", (), (), None) is None  # a __dict__, no slots
    assert speedups.builder(EquityTrade, int, "T", fields, attributes, "symbol") is None  # not a struct
    with pytest.raises(TypeError, match="not a plain slotted class"):
        native.Builder(WithDict, struct, "T", (), (), None)
    with pytest.raises(TypeError, match="two attributes share one slot"):
        native.Builder(EquityTrade, struct, "T", ("f0", "f1"), ("symbol", "symbol"))
    with pytest.raises(ValueError, match="not among the attributes"):
        native.Builder(EquityTrade, struct, "T", ("f0",), ("symbol",), "price")
    # A subclass with the same fields and slots is built as itself.
    same = speedups.builder(Same, struct, "T", fields, attributes, "symbol")
    assert same is not None
    event = same(decode(b'[{"ev":"T","sym":"Z","p":2.5}]')[0], 3, "c")
    assert type(event) is Same
    assert event == Same(event_type="T", symbol="Z", price=2.5, received_at_ns=3, connection="c")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        event.price = 1.0  # type: ignore[misc]
