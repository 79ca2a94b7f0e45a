"""The bridges: sync_to_async, async_to_sync and the contexts that steer them.

Every test here runs in both modes (threads hub and gevent hub) unless
marked otherwise; worker identity is always asked of the hub.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import gc
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from asgigreen import hubs
from asgigreen.sync import (
    AsyncSingleThreadContext,
    AsyncToSync,
    SyncToAsync,
    ThreadSensitiveContext,
    async_to_sync,
    iscoroutinefunction,
    sync_to_async,
)

pytestmark = pytest.mark.timeout(30)

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")


def worker_id() -> int:
    return hubs.get_hub().worker_id()


def frame_names(exc: BaseException) -> list[str]:
    return [frame.name for frame in traceback.extract_tb(exc.__traceback__)]


class Concurrency:
    """Counts how many calls are inside ``during()`` at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0

    def during(self, seconds: float) -> None:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        try:
            time.sleep(seconds)
        finally:
            with self.lock:
                self.now -= 1


# -- results and wrapping -------------------------------------------------------


@pytest.mark.asyncio
async def test_sync_to_async_returns_the_result_and_passes_arguments() -> None:
    def combine(a: int, b: int, *, scale: int) -> tuple[int, int]:
        return (a + b) * scale, worker_id()

    total, where = await sync_to_async(combine)(2, 3, scale=10)
    assert total == 50
    assert where != worker_id()


@pytest.mark.asyncio
async def test_sync_to_async_decorator_forms_and_metadata() -> None:
    @sync_to_async
    def plain(x: int) -> int:
        """Doubles."""
        return x * 2

    @sync_to_async(thread_sensitive=False)
    def configured(x: int) -> int:
        return x * 3

    assert await plain(4) == 8
    assert await configured(4) == 12
    assert iscoroutinefunction(plain)
    assert iscoroutinefunction(configured)
    assert plain.__name__ == "plain"
    assert plain.__doc__ == "Doubles."


@pytest.mark.asyncio
async def test_sync_to_async_binds_as_a_method() -> None:
    class Account:
        def __init__(self, balance: int) -> None:
            self.balance = balance

        @sync_to_async
        def deposit(self, amount: int) -> int:
            self.balance += amount
            return self.balance

    account = Account(5)
    assert await account.deposit(7) == 12
    assert account.balance == 12


def test_async_to_sync_returns_the_result_and_passes_arguments() -> None:
    async def combine(a: int, b: int, *, scale: int) -> int:
        await asyncio.sleep(0)
        return (a + b) * scale

    assert async_to_sync(combine)(2, 3, scale=10) == 50


def test_async_to_sync_decorator_forms_and_method_binding() -> None:
    @async_to_sync
    async def plain(x: int) -> int:
        return x + 1

    @async_to_sync(force_new_loop=True)
    async def configured(x: int) -> int:
        return x + 2

    class Greeter:
        def __init__(self, name: str) -> None:
            self.name = name

        @async_to_sync
        async def greet(self, greeting: str) -> str:
            await asyncio.sleep(0)
            return f"{greeting}, {self.name}"

    assert plain(1) == 2
    assert configured(1) == 3
    assert Greeter("Ada").greet("Hello") == "Hello, Ada"


def test_async_to_sync_accepts_an_async_callable_object_and_a_partial() -> None:
    class Adder:
        async def __call__(self, a: int, b: int) -> int:
            return a + b

    async def power(base: int, exponent: int) -> int:
        return base**exponent

    assert async_to_sync(Adder())(20, 22) == 42
    assert async_to_sync(functools.partial(power, 2))(10) == 1024


def test_async_to_sync_warns_about_a_plain_function_but_still_awaits_it() -> None:
    async def coroutine() -> str:
        return "awaited"

    def returns_a_coroutine() -> Any:
        return coroutine()

    with pytest.warns(UserWarning, match="non-async-marked callable"):
        wrapped = async_to_sync(returns_a_coroutine)
    assert wrapped() == "awaited"


