"""Quickstart: your callbacks, run by a RealTimeDataAdapter over one MassiveWebSocketClient.

    python examples/quickstart.py                        # offline: synthetic data, no key
    MASSIVE_API_KEY=... python examples/quickstart.py    # Massive's real-time feed

The client owns the socket (its own reader thread, reconnects, re-subscribes); the adapter calls
your handlers one at a time, in order (never racing each other): on the reader thread while they
are fast, on its dispatcher thread once one is slow or a backlog builds, so a slow handler does
not stall the socket (README: "dispatch=").
"""

from __future__ import annotations

import collections

from _offline import arguments, endpoint, stop_after

from massive_rt import (
    EquityAgg,
    EquityQuote,
    EquityTrade,
    MassiveWebSocketClient,
    RealTimeDataAdapter,
    StatusMessage,
)


def main() -> None:
    args = arguments(__doc__).parse_args()
    counts: collections.Counter[str] = collections.Counter()

    with endpoint(args.url) as (api_key, url):
        client = MassiveWebSocketClient(api_key, url=url, subscriptions=["T.AAPL", "T.MSFT", "Q.AAPL", "AM.*"])
        adapter = RealTimeDataAdapter(client)

        @adapter.on(EquityTrade)  # by event class; adapter.on("T", fn) by ev code works too
        def on_trade(trade: EquityTrade) -> None:
            counts["trades"] += 1
            if counts["trades"] <= 5:
                print(f"trade  {trade.symbol:<5} {trade.price:>9.2f} x {trade.size}")

        @adapter.on(EquityQuote)
        def on_quote(quote: EquityQuote) -> None:
            counts["quotes"] += 1
            if counts["quotes"] <= 5:
                print(f"quote  {quote.symbol:<5} {quote.bid_price:>9.2f} / {quote.ask_price:.2f}")

        @adapter.on(EquityAgg)
        def on_bar(bar: EquityAgg) -> None:
            counts["bars"] += 1
            print(f"bar    {bar.symbol:<5} o {bar.open} h {bar.high} l {bar.low} c {bar.close} v {bar.volume}")

        # Connection lifecycle (connecting, streaming, reconnects with the gap to backfill, drops ...)
        # arrives in order with the data, on the same thread.
        @adapter.on_status
        def on_status(status: StatusMessage) -> None:
            what = status.state if status.status == "state" else status.status
            print(f"status [{status.connection}] {what}: {status.message}")

        # A demo ends after --duration; a service just calls run_forever().
        stop_after(adapter, args.duration)
        # Starts the client and the dispatcher and blocks until stop(), Ctrl-C or SIGTERM (then
        # stops both), or raises the typed error if the connection fails for good (a wrong key).
        adapter.run_forever()
        latency = adapter.stats().latency_us  # receive -> callback, microseconds
        print(f"latency p50 {latency.get('p50', 0):.0f} us, p99 {latency.get('p99', 0):.0f} us")

    print(f"received {counts.total()} events ({dict(counts)})")


if __name__ == "__main__":
    main()
