"""The msgspec struct path of the decoder: same events as the dict path, refusals fall back.

The dict path (orjson or json + one dict per event) is the reference: for every frame the struct
path accepts it must produce equal events, and every frame it refuses must come out exactly as
the dict path decodes it, errors and unknown events included.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import attrs
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from massive_rt import _structdecode
from massive_rt.enums import Market
from massive_rt.models import EquityQuote, EquityTrade, MarketEvent, StatusMessage, UnknownEvent
from massive_rt.protocol import MARKET_EVENTS, Decoder
from tests.support import property_examples

pytestmark = pytest.mark.timeout(60)

CLASS_CASES = [(market, ev, cls) for market in Market for ev, cls in MARKET_EVENTS[market].items()]


def _both(market: Market | str, frame: Any) -> tuple[list[Any], list[Any], Decoder, Decoder]:
    fast = Decoder(market, "c", loads=orjson.loads)
    slow = Decoder(market, "c", loads=orjson.loads, use_msgspec=False)
    return fast.decode(frame, 7), slow.decode(frame, 7), fast, slow


def test_msgspec_is_installed_for_the_suite() -> None:
    assert _structdecode.AVAILABLE
    assert Decoder("stocks")._structs is not None
    assert Decoder("stocks", use_msgspec=False)._structs is None


@pytest.mark.parametrize(("market", "ev", "cls"), CLASS_CASES, ids=[f"{m.value}-{ev}" for m, ev, _ in CLASS_CASES])
def test_every_event_class_of_every_market_decodes_identically(market: Market, ev: str, cls: type[MarketEvent]) -> None:
    full = {key: f"v-{key}" if i % 2 else i * 1.5 for i, (key, _) in enumerate(cls.WIRE)}
    full["ev"] = ev
    sparse = {"ev": ev}
    frame = json.dumps([full, sparse, full]).encode()

    fast, slow, fast_decoder, _ = _both(market, frame)

    assert fast == slow
    assert [type(e) for e in fast] == [cls, cls, cls]
    assert all(e.event_type == ev and e.received_at_ns == 7 and e.connection == "c" for e in fast)
    assert all(getattr(fast[1], attr) is None for key, attr in cls.WIRE if key != "ev")
    assert fast_decoder.stats.events == 3


def test_a_decoded_event_is_an_ordinary_frozen_instance() -> None:
    events, _, _, _ = _both("stocks", b'[{"ev":"T","sym":"AAPL","p":187.2,"s":100,"c":[12,37],"t":1,"q":9}]')
    trade = events[0]

    assert type(trade) is EquityTrade
    assert trade == EquityTrade(event_type="T", symbol="AAPL", price=187.2, size=100, conditions=[12, 37],
                                timestamp=1, sequence_number=9, received_at_ns=7, connection="c")  # fmt: skip
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        trade.price = 1.0  # type: ignore[misc]
    assert attrs.evolve(trade, price=1.0).price == 1.0
    assert repr(trade).startswith("EquityTrade(")


def test_keys_that_are_python_keywords_are_read() -> None:
    events, slow, _, _ = _both("stocks", b'[{"ev":"Q","sym":"A","as":3,"bs":2,"ap":1.5}]')
    assert events == slow
    assert type(events[0]) is EquityQuote
    assert events[0].ask_size == 3


def test_mixed_event_types_in_one_frame_keep_wire_order() -> None:
    frame = b'[{"ev":"Q","sym":"A"},{"ev":"T","sym":"B"},{"ev":"AM","sym":"C"},{"ev":"T","sym":"D"}]'
    events, slow, _, _ = _both("stocks", frame)
    assert events == slow
    assert [(e.event_type, e.symbol) for e in events] == [("Q", "A"), ("T", "B"), ("AM", "C"), ("T", "D")]


@pytest.mark.parametrize(
    "frame",
    [
        b'[{"ev":"T","sym":"A"},{"ev":"ZZ","x":1}]',  # unknown ev
        b'[{"ev":"T","sym":"A"},{"sym":"B"}]',  # missing ev
        b'[{"ev":"T","sym":"A"},{"ev":5}]',  # ev not a string
        b'[{"ev":"T","sym":"A"},7,"x",null]',  # non-object elements
        b'{"ev":"T","sym":"A"}',  # a bare object
        b'[{"ev":"status","status":"auth_success","message":"ok"},{"ev":"T"}]',  # a status among data
        b'[{"ev":"T","sym":"A"}',  # truncated
        b"\xff\xfe[]",  # not UTF-8
        b"42",
        b"",
        '[{"ev":"ZZ","s":"\ud800"}]',  # a str that cannot be encoded
        b"[" * 3000 + b"]" * 3000,
        b'[{"ev":"T","c":' + b"[" * 3000 + b"]" * 3000 + b"}]",
    ],
    ids=lambda f: repr(f[:24]),
)
def test_refused_frames_fall_back_to_the_dict_path_with_the_same_result(frame: Any) -> None:
    fast, slow, fast_decoder, slow_decoder = _both("stocks", frame)

    assert [(type(e), getattr(e, "message", None)) for e in fast] == [
        (type(e), getattr(e, "message", None)) for e in slow
    ]
    assert [e for e in fast if not isinstance(e, StatusMessage)] == [
        e for e in slow if not isinstance(e, StatusMessage)
    ]
    assert fast_decoder.stats == slow_decoder.stats


def test_an_unknown_event_from_a_refused_frame_is_delivered_with_its_data() -> None:
    fast, _, decoder, _ = _both("stocks", b'[{"ev":"T","sym":"A"},{"ev":"NEW","k":[1,2]}]')
    assert [type(e) for e in fast] == [EquityTrade, UnknownEvent]
    assert fast[1].data == {"ev": "NEW", "k": [1, 2]}
    assert decoder.stats.unknown_events == 1


def test_integers_beyond_64_bits_stay_exact_as_with_json_loads() -> None:
    big = 2**80 + 1
    frame = json.dumps([{"ev": "T", "sym": "A", "q": big}]).encode()

    fast = Decoder("stocks", loads=orjson.loads).decode(frame)
    stdlib = Decoder("stocks", loads=json.loads, use_msgspec=False).decode(frame)

    assert fast[0].sequence_number == big == stdlib[0].sequence_number


def test_unknown_keys_are_ignored_on_both_paths() -> None:
    fast, slow, _, _ = _both("stocks", b'[{"ev":"T","sym":"A","extra":{"deep":[1]},"zz":null}]')
    assert fast == slow
    assert fast[0].symbol == "A"


def test_one_struct_decoder_per_market_table_shared_across_decoders_and_threads() -> None:
    assert Decoder("stocks")._structs is Decoder("stocks", "other")._structs
    assert Decoder("stocks")._structs is not Decoder("crypto")._structs
    decode = Decoder("stocks")._structs
    assert decode is not None
    frame = json.dumps([{"ev": "T", "sym": f"S{i}", "q": i} for i in range(50)]).encode()
    results: list[list[Any]] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(200):
                events = decode(frame, 1, "c")
                assert events is not None
                results.append(events)
        except BaseException as exc:  # pragma: no cover - only on failure
            errors.append(exc)

    threads = [threading.Thread(target=worker, name=f"massive-rt-test-{i}", daemon=True) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert len(results) == 800
    assert all([e.sequence_number for e in r] == list(range(50)) for r in results)


def test_mutable_twin_has_the_layout_of_its_class_and_is_cached() -> None:
    twin = _structdecode.mutable_twin(EquityTrade)
    assert twin is _structdecode.mutable_twin(EquityTrade)
    assert twin.__slots__ == EquityTrade.__slots__
    assert twin.__bases__ == EquityTrade.__bases__


scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False,
                    allow_infinity=False), st.text(max_size=8))  # fmt: skip
values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=3), kids,
                      max_size=3), max_leaves=8)  # fmt: skip


@settings(max_examples=property_examples(150), deadline=None)
@given(data=st.data())
def test_random_known_events_decode_identically_on_both_paths(data: st.DataObject) -> None:
    market, ev, cls = data.draw(st.sampled_from(CLASS_CASES))
    objects = []
    for _ in range(data.draw(st.integers(1, 6))):
        keys = data.draw(st.lists(st.sampled_from([k for k, _ in cls.WIRE if k != "ev"]), unique=True))
        obj: dict[str, Any] = {key: data.draw(values) for key in keys}
        obj["ev"] = ev
        objects.append(obj)
    frame = json.dumps(objects).encode()

    fast, slow, fast_decoder, slow_decoder = _both(market, frame)

    assert fast == slow
    assert fast_decoder.stats == slow_decoder.stats
