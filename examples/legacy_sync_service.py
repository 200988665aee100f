"""A plain synchronous service (http.server, no asyncio) streaming in the background.

    python examples/legacy_sync_service.py [--port 8080]       # offline: synthetic data, no key
    MASSIVE_API_KEY=... python examples/legacy_sync_service.py  # Massive's real-time feed
    curl http://127.0.0.1:<port>/health

The HTTP server and the market data each run on their own threads: request handlers read the
latest state and stats() snapshots (cheap, thread-safe), the adapter's dispatcher updates the
state, and ``run_forever()`` keeps the main thread until SIGTERM / Ctrl-C, then shuts everything
down cleanly. ``/health`` answers 200 or 503 from the stats' own ``healthy`` flag and reason.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from _offline import arguments, endpoint, stop_after

from massive_rt import EquityTrade, MassiveWebSocketClient, RealTimeDataAdapter


class PriceService:
    """The service's own state: last trade per symbol, fed by the adapter's callbacks."""

    def __init__(self, client: MassiveWebSocketClient) -> None:
        self.client = client
        self.adapter = RealTimeDataAdapter(client)
        self.adapter.on(EquityTrade, self.on_trade)
        self.last_price: dict[str, float] = {}  # written by one thread; readers take a copy
        self.trades = 0
        self.first_trade = threading.Event()

    def on_trade(self, trade: EquityTrade) -> None:
        if trade.symbol is not None and trade.price is not None:
            self.last_price[trade.symbol] = trade.price
        self.trades += 1
        self.first_trade.set()

    def health(self) -> tuple[int, dict[str, Any]]:
        stats = self.adapter.stats()  # the client's own snapshot is stats.source
        return (200 if stats.healthy else 503), {
            "status": "ok" if stats.healthy else stats.health_reason,
            "trades": self.trades,
            "last_price": dict(self.last_price),
            "stats": stats.to_dict(),  # JSON-ready; the key is never in it
        }


def make_handler(service: PriceService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/health":
                self.send_error(404)
                return
            code, body = service.health()
            payload = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep the demo's output quiet

    return Handler


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--port", type=int, default=0, help="HTTP port on 127.0.0.1 (default: a free one)")
    args = parser.parse_args()

    with endpoint(args.url) as (api_key, url):
        service = PriceService(MassiveWebSocketClient(api_key, url=url, subscriptions=["T.*"]))
        httpd = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(service))
        http_thread = threading.Thread(target=httpd.serve_forever, name="http", daemon=True)
        http_thread.start()
        health_url = f"http://127.0.0.1:{httpd.server_address[1]}/health"
        print(f"health: {health_url}")

        def self_check() -> None:  # what a load balancer or `curl` would see, once data flows
            if not service.first_trade.wait(10):
                return
            try:
                with urllib.request.urlopen(health_url, timeout=5) as response:
                    print(f"GET /health -> {response.status} {response.read().decode()[:300]}", flush=True)
            except urllib.error.HTTPError as unhealthy:
                print(f"GET /health -> {unhealthy.code} {unhealthy.read().decode()[:300]}", flush=True)

        threading.Thread(target=self_check, name="self-check", daemon=True).start()
        started = time.monotonic()
        stop_after(service.adapter, args.duration)  # the demo's --duration
        # Starts streaming and keeps the main thread until SIGTERM / Ctrl-C (its handlers are in place
        # before the first event), then stops cleanly; a wrong key raises AuthenticationError here.
        service.adapter.run_forever()
        print(f"stopped after {time.monotonic() - started:.1f} s")

        httpd.shutdown()  # stops serve_forever, then close the listening socket
        httpd.server_close()
        http_thread.join(5)
    print(f"received {service.trades} events (last prices: {len(service.last_price)} symbols)")


if __name__ == "__main__":
    main()
