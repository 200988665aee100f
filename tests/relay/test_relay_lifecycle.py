"""Relay restarts, upstream drops, configuration, stats and the command line."""

from __future__ import annotations

import socket
import threading
import time

import pytest

import massive_rt as mrt
from massive_rt import relay as relay_module
from massive_rt.relay import MassiveRelay
from massive_rt.testing import MockMassiveServer
from tests.conftest import wait_until
from tests.relay._support import LOCAL_KEY, UP_KEY, event, mrt_key, take_until
from tests.relay.conftest import Clients, RawClients, Relays


def test_clients_reconnect_and_resubscribe_to_a_relay_restarted_on_the_same_port(
    upstream: MockMassiveServer, relays: Relays, clients: Clients
) -> None:
    first = relays()
    client = clients(first.url("stocks"), "T.AAPL", "Q.*")
    client.wait_ready(10)
    assert upstream.wait_for_subscribed({"T.AAPL", "Q.*"}, 10)
    upstream.publish([event("T", "AAPL", 1)])
    assert mrt_key(take_until(client, lambda e: mrt_key(e) is not None)[-1]) == ("T", "AAPL", 1)

    first.stop()
    assert not first.stats().running
    # The old upstream connection is gone before the new relay opens its own (one per account).
    assert upstream.wait_for(lambda: not upstream.active_connections(), 10)
    second = relays(port=first.port)
    assert second.port == first.port

    # The massive_rt client reconnects by itself and subscribes again; the new relay follows upstream.
    assert upstream.wait_for_subscribed({"T.AAPL", "Q.*"}, 10)
    assert second.wait_for(lambda: [c.subscriptions for c in second.active_connections()] == [{"T.AAPL", "Q.*"}], 10)
    upstream.publish([event("T", "MSFT", 2), event("Q", "MSFT", 3), event("T", "AAPL", 4)])
    after = take_until(client, lambda e: mrt_key(e) == ("T", "AAPL", 4))
    assert [k for k in map(mrt_key, after) if k is not None] == [("Q", "MSFT", 3), ("T", "AAPL", 4)]
    assert client.stats().reconnects >= 1
    assert upstream.max_concurrent(UP_KEY) == 1


def test_an_upstream_drop_is_invisible_downstream_but_for_disconnected_and_gap_statuses(
    upstream: MockMassiveServer, relay: MassiveRelay, clients: Clients, raw_clients: RawClients
) -> None:
    client = clients(relay.url("stocks"), "T.AAPL")
    client.wait_ready(10)
    raw = raw_clients(relay.url("stocks"))
    raw.auth()
    raw.subscribe("T.*")
    bystander = raw_clients(relay.url("stocks"))  # subscribed to nothing the drop concerns
    bystander.auth()
    bystander.subscribe("AM.*")
    assert upstream.wait_for_subscribed({"T.*", "AM.*"}, 10)
    upstream.publish([event("T", "AAPL", 1)])
    assert raw.recv() == [event("T", "AAPL", 1)]

    assert upstream.drop_all() == 1
    assert upstream.wait_for(lambda: len(upstream.connections) == 2, 10)
    assert upstream.wait_for_subscribed({"T.*", "AM.*"}, 10)  # the relay's pool resubscribed
    upstream.publish([event("T", "AAPL", 2), event("AM", "ZZZ", 3)])

    items = take_until(client, lambda e: mrt_key(e) == ("T", "AAPL", 2))
    statuses = [e for e in items if isinstance(e, mrt.StatusMessage) and e.from_server]
    assert [s.status for s in statuses] == ["disconnected", "gap"]
    assert "gap_start_ns=" in statuses[1].message
    assert "gap_end_ns=" in statuses[1].message
    assert [k for k in map(mrt_key, items) if k is not None] == [("T", "AAPL", 1), ("T", "AAPL", 2)]
    objects = raw.recv_until(lambda o: o.get("q") == 2)
    assert [o.get("status", o["ev"]) for o in objects] == ["disconnected", "gap", "T"]
    # Status objects look like Massive's (ev, status, message), plus the numbers as extra keys.
    assert set(objects[0]) == {"ev", "status", "message", "gap_start_ns"}
    assert set(objects[1]) == {"ev", "status", "message", "gap_start_ns", "gap_end_ns"}
    # AM.* lives on the same upstream connection, so the bystander hears of the gap too ...
    assert [o.get("status", o["ev"]) for o in bystander.recv_until(lambda o: o["ev"] == "AM")] == [
        "disconnected", "gap", "AM",
    ]  # fmt: skip
    # ... and nobody downstream was disconnected.
    assert client.stats().reconnects == 0
    assert len(relay.connections) == 3
    assert upstream.max_concurrent(UP_KEY) == 1


