"""The API key never leaves the client in anything a user can see: logs (any level, including
websocket-client's frame trace), reprs, exceptions raised or delivered, status events, stats.

One session (module fixture) exercises everything that handles the key: a streaming client
with a reconnect, a refused key, a ``max_connections`` refusal, a pool, adapters on the pool
and from the environment. Every log record of the ``massive_rt``, ``websocket`` and
``websockets`` loggers is kept, at DEBUG, and every object the session produced is rendered.
"""

from __future__ import annotations

import logging
import threading
import traceback
from typing import Any

import attrs
import pytest
import websocket

import massive_rt as mrt
from massive_rt.testing import MockMassiveServer
from tests.hardening._support import FAST, trade, until_streaming

KEY = "Sekr3t-hardening-KEY-d41d8cd98f00"
BAD_KEY = "Wr0ng-hardening-KEY-0cc175b9c0f1"
SECRETS = (KEY, BAD_KEY)
LOGGERS = ("massive_rt", "websocket", "websockets")
# The mock server's websockets logger records what the *server* received (the peer's log).
PEER_LOGGER = "massive_rt._server.wire"


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def record_text(record: logging.LogRecord) -> str:
    """Everything a formatter or a structured-logging handler could render from a record."""
    parts = [str(record.msg), repr(record.args), repr(vars(record))]
    try:
        parts.append(record.getMessage())
    except (TypeError, ValueError) as exc:
        parts.append(f"<unformattable: {exc}>")
    if record.exc_info and record.exc_info[1] is not None:
        parts.append("".join(traceback.format_exception(record.exc_info[1])))
    for extra in (record.exc_text, record.stack_info):
        if extra:
            parts.append(extra)
    return "\n".join(parts)


def exception_text(exc: BaseException) -> str:
    parts = [str(exc), repr(exc), repr(exc.args), "".join(traceback.format_exception(exc))]
    parts += [repr(v) for v in vars(exc).values()]
    return "\n".join(parts)


@attrs.define
class Session:
    records: list[logging.LogRecord]
    objects: list[Any]  # rendered with repr() and str()
    exceptions: list[BaseException]
    events: list[mrt.Event]


def drain(client: Any) -> list[mrt.Event]:
    return list(client.iter_events(timeout=0))


def until_trade(client: mrt.MassiveWebSocketClient) -> list[mrt.Event]:
    """Every event up to and including the next trade."""
    seen: list[mrt.Event] = []
    for event in client.iter_events(timeout=10):
        seen.append(event)
        if isinstance(event, mrt.EquityTrade):
            return seen
    raise AssertionError(f"no trade: {seen!r}")


