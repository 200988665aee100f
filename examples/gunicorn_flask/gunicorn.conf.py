"""gunicorn settings and hooks: every worker serves fresh prices over ONE upstream connection.

    MASSIVE_API_KEY=... gunicorn -c examples/gunicorn_flask/gunicorn.conf.py

Massive allows one connection per asset class per key, and gunicorn runs several worker
processes, restarting them as they die. So the master holds the upstream connection:

* ``when_ready`` (master, once, before any worker) starts a :class:`~massive_rt.relay.MassiveRelay`
  on a free loopback port, with a relay-local key made up here. Upstream: Massive with
  ``MASSIVE_API_KEY``, or ``MASSIVE_WS_URL`` (e.g. a ``massive-rt serve`` mock) when set.
* ``post_fork`` (each worker, also every replacement) creates and starts that worker's own
  client and adapter, connected to the relay (``app.start_feed``).
* ``worker_exit`` stops the worker's client; ``on_exit`` stops the relay.

``PRICE_FEED=direct`` skips the relay: each worker connects to Massive itself. Use it only when
the account allows as many connections as there are workers; with ``on_limit="retry"`` a
replacement worker refused by the limit retries after a cooldown (60 s, growing, at most 3 times
an hour) instead of failing.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
from typing import Any

bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "sync"
wsgi_app = "app:app"
pythonpath = os.path.dirname(os.path.abspath(__file__))  # app.py lives next to this file

SHAPE = os.environ.get("PRICE_FEED", "relay")  # "relay" or "direct"
# Set by when_ready in the master's environment, which every worker forked later inherits.
RELAY_URL, RELAY_KEY = "PRICE_FEED_RELAY_URL", "PRICE_FEED_RELAY_KEY"


def _log_massive_rt_to_stderr() -> None:
    """massive_rt configures no logging: show its INFO and up next to gunicorn's own lines."""
    logger = logging.getLogger("massive_rt")
    if not any(h.get_name() == "gunicorn-conf" for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.set_name("gunicorn-conf")
        handler.setFormatter(logging.Formatter("%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s",
                                               "[%Y-%m-%d %H:%M:%S %z]"))  # fmt: skip
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


_log_massive_rt_to_stderr()


def when_ready(server: Any) -> None:
    if SHAPE != "relay":
        return
    from massive_rt import ConfigurationError
    from massive_rt.relay import MassiveRelay

    key = secrets.token_urlsafe(16)
    try:  # api_key=None reads MASSIVE_API_KEY
        relay = MassiveRelay(url=os.environ.get("MASSIVE_WS_URL") or None, api_keys={key}, name="gunicorn-relay")
    except ConfigurationError as exc:
        raise SystemExit(f"gunicorn.conf.py: cannot start the relay: {exc}") from None
    relay.start()
    server.massive_relay = relay  # the arbiter object lives as long as the master
    os.environ[RELAY_URL], os.environ[RELAY_KEY] = relay.url("stocks"), key
    server.log.info("massive_rt relay on %s: one upstream connection for every worker", relay.url("stocks"))


def post_fork(server: Any, worker: Any) -> None:
    import app

    if SHAPE == "relay":
        app.start_feed(os.environ[RELAY_KEY], os.environ[RELAY_URL])
    else:  # MASSIVE_API_KEY, and MASSIVE_WS_URL when set
        app.start_feed(None, os.environ.get("MASSIVE_WS_URL") or None, on_limit="retry")


def worker_exit(server: Any, worker: Any) -> None:
    import app

    app.stop_feed()


def on_exit(server: Any) -> None:
    relay = getattr(server, "massive_relay", None)
    if relay is not None:
        relay.stop()
