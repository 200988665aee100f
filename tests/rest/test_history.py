"""RestHistory against MockMassiveREST over real HTTP on 127.0.0.1: windows, pagination, budgets,
retries (429 with Retry-After, 5xx), cut pages, auth, the key never shown, and stopping mid-request."""

from __future__ import annotations

import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from massive_rt import ClientClosedError, ConfigurationError, RestDataError, RestError
from massive_rt.models import REST, EquityTrade
from massive_rt.rest import RestHistory
from massive_rt.testing import MockMassiveREST, MockMassiveServer
from tests.conftest import wait_until

KEY = "test-key"
T0 = 1_700_000_000_000
NS = 1_000_000


def trades(n: int, sym: str = "AAPL") -> list[dict[str, Any]]:
    return [{"ev": "T", "sym": sym, "p": 100.0 + i, "s": 1, "t": T0 + i, "q": i, "i": str(i), "x": 4} for i in range(n)]


@pytest.fixture
def mock() -> Iterator[MockMassiveREST]:
    with MockMassiveREST(api_keys={KEY}) as server:
        server.add_events(trades(25))
        yield server


def history(mock: MockMassiveREST, **kwargs: Any) -> RestHistory:
    options: dict[str, Any] = {"rest_url": mock.url, "backoff_factor": 0.0, "read_timeout": 5.0} | kwargs
    return RestHistory(options.pop("api_key", KEY), **options)


def test_window_follows_next_url_pages_in_order(mock: MockMassiveREST) -> None:
    with history(mock, page_size=10) as rest:
        result = rest.trades("AAPL", T0 * NS, (T0 + 24) * NS)
    assert result.complete
    assert [e.sequence_number for e in result.events] == list(range(25))
    assert all(isinstance(e, EquityTrade) and e.origin == REST for e in result.events)
    pages = [r for r in mock.requests if r.path == "/v3/trades/AAPL"]
    assert len(pages) == 3
    assert all(r.status == 200 for r in pages)


def test_window_bounds_are_inclusive_exchange_times(mock: MockMassiveREST) -> None:
    with history(mock) as rest:
        result = rest.trades("AAPL", (T0 + 3) * NS, (T0 + 7) * NS)
        inside_one_ms = rest.trades("AAPL", (T0 + 3) * NS + 1, (T0 + 3) * NS + 999_999)
    assert [e.timestamp for e in result.events] == [T0 + 3, T0 + 4, T0 + 5, T0 + 6, T0 + 7]
    assert inside_one_ms.events == ()


def test_budget_cuts_the_window_and_says_so(mock: MockMassiveREST) -> None:
    with history(mock, page_size=4) as rest:
        cut = rest.trades("AAPL", 0, (T0 + 100) * NS, max_events=6)
        exact = rest.trades("AAPL", 0, (T0 + 100) * NS, max_events=25)
    assert [e.sequence_number for e in cut.events] == list(range(6))
    assert not cut.complete
    assert len(exact.events) == 25
    assert exact.complete


def test_bars_and_snapshots_of_what_the_websocket_mock_published(
    massive_server: MockMassiveServer, massive_rest: MockMassiveREST
) -> None:
    # nobody is connected: the history records exchange time, not delivery
    assert massive_server.publish([*trades(3, "MSFT"), {"ev": "AM", "sym": "MSFT", "o": 1.0, "c": 2.0, "h": 2.5,
                                   "l": 0.5, "v": 10, "s": T0, "e": T0 + 60_000}]) == 0  # fmt: skip
    with RestHistory(KEY, rest_url=massive_rest.url) as rest:
        assert [e.sequence_number for e in rest.trades("MSFT", 0, (T0 + 10) * NS).events] == [0, 1, 2]  # type: ignore[union-attr]
        bars = rest.aggs("MSFT", T0 * NS, (T0 + 60_000) * NS).events
        state = rest.snapshot("MSFT")
        everything = rest.snapshot_all()
        assert rest.snapshot("NOPE") is None
    assert [(b.event_type, b.start_timestamp, b.end_timestamp) for b in bars] == [("AM", T0, T0 + 60_000)]  # type: ignore[union-attr]
    assert state is not None
    assert state.trade is not None
    assert state.trade.sequence_number == 2
    assert [s.symbol for s in everything] == ["MSFT"]