def test_many_concurrent_sync_callers_each_get_their_own_result() -> None:
    async def echo(value: int) -> tuple[int, int]:
        await asyncio.sleep(0.01)
        return value, value * value

    results: dict[int, tuple[int, int]] = {}

    def caller(value: int) -> None:
        results[value] = async_to_sync(echo)(value)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == {n: (n, n * n) for n in range(20)}


# -- exceptions -----------------------------------------------------------------


class Boom(Exception):
    pass


@pytest.mark.asyncio
async def test_sync_to_async_raises_the_original_exception_with_its_traceback() -> None:
    def explode_in_sync(n: int) -> None:
        raise Boom(f"sync {n}")

    with pytest.raises(Boom, match="sync 7") as caught:
        await sync_to_async(explode_in_sync)(7)
    assert "explode_in_sync" in frame_names(caught.value)


def test_async_to_sync_raises_the_original_exception_with_its_traceback() -> None:
    async def explode_in_async(n: int) -> None:
        await asyncio.sleep(0)
        raise Boom(f"async {n}")

    with pytest.raises(Boom, match="async 3") as caught:
        async_to_sync(explode_in_async)(3)
    assert "explode_in_async" in frame_names(caught.value)


def test_exception_crosses_nested_bridges_with_the_deepest_frame() -> None:
    def deepest() -> None:
        raise KeyError("missing")

    async def middle() -> None:
        await sync_to_async(deepest)()

    with pytest.raises(KeyError) as caught:
        async_to_sync(middle)()
    names = frame_names(caught.value)
    assert "middle" in names
    assert names[-1] == "deepest"


@pytest.mark.asyncio
async def test_sync_code_sees_the_exception_being_handled_by_its_async_caller() -> None:
    def current_exception() -> BaseException | None:
        return sys.exc_info()[1]

    try:
        raise Boom("handled")
    except Boom as handled:
        seen = await sync_to_async(current_exception)()
        assert seen is handled
    assert await sync_to_async(current_exception)() is None


def test_async_code_sees_the_exception_being_handled_by_its_sync_caller() -> None:
    async def current_exception() -> BaseException | None:
        return sys.exc_info()[1]

    try:
        raise Boom("handled")
    except Boom as handled:
        assert async_to_sync(current_exception)() is handled
    assert async_to_sync(current_exception)() is None


# -- misuse ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_async_to_sync_refuses_to_run_inside_a_running_event_loop() -> None:
    async def noop() -> None:
        pass

    with pytest.raises(RuntimeError, match="cannot use AsyncToSync in the same thread"):
        async_to_sync(noop)()


def test_sync_to_async_refuses_async_functions() -> None:
    async def already_async() -> None:
        pass

    class AsyncCallable:
        async def __call__(self) -> None:
            pass

    with pytest.raises(TypeError, match="can only be applied to sync functions"):
        sync_to_async(already_async)
    with pytest.raises(TypeError, match="can only be applied to sync functions"):
        sync_to_async(AsyncCallable())
    with pytest.raises(TypeError, match="can only be applied to sync functions"):
        SyncToAsync(already_async)


def test_executor_is_refused_for_thread_sensitive_calls() -> None:
    with ThreadPoolExecutor(max_workers=1) as executor:
        with pytest.raises(TypeError, match="executor must not be set when thread_sensitive"):
            sync_to_async(time.monotonic, executor=executor)
        with pytest.raises(TypeError, match="executor must not be set when thread_sensitive"):
            sync_to_async(time.monotonic, thread_sensitive=True, executor=executor)
        # Allowed once the call is not thread-sensitive.
        sync_to_async(time.monotonic, thread_sensitive=False, executor=executor)


@pytest.mark.asyncio
async def test_thread_sensitive_call_that_would_wait_for_its_own_worker_raises() -> None:
    # On the process-wide worker, a fresh event loop (not async_to_sync) that
    # asks for the same worker again would wait for itself forever.
    async def again() -> int:
        return await sync_to_async(worker_id)()

    def start_own_loop() -> int:
        return asyncio.run(again())

    with pytest.raises(RuntimeError, match="would deadlock"):
        await sync_to_async(start_own_loop)()