def test_upstream_subscription_errors_reach_the_subscribers_of_the_refused_channels(
    relays: Relays, raw_clients: RawClients
) -> None:
    with MockMassiveServer(api_keys={UP_KEY}, unentitled=["NOI"], name="picky") as picky:
        relay = relays(url=picky.url)
        asking = raw_clients(relay.url("stocks"))
        asking.auth()
        assert asking.subscribe("NOI.*,T.AAPL")[-1]["status"] == "success"  # the relay acks at once
        other = raw_clients(relay.url("stocks"))
        other.auth()
        other.subscribe("T.AAPL")
        objects = asking.recv_until(lambda o: o.get("status", "").startswith("upstream_"))
        assert objects[-1]["status"] == "upstream_subscription_error"
        assert "NOI.*" in objects[-1]["message"]
        assert picky.wait_for_subscribed("T.AAPL", 10)
        picky.publish([event("T", "AAPL", 7)])
        assert other.recv() == [event("T", "AAPL", 7)]  # not told about a channel it does not have
        relay.stop()


def test_stats_describe_the_relay_its_consumers_and_the_upstream_pool(
    upstream: MockMassiveServer, relays: Relays, raw_clients: RawClients
) -> None:
    relay = relays(name="edge", consumer_buffer=123)
    assert relay.url("crypto") == f"ws://127.0.0.1:{relay.port}/crypto"
    assert repr(relay) == f"MassiveRelay(name='edge', url='ws://127.0.0.1:{relay.port}/', running)"
    client = raw_clients(relay.url("stocks"))
    client.auth()
    client.subscribe("T.AAPL")
    assert upstream.wait_for_subscribed("T.AAPL", 10)
    # publish_raw_frames skips the upstream's routing: MSFT reaches the relay, which has no taker.
    assert upstream.publish_raw_frames(['[{"ev":"T","sym":"AAPL","q":1},{"ev":"T","sym":"MSFT","q":2}]']) == 1
    assert client.recv() == [{"ev": "T", "sym": "AAPL", "q": 1}]
    assert wait_until(lambda: relay.stats().events_sent == 1, 5)
    stats = relay.stats()
    assert (stats.name, stats.running, stats.downstream_connections, stats.upstream_channels) == ("edge", True, 1, 1)
    assert (stats.frames_in, stats.events_in, stats.events_unrouted, stats.events_dropped) == (1, 2, 1, 0)
    (consumer,) = stats.consumers
    assert (consumer.subscriptions, consumer.authenticated, consumer.closed) == ({"T.AAPL"}, True, False)
    assert (consumer.sent_events, consumer.sent_frames, consumer.dropped_events, consumer.buffered_events) == (
        1, 1, 0, 0,
    )  # fmt: skip
    assert consumer.sent_bytes > 0
    assert [c.name for c in stats.upstream.per_connection] == ["edge-upstream-stocks-1"]
    assert relay.upstream.name == "edge-upstream"
    assert relay.consumer_buffer == 123
    client.close()
    assert relay.wait_for(lambda: not relay.active_connections(), 5)
    assert [c.closed for c in relay.stats().consumers] == [True]


def test_keep_closed_bounds_what_a_long_running_relay_remembers(relays: Relays, raw_clients: RawClients) -> None:
    relay = relays(keep_closed=2)
    for _ in range(5):
        raw_clients(relay.url("stocks")).close()
    assert relay.wait_for(lambda: not relay.active_connections(), 5)
    assert [c.id for c in relay.connections] == ["c4", "c5"]


