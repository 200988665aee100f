"""The README's "Record and replay" example runs as written (its claims are its assertions)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.timeout(60)
def test_readme_record_and_replay_example_runs_as_written() -> None:
    section = README.read_text(encoding="utf-8").split("## Record and replay", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 1
    assert "assert again == live" in blocks[0]
    exec(compile(blocks[0], "README.md (Record and replay)", "exec"), {})