@pytest.mark.asyncio
async def test_executor_given_for_non_thread_sensitive_calls_is_used() -> None:
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mine") as executor:
        pool_worker = executor.submit(worker_id).result(5)
        ran_on = await sync_to_async(worker_id, thread_sensitive=False, executor=executor)()
        with pytest.raises(Boom, match="on the given executor"):
            await asyncio.wait_for(
                sync_to_async(raise_boom, thread_sensitive=False, executor=executor)(
                    "on the given executor"
                ),
                5,
            )
    assert ran_on == pool_worker


def raise_boom(message: str) -> None:
    raise Boom(message)


# -- memory -------------------------------------------------------------------


class Payload:
    pass


def settle_and_collect() -> None:
    """Let pending gevent callbacks run (if patched), then collect garbage."""
    if hubs.get_hub().name == "gevent":
        import gevent

        gevent.sleep(0)
        gevent.sleep(0)
    for _ in range(3):
        gc.collect()


@pytest.mark.asyncio
@pytest.mark.parametrize("thread_sensitive", [True, False])
async def test_a_finished_call_does_not_keep_its_argument_and_result_alive(
    thread_sensitive: bool,
) -> None:
    refs: list[weakref.ref[Payload]] = []

    def make() -> Payload:
        payload = Payload()
        refs.append(weakref.ref(payload))
        return payload

    def transform(argument: Payload) -> Payload:
        return make()

    result = await sync_to_async(transform, thread_sensitive=thread_sensitive)(make())
    assert isinstance(result, Payload)
    del result
    # asyncio keeps the awaited future (and so the result) until this step ends.
    await asyncio.sleep(0)
    settle_and_collect()
    assert [ref() for ref in refs] == [None, None]


# -- cancellation ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_cancelling_the_awaiting_task_does_not_interrupt_the_sync_code() -> None:
    started = threading.Event()
    release = threading.Event()
    finished = threading.Event()

    def slow() -> str:
        started.set()
        release.wait(5)
        finished.set()
        return "done"

    task = asyncio.ensure_future(sync_to_async(slow, thread_sensitive=False)())
    while not started.is_set():
        await asyncio.sleep(0.005)
    task.cancel()
    began = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - began < 1
    assert task.cancelled()
    assert not finished.is_set()
    release.set()
    # The sync code ran on to its end regardless.
    for _ in range(500):
        if finished.is_set():
            break
        await asyncio.sleep(0.01)
    assert finished.is_set()


@pytest.mark.asyncio
async def test_cancelling_a_queued_thread_sensitive_call_means_it_never_runs() -> None:
    release = threading.Event()
    started = threading.Event()
    ran: list[str] = []

    def occupy() -> None:
        started.set()
        release.wait(5)
        ran.append("occupy")

    def record(name: str) -> None:
        ran.append(name)

    first = asyncio.ensure_future(sync_to_async(occupy)())
    while not started.is_set():
        await asyncio.sleep(0.005)
    queued = asyncio.ensure_future(sync_to_async(record)("queued"))
    await asyncio.sleep(0.02)
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    release.set()
    await first
    # Same worker, queued behind: once this ran, "queued" would have too.
    await sync_to_async(record)("after")
    assert ran == ["occupy", "after"]


def test_cancelling_sync_to_async_cancels_the_async_to_sync_inside_it() -> None:
    # sync (this test) -> async_to_sync(main) -> sync_to_async(middle)
    # -> async_to_sync(inner); main cancels its task for middle.
    seen: list[str] = []
    inner_started = threading.Event()

    async def inner() -> None:
        inner_started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            seen.append("inner cancelled")
            raise

    def middle() -> None:
        try:
            async_to_sync(inner)()
        except asyncio.CancelledError:
            seen.append("middle cancelled")
            raise
        seen.append("middle went on")

    async def main() -> float:
        task = asyncio.ensure_future(sync_to_async(middle)())
        while not inner_started.is_set():
            await asyncio.sleep(0.005)
        began = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - began

    elapsed = async_to_sync(main)()
    assert elapsed < 1
    assert seen == ["inner cancelled", "middle cancelled"]


