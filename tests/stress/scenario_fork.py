"""fork() while bridge calls are in flight, then both processes carry on.

Run by ``test_stress_fork.py`` in this run's mode::

    [python -m gevent.monkey] scenario_fork.py

The parent makes ``async_to_sync`` and ``sync_to_async`` calls, starts 10
callers (greenlets when patched, threads otherwise) making
``async_to_sync`` calls back to back, each awaiting 20 ms, and forks while
they are at it, ``FORKS`` times, one child after the other.

Each child (its stderr is the parent's) tells inherited callers to stop,
then, twice: runs ``asyncio.run()`` of a coroutine awaiting
``sync_to_async`` (thread-sensitive, not, and one nesting
``async_to_sync``), makes an ``async_to_sync`` call from sync code and
collects garbage; then it exits through the normal interpreter shutdown.
The parent waits for each child (killing it after 20 s) and makes more
calls of both bridges while its callers keep going; in the end it stops
them. Reported: each child's results and exit status, the parent's call
counts; the test reads the stderr both wrote.
"""

from __future__ import annotations

import asyncio
import atexit
import faulthandler
import gc
import json
import os
import signal
import sys
import tempfile
import threading
import time
from typing import Any

from stress_census import emit, patched

from asgigreen.sync import async_to_sync, sync_to_async

PATCHED = patched()
if PATCHED:
    import gevent

CALLERS = 10
FORKS = 5
CHILD_EXPECTED = {
    f"{what}_{round_}": value
    for round_ in (1, 2)
    for what, value in (("asyncio_run", [21, 21, 15]), ("async_to_sync", 10))
}
CHILD_TIMEOUT = 20.0
stop = False
counts = {"ok": 0, "wrong": 0, "error": 0}
errors: list[str] = []


async def double_later(n: int) -> int:
    await asyncio.sleep(0.02)
    return 2 * n


def triple(n: int) -> int:
    return 3 * n


def nested(n: int) -> int:
    return async_to_sync(double_later)(n) + 1


async def bridge_calls(n: int) -> list[int]:
    return [
        await sync_to_async(triple)(n),
        await sync_to_async(triple, thread_sensitive=False)(n),
        await sync_to_async(nested)(n),
    ]


def caller(number: int) -> None:
    while not stop:
        try:
            value = async_to_sync(double_later)(number)
        except Exception as exc:
            counts["error"] += 1
            if len(errors) < 5:
                errors.append(repr(exc))
            continue
        counts["ok" if value == 2 * number else "wrong"] += 1


def sleep(seconds: float) -> None:
    time.sleep(seconds)  # cooperative when patched


def child(result_path: str) -> None:
    global stop
    stop = True  # inherited callers (greenlets) end after their current call
    # The child's stderr stays the parent's (the test reads both): opening a
    # file of its own here would shift the descriptor numbers the child
    # reuses, and a stale descriptor closed twice would then go unnoticed.
    os.write(2, b"scenario_fork: child starts\n")
    # Where the child is stuck, if it is: the parent sends SIGUSR2 before it
    # kills it.
    faulthandler.register(signal.SIGUSR2, all_threads=True)
    outcome: dict[str, Any] = {}
    try:
        for round_ in (1, 2):
            outcome[f"asyncio_run_{round_}"] = asyncio.run(bridge_calls(7))
            outcome[f"async_to_sync_{round_}"] = async_to_sync(double_later)(5)
            # What the fork left behind is collected here; the second round
            # then uses descriptors whose numbers the first may have reused.
            gc.collect()
    except BaseException as exc:
        outcome["error"] = repr(exc)
    with open(result_path, "w") as out:
        json.dump(outcome, out)
    # Through the normal shutdown: what it finalises may complain on stderr.
    atexit.register(os.write, 2, b"scenario_fork: child exits\n")


def wait_for_child(pid: int, timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        sleep(0.02)
    os.kill(pid, signal.SIGUSR2)
    sleep(1)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


def main() -> None:
    # No faulthandler watchdog here (dump_traceback_later): its thread is not
    # inherited, and a child then hangs for good cancelling it at exit, a
    # CPython limitation that has nothing to do with the bridges. The test's
    # timeout is the backstop.
    workdir = tempfile.mkdtemp(prefix="stress-fork-")
    # The bridges have run here before the fork: pools, workers, idle loops exist.
    before_fork = [async_to_sync(double_later)(1), asyncio.run(bridge_calls(1))]
    if PATCHED:
        callers = [gevent.spawn(caller, number) for number in range(CALLERS)]
    else:
        callers = [threading.Thread(target=caller, args=(n,), daemon=True) for n in range(CALLERS)]
        for thread in callers:
            thread.start()
    children: list[dict[str, Any]] = []
    after_fork = []
    for number in range(FORKS):
        sleep(0.1)  # callers mid-call
        result_path = os.path.join(workdir, f"child-{number}.json")
        calls_done = counts["ok"]
        pid = os.fork()
        if pid == 0:
            child(result_path)
            sys.exit(0)
        started = time.monotonic()
        status = wait_for_child(pid, CHILD_TIMEOUT)
        seconds = time.monotonic() - started
        try:
            with open(result_path) as result_file:
                outcome = json.load(result_file)
        except (OSError, ValueError) as exc:
            outcome = {"error": f"no result: {exc!r}"}
        children.append(
            {
                "status": status,
                "seconds": round(seconds, 2),
                "parent_calls_done_at_fork": calls_done,
                "ok": outcome == CHILD_EXPECTED,
                "outcome": outcome,
            }
        )
        # The parent carries on, its callers still going.
        for n in range(10):
            after_fork.append(async_to_sync(double_later)(n) == 2 * n)
            after_fork.append(asyncio.run(bridge_calls(n)) == [3 * n, 3 * n, 2 * n + 1])
    global stop
    stop = True
    if PATCHED:
        gevent.joinall(callers, timeout=10)
        stuck = sum(not g.dead for g in callers)
    else:
        for thread in callers:
            thread.join(10)
        stuck = sum(t.is_alive() for t in callers)
    emit(
        {
            "before_fork": before_fork,
            "children": children,
            "children_ok": sum(c["ok"] and c["status"] == 0 for c in children),
            "parent_after_fork_ok": sum(after_fork),
            "parent_after_fork_total": len(after_fork),
            "parent_callers": counts,
            "parent_caller_errors": errors,
            "parent_callers_stuck": stuck,
        }
    )


if __name__ == "__main__":
    main()
