"""Tests for asgigreen.timeout.timeout (the deprecated asgiref-compatible one)."""

from __future__ import annotations

import asyncio
import time
import warnings

import pytest

from asgigreen.timeout import timeout

# The class is deprecated on purpose (as in asgiref); the deprecation itself is
# checked below, everything else ignores it.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def cancellation_requests(task: asyncio.Task[object]) -> int:
    return task.cancelling()


@pytest.mark.asyncio
@pytest.mark.filterwarnings("default::DeprecationWarning")
async def test_construction_warns_and_points_at_the_caller() -> None:
    with pytest.warns(DeprecationWarning, match=r"asyncio\.timeout") as record:
        timeout(1)
    assert record[0].filename == __file__


@pytest.mark.asyncio
@pytest.mark.filterwarnings("default::DeprecationWarning")
async def test_loop_argument_is_deprecated_but_accepted() -> None:
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        limit = timeout(1, loop=asyncio.get_running_loop())
    messages = [str(w.message) for w in record]
    assert any("loop argument" in message for message in messages)
    async with limit:
        await asyncio.sleep(0)
    assert not limit.expired


def test_needs_a_running_loop() -> None:
    with pytest.raises(RuntimeError):
        timeout(1)


@pytest.mark.asyncio
async def test_fast_block_is_left_alone() -> None:
    async with timeout(5) as limit:
        await asyncio.sleep(0.01)
        remaining = limit.remaining
    assert limit.expired is False
    assert remaining is not None
    assert 4 < remaining < 5


@pytest.mark.asyncio
async def test_slow_block_raises_timeout_error_promptly() -> None:
    slow_work_was_cancelled = False

    async def slow_work() -> None:
        nonlocal slow_work_was_cancelled
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            slow_work_was_cancelled = True
            raise

    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        async with timeout(0.05) as limit:
            await slow_work()

    assert time.monotonic() - started < 2
    assert limit.expired is True
    assert limit.remaining == 0.0
    assert slow_work_was_cancelled


@pytest.mark.asyncio
async def test_timeout_error_is_the_builtin_one_on_311() -> None:
    with pytest.raises(TimeoutError):
        async with timeout(0.01):
            await asyncio.sleep(1)


@pytest.mark.asyncio
async def test_none_means_no_limit() -> None:
    async with timeout(None) as limit:
        await asyncio.sleep(0.02)
    assert limit.remaining is None
    assert limit.expired is False


@pytest.mark.asyncio
@pytest.mark.parametrize("delay", [0, -1])
async def test_non_positive_delay_expires_at_first_await(delay: float) -> None:
    with pytest.raises(asyncio.TimeoutError):
        async with timeout(delay) as limit:
            await asyncio.sleep(0)
    assert limit.expired
    assert limit.remaining == 0.0


@pytest.mark.asyncio
async def test_block_without_awaits_is_not_cancelled_afterwards() -> None:
    # The timer must be disarmed on exit, even if it was due "immediately".
    async with timeout(0) as limit:
        pass
    await asyncio.sleep(0.01)
    assert limit.expired is False


@pytest.mark.asyncio
async def test_remaining_counts_down() -> None:
    async with timeout(1) as limit:
        first = limit.remaining
        await asyncio.sleep(0.05)
        second = limit.remaining
    assert first is not None and second is not None
    assert second < first <= 1


@pytest.mark.asyncio
async def test_cancel_disarms_the_limit() -> None:
    async with timeout(0.02) as limit:
        limit.cancel()
        await asyncio.sleep(0.06)
    assert limit.expired is False
    assert limit.remaining is None


@pytest.mark.asyncio
async def test_plain_with_works_inside_a_task() -> None:
    with pytest.raises(asyncio.TimeoutError), timeout(0.01) as limit:
        await asyncio.sleep(1)
    assert limit.expired


@pytest.mark.asyncio
async def test_entering_outside_a_task_is_an_error() -> None:
    loop = asyncio.get_running_loop()
    limit = timeout(1)
    outcome: asyncio.Future[BaseException | None] = loop.create_future()

    def enter_from_a_plain_callback() -> None:
        try:
            with limit:
                pass
        except BaseException as exc:
            outcome.set_result(exc)
        else:
            outcome.set_result(None)

    loop.call_soon(enter_from_a_plain_callback)
    assert isinstance(await outcome, RuntimeError)


@pytest.mark.asyncio
async def test_outside_cancellation_is_not_turned_into_timeout() -> None:
    entered = asyncio.Event()
    limit: timeout | None = None

    async def worker() -> None:
        nonlocal limit
        async with timeout(10) as limit:
            entered.set()
            await asyncio.sleep(10)

    task = asyncio.ensure_future(worker())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert limit is not None
    assert limit.expired is False


@pytest.mark.asyncio
async def test_other_exceptions_pass_through_after_expiry() -> None:
    with pytest.raises(KeyError):
        async with timeout(0.01) as limit:
            try:
                await asyncio.sleep(1)
            except asyncio.CancelledError:
                raise KeyError("cleanup failed") from None
    assert limit.expired


@pytest.mark.asyncio
async def test_swallowed_cancellation_means_no_error() -> None:
    async with timeout(0.01) as limit:
        try:
            await asyncio.sleep(1)
        except asyncio.CancelledError:
            pass
    assert limit.expired


@pytest.mark.asyncio
async def test_expiry_leaves_no_pending_cancellation() -> None:
    task = asyncio.current_task()
    assert task is not None
    before = cancellation_requests(task)

    with pytest.raises(asyncio.TimeoutError):
        async with timeout(0.01):
            await asyncio.sleep(1)

    assert cancellation_requests(task) == before
    # The task is still usable: a later await is not cancelled.
    await asyncio.sleep(0.01)


@pytest.mark.asyncio
async def test_outside_cancellation_at_expiry_time_wins() -> None:
    loop = asyncio.get_running_loop()

    async def worker() -> None:
        async with timeout(0.05) as limit:
            task = asyncio.current_task()
            assert task is not None and limit.remaining is not None
            # Someone else cancels the task in the very loop pass where the
            # limit expires; that cancellation must not be reported as a timeout.
            loop.call_at(loop.time() + limit.remaining, task.cancel)
            await asyncio.sleep(1)

    with pytest.raises(asyncio.CancelledError):
        await asyncio.ensure_future(worker())
