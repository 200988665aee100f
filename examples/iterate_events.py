"""Consume events in your own loop with client.get() / client.iter_events(), no adapter.

    python examples/iterate_events.py                        # offline: synthetic data, no key
    MASSIVE_API_KEY=... python examples/iterate_events.py    # Massive's real-time feed

The client's reader thread fills a bounded queue; your thread takes events out (and decodes them)
at its own pace. stop() is safe from any thread, which is how this loop gets its deadline.
"""

from __future__ import annotations

import collections
import queue
import threading

from _offline import arguments, endpoint

from massive_rt import MassiveWebSocketClient, StatusMessage


def main() -> None:
    args = arguments(__doc__).parse_args()
    counts: collections.Counter[str] = collections.Counter()

    with (
        endpoint(args.url) as (api_key, url),
        MassiveWebSocketClient(api_key, url=url, subscriptions=["T.*", "Q.AAPL"]) as client,
    ):
        client.wait_ready(timeout=10)  # authenticated and subscribed (raises on a bad key)

        # get(): one event, waiting at most `timeout` seconds (queue.Empty otherwise).
        try:
            first = client.get(timeout=10)
            print(f"first event: {first}")
        except queue.Empty:
            print("nothing within 10 s (market closed?)")

        # iter_events(): every event until the client stops (here: a timer, from another thread).
        timer = threading.Timer(args.duration, client.stop)
        timer.start()
        try:
            for event in client.iter_events():
                if isinstance(event, StatusMessage):
                    print(f"status: {event.status} {event.message}")
                    continue
                counts[type(event).__name__] += 1
                if counts.total() <= 10:
                    print(event)
        except KeyboardInterrupt:
            pass
        finally:
            timer.cancel()
        print(f"queue high-water mark: {client.stats().queue_high_water} events")

    print(f"received {counts.total()} events ({dict(counts)})")


if __name__ == "__main__":
    main()
