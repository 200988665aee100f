"""ReconnectPolicy, ClientConfig, the str enums and feed-host resolution."""

from __future__ import annotations

import collections
import math
import random
import ssl
import statistics
from typing import Any

import attrs
import pytest

import massive_rt as mrt
from massive_rt.config import ClientConfig, LimitRetry, ReconnectPolicy, limit_retry_for, mask_secret
from massive_rt.enums import ConnectionState, Feed, Market, Overflow, resolve_feed_host
from massive_rt.errors import ConfigurationError, MassiveRTError

SECRET = "SECRET-KEY-123"


# ============================================================================================
# ReconnectPolicy: bound


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (ReconnectPolicy(), [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]),
        (ReconnectPolicy(initial_delay=1, max_delay=100, multiplier=3), [1, 3, 9, 27, 81, 100, 100, 100, 100]),
        (ReconnectPolicy(initial_delay=2, max_delay=5, multiplier=1), [2] * 9),
        (ReconnectPolicy(initial_delay=0.1, max_delay=0.25, multiplier=1.5), [0.1, 0.15, 0.225] + [0.25] * 6),
        (ReconnectPolicy(initial_delay=10, max_delay=1, multiplier=2), [1] * 9),
        (ReconnectPolicy(initial_delay=0, max_delay=30), [0.0] * 9),
        (ReconnectPolicy(initial_delay=1, max_delay=0), [0.0] * 9),
    ],
    ids=["defaults", "x3-cap-100", "constant", "x1.5", "initial-above-cap", "zero-initial", "zero-cap"],
)
def test_bound_grows_geometrically_and_caps_at_max_delay(policy: ReconnectPolicy, expected: list[float]) -> None:
    assert [policy.bound(n) for n in range(9)] == pytest.approx(expected)


@pytest.mark.parametrize("attempt", [0, 1, 5, 20, 63, 64, 1_000, 1_023, 1_024, 1_025, 10_000, 10**9])
def test_bound_equals_the_formula_or_the_cap_for_any_attempt(attempt: int) -> None:
    policy = ReconnectPolicy(initial_delay=0.5, max_delay=30.0, multiplier=2.0)

    assert policy.bound(attempt) == min(30.0, 0.5 * 2.0 ** min(attempt, 100))


@pytest.mark.parametrize("multiplier", [1.0, 1.001, 1.5, 2.0, 10.0, 1e6, 1e300])
def test_bound_of_a_huge_attempt_is_the_cap_without_overflow(multiplier: float) -> None:
    policy = ReconnectPolicy(initial_delay=0.5, max_delay=30.0, multiplier=multiplier)

    expected = 0.5 if multiplier == 1.0 else 30.0
    assert policy.bound(10_000) == expected
    assert policy.delay(10_000, random.Random(1)) <= expected


def test_bound_never_decreases_and_never_exceeds_the_cap() -> None:
    policy = ReconnectPolicy(initial_delay=0.001, max_delay=60.0, multiplier=1.3)

    bounds = [policy.bound(n) for n in range(200)]

    assert bounds == sorted(bounds)
    assert max(bounds) == 60.0
    assert all(b <= 60.0 for b in bounds)


def test_bound_does_not_overflow_when_the_delay_ratio_is_huge() -> None:
    policy = ReconnectPolicy(initial_delay=1e-300, max_delay=1e10, multiplier=2.0)

    assert policy.bound(10_000) == 1e10


def test_negative_attempt_is_rejected() -> None:
    with pytest.raises(ConfigurationError) as info:
        ReconnectPolicy().bound(-1)

    assert info.value.field == "attempt"


# ============================================================================================
# ReconnectPolicy: jitter


@pytest.mark.parametrize("attempt", [0, 1, 3, 6, 50])
def test_full_jitter_stays_within_zero_and_bound(attempt: int) -> None:
    policy = ReconnectPolicy()
    rng = random.Random(attempt)
    bound = policy.bound(attempt)

    delays = [policy.delay(attempt, rng) for _ in range(2_000)]

    assert all(0.0 <= d <= bound for d in delays)
    assert min(delays) < bound * 0.05
    assert max(delays) > bound * 0.95