def test_cancelled_inner_coroutine_that_recovers_lets_the_sync_code_finish() -> None:
    inner_started = threading.Event()

    async def inner() -> str:
        inner_started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return "tidied up"
        return "slept"

    def middle() -> str:
        return "middle got " + async_to_sync(inner)()

    async def main() -> tuple[str, bool]:
        task = asyncio.ensure_future(sync_to_async(middle)())
        while not inner_started.is_set():
            await asyncio.sleep(0.005)
        task.cancel()
        result = await asyncio.wait_for(task, 5)
        return result, task.cancelled()

    assert async_to_sync(main)() == ("middle got tidied up", False)


# -- thread-sensitive routing ---------------------------------------------------


@pytest.mark.asyncio
async def test_thread_sensitive_calls_share_one_process_wide_worker() -> None:
    ids = [await sync_to_async(worker_id)() for _ in range(3)]
    assert len(set(ids)) == 1
    assert ids[0] != worker_id()

    counter = Concurrency()
    await asyncio.gather(*(sync_to_async(counter.during)(0.02) for _ in range(5)))
    assert counter.peak == 1


@pytest.mark.asyncio
async def test_non_thread_sensitive_calls_run_concurrently() -> None:
    barrier = threading.Barrier(5, timeout=5)

    def meet() -> int:
        barrier.wait()
        return worker_id()

    ids = await asyncio.gather(*(sync_to_async(meet, thread_sensitive=False)() for _ in range(5)))
    assert len(set(ids)) == 5


def test_blocked_sync_caller_runs_the_thread_sensitive_work_of_its_coroutine() -> None:
    async def main() -> list[int]:
        first = await sync_to_async(worker_id)()
        second = await sync_to_async(worker_id)()
        return [first, second]

    assert async_to_sync(main)() == [worker_id(), worker_id()]


def test_deep_nesting_keeps_thread_sensitive_work_on_the_outermost_sync_caller() -> None:
    # sync -> async -> sync -> async -> sync: every sync level on one worker.
    async def innermost() -> int:
        return await sync_to_async(worker_id)()

    def middle() -> tuple[int, int]:
        return worker_id(), async_to_sync(innermost)()

    async def outer() -> tuple[int, int, int]:
        loop_worker = worker_id()
        here, deepest = await sync_to_async(middle)()
        return loop_worker, here, deepest

    loop_worker, middle_worker, deepest_worker = async_to_sync(outer)()
    assert middle_worker == deepest_worker == worker_id()
    assert loop_worker != worker_id()


def test_work_scheduled_without_the_callers_context_still_finds_the_sync_caller() -> None:
    # A task created from a callback that runs in an empty context has lost
    # the caller's executor; the loop it runs on still leads back to it.
    async def main() -> int:
        loop = asyncio.get_running_loop()
        created: asyncio.Future[asyncio.Task[int]] = loop.create_future()

        def start() -> None:
            created.set_result(asyncio.ensure_future(sync_to_async(worker_id)()))

        loop.call_soon(start, context=contextvars.Context())
        return await (await created)

    assert async_to_sync(main)() == worker_id()


def test_non_thread_sensitive_calls_do_not_go_to_the_sync_caller() -> None:
    async def main() -> int:
        return await sync_to_async(worker_id, thread_sensitive=False)()

    assert async_to_sync(main)() != worker_id()


@pytest.mark.asyncio
async def test_thread_sensitive_context_gives_a_block_its_own_worker() -> None:
    process_wide = await sync_to_async(worker_id)()

    async def in_context() -> list[int]:
        async with ThreadSensitiveContext():
            first = await sync_to_async(worker_id)()
            async with ThreadSensitiveContext():  # nested: no effect
                nested = await sync_to_async(worker_id)()
            await asyncio.sleep(0.01)  # let the other block run meanwhile
            last = await sync_to_async(worker_id)()
            return [first, nested, last]

    one, two = await asyncio.gather(in_context(), in_context())
    assert len(set(one)) == 1
    assert len(set(two)) == 1
    assert one[0] != two[0]
    assert process_wide not in (one[0], two[0])
    assert await sync_to_async(worker_id)() == process_wide


