"""A plain synchronous service (http.server, no asyncio) streaming in the background.

    python examples/legacy_sync_service.py [--port 8080]       # offline: synthetic data, no key
    MASSIVE_API_KEY=... python examples/legacy_sync_service.py  # Massive's real-time feed
    curl http://127.0.0.1:<port>/health

The HTTP server and the market data each run on their own threads: request handlers read the
latest state and stats() snapshots (cheap, thread-safe), the adapter's dispatcher updates the
state, and SIGTERM / Ctrl-C shut everything down cleanly.
"""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from _offline import arguments, endpoint

from massive_rt import ConnectionState, EquityTrade, MassiveWebSocketClient, RealTimeDataAdapter


class PriceService:
    """The service's own state: last trade per symbol, fed by the adapter's dispatcher thread."""

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
        stats = self.adapter.stats()
        conn = self.client.stats()
        healthy = conn.state is ConnectionState.STREAMING
        return (200 if healthy else 503), {
            "status": "ok" if healthy else "degraded",
            "state": conn.state.value,
            "connected_since": conn.connected_since,
            "reconnects": conn.reconnects,
            "trades": self.trades,
            "dropped": conn.dropped_events,
            "queue": conn.queue_events,
            "last_message_age_s": conn.last_message_age,
            "latency_us": stats.latency_us,
            "last_price": dict(self.last_price),
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
    stop = threading.Event()
    # Handlers only set an Event: the main thread does the shutdown, outside the signal handler.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    with endpoint(args.url) as (api_key, url):
        service = PriceService(MassiveWebSocketClient(api_key, url=url, subscriptions=["T.*"]))
        httpd = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(service))
        http_thread = threading.Thread(target=httpd.serve_forever, name="http", daemon=True)
        http_thread.start()
        health_url = f"http://127.0.0.1:{httpd.server_address[1]}/health"
        print(f"health: {health_url}")

        with service.adapter:
            service.first_trade.wait(10)
            # What a load balancer or `curl` would see:
            with urllib.request.urlopen(health_url, timeout=5) as response:
                print(f"GET /health -> {response.status} {response.read().decode()[:300]}")
            started = time.monotonic()
            stop.wait(args.duration)  # the service runs until SIGTERM / Ctrl-C (or --duration)
            print(f"stopping after {time.monotonic() - started:.1f} s")

        httpd.shutdown()  # stops serve_forever, then close the listening socket
        httpd.server_close()
        http_thread.join(5)
    print(f"received {service.trades} events (last prices: {len(service.last_price)} symbols)")


if __name__ == "__main__":
    main()
