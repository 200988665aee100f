"""get()'s fast path in C (``massive_rt.speedups.ready_get``): the same events and errors as the
Python method, in the same order, from one thread or several; it stands aside in a subclass that
overrides get() and in a forked child; it leaks nothing; and it looks like the method it stands in
for to ``inspect``, ``help()`` and a repr. Without the accelerator, get() is the plain method."""

from __future__ import annotations

import functools
import gc
import inspect
import queue
import sys
import threading
import tracemalloc
import types
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

import attrs
import pytest

import massive_rt as mrt
from massive_rt import connection, speedups
from massive_rt.consumer import QueueConsumer
from massive_rt.testing import MockMassiveServer
from tests.conftest import wait_until

pytestmark = pytest.mark.timeout(60)
accelerated = pytest.mark.skipif(speedups.ready_get is None, reason=f"the accelerator is {speedups.STATUS}")

TOTAL = 200


def trade(q: int, symbol: str = "AAPL") -> dict[str, Any]:
    return {"ev": "T", "sym": symbol, "p": 100.0 + q / 100, "s": q, "q": q, "t": 1_700_000_000_000 + q, "c": [q % 7]}


def python_get(client: QueueConsumer) -> QueueConsumer:
    """The same client with the fast path taken away: get() is the Python method again."""
    client.__dict__.pop("get", None)
    assert isinstance(client.get, types.MethodType)
    return client


def started(make_client: Callable[..., mrt.MassiveWebSocketClient], **options: Any) -> mrt.MassiveWebSocketClient:
    """A client subscribed to every trade, its session's statuses taken: get() returns data next."""
    client = make_client(**options)
    client.start()
    client.subscribe("T.*")
    assert client.wait_acked(["T.*"], 5)
    skip_statuses(client)
    return client


def skip_statuses(client: mrt.MassiveWebSocketClient) -> None:
    """Take the session's state statuses up to streaming (the subscription acknowledged)."""
    for _ in range(10):
        event = client.get(timeout=5)
        assert isinstance(event, mrt.StatusMessage), event
        if event.state is mrt.ConnectionState.STREAMING:
            return
    raise AssertionError("no acknowledgement among the first statuses")


def fields(event: mrt.Event) -> tuple[Any, ...]:
    """Everything an event carries but when and on which connection it arrived."""
    skipped = ("received_at_ns", "connection")
    return tuple(getattr(event, f.name) for f in attrs.fields(type(event)) if f.name not in skipped)


def take_all(client: mrt.MassiveWebSocketClient, total: int) -> list[mrt.Event]:
    got: list[mrt.Event] = []
    while len(got) < total:
        got.append(client.get(timeout=5))
    return got


@accelerated
def test_a_client_built_with_the_accelerator_gets_through_the_c_fast_path(
    make_client: Callable[..., mrt.MassiveWebSocketClient],
) -> None:
    client = make_client()
    assert type(client.get) is speedups.ready_get
    assert client.get.__wrapped__ == types.MethodType(QueueConsumer.get, client)


@pytest.mark.skipif(speedups.ready_get is not None, reason="the accelerator is active")
def test_without_the_accelerator_get_is_the_plain_method(
    make_client: Callable[..., mrt.MassiveWebSocketClient],
) -> None:
    client = make_client()
    assert isinstance(client.get, types.MethodType)
    assert "get" not in vars(client)


@accelerated
def test_both_paths_give_the_same_events_in_the_same_order(
    server: MockMassiveServer, make_client: Callable[..., mrt.MassiveWebSocketClient]
) -> None:
    fast = started(make_client)
    slow = python_get(started(make_client))
    # Mixed frame sizes, a status in the middle and odd values: every way an event reaches get().
    server.publish([trade(q) for q in range(1, 101)], batch=10)
    server.publish([trade(q, "MSFT") for q in range(101, 131)], batch=1)
    status = {"ev": "status", "status": "info", "message": "mid-stream"}
    server.publish([status] + [trade(q) for q in range(131, 201)], batch=7)
    fast_events, slow_events = take_all(fast, TOTAL + 1), take_all(slow, TOTAL + 1)
    assert [type(e) for e in fast_events] == [type(e) for e in slow_events]
    assert [fields(e) for e in fast_events] == [fields(e) for e in slow_events]
    trades = [e for e in fast_events if isinstance(e, mrt.EquityTrade)]
    assert [e.sequence_number for e in trades] == list(range(1, TOTAL + 1))
    assert sum(isinstance(e, mrt.StatusMessage) for e in fast_events) == 1