@pytest.mark.asyncio
async def test_thread_sensitive_context_serialises_its_own_calls() -> None:
    counter = Concurrency()
    async with ThreadSensitiveContext():
        await asyncio.gather(*(sync_to_async(counter.during)(0.02) for _ in range(4)))
    assert counter.peak == 1


@pytest.mark.asyncio
async def test_thread_sensitive_context_with_executor_runs_on_that_executor() -> None:
    executor = ThreadPoolExecutor(max_workers=1)
    try:
        executor_worker = executor.submit(worker_id).result(5)
        context = ThreadSensitiveContext(executor=executor)
        async with context:
            ids = [await sync_to_async(worker_id)() for _ in range(2)]
            with pytest.raises(RuntimeError, match="already entered"):
                await context.__aenter__()
        assert ids == [executor_worker, executor_worker]
        with pytest.raises(RuntimeError, match="cannot be entered again"):
            async with context:
                pass
        # Left running for its owner.
        assert executor.submit(worker_id).result(5) == executor_worker
    finally:
        executor.shutdown()


@pytest.mark.asyncio
async def test_tasks_outliving_a_thread_sensitive_context_with_executor_fail_clearly() -> None:
    executor = ThreadPoolExecutor(max_workers=1)
    go_on = asyncio.Event()

    async def late() -> int:
        await go_on.wait()
        return await sync_to_async(worker_id)()

    try:
        async with ThreadSensitiveContext(executor=executor):
            task = asyncio.ensure_future(late())
            await asyncio.sleep(0)
        go_on.set()
        with pytest.raises(RuntimeError, match="ThreadSensitiveContext has exited"):
            await task
    finally:
        executor.shutdown()


def test_thread_sensitive_context_with_executor_wins_over_the_sync_caller() -> None:
    executor = ThreadPoolExecutor(max_workers=1)
    try:
        executor_worker = executor.submit(worker_id).result(5)

        async def nested() -> int:
            return await sync_to_async(worker_id)()

        def on_executor() -> tuple[int, int]:
            # A nested async_to_sync from the executor's worker: its
            # thread-sensitive calls come back to that worker, no deadlock.
            return worker_id(), async_to_sync(nested)()

        async def main() -> tuple[int, tuple[int, int], int]:
            async with ThreadSensitiveContext(executor=executor):
                inside = await sync_to_async(worker_id)()
                pair = await sync_to_async(on_executor)()
            after = await sync_to_async(worker_id)()
            return inside, pair, after

        inside, pair, after = async_to_sync(main)()
        assert inside == executor_worker
        assert pair == (executor_worker, executor_worker)
        assert after == worker_id()
    finally:
        executor.shutdown()


def test_async_single_thread_context_runs_every_call_on_one_worker() -> None:
    async def where() -> int:
        await asyncio.sleep(0)
        return worker_id()

    with AsyncSingleThreadContext() as context:
        first = async_to_sync(where)()
        with AsyncSingleThreadContext():  # nested: no effect
            second = async_to_sync(where)()
        third = async_to_sync(where)()
        assert context in AsyncToSync.context_to_thread_executor
    assert first == second == third
    assert first != worker_id()
    assert context not in AsyncToSync.context_to_thread_executor


def test_async_single_thread_context_still_serves_thread_sensitive_calls() -> None:
    async def main() -> int:
        return await sync_to_async(worker_id)()

    with AsyncSingleThreadContext():
        assert async_to_sync(main)() == worker_id()
        assert async_to_sync(main)() == worker_id()