def test_full_jitter_is_roughly_uniform() -> None:
    policy = ReconnectPolicy(initial_delay=1.0, max_delay=8.0, multiplier=2.0)
    rng = random.Random(20240611)
    bound = policy.bound(3)

    delays = [policy.delay(3, rng) for _ in range(20_000)]

    assert bound == 8.0
    assert statistics.fmean(delays) == pytest.approx(bound / 2, rel=0.05)
    # Each tenth of [0, bound] holds about a tenth of the samples.
    deciles = [0] * 10
    for d in delays:
        deciles[min(9, int(d / bound * 10))] += 1
    assert all(1_700 < count < 2_300 for count in deciles), deciles


def test_full_jitter_is_deterministic_with_a_seeded_rng() -> None:
    policy = ReconnectPolicy()

    first = [policy.delay(n, random.Random(7)) for n in range(10)]
    second = [policy.delay(n, random.Random(7)) for n in range(10)]

    assert first == second


@pytest.mark.parametrize("attempt", [0, 2, 10])
def test_equal_jitter_stays_within_half_bound_and_bound(attempt: int) -> None:
    policy = ReconnectPolicy(jitter="equal")
    rng = random.Random(99)
    bound = policy.bound(attempt)

    delays = [policy.delay(attempt, rng) for _ in range(5_000)]

    assert all(bound / 2 <= d <= bound for d in delays)
    assert statistics.fmean(delays) == pytest.approx(0.75 * bound, rel=0.05)


@pytest.mark.parametrize("attempt", [0, 1, 4, 10, 10_000])
def test_no_jitter_waits_exactly_the_bound(attempt: int) -> None:
    policy = ReconnectPolicy(jitter="none")

    assert policy.delay(attempt, random.Random(1)) == policy.bound(attempt)
    assert policy.delay(attempt) == policy.bound(attempt)


def test_delay_uses_the_given_rng() -> None:
    class Fixed:
        def __init__(self) -> None:
            self.calls: list[tuple[float, float]] = []

        def uniform(self, a: float, b: float) -> float:
            self.calls.append((a, b))
            return b

    rng = Fixed()

    assert ReconnectPolicy().delay(2, rng) == 2.0
    assert ReconnectPolicy(jitter="equal").delay(2, rng) == 2.0
    assert rng.calls == [(0, 2.0), (0, 1.0)]


def test_delay_without_rng_uses_the_module_random_within_bounds() -> None:
    policy = ReconnectPolicy(initial_delay=1, max_delay=4)

    assert all(0 <= policy.delay(5) <= 4 for _ in range(200))


# ============================================================================================
# ReconnectPolicy: giving up, validation, evolve


@pytest.mark.parametrize(
    ("max_attempts", "failures", "gives_up"),
    [
        (None, 0, False),
        (None, 1, False),
        (None, 10**9, False),
        (0, 0, False),
        (0, 1, True),
        (3, 3, False),
        (3, 4, True),
        (3, 100, True),
    ],
)
def test_gives_up_after_more_failures_than_max_attempts(
    max_attempts: int | None, failures: int, gives_up: bool
) -> None:
    assert ReconnectPolicy(max_attempts=max_attempts).gives_up_after(failures) is gives_up


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"initial_delay": -0.1}, "initial_delay"),
        ({"initial_delay": math.inf}, "initial_delay"),
        ({"initial_delay": math.nan}, "initial_delay"),
        ({"initial_delay": "1"}, "initial_delay"),
        ({"initial_delay": True}, "initial_delay"),
        ({"max_delay": -1}, "max_delay"),
        ({"max_delay": math.inf}, "max_delay"),
        ({"reset_after": -5}, "reset_after"),
        ({"multiplier": 0.5}, "multiplier"),
        ({"multiplier": 0}, "multiplier"),
        ({"multiplier": -2}, "multiplier"),
        ({"multiplier": math.nan}, "multiplier"),
        ({"multiplier": True}, "multiplier"),
        ({"multiplier": "2"}, "multiplier"),
        ({"jitter": "x"}, "jitter"),
        ({"jitter": "FULL"}, "jitter"),
        ({"jitter": None}, "jitter"),
        ({"max_attempts": -1}, "max_attempts"),
        ({"max_attempts": True}, "max_attempts"),
        ({"max_attempts": 1.5}, "max_attempts"),
        ({"max_attempts": "3"}, "max_attempts"),
    ],
    ids=lambda v: repr(v) if isinstance(v, dict) else str(v),
)
def test_invalid_policy_raises_configuration_error_naming_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        ReconnectPolicy(**kwargs)

    assert info.value.field == field
    assert field in str(info.value)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, MassiveRTError)


