"""The test suite and the asgiref compatibility suite on several CPythons, and one table.

Each run is one version in one mode:

* ``plain``: ``python -m pytest`` (threads hub);
* ``patched``: ``python -m gevent.monkey --module pytest`` (gevent hub);
* ``compat``: ``tools/asgiref_suite.py`` (asgiref's own suite, both hubs).

Commands (stdlib only, so the host's python3 runs it before any venv exists)::

    python3 tools/matrix.py host [MODE...] [-- PYTEST_ARGS]   # this interpreter
    python3 tools/matrix.py pythons [VERSION...]               # in the sid rootfs
    python3 tools/matrix.py table                              # the table, exit 1 on a failure

``host`` runs with the interpreter running this script (the Makefile's
``.venv/bin/python``), its output shown as it comes. ``pythons`` runs each
version (default 3.13 3.14 3.15) inside ``tools/pythons.sh``'s rootfs, in a
venv ``build/venv-VERSION`` with ``.[tests]`` installed within
``constraints/tests.txt``, its output only in the logs. Everything lands in
``build/results/``: for a run ``V-MODE``, its log, JUnit XML
(``V-MODE.xml``) or compat counts (``V-compat.json``), the watchdog file
naming the last test started, and ``V-MODE.run.json`` (exit code, seconds)
that ``table`` reads.

Every run has a time limit, and a run still going then is stopped with all
its processes. With ``ASGIGREEN_MATRIX_DEADLINE`` (seconds since the epoch)
no run goes past it: a run that can't start in time is reported as not run,
and fails the table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "build" / "results"
PYTHONS_SH = ROOT / "tools" / "pythons.sh"
#: Where the repo is inside the rootfs (tools/pythons.sh bind-mounts it there).
INNER_ROOT = Path("/src")

MODES = ("plain", "patched", "compat")
DEFAULT_VERSIONS = ("3.13", "3.14", "3.15")

#: Time limits in seconds, for each kind of run as a whole.
LIMITS = {"install": 900, "plain": 900, "patched": 900, "compat": 1500}
#: A run is not started with less than this left before the deadline.
MIN_START = 60
#: After the limit: seconds between TERM and KILL.
GRACE = 20

_lock = threading.Lock()


def _say(text: str) -> None:
    with _lock:
        print(text, flush=True)


def version_of_this_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else 0 for part in version.split("."))


# -- running one command ---------------------------------------------------------------------


def _deadline() -> float | None:
    value = os.environ.get("ASGIGREEN_MATRIX_DEADLINE", "")
    try:
        return float(value) if value else None
    except ValueError:
        sys.exit(f"ASGIGREEN_MATRIX_DEADLINE={value!r} is not a number")


def _limit_for(kind: str) -> float | None:
    """The time this run may take, or None if the deadline leaves too little."""
    limit = float(LIMITS[kind])
    deadline = _deadline()
    if deadline is not None:
        left = deadline - time.time()
        if left < MIN_START:
            return None
        limit = min(limit, left)
    return limit


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """TERM then KILL the run's process group (it has its own session)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(GRACE)
            return
        except subprocess.TimeoutExpired:
            continue


def _copy(source: IO[bytes], log: IO[bytes], echo: bool) -> None:
    out = sys.stdout.buffer
    while chunk := os.read(source.fileno(), 65536):
        log.write(chunk)
        log.flush()
        if echo:
            with _lock:
                out.write(chunk)
                out.flush()


@dataclass
class Outcome:
    code: int | None  # None: stopped at its time limit
    seconds: float


