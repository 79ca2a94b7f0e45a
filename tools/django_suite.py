"""Run Django's own test suite against asgigreen, and compare it test by test.

A compatibility check, not part of the project's tests: the sdist of the
*installed* Django is downloaded from PyPI (never vendored), its ``tests/``
extracted, and ``tests/runtests.py`` (settings ``test_sqlite``,
``--parallel 1``) runs the apps in ``APPS`` in three modes, each in its own
process:

* ``asgiref``: the real asgiref, a plain process (the baseline);
* ``asgigreen``: ``asgigreen.install_as_asgiref()`` before Django is
  imported, a plain process (threads hub);
* ``gevent``: the same under ``python -m gevent.monkey`` (gevent hub).

Every test's outcome in the two asgigreen modes must be the baseline's:
a test that differs and is not in ``KNOWN_DIFFERENCES`` fails the check.
The outcomes come from a result class the runner is given in the child
process (``--child``, never run by hand), which writes one JSON line per
test as it ends, so a run that dies still leaves every outcome it reached.

Every test has a time limit: before each test (and between tests, for class
fixtures) a faulthandler watchdog is armed, a C thread that a stuck gevent
hub can't hold up, which dumps the tracebacks and ends the run; the file it
writes names the test that was running. So has each run as a whole: a hang is
a failure, never a stuck tool.

Usage: ``python tools/django_suite.py [--workdir DIR] [--jobs N] [--json FILE]``;
exits 1 on an unexplained difference or a run that did not finish.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, NamedTuple

# ``python -m gevent.monkey tools/django_suite.py`` (the patched child) does
# not put this file's folder on sys.path as ``python tools/...`` does.
if os.path.dirname(os.path.abspath(__file__)) not in sys.path:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _process_group as process_group

ROOT = Path(__file__).resolve().parent.parent

#: Django's test apps that run: the ones around asgiref's bridges (ASGI and
#: WSGI handlers, async views and middleware, the test client, signals,
#: sessions, auth, the cache) and their neighbours.
APPS = (
    "asgi",
    "handlers",
    "async",
    "test_client",
    "test_client_regress",
    "middleware_exceptions",
    "decorators",
    "signals",
    "view_tests",
    "sessions_tests",
    "auth_tests",
    "cache",
)


class Mode(NamedTuple):
    name: str
    title: str
    asgigreen: bool  # install_as_asgiref() before Django is imported
    patched: bool  # run under python -m gevent.monkey


BASELINE = Mode("asgiref", "asgiref (plain)", asgigreen=False, patched=False)
MODES = (
    BASELINE,
    Mode("asgigreen", "asgigreen (threads)", asgigreen=True, patched=False),
    Mode("gevent", "asgigreen (gevent)", asgigreen=True, patched=True),
)
_BY_NAME = {mode.name: mode for mode in MODES}

#: Tests whose outcome in an asgigreen mode may differ from the baseline, and
#: why. The key is a test id (``app.module.Class.test``), which covers both
#: modes, or ``mode:test id`` for one of them.
KNOWN_DIFFERENCES: dict[str, str] = {}

#: The baseline must pass at least this many tests: fewer means the harness,
#: not asgigreen, is broken (a missing app, an import error).
BASELINE_MIN_PASSED = 1000

# The watchdog's limit per test, and between two tests (class fixtures).
_TEST_TIMEOUT_SECONDS = 120
# One run of the apps (each takes about 100 s here, mostly sleeping), and the download.
_RUN_TIMEOUT_SECONDS = 480
_DOWNLOAD_TIMEOUT_SECONDS = 600
# After TERM, the seconds a process group gets before KILL.
_GRACE_SECONDS = 10
# How much of a failure's traceback is kept in the JSON, and printed.
_DETAIL_CHARS = 4000
_PRINTED_LINES = 12

_OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed", "hung", "missing")
# Which outcome wins when a test reports several (a failing subtest, then tearDown).
_RANK = {"passed": 0, "skipped": 0, "xfailed": 0, "xpassed": 1, "failed": 2, "error": 3}


# -- the child process: runtests.py with a recording result class ---------------------------

_ExcInfo = tuple[type[BaseException], BaseException, TracebackType] | tuple[None, None, None]


def _format(err: _ExcInfo) -> str:
    return "".join(traceback.format_exception(err[1])) if err[1] is not None else ""


class _Recorder:
    """Writes each test's outcome as a JSON line, and keeps the watchdog armed."""

    def __init__(self, results: Path, watchdog: Path, limit: float) -> None:
        self._out = results.open("w", encoding="utf-8")
        self._dog = watchdog.open("w+", encoding="utf-8")
        self._limit = limit
        self._current: str | None = None
        self._outcome = ""
        self._details: list[str] = []
        self._started = 0.0

    def write(self, record: dict[str, Any]) -> None:
        self._out.write(json.dumps(record) + "\n")
        self._out.flush()

    def _arm(self, note: str) -> None:
        import faulthandler

        self._dog.seek(0)
        self._dog.truncate()
        self._dog.write(f"{note}\n")
        self._dog.flush()
        faulthandler.dump_traceback_later(self._limit, exit=True, file=self._dog)

    def start(self, test_id: str) -> None:
        self._current, self._outcome, self._details = test_id, "passed", []
        self._started = time.monotonic()
        self._arm(f"running {test_id}")

    def outcome(self, test_id: str, outcome: str, detail: str = "") -> None:
        if test_id != self._current:
            # Not inside a test: a class or module fixture's error or skip.
            self.write({"test": test_id, "outcome": outcome, "detail": detail[-_DETAIL_CHARS:]})
            return
        if _RANK[outcome] >= _RANK[self._outcome]:
            self._outcome = outcome
        if detail:
            self._details.append(detail)

    def stop(self, test_id: str) -> None:
        if test_id == self._current:
            self.write(
                {
                    "test": test_id,
                    "outcome": self._outcome,
                    "seconds": round(time.monotonic() - self._started, 3),
                    "detail": "\n".join(self._details)[-_DETAIL_CHARS:],
                }
            )
        self._current = None
        self._arm(f"between tests, after {test_id}")

    def done(self, tests_run: int) -> None:
        import faulthandler

        faulthandler.cancel_dump_traceback_later()
        self._dog.seek(0)
        self._dog.truncate()
        self._dog.write("finished\n")
        self._dog.flush()
        self.write({"done": tests_run})


