"""A deliberately wrong app module: it starts its market data client at import time.

Run with ``gunicorn --preload``, the import happens in the master, so the client is created and
started there and every worker inherits a copy without the client's threads. (The right place is
the ``post_fork`` hook, as in examples/gunicorn_flask/gunicorn.conf.py.) The test checks that this
gives one clear log line per worker and 503 answers naming the fix, not 500s with stack traces.

Needs ``examples/gunicorn_flask`` on the path (``--pythonpath``) for the example's ``app``.
"""

from __future__ import annotations

import logging
import os

import app as example

# What a real app does early on; the format names the logger and the process.
logging.basicConfig(format="[%(process)d] [%(levelname)s] %(name)s: %(message)s")

# The mistake: at import. (Waiting until it streams, as such apps tend to, also keeps gunicorn from
# forking while the client's first connect imports encodings.idna: a fork during that import leaves
# the module's import lock held in the child, and the worker's first request hangs on it.)
example.start_feed(os.environ["MASSIVE_API_KEY"], os.environ["MASSIVE_WS_URL"]).client.wait_ready(10)

app = example.app
