"""Backfill: refill the gap a reconnect leaves, per symbol, over REST, in order with the live stream.

Give one to an adapter, ``RealTimeDataAdapter(source, backfill=Backfill(...))``. Then on every
``gap`` status (the first data after a reconnect) it plans, for each explicit ticker of the gapped
connection in a backfillable channel (:data:`~massive_rt.backfill.plan.BACKFILLABLE`), a fetch of
the exchange-time window from that symbol's mark (the last event delivered before the disconnect)
to its first live event after the reconnect, and delivers what was missing — marked
``origin == "rest"``, de-duplicated at both seams (:mod:`~massive_rt.backfill.seam`).

Ordering contract: per symbol, backfilled events come after the ``gap`` status and before that
symbol's live events after the reconnect. Those live events are held while its backfill runs (at
most ``hold_limit`` per symbol; more are discarded, counted and reported); every other symbol and
connection keeps flowing. Statuses (:class:`~massive_rt.backfill.BackfillStatus`) arrive in order
with the data.

Threads: the HTTP work runs on ``max_concurrent`` worker threads (``massive-rt-backfill-<name>-<i>``,
named daemons), never on a reader or the dispatcher. Everything else — planning, holding, the seam,
statuses — runs on the thread that runs the adapter's callbacks, under the adapter's gate (one at
a time): finished fetches are handed back through a deque and a wake-up of the dispatcher, which
drains them like a source, so callbacks still run one at a time on the dispatcher.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import attrs

from .._util import RateLimitedLog
from ..enums import Market
from ..errors import ClientClosedError, ConfigurationError, MassiveRTError
from ..marks import symbol_attribute
from ..models import Event, MarketEvent, StatusMessage
from .plan import GapPlan, Target, plan_gap, window_ns
from .seam import Position, Watermark, after, cut, position
from .status import BACKFILL_DONE, BACKFILL_FAILED, BACKFILL_PARTIAL, BACKFILL_STARTED, BackfillStatus
from .workers import FetchWorkers

__all__ = ["Backfill", "BackfillStats", "HistoryProvider"]

logger = logging.getLogger(__name__)

_STOPPED = "stopped"
#: The :class:`BackfillStats` counters also kept per gapped connection (``by_connection``).
_PER_CONNECTION = ("gaps", "symbols", "events", "duplicates", "failed", "partial", "not_backfillable", "held",
                   "held_dropped")  # fmt: skip


class _FetchResult(Protocol):
    @property
    def events(self) -> Sequence[MarketEvent]: ...

    @property
    def complete(self) -> bool: ...


class HistoryProvider(Protocol):
    """What a backfill needs from a history: :class:`~massive_rt.rest.RestHistory`'s window methods.

    Each returns the events of ``symbol`` in the inclusive nanosecond window, oldest first, at most
    ``max_events`` (``complete=False`` when cut), and raises a :class:`~massive_rt.MassiveRTError`
    on failure. ``close()`` makes calls in progress end soon and later calls raise.
    """

    def trades(self, symbol: str, start_ns: int, end_ns: int, *, market: Market | str = ...,
               max_events: int | None = ...) -> _FetchResult: ...  # fmt: skip

    def quotes(self, symbol: str, start_ns: int, end_ns: int, *, market: Market | str = ...,
               max_events: int | None = ...) -> _FetchResult: ...  # fmt: skip

    def aggs(self, symbol: str, start_ns: int, end_ns: int, *, timespan: str = ..., market: Market | str = ...,
             max_events: int | None = ...) -> _FetchResult: ...  # fmt: skip

    def close(self) -> None: ...


@attrs.frozen(kw_only=True)
class BackfillStats:
    """Counters of a :class:`Backfill` (cheap; any thread).

    Attributes:
        gaps: gaps planned (with at least one symbol to refill).
        symbols: symbol fetches planned; ``in_flight`` of them not delivered yet.
        events: backfilled events delivered.
        duplicates: events left out at the seams (already delivered, or arriving live).
        failed: symbol fetches that failed (or were stopped); ``partial``: symbols with something skipped.
        not_backfillable: channels of gapped connections skipped (wildcards, no REST history).
        held: live events held while their symbol's backfill ran; ``held_dropped``: of which
            discarded beyond ``hold_limit``.
        name: the backfill's ``name``.
        last_duration_s: seconds from the last finished gap's ``gap`` status to its ``backfill_done``
            (None before the first).
        by_connection: ``{connection: {counter: value}}`` per gapped connection, for ``gaps``,
            ``symbols``, ``events``, ``duplicates``, ``failed``, ``partial``, ``not_backfillable``,
            ``held`` and ``held_dropped``.
    """

    gaps: int
    symbols: int
    in_flight: int
    events: int
    duplicates: int
    failed: int
    partial: int
    not_backfillable: int
    held: int
    held_dropped: int
    name: str = "backfill"
    last_duration_s: float | None = None
    by_connection: dict[str, dict[str, int]] = attrs.field(factory=dict)


@attrs.define(eq=False)
class _Gap:
    connection: str
    started: float
    remaining: int
    channels: tuple[str, ...]
    events: int = 0
    duplicates: int = 0
    failed: int = 0
    partial: int = 0
    held: int = 0
    dropped: int = 0


@attrs.define(eq=False)
class _Job:
    target: Target
    gap: _Gap
    budget: int
    mark: Position
    held: list[MarketEvent] = attrs.Factory(list)
    held_dropped: int = 0
    first_live: Position | None = None  # written by the callback thread, read once by the worker
    # Written by the worker before `finished`:
    events: Sequence[MarketEvent] = ()
    complete: bool = True
    error: str | None = None
    window: tuple[int, int] = (0, 0)
    clipped: bool = False
    finished: bool = False
    emitted: bool = False


class _Cancel:
    """Marker in the results deque: stop() was called."""


_CANCEL = _Cancel()


def _positive_int(field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{field}={value!r} must be an integer >= 1", field=field)
    return value


class Backfill:
    """Refills gaps over REST for a :class:`~massive_rt.RealTimeDataAdapter` (see the module docstring).

    Example::

        backfill = mrt.Backfill(rest_url=None)                 # MASSIVE_API_KEY, MASSIVE_REST_URL
        adapter = mrt.RealTimeDataAdapter(client, backfill=backfill)
        adapter.on(mrt.EquityTrade, lambda t: print(t.symbol, t.sequence_number, t.origin))

    Args:
        history: where windows are fetched (a :class:`~massive_rt.rest.RestHistory` or anything with
            its ``trades``/``quotes``/``aggs``/``close``); None builds a ``RestHistory`` from
            ``api_key`` and ``rest_url`` (the ``rest`` extra). The backfill closes it on stop.
        api_key: for the ``RestHistory`` built here (None: ``MASSIVE_API_KEY``).
        rest_url: for the ``RestHistory`` built here (None: ``MASSIVE_REST_URL``, else Massive's).
        max_window: seconds of exchange time refilled per symbol at most; a longer gap is refilled
            for its most recent ``max_window`` seconds (``backfill_partial``, ``"max_window"``). With
            no live event of the symbol yet, the window ends ``max_window`` after its start.
        max_events_per_gap: events fetched per gap at most, shared evenly by its symbols
            (``backfill_partial``, ``"max_events"``, for a symbol cut short).
        max_concurrent: fetches in flight at once (the worker threads).
        hold_limit: live events held per symbol while its backfill runs; more are discarded,
            counted, and reported (``backfill_partial``, ``"hold_limit"``).
        name: in the worker threads' names.

    Raises:
        ConfigurationError: a bad bound, or no key for the ``RestHistory`` built here.
        ModuleNotFoundError: ``history`` is None and the ``rest`` extra is not installed.
    """

    def __init__(
        self,
        history: HistoryProvider | None = None,
        *,
        api_key: str | None = None,
        rest_url: str | None = None,
        max_window: float = 600.0,
        max_events_per_gap: int = 100_000,
        max_concurrent: int = 4,
        hold_limit: int = 10_000,
        name: str = "backfill",
    ) -> None:
        if isinstance(max_window, bool) or not isinstance(max_window, (int, float)) or not 0 < max_window < 1e9:
            raise ConfigurationError(f"max_window={max_window!r} must be a number of seconds > 0", field="max_window")
        self.max_window = float(max_window)
        self.max_events_per_gap = _positive_int("max_events_per_gap", max_events_per_gap)
        self.max_concurrent = _positive_int("max_concurrent", max_concurrent)
        self.hold_limit = _positive_int("hold_limit", hold_limit)
        if not isinstance(name, str) or not name or any(c.isspace() for c in name):
            raise ConfigurationError(f"name={name!r} must be a non-empty string without whitespace", field="name")
        if history is None:
            from ..rest import RestHistory

            history = RestHistory(api_key, rest_url=rest_url, max_connections=self.max_concurrent)
        elif not all(callable(getattr(history, m, None)) for m in ("trades", "quotes", "aggs", "close")):
            raise ConfigurationError(f"history={history!r} has no trades/quotes/aggs/close (pass a RestHistory)",
                                     field="history")  # fmt: skip
        self.history: HistoryProvider = history
        self.name = name
        self._window_ms = int(self.max_window * 1000)
        self._source: Any = None
        self._wake: Callable[[], None] = lambda: None
        self._workers: FetchWorkers[_Job] = FetchWorkers(name, self.max_concurrent, self._fetch, self._finished)
        self._results: collections.deque[_Job | _Cancel] = collections.deque()
        self._stopping = threading.Event()
        self._flushed = False
        self._warn = RateLimitedLog(logger, logging.WARNING)
        # Owned by the thread running the adapter's callbacks (under the adapter's gate):
        self._chains: dict[tuple[str, Any], collections.deque[_Job]] = {}
        self._watermarks: dict[tuple[str, Any], Watermark] = {}
        self._active = False
        self._symbol_attrs: dict[type, str | None] = {}
        self._counts: collections.Counter[str] = collections.Counter()
        self._by_connection: dict[str, collections.Counter[str]] = {}
        self._last_duration: float | None = None

    def __repr__(self) -> str:
        return f"Backfill(history={self.history!r}, max_concurrent={self.max_concurrent})"

    # ------------------------------------------------------------------ lifecycle (the adapter calls these)

    def bind(self, source: Any, wake: Callable[[], None]) -> None:
        """Attach to an adapter's ``source``; ``wake()`` wakes its dispatcher. Once per backfill.

        Raises:
            ConfigurationError: already bound to an adapter.
        """
        if self._source is not None:
            raise ConfigurationError("this Backfill already serves an adapter; create one per adapter",
                                     field="backfill")  # fmt: skip
        self._source = source
        self._wake = wake

    def start(self) -> None:
        """Start the worker threads (idempotent)."""
        self._workers.start()

    def cancel(self) -> None:
        """Stop: no new backfill; fetches in progress end at their next row (the history is closed)
        and every symbol not delivered yet gets ``backfill_failed`` (``"stopped"``) followed by its held
        live events. Non-blocking, idempotent, any thread."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._workers.close()
        try:
            self.history.close()
        except Exception:  # a third-party history: stopping must go on
            logger.warning("backfill %s: closing the history raised", self.name, exc_info=True)
        self._results.append(_CANCEL)
        self._wake()

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for the worker threads; False if one is still in a fetch (it ends
        when that request returns, within the history's read timeout)."""
        return self._workers.join(timeout)

    def stop(self, timeout: float = 5.0) -> bool:
        """:meth:`cancel`, then :meth:`join`."""
        self.cancel()
        return self.join(timeout)

    # ------------------------------------------------------------------ the adapter's dispatch path

    def admit(self, events: list[Event]) -> list[Event]:
        """The events to deliver now, of a batch about to be dispatched (on the callback thread,
        under the adapter's gate): a ``gap`` status plans a backfill (its statuses follow it), live
        events of a symbol being refilled are held, live duplicates of backfilled ones dropped."""
        if not self._active and StatusMessage not in map(type, events):
            return events
        out: list[Event] = []
        chains, watermarks, attrs_of = self._chains, self._watermarks, self._symbol_attrs
        for event in events:
            cls = event.__class__
            if cls is StatusMessage:
                out.append(event)
                if event.status == "gap":  # type: ignore[attr-defined]
                    out.extend(self._on_gap(event))  # type: ignore[arg-type]
                continue
            attr = attrs_of.get(cls, "")
            if attr == "":
                attr = attrs_of[cls] = symbol_attribute(cls) if issubclass(cls, MarketEvent) and cls.WIRE else None
            if attr is None:
                out.append(event)
                continue
            key = (event.event_type, getattr(event, attr))  # type: ignore[attr-defined]
            chain = chains.get(key)
            if chain:
                self._hold(chain[-1], event)  # type: ignore[arg-type]
                continue
            watermark = watermarks.get(key)
            if watermark is not None:
                if watermark.covers(event):  # type: ignore[arg-type]
                    self._count("duplicates", event.connection)
                    continue
                del watermarks[key]
            out.append(event)
        self._active = bool(chains or watermarks)
        return out

    @property
    def pending(self) -> bool:
        """True when finished fetches wait to be delivered (lock-free hint)."""
        return bool(self._results)

    @property
    def exhausted(self) -> bool:
        """True once stopped and everything held or fetched was handed out."""
        return self._flushed and not self._results

    def drain(self) -> list[Event]:
        """What finished fetches release, in order per symbol (on the callback thread, under the gate)."""
        out: list[Event] = []
        results = self._results
        while results:
            job = results.popleft()
            if isinstance(job, _Cancel):
                self._flush(out)
                continue
            self._release(job.target.ev, job.target.symbol, out)
        self._active = bool(self._chains or self._watermarks)
        return out

    # ------------------------------------------------------------------ stats

    def stats(self) -> BackfillStats:
        """Counters (cheap; any thread)."""
        counts = collections.Counter(dict(self._counts))  # dict(): one C copy, no write interleaves
        by_connection: dict[str, dict[str, int]] = {}
        for connection, per in list(self._by_connection.items()):
            copied = dict(per)
            by_connection[connection] = {key: copied.get(key, 0) for key in _PER_CONNECTION}
        return BackfillStats(
            name=self.name, gaps=counts["gaps"], symbols=counts["symbols"],
            in_flight=counts["symbols"] - counts["emitted"], events=counts["events"],
            duplicates=counts["duplicates"], failed=counts["failed"], partial=counts["partial"],
            not_backfillable=counts["not_backfillable"], held=counts["held"], held_dropped=counts["held_dropped"],
            last_duration_s=self._last_duration, by_connection=by_connection,
        )  # fmt: skip

    def _count(self, name: str, connection: str, n: int = 1) -> None:
        """On the callback thread: ``name`` += ``n``, in total and for ``connection``."""
        if not n:
            return
        self._counts[name] += n
        per = self._by_connection.get(connection)
        if per is None:
            per = self._by_connection.setdefault(connection, collections.Counter())
        per[name] += n

    # ------------------------------------------------------------------ planning (callback thread)

    def _on_gap(self, gap: StatusMessage) -> list[Event]:
        if self._stopping.is_set() or self._source is None:
            return []
        client = self._client(gap.connection)
        market = getattr(client, "market", None)
        if client is None or not isinstance(market, Market):
            return []
        try:
            channels = frozenset(client.subscriptions)
        except ClientClosedError:
            return []
        plan = plan_gap(gap, channels, market)
        out: list[Event] = []
        if plan.skipped:
            out.append(self._skipped_status(gap, plan))
        if not plan.targets:
            return out
        record = _Gap(connection=gap.connection, started=time.monotonic(), remaining=len(plan.targets),
                      channels=tuple(t.channel for t in plan.targets))  # fmt: skip
        budget = max(1, self.max_events_per_gap // len(plan.targets))
        jobs = []
        for target in plan.targets:
            key = (target.ev, target.symbol)
            self._watermarks.pop(key, None)
            mark = Position(target.start_ms, target.sequence) if target.marked else Position(target.start_ms - 1)
            job = _Job(target=target, gap=record, budget=budget, mark=mark)
            self._chains.setdefault(key, collections.deque()).append(job)
            jobs.append(job)
        self._count("gaps", gap.connection)
        self._count("symbols", gap.connection, len(jobs))
        self._active = True
        logger.info("backfill %s: gap on %s: refilling %d symbol(s) over REST", self.name, gap.connection, len(jobs))
        out.append(self._status(record, BACKFILL_STARTED, f"backfilling {len(jobs)} symbol(s) over REST",
                                channels=record.channels))  # fmt: skip
        for job in jobs:
            self._workers.submit(job)
        return out

    def _client(self, name: str) -> Any:
        try:
            clients = self._source.clients()
        except ClientClosedError:
            return None
        return next((c for c in clients if getattr(c, "name", None) == name), None)

    def _skipped_status(self, gap: StatusMessage, plan: GapPlan) -> BackfillStatus:
        channels = tuple(channel for channel, _ in plan.skipped)
        reasons = sorted({reason for _, reason in plan.skipped})
        self._count("not_backfillable", gap.connection, len(channels))
        why = "wildcard channels are not backfillable (REST needs a ticker)" if reasons == ["wildcard"] else (
            "not backfillable: wildcards need a ticker, and REST has no history for the others")  # fmt: skip
        self._warn("backfill %s: gap on %s: %s: %s", self.name, gap.connection, why, ", ".join(channels))
        return BackfillStatus(
            status=BACKFILL_PARTIAL, reason=reasons[0] if len(reasons) == 1 else "not_backfillable",
            channels=channels, message=f"{', '.join(channels)}: {why}", connection=gap.connection,
            received_at_ns=time.time_ns(),
        )  # fmt: skip

    def _hold(self, job: _Job, event: MarketEvent) -> None:
        if job.first_live is None:
            job.first_live = position(event)
        if len(job.held) < self.hold_limit:
            job.held.append(event)
            self._count("held", job.gap.connection)
            return
        job.held_dropped += 1
        self._count("held_dropped", job.gap.connection)
        if job.held_dropped == 1:
            self._warn("backfill %s: %s: more than hold_limit=%d live events while its backfill runs; "
                       "discarding (counted, reported)", self.name, job.target.channel, self.hold_limit)  # fmt: skip

    # ------------------------------------------------------------------ fetching (worker threads)

    def _fetch(self, job: _Job) -> None:
        if self._stopping.is_set():
            job.error = _STOPPED
            return
        target = job.target
        first = job.first_live
        end_ms = first.timestamp if first is not None and isinstance(first.timestamp, int) else None
        if end_ms is None:
            end_ms = target.start_ms + self._window_ms
        # Without a sequence number the seam is strict in time: the mark's millisecond is not refetched.
        start_ms = target.start_ms + (1 if target.marked and target.sequence is None else 0)
        if end_ms - start_ms > self._window_ms:
            start_ms, job.clipped = end_ms - self._window_ms, True
        job.window = (start_ms, end_ms)
        start_ns, end_ns = window_ns(start_ms, end_ms)
        history = self.history
        try:
            if target.method == "trades":
                result = history.trades(target.symbol, start_ns, end_ns, market=target.market, max_events=job.budget)
            elif target.method == "quotes":
                result = history.quotes(target.symbol, start_ns, end_ns, market=target.market, max_events=job.budget)
            else:
                result = history.aggs(target.symbol, start_ns, end_ns, timespan=target.timespan or "minute",
                                      market=target.market, max_events=job.budget)  # fmt: skip
        except ClientClosedError:
            job.error = _STOPPED
            return
        except MassiveRTError as exc:
            job.error = exc.message
            return
        except Exception as exc:
            logger.exception("backfill %s: %s: the history raised %s", self.name, target.channel,
                             type(exc).__name__)  # fmt: skip
            job.error = f"unexpected {type(exc).__name__} from the history"
            return
        now, connection = time.time_ns(), job.gap.connection
        for event in result.events:  # fresh events nobody else holds yet (as models.with_origin)
            object.__setattr__(event, "received_at_ns", now)
            object.__setattr__(event, "connection", connection)
        job.events, job.complete = result.events, result.complete

    def _finished(self, job: _Job) -> None:
        job.finished = True
        self._results.append(job)
        self._wake()

    # ------------------------------------------------------------------ delivering (callback thread)

    def _release(self, ev: str, symbol: Any, out: list[Event]) -> None:
        """Hand out the finished jobs at the head of a symbol's chain (a later gap's waits for the earlier)."""
        key = (ev, symbol)
        chain = self._chains.get(key)
        while chain and chain[0].finished:
            job = chain.popleft()
            self._emit(job, out, last=not chain)
        if chain is not None and not chain:
            del self._chains[key]

    def _flush(self, out: list[Event]) -> None:
        for key in list(self._chains):
            chain = self._chains.pop(key)
            while chain:
                job = chain.popleft()
                if not job.finished:
                    job.error = _STOPPED
                self._emit(job, out, last=False)
        self._flushed = True

    def _emit(self, job: _Job, out: list[Event], *, last: bool) -> None:
        if job.emitted:
            return
        job.emitted = True
        gap, target = job.gap, job.target
        self._count("emitted", gap.connection)
        partial = False
        kept: list[MarketEvent] = []
        if job.error is not None:
            gap.failed += 1
            self._count("failed", gap.connection)
            if job.error != _STOPPED:
                self._warn("backfill %s: %s failed: %s", self.name, target.channel, job.error)
            out.append(self._status(gap, BACKFILL_FAILED, f"{target.channel}: backfill failed: {job.error}",
                                    channels=(target.channel,), reason=job.error))  # fmt: skip
        else:
            first = position(job.held[0]) if job.held else None
            kept, duplicates = cut(job.events, job.mark, first)
            out.extend(kept)
            gap.events += len(kept)
            gap.duplicates += duplicates
            self._count("events", gap.connection, len(kept))
            self._count("duplicates", gap.connection, duplicates)
            start_ms, end_ms = job.window
            if job.clipped:
                partial = True
                out.append(self._status(gap, BACKFILL_PARTIAL, f"{target.channel}: window longer than max_window="
                                        f"{self.max_window:g}s; older part not refilled", channels=(target.channel,),
                                        reason="max_window", skipped_from_ms=target.start_ms,
                                        skipped_to_ms=start_ms))  # fmt: skip
            if not job.complete:
                partial = True
                last_ms = position(job.events[-1]).timestamp if job.events else start_ms
                message = f"{target.channel}: max_events budget ({job.budget}) hit; newer part not refilled"
                out.append(self._status(gap, BACKFILL_PARTIAL, message, channels=(target.channel,), reason="max_events",
                                        skipped_from_ms=last_ms, skipped_to_ms=end_ms))  # fmt: skip
        live = [e for e in job.held if after(position(e), job.mark)]
        repeated = len(job.held) - len(live)
        gap.duplicates += repeated
        self._count("duplicates", gap.connection, repeated)
        gap.held += len(job.held)
        if job.held_dropped:
            partial = True
            gap.dropped += job.held_dropped
            out.append(self._status(gap, BACKFILL_PARTIAL, f"{target.channel}: {job.held_dropped} live event(s) "
                                    f"discarded beyond hold_limit={self.hold_limit} while its backfill ran",
                                    channels=(target.channel,), reason="hold_limit",
                                    dropped=job.held_dropped))  # fmt: skip
        if partial:
            gap.partial += 1
            self._count("partial", gap.connection)
        if last and not job.held and kept and not self._stopping.is_set():
            self._watermarks[(target.ev, target.symbol)] = Watermark.of(kept)
        out.extend(live)
        gap.remaining -= 1
        if gap.remaining == 0:
            duration = time.monotonic() - gap.started
            self._last_duration = duration
            logger.info("backfill %s: gap on %s done: %d event(s), %d failed, %d partial, %.3fs", self.name,
                        gap.connection, gap.events, gap.failed, gap.partial, duration)  # fmt: skip
            out.append(self._status(
                gap, BACKFILL_DONE, f"backfilled {gap.events} event(s) for {len(gap.channels)} symbol(s) in "
                f"{duration:.3f}s ({gap.failed} failed, {gap.partial} partial)", channels=gap.channels,
                events=gap.events, duplicates=gap.duplicates, failed=gap.failed, partial=gap.partial, held=gap.held,
                dropped=gap.dropped, duration_s=duration,
            ))  # fmt: skip

    @staticmethod
    def _status(gap: _Gap, status: str, message: str, **fields: Any) -> BackfillStatus:
        return BackfillStatus(status=status, message=message, connection=gap.connection,
                              received_at_ns=time.time_ns(), **fields)  # fmt: skip