def test_async_to_sync_from_sync_to_async_reuses_the_outer_event_loop() -> None:
    async def running_loop() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    def middle() -> tuple[asyncio.AbstractEventLoop, asyncio.AbstractEventLoop]:
        shared = async_to_sync(running_loop)()
        fresh = async_to_sync(running_loop, force_new_loop=True)()
        return shared, fresh

    async def outer() -> tuple[asyncio.AbstractEventLoop, Any]:
        return asyncio.get_running_loop(), await sync_to_async(middle)()

    outer_loop, (shared, fresh) = async_to_sync(outer)()
    assert shared is outer_loop
    assert fresh is not outer_loop


# -- contextvars ----------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("thread_sensitive", [True, False])
async def test_context_variables_cross_into_sync_code_and_come_back(
    thread_sensitive: bool,
) -> None:
    def read_and_change() -> str:
        seen = request_id.get("unset")
        request_id.set("changed in sync")
        return seen

    request_id.set("set in async")
    seen = await sync_to_async(read_and_change, thread_sensitive=thread_sensitive)()
    assert seen == "set in async"
    assert request_id.get() == "changed in sync"


def test_context_variables_cross_into_async_code_and_come_back() -> None:
    async def read_and_change() -> str:
        seen = request_id.get("unset")
        await asyncio.sleep(0)
        request_id.set("changed in async")
        return seen

    def caller() -> tuple[str, str]:
        request_id.set("set in sync")
        seen = async_to_sync(read_and_change)()
        return seen, request_id.get()

    # A context of its own, so nothing leaks into other tests.
    assert contextvars.Context().run(caller) == ("set in sync", "changed in async")


def test_context_variable_changes_come_back_through_nested_bridges() -> None:
    def deepest() -> None:
        request_id.set(request_id.get() + " > deepest")

    async def middle() -> None:
        request_id.set(request_id.get() + " > middle")
        await sync_to_async(deepest)()

    def caller() -> str:
        request_id.set("top")
        async_to_sync(middle)()
        return request_id.get()

    assert contextvars.Context().run(caller) == "top > middle > deepest"


@pytest.mark.asyncio
async def test_explicit_context_is_used_and_changes_stay_in_it() -> None:
    given = contextvars.Context()
    given.run(request_id.set, "in the given context")

    def read_and_change() -> str:
        seen = request_id.get("unset")
        request_id.set("changed")
        return seen

    request_id.set("caller's")
    seen = await sync_to_async(read_and_change, context=given)()
    assert seen == "in the given context"
    assert given[request_id] == "changed"
    assert request_id.get() == "caller's"


# -- mode-specific --------------------------------------------------------------


@pytest.mark.threads_only
@pytest.mark.asyncio
async def test_threads_hub_runs_sync_work_on_other_os_threads() -> None:
    loop_thread = threading.get_ident()
    sensitive = await sync_to_async(threading.get_ident)()
    other = await sync_to_async(threading.get_ident, thread_sensitive=False)()
    assert loop_thread not in (sensitive, other)
    assert await sync_to_async(threading.get_ident)() == sensitive


@pytest.mark.threads_only
def test_threads_hub_async_to_sync_runs_its_loop_on_another_os_thread() -> None:
    async def loop_thread() -> int:
        return threading.get_ident()

    assert async_to_sync(loop_thread)() != threading.get_ident()


@pytest.mark.threads_only
@pytest.mark.asyncio
async def test_threads_hub_accepts_real_thread_and_uses_a_thread_anyway() -> None:
    ident = await sync_to_async(threading.get_ident, real_thread=True)()
    assert ident != threading.get_ident()


@pytest.mark.threads_only
@pytest.mark.asyncio
async def test_threads_hub_thread_sensitive_contexts_each_get_an_os_thread() -> None:
    idents: list[int] = []

    def sleepy() -> None:
        idents.append(threading.get_ident())
        time.sleep(0.1)

    async def request() -> None:
        async with ThreadSensitiveContext():
            await sync_to_async(sleepy)()

    began = time.monotonic()
    await asyncio.gather(*(request() for _ in range(20)))
    elapsed = time.monotonic() - began
    assert len(set(idents)) == 20
    assert threading.get_ident() not in idents
    assert elapsed < 1.0