def test_429_is_retried_after_its_retry_after(mock: MockMassiveREST) -> None:
    mock.fail_next(429, retry_after=1, path="/v3/trades")
    with history(mock) as rest:
        result = rest.trades("AAPL", 0, (T0 + 100) * NS)
    assert len(result.events) == 25
    first, second = [r for r in mock.requests if r.path == "/v3/trades/AAPL"]
    assert (first.status, first.fault, second.status) == (429, "status", 200)
    assert second.received_at - first.received_at >= 0.9  # urllib3 slept the Retry-After (a lower bound)


@pytest.mark.parametrize("status", [429, 500, 503])
def test_retries_are_bounded_then_a_typed_error(mock: MockMassiveREST, status: int) -> None:
    mock.fail_next(status, count=50, path="/v3/trades")
    with history(mock, retries=2) as rest, pytest.raises(RestError) as caught:
        rest.trades("AAPL", 0, (T0 + 100) * NS)
    assert caught.value.status_code == status
    assert caught.value.path == "/v3/trades/AAPL"
    assert "gave up after 2 retries" in str(caught.value)
    assert len(mock.requests) == 3  # the first attempt and two retries, no more


def test_retry_after_is_capped_by_the_policy() -> None:
    rest = RestHistory(KEY, rest_url="http://127.0.0.1:9", retry_after_max=2)
    assert rest.retry_policy.retry_after_max == 2
    assert rest.retry_policy.respect_retry_after_header
    assert 429 in rest.retry_policy.status_forcelist
    assert rest.retry_policy.total == 3
    rest.close()


def test_cut_page_is_a_typed_error_not_a_short_result(mock: MockMassiveREST) -> None:
    with history(mock, page_size=10) as rest:
        rest.trades("AAPL", 0, (T0 + 100) * NS)  # one full fetch: 3 pages
        mock.truncate_next(path="/v3/trades")
        with pytest.raises(RestDataError, match=r"GET /v3/trades/AAPL: a REST page is not valid JSON"):
            rest.trades("AAPL", 0, (T0 + 100) * NS)


def test_wrong_key_is_refused_with_massives_body(mock: MockMassiveREST) -> None:
    with history(mock, api_key="not-the-key") as rest, pytest.raises(RestError) as caught:
        rest.trades("AAPL", 0, T0 * NS)
    assert caught.value.status == "ERROR"
    assert "Unknown API Key" in str(caught.value)
    assert [r.status for r in mock.requests] == [401]


def test_mock_accepts_the_key_as_apikey_query_or_bearer_header(mock: MockMassiveREST) -> None:
    url = f"{mock.url}/v3/trades/AAPL?limit=1"
    with urllib.request.urlopen(f"{url}&apiKey={KEY}", timeout=10) as answer:
        assert answer.status == 200
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": f"Bearer {KEY}"}),
                                timeout=10) as answer:  # fmt: skip
        assert answer.status == 200
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=10)
    refused.value.close()
    assert refused.value.code == 401
    assert all("apiKey" not in r.params for r in mock.requests)


@pytest.mark.allow_errors(r"answering", logger="massive_rt.testing.rest")
def test_the_key_is_never_in_a_log_record_repr_or_error(caplog: pytest.LogCaptureFixture) -> None:
    secret = "sk-SECRET-8f3a9c"
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    with MockMassiveREST(api_keys={secret}) as mock:
        mock.add_events(trades(5))
        with RestHistory(secret, rest_url=mock.url, backoff_factor=0.0, retries=1, read_timeout=0.3) as rest:
            assert len(rest.trades("AAPL", 0, (T0 + 10) * NS).events) == 5
            for fault in (lambda: mock.fail_next(429, count=5), lambda: mock.fail_next(503, count=5),
                          lambda: mock.truncate_next(), lambda: mock.slow_next(2.0, count=2)):  # fmt: skip
                fault()
                with pytest.raises(RestError) as caught:
                    rest.trades("AAPL", 0, (T0 + 10) * NS)
                errors.append(caught.value)
            texts = [repr(rest), str(rest)]
        with RestHistory("sk-WRONG-1234", rest_url=mock.url) as wrong, pytest.raises(RestError) as refused:
            wrong.trades("AAPL", 0, T0 * NS)
        errors.append(refused.value)
    assert len(errors) == 5
    for error in errors:
        texts += [str(error), repr(error), repr(error.__cause__), repr(error.__context__)]
    texts += [record.getMessage() for record in caplog.records] + [repr(record.args) for record in caplog.records]
    assert any("Retry" in t for t in texts)  # urllib3's retry records were captured and scanned
    for text in texts:
        assert secret not in text
        assert "sk-WRONG-1234" not in text