@accelerated
def test_both_paths_raise_the_same_errors(make_client: Callable[..., mrt.MassiveWebSocketClient]) -> None:
    def outcome(call: Callable[[], Any]) -> str:
        try:
            call()
        except Exception as exc:  # the type and message are what is compared
            return f"{type(exc).__name__}: {exc}"
        return "returned"

    fast, slow = started(make_client), python_get(started(make_client))
    cases: list[Callable[[mrt.MassiveWebSocketClient], Any]] = [
        lambda c: c.get(timeout=0.01),  # nothing arrives: queue.Empty
        lambda c: c.get(0),
        lambda c: c.get(timeout=-1),  # refused
        lambda c: c.get(timeout="soon"),
        lambda c: c.get(1, 2),  # more arguments than get() takes
        lambda c: c.get(wait=1),  # a keyword get() does not take
        lambda c: c.get(0.01, timeout=0.01),
    ]
    fast_outcomes = [outcome(functools.partial(case, fast)) for case in cases]
    slow_outcomes = [outcome(functools.partial(case, slow)) for case in cases]
    assert fast_outcomes == slow_outcomes
    assert fast_outcomes[0].startswith("Empty")
    assert fast_outcomes[4].startswith("TypeError")
    for client in (fast, slow):
        client.stop()

    def after_the_statuses(client: mrt.MassiveWebSocketClient) -> str:
        for _ in range(10):  # stop()'s state statuses come first
            try:
                event = client.get(timeout=1)
            except Exception as exc:
                return f"{type(exc).__name__}: {exc}".replace(client.name, "NAME")
            assert isinstance(event, mrt.StatusMessage), event
        raise AssertionError("get() still returns statuses after stop()")

    closed = [after_the_statuses(client) for client in (fast, slow)]
    assert closed[0] == closed[1]
    assert closed[0].startswith("ClientClosedError")


@accelerated
def test_with_events_waiting_both_paths_answer_odd_calls_alike(
    server: MockMassiveServer, make_client: Callable[..., mrt.MassiveWebSocketClient]
) -> None:
    fast, slow = started(make_client), python_get(started(make_client))
    server.publish([trade(q) for q in range(1, 11)], batch=10)
    for client in (fast, slow):
        assert client.get(timeout=5).sequence_number == 1  # type: ignore[union-attr]
        assert len(client._ready) == 9
        # An event waits: the timeout is not looked at (as the Python fast path never did).
        assert client.get(timeout=-1).sequence_number == 2  # type: ignore[union-attr]
        with pytest.raises(TypeError, match="positional"):
            client.get(1, 2)
        with pytest.raises(TypeError, match="wait"):
            client.get(wait=1)  # type: ignore[call-arg]
        assert len(client._ready) == 8  # the refused calls took nothing


@accelerated
def test_a_ready_event_is_returned_for_every_form_of_call_get_takes(
    server: MockMassiveServer, make_client: Callable[..., mrt.MassiveWebSocketClient]
) -> None:
    client = started(make_client)
    server.publish([trade(q) for q in range(1, 11)], batch=10)
    first = client.get(timeout=5)  # decodes the frame: nine events wait, decoded
    assert len(client._ready) == 9
    calls: list[Callable[[], mrt.Event]] = [client.get, lambda: client.get(None), lambda: client.get(timeout=1),
                                            lambda: client.get(timeout=None), lambda: client.get(5)]  # fmt: skip
    rest = [call() for call in calls]
    assert [e.sequence_number for e in [first, *rest]] == [1, 2, 3, 4, 5, 6]  # type: ignore[union-attr]


