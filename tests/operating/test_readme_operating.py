"""The README's "Operating it" mounting lines run as written: its ``DispatcherMiddleware`` lines
mount the metrics and the status page into a real Flask app, served over HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import flask
from prometheus_client import CollectorRegistry, make_wsgi_app
from werkzeug.middleware.dispatcher import DispatcherMiddleware

import massive_rt as mrt
from massive_rt.metrics import instrument
from massive_rt.web import status_app
from tests.conftest import wait_until
from tests.operating.conftest import get
from tests.operating.scrapes import parse
from tests.test_cli import ROOT


def readme_lines(containing: str) -> list[str]:
    """The lines of the README's "Operating it" code blocks that contain ``containing``, as written."""
    section = (ROOT / "README.md").read_text(encoding="utf-8").split("## Operating it", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    return [line for block in blocks for line in block.splitlines() if containing in line]


def test_the_readme_flask_mounting_lines_serve_the_metrics_and_the_status_page(
    make_adapter: Callable[..., mrt.RealTimeDataAdapter], serve_wsgi: Callable[[Any], str]
) -> None:
    mounting = readme_lines("DispatcherMiddleware(")
    assert len(mounting) == 2  # /metrics, then /status
    adapter = make_adapter(mrt.SyntheticSource(["T.AAPL"], rate=200, seed=1)).start()
    registry = CollectorRegistry()  # the README uses the default registry; a test keeps its own
    instrument(adapter, registry)
    app = flask.Flask("service")

    @app.route("/")
    def home() -> str:
        return "the service's own page"

    namespace = {"app": app, "adapter": adapter, "DispatcherMiddleware": DispatcherMiddleware,
                 "make_wsgi_app": lambda: make_wsgi_app(registry), "status_app": status_app}  # fmt: skip
    pages = []
    for line in mounting:
        exec(compile(line, "README.md (Operating it)", "exec"), namespace)
        pages.extend(namespace["app"].wsgi_app.mounts.values())
    url = serve_wsgi(app)
    try:
        assert get(url + "/")[2] == "the service's own page"
        status, content_type, body = get(url + "/metrics")
        assert status == 200
        assert content_type.startswith("text/plain")
        families = parse(body)
        assert families["massive_rt_connection_state"].type == "gauge"
        assert families["massive_rt_dispatch_latency_seconds"].type == "summary"
        assert wait_until(lambda: parse(get(url + "/metrics")[2])["massive_rt_events_received"].samples[0].value > 0)
        status, content_type, html = get(url + "/status")  # redirected to /status/
        assert (status, content_type) == (200, "text/html; charset=utf-8")
        assert 'src="static/status.js"' in html
        assert get(url + "/status/static/status.js")[0] == 200

        def streaming() -> bool:
            rows = json.loads(get(url + "/status/status.json")[2])["connections"]
            return [row["state"] for row in rows] == ["streaming"]

        assert wait_until(streaming, 10)
    finally:
        for page in pages:
            if hasattr(page, "stop"):
                page.stop()
