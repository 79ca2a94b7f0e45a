"""The threads hub: workers are OS threads, as in asgiref."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, TypeVar

from .._runner import run_on_fresh_loop
from . import Hub

__all__ = ["ThreadsHub"]

_T = TypeVar("_T")

# Spawned work (event loops for async_to_sync) runs on pooled threads. A sync
# caller stays blocked while its loop runs and nested calls need a thread
# each, so the pool must never make a call wait for a free thread: the bound
# only guards against runaway nesting.
_MAX_SPAWNED_THREADS = 10_000


class _ThreadSignal:
    __slots__ = ("_condition", "_flag")

    def __init__(self) -> None:
        self._condition = threading.Condition(threading.Lock())
        self._flag = False

    def wait(self) -> None:
        with self._condition:
            while not self._flag:
                self._condition.wait()
            self._flag = False

    def set(self) -> None:
        with self._condition:
            self._flag = True
            self._condition.notify()


class ThreadsHub(Hub):
    """Workers are OS threads.

    Thread-sensitive work runs on single-thread executors; other work on the
    event loop's default executor; ``async_to_sync`` without a running loop
    starts a fresh event loop on a pooled thread (asgiref starts a new thread
    for each call).
    """

    name = "threads"

    def __init__(self) -> None:
        self._loop_threads: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def worker_id(self) -> int:
        return threading.get_ident()

    def worker_local(self) -> Any:
        return threading.local()

    def new_signal(self) -> _ThreadSignal:
        return _ThreadSignal()

    def serial_executor(self) -> Executor:
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="asgigreen-sensitive")

    def run_in_executor(
        self,
        loop: asyncio.AbstractEventLoop,
        executor: Executor | None,
        func: Callable[[], _T],
        real_thread: bool | None = None,
    ) -> asyncio.Future[_T]:
        # Every worker here is a real thread already.
        return loop.run_in_executor(executor, func)

    def spawn(self, func: Callable[[], _T]) -> Future[_T]:
        return self._spawn_pool().submit(func)

    def run_on_new_loop(self, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
        run_on_fresh_loop(main)

    def _spawn_pool(self) -> ThreadPoolExecutor:
        pool = self._loop_threads
        if pool is None:
            with self._pool_lock:
                pool = self._loop_threads
                if pool is None:
                    pool = ThreadPoolExecutor(
                        max_workers=_MAX_SPAWNED_THREADS, thread_name_prefix="asgigreen-spawn"
                    )
                    self._loop_threads = pool
        return pool

    def after_fork_in_child(self) -> None:
        super().after_fork_in_child()
        self._loop_threads = None
        self._pool_lock = threading.Lock()