@accelerated
def test_several_threads_calling_get_receive_every_event_exactly_once(
    server: MockMassiveServer, make_client: Callable[..., mrt.MassiveWebSocketClient]
) -> None:
    client = started(make_client)
    total = 5_000
    seen: list[list[int]] = [[] for _ in range(4)]
    errors: list[BaseException] = []

    def consume(mine: list[int]) -> None:
        try:
            while True:
                try:
                    event = client.get(timeout=0.5)
                except queue.Empty:
                    if sum(map(len, seen)) >= total:
                        return
                    continue
                except mrt.ClientClosedError:
                    return
                if isinstance(event, mrt.StatusMessage):  # stop()'s
                    continue
                mine.append(event.sequence_number)  # type: ignore[union-attr]
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=consume, args=(mine,), name=f"getter-{i}", daemon=True)
               for i, mine in enumerate(seen)]  # fmt: skip
    for thread in threads:
        thread.start()
    server.publish([trade(q) for q in range(1, total + 1)], batch=10)
    assert wait_until(lambda: sum(map(len, seen)) >= total, 30)
    client.stop()
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()
    assert not errors
    everything = sorted(q for mine in seen for q in mine)
    assert everything == list(range(1, total + 1))
    for mine in seen:  # each thread saw its events in stream order
        assert mine == sorted(mine)


@accelerated
def test_a_subclass_that_overrides_get_keeps_its_own(
    server: MockMassiveServer, make_client: Callable[..., mrt.MassiveWebSocketClient]
) -> None:
    calls: list[float | None] = []

    class Counting(mrt.MassiveWebSocketClient):
        def get(self, timeout: float | None = None) -> mrt.Event:
            calls.append(timeout)
            return super().get(timeout)

    client = Counting(api_key="test-key", url=server.url("stocks"))
    try:
        assert "get" not in vars(client)
        client.start()
        client.subscribe("T.*")
        assert client.wait_acked(["T.*"], 5)
        skip_statuses(client)
        calls.clear()
        server.publish([trade(q) for q in range(1, 4)], batch=3)
        assert [client.get(timeout=5).sequence_number for _ in range(3)] == [1, 2, 3]  # type: ignore[union-attr]
        assert calls == [5, 5, 5]  # every call, including those the fast path would have answered
    finally:
        client.stop()


@accelerated
def test_in_a_forked_child_get_refuses_even_with_events_decoded_and_waiting(
    server: MockMassiveServer, make_client: Callable[..., mrt.MassiveWebSocketClient]
) -> None:
    client = started(make_client)
    server.publish([trade(q) for q in range(1, 11)], batch=10)
    assert client.get(timeout=5).sequence_number == 1  # type: ignore[union-attr]
    assert client._ready  # events wait, decoded: what the fast path would hand out
    connection._after_fork_in_child()  # what os.register_at_fork runs in a child process
    try:
        assert "get" not in vars(client)
        with pytest.raises(mrt.ClientClosedError, match="fork"):
            client.get(timeout=0)
        with pytest.raises(mrt.ClientClosedError, match="fork"):
            client.get()
    finally:
        client._forked = False
    assert client.get(timeout=5).sequence_number == 2  # type: ignore[union-attr]


