"""README.md's speed numbers, generated from benchmarks/RESULTS.md: one set of numbers, one source.

    python benchmarks/readme.py           # rewrite README.md's numbers from RESULTS.md
    python benchmarks/readme.py --check   # exit 1 (and say what differs) when README.md is stale

``make bench`` (``run.py``) calls :func:`update_readme` after writing RESULTS.md, and
tests/test_readme_numbers.py fails when README.md and RESULTS.md disagree. Two places in README.md
are generated: the ``| speed`` row of the comparison table and the block between
:data:`BEGIN` and :data:`END` in the Benchmarks section; everything else is kept as written.
Standard library only.
"""

from __future__ import annotations

import argparse
import configparser
import difflib
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN = "<!-- speed numbers: generated from benchmarks/RESULTS.md by benchmarks/readme.py (make bench) -->"
END = "<!-- end of the generated speed numbers -->"
RESULTS_END = "<!-- END of the generated part; what follows is kept -->"  # run.py's marker
SPEED_ROW = "| speed "

Row = dict[str, str]


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _keys(header: list[str]) -> list[str]:
    """Column names, the latency tables' two groups told apart: ``send p99``, ``recv p99.9`` ..."""
    keys, group = [], ""
    for cell in header:
        for prefix, name in (("send→consumer ", "send"), ("recv→consumer ", "recv")):
            if cell.startswith(prefix):
                group, cell = name, cell.removeprefix(prefix)
        cell = cell.removesuffix(" µs")
        keys.append(f"{group} {cell}" if group else cell)
    return keys


def parse_results(text: str) -> dict[str, dict[str, Row]]:
    """Every table of RESULTS.md's generated part: ``{heading: {variant: {column: cell}}}``."""
    generated = text.split(RESULTS_END, 1)[0]
    tables: dict[str, dict[str, Row]] = {}
    heading = ""
    lines = generated.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("### "):
            heading = line[4:].strip()
        elif line.startswith("|") and heading and heading not in tables:
            keys = _keys(_cells(line))
            i += 2  # the header and the |---| line
            rows: dict[str, Row] = {}
            while i < len(lines) and lines[i].startswith("|"):
                row = dict(zip(keys, _cells(lines[i]), strict=True))
                rows[row[keys[0]]] = row
                i += 1
            tables[heading] = rows
            continue
        i += 1
    return tables


def _table(tables: dict[str, dict[str, Row]], prefix: str, suffix: str = "") -> dict[str, Row]:
    found = [rows for heading, rows in tables.items() if heading.startswith(prefix) and heading.endswith(suffix)]
    if len(found) != 1:
        raise ValueError(f"RESULTS.md has {len(found)} tables headed {prefix!r}…{suffix!r}")
    return found[0]


def _number(cell: str) -> float:
    return float(cell.replace(",", ""))


def _short(cell: str) -> str:
    """``534,849`` → ``535k``; ``1,187,509`` → ``1.19M``."""
    value = _number(cell)
    return f"{value / 1e6:.2f}M" if value >= 999_500 else f"{value / 1e3:.0f}k"  # 999,600 is 1.00M, not 1000k


def _search(pattern: str, text: str) -> re.Match[str]:
    match = re.search(pattern, text)
    if match is None:
        raise ValueError(f"RESULTS.md does not match {pattern!r}")
    return match


def source_url(setup_cfg: Path = ROOT / "setup.cfg") -> str:
    """The repository (``project_urls`` → ``Source`` in setup.cfg): the one place it is written."""
    config = configparser.ConfigParser()
    config.read(setup_cfg, encoding="utf-8")
    urls = {
        name.strip(): url.strip()
        for name, _, url in (line.partition("=") for line in config.get("metadata", "project_urls").splitlines())
        if url.strip()
    }
    return urls["Source"]


