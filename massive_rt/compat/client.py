"""``WebSocketClient``: the official client's WebSocket API on top of :class:`MassiveWebSocketClient`.

Each :meth:`WebSocketClient.run` (or ``connect``) starts one
:class:`~massive_rt.connection.MassiveWebSocketClient` (its own daemon reader thread, bounded
queue, reconnects with backoff, ``raw=True`` so every frame keeps its boundaries) and stops it
before returning. ``run`` takes the frames off that client's queue on the calling thread,
decodes each with ``json`` (or ``custom_json``) and calls the handler once per frame with that
frame's models, exactly as the official client does; statuses are consumed, never passed on.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import queue
import threading
from collections.abc import Awaitable, Callable, Generator, Iterable, Iterator, Mapping
from enum import Enum
from typing import Any, TypeVar

from ..config import ClientConfig, ReconnectPolicy, mask_secret
from ..connection import MassiveWebSocketClient
from ..errors import AuthenticationError, ClientClosedError, ConfigurationError, MassiveRTError
from ..models import RawFrame, StatusMessage
from ..protocol import parse_channel
from .common import Feed, Market
from .models import as_market, parse

__all__ = ["ENV_KEYS", "AuthError", "CloseResult", "WebSocketClient", "resolve_api_key"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

#: Environment variables read for the key when ``api_key`` is not given, first set wins.
ENV_KEYS = ("MASSIVE_API_KEY", "POLYGON_API_KEY")

#: ``MassiveWebSocketClient`` options a ``WebSocketClient(**kwargs)`` passes through.
_PASSED_THROUGH = frozenset({
    "reconnect", "queue_size", "queue_bytes", "overflow", "ping_interval", "ping_timeout", "stale_after",
    "connect_timeout", "name", "max_message_size", "on_limit", "validate_channels", "ssl_context", "websocket_options",
})  # fmt: skip

#: Seconds between checks of a close request while waiting for a frame (close() also wakes the wait).
_POLL = 1.0

#: A batch for the handler: the models of one frame, or the frame itself with ``raw=True``.
Batch = list[Any] | str | bytes
Handler = Callable[[Any], Any]


class AuthError(AuthenticationError):
    """No API key, or the server refused it (the official ``massive.exceptions.AuthError``).

    ``str(error)`` is the server's message (``"authentication failed"``) for a refused key.
    Also a :class:`massive_rt.AuthenticationError`, so handlers of massive_rt errors catch it.
    """


class CloseResult:
    """What :meth:`WebSocketClient.close` returns: nothing to wait for, but awaitable, so code
    written for the official ``await client.close()`` works unchanged (and so does a plain call)."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield  # pragma: no cover - makes this a generator that finishes at once

    def __repr__(self) -> str:
        return "CloseResult()"


_CLOSED = CloseResult()


