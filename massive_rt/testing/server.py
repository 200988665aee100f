"""A real local WebSocket server that speaks Massive's protocol, with fault injection.

:class:`MockMassiveServer` listens on ``127.0.0.1`` (a free port by default) using the
``websockets`` library's threaded server and behaves like Massive's real-time endpoints as far as
they are documented or observed (``docs/protocol.md`` §2-§3, §8): the ``connected`` greeting, ``auth``,
per-channel ``subscribe``/``unsubscribe`` acks, wildcards, dotted tickers, silently ignored unknown
channels, ``not authorized`` for unentitled channels, ``Invalid JSON``, the per-key connection
limit (``max_connections`` then close 1008), and ``auth_timeout``. On top of that it injects
faults: abrupt TCP drops, clean closes with any code, arbitrary status frames, raw and malformed
frames, stalls (no data and no pongs, like a half-open socket), restarts on the same port and a
slow-consumer kill.

Threads: one ``massive-rt-mock-serve-<name>`` accept loop, and per connection a
``massive-rt-mock-conn-<name>-<id>`` handler thread and a ``massive-rt-mock-recv-<name>-<id>``
reader thread (both created by ``websockets``, renamed here), plus short-lived
``massive-rt-mock-close-<name>-<id>`` threads that bound a clean close, a
``massive-rt-mock-shutdown-<name>`` thread while stopping, the ``massive-rt-mock-stream``
threads of :meth:`MockMassiveServer.stream` and the ``massive-rt-mock-replay-<name>`` threads of
:meth:`MockMassiveServer.replay`. All are daemons and :meth:`MockMassiveServer.close`
joins every one of them.

The protocol server itself (connection bookkeeping, auth, acks, routing, frame building, the
fast writer, thread naming and joining) is :class:`massive_rt._server.ProtocolServer`, shared with
:class:`massive_rt.relay.MassiveRelay`; this module adds the fault injection and publishing.

Every public method is thread-safe. One lock guards the server's bookkeeping and is never held
during socket I/O; frames go out under each connection's own ``websockets`` send mutex, so frames
written by the fast path never interleave with frames the library writes (pongs, close frames).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import attrs
from websockets.exceptions import ProtocolError
from websockets.frames import Close

from .._json import dumps
from .._server import ConnectionInfo, ProtocolServer, ServerConn, market_path
from ..config import mask_secret
from ..enums import Market
from ..errors import ClientClosedError, ConfigurationError
from ..framing import OP_BINARY, OP_TEXT, encode_frame, join_frames
from ..models import MarketEvent, to_wire
from ..protocol import event_symbol, routes_to, status_frame
from .channels import ChannelTable, channel_table
from .replay import ReplayHandle, start_replay

__all__ = [
    "ConnectionInfo",
    "EventSource",
    "MockMassiveServer",
    "PreparedFrames",
    "ReceivedMessage",
    "ReplayHandle",
    "StreamHandle",
]

logger = logging.getLogger(__name__)

THREAD_PREFIX = "massive-rt-mock-"


# ------------------------------------------------------------------------------------------------
# Public value objects


@attrs.frozen(kw_only=True)
class ReceivedMessage:
    """One message a client sent, as the server received it.

    Attributes:
        connection: id of the connection (``"c1"``, ``"c2"`` ...).
        market: market path of the connection (``"stocks"`` ...).
        action: ``"auth"``, ``"subscribe"``, ``"unsubscribe"``, any other action string, or ``None``
            when the message was not a control message (invalid JSON, not an object ...).
        params: the channels of a subscribe/unsubscribe (split on commas, spaces stripped); empty
            for ``auth`` and non-control messages.
        key: the API key of an ``auth`` message (masked in ``repr``).
        raw: the message text exactly as received (bytes decoded as UTF-8 with replacement). Not in
            ``repr``: for ``auth`` it contains the key.
        received_at: wall-clock time (``time.time()``) of receipt.
    """

    connection: str
    market: str
    action: str | None
    params: tuple[str, ...] = ()
    key: str | None = attrs.field(default=None, repr=mask_secret)
    raw: str = attrs.field(default="", repr=False)
    received_at: float = 0.0


@attrs.frozen
class PreparedFrames:
    """Text frames encoded once for sending many times (see :meth:`MockMassiveServer.prepare_raw_frames`).

    Attributes:
        count: number of frames.
        chunks: the framed bytes, joined into send buffers at frame boundaries.
    """

    count: int
    chunks: tuple[bytes, ...] = attrs.field(repr=lambda chunks: f"<{sum(map(len, chunks))} bytes>")


class EventSource(Protocol):
    """What :meth:`MockMassiveServer.stream` needs: e.g. ``massive_rt.synthetic.SyntheticMarket``."""

    def next_events(self, n: int) -> Sequence[Mapping[str, Any]]:
        """Return the next ``n`` wire dicts."""
        ...


@attrs.define(eq=False)
class StreamHandle:
    """A running :meth:`MockMassiveServer.stream`; call :meth:`stop` to end it.

    Attributes:
        generated: events taken from the source so far.
        delivered: events delivered to connections so far (sum over connections).
        error: the exception that ended the stream early, if any.
    """

    _thread: threading.Thread = attrs.field(alias="thread")
    _stop: threading.Event = attrs.field(alias="stop_event")
    generated: int = 0
    delivered: int = 0
    error: BaseException | None = None

    @property
    def running(self) -> bool:
        """True while the stream thread is alive."""
        return self._thread.is_alive()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the stream thread to end (after :meth:`stop`, a source error or server close).

        Returns:
            True when it has ended.
        """
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop the stream and join its thread (idempotent, any thread)."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)


