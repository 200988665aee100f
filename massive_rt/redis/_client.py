"""What the sink and the source share about talking to Redis (not about what they write or read).

The ``redis`` package is imported here, on first use (:func:`import_redis`), never at import
time. Clients and connections are made with redis-py's own retries disabled: the sink and the
source reconnect with their :class:`~massive_rt.ReconnectPolicy` (:func:`reconnect_policy`).
"""

from __future__ import annotations

import logging
import re
from typing import Any, Final

from ..config import ReconnectPolicy
from ..errors import ConfigurationError

__all__ = [
    "DEFAULT_URL",
    "import_redis",
    "new_client",
    "new_connection",
    "reconnect_policy",
    "redis_errors",
    "require_url",
    "safe_url",
]

logger = logging.getLogger(__name__)

#: Where both ends connect by default.
DEFAULT_URL: Final = "redis://127.0.0.1:6379/0"


def import_redis() -> Any:
    """The ``redis`` module, imported on first use (``pip install 'massive-rt[redis]'``)."""
    try:
        import redis  # the library (absolute import), not this package
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("massive_rt.redis needs the 'redis' package: pip install 'massive-rt[redis]'") from exc
    return redis


def redis_errors() -> tuple[tuple[type[BaseException], ...], type[BaseException]]:
    """(connection-level errors, ``ResponseError``) of redis-py."""
    exceptions = import_redis().exceptions
    return (exceptions.ConnectionError, exceptions.TimeoutError, OSError), exceptions.ResponseError


def new_client(url: str, socket_timeout: float, client_name: str) -> Any:
    """A ``redis.Redis`` (it connects on first use) with redis-py's own retries disabled."""
    return _from_url(import_redis().Redis, url, socket_timeout, client_name)


def new_connection(url: str, socket_timeout: float, client_name: str) -> Any:
    """One redis-py ``Connection`` (not connected yet) for hand-packed pipelines; no redis-py retries."""
    return _from_url(import_redis().ConnectionPool, url, socket_timeout, client_name).make_connection()


def _from_url(factory: Any, url: str, socket_timeout: float, client_name: str) -> Any:
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    try:
        return factory.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 0),
            client_name=client_name,
        )
    except ValueError as exc:  # redis-py's own URL validation
        raise ConfigurationError(f"url: {exc}", field="url") from None


def require_url(url: object) -> None:
    """Raise :class:`~massive_rt.ConfigurationError` unless ``url`` is a non-empty string."""
    if not isinstance(url, str) or not url:
        raise ConfigurationError(f"url={url!r} must be a non-empty Redis URL", field="url")


def reconnect_policy(reconnect: object) -> ReconnectPolicy:
    """``reconnect`` validated, or the default backoff for Redis (fast first retries, at most 2 s)."""
    if reconnect is None:
        return ReconnectPolicy(initial_delay=0.05, max_delay=2.0, reset_after=5.0)
    if not isinstance(reconnect, ReconnectPolicy):
        raise ConfigurationError(f"reconnect={reconnect!r} must be a ReconnectPolicy", field="reconnect")
    return reconnect


def safe_url(url: str) -> str:
    """``url`` without its credentials, for logs and reprs."""
    return re.sub(r"//[^@/]*@", "//***@", url)
