"""The threads hub: workers are OS threads, as in asgiref."""

from __future__ import annotations

import asyncio
import contextvars
import os
import queue
import threading
import weakref
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

from .. import _deadlock
from .._runner import run_on_fresh_loop
from . import Hub, _gevent_patched_threading

__all__ = ["ThreadsHub"]

_T = TypeVar("_T")

# Spawned work (event loops for async_to_sync) runs on pooled threads. A sync
# caller stays blocked while its loop runs and nested calls need a thread
# each, so the pool must never make a call wait for a free thread: the bound
# only guards against runaway nesting.
_MAX_SPAWNED_THREADS = 10_000
# A burst of concurrent async_to_sync calls needs a thread each; afterwards
# the extra threads end once idle this long.
_SPAWNED_IDLE_TIMEOUT = 10.0


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


class _Tally:
    """Threads of a set of pools, and how many of them are running a call.

    Several pools share one, hence a lock of its own.
    """

    __slots__ = ("busy", "lock", "threads")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.threads = 0
        self.busy = 0

    def change(self, threads: int, busy: int) -> None:
        with self.lock:
            self.threads += threads
            self.busy += busy

    def read(self) -> tuple[int, int]:
        """Busy and idle threads."""
        with self.lock:
            return self.busy, self.threads - self.busy


class _ThreadPool(Executor):
    """Up to ``max_workers`` OS threads running calls from one queue.

    Like ``ThreadPoolExecutor``, but a call made for an event loop hands its
    outcome straight to the loop instead of going through a
    ``concurrent.futures.Future`` chained to an asyncio one. With one worker
    it runs calls one at a time, in order: a thread-sensitive worker.
    ``idle_timeout``: a thread with nothing to do for that long ends (None:
    threads stay until shutdown). ``tally`` counts its threads for stats.
    """

    def __init__(
        self,
        max_workers: int,
        name: str,
        tally: _Tally,
        idle_timeout: float | None = None,
    ) -> None:
        self._max_workers = max_workers
        self._tally = tally
        self._name = name
        self._idle_timeout = idle_timeout
        self._started = 0
        self._calls: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._shutdown = False
        # ThreadPoolExecutor's name for its threads; some tools inspect it.
        self._threads: set[threading.Thread] = set()

    def submit(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> Future[_T]:
        future: Future[_T] = Future()

        def call() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)

        self._put(call)
        return future

    def run_for_loop(
        self, loop: asyncio.AbstractEventLoop, func: Callable[[], _T]
    ) -> asyncio.Future[_T]:
        """Run ``func`` here; its outcome settles the returned future on ``loop``."""
        outcome: asyncio.Future[_T] = loop.create_future()

        def call() -> None:
            if outcome.cancelled():
                return
            try:
                result = func()
            except BaseException as exc:
                _settle_soon(loop, outcome.set_exception, outcome, exc)
            else:
                _settle_soon(loop, outcome.set_result, outcome, result)

        if self._put(call):
            _deadlock.queued_behind(self, func)
        return outcome

    def _put(self, call: Callable[[], None]) -> bool:
        """Queue ``call``; True if it must wait for a busy thread."""
        waits = False
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            if _interpreter_exiting:
                # The idle threads were told to stop; a new call would wait
                # for one forever.
                raise RuntimeError("cannot schedule new futures after interpreter shutdown")
            if self._idle > 0:
                self._idle -= 1
            elif len(self._threads) < self._max_workers:
                thread = threading.Thread(target=self._work, name=f"{self._name}_{self._started}")
                self._started += 1
                thread.start()
                self._threads.add(thread)
                self._tally.change(1, 0)
                _running.add(self)
            else:
                # Below zero: calls waiting for a thread. Each thread counts
                # itself idle after every call, so a queued call must be
                # counted too, or the pool would later see idle threads
                # that are busy.
                self._idle -= 1
                waits = True
        self._calls.put(call)
        return waits

    def _work(self) -> None:
        while True:
            try:
                call = self._calls.get(timeout=self._idle_timeout)
            except queue.Empty:
                with self._lock:
                    # Still counted idle means no call was promised to it.
                    if self._idle > 0:
                        self._idle -= 1
                        self._threads.discard(threading.current_thread())
                        self._tally.change(-1, 0)
                        return
                continue
            if call is None:
                self._tally.change(-1, 0)
                return
            tally = self._tally
            tally.change(0, 1)
            try:
                call()
            finally:
                tally.change(0, -1)
            del call
            with self._lock:
                self._idle += 1

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            already = self._shutdown
            self._shutdown = True
        if not already:
            self._stop_threads()
        if wait:
            for thread in list(self._threads):
                if thread is not threading.current_thread():
                    thread.join()

    def _stop_threads(self) -> None:
        for _ in range(len(self._threads)):
            self._calls.put(None)