# ------------------------------------------------------------------------------------------------
# The server


class MockMassiveServer(ProtocolServer):
    """A local Massive real-time WebSocket server for tests, with fault injection.

    Protocol (docs/protocol.md §2-§3): every server frame is a JSON array. On connect it sends
    ``connected``; ``{"action":"auth","params":KEY}`` is answered ``auth_success`` or
    ``auth_failed`` followed by an abrupt TCP close (no close frame). Each accepted subscribe or
    unsubscribe param is acked ``subscribed to: X`` / ``unsubscribed to: X``: all acks of one
    request in one frame (``ack_mode="batched"``) or one frame each (``"separate"``). Params may
    have spaces after commas; tickers may contain dots; ``<prefix>.*`` is a wildcard. A param whose
    prefix the market does not have, or that is malformed, is silently ignored (no ack). An
    unentitled channel gets ``error``/``not authorized`` (one object per channel), sent before the
    acks of the request's accepted params. A client frame that is not JSON gets
    ``error``/``Invalid JSON``; valid JSON that is not a control message is ignored.

    Where Massive's behaviour is unverified or varies, the mock can play it either way: its own
    channel table (``channels``, written from docs/protocol.md, not taken from the client), per-key
    entitlements, refusals that name their channel or not, acks delayed, jittered, reordered or
    lost, and statuses mixed into data frames (:meth:`publish` sends ``{"ev": "status", ...}``
    objects in place, to every connection of the market).

    Choices where the real server is unverified: subscribe/unsubscribe before ``auth`` is answered
    ``[{"ev":"status","status":"auth_required","message":"not authenticated"}]`` (the status value
    is the SPEC's; the text is ours), nothing is subscribed, and the connection stays open.
    ``auth_timeout`` is followed by a clean close with 1008. With ``max_connections``, the limit
    counts authenticated connections per key across all markets; the connection that exceeds it is
    first answered ``auth_success`` (as observed), then the evicted one (``evict``) gets
    ``max_connections`` and a close with 1008. An unknown URL path is refused with HTTP 404.
    Client pings are answered; the server sends none.

    Args:
        api_keys: keys that authenticate; ``None`` accepts any key.
        host: interface to bind.
        port: port to bind; 0 picks a free one (see :attr:`port`).
        max_connections: limit of authenticated connections per key across all markets.
        evict: ``"newest"`` (the connection over the limit is closed) or ``"oldest"``.
        unentitled: channels (``"NOI.AAPL"``) or prefixes (``"NOI"``, ``"NOI.*"``) refused with
            ``not authorized`` on every market.
        entitlements: what keys may subscribe; everything else is refused with ``not authorized``.
            ``None`` (default): everything. An iterable of entries applies to every key; a mapping
            gives each key its own (``"*"``: keys the mapping does not name; no ``"*"``: nothing).
            An entry is ``"T"`` / ``"T.*"`` (the prefix: any ticker and the wildcard) or
            ``"T.AAPL"`` (that ticker only), optionally for one market: ``"crypto:XT"``.
        channels: market path → the subscribe prefixes the server accepts, replacing the defaults of
            :data:`massive_rt.testing.channels.DEFAULT_CHANNELS` for the markets it names (e.g.
            ``{"crypto": [..., "XS"]}`` plays a Massive with a channel the client does not know).
            Params the table does not accept are ignored silently, like Massive does.
        refusals_name_channel: refusals say ``not authorized: T.AAPL`` instead of the observed
            ``not authorized`` (which names nothing).
        ack_delay: seconds between a subscribe/unsubscribe and its reply (errors and acks); the
            server's state changes at once, so data can arrive before the ack.
        ack_jitter: a random extra delay in ``[0, ack_jitter)`` per reply frame (per request with
            ``ack_mode="batched"``): replies of different requests, and with ``"separate"`` the
            frames of one request, can overtake each other.
        lost_acks: channels (or prefixes, as in ``unentitled``) whose acks are never sent (the
            subscription itself takes effect).
        ack_loss: probability in ``[0, 1]`` that any one ack is never sent.
        seed: seeds the random choices of ``ack_jitter`` and ``ack_loss`` (reproducible runs).
        auth_timeout: seconds a client has to authenticate before ``auth_timeout``; ``None`` = no limit.
        ack_mode: ``"batched"`` or ``"separate"``.
        ssl_context: serve ``wss://`` with this server-side context.
        name: used in thread names and logs.
        close_timeout: how long a clean close waits for the client's close frame before the TCP
            connection is dropped.
        slow_consumer_timeout: when set, a send that cannot complete within this many seconds
            (the client is not reading) drops the connection abruptly, like Massive's slow-consumer
            kill. ``None`` blocks the sender until the client reads (TCP backpressure).
    """

    kind = "mock"

    def __init__(
        self,
        api_keys: Iterable[str] | None = ("test-key",),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_connections: int | None = None,
        evict: str = "newest",
        unentitled: Iterable[str] = (),
        auth_timeout: float | None = None,
        ack_mode: str = "batched",
        ssl_context: ssl.SSLContext | None = None,
        name: str = "mock",
        close_timeout: float = 2.0,
        slow_consumer_timeout: float | None = None,
        entitlements: Iterable[str] | Mapping[str, Iterable[str]] | None = None,
        channels: Mapping[str, Iterable[str]] | ChannelTable | None = None,
        refusals_name_channel: bool = False,
        ack_delay: float = 0.0,
        ack_jitter: float = 0.0,
        lost_acks: Iterable[str] = (),
        ack_loss: float = 0.0,
        seed: int | None = None,
    ) -> None:
        for field, value in (("ack_delay", ack_delay), ("ack_jitter", ack_jitter)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < float("inf"):
                raise ConfigurationError(f"{field}={value!r} must be a finite number >= 0", field=field)
        if not isinstance(ack_loss, (int, float)) or isinstance(ack_loss, bool) or not 0 <= ack_loss <= 1:
            raise ConfigurationError(f"ack_loss={ack_loss!r} must be a number in [0, 1]", field="ack_loss")
        super().__init__(
            api_keys, host=host, port=port, max_connections=max_connections, evict=evict, auth_timeout=auth_timeout,
            ack_mode=ack_mode, ssl_context=ssl_context, name=name, close_timeout=close_timeout,
            slow_consumer_timeout=slow_consumer_timeout,
        )  # fmt: skip
        self._unentitled_prefixes, self._unentitled_channels = _split_entries(unentitled)
        self._lost_prefixes, self._lost_channels = _split_entries(lost_acks)
        self._entitlements = _entitlements(entitlements)
        self.channel_table = channel_table(channels)
        self.refusals_name_channel = refusals_name_channel
        self.ack_delay, self.ack_jitter, self.ack_loss = float(ack_delay), float(ack_jitter), float(ack_loss)
        self._random = random.Random(seed)
        self._delayed = _DelayedReplies(self)
        self.acks_lost = 0
        self._received: list[ReceivedMessage] = []
        self._streams: list[StreamHandle] = []
        self._replays: list[ReplayHandle] = []
        self._publish_listeners: tuple[Callable[[str, list[dict[str, Any]]], None], ...] = ()

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> MockMassiveServer:
        """Bind and start serving in a daemon thread (idempotent). Returns ``self``.

        Raises:
            ClientClosedError: after :meth:`close`.
            OSError: when the port cannot be bound.
        """
        super().start()
        return self

    def close(self) -> None:
        """Stop streams, close every connection (1001, clean, bounded by ``close_timeout``, then
        abrupt), stop listening and join every thread the server started. Idempotent."""
        super().close()

    def _closing(self) -> None:
        self._delayed.stop()
        with self._lock:
            streams, self._streams = self._streams, []
            replays, self._replays = self._replays, []
        for replay in replays:  # signal and wake only (no wait): close joins their threads
            replay.stop(timeout=0)
        for handle in streams:  # signal only: a stream blocked on a client that does not read is
            handle._stop.set()  # freed when its connection is dropped below, then joined with the rest

    def restart(self, code: int | None = None) -> None:
        """Stop and start again on the same port; clients have to reconnect.

        Args:
            code: ``None`` (default) drops every connection abruptly, like a crashed server; a
                close code (e.g. 1012, service restart) closes them cleanly with it first.
        """
        self._restart_server(code)
        logger.info("mock server %s restarted on port %d", self.name, self.port)

    def __enter__(self) -> MockMassiveServer:
        return self.start()

    # -- protocol hooks (handler threads) ----------------------------------------------------------

    def _record(self, conn: ServerConn, action: str | None, params: tuple[str, ...], key: str | None, raw: str) -> None:
        message = ReceivedMessage(
            connection=conn.id, market=conn.market.value, action=action, params=params, key=key, raw=raw,
            received_at=time.time(),
        )  # fmt: skip
        with self._lock:
            self._received.append(message)
            self._cond.notify_all()

    def _accept_channel(self, conn: ServerConn, param: str) -> str | None:
        return self.channel_table.accept(param, conn.market.value)

    def _entitled(self, conn: ServerConn, channel: str) -> bool:
        if self._is_unentitled(channel):
            return False
        if self._entitlements is None:
            return True
        entries = self._entitlements.get(conn.key or "")
        if entries is None:
            entries = self._entitlements.get("*", frozenset())
        market = conn.market.value
        prefix, _, ticker = channel.partition(".")
        return bool(
            entries & {(market, prefix, "*"), ("", prefix, "*"), (market, prefix, ticker), ("", prefix, ticker)}
        )

    def _is_unentitled(self, channel: str) -> bool:
        return channel in self._unentitled_channels or channel.partition(".")[0] in self._unentitled_prefixes

    def _refusal(self, channel: str) -> tuple[str, str]:
        status, message = super()._refusal(channel)
        return (status, f"{message}: {channel}") if self.refusals_name_channel else (status, message)

    def _send_subscription_replies(
        self, conn: ServerConn, action: str, refused: list[str], accepted: list[str]
    ) -> None:
        if self._lost_prefixes or self._lost_channels or self.ack_loss:
            kept = [c for c in accepted if not self._ack_lost(c)]
            if len(kept) != len(accepted):
                with self._lock:
                    self.acks_lost += len(accepted) - len(kept)
                logger.debug("mock %s: %d ack(s) to %s lost on purpose", self.name, len(accepted) - len(kept), conn.id)
            accepted = kept
        if not (self.ack_delay or self.ack_jitter):
            super()._send_subscription_replies(conn, action, refused, accepted)
            return
        frames = [encode_frame(text.encode()) for text in self._reply_frames(action, refused, accepted)]
        if not frames:
            return
        groups = [b"".join(frames)] if self.ack_mode == "batched" else frames
        for group in groups:
            with self._lock:
                delay = self.ack_delay + (self._random.random() * self.ack_jitter if self.ack_jitter else 0.0)
            self._delayed.schedule(delay, conn, group)

    def _ack_lost(self, channel: str) -> bool:
        if channel in self._lost_channels or channel.partition(".")[0] in self._lost_prefixes:
            return True
        if self.ack_loss:
            with self._lock:
                return self._random.random() < self.ack_loss
        return False

    # -- public API: publishing --------------------------------------------------------------------

    def _targets(self, market: str) -> list[tuple[ServerConn, frozenset[str]]]:
        """Authenticated, open, unstalled connections of ``market`` with their subscriptions."""
        with self._lock:
            return [
                (c, c.subscriptions) for c in self._open_conns(market=market)
                if c.authenticated and not c.stalled
            ]  # fmt: skip

    def publish(
        self,
        events: Iterable[Mapping[str, Any] | MarketEvent],
        market: Market | str = "stocks",
        batch: int = 10,
    ) -> int:
        """Send events to every connection of ``market`` subscribed to a matching channel.

        A connection receives an event when it subscribed ``<ev>.<symbol>`` or ``<ev>.*``
        (``A.*`` does not receive ``AM``); status objects (``{"ev": "status", ...}``) go to every
        connection in place, mixed into the data frames. Each connection's events keep their order and go out in
        frames of ``batch`` events (JSON arrays), all written with as few system calls as possible.
        Stalled connections are skipped. Blocks while a client does not read (see
        ``slow_consumer_timeout``).

        Args:
            events: wire dicts (``{"ev": "T", "sym": "AAPL", ...}``) or :class:`~massive_rt.MarketEvent`
                instances.
            market: market path of the receiving connections.
            batch: events per frame (>= 1).

        Returns:
            Number of events delivered, summed over connections.
        """
        if batch < 1:
            raise ConfigurationError(f"batch={batch!r} must be >= 1", field="batch")
        value = market_path(market)
        listeners = self._publish_listeners
        if listeners:  # recorded whether or not anyone is connected: history is exchange time, not delivery
            events = [
                to_wire(e) if isinstance(e, MarketEvent) else e if isinstance(e, dict) else dict(e) for e in events
            ]
            for listener in listeners:
                listener(value, events)  # type: ignore[arg-type]
        targets = self._targets(value)
        if not targets:
            return 0
        wires: list[dict[str, Any]] = [
            to_wire(e) if isinstance(e, MarketEvent) else e if isinstance(e, dict) else dict(e) for e in events
        ]
        if not wires:
            return 0
        evs = [ev if isinstance(ev := w.get("ev"), str) else None for w in wires]
        symbols: dict[int, object] = {}  # computed only for channels that name tickers
        plans: dict[frozenset[str], tuple[list[bytes], int]] = {}  # connections with equal subscriptions share frames
        delivered = 0
        for conn, subs in targets:
            plan = plans.get(subs)
            if plan is None:
                wild = {ch[:-2] for ch in subs if ch.endswith(".*")}
                named = {ch.partition(".")[0] for ch in subs if not ch.endswith(".*")}
                selected: list[int] = []
                for i, ev in enumerate(evs):
                    if ev in wild or ev == "status":
                        selected.append(i)
                    elif ev in named:
                        if i not in symbols:
                            symbols[i] = event_symbol(value, wires[i])
                        if routes_to(subs, ev, symbols[i]):
                            selected.append(i)
                # One encoder call per frame: far cheaper than one per event (allocation dominates).
                frames = (
                    encode_frame(dumps([wires[i] for i in selected[start : start + batch]]))
                    for start in range(0, len(selected), batch)
                )
                plan = plans[subs] = (join_frames(frames), len(selected))
            chunks, count = plan
            if count and self._write(conn, chunks):
                delivered += count
        return delivered

    @staticmethod
    def prepare_raw_frames(frames: Sequence[str | bytes]) -> PreparedFrames:
        """Frame ``frames`` (text frames, ``str`` or UTF-8 ``bytes``) once, for
        :meth:`publish_raw_frames` to send as often as needed without re-encoding them."""
        chunks = join_frames(encode_frame(f.encode() if isinstance(f, str) else f) for f in frames)
        return PreparedFrames(count=len(frames), chunks=tuple(chunks))

    def publish_raw_frames(
        self,
        frames: Sequence[str | bytes] | PreparedFrames,
        market: Market | str = "stocks",
        connection: str | ConnectionInfo | None = None,
    ) -> int:
        """Send pre-encoded frames to every authenticated connection of ``market`` (no channel
        filter), or only to ``connection``.

        The fast path for benchmarks: each frame is framed once and many frames go out per system
        call. ``str`` and ``bytes`` (UTF-8) are both sent as text frames; frames prepared with
        :meth:`prepare_raw_frames` go out as they are.

        Returns:
            Number of frames delivered, summed over connections.
        """
        targets = self._targets(market_path(market))
        if connection is not None:
            wanted = connection.id if isinstance(connection, ConnectionInfo) else connection
            targets = [(conn, subs) for conn, subs in targets if conn.id == wanted]
        prepared = frames if isinstance(frames, PreparedFrames) else None
        if not targets or not (prepared.count if prepared is not None else frames):
            return 0
        if prepared is None:
            prepared = self.prepare_raw_frames(frames)  # type: ignore[arg-type]
        return sum(prepared.count for conn, _ in targets if self._write(conn, prepared.chunks))

    def send_raw(
        self,
        data: str | bytes,
        connection: str | ConnectionInfo | None = None,
        *,
        text_frame_bytes: bool = False,
        market: Market | str | None = None,
    ) -> int:
        """Send one unvalidated frame: to ``connection`` or to every open connection (of ``market``).

        ``str`` goes out as a text frame, ``bytes`` as a binary frame, or as a text frame with
        ``text_frame_bytes=True`` (which can carry invalid UTF-8, something ``websockets`` refuses
        to send). Unauthenticated connections are included; stalled ones are skipped.

        Returns:
            Number of connections written to.
        """
        if isinstance(data, str):
            frame = encode_frame(data.encode())
        else:
            frame = encode_frame(bytes(data), OP_TEXT if text_frame_bytes else OP_BINARY)
        value = None if market is None else market_path(market)
        return sum(self._write(c, frame) for c in self._open_conns(connection, value))

    def ping(self, connection: str | ConnectionInfo) -> threading.Event:
        """Send a WebSocket ping to ``connection``; the returned event is set when its pong arrives.

        Raises:
            KeyError: unknown connection id.
        """
        return self._lookup(connection).ws.ping()

    def send_status(
        self,
        status: str,
        message: str,
        close_code: int | None = None,
        connection: str | ConnectionInfo | None = None,
        *,
        reason: str = "",
    ) -> int:
        """Send ``[{"ev":"status","status":status,"message":message}]``, then close with ``close_code``.

        E.g. ``send_status("slow_consumer", "...", close_code=1008)`` or
        ``send_status("force_disconnect", "...", close_code=1000)``. The close is clean (close
        frame sent before this returns; TCP dropped if the client does not answer within
        ``close_timeout``) and ends a stall; without ``close_code`` stalled connections are skipped.

        Returns:
            Number of connections the status was written to.
        """
        if close_code is not None:
            self._check_close_code(close_code, reason)
        frame = encode_frame(status_frame(status, message).encode())
        sent = 0
        for conn in self._open_conns(connection):
            if close_code is None:
                sent += self._write(conn, frame)
            else:
                sent += self._close_gracefully(conn, close_code, reason, wait=False, status=(status, message))
        return sent

    @staticmethod
    def _check_close_code(code: int, reason: str) -> None:
        try:
            Close(code, reason).serialize()
        except ProtocolError as exc:
            raise ConfigurationError(f"close code {code!r} cannot be sent: {exc}", field="code") from exc

    # -- public API: faults ------------------------------------------------------------------------

    def drop_all(self) -> int:
        """Drop every connection abruptly (TCP shutdown, no close frame). Returns how many."""
        conns = self._open_conns()
        for conn in conns:
            self._abort(conn)
        return len(conns)

    def kick(self, connection: str | ConnectionInfo) -> None:
        """Drop one connection abruptly (TCP shutdown, no close frame).

        Raises:
            KeyError: unknown connection id.
        """
        self._abort(self._lookup(connection))

    def close_connection(self, connection: str | ConnectionInfo, code: int = 1000, reason: str = "") -> None:
        """Close one connection cleanly with ``code`` and ``reason``; returns once the close frame is
        sent (the handshake completes in the background, bounded by ``close_timeout``).

        Raises:
            KeyError: unknown connection id.
            ConfigurationError: a code that may not be sent (e.g. 1005, 1006).
        """
        self._check_close_code(code, reason)
        self._close_gracefully(self._lookup(connection), code, reason, wait=False)

    def stall(self, connection: str | ConnectionInfo | None = None) -> int:
        """Freeze existing connections like a network partition: nothing is sent to them (published
        data is dropped, replies wait) and their pings go unanswered, until :meth:`resume`.

        Connections opened later are not stalled. Closing, kicking or restarting ends a stall.

        Returns:
            Number of connections newly stalled.
        """
        count = 0
        for conn in self._open_conns(connection):
            with self._lock:
                if conn.stalled or conn.closed:
                    continue
                conn.stalled = True
            # Owning the connection's protocol mutex stops its reader thread right after its next
            # read: incoming pings are not processed, so no pong goes out.
            if conn.ws.protocol_mutex.acquire(timeout=2.0):
                with self._lock:
                    keep = conn.stalled and not conn.closed
                    conn.stall_held = keep
                    self._cond.notify_all()
                if not keep:
                    conn.ws.protocol_mutex.release()
                    continue
                count += 1
            else:
                with self._lock:
                    conn.stalled = False
                logger.warning("mock %s: could not stall %s (a send is blocked)", self.name, conn.id)
        return count

    def resume(self, connection: str | ConnectionInfo | None = None) -> None:
        """End :meth:`stall` (for one connection or all); pending pongs and replies then go out."""
        if connection is not None:
            self._release_stall(self._lookup(connection))
            return
        with self._lock:
            conns = [c for c in self._open_conns() if c.stalled]
        for conn in conns:
            self._release_stall(conn)

    # -- public API: streaming ---------------------------------------------------------------------

    def stream(
        self, source: EventSource, rate: float, market: Market | str = "stocks", batch: int = 10
    ) -> StreamHandle:
        """Publish ``source.next_events(k)`` continuously at about ``rate`` events per second.

        Runs in a daemon thread named ``massive-rt-mock-stream`` until ``handle.stop()`` or
        :meth:`close`. Events go through :meth:`publish` (channel routing, ``batch`` per frame).
        An exception from the source ends the stream (logged, kept in ``handle.error``).
        """
        if not rate > 0:
            raise ConfigurationError(f"rate={rate!r} must be > 0", field="rate")
        if batch < 1:
            raise ConfigurationError(f"batch={batch!r} must be >= 1", field="batch")
        value = market_path(market)
        stop = threading.Event()

        def run() -> None:
            start = time.monotonic()
            max_step = max(1, min(int(rate * 0.25), 50_000))  # bounds memory and latency per step
            try:
                while not stop.is_set():
                    # Event k (0-based) is due at start + k / rate: the first goes out at once.
                    due = int((time.monotonic() - start) * rate) + 1 - handle.generated
                    if due > max_step:  # fell behind: do not burst, slide the schedule instead
                        start += (due - max_step) / rate
                        due = max_step
                    if due > 0:
                        events = source.next_events(due)
                        handle.generated += due
                        handle.delivered += self.publish(events, value, batch)
                    wait = start + handle.generated / rate - time.monotonic()
                    if wait > 0:
                        stop.wait(min(wait, 0.05))
            except Exception as exc:
                handle.error = exc
                logger.exception("mock %s: stream stopped by an error", self.name)

        thread = threading.Thread(target=run, name=f"{THREAD_PREFIX}stream", daemon=True)
        handle = StreamHandle(thread=thread, stop_event=stop)
        with self._lock:
            if self._is_closed():
                raise ClientClosedError(f"MockMassiveServer {self.name!r} is closed; create a new one")
            self._streams = [h for h in self._streams if h.running]
            self._streams.append(handle)
            self._track(thread)
        thread.start()
        return handle

    def replay(
        self, path: str | Path | Sequence[str | Path], speed: float | None = 1.0, *, wait_for_subscribers: int = 0
    ) -> ReplayHandle:
        """Serve a recording (:class:`massive_rt.Recorder`'s file) to the clients that subscribe.

        Each recorded data frame goes out as one frame through :meth:`publish`'s routing: a
        connection of the record's market gets the frame's events that match its subscriptions,
        in recorded order, paced by the recorded receive times (``speed`` times faster; ``None``:
        as fast as the clients read). Statuses the recording client made up (state changes,
        ``gap``, ``dropped``) are not sent (counted in ``handle.statuses_skipped``); see
        :mod:`massive_rt.testing.replay`. Runs on a daemon thread
        (``massive-rt-mock-replay-<name>``) until the recording ends, ``handle.stop()`` or
        :meth:`close`.

        Args:
            path: the recording (its rotated parts follow), or a sequence of files.
            speed: 1.0 = recorded pace, N = N times faster, None = as fast as possible.
            wait_for_subscribers: start once this many connections have subscribed (0: at once).

        Raises:
            RecordingError: ``path`` is not a readable recording.
            ConfigurationError: a bad ``speed``.
            ClientClosedError: the server is closed.
        """
        with self._lock:
            if self._is_closed():
                raise ClientClosedError(f"MockMassiveServer {self.name!r} is closed; create a new one")

        def wake() -> None:
            with self._cond:
                self._cond.notify_all()

        def subscribed() -> int:
            return sum(1 for c in self._open_conns() if c.authenticated and c.subscriptions)

        handle = start_replay(
            self, path, speed, wait_for_subscribers=wait_for_subscribers, wake=wake, track=self._track,
            thread_name=f"{THREAD_PREFIX}replay-{self.name}", subscribed=subscribed,
        )  # fmt: skip
        with self._lock:
            closed = self._is_closed()  # closed meanwhile: _closing did not see this handle
            self._replays = [h for h in self._replays if h.running]
            self._replays.append(handle)
        if closed:
            handle.stop()
        return handle

    def add_publish_listener(self, listener: Callable[[str, list[dict[str, Any]]], None]) -> None:
        """Call ``listener(market, wire_dicts)`` with every batch :meth:`publish` (and :meth:`stream`)
        sends, before it is sent, on the publishing thread — e.g. :class:`MockMassiveREST` recording
        its history. The listener must not block and must not change the dicts."""
        with self._lock:
            self._publish_listeners = (*self._publish_listeners, listener)

    def remove_publish_listener(self, listener: Callable[[str, list[dict[str, Any]]], None]) -> None:
        """Stop calling ``listener`` (added by :meth:`add_publish_listener`); unknown ones are ignored."""
        with self._lock:
            self._publish_listeners = tuple(known for known in self._publish_listeners if known != listener)

    # -- public API: inspection --------------------------------------------------------------------

    @property
    def received(self) -> list[ReceivedMessage]:
        """Every message clients sent, in arrival order (a copy)."""
        with self._lock:
            return list(self._received)


# ------------------------------------------------------------------------------------------------
# Helpers of the options above


def _split_entries(entries: Iterable[str]) -> tuple[frozenset[str], frozenset[str]]:
    """``("NOI", "T.*", "Q.AAPL")`` → (prefixes ``{"NOI", "T"}``, channels ``{"Q.AAPL"}``)."""
    if isinstance(entries, str):
        entries = (entries,)
    prefixes, channels = set(), set()
    for entry in entries:
        prefix, dot, ticker = entry.strip().partition(".")
        if not dot or ticker == "*":
            prefixes.add(prefix)
        else:
            channels.add(f"{prefix}.{ticker}")
    return frozenset(prefixes), frozenset(channels)


_Entitlement = tuple[str, str, str]  # (market or "" for any, prefix, ticker or "*" for all)


def _entitlement_set(entries: Iterable[str]) -> frozenset[_Entitlement]:
    if isinstance(entries, str):
        entries = (entries,)
    out: set[_Entitlement] = set()
    for entry in entries:
        entry = entry.strip()
        market, colon, rest = entry.partition(":")
        if not colon or "." in market:  # "O:SPY..." after a dot is a ticker, not a market
            market, rest = "", entry
        prefix, dot, ticker = rest.partition(".")
        if not prefix:
            raise ConfigurationError(f"entitlement {entry!r} has no channel prefix", field="entitlements")
        out.add((market.strip("/"), prefix, ticker if dot and ticker else "*"))
    return frozenset(out)


def _entitlements(
    entitlements: Iterable[str] | Mapping[str, Iterable[str]] | None,
) -> dict[str, frozenset[_Entitlement]] | None:
    if entitlements is None:
        return None
    if isinstance(entitlements, Mapping):
        return {str(key): _entitlement_set(entries) for key, entries in entitlements.items()}
    return {"*": _entitlement_set(entitlements)}


class _DelayedReplies:
    """Sends subscription replies after a delay, in due order, on one daemon thread.

    The thread (``massive-rt-mock-acks-<name>``) starts with the first delayed reply and ends on
    :meth:`stop` (the server's ``close``); replies still waiting then are dropped with their
    connections.
    """

    def __init__(self, server: MockMassiveServer) -> None:
        self._server = server
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, ServerConn, bytes]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def schedule(self, delay: float, conn: ServerConn, data: bytes) -> None:
        with self._cond:
            if self._stopped:
                return
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._order), conn, data))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"{THREAD_PREFIX}acks-{self._server.name}", daemon=True
                )
                self._server._track(self._thread)
                self._thread.start()
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    wait = self._heap[0][0] - time.monotonic() if self._heap else 1.0
                    if self._heap and wait <= 0:
                        break
                    self._cond.wait(min(wait, 1.0))
                if self._stopped:
                    return
                _, _, conn, data = heapq.heappop(self._heap)
            self._server._write(conn, data, wait=True)
