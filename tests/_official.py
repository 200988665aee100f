"""The official ``massive`` client, its asyncio ``connect()`` running in a thread of its own.

Shared by the peer-fidelity and relay suites. It ends when the server closes the connection
cleanly (``max_reconnects=0``).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any

from massive import WebSocketClient


class OfficialClient:
    """Runs ``WebSocketClient.connect`` on its own event loop and queues every parsed message."""

    def __init__(self, port: int, market: str, subscriptions: list[str], api_key: str) -> None:
        self.client = WebSocketClient(
            api_key=api_key, feed=f"127.0.0.1:{port}", market=market, secure=False, subscriptions=subscriptions,
            max_reconnects=0,
        )  # fmt: skip
        self.messages: queue.Queue[Any] = queue.Queue()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="official-client", daemon=True)
        self.thread.start()

    async def _processor(self, messages: list[Any]) -> None:
        for message in messages:
            self.messages.put(message)

    def _run(self) -> None:
        try:
            asyncio.run(self.client.connect(self._processor, proxy=None))
        except BaseException as exc:
            self.error = exc

    def take(self, n: int, timeout: float = 10.0) -> list[Any]:
        """The next ``n`` messages."""
        return [self.messages.get(timeout=timeout) for _ in range(n)]

    def take_until(self, done: Callable[[Any], bool], timeout: float = 15.0) -> list[Any]:
        """Messages up to and including the first for which ``done`` is true."""
        out: list[Any] = []
        while True:
            item = self.messages.get(timeout=timeout)
            out.append(item)
            if done(item):
                return out
