"""``sync_to_async`` at interpreter shutdown, from atexit and from a late thread.

``scenario_shutdown.py`` in a fresh process of this run's mode: the process
must exit (status 0) within 2 s of its main module ending, each late call
either returning 42 or raising RuntimeError('cannot schedule new futures
after interpreter shutdown') as asgiref does, never hanging. The child is
killed after 20 s. In the plain run asgiref's figures are printed beside
asgigreen's (not asserted).
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from stress_support import gevent_mode, mode_name, run_child

pytestmark = pytest.mark.timeout(90)

MAX_EXIT_SECONDS = 2.0
REFUSED = "refused cannot schedule new futures after interpreter shutdown"


def _shutdown(where: str, library: str) -> tuple[Any, float | None, list[str]]:
    run = run_child("scenario_shutdown.py", where, library, timeout=20)
    exited = time.monotonic()
    found = re.search(r"main-done (\d+\.\d+)", run.stdout)
    seconds = exited - float(found.group(1)) if found and run.returncode is not None else None
    outcomes = [line for line in run.stdout.splitlines() if "sensitive:" in line]
    return run, seconds, outcomes


@pytest.mark.parametrize("where", ["atexit", "thread"])
def test_sync_to_async_at_interpreter_shutdown(where: str, say: Any) -> None:
    run, seconds, outcomes = _shutdown(where, "asgigreen")
    line = (
        f"shutdown {where} {mode_name()}: "
        + ("hung (killed after 20 s)" if seconds is None else f"exited in {seconds:.2f} s")
        + f", exit {run.returncode}; {outcomes}"
    )
    if not gevent_mode():
        _, ref_seconds, ref_outcomes = _shutdown(where, "asgiref")
        ref_time = "hung" if ref_seconds is None else f"{ref_seconds:.2f} s"
        line += f"; asgiref: {ref_time}, {ref_outcomes}"
    say(line)
    assert seconds is not None, f"the process hung at exit: {run.describe()}"
    assert run.returncode == 0, run.describe()
    assert seconds < MAX_EXIT_SECONDS, f"exit took {seconds:.2f} s"
    assert len(outcomes) == 2, run.describe()
    for outcome in outcomes:
        answer = outcome.split(": ", 1)[1]
        assert answer.startswith("result 42") or answer.startswith(REFUSED), outcome