def test_lifecycle_context_manager_and_configuration_errors(upstream: MockMassiveServer) -> None:
    with MassiveRelay(api_key=UP_KEY, url=upstream.url, api_keys=[LOCAL_KEY]) as relay:
        assert relay.start() is relay  # idempotent
        assert relay.stats().running
    assert not relay.stats().running
    relay.stop()  # idempotent
    with pytest.raises(RuntimeError, match="stopped"):
        relay.start()
    pool = mrt.ConnectionPool(UP_KEY, url=upstream.url)
    with pytest.raises(mrt.ConfigurationError, match="either upstream= or api_key="):
        MassiveRelay(pool, api_key=UP_KEY)
    with pytest.raises(mrt.ConfigurationError, match="upstream="):
        MassiveRelay("not a pool")  # type: ignore[arg-type]
    for bad in ({"consumer_buffer": 0}, {"close_timeout": 0}, {"name": "two words"}, {"socket_buffer": 0}):
        with pytest.raises(mrt.ConfigurationError):
            MassiveRelay(api_key=UP_KEY, **bad)  # type: ignore[arg-type]
    with pytest.raises(mrt.ConfigurationError, match="api_key"):
        MassiveRelay(api_key="", url=upstream.url)


def test_a_port_in_use_fails_start_and_leaves_nothing_running(upstream: MockMassiveServer) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        relay = MassiveRelay(api_key=UP_KEY, url=upstream.url, port=taken.getsockname()[1])
        with pytest.raises(OSError):
            relay.start()
    assert not relay.stats().running  # and the autouse check finds no thread left


def test_main_runs_a_relay_until_stopped(upstream: MockMassiveServer, clients: Clients) -> None:
    lines: list[str] = []
    stop = threading.Event()
    codes: list[int] = []
    argv = ["--api-key", UP_KEY, "--upstream-url", upstream.url("{market}"), "--port", "0", "--keys", LOCAL_KEY,
            "--buffer", "5000"]  # fmt: skip
    runner = threading.Thread(target=lambda: codes.append(relay_module.main(argv, message=lines.append, stop=stop)))
    runner.start()
    try:
        assert wait_until(lambda: any("listening on" in line for line in lines), 10), lines
        url = lines[0].split("listening on ")[1].split(" ")[0].replace("{market}", "stocks")
        client = clients(url, "T.AAPL")
        client.wait_ready(10)
        assert upstream.wait_for_subscribed("T.AAPL", 10)
        upstream.publish([event("T", "AAPL", 5)])
        assert mrt_key(take_until(client, lambda e: mrt_key(e) is not None)[-1]) == ("T", "AAPL", 5)
        client.stop()
    finally:
        stop.set()
        runner.join(15)
    assert codes == [0]
    assert f"keys: {LOCAL_KEY}" in lines[1]
    assert "forwarded 1 upstream events, sent 1 to 1 client(s)" in lines[-1]


def test_main_reports_bad_arguments_and_unusable_ports(upstream: MockMassiveServer) -> None:
    lines: list[str] = []
    assert relay_module.main(["--max-connections", "0"], message=lines.append) == 2
    assert relay_module.main(["--api-key", ""], message=lines.append) == 2  # no key: the pool refuses
    assert "api_key" in lines[-1]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        code = relay_module.main(["--api-key", UP_KEY, "--port", port, "--duration", "0"], message=lines.append)
    assert code == 1
    assert "cannot listen on 127.0.0.1" in lines[-1]
    started = time.monotonic()
    assert relay_module.main(["--api-key", UP_KEY, "--port", "0", "--duration", "0.01"], message=lines.append) == 0
    assert time.monotonic() - started < 10


def test_main_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert relay_module.main(["--help"]) == 0
    assert "--upstream-url" in capsys.readouterr().out


def test_a_subscriber_of_a_channel_refused_upstream_when_the_relay_stops_is_refused(
    relay: MassiveRelay, raw_clients: RawClients
) -> None:
    client = raw_clients(relay.url("stocks"))
    client.auth()
    relay._closing()  # the moment stop() begins: no new upstream subscriptions
    assert client.subscribe("T.AAPL") == [{"ev": "status", "status": "error", "message": "not authorized"}]
