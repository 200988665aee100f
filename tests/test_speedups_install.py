"""The accelerator is optional: ``MASSIVE_RT_NO_EXTENSIONS=1`` forces the pure-Python path, and a
machine without a C compiler still builds, installs and runs the package.

Each test runs fresh interpreters (the variable is read once, at import).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

from tests.test_cli import ROOT, TIMEOUT, clean_env

BUILT = importlib.util.find_spec("massive_rt._speedups") is not None

# Decodes one frame of each stocks event with msgspec and prints what a test compares.
PROBE = textwrap.dedent("""
    import json, sys
    import massive_rt
    from massive_rt import speedups
    from massive_rt.protocol import Decoder
    frame = b'[{"ev":"T","sym":"AAPL","p":187.5,"s":100,"c":[12,37],"t":1},{"ev":"Q","sym":"\\xc3\\xa9"},{"ev":"AM"}]'
    events = Decoder("stocks", "c").decode(frame, 5)
    print(json.dumps({
        "file": massive_rt.__file__,
        "accelerated": massive_rt.accelerated,
        "status": speedups.STATUS,
        "extension_loaded": "massive_rt._speedups" in sys.modules,
        "events": [repr(e) for e in events],
    }))
""")


def _probe(cwd: Path = ROOT, flags: tuple[str, ...] = (), **env: str) -> dict[str, object]:
    """Run PROBE in a fresh interpreter (``-c`` puts ``cwd`` first on sys.path)."""
    done = subprocess.run([sys.executable, *flags, "-c", PROBE], capture_output=True, text=True, cwd=cwd,
                          env={**clean_env(), **env}, timeout=TIMEOUT, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_the_variable_forces_the_python_path_and_the_events_are_the_same() -> None:
    disabled = _probe(MASSIVE_RT_NO_EXTENSIONS="1")
    default = _probe()

    assert disabled["accelerated"] is False
    assert disabled["status"] == "disabled (MASSIVE_RT_NO_EXTENSIONS is set)"
    assert disabled["extension_loaded"] is False  # never even imported
    assert default["accelerated"] is BUILT
    assert default["extension_loaded"] is BUILT
    assert disabled["events"] == default["events"]
    assert [e.split("(", 1)[0] for e in disabled["events"]] == ["EquityTrade", "EquityQuote", "EquityAgg"]  # type: ignore[union-attr]


def test_zero_or_empty_does_not_disable_the_accelerator() -> None:
    for value in ("0", ""):
        assert _probe(MASSIVE_RT_NO_EXTENSIONS=value)["accelerated"] is BUILT


def test_the_version_says_whether_the_accelerator_is_active() -> None:
    version = [sys.executable, "-m", "massive_rt", "--version"]
    env = {**clean_env(), "MASSIVE_RT_NO_EXTENSIONS": "1"}
    done = subprocess.run(version, capture_output=True, text=True, cwd=ROOT, env=env, timeout=TIMEOUT, check=False)

    assert done.returncode == 0
    assert done.stdout.endswith("(accelerator: disabled (MASSIVE_RT_NO_EXTENSIONS is set))\n")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_without_a_c_compiler_the_package_builds_installs_and_decodes(tmp_path: Path) -> None:
    """``CC=false``: every compile fails. The build warns, leaves the extension out and succeeds
    (``optional=True``); the installed package runs on the Python path. About 15 s."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("setup.py", "setup.cfg", "pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "MANIFEST.in"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "massive_rt", source / "massive_rt", ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    env = {**clean_env(), "CC": "false", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    pip = [sys.executable, "-m", "pip"]

    built = subprocess.run([*pip, "wheel", "-v", "--no-deps", "--no-build-isolation", "--no-index", "-w",
                            str(tmp_path / "dist"), str(source)], capture_output=True, text=True, env=env,
                           timeout=240, check=False)  # fmt: skip

    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    assert 'building extension "massive_rt._speedups" failed' in built.stdout + built.stderr
    (wheel,) = (tmp_path / "dist").glob("massive_rt-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "massive_rt/speedups.py" in names
    assert not [n for n in names if n.endswith((".so", ".pyd"))]

    site = tmp_path / "site"
    installed = subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
                               capture_output=True, text=True, env=env, timeout=120, check=False)  # fmt: skip
    assert installed.returncode == 0, installed.stderr[-3000:]
    # -S: no .pth files, so not this checkout's editable install (its finder would supply the
    # extension built here); the dependencies (attrs, msgspec ...) come from site-packages, after ``site``.
    path = os.pathsep.join([str(site), sysconfig.get_paths()["purelib"]])
    probed = _probe(cwd=tmp_path, flags=("-S",), PYTHONPATH=path)

    assert Path(str(probed["file"])).is_relative_to(site)
    assert probed["accelerated"] is False
    assert str(probed["status"]).startswith("not built (")
    assert probed["events"] == _probe()["events"]


def test_the_benchmarks_compare_with_and_without_the_accelerator() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--help"], capture_output=True,
                          text=True, cwd=ROOT, env=clean_env(), timeout=TIMEOUT, check=False)  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert "--accelerator" in done.stdout


def _without_msgspec(tmp_path: Path) -> str:
    """A PYTHONPATH on which ``import msgspec`` fails as if it were not installed."""
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "msgspec.py").write_text(
        'raise ModuleNotFoundError("No module named \'msgspec\'", name="msgspec")\n', encoding="utf-8"
    )
    return os.pathsep.join(p for p in (str(blocked), clean_env().get("PYTHONPATH")) if p)


@pytest.mark.skipif(not BUILT, reason="the extension is not built here")
def test_without_msgspec_a_built_accelerator_is_reported_idle_not_active(tmp_path: Path) -> None:
    """The builders run only on msgspec's decode path: without msgspec nothing calls them."""
    path = _without_msgspec(tmp_path)
    idle = _probe(PYTHONPATH=path)
    env = {**clean_env(), "PYTHONPATH": path}
    version = subprocess.run([sys.executable, "-m", "massive_rt", "--version"], capture_output=True, text=True,
                             cwd=ROOT, env=env, timeout=TIMEOUT, check=False)  # fmt: skip

    assert idle["accelerated"] is False
    assert idle["status"] == "built, idle: needs msgspec (pip install 'massive-rt[fast]')"
    assert idle["events"] == _probe()["events"]
    assert version.returncode == 0, version.stderr
    assert version.stdout.endswith("(accelerator: built, idle: needs msgspec (pip install 'massive-rt[fast]'))\n")


@pytest.mark.skipif(not BUILT, reason="the extension is not built here")
def test_with_msgspec_a_built_accelerator_is_active() -> None:
    active = _probe()

    assert active["accelerated"] is True
    assert active["status"] == "active"
