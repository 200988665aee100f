"""Helpers of the hardening suite: a sentinel round trip on a live client, a raw WebSocket server
for faults the mock cannot script, a minimal HTTP CONNECT proxy, and subprocess/process probes.

Every thread started here is a named daemon (``massive-rt-test-*``), so the suite's autouse
check fails a test that leaks one.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import os
import selectors
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hypothesis import settings

import massive_rt as mrt
from massive_rt.consumer import fast_loads
from massive_rt.framing import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, FrameParser
from massive_rt.protocol import parse_control, split_params
from massive_rt.testing import MockMassiveServer

KEY = "hardening-key-5c1f0e"
FAST = mrt.ReconnectPolicy(initial_delay=0.01, max_delay=0.05, reset_after=60.0)
SENTINEL = "ZZSENTINEL"
REPO = Path(__file__).resolve().parents[2]


def fuzz_settings() -> settings:
    """The hypothesis budget of this suite: ``$HYPOTHESIS_PROFILE`` if it is ours, else ``hardening``."""
    name = os.environ.get("HYPOTHESIS_PROFILE", "hardening")
    return settings.get_profile(name if name in ("hardening", "deep") else "hardening")


def trade(seq: int, symbol: str = SENTINEL, **fields: Any) -> dict[str, Any]:
    """A valid stock trade (``T``) with a unique sequence number."""
    return {"ev": "T", "sym": symbol, "x": 4, "i": f"t{seq}", "z": 3, "p": 100.5, "s": 10, "c": [0],
            "t": 1_700_000_000_000 + seq, "q": seq, **fields}  # fmt: skip


def is_decode_error(event: object) -> bool:
    return isinstance(event, mrt.StatusMessage) and event.status == "decode_error"


def expected_accounting(payload: bytes) -> tuple[int, int] | None:
    """``(objects, decode_errors)`` the client must deliver for one frame, per the documented
    rules: a JSON array yields one event per element (an object → an event, anything else → a
    ``decode_error``), a bare object one event, anything else one ``decode_error``.

    None when the frame holds status objects (``"ev": "status"``), which the reader may act on.
    """
    try:
        value = fast_loads(payload)
    except (ValueError, TypeError, RecursionError):
        return 0, 1
    if type(value) is dict:
        value = [value]
    if type(value) is not list:
        return 0, 1
    if any(type(item) is dict and item.get("ev") == "status" for item in value):
        return None
    objects = sum(1 for item in value if type(item) is dict)
    return objects, len(value) - objects


def until_streaming(client: mrt.MassiveWebSocketClient, timeout: float = 10.0) -> list[mrt.Event]:
    """Consume events up to and including the next ``state``/STREAMING status; return them."""
    seen: list[mrt.Event] = []
    for event in client.iter_events(timeout=timeout):
        seen.append(event)
        if isinstance(event, mrt.StatusMessage) and event.state is mrt.ConnectionState.STREAMING:
            return seen
    raise AssertionError(f"no STREAMING status within {timeout}s: {seen!r}")


class Stream:
    """A streaming client on a mock server, with a sentinel round trip after each hostile frame."""

    def __init__(self, server: MockMassiveServer, client: mrt.MassiveWebSocketClient) -> None:
        self.server = server
        self.client = client
        self._seq = itertools.count(1)
        until_streaming(client)  # the connection's own state statuses are not part of any round trip

    def roundtrip(self, send: Callable[[], object], timeout: float = 15.0) -> list[mrt.Event]:
        """Run ``send()`` (which writes hostile frames), then publish a sentinel trade and consume
        until it arrives. Returns the events in between.

        Asserts what every fault must leave intact: the sentinel arrives, the connection is still
        the same STREAMING session, and every ``decode_error`` status is counted in ``stats()``.
        """
        before = self.client.stats()
        send()
        seq = next(self._seq)
        assert self.server.publish([trade(seq)]) == 1, "the sentinel found no subscriber"
        events: list[mrt.Event] = []
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"sentinel {seq} never arrived; got {events[-5:]!r}"
            event = self.client.get(timeout=remaining)
            if isinstance(event, mrt.EquityTrade) and event.symbol == SENTINEL and event.sequence_number == seq:
                break
            events.append(event)
        after = self.client.stats()
        assert after.state is mrt.ConnectionState.STREAMING, after
        assert after.reconnects == before.reconnects, f"reconnected: {after.last_error}"
        reported = sum(1 for e in events if is_decode_error(e))
        assert after.decode_errors - before.decode_errors == reported
        return events


# ------------------------------------------------------------------------------------------------
# A raw WebSocket server: plain sockets, so a test can script what no real server library sends.

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def encode_frame(payload: bytes, opcode: int = OP_TEXT, *, fin: bool = True, rsv: int = 0) -> bytes:
    """One unmasked server frame; ``rsv`` sets the reserved bits (a protocol violation)."""
    head = (0x80 if fin else 0) | (rsv & 0x7) << 4 | opcode
    n = len(payload)
    if n < 126:
        return bytes((head, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", head, 126, n) + payload
    return struct.pack("!BBQ", head, 127, n) + payload


class RawConnection:
    """One accepted TCP connection of a :class:`RawServer`, driven by the test's script."""

    def __init__(self, server: RawServer, sock: socket.socket, index: int) -> None:
        self.server = server
        self.sock = sock
        self.index = index
        self.messages: list[tuple[int, bytes]] = []  # every message the client sent, in order
        self._parser = FrameParser(1 << 24)
        self._pending: deque[tuple[int, bytes]] = deque()

    @property
    def close_codes(self) -> list[int]:
        return [int.from_bytes(p[:2], "big") for op, p in self.messages if op == OP_CLOSE and len(p) >= 2]

    @property
    def controls(self) -> list[tuple[str, str]]:
        return [c for op, p in self.messages if op == OP_TEXT and (c := parse_control(p)) is not None]

    def handshake(self) -> None:
        """Answer the HTTP upgrade (101) without looking at anything but the key."""
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("client went away during the handshake")
            head += chunk
        key = next(line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key:"))  # fmt: skip
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())  # RFC 6455 mandates SHA-1
        self.sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")  # fmt: skip

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_json(self, value: Any) -> None:
        self.sock.sendall(encode_frame(json.dumps(value).encode()))

    def send_status(self, status: str, message: str) -> None:
        self.send_json([{"ev": "status", "status": status, "message": message}])

    def recv(self, timeout: float = 30.0) -> tuple[int, bytes] | None:
        """Next message from the client; None on EOF, reset, timeout or server close."""
        deadline = time.monotonic() + timeout
        while not self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except OSError:
                return None
            if not data:
                return None
            self._parser.feed(data)
            self._pending.extend(self._parser.messages())
        message = self._pending.popleft()
        self.messages.append(message)
        self.server.notify()
        return message

    def drain_until_closed(self, timeout: float = 30.0) -> None:
        """Record what the client sends (answering pings) until it closes or goes away."""
        while (message := self.recv(timeout)) is not None:
            if message[0] == OP_PING:
                self.sock.sendall(encode_frame(message[1], OP_PONG))
            elif message[0] == OP_CLOSE:
                return

    def serve_massive(self) -> None:
        """Behave like a healthy Massive endpoint: greet, accept any key, ack every channel."""
        self.send_status("connected", "Connected Successfully")
        while (message := self.recv()) is not None:
            opcode, payload = message
            if opcode == OP_PING:
                self.sock.sendall(encode_frame(payload, OP_PONG))
            elif opcode == OP_CLOSE:
                return
            elif (control := parse_control(payload)) is not None:
                action, params = control
                if action == "auth":
                    self.send_status("auth_success", "authenticated")
                elif action in ("subscribe", "unsubscribe"):
                    verb = "subscribed to" if action == "subscribe" else "unsubscribed to"
                    self.send_json([{"ev": "status", "status": "success", "message": f"{verb}: {channel}"}
                                    for channel in split_params(params)])  # fmt: skip

    def reset(self) -> None:
        """Abort the TCP connection with an RST (SO_LINGER 0), like a crashed peer or middlebox."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


class RawServer:
    """A TCP server on 127.0.0.1 that runs ``script(connection)`` for each accepted connection
    (in its own thread); the script decides every byte the client gets."""

    def __init__(self, script: Callable[[RawConnection], None]) -> None:
        self._script = script
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self.connections: list[RawConnection] = []
        self.errors: list[BaseException] = []
        self._closed = False
        self._acceptor = threading.Thread(target=self._accept, name="massive-rt-test-raw-accept", daemon=True)

    def __enter__(self) -> RawServer:
        self._acceptor.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def url(self, market: str = "stocks") -> str:
        return f"ws://127.0.0.1:{self.port}/{market}"

    def notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def _accept(self) -> None:
        for index in itertools.count():
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            conn = RawConnection(self, sock, index)
            thread = threading.Thread(target=self._serve, args=(conn,), name="massive-rt-test-raw-conn", daemon=True)
            with self._cond:
                if self._closed:
                    sock.close()
                    return
                self.connections.append(conn)
                self._threads.append(thread)
                self._cond.notify_all()
            thread.start()

    def _serve(self, conn: RawConnection) -> None:
        try:
            self._script(conn)
        except OSError:
            pass  # the client went away: that is the client's right
        except BaseException as exc:  # a broken script must fail the test, not vanish
            self.errors.append(exc)
        finally:
            with contextlib.suppress(OSError):
                conn.sock.close()
            self.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            conns, threads = list(self.connections), list(self._threads)
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept() on Linux
        self._listener.close()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
        if self._acceptor.ident is not None:
            self._acceptor.join(5)
        for thread in threads:
            thread.join(5)


# ------------------------------------------------------------------------------------------------
# A minimal HTTP CONNECT proxy.


class ConnectProxy:
    """Accepts ``CONNECT host:port``, records it (with its headers), and pipes bytes both ways."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.bytes_up = 0
        self.bytes_down = 0
        self.first_up = b""  # the first bytes the client sent through the tunnel
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, name="massive-rt-test-proxy-accept", daemon=True)

    def __enter__(self) -> ConnectProxy:
        self._acceptor.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            sockets, threads = list(self._sockets), list(self._threads)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._acceptor.join(5)
        for thread in threads:
            thread.join(5)
        for sock in sockets:
            sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._tunnel, args=(client,), name="massive-rt-test-proxy-pipe",
                                      daemon=True)  # fmt: skip
            with self._lock:
                self._sockets.append(client)
                self._threads.append(thread)
            thread.start()

    def _tunnel(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk:
                return
            head += chunk
        head, _, early = head.partition(b"\r\n\r\n")
        request, *lines = head.decode("latin-1").split("\r\n")
        method, target, _version = request.split(" ")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        with self._lock:
            self.requests.append((target, headers))
        if method != "CONNECT":
            client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        host, _, port = target.rpartition(":")
        upstream = socket.create_connection((host, int(port)), timeout=5)
        upstream.settimeout(None)
        with self._lock:
            self._sockets.append(upstream)
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        if early:
            upstream.sendall(early)
        self._pipe(client, upstream)

    def _pipe(self, client: socket.socket, upstream: socket.socket) -> None:
        peer = {client: upstream, upstream: client}
        open_ends = 2
        with selectors.DefaultSelector() as selector:
            selector.register(client, selectors.EVENT_READ)
            selector.register(upstream, selectors.EVENT_READ)
            while open_ends:
                for key, _ in selector.select():
                    source = key.fileobj
                    assert isinstance(source, socket.socket)
                    try:
                        data = source.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        selector.unregister(source)
                        open_ends -= 1
                        with contextlib.suppress(OSError):
                            peer[source].shutdown(socket.SHUT_WR)
                        continue
                    with self._lock:
                        if source is client:
                            if not self.bytes_up:
                                self.first_up = data[:4096]
                            self.bytes_up += len(data)
                        else:
                            self.bytes_down += len(data)
                    try:
                        peer[source].sendall(data)
                    except OSError:
                        return


# ------------------------------------------------------------------------------------------------
# Subprocesses and process probes.


def python(code: str, *args: str, stdin: int | None = subprocess.DEVNULL) -> subprocess.Popen[str]:
    """Start ``python -c code args...`` in the repository root with pipes for stdout/stderr."""
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The next stdout line of ``proc`` within ``timeout`` seconds ("" on EOF)."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise AssertionError(f"no output from the subprocess within {timeout}s")
    return proc.stdout.readline()


@contextlib.contextmanager
def server_process(**options: Any) -> Iterator[str]:
    """A MockMassiveServer in its own process (so its threads and memory are not ours); yields
    its stocks URL and stops it when the block ends."""
    code = (
        "import sys, json\n"
        "from massive_rt.testing import MockMassiveServer\n"
        "with MockMassiveServer(**json.loads(sys.argv[1])) as server:\n"
        "    print(server.url('stocks'), flush=True)\n"
        "    sys.stdin.read()\n"
    )
    proc = python(code, json.dumps(options), stdin=subprocess.PIPE)
    try:
        url = read_line(proc, 20).strip()
        assert url.startswith("ws://"), f"server process failed: {url!r} {proc.stderr.read() if proc.stderr else ''}"
        yield url
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
