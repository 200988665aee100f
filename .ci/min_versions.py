#!/usr/bin/env python3
"""The oldest versions setup.cfg claims to support, for ``make test-min``.

    min_versions.py requirements [--extras testing,relay] [--tools pytest,pytest-xdist]
        One ``name==version`` line per runtime dependency (``install_requires``), per requirement
        of the named extras, and per named tool from the ``dev`` extra: each lower bound of
        setup.cfg turned into an exact pin, so that pip installs exactly the declared minimum
        (and fails if that release does not exist).
    min_versions.py python
        The oldest Python ``python_requires`` admits, e.g. ``3.10``.
    min_versions.py interpreter
        The path of an interpreter of that version (on PATH or under pyenv), or nothing and
        exit status 1 when this machine has none.

Every requirement in setup.cfg must be ``name>=version`` (optionally with extras,
``name[extra]>=version``): a requirement without a lower bound, or with another operator, is an
error here, so the bounds stay testable. Standard library only (it runs before any venv exists).
"""

from __future__ import annotations

import argparse
import configparser
import glob
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

SETUP_CFG = Path(__file__).resolve().parent.parent / "setup.cfg"
_LOWER_BOUND = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*>=\s*(?P<version>[0-9][0-9A-Za-z.]*)$"
)


def _lines(value: str) -> list[str]:
    return [line.strip() for line in value.splitlines() if line.strip() and not line.strip().startswith("#")]


def lower_bounds(section: str, key: str, config: configparser.ConfigParser) -> dict[str, str]:
    """``{name: minimum}`` of one requirement list of setup.cfg (names lower-cased)."""
    bounds: dict[str, str] = {}
    for requirement in _lines(config.get(section, key, fallback="")):
        match = _LOWER_BOUND.match(requirement)
        if match is None:
            raise SystemExit(f"setup.cfg [{section}] {key}: {requirement!r} is not 'name>=version'")
        bounds[match["name"].lower()] = match["version"]
    return bounds


def requirements(extras: list[str], tools: list[str], config: configparser.ConfigParser) -> list[str]:
    """The exact pins of the declared minimum versions (see the module docs)."""
    pins = lower_bounds("options", "install_requires", config)
    for extra in extras:
        if not config.has_option("options.extras_require", extra):
            raise SystemExit(f"setup.cfg has no extra {extra!r}")
        pins.update(lower_bounds("options.extras_require", extra, config))
    dev = lower_bounds("options.extras_require", "dev", config)
    for tool in tools:
        if tool.lower() not in dev:
            raise SystemExit(f"{tool!r} is not in setup.cfg's dev extra")
        pins[tool.lower()] = dev[tool.lower()]
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def oldest_python(config: configparser.ConfigParser) -> str:
    spec = config.get("options", "python_requires").strip()
    match = re.fullmatch(r">=\s*(3\.\d+)", spec)
    if match is None:
        raise SystemExit(f"setup.cfg python_requires {spec!r} is not '>=3.N'")
    return match[1]


def find_interpreter(version: str) -> str | None:
    """``python<version>`` on PATH that runs (a pyenv shim may not), else pyenv's newest build of it."""
    candidates = [shutil.which(f"python{version}")]
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    builds = glob.glob(os.path.join(root, "versions", f"{version}.*", "bin", f"python{version}"))
    candidates += sorted(builds, key=lambda p: [int(n) for n in re.findall(r"\d+", Path(p).parents[1].name)])[::-1]
    for candidate in candidates:
        if candidate is None:
            continue
        try:
            found = subprocess.run(  # noqa: S603 - an interpreter of ours, found above
                [candidate, "-c", "import sys, venv; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
        except OSError:
            continue
        if found.returncode == 0 and found.stdout.strip() == version:
            return candidate
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    pins = commands.add_parser("requirements", help="exact pins of the declared minimum versions")
    pins.add_argument("--extras", default="", help="comma-separated extras to include")
    pins.add_argument("--tools", default="", help="comma-separated packages of the dev extra to include")
    commands.add_parser("python", help="the oldest Python python_requires admits")
    commands.add_parser("interpreter", help="an interpreter of that version, if this machine has one")
    args = parser.parse_args()

    config = configparser.ConfigParser()
    config.read(SETUP_CFG, encoding="utf-8")
    if args.command == "requirements":
        split = [[item.strip() for item in value.split(",") if item.strip()] for value in (args.extras, args.tools)]
        print("\n".join(requirements(split[0], split[1], config)))
    elif args.command == "python":
        print(oldest_python(config))
    else:
        path = find_interpreter(oldest_python(config))
        if path is None:
            sys.exit(1)
        print(path)


if __name__ == "__main__":
    main()
