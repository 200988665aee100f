"""The compat enums, models and ``parse`` against the official ``massive`` package, object by object."""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import sys
from typing import Any

import pytest

import massive_rt
import massive_rt.compat as compat
import massive_rt.models as native
from tests.compat._support import PAYLOADS, official_models, view, views

pytestmark = pytest.mark.timeout(30)

official_models_module = pytest.importorskip("massive.websocket.models")
official_common = pytest.importorskip("massive.websocket.models.common")

MODEL_NAMES = [
    "EquityAgg", "CurrencyAgg", "EquityTrade", "CryptoTrade", "EquityQuote", "ForexQuote", "CryptoQuote", "Imbalance",
    "LimitUpLimitDown", "Level2Book", "IndexValue", "LaunchpadValue", "FairMarketValue", "FuturesTrade",
    "FuturesQuote", "FuturesAgg",
]  # fmt: skip


def test_every_official_model_class_has_a_compat_class_of_the_same_name() -> None:
    official = {
        name
        for name, obj in vars(official_models_module.models).items()
        if isinstance(obj, type) and dataclasses.is_dataclass(obj)
    }
    assert official == set(MODEL_NAMES)
    for name in MODEL_NAMES:
        assert name in compat.__all__
        assert dataclasses.is_dataclass(getattr(compat, name))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_fields_come_in_the_official_order(name: str) -> None:
    ours = [f.name for f in dataclasses.fields(getattr(compat, name))]
    theirs = [f.name for f in dataclasses.fields(getattr(official_models_module, name))]
    assert ours == theirs


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_positional_and_keyword_construction_match_the_official(name: str) -> None:
    ours_cls, theirs_cls = getattr(compat, name), getattr(official_models_module, name)
    values = [f"v{i}" for i in range(len(dataclasses.fields(ours_cls)))]
    assert view(ours_cls(*values)) == view(theirs_cls(*values))
    assert view(ours_cls()) == view(theirs_cls())
    last = dataclasses.fields(ours_cls)[-1].name
    assert view(ours_cls(**{last: 7})) == view(theirs_cls(**{last: 7}))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_from_dict_reads_the_official_wire_keys(name: str) -> None:
    """Every wire key the official from_dict reads, with a distinct value each: the same value must
    land in the same field. Also an empty dict (all None) and keys no model reads (ignored)."""
    ours_cls, theirs_cls = getattr(compat, name), getattr(official_models_module, name)
    native_keys = [key for key, _ in getattr(native, name).WIRE]
    wire = {key: f"value-of-{key}" for key in native_keys}
    assert view(ours_cls.from_dict(wire)) == view(theirs_cls.from_dict(wire))
    assert all(v is not None for v in dataclasses.asdict(ours_cls.from_dict(wire)).values())
    assert view(ours_cls.from_dict({})) == view(theirs_cls.from_dict({}))
    assert view(ours_cls.from_dict({"zz": 1, "ev": "x"})) == view(theirs_cls.from_dict({"zz": 1, "ev": "x"}))


def test_models_compare_repr_and_mutate_like_the_official_dataclasses() -> None:
    wire = PAYLOADS["stocks"][0]
    ours, theirs = compat.EquityTrade.from_dict(wire), official_models_module.EquityTrade.from_dict(wire)
    assert repr(ours) == repr(theirs)
    assert ours == compat.EquityTrade.from_dict(dict(wire))
    assert ours != compat.EquityTrade.from_dict({**wire, "p": 1.0})
    ours.price = 1.0  # mutable, as the official models are
    assert ours.price == 1.0


@pytest.mark.parametrize("enum_name", ["Feed", "Market", "EventType"])
def test_enums_have_the_official_names_and_values(enum_name: str) -> None:
    ours, theirs = getattr(compat, enum_name), getattr(official_common, enum_name)
    assert {n: m.value for n, m in ours.__members__.items()} == {n: m.value for n, m in theirs.__members__.items()}
    assert [m.name for m in ours] == [m.name for m in theirs]  # aliases resolve to the same canonical member


def test_the_market_event_map_matches_the_official_one() -> None:
    theirs = {
        market.value: {ev: cls.__name__ for ev, cls in table.items()}
        for market, table in official_models_module.MARKET_EVENT_MAP.items()
    }
    ours = {
        market.value: {ev: cls.__name__ for ev, cls in table.items()}
        for market, table in compat.MARKET_EVENT_MAP.items()
    }
    assert ours == theirs


@pytest.mark.parametrize("market", list(PAYLOADS))
def test_parse_gives_the_official_models_for_every_market(market: str) -> None:
    frame = [*PAYLOADS[market], {"ev": "status", "status": "success", "message": "subscribed to: X.Y"}]
    ours = compat.parse(frame, logging.getLogger("test"), compat.Market(market))
    assert views(ours) == views(official_models(market, frame))
    assert len(ours) == len(PAYLOADS[market])  # the status is left out


def test_parse_skips_an_event_the_market_does_not_have_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    frame: list[dict[str, Any]] = [{"ev": "XT", "pair": "BTC-USD", "p": 1}, PAYLOADS["stocks"][0]]
    log = logging.getLogger("tests.compat.parse")
    with caplog.at_level(logging.WARNING, logger=log.name):
        ours = compat.parse(frame, log, "stocks")
    assert views(ours) == views(official_models("stocks", frame))
    assert "Unknown event type 'XT' for market Market.Stocks" in caplog.text


def test_parse_accepts_any_spelling_of_the_market() -> None:
    frame = PAYLOADS["crypto"][:2]
    expected = views(compat.parse(frame, logging.getLogger("t"), compat.Market.Crypto))
    assert len(expected) == 2
    for market in ("crypto", official_common.Market.Crypto, massive_rt.Market.CRYPTO):
        assert views(compat.parse(frame, logging.getLogger("t"), market)) == expected


def test_parse_single_returns_none_for_statuses_and_a_model_otherwise() -> None:
    log = logging.getLogger("t")
    assert compat.parse_single({"ev": "status", "status": "connected"}, log, compat.Market.Stocks) is None
    model = compat.parse_single(PAYLOADS["indices"][2], log, compat.Market.Indices)
    assert view(model) == view(official_models_module.parse_single(PAYLOADS["indices"][2], log,
                                                                     official_common.Market.Indices))  # fmt: skip


def test_parse_skips_what_is_not_an_object_instead_of_raising(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("tests.compat.odd")
    with caplog.at_level(logging.WARNING, logger=log.name):
        out = compat.parse([1, "x", {"sym": "AAPL"}, PAYLOADS["stocks"][0]], log, "stocks")
    assert views(out) == views(official_models("stocks", [PAYLOADS["stocks"][0]]))
    assert "could not parse message 1" in caplog.text


def test_importing_compat_imports_neither_massive_nor_websockets() -> None:
    code = (
        "import sys, massive_rt.compat\n"
        "assert 'massive' not in sys.modules, 'massive imported'\n"
        "assert 'websockets' not in sys.modules, 'websockets imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
