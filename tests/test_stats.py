"""``Hub.stats()`` and the bridge call records, checked against known loads.

Runs in both modes: plain (threads hub) and gevent-monkeypatched (gevent
hub). The figures are process-wide, so each test compares against a
baseline read when it starts. Parked calls wait on an event the test sets.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
import timeit
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from asgigreen import hubs
from asgigreen._calls import BridgeCall, bridge_call_running_on, current_bridge_call
from asgigreen.hubs import CallStats, HubStats
from asgigreen.sync import ThreadSensitiveContext, async_to_sync, sync_to_async

pytestmark = pytest.mark.timeout(30)

HUB = hubs.get_hub()
GEVENT = HUB.name == "gevent"


def _native_lock() -> Any:
    """A lock that blocks a native thread, patched or not."""
    if GEVENT:
        from gevent.monkey import get_original

        return get_original("_thread", "allocate_lock")()
    return threading.Lock()


def _gauges(stats: HubStats) -> dict[str, tuple[int, int]]:
    return {kind: (figures.in_flight, figures.queued) for kind, figures in stats.calls().items()}


@pytest.fixture
def baseline() -> Iterator[HubStats]:
    """The stats when the test starts, with no call of an earlier test in flight."""
    deadline = time.monotonic() + 5
    stats = HUB.stats()
    while (
        any(_gauges(stats)[kind] != (0, 0) for kind in stats.calls())
        or stats.workers_busy
        or stats.loops_busy
    ):
        assert time.monotonic() < deadline, f"calls still in flight before the test: {stats}"
        time.sleep(0.01)
        stats = HUB.stats()
    yield stats


def grew(before: CallStats, after: CallStats) -> dict[str, int]:
    """How much each total grew (started, completed, failed, cancelled)."""
    return {
        name: getattr(after, name) - getattr(before, name)
        for name in ("started", "completed", "failed", "cancelled")
    }


async def eventually(check: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not so after {timeout} s; stats {HUB.stats()}")
        await asyncio.sleep(0.005)


class Gate:
    """Parks calls until opened; counts the calls that got there."""

    def __init__(self, native: bool = False) -> None:
        self._native = native
        self.arrived = 0
        if native:
            self._lock = _native_lock()
            self._lock.acquire()
        else:
            self._event = threading.Event()

    def park(self) -> None:
        self.arrived += 1
        if self._native:
            self._lock.acquire()
            self._lock.release()
        else:
            assert self._event.wait(20), "the gate was never opened"

    def open(self) -> None:
        if self._native:
            self._lock.release()
        else:
            self._event.set()


async def run_parked(
    gate: Gate, calls: list[Awaitable[Any]], check: Callable[[HubStats], None]
) -> list[Any]:
    """Start ``calls``, let ``check`` look at the stats while they are parked, then finish."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        await eventually(lambda: gate.arrived >= 1, "a call reached the gate")
        # Let every call that can start reach the gate.
        await asyncio.sleep(0.05)
        check(HUB.stats())
    finally:
        gate.open()
    return await asyncio.gather(*tasks, return_exceptions=True)


# -- calls in flight and queued -----------------------------------------------------


@pytest.mark.asyncio
async def test_thread_sensitive_calls_share_one_worker_one_running_the_rest_queued(
    baseline: HubStats,
) -> None:
    count = 100
    gate = Gate()
    seen: list[HubStats] = []

    def check(stats: HubStats) -> None:
        seen.append(stats)
        assert stats.thread_sensitive.in_flight == count
        assert stats.thread_sensitive.queued == count - 1
        assert stats.workers_busy == baseline.workers_busy + 1
        assert stats.free == baseline.free  # nothing else moved
        assert stats.longest_wait >= 0.04

    results = await run_parked(gate, [sync_to_async(gate.park)() for _ in range(count)], check)
    assert results == [None] * count
    after = HUB.stats()
    assert gate.arrived == count
    assert _gauges(after)["thread_sensitive"] == (0, 0)
    assert after.longest_wait == 0.0
    assert grew(baseline.thread_sensitive, after.thread_sensitive) == {
        "started": count,
        "completed": count,
        "failed": 0,
        "cancelled": 0,
    }
    print(f"\n[{HUB.name}] {count} thread-sensitive calls parked on one worker: {seen[0]}")