def _install_result_class(recorder: _Recorder) -> None:
    """Make Django's DiscoverRunner report every test to ``recorder``."""
    import unittest

    from django.test.runner import DiscoverRunner

    if not issubclass(getattr(DiscoverRunner, "test_runner", type), unittest.TextTestRunner):
        sys.exit("django.test.runner.DiscoverRunner.test_runner is not a TextTestRunner")

    class RecordingResult(unittest.TextTestResult):
        def startTestRun(self) -> None:
            super().startTestRun()
            recorder.write({"meta": _environment()})

        def stopTestRun(self) -> None:
            recorder.done(self.testsRun)
            super().stopTestRun()

        def startTest(self, test: unittest.TestCase) -> None:
            recorder.start(test.id())
            super().startTest(test)

        def stopTest(self, test: unittest.TestCase) -> None:
            super().stopTest(test)
            recorder.stop(test.id())

        def addSuccess(self, test: unittest.TestCase) -> None:
            super().addSuccess(test)
            recorder.outcome(test.id(), "passed")

        def addFailure(self, test: unittest.TestCase, err: _ExcInfo) -> None:
            super().addFailure(test, err)
            recorder.outcome(test.id(), "failed", _format(err))

        def addError(self, test: unittest.TestCase, err: _ExcInfo) -> None:
            super().addError(test, err)
            recorder.outcome(test.id(), "error", _format(err))

        def addSkip(self, test: unittest.TestCase, reason: str) -> None:
            super().addSkip(test, reason)
            recorder.outcome(test.id(), "skipped")

        def addExpectedFailure(self, test: unittest.TestCase, err: _ExcInfo) -> None:
            super().addExpectedFailure(test, err)
            recorder.outcome(test.id(), "xfailed")

        def addUnexpectedSuccess(self, test: unittest.TestCase) -> None:
            super().addUnexpectedSuccess(test)
            recorder.outcome(test.id(), "xpassed")

        def addSubTest(
            self, test: unittest.TestCase, subtest: unittest.TestCase, err: _ExcInfo | None
        ) -> None:
            super().addSubTest(test, subtest, err)
            if err is not None:
                failed = isinstance(err[1], test.failureException)
                detail = f"{subtest.id()}\n{_format(err)}"
                recorder.outcome(test.id(), "failed" if failed else "error", detail)

    class RecordingRunner(unittest.TextTestRunner):
        # Whatever result class Django asks for (--debug-sql, --pdb), ours.
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["resultclass"] = RecordingResult
            super().__init__(*args, **kwargs)

    DiscoverRunner.test_runner = RecordingRunner


