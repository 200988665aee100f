"""RealTimeDataAdapter: a source's events into your callbacks, one callback at a time.

The source is a :class:`~massive_rt.MassiveWebSocketClient`, a
:class:`~massive_rt.ConnectionPool` or a :class:`~massive_rt.SyntheticSource`; the API is the
same for all three. The dispatcher thread (``massive-rt-dispatcher``) drains the connections
round-robin, a bounded number of frames each per round, so a flooding connection cannot starve
the others; order is preserved per connection.

Who runs the callbacks is the ``dispatch`` mode: ``"adaptive"`` (the default), inline on a
connection's reader thread while each frame's callbacks stay within ``inline_budget``, on the
dispatcher only after one did not, until the dispatcher has shown them fast again
(:mod:`massive_rt.inlinebudget`), with a relief reader reading the socket while a reader is
stuck in a callback (:mod:`massive_rt.relief`); ``"thread"``, the dispatcher only;
``"inline"``, also a connection's reader thread, whenever the dispatcher is idle and that
connection has nothing queued (no thread hand-off: lower latency, but a slow callback delays
reading). In every mode one gate lock lets one callback run at a time, and a frame never
overtakes an older one of its connection (see docs/threading.md).
"""

from __future__ import annotations

import collections
import inspect
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast, overload

import attrs

from ._util import RateLimitedLog, percentiles, snapshot_dict
from ._validate import require_int, require_number
from .config import ClientConfig, dedupe_window
from .consumer import InlineGate, check_timeout
from .dedupe import DuplicateFilter
from .enums import AdapterState
from .errors import ClientClosedError, ConfigurationError, MassiveRTError
from .inlinebudget import DEFAULT_INLINE_BUDGET, InlineBudget
from .models import Event, StatusMessage
from .protocol import MARKET_EVENTS
from .relief import RELIEF_INTERVAL

if TYPE_CHECKING:
    from .backfill import Backfill, BackfillStats

__all__ = ["AdapterStats", "EventSource", "RealTimeDataAdapter"]

logger = logging.getLogger(__name__)

Handler = Callable[[Any], Any]
ErrorHandler = Callable[[BaseException, Event, Handler], Any]
H = TypeVar("H", bound=Handler)

_WILDCARD = "*"
_EV_CODES = frozenset(ev for table in MARKET_EVENTS.values() for ev in table)
_STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM") if hasattr(signal, name))
_SIGNAL_CHECK = 0.2  # run_forever's longest delay in noticing a signal, seconds
_DISPATCH_MODES = ("adaptive", "thread", "inline")


class _Drainable(Protocol):
    @property
    def name(self) -> str: ...

    def drain(self, max_frames: int = ...) -> list[Event]: ...

    @property
    def exhausted(self) -> bool: ...


class EventSource(Protocol):
    """What the adapter needs from a source (client, pool or synthetic source).

    The drainables of ``clients()`` may also offer ``pending`` (True while something waits to
    be drained; without it they are drained every round) and ``set_inline(gate) -> bool`` (for
    ``dispatch="inline"`` and ``"adaptive"``; without it, or when it returns False, their events
    are dispatched on the dispatcher thread).
    """

    def start(self) -> Any: ...

    def stop(self, timeout: float = ...) -> None: ...

    def clients(self) -> Sequence[_Drainable]: ...

    def set_listener(self, listener: Callable[[], None] | None) -> None: ...

    def subscribe(self, *channels: str) -> Any: ...

    def unsubscribe(self, *channels: str) -> Any: ...

    def stats(self) -> Any: ...


@attrs.frozen(kw_only=True)
class AdapterStats:
    """Snapshot of the adapter's counters.

    Attributes:
        running: started, not stopped and not failed, and the dispatcher thread is alive.
        state: the adapter's :class:`AdapterState` (``new``, ``running``, ``failed``, ``stopped``).
        error: why it failed (every connection failed for good), else None.
        healthy: running, and the source healthy (when its stats say).
        health_reason: why not, when not healthy (else None).
        dispatch: ``"adaptive"``, ``"thread"`` or ``"inline"``.
        dispatched: events handed to handlers (market events, status events and unknown events).
        dispatched_inline: events a reader thread took to its callbacks (``"inline"``,
            ``"adaptive"``).
        dispatched_on_dispatcher: events the dispatcher thread took to the callbacks.
        inline_active: readers may run callbacks now (``"inline"``; ``"adaptive"`` while within
            budget); False once stopped.
        handovers: ``"adaptive"``: times a callback over ``inline_budget`` moved the callbacks
            from the readers to the dispatcher.
        inline_returns: ``"adaptive"``: times they moved back to the readers.
        reliefs: ``"adaptive"``: times a connection's relief reader took over its socket while
            its reader was in a callback (see :mod:`massive_rt.relief`).
        duplicates_suppressed: events the adapter's own filter dropped (``dedupe``).
        status_events: of which status events.
        handler_errors: total exceptions raised by handlers.
        errors_by_handler: ``{handler name: count}``.
        latency_us: receive→callback latency percentiles in microseconds (``p50``, ``p90``,
            ``p99``, ``p99_9``) over the most recent samples.
        latency_samples_total: receive→callback samples taken since the start (one per batch of
            events as dispatch starts, one more as it ends when the batch holds several).
        latency_sum_us: the sum of those samples in microseconds (with ``latency_samples_total``,
            the mean; the ``_count`` and ``_sum`` of the Prometheus summary).
        source: the source's own ``stats()``.
        recorders: the :class:`~massive_rt.RecorderStats` of the recorder taping the source (a
            ``Recorder`` of this adapter or of its source), empty when none.
        backfill: the :class:`~massive_rt.BackfillStats` of the adapter's ``backfill``, else None.
    """

    running: bool
    state: AdapterState
    error: str | None
    healthy: bool
    health_reason: str | None
    dispatch: str
    dispatched: int
    dispatched_inline: int
    dispatched_on_dispatcher: int
    inline_active: bool
    handovers: int
    inline_returns: int
    duplicates_suppressed: int
    status_events: int
    handler_errors: int
    errors_by_handler: dict[str, int]
    latency_us: dict[str, float]
    latency_samples_total: int = 0
    latency_sum_us: float = 0.0
    source: Any
    recorders: tuple[Any, ...] = ()
    backfill: BackfillStats | None = None
    reliefs: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (for a health endpoint), the source's snapshot included; it holds no secret."""
        return snapshot_dict(self)


