"""``CurrentThreadExecutor``: lend a blocked sync caller to the async code it waits for."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, ParamSpec, TypeVar

from . import _deadlock, hubs

__all__ = ["CurrentThreadExecutor"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _run_into(future: Future[Any], call: Callable[[], Any]) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        result = call()
    except BaseException as exc:
        future.set_exception(exc)
    else:
        future.set_result(result)


class CurrentThreadExecutor(Executor):
    """An executor whose work runs on the worker that created it.

    ``async_to_sync`` makes one for the sync caller it blocks: while the
    caller waits in :meth:`run_until_future`, thread-sensitive
    ``sync_to_async`` calls made by the async code are submitted here and run
    on the caller's own worker (its thread, or its greenlet on the gevent hub).

    ``old_executor`` is the executor of an enclosing ``async_to_sync`` on the
    same worker: work submitted after this one stopped serving goes there.
    """

    def __init__(self, old_executor: CurrentThreadExecutor | None) -> None:
        hub = hubs.get_hub()
        self._owner = hub.worker_id()
        self._signal = hub.new_signal()
        self._lock = hub.new_lock()
        self._queue: deque[tuple[Future[Any], Callable[[], Any]]] = deque()
        self._done = False
        self._old_executor = old_executor

    def run_until_future(self, future: Future[Any]) -> None:
        """Run submitted work on this worker until ``future`` is done.

        Work already queued when the future completes still runs. If the
        caller is interrupted (a gevent ``Timeout``, a kill, Ctrl-C), work
        queued then or later is refused with ``RuntimeError``.
        """
        try:
            self._serve_until(future)
        except BaseException:
            self._quit()
            raise

    def _serve_until(self, future: Future[Any]) -> None:
        """:meth:`run_until_future`, except that an interruption leaves it serving.

        The caller may call it again to go on serving (while what it waits
        for unwinds) and calls :meth:`_quit` when it stops for good.
        """
        if hubs.get_hub().worker_id() != self._owner:
            raise RuntimeError("You cannot run CurrentThreadExecutor from a different thread")

        def stop(_: Future[Any]) -> None:
            with self._lock:
                self._done = True
            self._signal.set()

        future.add_done_callback(stop)
        while True:
            with self._lock:
                item = self._queue.popleft() if self._queue else None
                finished = item is None and self._done
            if item is not None:
                _run_into(*item)
                del item
            elif finished:
                return
            else:
                self._signal.wait()

    def _quit(self) -> None:
        """Stop serving: refuse queued and later work with ``RuntimeError``.

        For a caller that will not serve any more (it was interrupted):
        refused work fails at once instead of leaving the async side waiting.
        """
        with self._lock:
            self._done = True
            abandoned = list(self._queue)
            self._queue.clear()
        for future, _ in abandoned:
            if future.set_running_or_notify_cancel():
                future.set_exception(
                    RuntimeError("The sync caller waiting in async_to_sync was interrupted")
                )

    def submit(self, fn: Callable[_P, _R], /, *args: _P.args, **kwargs: _P.kwargs) -> Future[_R]:
        if hubs.get_hub().worker_id() == self._owner:
            # The worker would wait for itself: a DeadlockError (a RuntimeError,
            # as asgiref raises here) naming the call it is running.
            raise _deadlock.own_worker_error()
        future: Future[_R] = hubs.get_hub().new_future()
        item = (future, lambda: fn(*args, **kwargs))
        # An executor that stopped serving hands work to the enclosing one
        # still parked on the same worker.
        executor: CurrentThreadExecutor | None = self
        while executor is not None:
            with executor._lock:
                if not executor._done:
                    executor._queue.append(item)
                    break
            executor = executor._old_executor
        else:
            raise RuntimeError("CurrentThreadExecutor already quit or is broken")
        executor._signal.set()
        return future