def test_policy_defaults() -> None:
    policy = ReconnectPolicy()

    assert (policy.initial_delay, policy.max_delay, policy.multiplier) == (0.5, 30.0, 2.0)
    assert (policy.jitter, policy.max_attempts, policy.reset_after) == ("full", None, 30.0)


def test_evolve_returns_a_validated_copy() -> None:
    policy = ReconnectPolicy()

    changed = policy.evolve(max_attempts=5, jitter="none")

    assert (changed.max_attempts, changed.jitter, changed.initial_delay) == (5, "none", 0.5)
    assert (policy.max_attempts, policy.jitter) == (None, "full")
    with pytest.raises(ConfigurationError) as info:
        policy.evolve(multiplier=0.9)
    assert info.value.field == "multiplier"


def test_policy_is_frozen_and_comparable() -> None:
    policy = ReconnectPolicy()

    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        policy.max_delay = 1  # type: ignore[misc]
    assert policy == ReconnectPolicy()
    assert policy != ReconnectPolicy(max_delay=1)


# ============================================================================================
# ClientConfig: defaults and URL


def test_client_config_defaults() -> None:
    config = ClientConfig()

    assert config.api_key is None
    assert config.market is Market.STOCKS
    assert config.feed is Feed.REALTIME
    assert config.url is None
    assert config.subscriptions == ()
    assert config.reconnect == ReconnectPolicy()
    assert config.queue_size == 100_000
    assert config.overflow is Overflow.DROP_OLDEST
    assert (config.ping_interval, config.ping_timeout, config.stale_after) == (20.0, 20.0, None)
    assert (config.connect_timeout, config.name, config.raw, config.on_limit) == (10.0, None, False, "auto")
    assert config.max_message_size == 16 * 1024 * 1024
    assert (config.ca_certs, config.ssl_context, config.websocket_options) == (None, None, {})
    assert config.resolved_url == "wss://socket.massive.com/stocks"


@pytest.mark.parametrize(
    ("kwargs", "url"),
    [
        ({}, "wss://socket.massive.com/stocks"),
        ({"market": "crypto"}, "wss://socket.massive.com/crypto"),
        ({"feed": Feed.DELAYED}, "wss://delayed.massive.com/stocks"),
        ({"feed": "delayed", "market": "options"}, "wss://delayed.massive.com/options"),
        ({"feed": "Business", "market": "forex"}, "wss://business.massive.com/forex"),
        ({"market": "futures/cme"}, "wss://socket.massive.com/futures/cme"),
        ({"market": Market.FUTURES_COMEX, "feed": "delayed"}, "wss://delayed.massive.com/futures/comex"),
        ({"market": "FUTURES_NYMEX"}, "wss://socket.massive.com/futures/nymex"),
        ({"feed": "localhost:8765"}, "wss://localhost:8765/stocks"),
        ({"feed": "127.0.0.1:8765", "market": "indices"}, "wss://127.0.0.1:8765/indices"),
        ({"feed": "[::1]:8765"}, "wss://[::1]:8765/stocks"),
        ({"url": "ws://127.0.0.1:8765/stocks"}, "ws://127.0.0.1:8765/stocks"),
        ({"url": "ws://localhost:1/anything", "market": "crypto", "feed": "delayed"}, "ws://localhost:1/anything"),
        ({"url": "wss://example.com"}, "wss://example.com"),
    ],
)
def test_resolved_url_comes_from_feed_and_market_unless_url_is_given(kwargs: dict[str, Any], url: str) -> None:
    assert ClientConfig(**kwargs).resolved_url == url


def test_market_and_overflow_strings_are_coerced_to_members() -> None:
    config = ClientConfig(market="Crypto", overflow="DROP_NEWEST")

    assert config.market is Market.CRYPTO
    assert config.overflow is Overflow.DROP_NEWEST


def test_subscriptions_accept_a_single_string_or_any_iterable() -> None:
    assert ClientConfig(subscriptions="T.AAPL").subscriptions == ("T.AAPL",)
    assert ClientConfig(subscriptions=["T.A", "Q.B"]).subscriptions == ("T.A", "Q.B")
    assert ClientConfig(subscriptions=iter(["AM.*"])).subscriptions == ("AM.*",)