def execute(
    argv: Sequence[str], log_path: Path, limit: float, env: dict[str, str], echo: bool
) -> Outcome:
    """Run ``argv`` with output to ``log_path`` (and to stdout when ``echo``)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(log_path, "wb") as log:
        log.write(f"$ {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            list(argv),
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if echo else log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        copier = None
        if echo:
            assert proc.stdout is not None
            copier = threading.Thread(target=_copy, args=(proc.stdout, log, True), daemon=True)
            copier.start()
        code: int | None
        try:
            code = proc.wait(limit)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            # Also on Ctrl-C: nothing of the run is left behind.
            _stop(proc)
        if copier is not None:
            # A process that escaped the group could still hold the pipe.
            copier.join(GRACE)
        seconds = time.monotonic() - started
        if code is None:
            log.write(f"\nmatrix.py: stopped after the {limit:.0f} s limit\n".encode())
    return Outcome(code, seconds)


# -- runs ----------------------------------------------------------------------------------------


@dataclass
class Run:
    version: str
    mode: str  # plain, patched, compat or install
    where: str  # host or rootfs

    @property
    def name(self) -> str:
        return f"{self.version}-{self.mode}"

    def path(self, suffix: str) -> Path:
        return RESULTS / f"{self.name}{suffix}"

    def clear(self) -> None:
        for suffix in (".log", ".xml", ".json", ".watchdog", ".run.json"):
            self.path(suffix).unlink(missing_ok=True)

    def record(self, outcome: Outcome | None, argv: Sequence[str], note: str = "") -> None:
        data = {
            "version": self.version,
            "mode": self.mode,
            "where": self.where,
            "code": outcome.code if outcome else None,
            "timed_out": outcome is not None and outcome.code is None,
            "seconds": round(outcome.seconds, 1) if outcome else 0.0,
            "not_run": note if outcome is None else "",
            "argv": list(argv),
        }
        RESULTS.mkdir(parents=True, exist_ok=True)
        self.path(".run.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _inside(path: Path) -> str:
    """``path`` (under the repo) as the rootfs sees it."""
    return str(INNER_ROOT / path.relative_to(ROOT))


def mode_argv(run: Run, python: str, extra: Sequence[str], inside: bool) -> list[str]:
    def place(path: Path) -> str:
        return _inside(path) if inside else str(path)

    if run.mode == "compat":
        return [
            python,
            place(ROOT / "tools" / "asgiref_suite.py"),
            "--results",
            place(run.path(".json")),
        ]
    runner = (
        ["-m", "gevent.monkey", "--module", "pytest"] if run.mode == "patched" else ["-m", "pytest"]
    )
    options = [f"--junitxml={place(run.path('.xml'))}", "--durations=10"]
    if inside:
        # Versions share the checkout: no cross-version last-failed cache.
        options += ["-p", "no:cacheprovider"]
    return [python, *runner, *options, *extra]


def _env(run: Run, inside: bool) -> dict[str, str]:
    env = dict(os.environ)
    watchdog = run.path(".watchdog")
    env["ASGIGREEN_WATCHDOG_FILE"] = _inside(watchdog) if inside else str(watchdog)
    return env


def start(run: Run, argv: list[str], env: dict[str, str], echo: bool) -> bool:
    """Run one thing and record it; whether it succeeded."""
    run.clear()
    limit = _limit_for("install" if run.mode == "install" else run.mode)
    if limit is None:
        note = "not run: the time budget (ASGIGREEN_MATRIX_DEADLINE) was used up"
        run.record(None, argv, note)
        _say(f"matrix: {run.name}: {note}")
        return False
    if run.where == "rootfs":
        # timeout inside stops the command's process group; the outer limit
        # (execute) then takes the whole namespace down if that was not enough.
        argv = [
            str(PYTHONS_SH),
            "run",
            "timeout",
            f"--kill-after={GRACE}",
            str(int(limit)),
            *argv,
        ]
        limit += 2 * GRACE + 10
    _say(
        f"matrix: {run.name}: {' '.join(argv)}  (limit {limit:.0f} s, log {_rel(run.path('.log'))})"
    )
    outcome = execute(argv, run.path(".log"), limit, env, echo)
    if run.where == "rootfs" and outcome.code in (124, 128 + signal.SIGKILL):
        # The exit codes of timeout(1) inside: it stopped the command.
        outcome.code = None
    run.record(outcome, argv)
    _append_watchdog(run)
    row = describe(run)
    _say(f"matrix: {run.name}: {row.status} in {outcome.seconds:.0f} s {row.counts_text()}")
    return outcome.code == 0


def _append_watchdog(run: Run) -> None:
    """After a run that ended badly, what the watchdog file says, in the log."""
    try:
        text = run.path(".watchdog").read_text(encoding="utf-8", errors="replace")
        info = json.loads(run.path(".run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if text and info.get("code") != 0:
        with open(run.path(".log"), "a", encoding="utf-8") as log:
            log.write(f"\n--- {_rel(run.path('.watchdog'))} ---\n{text}")


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def cmd_host(modes: Sequence[str], extra: Sequence[str]) -> int:
    version = version_of_this_python()
    failed = False
    for mode in modes:
        run = Run(version, mode, "host")
        argv = mode_argv(run, sys.executable, extra, inside=False)
        if mode != "compat" and sys.stdout.isatty():
            argv.append("--color=yes")
        if not start(run, argv, _env(run, inside=False), echo=True):
            failed = True
    return 1 if failed else 0


#: The Django each version's venv gets: both supported series are tested,
#: 5.2 LTS on the older Pythons (3.11 on the host gets it anyway: Django 6
#: needs 3.12), the newest 6.x on the newer ones.
DJANGO = {"3.13": "django>=5.2,<6", "3.14": "django>=6,<7", "3.15": "django>=6,<7"}


#: The test dependencies at the versions CI tested, for every Python
#: (tools/refresh_constraints.py writes it; ``make constraints``).
CONSTRAINTS = ROOT / "constraints" / "tests.txt"


def _install_fingerprint(version: str) -> str:
    digest = hashlib.sha256(DJANGO.get(version, "").encode())
    for path in (ROOT / "pyproject.toml", CONSTRAINTS):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def install(version: str, constraints: Path | None = CONSTRAINTS) -> bool:
    """A venv ``build/venv-VERSION`` in the rootfs with ``.[tests]``; skipped when up to date.

    pip installs within ``constraints`` (a file under the repo), or, with None,
    the newest versions the requirements allow (tools/refresh_constraints.py).
    Only an install with :data:`CONSTRAINTS` is stamped as up to date.
    """
    run = Run(version, "install", "rootfs")
    venv = ROOT / "build" / f"venv-{version}"
    stamp = venv / ".matrix-installed"
    if constraints is not None and not constraints.is_file():
        sys.exit(f"matrix.py: {_rel(constraints)} is missing: run `make constraints`")
    stamped = constraints == CONSTRAINTS
    fingerprint = _install_fingerprint(version) if stamped else ""
    if stamped and stamp.exists() and stamp.read_text(encoding="utf-8").strip() == fingerprint:
        run.clear()
        run.record(Outcome(0, 0.0), [], "")
        _say(f"matrix: {run.name}: {_rel(venv)} is up to date")
        return True
    inner = _inside(venv)
    pinned = f"-c {_inside(constraints)} " if constraints is not None else ""
    script = (
        f"set -e; rm -rf {inner}; python{version} -m venv {inner}; "
        f"{inner}/bin/python -m pip install --progress-bar off {pinned}-e '.[tests]' "
        f"'{DJANGO.get(version, 'django')}'; "
        f"{inner}/bin/python -m pip list"
    )
    ok = start(run, ["sh", "-c", script], dict(os.environ), echo=False)
    if ok and stamped:
        stamp.write_text(fingerprint + "\n", encoding="utf-8")
    return ok


def cmd_pythons(versions: Sequence[str]) -> int:
    if os.geteuid() != 0:
        sys.exit("matrix.py pythons: needs root (tools/pythons.sh run)")
    failed = False
    for version in versions:
        for mode in ("install", *MODES):
            Run(version, mode, "rootfs").clear()
        if not install(version):
            failed = True
            for mode in MODES:
                Run(version, mode, "rootfs").record(
                    None, [], f"not run: {version}'s install failed"
                )
            continue
        python = _inside(ROOT / "build" / f"venv-{version}" / "bin" / "python")
        for mode in MODES:
            run = Run(version, mode, "rootfs")
            argv = mode_argv(run, python, (), inside=True)
            if not start(run, argv, _env(run, inside=True), echo=False):
                failed = True
    return 1 if failed else 0


# -- the table -----------------------------------------------------------------------------------


@dataclass
class Row:
    version: str
    mode: str
    status: str = "ok"
    ok: bool = True
    seconds: float = 0.0
    passed: int | None = None
    failed: int | None = None
    skipped: int | None = None
    errors: int | None = None
    failures: list[str] = field(default_factory=list)
    stuck: str = ""  # the test the watchdog stopped, or the last one started

    def counts_text(self) -> str:
        if self.passed is None:
            return ""
        return (
            f"({self.passed} passed, {self.failed} failed, {self.skipped} skipped, "
            f"{self.errors} errors)"
        )


def _junit(path: Path, row: Row) -> None:
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    tests = failed = errors = skipped = 0
    for suite in suites:
        tests += int(suite.get("tests", 0))
        failed += int(suite.get("failures", 0))
        errors += int(suite.get("errors", 0))
        skipped += int(suite.get("skipped", 0))
        for case in suite.iter("testcase"):
            if any(child.tag in ("failure", "error") for child in case):
                row.failures.append(_nodeid(case.get("classname", ""), case.get("name", "")))
    row.passed, row.failed, row.errors, row.skipped = (
        tests - failed - errors - skipped,
        failed,
        errors,
        skipped,
    )


def _nodeid(classname: str, name: str) -> str:
    """pytest's node id back from JUnit's ``tests.test_x.TestY`` and ``test_z``."""
    parts = classname.split(".")
    for i in range(len(parts), 0, -1):
        if (ROOT / Path(*parts[:i])).with_suffix(".py").exists():
            return "::".join(["/".join(parts[:i]) + ".py", *parts[i:], name])
    return f"{classname}::{name}"


def _compat(path: Path, row: Row) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    modes: dict[str, dict[str, int]] = data["modes"]
    row.passed = sum(m.get("passed", 0) for m in modes.values())
    row.failed = sum(m.get("failed", 0) for m in modes.values())
    row.errors = sum(m.get("error", 0) for m in modes.values())
    row.skipped = sum(m.get("skipped", 0) + m.get("xfailed", 0) for m in modes.values())
    row.failures.extend(str(problem) for problem in data.get("problems", []))


def _stuck_test(path: Path) -> tuple[str, bool]:
    """The last test the watchdog file names, and whether its dump is there (it fired)."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "", False
    name = ""
    if lines and lines[0].startswith("asgigreen watchdog: "):
        name = lines[0].removeprefix("asgigreen watchdog: ").split(" (ended if", 1)[0]
    return name, any(line.startswith("Timeout (") for line in lines)


