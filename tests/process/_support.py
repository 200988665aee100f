"""Helpers for the process-model tests: a ticker publishing moving prices, a real gunicorn run in its
own process group, and an HTTP client for gunicorn's unix socket."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from massive_rt.testing import MockMassiveServer

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "gunicorn_flask"
SYMBOLS = ("AAPL", "MSFT", "NVDA")
UP_KEY = "gunicorn-up-key"  # the upstream (Massive) key


def clean_env(**extra: str) -> dict[str, str]:
    """The test environment without MASSIVE_*, pytest's and gunicorn's own variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MASSIVE_", "PYTEST_", "GUNICORN_", "PRICE_FEED"))}
    env.pop("WEB_CONCURRENCY", None)
    env.update(extra)
    return env


class Ticker:
    """Publishes one trade per symbol every ``interval`` seconds from a thread; prices only rise
    (100.00, 100.01, ... one cent per round), so a later price proves a later trade."""

    def __init__(self, server: MockMassiveServer, symbols: Sequence[str] = SYMBOLS, interval: float = 0.02) -> None:
        self.server, self.symbols, self.interval = server, tuple(symbols), interval
        self.rounds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-ticker", daemon=True)

    @staticmethod
    def price(round_: int) -> float:
        return round(100 + round_ / 100, 2)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.rounds += 1
            now_ms = time.time_ns() // 1_000_000
            self.server.publish([
                {"ev": "T", "sym": sym, "x": 4, "i": str(self.rounds), "z": 3, "p": self.price(self.rounds), "s": 100,
                 "t": now_ms, "q": self.rounds}
                for sym in self.symbols
            ])  # fmt: skip
            self._stop.wait(self.interval)  # the publishing rate; nothing waits on this

    def __enter__(self) -> Ticker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        assert not self._thread.is_alive(), "the ticker thread did not stop"


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix socket (gunicorn's ``--bind unix:PATH``): no TCP port to race for."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Answer:
    """One HTTP answer: status, the JSON body (``None`` if it was not JSON) and the raw text."""

    def __init__(self, status: int, text: str) -> None:
        self.status, self.text = status, text
        try:
            self.json: Any = json.loads(text)
        except ValueError:
            self.json = None

    @property
    def pid(self) -> int | None:
        return self.json.get("pid") if isinstance(self.json, dict) else None

    def __repr__(self) -> str:
        return f"Answer({self.status}, {self.text[:300]!r})"


class Gunicorn:
    """``python -m gunicorn ARGS`` in its own session (process group), bound to a unix socket.

    Its stdout and stderr (one stream) are read by a thread into :attr:`lines`;
    :meth:`wait_for_line` waits on a condition for a line to appear. :meth:`stop` always ends
    the master and every worker: SIGTERM to the master, then SIGKILL to the group.
    """

    def __init__(self, args: Sequence[str], socket_path: str, env: Mapping[str, str]) -> None:
        self.socket_path = socket_path
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._eof = False
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--bind", f"unix:{socket_path}", "--no-control-socket",
             "--graceful-timeout", "5", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(env), cwd=ROOT,
            start_new_session=True,
        )  # fmt: skip
        self._pump = threading.Thread(target=self._read, name="test-gunicorn-output", daemon=True)
        self._pump.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                with self._cond:
                    self.lines.append(line)
                    self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    @property
    def output(self) -> str:
        with self._cond:
            return "".join(self.lines)

    def wait_for_line(self, pattern: str, count: int = 1, timeout: float = 20.0) -> list[re.Match[str]]:
        """Wait until ``count`` lines match ``pattern``; return their matches (fails on timeout or exit)."""
        regex = re.compile(pattern)

        def found() -> list[re.Match[str]]:
            return [m for line in self.lines if (m := regex.search(line))]

        with self._cond:
            self._cond.wait_for(lambda: len(found()) >= count or self._eof, timeout)
            matches = found()
        assert len(matches) >= count, (
            f"{count} line(s) matching {pattern!r} expected, {len(matches)} seen "
            f"(gunicorn exit code {self.proc.poll()}):\n{self.output[-4000:]}"
        )
        return matches

    def worker_pids(self, count: int, timeout: float = 20.0) -> list[int]:
        """Pids of the first ``count`` workers gunicorn booted, in boot order."""
        return [int(m.group(1)) for m in self.wait_for_line(r"Booting worker with pid: (\d+)", count, timeout)]

    def get(self, path: str, timeout: float = 5.0) -> Answer:
        conn = UnixHTTPConnection(self.socket_path, timeout)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return Answer(response.status, response.read().decode("utf-8", "replace"))
        finally:
            conn.close()

    def stop(self, timeout: float = 20.0) -> int | None:
        """End gunicorn (idempotent): SIGTERM to the master, SIGKILL to its process group if it is
        still there after ``timeout``; then SIGKILL any process still in the group. Returns the
        master's exit code."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                # The master is still alive (not reaped), so the group id is still ours.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        for pid in _group_members(self.proc.pid):  # workers left without their master
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._pump.join(10)
        return self.proc.returncode


GunicornFactory = Callable[..., Gunicorn]


def _group_members(pgid: int) -> list[int]:
    """Live gunicorn processes of process group ``pgid`` (Linux /proc; empty elsewhere)."""
    members = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if os.getpgid(int(entry.name)) == pgid and b"gunicorn" in (entry / "cmdline").read_bytes():
                members.append(int(entry.name))
        except (OSError, ValueError):
            continue
    return members
