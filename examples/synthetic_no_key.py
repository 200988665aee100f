"""No key, no network, no server: RealTimeDataAdapter.from_env() picks the synthetic market.

    python examples/synthetic_no_key.py                        # synthetic market, in-process
    MASSIVE_API_KEY=... python examples/synthetic_no_key.py    # the very same code on Massive

from_env() returns an adapter over Massive when MASSIVE_API_KEY is set (MASSIVE_MARKET,
MASSIVE_FEED and MASSIVE_WS_URL apply), else over a SyntheticSource: realistic, seeded trades,
quotes and bars generated in-process. Handlers cannot tell the difference, so you can build and
test them anywhere. It needs nothing but a base install (``pip install massive-rt``): no mock
server, no ``websockets``.
"""

from __future__ import annotations

import collections

from _offline import arguments, stop_after

from massive_rt import EquityAgg, EquityQuote, EquityTrade, RealTimeDataAdapter

# The same thing, spelled out:
#   from massive_rt import SyntheticSource
#   adapter = RealTimeDataAdapter(SyntheticSource(["T.*", "Q.AAPL"], seed=42, rate=1000))


def main() -> None:
    args = arguments(__doc__).parse_args()
    counts: collections.Counter[str] = collections.Counter()
    # symbols and seed shape the synthetic market (same seed, same stream); url applies to Massive only.
    adapter = RealTimeDataAdapter.from_env(
        ["T.*", "Q.AAPL", "A.AAPL"], symbols=["AAPL", "MSFT", "NVDA", "TSLA"], seed=42, url=args.url
    )
    print(f"source: {adapter.source!r}")

    @adapter.on(EquityTrade)
    def on_trade(trade: EquityTrade) -> None:
        counts["trades"] += 1
        if counts["trades"] <= 5:
            print(f"trade {trade.symbol:<5} {trade.price:>8.2f} x {trade.size:<5} exchange {trade.exchange}")

    @adapter.on(EquityQuote)
    def on_quote(quote: EquityQuote) -> None:
        counts["quotes"] += 1

    @adapter.on("A")  # by ev code: per-second aggregates
    def on_second(bar: EquityAgg) -> None:
        counts["second bars"] += 1
        if counts["second bars"] <= 3:
            print(f"1s bar {bar.symbol} close {bar.close} volume {bar.volume} vwap {bar.vwap}")

    # A demo ends after --duration; a service just calls run_forever(), which starts the adapter
    # and blocks until stop(), Ctrl-C or SIGTERM.
    stop_after(adapter, args.duration)
    adapter.run_forever()
    print(f"received {counts.total()} events ({dict(counts)})")


if __name__ == "__main__":
    main()
