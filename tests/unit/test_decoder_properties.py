"""Decoder properties: whatever arrives, ``decode`` returns events, never raises, and counts exactly.

Every example is decoded by a decoder of every market, with ``json.loads`` and ``orjson.loads``
on the dict path and with the msgspec struct path in front, so no market depends on the luck of
the draw.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from massive_rt.enums import Market
from massive_rt.models import Event, MarketEvent, StatusMessage, UnknownEvent
from massive_rt.protocol import MARKET_EVENTS, Decoder, DecodeStats
from tests.support import property_examples

PROPERTY_SETTINGS = settings(
    max_examples=property_examples(200), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
LOADERS: tuple[Callable[[Any], Any], ...] = (json.loads, orjson.loads)
RECEIVED_AT_NS = 1_700_000_000_000_000_001
CONNECTION = "prop-conn"

ALL_EVS = sorted({ev for table in MARKET_EVENTS.values() for ev in table})
ALL_WIRE_KEYS = sorted({key for table in MARKET_EVENTS.values() for cls in table.values() for key, _ in cls.WIRE})

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.one_of(st.sampled_from(["ev", "sym", "pair", "T", "p"]), st.text(max_size=4)), children,
                        max_size=5),
    ),
    max_leaves=25,
)  # fmt: skip
ev_values = st.one_of(
    st.sampled_from([*ALL_EVS, "status", "ZZ", "", "t", "XS"]),
    st.text(max_size=5),
    json_scalars,
    st.lists(json_scalars, max_size=2),
)
wire_objects = st.one_of(
    st.builds(
        lambda fields, ev: {**fields, "ev": ev},
        st.dictionaries(st.one_of(st.sampled_from(ALL_WIRE_KEYS), st.text(max_size=3)), json_values, max_size=8),
        ev_values,
    ),
    st.dictionaries(st.sampled_from([k for k in ALL_WIRE_KEYS if k != "ev"]), json_scalars, max_size=5),  # no "ev"
)


def _snapshot(stats: DecodeStats) -> tuple[int, int, int, int]:
    return stats.frames, stats.events, stats.decode_errors, stats.unknown_events


def _is_decode_error(event: Event) -> bool:
    return isinstance(event, StatusMessage) and event.status == "decode_error" and not event.from_server


#: One long-lived decoder per (market, loader): like a connection's, it sees many frames (and
#: logs each unknown code once, which keeps the property runs fast).
DECODERS: list[tuple[Decoder, Callable[[Any], Any]]] = [
    (Decoder(market, connection=CONNECTION, loads=loads, use_msgspec=structs), loads)
    for market in Market
    for loads in LOADERS
    for structs in (False, True)
]


def _same_value(value: Any, expected: Any) -> bool:
    """Equal, or equal as floats where orjson turned an integer beyond 64 bits into a float and
    the msgspec path (like ``json.loads``) kept it exact."""
    if type(value) is list and type(expected) is list:
        return len(value) == len(expected) and all(_same_value(a, b) for a, b in zip(value, expected, strict=True))
    if type(value) is dict and type(expected) is dict:
        return value.keys() == expected.keys() and all(_same_value(value[k], expected[k]) for k in value)
    if value == expected:
        return True
    numbers = (int, float)
    return type(value) in numbers and type(expected) in numbers and float(value) == float(expected)


def _decode_everywhere(data: Any) -> list[tuple[Decoder, Callable[[Any], Any], list[Event]]]:
    """Decode ``data`` with a decoder of every market and both loaders, checking the invariants."""
    results = []
    for decoder, loads in DECODERS:
        before = _snapshot(decoder.stats)

        events = decoder.decode(data, received_at_ns=RECEIVED_AT_NS)

        _check_invariants(decoder, before, events)
        results.append((decoder, loads, events))
    return results


def _check_invariants(decoder: Decoder, before: tuple[int, int, int, int], events: list[Event]) -> None:
    frames, counted, errors, unknown = (a - b for a, b in zip(_snapshot(decoder.stats), before, strict=True))
    assert type(events) is list
    assert all(isinstance(event, Event) for event in events)
    assert all((e.received_at_ns, e.connection) == (RECEIVED_AT_NS, CONNECTION) for e in events)
    assert frames == 1
    assert errors == sum(_is_decode_error(e) for e in events)
    assert unknown == sum(type(e) is UnknownEvent for e in events)
    # Events of an array are counted; a frame rejected as a whole yields one uncounted decode_error.
    frame_rejected = counted == 0 and len(events) == 1 and _is_decode_error(events[0])
    assert counted + frame_rejected == len(events)


@PROPERTY_SETTINGS
@given(data=st.binary(max_size=400))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    _decode_everywhere(data)


@PROPERTY_SETTINGS
@given(data=st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=200))
def test_arbitrary_text_never_raises(data: str) -> None:
    _decode_everywhere(data)


@PROPERTY_SETTINGS
@given(value=json_values, as_bytes=st.booleans())
def test_arbitrary_json_values_never_raise(value: Any, as_bytes: bool) -> None:
    text = json.dumps(value)

    for _, _, events in _decode_everywhere(text.encode() if as_bytes else text):
        if type(value) is list:
            assert len(events) == len(value)
        elif type(value) is dict:
            assert len(events) == 1
        else:
            assert len(events) == 1
            assert _is_decode_error(events[0])


@PROPERTY_SETTINGS
@given(objects=st.lists(st.one_of(wire_objects, json_scalars), max_size=12), bare=st.booleans())
def test_arrays_of_objects_decode_one_event_per_element_of_the_right_kind(objects: list[Any], bare: bool) -> None:
    payload: Any = objects[0] if bare and objects and type(objects[0]) is dict else objects
    text = json.dumps(payload)

    for decoder, loads, events in _decode_everywhere(text):
        parsed = loads(text)  # what the decoder saw (orjson turns ints beyond 64 bits into floats)
        elements = [parsed] if type(parsed) is dict else parsed
        assert len(events) == len(elements)
        table = MARKET_EVENTS[decoder.market]
        for element, event in zip(elements, events, strict=True):
            if type(element) is not dict:
                assert _is_decode_error(event)
                continue
            ev = element.get("ev")
            if ev == "status" and type(ev) is str:
                assert isinstance(event, StatusMessage)
                assert event.from_server is True
            elif isinstance(ev, str) and ev in table:
                assert type(event) is table[ev]
                assert isinstance(event, MarketEvent)
                assert event.event_type == ev
                # Values are kept as decoded, attribute by attribute.
                for key, attr in table[ev].WIRE:
                    assert _same_value(getattr(event, attr), element.get(key))
            else:
                assert type(event) is UnknownEvent
                assert event.event_type == (ev if isinstance(ev, str) else None)
                assert _same_value(event.data, element)


@PROPERTY_SETTINGS
@given(objects=st.lists(wire_objects, min_size=1, max_size=8))
def test_binary_and_text_frames_decode_alike(objects: list[dict[str, Any]]) -> None:
    text = json.dumps(objects)

    for decoder, _ in DECODERS:
        from_text = decoder.decode(text, 5)
        from_bytes = decoder.decode(text.encode(), 5)
        assert from_text == from_bytes


@PROPERTY_SETTINGS
@given(frames=st.lists(st.one_of(st.binary(max_size=60), json_values.map(json.dumps)), max_size=10))
def test_stats_accumulate_over_a_stream_of_frames(frames: list[Any]) -> None:
    decoder = Decoder("stocks", loads=orjson.loads)
    returned = errors = unknown = rejected = 0

    for frame in frames:
        counted_before = decoder.stats.events
        events = decoder.decode(frame)
        returned += len(events)
        errors += sum(_is_decode_error(e) for e in events)
        unknown += sum(type(e) is UnknownEvent for e in events)
        rejected += decoder.stats.events == counted_before and len(events) == 1 and _is_decode_error(events[0])

    assert decoder.stats == DecodeStats(
        frames=len(frames), events=returned - rejected, decode_errors=errors, unknown_events=unknown
    )
