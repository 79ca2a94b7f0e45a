"""The parent side of the stress tests: child processes, servers, figures.

* :func:`run_child` runs a scenario script of this directory in a fresh
  interpreter, in the same mode as this pytest run (``python -m
  gevent.monkey script.py`` when patched), with a hard timeout, and returns
  its ``STRESS-RESULT`` line (see ``stress_census.py``).
* :func:`say` (the ``say`` fixture of the conftest) prints a line of
  figures that shows in CI logs even though pytest captures output.
* :func:`serve` starts ``asgigreen serve`` on a port of its own;
  :func:`gunicorn_gevent` is ``tests/services.py``'s launcher with this
  directory importable.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from services import TESTS_DIR, Service, gunicorn, http_get, python_env, wait_until
from stress_census import RESULT_PREFIX

from asgigreen import hubs

STRESS_DIR = Path(__file__).resolve().parent
ROOT = TESTS_DIR.parent


def gevent_mode() -> bool:
    """Whether this pytest run is the patched one (gevent hub)."""
    return hubs.get_hub().name == "gevent"


def mode_name() -> str:
    return "gevent" if gevent_mode() else "threads"


def stress_env(**extra: str) -> dict[str, str]:
    """A child's environment: this directory and tests/ importable, no hub forced."""
    return python_env(PYTHONPATH=os.pathsep.join([str(STRESS_DIR), str(TESTS_DIR)]), **extra)


# -- scenario children --------------------------------------------------------------


@dataclass
class ChildRun:
    argv: list[str]
    returncode: int | None  # None: killed at the timeout
    seconds: float
    stdout: str
    stderr: str
    result: dict[str, Any] | None

    def describe(self) -> str:
        how = "killed at its timeout" if self.returncode is None else f"exit {self.returncode}"
        return (
            f"{' '.join(self.argv)}: {how} after {self.seconds:.1f} s\n"
            f"--- stdout (tail)\n{self.stdout[-4000:]}\n--- stderr (tail)\n{self.stderr[-8000:]}"
        )

    def require_result(self) -> dict[str, Any]:
        if self.result is None:
            pytest.fail(f"the scenario gave no result: {self.describe()}")
        return self.result


def child_argv(script: str, *args: str, patched: bool | None = None) -> list[str]:
    """How to run ``script`` (a file of this directory) in this run's mode."""
    if patched is None:
        patched = gevent_mode()
    runner = [sys.executable, "-X", "faulthandler"]
    if patched:
        runner += ["-m", "gevent.monkey"]
    return [*runner, str(STRESS_DIR / script), *args]


def run_child(
    script: str,
    *args: str,
    timeout: float,
    patched: bool | None = None,
    env: dict[str, str] | None = None,
) -> ChildRun:
    """Run a scenario; kill its whole process group after ``timeout`` seconds."""
    argv = child_argv(script, *args, patched=patched)
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        cwd=STRESS_DIR,
        env=env or stress_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    code: int | None
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        code = None
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    result = None
    for line in stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX) :])
    return ChildRun(argv, code, time.monotonic() - started, stdout, stderr, result)


# -- servers ------------------------------------------------------------------------------

_URL = re.compile(r"asgigreen serve: .* on http://127\.0\.0\.1:(\d+)")


@contextlib.contextmanager
def serve(app: str, tmp_path: Path, *extra: str, env: dict[str, str]) -> Iterator[int]:
    """``asgigreen serve app`` on a free port of 127.0.0.1; yields the port."""
    argv = [sys.executable, "-m", "asgigreen", "serve", app, "--port", "0", *extra]
    with Service(argv, tmp_path / "serve.log", env=env, cwd=STRESS_DIR) as service:
        deadline = time.monotonic() + 60
        port = 0
        while not port:
            found = _URL.search(service.output())
            if found:
                port = int(found.group(1))
                break
            if not service.alive() or time.monotonic() > deadline:
                pytest.fail(f"asgigreen serve did not start:\n{service.output()}")
            time.sleep(0.05)
        wait_until(lambda: http_get(port, "/ping", timeout=5)[0] == 200, "serve", service)
        yield port
        assert service.alive(), f"the server died:\n{service.output()}"


@contextlib.contextmanager
def gunicorn_gevent(app: str, tmp_path: Path, *, env: dict[str, str]) -> Iterator[int]:
    """``gunicorn -k gevent app`` (1 worker, 1000 connections); yields the port."""
    with gunicorn(app, "gevent", env, tmp_path, "--chdir", str(STRESS_DIR)) as (port, service):
        wait_until(lambda: http_get(port, "/ping", timeout=5)[0] == 200, "gunicorn", service)
        yield port
        assert service.alive(), f"gunicorn died:\n{service.output()}"


def first_lines(text: str, count: int = 3) -> str:
    return "\n".join(text.strip().splitlines()[:count])


def short(values: Sequence[Any], limit: int = 5) -> list[Any]:
    return list(values)[:limit]
