"""Helpers for the relay tests: downstream clients of three kinds and event builders."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterable
from typing import Any

import websocket
from websocket import ABNF, WebSocketConnectionClosedException

import massive_rt as mrt

UP_KEY = "up-key"  # the upstream (Massive) key: only the relay knows it
LOCAL_KEY = "local-key"  # the relay-local key downstream clients use
FAST = mrt.ReconnectPolicy(initial_delay=0.02, max_delay=0.1, reset_after=1.0)

Key = tuple[str, str, int]  # (ev, symbol, sequence number): what a test compares


def event(ev: str, sym: str, seq: int, **extra: Any) -> dict[str, Any]:
    """A stocks wire object: trades and quotes carry ``sym`` and ``q``; aggregates ``sym`` only."""
    if ev == "T":
        return {"ev": "T", "sym": sym, "x": 4, "i": str(seq), "z": 3, "p": 190.5, "s": 100, "t": 1_700_000_000_000,
                "q": seq, **extra}  # fmt: skip
    if ev == "Q":
        return {"ev": "Q", "sym": sym, "bx": 4, "bp": 190.1, "bs": 2, "ax": 7, "ap": 190.2, "as": 3,
                "t": 1_700_000_000_000, "q": seq, **extra}  # fmt: skip
    return {"ev": ev, "sym": sym, "v": seq, "o": 1.0, "c": 1.0, "h": 1.0, "l": 1.0, "s": 1, "e": 2, **extra}


def effective(channels: Iterable[str]) -> set[str]:
    """What the upstream pool subscribes for ``channels``: no ticker whose wildcard is there."""
    channels = set(channels)
    return {c for c in channels if c.endswith(".*") or f"{c.partition('.')[0]}.*" not in channels}


def key_of(obj: dict[str, Any]) -> Key:
    return obj["ev"], obj["sym"], obj.get("q", obj.get("v"))


def expected_for(channels: Iterable[str], events: Iterable[dict[str, Any]]) -> list[Key]:
    """The events a subscriber of ``channels`` must receive, in order, each once."""
    wanted = set(channels)
    return [key_of(e) for e in events if f"{e['ev']}.*" in wanted or f"{e['ev']}.{e['sym']}" in wanted]


def mrt_key(item: mrt.Event) -> Key | None:
    """Key of a massive_rt market event; None for statuses."""
    if isinstance(item, (mrt.EquityTrade, mrt.EquityQuote)):
        return item.event_type or "", item.symbol or "", item.sequence_number or 0
    if isinstance(item, mrt.EquityAgg):
        return item.event_type or "", item.symbol or "", int(item.volume or 0)
    return None


def take_until(client: mrt.MassiveWebSocketClient, done: Callable[[mrt.Event], bool], timeout: float = 15.0) -> list[
    mrt.Event
]:  # fmt: skip
    """Every event (statuses included) up to and including the first one ``done`` accepts."""
    out: list[mrt.Event] = []
    while True:
        item = client.get(timeout=timeout)
        out.append(item)
        if done(item):
            return out


class RawClient:
    """A plain websocket-client connection speaking Massive's protocol by hand."""

    def __init__(self, url: str, *, rcvbuf: int | None = None) -> None:
        options: dict[str, Any] = {}
        if rcvbuf is not None:
            options["sockopt"] = ((socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf),)
        self.ws = websocket.create_connection(url, timeout=10, skip_utf8_validation=True, **options)
        assert self.recv()[0]["status"] == "connected"

    def send(self, action: str, params: str) -> None:
        self.ws.send(json.dumps({"action": action, "params": params}))

    def auth(self, key: str = LOCAL_KEY) -> list[dict[str, Any]]:
        self.send("auth", key)
        return self.recv()

    def recv(self) -> list[dict[str, Any]]:
        opcode, data = self.ws.recv_data()
        assert opcode == ABNF.OPCODE_TEXT, opcode
        decoded = json.loads(data)
        assert isinstance(decoded, list)
        return decoded

    def subscribe(self, params: str) -> list[dict[str, Any]]:
        """Subscribe and return the reply (acks and refusals, one frame)."""
        self.send("subscribe", params)
        return self.recv()

    def recv_until(self, done: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            for item in self.recv():
                out.append(item)
                if done(item):
                    return out

    def read_to_close(self) -> tuple[list[dict[str, Any]], int | None]:
        """Read every object until the server's close frame (its code) or the TCP end (None)."""
        out: list[dict[str, Any]] = []
        try:
            while True:
                opcode, data = self.ws.recv_data(control_frame=True)
                if opcode == ABNF.OPCODE_CLOSE:
                    return out, int.from_bytes(data[:2], "big")
                if opcode == ABNF.OPCODE_TEXT:
                    out.extend(json.loads(data))
        except (WebSocketConnectionClosedException, ConnectionResetError, BrokenPipeError):
            return out, None

    def close(self) -> None:
        try:
            self.ws.close(timeout=1)
        except (OSError, websocket.WebSocketException):
            pass
        self.ws.shutdown()  # type: ignore[no-untyped-call]

    def drop(self) -> None:
        """End the TCP connection without a close frame."""
        sock = self.ws.sock
        if sock is not None:
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        self.ws.shutdown()  # type: ignore[no-untyped-call]


def official_key(item: Any) -> Key:
    """Key of an event parsed by the official client (trades, quotes, aggregates)."""
    if item.event_type in ("T", "Q"):
        return item.event_type, item.symbol, item.sequence_number
    return item.event_type, item.symbol, int(item.volume)
