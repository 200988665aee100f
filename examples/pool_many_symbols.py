"""Many symbols over a ConnectionPool: 300 channels spread across connections.

    python examples/pool_many_symbols.py                        # offline: synthetic data, no key
    MASSIVE_API_KEY=... python examples/pool_many_symbols.py    # Massive (mind your plan's limit)

The pool places every channel exactly once (no duplicate delivery), on the least-loaded
connection with room, never exceeding max_connections (your account's limit) and
max_subscriptions_per_connection. One adapter drains every connection fairly.
"""

from __future__ import annotations

import collections

from _offline import arguments, endpoint, stop_after

from massive_rt import ConnectionPool, MarketEvent, RealTimeDataAdapter

# 100 large caps x (trades, quotes, minute bars) = 300 channels.
_LARGE_CAPS = """
AAPL ABBV ABT ACN ADBE AIG AMD AMGN AMT AMZN AVGO AXP BA BAC BK BKNG BLK BMY BRK.B C CAT CHTR CL CMCSA
COF COP COST CRM CSCO CVS CVX DE DHR DIS DUK EMR F FDX GD GE GILD GM GOOG GOOGL GS HD HON IBM INTC INTU
ISRG JNJ JPM KO LIN LLY LMT LOW MA MCD MDLZ MDT MET META MMM MO MRK MS MSFT NEE NFLX NKE NOW NVDA
ORCL PEP PFE PG PLTR PM QCOM RTX SBUX SCHW SO SPG T TGT TMO TMUS TSLA TXN UNH UNP UPS USB V VZ WFC WMT
"""
TICKERS = _LARGE_CAPS.split()
CHANNELS = [f"{prefix}.{ticker}" for ticker in TICKERS for prefix in ("T", "Q", "AM")]


def main() -> None:
    args = arguments(__doc__).parse_args()
    by_connection: collections.Counter[str] = collections.Counter()

    with endpoint(args.url, symbols=TICKERS, rate=3000) as (api_key, url):
        pool = ConnectionPool(api_key, url=url, max_connections=3, max_subscriptions_per_connection=100)
        placed = pool.subscribe(*CHANNELS)  # {channel: connection name}; starts with the pool
        print(f"{len(CHANNELS)} channels on {len(set(placed.values()))} connections; "
              f"T.AAPL is on {pool.assignment('T.AAPL')}")  # fmt: skip

        def count(event: MarketEvent) -> None:
            by_connection[event.connection] += 1

        adapter = RealTimeDataAdapter(pool, on_event=count)  # on_event: every market event
        adapter.start().wait_ready(timeout=10)  # every connection streaming, or a typed error
        stop_after(adapter, args.duration)  # a demo; a service just runs on
        adapter.run_forever()  # until stop(), Ctrl-C or SIGTERM
        print(f"{'connection':<16}{'state':<11}{'channels':>9}{'frames':>9}{'events':>9}{'dropped':>9}")
        for stats in pool.stats().per_connection:
            print(f"{stats.name:<16}{stats.state.value:<11}{stats.subscriptions:>9}{stats.frames_received:>9}"
                  f"{stats.events_decoded:>9}{stats.dropped_events:>9}")  # fmt: skip

    print(f"received {by_connection.total()} events ({dict(by_connection)})")


if __name__ == "__main__":
    main()