def _gevent_patched() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and bool(monkey.is_module_patched("threading"))


def _environment() -> dict[str, Any]:
    """What the child really ran with: checked by the parent against the mode."""
    import django

    asgiref = sys.modules.get("asgiref")
    hub = where = None
    if "asgigreen" in sys.modules:
        from asgigreen.hubs import get_hub

        hub = get_hub().name
        where = str(Path(sys.modules["asgigreen"].__file__ or "").parent)
    return {
        "python": sys.version.split()[0],
        "django": django.get_version(),
        "asgiref_alias": bool(getattr(asgiref, "__asgigreen_alias__", False)),
        "asgiref_version": getattr(asgiref, "__version__", None),
        "asgigreen_imported": "asgigreen" in sys.modules,
        "gevent_patched": _gevent_patched(),
        "hub": hub,
        "asgigreen": where,
    }


def _child(argv: list[str]) -> None:
    """``--child MODE RESULTS WATCHDOG LIMIT RUNTESTS_ARGS...``, in the tests directory."""
    name, results, watchdog, limit, *runtests_args = argv
    mode = _BY_NAME[name]
    if mode.patched and not _gevent_patched():
        sys.exit(f"mode {name}: expected to run under python -m gevent.monkey")
    if mode.asgigreen:
        import asgigreen

        asgigreen.install_as_asgiref()
    _install_result_class(_Recorder(Path(results), Path(watchdog), float(limit)))
    tests = Path.cwd()
    runtests = tests / "runtests.py"
    # As `cd tests; python runtests.py ...` would have it.
    sys.path[0] = str(tests)
    sys.argv = [str(runtests), *runtests_args]
    import runpy

    runpy.run_path(str(runtests), run_name="__main__")


# -- the parent: download, runs, comparison --------------------------------------------------

_active: set[subprocess.Popen[bytes]] = set()
_active_lock = threading.Lock()
_stopping = threading.Event()
_print_lock = threading.Lock()


def _say(text: str) -> None:
    with _print_lock:
        print(text, flush=True)


def _call(
    argv: list[str],
    timeout: float,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    log: IO[bytes] | None = None,
) -> int | None:
    """Run ``argv`` in its own process group; its exit code, or None if it ran out of time.

    On time out or Ctrl-C the whole group is stopped (TERM, then KILL), so
    no child it spawned is left behind.
    """
    with _active_lock:
        if _stopping.is_set():
            return None
        proc = process_group.start(argv, cwd, env, log)
        _active.add(proc)
    try:
        return process_group.wait(proc, timeout)
    finally:
        with _active_lock:
            _active.discard(proc)


def _stop_all() -> None:
    with _active_lock:
        _stopping.set()
        procs = list(_active)
    for proc in procs:
        process_group.stop_group(proc, _GRACE_SECONDS)


def _installed_django() -> str:
    try:
        return importlib.metadata.version("django")
    except importlib.metadata.PackageNotFoundError:
        sys.exit(f"Django is not installed for {sys.executable}")


