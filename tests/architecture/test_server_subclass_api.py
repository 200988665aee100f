"""The mock server and the relay use ProtocolServer only through its documented subclass API
(the list in its docstring), never through the rest of its state."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from massive_rt._server import ProtocolServer

ROOT = Path(__file__).resolve().parents[2] / "massive_rt"


def base_members() -> set[str]:
    tree = ast.parse((ROOT / "_server.py").read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "ProtocolServer")
    members: set[str] = set()
    for node in ast.walk(cls):
        if isinstance(node, ast.FunctionDef):
            members.add(node.name)
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self"
              and isinstance(node.ctx, ast.Store)):  # fmt: skip
            members.add(node.attr)
    return {m for m in members if m.startswith("_") and not m.startswith("__")}


def documented() -> set[str]:
    doc = ProtocolServer.__doc__ or ""
    api = doc[doc.index("Subclass API") :]
    return set(re.findall(r"``(_[a-z_]+)``", api))


@pytest.mark.parametrize("module", ["testing/server.py", "relay.py"])
def test_subclasses_use_only_the_documented_api(module: str) -> None:
    private = base_members()
    used = set(re.findall(r"self\.(_[a-z_]+)", (ROOT / module).read_text(encoding="utf-8")))
    undocumented = sorted((used & private) - documented())
    assert undocumented == []


def test_the_documented_api_exists() -> None:
    assert documented() <= base_members()
    assert {"_write", "_lock", "_on_subscribe", "_is_running"} <= documented()
