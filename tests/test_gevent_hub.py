"""Acceptance tests of the gevent hub, in a gevent-monkeypatched process.

Each test measures what the field notes say goes wrong with asgiref under
gevent and asserts the figure; figures are printed (see them with ``-s``).
Run with ``python -m gevent.monkey --module pytest tests/test_gevent_hub.py -s``.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import itertools
import os
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from asgigreen import hubs
from asgigreen.local import Local
from asgigreen.sync import ThreadSensitiveContext, async_to_sync, sync_to_async

pytestmark = [pytest.mark.gevent_only, pytest.mark.timeout(60)]

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")


def report(what: str, **figures: Any) -> None:
    shown = ", ".join(
        f"{name}={value:.3f}" if isinstance(value, float) else f"{name}={value}"
        for name, value in figures.items()
    )
    print(f"\n[gevent hub] {what}: {shown}")


class Ticker:
    """A greenlet that notes the time every ``interval`` seconds until stopped."""

    def __init__(self, interval: float = 0.01) -> None:
        import gevent

        self.interval = interval
        self.ticks: list[float] = []
        self._running = True
        self._greenlet = gevent.spawn(self._run)

    def _run(self) -> None:
        import gevent

        while self._running:
            self.ticks.append(time.perf_counter())
            gevent.sleep(self.interval)

    def stop(self) -> None:
        self._running = False
        self._greenlet.join(2)

    def gaps_between(self, start: float, end: float) -> list[float]:
        """Gaps between ticks, including from ``start`` to the first and the last to ``end``."""
        inside = [tick for tick in self.ticks if start <= tick <= end]
        points = [start, *inside, end]
        return [later - earlier for earlier, later in itertools.pairwise(points)]


def spin(seconds: float) -> int:
    """Pure-Python CPU work for ``seconds``; never yields to other greenlets."""
    count = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        count += 1
    return count


# -- many greenlets in async_to_sync at once ----------------------------------------


def test_a_thousand_greenlets_each_in_async_to_sync_at_once() -> None:
    import gevent

    count = 1000
    began = time.perf_counter()
    greenlets = [gevent.spawn(async_to_sync(asyncio.sleep), 0.1, n) for n in range(count)]
    gevent.joinall(greenlets, timeout=10)
    elapsed = time.perf_counter() - began

    failed = [g.exception for g in greenlets if not g.successful()]
    results = [g.value for g in greenlets]
    report(
        f"{count} greenlets x async_to_sync(asyncio.sleep)(0.1)",
        elapsed_s=elapsed,
        succeeded=count - len(failed),
        failed=len(failed),
    )
    assert failed == []
    assert results == list(range(count))
    assert elapsed < 1.0


def test_other_greenlets_keep_running_while_one_waits_in_async_to_sync() -> None:
    import gevent

    ticker = Ticker(0.01)
    try:
        gevent.sleep(0.02)  # let the ticker settle
        began = time.perf_counter()
        waiter = gevent.spawn(async_to_sync(asyncio.sleep), 0.5, "woke")
        assert waiter.get(timeout=5) == "woke"
        ended = time.perf_counter()
    finally:
        ticker.stop()
    gaps = ticker.gaps_between(began, ended)
    report(
        "ticker (10 ms) while one greenlet sits in async_to_sync(asyncio.sleep)(0.5)",
        waited_s=ended - began,
        ticks=len(gaps) - 1,
        max_gap_ms=max(gaps) * 1000,
    )
    assert ended - began >= 0.5
    assert len(gaps) - 1 >= 30
    assert max(gaps) < 0.05


# -- Django ORM in sibling greenlets ----------------------------------------------


def test_django_orm_in_greenlets_beside_greenlets_in_async_to_sync(
    django_sqlite: Path | None,
) -> None:
    import gevent
    from django.contrib.auth.models import Group
    from django.contrib.contenttypes.models import ContentType
    from django.core.exceptions import SynchronousOnlyOperation
    from django.db import connection

    assert "DJANGO_ALLOW_ASYNC_UNSAFE" not in os.environ

    # Django's guard is live here: ORM calls from inside an event loop fail.
    async def orm_inside_a_loop() -> int:
        return Group.objects.count()

    with pytest.raises(SynchronousOnlyOperation):
        async_to_sync(orm_inside_a_loop)()

    sleepers_in_loop = 0
    all_asleep = threading.Event()
    queries_done = False

    async def nap() -> None:
        # Sits in asyncio.sleep until every query greenlet has finished.
        nonlocal sleepers_in_loop
        sleepers_in_loop += 1
        if sleepers_in_loop == 5:
            all_asleep.set()
        try:
            deadline = time.perf_counter() + 10
            while not queries_done and time.perf_counter() < deadline:
                await asyncio.sleep(0.01)
        finally:
            sleepers_in_loop -= 1

    rounds = 5
    observed_sleepers: list[int] = []

    def queries(n: int) -> int:
        answered = 0
        try:
            for i in range(rounds):
                observed_sleepers.append(sleepers_in_loop)
                kind, _ = ContentType.objects.get_or_create(app_label="acceptance", model=f"m{n}")
                group = Group.objects.create(name=f"g{n}-{i}")
                assert Group.objects.get(pk=group.pk).name == f"g{n}-{i}"
                assert ContentType.objects.filter(pk=kind.pk).exists()
                with connection.cursor() as cursor:
                    cursor.execute("SELECT %s + %s", [n, i])
                    assert cursor.fetchone()[0] == n + i
                answered += 4
                gevent.sleep(0.01)  # interleave with the other greenlets
            return answered
        finally:
            connection.close()

    began = time.perf_counter()
    sleepers = [gevent.spawn(async_to_sync(nap)) for _ in range(5)]
    assert all_asleep.wait(5)
    workers = [gevent.spawn(queries, n) for n in range(20)]
    gevent.joinall(workers, timeout=20)
    queried = time.perf_counter() - began
    queries_done = True
    gevent.joinall(sleepers, timeout=5)

    errors = [g.exception for g in workers if not g.successful()]
    answered = sum(g.value for g in workers if g.successful())
    report(
        "20 greenlets of Django ORM queries beside 5 greenlets in async_to_sync",
        queries_answered=answered,
        errors=len(errors),
        queries_done_s=queried,
        sleepers_seen_min=min(observed_sleepers),
    )
    assert errors == [], errors[:3]
    assert answered == 20 * rounds * 4
    assert all(g.successful() for g in sleepers)
    # Every query round ran while all five sleepers were inside their loops.
    assert min(observed_sleepers) == 5
    assert Group.objects.filter(name__regex=r"^g\d+-\d+$").count() == 20 * rounds
    connection.close()


# -- an asyncio program calling sync code -------------------------------------------


@pytest.mark.asyncio
async def test_two_hundred_non_thread_sensitive_sleeps_run_concurrently() -> None:
    loop_seen: list[str] = []

    def sleepy() -> None:
        for moment in ("before", "after"):
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                pass
            else:
                loop_seen.append(moment)
            if moment == "before":
                time.sleep(0.1)

    count = 200
    began = time.perf_counter()
    await asyncio.gather(*(sync_to_async(sleepy, thread_sensitive=False)() for _ in range(count)))
    elapsed = time.perf_counter() - began
    report(
        f"{count} x sync_to_async(time.sleep, thread_sensitive=False)(0.1) gathered",
        elapsed_s=elapsed,
        saw_a_running_loop=len(loop_seen),
    )
    assert loop_seen == []
    assert elapsed < 1.0


@pytest.mark.asyncio
async def test_fifty_thread_sensitive_contexts_run_concurrently() -> None:
    workers: list[int] = []

    def sleepy() -> None:
        workers.append(hubs.get_hub().worker_id())
        time.sleep(0.1)

    async def request() -> None:
        async with ThreadSensitiveContext():
            await sync_to_async(sleepy)()

    count = 50
    began = time.perf_counter()
    await asyncio.gather(*(request() for _ in range(count)))
    elapsed = time.perf_counter() - began
    report(
        f"{count} ThreadSensitiveContext blocks x sync_to_async(time.sleep)(0.1)",
        elapsed_s=elapsed,
        distinct_workers=len(set(workers)),
    )
    assert len(workers) == count
    assert len(set(workers)) == count
    assert elapsed < 1.0


# -- CPU-bound work: real threads versus greenlets ----------------------------------


async def _ticker_during(call: Callable[[], Any]) -> tuple[list[float], float, Any]:
    ticker = Ticker(0.01)
    try:
        await asyncio.sleep(0.03)  # the ticker is running before the work starts
        began = time.perf_counter()
        result = await call()
        ended = time.perf_counter()
    finally:
        ticker.stop()
    return ticker.gaps_between(began, ended), ended - began, result


@pytest.mark.asyncio
async def test_cpu_bound_work_on_a_real_thread_leaves_greenlets_running() -> None:
    from gevent.monkey import get_original

    native_ident: Callable[[], int] = get_original("threading", "get_ident")

    def work() -> tuple[int, int]:
        return spin(0.5), native_ident()

    gaps, elapsed, (loops, ident) = await _ticker_during(
        lambda: sync_to_async(work, real_thread=True)()
    )
    report(
        "ticker (10 ms) during 0.5 s of CPU work with real_thread=True",
        elapsed_s=elapsed,
        ticks=len(gaps) - 1,
        max_gap_ms=max(gaps) * 1000,
        spin_loops=loops,
    )
    assert ident != native_ident()
    assert elapsed >= 0.5
    assert len(gaps) - 1 >= 10
    assert max(gaps) < 0.1


@pytest.mark.asyncio
async def test_cpu_bound_work_on_a_greenlet_stalls_the_others() -> None:
    # The control for the test above: without real_thread the same work
    # holds the only OS thread, so the ticker stops for the whole time.
    gaps, elapsed, _ = await _ticker_during(lambda: sync_to_async(spin)(0.5))
    report(
        "ticker (10 ms) during 0.5 s of CPU work on a greenlet (control)",
        elapsed_s=elapsed,
        ticks=len(gaps) - 1,
        max_gap_ms=max(gaps) * 1000,
    )
    assert max(gaps) >= 0.4


# -- the running loop is per greenlet ------------------------------------------------


def test_sibling_greenlet_sees_no_running_loop_while_another_runs_one() -> None:
    import gevent

    inside = gevent.event.Event()
    finish = gevent.event.Event()
    loops: dict[str, Any] = {}

    async def hold_a_loop() -> None:
        loops["runner"] = asyncio.get_running_loop()
        inside.set()
        while not finish.is_set():
            await asyncio.sleep(0.005)
        loops["runner_after"] = asyncio.get_running_loop()

    def sibling() -> dict[str, Any]:
        assert inside.wait(5)
        seen: dict[str, Any] = {}
        try:
            asyncio.get_running_loop()
            seen["plain"] = "a loop"
        except RuntimeError:
            seen["plain"] = "none"
        gevent.sleep(0.02)  # switch away and back while the other loop runs
        seen["private"] = asyncio.events._get_running_loop()

        # A loop of its own, at the same time as the other one.
        async def own() -> Any:
            await asyncio.sleep(0.01)
            return asyncio.get_running_loop()

        seen["own"] = asyncio.run(own())
        finish.set()
        return seen

    runner = gevent.spawn(asyncio.run, hold_a_loop())
    watcher = gevent.spawn(sibling)
    gevent.joinall([runner, watcher], timeout=10, raise_error=True)
    seen = watcher.value
    report(
        "sibling greenlet while another runs asyncio.run",
        sibling_saw=seen["plain"],
        private_running_loop=seen["private"],
    )
    assert seen["plain"] == "none"
    assert seen["private"] is None
    assert seen["own"] is not loops["runner"]
    assert loops["runner_after"] is loops["runner"]


# -- contextvars and Local on greenlets ------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("thread_sensitive", [True, False])
async def test_context_variables_reach_hub_greenlets_and_come_back(
    thread_sensitive: bool,
) -> None:
    import greenlet

    here = greenlet.getcurrent()

    def read_and_change() -> tuple[str, bool]:
        seen = request_id.get("unset")
        request_id.set("changed on the hub's greenlet")
        return seen, greenlet.getcurrent() is not here

    request_id.set("set in async")
    seen, elsewhere = await sync_to_async(read_and_change, thread_sensitive=thread_sensitive)()
    assert elsewhere
    assert seen == "set in async"
    assert request_id.get() == "changed on the hub's greenlet"


def test_context_variables_from_a_spawned_greenlet_reach_async_code_and_come_back() -> None:
    import gevent

    async def read_and_change() -> str:
        seen = request_id.get("unset")
        await asyncio.sleep(0)
        request_id.set(seen + " > async")
        return seen

    def in_greenlet(n: int) -> tuple[str, str]:
        request_id.set(f"greenlet {n}")
        seen = async_to_sync(read_and_change)()
        return seen, request_id.get()

    greenlets = [gevent.spawn(in_greenlet, n) for n in range(10)]
    gevent.joinall(greenlets, timeout=5, raise_error=True)
    assert [g.value for g in greenlets] == [
        (f"greenlet {n}", f"greenlet {n} > async") for n in range(10)
    ]


@pytest.mark.parametrize("thread_critical", [False, True], ids=["default", "thread_critical"])
def test_local_is_keyed_by_greenlet_in_sync_code(thread_critical: bool) -> None:
    import gevent

    local = Local(thread_critical=thread_critical)

    def own_value(n: int) -> list[Any]:
        local.value = n
        seen = []
        for _ in range(3):
            gevent.sleep(0.001)  # let the others set theirs meanwhile
            seen.append(local.value)
        return seen

    greenlets = [gevent.spawn(own_value, n) for n in range(10)]
    gevent.joinall(greenlets, timeout=5, raise_error=True)
    assert [g.value for g in greenlets] == [[n, n, n] for n in range(10)]
    assert not hasattr(local, "value")


class Payload:
    pass


def test_thread_critical_local_storage_goes_away_with_its_greenlet() -> None:
    import gevent

    local = Local(thread_critical=True)
    refs: list[weakref.ref[Payload]] = []

    def store() -> None:
        payload = Payload()
        refs.append(weakref.ref(payload))
        local.value = payload
        gevent.sleep(0.001)
        assert local.value is payload

    greenlet_ = gevent.spawn(store)
    greenlet_.get(timeout=5)
    assert greenlet_.dead
    del greenlet_
    # gevent drops a greenlet's locals when the Greenlet object is freed; its
    # link notifications (which still refer to it) run on the next hub turn.
    gevent.sleep(0)
    gevent.sleep(0)
    for _ in range(3):
        gc.collect()
    report("thread-critical Local value after its greenlet ended", freed=refs[0]() is None)
    assert refs[0]() is None


# -- regressions: bugs found and fixed ---------------------------------------------------


@pytest.mark.asyncio
async def test_gevent_threadpool_executor_runs_calls_on_native_threads() -> None:
    # gevent's own ThreadPoolExecutor, which asyncio.wrap_future rejects, works
    # as executor= for non-thread-sensitive calls.
    import gevent.threadpool
    from gevent.monkey import get_original

    native_ident: Callable[[], int] = get_original("threading", "get_ident")
    executor = gevent.threadpool.ThreadPoolExecutor(2)
    try:
        ran_on = await asyncio.wait_for(
            sync_to_async(native_ident, thread_sensitive=False, executor=executor)(), 5
        )
    finally:
        executor.shutdown()
    assert ran_on != native_ident()


class Boom(Exception):
    pass


def raise_boom() -> None:
    raise Boom("from gevent's pool")


@pytest.mark.asyncio
async def test_gevent_threadpool_executor_passes_exceptions_back() -> None:
    import gevent.threadpool

    executor = gevent.threadpool.ThreadPoolExecutor(2)
    try:
        with pytest.raises(Boom, match="from gevent's pool"):
            await asyncio.wait_for(
                sync_to_async(raise_boom, thread_sensitive=False, executor=executor)(), 1
            )
    finally:
        executor.shutdown()


@pytest.mark.parametrize("interruption", ["timeout", "kill"])
def test_an_interrupted_async_to_sync_caller_does_not_strand_its_coroutine(
    interruption: str,
) -> None:
    import gevent

    events: list[str] = []

    async def coroutine() -> None:
        try:
            await asyncio.sleep(0.1)  # the caller gives up meanwhile
            await sync_to_async(events.append)("thread-sensitive call ran")
        except BaseException as exc:
            events.append(f"coroutine ended by {type(exc).__name__}")
            raise
        finally:
            events.append("coroutine finished")

    def caller() -> None:
        if interruption == "timeout":
            with gevent.Timeout(0.02):
                async_to_sync(coroutine)()
        else:
            async_to_sync(coroutine)()

    greenlet_ = gevent.spawn(caller)
    gevent.sleep(0.02)
    if interruption == "kill":
        greenlet_.kill(timeout=2)
    greenlet_.join(2)
    assert greenlet_.dead
    # However it ends (refused call, cancellation, or the call running),
    # the abandoned coroutine must end.
    deadline = time.perf_counter() + 1
    while "coroutine finished" not in events and time.perf_counter() < deadline:
        gevent.sleep(0.01)
    report(f"coroutine abandoned by its caller ({interruption})", events=events)
    assert "coroutine finished" in events


def _native_thread_count() -> int:
    return len(os.listdir("/proc/self/task"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads via /proc")
def test_real_threads_standing_in_for_sync_callers_are_released() -> None:
    import gevent

    async def coroutine() -> int:
        return await sync_to_async(_native_thread_count, real_thread=True)()

    async_to_sync(coroutine)()  # warm up whatever is process-wide
    gc.collect()
    gevent.sleep(0.05)
    before = _native_thread_count()
    for _ in range(20):
        async_to_sync(coroutine)()
    gc.collect()
    gevent.sleep(0.2)
    after = _native_thread_count()
    report(
        "native threads after 20 async_to_sync calls with a real-thread call",
        before=before,
        after=after,
    )
    assert after - before <= 2
