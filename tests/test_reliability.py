"""Faults found by using asgigreen the way production sites do, each pinned by a test.

Each test reproduces one defect in its smallest form: a stale outer loop,
interrupted calls, starvation, memory held per call, fork, disconnect order,
interpreter shutdown, threads piling up, mixing real asgiref in. The load
versions of the same faults live in tests/stress/.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from services import python_env

from asgigreen import hubs
from asgigreen.sync import ThreadSensitiveContext, async_to_sync, sync_to_async

pytestmark = pytest.mark.timeout(60)


def run_python(code: str, timeout: float = 30, **env: str) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter (patched first if this run is): its outcome."""
    if hubs.get_hub().name == "gevent":
        code = "import gevent.monkey\ngevent.monkey.patch_all()\n" + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=python_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# -- 1. a stale outer loop -------------------------------------------------------


@pytest.mark.gevent_only
def test_a_worker_does_not_keep_a_loop_it_left_as_its_outer_loop() -> None:
    # A greenlet whose async_to_sync coroutine awaited a thread-sensitive
    # sync_to_async (run back on that greenlet) once recorded that loop as
    # its outer loop for good. Another greenlet then reused the idle loop, and
    # the first greenlet's next async_to_sync was scheduled onto it and
    # cancelled when the other call ended.
    import gevent

    def touch() -> None:
        pass

    async def uses_the_caller() -> None:
        await sync_to_async(touch)()

    async def holds_a_loop(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "held"

    async def own_call() -> str:
        await asyncio.sleep(0.3)  # outlives the other greenlet's call
        return "mine"

    def first() -> str:
        async_to_sync(uses_the_caller)()
        gevent.sleep(0.05)  # meanwhile the other greenlet takes the idle loop
        return async_to_sync(own_call)()

    def second() -> str:
        return async_to_sync(holds_a_loop)(0.1)

    a = gevent.spawn(first)
    b = gevent.spawn_later(0.01, second)
    gevent.joinall([a, b], timeout=10)
    assert b.value == "held"
    assert a.successful(), a.exception
    assert a.value == "mine"


# -- 2. interrupted calls cancel their coroutine ---------------------------------------


@pytest.mark.gevent_only
@pytest.mark.parametrize("how", ["timeout", "kill"])
def test_an_interrupted_async_to_sync_cancels_its_coroutine(how: str) -> None:
    import gevent

    outcome: list[str] = []

    async def slow() -> str:
        try:
            await asyncio.sleep(5)
            outcome.append("finished")
            return "late"
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise

    def call() -> str:
        return async_to_sync(slow)()

    started = time.perf_counter()
    if how == "timeout":
        with pytest.raises(gevent.Timeout), gevent.Timeout(0.05):
            call()
    else:
        caller = gevent.spawn(call)
        gevent.sleep(0.05)
        caller.kill(block=True, timeout=5)
        assert caller.dead
    assert outcome == ["cancelled"]
    assert time.perf_counter() - started < 2


def test_an_async_to_sync_call_arriving_as_its_outer_loop_ends_is_cancelled_not_lost() -> None:
    # A worker's async_to_sync goes to the loop of the sync_to_async call it
    # runs in. Here that loop is already ending (its task was cancelled by
    # the loop's own clean-up) and runs on only while the cancelled task
    # unwinds: the call's task starts after the clean-up took its list of
    # tasks to cancel. It used to be left pending as the loop closed, and
    # the worker waited for it for ever.
    arrived = threading.Event()
    outcome: list[str] = []

    async def leaf() -> str:
        await asyncio.sleep(2)
        return "leaf finished"

    def sync_side() -> None:
        arrived.wait(5)
        try:
            outcome.append(async_to_sync(leaf)())
        except BaseException as exc:
            outcome.append(type(exc).__name__)

    async def background() -> None:
        try:
            await sync_to_async(sync_side, thread_sensitive=False)()
        except asyncio.CancelledError:
            arrived.set()
            await asyncio.sleep(0.3)  # the loop runs on while this task unwinds
            raise

    async def main() -> None:
        tasks.append(asyncio.get_running_loop().create_task(background()))
        await asyncio.sleep(0.05)  # background's call is under way

    tasks: list[asyncio.Task[None]] = []
    started = time.monotonic()
    async_to_sync(main)()
    while not outcome and time.monotonic() - started < 5:
        time.sleep(0.01)
    assert outcome == ["CancelledError"]
    assert time.monotonic() - started < 2


@pytest.mark.gevent_only
def test_polling_a_layer_under_gevent_timeouts_loses_no_message() -> None:
    # The gevent way to poll with a limit. An interrupted receive is
    # cancelled (the message stays queued), or, if it had already taken a
    # message, hands that message to the caller.
    import gevent

    from asgigreen.layers import InMemoryChannelLayer

    layer = InMemoryChannelLayer(capacity=1000)
    sent = 300
    received: list[int] = []

    def sender() -> None:
        for n in range(sent):
            async_to_sync(layer.send)("polled", {"type": "n", "n": n})
            gevent.sleep(0.001 if n % 3 else 0.03)

    def poller() -> None:
        deadline = time.monotonic() + 30
        while len(received) < sent and time.monotonic() < deadline:
            message = None
            with gevent.Timeout(0.02, False):
                message = async_to_sync(layer.receive)("polled")
            if message is not None:
                received.append(message["n"])

    gevent.joinall([gevent.spawn(sender), gevent.spawn(poller)], timeout=40)
    print(f"\n[layers] polled under 20 ms Timeouts: {len(received)}/{sent} received")
    assert received == list(range(sent))


# -- 3. starvation -----------------------------------------------------------------


@pytest.mark.gevent_only
def test_a_loop_with_ready_work_on_every_pass_lets_other_greenlets_run() -> None:
    import gevent

    ticks: list[float] = []
    ticking = True

    def ticker() -> None:
        while ticking:
            ticks.append(time.perf_counter())
            gevent.sleep(0.01)

    def on_the_caller() -> str:
        return "served"

    async def busy_beside_a_bridge_call() -> str:
        stop = False

        async def spin() -> None:
            while not stop:
                await asyncio.sleep(0)

        spinner = asyncio.get_running_loop().create_task(spin())
        try:
            # Thread-sensitive: runs back on the greenlet blocked in
            # async_to_sync, which needs the hub to be woken.
            return await asyncio.wait_for(sync_to_async(on_the_caller)(), 5)
        finally:
            await asyncio.sleep(0.3)  # keep spinning a while longer
            stop = True
            await spinner

    watcher = gevent.spawn(ticker)
    gevent.sleep(0.02)
    try:
        result = async_to_sync(busy_beside_a_bridge_call)()
    finally:
        ticking = False
        watcher.join(2)
    gaps = [later - earlier for earlier, later in itertools.pairwise(ticks)]
    worst = max(gaps)
    print(f"\n[starvation] {len(ticks)} ticks, worst gap {worst * 1000:.1f} ms")
    assert result == "served"
    assert worst < 0.1


# -- 5. fork ------------------------------------------------------------------------

FORK = """
import asyncio, gc, os
from asgigreen.sync import async_to_sync, sync_to_async

async def ping():
    return "pong"

assert async_to_sync(ping)() == "pong"  # leaves an idle loop behind
pid = os.fork()
if pid == 0:
    async def main():
        return await sync_to_async(lambda: 42)()
    try:
        print("child", asyncio.run(main()), async_to_sync(ping)(), flush=True)
        gc.collect()  # the loops abandoned at fork are collected here
        print("child ok", flush=True)
    except BaseException as exc:
        print("child failed", repr(exc), flush=True)
        os._exit(1)
    os._exit(0)
_, status = os.waitpid(pid, 0)
print("child exit", os.waitstatus_to_exitcode(status), "parent", async_to_sync(ping)(), flush=True)
"""


def test_a_forked_child_runs_the_bridges_without_touching_the_parents_loops() -> None:
    done = run_python(FORK)
    print(f"\n[fork] {done.stdout.strip()!r}")
    assert done.returncode == 0, done.stderr
    assert "child 42 pong" in done.stdout and "child ok" in done.stdout, done.stdout
    assert "child exit 0 parent pong" in done.stdout, done.stdout
    assert "Exception ignored" not in done.stderr, done.stderr
    assert "Bad file descriptor" not in done.stderr, done.stderr


# -- 6. awaiting a bridge call lets the loop's other tasks run ---------------------


@pytest.mark.asyncio
async def test_awaiting_sync_to_async_lets_other_ready_tasks_run_first() -> None:
    # asgiref's result comes back through the loop, so tasks already ready
    # (Django's disconnect listener) run before the caller resumes.
    order: list[str] = []

    async def other() -> None:
        order.append("other task")

    def quick() -> None:
        pass

    for thread_sensitive in (True, False):
        order.clear()
        task = asyncio.get_running_loop().create_task(other())
        await sync_to_async(quick, thread_sensitive=thread_sensitive)()
        order.append("after the call")
        await task
        assert order == ["other task", "after the call"], thread_sensitive


# -- 8. interpreter shutdown -------------------------------------------------------

SHUTDOWN_ATEXIT = """
import asyncio, atexit, time
from asgigreen.sync import sync_to_async

def late():
    started = time.monotonic()
    try:
        result = asyncio.run(sync_to_async(lambda: 42)())
        print("result", result, flush=True)
    except RuntimeError as exc:
        print("refused", exc, flush=True)
    print("took", round(time.monotonic() - started, 2), flush=True)

# Used once before exit, so its workers exist and sit idle at exit.
asyncio.run(sync_to_async(lambda: 1)())
asyncio.run(sync_to_async(lambda: 1, thread_sensitive=False)())
atexit.register(late)
"""

SHUTDOWN_THREAD = """
import asyncio, threading, time
from asgigreen.sync import sync_to_async

asyncio.run(sync_to_async(lambda: 1)())

def straggler():
    time.sleep(0.3)  # still running after the main thread returned
    try:
        print("result", asyncio.run(sync_to_async(lambda: 42)()), flush=True)
    except RuntimeError as exc:
        print("refused", exc, flush=True)

threading.Thread(target=straggler).start()
"""


@pytest.mark.parametrize("where", ["atexit", "thread"])
def test_sync_to_async_at_interpreter_shutdown_does_not_hang(where: str) -> None:
    code = SHUTDOWN_ATEXIT if where == "atexit" else SHUTDOWN_THREAD
    started = time.monotonic()
    done = run_python(code, timeout=20)
    elapsed = time.monotonic() - started
    print(f"\n[shutdown] {where}: {done.stdout.strip()!r} in {elapsed:.2f} s")
    assert done.returncode == 0, done.stderr
    assert "result 42" in done.stdout or (
        "refused cannot schedule new futures after interpreter shutdown" in done.stdout
    ), done.stdout + done.stderr
    assert elapsed < 5


# -- 9. threads pile up --------------------------------------------------------------


def _native_threads() -> int:
    return len(os.listdir("/proc/self/task"))


@pytest.mark.threads_only
def test_thread_sensitive_contexts_do_not_leave_threads_behind() -> None:
    def where() -> int:
        return threading.get_ident()

    async def one_request() -> int:
        async with ThreadSensitiveContext():
            return await sync_to_async(where)()

    async def rounds() -> list[int]:
        counts = []
        for _ in range(5):
            await asyncio.gather(*[one_request() for _ in range(300)])
            counts.append(_native_threads())
        return counts

    before = _native_threads()
    counts = asyncio.run(rounds())
    for _ in range(50):
        if _native_threads() <= before + 40:
            break
        time.sleep(0.1)
    after = _native_threads()
    print(f"\n[threads] before {before}, after each round {counts}, settled {after}")
    assert after <= before + 40, counts


# -- 4. memory held per call ---------------------------------------------------------


def _count_growth(calls: int, run: Callable[[int], Any]) -> float:
    run(2000)  # warm up: pools, caches, idle loops
    gc.collect()
    before = len(gc.get_objects())
    run(calls)
    gc.collect()
    return (len(gc.get_objects()) - before) / calls


def test_sync_to_async_calls_in_one_task_hold_nothing_per_call() -> None:
    def work() -> int:
        return 1

    call = sync_to_async(work)

    def run(n: int) -> None:
        async def many() -> None:
            baseline = len(gc.get_objects())
            for i in range(n):
                await call()
                # Measured while the loop is still busy: nothing may pile
                # up waiting for it to go idle.
                if i == n - 1:
                    held.append(len(gc.get_objects()) - baseline)

        held: list[int] = []
        asyncio.run(many())
        per_call_while_busy.append(held[0] / n)

    per_call_while_busy: list[float] = []
    per_call = _count_growth(20_000, run)
    print(
        f"\n[memory] sync_to_async x20000 in one task: {per_call_while_busy[-1]:.3f} objects "
        f"per call while busy, {per_call:.4f} after"
    )
    assert per_call_while_busy[-1] < 0.05
    assert per_call < 0.01


def test_async_to_sync_calls_from_sync_code_hold_nothing_per_call() -> None:
    async def work() -> int:
        return 1

    call = async_to_sync(work)

    def run(n: int) -> None:
        for _ in range(n):
            call()

    per_call = _count_growth(10_000, run)
    print(f"\n[memory] async_to_sync x10000 from sync code: {per_call:.4f} objects per call")
    assert per_call < 0.01


# -- 10. real asgiref beside asgigreen -------------------------------------------------

MIXED = """
import asyncio
import asgiref.sync as real
import asgigreen.sync as green

def work():
    return "ran"

async def inner_green():
    return await green.sync_to_async(work)()

async def inner_real():
    return await real.sync_to_async(work)()

for name, outer, inner in (
    ("asgiref a2s -> asgigreen s2a", real.async_to_sync, inner_green),
    ("asgigreen a2s -> asgiref s2a", green.async_to_sync, inner_real),
):
    try:
        print(name, "returned", outer(inner)(), flush=True)
    except RuntimeError as exc:
        print(name, "refused:", "install_as_asgiref()" in str(exc), flush=True)
# Each library on its own still works.
print("alone", real.async_to_sync(inner_real)(), green.async_to_sync(inner_green)(), flush=True)
"""


def test_mixing_real_asgiref_and_asgigreen_bridges_fails_saying_what_to_do() -> None:
    done = run_python(MIXED)
    print(f"\n[mixed] {done.stdout.strip()!r}")
    assert done.returncode == 0, done.stderr
    assert "asgiref a2s -> asgigreen s2a refused: True" in done.stdout
    assert "asgigreen a2s -> asgiref s2a refused: True" in done.stdout
    assert "alone ran ran" in done.stdout