class _Worker:
    """A named daemon thread that runs blocking calls for a coroutine, one at a time.

    Not an executor: its thread never delays interpreter exit, even when an event loop is dropped
    with ``connect()`` still pending.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, name: str) -> None:
        self._loop = loop
        self._calls: queue.SimpleQueue[tuple[asyncio.Future[Any], Callable[..., Any], tuple[Any, ...]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def call(self, fn: Callable[..., _T], *args: Any) -> asyncio.Future[_T]:
        """``fn(*args)`` on the worker thread, as a future of the running loop."""
        future: asyncio.Future[_T] = self._loop.create_future()
        self._calls.put((future, fn, args))
        return future

    def close(self) -> None:
        """Let the thread end after the call in progress (if any); never blocks."""
        self._calls.put(None)

    def _serve(self) -> None:
        while (item := self._calls.get()) is not None:
            future, fn, args = item
            try:
                outcome: tuple[Any, BaseException | None] = (fn(*args), None)
            except BaseException as exc:  # handed to the awaiting coroutine
                outcome = (None, exc)
            try:
                self._loop.call_soon_threadsafe(_settle, future, *outcome)
            except RuntimeError:  # the loop is closed: nobody awaits any more
                return


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class _Session:
    """One run()/connect(): its connection and whether close() was asked for."""

    __slots__ = ("client", "closing")

    def __init__(self, client: MassiveWebSocketClient) -> None:
        self.client = client
        self.closing = threading.Event()


def resolve_api_key(api_key: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """``api_key`` if given (and not empty), else the first non-empty of ``MASSIVE_API_KEY`` and
    ``POLYGON_API_KEY`` in ``environ`` (default ``os.environ``), else ``None``."""
    if api_key:
        return api_key
    env = os.environ if environ is None else environ
    for name in ENV_KEYS:
        value = env.get(name)
        if value:
            return value
    return None


class WebSocketClient:
    """Drop-in for the official ``massive.WebSocketClient`` (WebSocket API), built on massive_rt.

    Example (the official example with only the import line changed)::

        from massive_rt.compat import WebSocketClient

        client = WebSocketClient(subscriptions=["T.*"])  # key from MASSIVE_API_KEY

        def handle_msg(msgs):
            for m in msgs:
                print(m)

        client.run(handle_msg)

    Args:
        api_key: the key; ``None`` reads ``MASSIVE_API_KEY``, then ``POLYGON_API_KEY``, now.
        feed: a :class:`Feed` (or any enum whose value is a host) or a ``host[:port]`` string.
        market: a :class:`Market` or its value (``"stocks"``, ``"crypto"``, ``"futures/cme"`` ...).
        raw: pass each frame to the handler as received (``str``) instead of a list of models.
        verbose: set this module's logger to DEBUG (configure ``logging`` to see the output).
        subscriptions: channels to subscribe when the connection opens (``"T.AAPL"``, ``"AM.*"``).
        max_reconnects: consecutive failed (re)connect attempts before ``run`` gives up and raises
            (:class:`~massive_rt.ConnectionClosedError`); ``None`` retries forever.
        secure: ``wss://`` (True) or ``ws://``.
        custom_json: an object with ``loads`` (``orjson``, ``ujson`` ...) to decode frames with.
        ca_certs: CA bundle for ``wss`` (else ``SSL_CERT_FILE``, ``REQUESTS_CA_BUNDLE``, the system's).
        **kwargs: :class:`~massive_rt.connection.MassiveWebSocketClient` options passed through
            (``reconnect`` (wins over ``max_reconnects``), ``queue_size``, ``overflow``,
            ``ping_interval``, ``ping_timeout``, ``stale_after``, ``connect_timeout``, ``name``,
            ``max_message_size``, ``on_limit``, ``validate_channels`` (default ``"warn"``),
            ``ssl_context``, ``websocket_options``); any other is ignored with a warning.

    Raises:
        AuthError: no key was given or found in the environment.
        ValueError: ``market`` is not a market.
        massive_rt.ConfigurationError: an invalid option (a ``feed`` that makes no URL, ...).
    """

    def __init__(
        self,
        api_key: str | None = None,
        feed: Feed | Enum | str = Feed.RealTime,
        market: Market | Enum | str = Market.Stocks,
        raw: bool = False,
        verbose: bool = False,
        subscriptions: Iterable[str] | None = None,
        max_reconnects: int | None = 5,
        secure: bool = True,
        custom_json: Any | None = None,
        ca_certs: str | None = None,
        **kwargs: Any,
    ) -> None:
        key = resolve_api_key(api_key)
        if key is None:
            raise AuthError(f"Must specify env var {ENV_KEYS[0]} (or {ENV_KEYS[1]}) or pass api_key in constructor")
        self.api_key = key
        self.feed = feed
        self.market = as_market(market)
        self.market_value: str = self.market.value
        self.raw = bool(raw)
        if verbose:
            logger.setLevel(logging.DEBUG)
        host = feed.value if isinstance(feed, Enum) else feed
        self.url = f"ws{'s' if secure else ''}://{host}/{self.market_value}"
        self.max_reconnects = max_reconnects
        self.json: Any = custom_json if custom_json else json
        options = {name: value for name, value in kwargs.items() if name in _PASSED_THROUGH}
        ignored = sorted(name for name in kwargs if name not in _PASSED_THROUGH)
        if ignored:
            logger.warning("WebSocketClient ignores the options %s", ", ".join(ignored))
        reconnect = options.pop("reconnect", None) or ReconnectPolicy(max_attempts=max_reconnects)
        self._validate: str = options.pop("validate_channels", "warn")
        self._config = ClientConfig(api_key=key, market=self.market_value, url=self.url, reconnect=reconnect, raw=True,
                                    validate_channels=self._validate, ca_certs=ca_certs, **options)  # fmt: skip
        self._lock = threading.Lock()
        self._desired: dict[str, None] = {}  # guarded by _lock; applied by every run
        self._session: _Session | None = None  # guarded by _lock
        if subscriptions is not None:
            if isinstance(subscriptions, str):
                subscriptions = [subscriptions]
            self.subscribe(*subscriptions)

    # ------------------------------------------------------------------ subscriptions

    @property
    def running(self) -> bool:
        """True from the moment ``run``/``connect`` has opened its connection until it returns."""
        return self._session is not None

    @property
    def subscriptions(self) -> frozenset[str]:
        """The channels wanted now (subscribed on the running connection, or at the next run)."""
        with self._lock:
            return frozenset(self._desired)

    def subscribe(self, *subscriptions: str) -> None:
        """Subscribe to channels (``"T.AAPL"``, ``"AM.*"``, or several in one comma-separated string).

        Takes effect at once on a running connection (from any thread, the handler included),
        else when ``run`` connects. ``<prefix>.*`` replaces the channels of that prefix naming
        one ticker. A malformed channel is skipped with a warning.
        """
        added: list[str] = []
        replaced: list[str] = []
        with self._lock:
            for channel in self._channels(subscriptions):
                logger.debug("sub desired: %s", channel)
                self._desired[channel] = None
                added.append(channel)
                prefix, _, ticker = channel.partition(".")
                if ticker == "*":
                    covered = [c for c in self._desired if c != channel and c.partition(".")[0] == prefix]
                    for c in covered:
                        del self._desired[c]
                    replaced.extend(covered)
            self._apply(added, replaced)

    def unsubscribe(self, *subscriptions: str) -> None:
        """Unsubscribe from channels; ``<prefix>.*`` also drops the channels of that prefix naming
        one ticker. Takes effect at once on a running connection; any thread."""
        removed: list[str] = []
        with self._lock:
            for channel in self._channels(subscriptions):
                logger.debug("sub undesired: %s", channel)
                prefix, _, ticker = channel.partition(".")
                wildcard = ticker == "*"
                matches = [c for c in self._desired if c == channel or (wildcard and c.partition(".")[0] == prefix)]
                for c in matches:
                    del self._desired[c]
                removed.extend(matches)
            self._apply([], removed)

    def unsubscribe_all(self) -> None:
        """Unsubscribe from every channel; any thread."""
        with self._lock:
            self._desired.clear()
            session = self._session
            if session is not None:
                try:
                    session.client.unsubscribe_all()
                except ClientClosedError:
                    pass  # the session is ending; the next run starts from the desired set

    def _channels(self, subscriptions: Iterable[object]) -> Iterator[str]:
        for item in subscriptions:
            if not isinstance(item, str):
                logger.warning("invalid subscription: %r", item)
                continue
            for part in item.split(","):
                text = part.strip()
                if not text:
                    continue
                try:
                    yield str(parse_channel(text, self.market_value, self._validate))
                except ConfigurationError as exc:
                    logger.warning("invalid subscription %s: %s", text, exc.message)

    def _apply(self, added: list[str], removed: list[str]) -> None:
        """Forward a change to the running connection (``_lock`` held)."""
        session = self._session
        if session is None:
            return
        try:
            if removed:
                session.client.unsubscribe(*removed)
            if added:
                session.client.subscribe(*[c for c in added if c in self._desired])
        except ClientClosedError:
            pass  # the session is ending; the next run starts from the desired set

    # ------------------------------------------------------------------ running

    def run(self, handle_msg: Handler, close_timeout: float = 1, **kwargs: Any) -> None:
        """Connect and call ``handle_msg`` once per received frame until :meth:`close`. Blocks.

        ``handle_msg`` gets the list of the frame's models (frames holding only statuses are
        not passed on), or with ``raw=True`` the frame as a ``str``. It runs on this thread, one
        call at a time. It may call :meth:`subscribe`, :meth:`unsubscribe` and :meth:`close`. If it
        returns an awaitable (an ``async def`` handler), that is run to completion on a private
        event loop before the next frame.

        Args:
            handle_msg: the callback.
            close_timeout: accepted for compatibility; the close handshake is bounded by massive_rt.
            **kwargs: accepted for compatibility (the official client passes them to
                ``websockets.connect``); ignored with a warning.

        Raises:
            AuthError: the server refused the key.
            massive_rt.ConnectionClosedError: ``max_reconnects`` consecutive attempts failed.
            massive_rt.MassiveRTError: another terminal failure (connection limit, HTTP refusal ...).
            RuntimeError: this client is already running.
            Exception: whatever ``handle_msg`` raised (the connection is closed first).
        """
        _ignore(kwargs, "run")
        session = self._open()
        loop: asyncio.AbstractEventLoop | None = None
        try:
            while (batch := self._next_batch(session)) is not None:
                result = handle_msg(batch)
                if inspect.isawaitable(result):
                    if loop is None:
                        loop = asyncio.new_event_loop()
                    loop.run_until_complete(result)
            failure = self._failure(session)
        finally:
            if loop is not None:
                loop.close()
            self._finish(session, join=True)
        if failure is not None:
            raise failure

    async def connect(
        self, processor: Callable[[Any], Awaitable[Any] | Any], close_timeout: float = 1, **kwargs: Any
    ) -> None:
        """The asyncio form of :meth:`run`: ``await processor(batch)`` once per frame, on the running
        event loop, until :meth:`close` (``await client.close()`` from another task or the
        processor). Frames are taken off the connection in a worker thread; a processor that
        returns no awaitable is accepted too. Sync code calls :meth:`run` instead.

        Raises:
            The same as :meth:`run`.
        """
        _ignore(kwargs, "connect")
        session = self._open()
        worker = _Worker(asyncio.get_running_loop(), f"massive-rt-compat-{session.client.name}")
        try:
            while (batch := await worker.call(self._next_batch, session)) is not None:
                result = processor(batch)
                if inspect.isawaitable(result):
                    await result
            failure = self._failure(session)
            await worker.call(self._finish, session, True)
        finally:
            self._finish(session, join=False)
            worker.close()
        if failure is not None:
            raise failure

    def close(self) -> CloseResult:
        """End the running :meth:`run`/``connect``: no handler call starts after this returns, and
        the connection closes. Non-blocking; from the handler, another thread or a signal handler.

        Returns an awaitable that is already done, so ``await client.close()`` also works.
        """
        session = self._session  # one atomic read: no lock, so a signal handler cannot deadlock here
        if session is None:
            logger.warning("no websocket open to close")
            return _CLOSED
        logger.debug("closing")
        session.closing.set()
        session.client.request_stop()
        return _CLOSED

    def _open(self) -> _Session:
        with self._lock:
            if self._session is not None:
                raise RuntimeError("this WebSocketClient is already running (run() or connect())")
            client = MassiveWebSocketClient(config=self._config.evolve(subscriptions=tuple(self._desired)))
            session = self._session = _Session(client)
        logger.debug("connect: %s", self.url)
        try:
            client.start()
        except BaseException:
            self._finish(session, join=False)
            raise
        return session

    def _finish(self, session: _Session, join: bool) -> None:
        session.closing.set()
        if join:
            session.client.stop()
        else:
            session.client.request_stop()
        with self._lock:
            if self._session is session:
                self._session = None

    def _next_batch(self, session: _Session) -> Batch | None:
        """The next batch for the handler; ``None`` once the session is closing or has ended."""
        client = session.client
        while not session.closing.is_set():
            try:
                event = client.get(timeout=_POLL)
            except queue.Empty:
                continue
            except ClientClosedError:
                return None
            if isinstance(event, RawFrame):
                batch = self._batch(event.data)
                if batch is not None and not session.closing.is_set():
                    return batch
            elif isinstance(event, StatusMessage):
                logger.debug("status %s: %s", event.status, event.message)
        return None

    def _batch(self, data: bytes | str) -> Batch | None:
        """What the handler gets for one frame; ``None`` when nothing (a frame of statuses only)."""
        if isinstance(data, bytes):
            try:
                text: str | bytes = data.decode("utf-8")
            except UnicodeDecodeError:
                text = data
        else:
            text = data
        if self.raw:
            return text
        try:
            decoded = self.json.loads(text)
        except Exception as exc:  # a custom_json may raise anything
            logger.warning("undecodable frame skipped (%d bytes): %s", len(data), exc)
            return None
        if isinstance(decoded, Mapping):
            decoded = [decoded]
        if not isinstance(decoded, list):
            logger.warning("frame skipped: a JSON %s, not an array of objects", type(decoded).__name__)
            return None
        for item in decoded:
            if isinstance(item, Mapping) and item.get("ev") == "status":
                logger.debug("status: %s", item.get("message"))
        models = parse(decoded, logger, self.market)
        return models if models else None

    @staticmethod
    def _failure(session: _Session) -> MassiveRTError | None:
        """Why the session ended, unless close() ended it."""
        if session.closing.is_set():
            return None
        error = session.client.error
        if isinstance(error, AuthenticationError) and not isinstance(error, AuthError):
            failure = AuthError(error.message, status=error.status)
            failure.__cause__ = error
            return failure
        return error

    def __repr__(self) -> str:
        with self._lock:
            running, channels = self._session is not None, len(self._desired)
        return (
            f"WebSocketClient(url={self.url!r}, raw={self.raw}, subscriptions={channels} channels, "
            f"running={running}, api_key={mask_secret(self.api_key)})"
        )


def _ignore(kwargs: dict[str, Any], method: str) -> None:
    if kwargs:
        logger.warning("%s() ignores the options %s", method, ", ".join(sorted(kwargs)))
