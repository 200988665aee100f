"""RealTimeDataAdapter over a client, a pool and the synthetic source, in every dispatch mode.

Every test runs with ``dispatch="thread"``, ``"inline"`` and ``"adaptive"``; the
few whose subject is the dispatcher thread itself say so and run once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

import pytest

import massive_rt as mrt
from massive_rt.adapter import RealTimeDataAdapter
from massive_rt.connection import MassiveWebSocketClient
from massive_rt.pool import ConnectionPool
from massive_rt.synthetic import SyntheticSource
from massive_rt.testing import MockMassiveServer
from tests.conftest import wait_until
from tests.support import FAST, KEY


def trade(sym: str = "AAPL", q: int = 0) -> dict[str, object]:
    return {"ev": "T", "sym": sym, "p": 100.0 + q, "s": 100, "t": 1, "q": q}


@pytest.fixture(params=["thread", "inline", "adaptive"])
def dispatch(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def thread_mode_only(dispatch: str, why: str) -> None:
    if dispatch != "thread":
        pytest.skip(f"dispatch='thread' only: {why}")


@pytest.fixture
def make_adapter(server: MockMassiveServer, dispatch: str) -> Iterator[Callable[..., RealTimeDataAdapter]]:
    adapters: list[RealTimeDataAdapter] = []

    def make(source: object = None, **kwargs: object) -> RealTimeDataAdapter:
        if source is None:
            source = MassiveWebSocketClient(api_key=KEY, url=server.url(), reconnect=FAST)
        kwargs.setdefault("dispatch", dispatch)
        adapter = RealTimeDataAdapter(source, **kwargs)  # type: ignore[arg-type]
        adapters.append(adapter)
        return adapter

    yield make
    for adapter in adapters:
        adapter.stop()


class Recorder:
    """A handler that records events and lets a test wait for a count."""

    def __init__(self) -> None:
        self.events: list[mrt.Event] = []
        self.cond = threading.Condition()

    def __call__(self, event: mrt.Event) -> None:
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def wait(self, count: int, timeout: float = 5.0, where: Callable[[mrt.Event], bool] = lambda e: True) -> list:
        with self.cond:
            self.cond.wait_for(lambda: len([e for e in self.events if where(e)]) >= count, timeout)
            return [e for e in self.events if where(e)]


def market_events(events: list[mrt.Event]) -> list[mrt.MarketEvent]:
    return [e for e in events if isinstance(e, mrt.MarketEvent)]


# ----------------------------------------------------------------------------- initialization


class TestInitialization:
    def test_initialization_with_massive_api_key(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.INFO, logger="massive_rt")
        adapter = RealTimeDataAdapter.from_env(["T.AAPL"], environ={"MASSIVE_API_KEY": "SECRET-KEY-123"})
        assert isinstance(adapter.source, MassiveWebSocketClient)
        assert adapter.source.subscriptions == {"T.AAPL"}
        assert "streaming from Massive" in caplog.text
        assert "SECRET-KEY-123" not in caplog.text
        assert "SECRET-KEY-123" not in repr(adapter)
        adapter.stop()

    def test_initialization_without_api_key(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.INFO, logger="massive_rt")
        adapter = RealTimeDataAdapter.from_env(["T.*"], environ={})
        assert isinstance(adapter.source, SyntheticSource)
        assert "synthetic" in caplog.text
        assert not [t for t in threading.enumerate() if t.name.startswith("massive-rt-reader")]  # no real client (B14)
        assert adapter.dispatch == "adaptive"  # the default
        adapter.stop()

    def test_from_env_passes_the_dispatch_mode_to_either_source(self) -> None:
        synthetic = RealTimeDataAdapter.from_env(["T.*"], environ={}, dispatch="inline")
        real = RealTimeDataAdapter.from_env(["T.*"], environ={"MASSIVE_API_KEY": "k"}, dispatch="inline")
        assert (synthetic.dispatch, real.dispatch) == ("inline", "inline")
        synthetic.stop()
        real.stop()

    def test_initialization_with_config(self, server: MockMassiveServer, make_adapter) -> None:
        config = mrt.ClientConfig(api_key=KEY, url=server.url(), subscriptions=("T.AAPL",), name="configured")
        recorder = Recorder()
        adapter = make_adapter(MassiveWebSocketClient(config), on_event=recorder).start()
        adapter.source.wait_ready(5)
        server.publish([trade()])
        assert recorder.wait(1)[0].connection == "configured"

    def test_initialization_with_callbacks(self, server: MockMassiveServer, make_adapter) -> None:
        recorder = Recorder()
        adapter = make_adapter(on_event=recorder).start()
        adapter.subscribe("T.AAPL")
        adapter.source.wait_ready(5)
        assert adapter.source.wait_acked(["T.AAPL"], 5)
        server.publish([trade()])
        assert isinstance(recorder.wait(1)[0], mrt.EquityTrade)

    @pytest.mark.allow_errors(r"^handler \S+ raised ZeroDivisionError on EquityTrade", logger="massive_rt.adapter")
    def test_adapter_logging_enabled(self, make_adapter, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.ERROR, logger="massive_rt")
        assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger("massive_rt").handlers)
        adapter = make_adapter(SyntheticSource(["T.*"], rate=None, seed=1))
        adapter.on(mrt.EquityTrade, lambda e: 1 / 0)
        adapter.start()

        def records() -> list[logging.LogRecord]:
            return [r for r in caplog.records if r.name == "massive_rt.adapter"]

        assert wait_until(lambda: bool(records()) and adapter.stats().handler_errors > 10, 5)
        adapter.stop()
        records = records()
        assert records[0].exc_info is not None
        assert len(records) < adapter.stats().handler_errors  # rate-limited


# ----------------------------------------------------------------------------- connection


class TestConnection:
    def test_connect_single_ticker(self, server: MockMassiveServer, make_adapter) -> None:
        trades = Recorder()
        adapter = make_adapter()
        adapter.on(mrt.EquityTrade, trades)
        adapter.start()
        adapter.subscribe("T.AAPL")
        assert adapter.source.wait_acked(["T.AAPL"], 5)
        server.publish([trade("MSFT"), trade("AAPL", 7)])
        (got,) = trades.wait(1)
        assert (got.symbol, got.sequence_number) == ("AAPL", 7)

    def test_connect_multiple_tickers(self, server: MockMassiveServer, make_adapter) -> None:
        trades = Recorder()
        adapter = make_adapter(on_event=trades).start()
        adapter.subscribe("T.AAPL", "T.MSFT", "T.NVDA")
        assert adapter.source.wait_acked(["T.AAPL", "T.MSFT", "T.NVDA"], 5)
        server.publish([trade(s) for s in ("AAPL", "MSFT", "NVDA", "TSLA")])
        assert sorted(e.symbol for e in trades.wait(3)) == ["AAPL", "MSFT", "NVDA"]

    def test_connect_large_ticker_list(self, server: MockMassiveServer, make_adapter) -> None:
        adapter = make_adapter().start()
        channels = [f"T.S{i:03d}" for i in range(150)]
        adapter.subscribe(*channels)
        assert adapter.source.wait_acked(channels, 5)
        assert server.wait_for_subscribed(channels, 5)

    def test_connect_returns_success(self, make_adapter) -> None:
        adapter = make_adapter()
        assert adapter.start() is adapter
        adapter.source.wait_ready(5)
        assert adapter.running

    @pytest.mark.allow_errors(r"failed: authentication failed$", logger="massive_rt.connection")
    def test_connect_returns_failure(self, server: MockMassiveServer, make_adapter) -> None:
        statuses = Recorder()
        adapter = make_adapter(MassiveWebSocketClient(api_key="bad", url=server.url()))
        adapter.on_status(statuses)
        adapter.start()
        (failed,) = statuses.wait(1, where=lambda e: e.status == "failed")
        assert isinstance(failed.error, mrt.AuthenticationError)
        (adapter_failed,) = statuses.wait(1, where=lambda e: e.status == "adapter_failed")
        assert adapter_failed.error is failed.error
        assert (adapter.state, adapter.error, adapter.running) == (mrt.AdapterState.FAILED, failed.error, False)
        assert adapter.stats().healthy is False

    def test_disconnect_cleanup(self, server: MockMassiveServer, make_adapter) -> None:
        adapter = make_adapter().start()
        adapter.source.wait_ready(5)
        assert adapter.stop() is True
        assert not adapter.running
        assert adapter.source.state is mrt.ConnectionState.STOPPED
        assert server.wait_for(lambda: not server.active_connections(), 5)

    def test_disconnect_idempotent(self, make_adapter) -> None:
        adapter = make_adapter().start()
        assert adapter.stop() is True
        assert adapter.stop() is True
        with pytest.raises(mrt.ClientClosedError):
            adapter.start()


# ----------------------------------------------------------------------------- synthetic


class TestSynthetic:
    def test_synthetic_connect_starts_generation_thread(self, make_adapter) -> None:
        adapter = make_adapter(SyntheticSource(["T.*"], name="gen", seed=1)).start()
        assert "massive-rt-synthetic-gen" in {t.name for t in threading.enumerate()}
        assert "massive-rt-dispatcher" in {t.name for t in threading.enumerate()}
        assert adapter.running

    def test_synthetic_data_generation(self, make_adapter) -> None:
        recorder = Recorder()
        make_adapter(SyntheticSource(["T.*", "Q.*", "AM.*"], seed=7, rate=5000), on_event=recorder).start()
        events = recorder.wait(200)
        kinds = {type(e) for e in events}
        assert {mrt.EquityTrade, mrt.EquityQuote} <= kinds
        quotes = [e for e in events if isinstance(e, mrt.EquityQuote)]
        assert all(q.bid_price < q.ask_price for q in quotes)

    def test_synthetic_disconnect_stops_generation(self, make_adapter) -> None:
        source = SyntheticSource(["T.*"], seed=3, name="stopper")
        adapter = make_adapter(source).start()
        assert wait_until(lambda: source.stats().generated > 0, 5)
        adapter.stop()
        generated = source.stats().generated
        assert source.state is mrt.ConnectionState.STOPPED
        assert "massive-rt-synthetic-stopper" not in {t.name for t in threading.enumerate()}
        assert source.stats().generated == generated

    def test_synthetic_data_provider_factory(self) -> None:
        adapter = RealTimeDataAdapter.from_env(["XT.*"], environ={"MASSIVE_MARKET": "crypto"}, seed=5, rate=None)
        recorder = Recorder()
        adapter.on(mrt.CryptoTrade, recorder)
        with adapter:
            assert recorder.wait(5)[0].pair

    @pytest.mark.allow_errors(r"^handler \S+ raised ValueError on EquityTrade", logger="massive_rt.adapter")
    def test_synthetic_error_handling(self, make_adapter) -> None:
        good = Recorder()
        errors: list[tuple[BaseException, mrt.Event]] = []
        adapter = make_adapter(SyntheticSource(["T.*"], seed=2, rate=None))
        adapter.on(mrt.EquityTrade, lambda e: (_ for _ in ()).throw(ValueError("boom")))
        adapter.on(mrt.EquityTrade, good)
        adapter.on_error(lambda exc, event, handler: errors.append((exc, event)))
        adapter.start()
        assert len(good.wait(100)) >= 100
        assert errors
        assert isinstance(errors[0][0], ValueError)
        assert adapter.running

    def test_synthetic_subscriptions_filter_what_is_delivered(self, make_adapter) -> None:
        recorder = Recorder()
        source = SyntheticSource(["T.AAPL"], symbols=["AAPL", "MSFT"], seed=4, rate=None)
        make_adapter(source, on_event=recorder).start()
        events = recorder.wait(50)
        assert {(type(e), e.symbol) for e in events} == {(mrt.EquityTrade, "AAPL")}


# ----------------------------------------------------------------------------- callbacks


class TestCallbacks:
    def test_tick_callback_invoked_on_new_tick(self, server: MockMassiveServer, make_adapter) -> None:
        recorder = Recorder()
        adapter = make_adapter()
        adapter.on("T", recorder)
        adapter.start()
        adapter.subscribe("T.AAPL")
        assert adapter.source.wait_acked(["T.AAPL"], 5)
        server.publish([trade(q=1), trade(q=2)])
        assert [e.sequence_number for e in recorder.wait(2)] == [1, 2]

    def test_status_callback_invoked_on_status_change(self, make_adapter) -> None:
        statuses = Recorder()
        adapter = make_adapter()
        adapter.on_status(statuses)
        adapter.start()
        streaming = statuses.wait(1, where=lambda e: e.state is mrt.ConnectionState.STREAMING)
        assert streaming
        assert [e.state for e in statuses.events][:4] == [
            mrt.ConnectionState.CONNECTING, mrt.ConnectionState.AUTHENTICATING,
            mrt.ConnectionState.SUBSCRIBING, mrt.ConnectionState.STREAMING,
        ]  # fmt: skip

    @pytest.mark.allow_errors(r"^handler \S+\.flaky raised RuntimeError on EquityTrade", logger="massive_rt.adapter")
    def test_callback_error_resilience(self, server: MockMassiveServer, make_adapter) -> None:
        seen = Recorder()
        reported: list[str] = []

        def flaky(event: mrt.EquityTrade) -> None:
            if event.sequence_number % 2:
                raise RuntimeError(f"bad {event.sequence_number}")
            seen(event)

        adapter = make_adapter()
        adapter.on(mrt.EquityTrade, flaky)
        adapter.on_error(lambda exc, event, handler: reported.append(str(exc)))
        adapter.start()
        adapter.subscribe("T.*")
        assert adapter.source.wait_acked(["T.*"], 5)
        server.publish([trade(q=i) for i in range(10)])
        assert [e.sequence_number for e in seen.wait(5)] == [0, 2, 4, 6, 8]
        assert wait_until(lambda: len(reported) == 5, 5)
        stats = adapter.stats()
        assert stats.handler_errors == 5
        assert stats.errors_by_handler == {flaky.__qualname__: 5}


# ----------------------------------------------------------------------------- routing and threading


class TestRoutingAndThreading:
    def test_routing_by_class_ev_code_and_wildcard(self, server: MockMassiveServer, make_adapter) -> None:
        by_class, by_code, wildcard, statuses = Recorder(), Recorder(), Recorder(), Recorder()
        adapter = make_adapter()
        adapter.on(mrt.EquityQuote, by_class)
        adapter.on("AM", by_code)
        adapter.on("*", wildcard)
        adapter.on_status(statuses)
        adapter.start()
        adapter.subscribe("T.*", "Q.*", "AM.*", "A.*")
        assert adapter.source.wait_acked(["T.*", "Q.*", "AM.*", "A.*"], 5)
        server.publish([trade(), {"ev": "Q", "sym": "AAPL", "bp": 1, "ap": 2}, {"ev": "AM", "sym": "AAPL"},
                        {"ev": "A", "sym": "AAPL"}])  # fmt: skip
        assert len(wildcard.wait(4)) == 4
        assert [type(e) for e in by_class.events] == [mrt.EquityQuote]
        assert [e.event_type for e in by_code.events] == ["AM"]  # "AM" never matches "A"
        assert not [e for e in wildcard.events if isinstance(e, mrt.StatusMessage)]
        assert statuses.events

    def test_decorator_registration_and_off(self, server: MockMassiveServer, make_adapter) -> None:
        adapter = make_adapter()
        seen: list[mrt.Event] = []

        @adapter.on(mrt.EquityTrade)
        def handler(event: mrt.EquityTrade) -> None:
            seen.append(event)

        assert adapter.off(mrt.EquityTrade, handler) is True
        assert adapter.off(mrt.EquityTrade, handler) is False
        with pytest.raises(mrt.ConfigurationError):
            adapter.on(42, handler)  # type: ignore[arg-type]

    def test_all_callbacks_run_on_the_one_dispatcher_thread(
        self, server: MockMassiveServer, make_adapter, dispatch: str
    ) -> None:
        thread_mode_only(dispatch, "inline, callbacks also run on reader threads (tests/unit/test_inline_dispatch.py)")
        threads: set[str] = set()
        recorder = Recorder()
        adapter = make_adapter(on_event=lambda e: (threads.add(threading.current_thread().name), recorder(e)))
        adapter.on_status(lambda e: threads.add(threading.current_thread().name))
        adapter.start()
        adapter.subscribe("T.*")
        assert adapter.source.wait_acked(["T.*"], 5)
        server.publish([trade(q=i) for i in range(20)])
        recorder.wait(20)
        assert threads == {"massive-rt-dispatcher"}

    def test_subscribe_and_stop_from_inside_a_handler(self, server: MockMassiveServer, make_adapter) -> None:
        adapter = make_adapter()
        done = threading.Event()

        def on_trade(event: mrt.EquityTrade) -> None:
            if event.symbol == "AAPL":
                adapter.subscribe("T.MSFT")  # no deadlock: no lock is held while handlers run
            else:
                adapter.stop()
                done.set()

        adapter.on(mrt.EquityTrade, on_trade)
        adapter.start()
        adapter.subscribe("T.AAPL")
        assert adapter.source.wait_acked(["T.AAPL"], 5)
        server.publish([trade("AAPL")])
        assert adapter.source.wait_acked(["T.MSFT"], 5)
        server.publish([trade("MSFT")])
        assert done.wait(5)
        assert wait_until(lambda: not adapter.running, 5)

    def test_fairness_across_three_connections_when_one_floods(self, server: MockMassiveServer, make_adapter) -> None:
        pool = ConnectionPool(api_key=KEY, max_connections=3, max_subscriptions_per_connection=1, url=server.url)
        pool.subscribe("T.FLOOD", "T.B", "T.C")
        pool.start().wait_ready(5)
        server.publish([trade("FLOOD", i) for i in range(5000)], batch=10)
        server.publish([trade("B", 1), trade("C", 1)])
        assert wait_until(lambda: pool.stats().per_connection and sum(
            s.queue_events for s in pool.stats().per_connection) >= 5002, 10)  # fmt: skip
        order: list[str] = []
        done = threading.Event()

        def record(event: mrt.EquityTrade) -> None:
            order.append(event.symbol)
            if len(order) == 5002:
                done.set()

        adapter = make_adapter(pool, frames_per_round=32)
        adapter.on(mrt.EquityTrade, record)
        adapter.start()
        assert done.wait(10)
        assert order.index("B") < 400  # after at most one round of the flooding connection
        assert order.index("C") < 400

    def test_order_is_preserved_per_connection(self, server: MockMassiveServer, make_adapter) -> None:
        pool = ConnectionPool(api_key=KEY, max_connections=2, max_subscriptions_per_connection=1, url=server.url)
        pool.subscribe("T.X", "T.Y")
        recorder = Recorder()
        adapter = make_adapter(pool, on_event=recorder, frames_per_round=1).start()
        pool.wait_ready(5)
        server.publish([trade(s, i) for i in range(500) for s in ("X", "Y")], batch=7)
        events = recorder.wait(1000)
        for symbol in ("X", "Y"):
            assert [e.sequence_number for e in events if e.symbol == symbol] == list(range(500))
        assert adapter.stats().dispatched >= 1000

    @pytest.mark.allow_errors(
        r"failed: gave up after \d+ consecutive failed attempts; last: server closed the TCP connection",
        logger="massive_rt.connection",
    )
    def test_a_connection_recycled_twice_keeps_its_order(self, server: MockMassiveServer, make_adapter) -> None:
        """Recycled again before the first predecessor was drained: the three generations of
        the connection are delivered one after the other, never interleaved."""
        pool = ConnectionPool(api_key=KEY, max_connections=1, url=server.url,
                              client_options={"reconnect": mrt.ReconnectPolicy(max_attempts=0)})  # fmt: skip
        seen: list[int] = []
        done = threading.Event()
        hold, holding = threading.Event(), threading.Event()

        def on_trade(event: mrt.EquityTrade) -> None:
            seen.append(event.sequence_number or 0)
            if len(seen) == 2020:
                done.set()

        def on_status(status: mrt.StatusMessage) -> None:
            if status.status == "hold":  # keeps the dispatcher busy: everything queues meanwhile
                holding.set()
                hold.wait(10)

        adapter = make_adapter(pool)
        adapter.on(mrt.EquityTrade, on_trade)
        adapter.on_status(on_status)
        adapter.start()
        pool.subscribe("T.A")
        pool.wait_ready(5)
        first = pool.connections[0]
        assert first.wait_acked(["T.A"], 5)
        server.send_status("hold", "hold the dispatcher")
        assert holding.wait(5)
        server.publish([trade("A", i) for i in range(2000)], batch=1)
        assert wait_until(lambda: first.stats().queue_events == 2000, 10)
        server.kick(server.active_connections()[0].id)
        assert wait_until(lambda: pool.stats().recycled == 1 and pool.connections[0] is not first, 10)
        second = pool.connections[0]
        assert second.wait_acked(["T.A"], 5)
        server.publish([trade("A", i) for i in range(2000, 2010)], batch=1)
        assert wait_until(lambda: second.stats().queue_events == 10, 10)
        server.kick(server.active_connections()[0].id)
        assert wait_until(lambda: pool.stats().recycled == 2 and pool.connections[0] is not second, 10)
        assert pool.connections[0].wait_acked(["T.A"], 5)
        hold.set()
        server.publish([trade("A", i) for i in range(2010, 2020)], batch=1)

        assert done.wait(10)
        assert seen == list(range(2020))

    def test_status_events_arrive_in_order_with_data(self, server: MockMassiveServer, make_adapter) -> None:
        stream = Recorder()
        adapter = make_adapter()
        adapter.on("*", stream)
        adapter.on_status(stream)
        adapter.start()
        adapter.subscribe("T.*")
        assert adapter.source.wait_acked(["T.*"], 5)
        server.publish([trade(q=i) for i in range(5)])
        stream.wait(5, where=lambda e: isinstance(e, mrt.EquityTrade))
        server.drop_all()
        stream.wait(1, where=lambda e: getattr(e, "status", "") == "disconnected")
        assert server.wait_for(lambda: len(server.connections) == 2 and bool(server.active_connections())
                               and bool(server.active_connections()[0].subscriptions), 5)  # fmt: skip
        server.publish([trade(q=i) for i in range(5, 10)])
        stream.wait(10, where=lambda e: isinstance(e, mrt.EquityTrade))
        labels = [e.status if isinstance(e, mrt.StatusMessage) else e.sequence_number for e in stream.events
                  if not (isinstance(e, mrt.StatusMessage) and e.status == "state")]  # fmt: skip
        assert labels[-12:] == [0, 1, 2, 3, 4, "disconnected", "gap", 5, 6, 7, 8, 9][-12:]

    def test_drops_are_announced_to_status_handlers(
        self, server: MockMassiveServer, make_adapter, dispatch: str
    ) -> None:
        if dispatch == "inline":  # "adaptive": the relief reader reads on while the handler blocks the reader
            pytest.skip("not dispatch='inline': a blocked handler stops the reader, so nothing is dropped")
        source = MassiveWebSocketClient(api_key=KEY, url=server.url(), queue_size=5, subscriptions=["T.*"])
        statuses = Recorder()
        gate, entered = threading.Event(), threading.Event()
        adapter = make_adapter(source)
        adapter.on(mrt.EquityTrade, lambda e: (entered.set(), gate.wait(5)))
        adapter.on_status(statuses)
        adapter.start()
        source.wait_ready(5)
        server.publish([trade(q=0)], batch=1)
        assert entered.wait(5)  # the handler now blocks on q=0
        for i in range(1, 30):
            server.publish([trade(q=i)], batch=1)
        assert wait_until(lambda: source.stats().dropped_events > 0 and source.stats().frames_received >= 33, 5)
        gate.set()
        assert statuses.wait(1, where=lambda e: e.status == "dropped")
        assert sum(e.dropped for e in statuses.events if e.status == "dropped") == source.stats().dropped_events

    def test_stop_while_a_handler_blocks_is_bounded_and_reported(
        self, make_adapter, caplog: pytest.LogCaptureFixture
    ) -> None:
        release = threading.Event()
        entered = threading.Event()

        def blocking(event: mrt.Event) -> None:
            entered.set()
            release.wait(10)

        adapter = make_adapter(SyntheticSource(["T.*"], seed=1, rate=None), on_event=blocking).start()
        assert entered.wait(5)
        started = time.monotonic()
        assert adapter.stop(timeout=0.5) is False
        assert time.monotonic() - started < 2
        assert "still dispatching" in caplog.text
        release.set()
        assert wait_until(lambda: not adapter.running, 5)

    def test_stop_without_drain_discards_queued_events(self, make_adapter, dispatch: str) -> None:
        thread_mode_only(dispatch, "inline, a blocked handler stops the producer, so nothing queues")
        gate = threading.Event()
        seen: list[mrt.Event] = []
        source = SyntheticSource(["T.*"], seed=1, rate=None, queue_size=1000)
        adapter = make_adapter(source)
        adapter.on(mrt.EquityTrade, lambda e: (seen.append(e), gate.wait(5)))
        adapter.start()
        assert wait_until(lambda: len(seen) == 1 and source.stats().queued > 100, 5)
        stopper = threading.Thread(target=adapter.stop, kwargs={"drain": False}, name="test-stopper", daemon=True)
        stopper.start()
        gate.set()
        stopper.join(5)
        assert len(seen) < source.stats().queued

    @pytest.mark.allow_errors(r"^dispatcher ended by KeyboardInterrupt$", logger="massive_rt.adapter")
    @pytest.mark.allow_errors(
        r"^a handler raised KeyboardInterrupt on a reader thread \(dispatch='(inline|adaptive)'\)",
        logger="massive_rt.adapter",
    )
    @pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
    def test_base_exceptions_are_not_swallowed(self, make_adapter) -> None:
        adapter = make_adapter(SyntheticSource(["T.*"], seed=1, rate=None))
        adapter.on(mrt.EquityTrade, lambda e: (_ for _ in ()).throw(KeyboardInterrupt()))
        adapter.start()
        assert wait_until(lambda: not adapter.running, 5)
        assert adapter.stats().handler_errors == 0
        # Stopped, on the dispatcher thread as on a reader: not "running" with nobody dispatching.
        assert wait_until(lambda: adapter.state is mrt.AdapterState.STOPPED, 5)
        with pytest.raises(mrt.ClientClosedError):
            adapter.subscribe("T.X")

    def test_stats_report_latency_percentiles(self, make_adapter) -> None:
        recorder = Recorder()
        adapter = make_adapter(SyntheticSource(["T.*"], seed=1, rate=20000), on_event=recorder).start()
        recorder.wait(500)
        stats = adapter.stats()
        assert stats.dispatched >= 500
        assert 0 <= stats.latency_us["p50"] <= stats.latency_us["p99"]
        assert stats.source.generated >= 500