def _tap_stats(source: Any) -> tuple[Any, ...]:
    """The stats of the source's tap when it has any (a ``Recorder`` is its own tap)."""
    stats = getattr(getattr(source, "tap", None), "stats", None)
    return (stats(),) if callable(stats) else ()


def _parameters(fn: Callable[..., Any]) -> Mapping[str, inspect.Parameter]:
    try:
        return inspect.signature(fn).parameters
    except (TypeError, ValueError):  # not introspectable (a builtin, a C extension)
        return {}


def _handler_name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


class RealTimeDataAdapter:
    """Runs your callbacks for the events of a source, one at a time, in order per connection.

    Example::

        adapter = RealTimeDataAdapter(client)
        adapter.on(EquityTrade, lambda trade: print(trade.symbol, trade.price))
        adapter.on_status(lambda status: print(status.status, status.message))
        with adapter:
            adapter.subscribe("T.AAPL")
            ...

    Routing: ``on(EquityTrade, fn)`` by class, ``on("T", fn)`` by ``ev`` code (any market),
    ``on("*", fn)`` (or ``on_event=``) for every market event (including ``UnknownEvent`` and
    ``RawFrame``); status events go to ``on_status`` handlers (and to handlers registered for
    :class:`StatusMessage`). A handler that raises is logged (rate-limited), counted, and
    reported to ``on_error`` handlers; the dispatcher carries on. ``BaseException`` (e.g.
    ``KeyboardInterrupt``) is not swallowed: it ends the dispatcher.

    ``subscribe``, ``unsubscribe`` and ``stop`` are safe from any thread, including from inside
    a handler.

    Args:
        source: a client, a pool or a synthetic source.
        on_event: a handler for every market event (same as ``on("*", on_event)``).
        frames_per_round: frames taken from each connection per round (fairness quantum).
        latency_samples: how many recent latency samples ``stats()`` keeps.
        dispatch: ``"adaptive"`` (default): as ``"inline"`` while callbacks are fast (its
            latency); as soon as one frame's callbacks take longer than ``inline_budget`` on a
            reader, every later frame goes through the queue to the dispatcher thread, until the
            dispatcher has drained every queue and delivered a streak of events in rounds within
            the budget (32 events, doubling up to 4,096 while the callbacks keep turning slow
            soon after each return). A callback still running on a reader after
            ``max(inline_budget, 5 ms)`` no longer keeps its socket unread: the connection's
            relief thread (``massive-rt-relief-<name>``) reads and queues its frames and answers
            pings until the callback returns (:mod:`massive_rt.relief`). A read of more than
            16 frames (a backlog) also goes to the dispatcher, so reading overlaps with the
            callbacks; the next small read runs inline again. ``"thread"``: callbacks
            run on the dispatcher thread only, and a slow callback never delays reading — the
            queue absorbs it. ``"inline"``: a connection's reader
            thread runs the callbacks itself whenever the dispatcher is idle and its queue is
            empty — one thread hand-off less per frame (lower latency), but every slow callback
            delays that connection's reading (the server may then drop it as a slow consumer).
            In every mode one callback runs at a time, in order per connection. Sources that
            cannot deliver inline (Redis, replay) always use the dispatcher thread.
        inline_budget: ``"adaptive"``: seconds one frame's callbacks may take on a reader
            (default 0.001; wall time, decoding excluded).
        clock: ``"adaptive"``: the clock the budget is measured with, and a reader's time on
            one read (:data:`massive_rt.relief.BACKLOG_SECONDS`), in seconds (default
            :func:`time.perf_counter`; tests pass a fake one). Reader threads call it too, without
            a lock: it must be thread-safe and have no side effects.
        dedupe: drop duplicate events before the handlers (``True``: among the last 100,000
            identities; an int: that many; a :class:`~massive_rt.DuplicateFilter` to share), whatever
            the source (a client, a pool, Redis, a synthetic source); see
            :class:`~massive_rt.MassiveWebSocketClient`. Counted in ``stats().duplicates_suppressed``.
        backfill: a :class:`~massive_rt.Backfill`: after each ``gap`` status, refill what the
            reconnect missed over REST, per symbol, before that symbol's live events (see
            docs/complete-data.md). Its statuses reach ``on_status`` handlers in order with the data.
    """

    def __init__(
        self,
        source: EventSource,
        on_event: Handler | None = None,
        *,
        frames_per_round: int = 16,
        latency_samples: int = 50_000,
        dispatch: str = "adaptive",
        dedupe: bool | int | DuplicateFilter = False,
        backfill: Backfill | None = None,
        inline_budget: float = DEFAULT_INLINE_BUDGET,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        for method in ("start", "stop", "clients", "set_listener", "subscribe", "unsubscribe", "stats"):
            if not callable(getattr(source, method, None)):
                raise ConfigurationError(
                    f"source={source!r} is not an event source (no {method}()); pass a client, a pool "
                    "or a SyntheticSource",
                    field="source",
                )
        require_int("frames_per_round", frames_per_round)
        require_int("latency_samples", latency_samples)
        if dispatch not in _DISPATCH_MODES:
            raise ConfigurationError(f"dispatch={dispatch!r} must be 'adaptive', 'thread' or 'inline'",
                                     field="dispatch")  # fmt: skip
        if not callable(clock):
            raise ConfigurationError(f"clock={clock!r} is not callable", field="clock")
        if dispatch == "adaptive":  # readers call it too: a clock that returns no seconds fails here, not there
            now = clock()
            if isinstance(now, bool) or not isinstance(now, (int, float)):
                raise ConfigurationError(f"clock() returned {now!r}, not seconds (a float)", field="clock")
        budget = InlineBudget(inline_budget)  # validated in every mode: a typo fails early
        self._budget = budget if dispatch == "adaptive" else None
        self._clock = clock
        self._dispatch_mode = dispatch
        self._backfill = backfill
        if isinstance(dedupe, DuplicateFilter):
            self._dedupe: DuplicateFilter | None = dedupe
        else:
            window = dedupe_window(dedupe)
            self._dedupe = DuplicateFilter(window) if window else None
        # Held by whoever runs callbacks: the dispatcher (per drain-and-dispatch) or, inline, a reader.
        self._gate = InlineGate(
            self._dispatch_inline,
            relief_after=max(budget.budget, RELIEF_INTERVAL) if dispatch == "adaptive" else None,
            clock=clock,
        )
        self._gate.open = dispatch != "thread"
        self._inline_thread: int | None = None
        self._dispatched_inline = 0
        self._dispatched_on_dispatcher = 0
        self._handover_log = RateLimitedLog(logger, logging.INFO, interval=60.0)
        self._source = source
        self._stats_take_age = "max_message_age" in _parameters(source.stats)
        self._frames_per_round = frames_per_round
        self._registry_lock = threading.Lock()
        self._handlers: dict[object, list[Handler]] = {}
        self._status_handlers: list[Handler] = []
        self._error_handlers: list[ErrorHandler] = []
        self._batch_handlers: tuple[Handler, ...] = ()
        # (keyed by ev, routes): routes are cached per event class, or per (class, ev) while some
        # handler is registered for an ev code; swapped whole when a registration changes.
        self._routing: tuple[bool, dict[object, tuple[Handler, ...]]] = (False, {})
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._discard = False
        self._thread: threading.Thread | None = None
        self._life_lock = threading.RLock()  # re-entrant: stop() may run in a signal handler during start()
        self._started = False
        self._dispatched = 0
        self._status_events = 0
        self._handler_errors = 0
        self._errors_by_handler: collections.Counter[str] = collections.Counter()
        self._latency: collections.deque[int] = collections.deque(maxlen=latency_samples)
        self._latency_total = 0  # samples and their sum (ns) since the start: one more each per batch
        self._latency_sum_ns = 0
        self._error_log = RateLimitedLog(logger, logging.ERROR)
        # "adaptive": seconds spent logging handler errors (a traceback takes milliseconds), which
        # the budget does not charge to the callbacks.
        self._logging_seconds = 0.0
        self._fatal: BaseException | None = None
        self._error: MassiveRTError | None = None  # every connection of the source failed for good
        self._ended = threading.Event()  # stop(), a fatal failure or a dispatcher crash: run_forever returns
        if on_event is not None:
            self.on(_WILDCARD, on_event)
        if backfill is not None:
            bind = getattr(backfill, "bind", None)
            if not callable(bind):
                raise ConfigurationError(f"backfill={backfill!r} is not a massive_rt.Backfill", field="backfill")
            bind(source, self._wake.set)

    # ------------------------------------------------------------------ registration

    @overload
    def on(self, key: type | str, handler: None = None) -> Callable[[H], H]: ...

    @overload
    def on(self, key: type | str, handler: H) -> H: ...

    def on(self, key: type | str, handler: H | None = None) -> H | Callable[[H], H]:
        """Register ``handler`` for an event class, an ``ev`` code (``"T"``, ``"AM"``) or ``"*"``.

        Usable as a decorator: ``@adapter.on(EquityTrade)``. Returns the handler.

        Raises:
            ConfigurationError: ``key`` is neither an :class:`Event` subclass, ``"*"`` nor an
                ``ev`` code of some market (the message lists them), or ``handler`` is not callable.
        """
        if isinstance(key, type):
            if not issubclass(key, Event):
                raise ConfigurationError(f"key={key.__name__} is not an Event class (e.g. mrt.EquityTrade)",
                                         field="key")  # fmt: skip
        elif not isinstance(key, str) or (key != _WILDCARD and key not in _EV_CODES):
            raise ConfigurationError(
                f"key={key!r} must be an Event class, '*' or an ev code: {', '.join(sorted(_EV_CODES))}", field="key"
            )
        if handler is None:

            def decorator(fn: H) -> H:
                return self.on(key, fn)

            return decorator
        if not callable(handler):
            raise ConfigurationError(f"handler={handler!r} is not callable", field="handler")
        with self._registry_lock:
            self._handlers.setdefault(key, []).append(handler)
            self._routes_changed()
        return handler

    def off(self, key: type | str, handler: Handler) -> bool:
        """Unregister a handler; True if it was registered."""
        with self._registry_lock:
            handlers = self._handlers.get(key, [])
            if handler not in handlers:
                return False
            handlers.remove(handler)
            self._routes_changed()
            return True

    def on_status(self, handler: H) -> H:
        """Register a handler for status events: connection lifecycle, drops, gaps, refusals."""
        if not callable(handler):
            raise ConfigurationError(f"handler={handler!r} is not callable", field="handler")
        with self._registry_lock:
            self._status_handlers.append(handler)
            self._routes_changed()
        return handler

    def on_error(self, handler: ErrorHandler) -> ErrorHandler:
        """Register ``handler(error, event, failed_handler)``, called when a handler raises."""
        if not callable(handler):
            raise ConfigurationError(f"handler={handler!r} is not callable", field="handler")
        with self._registry_lock:
            self._error_handlers.append(handler)
        return handler

    def on_batch(self, handler: H) -> H:
        """Register ``handler(events)``, called with each delivered batch (a list of events, statuses
        included) after every per-event handler has seen it: on the thread running the callbacks, in
        order, one call per batch. For consumers that keep state per event (a last-value cache) and
        want no per-event call. The list is the adapter's: read it, do not keep or change it.
        A handler that raises is counted and logged like any handler (``stats().handler_errors``)."""
        if not callable(handler):
            raise ConfigurationError(f"handler={handler!r} is not callable", field="handler")
        with self._registry_lock:
            self._batch_handlers = (*self._batch_handlers, handler)
        return handler

    def off_batch(self, handler: Handler) -> bool:
        """Unregister a batch handler; True if it was registered."""
        with self._registry_lock:
            if handler not in self._batch_handlers:
                return False
            self._batch_handlers = tuple(h for h in self._batch_handlers if h != handler)
            return True

    def _routes_changed(self) -> None:
        """Under the registry lock: drop every cached route (the next event of each class resolves)."""
        by_ev = any(handlers for key, handlers in self._handlers.items() if isinstance(key, str) and key != _WILDCARD)
        self._routing = (by_ev, {})

    def _resolve(self, routes: dict[object, tuple[Handler, ...]], cls: type, ev: object) -> tuple[Handler, ...]:
        """The handlers of events of ``cls`` (and ``ev``, unless None: no handler is keyed by an
        ev code), cached in ``routes``."""
        with self._registry_lock:
            found: list[Handler] = []
            watch = False
            if issubclass(cls, StatusMessage):
                found.append(self._count_status)
                found.extend(self._status_handlers)
                watch = True
            elif _WILDCARD in self._handlers:
                found.extend(self._handlers[_WILDCARD])
            for klass in cls.__mro__:
                found.extend(self._handlers.get(klass, ()))
            if isinstance(ev, str) and not issubclass(cls, StatusMessage):
                found.extend(self._handlers.get(ev, ()))
            if watch:
                found.append(self._watch_source)  # last: after your handlers have seen the status
            seen: dict[Handler, None] = dict.fromkeys(found)
            route = tuple(seen)
            routes[cls if ev is None else (cls, ev)] = route
            return route

    # ------------------------------------------------------------------ lifecycle

    @property
    def source(self) -> EventSource:
        """The event source."""
        return self._source

    def start(self) -> RealTimeDataAdapter:
        """Start the source and the dispatcher thread. Idempotent.

        Raises:
            ClientClosedError: the adapter was stopped (adapters are not restartable).
        """
        with self._life_lock:
            if self._stopping.is_set():
                raise ClientClosedError("adapter was stopped; create a new one")
            if self._started:
                return self
            self._started = True
            self._source.set_listener(self._wake.set)
            self._thread = threading.Thread(target=self._run, name="massive-rt-dispatcher", daemon=True)
            self._thread.start()
        if self._backfill is not None:
            self._backfill.start()
        self._source.start()
        return self

    def wait_ready(self, timeout: float | None = None) -> RealTimeDataAdapter:
        """Block until the source streams: every connection authenticated and subscribed (the
        synthetic source: started). Call after :meth:`start`.

        Raises:
            AuthenticationError, ConnectionLimitError, HandshakeError, ConnectionClosedError: a
                connection failed for good (the source's own typed error).
            WaitTimeoutError: ``timeout`` passed first (also a ``TimeoutError``).
            ClientClosedError: the adapter was not started, or was stopped.
        """
        check_timeout(timeout)
        with self._life_lock:
            if self._stopping.is_set():
                raise ClientClosedError("adapter was stopped")
            if not self._started:
                raise ClientClosedError("call start() first")
        if self.error is not None:
            raise self.error
        wait = getattr(self._source, "wait_ready", None)
        if callable(wait):
            wait(timeout)
        return self

    def run_forever(self) -> None:
        """Start (if not started) and block the calling thread until :meth:`stop` (from a handler
        or another thread), SIGINT or SIGTERM, or a failure for good; then stop.

        The loop of a service's main: ``adapter.run_forever()``. On the main thread it handles
        SIGINT (Ctrl-C) and SIGTERM (a service manager's stop) itself — a clean :meth:`stop`
        within a fraction of a second, then it returns — and restores the previous handlers
        before returning; elsewhere it installs none. It also returns when the source ended by
        itself (a client stopped directly).

        Raises:
            AuthenticationError, ConnectionLimitError, HandshakeError, ConnectionClosedError:
                every connection of the source failed for good
                (also reported to ``on_status`` as an ``adapter_failed`` status, after the
                connections' own ``failed`` statuses, and in :attr:`error`).
            BaseException: whatever ended the dispatcher (a ``SystemExit`` raised in a handler).
            ClientClosedError: the adapter was already stopped, or this is a handler's thread.
        """
        previous: dict[int, Any] = {}
        received: int | None = None
        if threading.current_thread() is self._thread or self._inline_thread == threading.get_ident():
            raise ClientClosedError("run_forever() called from a handler would wait for itself; call it from "
                                    "your main thread")  # fmt: skip

        def note(signum: int, _frame: object) -> None:
            # Only a plain assignment: raising, or touching a lock, from a handler that may run in
            # the middle of a threading wait can leave that lock broken.
            nonlocal received
            received = signum

        try:
            if threading.current_thread() is threading.main_thread():
                for signum in _STOP_SIGNALS:
                    previous[signum] = signal.signal(signum, note)
            self.start()
            # Bounded waits: a signal the OS hands to another thread runs its Python handler on
            # this thread only once this thread runs again.
            while received is None and not self._ended.wait(_SIGNAL_CHECK):
                pass
        finally:
            for signum, handler in previous.items():
                if handler is not None:  # None: installed outside Python, cannot be put back
                    signal.signal(signum, handler)
        if received is not None:
            logger.info("adapter: %s received, stopping", signal.Signals(received).name)
        self.stop()
        if self.error is not None:
            raise self.error
        if self._fatal is not None:
            raise self._fatal

    def subscribe(self, *channels: str, **kwargs: Any) -> Any:
        """Subscribe through the source (``market=`` for a pool). Safe inside a handler.

        Raises:
            ClientClosedError: the adapter was stopped.
        """
        self._check_open()
        return cast(Any, self._source).subscribe(*channels, **kwargs)

    def unsubscribe(self, *channels: str, **kwargs: Any) -> Any:
        """Unsubscribe through the source. Safe inside a handler.

        Raises:
            ClientClosedError: the adapter was stopped.
        """
        self._check_open()
        return cast(Any, self._source).unsubscribe(*channels, **kwargs)

    def _check_open(self) -> None:
        if self._stopping.is_set():
            raise ClientClosedError("adapter was stopped; create a new one")

    def stop(self, timeout: float = 5.0, drain: bool = True) -> bool:
        """Stop the source, then the dispatcher. Idempotent; safe from any thread and from a handler.

        Args:
            timeout: bound of the whole stop, seconds.
            drain: dispatch what is already queued before returning (bounded by ``timeout``);
                with False, queued events are discarded.

        Returns:
            True if everything stopped in time; False if a handler was still running (it is
            logged, and the dispatcher ends as soon as that handler returns).
        """
        require_number("timeout", timeout)
        deadline = time.monotonic() + timeout
        with self._life_lock:
            self._discard = self._discard or not drain
            self._stopping.set()
            self._gate.open = False  # from now on readers queue; the dispatcher drains or discards
            thread = self._thread
        self._source.stop(max(0.1, timeout / 2))
        if self._backfill is not None:
            self._backfill.cancel()  # held live events are handed out (after a backfill_failed) like queued ones
        self._wake.set()
        self._ended.set()
        if thread is None or thread is threading.current_thread() or self._inline_thread == threading.get_ident():
            return True  # from a handler: the dispatcher finishes once the handler returns
        try:
            thread.join(max(0.0, deadline - time.monotonic()))
        except RuntimeError:  # called (from a signal handler) while start() was starting it
            return True
        if self._backfill is not None and not self._backfill.join(max(0.0, deadline - time.monotonic())):
            logger.warning("adapter stop: a backfill request was still in flight after %.1fs; its worker thread "
                           "ends when it returns (its result is discarded)", timeout)  # fmt: skip
            return False
        if thread.is_alive():
            self._discard = True
            logger.warning("adapter stop: still dispatching after %.1fs (a slow handler or a large backlog); "
                           "what is still queued is discarded and the dispatcher exits after the current "
                           "handler returns", timeout)  # fmt: skip
            return False
        # A callback still running inline on a reader holds the gate: wait for it too.
        if not self._gate.lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            logger.warning("adapter stop: a handler on a reader thread was still running after %.1fs", timeout)
            return False
        self._gate.lock.release()
        return True

    def __enter__(self) -> RealTimeDataAdapter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"RealTimeDataAdapter(source={self._source!r}, running={self.running})"

    @property
    def dispatch(self) -> str:
        """``"adaptive"``, ``"thread"`` or ``"inline"`` (see the class docstring)."""
        return self._dispatch_mode

    @property
    def state(self) -> AdapterState:
        """``new``, ``running`` (started), ``failed`` (every connection of the source failed for
        good; see :attr:`error`) or ``stopped`` (also after :meth:`run_forever` stopped it on a
        failure: :attr:`error` stays set; and once a handler's ``BaseException`` ended dispatching)."""
        if self._stopping.is_set():
            return AdapterState.STOPPED
        if self.error is not None:
            return AdapterState.FAILED
        return AdapterState.RUNNING if self._started else AdapterState.NEW

    @property
    def error(self) -> MassiveRTError | None:
        """Why the adapter failed (the source's typed error: every connection failed for good),
        else None. Set as soon as the source knows, before the ``adapter_failed`` status is
        dispatched."""
        if self._error is not None:
            return self._error
        error = getattr(self._source, "error", None) if self._started else None
        return error if isinstance(error, MassiveRTError) else None

    @property
    def running(self) -> bool:
        """True while started, not stopped, not failed, and the dispatcher thread alive."""
        thread = self._thread
        return self.state is AdapterState.RUNNING and thread is not None and thread.is_alive()

    def stats(self, max_message_age: float | None = None) -> AdapterStats:
        """Counters, handler errors, latency percentiles and health (cheap; any thread).

        Args:
            max_message_age: passed to the source's ``stats`` (see the client's).
        """
        samples = list(self._latency)
        latency_total, latency_sum_ns = self._latency_total, self._latency_sum_ns
        # A source whose stats() takes no threshold (Redis, third-party) is asked without one.
        source = cast(Any, self._source).stats(max_message_age) if self._stats_take_age else self._source.stats()
        state = self.state
        running = self.running
        # The first cause wins: the adapter's own end, then the source's reason (a connection's
        # state, its silence, a fork), then a dispatcher that died on its own.
        reason: str | None = None
        error = self.error
        if error is not None:
            reason = f"adapter failed: {error.message}"
        elif state is not AdapterState.RUNNING:
            reason = f"adapter {state.value}"
        elif getattr(source, "healthy", True) is False:
            reason = getattr(source, "health_reason", None) or "source unhealthy"
        elif not running:
            reason = "dispatcher thread ended" + (f" by {type(self._fatal).__name__}" if self._fatal else "")
        return AdapterStats(
            running=running,
            state=state,
            error=None if error is None else error.message,
            healthy=reason is None,
            health_reason=reason,
            dispatch=self._dispatch_mode,
            dispatched=self._dispatched,
            dispatched_inline=self._dispatched_inline,
            dispatched_on_dispatcher=self._dispatched_on_dispatcher,
            inline_active=self._dispatch_mode != "thread" and self._gate.open,
            handovers=0 if self._budget is None else self._budget.handovers,
            inline_returns=0 if self._budget is None else self._budget.returns,
            reliefs=self._gate.reliefs,
            duplicates_suppressed=0 if self._dedupe is None else self._dedupe.suppressed,
            status_events=self._status_events,
            handler_errors=self._handler_errors,
            errors_by_handler=dict(self._errors_by_handler),
            latency_us={k: v / 1000 for k, v in percentiles(samples).items()},
            latency_samples_total=latency_total,
            latency_sum_us=latency_sum_ns / 1000,
            source=source,
            recorders=_tap_stats(self._source),
            backfill=None if self._backfill is None else self._backfill.stats(),
        )

    # ------------------------------------------------------------------ dispatcher

    def _run(self) -> None:
        wake = self._wake
        stopping_event = self._stopping
        source = self._source
        version = getattr(source, "version", None)
        clients = self._adopt(source.clients())
        armed = False  # wake was cleared and the queues re-checked since the last progress
        try:
            while True:
                stopping = stopping_event.is_set()
                if stopping and self._discard:
                    return
                current = getattr(source, "version", None)
                if current != version:  # a pool added or replaced a connection
                    version, clients = current, self._adopt(source.clients())
                if self._round(clients):
                    armed = False
                    continue
                if not armed:
                    # Clear, then look once more: an item that arrived in between either shows up
                    # now or sets the event again, so no wake-up is ever lost.
                    wake.clear()
                    armed = True
                    continue
                if self._budget is not None and not self._budget.inline:
                    self._return_inline()  # every queue was found empty twice in a row
                exhausted = all(c.exhausted for c in clients)
                if stopping and exhausted and (self._backfill is None or self._backfill.exhausted):
                    return
                if exhausted and clients and version is None:
                    # The source ended by itself (a client stopped directly): run_forever returns.
                    # Not for a pool (it has a version): it replaces connections that ended.
                    self._ended.set()
                wake.wait(0.1 if stopping else 0.5)
                armed = False
                if version is None:
                    clients = self._adopt(source.clients())
        except BaseException as exc:
            logger.critical("dispatcher ended by %s", type(exc).__name__, exc_info=True)
            self._end_dispatching(exc)
            raise
        finally:
            self._gate.open = False  # nobody drains any more: nothing may be dispatched inline either

    def _return_inline(self) -> None:
        """``"adaptive"``, on the dispatcher with every queue empty: let readers dispatch again
        if the budget says the callbacks were fast long enough (and nothing is stopping)."""
        gate = self._gate
        if not gate.lock.acquire(blocking=False):
            return  # someone is dispatching: not idle after all
        try:
            # Under the life lock: stop() (or a fatal error) closes the gate for good, and a
            # return decided just before it must not reopen it.
            with self._life_lock:
                if self._stopping.is_set() or self._fatal is not None:
                    return
                if self._budget is not None and self._budget.may_return():
                    gate.open = True
        finally:
            gate.lock.release()

    def _adopt(self, clients: Sequence[_Drainable]) -> Sequence[_Drainable]:
        """Open inline delivery on the connections the dispatcher drains (``"inline"``, ``"adaptive"``).

        Only on those: a pool's replacement connection is left out until its predecessor's
        queue is drained, and so it queues until then, which keeps that connection's order.
        """
        if self._dispatch_mode != "thread":
            for client in clients:
                set_inline = getattr(client, "set_inline", None)
                if set_inline is not None:
                    set_inline(self._gate)
        return clients

    def _round(self, clients: Sequence[_Drainable]) -> bool:
        """Drain each source once (a bounded number of frames each); True if anything came."""
        progressed = False
        quantum = self._frames_per_round
        gate = self._gate
        budget = self._budget
        clock = self._clock
        for client in clients:
            if not getattr(client, "pending", True):
                continue  # and leave the gate free for the readers ("inline", "adaptive")
            # Drain and dispatch under the gate: a reader never dispatches a newer frame while
            # older ones of its connection are taken out but not yet handled.
            if not gate.lock.acquire(blocking=False):
                gate.wanted = True  # readers queue meanwhile, so the lock comes free for us
                gate.lock.acquire()
                gate.wanted = False
            try:
                if self._discard and self._stopping.is_set():
                    return True  # stop(drain=False): dispatch nothing more
                events = client.drain(quantum)
                if events:
                    progressed = True
                    self._dispatched_on_dispatcher += len(events)
                    if budget is None or budget.inline:
                        self._dispatch(events)
                    else:  # handed over: the dispatcher shows whether the callbacks are fast again
                        logged = self._logging_seconds
                        started = clock()
                        self._dispatch(events)
                        budget.after_round(len(events), clock() - started - (self._logging_seconds - logged))
            except ClientClosedError:
                continue
            except BaseException:
                gate.open = False  # before the lock comes free: no reader may dispatch after this
                raise
            finally:
                gate.lock.release()
        backfill = self._backfill
        if backfill is not None and backfill.pending:
            if not gate.lock.acquire(blocking=False):
                gate.wanted = True
                gate.lock.acquire()
                gate.wanted = False
            try:  # what finished fetches release: delivered as it is (not admitted again)
                if not (self._discard and self._stopping.is_set()):
                    events = backfill.drain()
                    if events:
                        progressed = True
                        self._dispatched_on_dispatcher += len(events)
                        self._deliver(events)
            except BaseException:
                gate.open = False
                raise
            finally:
                gate.lock.release()
        return progressed

    def _dispatch_inline(self, events: list[Event]) -> None:
        """On a reader thread, under the gate (see :class:`~massive_rt.consumer.InlineGate`)."""
        self._inline_thread = threading.get_ident()
        budget = self._budget
        try:
            if budget is None:
                self._dispatch(events)
            else:
                gate = self._gate
                reliefs = gate.reliefs
                logged = self._logging_seconds
                started = self._clock()
                self._dispatch(events)
                elapsed = self._clock() - started - (self._logging_seconds - logged)
                # A relief reader that took this reader's socket over closed the gate: a hand-over too.
                relieved = gate.reliefs != reliefs
                if (gate.open or relieved) and (
                    budget.after_inline(len(events), elapsed) or (relieved and budget.hand_over())
                ):
                    gate.open = False  # later frames queue: the dispatcher takes over
                    self._handover_log(
                        "adapter: callbacks took %.1f ms on %s (inline_budget %.1f ms%s): they run on the "
                        "dispatcher thread until it has delivered %d events within budget", elapsed * 1000,
                        threading.current_thread().name, budget.budget * 1000,
                        "; its relief reader read the socket meanwhile" if relieved else "", budget.streak,
                    )  # fmt: skip
            self._dispatched_inline += len(events)
        except BaseException as exc:
            # As on the dispatcher thread, a BaseException ends dispatching (not the connection).
            logger.critical("a handler raised %s on a reader thread (dispatch=%r): dispatching ends",
                            type(exc).__name__, self._dispatch_mode, exc_info=True)  # fmt: skip
            self._end_dispatching(exc)
        finally:
            self._inline_thread = None

    def _end_dispatching(self, exc: BaseException) -> None:
        """A handler's ``exc`` ended dispatching (on the dispatcher or a reader): nothing is dispatched
        any more, inline either, and the adapter is stopped (``state``, ``subscribe()`` refusing),
        while ``run_forever()`` re-raises ``exc``."""
        self._gate.open = False
        self._fatal = exc
        self._ended.set()
        with self._life_lock:
            self._discard = True
            self._stopping.set()
        self._wake.set()

    def _dispatch(self, events: list[Event]) -> None:
        if self._backfill is not None:
            events = self._backfill.admit(events)
            if not events:
                return
        self._deliver(events)

    def _deliver(self, events: list[Event]) -> None:
        if self._dedupe is not None:
            events = self._dedupe.filter(events)
            if not events:
                return
        keyed_by_ev, routes = self._routing
        # Latency samples: the first event of the batch as dispatch starts, the last as it ends.
        first = time.time_ns() - events[0].received_at_ns
        self._latency.append(first)
        if keyed_by_ev:
            for event in events:
                handlers = routes.get((event.__class__, event.event_type))  # type: ignore[attr-defined]
                if handlers is None:
                    handlers = self._resolve(routes, event.__class__, event.event_type)  # type: ignore[attr-defined]
                for handler in handlers:
                    try:
                        handler(event)
                    except Exception as exc:
                        self._handler_failed(exc, event, handler)
        else:
            # The fast path: one lookup per run of events of one class, one call per event when
            # the class has one handler (a frame of trades into one callback).
            last_class: type | None = None
            handlers = ()
            single: Handler | None = None
            for event in events:
                cls = event.__class__
                if cls is not last_class:
                    last_class = cls
                    found = routes.get(cls)
                    handlers = self._resolve(routes, cls, None) if found is None else found
                    single = handlers[0] if len(handlers) == 1 else None
                if single is not None:
                    try:
                        single(event)
                    except Exception as exc:
                        self._handler_failed(exc, event, single)
                    continue
                for handler in handlers:
                    try:
                        handler(event)
                    except Exception as exc:
                        self._handler_failed(exc, event, handler)
        if len(events) > 1:
            last = time.time_ns() - events[-1].received_at_ns
            self._latency.append(last)
            self._latency_total += 2
            self._latency_sum_ns += first + last
        else:
            self._latency_total += 1
            self._latency_sum_ns += first
        self._dispatched += len(events)
        for batch_handler in self._batch_handlers:
            try:
                batch_handler(events)
            except Exception as exc:
                self._handler_failed(exc, events[-1], batch_handler)

    def _count_status(self, _event: Event) -> None:
        self._status_events += 1

    def _watch_source(self, event: StatusMessage) -> None:
        """After a connection's terminal status: has every connection failed for good?"""
        if self._error is not None or event.status != "failed":  # a connection's last word, after its state
            return
        error = getattr(self._source, "error", None)
        if not isinstance(error, MassiveRTError) or self._stopping.is_set():
            return
        self._error = error
        # INFO: each connection has logged its own failure at ERROR already.
        logger.info("adapter: every connection of the source failed for good: %s", error.message)
        self._dispatch([
            StatusMessage(status="adapter_failed", state=AdapterState.FAILED, error=error,
                          message=f"adapter failed: every connection of the source failed for good: {error.message}",
                          connection=str(getattr(self._source, "name", "")), received_at_ns=time.time_ns())
        ])  # fmt: skip
        self._ended.set()

    def _handler_failed(self, exc: Exception, event: Event, handler: Handler) -> None:
        name = _handler_name(handler)
        self._handler_errors += 1
        self._errors_by_handler[name] += 1
        started = self._clock()  # only on this error path: the budget does not charge logging to the callbacks
        self._error_log("handler %s raised %s on %s", name, type(exc).__name__, type(event).__name__, exc_info=exc)
        self._logging_seconds += self._clock() - started
        for error_handler in list(self._error_handlers):
            try:
                error_handler(exc, event, handler)
            except Exception:
                logger.exception("on_error handler %s raised", _handler_name(error_handler))

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_env(
        cls,
        subscriptions: Iterable[str] = ("T.*", "Q.*", "AM.*"),
        *,
        on_event: Handler | None = None,
        environ: Mapping[str, str] | None = None,
        symbols: Sequence[str] | None = None,
        seed: int | None = None,
        rate: float | None = 1000.0,
        dispatch: str = "adaptive",
        **client_options: Any,
    ) -> RealTimeDataAdapter:
        """An adapter on Massive when ``MASSIVE_API_KEY`` is set, else on the synthetic market.

        ``MASSIVE_MARKET``, ``MASSIVE_FEED`` and ``MASSIVE_WS_URL`` apply to the real feed.
        Which one was chosen is logged at INFO. ``symbols``, ``seed`` and ``rate`` apply to the
        synthetic market only; ``client_options`` to the real client only; ``dispatch`` to both
        (see the class).
        """
        env = os.environ if environ is None else environ
        if (env.get("MASSIVE_API_KEY") or "").strip():
            from .connection import MassiveWebSocketClient

            config = ClientConfig.from_env(env, subscriptions=tuple(subscriptions), **client_options)
            client = MassiveWebSocketClient(config=config)
            logger.info("MASSIVE_API_KEY is set: streaming from Massive (%s)", config.resolved_url)
            return cls(client, on_event=on_event, dispatch=dispatch)
        from .synthetic import SyntheticSource

        market = (env.get("MASSIVE_MARKET") or "stocks").strip() or "stocks"
        source = SyntheticSource(subscriptions, market=market, symbols=symbols, seed=seed, rate=rate)
        logger.info("MASSIVE_API_KEY is not set: streaming the synthetic %s market (no network, no key)", market)
        return cls(source, on_event=on_event, dispatch=dispatch)
