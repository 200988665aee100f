"""No module of massive_rt imports another module's private (underscore) names.

A private name is free to change with its module; a module that imports one ties the two
together behind the reader's back. Shared helpers get a public name in one home (framing,
protocol, _json, _validate ...); private *modules* (``_server``, ``_json``) are fine to import
from, as long as the names taken are public.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "massive_rt"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def resolve(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = importer.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def private_imports(path: Path) -> list[str]:
    return private_imports_in(path.read_text(encoding="utf-8"), module_name(path), path.name == "__init__.py")


def private_imports_in(source_text: str, importer: str, is_package: bool = False) -> list[str]:
    tree = ast.parse(source_text)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        source = resolve(node, importer, is_package)
        if source != "massive_rt" and not source.startswith("massive_rt."):
            continue
        for alias in node.names:
            name = alias.name
            if name.startswith("_") and not (name.startswith("__") and name.endswith("__")):
                found.append(f"{importer} imports {name} from {source} (line {node.lineno})")
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_the_walk_sees_the_whole_package() -> None:
    names = {module_name(p) for p in MODULES}
    assert {"massive_rt.connection", "massive_rt.testing.server", "massive_rt._server"} <= names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_no_private_name_is_imported_from_another_module(path: Path) -> None:
    assert private_imports(path) == []


def test_the_check_catches_a_private_import() -> None:
    text = (
        "from ._server import _frame, ProtocolServer\n"
        "from .. import _util\n"
        "from massive_rt.pool import _alive\n"
        "from .protocol import __all__\n"
        "from os import _exit\n"
    )
    assert private_imports_in(text, "massive_rt.testing.server") == [
        "massive_rt.testing.server imports _frame from massive_rt.testing._server (line 1)",
        "massive_rt.testing.server imports _util from massive_rt (line 2)",
        "massive_rt.testing.server imports _alive from massive_rt.pool (line 3)",
    ]
    assert private_imports_in("from ._server import _frame\n", "massive_rt.relay") == [
        "massive_rt.relay imports _frame from massive_rt._server (line 1)"
    ]
    assert private_imports_in("from .server import _x\n", "massive_rt.testing", is_package=True) == [
        "massive_rt.testing imports _x from massive_rt.testing.server (line 1)"
    ]
