"""Run asgiref 3.13.0's own test suite against asgigreen, in both modes.

A compatibility check, not part of the project's tests: the suite is
downloaded from PyPI (never vendored), every ``asgiref`` is rewritten to
``asgigreen``, and it runs once in a plain process (threads hub) and once
under ``python -m gevent.monkey`` (gevent hub).

Expectations:

* plain process: exactly what asgiref itself gets (122 passed, 1 skipped,
  1 xfailed);
* patched process: at least 115 passed, and every failure is one of
  ``KNOWN_PATCHED_FAILURES`` below, each with its reason.

Every test has a time limit (pytest-timeout, and behind it a faulthandler
watchdog that ends a run stuck where pytest-timeout can't act, naming the
test), and so has each run as a whole: a hang is a failure, never a stuck tool.

Usage: ``python tools/asgiref_suite.py [--keep DIR] [--results FILE]``; exits 1
on a mismatch. ``--results`` writes the counts as JSON (for tools/matrix.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

from _process_group import call, pip_download_sdist

ASGIREF_VERSION = "3.13.0"

PLAIN_EXPECTED = {"passed": 122, "skipped": 1, "xfailed": 1, "failed": 0, "error": 0}
PATCHED_MIN_PASSED = 115

_SPAWNED_CHILD = (
    "runs its body in a spawned child process and joins it. In a gevent-patched "
    "parent, gevent's select() does not report the child's exit once gevent's hub "
    "exists (reproduced without asgigreen), so join(30) always waits 30 s; after "
    "earlier tests in the same process have forked, gevent's waitpid() no longer "
    "reaps the child either, and the test reports a deadlock. It passes when run "
    "on its own or with its own file. The wait is gevent's default libev loop's: "
    "join(10) right after start() of a spawned child, in a script importing "
    "neither asgigreen nor asgiref, takes 10 s, and 0.3 s with GEVENT_LOOP=libuv."
)

#: Tests of asgiref's suite that fail under the gevent hub, and why.
KNOWN_PATCHED_FAILURES = {
    "test_sync.py::test_sync_to_async_with_blocker_non_thread_sensitive": (
        "the sync function blocks on a multiprocessing.Event, a process-shared "
        "semaphore gevent cannot make cooperative, so it stalls the one OS thread "
        "all greenlets share and the event's setter never runs: the test hangs, so "
        "it is not run. sync_to_async(..., real_thread=True) is the remedy."
    ),
    "test_sync_executor_context_scenario.py::"
    "test_force_new_context_keeps_executor_bindings_local_to_each_task": _SPAWNED_CHILD,
    "test_sync_thread_sensitive_context.py::test_executor_context_across_bridges[False]": (
        _SPAWNED_CHILD
    ),
}

#: Known failures that hang rather than fail: deselected, counted as failed.
_HANGS = ("test_sync.py::test_sync_to_async_with_blocker_non_thread_sensitive",)

# Several tests join a spawned child with a 30 s timeout, which under gevent
# always runs out (see _SPAWNED_CHILD).
_TIMEOUT_SECONDS = 60
# The watchdog's limit per test, for when pytest-timeout can't act.
_HARD_TIMEOUT_SECONDS = 120
# A whole run of the suite (each takes well under a minute) and the download.
_RUN_TIMEOUT_SECONDS = 600
_DOWNLOAD_TIMEOUT_SECONDS = 600

_WATCHDOG_PLUGIN = "_asgigreen_watchdog"
# A pytest plugin written beside the suite: before each test it writes the
# test's id to the file named by the variable, then arms faulthandler's
# watchdog (a C thread, so a stuck gevent hub can't hold it up) to dump the
# tracebacks there and end the process.
_WATCHDOG_SOURCE = """\
import faulthandler
import os

import pytest

_LIMIT = float(os.environ.get("ASGIGREEN_SUITE_HARD_TIMEOUT", "120"))
_FILE = open(os.environ.pop("ASGIGREEN_SUITE_WATCHDOG_FILE"), "w+", encoding="utf-8")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _FILE.seek(0)
    _FILE.truncate()
    _FILE.write(f"{item.nodeid} (ended if still running after {_LIMIT:g} s)\\n")
    _FILE.flush()
    faulthandler.dump_traceback_later(_LIMIT, exit=True, file=_FILE)
    try:
        return (yield)
    finally:
        faulthandler.cancel_dump_traceback_later()
