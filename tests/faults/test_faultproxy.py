"""FaultProxy itself: a real TCP proxy on 127.0.0.1 in front of an echo server, a firehose and
MockMassiveServer, each fault observed from a real client socket."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator

import pytest

import massive_rt as mrt
from massive_rt.testing import Direction, FaultProxy, Faults, MockMassiveServer
from tests.conftest import wait_until

KEY = "test-key"
FAST = mrt.ReconnectPolicy(initial_delay=0.01, max_delay=0.05)


@pytest.fixture
def proxy_to(request: pytest.FixtureRequest) -> Iterator[FaultProxy]:
    """A proxy in front of the fixture named by the test's ``upstream`` parameter."""
    upstream = request.getfixturevalue(request.param)
    with FaultProxy(upstream.server_address, seed=1) as proxy:
        yield proxy


def connect(proxy: FaultProxy) -> socket.socket:
    sock = socket.create_connection(proxy.address, timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_exactly(sock: socket.socket, count: int) -> bytes:
    data = bytearray()
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        assert chunk, f"closed after {len(data)} of {count} bytes"
        data += chunk
    return bytes(data)


def read_until_error(sock: socket.socket) -> tuple[bytes, BaseException | None]:
    """Everything the peer sends until it closes (None) or the connection fails (the error)."""
    data = bytearray()
    while True:
        try:
            chunk = sock.recv(65536)
        except OSError as exc:
            return bytes(data), exc
        if not chunk:
            return bytes(data), None
        data += chunk


def nothing_arrives(sock: socket.socket, within: float) -> bool:
    readable, _, _ = select.select([sock], [], [], within)
    return not readable


@pytest.mark.parametrize("proxy_to", ["echo_server"], indirect=True)
class TestForwarding:
    def test_forwards_both_ways_and_counts_bytes(self, proxy_to: FaultProxy) -> None:
        payload = bytes(range(256)) * 400  # 100 KB
        with connect(proxy_to) as sock:
            sender = threading.Thread(target=sock.sendall, args=(payload,), name="test-sender")
            sender.start()
            assert read_exactly(sock, len(payload)) == payload
            sender.join(5)

        def counted() -> tuple[int, int, int]:
            stats = proxy_to.stats()
            return (stats.connections, stats.bytes_upstream, stats.bytes_downstream)

        assert wait_until(lambda: counted() == (1, len(payload), len(payload))), counted()

    def test_a_half_close_still_gets_the_answer_in_flight(self, proxy_to: FaultProxy) -> None:
        proxy_to.set_faults(Direction.DOWNSTREAM, latency=0.3)  # the echo is still in the proxy at EOF
        with connect(proxy_to) as sock:
            sock.sendall(b"last words")
            sock.shutdown(socket.SHUT_WR)  # done sending, still reading: TCP half-close
            assert read_until_error(sock) == (b"last words", None)

    def test_one_byte_segments_deliver_the_same_bytes(self, proxy_to: FaultProxy) -> None:
        proxy_to.set_faults(Direction.BOTH, segment=1)
        with connect(proxy_to) as sock:
            sock.sendall(b"hello, segmented world")
            assert read_exactly(sock, 22) == b"hello, segmented world"

    def test_latency_delays_each_direction(self, proxy_to: FaultProxy) -> None:
        proxy_to.set_faults("both", latency=0.2, jitter=0.05)
        with connect(proxy_to) as sock:
            started = time.monotonic()
            sock.sendall(b"ping")
            assert read_exactly(sock, 4) == b"ping"
            assert time.monotonic() - started >= 0.4  # held 0.2 s each way, never less

    def test_throttle_bounds_the_rate(self, proxy_to: FaultProxy) -> None:
        proxy_to.set_faults(Direction.DOWNSTREAM, throttle=20_000)
        with connect(proxy_to) as sock:
            started = time.monotonic()
            sock.sendall(b"z" * 10_000)
            read_exactly(sock, 10_000)
            # At most 1,000 bytes (50 ms worth) go at once; the other 9,000 need 0.45 s at 20 KB/s.
            assert time.monotonic() - started >= 0.44

    def test_reset_after_bytes_cuts_the_stream_there_with_a_rst(self, proxy_to: FaultProxy) -> None:
        with connect(proxy_to) as sock:
            sock.sendall(b"a")
            read_exactly(sock, 1)
            assert proxy_to.reset(after_bytes=100) == 1
            sock.sendall(b"b" * 1000)
            data, error = read_until_error(sock)
        # Exactly 100 more bytes left the proxy; the client read them unless the RST overtook them
        # (Linux discards unread bytes when a RST arrives, as it does on a real network).
        assert wait_until(lambda: proxy_to.stats().bytes_downstream == 1 + 100), proxy_to.stats()
        assert len(data) <= 100
        assert data == b"b" * len(data)
        assert isinstance(error, ConnectionResetError)
        assert wait_until(lambda: proxy_to.stats().resets == 1 and proxy_to.stats().active == 0)

    def test_reset_now_sends_a_rst(self, proxy_to: FaultProxy) -> None:
        with connect(proxy_to) as sock:
            sock.sendall(b"a")
            read_exactly(sock, 1)
            assert proxy_to.reset() == 1
            data, error = read_until_error(sock)
        assert (data, type(error)) == (b"", ConnectionResetError)

    def test_blackhole_forwards_nothing_until_lifted(self, proxy_to: FaultProxy) -> None:
        with connect(proxy_to) as sock:
            proxy_to.set_faults(Direction.UPSTREAM, blackhole=True)
            sock.sendall(b"held")
            assert nothing_arrives(sock, 0.3)
            assert proxy_to.stats().bytes_upstream == 0
            proxy_to.set_faults(Direction.UPSTREAM, blackhole=False)
            assert read_exactly(sock, 4) == b"held"  # held, then delivered, as TCP retransmits

    def test_tarpit_accepts_and_never_connects_upstream(self, proxy_to: FaultProxy, echo_server) -> None:
        proxy_to.tarpit()
        with connect(proxy_to) as sock:
            sock.sendall(b"anyone?")
            assert nothing_arrives(sock, 0.3)
            assert (proxy_to.stats().tarpitted, echo_server.accepted) == (1, 0)
            assert proxy_to.reset() == 1
            assert isinstance(read_until_error(sock)[1], ConnectionResetError)
        proxy_to.tarpit(False)
        with connect(proxy_to) as sock:
            sock.sendall(b"x")
            assert read_exactly(sock, 1) == b"x"

    def test_outage_cuts_live_connections_and_refuses_new_ones(self, proxy_to: FaultProxy) -> None:
        with connect(proxy_to) as live:
            live.sendall(b"a")
            read_exactly(live, 1)
            assert proxy_to.outage(60) == 1
            assert isinstance(read_until_error(live)[1], ConnectionResetError)
        with pytest.raises(ConnectionResetError), socket.create_connection(proxy_to.address, timeout=5) as refused:
            refused.recv(1)
        assert proxy_to.stats().refused == 1
        proxy_to.clear_faults()
        with connect(proxy_to) as sock:
            sock.sendall(b"b")
            assert read_exactly(sock, 1) == b"b"

    def test_flap_cuts_every_connection_periodically(self, proxy_to: FaultProxy) -> None:
        proxy_to.flap(every=0.1)
        for _ in range(2):
            with connect(proxy_to) as sock:
                assert isinstance(read_until_error(sock)[1], ConnectionResetError)
        proxy_to.flap(None)
        assert proxy_to.stats().resets >= 2

    def test_close_stops_and_joins_every_thread(self, proxy_to: FaultProxy) -> None:
        proxy_to.flap(every=60)
        with connect(proxy_to) as sock:
            sock.sendall(b"a")
            read_exactly(sock, 1)
            names = {t.name for t in threading.enumerate() if t.name.startswith("massive-rt-faultproxy-")}
            assert len(names) == 4  # accept, flap, and the two directions of the connection
            proxy_to.close()
            assert not [t for t in threading.enumerate() if t.name in names and t.is_alive()]


@pytest.mark.parametrize("proxy_to", ["firehose"], indirect=True)
def test_a_blackholed_direction_holds_at_most_buffer_limit(proxy_to: FaultProxy, firehose) -> None:
    proxy = FaultProxy(firehose.server_address, buffer_limit=64 * 1024,
                       downstream_faults=Faults(blackhole=True))  # fmt: skip
    with proxy, connect(proxy):
        assert wait_until(lambda: proxy.stats().buffered_high_water == 64 * 1024)
        # The firehose is held back by TCP: it stops gaining once the kernel buffers fill.
        seen = [-1]

        def stalled() -> bool:
            done, seen[0] = firehose.sent == seen[0], firehose.sent
            return done

        assert wait_until(stalled, timeout=10, interval=0.2)
        assert proxy.stats().buffered_high_water == 64 * 1024
        assert proxy.stats().bytes_downstream == 0


def test_faults_are_validated() -> None:
    with pytest.raises(ValueError, match="segment must be > 0"):
        Faults(segment=0)
    with pytest.raises(ValueError, match="latency must be >= 0"):
        Faults(latency=-1)
    with pytest.raises(TypeError):
        FaultProxy(("127.0.0.1", 1)).set_faults("both", delay=1)


@pytest.mark.timeout(30)
def test_a_real_client_through_segments_latency_and_a_reset(fault_proxy: FaultProxy,
                                                            massive_server: MockMassiveServer) -> None:  # fmt: skip
    fault_proxy.set_faults(Direction.DOWNSTREAM, segment=1, latency=0.02, jitter=0.02)
    client = mrt.MassiveWebSocketClient(api_key=KEY, url=fault_proxy.url("stocks"), subscriptions=["T.AAPL"],
                                        reconnect=FAST)  # fmt: skip
    with client:
        client.wait_acked(["T.AAPL"], 10)
        massive_server.publish([{"ev": "T", "sym": "AAPL", "p": 1.0, "s": i, "t": 1} for i in range(1, 21)])
        sizes = []
        while len(sizes) < 20:
            event = client.get(timeout=10)
            if isinstance(event, mrt.EquityTrade):
                sizes.append(event.size)
        assert sizes == list(range(1, 21))
        fault_proxy.clear_faults()
        assert fault_proxy.reset() == 1
        assert wait_until(lambda: client.stats().reconnects == 1 and client.state is mrt.ConnectionState.STREAMING,
                          timeout=10)  # fmt: skip
    assert fault_proxy.stats().connections == 2
