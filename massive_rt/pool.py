"""ConnectionPool: many connections under one account's connection limit.

One lock guards only the pool's in-memory map (members, channel assignment, leases). Starting,
stopping and joining connections happen outside it; telling a connection to (un)subscribe
happens under it because that only updates the connection's desired set and never blocks.

A supervisor thread (``massive-rt-pool-supervisor``) recycles connections that FAILED or whose
reader died, closing the old socket before opening the replacement (never make-before-break:
Massive counts sockets per account and would evict one of ours), and closes idle connections.
"""

from __future__ import annotations

import collections
import contextlib
import inspect
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from ._util import seconds, snapshot_dict
from ._validate import require_int, require_name, require_number
from .config import (
    ClientConfig,
    LimitRetry,
    ReconnectPolicy,
    coerce_on_limit,
    dedupe_window,
    limit_retry_for,
    mask_secret,
)
from .connection import ConnectionStats, MassiveWebSocketClient
from .consumer import check_timeout
from .dedupe import DuplicateFilter
from .enums import ConnectionState, Feed, Market
from .errors import (
    ClientClosedError,
    ConfigurationError,
    ConnectionClosedError,
    ConnectionLimitError,
    MassiveRTError,
    SubscriptionError,
    WaitTimeoutError,
)
from .protocol import check_validate_mode, effective_channels, parse_channels, wildcard_of

__all__ = ["ConnectionPool", "PoolStats"]

logger = logging.getLogger(__name__)

_READY_SLICE = 0.25

#: Options quotes: "a hard limit of 1,000 option contracts per connection" (docs/protocol.md §3.1).
OPTIONS_QUOTES_PER_CONNECTION = 1000


@attrs.define
class _Totals:
    """Lifetime counters of the connections that left a pool."""

    events_decoded: int = 0
    dropped_events: int = 0
    reconnects: int = 0

    def add(self, stats: ConnectionStats) -> None:
        self.events_decoded += stats.events_decoded
        self.dropped_events += stats.dropped_events
        self.reconnects += stats.reconnects