def test_websocket_options_are_copied() -> None:
    options = {"enable_multithread": True}

    config = ClientConfig(websocket_options=options)
    options["other"] = 1

    assert config.websocket_options == {"enable_multithread": True}


def test_client_config_accepts_an_ssl_context() -> None:
    context = ssl.create_default_context()

    assert ClientConfig(ssl_context=context).ssl_context is context


# ============================================================================================
# ClientConfig: from_env


def test_from_env_reads_the_massive_variables() -> None:
    environ = {
        "MASSIVE_API_KEY": SECRET,
        "MASSIVE_FEED": "delayed",
        "MASSIVE_MARKET": "options",
        "UNRELATED": "x",
    }

    config = ClientConfig.from_env(environ)

    assert (config.api_key, config.feed, config.market) == (SECRET, "delayed", Market.OPTIONS)
    assert config.resolved_url == "wss://delayed.massive.com/options"


def test_from_env_ws_url_wins_over_feed_and_market_for_the_endpoint() -> None:
    config = ClientConfig.from_env({"MASSIVE_WS_URL": "ws://127.0.0.1:9/x", "MASSIVE_MARKET": "crypto"})

    assert config.resolved_url == "ws://127.0.0.1:9/x"
    assert config.market is Market.CRYPTO


def test_from_env_overrides_win_over_the_environment() -> None:
    environ = {"MASSIVE_API_KEY": "from-env", "MASSIVE_MARKET": "options", "MASSIVE_FEED": "delayed"}

    config = ClientConfig.from_env(environ, api_key=SECRET, market="crypto", queue_size=10)

    assert (config.api_key, config.market, config.feed, config.queue_size) == (SECRET, Market.CRYPTO, "delayed", 10)


def test_from_env_ignores_overrides_that_are_none() -> None:
    config = ClientConfig.from_env({"MASSIVE_API_KEY": SECRET}, api_key=None, name=None)

    assert config.api_key == SECRET
    assert config.name is None


@pytest.mark.parametrize("blank", ["", "   ", "\t\n"])
def test_from_env_ignores_blank_values(blank: str) -> None:
    environ = {"MASSIVE_API_KEY": blank, "MASSIVE_FEED": blank, "MASSIVE_MARKET": blank, "MASSIVE_WS_URL": blank}

    config = ClientConfig.from_env(environ)

    assert config == ClientConfig()


def test_from_env_strips_surrounding_whitespace() -> None:
    config = ClientConfig.from_env({"MASSIVE_API_KEY": f"  {SECRET}\n", "MASSIVE_MARKET": " forex "})

    assert (config.api_key, config.market) == (SECRET, Market.FOREX)


def test_from_env_with_an_empty_environment_gives_the_defaults() -> None:
    assert ClientConfig.from_env({}) == ClientConfig()


def test_from_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("MASSIVE_FEED", "MASSIVE_WS_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MASSIVE_API_KEY", SECRET)
    monkeypatch.setenv("MASSIVE_MARKET", "indices")

    config = ClientConfig.from_env()

    assert (config.api_key, config.market) == (SECRET, Market.INDICES)