def _prepare(workdir: Path, version: str) -> Path:
    """The ``tests`` directory of Django ``version``'s sdist, downloaded once and kept."""
    tests = workdir / f"django-{version}" / "tests"
    stamp = tests / ".extracted"
    if stamp.exists():
        return tests
    workdir.mkdir(parents=True, exist_ok=True)
    archive = workdir / f"django-{version}.tar.gz"
    if not archive.exists():
        code = process_group.pip_download_sdist(
            f"django=={version}", workdir, _DOWNLOAD_TIMEOUT_SECONDS
        )
        if code != 0 or not archive.exists():
            sys.exit(
                f"pip download django=={version} failed "
                + ("(timed out)" if code is None else f"(exit {code})")
            )
    prefix = f"django-{version}/tests/"
    # Extracted beside the target, then renamed: an interrupted extraction, or
    # another run extracting at the same time, never leaves a partial tree.
    partial = tests.with_name(f"tests.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if not (member.isfile() and member.name.startswith(prefix)):
                continue
            relative = Path(member.name[len(prefix) :])
            if relative.is_absolute() or ".." in relative.parts:
                continue
            source = tar.extractfile(member)
            assert source is not None
            target = partial / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read())
            target.chmod(0o755 if member.mode & 0o111 else 0o644)
    if not (partial / "runtests.py").exists():
        sys.exit(f"{archive} has no tests/runtests.py")
    (partial / stamp.name).write_text(f"{archive.name}\n", encoding="utf-8")
    if stamp.exists():
        shutil.rmtree(partial)  # another run got there first
    else:
        shutil.rmtree(tests, ignore_errors=True)  # a tree without its stamp is partial
        partial.rename(tests)
    return tests


@dataclass
class Run:
    mode: Mode
    outcomes: dict[str, str] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    wall: float = 0.0
    died: str | None = None
    log: Path | None = None

    def counts(self, baseline: Run | None = None) -> Counter[str]:
        counts: Counter[str] = Counter(self.outcomes.values())
        if baseline is not None:
            counts["missing"] = len(baseline.outcomes.keys() - self.outcomes.keys())
        for key in _OUTCOMES:
            counts.setdefault(key, 0)
        return counts


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return
    for line in lines:
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict):
                yield record


def _check_environment(mode: Mode, meta: dict[str, Any]) -> str | None:
    """What is wrong with the environment the child reported, if anything."""
    if not meta:
        return None  # no test ran; reported otherwise
    expected_hub = ("gevent" if mode.patched else "threads") if mode.asgigreen else None
    wrong = []
    if meta.get("asgiref_alias") != mode.asgigreen:
        wrong.append(f"asgiref alias {meta.get('asgiref_alias')}")
    if meta.get("asgigreen_imported") != mode.asgigreen:
        wrong.append(f"asgigreen imported {meta.get('asgigreen_imported')}")
    if meta.get("gevent_patched") != mode.patched:
        wrong.append(f"gevent patched {meta.get('gevent_patched')}")
    if meta.get("hub") != expected_hub:
        wrong.append(f"hub {meta.get('hub')}, expected {expected_hub}")
    return f"ran with {', '.join(wrong)}" if wrong else None