def render(results: str, repository: str) -> tuple[str, str]:
    """``(speed row, Benchmarks block)`` for README.md from the text of RESULTS.md."""
    tables = parse_results(results)
    ten, one = _table(tables, "Typed events/s", "frames of 10"), _table(tables, "Typed events/s", "frames of 1")
    slow, fast = _table(tables, "Latency at 1,000 events/s"), _table(tables, "Latency at 20,000 events/s")
    synthetic = _search(r"no-op callback[^\n]*?median ([\d,]+)", results)[1]
    idle = _search(r"RSS per idle, authenticated connection[^\n]*?: (\d+) KB", results)[1]
    measured = _search(r"Measured (\d{4}-\d\d-\d\d) [\d:]+ UTC; Python ([\d.]+); (\d+) cores", results)
    reps = _search(r"(\d+) repetition", results)[1]
    decoder = _search(r"massive_rt decodes with (\w+)", results)[1]

    def eps(table: dict[str, Row], variant: str) -> str:
        return _short(table[variant]["median ev/s"])

    def times(table: dict[str, Row], variant: str, column: str = "× official typed") -> str:
        return f"{table[variant][column]}×"

    def p99(table: dict[str, Row], variant: str) -> str:
        return f"{_number(table[variant]['recv p99']):,.0f} µs"

    def p99_ratio(table: dict[str, Row], variant: str) -> str:
        ratio = table[variant]["recv p99 × official"]
        return "<0.01" if _number(ratio) < 0.01 else ratio  # the official client fell behind

    adapter, inline, official = "massive_rt adapter", "massive_rt adapter inline", "official typed"
    thread = "massive_rt adapter thread"
    get, drain, raw = "massive_rt get()", "massive_rt drain()", "massive_rt raw"
    speed_row = (
        f"| speed (same server, same machine, [benchmarks]({repository}#benchmarks)) "
        f"| {eps(ten, official)} typed events/s in frames of 10, {eps(one, official)} in frames of 1 "
        f"| {eps(ten, adapter)} ({times(ten, adapter)}) in frames of 10, {eps(one, adapter)} ({times(one, adapter)}) "
        f"in frames of 1, same typed models; p99 latency socket → callback at 1,000 events/s "
        f"{p99_ratio(slow, adapter)}× the official client's |"
    )
    block = "\n".join(
        [
            f"From the run of {measured[1]} ({measured[3]} cores, Python {measured[2]}, {decoder}; medians of "
            f"{reps} runs,",
            "ratios against the official client in the same run):",
            "",
            "| typed events/s | frames of 10 | frames of 1 |",
            "|---|---:|---:|",
            f'| massive_rt adapter (callbacks, the default `dispatch="adaptive"`) | {eps(ten, adapter)} '
            f"({times(ten, adapter)} official) | {eps(one, adapter)} ({times(one, adapter)}) |",
            f'| massive_rt adapter (`dispatch="thread"`) | {eps(ten, thread)} ({times(ten, thread)}) '
            f"| {eps(one, thread)} ({times(one, thread)}) |",
            f'| massive_rt adapter (`dispatch="inline"`) | {eps(ten, inline)} ({times(ten, inline)}) '
            f"| {eps(one, inline)} ({times(one, inline)}) |",
            f"| massive_rt `client.get()` / `drain()` | {eps(ten, get)} / {eps(ten, drain)} "
            f"({times(ten, get)} / {times(ten, drain)}) | {eps(one, get)} / {eps(one, drain)} "
            f"({times(one, get)} / {times(one, drain)}) |",
            f"| massive_rt raw frames | {eps(ten, raw)} ({times(ten, raw, '× official raw')} official raw) "
            f"| {eps(one, raw)} ({times(one, raw, '× official raw')}) |",
            f"| official `massive` client | {eps(ten, official)} | {eps(one, official)} |",
            "",
            "| p99 latency, socket → callback | 1,000 events/s | 20,000 events/s |",
            "|---|---:|---:|",
            *(
                f"| {label} | {p99(slow, variant)} ({p99_ratio(slow, variant)}×"
                f"{' official' if variant == adapter else ''}) "
                f"| {p99(fast, variant)} ({p99_ratio(fast, variant)}×) |"
                for label, variant in (
                    ('massive_rt adapter (the default `dispatch="adaptive"`)', adapter),
                    ('massive_rt adapter (`dispatch="thread"`)', thread),
                    ('massive_rt adapter (`dispatch="inline"`)', inline),
                    ("massive_rt `client.get()`", get),
                )
            ),
            f"| official `massive` client | {p99(slow, official)} | {p99(fast, official)} |",
            "",
            f"Synthetic source into a no-op callback: {_short(synthetic)} events/s. Idle connection: {idle} KB RSS.",
        ]
    )
    return speed_row, block


def update_readme(readme: str, results: str, repository: str) -> str:
    """``readme`` with its speed row and its generated block rewritten from ``results``."""
    speed_row, block = render(results, repository)
    rows = [line for line in readme.splitlines() if line.startswith(SPEED_ROW)]
    if len(rows) != 1 or readme.count(BEGIN) != 1 or readme.count(END) != 1:
        raise ValueError(f"README.md needs one line starting {SPEED_ROW!r} and one {BEGIN} … {END} block")
    readme = readme.replace(rows[0], speed_row)
    head, rest = readme.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    return f"{head}{BEGIN}\n{block}\n{END}{tail}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when README.md differs, write nothing")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    args = parser.parse_args()
    old = args.readme.read_text(encoding="utf-8")
    new = update_readme(old, args.results.read_text(encoding="utf-8"), source_url())
    if args.check:
        if new != old:
            sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), new.splitlines(True), "README.md", "new"))
            sys.exit(1)
    elif new != old:
        args.readme.write_text(new, encoding="utf-8")
        print(f"{args.readme}: speed numbers updated from {args.results}")


if __name__ == "__main__":
    main()