@attrs.frozen(kw_only=True)
class PoolStats:
    """Snapshot of a pool: totals plus one :class:`ConnectionStats` per connection.

    Attributes:
        name: pool name.
        connections: number of open connections.
        max_connections: the account limit the pool respects.
        channels: channels placed across the pool.
        events_decoded, dropped_events, reconnects, recycled: lifetime totals of the pool: the
            counters of connections it recycled or closed are kept (they never go down).
        duplicates_suppressed: events dropped as duplicates by the pool's shared filter (``dedupe``).
        leases: connections leased out (:meth:`ConnectionPool.acquire`).
        failed: names of the connections that failed for good (a refused key, or the
            connection limit where ``on_limit`` says fail); the pool does not replace them.
        degraded: some connections failed for good while others still run.
        healthy: started, and every connection healthy (see :class:`ConnectionStats`).
        health_reason: why not, when not healthy (else None).
        per_connection: the connections' own snapshots.
    """

    name: str
    connections: int
    max_connections: int
    channels: int
    events_decoded: int
    dropped_events: int
    duplicates_suppressed: int
    reconnects: int
    recycled: int
    leases: int
    failed: tuple[str, ...]
    degraded: bool
    healthy: bool
    health_reason: str | None
    per_connection: tuple[ConnectionStats, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (for a health endpoint); it holds no secret."""
        return snapshot_dict(self)


@attrs.define(eq=False)
class _Member:
    client: MassiveWebSocketClient
    market: Market
    channels: dict[str, None] = attrs.Factory(dict)
    leases: int = 0
    idle_since: float = attrs.Factory(time.monotonic)
    retiring: bool = False
    # Start times (monotonic) of the last hour's retries after max_connections, kept across recycling.
    limit_retries: collections.deque[float] = attrs.Factory(collections.deque)
    retry_at: float = 0.0


class ConnectionPool:
    """Many :class:`MassiveWebSocketClient` connections under one account's limit.

    Channels are placed exactly once (no duplicate delivery): on the least-loaded connection of
    their market that has room, opening a connection only when none has room and the pool is
    under ``max_connections``. Connections start in parallel.

    Args:
        api_key: Massive API key (``None`` reads ``MASSIVE_API_KEY``).
        max_connections: the account's connection limit, across every market of the pool.
        max_subscriptions_per_connection: cap of channels per connection (None: no cap;
            options quotes are always capped at 1,000 contracts per connection).
        market: default market for :meth:`subscribe` and :meth:`acquire`.
        feed: feed host for every connection.
        url: endpoint override; ``{market}`` in it is replaced by the market path, or pass a
            callable ``market -> url`` (for local servers, e.g. ``server.url``).
        idle_timeout: close a connection with no channels and no leases after this many
            seconds (None: keep it).
        health_interval: seconds between supervisor checks.
        on_limit: what to do with a connection ended by ``max_connections`` (statuses
            ``limit_refused`` / ``evicted``, see :class:`MassiveWebSocketClient`): ``"auto"``
            (default) leaves one refused at connect failed — the slot belongs to someone else,
            and taking it back would evict them — and replaces one evicted after streaming;
            ``"fail"`` leaves both failed; ``"retry"`` or a :class:`LimitRetry` replaces both.
            Replacements wait a long, growing cooldown, at most ``LimitRetry.per_hour`` an hour.
        dedupe: drop duplicate events (``True``: among the last 100,000 identities; an int: that
            many), with one filter shared by every connection of the pool and its replacements
            (see :class:`MassiveWebSocketClient`); counted in ``stats().duplicates_suppressed``.
        validate_channels: ``"strict"``, ``"warn"`` or ``"off"``: what a channel prefix this
            library does not know yet does (see :class:`MassiveWebSocketClient`); for the pool and
            every connection (``client_options`` may set it instead).
        name: pool name (prefix of connection names).
        client_options: extra keyword arguments for every connection (``reconnect``,
            ``queue_size``, ``ping_interval``, ``stale_after`` ...).
    """

    def __init__(
        self,
        api_key: str | None = None,
        max_connections: int = 1,
        max_subscriptions_per_connection: int | None = None,
        *,
        market: Market | str = Market.STOCKS,
        feed: Feed | str = Feed.REALTIME,
        url: str | Callable[[Market], str] | None = None,
        idle_timeout: float | None = None,
        health_interval: float = 1.0,
        on_limit: str | LimitRetry = "auto",
        dedupe: bool | int = False,
        validate_channels: str = "strict",
        name: str = "pool",
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        require_int("max_connections", max_connections)
        cap = max_subscriptions_per_connection
        if cap is not None:
            require_int("max_subscriptions_per_connection", cap)
        require_number("health_interval", health_interval, strict=True)
        if idle_timeout is not None:
            require_number("idle_timeout", idle_timeout)
        require_name("name", name)
        if url is not None and not isinstance(url, str) and not callable(url):
            raise ConfigurationError(f"url={url!r} must be a URL string, a callable market -> URL, or None",
                                     field="url")  # fmt: skip
        options = dict(client_options or {})
        self._validate = check_validate_mode(options.setdefault("validate_channels", validate_channels))
        for reserved in ("api_key", "market", "url", "name", "subscriptions", "feed", "config", "on_limit", "dedupe"):
            if reserved in options:
                raise ConfigurationError(f"client_options may not set {reserved!r}", field="client_options")
        if "reconnect" in options and not isinstance(options["reconnect"], ReconnectPolicy):
            raise ConfigurationError("client_options['reconnect'] must be a ReconnectPolicy", field="client_options")
        self._default_market: Market = Market.coerce(market, "market")
        self._api_key = api_key
        self._feed = feed
        self._url = url
        self._max_connections = max_connections
        self._cap = cap
        self._idle_timeout = idle_timeout
        self._health_interval = float(health_interval)
        self._on_limit = coerce_on_limit(on_limit)
        window = dedupe_window(dedupe)
        # One filter for every connection, replacements included: duplicates at a reconnect's seam
        # or across connections are caught whichever connection delivers them.
        self._dedupe = DuplicateFilter(window) if window else None
        self._name = name
        self._options = options
        self._validate_client_options(api_key, feed, options)

        self._pid = os.getpid()
        self._lock = threading.RLock()  # re-entrant: stop() may run in a signal handler inside subscribe()
        self._changed = threading.Condition(self._lock)
        self._members: dict[str, _Member] = {}
        # Connections closed by recycling or idling whose queues still hold events: the adapter
        # keeps draining them until they are empty, so nothing queued is lost.
        self._retired: list[MassiveWebSocketClient] = []
        # Drained retired connections whose counters are being folded into _former (outside the lock).
        self._departing: list[MassiveWebSocketClient] = []
        self._former = _Totals()  # counters of connections no longer in the pool
        self._assignment: dict[tuple[Market, str], str] = {}
        self._sequence = 0
        self._version = 0
        self._recycled = 0
        self._closed = False
        self._started = False
        self._listener: Callable[[], None] | None = None
        self._tap: Callable[[Any, list[Any]], None] | None = None
        self._stop_event = threading.Event()
        self._supervisor: threading.Thread | None = None

    def _validate_client_options(self, api_key: str | None, feed: Feed | str, options: dict[str, Any]) -> None:
        """Check what every connection will be given, without creating one."""
        accepted = set(inspect.signature(MassiveWebSocketClient).parameters)
        unknown = sorted(k for k in options if k not in accepted)
        if unknown:
            raise ConfigurationError(
                f"client_options: unknown option(s) {', '.join(map(repr, unknown))}", field="client_options"
            )
        if not (api_key if api_key is not None else os.environ.get("MASSIVE_API_KEY")):
            raise ConfigurationError("api_key is required: pass api_key= or set MASSIVE_API_KEY", field="api_key")
        fields = attrs.fields_dict(ClientConfig)
        ClientConfig(
            api_key=api_key, market=self._default_market, feed=feed, url=self._url_for(self._default_market),
            **{k: v for k, v in options.items() if k in fields},
        )  # fmt: skip

    # ------------------------------------------------------------------ lifecycle

    @property
    def name(self) -> str:
        """The pool name."""
        return self._name

    @property
    def max_connections(self) -> int:
        """The account connection limit the pool respects."""
        return self._max_connections

    @property
    def connections(self) -> tuple[MassiveWebSocketClient, ...]:
        """The open connections (a snapshot)."""
        with self._lock:
            return tuple(m.client for m in self._members.values())

    def clients(self) -> tuple[MassiveWebSocketClient, ...]:
        """Event sources for the adapter: the current connections, then retired ones that still
        hold queued events (drain those too, or their last events and statuses are lost)."""
        with self._lock:
            kept = [c for c in self._retired if not c.exhausted]
            gone = [c for c in self._retired if c.exhausted]
            self._version += len(self._retired) - len(kept)  # keeps `version` unchanged by the pruning
            self._retired = kept
            self._departing.extend(gone)
            # A replacement shares its predecessor's name: it waits until the old queue is empty,
            # so that connection's events (and statuses) stay in order. Recycled twice before the
            # first was drained, the second retired one waits for the first in the same way.
            oldest: dict[str, MassiveWebSocketClient] = {}
            for client in self._retired:  # in the order they were retired
                oldest.setdefault(client.name, client)
            current = tuple(m.client for m in self._members.values() if m.client.name not in oldest)
        if gone:
            self._fold(gone)
        return tuple(oldest.values()) + current

    def _fold(self, gone: list[MassiveWebSocketClient]) -> None:
        """Keep the final counters of connections that left the pool (their stats are taken outside
        the lock; until folded they stay in ``_departing``, so ``stats`` never counts them twice)."""
        final = [c.stats() for c in gone]
        with self._lock:
            for client, snapshot in zip(gone, final, strict=True):
                self._former.add(snapshot)
                self._departing.remove(client)

    @property
    def version(self) -> int:
        """Changes whenever :meth:`clients` would return something else."""
        # Read on every dispatcher round, lock-free and without side effects: a retired connection
        # that is empty now counts as a change (clients() drops it, adding it to _version).
        retired = self._retired
        return self._version + (sum(1 for c in retired if c.exhausted) if retired else 0)

    def start(self) -> ConnectionPool:
        """Start the supervisor and every connection (in parallel). Idempotent."""
        with self._lock:
            if self._closed:
                raise ClientClosedError(f"pool {self._name} is stopped")
            if self._started:
                return self
            self._started = True
            for member in self._members.values():
                self._launch(member.client)
            self._supervisor = threading.Thread(target=self._supervise, name="massive-rt-pool-supervisor", daemon=True)
            self._supervisor.start()
        return self

    def wait_ready(self, timeout: float | None = None) -> ConnectionPool:
        """Wait until every connection is streaming. A connection the pool will replace or retry
        (it gave up reconnecting; the connection limit where ``on_limit`` retries) is waited for.

        Raises:
            WaitTimeoutError: naming the connections that were not ready in time.
            AuthenticationError, ConnectionLimitError, HandshakeError ...: a connection failed for
                good (see :attr:`PoolStats.failed`).
        """
        check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            pending = []
            for client in self.connections:  # anew each time: recycling replaces connections
                if self._failed_for_good(client):
                    raise client.error  # type: ignore[misc]  # not None once failed for good
                if client.state is not ConnectionState.STREAMING:
                    pending.append(client)
            if not pending:
                return self
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                names = ", ".join(c.name for c in pending)
                raise WaitTimeoutError(f"connections not ready after {timeout}s: {names}")
            try:  # a slice at a time: the connection may be replaced while we wait for it
                pending[0].wait_ready(_READY_SLICE if remaining is None else min(_READY_SLICE, remaining))
            except MassiveRTError:  # not ready yet, failed (look again) or stopped by recycling
                pass

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the supervisor and every connection, in parallel. Idempotent; any thread."""
        require_number("timeout", timeout)
        with self._lock:
            already = self._closed
            self._closed = True
            members = list(self._members.values())
            self._changed.notify_all()
        self._stop_event.set()
        deadline = time.monotonic() + timeout
        threads = [m.client.request_stop() for m in members]
        for member, thread in zip(members, threads, strict=True):
            if thread is not None and thread is not threading.current_thread():
                member.client.stop(max(0.0, deadline - time.monotonic()))
        supervisor = self._supervisor
        if supervisor is not None and supervisor is not threading.current_thread():
            supervisor.join(max(0.0, deadline - time.monotonic()))
        if not already:
            logger.info("pool %s stopped (%d connections)", self._name, len(members))

    def __enter__(self) -> ConnectionPool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        with self._lock:
            count, channels = len(self._members), len(self._assignment)
        return (
            f"ConnectionPool(name={self._name!r}, connections={count}/{self._max_connections}, "
            f"channels={channels}, api_key={mask_secret(self._api_key)})"
        )

    # ------------------------------------------------------------------ placement

    def subscribe(self, *channels: str, market: Market | str | None = None) -> dict[str, str]:
        """Place channels on connections; returns ``{channel: connection name}`` for new ones.

        All or nothing: if some channels do not fit (every connection of the market is full and
        the pool is at ``max_connections``), nothing changes.

        Raises:
            ConfigurationError: a channel is invalid for the market.
            SubscriptionError: channels that did not fit (``error.channels``).
            ClientClosedError: the pool is stopped.
        """
        resolved = self._market(market)
        wanted = parse_channels(channels, resolved, self._validate)
        to_start: list[MassiveWebSocketClient] = []
        placed: dict[str, str] = {}
        with self._lock:
            self._check_open()
            pending = [c for c in wanted if (resolved, c) not in self._assignment]
            # A ticker whose wildcard is already placed rides on the wildcard's connection.
            covered = [c for c in pending if not c.endswith(".*") and (resolved, wildcard_of(c)) in self._assignment]
            plan, new_members, unplaced = self._plan(resolved, [c for c in pending if c not in covered])
            if unplaced:
                raise SubscriptionError(
                    f"no room for {len(unplaced)} channel(s) on {resolved.value}: all "
                    f"{self._max_connections} connection(s) in use and full",
                    channels=unplaced,
                )
            for member in new_members:
                self._members[member.client.name] = member
                self._version += 1
                to_start.append(member.client)
            touched: dict[str, _Member] = {}
            for channel, member in plan:
                self._place(resolved, channel, member)
                touched[member.client.name] = member
                placed[channel] = member.client.name
            for channel in covered:
                member = self._members[self._assignment[(resolved, wildcard_of(channel))]]
                self._place(resolved, channel, member)
                touched[member.client.name] = member
                placed[channel] = member.client.name
            for channel, member in plan:
                if channel.endswith(".*"):
                    touched.update(self._gather_covered(resolved, channel, member))
            for member in touched.values():
                self._sync(member)
            for client in to_start:
                self._launch(client)
            listener = self._listener
        if to_start and listener is not None:
            listener()  # the adapter refreshes its list of sources
        return placed

    def _place(self, market: Market, channel: str, member: _Member) -> None:
        member.channels[channel] = None
        self._assignment[(market, channel)] = member.client.name

    def _gather_covered(self, market: Market, wildcard: str, owner: _Member) -> dict[str, _Member]:
        """Move the tickers a new wildcard covers onto its connection (no duplicate delivery)."""
        prefix = wildcard[:-1]
        touched: dict[str, _Member] = {}
        for (placed_market, channel), name in list(self._assignment.items()):
            if placed_market is market and name != owner.client.name and channel.startswith(prefix):
                source = self._members[name]
                del source.channels[channel]
                touched[name] = source
                self._place(market, channel, owner)
        return touched

    def _sync(self, member: _Member) -> None:
        """Make the connection's desired set the member's channels minus those a wildcard covers.

        Called under the lock: the client only updates its desired set and wakes its reader.
        A retiring connection is left alone: its replacement starts from ``member.channels``.
        """
        if member.retiring:
            return
        client = member.client
        wanted = effective_channels(member.channels)
        current = client.subscriptions
        added = [c for c in wanted if c not in current]
        removed = [c for c in current if c not in wanted]
        if added:
            client.subscribe(*added)
        if removed:
            client.unsubscribe(*removed)

    def unsubscribe(self, *channels: str, market: Market | str | None = None) -> tuple[str, ...]:
        """Remove channels from their connections; returns those that were placed."""
        resolved = self._market(market)
        wanted = parse_channels(channels, resolved, self._validate)
        removed: list[str] = []
        with self._lock:
            by_member: dict[str, list[str]] = {}
            for channel in wanted:
                owner = self._assignment.pop((resolved, channel), None)
                if owner is None:
                    continue
                member = self._members.get(owner)
                if member is not None:
                    member.channels.pop(channel, None)
                    if not member.channels and not member.leases:
                        member.idle_since = time.monotonic()
                    by_member.setdefault(owner, []).append(channel)
                removed.append(channel)
            for owner in by_member:
                self._sync(self._members[owner])
            self._changed.notify_all()
        return tuple(removed)

    def unsubscribe_all(self) -> int:
        """Remove every channel from every connection; returns how many were removed."""
        with self._lock:
            count = len(self._assignment)
            self._assignment.clear()
            for member in self._members.values():
                if member.channels:
                    member.channels.clear()
                    self._sync(member)
                    member.idle_since = time.monotonic()
            self._changed.notify_all()
        return count

    def assignment(self, channel: str, market: Market | str | None = None) -> str | None:
        """Name of the connection that carries ``channel``, or None if it is not placed."""
        resolved = self._market(market)
        (valid,) = parse_channels((channel,), resolved, self._validate)
        with self._lock:
            return self._assignment.get((resolved, valid))

    @property
    def subscriptions(self) -> dict[str, tuple[str, ...]]:
        """``{connection name: channels}`` for every connection."""
        with self._lock:
            return {name: tuple(m.channels) for name, m in self._members.items()}

    def _plan(self, market: Market, channels: list[str]) -> tuple[list[tuple[str, _Member]], list[_Member], list[str]]:
        """Choose a connection for each channel (under the lock; no side effects on members)."""
        candidates = [m for m in self._members.values() if m.market is market and self._usable(m)]
        load = {id(m): len(effective_channels(m.channels)) for m in candidates}
        quotes = {id(m): sum(1 for c in m.channels if c.startswith("Q.")) for m in candidates}
        new_members: list[_Member] = []
        plan: list[tuple[str, _Member]] = []
        unplaced: list[str] = []
        for channel in channels:
            is_option_quote = market is Market.OPTIONS and channel.startswith("Q.")

            def has_room(member: _Member, is_option_quote: bool = is_option_quote) -> bool:
                if self._cap is not None and load[id(member)] >= self._cap:
                    return False
                return not (is_option_quote and quotes[id(member)] >= OPTIONS_QUOTES_PER_CONNECTION)

            roomy = [m for m in candidates if has_room(m)]
            if not roomy and len(self._members) + len(new_members) < self._max_connections:
                member = _Member(client=self._new_client(market), market=market)
                candidates.append(member)
                new_members.append(member)
                load[id(member)] = 0
                quotes[id(member)] = 0
                roomy = [member]
            if not roomy:
                unplaced.append(channel)
                continue
            chosen = min(roomy, key=lambda m: load[id(m)])
            load[id(chosen)] += 1
            if is_option_quote:
                quotes[id(chosen)] += 1
            plan.append((channel, chosen))
        return plan, new_members, unplaced

    # ------------------------------------------------------------------ leases

    def acquire(self, market: Market | str | None = None, timeout: float | None = 5.0) -> MassiveWebSocketClient:
        """Lease a connection of ``market``: an existing one with room (least loaded), or a new one
        while under ``max_connections``; otherwise wait up to ``timeout`` for a slot.

        A leased connection is never closed as idle. Return it with :meth:`release`.

        Raises:
            WaitTimeoutError: no connection could be had within ``timeout``.
        """
        check_timeout(timeout)
        resolved = self._market(market)
        deadline = None if timeout is None else time.monotonic() + timeout
        created: MassiveWebSocketClient | None = None
        with self._changed:
            while True:
                self._check_open()
                candidates = [
                    m for m in self._members.values()
                    if m.market is resolved and self._usable(m) and (self._cap is None or len(m.channels) < self._cap)
                ]  # fmt: skip
                if candidates:
                    member = min(candidates, key=lambda m: (len(m.channels) + m.leases, m.client.name))
                    break
                if len(self._members) < self._max_connections:
                    member = _Member(client=self._new_client(resolved), market=resolved)
                    self._members[member.client.name] = member
                    self._version += 1
                    created = member.client
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise WaitTimeoutError(
                        f"no {resolved.value} connection available within {timeout}s: "
                        f"{len(self._members)}/{self._max_connections} connections in use"
                    )
                self._changed.wait(remaining)
            member.leases += 1
            if created is not None:
                self._launch(created)
            listener = self._listener
        if created is not None and listener is not None:
            listener()
        return member.client

    def release(self, client: MassiveWebSocketClient, close: bool = False) -> None:
        """Return a leased connection; with ``close=True`` (and no channels or other leases) close it
        now to free its slot."""
        if not isinstance(client, MassiveWebSocketClient):
            raise ConfigurationError(f"client={client!r} must be a connection acquired from this pool", field="client")
        victim: _Member | None = None
        with self._lock:
            member = self._members.get(client.name)
            # A lease survives recycling: the replacement keeps the name (and the lease count).
            if member is None or (member.client is not client and client not in self._retired):
                raise ConfigurationError(f"{client.name} is not a connection of pool {self._name}", field="client")
            if member.leases <= 0:
                raise ConfigurationError(f"{client.name} is not leased", field="client")
            member.leases -= 1
            if not member.leases and not member.channels:
                member.idle_since = time.monotonic()
                if close and not member.retiring:
                    member.retiring = True  # still counted against the limit until its socket is closed
                    victim = member
            self._changed.notify_all()
        if victim is not None:
            self._close_member(victim)

    def _close_member(self, member: _Member) -> None:
        """Stop a retiring member's connection, then free its slot (break before make)."""
        member.client.stop()
        with self._changed:
            if self._members.get(member.client.name) is member and not member.client.reader_alive:
                del self._members[member.client.name]
                self._retire(member.client)
            else:
                member.retiring = False  # its reader did not stop in time: keep it counted, retry later
            self._changed.notify_all()

    # ------------------------------------------------------------------ adapter support

    def set_listener(self, listener: Callable[[], None] | None) -> None:
        """Install ``listener`` on every current and future connection (see the client's)."""
        with self._lock:
            self._listener = listener
            clients = [m.client for m in self._members.values()]
        for client in clients:
            client.set_listener(listener)

    @property
    def tap(self) -> Callable[[Any, list[Any]], None] | None:
        """The tap :meth:`set_tap` installed, or None."""
        return self._tap

    def set_tap(self, tap: Callable[[Any, list[Any]], None] | None) -> None:
        """Install ``tap`` on every current, retired and future connection (see the client's ``set_tap``)."""
        with self._lock:
            self._tap = tap
            clients = [m.client for m in self._members.values()] + list(self._retired)
        for client in clients:
            client.set_tap(tap)

    @property
    def error(self) -> MassiveRTError | None:
        """When every connection failed for good (see :attr:`PoolStats.failed`): the error of
        one of them; else None. A pool with some connections failed and others running is
        degraded (:attr:`PoolStats.degraded`), not failed."""
        with self._lock:
            clients = [m.client for m in self._members.values()]
        if not clients or not all(self._failed_for_good(c) for c in clients):
            return None
        return clients[-1].error

    def _failed_for_good(self, client: MassiveWebSocketClient) -> bool:
        """FAILED with an error that a new connection would meet again: a refused key, a final
        HTTP answer, a TLS failure, a crashed reader, the connection limit where ``on_limit``
        says fail. The pool replaces only connections that gave up reconnecting
        (:class:`ConnectionClosedError`) and those ended by the limit that ``on_limit`` retries."""
        error = client.error
        if client.state is not ConnectionState.FAILED or error is None:
            return False
        if isinstance(error, ConnectionLimitError):
            return limit_retry_for(self._on_limit, error.evicted) is None
        return not isinstance(error, ConnectionClosedError)

    def _usable(self, member: _Member) -> bool:
        """Under the lock: may take new channels or leases (not leaving, not failed for good)."""
        return not member.retiring and not self._failed_for_good(member.client)

    def stats(self, max_message_age: float | None = None) -> PoolStats:
        """Totals and per-connection snapshots (``max_message_age``: see the client's ``stats``).

        Works in a forked child too (without taking the lock a parent's thread may have held).
        """
        with self._lock if os.getpid() == self._pid else contextlib.nullcontext():
            members = list(self._members.values())
            former_clients = [*self._retired, *self._departing]
            former = attrs.evolve(self._former)
            channels = len(self._assignment)
            recycled = self._recycled
            leases = sum(m.leases for m in members)
            started, closed = self._started, self._closed
        per = tuple(m.client.stats(max_message_age) for m in members)
        for snapshot in (c.stats() for c in former_clients):
            former.add(snapshot)
        failed = tuple(m.client.name for m in members if self._failed_for_good(m.client))
        if closed:
            reason: str | None = "pool is stopped"
        elif not started:
            reason = "pool is not started"
        else:
            sick = [f"{s.name}: {s.health_reason}" for s in per if not s.healthy]
            reason = "; ".join(sick) if sick else None
        return PoolStats(
            name=self._name,
            connections=len(members),
            max_connections=self._max_connections,
            channels=channels,
            events_decoded=former.events_decoded + sum(s.events_decoded for s in per),
            dropped_events=former.dropped_events + sum(s.dropped_events for s in per),
            duplicates_suppressed=0 if self._dedupe is None else self._dedupe.suppressed,
            reconnects=former.reconnects + sum(s.reconnects for s in per),
            recycled=recycled,
            leases=leases,
            failed=failed,
            degraded=bool(failed) and len(failed) < len(members),
            healthy=reason is None,
            health_reason=reason,
            per_connection=per,
        )

    # ------------------------------------------------------------------ supervisor

    def _supervise(self) -> None:
        while not self._stop_event.wait(self._health_interval):
            try:
                self.check_health()
            except Exception:  # the supervisor must outlive any bug in one check
                logger.exception("pool %s: health check failed", self._name)

    def check_health(self) -> int:
        """Recycle failed or dead connections and close idle ones now; returns how many changed.

        The supervisor calls this every ``health_interval``; tests may call it directly.
        """
        now = time.monotonic()
        to_recycle: list[_Member] = []
        to_close: list[_Member] = []
        with self._lock:
            if self._closed:
                return 0
            for member in self._members.values():
                if member.retiring:
                    continue
                client = member.client
                dead = client.state is ConnectionState.FAILED or (
                    client.state is not ConnectionState.NEW and client.state is not ConnectionState.STOPPED
                    and not client.reader_alive
                )  # fmt: skip
                if dead:
                    if self._failed_for_good(client):
                        continue  # a refused key stays refused, a taken slot stays taken: report, never hammer
                    error = client.error
                    if isinstance(error, ConnectionLimitError):
                        limit = limit_retry_for(self._on_limit, error.evicted)
                        if limit is None:  # pragma: no cover - failed for good, skipped above
                            continue
                        if member.retry_at == 0.0:
                            wait = limit.schedule(member.limit_retries, now)
                            member.retry_at = now + wait
                            client.emit_status(
                                "limit_cooldown",
                                f"max_connections: retrying in {seconds(wait)} (at most {limit.per_hour} "
                                "retries an hour: on_limit)",
                            )  # fmt: skip
                            logger.warning("pool %s: %s hit max_connections; retrying in %s",
                                           self._name, client.name, seconds(wait))  # fmt: skip
                        if now < member.retry_at:
                            continue
                    member.retiring = True
                    to_recycle.append(member)
                elif (
                    self._idle_timeout is not None and not member.channels and not member.leases
                    and now - member.idle_since >= self._idle_timeout
                ):  # fmt: skip
                    member.retiring = True
                    to_close.append(member)
        for member in to_close:
            self._close_member(member)
            logger.info("pool %s: closed idle connection %s", self._name, member.client.name)
        for member in to_recycle:
            self._recycle(member)
        if (to_close or to_recycle) and self._listener is not None:
            self._listener()
        return len(to_close) + len(to_recycle)

    def _recycle(self, member: _Member) -> None:
        old = member.client
        reason = old.error.message if old.error is not None else "reader thread ended"
        # Break before make: the old socket is closed before the replacement connects.
        old.stop()
        with self._changed:
            if self._closed or self._members.get(old.name) is not member:
                return
            replacement = self._new_client(member.market, name=old.name, channels=effective_channels(member.channels))
            replacement.continue_gap_from(old)
            self._members[old.name] = _Member(
                client=replacement, market=member.market, channels=member.channels, leases=member.leases,
                limit_retries=member.limit_retries,
            )  # fmt: skip
            self._retire(old)
            self._recycled += 1
            replacement.emit_status("recycled", f"replaced a connection that ended ({reason})")
            self._launch(replacement)
            listener = self._listener
            self._changed.notify_all()
        logger.warning("pool %s: recycled %s (%s); %d channels moved", self._name, old.name, reason,
                       len(member.channels))  # fmt: skip
        if listener is not None:
            listener()

    # ------------------------------------------------------------------ helpers

    def _launch(self, client: MassiveWebSocketClient) -> None:
        """Under the lock: hook a new connection to the adapter and start it if the pool runs.

        Starting only spawns its reader thread (no I/O here), and doing it under the lock means
        no other thread ever sees a pool connection that is not started yet.
        """
        if self._listener is not None:
            client.set_listener(self._listener)
        if self._tap is not None:
            client.set_tap(self._tap)
        if self._started:
            client.start()

    def _retire(self, client: MassiveWebSocketClient) -> None:
        """Under the lock: keep a closed connection among the sources until it is drained."""
        self._retired.append(client)
        self._version += 1

    def _market(self, market: Market | str | None) -> Market:
        if market is None:
            return self._default_market
        return Market.coerce(market, "market")

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError(f"pool {self._name} is stopped")

    def _url_for(self, market: Market) -> str | None:
        if self._url is None:
            return None
        if callable(self._url):
            return self._url(market)
        return self._url.replace("{market}", market.value)

    def _new_client(
        self, market: Market, name: str | None = None, channels: Iterable[str] = ()
    ) -> MassiveWebSocketClient:
        if name is None:
            self._sequence += 1
            name = f"{self._name}-{market.value.replace('/', '-')}-{self._sequence}"
        return MassiveWebSocketClient(
            self._api_key, market=market, feed=self._feed, url=self._url_for(market), name=name,
            subscriptions=tuple(channels), on_limit="fail", dedupe=self._dedupe or False, **self._options,
        )  # fmt: skip
