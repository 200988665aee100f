"""A recorder's stats join the adapter's: ``adapter.stats().recorders`` while it records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import massive_rt as mrt
from tests.conftest import wait_until

WAIT = 10.0


def test_the_adapter_reports_the_stats_of_the_recorder_on_its_source(make_adapter: Any, tmp_path: Path) -> None:
    source = mrt.SyntheticSource(("T.*",), rate=None, seed=5, queue_size=1_000)
    adapter = make_adapter(source)
    events: list[mrt.Event] = []
    adapter.on("*", events.append)
    assert adapter.stats().recorders == ()

    recorder = mrt.Recorder(adapter, tmp_path / "s.mrt", flush_interval=0.01).start()  # the adapter's source
    adapter.start()
    assert wait_until(lambda: len(events) > 500, WAIT)
    assert wait_until(lambda: adapter.stats().recorders[0].bytes_written > 0, WAIT)
    (stats,) = adapter.stats().recorders
    assert isinstance(stats, mrt.RecorderStats)
    assert stats.files == (str(tmp_path / "s.mrt"),)
    assert json.loads(json.dumps(adapter.stats().to_dict()))["recorders"][0]["files"] == [str(tmp_path / "s.mrt")]

    adapter.stop()
    assert recorder.stop()
    assert adapter.stats().recorders == ()  # detached: nothing records this source any more
    assert recorder.stats().records >= stats.records
