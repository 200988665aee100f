"""A frame the parser refuses while a callback of the frames before it is stuck on the reader
(``dispatch="adaptive"``): the relief reader that takes over must stop at the refused frame.

The parser is already past some refused frames (a data frame that starts while a fragmented
message is open): reading on from there would splice the open fragment with the next
continuation into a message the server never sent, and deliver frames from after the error.
"""

from __future__ import annotations

import json
import queue
import threading

import pytest

import massive_rt as mrt
from massive_rt.framing import OP_CONT, OP_TEXT
from tests.conftest import wait_until
from tests.hardening._support import FAST, KEY, RawConnection, RawServer, encode_frame, trade

pytestmark = pytest.mark.timeout(60)

WAIT = 10.0


def frame(seq: int, symbol: str = "OK") -> bytes:
    return encode_frame(json.dumps([trade(seq, symbol)]).encode())


def test_a_takeover_stops_at_a_refused_frame_and_nothing_after_it_is_delivered() -> None:
    outbox: queue.Queue[bytes | None] = queue.Queue()

    def script(conn: RawConnection) -> None:
        conn.handshake()
        conn.send_status("connected", "Connected Successfully")
        conn.recv()
        conn.send_status("auth_success", "authenticated")
        if conn.index == 0:
            while (data := outbox.get(timeout=WAIT * 3)) is not None:
                conn.send_raw(data)
        conn.drain_until_closed()

    seen: list[tuple[str, int]] = []
    cond = threading.Condition()
    entered, release = threading.Event(), threading.Event()
    block = {"seq": -1}

    def on_trade(event: mrt.EquityTrade) -> None:
        on_reader = threading.current_thread().name.startswith("massive-rt-reader-")
        with cond:
            seen.append((event.symbol or "", event.sequence_number or 0))
            cond.notify_all()
        if on_reader and event.sequence_number == block["seq"]:
            entered.set()
            release.wait(WAIT * 3)

    def delivered(count: int) -> list[tuple[str, int]]:
        with cond:
            assert cond.wait_for(lambda: len(seen) >= count, WAIT), seen
            return list(seen)

    with RawServer(script) as raw:
        client = mrt.MassiveWebSocketClient(api_key=KEY, url=raw.url(), reconnect=FAST)
        adapter = mrt.RealTimeDataAdapter(client, dispatch="adaptive", clock=lambda: 0.0)
        adapter.on(mrt.EquityTrade, on_trade)
        names: list[str] = []
        adapter.on(mrt.EquityTrade, lambda event: names.append(threading.current_thread().name))
        adapter.start()
        try:
            client.wait_ready(WAIT)
            seq = 0
            while not (names and names[-1].startswith("massive-rt-reader-")):  # the inline path is idle
                assert seq < 200, "no trade ran on the reader"
                outbox.put(frame(seq))
                seq += 1
                delivered(seq)
            block["seq"] = seq
            spliced = json.dumps([trade(99, "SPLICED")]).encode()
            outbox.put(
                frame(seq) + frame(seq + 1)
                + encode_frame(spliced[:20], OP_TEXT, fin=False)
                + encode_frame(b"[]", OP_TEXT)  # a new message while one is open: refused (1002)
                + encode_frame(spliced[20:], OP_CONT)
                + frame(seq + 2)
            )  # fmt: skip
            assert entered.wait(WAIT)
            assert wait_until(lambda: adapter.stats().reliefs == 1, WAIT)
            release.set()
            outbox.put(None)  # the script reads what the client sends from here on
            assert raw.wait_for(lambda: raw.connections[0].close_codes == [1002], WAIT)
            assert raw.wait_for(lambda: len(raw.connections) >= 2, WAIT)  # it reconnected
            client.wait_ready(WAIT)
            assert delivered(seq + 2)[-2:] == [("OK", seq), ("OK", seq + 1)]
            assert "WebSocket protocol error" in (client.stats().last_error or "")
        finally:
            release.set()
            outbox.put(None)
            adapter.stop()
        with cond:
            assert seen == [("OK", q) for q in range(seq + 2)]  # not the spliced one, nor seq + 2
        assert not raw.errors
