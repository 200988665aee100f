"""Immutable configuration: :class:`ReconnectPolicy` and :class:`ClientConfig`."""

from __future__ import annotations

import math
import os
import random
import ssl
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

import attrs

from .dedupe import DEFAULT_WINDOW
from .enums import Feed, Market, Overflow, resolve_feed_host
from .errors import ConfigurationError
from .eventqueue import BYTES_PER_EVENT
from .protocol import check_validate_mode, parse_channels

__all__ = [
    "ON_LIMIT_POLICIES",
    "ClientConfig",
    "LimitRetry",
    "ReconnectPolicy",
    "coerce_on_limit",
    "dedupe_window",
    "limit_retry_for",
    "mask_secret",
]

ENV_API_KEY = "MASSIVE_API_KEY"
ENV_FEED = "MASSIVE_FEED"
ENV_MARKET = "MASSIVE_MARKET"
ENV_WS_URL = "MASSIVE_WS_URL"
ENV_VALIDATE_CHANNELS = "MASSIVE_VALIDATE_CHANNELS"


class _Uniform(Protocol):
    def uniform(self, a: float, b: float) -> float: ...


def mask_secret(secret: str | None) -> str:
    """Render a secret for logs and reprs: never any of its characters."""
    return "<unset>" if not secret else "'***'"