@pytest.mark.asyncio
async def test_thread_sensitive_calls_in_their_own_contexts_all_run(baseline: HubStats) -> None:
    # The figure: 100 callers parked in thread-sensitive calls, each
    # with a worker of its own (a ThreadSensitiveContext per request, as
    # Django's handler opens).
    count = 100
    gate = Gate()

    async def request() -> None:
        async with ThreadSensitiveContext():
            await sync_to_async(gate.park)()

    def check(stats: HubStats) -> None:
        assert stats.thread_sensitive.in_flight == count
        assert stats.thread_sensitive.queued == 0
        assert stats.workers_busy == baseline.workers_busy + count
        assert stats.longest_wait == 0.0

    await run_parked(gate, [request() for _ in range(count)], check)
    after = HUB.stats()
    assert grew(baseline.thread_sensitive, after.thread_sensitive)["completed"] == count
    # The contexts' workers end once their contexts have exited.
    await eventually(
        lambda: (
            HUB.stats().workers_busy + HUB.stats().workers_idle
            <= baseline.workers_busy + baseline.workers_idle
        ),
        "the contexts' workers ended",
    )


def _pool_size() -> int:
    if GEVENT:
        return int(HUB.max_greenlets)  # type: ignore[attr-defined]
    # The threads hub's pool, as asyncio sizes a default executor.
    return min(32, (os.cpu_count() or 1) + 4)


@pytest.fixture
def small_pool() -> Iterator[int]:
    """The pool for free calls, at 4 greenlets on the gevent hub."""
    if not GEVENT:
        yield _pool_size()
        return
    from asgigreen.hubs.gevent import configure

    before = _pool_size()
    configure(max_greenlets=4)
    try:
        yield 4
    finally:
        configure(max_greenlets=before)


@pytest.mark.asyncio
async def test_free_calls_past_the_pool_bound_queue_and_their_wait_grows(
    baseline: HubStats, small_pool: int
) -> None:
    extra = 5
    count = small_pool + extra
    gate = Gate()
    waits: list[float] = []

    def check(stats: HubStats) -> None:
        assert stats.free.in_flight == count
        assert stats.free.queued == extra
        assert stats.thread_sensitive == baseline.thread_sensitive
        assert stats.workers_busy >= baseline.workers_busy + small_pool
        waits.append(stats.longest_wait)
        time.sleep(0.1)  # the calls stay parked: only the wait grows
        later = HUB.stats()
        assert later.free.queued == extra
        waits.append(later.longest_wait)

    calls = [sync_to_async(gate.park, thread_sensitive=False)() for _ in range(count)]
    await run_parked(gate, calls, check)
    assert waits[0] >= 0.04
    assert waits[1] >= waits[0] + 0.09
    after = HUB.stats()
    assert _gauges(after)["free"] == (0, 0)
    assert grew(baseline.free, after.free)["completed"] == count
    print(f"\n[{HUB.name}] {count} free calls, pool of {small_pool}: longest waits {waits}")


@pytest.mark.gevent_only
@pytest.mark.asyncio
async def test_real_thread_calls_are_counted_apart(baseline: HubStats) -> None:
    count = 3
    gate = Gate(native=True)

    def check(stats: HubStats) -> None:
        assert stats.real_thread.in_flight == count
        assert stats.real_thread.queued == 0
        assert stats.free == baseline.free
        assert stats.thread_sensitive == baseline.thread_sensitive
        assert stats.workers_busy >= baseline.workers_busy + count

    calls = [sync_to_async(gate.park, thread_sensitive=False, real_thread=True)() for _ in range(3)]
    await run_parked(gate, calls, check)
    after = HUB.stats()
    assert grew(baseline.real_thread, after.real_thread)["completed"] == count


