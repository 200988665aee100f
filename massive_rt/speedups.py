"""The optional compiled accelerator, and whether it is active.

``massive_rt._speedups`` is a small C extension built at install time when a C compiler is
present (``setup.py``, ``optional=True``). It builds the frozen, slotted event classes straight
from the structs msgspec decodes (``massive_rt._structdecode``), without ``__init__`` or
``__setattr__``: the same objects as the pure-Python path, in less time. Without it (no
compiler at install, or ``MASSIVE_RT_NO_EXTENSIONS=1`` in the environment when ``massive_rt``
is first imported) the pure-Python converters build them; nothing else changes. The builders run
only on msgspec's decode path, so a built extension without msgspec installed stays idle
(``pip install 'massive-rt[fast]'`` adds msgspec).

The extension also packs recording records (:data:`pack_records_native`, used by
:class:`~massive_rt.recording.RecordingWriter` whenever the extension is built and not disabled,
msgspec or not; the pure-Python packer writes the same bytes), and runs ``get()``'s fast path
(:data:`ready_get`: an event already decoded is popped in C, one C call instead of a Python call
per event; every other case runs the Python method).

Read :data:`ACTIVE` (also ``massive_rt.accelerated``) or :data:`STATUS`, or run
``massive-rt --version``, to see which path is in use.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable
from types import ModuleType
from typing import Any

import attrs

__all__ = [
    "ACTIVE",
    "DISABLE_VARIABLE",
    "IDLE_STATUS",
    "STATUS",
    "build_events",
    "build_events_python",
    "builder",
    "pack_records_native",
    "ready_get",
]

logger = logging.getLogger(__name__)

#: The environment variable that forces the pure-Python path when set to anything but ``""``/``"0"``.
DISABLE_VARIABLE = "MASSIVE_RT_NO_EXTENSIONS"

#: A builder turns one decoded struct into one event: ``build(struct, received_at_ns, connection)``.
Build = Callable[[Any, int, str], Any]

#: :data:`STATUS` when the extension is built but msgspec is not installed, so nothing calls it.
IDLE_STATUS = "built, idle: needs msgspec (pip install 'massive-rt[fast]')"


def _msgspec_importable() -> bool:
    """Whether the msgspec struct decoder (the accelerator's only caller) can be imported."""
    try:
        importlib.import_module("msgspec.structs")
    except ImportError:
        return False
    return True


_native: ModuleType | None = None
#: Which path builds the events, and why: ``"active"``, ``"disabled (MASSIVE_RT_NO_EXTENSIONS is
#: set)"``, ``"not built (<the import error>)"`` or :data:`IDLE_STATUS` (built, but no msgspec).
STATUS: str
if os.environ.get(DISABLE_VARIABLE, "") not in ("", "0"):
    STATUS = f"disabled ({DISABLE_VARIABLE} is set)"
else:
    try:
        _native = importlib.import_module("massive_rt._speedups")
    except ImportError as exc:  # no compiler when it was installed, or a foreign build
        STATUS = f"not built ({exc})"
    else:
        STATUS = "active" if _msgspec_importable() else IDLE_STATUS

#: True when the C accelerator builds the events: it is built, not disabled, and msgspec (whose
#: decode path is the only one that uses it) is importable.
ACTIVE: bool = STATUS == "active"


#: The compiled record packer of :mod:`massive_rt.recording.fileformat` (``pack_records(out,
#: received_at_ns, connection, kind, payloads) -> bytes appended``) when the extension is built and
#: not disabled, else None (the file format module then packs in Python: the same bytes).
pack_records_native: Callable[[bytearray, int, int, int, bytes | list[bytes]], int] | None = getattr(
    _native, "pack_records", None
)


#: ``ready_get(ready, get)``: a callable that pops the next event of the deque ``ready`` in C and
#: calls ``get`` (the consumer's full ``get``) with the same arguments when none is ready; the
#: fast path of :meth:`massive_rt.consumer.QueueConsumer.get`, one C call per event instead of a
#: Python call. None when the extension is not built or is disabled.
ready_get: Callable[[Any, Callable[..., Any]], Callable[..., Any]] | None = getattr(_native, "ReadyGet", None)


def build_events_python(
    items: list[Any], builders: dict[type, Build], received_at_ns: int, connection: str
) -> list[Any]:
    """The pure-Python :data:`build_events`."""
    return [builders[item.__class__](item, received_at_ns, connection) for item in items]


#: ``build_events(structs, {struct class: builder}, received_at_ns, connection)`` → one event per
#: struct, in order (a KeyError for a struct class without a builder). Compiled when :data:`ACTIVE`.
build_events: Callable[[list[Any], dict[type, Build], int, str], list[Any]] = (
    _native.build_events if _native is not None else build_events_python
)


def builder(
    cls: type, source: type, event_type: str, fields: tuple[str, ...], attributes: tuple[str, ...], mark: str | None
) -> Any | None:
    """The compiled builder of ``cls`` events from ``source`` structs, or None (use Python's).

    ``fields[i]`` of the struct is copied into ``attributes[i]`` of the event; ``event_type``
    goes into ``event_type``; ``mark`` names the attribute a bound builder (``.bind(marks)``)
    keys its marks dict with. None when the accelerator is not active, when ``cls``'s attrs fields
    are not exactly these attributes plus the three stamped ones, or when either class's layout
    is not the plain object slots expected (logged at DEBUG): never a crash.
    """
    if _native is None:
        return None
    stamped = {"event_type", "received_at_ns", "connection"}
    if not attrs.has(cls) or {f.name for f in attrs.fields(cls)} != stamped | set(attributes):
        logger.debug("no compiled builder for %s: its fields are not the ones given", cls.__qualname__)
        return None
    try:
        return _native.Builder(cls, source, event_type, fields, attributes, mark)
    except (TypeError, ValueError) as exc:
        logger.debug("no compiled builder for %s: %s", cls.__qualname__, exc)
        return None
