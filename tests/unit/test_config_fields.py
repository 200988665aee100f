"""ClientConfig's field checks, each with its exact message and field, and ``from_env``'s variables
(the validators a mutation run showed were only checked for "raises", not for what they say)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

import massive_rt as mrt
from massive_rt.config import ClientConfig, ReconnectPolicy


def refusal(**fields: object) -> tuple[str, str | None]:
    with pytest.raises(mrt.ConfigurationError) as caught:
        ClientConfig(**fields)  # type: ignore[arg-type]
    return caught.value.message, caught.value.field


RESERVED = "socket, timeout, suppress_origin, redirect_limit, sslopt"


@pytest.mark.parametrize(
    ("fields", "message", "field"),
    [
        ({"ssl_context": 5}, "ssl_context must be an ssl.SSLContext or None", "ssl_context"),
        ({"ca_certs": 5}, "ca_certs=5 must be the path of a CA bundle file or directory", "ca_certs"),
        ({"ca_certs": "/no/such/bundle.pem"},
         "ca_certs='/no/such/bundle.pem' must be the path of a CA bundle file or directory", "ca_certs"),
        ({"websocket_options": {"timeout": 1}},
         f"websocket_options may not set 'timeout' (reserved: {RESERVED}; use connect_timeout= and ssl_context= "
         "instead)", "websocket_options"),
        ({"websocket_options": {5: 1}},
         f"websocket_options may not set 5 (reserved: {RESERVED}; use connect_timeout= and ssl_context= instead)",
         "websocket_options"),
        ({"websocket_options": {"header": "X-A: 1"}},
         "websocket_options['header']='X-A: 1' must be a list of 'Name: value' strings", "websocket_options"),
        ({"websocket_options": {"header": ["X-A: 1", 5]}},
         "websocket_options['header']=['X-A: 1', 5] must be a list of 'Name: value' strings", "websocket_options"),
        ({"websocket_options": [("header", [])]}, "websocket_options=[('header', [])] must be a mapping",
         "websocket_options"),
        ({"max_message_size": "big"}, "max_message_size='big' must be an int >= 1024", "max_message_size"),
        ({"max_message_size": 2048.0}, "max_message_size=2048.0 must be an int >= 1024", "max_message_size"),
        ({"max_message_size": 1023}, "max_message_size=1023 must be an int >= 1024", "max_message_size"),
        ({"max_message_size": True}, "max_message_size=True must be an int >= 1024", "max_message_size"),
        ({"ping_timeout": 0}, "ping_timeout=0 must be a finite number > 0", "ping_timeout"),
        ({"ping_timeout": None}, "ping_timeout=None must be a finite number > 0", "ping_timeout"),
        ({"ping_interval": -1}, "ping_interval=-1 must be a finite number > 0", "ping_interval"),
        ({"stale_after": float("inf")}, "stale_after=inf must be a finite number > 0", "stale_after"),
        ({"connect_timeout": "10"}, "connect_timeout='10' must be a finite number > 0", "connect_timeout"),
    ],
    ids=lambda value: None if isinstance(value, dict) else "",
)  # fmt: skip
def test_each_refusal_names_the_value_and_the_field(fields: dict[str, object], message: str, field: str) -> None:
    assert refusal(**fields) == (message, field)


def test_the_accepted_edge_values() -> None:
    config = ClientConfig(max_message_size=1024, ping_interval=None, stale_after=None, ca_certs=None,
                          ssl_context=ssl.create_default_context(),
                          websocket_options={"header": ["X-A: 1"], "origin": "x"})  # fmt: skip
    assert config.max_message_size == 1024
    assert config.ping_interval is None
    assert config.websocket_options == {"header": ["X-A: 1"], "origin": "x"}
    assert ClientConfig(websocket_options={"header": ("X-A: 1",)}).websocket_options["header"] == ("X-A: 1",)


def test_a_ca_bundle_path_that_exists_is_kept(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not checked here")
    assert ClientConfig(ca_certs=str(bundle)).ca_certs == str(bundle)
    assert ClientConfig(ca_certs=bundle).ca_certs == str(bundle)  # a PathLike too
    assert ClientConfig(ca_certs=str(tmp_path)).ca_certs == str(tmp_path)  # or a directory


@pytest.mark.parametrize(
    ("fields", "message", "field"),
    [
        ({"initial_delay": -1}, "initial_delay=-1 must be a finite number >= 0", "initial_delay"),
        ({"max_delay": float("nan")}, "max_delay=nan must be a finite number >= 0", "max_delay"),
        ({"reset_after": "30"}, "reset_after='30' must be a finite number >= 0", "reset_after"),
        ({"initial_delay": True}, "initial_delay=True must be a finite number >= 0", "initial_delay"),
    ],
)
def test_reconnect_policy_refusals(fields: dict[str, object], message: str, field: str) -> None:
    with pytest.raises(mrt.ConfigurationError) as caught:
        ReconnectPolicy(**fields)  # type: ignore[arg-type]
    assert (caught.value.message, caught.value.field) == (message, field)


def test_reconnect_policy_accepts_zero_waits() -> None:
    policy = ReconnectPolicy(initial_delay=0, max_delay=0, reset_after=0)
    assert policy.bound(5) == 0.0


def test_bound_refuses_a_negative_attempt() -> None:
    with pytest.raises(mrt.ConfigurationError) as caught:
        ReconnectPolicy().bound(-1)
    assert (caught.value.message, caught.value.field) == ("attempt=-1 must be >= 0", "attempt")


def test_from_env_reads_every_variable() -> None:
    environ = {
        "MASSIVE_API_KEY": " key-1 ", "MASSIVE_FEED": "delayed", "MASSIVE_MARKET": "crypto",
        "MASSIVE_WS_URL": "ws://127.0.0.1:9/crypto", "MASSIVE_VALIDATE_CHANNELS": "warn",
    }  # fmt: skip
    config = ClientConfig.from_env(environ)
    assert (config.api_key, config.market, config.url, config.validate_channels) == (
        "key-1", mrt.Market.CRYPTO, "ws://127.0.0.1:9/crypto", "warn"
    )  # fmt: skip
    assert config.feed == "delayed"
    assert ClientConfig.from_env(environ, validate_channels="off").validate_channels == "off"
    assert ClientConfig.from_env({"MASSIVE_VALIDATE_CHANNELS": "  "}).validate_channels == "strict"


@pytest.mark.parametrize("value", [-1, True, 1.5, "3", None])
def test_last_seen_limit_must_be_an_int_of_zero_or_more(value: object) -> None:
    with pytest.raises(mrt.ConfigurationError) as caught:
        mrt.ClientConfig(api_key="k", last_seen_limit=value)  # type: ignore[arg-type]
    assert str(caught.value) == f"last_seen_limit={value!r} must be an int >= 0"
    assert caught.value.field == "last_seen_limit"


@pytest.mark.parametrize("value", [0, 1, 5_000])
def test_last_seen_limit_accepts_zero_and_up(value: int) -> None:
    assert mrt.ClientConfig(api_key="k", last_seen_limit=value).last_seen_limit == value
