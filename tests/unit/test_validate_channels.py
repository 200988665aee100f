"""Channels we do not know yet: ``validate_channels="strict" | "warn" | "off"`` (client, pool, config, env)."""

from __future__ import annotations

import logging

import pytest

import massive_rt as mrt
from massive_rt.protocol import parse_channels
from massive_rt.testing import MockMassiveServer
from tests.support import KEY


def test_strict_refuses_an_unknown_prefix_and_says_how_to_subscribe_it_anyway() -> None:
    with pytest.raises(mrt.ConfigurationError, match="validate_channels='warn'") as caught:
        parse_channels(["XS.BTC-USD"], "crypto")
    assert caught.value.field == "channels"


@pytest.mark.parametrize("mode", ["warn", "off"])
def test_warn_and_off_accept_an_unknown_prefix(mode: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="massive_rt")
    assert parse_channels([f"NEW{mode.upper()}.AAPL", f"NEW{mode.upper()}.*"], "stocks", mode) == (
        f"NEW{mode.upper()}.AAPL", f"NEW{mode.upper()}.*",
    )  # fmt: skip
    warnings = [r for r in caplog.records if "is not one massive_rt knows" in r.getMessage()]
    assert len(warnings) == (1 if mode == "warn" else 0)  # once per prefix, not per channel


@pytest.mark.parametrize("mode", ["strict", "warn", "off"])
@pytest.mark.parametrize("bad", ["NOPE", "T.", ".AAPL", "T.AA PL", "T.A,B", "T.AA*", 5])
def test_malformed_channels_are_refused_in_every_mode(mode: str, bad: object) -> None:
    with pytest.raises(mrt.ConfigurationError):
        parse_channels([bad], "stocks", mode)


def test_the_mode_is_validated_and_read_from_the_environment() -> None:
    with pytest.raises(mrt.ConfigurationError, match="validate_channels") as caught:
        mrt.ClientConfig(api_key=KEY, validate_channels="lenient")
    assert caught.value.field == "validate_channels"
    config = mrt.ClientConfig.from_env({"MASSIVE_API_KEY": KEY, "MASSIVE_VALIDATE_CHANNELS": "warn"},
                                       subscriptions=["ZZ.AAPL"])  # fmt: skip
    assert (config.validate_channels, config.subscriptions) == ("warn", ("ZZ.AAPL",))


def test_a_client_subscribes_an_unknown_channel_and_its_events_arrive_as_unknown_events(
    server: MockMassiveServer,
) -> None:
    with pytest.raises(mrt.ConfigurationError):
        mrt.MassiveWebSocketClient(api_key=KEY, url=server.url(), subscriptions=["ZZ.AAPL"])
    client = mrt.MassiveWebSocketClient(api_key=KEY, url=server.url(), subscriptions=["T.AAPL"],
                                        validate_channels="off")  # fmt: skip
    with client:
        client.wait_ready(5)
        client.subscribe("ZZ.AAPL")
        assert server.wait_for(lambda: any("ZZ.AAPL" in m.params for m in server.received), 5)
        server.send_raw('[{"ev":"ZZ","sym":"AAPL","x":1}]')
        unknown = next(e for e in client.iter_events(timeout=5) if isinstance(e, mrt.UnknownEvent))
        assert unknown.data["sym"] == "AAPL"


def test_a_pool_passes_the_mode_to_its_connections(server: MockMassiveServer) -> None:
    with pytest.raises(mrt.ConfigurationError):
        mrt.ConnectionPool(api_key=KEY, url=server.url).subscribe("ZZ.AAPL")
    pool = mrt.ConnectionPool(api_key=KEY, url=server.url, validate_channels="off")
    try:
        pool.subscribe("ZZ.AAPL", "T.AAPL")
        pool.start()
        assert server.wait_for(lambda: any("ZZ.AAPL" in m.params for m in server.received), 5)
        assert pool.assignment("ZZ.AAPL") == pool.connections[0].name
    finally:
        pool.stop()
