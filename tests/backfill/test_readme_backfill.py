"""The README's "Gap backfill" example runs as written (its claims are its assertions)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.timeout(60)
def test_readme_backfill_example_runs_as_written() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Gap backfill", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 1
    assert "assert" in blocks[0]
    exec(compile(blocks[0], "README.md (Gap backfill)", "exec"), {})