def _run(
    tests: Path, outdir: Path, mode: Mode, apps: list[str], run_timeout: float, test_timeout: float
) -> Run:
    """Run ``apps`` in one mode: every test's outcome, and what went wrong if it died."""
    results = outdir / f"{mode.name}.jsonl"
    watchdog = outdir / f"{mode.name}.watchdog"
    log_path = outdir / f"{mode.name}.log"
    for path in (results, watchdog):
        path.unlink(missing_ok=True)
    runner = ["-m", "gevent.monkey"] if mode.patched else []
    argv = [
        sys.executable,
        *runner,
        str(Path(__file__).resolve()),
        "--child",
        mode.name,
        str(results.resolve()),
        str(watchdog.resolve()),
        str(test_timeout),
        "--settings=test_sqlite",
        "--parallel=1",
        "--noinput",
        "-v",
        "2",
        *apps,
    ]
    env = dict(os.environ)
    # The hub is the one asgigreen detects; the settings are runtests.py's.
    for name in ("ASGIGREEN_HUB", "DJANGO_SETTINGS_MODULE"):
        env.pop(name, None)
    env["PYTHONUNBUFFERED"] = "1"
    run = Run(mode, log=log_path)
    _say(f"[{mode.name}] started, log in {log_path}")
    started = time.monotonic()
    with log_path.open("wb") as log:
        log.write(f"$ {' '.join(argv)}\n".encode())
        log.flush()
        code = _call(argv, run_timeout, cwd=tests, env=env, log=log)
    run.wall = time.monotonic() - started

    tests_run = None
    for record in _read_jsonl(results):
        if "meta" in record:
            run.meta = record["meta"]
        elif "done" in record:
            tests_run = record["done"]
        elif "test" in record:
            test, outcome = str(record["test"]), str(record["outcome"])
            previous = run.outcomes.get(test)
            if previous is None or _RANK[outcome] > _RANK[previous]:
                run.outcomes[test] = outcome
            if record.get("detail"):
                run.details[test] = str(record["detail"])

    dog = watchdog.read_text(encoding="utf-8", errors="replace") if watchdog.exists() else ""
    first, _, dump = dog.partition("\n")
    if tests_run is None:
        how = f"ran out of {run_timeout:g} s" if code is None else f"exited {code}"
        if dump.strip():
            how = f"was ended by the watchdog after {test_timeout:g} s, {first}"
            print(f"[{mode.name}] {first}\n{dump}", file=sys.stderr)
        elif first:
            how += f", {first}"
        run.died = f"the run {how} before the last test, see {log_path}"
        if first.startswith("running "):
            stuck = first.split()[1]
            run.outcomes[stuck] = "hung"
    elif code not in (0, 1):
        # runtests.py exits 1 when a test fails; anything else is the harness.
        run.died = f"runtests.py exited {code} after the tests, see {log_path}"
    run.died = run.died or _check_environment(mode, run.meta)
    if run.died:
        with contextlib.suppress(OSError):
            lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
            shown = "\n".join(f"  {line}" for line in lines[-_PRINTED_LINES:])
            _say(f"[{mode.name}] the end of {log_path}:\n{shown}")
    _say(
        f"[{mode.name}] finished in {run.wall:.0f} s: {len(run.outcomes)} tests"
        + (f"; {run.died}" if run.died else "")
    )
    return run


@dataclass
class Difference:
    mode: str
    test: str
    baseline: str
    outcome: str
    known: str | None
    detail: str


def _differences(baseline: Run, run: Run) -> list[Difference]:
    found = []
    for test in sorted(baseline.outcomes.keys() | run.outcomes.keys()):
        expected = baseline.outcomes.get(test, "missing")
        got = run.outcomes.get(test, "missing")
        if expected == got:
            continue
        known = KNOWN_DIFFERENCES.get(f"{run.mode.name}:{test}", KNOWN_DIFFERENCES.get(test))
        detail = run.details.get(test) or baseline.details.get(test, "")
        found.append(Difference(run.mode.name, test, expected, got, known, detail))
    return found


def _tail(text: str, lines: int) -> list[str]:
    # Without blank lines and the lines of carets under a traceback's source line.
    kept = [line for line in text.splitlines() if line.strip(" ^~")]
    return kept[-lines:]


