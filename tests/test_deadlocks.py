"""Deadlock reports: each cycle raises DeadlockError within a second, named.

Runs in both modes: plain (threads hub: workers are OS threads) and under
``python -m gevent.monkey --module pytest`` (gevent hub: greenlets). Each
test builds a real cycle through the bridges, checks the error comes within
a second and names the call sites on the cycle (found by the ``# site:``
markers below), and then checks the process goes on working: the withdrawn
call never ran, and a later call on the same worker succeeds.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from asgigreen import hubs
from asgigreen.sync import (
    DeadlockError,
    ThreadSensitiveContext,
    async_to_sync,
    sync_to_async,
)

pytestmark = pytest.mark.timeout(30)

_SOURCE = Path(__file__).read_text().splitlines()
#: Within this long of the cycle closing, the error must be raised.
LIMIT = 1.0


def site(marker: str) -> str:
    """``path:line`` of the line marked ``# site: <marker>`` in this file."""
    lines = [n for n, text in enumerate(_SOURCE, 1) if text.endswith(f"# site: {marker}")]
    assert len(lines) == 1, marker
    return f"{__file__}:{lines[0]}"


def assert_names(error: BaseException, *markers: str) -> None:
    message = str(error)
    for marker in markers:
        assert site(marker) in message, f"{marker} ({site(marker)}) not in:\n{message}"
    assert "Fix: " in message


# -- what the cycles are made of -------------------------------------------------

ran: list[str] = []


def leaf() -> str:
    ran.append("leaf")
    return "leaf ran"


async def loop_main() -> str:
    return await sync_to_async(leaf)()  # site: leaf


def run_own_loop() -> str:
    """A loop started without async_to_sync: its calls go to the shared worker."""
    return asyncio.run(loop_main())


def outcome_of(func: Callable[[], Any]) -> Callable[[], Any]:
    """``func``'s result, or the exception it raised, as a value."""

    def run() -> Any:
        try:
            return func()
        except BaseException as exc:
            return exc

    return run


async def later_call_succeeds() -> None:
    # The worker the withdrawn call waited for is free again and works.
    before = list(ran)
    assert await sync_to_async(leaf)() == "leaf ran"
    assert ran == [*before, "leaf"]


@pytest.fixture(autouse=True)
def _nothing_ran_yet() -> Iterator[None]:
    ran.clear()
    yield


