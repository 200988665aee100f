"""The README's "Last values and minute bars" example runs as written, over a synthetic source.

The snippet's ``adapter`` is the one thing supplied; its ``with`` block (``run_forever``) runs on
a thread of the test, which stops the adapter once the snippet's own ``latest_price`` reads a
trade, as a request handler would.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import pytest

import massive_rt as mrt
from tests.conftest import wait_until

README = Path(__file__).resolve().parents[2] / "README.md"


def _snippet() -> str:
    section = README.read_text(encoding="utf-8").split("### Last values and minute bars", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 1
    return str(blocks[0])


def _bar(close: float) -> mrt.EquityAgg:
    return mrt.EquityAgg(received_at_ns=1, connection="c", event_type="AM", symbol="AAPL", close=close)


@pytest.mark.timeout(60)
def test_the_readme_last_values_snippet_runs_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    adapter = mrt.RealTimeDataAdapter(mrt.SyntheticSource(("T.AAPL", "AM.AAPL"), seed=3))
    namespace: dict[str, Any] = {"mrt": mrt, "adapter": adapter}
    failures: list[BaseException] = []

    def run() -> None:
        try:
            exec(compile(_snippet(), "README.md (Last values and minute bars)", "exec"), namespace)
        except BaseException as exc:  # handed to the test's thread
            failures.append(exc)

    thread = threading.Thread(target=run, name="readme-last-values", daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: "latest_price" in namespace and namespace["latest_price"]("AAPL") is not None, 20)
    finally:
        adapter.stop()
        thread.join(10)
    assert not thread.is_alive()
    assert failures == []

    price = namespace["latest_price"]("AAPL")  # cache.trade() is a CachedValue: .value.price
    assert isinstance(price, float)
    assert price > 0
    assert namespace["latest_price"]("NEVER") is None
    # on_minute gets a dict symbol -> BarSlot, as BarClock passes it.
    capsys.readouterr()
    namespace["on_minute"](60_000, {
        "AAPL": mrt.BarSlot(symbol="AAPL", minute=60_000, bar=_bar(187.5), filled=False),
        "MSFT": mrt.BarSlot(symbol="MSFT", minute=60_000, bar=None, filled=False),
        "TSLA": mrt.BarSlot(symbol="TSLA", minute=60_000, bar=_bar(250.0), filled=True),
    })  # fmt: skip
    assert capsys.readouterr().out == "60000 AAPL 187.5 received\n60000 TSLA 250.0 filled\n"
