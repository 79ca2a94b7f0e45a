"""Shared test configuration.

The suite runs in two modes: a plain process (threads hub) and a
gevent-monkeypatched process (``python -m gevent.monkey --module pytest``,
gevent hub). Each concern below lives in its own function.
"""

from __future__ import annotations

import faulthandler
import os
import sys
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import IO

import pytest

# PostgreSQL and Redis servers for the gevent-worker tests.
from services import postgres, redis_server  # noqa: F401

from asgigreen import hubs

# -- hub mode markers -----------------------------------------------------------

# Marker name -> the hub a test carrying it needs.
_MODE_MARKERS = {"threads_only": "threads", "gevent_only": "gevent"}


def _skip_tests_for_other_hub(items: list[pytest.Item]) -> None:
    """Skip tests marked ``threads_only`` / ``gevent_only`` in the other mode."""
    running = hubs.get_hub().name
    for item in items:
        for marker, needed in _MODE_MARKERS.items():
            if needed != running and item.get_closest_marker(marker) is not None:
                how = (
                    "python -m gevent.monkey --module pytest"
                    if needed == "gevent"
                    else "python -m pytest"
                )
                item.add_marker(
                    pytest.mark.skip(
                        reason=f"{marker}: needs the {needed} hub, this run uses the "
                        f"{running} hub (run with `{how}`)"
                    )
                )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _skip_tests_for_other_hub(items)


# -- hard per-test watchdog -------------------------------------------------------------

# pytest-timeout (``timeout`` in pyproject.toml) fails a test that runs too
# long, but its signal method only acts once the main thread runs Python code
# again: under gevent on 3.14+ a test stuck in gevent's hub was seen to keep
# the whole run stuck. faulthandler's watchdog is a C thread of its own that
# neither gevent nor a stuck hub can hold up: past the hard limit it dumps
# every thread's traceback and ends the process (exit code 1). The test's id
# is written first, so a killed run names the stuck test.
#
# ASGIGREEN_TEST_HARD_TIMEOUT: the limit in seconds (default 180, 0 = off);
# a test whose own ``timeout`` mark is longer gets that mark plus a minute.
# ASGIGREEN_WATCHDOG_FILE: where the id and the dump go. The file is
# rewritten for each test, so after a kill it holds the stuck test and its
# tracebacks (tools/matrix.py reads it). Without it, they go to stderr, the
# id only when stderr is not a terminal (where pytest -v shows it anyway).

_HARD_TIMEOUT_DEFAULT = 180.0
# How much longer than a test's own pytest-timeout the watchdog waits.
_HARD_TIMEOUT_MARGIN = 60.0


class _Watchdog:
    def __init__(self, limit: float, stream: IO[str], to_file: bool) -> None:
        self.limit = limit
        self.stream = stream
        self.to_file = to_file
        # On stderr the dump's traceback names the test; a line per test
        # there would bury the output.
        self.name_tests = to_file

    def limit_for(self, item: pytest.Item) -> float:
        mark = item.get_closest_marker("timeout")
        own = mark.kwargs.get("timeout", mark.args[0] if mark.args else None) if mark else None
        try:
            return max(self.limit, float(own) + _HARD_TIMEOUT_MARGIN)
        except (TypeError, ValueError):
            return self.limit

    def arm(self, nodeid: str, limit: float) -> None:
        if self.to_file:
            self.stream.seek(0)
            self.stream.truncate()
        if self.name_tests:
            self.stream.write(
                f"asgigreen watchdog: {nodeid} (ended if still running after "
                f"{limit:g} s, pid {os.getpid()})\n"
            )
            self.stream.flush()
        faulthandler.dump_traceback_later(limit, exit=True, file=self.stream)

    def disarm(self) -> None:
        faulthandler.cancel_dump_traceback_later()


_watchdog_key = pytest.StashKey[_Watchdog]()


def _hard_timeout() -> float:
    value = os.environ.get("ASGIGREEN_TEST_HARD_TIMEOUT", "")
    try:
        return float(value) if value else _HARD_TIMEOUT_DEFAULT
    except ValueError:
        raise pytest.UsageError(f"ASGIGREEN_TEST_HARD_TIMEOUT={value!r} is not a number") from None


def _start_watchdog(config: pytest.Config) -> None:
    limit = _hard_timeout()
    if limit <= 0:
        return
    # Taken out of the environment: a pytest that a test starts must not
    # rewrite this process's file.
    path = os.environ.pop("ASGIGREEN_WATCHDOG_FILE", "")
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        stream: IO[str] = open(path, "w+", encoding="utf-8")  # noqa: SIM115
    else:
        # Our own copy of the real stderr: pytest captures descriptor 2
        # while a test runs, and a dump into the capture would be lost.
        stream = os.fdopen(os.dup(sys.__stderr__.fileno() if sys.__stderr__ else 2), "w")
    config.stash[_watchdog_key] = _Watchdog(limit, stream, to_file=bool(path))


def pytest_configure(config: pytest.Config) -> None:
    # Not while the initial conftests load: pytest captures descriptor 2 then.
    _start_watchdog(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    watchdog = config.stash.get(_watchdog_key, None)
    if watchdog is not None:
        watchdog.disarm()
        watchdog.stream.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, None, None]:
    watchdog = item.config.stash.get(_watchdog_key, None)
    if watchdog is None:
        return (yield)
    watchdog.arm(item.nodeid, watchdog.limit_for(item))
    try:
        return (yield)
    finally:
        watchdog.disarm()


# What pytest-timeout's failure says.
_TIMED_OUT = "from pytest-timeout"


# A test that pytest-timeout stopped leaves behind whatever it was stuck in:
# the process-wide thread-sensitive worker, say, which every later
# thread-sensitive call would then queue behind for a full timeout each, so
# the run would spend its whole time limit on one fault and end with no
# report. The run stops after such a test instead, with its report.
@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and call.excinfo is not None and _TIMED_OUT in str(call.excinfo.value):
        item.session.shouldstop = (
            f"{item.nodeid} timed out; later tests would wait behind what it left stuck"
        )
    return report


# -- Django on SQLite -----------------------------------------------------------


@pytest.fixture(scope="session")
def django_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path | None]:
    """Django configured once per process with a SQLite file database.

    Installs ``django.contrib.contenttypes`` and ``django.contrib.auth`` and
    creates their tables, so tests can run real ORM queries. Yields the
    database path, or None if something else had configured Django already
    (its settings are then left alone).
    """
    django = pytest.importorskip("django")
    from django.conf import settings

    if settings.configured:
        yield None
        return
    path = tmp_path_factory.mktemp("django") / "db.sqlite3"
    settings.configure(
        DEBUG=False,
        SECRET_KEY="asgigreen-tests",
        USE_TZ=True,
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": os.fspath(path),
                "OPTIONS": {"timeout": 20},
            }
        },
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth"],
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
    )
    django.setup()
    from django.core.management import call_command
    from django.db import connections

    call_command("migrate", run_syncdb=True, verbosity=0, interactive=False)
    connections.close_all()
    yield path