@pytest.mark.parametrize(
    ("environ", "field"),
    [
        ({"MASSIVE_MARKET": "bonds"}, "market"),
        ({"MASSIVE_FEED": "https://socket.massive.com"}, "feed"),
        ({"MASSIVE_WS_URL": "http://x"}, "url"),
    ],
)
def test_from_env_validates_like_the_constructor(environ: dict[str, str], field: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        ClientConfig.from_env(environ)

    assert info.value.field == field


# ============================================================================================
# ClientConfig: validation


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"url": "http://x"}, "url"),
        ({"url": "https://socket.massive.com/stocks"}, "url"),
        ({"url": "ws://"}, "url"),
        ({"url": "wss://:8765/stocks"}, "url"),
        ({"url": "socket.massive.com/stocks"}, "url"),
        ({"url": "wss://host:99999/x"}, "url"),
        ({"url": "wss://host:port/x"}, "url"),
        ({"url": ""}, "url"),
        ({"url": 5}, "url"),
        ({"url": b"ws://x"}, "url"),
        ({"queue_size": 0}, "queue_size"),
        ({"queue_size": -1}, "queue_size"),
        ({"queue_size": 1.5}, "queue_size"),
        ({"queue_size": True}, "queue_size"),
        ({"queue_size": "10"}, "queue_size"),
        ({"overflow": "x"}, "overflow"),
        ({"overflow": None}, "overflow"),
        ({"market": "bonds"}, "market"),
        ({"market": ""}, "market"),
        ({"market": 5}, "market"),
        ({"feed": "wss://socket.massive.com"}, "feed"),
        ({"feed": "socket.massive.com/stocks"}, "feed"),
        ({"feed": "a b"}, "feed"),
        ({"feed": ""}, "feed"),
        ({"feed": 5}, "feed"),
        ({"ping_interval": -1}, "ping_interval"),
        ({"ping_interval": 0}, "ping_interval"),
        ({"ping_interval": math.nan}, "ping_interval"),
        ({"ping_timeout": 0}, "ping_timeout"),
        ({"ping_timeout": None}, "ping_timeout"),
        ({"stale_after": -1}, "stale_after"),
        ({"connect_timeout": math.inf}, "connect_timeout"),
        ({"connect_timeout": True}, "connect_timeout"),
        ({"name": "has spaces"}, "name"),
        ({"name": "tab\there"}, "name"),
        ({"name": ""}, "name"),
        ({"name": 5}, "name"),
        ({"api_key": 12345}, "api_key"),
        ({"api_key": b"key"}, "api_key"),
        ({"max_message_size": 1023}, "max_message_size"),
        ({"max_message_size": True}, "max_message_size"),
        ({"reconnect": None}, "reconnect"),
        ({"reconnect": {"max_attempts": 3}}, "reconnect"),
        ({"ssl_context": "ctx"}, "ssl_context"),
        ({"subscriptions": ["T.AAPL", None]}, "subscriptions"),
        ({"subscriptions": [b"T.AAPL"]}, "subscriptions"),
    ],
    ids=lambda v: repr(v) if isinstance(v, dict) else str(v),
)
def test_invalid_config_raises_configuration_error_naming_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        ClientConfig(**kwargs)

    assert info.value.field == field
    assert field in str(info.value)


@pytest.mark.parametrize("feed", ["localhost:99999", "localhost:65536"])
def test_feed_with_an_out_of_range_port_is_rejected(feed: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        ClientConfig(feed=feed)

    assert info.value.field == "feed"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"url": "ws://127.0.0.1:8765"},
        {"url": "wss://host:443/stocks?x=1"},
        {"ping_interval": None},
        {"stale_after": 0.5},
        {"name": "stocks-1"},
        {"queue_size": 1},
        {"max_message_size": 1024},
        {"api_key": ""},
        {"overflow": "block"},
        {"reconnect": ReconnectPolicy(max_attempts=0)},
        {"raw": 1},
    ],
    ids=repr,
)
def test_valid_edge_values_are_accepted(kwargs: dict[str, Any]) -> None:
    config = ClientConfig(**kwargs)

    assert isinstance(config, ClientConfig)


def test_evolve_returns_a_validated_copy_of_the_config() -> None:
    config = ClientConfig(api_key=SECRET)

    changed = config.evolve(market="crypto", queue_size=5)

    assert (changed.market, changed.queue_size, changed.api_key) == (Market.CRYPTO, 5, SECRET)
    assert (config.market, config.queue_size) == (Market.STOCKS, 100_000)
    with pytest.raises(ConfigurationError) as info:
        config.evolve(queue_size=0)
    assert info.value.field == "queue_size"


def test_config_is_frozen() -> None:
    config = ClientConfig()

    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.api_key = SECRET  # type: ignore[misc]


# ============================================================================================
# ClientConfig: the API key never shows


@pytest.mark.parametrize(
    "config",
    [
        ClientConfig(api_key=SECRET),
        ClientConfig(api_key=SECRET, market="crypto", name="c1", subscriptions=["XT.*"]),
        ClientConfig.from_env({"MASSIVE_API_KEY": SECRET}),
    ],
    ids=["plain", "full", "from_env"],
)
def test_api_key_never_appears_in_repr_or_str(config: ClientConfig) -> None:
    for text in (repr(config), str(config), f"{config}", f"{config!r}", repr([config]), repr({"c": config})):
        assert SECRET not in text
        assert "SECRET" not in text
    assert "api_key='***'" in repr(config)


