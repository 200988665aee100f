#!/usr/bin/env python3
"""Mutation testing of the core modules with mutmut, for ``make mutation`` (not in ``make test``).

    mutation.py [--module NAME ...] [--jobs N] [--workdir DIR] [--keep | --reuse]
    mutation.py --list

Each module is mutated on its own, in a copy of the tree (``DIR/<module>``; the work tree is never
touched, so other work can go on meanwhile), and each of its mutants runs against that module's
own unit tests only (``MODULES`` below): mutmut first records which of those tests call which
function, then runs a mutant's tests only. A mutant is *detected* when a test fails or times out.

A mutant that survives (or that no test of its module reaches) must be listed in
``tests/mutation-equivalents.txt``, reviewed and with its reason, or this exits 1. A line there is

    <id> <module> <function>: <original code> -> <mutated code>  ## <reason>

where ``<id>`` is a hash of the function and the mutant's diff, context lines included (so the
list survives unrelated edits, two identical lines of a function are told apart, and an entry goes
stale when the code it judged changes); only the id and a non-empty reason are read, the rest is
for the reviewer. The summary prints the line to paste for every unlisted survivor, and warns
about entries that no longer match a survivor. ``<workdir>/<module>-survivors.json`` keeps every
survivor of the last run with its diff.

Score per module: detected / (mutants - listed equivalents). Mutants in logging calls are not
generated (``DO_NOT_MUTATE``): a log message's wording is not behaviour.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENTS = ROOT / "tests" / "mutation-equivalents.txt"
MIN_SCORE = 95.0


@dataclass(frozen=True)
class Target:
    source: str
    tests: tuple[str, ...]  # globs under the repository root
    functions: tuple[str, ...] = ()  # only these (``Class.method`` or ``function``); empty: every function


MODULES: dict[str, Target] = {
    "eventqueue": Target(
        "massive_rt/eventqueue.py", ("tests/unit/test_eventqueue*.py", "tests/unit/test_read_batches.py")
    ),
    "protocol": Target("massive_rt/protocol.py", ("tests/unit/test_protocol*.py",)),
    "framing": Target("massive_rt/framing.py", ("tests/unit/test_framing*.py",)),
    "config": Target("massive_rt/config.py", ("tests/unit/test_config*.py",)),
    "pool": Target("massive_rt/pool.py", ("tests/unit/test_connection_pool*.py",)),
    "_session": Target("massive_rt/_session.py", ("tests/unit/test_session*.py",)),
    "adapter": Target(
        "massive_rt/adapter.py",
        ("tests/unit/test_realtime_adapter.py", "tests/unit/test_adapter_routing*.py"),
        ("RealTimeDataAdapter.on", "RealTimeDataAdapter._resolve", "RealTimeDataAdapter._dispatch"),
    ),
}

# Lines whose expressions mutmut leaves alone: logging calls (their wording is not behaviour).
DO_NOT_MUTATE = [
    r"^\s*(logger|self\._log|log|self\._error_log)\.(debug|info|warning|error|exception|critical)\(",
    r"^\s*self\._error_log\(",
]

DETECTED = {"killed", "timeout", "segfault", "caught by type check"}
_RESULT = re.compile(r"^\s+(\S+): (.+)$")
_MANGLED = re.compile(r"^(?P<module>[\w.]+)\.(?:xǁ(?P<cls>\w+)ǁ|x_)(?P<func>\w+?)__mutmut_\d+$")


@dataclass
class Mutant:
    name: str
    status: str
    function: str = ""
    removed: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    context: list[str] = field(default_factory=list)  # the diff's unchanged lines: tells identical lines apart

    @property
    def key(self) -> str:
        text = repr((self.function, self.removed, self.added, self.context))
        return hashlib.sha256(text.encode()).hexdigest()[:10]

    def line(self, module: str) -> str:
        change = f"{' / '.join(self.removed)} -> {' / '.join(self.added)}"
        return f"{self.key} {module} {self.function}: {change}  ## "


def function_of(name: str) -> str:
    match = _MANGLED.match(name)
    if match is None:
        return name
    return f"{match['cls']}.{match['func']}" if match["cls"] else match["func"]


def mutant_glob(module_path: str, function: str) -> str:
    dotted = module_path.removesuffix(".py").replace("/", ".")
    cls, _, func = function.rpartition(".")
    return f"{dotted}.xǁ{cls}ǁ{func}__mutmut_*" if cls else f"{dotted}.x_{func}__mutmut_*"


def load_equivalents(path: Path) -> dict[str, str]:
    entries: dict[str, str] = {}
    for number, raw in enumerate(path.read_text("utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key = line.split(None, 1)[0]
        reason = line.rpartition("  ## ")[2].strip() if "  ## " in line else ""
        if not re.fullmatch(r"[0-9a-f]{10}", key) or not reason:
            sys.exit(f"{path}:{number}: expected '<id> <module> <function>: <change>  ## <reason>', got: {raw}")
        entries[key] = reason
    return entries


def prepare(workdir: Path, module: str, target: Target) -> list[str]:
    """Copy the tree into ``workdir`` with a [tool.mutmut] for ``module``; return its test files."""
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    shutil.copytree(ROOT / "massive_rt", workdir / "massive_rt", ignore=ignore)
    shutil.copytree(ROOT / "tests", workdir / "tests", ignore=ignore)
    shutil.copy2(ROOT / "setup.cfg", workdir / "setup.cfg")
    tests = sorted({str(p.relative_to(ROOT)) for pattern in target.tests for p in ROOT.glob(pattern)})
    if not tests:
        sys.exit(f"{module}: no test file matches {target.tests}")
    pyproject = (ROOT / "pyproject.toml").read_text("utf-8")
    if "[tool.mutmut]" in pyproject:
        sys.exit("pyproject.toml has a [tool.mutmut] section: this script writes its own, per module")
    settings = {
        "source_paths": ["massive_rt"],
        "only_mutate": [target.source],
        "do_not_mutate_patterns": DO_NOT_MUTATE,
        "pytest_add_cli_args_test_selection": tests,
        # No xdist and no cache: mutmut runs the tests in its own forked workers.
        "pytest_add_cli_args": ["-p", "no:cacheprovider", "-p", "no:xdist", "-q"],
        "timeout_multiplier": 10.0,
        "use_git_change_detection": False,
    }
    section = "\n[tool.mutmut]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items())
    (workdir / "pyproject.toml").write_text(pyproject + section, "utf-8")
    return tests


def run_module(module: str, target: Target, workdir: Path, jobs: int, reuse: bool) -> list[Mutant]:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTEST_ADDOPTS", None)
    mutmut = [sys.executable, "-m", "mutmut"]
    if reuse and (workdir / "mutants").is_dir():
        print(f"== {module}: the results of the last run in {workdir}", flush=True)
    else:
        tests = prepare(workdir, module, target)
        globs = [mutant_glob(target.source, f) for f in target.functions]
        log = workdir / "mutmut.log"
        print(f"== {module}: mutating {target.source} against {', '.join(tests)} (log: {log})", flush=True)
        with log.open("w") as out:
            done = subprocess.run([*mutmut, "run", "--max-children", str(jobs), *globs], cwd=workdir,  # noqa: S603
                                  env=env, stdout=out, stderr=subprocess.STDOUT, check=False)  # fmt: skip
        if done.returncode != 0:
            sys.stdout.write(log.read_text("utf-8", "replace")[-4000:])
            sys.exit(f"{module}: mutmut run failed (exit {done.returncode}); see {log}")
    listing = subprocess.run([*mutmut, "results", "--all", "true"], cwd=workdir, env=env,  # noqa: S603
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
    wanted = set(target.functions)
    mutants = []
    for line in listing.splitlines():
        match = _RESULT.match(line)
        if match is None:
            continue
        mutant = Mutant(match[1], match[2].strip(), function_of(match[1]))
        if wanted and mutant.function not in wanted:
            continue
        mutants.append(mutant)
    missed = [m for m in mutants if m.status not in DETECTED]
    diffs = mutant_diffs([m.name for m in missed], workdir, env)
    for mutant in missed:
        for diff_line in diffs[mutant.name].splitlines():
            if diff_line.startswith(("---", "+++")):
                continue
            if diff_line.startswith("-"):
                mutant.removed.append(diff_line[1:].strip())
            elif diff_line.startswith("+"):
                mutant.added.append(diff_line[1:].strip())
            elif diff_line.startswith(" "):
                mutant.context.append(diff_line.strip())
    return mutants


# One process for every diff (``mutmut show`` is one process per mutant); mutmut's own functions.
_DIFFS = """
import json, sys
from mutmut.mutation.diff_apply import find_mutant, get_diff_for_mutant
print(json.dumps({n: get_diff_for_mutant(n, path=find_mutant(n).path) for n in json.load(sys.stdin)}))
"""


def mutant_diffs(names: list[str], workdir: Path, env: dict[str, str]) -> dict[str, str]:
    """``{mutant name: unified diff}``, as ``mutmut show`` prints it."""
    if not names:
        return {}
    done = subprocess.run([sys.executable, "-c", _DIFFS], input=json.dumps(names), cwd=workdir, env=env,  # noqa: S603
                          capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode == 0:
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))
    diffs = {}  # another mutmut version: one ``mutmut show`` each
    for name in names:
        diffs[name] = subprocess.run([sys.executable, "-m", "mutmut", "show", name], cwd=workdir, env=env,  # noqa: S603
                                     capture_output=True, text=True, check=True).stdout  # fmt: skip
    return diffs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--module", action="append", choices=sorted(MODULES), help="only this module (repeatable)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="mutants run at once")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "massive-rt-mutation")
    parser.add_argument("--keep", action="store_true", help="keep the work directories (mutmut browse there)")
    parser.add_argument("--reuse", action="store_true", help="report on the work directories a --keep run left")
    parser.add_argument("--list", action="store_true", help="print the modules and their tests, and exit")
    args = parser.parse_args()
    if args.list:
        for name, target in MODULES.items():
            only = f" ({', '.join(target.functions)})" if target.functions else ""
            print(f"{name:<11} {target.source}{only}: {', '.join(target.tests)}")
        return 0
    equivalents = load_equivalents(EQUIVALENTS)
    used: set[str] = set()
    failed = False
    rows = []
    started = time.monotonic()
    for module in args.module or list(MODULES):
        target = MODULES[module]
        workdir = args.workdir / module
        t0 = time.monotonic()
        mutants = run_module(module, target, workdir, args.jobs, args.reuse)
        detected = sum(m.status in DETECTED for m in mutants)
        missed = [m for m in mutants if m.status not in DETECTED]
        listed = [m for m in missed if m.key in equivalents]
        unlisted = [m for m in missed if m.key not in equivalents]
        used.update(m.key for m in listed)
        scored = len(mutants) - len(listed)
        score = 100.0 * detected / scored if scored else 100.0
        rows.append((module, detected, scored, len(listed), score, time.monotonic() - t0))
        print(f"   {module}: {detected} detected / {scored} non-equivalent ({score:.1f}%), "
              f"{len(listed)} listed equivalent, {len(unlisted)} unlisted survivors, "
              f"{time.monotonic() - t0:.0f}s", flush=True)  # fmt: skip
        for mutant in unlisted:
            print(f"   SURVIVED ({mutant.status}) {mutant.name}\n      {mutant.line(module)}")
        if unlisted or score < MIN_SCORE:
            failed = True
        survivors = [dataclasses.asdict(m) | {"key": m.key, "line": m.line(module)} for m in missed]
        (args.workdir / f"{module}-survivors.json").write_text(json.dumps(survivors, indent=1), "utf-8")
        if not args.keep and not args.reuse:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(f"{'module':<11} {'detected':>8} {'of':>5} {'equiv.':>6} {'score':>7} {'time':>6}")
    for module, detected, scored, listed, score, seconds in rows:
        print(f"{module:<11} {detected:>8} {scored:>5} {listed:>6} {score:>6.1f}% {seconds:>5.0f}s")
    print(f"total time {time.monotonic() - started:.0f}s")
    if not args.module:
        stale = sorted(set(equivalents) - used)
        for key in stale:
            print(f"warning: {EQUIVALENTS.name}: {key} matches no surviving mutant any more (killed or code changed)")
    if failed:
        print(f"mutation: FAILED: kill the survivors above with a test, or review them into {EQUIVALENTS.name}")
        return 1
    print("mutation: every surviving mutant is a reviewed equivalent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