class Clock:
    """Seconds since it was made."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self.started


# -- a thread-sensitive worker waiting for its own loop ----------------------------


@pytest.mark.asyncio
async def test_loop_started_inside_a_call_on_the_process_wide_worker() -> None:
    # asgiref's "would deadlock" case, with the cycle named.
    with pytest.raises(DeadlockError) as raised:
        await sync_to_async(run_own_loop)()  # site: outer own loop
    error = raised.value
    assert isinstance(error, RuntimeError)
    assert str(error).startswith("Single thread executor already being used, would deadlock")
    assert_names(error, "leaf", "outer own loop")
    assert "process-wide thread-sensitive worker" in str(error)
    assert "leaf" not in ran
    await later_call_succeeds()


@pytest.mark.asyncio
async def test_a_call_awaited_by_a_task_of_its_own_is_named_as_such() -> None:
    # The bridge's caller is then asyncio's own machinery, which says nothing.
    async def gathering() -> list[str]:
        return await asyncio.gather(sync_to_async(leaf)())

    with pytest.raises(DeadlockError) as raised:
        await sync_to_async(lambda: asyncio.run(gathering()))()
    message = str(raised.value)
    assert f"sync_to_async({__name__}.leaf) from <an asyncio task> can never run" in message
    assert os.path.dirname(asyncio.__file__) not in message
    await later_call_succeeds()


@pytest.mark.asyncio
async def test_loop_started_inside_a_call_on_a_thread_sensitive_context_worker() -> None:
    # asgiref hangs here: the context's worker runs the call that runs the loop.
    async with ThreadSensitiveContext():
        took = Clock()
        result = await sync_to_async(outcome_of(run_own_loop))()  # site: outer context loop
        assert isinstance(result, DeadlockError), result
        assert took() < LIMIT
        assert_names(result, "leaf", "outer context loop")
        assert "ThreadSensitiveContext's thread-sensitive worker" in str(result)
        assert "leaf" not in ran
        await later_call_succeeds()


def test_loop_started_inside_a_call_on_a_worker_parked_in_async_to_sync() -> None:
    # The call runs on the sync caller parked in async_to_sync; the loop it
    # starts sends its call to that same caller: asgiref's "own thread" error.
    async def outer() -> Any:
        return await sync_to_async(outcome_of(run_own_loop))()  # site: outer parked

    result = async_to_sync(outer)()
    assert isinstance(result, DeadlockError), result
    assert str(result).startswith("You cannot submit onto CurrentThreadExecutor")
    assert_names(result, "leaf", "outer parked")
    assert "leaf" not in ran


# -- a thread-sensitive worker waiting for a thread or greenlet that waits for it ----


def join_thread_running_loop() -> Any:
    outcome: list[Any] = []
    thread = threading.Thread(target=lambda: outcome.append(outcome_of(run_own_loop)()))
    thread.start()
    thread.join()  # site: join
    return outcome[0]


def join_context_thread_running_loop() -> Any:
    # The thread inherits the caller's context, ThreadSensitiveContext included.
    outcome: list[Any] = []
    context = contextvars.copy_context()
    thread = threading.Thread(
        target=context.run, args=(lambda: outcome.append(outcome_of(run_own_loop)()),)
    )
    thread.start()
    thread.join()  # site: join in context
    return outcome[0]


def wait_for_executor_job_running_loop() -> Any:
    with ThreadPoolExecutor(max_workers=1) as executor:
        return executor.submit(outcome_of(run_own_loop)).result()  # site: future


@pytest.mark.asyncio
async def test_process_wide_worker_joining_a_thread_that_runs_a_loop() -> None:
    took = Clock()
    result = await sync_to_async(join_thread_running_loop)()  # site: outer join
    assert isinstance(result, DeadlockError), result
    assert took() < LIMIT
    assert_names(result, "leaf", "outer join", "join")
    assert "Thread.join()" in str(result)
    assert "leaf" not in ran
    await later_call_succeeds()


@pytest.mark.asyncio
async def test_a_cycle_is_found_after_calls_have_queued_on_the_worker() -> None:
    # Calls that waited in line for the worker must not leave it looking idle.
    def briefly() -> None:
        time.sleep(0.05)

    await asyncio.gather(*(sync_to_async(briefly)() for _ in range(4)))
    took = Clock()
    result = await sync_to_async(join_thread_running_loop)()  # site: outer join again
    assert isinstance(result, DeadlockError), result
    assert took() < LIMIT
    assert_names(result, "leaf", "outer join again", "join")


@pytest.mark.asyncio
async def test_context_worker_joining_a_thread_that_inherited_the_context() -> None:
    async with ThreadSensitiveContext():
        took = Clock()
        result = await sync_to_async(join_context_thread_running_loop)()  # site: outer ctx join
        assert isinstance(result, DeadlockError), result
        assert took() < LIMIT
        assert_names(result, "leaf", "outer ctx join", "join in context")
        assert "leaf" not in ran
        await later_call_succeeds()


@pytest.mark.asyncio
async def test_process_wide_worker_waiting_for_an_executor_job_that_runs_a_loop() -> None:
    took = Clock()
    result = await sync_to_async(wait_for_executor_job_running_loop)()  # site: outer future
    assert isinstance(result, DeadlockError), result
    assert took() < LIMIT
    assert_names(result, "leaf", "outer future", "future")
    assert "Future.result()" in str(result)
    await later_call_succeeds()


@pytest.mark.gevent_only
@pytest.mark.asyncio
async def test_process_wide_worker_joining_a_greenlet_that_runs_a_loop() -> None:
    import gevent

    def join_greenlet() -> Any:
        greenlet = gevent.spawn(outcome_of(run_own_loop))
        greenlet.join()  # site: greenlet join
        return greenlet.value

    took = Clock()
    result = await sync_to_async(join_greenlet)()  # site: outer greenlet
    assert isinstance(result, DeadlockError), result
    assert took() < LIMIT
    assert_names(result, "leaf", "outer greenlet", "greenlet join")
    await later_call_succeeds()


# -- a bound used up by calls that wait for calls queued behind them --------------------


def _pool_bound() -> int:
    hub = hubs.get_hub()
    if hub.name == "gevent":
        return int(hub._pool.limit)  # type: ignore[attr-defined]
    return int(hub._default_pool()._max_workers)  # type: ignore[attr-defined]


@pytest.fixture
def small_pool() -> Iterator[int]:
    """The bound of the pool for thread_sensitive=False calls: 2 greenlets on
    the gevent hub; the threads hub's default pool as it is (a few threads)."""
    hub = hubs.get_hub()
    if hub.name != "gevent":
        yield _pool_bound()
        return
    from asgigreen.hubs.gevent import configure

    before = hub.max_greenlets  # type: ignore[attr-defined]
    configure(max_greenlets=2)
    try:
        yield 2
    finally:
        configure(max_greenlets=before)


async def free_leaf() -> str:
    return await sync_to_async(leaf, thread_sensitive=False)()  # site: free leaf


def make_slot_holder(barrier: threading.Barrier) -> Callable[[], str]:
    def hold_slot_then_call_back() -> str:
        # Every slot taken before any inner call queues.
        barrier.wait(timeout=10)
        return async_to_sync(free_leaf)()  # site: back to async

    return hold_slot_then_call_back