def test_repr_shows_the_useful_fields() -> None:
    config = ClientConfig(api_key=SECRET, market="crypto", name="c1", subscriptions=["XT.*", "XQ.*"])

    text = repr(config)

    assert text.startswith("ClientConfig(")
    assert "market='crypto'" in text
    assert "url='wss://socket.massive.com/crypto'" in text
    assert "2 channels" in text
    assert "name='c1'" in text


def test_repr_says_when_no_key_is_set() -> None:
    assert "api_key=<unset>" in repr(ClientConfig())


def test_api_key_does_not_leak_through_a_validation_error() -> None:
    with pytest.raises(ConfigurationError) as info:
        ClientConfig(api_key=SECRET, queue_size=0)

    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value)


@pytest.mark.parametrize(("secret", "shown"), [(None, "<unset>"), ("", "<unset>"), (SECRET, "'***'"), ("x", "'***'")])
def test_mask_secret_shows_none_of_the_secret(secret: str | None, shown: str) -> None:
    assert mask_secret(secret) == shown


# ============================================================================================
# Enums


@pytest.mark.parametrize(
    ("value", "member"),
    [
        ("stocks", Market.STOCKS),
        ("STOCKS", Market.STOCKS),
        ("Stocks", Market.STOCKS),
        (" crypto ", Market.CRYPTO),
        ("futures/cme", Market.FUTURES_CME),
        ("Futures/CME", Market.FUTURES_CME),
        ("FUTURES_CME", Market.FUTURES_CME),
        ("futures-cme", Market.FUTURES_CME),
        (Market.INDICES, Market.INDICES),
    ],
)
def test_market_accepts_strings_case_insensitively(value: str, member: Market) -> None:
    assert Market(value) is member
    assert Market.coerce(value, "market") is member


@pytest.mark.parametrize(
    ("value", "member"),
    [
        ("drop_oldest", Overflow.DROP_OLDEST),
        ("DROP_OLDEST", Overflow.DROP_OLDEST),
        ("drop-newest", Overflow.DROP_NEWEST),
        ("Block", Overflow.BLOCK),
    ],
)
def test_overflow_accepts_strings_case_insensitively(value: str, member: Overflow) -> None:
    assert Overflow(value) is member


@pytest.mark.parametrize(
    ("value", "member"),
    [("streaming", ConnectionState.STREAMING), ("STREAMING", ConnectionState.STREAMING),
     ("Backoff", ConnectionState.BACKOFF), ("new", ConnectionState.NEW)],
)  # fmt: skip
def test_connection_state_accepts_strings_case_insensitively(value: str, member: ConnectionState) -> None:
    assert ConnectionState(value) is member


@pytest.mark.parametrize(("enum", "value"), [(Market, "bonds"), (Overflow, "drop"), (ConnectionState, "open"),
                                             (Market, 5), (Market, None)])  # fmt: skip
def test_coerce_rejects_unknown_values_naming_the_field_and_choices(enum: Any, value: object) -> None:
    with pytest.raises(ConfigurationError) as info:
        enum.coerce(value, "the_field")

    assert info.value.field == "the_field"
    assert repr(value) in str(info.value)
    assert all(repr(member.value) in str(info.value) for member in enum)


def test_str_enum_members_equal_and_print_as_their_values() -> None:
    assert Market.FUTURES_CME == "futures/cme"
    assert str(Market.FUTURES_CME) == "futures/cme"
    assert f"{Overflow.BLOCK}" == "block"
    assert str(ConnectionState.STREAMING) == "streaming"


@pytest.mark.parametrize(
    ("market", "futures"), [(m, m.value.startswith("futures")) for m in Market], ids=lambda v: str(v)
)
def test_market_is_futures_for_futures_paths_only(market: Market, futures: bool) -> None:
    assert market.is_futures is futures


@pytest.mark.parametrize("state", list(ConnectionState), ids=str)
def test_only_failed_and_stopped_are_terminal(state: ConnectionState) -> None:
    assert state.is_terminal is (state in (ConnectionState.FAILED, ConnectionState.STOPPED))


# ============================================================================================
# resolve_feed_host