def test_async_to_sync_callers_and_their_loops(baseline: HubStats) -> None:
    count = 10
    release = threading.Event()
    running = []

    async def wait_for_release() -> str:
        running.append(1)
        while not release.is_set():
            await asyncio.sleep(0.005)
        return "done"

    results: list[str] = []

    def caller() -> None:
        results.append(async_to_sync(wait_for_release)())

    threads = [threading.Thread(target=caller) for _ in range(count)]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 5
        while len(running) < count:
            assert time.monotonic() < deadline, HUB.stats()
            time.sleep(0.005)
        stats = HUB.stats()
        assert stats.async_to_sync.in_flight == count
        assert stats.async_to_sync.queued == 0
        assert stats.loops_busy == baseline.loops_busy + count
    finally:
        release.set()
        for thread in threads:
            thread.join(10)
    assert results == ["done"] * count
    deadline = time.monotonic() + 5
    while HUB.stats().loops_busy != baseline.loops_busy:
        # A loop's thread or greenlet counts itself idle just after its caller resumed.
        assert time.monotonic() < deadline, HUB.stats()
        time.sleep(0.005)
    after = HUB.stats()
    assert after.async_to_sync.in_flight == 0
    assert after.loops_idle >= 1  # kept for the next call
    assert grew(baseline.async_to_sync, after.async_to_sync) == {
        "started": count,
        "completed": count,
        "failed": 0,
        "cancelled": 0,
    }


# -- how calls end ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_failed_calls_are_counted(baseline: HubStats) -> None:
    def broken() -> None:
        raise ValueError("broken")

    for _ in range(3):
        with pytest.raises(ValueError):
            await sync_to_async(broken, thread_sensitive=False)()
    after = HUB.stats()
    assert grew(baseline.free, after.free) == {
        "started": 3,
        "completed": 0,
        "failed": 3,
        "cancelled": 0,
    }


def test_failed_async_to_sync_calls_are_counted(baseline: HubStats) -> None:
    async def broken() -> None:
        raise KeyError("broken")

    with pytest.raises(KeyError):
        async_to_sync(broken)()
    after = HUB.stats()
    assert grew(baseline.async_to_sync, after.async_to_sync)["failed"] == 1


@pytest.mark.asyncio
async def test_a_queued_call_cancelled_is_counted_and_never_runs(baseline: HubStats) -> None:
    gate = Gate()
    ran: list[str] = []
    first = asyncio.ensure_future(sync_to_async(gate.park)())
    await eventually(lambda: gate.arrived == 1, "the first call is running")
    second = asyncio.ensure_future(sync_to_async(lambda: ran.append("second"))())
    await eventually(lambda: HUB.stats().thread_sensitive.queued == 1, "the second call queued")
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    stats = HUB.stats()
    assert _gauges(stats)["thread_sensitive"] == (1, 0)
    gate.open()
    await first
    await sync_to_async(lambda: None)()  # runs after anything still queued there
    assert ran == []
    after = HUB.stats()
    assert grew(baseline.thread_sensitive, after.thread_sensitive) == {
        "started": 3,
        "completed": 2,
        "failed": 0,
        "cancelled": 1,
    }
    assert _gauges(after)["thread_sensitive"] == (0, 0)


# -- the records -----------------------------------------------------------------------


def _here() -> int:
    frame = sys._getframe(1)
    return frame.f_lineno


@pytest.mark.asyncio
async def test_a_call_knows_its_function_site_and_worker() -> None:
    records: list[tuple[BridgeCall | None, int]] = []

    def inspect_myself() -> None:
        records.append((current_bridge_call(), HUB.worker_id()))

    line = _here() + 1
    await sync_to_async(inspect_myself)()
    call, worker = records[0]
    assert call is not None
    assert call.kind == "sync_to_async"
    assert call.func_name.endswith("inspect_myself")
    assert call.site == (f"{__file__}:{line} in test_a_call_knows_its_function_site_and_worker")
    assert call.thread_sensitive is True
    assert call.worker == worker
    assert call.outer is None
    assert not call.running  # it has ended
    text = call.describe()
    assert "sync_to_async(" in text and "inspect_myself" in text and f":{line} " in text
    assert current_bridge_call() is None  # the event loop's worker runs none


