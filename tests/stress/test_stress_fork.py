"""fork() with bridge calls in flight, in both modes (``scenario_fork.py``).

Five children, each forked while 10 callers are inside ``async_to_sync``:
each must run both bridges (twice, with a garbage collection between) and
exit 0; nobody may write "Bad file descriptor", "Exception ignored" or a
traceback to stderr (the children share the parent's); the parent's calls
after each fork and its callers' calls must all succeed.
"""

from __future__ import annotations

from typing import Any

import pytest
from stress_support import mode_name, run_child

pytestmark = pytest.mark.timeout(150)

BAD = ("Bad file descriptor", "Exception ignored", "Traceback")


def test_fork_with_calls_in_flight(say: Any) -> None:
    run = run_child("scenario_fork.py", timeout=120)
    result = run.require_result()
    stderr = run.stderr
    found = {marker: stderr.count(marker) for marker in BAD if marker in stderr}
    children = result["children"]
    callers = result["parent_callers"]
    say(
        f"fork {mode_name()}: {result['children_ok']}/{len(children)} children ran both "
        f"bridges and exited 0 (statuses {[c['status'] for c in children]}, "
        f"{max(c['seconds'] for c in children)} s at most); stderr markers {found or 'none'}; "
        f"parent after the forks {result['parent_after_fork_ok']}/"
        f"{result['parent_after_fork_total']} ok, its callers {callers}, "
        f"{result['parent_callers_stuck']} stuck"
    )
    problems = []
    if found:
        problems.append(f"stderr has {found}:\n{stderr[-6000:]}")
    bad_children = [c for c in children if not (c["ok"] and c["status"] == 0)]
    if bad_children:
        problems.append(f"children that failed: {bad_children}")
    if result["parent_after_fork_ok"] != result["parent_after_fork_total"]:
        problems.append("the parent's calls after a fork failed")
    if callers["wrong"] or callers["error"] or result["parent_callers_stuck"]:
        problems.append(f"the parent's callers: {callers}, {result['parent_caller_errors']}")
    if run.returncode != 0:
        problems.append(run.describe())
    assert not problems, "\n".join(problems)