@pytest.mark.parametrize(
    ("feed", "host"),
    [
        *[(member, member.value) for member in Feed],
        ("realtime", "socket.massive.com"),
        ("RealTime", "socket.massive.com"),
        ("REALTIME", "socket.massive.com"),
        ("delayed", "delayed.massive.com"),
        ("Delayed", "delayed.massive.com"),
        ("polyfeed_plus", "polyfeedplus.massive.com"),
        ("PolyFeedPlus", "polyfeedplus.massive.com"),
        ("polyfeed-plus", "polyfeedplus.massive.com"),
        ("IEXBusiness", "iex-business.massive.com"),
        ("DelayedNasdaqLastSaleBusiness", "delayed-nasdaq-last-sale-business.massive.com"),
        ("edgx-business", "edgx-business.massive.com"),
        ("socket.massive.com", "socket.massive.com"),
        ("delayed.polygon.io", "delayed.polygon.io"),
        ("localhost", "localhost"),
        ("localhost:8765", "localhost:8765"),
        ("127.0.0.1:8765", "127.0.0.1:8765"),
        ("mock-server.internal:443", "mock-server.internal:443"),
        ("[::1]:8765", "[::1]:8765"),
        ("[::1]", "[::1]"),
    ],
    ids=str,
)
def test_resolve_feed_host_accepts_members_names_and_hosts(feed: Feed | str, host: str) -> None:
    assert resolve_feed_host(feed) == host


@pytest.mark.parametrize(
    "feed",
    ["wss://x", "ws://localhost:8765", "host/path", "a b", "", " ", "-leading-dash", "host:", "host:port",
     "host:123456", "[::1", "user@host", "host?x=1", None, 5, b"socket.massive.com"],
    ids=repr,
)  # fmt: skip
def test_resolve_feed_host_rejects_urls_paths_and_junk(feed: object) -> None:
    with pytest.raises(ConfigurationError) as info:
        resolve_feed_host(feed)  # type: ignore[arg-type]

    assert info.value.field == "feed"


class TestLimitRetry:
    def test_waits_grow_within_the_hour_and_are_capped(self) -> None:
        policy = mrt.LimitRetry(cooldown=60, max_cooldown=200, per_hour=10)
        assert policy.delay([], 0.0) == 60
        assert policy.delay([60.0], 61.0) == 120
        assert policy.delay([60.0, 180.0], 181.0) == 200  # capped
        assert policy.delay([60.0, 180.0], 60.0 + 3600.0) == 120  # the first retry no longer counts

    @pytest.mark.parametrize("per_hour", [1, 3, 64, 100, 500])
    def test_never_more_than_per_hour_retries_in_any_hour(self, per_hour: int) -> None:
        policy = mrt.LimitRetry(cooldown=1, max_cooldown=1, per_hour=per_hour)
        retries: collections.deque[float] = collections.deque()
        now = 0.0
        starts = []
        for _ in range(3 * per_hour + 10):  # refused at once, every time
            now += policy.schedule(retries, now)
            starts.append(now)
        for i, start in enumerate(starts):
            in_window = [t for t in starts[i:] if t - start < 3600.0]
            assert len(in_window) <= per_hour
        assert len(retries) <= per_hour + 1  # pruned: memory bounded by the hour's budget

    def test_settings_are_validated(self) -> None:
        with pytest.raises(mrt.ConfigurationError, match="max_cooldown") as caught:
            mrt.LimitRetry(cooldown=120, max_cooldown=60)
        assert caught.value.field == "cooldown"
        for bad in ("yes", True, None, "Retry"):
            with pytest.raises(mrt.ConfigurationError, match="on_limit"):
                ClientConfig(on_limit=bad)

    @pytest.mark.parametrize(
        ("on_limit", "refused", "evicted"),
        [
            ("auto", None, LimitRetry()),
            ("fail", None, None),
            ("retry", LimitRetry(), LimitRetry()),
            (LimitRetry(cooldown=5.0), LimitRetry(cooldown=5.0), LimitRetry(cooldown=5.0)),
        ],
    )
    def test_on_limit_policies(self, on_limit: object, refused: object, evicted: object) -> None:
        """``auto``: a refused connect fails (the slot is someone else's), an eviction retries."""
        policy = ClientConfig(on_limit=on_limit).on_limit
        assert limit_retry_for(policy, evicted=False) == refused
        assert limit_retry_for(policy, evicted=True) == evicted