@pytest.mark.threads_only
def test_threads_hub_many_threads_in_async_to_sync_at_once() -> None:
    results: list[int] = []

    def caller(n: int) -> None:
        results.append(async_to_sync(asyncio.sleep)(0.1, n))

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(50)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    elapsed = time.monotonic() - began
    assert sorted(results) == list(range(50))
    assert elapsed < 1.0


@pytest.mark.gevent_only
@pytest.mark.asyncio
async def test_gevent_hub_runs_sync_work_on_greenlets_of_this_os_thread() -> None:
    import greenlet
    from gevent.monkey import get_original

    native_ident: Callable[[], int] = get_original("threading", "get_ident")

    def where() -> tuple[Any, int]:
        return greenlet.getcurrent(), native_ident()

    sensitive, sensitive_thread = await sync_to_async(where)()
    other, other_thread = await sync_to_async(where, thread_sensitive=False)()
    assert greenlet.getcurrent() not in (sensitive, other)
    assert sensitive_thread == other_thread == native_ident()


@pytest.mark.gevent_only
@pytest.mark.asyncio
async def test_gevent_hub_real_thread_runs_on_a_native_os_thread() -> None:
    from gevent.monkey import get_original

    native_ident: Callable[[], int] = get_original("threading", "get_ident")
    home = native_ident()

    sensitive = [await sync_to_async(native_ident, real_thread=True)() for _ in range(2)]
    other = await sync_to_async(native_ident, thread_sensitive=False, real_thread=True)()
    assert home not in sensitive
    assert other != home
    # Thread-sensitive work sent to a real thread stays on one thread.
    assert sensitive[0] == sensitive[1]
    # Without the flag: back on a greenlet of this thread.
    assert await sync_to_async(native_ident)() == home


@pytest.mark.gevent_only
@pytest.mark.asyncio
async def test_gevent_hub_configure_real_threads_applies_hub_wide() -> None:
    from gevent.monkey import get_original

    from asgigreen.hubs import gevent as gevent_hub

    native_ident: Callable[[], int] = get_original("threading", "get_ident")
    home = native_ident()
    hub = gevent_hub.configure(real_threads=True)
    try:
        sensitive = await sync_to_async(native_ident)()
        other = await sync_to_async(native_ident, thread_sensitive=False)()
        opted_out = await sync_to_async(native_ident, real_thread=False)()
    finally:
        gevent_hub.configure(real_threads=False)
    assert hub is hubs.get_hub()
    assert home not in (sensitive, other)
    assert opted_out == home


@pytest.mark.gevent_only
@pytest.mark.asyncio
async def test_gevent_hub_async_to_sync_from_a_real_thread_comes_back_to_it() -> None:
    # Sync code on a native thread calls async_to_sync: the coroutine runs on
    # the outer loop here, and its thread-sensitive calls go back to that
    # native thread, which is parked waiting for it.
    from gevent.monkey import get_original

    native_ident: Callable[[], int] = get_original("threading", "get_ident")
    home = native_ident()

    async def inner() -> tuple[int, int, int]:
        await asyncio.sleep(0.001)
        return (
            native_ident(),
            await sync_to_async(native_ident)(),
            await sync_to_async(native_ident, thread_sensitive=False)(),
        )

    def on_real_thread() -> tuple[int, tuple[int, int, int]]:
        return native_ident(), async_to_sync(inner)()

    real, (loop_thread, sensitive, other) = await sync_to_async(on_real_thread, real_thread=True)()
    assert real != home
    assert loop_thread == home
    assert sensitive == real
    assert other == home


@pytest.mark.gevent_only
def test_gevent_hub_real_thread_from_the_blocked_sync_caller() -> None:
    # Thread-sensitive work for a blocked async_to_sync caller, sent to a real
    # thread: one native thread stands in for the caller, for every call.
    from gevent.monkey import get_original

    native_ident: Callable[[], int] = get_original("threading", "get_ident")

    async def main() -> list[int]:
        return [await sync_to_async(native_ident, real_thread=True)() for _ in range(3)]

    idents = async_to_sync(main)()
    assert len(set(idents)) == 1
    assert idents[0] != native_ident()
