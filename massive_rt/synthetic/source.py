"""SyntheticSource: a :class:`~massive_rt.synthetic.market.SyntheticMarket` on a daemon thread,
behind the same surface as a client (``start``, ``subscribe``, ``get``, ``drain``, ``stats``, ``stop``),
so an adapter runs on synthetic data with no key and no network.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs

from .._lifecycle import ThreadedSource
from .._util import snapshot_dict
from .._validate import field_error, require_number
from ..consumer import check_timeout
from ..enums import ConnectionState, Market, Overflow
from ..errors import ConfigurationError
from ..eventqueue import KIND_EVENT, KIND_OBJECTS
from ..models import StatusMessage
from ..protocol import parse_channels
from .market import SESSION_START_MS, SyntheticMarket, wall_clock_ms

__all__ = ["SyntheticSource", "SyntheticStats"]

logger = logging.getLogger(__name__)


class SyntheticSource(ThreadedSource):
    """A synthetic event source for :class:`~massive_rt.RealTimeDataAdapter` — no key, no network.

    Same surface as a client (``start``, ``subscribe``, ``get``, ``drain``, ``stats``, ``stop``):
    a daemon thread (``massive-rt-synthetic-<name>``) generates a :class:`SyntheticMarket` stream,
    keeps the events of the subscribed channels and queues them; they are decoded into the same
    typed events as the real feed on the consumer's thread.

    Args:
        subscriptions: channels to deliver, e.g. ``("T.*", "Q.AAPL")``.
        market: ``"stocks"`` or ``"crypto"``.
        symbols: symbols to simulate (default: the explicit tickers of ``subscriptions``, else a
            handful of liquid ones).
        seed: RNG seed (deterministic stream); None picks one.
        clock: where the events' times come from, Unix milliseconds. Default
            :func:`wall_clock_ms`: times are the present and a minute bar arrives as its real
            minute ends, like a live feed, so :class:`~massive_rt.BarClock` closes minutes with
            real bars and :class:`~massive_rt.LastValueCache` ages are true. A test's fake clock
            drives both the same way. ``None``: the generator's simulated clock, starting at
            ``start_ms`` and advancing with the events, not with time (bars come as fast as the
            events; with a ``seed`` the stream, times included, is the same on every run).
        start_ms: where the simulated clock (``clock=None``) starts; default
            :data:`SESSION_START_MS`, a fixed 2025 market open.
        rate: generated events per second (before filtering), or None for as fast as possible.
        batch: events generated per frame.
        queue_size: queue capacity in events.
        overflow: full-queue policy; default ``block`` when ``rate`` is None, else ``drop_oldest``.
        name: source name (events' ``connection``).
    """

    _THREAD_PREFIX = "massive-rt-synthetic-"

    def __init__(
        self,
        subscriptions: Iterable[str] | str = ("T.*", "Q.*", "AM.*"),
        *,
        market: Market | str = Market.STOCKS,
        symbols: Sequence[str] | None = None,
        seed: int | None = None,
        clock: Callable[[], int] | None = wall_clock_ms,
        start_ms: int = SESSION_START_MS,
        rate: float | None = 1000.0,
        batch: int = 10,
        queue_size: int = 100_000,
        overflow: Overflow | str | None = None,
        name: str = "synthetic",
    ) -> None:
        resolved: Market = Market.coerce(market, "market")
        try:
            channels = parse_channels(subscriptions, resolved)
        except ConfigurationError as exc:  # name the parameter the caller used
            raise field_error("subscriptions", exc.message) from None
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0):
            raise field_error("rate", f"rate={rate!r} must be None or a number > 0")
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise field_error("batch", f"batch={batch!r} must be an int >= 1")
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise field_error("queue_size", f"queue_size={queue_size!r} must be an int >= 1")
        if not isinstance(name, str) or not name or any(c.isspace() for c in name):
            raise field_error("name", f"name={name!r} must be a non-empty string without whitespace")
        if symbols is None:
            explicit = [c.partition(".")[2] for c in channels if not c.endswith(".*")]
            symbols = tuple(dict.fromkeys(explicit)) or None
        self._market = resolved
        self._generator = SyntheticMarket(symbols, market=resolved, seed=seed, clock=clock, start_ms=start_ms)
        self._name = name
        self._rate = None if rate is None else float(rate)
        self._batch = batch
        policy = Overflow.coerce(overflow, "overflow") if overflow is not None else (
            Overflow.BLOCK if rate is None else Overflow.DROP_OLDEST
        )  # fmt: skip
        self._init_consumer(name, resolved, queue_size, policy, False, logger)
        self._lock = threading.Lock()
        self._desired: dict[str, None] = dict.fromkeys(channels)
        self._filter = _channel_filter(self._desired)
        self._state = ConnectionState.NEW
        self._init_lifecycle()
        self._generated = 0
        self._queued = 0

    @property
    def name(self) -> str:
        """The source name."""
        return self._name

    @property
    def market(self) -> Market:
        """The simulated market."""
        return self._market

    @property
    def state(self) -> ConnectionState:
        """NEW, STREAMING or STOPPED."""
        return self._state

    @property
    def subscriptions(self) -> frozenset[str]:
        """The channels delivered."""
        with self._lock:
            return frozenset(self._desired)

    @property
    def generator(self) -> SyntheticMarket:
        """The underlying :class:`SyntheticMarket` (owned by the source's thread once started)."""
        return self._generator

    def wait_ready(self, timeout: float | None = None) -> SyntheticSource:
        """Return at once once started (the synthetic market needs no handshake)."""
        check_timeout(timeout)
        self._require_started("wait_ready()")
        return self

    def subscribe(self, *channels: str, **_: Any) -> tuple[str, ...]:
        """Add channels (validated for the market); returns those that were new.

        Raises:
            ClientClosedError: the source was stopped.
        """
        self._check_open()
        valid = parse_channels(channels, self._market)
        with self._lock:
            added = tuple(c for c in valid if c not in self._desired)
            self._desired.update(dict.fromkeys(added))
            self._filter = _channel_filter(self._desired)
        unknown = [c for c in added if not c.endswith(".*") and c.partition(".")[2] not in self._generator.symbols]
        if unknown:
            logger.warning("[%s] the synthetic market does not simulate %s", self._name, ", ".join(unknown))
        return added

    def unsubscribe(self, *channels: str, **_: Any) -> tuple[str, ...]:
        """Remove channels; returns those that were subscribed.

        Raises:
            ClientClosedError: the source was stopped.
        """
        self._check_open()
        valid = parse_channels(channels, self._market)
        with self._lock:
            removed = tuple(c for c in valid if c in self._desired)
            for channel in removed:
                del self._desired[channel]
            self._filter = _channel_filter(self._desired)
        return removed

    def unsubscribe_all(self) -> tuple[str, ...]:
        """Remove every channel.

        Raises:
            ClientClosedError: the source was stopped.
        """
        self._check_open()
        with self._lock:
            removed = tuple(self._desired)
            self._desired.clear()
            self._filter = {}
        return removed

    def stop(self, timeout: float = 5.0) -> None:
        """Stop generating; queued events stay available. Idempotent; any thread."""
        require_number("timeout", timeout)
        with self._life_lock:
            self._stop_requested.set()
            thread = self._thread
        if thread is None:
            if self._state is not ConnectionState.STOPPED:
                self._state = ConnectionState.STOPPED
                self._queue.close()
            return
        if thread is not threading.current_thread():
            thread.join(timeout)

    def stats(self, max_message_age: float | None = None) -> SyntheticStats:
        """Counters of the source (``max_message_age`` is accepted for symmetry and unused:
        the generator has no silence to detect)."""
        state = self._state
        streaming = state is ConnectionState.STREAMING
        return SyntheticStats(
            name=self._name, market=self._market.value, state=state, generated=self._generated,
            queued=self._queued, events_decoded=self._decoder.stats.events,
            dropped_events=self._queue.dropped_events, queue_frames=len(self._queue),
            subscriptions=len(self.subscriptions), healthy=streaming,
            health_reason=None if streaming else f"state {state.value}",
        )  # fmt: skip

    def __repr__(self) -> str:
        return f"SyntheticSource(name={self._name!r}, market={self._market.value!r}, rate={self._rate})"

    def _status(self, state: ConnectionState, message: str) -> None:
        self._state = state
        event = StatusMessage(status="state", state=state, message=message, connection=self._name,
                              received_at_ns=time.time_ns())  # fmt: skip
        self._queue.put([KIND_EVENT, event, event.received_at_ns, 0])

    def _run(self) -> None:
        generate = self._generator.next_events
        batch = self._batch
        stopped = self._stop_requested.is_set
        interval = None if self._rate is None else batch / self._rate
        next_at = time.monotonic()
        self._status(ConnectionState.STREAMING, f"synthetic {self._market.value} market")
        try:
            while not stopped():
                if interval is not None:
                    next_at += interval
                    delay = next_at - time.monotonic()
                    if delay > 0 and self._stop_requested.wait(delay):
                        break
                    if delay < -1.0:
                        next_at = time.monotonic()  # fell behind (paused process): do not burst
                objects = generate(batch)
                self._generated += len(objects)
                wanted = self._filter
                keep = [o for o in objects if _wanted(wanted, o)]
                if keep:
                    self._queued += len(keep)
                    self._sink([KIND_OBJECTS, keep, time.time_ns(), len(keep)], stopped)
        except Exception:
            logger.exception("[%s] synthetic generator crashed", self._name)
        finally:
            self._status(ConnectionState.STOPPED, "stopped")
            self._queue.close()


@attrs.frozen(kw_only=True)
class SyntheticStats:
    """Counters of a :class:`SyntheticSource`; ``healthy`` while it streams."""

    name: str
    market: str
    state: ConnectionState
    generated: int
    queued: int
    events_decoded: int
    dropped_events: int
    queue_frames: int
    subscriptions: int
    healthy: bool
    health_reason: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (for a health endpoint)."""
        return snapshot_dict(self)


def _channel_filter(channels: Iterable[str]) -> dict[str, frozenset[str] | None]:
    """``{ev: tickers}`` with None meaning every ticker (a wildcard)."""
    tickers: dict[str, set[str] | None] = {}
    for channel in channels:
        prefix, _, ticker = channel.partition(".")
        if ticker == "*":
            tickers[prefix] = None
        elif prefix not in tickers or tickers[prefix] is not None:
            tickers.setdefault(prefix, set()).add(ticker)  # type: ignore[union-attr]
    return {ev: None if t is None else frozenset(t) for ev, t in tickers.items()}


def _wanted(wanted: dict[str, frozenset[str] | None], obj: dict[str, Any]) -> bool:
    ev = obj.get("ev")
    if ev not in wanted:
        return False
    tickers = wanted[ev]
    return tickers is None or (obj.get("sym") or obj.get("pair")) in tickers