def describe(run: Run) -> Row:
    row = Row(run.version, run.mode)
    try:
        info: dict[str, Any] = json.loads(run.path(".run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        row.status, row.ok = "no record", False
        return row
    row.seconds = float(info.get("seconds", 0.0))
    if info.get("not_run"):
        row.status, row.ok = str(info["not_run"]), False
        return row
    code = info.get("code")
    report = run.path(".json" if run.mode == "compat" else ".xml")
    if run.mode != "install":
        try:
            (_compat if run.mode == "compat" else _junit)(report, row)
        except (OSError, ValueError, KeyError, ET.ParseError):
            pass
    stuck, fired = _stuck_test(run.path(".watchdog"))
    if info.get("timed_out"):
        row.status, row.ok = "TIMED OUT (stopped at its limit)", False
        row.stuck = f"{stuck} (the last test started)" if stuck else ""
    elif code != 0:
        row.ok = False
        if fired:
            row.status = "KILLED by the per-test watchdog"
            row.stuck = stuck
        else:
            row.status = f"FAILED (exit {code})"
    if run.mode != "install" and row.passed is None:
        row.ok = False
        if row.status == "ok":
            row.status = "no report"
        else:
            row.status += ", no report"
    return row


def _rows() -> list[Row]:
    rows = []
    order = {mode: i for i, mode in enumerate(("install", *MODES))}
    for path in RESULTS.glob("*.run.json"):
        version, _, mode = path.name.removesuffix(".run.json").partition("-")
        if mode not in order:
            continue
        rows.append(describe(Run(version, mode, "")))
    rows.sort(key=lambda r: (_version_key(r.version), order[r.mode]))
    return rows


def _fmt(value: int | None) -> str:
    return "-" if value is None else str(value)


def render(rows: Sequence[Row]) -> str:
    header = ("python", "mode", "passed", "failed", "skipped", "errors", "time", "result")
    lines = [
        [
            r.version,
            r.mode,
            _fmt(r.passed),
            _fmt(r.failed),
            _fmt(r.skipped),
            _fmt(r.errors),
            f"{r.seconds:.0f} s",
            r.status,
        ]
        for r in rows
    ]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *lines, strict=True)]
    right = {2, 3, 4, 5, 6}

    def line(cells: Sequence[str]) -> str:
        out = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return "  ".join(out).rstrip()

    text = [line(header), line(["-" * w for w in widths])]
    text += [line(cells) for cells in lines]
    # The closing line counts the project's tests (compat's are in the table).
    counted = [r for r in rows if r.mode in ("plain", "patched")]
    passed = sum(r.passed or 0 for r in counted)
    failed = sum((r.failed or 0) + (r.errors or 0) for r in counted)
    skipped = sum(r.skipped or 0 for r in counted)
    total = sum(r.seconds for r in rows)
    text.append(f"(runs took {total / 60:.1f} min in all)")
    details = []
    for r in rows:
        if r.stuck:
            details.append(f"  {r.version} {r.mode}: stuck in {r.stuck}")
        for name in r.failures[:40]:
            details.append(f"  {r.version} {r.mode}: {name}")
        if len(r.failures) > 40:
            details.append(f"  {r.version} {r.mode}: ... and {len(r.failures) - 40} more")
    if details:
        text += ["", "failures:", *details]
    text += ["", f"tests: {passed} passed, {failed} failed, {skipped} skipped"]
    return "\n".join(text)


