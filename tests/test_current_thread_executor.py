"""CurrentThreadExecutor: work submitted from elsewhere runs on the owning worker.

The owner parks in ``run_until_future``; other workers (threads, or
greenlets under gevent) submit to it. Both modes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from typing import Any

import pytest

from asgigreen import hubs
from asgigreen.current_thread_executor import CurrentThreadExecutor

pytestmark = pytest.mark.timeout(30)


def worker_id() -> int:
    return hubs.get_hub().worker_id()


def serve_while(executor: CurrentThreadExecutor, other: Callable[[Future[None]], None]) -> None:
    """Run ``other(done)`` on another worker; serve ``executor`` until it sets ``done``."""
    done: Future[None] = Future()
    failures: list[BaseException] = []

    def body() -> None:
        try:
            other(done)
        except BaseException as exc:
            failures.append(exc)
        finally:
            if not done.done():
                done.set_result(None)

    thread = threading.Thread(target=body)
    thread.start()
    executor.run_until_future(done)
    thread.join(10)
    if failures:
        raise failures[0]


def test_submitted_work_runs_on_the_owner_and_returns_its_result() -> None:
    executor = CurrentThreadExecutor(None)
    seen: dict[str, Any] = {}

    def other(done: Future[None]) -> None:
        seen["submitter"] = worker_id()
        seen["ran_on"] = executor.submit(worker_id).result(5)
        seen["sum"] = executor.submit(lambda a, b: a + b, 2, b=40).result(5)
        done.set_result(None)

    serve_while(executor, other)
    assert seen["ran_on"] == worker_id()
    assert seen["submitter"] != worker_id()
    assert seen["sum"] == 42


def test_an_exception_in_submitted_work_goes_to_its_future() -> None:
    executor = CurrentThreadExecutor(None)
    caught: list[BaseException] = []

    def fail() -> None:
        raise LookupError("nothing here")

    def other(done: Future[None]) -> None:
        future = executor.submit(fail)
        caught.append(future.exception(5))  # type: ignore[arg-type]
        # The owner keeps serving after a failure.
        assert executor.submit(lambda: "still serving").result(5) == "still serving"
        done.set_result(None)

    serve_while(executor, other)
    assert isinstance(caught[0], LookupError)
    assert str(caught[0]) == "nothing here"


def test_work_runs_in_submission_order_and_queued_work_runs_before_returning() -> None:
    executor = CurrentThreadExecutor(None)
    order: list[int] = []

    def other(done: Future[None]) -> None:
        # None of these is waited for: all are queued when done is set.
        for n in range(5):
            executor.submit(order.append, n)
        done.set_result(None)

    serve_while(executor, other)
    assert order == [0, 1, 2, 3, 4]


def test_work_cancelled_before_it_starts_never_runs() -> None:
    executor = CurrentThreadExecutor(None)
    ran: list[str] = []

    def other(done: Future[None]) -> None:
        doomed = executor.submit(ran.append, "doomed")
        assert doomed.cancel()
        executor.submit(ran.append, "kept").result(5)
        with pytest.raises(CancelledError):
            doomed.result(0)
        done.set_result(None)

    serve_while(executor, other)
    assert ran == ["kept"]


def test_submitting_from_the_owner_is_refused() -> None:
    executor = CurrentThreadExecutor(None)
    with pytest.raises(RuntimeError, match="from its own thread"):
        executor.submit(worker_id)


def test_serving_from_another_worker_is_refused() -> None:
    executor = CurrentThreadExecutor(None)
    errors: list[BaseException] = []
    future: Future[None] = Future()

    def elsewhere() -> None:
        try:
            executor.run_until_future(future)
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join(5)
    assert len(errors) == 1
    assert "from a different thread" in str(errors[0])


def test_submitting_after_it_quit_is_refused() -> None:
    executor = CurrentThreadExecutor(None)
    finished: Future[None] = Future()
    finished.set_result(None)
    executor.run_until_future(finished)
    errors: list[BaseException] = []

    def late() -> None:
        try:
            executor.submit(worker_id)
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=late)
    thread.start()
    thread.join(5)
    assert len(errors) == 1
    assert "already quit" in str(errors[0])


def test_work_for_a_finished_inner_executor_goes_to_the_enclosing_one() -> None:
    outer = CurrentThreadExecutor(None)
    inner = CurrentThreadExecutor(outer)
    finished: Future[None] = Future()
    finished.set_result(None)
    inner.run_until_future(finished)  # the inner caller is done

    seen: list[int] = []

    def other(done: Future[None]) -> None:
        seen.append(inner.submit(worker_id).result(5))
        done.set_result(None)

    serve_while(outer, other)
    assert seen == [worker_id()]


@pytest.mark.threads_only
def test_threads_hub_owner_is_the_os_thread() -> None:
    executor = CurrentThreadExecutor(None)
    seen: list[int] = []

    def other(done: Future[None]) -> None:
        seen.append(executor.submit(threading.get_ident).result(5))
        done.set_result(None)

    serve_while(executor, other)
    assert seen == [threading.get_ident()]


@pytest.mark.gevent_only
def test_gevent_hub_owner_is_the_greenlet() -> None:
    import greenlet

    executor = CurrentThreadExecutor(None)
    seen: list[Any] = []

    def other(done: Future[None]) -> None:
        seen.append(executor.submit(greenlet.getcurrent).result(5))
        done.set_result(None)

    serve_while(executor, other)
    assert seen == [greenlet.getcurrent()]
