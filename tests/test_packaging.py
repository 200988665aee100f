"""What we ship says what is true: the sdist and wheel hold what they should, the README's links
work on a package index, and no file points at a document that does not ship."""

from __future__ import annotations

import configparser
import importlib.util
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.test_cli import ROOT, clean_env

SHIPPED_TEXT = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SHIPPED_CODE = [*sorted((ROOT / "massive_rt").rglob("*.py")), *sorted((ROOT / "examples").rglob("*.py"))]


def project_urls() -> dict[str, str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg", encoding="utf-8")
    lines = config.get("metadata", "project_urls").strip().splitlines()
    return {name.strip(): url.strip() for name, _, url in (line.partition("=") for line in lines)}


@pytest.mark.slow
@pytest.mark.timeout(300)  # two builds, the wheel's with a C compile (the accelerator): ~50 s alone, more under load
def test_the_distributions_hold_the_docs_and_examples_and_the_wheel_no_tests(tmp_path: Path) -> None:
    pytest.importorskip("build", reason="the 'build' package (dev extra) is not installed")
    # One test, one build: sdist first, then the wheel built from that sdist (python -m build's
    # default), so the sdist is proven complete enough to build from.
    done = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, env=clean_env(), timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (sdist,) = tmp_path.glob("*.tar.gz")
    (wheel,) = tmp_path.glob("*.whl")

    with tarfile.open(sdist) as archive:
        top = archive.getnames()[0].split("/")[0]
        files = {name.removeprefix(f"{top}/") for name in archive.getnames() if archive.getmember(name).isfile()}
    for required in ("LICENSE", "README.md", "CHANGELOG.md", "setup.cfg", "pyproject.toml", "massive_rt/py.typed",
                     "setup.py", "massive_rt/_speedups.c", "massive_rt/_speedups.pyi"):  # fmt: skip
        assert required in files, required
    tracked_docs = {str(p.relative_to(ROOT)) for p in (ROOT / "docs").rglob("*.md")}
    assert tracked_docs <= files
    assert "docs/protocol.md" in files
    examples = {str(p.relative_to(ROOT)) for p in (ROOT / "examples").rglob("*") if p.is_file() and _shipped(p)}
    assert examples <= files
    assert not [f for f in files if f.startswith(("tests/", "benchmarks/", ".ci/")) or "__pycache__" in f]

    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert "massive_rt/py.typed" in names
    assert "massive_rt/_speedups.pyi" in names
    # Built from the sdist where a compiler is present (this checkout's own build proves one is).
    if importlib.util.find_spec("massive_rt._speedups") is not None:
        assert [n for n in names if n.startswith("massive_rt/_speedups.") and n.endswith((".so", ".pyd"))]
    assert "massive_rt/testing/pytest_plugin.py" in names  # the fixture ships (massive_rt.testing is API)
    for asset in ("index.html", "status.css", "status.js"):  # the status page works offline: its assets ship
        assert f"massive_rt/web/static/{asset}" in names, asset
    assert not [n for n in names if n.startswith(("tests/", "examples/", "benchmarks/", "docs/"))]
    assert any(n.endswith((".dist-info/licenses/LICENSE", ".dist-info/LICENSE")) for n in names)
    metadata = next(archive_text(wheel, n) for n in names if n.endswith(".dist-info/METADATA"))
    for name, url in project_urls().items():
        assert f"Project-URL: {name}, {url}" in metadata


def archive_text(wheel: Path, name: str) -> str:
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(name).decode()


def _shipped(path: Path) -> bool:
    return "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo")


def test_the_license_is_the_mit_license_the_metadata_names() -> None:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg", encoding="utf-8")
    assert config.get("metadata", "license") == "MIT"
    assert config.get("metadata", "license_files").strip() == "LICENSE"
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n")
    assert re.search(r"^Copyright \(c\) \d{4} massive_rt contributors$", text, re.MULTILINE)


def test_project_urls_point_into_one_repository() -> None:
    urls = project_urls()
    assert set(urls) == {"Documentation", "Changelog", "Source", "Issues"}
    assert all(url.startswith(urls["Source"]) for url in urls.values()), urls


def test_readme_links_work_on_a_package_index() -> None:
    """PyPI renders README.md away from the repository: a relative link would be dead there."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)\s]+)\)", readme)
    assert targets
    relative = [t for t in targets if not t.startswith(("https://", "http://"))]
    assert relative == []
    repository = project_urls()["Source"]
    for target in targets:
        if target.startswith(repository + "/"):
            path = re.sub(r"^(blob|tree)/main/", "", target.removeprefix(repository + "/")).split("#")[0]
            assert (ROOT / path).exists(), f"README links to {target}, but {path} is not in the repository"


def test_nothing_shipped_refers_to_a_protocol_notes_file_that_does_not_ship() -> None:
    bare = re.compile(r"(?<![\w/.-])PROTOCOL\.md")
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in (*SHIPPED_TEXT, *SHIPPED_CODE)
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if bare.search(line)
    ]
    assert offenders == [], "cite docs/protocol.md instead"


def test_every_cited_section_of_the_protocol_notes_exists() -> None:
    headings = re.findall(r"^#{2,3} (\d+(?:\.\d+)?)[. ]", (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8"),
                          re.MULTILINE)  # fmt: skip
    sections = set(headings)
    assert {"2.2", "3.1", "4.3", "5.1", "5.6", "8"} <= sections
    citation = re.compile(r"docs/protocol\.md`*[ ,(]*((?:§\d+(?:\.\d+)?(?:-§\d+(?:\.\d+)?)?[, ]*)+)")
    cited: set[str] = set()
    for path in (*SHIPPED_TEXT, *SHIPPED_CODE, *sorted((ROOT / "tests").rglob("*.py"))):
        for match in citation.finditer(path.read_text(encoding="utf-8")):
            cited.update(re.findall(r"§(\d+(?:\.\d+)?)", match[1]))
    assert cited, "no section of docs/protocol.md is cited anywhere"
    assert cited <= sections, sorted(cited - sections)


def test_every_requirement_has_a_lower_bound_that_make_test_min_can_install() -> None:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg", encoding="utf-8")
    extras = [name for name in config.options("options.extras_require") if name != "dev"]
    dev = [line.split(">=")[0].split("[")[0].strip() for line in config.get("options.extras_require", "dev").split()]
    done = subprocess.run(
        [sys.executable, str(ROOT / ".ci" / "min_versions.py"), "requirements", "--extras", ",".join(extras),
         "--tools", ",".join(dev)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr  # a requirement without a 'name>=version' bound fails here
    pins = dict(line.split("==") for line in done.stdout.split())
    assert pins["websockets"] == "13"
    assert {"websocket-client", "attrs", "pytest", "pytest-timeout", "pytest-xdist"} <= pins.keys()
