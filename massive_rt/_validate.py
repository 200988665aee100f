"""Argument checks shared by the public constructors; each raises ConfigurationError naming the field."""

from __future__ import annotations

import math

from .errors import ConfigurationError

__all__ = ["field_error", "require_int", "require_name", "require_number"]


def require_int(field: str, value: object, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum`` (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"{field}={value!r} must be an int >= {minimum}", field=field)
    return value


def require_number(field: str, value: object, *, minimum: float = 0.0, strict: bool = False) -> float:
    """``value`` as a finite float >= ``minimum`` (> with ``strict``); bools refused."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < minimum
        or (strict and value == minimum)
    ):
        relation = ">" if strict else ">="
        raise ConfigurationError(f"{field}={value!r} must be a finite number {relation} {minimum:g}", field=field)
    return float(value)


def require_name(field: str, value: object) -> str:
    """A non-empty string without whitespace (used in thread names and logs)."""
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise ConfigurationError(f"{field}={value!r} must be a non-empty string without whitespace", field=field)
    return value


def field_error(field: str, message: str) -> ConfigurationError:
    """A :class:`ConfigurationError` for ``field``, its message prefixed with the field's name."""
    return ConfigurationError(f"{field}: {message}", field=field)
