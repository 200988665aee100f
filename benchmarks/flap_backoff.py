"""How much of a stream a client delivers while its server is cut every few seconds (issue 18).

A FaultProxy between the client and MockMassiveServer resets every connection every ``--every``
seconds and refuses new ones for ``--down`` seconds (a server restarting); a publisher sends
``--rate`` trades a second for ``--duration`` seconds. Prints, per backoff rule, the events
delivered out of those published (the ones published while the client was not subscribed are
lost by design: this measures availability, not loss).

    python benchmarks/flap_backoff.py --duration 30 --every 3
"""

from __future__ import annotations

import argparse
import queue
import threading
import time

import massive_rt as mrt
from massive_rt.testing import FaultProxy, MockMassiveServer


def run(reset_on_data: bool, duration: float, every: float, down: float, rate: int) -> tuple[int, int]:
    policy = mrt.ReconnectPolicy(reset_on_data=reset_on_data)
    with MockMassiveServer(api_keys={"k"}) as server, FaultProxy(("127.0.0.1", server.port)) as proxy:
        client = mrt.MassiveWebSocketClient(api_key="k", url=proxy.url("stocks"), subscriptions=["T.AAPL"],
                                            reconnect=policy)  # fmt: skip
        delivered = 0
        with client:
            client.wait_ready(10)
            proxy.flap(every, down_for=down)
            stop = threading.Event()

            def consume() -> None:
                nonlocal delivered
                while not stop.is_set():
                    try:
                        delivered += isinstance(client.get(timeout=0.1), mrt.EquityTrade)
                    except queue.Empty:
                        continue

            consumer = threading.Thread(target=consume, name="bench-consumer", daemon=True)
            consumer.start()
            published, started, batch = 0, time.monotonic(), max(1, rate // 100)
            while time.monotonic() - started < duration:
                server.publish([{"ev": "T", "sym": "AAPL", "p": 1.0, "s": 1, "t": 1}] * batch)
                published += batch
                time.sleep(batch / rate)
            proxy.flap(None)
            stop.set()
            consumer.join(5)
        return delivered, published


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--every", type=float, default=3.0)
    parser.add_argument("--down", type=float, default=0.2)
    parser.add_argument("--rate", type=int, default=1000)
    args = parser.parse_args()
    for reset_on_data in (False, True):
        delivered, published = run(reset_on_data, args.duration, args.every, args.down, args.rate)
        print(
            f"reset_on_data={reset_on_data!s:5}  delivered {delivered:>7} of {published:>7} "
            f"({100 * delivered / max(1, published):.1f}%)"
        )


if __name__ == "__main__":
    main()
