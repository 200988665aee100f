"""Shared by the example scripts (not part of massive_rt): where the data comes from.

With ``MASSIVE_API_KEY`` set, the examples stream from Massive (``--url`` overrides the endpoint,
e.g. ``ws://127.0.0.1:8765/stocks`` for a ``massive-rt serve`` started with ``--keys $MASSIVE_API_KEY``).
Without a key they start a :class:`~massive_rt.testing.MockMassiveServer` on 127.0.0.1 that plays a
:class:`~massive_rt.synthetic.SyntheticMarket`, so every example runs offline, with no key. Only
:func:`endpoint` needs the mock server (``pip install 'massive-rt[testing]'``): the rest works on a
base install, as ``synthetic_no_key.py`` does.
"""

from __future__ import annotations

import argparse
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from massive_rt import SyntheticMarket
from massive_rt.synthetic import DEFAULT_CRYPTO, DEFAULT_STOCKS

DEMO_KEY = "demo"
SPEED = 20  # simulated seconds per second: minute bars every 3 s instead of every minute


def arguments(description: str | None, duration: float = 5.0) -> argparse.ArgumentParser:
    """A parser with ``--url`` and ``--duration``, the options every example takes."""
    parser = argparse.ArgumentParser(description=(description or "").split("\n\n")[0])
    parser.add_argument("--url", help="WebSocket URL to connect to (needs MASSIVE_API_KEY)")
    parser.add_argument("--duration", type=float, default=duration, help=f"seconds to run (default {duration:g})")
    return parser


@contextmanager
def endpoint(
    url: str | None, market: str = "stocks", symbols: Sequence[str] | None = None, rate: float = 500.0
) -> Iterator[tuple[str, str | None]]:
    """Yield ``(api_key, url)``: Massive's when a key is set (url None = the default endpoint),
    else a local mock server's, streaming ``rate`` synthetic events per second."""
    key = os.environ.get("MASSIVE_API_KEY", "").strip()
    if key:
        yield key, url
        return
    if url:
        raise SystemExit("--url needs MASSIVE_API_KEY (a 'massive-rt serve' server accepts the key 'demo')")
    from massive_rt.testing import MockMassiveServer  # here, not above: it needs websockets

    with MockMassiveServer(api_keys={DEMO_KEY}) as server:
        count = len(symbols or (DEFAULT_CRYPTO if market == "crypto" else DEFAULT_STOCKS))
        # SyntheticMarket's rate is events per symbol per simulated second: this one makes the
        # simulated clock run SPEED times faster than the wall clock at `rate` events/s.
        simulated = SyntheticMarket(symbols, market=market, rate=rate / (SPEED * count))
        server.stream(simulated, rate=rate, market=market)
        print(f"(no MASSIVE_API_KEY: streaming a synthetic market from {server.url(market)})")
        yield DEMO_KEY, server.url(market)


def stop_after(adapter: Any, seconds: float) -> None:
    """For the demos' ``--duration``: stop ``adapter`` after ``seconds`` (a service just runs on)."""
    timer = threading.Timer(seconds, adapter.stop)
    timer.daemon = True  # never keeps the process alive after run_forever() returned
    timer.start()
