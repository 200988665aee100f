"""Exception hierarchy. Every exception the library raises on purpose derives from
:class:`MassiveRTError` and carries structured fields instead of only a message."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "AuthenticationError",
    "ClientClosedError",
    "ConfigurationError",
    "ConnectionClosedError",
    "ConnectionLimitError",
    "HandshakeError",
    "MassiveRTError",
    "RestDataError",
    "RestError",
    "SubscriptionError",
    "WaitTimeoutError",
]


class MassiveRTError(Exception):
    """Base class of all massive_rt errors.

    Attributes:
        message: human-readable description (never contains the API key).
        connection: name of the connection involved, if any.
        status: the server's ``status`` string that caused it, if any.
    """

    def __init__(self, message: str, *, connection: str | None = None, status: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.connection = connection
        self.status = status

    def __str__(self) -> str:
        return f"[{self.connection}] {self.message}" if self.connection else self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, connection={self.connection!r}, status={self.status!r})"


class ConfigurationError(MassiveRTError, ValueError):
    """An argument or configuration value is invalid. ``field`` names the parameter."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class AuthenticationError(MassiveRTError):
    """The server answered ``auth_failed`` (bad key or plan without access). Never retried."""


class HandshakeError(MassiveRTError):
    """The server answered the WebSocket upgrade with a final HTTP status (404, 403, a redirect ...).

    Not a Massive endpoint, or something in between refusing: retrying cannot fix it. (429 and
    5xx answers are retried with backoff, never raised as this.)

    Attributes:
        status_code: the HTTP status of the answer.
    """

    def __init__(self, message: str, *, status_code: int | None = None, connection: str | None = None) -> None:
        super().__init__(message, connection=connection)
        self.status_code = status_code


class ConnectionLimitError(MassiveRTError):
    """The server answered ``max_connections``: the account's connection quota is used up.

    Attributes:
        evicted: True when the connection had been streaming (past ``reset_after``) and another
            connection on the same key took its slot; False when it was refused at connect.
    """

    def __init__(
        self, message: str, *, connection: str | None = None, status: str | None = None, evicted: bool = False
    ) -> None:
        super().__init__(message, connection=connection, status=status)
        self.evicted = evicted


class SubscriptionError(MassiveRTError):
    """Channels could not be subscribed (``not authorized``, no room in a pool, ...).

    Attributes:
        channels: the channels concerned, in the order given.
    """

    def __init__(
        self,
        message: str,
        *,
        channels: Iterable[str] = (),
        connection: str | None = None,
        status: str | None = None,
    ) -> None:
        super().__init__(message, connection=connection, status=status)
        self.channels = tuple(channels)


class ConnectionClosedError(MassiveRTError):
    """The connection closed and will not be re-established (reconnect attempts exhausted).

    Attributes:
        code: the WebSocket close code, if one was received.
    """

    def __init__(
        self, message: str, *, code: int | None = None, connection: str | None = None, status: str | None = None
    ) -> None:
        super().__init__(message, connection=connection, status=status)
        self.code = code


class ClientClosedError(MassiveRTError, RuntimeError):
    """The client (or pool, adapter, source, server or relay) was stopped, or belongs to the parent
    of a forked process. Also a ``RuntimeError``: a stopped object cannot be started again."""


class WaitTimeoutError(MassiveRTError, TimeoutError):
    """A bounded wait (``wait_ready``, ``acquire`` ...) ran out of time. Also a ``TimeoutError``."""


class RestError(MassiveRTError):
    """A REST request failed for good: refused (401, 403, 404 ...), or still failing (429, 5xx,
    timeouts) after the bounded retries. Never contains the API key.

    Attributes:
        status_code: the last HTTP status, when there was a response.
        path: the request path (no query string, so no key and no cursor).
    """

    def __init__(
        self, message: str, *, status_code: int | None = None, path: str = "", status: str | None = None
    ) -> None:
        super().__init__(message, status=status)
        self.status_code = status_code
        self.path = path


class RestDataError(RestError):
    """A REST response arrived but could not be used: a cut or invalid JSON page, an unexpected shape."""
