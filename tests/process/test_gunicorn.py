"""massive_rt under real gunicorn: the examples/gunicorn_flask recipe, and the ``--preload`` mistake.

gunicorn runs as a subprocess (a master and sync workers) bound to a unix socket; upstream is a
MockMassiveServer that, like Massive, allows a limited number of connections per key and gets
trades of rising prices from a test thread. Which worker takes an HTTP connection is up to the
kernel and another process's state offers nothing to wait on, so the tests repeat requests in a
bounded loop (a short pause between them) until the workers they need have answered.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Callable, Collection

import pytest

from massive_rt.testing import MockMassiveServer
from tests.process._support import EXAMPLE, SYMBOLS, UP_KEY, Answer, Gunicorn, GunicornFactory, Ticker

pytest.importorskip("gunicorn", reason="gunicorn is in the dev extra (make install)")
pytest.importorskip("flask", reason="flask is in the dev extra (make install)")

pytestmark = pytest.mark.timeout(90)

CONF = str(EXAMPLE / "gunicorn.conf.py")
HERE = os.path.dirname(os.path.abspath(__file__))
CHANNELS = [f"T.{s}" for s in SYMBOLS]

Answers = dict[int, list[Answer]]


def answers_until(run: Gunicorn, path: str, done: Callable[[Answers], bool], timeout: float = 20.0) -> Answers:
    """GET ``path`` until ``done(answers by worker pid)``; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    got: Answers = {}
    while True:
        answer = run.get(path)
        assert answer.pid is not None, f"not a JSON answer with the worker's pid: {answer}"
        got.setdefault(answer.pid, []).append(answer)
        if done(got):
            return got
        assert time.monotonic() < deadline, f"{path}: not done after {timeout}s; last answers: " + repr(
            {pid: answers[-3:] for pid, answers in got.items()}
        )
        pause.wait(0.02)  # between requests: the data moves every 20 ms


def moving_prices(run: Gunicorn, pids: Collection[int], above: float = 0.0) -> Answers:
    """Ask for AAPL until every worker of ``pids`` has answered 200 with two different prices above
    ``above`` (its prices move: it is streaming, not holding a copy)."""

    def done(got: Answers) -> bool:
        return all(
            len({a.json["price"] for a in got.get(pid, ()) if a.status == 200 and a.json["price"] > above}) >= 2
            for pid in pids
        )

    return answers_until(run, "/price/AAPL", done)


def assert_one_upstream_connection(upstream: MockMassiveServer) -> None:
    connections = upstream.connections
    assert len(connections) == 1, connections  # ever opened: no second one, no reconnect
    assert upstream.max_concurrent(UP_KEY) == 1
    assert not connections[0].closed
    assert not connections[0].evicted


def test_workers_share_one_upstream_connection_and_serve_fresh_prices(
    upstream: MockMassiveServer, ticker: Ticker, gunicorn: GunicornFactory
) -> None:
    run = gunicorn("-c", CONF, "--workers", "2")
    first, second = run.worker_pids(2)
    run.wait_for_line(r"massive_rt relay on ws://127\.0\.0\.1:\d+/stocks")
    assert upstream.wait_for_subscribed(CHANNELS, 20)  # by the relay, for the workers

    answers = moving_prices(run, {first, second})
    for pid in (first, second):
        prices = [a.json for a in answers[pid] if a.status == 200]
        assert prices[-1]["symbol"] == "AAPL"
        assert prices[-1]["price"] > prices[0]["price"]  # ticker prices only rise
        assert 0 <= prices[-1]["age_s"] < 5
    assert_one_upstream_connection(upstream)

    killed_at = Ticker.price(ticker.rounds)
    os.kill(first, signal.SIGKILL)  # a worker dies (OOM killer, segfault ...)
    replacement = run.worker_pids(3)[2]  # gunicorn boots a new one: its post_fork connects it

    moving_prices(run, {replacement}, above=killed_at)  # trades published after the kill
    health = answers_until(run, "/health", lambda got: {second, replacement} <= got.keys())
    for pid in (second, replacement):
        answer = health[pid][-1]
        assert answer.status == 200, answer
        assert answer.json["healthy"] is True
        assert isinstance(answer.json["stats"], dict)
        assert UP_KEY not in answer.text
    assert_one_upstream_connection(upstream)  # the whole time

    assert run.stop() == 0
    assert "Traceback" not in run.output
    # The replacement was forked from a master whose relay client was running: no misuse to report.
    assert not [line for line in run.lines if "[WARNING] massive_rt" in line]
    # on_exit stopped the relay: the upstream connection is closed.
    assert upstream.wait_for(lambda: not upstream.active_connections(), 10)


@pytest.mark.parametrize("upstream", [2], indirect=True)
def test_direct_shape_gives_each_worker_its_own_connection(
    upstream: MockMassiveServer, gunicorn: GunicornFactory
) -> None:
    run = gunicorn("-c", CONF, "--workers", "2", PRICE_FEED="direct")
    pids = run.worker_pids(2)

    moving_prices(run, pids)
    assert len(upstream.active_connections()) == 2
    assert upstream.max_concurrent(UP_KEY) == 2
    assert run.stop() == 0
    assert "Traceback" not in run.output


def test_client_started_in_the_master_by_preload_gives_one_log_line_per_worker_and_503s(
    upstream: MockMassiveServer, gunicorn: GunicornFactory
) -> None:
    run = gunicorn("--preload", "--workers", "2", "--pythonpath", f"{EXAMPLE},{HERE}", "preload_misuse_app:app")
    pids = run.worker_pids(2)
    assert upstream.wait_for_subscribed(CHANNELS, 20)  # the client started in the master, at import

    for path in ("/price/AAPL", "/health"):
        answers = answers_until(run, path, lambda got: set(pids) <= got.keys())
        for pid in pids:
            for answer in answers[pid]:
                assert answer.status == 503, answer
                assert "post_fork" in answer.json["error"], answer  # the reason names the fix

    warning = r"\[(\d+)\] \[WARNING\] massive_rt\.connection: .*fork"
    run.wait_for_line(warning, count=2)
    assert run.stop() == 0
    warned = [int(m.group(1)) for line in run.lines if (m := re.search(warning, line))]
    assert sorted(warned) == sorted(pids)  # exactly one line per worker
    assert "Traceback" not in run.output