def test_close_of_the_mock_during_a_slow_answer_ends_both_sides() -> None:
    mock = MockMassiveREST(api_keys={KEY}).start()
    mock.add_events(trades(3))
    mock.slow_next(3600.0)
    outcome: list[BaseException | object] = []
    with RestHistory(KEY, rest_url=mock.url, retries=0, read_timeout=3600.0) as rest:
        worker = threading.Thread(target=lambda: outcome.append(_call(rest)), name="test-fetch", daemon=True)
        worker.start()
        assert wait_until(lambda: mock.in_flight == 1, timeout=10)
        mock.close()  # bounded by the test's timeout: the held answer is cut
        worker.join(10)
    assert not worker.is_alive()
    assert isinstance(outcome[0], RestError)
    assert not isinstance(outcome[0], RestDataError)
    assert [r.status for r in mock.requests] == [0]


def test_close_of_the_history_during_a_slow_answer_returns_within_the_read_timeout(mock: MockMassiveREST) -> None:
    mock.slow_next(3600.0)
    rest = history(mock, retries=0, read_timeout=0.5)
    outcome: list[BaseException | object] = []
    worker = threading.Thread(target=lambda: outcome.append(_call(rest)), name="test-fetch", daemon=True)
    worker.start()
    assert wait_until(lambda: mock.in_flight == 1, timeout=10)
    rest.close()
    worker.join(10)
    assert not worker.is_alive()
    assert isinstance(outcome[0], ClientClosedError)
    with pytest.raises(ClientClosedError):
        rest.trades("AAPL", 0, T0 * NS)


def _call(rest: RestHistory) -> BaseException | object:
    try:
        return rest.trades("AAPL", 0, (T0 + 10) * NS)
    except Exception as exc:
        return exc


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"api_key": ""}, "api_key"), ({"rest_url": "ftp://x"}, "rest_url"),
     ({"rest_url": "http://u:p@127.0.0.1"}, "rest_url"), ({"retries": -1}, "retries"),
     ({"max_events": 0}, "max_events"), ({"read_timeout": float("inf")}, "read_timeout")],
)  # fmt: skip
def test_bad_configuration_is_a_clear_error(
    kwargs: dict[str, Any], field: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MASSIVE_API_KEY", raising=False)
    options = {"api_key": KEY, "rest_url": "http://127.0.0.1:9"} | kwargs
    with pytest.raises(ConfigurationError) as caught:
        RestHistory(options.pop("api_key"), **options)
    assert caught.value.field == field
    assert KEY not in str(caught.value)


def test_a_malformed_rest_url_carrying_a_key_does_not_show_it(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError) as caught:
        RestHistory(KEY, rest_url="api.massive.com/v3?apiKey=SECRET-9f8e7d")  # no scheme, a key in the query
    assert "SECRET-9f8e7d" not in str(caught.value)
    assert caught.value.field == "rest_url"


def test_environment_gives_key_and_url(monkeypatch: pytest.MonkeyPatch, mock: MockMassiveREST) -> None:
    monkeypatch.setenv("MASSIVE_API_KEY", KEY)
    monkeypatch.setenv("MASSIVE_REST_URL", mock.url)
    with RestHistory() as rest:
        assert rest.rest_url == mock.url
        assert len(rest.trades("AAPL", 0, (T0 + 100) * NS).events) == 25


def test_reversed_window_is_refused(mock: MockMassiveREST) -> None:
    with history(mock) as rest, pytest.raises(ConfigurationError, match="before start_ns"):
        rest.trades("AAPL", 10, 5)
    assert mock.requests == []


def test_a_publish_listener_can_be_removed(massive_server: MockMassiveServer) -> None:
    """What MockMassiveREST.close() does, so a closed REST mock stops recording the WebSocket mock."""
    calls: list[str] = []

    def listener(market: str, _events: list[dict[str, object]]) -> None:
        calls.append(market)

    massive_server.add_publish_listener(listener)
    massive_server.publish(trades(1, "IBM"))
    massive_server.remove_publish_listener(listener)
    massive_server.publish(trades(1, "IBM"))
    assert calls == ["stocks"]
