"""REST rows converted to stream events per second (issue 15): not a timed test, a measurement.

Builds official ``massive`` model objects (``Trade``, ``Quote``, ``Agg``) from the JSON rows
MockMassiveREST serves, then times :func:`massive_rt.rest.trade_event` / ``quote_event`` /
``agg_event`` over them (conversion only: no HTTP). Run: ``python benchmarks/bench_rest_convert.py``.
"""

from __future__ import annotations

import statistics
import time

from massive.rest.models import Agg, Quote, Trade

from massive_rt.rest import agg_event, quote_event, trade_event

ROWS = 100_000
REPS = 5


def main() -> None:
    t0 = 1_700_000_000_000_000_000
    trades = [Trade.from_dict({"conditions": [12], "exchange": 4, "id": str(i), "participant_timestamp": t0 + i,
                               "price": 190.25, "sequence_number": i, "sip_timestamp": t0 + i, "size": 100, "tape": 3})
              for i in range(ROWS)]  # fmt: skip
    quotes = [Quote.from_dict({"ask_exchange": 12, "ask_price": 190.3, "ask_size": 4, "bid_exchange": 11,
                               "bid_price": 190.2, "bid_size": 3, "conditions": [1], "indicators": [604],
                               "participant_timestamp": t0 + i, "sequence_number": i, "sip_timestamp": t0 + i,
                               "tape": 3}) for i in range(ROWS)]  # fmt: skip
    aggs = [Agg.from_dict({"o": 1.0, "h": 2.0, "l": 0.5, "c": 1.5, "v": 100, "vw": 1.2, "t": 1_700_000_000_000 + i})
            for i in range(ROWS)]  # fmt: skip
    cases = [
        ("trades → EquityTrade", lambda: [trade_event(r, "AAPL") for r in trades]),
        ("quotes → EquityQuote", lambda: [quote_event(r, "AAPL") for r in quotes]),
        ("minute bars → EquityAgg", lambda: [agg_event(r, "AAPL", "minute") for r in aggs]),
    ]
    print(f"| rows | min rows/s | median rows/s | max rows/s |  ({ROWS:,} rows x {REPS})")
    print("|---|---:|---:|---:|")
    for name, run in cases:
        rates = []
        for _ in range(REPS):
            start = time.perf_counter()
            run()
            rates.append(ROWS / (time.perf_counter() - start))
        print(f"| {name} | {min(rates):,.0f} | {statistics.median(rates):,.0f} | {max(rates):,.0f} |")


if __name__ == "__main__":
    main()
