"""How long a callback stuck on a reader keeps its socket unread, under ``dispatch="adaptive"``.

Run with ``python benchmarks/bench_relief.py [--trials N] [--dispatch adaptive]``.

A callback that blocks (on an Event) runs on a connection's reader thread; as it starts
blocking, a :class:`~massive_rt.testing.MockMassiveServer` sends a WebSocket ping and times the
pong. Under ``"adaptive"`` the connection's relief reader takes over the socket and answers it;
under ``"inline"`` (no relief reader) no pong comes until the callback returns (shown as a
timeout of ``--give-up`` seconds). Between trials a burst of fast events lets the dispatcher
return the callbacks to the readers. Shown: median, p90 and max of the ping → pong times.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import massive_rt as mrt
from massive_rt.testing import MockMassiveServer

KEY = "bench"


def trade(q: int) -> dict[str, object]:
    return {"ev": "T", "sym": "A", "p": 1.0, "s": 1, "t": 1, "q": q}


def measure(dispatch: str, trials: int, give_up: float) -> list[float]:
    """Milliseconds from a callback blocking on a reader to the server holding the pong of a ping."""
    stalls: list[float] = []
    with MockMassiveServer(api_keys=[KEY]) as server:
        client = mrt.MassiveWebSocketClient(api_key=KEY, url=server.url(), subscriptions=["T.*"])
        entered, release = threading.Event(), threading.Event()
        blocking = {"q": -1}

        def on_trade(event: mrt.EquityTrade) -> None:
            on_reader = threading.current_thread().name.startswith("massive-rt-reader-")
            if event.sequence_number == blocking["q"] and on_reader:
                entered.set()
                release.wait(give_up + 5)

        adapter = mrt.RealTimeDataAdapter(client, dispatch=dispatch)
        adapter.on(mrt.EquityTrade, on_trade)
        adapter.start()
        client.wait_acked(["T.*"], 10)
        (conn,) = server.active_connections()
        q = 0
        while len(stalls) < trials and q < trials * 50:
            blocking["q"] = q
            entered.clear()
            release.clear()
            server.publish([trade(q)])
            q += 1
            if not entered.wait(0.2):
                continue  # the dispatcher ran it (not back on the readers yet): try again
            started = time.perf_counter()
            answered = server.ping(conn).wait(give_up)
            stalls.append((time.perf_counter() - started) * 1000 if answered else give_up * 1000)
            release.set()
            # Fast events enough for the dispatcher to hand the callbacks back to the readers
            # (the streak doubles after each hand-over that follows a return soon, up to 4,096).
            server.publish([trade(10**7 + k) for k in range(6000)])
            time.sleep(0.3)
        adapter.stop()
    return stalls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--dispatch", default="adaptive", choices=["adaptive", "inline"])
    parser.add_argument("--give-up", type=float, default=2.0, help="seconds to wait for a pong")
    args = parser.parse_args()
    stalls = sorted(measure(args.dispatch, args.trials, args.give_up))
    if not stalls:
        raise SystemExit("no callback ran on a reader")
    p90 = stalls[int(len(stalls) * 0.9)]
    print(f"dispatch={args.dispatch}: {len(stalls)} callbacks stuck on a reader; ping -> pong ms: "
          f"median {statistics.median(stalls):.1f}, p90 {p90:.1f}, max {stalls[-1]:.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
