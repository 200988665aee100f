"""``massive-rt status`` and ``--status-port``: the live status page of a process started with the CLI.

``massive-rt stream ... --status-port 8000`` prints events and serves the page of its connections
on ``http://127.0.0.1:8000/``; ``massive-rt status --port 8000 CHANNEL...`` takes the same options
as ``stream`` but prints no events: it connects, subscribes and serves the page until Ctrl-C,
SIGTERM or ``--duration`` (the summary still goes to stderr); ``massive-rt relay --status-port
8000`` serves the relay's page. With the ``metrics`` extra the same port serves the Prometheus
metrics on ``/metrics``. The page listens on 127.0.0.1 only (it has no authentication). See
docs/operating.md.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

from ..web import StatusServer, serve_status, status_app
from ..web.app import WSGIApp
from .console import PROG, AddParser, CommandFailure, Console, UsageError, one_line

__all__ = ["DEFAULT_PORT", "metrics_routes", "page_for", "register", "run"]

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


def metrics_routes(target: Any) -> dict[str, WSGIApp]:
    """``{"/metrics": app}`` exporting ``target`` on a registry of its own, or ``{}`` without the
    ``metrics`` extra (``prometheus_client``)."""
    try:
        from prometheus_client import CollectorRegistry, make_wsgi_app
    except ModuleNotFoundError:
        return {}
    from ..metrics import instrument

    registry = CollectorRegistry()
    instrument(target, registry)
    return {"/metrics": make_wsgi_app(registry)}


@contextlib.contextmanager
def page_for(target: Any, port: int | None, message: Callable[[str], None]) -> Iterator[StatusServer | None]:
    """Serve ``target``'s status page (and ``/metrics``, with the ``metrics`` extra) on
    127.0.0.1:``port`` while in the block (nothing when ``port`` is None).

    ``target`` is an adapter or a relay; ``message`` writes the page's address to the user.

    Raises:
        CommandFailure: the port is in use (or cannot be bound).
    """
    if port is None:
        yield None
        return
    if not 0 <= port <= 65535:
        raise UsageError(f"--status-port {port} is not a port (0-65535)")
    routes = metrics_routes(target)
    try:
        page = serve_status(status_app(target, routes=routes), "127.0.0.1", port)
    except OSError as exc:
        raise CommandFailure(f"cannot listen on 127.0.0.1:{port}: {one_line(exc)}") from exc
    message(f"{PROG}: status page at {page.url}")
    message(f"{PROG}: Prometheus metrics at {page.url}metrics" if routes
            else f"{PROG}: no /metrics without prometheus_client: pip install 'massive-rt[metrics]'")  # fmt: skip
    try:
        yield page
    finally:
        page.stop()