# Like ThreadPoolExecutor's workers, these threads are not daemons: a call
# in progress at interpreter exit finishes. Idle ones are told to stop first.
_running: weakref.WeakSet[_ThreadPool] = weakref.WeakSet()
# Set once the main thread has finished: new calls are refused from then on,
# as concurrent.futures refuses them.
_interpreter_exiting = False


def _stop_idle_threads_at_exit() -> None:
    global _interpreter_exiting
    _interpreter_exiting = True
    for executor in list(_running):
        executor._stop_threads()


_register_atexit = getattr(threading, "_register_atexit", None)
if _register_atexit is not None:
    _register_atexit(_stop_idle_threads_at_exit)


def _settle_soon(
    loop: asyncio.AbstractEventLoop,
    setter: Callable[[Any], None],
    outcome: asyncio.Future[Any],
    value: Any,
) -> None:
    def settle() -> None:
        if not outcome.done():
            setter(value)

    try:
        loop.call_soon_threadsafe(settle)
    except RuntimeError:
        pass  # the loop closed: nobody is waiting any more


class ThreadsHub(Hub):
    """Workers are OS threads.

    Thread-sensitive work runs on single-thread executors; other work on the
    event loop's default executor if one was set, else on a pool of the size
    asyncio would give it; ``async_to_sync`` without a running loop starts a
    fresh event loop on a pooled thread (asgiref starts a new thread for each
    call).
    """

    name = "threads"

    def __init__(self) -> None:
        self._loop_threads: _ThreadPool | None = None
        self._pool: _ThreadPool | None = None
        self._pool_lock = threading.Lock()
        # Threads running sync_to_async work, and threads running loops.
        self._workers = _Tally()
        self._loops = _Tally()

    def activate(self) -> None:
        # Chosen on purpose in a gevent-patched process (ASGIGREEN_HUB=threads),
        # this hub's "threads" are greenlets: asyncio's per-thread state has to
        # follow them, or a worker finishing a future of a loop parked in
        # another greenlet takes it for its own and never wakes it (gevent#2213).
        if _gevent_patched_threading():
            from ._asyncio_state import install

            install()

    def worker_id(self) -> int:
        return threading.get_ident()

    def worker_local(self) -> Any:
        return threading.local()

    def new_signal(self) -> _ThreadSignal:
        return _ThreadSignal()

    def serial_executor(self) -> Executor:
        return _ThreadPool(1, "asgigreen-sensitive", self._workers)

    def run_in_executor(
        self,
        loop: asyncio.AbstractEventLoop,
        executor: Executor | None,
        func: Callable[[], _T],
        real_thread: bool | None = None,
    ) -> asyncio.Future[_T]:
        # Every worker here is a real thread already: real_thread changes nothing.
        if executor is None and getattr(loop, "_default_executor", True) is None:
            # The loop has no default executor of its own yet: asyncio would
            # make a ThreadPoolExecutor of this size; a pool that wakes the
            # loop directly does the same job with less overhead per call.
            executor = self._default_pool()
        if isinstance(executor, _ThreadPool):
            return executor.run_for_loop(loop, func)
        return loop.run_in_executor(executor, func)

    def _default_pool(self) -> _ThreadPool:
        pool = self._pool
        if pool is None:
            with self._pool_lock:
                pool = self._pool
                if pool is None:
                    workers = min(32, (os.cpu_count() or 1) + 4)
                    pool = self._pool = _ThreadPool(workers, "asgigreen-worker", self._workers)
        return pool

    def spawn(self, func: Callable[[], _T]) -> Future[_T]:
        # In an empty context, as on a new thread. A pooled thread keeps the
        # context it was started in (Sentry's ThreadingIntegration puts the
        # starting request's scopes there), and async_to_sync only lays its
        # caller's variables over what the loop's task starts with.
        return self._spawn_pool().submit(contextvars.Context().run, func)

    def run_on_new_loop(self, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
        run_on_fresh_loop(main)

    def _spawn_pool(self) -> _ThreadPool:
        pool = self._loop_threads
        if pool is None:
            with self._pool_lock:
                pool = self._loop_threads
                if pool is None:
                    pool = _ThreadPool(
                        _MAX_SPAWNED_THREADS,
                        "asgigreen-spawn",
                        self._loops,
                        idle_timeout=_SPAWNED_IDLE_TIMEOUT,
                    )
                    self._loop_threads = pool
        return pool

    def _worker_counts(self) -> tuple[int, int, int, int]:
        return (*self._workers.read(), *self._loops.read())

    def after_fork_in_child(self) -> None:
        super().after_fork_in_child()
        self._loop_threads = None
        self._pool = None
        self._pool_lock = threading.Lock()
        # The parent's pool threads are gone; a pool thread that forked goes
        # on with its old pool, whose tally nobody reads any more.
        self._workers = _Tally()
        self._loops = _Tally()