def test_nested_calls_chain_on_the_worker_they_share() -> None:
    chains: list[list[str]] = []

    def innermost() -> None:
        chain = []
        call = current_bridge_call()
        while call is not None:
            chain.append(f"{call.kind}:{call.func_name.rsplit('.', 1)[-1]}")
            call = call.outer
        chains.append(chain)

    async def middle() -> None:
        # Thread-sensitive: it runs on the sync caller below, parked in
        # async_to_sync, so all three calls share that worker.
        await sync_to_async(innermost)()

    def outer_sync() -> None:
        async_to_sync(middle)()

    async def top() -> None:
        await sync_to_async(outer_sync)()

    async_to_sync(top)()
    assert chains == [
        [
            "sync_to_async:innermost",
            "async_to_sync:middle",
            "sync_to_async:outer_sync",
            "async_to_sync:top",
        ]
    ]


@pytest.mark.asyncio
async def test_a_parked_call_is_found_from_its_worker_id() -> None:
    gate = Gate()
    workers: list[int] = []

    def parked() -> None:
        workers.append(HUB.worker_id())
        gate.park()

    task = asyncio.ensure_future(sync_to_async(parked, thread_sensitive=False)())
    try:
        await eventually(lambda: gate.arrived == 1, "the call is parked")
        call = bridge_call_running_on(workers[0])
        assert call is not None
        assert call.func_name.endswith("parked")
        assert call.running
        assert call.thread_sensitive is False
        assert "running" in call.describe() and "not thread-sensitive" in call.describe()
    finally:
        gate.open()
    await task
    assert bridge_call_running_on(workers[0]) is None


@pytest.mark.asyncio
async def test_a_call_awaited_by_a_task_of_its_own_says_so() -> None:
    sites: list[str] = []

    def record_site() -> None:
        call = current_bridge_call()
        assert call is not None
        sites.append(call.site)

    await asyncio.gather(sync_to_async(record_site)())
    assert sites == ["<an asyncio task>"]


# -- the figures' types and cost -------------------------------------------------------


def test_stats_are_frozen_and_flatten_for_exporters() -> None:
    stats = HUB.stats()
    assert stats.hub == HUB.name
    with pytest.raises(AttributeError):
        stats.workers_busy = 3  # type: ignore[misc]
    flat = stats.as_dict()
    assert flat["hub"] == HUB.name
    assert flat["free_completed"] == stats.free.completed
    assert flat["async_to_sync_in_flight"] == stats.async_to_sync.in_flight
    assert flat["longest_wait"] == stats.longest_wait
    assert len(flat) == 1 + 4 * 6 + 5
    assert list(stats.calls()) == ["thread_sensitive", "free", "real_thread", "async_to_sync"]


def test_reading_the_stats_is_cheap() -> None:
    number = 2000
    per_read = min(timeit.repeat(HUB.stats, number=number, repeat=3)) / number
    print(f"\n[{HUB.name}] stats(): {per_read * 1e6:.1f} us per read")
    # A few microseconds on a quiet machine; the bound leaves room for a busy one.
    assert per_read < 100e-6


