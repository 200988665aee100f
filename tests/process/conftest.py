"""Fixtures: an upstream MockMassiveServer (Massive's per-key connection limit) publishing moving
prices, and real gunicorn runs that always end (master and workers) with their output kept."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from massive_rt.testing import MockMassiveServer
from tests.process._support import UP_KEY, Gunicorn, GunicornFactory, Ticker, clean_env


@pytest.fixture
def upstream(request: pytest.FixtureRequest) -> Iterator[MockMassiveServer]:
    """Plays Massive: one key, ``max_connections`` connections with it (1 unless the test is marked
    ``@pytest.mark.parametrize("upstream", [n], indirect=True)``)."""
    limit = getattr(request, "param", 1)
    with MockMassiveServer(api_keys={UP_KEY}, max_connections=limit, name="upstream", close_timeout=0.5) as server:
        yield server


@pytest.fixture
def ticker(upstream: MockMassiveServer) -> Iterator[Ticker]:
    """Trades of rising prices for SYMBOLS on ``upstream``, from a test thread (joined after the test)."""
    with Ticker(upstream) as running:
        yield running


@pytest.fixture
def gunicorn(upstream: MockMassiveServer, ticker: Ticker) -> Iterator[GunicornFactory]:
    """``gunicorn(*args, **env)`` starts ``python -m gunicorn ARGS`` bound to a unix socket, with
    ``MASSIVE_API_KEY``/``MASSIVE_WS_URL`` pointing at ``upstream``; stopped after the test (the
    whole process group), its output printed when the test fails."""
    started: list[Gunicorn] = []
    # A short path: unix socket paths are limited to ~107 bytes, pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="mrt-gunicorn-") as directory:

        def start(*args: str, **env: Any) -> Gunicorn:
            variables = clean_env(MASSIVE_API_KEY=UP_KEY, MASSIVE_WS_URL=upstream.url("stocks"))
            variables.update({k: str(v) for k, v in env.items()})
            started.append(Gunicorn(args, f"{directory}/g{len(started)}.sock", variables))
            return started[-1]

        try:
            yield start
        finally:
            for run in started:
                run.stop()
                print(f"---- gunicorn {' '.join(run.proc.args[3:])} (exit {run.proc.returncode})\n{run.output}")
