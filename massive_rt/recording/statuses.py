"""Statuses to bytes and back: a :class:`~massive_rt.StatusMessage` as the JSON a recording holds.

Every field survives the round trip. The ``error`` is kept as its type name, message and
structured fields; it comes back as the same massive_rt error class when that name is one
(:mod:`massive_rt.errors` or this package's errors), else as a :class:`RecordedError`.
"""

from __future__ import annotations

import json
from typing import Any

from .. import errors
from ..enums import AdapterState, ConnectionState
from ..errors import MassiveRTError
from ..models import StatusMessage, SymbolMark
from . import fileformat

__all__ = ["RecordedError", "decode_status", "encode_status"]

_ERROR_ATTRS = ("connection", "status", "field", "channels")
_STATE_TYPES = {"ConnectionState": ConnectionState, "AdapterState": AdapterState}


class RecordedError(MassiveRTError):
    """An error a recorded status carried whose class is not a massive_rt error: ``type_name`` keeps its name."""

    def __init__(self, message: str, *, type_name: str, connection: str | None = None) -> None:
        super().__init__(message, connection=connection)
        self.type_name = type_name


def encode_status(status: StatusMessage) -> bytes:
    """The JSON bytes of ``status`` (every field; the error as type name, message and fields)."""
    state = status.state
    out: dict[str, Any] = {
        "status": status.status, "message": status.message, "connection": status.connection,
        "received_at_ns": status.received_at_ns, "event_type": status.event_type,
        "channels": list(status.channels), "dropped": status.dropped, "gap_start_ns": status.gap_start_ns,
        "gap_end_ns": status.gap_end_ns, "from_server": status.from_server,
    }  # fmt: skip
    if status.last_seen or status.last_seen_omitted:
        out["last_seen"] = [[m.symbol, m.ev, m.timestamp, m.sequence, m.received_at_ns] for m in status.last_seen]
        out["last_seen_omitted"] = status.last_seen_omitted
        out["last_seen_omitted_oldest"] = status.last_seen_omitted_oldest
    if state is not None:
        out["state"] = [type(state).__name__, getattr(state, "value", str(state))]
    error = status.error
    if error is not None:
        recorded: dict[str, Any] = {"type": getattr(error, "type_name", type(error).__name__),
                                    "message": getattr(error, "message", str(error))}  # fmt: skip
        for name in _ERROR_ATTRS:
            value = getattr(error, name, None)
            if isinstance(value, (str, int, float)) or value is None:
                recorded[name] = value
            elif isinstance(value, (tuple, list, frozenset, set)):
                recorded[name] = sorted(value) if isinstance(value, (frozenset, set)) else list(value)
        out["error"] = recorded
    return json.dumps(out, separators=(",", ":")).encode()


def decode_status(payload: bytes) -> StatusMessage:
    """The :class:`StatusMessage` of :func:`encode_status`'s bytes."""
    raw: dict[str, Any] = json.loads(payload)
    state: Any = raw.get("state")
    if state is not None:
        enum_type = _STATE_TYPES.get(state[0])
        state = enum_type(state[1]) if enum_type is not None else state[1]
    error = raw.get("error")
    return StatusMessage(
        status=raw["status"], message=raw["message"], connection=raw["connection"],
        received_at_ns=raw["received_at_ns"], event_type=raw.get("event_type", "status"), state=state,
        error=None if error is None else _rebuild_error(error), channels=tuple(raw.get("channels", ())),
        dropped=raw.get("dropped", 0), gap_start_ns=raw.get("gap_start_ns"), gap_end_ns=raw.get("gap_end_ns"),
        from_server=raw.get("from_server", False),
        last_seen=tuple(SymbolMark(symbol=m[0], ev=m[1], timestamp=m[2], sequence=m[3], received_at_ns=m[4])
                        for m in raw.get("last_seen", ())),
        last_seen_omitted=raw.get("last_seen_omitted", 0),
        last_seen_omitted_oldest=raw.get("last_seen_omitted_oldest"),
    )  # fmt: skip


def _rebuild_error(recorded: dict[str, Any]) -> MassiveRTError:
    type_name = recorded["type"]
    cls = getattr(errors, type_name, None) or getattr(fileformat, type_name, None)
    if not (isinstance(cls, type) and issubclass(cls, MassiveRTError)):
        return RecordedError(recorded["message"], type_name=type_name, connection=recorded.get("connection"))
    error = cls.__new__(cls)
    Exception.__init__(error, recorded["message"])
    error.message = recorded["message"]
    for name in _ERROR_ATTRS:
        if name in recorded:
            value = recorded[name]
            setattr(error, name, tuple(value) if isinstance(value, list) else value)
    if not hasattr(error, "connection"):
        error.connection = None
    if not hasattr(error, "status"):
        error.status = None
    return error
