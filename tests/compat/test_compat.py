"""``massive_rt.compat.WebSocketClient`` against the mock server: batching frame by frame next to the
official client, key resolution, refused keys, subscriptions while running, statuses, raw frames,
``close()`` from anywhere, async handlers and ``connect()``, reconnects and failures."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from typing import Any

import pytest

import massive_rt
from massive_rt.compat import AuthError, CloseResult, Feed, Market, WebSocketClient
from massive_rt.compat import client as compat_client
from massive_rt.testing import MockMassiveServer
from tests.compat._support import (
    KEY,
    PAYLOADS,
    TIMEOUT,
    OfficialRunning,
    Running,
    close_after,
    drain,
    events,
    expected_batches,
    frames,
    publish_when_subscribed,
    views,
    wait_subscribed,
)

pytestmark = pytest.mark.timeout(30)

FAST = massive_rt.ReconnectPolicy(initial_delay=0.01, max_delay=0.05)
TRADE = {"ev": "T", "sym": "AAPL", "p": 190.5, "s": 10, "t": 1700000000000, "q": 1}


def channels_for(market: str) -> list[str]:
    """Wildcards for every ev of ``market`` in PAYLOADS (options quotes take no wildcard: by contract)."""
    out: list[str] = []
    for payload in PAYLOADS[market]:
        ev = payload["ev"]
        channel = f"Q.{payload['sym']}" if (market, ev) == ("options", "Q") else f"{ev}.*"
        if channel not in out:
            out.append(channel)
    return out


def make(host: str, **kwargs: Any) -> WebSocketClient:
    options: dict[str, Any] = {"api_key": KEY, "feed": host, "secure": False}
    options.update(kwargs)
    return WebSocketClient(**options)


def open_subscriptions(server: MockMassiveServer, key: str = KEY) -> set[str]:
    """Channels subscribed on the open connections authenticated with ``key``."""
    out: set[str] = set()
    for conn in server.connections:
        if conn.key == key and not conn.closed:
            out |= conn.subscriptions
    return out


# ---------------------------------------------------------------- next to the official client


@pytest.mark.parametrize("market", list(PAYLOADS))
def test_batches_equal_the_official_clients_frame_by_frame(server: MockMassiveServer, host: str, market: str) -> None:
    channels = channels_for(market)
    official = OfficialRunning(server, market, channels)
    with Running(make(host, market=market, subscriptions=channels)) as ours:
        wait_subscribed(server, channels, market)
        wait_subscribed(server, channels, market, key=official.client.api_key)
        payloads = PAYLOADS[market]
        assert server.publish(payloads, market=market, batch=3) == 2 * len(payloads)
        n = len(frames(payloads, 3))
        mine, theirs = ours.take(n), official.take(n)
    official.end()
    assert [views(b) for b in mine] == [views(b) for b in theirs]
    assert [views(b) for b in mine] == expected_batches(market, payloads, 3)
    assert ours.error is None
    assert official.error is None


def test_raw_frames_equal_the_official_clients_data_frames(server: MockMassiveServer, host: str) -> None:
    """With raw=True both pass each data frame as the same str; the official client also passes the
    frames of subscription acks, which massive_rt consumes (a documented difference)."""
    official = OfficialRunning(server, "stocks", ["T.*", "Q.*"], raw=True)
    with Running(make(host, raw=True, subscriptions=["T.*", "Q.*"])) as ours:
        wait_subscribed(server, ["T.*", "Q.*"], "stocks")
        wait_subscribed(server, ["T.*", "Q.*"], "stocks", key=official.client.api_key)
        payloads = [*events("stocks", "T", "Q"), TRADE]
        assert server.publish(payloads, batch=2) == 2 * len(payloads)
        mine = ours.take(2)
        # the official client's first frames are the acks; then the same data frames
        theirs: list[Any] = []
        while len(theirs) < 2:
            frame = official.take(1)[0]
            if all(obj.get("ev") != "status" for obj in json.loads(frame)):
                theirs.append(frame)
    official.end()
    assert all(isinstance(f, str) for f in mine)
    assert mine == theirs
    assert [json.loads(f) for f in mine] == frames(payloads, 2)[:2]


# ---------------------------------------------------------------- keys


def test_an_explicit_key_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASSIVE_API_KEY", "from-massive")
    monkeypatch.setenv("POLYGON_API_KEY", "from-polygon")
    assert WebSocketClient(api_key="explicit").api_key == "explicit"


def test_massive_api_key_comes_before_polygon_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASSIVE_API_KEY", "from-massive")
    monkeypatch.setenv("POLYGON_API_KEY", "from-polygon")
    assert WebSocketClient().api_key == "from-massive"
    monkeypatch.setenv("MASSIVE_API_KEY", "")  # set but empty: as if unset
    assert WebSocketClient().api_key == "from-polygon"
    monkeypatch.delenv("MASSIVE_API_KEY")
    assert WebSocketClient().api_key == "from-polygon"


def test_no_key_anywhere_raises_auth_error_at_construction() -> None:
    with pytest.raises(AuthError, match="MASSIVE_API_KEY"):
        WebSocketClient()
    assert issubclass(AuthError, massive_rt.AuthenticationError)


def test_the_key_read_from_polygon_api_key_is_the_one_sent(
    server: MockMassiveServer, host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLYGON_API_KEY", KEY)
    with Running(WebSocketClient(feed=host, secure=False, subscriptions=["T.AAPL"])) as running:
        wait_subscribed(server, ["T.AAPL"], "stocks")
        server.publish([TRADE])
        (batch,) = running.take(1)
    assert batch[0].symbol == "AAPL"
    assert [m.key for m in server.received if m.action == "auth"] == [KEY]


@pytest.mark.allow_errors(r"failed: authentication failed$", logger="massive_rt.connection")
def test_a_refused_key_ends_run_with_auth_error(server: MockMassiveServer, host: str) -> None:
    client = make(host, api_key="wrong", subscriptions=["T.*"])
    with pytest.raises(AuthError) as caught:
        client.run(lambda msgs: None)
    assert str(caught.value) == "authentication failed"
    assert isinstance(caught.value, massive_rt.AuthenticationError)
    assert not client.running


@pytest.mark.allow_errors(r"failed: authentication failed$", logger="massive_rt.connection")
def test_a_refused_key_gives_the_same_message_as_the_official_auth_error(server: MockMassiveServer, host: str) -> None:
    massive = pytest.importorskip("massive")
    official = massive.WebSocketClient(api_key="wrong", feed=host, secure=False, max_reconnects=0)
    with pytest.raises(massive.exceptions.AuthError) as theirs:
        official.run(lambda msgs: None, proxy=None)
    with pytest.raises(AuthError) as ours:
        make(host, api_key="wrong").run(lambda msgs: None)
    assert str(ours.value) == str(theirs.value)


# ---------------------------------------------------------------- construction


def test_the_url_is_built_like_the_official_one() -> None:
    assert WebSocketClient(api_key="k").url == "wss://socket.massive.com/stocks"
    assert (
        WebSocketClient(api_key="k", feed=Feed.Delayed, market=Market.Crypto).url == "wss://delayed.massive.com/crypto"
    )
    assert WebSocketClient(api_key="k", feed="127.0.0.1:8000", market="futures/cme", secure=False).url == (
        "ws://127.0.0.1:8000/futures/cme"
    )
    # enums from elsewhere work too: massive_rt's own
    client = WebSocketClient(api_key="k", feed=massive_rt.Feed.BUSINESS, market=massive_rt.Market.OPTIONS)
    assert client.url == "wss://business.massive.com/options"
    assert client.market is Market.Options
    with pytest.raises(ValueError, match="nope"):
        WebSocketClient(api_key="k", market="nope")


def test_the_url_equals_the_official_clients() -> None:
    massive = pytest.importorskip("massive")
    from massive.websocket.models import Feed as OfficialFeed
    from massive.websocket.models import Market as OfficialMarket

    for feed, market, secure in [(Feed.RealTime, Market.Stocks, True), (Feed.Launchpad, Market.Options, True),
                                 ("127.0.0.1:9", Market.FuturesCOMEX, False)]:  # fmt: skip
        theirs = massive.WebSocketClient(
            api_key="k", feed=OfficialFeed(feed.value) if isinstance(feed, Feed) else feed,
            market=OfficialMarket(market.value), secure=secure,
        )  # fmt: skip
        assert WebSocketClient(api_key="k", feed=feed, market=market, secure=secure).url == theirs.url
        # and the official enum members are accepted as they are
        assert WebSocketClient(api_key="k", feed=theirs.feed, market=theirs.market, secure=secure).url == theirs.url


def test_repr_never_shows_the_key() -> None:
    text = repr(WebSocketClient(api_key="very-secret-key", subscriptions=["T.AAPL"]))
    assert "very-secret-key" not in text
    assert "1 channels" in text


def test_verbose_sets_the_compat_logger_to_debug() -> None:
    compat_client.logger.setLevel(logging.NOTSET)
    WebSocketClient(api_key="k", verbose=True)
    assert compat_client.logger.level == logging.DEBUG


def test_unknown_options_are_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=compat_client.logger.name):
        WebSocketClient(api_key="k", open_timeout=3, queue_size=10)
    assert "ignores the options open_timeout" in caplog.text
    assert "queue_size" not in caplog.text  # passed through to MassiveWebSocketClient


def test_an_invalid_passed_through_option_fails_at_construction() -> None:
    with pytest.raises(massive_rt.ConfigurationError, match="queue_size"):
        WebSocketClient(api_key="k", queue_size=0)


# ---------------------------------------------------------------- subscriptions


def test_subscribe_and_unsubscribe_while_running_reach_the_server(server: MockMassiveServer, host: str) -> None:
    client = make(host, subscriptions=["T.AAPL"])
    with Running(client):
        wait_subscribed(server, ["T.AAPL"], "stocks")
        client.subscribe("Q.MSFT", "T.MSFT")
        wait_subscribed(server, ["T.AAPL", "Q.MSFT", "T.MSFT"], "stocks")
        client.unsubscribe("T.MSFT")
        assert server.wait_for(lambda: open_subscriptions(server) == {"T.AAPL", "Q.MSFT"}, TIMEOUT)
        client.unsubscribe_all()
        assert server.wait_for(lambda: open_subscriptions(server) == set(), TIMEOUT)
        assert client.subscriptions == frozenset()
    actions = [(m.action, m.params) for m in server.received if m.action != "auth"]
    assert actions == [
        ("subscribe", ("T.AAPL",)),
        ("subscribe", ("Q.MSFT", "T.MSFT")),
        ("unsubscribe", ("T.MSFT",)),
        ("unsubscribe", ("Q.MSFT", "T.AAPL")),
    ]


def test_the_handler_can_subscribe_and_its_new_channel_delivers(server: MockMassiveServer, host: str) -> None:
    client = make(host, subscriptions=["T.AAPL"])
    quote = {"ev": "Q", "sym": "AAPL", "bp": 1.0, "ap": 1.1}

    def on_batch(batch: list[Any]) -> None:
        if batch[0].event_type == "T":
            client.subscribe("Q.AAPL")

    with Running(client, on_batch) as running:
        wait_subscribed(server, ["T.AAPL"], "stocks")
        server.publish([TRADE])
        assert running.take(1)[0][0].symbol == "AAPL"
        wait_subscribed(server, ["Q.AAPL"], "stocks")
        server.publish([quote])
        assert views(running.take(1)[0]) == expected_batches("stocks", [quote])[0]


def test_a_wildcard_replaces_the_tickers_of_its_prefix(server: MockMassiveServer, host: str) -> None:
    client = make(host, subscriptions=["T.AAPL", "T.MSFT", "Q.AAPL"])
    with Running(client):
        wait_subscribed(server, ["T.AAPL", "T.MSFT", "Q.AAPL"], "stocks")
        client.subscribe("T.*")
        assert server.wait_for(lambda: open_subscriptions(server) == {"T.*", "Q.AAPL"}, TIMEOUT)
        assert client.subscriptions == {"T.*", "Q.AAPL"}
        client.subscribe("T.TSLA")  # covered by T.* : wanted, not sent
        client.unsubscribe("T.*")  # drops the tickers of T too, as the official client does
        assert server.wait_for(lambda: open_subscriptions(server) == {"Q.AAPL"}, TIMEOUT)
        assert client.subscriptions == {"Q.AAPL"}


def test_subscriptions_before_run_are_sent_when_it_connects_and_kept_for_the_next_run(
    server: MockMassiveServer, host: str
) -> None:
    client = make(host)
    client.subscribe("T.AAPL, Q.AAPL")  # one comma-separated string works as it does upstream
    client.subscribe("AAPL", "T.BAD TICKER")  # no dot / whitespace: skipped with a warning
    assert client.subscriptions == {"T.AAPL", "Q.AAPL"}
    for _ in range(2):
        with Running(client) as running:
            wait_subscribed(server, ["T.AAPL", "Q.AAPL"], "stocks")
            server.publish([TRADE])
            assert running.take(1)[0][0].price == 190.5
        assert server.wait_for(lambda: not open_subscriptions(server), TIMEOUT)


# ---------------------------------------------------------------- what the handler gets


def test_statuses_and_unknown_events_never_reach_the_handler(
    server: MockMassiveServer, host: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = make(host, subscriptions=["T.*"])
    with caplog.at_level(logging.WARNING, logger=compat_client.logger.name), Running(client) as running:
        wait_subscribed(server, ["T.*"], "stocks")
        server.send_status("info", "just saying")  # a status frame of its own
        server.send_raw(json.dumps([{"ev": "ZZZ", "sym": "AAPL"}]))  # an ev stocks do not have
        server.send_raw(json.dumps([{"ev": "status", "status": "x", "message": "y"}, {**TRADE, "p": 1.0}]))
        server.send_raw(json.dumps([{**TRADE, "p": 2.0}, {"ev": "status", "status": "x", "message": "late"}]))
        server.send_raw("not json")
        server.publish([TRADE])
        batches = running.take(3)
    assert [[m.price for m in batch] for batch in batches] == [[1.0], [2.0], [190.5]]
    assert running.calls == 3
    assert "Unknown event type 'ZZZ'" in caplog.text
    assert "undecodable frame" in caplog.text


def test_custom_json_decodes_every_frame_as_str(server: MockMassiveServer, host: str) -> None:
    seen: list[Any] = []

    class Loader:
        def loads(self, text: Any) -> Any:
            seen.append(text)
            return json.loads(text)

    with Running(make(host, subscriptions=["T.*"], custom_json=Loader())) as running:
        wait_subscribed(server, ["T.*"], "stocks")
        server.publish([TRADE, TRADE, TRADE], batch=2)
        assert [len(b) for b in running.take(2)] == [2, 1]
    assert len(seen) == 2
    assert all(isinstance(text, str) for text in seen)


# ---------------------------------------------------------------- close and lifecycle


def test_close_when_not_running_warns_and_can_be_awaited(caplog: pytest.LogCaptureFixture) -> None:
    client = WebSocketClient(api_key="k")
    with caplog.at_level(logging.WARNING, logger=compat_client.logger.name):
        result = client.close()
    assert isinstance(result, CloseResult)
    assert "no websocket open to close" in caplog.text

    async def main() -> None:
        await client.close()  # the official spelling

    asyncio.run(main())


def test_close_from_another_thread_stops_further_handler_calls(server: MockMassiveServer, host: str) -> None:
    client = make(host, subscriptions=["T.*"])
    release = threading.Event()
    entered = threading.Event()

    def on_batch(batch: list[Any]) -> None:
        entered.set()
        assert release.wait(TIMEOUT)

    with Running(client, on_batch) as running:
        wait_subscribed(server, ["T.*"], "stocks")
        server.publish([TRADE] * 6, batch=1)  # six frames; the handler holds the first
        assert entered.wait(TIMEOUT)
        client.close()
        release.set()
        running.join()
    assert running.calls == 1  # the frames already queued are not delivered after close()
    assert running.error is None


def test_run_cannot_run_twice_at_once(server: MockMassiveServer, host: str) -> None:
    client = make(host, subscriptions=["T.*"])
    with Running(client):
        wait_subscribed(server, ["T.*"], "stocks")
        with pytest.raises(RuntimeError, match="already running"):
            client.run(lambda msgs: None)


def test_an_exception_in_the_handler_ends_run_with_it_and_closes_the_connection(
    server: MockMassiveServer, host: str
) -> None:
    client = make(host, subscriptions=["T.*"])

    def handle_msg(msgs: list[Any]) -> None:
        raise LookupError("handler bug")

    publisher = publish_when_subscribed(server, ["T.*"], "stocks", [TRADE])
    with pytest.raises(LookupError, match="handler bug"):
        client.run(handle_msg)
    publisher.join(TIMEOUT)
    assert not client.running
    assert server.wait_for(lambda: all(c.closed for c in server.connections), TIMEOUT)


def test_an_async_handler_given_to_run_is_awaited_and_may_await_close(server: MockMassiveServer, host: str) -> None:
    client = make(host, subscriptions=["T.*"])
    got: list[Any] = []

    async def handle_msg(msgs: list[Any]) -> None:
        await asyncio.sleep(0)
        got.extend(msgs)
        if len(got) == 3:
            await client.close()

    publisher = publish_when_subscribed(server, ["T.*"], "stocks", [TRADE] * 3)
    watchdog = close_after(client, 20)
    client.run(handle_msg)
    watchdog.cancel()
    publisher.join(TIMEOUT)
    assert not watchdog.fired.is_set()  # type: ignore[attr-defined]
    assert [m.symbol for m in got] == ["AAPL"] * 3


# ---------------------------------------------------------------- connect()


def test_connect_runs_like_the_official_async_example(server: MockMassiveServer, host: str) -> None:
    """async.py: gather(connect(handle_msg), timeout()) where timeout() unsubscribes all, then awaits
    close(). Here it waits for the first messages instead of sleeping."""
    c = make(host, subscriptions=["T.*"])
    got: list[Any] = []
    handler_threads: set[str] = set()

    async def main() -> None:
        first = asyncio.Event()

        async def handle_msg(msgs: list[Any]) -> None:
            handler_threads.add(threading.current_thread().name)
            got.extend(msgs)
            first.set()

        async def timeout() -> None:
            await asyncio.wait_for(first.wait(), TIMEOUT)
            c.unsubscribe_all()
            assert await asyncio.to_thread(server.wait_for, lambda: not open_subscriptions(server), TIMEOUT)
            await c.close()

        await asyncio.gather(c.connect(handle_msg), timeout())

    publisher = publish_when_subscribed(server, ["T.*"], "stocks", [TRADE, TRADE])
    asyncio.run(main())
    publisher.join(TIMEOUT)
    assert [m.price for m in got] == [190.5, 190.5]
    assert handler_threads == {threading.main_thread().name}  # on the event loop's thread
    assert ("unsubscribe", ("T.*",)) in [(m.action, m.params) for m in server.received]
    assert not c.running


@pytest.mark.allow_errors(r"failed: authentication failed$", logger="massive_rt.connection")
def test_connect_accepts_a_plain_function_and_raises_auth_error(server: MockMassiveServer, host: str) -> None:
    got: list[Any] = []
    client = make(host, subscriptions=["T.*"])

    workers: list[threading.Thread] = []

    def handle_msg(msgs: list[Any]) -> None:
        got.extend(msgs)
        workers.extend(t for t in threading.enumerate() if t.name.startswith("massive-rt-compat-"))
        client.close()

    publisher = publish_when_subscribed(server, ["T.*"], "stocks", [TRADE])
    asyncio.run(asyncio.wait_for(client.connect(handle_msg), 20))
    publisher.join(TIMEOUT)
    assert len(got) == 1
    assert len(workers) == 1
    assert workers[0].daemon  # never holds up interpreter exit
    with pytest.raises(AuthError, match="authentication failed"):
        asyncio.run(asyncio.wait_for(make(host, api_key="wrong").connect(handle_msg), 20))


def test_cancelling_connect_closes_the_connection(server: MockMassiveServer, host: str) -> None:
    client = make(host, subscriptions=["T.*"])

    async def main() -> None:
        task = asyncio.create_task(client.connect(lambda msgs: None))
        assert await asyncio.to_thread(server.wait_for_subscribed, ["T.*"], TIMEOUT)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert not client.running
    assert server.wait_for(lambda: all(c.closed for c in server.connections), TIMEOUT)


# ---------------------------------------------------------------- reconnects and failures


def test_a_dropped_connection_is_re_established_with_its_subscriptions(server: MockMassiveServer, host: str) -> None:
    client = make(host, subscriptions=["T.AAPL"], reconnect=FAST)
    with Running(client) as running:
        wait_subscribed(server, ["T.AAPL"], "stocks")
        client.subscribe("Q.AAPL")
        wait_subscribed(server, ["T.AAPL", "Q.AAPL"], "stocks")
        server.drop_all()
        assert server.wait_for(lambda: sum(1 for c in server.connections if c.authenticated) == 2, TIMEOUT)
        wait_subscribed(server, ["T.AAPL", "Q.AAPL"], "stocks")
        server.publish([TRADE])
        assert running.take(1)[0][0].symbol == "AAPL"
    assert running.error is None


@pytest.mark.allow_errors(
    r"failed: gave up after \d+ consecutive failed attempts; last: server closed the TCP connection",
    logger="massive_rt.connection",
)
def test_max_reconnects_zero_ends_run_with_connection_closed_error(server: MockMassiveServer, host: str) -> None:
    client = make(host, subscriptions=["T.*"], max_reconnects=0)
    with Running(client) as running:
        wait_subscribed(server, ["T.*"], "stocks")
        server.drop_all()
        running.join()
    assert isinstance(running.error, massive_rt.ConnectionClosedError)
    assert list(drain(running.batches)) == []


@pytest.mark.allow_errors(
    r"failed: gave up after \d+ consecutive failed attempts; last: connect failed: ConnectionRefusedError",
    logger="massive_rt.connection",
)
def test_max_reconnects_bounds_consecutive_failed_attempts(host: str, server: MockMassiveServer) -> None:
    server.close()  # nobody listens any more: every attempt fails at once (the default backoff is short)
    client = make(host, subscriptions=["T.*"], max_reconnects=2)
    with pytest.raises(massive_rt.ConnectionClosedError, match="after 3 consecutive failed attempts"):
        client.run(lambda msgs: None)
    assert not client.running
