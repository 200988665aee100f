"""The status page as a WSGI app: one HTML page, its script and style, a JSON snapshot and a
Server-Sent Events stream of snapshots.

A sampler thread (``massive-rt-status-sampler``) calls the target's ``stats()`` every
``interval`` seconds and keeps the last ``history`` samples (events/s per connection are the
differences). Statuses worth showing (state changes, gaps and backfills, drops, refusals, recycling) are kept
from an ``on_status`` handler added to an adapter (it runs on the dispatcher thread and only
appends to a bounded deque). Every stream ends on :meth:`StatusApp.stop`, when the target adapter
stops, or after ``stream_seconds`` (the browser's ``EventSource`` then reconnects by itself).
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from importlib import resources
from typing import Any
from urllib.parse import quote

from .._validate import require_number
from ..errors import ConfigurationError
from .snapshot import Sample, page_snapshot, sample

__all__ = ["StatusApp", "WSGIApp", "status_app"]

logger = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
Environ = dict[str, Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

_ASSETS = {"status.js": "text/javascript; charset=utf-8", "status.css": "text/css; charset=utf-8"}
_SHOWN_STATUSES = frozenset({
    "state", "disconnected", "gap", "dropped", "decode_error", "subscription_error", "failed", "limit_refused",
    "evicted", "limit_cooldown", "recycled", "adapter_failed", "backfill_started", "backfill_partial",
    "backfill_failed", "backfill_done",
    "stream_reset", "missing",
})  # fmt: skip
_ENDED_STATES = ("stopped", "failed")
_OWN_PATHS = frozenset({"/", "/status.json", "/events", *(f"/static/{name}" for name in _ASSETS)})


def _asset(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


class StatusApp:
    """A WSGI app serving the live status page of ``target`` (see :func:`status_app`).

    Mount it under any prefix (Flask: ``DispatcherMiddleware``; Django: a WSGI wrapper): the
    page's links are relative. Routes: ``/`` (the page), ``/static/status.js``,
    ``/static/status.css``, ``/status.json`` (one snapshot) and ``/events`` (snapshots as
    Server-Sent Events), plus the exact paths of ``routes`` (e.g. ``/metrics``).
    """

    def __init__(
        self,
        target: Any,
        *,
        interval: float = 1.0,
        history: int = 300,
        stream_seconds: float = 300.0,
        routes: Mapping[str, WSGIApp] | None = None,
    ) -> None:
        if not callable(getattr(target, "stats", None)):
            raise ConfigurationError(f"target={target!r} has no stats(); pass an adapter or a source", field="target")
        require_number("interval", interval, strict=True)
        require_number("stream_seconds", stream_seconds, strict=True)
        if not isinstance(history, int) or history < 2:
            raise ConfigurationError(f"history={history!r} must be an int >= 2", field="history")
        self._routes = dict(routes or {})
        for path, route in self._routes.items():
            if not path.startswith("/") or path in _OWN_PATHS or not callable(route):
                raise ConfigurationError(f"routes[{path!r}] must map a path of its own (not one of the page's) "
                                         "to a WSGI app", field="routes")  # fmt: skip
        self._target = target
        self._interval = interval
        self._stream_seconds = stream_seconds
        self._samples: collections.deque[Sample] = collections.deque(maxlen=history)
        self._happenings: collections.deque[dict[str, Any]] = collections.deque(maxlen=50)
        self._changed = threading.Condition()
        self._sequence = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._life = threading.Lock()
        on_status = getattr(target, "on_status", None)
        if callable(on_status):
            on_status(self._note_status)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> StatusApp:
        """Start the sampler thread (idempotent; the first request starts it too)."""
        with self._life:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="massive-rt-status-sampler", daemon=True)
                self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the sampler and end every open event stream (idempotent; any thread)."""
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        with self._life:
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` was called or the sampler ended with its target."""
        return self._stop.is_set()

    def _run(self) -> None:
        while True:
            self._take_sample()
            if self._target_ended() or self._stop.wait(self._interval):
                break
        self._stop.set()
        with self._changed:
            self._changed.notify_all()

    def _target_ended(self) -> bool:
        state = getattr(self._target, "state", None)
        return str(getattr(state, "value", state)) in _ENDED_STATES

    def _take_sample(self) -> None:
        try:
            taken = sample(self._target.stats())
        except Exception:  # a failing stats() must not end the page; the next interval tries again
            logger.warning("status page: stats() of %r failed", type(self._target).__name__, exc_info=True)
            return
        with self._changed:
            self._samples.append(taken)
            self._sequence += 1
            self._changed.notify_all()

    def _note_status(self, status: Any) -> None:
        code = str(getattr(status, "status", ""))
        if code not in _SHOWN_STATUSES:
            return
        state = getattr(status, "state", None)
        self._happenings.appendleft({
            "time": time.time(),
            "connection": str(getattr(status, "connection", "")),
            "status": code,
            "state": None if state is None else str(getattr(state, "value", state)),
            "message": str(getattr(status, "message", ""))[:300],
        })  # fmt: skip

    # ------------------------------------------------------------------ data

    def snapshot(self) -> dict[str, Any]:
        """The page's current data (JSON-ready); it holds no secret."""
        with self._changed:
            samples = list(self._samples)
        data = page_snapshot(samples, list(self._happenings))
        data["stopped"] = self._stop.is_set()
        return data

    def _stream(self) -> Iterator[bytes]:
        deadline = time.monotonic() + self._stream_seconds
        seen = -1
        yield b"retry: 1000\n\n"
        while True:
            with self._changed:
                timeout = min(self._interval * 2, max(0.0, deadline - time.monotonic()))
                self._changed.wait_for(self._news(seen), timeout=timeout)
                seen = self._sequence
            yield b"data: " + json.dumps(self.snapshot(), separators=(",", ":")).encode() + b"\n\n"
            if self._stop.is_set() or time.monotonic() >= deadline:
                return

    def _news(self, seen: int) -> Callable[[], bool]:
        return lambda: self._sequence != seen or self._stop.is_set()

    # ------------------------------------------------------------------ WSGI

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        """Serve one request (WSGI)."""
        self.start()
        if not environ.get("PATH_INFO") and environ.get("SCRIPT_NAME"):
            # Mounted at /status and asked for /status: the page's relative addresses (static/…,
            # events) need the trailing slash to resolve under the mount, not beside it.
            location = quote(environ["SCRIPT_NAME"]) + "/"
            if environ.get("QUERY_STRING"):
                location += "?" + environ["QUERY_STRING"]
            start_response("301 Moved Permanently", [("Location", location), ("Content-Length", "0")])
            return [b""]
        path = environ.get("PATH_INFO", "") or "/"
        route = self._routes.get(path)
        if route is not None:
            return route(environ, start_response)
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            return self._reply(start_response, "405 Method Not Allowed", "text/plain; charset=utf-8", b"GET only\n")
        if path == "/":
            return self._reply(start_response, "200 OK", "text/html; charset=utf-8", _asset("index.html"))
        if path.startswith("/static/") and path[len("/static/") :] in _ASSETS:
            name = path[len("/static/") :]
            return self._reply(start_response, "200 OK", _ASSETS[name], _asset(name))
        if path == "/status.json":
            body = json.dumps(self.snapshot(), separators=(",", ":")).encode()
            return self._reply(start_response, "200 OK", "application/json", body)
        if path == "/events":
            start_response("200 OK", [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"),
                                      ("X-Accel-Buffering", "no")])  # fmt: skip
            return self._stream()
        return self._reply(start_response, "404 Not Found", "text/plain; charset=utf-8", b"not found\n")

    @staticmethod
    def _reply(start_response: StartResponse, status: str, content_type: str, body: bytes) -> list[bytes]:
        start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body))),
                                ("Cache-Control", "no-cache")])  # fmt: skip
        return [body]


def status_app(
    target: Any, *, interval: float = 1.0, history: int = 300, routes: Mapping[str, WSGIApp] | None = None
) -> StatusApp:
    """The live status page of ``target`` (an adapter, client, pool or relay) as a WSGI app.

    No framework needed: serve it with :func:`massive_rt.web.serve_status` (the standard
    library's ``wsgiref``, threaded) or mount it into Flask/Django. With an adapter, statuses
    (state changes, gaps, drops, recycling) are listed as they happen, through an extra
    ``on_status`` handler (your own handlers are untouched).

    Args:
        target: anything with ``stats()``.
        interval: seconds between samples (the page's update period).
        history: samples kept (events/s sparkline: ``history * interval`` seconds).
        routes: more WSGI apps served beside the page, by exact path: ``{"/metrics":
            prometheus_client.make_wsgi_app(registry)}`` serves the metrics on the same port.

    Raises:
        ConfigurationError: ``target`` has no ``stats()``, a bad ``interval``/``history``, or a
            route on one of the page's own paths.
    """
    return StatusApp(target, interval=interval, history=history, routes=routes)