# -- fork ------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork with threads running
def test_a_forked_child_starts_its_figures_from_zero() -> None:
    async def one_call() -> None:
        await sync_to_async(lambda: None, thread_sensitive=False)()

    asyncio.run(one_call())
    assert HUB.stats().free.started >= 1
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, and never return into pytest
        status = 1
        try:
            at_fork = HUB.stats()
            asyncio.run(one_call())
            after_a_call = HUB.stats()
            report = repr((at_fork.free, after_a_call.free, at_fork.workers_busy))
            os.write(write, report.encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    done = 0
    try:
        deadline = time.monotonic() + 15
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            assert time.monotonic() < deadline, "the child did not finish"
            time.sleep(0.01)
        with os.fdopen(read, "rb") as pipe:
            report = pipe.read().decode()
    finally:
        if not done:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, report
    zero = CallStats(0, 0, 0, 0, 0, 0)
    one = CallStats(in_flight=0, queued=0, started=1, completed=1, failed=0, cancelled=0)
    assert report == repr((zero, one, 0))


# -- interrupted calls -----------------------------------------------------------------


def _settled(before: HubStats, after: HubStats) -> None:
    """Nothing left in flight, and every call made has ended one way."""
    for kind, figures in after.calls().items():
        assert (figures.in_flight, figures.queued) == (0, 0), (kind, after)
        made = grew(before.calls()[kind], figures)
        assert made["started"] == made["completed"] + made["failed"] + made["cancelled"], kind
    assert after.longest_wait == 0.0


def _wait_settled(baseline: HubStats) -> HubStats:
    deadline = time.monotonic() + 10
    stats = HUB.stats()
    while any(figures.in_flight for figures in stats.calls().values()):
        assert time.monotonic() < deadline, f"calls left in flight: {stats}"
        time.sleep(0.01)
        stats = HUB.stats()
    _settled(baseline, stats)
    return stats


@pytest.mark.asyncio
async def test_calls_cancelled_anywhere_leave_nothing_counted_in_flight(
    baseline: HubStats,
) -> None:
    # Tasks cancelled by wait_for while their calls queue, run, or wait in a
    # nested async_to_sync.
    async def leaf(pause: float) -> None:
        await asyncio.sleep(pause)

    def sync_side(pause: float) -> None:
        time.sleep(pause)
        async_to_sync(leaf)(pause)

    async def one(i: int) -> None:
        pause = (i % 7) * 0.002
        call = sync_to_async(sync_side, thread_sensitive=i % 3 == 0)(pause)
        try:
            await asyncio.wait_for(call, timeout=(i % 5) * 0.003)
        except (TimeoutError, asyncio.CancelledError):
            pass

    for round_ in range(5):
        await asyncio.gather(*(one(round_ * 40 + i) for i in range(40)))
    after = await asyncio.get_running_loop().run_in_executor(None, _wait_settled, baseline)
    total = sum(grew(baseline.calls()[k], f)["started"] for k, f in after.calls().items())
    cancelled = sum(f.cancelled - baseline.calls()[k].cancelled for k, f in after.calls().items())
    print(f"\n[{HUB.name}] {total} calls made, {cancelled} cancelled before they started: {after}")
    # wait_for with no time left may cancel a task before its call is made.
    assert total >= 100


@pytest.mark.gevent_only
def test_greenlets_timed_out_and_killed_leave_nothing_counted_in_flight(
    baseline: HubStats,
) -> None:
    import gevent

    async def leaf() -> None:
        await asyncio.sleep(0.002)

    def sync_side() -> None:
        gevent.sleep(0.002)
        # Often arrives as the outer loop ends, its caller timed out.
        async_to_sync(leaf)()

    async def middle(sensitive: bool) -> None:
        await sync_to_async(sync_side, thread_sensitive=sensitive)()

    def caller(index: int) -> None:
        for call in range(20):
            try:
                with gevent.Timeout(((index + call) % 4) * 0.002):
                    async_to_sync(middle)(call % 2 == 0)
            except gevent.Timeout:
                pass

    greenlets = [gevent.spawn(caller, index) for index in range(50)]
    gevent.sleep(0.05)
    gevent.killall(greenlets[::5], timeout=5)
    gevent.joinall(greenlets, timeout=20)
    assert all(greenlet.dead for greenlet in greenlets)
    after = _wait_settled(baseline)
    print(f"\n[gevent] after timeouts and kills: {after}")
