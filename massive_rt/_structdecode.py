"""Optional C-speed decoding with msgspec: a frame's bytes straight to typed events.

msgspec parses a whole frame into small per-``ev`` structs (a tagged union per market) in one
C call, without building a dict per event; each struct is then copied into the frozen attrs
event class: by the compiled accelerator when it is active (:mod:`massive_rt.speedups`, slot
to slot in C), otherwise through a mutable slot twin (see :func:`mutable_twin`). Both give the
same events. That is about 40% less time per event than ``orjson.loads`` plus dict look-ups
(benchmarks/RESULTS.md) without the accelerator.

This path only takes frames it can decode exactly: a frame that is not valid JSON, not an
array, holds a non-object element, or an object whose ``ev`` is missing or unknown to the
market makes the decoder return ``None``, and the caller decodes the frame again on the
tolerant dict path, which reports precisely what was wrong. Fields are typed ``Any``, so a
value of an unexpected JSON type is kept as it came, as on the dict path. One difference from
orjson: integers beyond 64 bits stay exact integers (as with ``json.loads``) instead of turning
into floats or failing the frame. Without msgspec installed (``pip install 'massive-rt[fast]'``)
nothing here is used.
"""

from __future__ import annotations

import functools
import operator
import types
from collections.abc import Callable, Mapping
from typing import Any

from . import speedups
from .models import Event, MarketEvent

try:
    import msgspec
    from msgspec.structs import astuple
except ImportError:  # pragma: no cover - depends on the environment
    msgspec = None  # type: ignore[assignment]

__all__ = ["AVAILABLE", "StructFrameDecoder", "bind_marks", "compile_builder", "mutable_twin", "struct_frame_decoder"]

#: True when msgspec is importable.
AVAILABLE = msgspec is not None

#: ``decode(frame, received_at_ns, connection)`` → events, or None when the frame needs the dict path.
StructFrameDecoder = Callable[[Any, int, str], "list[Event] | None"]


Converter = Callable[[Any, int, str], Event]

# The parser, the errors it refuses a frame with, and per wire struct: (ev, converter, marking converter).
_Parts = tuple[Callable[[Any], Any], tuple[type[BaseException], ...], dict[type, tuple[str, Converter, Converter]]]

# Per wire struct: the struct, its ev, its event class, the attributes its fields go to, the symbol attribute.
_WireStruct = tuple[type, str, type[MarketEvent], tuple[str, ...], str]
_Wire = tuple[Callable[[Any], Any], tuple[type[BaseException], ...], list[_WireStruct]]

_TWINS: dict[type[MarketEvent], type] = {}


def mutable_twin(cls: type[MarketEvent]) -> type:
    """A private, non-frozen class with ``cls``'s base and slots, so the same memory layout.

    A frozen attrs class can only be filled through its raising ``__setattr__`` bypass, one
    call per field. Decoders fill a twin instance with plain slot stores instead, then switch
    its ``__class__`` to ``cls``: the result is an ordinary, immutable ``cls`` instance, equal
    to ``cls(**fields)``, built in about half the time.
    """
    twin = _TWINS.get(cls)
    if twin is None:
        twin = _TWINS[cls] = type(f"_Mutable{cls.__name__}", cls.__bases__, {"__slots__": cls.__slots__})
    return twin


def compile_builder(
    cls: type[MarketEvent], source: str, fill: list[str], mark: str | None = None, **names: Any
) -> Callable[[Any, int, str], Event]:
    """Generate ``build(<source>, received_at_ns, connection)`` returning a ``cls`` event.

    ``fill`` are the statements that store the wire fields into ``obj`` (an instance of the
    mutable twin); ``names`` are extra globals they use. Shared by the dict makers
    (``protocol``) and the struct converters here, so both build events the same way.
    ``mark``: the symbol attribute; the builder then also stores the event in the dict
    :func:`bind_marks` gives it, under its symbol (unbound, the store is a no-op).
    """
    # An unhashable symbol (hostile JSON) is not marked; the event is delivered all the same.
    marking = [] if mark is None else [f"    try: marks[obj.{mark}] = obj", "    except TypeError: pass"]
    lines = [
        f"def build({source}, received_at_ns, connection):",
        "    obj = new(twin)",
        *(f"    {statement}" for statement in fill),
        "    obj.received_at_ns = received_at_ns",
        "    obj.connection = connection",
        "    obj.__class__ = cls",
        *marking,
        "    return obj",
    ]
    namespace: dict[str, Any] = {"new": object.__new__, "twin": mutable_twin(cls), "cls": cls, "marks": None,
                                 **names}  # fmt: skip
    exec("\n".join(lines), namespace)  # noqa: S102 - generated from the class's own constant WIRE table
    build: Callable[[Any, int, str], Event] = namespace["build"]
    return build


def bind_marks(build: Callable[[Any, int, str], Event], marks: dict[Any, Event]) -> Callable[[Any, int, str], Event]:
    """A copy of a builder compiled with ``mark`` that stores every event it builds in ``marks``."""
    code = build.__code__
    return types.FunctionType(code, {**build.__globals__, "marks": marks}, build.__name__)