"""


def _download(workdir: Path) -> Path:
    code = pip_download_sdist(f"asgiref=={ASGIREF_VERSION}", workdir, _DOWNLOAD_TIMEOUT_SECONDS)
    if code != 0:
        sys.exit(
            f"pip download asgiref=={ASGIREF_VERSION} failed "
            + ("(timed out)" if code is None else f"(exit {code})")
        )
    archive = next(workdir.glob("asgiref-*.tar.gz"))
    suite = workdir / "suite"
    suite.mkdir()
    prefix = f"asgiref-{ASGIREF_VERSION}/tests/"
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.startswith(prefix):
                source = tar.extractfile(member)
                assert source is not None
                text = source.read().decode("utf-8").replace("asgiref", "asgigreen")
                (suite / member.name[len(prefix) :]).write_text(text, encoding="utf-8")
    (suite / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\n",
        encoding="utf-8",
    )
    (suite / f"{_WATCHDOG_PLUGIN}.py").write_text(_WATCHDOG_SOURCE, encoding="utf-8")
    return suite


def _run(suite: Path, patched: bool) -> tuple[dict[str, str], str | None]:
    """Run the suite: the outcome of each test by its id, and what went wrong if it died."""
    mode = "patched" if patched else "plain"
    report = suite / f"{mode}.xml"
    watchdog = suite / f"{mode}.watchdog"
    report.unlink(missing_ok=True)
    runner = ["-m", "gevent.monkey", "--module", "pytest"] if patched else ["-m", "pytest"]
    deselect = [f"--deselect={name}" for name in _HANGS] if patched else []
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(suite), os.environ.get("PYTHONPATH")])),
        "ASGIGREEN_SUITE_WATCHDOG_FILE": str(watchdog),
        "ASGIGREEN_SUITE_HARD_TIMEOUT": str(_HARD_TIMEOUT_SECONDS),
    }
    code = call(
        [
            sys.executable,
            *runner,
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            _WATCHDOG_PLUGIN,
            f"--timeout={_TIMEOUT_SECONDS}",
            f"--junitxml={report}",
            *deselect,
        ],
        _RUN_TIMEOUT_SECONDS,
        cwd=suite,
        env=env,
    )
    outcomes: dict[str, str] = dict.fromkeys(deselect and _HANGS, "failed")
    try:
        cases = list(ET.parse(report).getroot().iter("testcase"))
    except (OSError, ET.ParseError):
        how = f"ran out of {_RUN_TIMEOUT_SECONDS} s" if code is None else f"exited {code}"
        stuck = ""
        if watchdog.exists():
            lines = watchdog.read_text(encoding="utf-8", errors="replace").splitlines()
            if lines:
                stuck = f"; last test started: {lines[0]}"
                # The watchdog's dump, if it fired, for the log.
                if len(lines) > 1:
                    print("\n".join(lines), file=sys.stderr)
        return outcomes, f"{mode} process: the run {how} without a report{stuck}"
    for case in cases:
        name = f"{case.get('classname', '').split('.')[-1]}.py::{case.get('name')}"
        outcome = "passed"
        for child in case:
            if child.tag == "skipped":
                outcome = "xfailed" if child.get("type") == "pytest.xfail" else "skipped"
            elif child.tag in ("failure", "error"):
                outcome = "failed" if child.tag == "failure" else "error"
        outcomes[name] = outcome
    return outcomes, None


def _summary(outcomes: dict[str, str]) -> Counter[str]:
    counts: Counter[str] = Counter(outcomes.values())
    for key in ("passed", "failed", "error", "skipped", "xfailed"):
        counts.setdefault(key, 0)
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="download and run in DIR, and keep it")
    parser.add_argument("--results", type=Path, help="write the counts to FILE as JSON")
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as scratch:
        workdir = args.keep or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        suite = _download(workdir)
        plain_outcomes, plain_died = _run(suite, patched=False)
        patched_outcomes, patched_died = _run(suite, patched=True)
    plain = _summary(plain_outcomes)
    patched = _summary(patched_outcomes)

    problems = [died for died in (plain_died, patched_died) if died]
    for key, expected in PLAIN_EXPECTED.items():
        if plain[key] != expected:
            problems.append(f"plain process: {plain[key]} {key}, expected {expected}")
    if patched["passed"] < PATCHED_MIN_PASSED:
        problems.append(
            f"patched process: {patched['passed']} passed, expected >= {PATCHED_MIN_PASSED}"
        )
    failing = sorted(n for n, o in patched_outcomes.items() if o in ("failed", "error"))
    for name in failing:
        if name not in KNOWN_PATCHED_FAILURES:
            problems.append(f"patched process: unexpected failure {name}")

    print(f"\nasgiref {ASGIREF_VERSION} test suite against asgigreen")
    print(f"{'mode':<22}{'passed':>8}{'failed':>8}{'errors':>8}{'skipped':>9}{'xfailed':>9}")
    for mode, counts in (("plain (threads hub)", plain), ("patched (gevent hub)", patched)):
        print(
            f"{mode:<22}{counts['passed']:>8}{counts['failed']:>8}{counts['error']:>8}"
            f"{counts['skipped']:>9}{counts['xfailed']:>9}"
        )
    for name in failing:
        reason = KNOWN_PATCHED_FAILURES.get(name, "UNEXPECTED")
        print(f"  patched failure: {name}\n    {reason}")
    for problem in problems:
        print(f"MISMATCH: {problem}")
    print("compatibility: " + ("OK" if not problems else "FAILED"))
    if args.results:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        summary = {
            "asgiref": ASGIREF_VERSION,
            "python": f"{sys.version_info.major}.{sys.version_info.minor}",
            "ok": not problems,
            "seconds": round(time.monotonic() - started, 1),
            "modes": {"plain": dict(plain), "patched": dict(patched)},
            "problems": problems,
        }
        args.results.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
