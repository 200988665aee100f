"""JSON in one place: orjson when installed (the ``fast`` extra, measured several times faster,
benchmarks/RESULTS.md), else the standard library — with the same output either way.

``dumps`` falls back to :mod:`json` per call on what orjson refuses (a non-``str`` key, an
integer beyond 64 bits in an :class:`~massive_rt.UnknownEvent`'s data), so nothing a decoder
accepted is ever unencodable.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

__all__ = ["HAVE_ORJSON", "dumps", "dumps_str", "loads"]

logger = logging.getLogger(__name__)

_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _stdlib_dumps(obj: Any) -> bytes:
    return _compact(obj).encode()


try:  # optional (the "fast" extra)
    import orjson

    HAVE_ORJSON = True
    #: Parse a JSON document (``bytes`` or ``str``).
    loads: Callable[[Any], Any] = orjson.loads

    def dumps(obj: Any) -> bytes:
        """Compact UTF-8 JSON."""
        try:
            return orjson.dumps(obj)
        except TypeError:
            return _stdlib_dumps(obj)

except ImportError:  # pragma: no cover - depends on the environment
    HAVE_ORJSON = False
    loads = json.loads
    dumps = _stdlib_dumps


def dumps_str(obj: Any) -> str:
    """Compact JSON as ``str``."""
    return dumps(obj).decode()