@accelerated
def test_the_fast_path_leaks_no_references_and_no_memory() -> None:
    class Event:
        __slots__ = ("n",)

        def __init__(self, n: int) -> None:
            self.n = n

    events = [Event(n) for n in range(1_000)]
    fallback_calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def fallback(*args: Any, **kwargs: Any) -> None:
        fallback_calls.append((args, kwargs))

    ready: deque[Event] = deque()
    fast = speedups.ready_get(ready, fallback)  # type: ignore[misc]
    before = [sys.getrefcount(e) for e in events[:10]], sys.getrefcount(ready), sys.getrefcount(fallback)

    def round_trip() -> None:
        for _ in range(20):
            ready.extend(events)
            for _ in events:
                fast()
            ready.extend(events)
            for _ in events:
                fast(timeout=1.0)
        fast()  # empty: the fallback, once per round
        fallback_calls.clear()

    round_trip()
    gc.collect()
    tracemalloc.start()
    try:
        round_trip()
        gc.collect()
        first, _ = tracemalloc.get_traced_memory()
        for _ in range(3):
            round_trip()
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after - first < 16_384  # 120,000 more calls: a leak of a byte per call would show
    assert ([sys.getrefcount(e) for e in events[:10]], sys.getrefcount(ready), sys.getrefcount(fallback)) == before


@accelerated
def test_a_dropped_client_is_collected_despite_the_reference_back_to_it(
    make_client: Callable[..., mrt.MassiveWebSocketClient],
) -> None:
    client = mrt.MassiveWebSocketClient(api_key="test-key", url="ws://127.0.0.1:9/stocks")
    fast = client.get
    gone = weakref.ref(client)
    del client, fast
    gc.collect()
    assert gone() is None  # the fast path is in the garbage collector's view: the cycle is found


@accelerated
def test_what_the_fast_path_does_by_itself() -> None:
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def fallback(*args: Any, **kwargs: Any) -> str:
        calls.append((args, kwargs))
        return "fallback"

    ready: deque[str] = deque(["a", "b", "c", "d"])
    fast = speedups.ready_get(ready, fallback)  # type: ignore[misc]
    assert [fast(), fast(None), fast(timeout=2)] == ["a", "b", "c"]
    assert not calls
    # Anything but one optional timeout goes to the full method, with the same arguments.
    assert fast(1, 2) == "fallback"
    assert fast(other=1) == "fallback"
    assert fast(1, timeout=2) == "fallback"
    assert calls == [((1, 2), {}), ((), {"other": 1}), ((1,), {"timeout": 2})]
    assert list(ready) == ["d"]
    assert fast() == "d"
    assert fast(timeout=0.5) == "fallback"  # nothing ready
    assert calls[-1] == ((), {"timeout": 0.5})
    with pytest.raises(TypeError, match="callable"):
        speedups.ready_get(deque(), None)  # type: ignore[misc, arg-type]
    with pytest.raises(AttributeError):
        speedups.ready_get([], fallback)  # type: ignore[misc, arg-type]  # no popleft


@accelerated
def test_a_race_for_the_last_ready_event_falls_back_to_the_full_method() -> None:
    class Raced(deque):  # type: ignore[type-arg]
        """Reports an event, then loses it to "another thread" before popleft."""

        def __len__(self) -> int:
            return 1

        def popleft(self) -> Any:
            raise IndexError("pop from an empty deque")

    class Broken(deque):  # type: ignore[type-arg]
        def __len__(self) -> int:
            return 1

        def popleft(self) -> Any:
            raise RuntimeError("not an IndexError")

    assert speedups.ready_get(Raced(), lambda timeout=None: ("full", timeout))(timeout=3) == ("full", 3)  # type: ignore[misc]
    with pytest.raises(RuntimeError, match="not an IndexError"):
        speedups.ready_get(Broken(), lambda timeout=None: None)()  # type: ignore[misc]


@accelerated
def test_inspect_help_and_repr_see_the_method(make_client: Callable[..., mrt.MassiveWebSocketClient]) -> None:
    client = make_client()
    method = types.MethodType(QueueConsumer.get, client)
    assert inspect.signature(client.get) == inspect.signature(method)
    assert client.get.__doc__ == QueueConsumer.get.__doc__
    assert client.get.__name__ == "get"
    assert client.get.__qualname__ == "QueueConsumer.get"
    assert repr(client.get) == repr(method)
    assert "***" in repr(client.get)  # the key stays masked
    assert "test-key" not in repr(client.get)
    assert inspect.signature(mrt.MassiveWebSocketClient.get).parameters.keys() == {"self", "timeout"}