def _non_negative(field: str) -> Any:
    def check(_inst: object, _attr: object, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ConfigurationError(f"{field}={value!r} must be a finite number >= 0", field=field)

    return check


def _positive(field: str, *, allow_none: bool = False) -> Any:
    def check(_inst: object, _attr: object, value: Any) -> None:
        if value is None and allow_none:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ConfigurationError(f"{field}={value!r} must be a finite number > 0", field=field)

    return check


@attrs.frozen(kw_only=True)
class ReconnectPolicy:
    """How a connection retries after it drops: exponential backoff with jitter and a cap.

    Attempt ``n`` (0-based) waits ``uniform(0, min(max_delay, initial_delay * multiplier**n))``
    with ``jitter="full"`` (the default), the full bound with ``jitter="none"``, or half the bound
    plus a random half with ``jitter="equal"``. The attempt counter resets after a session that
    delivered data (``reset_on_data``), or that streamed for ``reset_after`` seconds. A server that
    fails before any data (refusing, dropping at connect or auth) still gets the growing backoff,
    so it never sees a hot loop; one that restarts every few seconds but streams in between gets
    the first delay again after each restart (measured in benchmarks/flap_backoff.py: 23% of the
    events delivered under the old rule, 81% with this one, against a server cut every 3 s).

    Attributes:
        initial_delay: bound of the first wait, seconds.
        max_delay: cap of every wait, seconds.
        multiplier: growth factor per attempt (>= 1).
        jitter: ``"full"``, ``"equal"`` or ``"none"``.
        max_attempts: consecutive failed attempts before the connection gives up (FAILED);
            ``None`` retries forever, ``0`` never reconnects.
        reset_after: seconds of stable streaming after which the counter resets.
        reset_on_data: a session that delivered at least one data frame, and streamed for
            ``min_data_session`` seconds, resets the counter too (so the next wait is bounded by
            ``initial_delay``); False keeps ``reset_after`` only.
        min_data_session: seconds a session must have streamed for its data to reset the counter
            (default 1): a server that sends a frame and drops the connection at once (a frame
            too big, a slow-consumer kick) still gets the growing backoff and ``max_attempts``.
    """

    initial_delay: float = attrs.field(default=0.5, validator=_non_negative("initial_delay"))
    max_delay: float = attrs.field(default=30.0, validator=_non_negative("max_delay"))
    multiplier: float = attrs.field(default=2.0)
    jitter: str = attrs.field(default="full")
    max_attempts: int | None = attrs.field(default=None)
    reset_after: float = attrs.field(default=30.0, validator=_non_negative("reset_after"))
    reset_on_data: bool = attrs.field(default=True)
    min_data_session: float = attrs.field(default=1.0, validator=_non_negative("min_data_session"))

    @multiplier.validator
    def _check_multiplier(self, _attr: object, value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 1:
            raise ConfigurationError(f"multiplier={value!r} must be a finite number >= 1", field="multiplier")

    @jitter.validator
    def _check_jitter(self, _attr: object, value: object) -> None:
        if value not in ("full", "equal", "none"):
            raise ConfigurationError(f"jitter={value!r} must be 'full', 'equal' or 'none'", field="jitter")

    @reset_on_data.validator
    def _check_reset_on_data(self, _attr: object, value: object) -> None:
        if not isinstance(value, bool):
            raise ConfigurationError(f"reset_on_data={value!r} must be True or False", field="reset_on_data")

    @max_attempts.validator
    def _check_max_attempts(self, _attr: object, value: object) -> None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ConfigurationError(f"max_attempts={value!r} must be None or an int >= 0", field="max_attempts")

    def bound(self, attempt: int) -> float:
        """Upper bound of the wait before attempt ``attempt`` (0-based), capped at ``max_delay``."""
        if attempt < 0:
            raise ConfigurationError(f"attempt={attempt!r} must be >= 0", field="attempt")
        if self.initial_delay == 0 or self.max_delay == 0:
            return 0.0
        # Compare logarithms rather than computing multiplier**attempt, which overflows for large n.
        headroom = math.log(self.max_delay) - math.log(self.initial_delay)
        if self.multiplier > 1 and attempt * math.log(self.multiplier) > headroom:
            return self.max_delay
        return min(self.max_delay, self.initial_delay * self.multiplier**attempt)

    def delay(self, attempt: int, rng: _Uniform | None = None) -> float:
        """Seconds to wait before reconnect attempt ``attempt`` (0-based). Pure given ``rng``."""
        bound = self.bound(attempt)
        if self.jitter == "none":
            return bound
        rng = rng if rng is not None else random
        if self.jitter == "equal":
            return bound / 2 + rng.uniform(0, bound / 2)
        return rng.uniform(0, bound)

    def gives_up_after(self, failures: int) -> bool:
        """True when ``failures`` consecutive failed attempts exhaust ``max_attempts``."""
        return self.max_attempts is not None and failures > self.max_attempts

    def evolve(self, **changes: Any) -> ReconnectPolicy:
        """Return a copy with ``changes`` applied (validated)."""
        return attrs.evolve(self, **changes)


_HOUR = 3600.0


@attrs.frozen(kw_only=True)
class LimitRetry:
    """How a connection refused with ``max_connections`` retries, when it retries at all.

    The account's connection limit is shared: a connection that retries quickly evicts another
    holder of the same key (another of your services, or itself a moment ago), which then
    retries in turn. So the waits are long and grow (``cooldown``, doubled after each refusal
    in the last hour, capped at ``max_cooldown``), and at most ``per_hour`` retries start in
    any hour, whatever the refusals: two holders of one key can fight a few times an hour at
    most, never in a loop.

    Attributes:
        cooldown: the first wait after a refusal, seconds.
        max_cooldown: cap of one wait, seconds.
        per_hour: most retries started within any 3,600 s.
    """

    cooldown: float = attrs.field(default=60.0, validator=_positive("cooldown"))
    max_cooldown: float = attrs.field(default=_HOUR, validator=_positive("max_cooldown"))
    per_hour: int = attrs.field(default=3)

    @per_hour.validator
    def _check_per_hour(self, _attr: object, value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigurationError(f"per_hour={value!r} must be an int >= 1", field="per_hour")

    def __attrs_post_init__(self) -> None:
        if self.cooldown > self.max_cooldown:
            raise ConfigurationError(
                f"cooldown={self.cooldown!r} must not exceed max_cooldown={self.max_cooldown!r}", field="cooldown"
            )

    def delay(self, retries: Sequence[float], now: float) -> float:
        """Seconds to wait at monotonic time ``now`` before the next retry (pure).

        Args:
            retries: monotonic times at which earlier retries started (oldest first).
            now: the current monotonic time (the refusal just happened).
        """
        recent = [t for t in retries if now - t < _HOUR]
        wait = min(self.max_cooldown, self.cooldown * 2.0 ** min(len(recent), 32))
        if len(recent) >= self.per_hour:  # the hour's budget is spent: wait until its oldest retry ages out
            wait = max(wait, recent[-self.per_hour] + _HOUR - now)
        return wait

    def schedule(self, retries: deque[float], now: float) -> float:
        """:meth:`delay`, then record the retry's start in ``retries`` (dropping those older than
        an hour, which no longer count). Returns the delay."""
        while retries and now - retries[0] >= _HOUR:
            retries.popleft()
        wait = self.delay(retries, now)
        retries.append(now + wait)
        return wait

    def evolve(self, **changes: Any) -> LimitRetry:
        """Return a copy with ``changes`` applied (validated)."""
        return attrs.evolve(self, **changes)


#: ``on_limit`` policies (or a :class:`LimitRetry`, which retries with its own waits).
ON_LIMIT_POLICIES = ("auto", "fail", "retry")
_DEFAULT_LIMIT_RETRY = LimitRetry()


def coerce_on_limit(value: object, field: str = "on_limit") -> str | LimitRetry:
    """``on_limit=`` as given to a client or pool, checked: a policy name or a :class:`LimitRetry`."""
    if isinstance(value, LimitRetry) or (isinstance(value, str) and value in ON_LIMIT_POLICIES):
        return value
    raise ConfigurationError(f"{field}={value!r} must be 'auto', 'fail', 'retry' or a LimitRetry", field=field)


def dedupe_window(value: object, field: str = "dedupe") -> int:
    """``dedupe=`` as given: ``False`` → 0 (off), ``True`` → :data:`massive_rt.dedupe.DEFAULT_WINDOW`,
    an int >= 1 → that window; else :class:`ConfigurationError`."""
    if value is False:
        return 0
    if value is True:
        return DEFAULT_WINDOW
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ConfigurationError(f"{field}={value!r} must be True, False or a window size (an int >= 1)", field=field)


def limit_retry_for(on_limit: str | LimitRetry, evicted: bool) -> LimitRetry | None:
    """How to retry after ``max_connections`` under ``on_limit`` (None: fail for good).

    ``evicted``: the connection had streamed past ``reset_after`` when the limit hit it (another
    connection on the key took its slot), rather than being refused at connect. ``"auto"``
    retries an evicted connection (a long-running service must not die because someone else
    connected) and fails a refused one (its slot is someone else's); ``"fail"`` fails both;
    ``"retry"`` retries both with :class:`LimitRetry`'s defaults, a :class:`LimitRetry` with its own.
    """
    if isinstance(on_limit, LimitRetry):
        return on_limit
    if on_limit == "retry" or (on_limit == "auto" and evicted):
        return _DEFAULT_LIMIT_RETRY
    return None


def _coerce_market(value: Market | str) -> Market:
    return Market.coerce(value, "market")


def _coerce_overflow(value: Overflow | str) -> Overflow:
    return Overflow.coerce(value, "overflow")


def _check_feed(_inst: object, _attr: object, value: Any) -> None:
    resolve_feed_host(value)


def _check_url(_inst: object, _attr: object, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise ConfigurationError(f"url={value!r} must be a ws:// or wss:// URL string", field="url")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigurationError(f"url={value!r} is not a valid URL: {exc}", field="url") from None
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ConfigurationError(f"url={value!r} must be a ws:// or wss:// URL with a host", field="url")


def _check_api_key(_inst: object, _attr: object, value: Any) -> None:
    if value is not None and not isinstance(value, str):
        raise ConfigurationError("api_key must be a string or None", field="api_key")


def _check_name(_inst: object, _attr: object, value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not value or any(c.isspace() for c in value)):
        raise ConfigurationError(f"name={value!r} must be a non-empty string without whitespace", field="name")


def _check_queue_size(_inst: object, _attr: object, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"queue_size={value!r} must be an int >= 1", field="queue_size")


def _check_queue_bytes(_inst: object, _attr: object, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigurationError(f"queue_bytes={value!r} must be an int >= 1 or None", field="queue_bytes")


def _check_last_seen_limit(_inst: object, _attr: object, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(f"last_seen_limit={value!r} must be an int >= 0", field="last_seen_limit")


def _check_max_message_size(_inst: object, _attr: object, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1024:
        raise ConfigurationError(f"max_message_size={value!r} must be an int >= 1024", field="max_message_size")


def _check_reconnect(_inst: object, _attr: object, value: Any) -> None:
    if not isinstance(value, ReconnectPolicy):
        raise ConfigurationError(f"reconnect={value!r} must be a ReconnectPolicy", field="reconnect")


def _check_ssl_context(_inst: object, _attr: object, value: Any) -> None:
    if value is not None and not isinstance(value, ssl.SSLContext):
        raise ConfigurationError("ssl_context must be an ssl.SSLContext or None", field="ssl_context")


def _check_validate_channels(_inst: object, _attr: object, value: Any) -> None:
    check_validate_mode(value)


def _check_subscriptions(inst: ClientConfig, _attr: object, value: tuple[str, ...]) -> None:
    for channel in value:
        if not isinstance(channel, str):
            raise ConfigurationError(
                f"subscriptions contains {channel!r}, which is not a string", field="subscriptions"
            )
    try:
        parse_channels(value, inst.market, inst.validate_channels)
    except ConfigurationError as exc:  # name the parameter the caller used
        raise ConfigurationError(f"subscriptions: {exc.message}", field="subscriptions") from None


def _to_path(value: str | os.PathLike[str] | None) -> str | None:
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def _check_ca_certs(_inst: object, _attr: object, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not os.path.exists(value):
        raise ConfigurationError(f"ca_certs={value!r} must be the path of a CA bundle file or directory",
                                 field="ca_certs")  # fmt: skip


# Passed by the client itself: a second value would crash the handshake (TypeError), and
# sslopt would be silently ignored (use ssl_context=).
_RESERVED_WEBSOCKET_OPTIONS = ("socket", "timeout", "suppress_origin", "redirect_limit", "sslopt")


def _to_dict(value: Mapping[str, Any] | None) -> dict[str, Any]:
    if value is not None and not isinstance(value, Mapping):
        raise ConfigurationError(f"websocket_options={value!r} must be a mapping", field="websocket_options")
    return dict(value or {})


def _check_websocket_options(_inst: object, _attr: object, value: dict[str, Any]) -> None:
    for key in value:
        if not isinstance(key, str) or key in _RESERVED_WEBSOCKET_OPTIONS:
            raise ConfigurationError(
                f"websocket_options may not set {key!r} (reserved: {', '.join(_RESERVED_WEBSOCKET_OPTIONS)}; "
                "use connect_timeout= and ssl_context= instead)",
                field="websocket_options",
            )
    header = value.get("header", [])
    if not isinstance(header, (list, tuple)) or not all(isinstance(line, str) for line in header):
        raise ConfigurationError(f"websocket_options['header']={header!r} must be a list of 'Name: value' strings",
                                 field="websocket_options")  # fmt: skip


def _to_tuple(value: Iterable[str] | str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    return tuple(value)


@attrs.frozen(kw_only=True, repr=False)
class ClientConfig:
    """Everything one :class:`~massive_rt.MassiveWebSocketClient` needs; validated at construction.

    The API key is never shown by ``repr``/``str``. See the README's configuration table for
    every field. ``ClientConfig.from_env()`` fills unset fields from ``MASSIVE_*`` variables.
    """

    api_key: str | None = attrs.field(default=None, validator=_check_api_key)
    market: Market = attrs.field(default=Market.STOCKS, converter=_coerce_market)
    feed: Feed | str = attrs.field(default=Feed.REALTIME, validator=_check_feed)
    url: str | None = attrs.field(default=None, validator=_check_url)
    subscriptions: tuple[str, ...] = attrs.field(default=(), converter=_to_tuple, validator=_check_subscriptions)
    reconnect: ReconnectPolicy = attrs.field(factory=ReconnectPolicy, validator=_check_reconnect)
    queue_size: int = attrs.field(default=100_000, validator=_check_queue_size)
    queue_bytes: int | None = attrs.field(default=None, validator=_check_queue_bytes)
    overflow: Overflow = attrs.field(default=Overflow.DROP_OLDEST, converter=_coerce_overflow)
    ping_interval: float | None = attrs.field(default=20.0, validator=_positive("ping_interval", allow_none=True))
    ping_timeout: float = attrs.field(default=20.0, validator=_positive("ping_timeout"))
    stale_after: float | None = attrs.field(default=None, validator=_positive("stale_after", allow_none=True))
    connect_timeout: float = attrs.field(default=10.0, validator=_positive("connect_timeout"))
    name: str | None = attrs.field(default=None, validator=_check_name)
    raw: bool = attrs.field(default=False, converter=bool)
    max_message_size: int = attrs.field(default=16 * 1024 * 1024, validator=_check_max_message_size)
    on_limit: str | LimitRetry = attrs.field(default="auto", converter=coerce_on_limit)
    dedupe: int = attrs.field(default=0, converter=dedupe_window)
    validate_channels: str = attrs.field(default="strict", validator=_check_validate_channels)
    ca_certs: str | None = attrs.field(default=None, converter=_to_path, validator=_check_ca_certs)
    ssl_context: ssl.SSLContext | None = attrs.field(default=None, validator=_check_ssl_context)
    websocket_options: Mapping[str, Any] = attrs.field(factory=dict, converter=_to_dict,
                                                       validator=_check_websocket_options)  # fmt: skip
    last_seen_limit: int = attrs.field(default=1_000, validator=_check_last_seen_limit)

    @property
    def resolved_url(self) -> str:
        """The endpoint: ``url`` if given, else ``wss://<feed host>/<market path>``."""
        if self.url is not None:
            return self.url
        return f"wss://{resolve_feed_host(self.feed)}/{self.market.value}"

    @property
    def queue_capacity_bytes(self) -> int:
        """The queue's bound in bytes: ``queue_bytes``, else ``queue_size`` events of the nominal
        :data:`~massive_rt.eventqueue.BYTES_PER_EVENT` (128) bytes each."""
        return self.queue_bytes if self.queue_bytes is not None else self.queue_size * BYTES_PER_EVENT

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ClientConfig:
        """Build a config from ``MASSIVE_API_KEY``, ``MASSIVE_FEED``, ``MASSIVE_MARKET``,
        ``MASSIVE_WS_URL`` and ``MASSIVE_VALIDATE_CHANNELS``; explicit ``overrides`` win over the
        environment."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field, var in (("api_key", ENV_API_KEY), ("feed", ENV_FEED), ("market", ENV_MARKET), ("url", ENV_WS_URL),
                           ("validate_channels", ENV_VALIDATE_CHANNELS)):  # fmt: skip
            raw = env.get(var)
            if raw is not None and raw.strip():
                values[field] = raw.strip()
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def evolve(self, **changes: Any) -> ClientConfig:
        """Return a copy with ``changes`` applied (validated)."""
        return attrs.evolve(self, **changes)

    def __repr__(self) -> str:
        return (
            f"ClientConfig(api_key={mask_secret(self.api_key)}, market={self.market.value!r}, "
            f"url={self.resolved_url!r}, subscriptions={len(self.subscriptions)} channels, "
            f"queue_size={self.queue_size}, queue_bytes={self.queue_capacity_bytes}, "
            f"overflow={self.overflow.value!r}, name={self.name!r})"
        )

    __str__ = __repr__