@pytest.fixture(scope="module")
def session() -> Session:
    capture = Capture()
    saved = {name: logging.getLogger(name).level for name in LOGGERS}
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
        logging.getLogger(name).addHandler(capture)
    websocket.enableTrace(True, handler=capture)  # dumps every frame websocket-client sends
    objects: list[Any] = []
    exceptions: list[BaseException] = []
    events: list[mrt.Event] = []
    try:
        with MockMassiveServer(api_keys={KEY}, max_connections=1, name="secrets") as server:
            # 1. A streaming client that reconnects after the server closes its connection.
            client = mrt.MassiveWebSocketClient(api_key=KEY, url=server.url(), subscriptions=["T.AAPL"],
                                                reconnect=FAST, name="secret-main")  # fmt: skip
            with client:
                until_streaming(client)
                server.publish([trade(1, "AAPL")])
                events += until_trade(client)
                # A clean close (counted out at once, unlike drop_all() whose slot lingers briefly
                # and could refuse the reconnect under max_connections=1), code 1011: reconnect.
                (conn,) = server.active_connections()
                server.close_connection(conn.id, code=1011, reason="going for a restart")
                events += until_streaming(client)
                server.publish([trade(2, "AAPL")])
                events += until_trade(client)
                assert client.stats().reconnects == 1
                # 2. A second connection with the same key: refused with max_connections (fatal).
                limited = mrt.MassiveWebSocketClient(api_key=KEY, url=server.url(), subscriptions=["T.MSFT"],
                                                     reconnect=FAST, name="secret-limited")  # fmt: skip
                with limited:
                    with pytest.raises(mrt.ConnectionLimitError) as limit_info:
                        limited.wait_ready(10)
                    exceptions.append(limit_info.value)
                events += drain(limited)
                objects += [limited, limited.stats(), limited.error]
                objects += [client, client.stats(), client.config]
            events += drain(client)
            assert server.wait_for(lambda: not server.active_connections(), 10)
            # 3. A refused key.
            refused = mrt.MassiveWebSocketClient(api_key=BAD_KEY, url=server.url(), reconnect=FAST, name="secret-bad")
            with refused:
                with pytest.raises(mrt.AuthenticationError) as auth_info:
                    refused.wait_ready(10)
                exceptions.append(auth_info.value)
            events += drain(refused)
            objects += [refused, refused.stats(), refused.config, refused.error]
            # 4. A pool behind an adapter.
            pool = mrt.ConnectionPool(api_key=KEY, url=lambda market: server.url(market), name="secret-pool",
                                      client_options={"reconnect": FAST})  # fmt: skip
            adapter = mrt.RealTimeDataAdapter(pool)
            seen: list[mrt.Event] = []
            traded = threading.Event()
            adapter.on_status(seen.append)
            adapter.on(mrt.EquityTrade, lambda event: (seen.append(event), traded.set()))
            with adapter:
                pool.subscribe("T.NVDA")
                pool.wait_ready(10)
                assert pool.connections[0].wait_acked(["T.NVDA"], 10)
                server.publish([trade(3, "NVDA")])
                assert traded.wait(10)
                objects += [pool, pool.stats(), adapter, adapter.stats(), *pool.connections]
            events += seen
            assert server.wait_for(lambda: not server.active_connections(), 10)
            # 5. An adapter built from the environment.
            env_adapter = mrt.RealTimeDataAdapter.from_env(
                ["T.AMZN"], environ={"MASSIVE_API_KEY": KEY, "MASSIVE_WS_URL": server.url()}
            )
            with env_adapter:
                env_adapter.source.wait_ready(10)
                objects += [env_adapter, env_adapter.stats(), env_adapter.source.config]
            events += drain(env_adapter.source)
            # 6. Misuse that must not echo the key.
            for misuse in (
                lambda: mrt.MassiveWebSocketClient(config={"api_key": KEY}),
                lambda: mrt.MassiveWebSocketClient(api_key=KEY.encode()),
                lambda: mrt.ClientConfig(api_key=[KEY]),
                lambda: mrt.ConnectionPool(api_key=KEY, url=server.url(), client_options={"api_key": KEY}),
            ):
                with pytest.raises(mrt.ConfigurationError) as misuse_info:
                    misuse()
                exceptions.append(misuse_info.value)
            objects += [mrt.ClientConfig(api_key=KEY), mrt.ClientConfig.from_env({"MASSIVE_API_KEY": KEY})]
            objects += [server.received, server.connections]
    finally:
        websocket.enableTrace(False)
        for name in LOGGERS:
            logging.getLogger(name).removeHandler(capture)
            logging.getLogger(name).setLevel(saved[name])
    exceptions += [e.error for e in events if isinstance(e, mrt.StatusMessage) and e.error is not None]
    return Session(capture.records, objects, exceptions, events)


def test_the_session_exercised_every_path(session: Session) -> None:
    statuses = {e.status for e in session.events if isinstance(e, mrt.StatusMessage)}
    assert {"auth_failed", "max_connections", "failed", "disconnected", "gap"} <= statuses
    kinds = {type(e).__name__ for e in session.exceptions}
    assert {"AuthenticationError", "ConnectionLimitError", "ConfigurationError"} <= kinds
    assert any(r.name == "websocket" and "++Sent" in r.getMessage() for r in session.records), "trace was off"
    assert any(r.levelno == logging.DEBUG and r.name.startswith("massive_rt") for r in session.records)
    assert len(session.records) > 50


def test_the_key_is_in_no_log_record_at_any_level(session: Session) -> None:
    leaks = [
        f"{r.name} {r.levelname}: {r.getMessage()[:200]}"
        for r in session.records
        if r.name != PEER_LOGGER and any(secret in record_text(r) for secret in SECRETS)
    ]
    assert leaks == []


def test_the_key_is_in_no_repr_str_stats_exception_or_event(session: Session) -> None:
    rendered = [repr(o) for o in session.objects] + [str(o) for o in session.objects]
    rendered += [exception_text(e) for e in session.exceptions]
    rendered += [repr(e) for e in session.events] + [str(e) for e in session.events]
    assert len(rendered) > 40
    leaks = [text[:200] for text in rendered if any(secret in text for secret in SECRETS)]
    assert leaks == []


def test_the_mock_servers_own_debug_log_does_not_echo_the_key(session: Session) -> None:
    peer = [r for r in session.records if r.name == PEER_LOGGER]
    assert peer, "the peer logged nothing: the check below would prove nothing"
    assert not [r for r in peer if any(secret in record_text(r) for secret in SECRETS)]
