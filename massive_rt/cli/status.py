"""``massive-rt status`` and ``--status-port``: the live status page of a process started with the CLI.

``massive-rt stream ... --status-port 8000`` prints events and serves the page of its connections
on ``http://127.0.0.1:8000/``; ``massive-rt status --port 8000 CHANNEL...`` takes the same options
as ``stream`` but prints no events: it connects, subscribes and serves the page until Ctrl-C,
SIGTERM or ``--duration`` (the summary still goes to stderr). The page listens on 127.0.0.1 only
(it has no authentication). See docs/operating.md.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from ..web import StatusServer, serve_status
from .console import PROG, AddParser, Console, UsageError

__all__ = ["DEFAULT_PORT", "page_for", "register", "run"]

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8000


def register(add_parser: AddParser, common: argparse.ArgumentParser) -> None:
    """Add the ``status`` subcommand: ``stream``'s options, ``--port``, and no event output."""

    def as_status(name: str, **options: Any) -> argparse.ArgumentParser:
        options.update(
            help="serve the live status page of a stream (no event output)",
            description="Connect and subscribe like 'stream', print no events, and serve the live status page.",
            epilog="examples:\n"
            "  massive-rt status --port 8000 T.AAPL 'AM.*'      # no key: the synthetic market\n"
            "  MASSIVE_API_KEY=... massive-rt status 'T.*' --pool 2",
        )
        parser = add_parser("status", **options)
        parser.add_argument("--port", type=int, default=DEFAULT_PORT, dest="status_port",
                            help=f"port of the page on 127.0.0.1 (default {DEFAULT_PORT}; 0: any free)")  # fmt: skip
        return parser

    from . import stream  # here: stream imports this module for --status-port

    stream.register(as_status, common)


def run(args: argparse.Namespace, console: Console) -> int:
    """Run ``massive-rt status``: ``stream`` with its event output discarded."""
    from . import stream

    with open(os.devnull, "w", encoding="utf-8") as discard, contextlib.redirect_stdout(discard):
        return stream.run(args, console)


@contextlib.contextmanager
def page_for(adapter: Any, port: int | None, console: Console) -> Iterator[StatusServer | None]:
    """Serve ``adapter``'s status page on 127.0.0.1:``port`` while in the block (nothing when None)."""
    if port is None:
        yield None
        return
    if not 0 <= port <= 65535:
        raise UsageError(f"--status-port {port} is not a port (0-65535)")
    page = serve_status(adapter, "127.0.0.1", port)
    console.message(f"{PROG}: status page at {page.url}")
    try:
        yield page
    finally:
        page.stop()