@pytest.mark.asyncio
async def test_every_slot_of_the_pool_waiting_for_a_call_queued_on_it(small_pool: int) -> None:
    barrier = threading.Barrier(small_pool)
    holder = sync_to_async(make_slot_holder(barrier), thread_sensitive=False)

    async def take_a_slot() -> str:
        return await holder()  # site: slot holder

    took = Clock()
    results = await asyncio.gather(
        *(take_a_slot() for _ in range(small_pool)), return_exceptions=True
    )
    errors = [result for result in results if isinstance(result, BaseException)]
    # One call is withdrawn; that breaks the cycle and the others complete.
    assert len(errors) == 1, results
    error = errors[0]
    assert isinstance(error, DeadlockError), error
    assert took() < LIMIT
    assert_names(error, "free leaf", "back to async", "slot holder")
    assert results.count("leaf ran") == small_pool - 1
    assert f"{small_pool} workers each wait" in str(error)
    await later_call_succeeds()
    assert await sync_to_async(leaf, thread_sensitive=False)() == "leaf ran"


# -- what is not a deadlock ------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_call_waiting_long_behind_a_long_call_is_not_reported() -> None:
    def long_call() -> str:
        # Joins a thread that has nothing to do with the bridges.
        thread = threading.Thread(target=time.sleep, args=(0.7,))
        thread.start()
        thread.join()
        return "long"

    first = asyncio.ensure_future(sync_to_async(long_call)())
    await asyncio.sleep(0.05)
    assert await sync_to_async(leaf)() == "leaf ran"
    assert await first == "long"


@pytest.mark.asyncio
async def test_a_full_pool_of_calls_that_end_on_their_own_is_not_reported(
    small_pool: int,
) -> None:
    def slow() -> str:
        time.sleep(0.3)  # gevent's under gevent.monkey
        return "slow"

    calls = [sync_to_async(slow, thread_sensitive=False)() for _ in range(small_pool * 3)]
    assert await asyncio.gather(*calls) == ["slow"] * (small_pool * 3)


@pytest.mark.asyncio
async def test_a_joined_thread_that_uses_async_to_sync_is_no_cycle() -> None:
    # Its thread-sensitive calls run on the thread itself, parked in
    # async_to_sync, not on the worker that joins it.
    def join_thread_using_async_to_sync() -> Any:
        outcome: list[Any] = []
        thread = threading.Thread(target=lambda: outcome.append(async_to_sync(loop_main)()))
        thread.start()
        thread.join()
        return outcome[0]

    assert await sync_to_async(join_thread_using_async_to_sync)() == "leaf ran"


@pytest.mark.asyncio
async def test_a_timeout_on_the_join_is_not_a_deadlock() -> None:
    # The sync function gives up on the thread after a while: no cycle.
    def join_with_timeout() -> str:
        outcome: list[Any] = []
        thread = threading.Thread(target=lambda: outcome.append(outcome_of(run_own_loop)()))
        thread.start()
        thread.join(0.6)
        return "gave up" if thread.is_alive() else f"joined: {outcome!r}"

    assert await sync_to_async(join_with_timeout)() == "gave up"
    # The loop's call then ran on the freed worker.
    for _ in range(100):
        if ran:
            break
        await asyncio.sleep(0.02)
    assert ran == ["leaf"]


@pytest.mark.asyncio
async def test_a_joined_loop_that_stops_without_waiting_for_the_call_is_not_reported() -> None:
    # The thread's loop runs a task that waits for a call queued behind the
    # joining worker, but the loop stops on its own: the join returns, and the
    # call runs afterwards.
    def run_loop_until_stopped() -> tuple[asyncio.AbstractEventLoop, asyncio.Task[str]]:
        loop = asyncio.new_event_loop()
        tasks: list[asyncio.Task[str]] = []

        def run() -> None:
            # The task made here, in the thread's own (empty) context.
            tasks.append(loop.create_task(loop_main()))
            loop.call_later(0.6, loop.stop)
            loop.run_forever()

        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
        return loop, tasks[0]

    loop, task = await sync_to_async(run_loop_until_stopped)()
    for _ in range(100):
        if ran:
            break
        await asyncio.sleep(0.02)
    assert ran == ["leaf"]

    def finish() -> str:
        try:
            return loop.run_until_complete(task)
        finally:
            loop.close()

    assert await sync_to_async(finish, thread_sensitive=False)() == "leaf ran"


# -- reading a blocked stack ---------------------------------------------------------


class _Joinable:
    """Reports which object its caller's frame is calling, as a wait would be read."""

    def join(self, *args: Any) -> Any:
        from asgigreen._stacks import called_without_arguments

        return called_without_arguments(sys._getframe(1), ("join", "get"))

    get = join
    other = join


_module_joinable = _Joinable()


def test_reading_which_object_a_stopped_frame_calls() -> None:
    # How a greenlet's join(), which leaves no frame, is read on the gevent hub.
    # (Calls outside assert statements, whose bytecode pytest rewrites.)
    local = _Joinable()
    joined, got = local.join(), local.get()
    assert joined is local
    assert got is local

    def inner() -> Any:
        return local.join()

    from_closure = inner()
    assert from_closure is local
    from_global = _module_joinable.join()
    assert from_global is _module_joinable
    # A timeout, or another method, is not a wait that can be followed.
    with_timeout, other = local.join(5), local.other()
    assert with_timeout is None
    assert other is None
