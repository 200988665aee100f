"""Live prices in a browser: Flask, the adapter, a last-value cache and Server-Sent Events.

    python examples/live_prices_page/app.py            # then open http://127.0.0.1:5000/

The shape of a market-data frontend in a few dozen lines: one adapter subscribes to trades, a
:class:`~massive_rt.LastValueCache` keeps the latest trade per symbol (filled by the adapter's
callbacks), and every browser holds one ``EventSource`` on ``/prices``, which pushes the
prices that changed since its last message. Without ``MASSIVE_API_KEY`` it streams a synthetic
market from a local mock server (see ``examples/_offline.py``).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from flask import Flask, Response

import massive_rt as mrt

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Live prices</title>
<style>body{font:16px system-ui,sans-serif;margin:2em}td{padding:.3em 1em;text-align:right}</style></head>
<body><h1>Live prices</h1><table><thead><tr><th>symbol</th><th>price</th><th>size</th></tr></thead>
<tbody id="prices"></tbody></table>
<script>
const rows = {};
new EventSource("prices").onmessage = (message) => {
  for (const [symbol, trade] of Object.entries(JSON.parse(message.data))) {
    if (!rows[symbol]) {
      rows[symbol] = document.createElement("tr");
      rows[symbol].id = "price-" + symbol;
      document.getElementById("prices").appendChild(rows[symbol]);
    }
    rows[symbol].innerHTML = `<td>${symbol}</td><td class="price">${trade.price}</td><td>${trade.size}</td>`;
  }
};
</script></body></html>
"""


def create_app(cache: mrt.LastValueCache, stop: threading.Event, period: float = 0.2) -> Flask:
    """The Flask app: ``/`` the page, ``/prices`` an event stream of the trades that changed."""
    app = Flask(__name__)

    @app.get("/")
    def page() -> Response:
        return Response(PAGE, mimetype="text/html")

    @app.get("/prices")
    def prices() -> Response:
        def changes() -> Iterator[str]:
            sent: dict[str, int] = {}
            deadline = time.monotonic() + 300  # the browser reconnects by itself after that
            while not stop.is_set() and time.monotonic() < deadline:
                fresh = {}
                for key, cached in cache.snapshot().items():
                    if key.kind == "trade" and sent.get(key.symbol) != cached.received_at_ns:
                        sent[key.symbol] = cached.received_at_ns
                        trade = cached.value
                        fresh[key.symbol] = {
                            "price": getattr(trade, "price", None),
                            "size": getattr(trade, "size", None),
                        }
                if fresh:
                    yield f"data: {json.dumps(fresh)}\n\n"
                stop.wait(period)

        return Response(changes(), mimetype="text/event-stream", headers={"Cache-Control": "no-cache"})

    return app


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from _offline import arguments, endpoint

    parser = arguments(__doc__, duration=3600)
    parser.add_argument("--port", type=int, default=5000, help="port on 127.0.0.1 (default 5000; 0: any free)")
    args = parser.parse_args()
    with endpoint(args.url) as (key, url):
        adapter = mrt.RealTimeDataAdapter(mrt.MassiveWebSocketClient(key, url=url, subscriptions=["T.*"]))
        cache = mrt.LastValueCache(adapter)
        stop = threading.Event()
        from werkzeug.serving import make_server

        server = make_server("127.0.0.1", args.port, create_app(cache, stop), threaded=True)
        threading.Thread(target=server.serve_forever, name="example-http", daemon=True).start()
        print(f"live prices: http://127.0.0.1:{server.server_port}/", flush=True)
        with adapter:
            stop.wait(args.duration)
        stop.set()
        server.shutdown()
        print(f"received {adapter.stats().dispatched} events")


if __name__ == "__main__":
    main()
