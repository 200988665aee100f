"""Readiness, the run loop and failures that end it: what a service embedding an adapter relies on."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator

import pytest

import massive_rt as mrt
from massive_rt.testing import MockMassiveServer
from tests.conftest import wait_until
from tests.support import FAST, KEY


@pytest.fixture
def cleanup() -> Iterator[Callable[[object], object]]:
    """Register anything with a ``stop()``; stopped after the test."""
    things: list[object] = []

    def register(thing: object) -> object:
        things.append(thing)
        return thing

    yield register
    for thing in reversed(things):
        thing.stop()  # type: ignore[attr-defined]


def adapter_on(source: object, cleanup: Callable[[object], object]) -> mrt.RealTimeDataAdapter:
    adapter = mrt.RealTimeDataAdapter(source)  # type: ignore[arg-type]
    cleanup(adapter)
    return adapter


# ----------------------------------------------------------------------------- wait_ready


class TestWaitReady:
    def test_returns_once_the_client_streams(self, server: MockMassiveServer, cleanup) -> None:
        client = mrt.MassiveWebSocketClient(api_key=KEY, url=server.url(), subscriptions=["T.AAPL"])
        adapter = adapter_on(client, cleanup).start()
        assert adapter.wait_ready(5) is adapter
        assert client.state is mrt.ConnectionState.STREAMING
        assert client.acked == {"T.AAPL"}

    @pytest.mark.allow_errors(r"failed: authentication failed$", logger="massive_rt.connection")
    def test_a_wrong_key_raises_the_typed_error_at_once(self, server: MockMassiveServer, cleanup) -> None:
        """The README snippet with a wrong key: today the service is told nothing."""
        adapter = adapter_on(mrt.MassiveWebSocketClient(api_key="wrong", url=server.url()), cleanup).start()
        with pytest.raises(mrt.AuthenticationError) as caught:
            adapter.wait_ready(5)
        assert adapter.state is mrt.AdapterState.FAILED  # at once, not once the status is dispatched
        assert adapter.error is caught.value
        assert not adapter.running
        with pytest.raises(mrt.AuthenticationError):
            adapter.wait_ready(5)  # and again, at once

    def test_times_out_with_a_timeout_error(self, cleanup) -> None:
        # A server that takes the TCP connection (the kernel's backlog) and never answers the upgrade.
        with socket.create_server(("127.0.0.1", 0)) as silent:
            url = f"ws://127.0.0.1:{silent.getsockname()[1]}/stocks"
            client = mrt.MassiveWebSocketClient(api_key=KEY, url=url, reconnect=FAST, connect_timeout=30)
            adapter = adapter_on(client, cleanup).start()
            with pytest.raises(mrt.WaitTimeoutError, match=r"not ready after 0\.3s") as caught:
                adapter.wait_ready(0.3)
            assert isinstance(caught.value, TimeoutError)
            adapter.stop()

    def test_before_start_and_after_stop_it_raises(self, server: MockMassiveServer) -> None:
        adapter = mrt.RealTimeDataAdapter(mrt.MassiveWebSocketClient(api_key=KEY, url=server.url()))
        with pytest.raises(mrt.ClientClosedError, match="call start"):
            adapter.wait_ready(1)
        adapter.stop()
        with pytest.raises(mrt.ClientClosedError, match="stopped"):
            adapter.wait_ready(1)

    def test_synthetic_source_is_ready_once_started(self, cleanup) -> None:
        adapter = adapter_on(mrt.SyntheticSource(["T.AAPL"], seed=1), cleanup).start()
        assert adapter.wait_ready(1) is adapter

    def test_a_pool_is_ready_when_every_connection_streams(self, server: MockMassiveServer, cleanup) -> None:
        pool = mrt.ConnectionPool(api_key=KEY, url=server.url, max_connections=2, max_subscriptions_per_connection=1)
        pool.subscribe("T.AAPL", "T.MSFT")
        adapter = adapter_on(pool, cleanup).start()
        adapter.wait_ready(5)
        assert [c.state for c in pool.connections] == [mrt.ConnectionState.STREAMING] * 2


# ----------------------------------------------------------------------------- failure


class TestFailure:
    @pytest.mark.allow_errors(r"failed: authentication failed$", logger="massive_rt.connection")
    def test_every_source_failed_is_an_adapter_failure(self, server: MockMassiveServer, cleanup) -> None:
        statuses: list[mrt.StatusMessage] = []
        done = threading.Event()
        adapter = adapter_on(mrt.MassiveWebSocketClient(api_key="wrong", url=server.url()), cleanup)

        @adapter.on_status
        def record(status: mrt.StatusMessage) -> None:
            statuses.append(status)
            if status.status == "adapter_failed":
                done.set()

        adapter.start()
        assert done.wait(5)
        kinds = [s.status for s in statuses]
        assert kinds.index("failed") < kinds.index("adapter_failed")  # the connection's own status first
        final = statuses[-1]
        assert final.state is mrt.AdapterState.FAILED
        assert isinstance(final.error, mrt.AuthenticationError)
        assert "every connection of the source failed for good" in final.message
        stats = adapter.stats()
        assert (stats.state, stats.running, stats.healthy) == (mrt.AdapterState.FAILED, False, False)
        assert stats.error == "authentication failed"
        assert stats.health_reason == "adapter failed: authentication failed"

    @pytest.mark.allow_errors(r"failed: authentication failed$", logger="massive_rt.connection")
    def test_a_pool_with_one_failed_member_is_degraded_not_failed(self, cleanup) -> None:
        with MockMassiveServer(api_keys={KEY}) as good, MockMassiveServer(api_keys={"other"}) as refusing:
            urls = {mrt.Market.STOCKS: good.url("stocks"), mrt.Market.CRYPTO: refusing.url("crypto")}
            pool = mrt.ConnectionPool(api_key=KEY, url=urls.__getitem__, max_connections=2)
            pool.subscribe("T.AAPL")
            pool.subscribe("XT.BTC-USD", market="crypto")
            statuses: list[str] = []
            adapter = adapter_on(pool, cleanup)
            adapter.on_status(lambda s: statuses.append(s.status))
            adapter.start()
            assert wait_until(lambda: "failed" in statuses, 5)
            stocks, crypto = pool.connections
            assert stocks.wait_ready(5) is stocks
            stats = pool.stats()
            assert stats.failed == (crypto.name,)
            assert stats.degraded is True
            assert stats.healthy is False
            assert crypto.name in (stats.health_reason or "")
            assert pool.error is None
            assert adapter.state is mrt.AdapterState.RUNNING
            assert adapter.running
            assert "adapter_failed" not in statuses
            with pytest.raises(mrt.AuthenticationError):
                adapter.wait_ready(1)  # not every connection streams, and one never will

    @pytest.mark.allow_errors(r"failed: authentication failed$", logger="massive_rt.connection")
    def test_a_pool_whose_every_member_failed_fails_the_adapter(self, cleanup) -> None:
        with MockMassiveServer(api_keys={"other"}) as refusing:
            pool = mrt.ConnectionPool(api_key=KEY, url=refusing.url, max_connections=2,
                                      max_subscriptions_per_connection=1)  # fmt: skip
            pool.subscribe("T.AAPL", "T.MSFT")
            adapter = adapter_on(pool, cleanup).start()
            assert wait_until(lambda: adapter.state is mrt.AdapterState.FAILED, 5)
            assert isinstance(adapter.error, mrt.AuthenticationError)
            assert isinstance(pool.error, mrt.AuthenticationError)
            stats = pool.stats()
            assert len(stats.failed) == 2
            assert stats.degraded is False

    @pytest.mark.allow_errors(
        r"failed: refused at connect: the account's connection limit is reached",
        logger="massive_rt.connection",
    )
    def test_new_channels_never_land_on_a_connection_that_failed_for_good(self) -> None:
        with MockMassiveServer(api_keys={KEY}, max_connections=1, evict="newest") as srv:
            pool = mrt.ConnectionPool(api_key=KEY, url=srv.url, max_connections=2, max_subscriptions_per_connection=1)
            try:
                pool.subscribe("T.A")
                pool.start().wait_ready(5)
                pool.subscribe("T.B")  # a second connection: refused by the account's limit, for good
                refused = pool.connections[1]
                assert wait_until(lambda: refused.state is mrt.ConnectionState.FAILED, 5)
                with pytest.raises(mrt.SubscriptionError):
                    pool.subscribe("T.C")  # no room: the only other connection is full
                assert pool.assignment("T.C") is None
                assert refused.subscriptions == {"T.B"}
            finally:
                pool.stop()


# ----------------------------------------------------------------------------- run_forever


class TestRunForever:
    def test_stop_from_another_thread_returns(self, server: MockMassiveServer) -> None:
        adapter = mrt.RealTimeDataAdapter(mrt.MassiveWebSocketClient(api_key=KEY, url=server.url()))
        started = threading.Event()
        adapter.on_status(lambda s: s.state is mrt.ConnectionState.STREAMING and started.set())
        stopper = threading.Thread(target=lambda: started.wait(5) and adapter.stop(), name="test-stopper")
        stopper.start()
        adapter.run_forever()  # blocks until the other thread stops it
        stopper.join(5)
        assert adapter.state is mrt.AdapterState.STOPPED
        assert not adapter.running

    def test_stop_from_a_handler_returns(self, cleanup) -> None:
        adapter = mrt.RealTimeDataAdapter(mrt.SyntheticSource(["T.*"], seed=2, rate=None))
        seen: list[mrt.Event] = []

        @adapter.on(mrt.EquityTrade)
        def enough(trade: mrt.EquityTrade) -> None:
            seen.append(trade)
            if len(seen) == 100:
                adapter.stop()

        adapter.run_forever()
        assert len(seen) >= 100
        assert adapter.state is mrt.AdapterState.STOPPED

    def test_a_source_stopped_directly_ends_it(self, server: MockMassiveServer) -> None:
        client = mrt.MassiveWebSocketClient(api_key=KEY, url=server.url())
        adapter = mrt.RealTimeDataAdapter(client)
        adapter.on_status(lambda s: s.state is mrt.ConnectionState.STREAMING and client.stop())
        adapter.run_forever()  # returns: nothing more can come
        assert adapter.state is mrt.AdapterState.STOPPED

    def test_from_a_handler_it_refuses_to_wait_for_itself(self) -> None:
        adapter = mrt.RealTimeDataAdapter(mrt.SyntheticSource(["T.*"], seed=6))
        errors: list[BaseException] = []

        @adapter.on(mrt.EquityTrade)
        def nested(_trade: mrt.EquityTrade) -> None:
            try:
                adapter.run_forever()
            except mrt.ClientClosedError as exc:
                errors.append(exc)
            adapter.stop()

        adapter.run_forever()
        assert "from a handler" in str(errors[0])

    @pytest.mark.allow_errors(r"failed: authentication failed$", logger="massive_rt.connection")
    def test_a_failure_for_good_is_raised(self, server: MockMassiveServer) -> None:
        adapter = mrt.RealTimeDataAdapter(mrt.MassiveWebSocketClient(api_key="wrong", url=server.url()))
        with pytest.raises(mrt.AuthenticationError) as caught:
            adapter.run_forever()
        assert adapter.state is mrt.AdapterState.STOPPED  # it cleaned up after itself
        assert adapter.error is caught.value  # and still says why

    # The dispatcher thread ends by the SystemExit (by design: it is not swallowed); pytest reports that.
    @pytest.mark.allow_errors(r"^dispatcher ended by SystemExit$", logger="massive_rt.adapter")
    @pytest.mark.allow_errors(
        r"^a handler raised SystemExit on a reader thread \(dispatch='(inline|adaptive)'\)",
        logger="massive_rt.adapter",
    )
    @pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
    def test_system_exit_from_a_handler_ends_it(self) -> None:
        adapter = mrt.RealTimeDataAdapter(mrt.SyntheticSource(["T.*"], seed=3, rate=None))
        adapter.on(mrt.EquityTrade, lambda _trade: sys.exit(3))
        with pytest.raises(SystemExit):
            adapter.run_forever()
        assert adapter.state is mrt.AdapterState.STOPPED

    def test_off_the_main_thread_it_installs_no_signal_handler(self) -> None:
        before = signal.getsignal(signal.SIGTERM)
        adapter = mrt.RealTimeDataAdapter(mrt.SyntheticSource(["T.*"], seed=4))
        seen: list[object] = []
        running = threading.Event()
        adapter.on(mrt.EquityTrade, lambda _t: running.set())

        def run() -> None:
            adapter.run_forever()
            seen.append(signal.getsignal(signal.SIGTERM))

        thread = threading.Thread(target=run, name="test-runner")
        thread.start()
        assert running.wait(5)
        assert signal.getsignal(signal.SIGTERM) is before
        adapter.stop()
        thread.join(5)
        assert not thread.is_alive()
        assert seen == [before]

    @pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
    def test_a_signal_stops_it_cleanly_and_restores_the_handlers(self, signame: str) -> None:
        script = textwrap.dedent("""
            import json, os, signal, sys, threading
            import massive_rt as mrt

            def previous(signum, frame):
                pass

            signal.signal(signal.SIGTERM, previous)
            adapter = mrt.RealTimeDataAdapter(mrt.SyntheticSource(["T.*"], seed=5))
            signum = getattr(signal, sys.argv[1])
            sent = []

            @adapter.on(mrt.EquityTrade)
            def once(_trade):  # as a service manager would, once
                if not sent:
                    sent.append(signum)
                    os.kill(os.getpid(), signum)

            adapter.run_forever()
            print(json.dumps({
                "state": adapter.state.value,
                "threads": [t.name for t in threading.enumerate() if t.name.startswith("massive-rt-")],
                "sigterm_restored": signal.getsignal(signal.SIGTERM) is previous,
                "sigint_restored": signal.getsignal(signal.SIGINT) is signal.default_int_handler,
            }))
        """)
        env = {**os.environ, "PYTHONPATH": os.getcwd()}
        proc = subprocess.run([sys.executable, "-c", script, signame], capture_output=True, text=True, timeout=30,
                              env=env, check=False)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout)
        assert report == {"state": "stopped", "threads": [], "sigterm_restored": True, "sigint_restored": True}


# ----------------------------------------------------------------------------- misuse


class TestMisuse:
    def test_consuming_a_client_that_was_never_started_raises_at_once(self, server: MockMassiveServer) -> None:
        client = mrt.MassiveWebSocketClient(api_key=KEY, url=server.url())
        for use in (lambda: client.get(timeout=None), lambda: client.iter_events(), lambda: client.drain()):
            with pytest.raises(mrt.ClientClosedError, match=r"call start\(\) first"):
                use()  # today get() and iter_events() hang forever
        client.stop()

    def test_consuming_a_synthetic_source_that_was_never_started_raises_at_once(self) -> None:
        source = mrt.SyntheticSource(["T.*"])
        with pytest.raises(mrt.ClientClosedError, match=r"call start\(\) first"):
            source.get(timeout=None)
        with pytest.raises(mrt.ClientClosedError, match=r"call start\(\) first"):
            source.iter_events()
        source.stop()

    def test_subscribing_after_stop_raises(self, server: MockMassiveServer) -> None:
        client = mrt.MassiveWebSocketClient(api_key=KEY, url=server.url())
        adapter = mrt.RealTimeDataAdapter(mrt.SyntheticSource(["T.*"]))
        source = mrt.SyntheticSource(["T.*"])
        client.start()
        for thing in (client, adapter, source):
            thing.stop()
        calls: list[Callable[[], object]] = [
            lambda: client.subscribe("T.AAPL"), lambda: client.unsubscribe("T.AAPL"), client.unsubscribe_all,
            lambda: adapter.subscribe("T.AAPL"), lambda: adapter.unsubscribe("T.AAPL"),
            lambda: source.subscribe("T.AAPL"), lambda: source.unsubscribe("T.AAPL"), source.unsubscribe_all,
        ]  # fmt: skip
        for call in calls:
            with pytest.raises(mrt.ClientClosedError, match="stopped"):
                call()

    @pytest.mark.parametrize("key", ["t", "trade", "ZZ", 5, "", None, int])
    def test_on_refuses_what_can_never_match(self, key: object) -> None:
        adapter = mrt.RealTimeDataAdapter(mrt.SyntheticSource(["T.*"]))
        with pytest.raises(mrt.ConfigurationError, match="key=") as caught:
            adapter.on(key, print)  # type: ignore[call-overload]
        assert caught.value.field == "key"
        if isinstance(key, str):
            assert "A, AM, C, CA, CAS, FMV, LULD, LV, NOI, Q, T, V, XA" in caught.value.message  # the known codes
        adapter.stop()

    def test_on_accepts_classes_codes_and_the_wildcard_and_refuses_a_non_callable(self) -> None:
        adapter = mrt.RealTimeDataAdapter(mrt.SyntheticSource(["T.*"]))
        for key in (mrt.EquityTrade, mrt.Event, mrt.StatusMessage, "*", "T", "XL2", "LULD", "V", "FMV"):
            adapter.on(key, print)
        with pytest.raises(mrt.ConfigurationError, match="not callable"):
            adapter.on("T", "print")  # type: ignore[call-overload]
        adapter.stop()

    def test_a_pool_validates_its_options_without_a_throwaway_client(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG, logger="massive_rt")
        pool = mrt.ConnectionPool(api_key=KEY, url="ws://127.0.0.1:9/{market}", client_options={"queue_size": 10})
        assert caplog.records == []  # today: "[pool-check] state stopped: stopped"
        with pytest.raises(mrt.ConfigurationError, match="queue_size") as bad:
            mrt.ConnectionPool(api_key=KEY, client_options={"queue_size": 0})
        assert bad.value.field == "queue_size"
        with pytest.raises(mrt.ConfigurationError, match="unknown option") as unknown:
            mrt.ConnectionPool(api_key=KEY, client_options={"queue_sise": 10})
        assert unknown.value.field == "client_options"
        with pytest.raises(mrt.ConfigurationError, match="api_key is required"):
            mrt.ConnectionPool(api_key="", client_options={})
        pool.stop()
