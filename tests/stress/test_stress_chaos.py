"""Nested chaos of both bridges: every call's outcome checked, nothing left pending.

The scenario is ``scenario_chaos.py`` (its docstring has the chain, the
interruptions and the verdicts), run in a fresh process in this run's mode:
200 greenlets for 12 s with gevent Timeouts, kills and task cancellations
when patched; 40 threads for 10 s with task cancellations and
``asyncio.wait_for`` timeouts in a plain process.
"""

from __future__ import annotations

from typing import Any

import pytest
from stress_support import run_child

GEVENT_SECONDS, GEVENT_WORKERS = 12, 200
THREADS_SECONDS, THREADS_WORKERS = 10, 40


def _figures(result: dict[str, Any]) -> str:
    base, after = result["baseline"], result["after"]
    return (
        f"{result['calls']} calls by {result['workers']} {result['mode']} workers in "
        f"{result['seconds']} s; verdicts {result['verdicts']}; interrupted "
        f"{result['interrupted_by']}; coroutines {result['coroutine_states']}; afterwards "
        f"tasks pending {after['tasks_pending']}, loops running {after['loops_running']}, "
        f"loops open {after['loops_open']} (idle {after['loops_idle']}), busy greenlets "
        f"{after['greenlets_busy']} (before {base['greenlets_busy']}), threads "
        f"{base['threads']} -> {after['threads']}, fds {base['fds']} -> {after['fds']}; "
        f"100 calls after: {result['final_ok']} ok"
    )


def _check(result: dict[str, Any]) -> None:
    verdicts = dict(result["verdicts"])
    ok = verdicts.pop("ok", 0)
    samples = "\n".join(
        f"  {kind}: {line}" for kind, lines in result["samples"].items() for line in lines
    )
    problems = []
    if verdicts:
        problems.append(f"{ok}/{result['calls']} ok, and {verdicts}:\n{samples}")
    if result["stuck_callers"]:
        problems.append(f"{result['stuck_callers']} callers never finished")
    base, after = result["baseline"], result["after"]
    for key in ("tasks_pending", "loops_running", "greenlets_busy"):
        if after[key] > base[key]:
            problems.append(f"{key}: {base[key]} after the warm-up, {after[key]} at the end")
    # Loops the hub keeps idle for reuse hold 3 descriptors each; others, none.
    busy_loops = after["loops_open"] - after["loops_idle"]
    if busy_loops > base["loops_open"] - base["loops_idle"]:
        problems.append(f"{busy_loops} loops open that the hub does not keep idle")
    fd_allowance = 3 * max(0, after["loops_idle"] - base["loops_idle"]) + 5
    if after["fds"] > base["fds"] + fd_allowance:
        problems.append(f"descriptors {base['fds']} -> {after['fds']} (allowed +{fd_allowance})")
    if result["final_ok"] != 100:
        problems.append(f"only {result['final_ok']}/100 plain calls worked afterwards")
    if problems and result.get("stuck_stacks"):
        problems.append("where some of what is left waits:\n" + "\n".join(result["stuck_stacks"]))
    assert not problems, "\n".join(problems)


@pytest.mark.gevent_only
@pytest.mark.timeout(GEVENT_SECONDS + 120)
def test_nested_chaos_greenlets(say: Any) -> None:
    run = run_child(
        "scenario_chaos.py",
        str(GEVENT_SECONDS),
        str(GEVENT_WORKERS),
        "1",
        timeout=GEVENT_SECONDS + 100,
    )
    result = run.require_result()
    say(f"chaos gevent: {_figures(result)}")
    _check(result)


@pytest.mark.threads_only
@pytest.mark.timeout(THREADS_SECONDS + 120)
def test_nested_chaos_threads(say: Any) -> None:
    run = run_child(
        "scenario_chaos.py",
        str(THREADS_SECONDS),
        str(THREADS_WORKERS),
        "1",
        timeout=THREADS_SECONDS + 100,
    )
    result = run.require_result()
    say(f"chaos threads: {_figures(result)}")
    _check(result)