def cmd_table() -> int:
    rows = _rows()
    if not rows:
        print(f"matrix: no results in {_rel(RESULTS)}")
        return 1
    text = render(rows)
    (RESULTS / "table.txt").write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0 if all(r.ok for r in rows) else 1


def _terminated(signum: int, frame: object) -> None:
    # As for Ctrl-C: unwinds through execute(), which stops the run's processes.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminated)
    args = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in args:
        at = args.index("--")
        args, extra = args[:at], args[at + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    host = sub.add_parser("host", help="runs with this interpreter, on the host")
    host.add_argument("modes", nargs="*", metavar="MODE", help=" ".join(MODES) + " (default: all)")
    pythons = sub.add_parser("pythons", help="each version in the sid rootfs")
    pythons.add_argument("versions", nargs="*", metavar="VERSION")
    sub.add_parser("table", help="the table of build/results; exit 1 if a run failed")
    ns = parser.parse_args(args)
    if ns.command == "host":
        unknown = sorted(set(ns.modes) - set(MODES))
        if unknown:
            parser.error(f"unknown mode {', '.join(unknown)}: choose from {', '.join(MODES)}")
        return cmd_host(ns.modes or list(MODES), extra)
    if ns.command == "pythons":
        return cmd_pythons(ns.versions or list(DEFAULT_VERSIONS))
    return cmd_table()


if __name__ == "__main__":
    sys.exit(main())
