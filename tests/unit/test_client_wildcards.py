"""One rule for wildcards, client and pool alike: a ticker its wildcard covers stays desired but is
not sent while the wildcard is (so nothing is delivered twice), and is sent again when it goes."""

from __future__ import annotations

import massive_rt as mrt
from massive_rt.testing import MockMassiveServer
from tests.conftest import wait_until
from tests.support import FAST, KEY


def subscribed_upstream(server: MockMassiveServer) -> set[str]:
    (conn,) = server.active_connections()
    return set(conn.subscriptions)


def sent(server: MockMassiveServer, action: str) -> list[str]:
    return [c for m in server.received if m.action == action for c in m.params]


def test_a_covered_ticker_is_not_sent_and_comes_back_when_the_wildcard_goes(server: MockMassiveServer) -> None:
    with mrt.MassiveWebSocketClient(api_key=KEY, url=server.url(), subscriptions=["T.AAPL", "T.*"]) as client:
        client.wait_ready(5)
        assert subscribed_upstream(server) == {"T.*"}
        assert "T.AAPL" not in sent(server, "subscribe")
        assert client.subscriptions == {"T.AAPL", "T.*"}  # still desired
        assert client.wait_acked(["T.AAPL"], 5)  # covered by the acked wildcard

        server.publish([{"ev": "T", "sym": "AAPL", "p": 1.0, "s": 1, "t": 1, "q": 1}])
        trades = [e for e in client.iter_events(timeout=0.5) if isinstance(e, mrt.EquityTrade)]
        assert [t.sequence_number for t in trades] == [1]  # once

        client.unsubscribe("T.*")
        assert server.wait_for(lambda: subscribed_upstream(server) == {"T.AAPL"}, 5)
        assert client.wait_acked(["T.AAPL"], 5)


def test_subscribing_a_wildcard_later_drops_the_covered_tickers_upstream(server: MockMassiveServer) -> None:
    with mrt.MassiveWebSocketClient(api_key=KEY, url=server.url(), subscriptions=["T.AAPL", "Q.AAPL"]) as client:
        client.wait_ready(5)
        client.subscribe("T.*")
        assert server.wait_for(lambda: subscribed_upstream(server) == {"T.*", "Q.AAPL"}, 5)
        assert sent(server, "unsubscribe") == ["T.AAPL"]


def test_a_reconnect_replays_the_effective_set(server: MockMassiveServer) -> None:
    with mrt.MassiveWebSocketClient(api_key=KEY, url=server.url(), reconnect=FAST,
                                    subscriptions=["T.AAPL", "T.MSFT", "T.*", "AM.AAPL"]) as client:  # fmt: skip
        client.wait_ready(5)
        server.drop_all()
        assert wait_until(lambda: client.stats().reconnects == 1, 5)
        client.wait_ready(5)
        assert subscribed_upstream(server) == {"T.*", "AM.AAPL"}
        assert not {"T.AAPL", "T.MSFT"} & set(sent(server, "subscribe"))