def _compile_converter(
    cls: type[MarketEvent], ev: str, attributes: list[str], mark: str | None
) -> Callable[[Any, int, str], Event]:
    """``convert(struct, received_at_ns, connection)``: copy a wire struct into a ``cls`` event."""
    fill = [f"obj.event_type = {ev!r}"]
    if attributes:
        fill.append("({}) = astuple(struct)".format("".join(f"obj.{attr}, " for attr in attributes)))
    return compile_builder(cls, "struct", fill, mark, astuple=astuple)


@functools.cache
def _wire(events: tuple[tuple[str, type[MarketEvent]], ...]) -> _Wire:
    """The market's msgspec decoder, the errors it refuses a frame with, and per wire struct its
    ``ev``, its event class, the attributes its fields f0..fN go to and the symbol attribute."""
    structs: list[_WireStruct] = []
    for ev, cls in events:
        wire = [(key, attr) for key, attr in cls.WIRE if key != "ev"]
        # Fields are named f0..fN and renamed to the wire keys: some keys ("as") are Python keywords.
        struct = msgspec.defstruct(
            f"_Wire{ev}",
            # Any, not object: msgspec treats ``object`` as a custom type and checks every decoded
            # value with isinstance (~40 ns per trade, 12% of its decode); the values are the same.
            [(f"f{i}", Any, None) for i in range(len(wire))],
            tag_field="ev",
            tag=ev,
            rename={f"f{i}": key for i, (key, _) in enumerate(wire)},
            gc=False,  # JSON values cannot point back at the struct, so it can never be in a cycle
        )
        mark = next(attr for _, attr in cls.WIRE if attr in ("symbol", "ticker", "pair"))
        structs.append((struct, ev, cls, tuple(attr for _, attr in wire), mark))
    union: Any = functools.reduce(operator.or_, (struct for struct, *_ in structs))
    decode = msgspec.json.Decoder(list[union]).decode
    # TypeError: neither bytes nor str; ValueError: a str that is not encodable (lone surrogates).
    refused = (msgspec.MsgspecError, RecursionError, TypeError, ValueError)
    return decode, refused, structs


@functools.cache
def _build(events: tuple[tuple[str, type[MarketEvent]], ...], accelerated: bool) -> _Parts:
    """The market's msgspec decoder, the errors it refuses a frame with, and per wire struct its
    ``ev``, its converter and its marking converter (unbound): compiled ones when ``accelerated``
    and the accelerator accepts the class, the generated Python ones otherwise."""
    decode, refused, structs = _wire(events)
    converters: dict[type, tuple[str, Converter, Converter]] = {}
    for struct, ev, cls, attributes, mark in structs:
        fields = tuple(f"f{i}" for i in range(len(attributes)))
        compiled = speedups.builder(cls, struct, ev, fields, attributes, mark) if accelerated else None
        if compiled is None:
            converters[struct] = (ev, _compile_converter(cls, ev, list(attributes), None),
                                  _compile_converter(cls, ev, list(attributes), mark))  # fmt: skip
        else:
            converters[struct] = (ev, compiled, compiled)
    return decode, refused, converters


def _bind(marking: Converter, marks: dict[Any, Event]) -> Converter:
    """The marking converter storing its events in ``marks``: compiled (``bind``) or Python."""
    bind = getattr(marking, "bind", None)
    return bind(marks) if bind is not None else bind_marks(marking, marks)


def _frame_decoder(
    events: tuple[tuple[str, type[MarketEvent]], ...], marks: Mapping[str, dict[Any, Event]] | None, accelerated: bool
) -> StructFrameDecoder:
    decode, refused, compiled = _build(events, accelerated)
    if marks is None:
        converters = {struct: convert for struct, (_, convert, _) in compiled.items()}
    else:
        converters = {struct: _bind(marking, marks[ev]) for struct, (ev, _, marking) in compiled.items()}
    build_events = speedups.build_events if accelerated else speedups.build_events_python

    def decode_frame(data: Any, received_at_ns: int, connection: str) -> list[Event] | None:
        try:
            items = decode(data)
        except refused:
            return None
        return build_events(items, converters, received_at_ns, connection)

    return decode_frame


def struct_frame_decoder(
    events: Mapping[str, type[MarketEvent]],
    marks: Mapping[str, dict[Any, Event]] | None = None,
    *,
    accelerated: bool | None = None,
) -> StructFrameDecoder | None:
    """The msgspec frame decoder for a market's ``{ev: event class}`` table (None without msgspec).

    The parser is built once per table. Without ``marks`` the decoder holds no state, so any
    number of threads may use it; with ``marks`` (``{ev: {}}`` for every ``ev`` of the table)
    it stores each event it builds in ``marks[ev][symbol]``: one consumer at a time.
    ``accelerated``: build the events with the compiled accelerator (:mod:`massive_rt.speedups`)
    where it is active; None (the default) means whenever it is active, False forces the
    pure-Python converters (the tests compare both).
    """
    if not AVAILABLE:
        return None
    use = speedups.ACTIVE if accelerated is None else accelerated and speedups.ACTIVE
    table = tuple(sorted(events.items()))
    return _shared_frame_decoder(table, use) if marks is None else _frame_decoder(table, marks, use)


@functools.cache
def _shared_frame_decoder(events: tuple[tuple[str, type[MarketEvent]], ...], accelerated: bool) -> StructFrameDecoder:
    """The stateless decoder of a table, built once and shared by every decoder without marks."""
    return _frame_decoder(events, None, accelerated)