def main() -> int:
    if sys.argv[1:2] == ["--child"]:
        _child(sys.argv[2:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workdir",
        type=Path,
        default=ROOT / "build" / "django-suite",
        help="where the sdist, its tests and the runs' logs go (default: build/django-suite)",
    )
    parser.add_argument("--json", type=Path, help="write the summary to FILE as JSON")
    parser.add_argument(
        "--jobs",
        type=int,
        default=3,
        choices=(1, 2, 3),
        help="modes run at once (default 3: the runs mostly sleep, so they overlap well)",
    )
    parser.add_argument("--apps", nargs="+", default=list(APPS), help="Django test apps to run")
    parser.add_argument(
        "--run-timeout", type=float, default=_RUN_TIMEOUT_SECONDS, help="seconds per run"
    )
    parser.add_argument(
        "--test-timeout", type=float, default=_TEST_TIMEOUT_SECONDS, help="seconds per test"
    )
    args = parser.parse_args()
    started = time.monotonic()
    version = _installed_django()
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    tests = _prepare(args.workdir.resolve(), version)
    outdir = args.workdir.resolve() / f"django-{version}" / f"py{python}"
    outdir.mkdir(parents=True, exist_ok=True)
    _say(f"Django {version} tests ({len(args.apps)} apps) on Python {python}, from {tests}")

    with ThreadPoolExecutor(args.jobs) as pool:
        futures = [
            pool.submit(_run, tests, outdir, mode, args.apps, args.run_timeout, args.test_timeout)
            for mode in MODES
        ]
        try:
            runs = [future.result() for future in futures]
        except BaseException:
            # Ctrl-C: no run is left going, nor started.
            for future in futures:
                future.cancel()
            _stop_all()
            raise
    baseline, others = runs[0], runs[1:]

    problems = [f"{run.mode.name}: {run.died}" for run in runs if run.died]
    passed = baseline.counts()["passed"]
    if args.apps == list(APPS) and passed < BASELINE_MIN_PASSED:
        problems.append(f"asgiref: {passed} passed, expected >= {BASELINE_MIN_PASSED}")
    differences = [diff for run in others for diff in _differences(baseline, run)]
    unexplained = [diff for diff in differences if diff.known is None]
    seen = {diff.test for diff in differences} | {f"{d.mode}:{d.test}" for d in differences}

    print(f"\nDjango {version} test suite (Python {python}): {', '.join(args.apps)}")
    columns = ("passed", "failed", "error", "skipped", "xfailed", "xpassed", "hung", "missing")
    print(f"{'mode':<22}" + "".join(f"{c:>9}" for c in columns) + f"{'time':>8}")
    for run in runs:
        counts = run.counts(None if run is baseline else baseline)
        print(
            f"{run.mode.title:<22}"
            + "".join(f"{counts[c]:>9}" for c in columns)
            + f"{run.wall:>7.0f}s"
        )
    for failed in sorted(t for t, o in baseline.outcomes.items() if o in ("failed", "error")):
        print(f"  baseline {baseline.outcomes[failed]}: {failed} (the same is expected)")
    for diff in differences:
        reason = diff.known or "UNEXPLAINED"
        print(f"\n  {diff.mode}: {diff.test}: {diff.baseline} -> {diff.outcome} ({reason})")
        for line in _tail(diff.detail, _PRINTED_LINES):
            print(f"      {line}")
    for key in sorted(KNOWN_DIFFERENCES.keys() - seen):
        print(f"  note: known difference not seen this time: {key}")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    seconds = time.monotonic() - started
    ok = not problems and not unexplained
    if ok:
        verdict = "OK" + (f" ({len(differences)} known differences)" if differences else "")
    else:
        parts = [f"{len(unexplained)} differences"] if unexplained else []
        parts += [f"{len(problems)} problems"] if problems else []
        verdict = f"FAIL ({', '.join(parts)})"
    print(f"time: {seconds:.0f} s; logs and outcomes in {outdir}")
    print(f"django compat: {verdict}")

    if args.json:
        summary = {
            "django": version,
            "python": python,
            "apps": args.apps,
            "ok": ok,
            "seconds": round(seconds, 1),
            "modes": {
                run.mode.name: {
                    **run.counts(None if run is baseline else baseline),
                    "seconds": round(run.wall, 1),
                    "died": run.died,
                    "environment": run.meta,
                }
                for run in runs
            },
            "differences": [vars(diff) for diff in differences],
            "problems": problems,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
