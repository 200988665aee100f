"""LastValueCache against a real MockMassiveServer (client, pool) and the synthetic source, in both
dispatch modes; readers on 8 threads while streaming."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

import massive_rt as mrt
from massive_rt.testing import MockMassiveServer
from tests.conftest import wait_until

KEY = "test-key"
SYMBOLS = ("AAPL", "MSFT", "NVDA", "TSLA", "AMZN")
FAST = mrt.ReconnectPolicy(initial_delay=0.01, max_delay=0.05)


def trade(sym: str, q: int) -> dict[str, object]:
    return {"ev": "T", "sym": sym, "p": 100.0 + q, "s": 1, "t": 1_700_000_000_000 + q, "q": q}


def round_robin(count: int, symbols: tuple[str, ...] = SYMBOLS) -> list[dict[str, object]]:
    """``count`` trades, symbols in turn, one global sequence number (1, 2, 3 ...)."""
    return [trade(symbols[(q - 1) % len(symbols)], q) for q in range(1, count + 1)]


@pytest.fixture
def server() -> Iterator[MockMassiveServer]:
    with MockMassiveServer(api_keys={KEY}) as srv:
        yield srv


@pytest.fixture(params=["thread", "inline"])
def dispatch(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def streaming(server: MockMassiveServer, dispatch: str) -> Iterator[Callable[..., mrt.RealTimeDataAdapter]]:
    """``streaming(*channels)``: a started adapter on a client subscribed (and acked) to ``channels``."""
    adapters: list[mrt.RealTimeDataAdapter] = []

    def make(*channels: str, before_start: Callable[[mrt.RealTimeDataAdapter], object] | None = None):
        client = mrt.MassiveWebSocketClient(api_key=KEY, url=server.url(), reconnect=FAST, subscriptions=channels)
        adapter = mrt.RealTimeDataAdapter(client, dispatch=dispatch)
        adapters.append(adapter)
        if before_start is not None:
            before_start(adapter)
        adapter.start()
        client.wait_ready(5)
        assert client.wait_acked(channels, 5)
        return adapter

    yield make
    for adapter in adapters:
        adapter.stop()


def last_seq(cache: mrt.LastValueCache, symbol: str) -> int | None:
    value = cache.trade(symbol)
    return None if value is None else value.value.sequence_number  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------- reads


def test_latest_trade_quote_and_bars_per_symbol_with_their_age(server: MockMassiveServer, streaming) -> None:
    holder: dict[str, mrt.LastValueCache] = {}
    streaming("T.AAPL", "Q.AAPL", "AM.AAPL", "A.AAPL",
                        before_start=lambda a: holder.setdefault("cache", mrt.LastValueCache(a)))  # fmt: skip
    cache = holder["cache"]
    server.publish([
        trade("AAPL", 1), trade("AAPL", 2),
        {"ev": "Q", "sym": "AAPL", "bp": 99.5, "ap": 100.5, "t": 1, "q": 3},
        {"ev": "AM", "sym": "AAPL", "o": 1.0, "c": 2.0, "h": 3.0, "l": 0.5, "v": 10, "s": 60_000, "e": 120_000},
        {"ev": "A", "sym": "AAPL", "o": 1.0, "c": 1.5, "h": 1.5, "l": 1.0, "v": 1, "s": 61_000, "e": 62_000},
    ])  # fmt: skip
    assert wait_until(lambda: cache.bar("AAPL", interval="second") is not None, 5)

    last = cache.trade("AAPL")
    assert last is not None
    assert isinstance(last.value, mrt.EquityTrade)
    assert (last.value.sequence_number, last.seeded) == (2, False)
    assert last.received_at_ns == last.value.received_at_ns > 0
    assert 0 <= last.age_at(last.received_at_ns + 1_500_000_000) - 1.5 < 1e-9
    assert 0 <= last.age < 60
    quote = cache.quote("AAPL", market="stocks")
    assert quote is not None
    assert quote.value.bid_price == 99.5
    minute, second = cache.bar("AAPL"), cache.bar("AAPL", interval="second")
    assert minute is not None
    assert minute.value.close == 2.0
    assert second is not None
    assert second.value.close == 1.5
    assert cache.stats().values == 4


def test_unknown_symbol_or_market_reads_none_and_bad_arguments_raise_typed_errors(streaming) -> None:
    cache = mrt.LastValueCache(streaming("T.AAPL"))
    assert cache.trade("NOPE") is None
    assert cache.quote("AAPL") is None
    assert cache.bar("AAPL", market=mrt.Market.CRYPTO) is None
    with pytest.raises(mrt.ConfigurationError, match="market='mars'"):
        cache.trade("AAPL", market="mars")
    with pytest.raises(mrt.ConfigurationError, match="interval='hour'"):
        cache.bar("AAPL", interval="hour")
    with pytest.raises(mrt.ConfigurationError, match="symbol=42"):
        cache.trade(42)  # type: ignore[arg-type]
    with pytest.raises(mrt.ConfigurationError, match="not a RealTimeDataAdapter"):
        mrt.LastValueCache(object())


def test_events_without_a_symbol_are_counted_not_cached(server: MockMassiveServer, streaming) -> None:
    adapter = streaming("T.*")
    cache = mrt.LastValueCache(adapter)
    server.publish([{"ev": "T", "p": 1.0, "q": 1}, trade("AAPL", 2)])
    assert wait_until(lambda: cache.trade("AAPL") is not None, 5)
    assert (cache.stats().unkeyed, cache.stats().values) == (1, 1)


# ----------------------------------------------------------------------------- concurrency


@pytest.mark.timeout(60)
def test_eight_readers_see_monotonic_sequence_numbers_per_symbol_while_streaming(
    server: MockMassiveServer, streaming
) -> None:
    adapter = streaming(*(f"T.{s}" for s in SYMBOLS))
    cache = mrt.LastValueCache(adapter)
    trades = round_robin(20_000)
    final = {t["sym"]: t["q"] for t in trades}
    failures: list[str] = []
    reads = [0] * 8
    done = threading.Event()

    def reader(index: int) -> None:
        seen = dict.fromkeys(SYMBOLS, 0)
        while not done.is_set():
            for symbol in SYMBOLS:
                seq = last_seq(cache, symbol) or 0
                reads[index] += 1
                if seq < seen[symbol]:
                    failures.append(f"reader {index}: {symbol} went from {seen[symbol]} to {seq}")
                seen[symbol] = seq
            if seen == final:
                return

    threads = [threading.Thread(target=reader, args=(i,), name=f"reader-{i}", daemon=True) for i in range(8)]
    for thread in threads:
        thread.start()
    for start in range(0, len(trades), 500):
        server.publish(trades[start : start + 500], batch=10)
    for thread in threads:
        thread.join(30)
    done.set()
    assert not any(t.is_alive() for t in threads), "a reader never saw the last trade of every symbol"
    assert failures == []
    assert all(count >= len(SYMBOLS) for count in reads)
    assert {s: last_seq(cache, s) for s in SYMBOLS} == final


@pytest.mark.timeout(60)
def test_a_snapshot_holds_the_values_after_one_prefix_of_the_stream(server: MockMassiveServer, streaming) -> None:
    symbols = SYMBOLS[:3]
    adapter = streaming(*(f"T.{s}" for s in symbols))
    cache = mrt.LastValueCache(adapter)
    trades = round_robin(30_000, symbols)
    torn: list[list[int]] = []
    taken = 0
    done = threading.Event()

    def snapshots() -> None:
        nonlocal taken
        while not done.is_set():
            snap = cache.snapshot()
            seqs = sorted(v.value.sequence_number for _, v in snap.items())  # type: ignore[attr-defined]
            taken += 1
            # Trades go round-robin with one global sequence: after any prefix, the latest of each
            # symbol are the last len(symbols) numbers of that prefix.
            if len(seqs) == len(symbols) and seqs != list(range(seqs[-1] - len(symbols) + 1, seqs[-1] + 1)):
                torn.append(seqs)
            if seqs and seqs[-1] == len(trades):
                return

    thread = threading.Thread(target=snapshots, name="snapshots", daemon=True)
    thread.start()
    for start in range(0, len(trades), 300):
        server.publish(trades[start : start + 300], batch=10)
    thread.join(30)
    done.set()
    assert not thread.is_alive(), "the snapshots never reached the last trade"
    assert torn == []
    assert taken > 0


def test_a_snapshot_is_a_copy_that_later_events_do_not_change(server: MockMassiveServer, streaming) -> None:
    cache = mrt.LastValueCache(streaming("T.AAPL"))
    server.publish([trade("AAPL", 1)])
    assert wait_until(lambda: last_seq(cache, "AAPL") == 1, 5)
    snap = cache.snapshot()
    server.publish([trade("AAPL", 2)])
    assert wait_until(lambda: last_seq(cache, "AAPL") == 2, 5)

    before = snap.trade("AAPL")
    assert before is not None
    assert before.value.sequence_number == 1
    assert [(key.kind, key.market, key.symbol) for key, _ in snap.items()] == [("trade", "stocks", "AAPL")]
    assert len(snap) == 1
    assert ("trade", "stocks", "AAPL") in snap


# ----------------------------------------------------------------------------- seeding


def seeded_trade(sym: str, q: int) -> mrt.EquityTrade:
    return mrt.EquityTrade(event_type="T", symbol=sym, price=50.0, sequence_number=q)


def test_seeded_values_are_marked_and_replaced_by_live_ones(server: MockMassiveServer, streaming) -> None:
    def seed(cache: mrt.LastValueCache) -> None:
        stored = cache.seed([seeded_trade("AAPL", 0), seeded_trade("MSFT", 0),
                             mrt.EquityAgg(event_type="AM", symbol="AAPL", close=49.0)])  # fmt: skip
        assert stored == 3

    holder: dict[str, mrt.LastValueCache] = {}
    streaming("T.AAPL", "T.MSFT", before_start=lambda a: holder.setdefault("c", mrt.LastValueCache(a, seed=seed)))
    cache = holder["c"]
    msft = cache.trade("MSFT")
    assert msft is not None
    assert msft.seeded
    assert msft.received_at_ns > 0
    bar = cache.bar("AAPL")
    assert bar is not None
    assert bar.seeded
    assert bar.value.close == 49.0
    assert cache.stats().seeded == 3

    server.publish([trade("AAPL", 7)])
    assert wait_until(lambda: last_seq(cache, "AAPL") == 7, 5)
    live = cache.trade("AAPL")
    assert live is not None
    assert not live.seeded
    assert cache.trade("MSFT") == msft  # no live MSFT trade yet: still the seeded one
    assert (cache.stats().seeded, cache.stats().seed_stored) == (2, 3)


def test_a_seed_never_replaces_a_cached_value(server: MockMassiveServer, streaming) -> None:
    cache = mrt.LastValueCache(streaming("T.AAPL"))
    server.publish([trade("AAPL", 5)])
    assert wait_until(lambda: last_seq(cache, "AAPL") == 5, 5)

    assert cache.seed([seeded_trade("AAPL", 1)]) == 0
    assert cache.seed([seeded_trade("X:BTC-USD", 1)], market="crypto") == 1
    live = cache.trade("AAPL")
    assert live is not None
    assert (live.value.sequence_number, live.seeded) == (5, False)
    assert cache.trade("X:BTC-USD", market="crypto") is not None
    assert cache.trade("X:BTC-USD") is None  # another market


def test_seeding_refuses_what_it_cannot_key_and_stores_nothing(streaming) -> None:
    cache = mrt.LastValueCache(streaming("T.AAPL"))
    with pytest.raises(mrt.ConfigurationError, match="cannot seed"):
        cache.seed([seeded_trade("AAPL", 1), mrt.LimitUpLimitDown(symbol="AAPL")])
    with pytest.raises(mrt.ConfigurationError, match="cannot seed"):
        cache.seed([mrt.EquityAgg(event_type="XYZ", symbol="AAPL")])
    with pytest.raises(mrt.ConfigurationError, match="cannot seed"):
        cache.seed([mrt.EquityTrade(event_type="T")])
    assert cache.stats().values == 0


@pytest.mark.allow_errors(r"^last-value cache: the seed callable raised", logger="massive_rt.lastvalue")
def test_a_failing_seed_is_logged_and_counted_and_live_events_still_fill_the_cache(
    server: MockMassiveServer, streaming
) -> None:
    def seed(_cache: mrt.LastValueCache) -> None:
        raise TimeoutError("REST down")

    holder: dict[str, mrt.LastValueCache] = {}
    streaming("T.AAPL", before_start=lambda a: holder.setdefault("c", mrt.LastValueCache(a, seed=seed)))
    cache = holder["c"]
    assert cache.stats().seed_errors == 1
    server.publish([trade("AAPL", 1)])
    assert wait_until(lambda: last_seq(cache, "AAPL") == 1, 5)


# ----------------------------------------------------------------------------- sources, lifecycle


def test_a_pool_caches_under_each_connections_market(server: MockMassiveServer, dispatch: str) -> None:
    pool = mrt.ConnectionPool(api_key=KEY, max_connections=2, url=server.url)
    pool.subscribe("T.AAPL")
    pool.subscribe("XT.X:BTC-USD", market="crypto")
    adapter = mrt.RealTimeDataAdapter(pool, dispatch=dispatch)
    cache = mrt.LastValueCache(adapter)
    try:
        adapter.start()
        pool.wait_ready(5)
        server.publish([trade("AAPL", 1)])
        server.publish([{"ev": "XT", "pair": "X:BTC-USD", "p": 60_000.0, "s": 0.1, "t": 1}], market="crypto")
        assert wait_until(lambda: cache.trade("X:BTC-USD", market="crypto") is not None, 5)
        assert wait_until(lambda: cache.trade("AAPL") is not None, 5)
        assert cache.market == "stocks"
        assert cache.trade("X:BTC-USD") is None
        assert {key.market for key, _ in cache.snapshot().items()} == {"stocks", "crypto"}
    finally:
        adapter.stop()


def test_the_synthetic_source_fills_trades_quotes_and_bars(dispatch: str) -> None:
    source = mrt.SyntheticSource(["T.*", "Q.*", "AM.*", "A.*"], symbols=["AAPL", "MSFT"], seed=3, rate=None,
                                 clock=None)  # simulated time: bars as fast as the events
    adapter = mrt.RealTimeDataAdapter(source, dispatch=dispatch)
    cache = mrt.LastValueCache(adapter)
    with adapter:
        kinds = {"trade", "quote", "minute", "second"}
        assert wait_until(lambda: {key.kind for key, _ in cache.snapshot().items()} == kinds, 10)
    assert cache.trade("AAPL") is not None
    assert cache.quote("MSFT") is not None


def test_close_unregisters_the_cache_and_keeps_what_it_holds(server: MockMassiveServer, streaming) -> None:
    adapter = streaming("T.AAPL")
    seen: list[mrt.Event] = []
    adapter.on(mrt.EquityTrade, seen.append)
    with mrt.LastValueCache(adapter) as cache:
        server.publish([trade("AAPL", 1)])
        assert wait_until(lambda: last_seq(cache, "AAPL") == 1, 5)
    server.publish([trade("AAPL", 2)])
    assert wait_until(lambda: len(seen) == 2, 5)  # the user's handler still runs
    assert last_seq(cache, "AAPL") == 1
    cache.close()  # idempotent


# ----------------------------------------------------------------------------- routing of the write side


def test_bars_of_another_ev_and_unknown_events_are_not_cached_and_routes_stay_bounded(
    server: MockMassiveServer, streaming
) -> None:
    adapter = streaming("T.*", "AM.*", "A.*")
    cache = mrt.LastValueCache(adapter)
    junk = [{"ev": f"Z{i}", "sym": "AAPL"} for i in range(400)]  # unknown ev codes: UnknownEvent
    bars = [{"ev": ev, "sym": "AAPL", "o": 1.0, "c": 2.0, "h": 2.0, "l": 1.0, "v": 10, "s": s, "e": s + 1}
            for ev, s in (("AM", 60_000), ("A", 61_000))]  # fmt: skip
    server.publish([*junk, *bars, trade("AAPL", 7)])
    assert wait_until(lambda: last_seq(cache, "AAPL") == 7, 5)
    minute, second = cache.bar("AAPL"), cache.bar("AAPL", interval="second")
    assert minute is not None
    assert minute.value.event_type == "AM"
    assert second is not None
    assert second.value.event_type == "A"
    assert cache.stats().values == 3
    assert all(len(routes) <= 256 for routes in cache._routes.values())
    assert ("minute", "stocks", "AAPL") in cache
    assert ("trade", "crypto", "AAPL") not in cache
    assert len(cache) == 3
    assert {key.kind for key, _ in cache.items()} == {"trade", "minute", "second"}
