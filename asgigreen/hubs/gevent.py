"""The gevent hub: workers are greenlets, with real OS threads on request.

For gevent-monkeypatched processes, where "threads" are greenlets sharing
one OS thread. Three mechanisms make the bridges work there:

* **asyncio's per-thread state per greenlet.** asyncio records the running
  loop (and on 3.14+ the running task) per OS thread, so every greenlet
  would see a loop that another greenlet runs. A greenlet switch tracer
  keeps that state per greenlet (:mod:`asgigreen.hubs._asyncio_state`).
* **Greenlet workers.** Thread-sensitive work runs on long-lived worker
  greenlets (one process-wide, one per ``ThreadSensitiveContext``) or on the
  greenlet blocked in ``async_to_sync``; other work on a greenlet per call,
  up to a bound. ``async_to_sync`` runs its event loop on a new greenlet,
  with a selector that waits cooperatively.
* **Direct switches.** The caller switches straight into the worker and gets
  control back when the work ends, with no trip through gevent's hub. If the
  work blocks, gevent's hub runs and hands control back to the caller (the
  job is "detached"); the outcome then arrives through an ordinary wake-up.
  Likewise a greenlet handing work to an idle event loop, or a loop handing
  a result to a parked greenlet, switches straight there (``_Spot``).

Real threads: blocking C code (a database driver without gevent support,
CPU-bound work) on a greenlet stalls every greenlet. ``real_thread=True`` on
``sync_to_async``, or :func:`configure` ``(real_threads=True)`` for the whole
hub, runs thread-sensitive work on a native OS thread instead (one per
worker, so the work still stays on one thread) and other work on gevent's
native thread pool.
"""

from __future__ import annotations

import _socket
import asyncio
import contextvars
import os
import selectors
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

import gevent.local
from gevent.hub import get_hub
from gevent.monkey import get_original
from gevent.threadpool import ThreadPool
from greenlet import getcurrent, greenlet

from .. import _deadlock
from .._runner import run_on_fresh_loop, run_to_completion
from ..current_thread_executor import CurrentThreadExecutor
from . import Hub, Signal, _asyncio_state
from . import get_hub as get_asgigreen_hub

__all__ = ["GeventHub", "configure"]

_T = TypeVar("_T")

_native_ident: Callable[[], int] = get_original("_thread", "get_ident")
_native_lock: Callable[[], Any] = get_original("_thread", "allocate_lock")
_get_running_loop = asyncio.events._get_running_loop

# Greenlets allowed to run non-thread-sensitive calls at once; more wait in
# line. Each running call holds a greenlet (about 10 KB while parked), so the
# bound caps memory the way a thread pool's size does.
_DEFAULT_MAX_GREENLETS = 1000
# Native threads for non-thread-sensitive calls sent to real threads.
_DEFAULT_MAX_REAL_THREADS = 20
# Clean event loops kept for later async_to_sync calls.
_MAX_IDLE_LOOPS = 64
# The longest a loop with ready work on every pass runs before it lets the
# other greenlets run: the interpreter's switch interval between threads.
_YIELD_INTERVAL = sys.getswitchinterval()
_monotonic = time.monotonic


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} must be a whole number") from None
    if value < 1:
        raise ValueError(f"{name}={raw!r} must be at least 1")
    return value


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


# -- jobs and direct switches -------------------------------------------------

# What a caller parked in a direct switch receives when the job blocked.
_DETACHED = object()


class _Job:
    """One call to run on a worker, and its outcome."""

    __slots__ = ("caller", "cancelled", "error", "func", "on_done", "result")

    def __init__(self, func: Callable[[], Any]) -> None:
        self.func = func
        self.result: Any = None
        self.error: BaseException | None = None
        self.cancelled = False
        # The greenlet parked in a direct switch, waiting for this job.
        self.caller: greenlet | None = None
        # How a caller that is not parked here learns the outcome.
        self.on_done: Callable[[_Job], None] | None = None

    def run(self) -> None:
        if self.cancelled:
            return
        try:
            self.result = self.func()
        except BaseException as exc:
            self.error = exc

    def finish(self) -> None:
        """Report the outcome to a caller that is not parked on the job."""
        if self.caller is None and self.on_done is not None:
            self.on_done(self)

    def settle(self, future: Future[Any] | asyncio.Future[Any]) -> None:
        if future.done():
            return
        if self.error is not None:
            future.set_exception(self.error)
        elif not self.cancelled:
            future.set_result(self.result)

    def cancel_if(self, future: Future[Any] | asyncio.Future[Any]) -> None:
        """A done-callback: a cancelled future means the job need not run."""
        if future.cancelled():
            self.cancelled = True


class _Home:
    """The OS thread, and its gevent hub, that the worker greenlets live on."""

    def __init__(self) -> None:
        self.hub = get_hub()
        self.thread = _native_ident()
        # Jobs whose caller is parked in a direct switch (switch_attached).
        self._attached: list[_Job] = []
        self._detach_queued = False
        # For stats: thread-sensitive worker greenlets alive, and those idle;
        # changed on this thread only. Native threads standing in for workers.
        self.serial_workers = 0
        self.serial_idle = 0
        self.real_workers: weakref.WeakSet[_RealThreadWorker] = weakref.WeakSet()

    def here(self) -> bool:
        """Whether the caller may switch to the workers (same OS thread, not the hub)."""
        return _native_ident() == self.thread and getcurrent() is not self.hub

    def call_soon(self, func: Callable[..., Any], *args: Any) -> None:
        """Run ``func(*args)`` in gevent's hub, from any OS thread."""
        if _native_ident() == self.thread:
            self.hub.loop.run_callback(func, *args)
        else:
            self.hub.loop.run_callback_threadsafe(func, *args)

    def switch_attached(self, job: _Job, target: greenlet, *args: Any) -> bool:
        """Switch into ``target`` to run ``job`` and park until it ends or blocks.

        True when the job ended during the switch. False when it blocked:
        gevent's hub then gave control back and the job reports through
        ``job.on_done`` when it ends.
        """
        job.caller = getcurrent()
        attached = self._attached
        attached.append(job)
        if not self._detach_queued:
            # One wake-up for every attached switch until the hub runs, not
            # one per switch: a busy caller may switch many times between
            # two turns of the hub, and each queued wake-up is kept till then.
            self._detach_queued = True
            self.hub.loop.run_callback(self._detach_blocked)
        try:
            answer = target.switch(*args)
        finally:
            if attached and attached[-1] is job:
                attached.pop()
            elif job in attached:
                attached.remove(job)
        job.caller = None
        return answer is not _DETACHED

    def _detach_blocked(self) -> None:
        # gevent's hub has control, so every job still attached has blocked:
        # give each parked caller control back.
        self._detach_queued = False
        blocked, self._attached = self._attached, []
        # A copy: each resumed caller takes its own job off ``blocked``.
        for job in tuple(blocked):
            caller = job.caller
            if caller is not None:
                job.caller = None
                caller.switch(_DETACHED)


class _Spot:
    """Where one greenlet parks until it is woken, through gevent's hub or directly.

    Unlike gevent's ``Waiter``, a parked greenlet can also be *taken*: a
    greenlet about to park anyway switches straight into it, skipping the
    queue of hub callbacks. A wake-up still queued when the greenlet leaves
    the spot (taken, or resumed another way such as a ``Timeout``) is
    cancelled, so it can never resume the greenlet somewhere else.
    """

    __slots__ = ("_hub", "_parked", "_queued")

    def __init__(self, hub: Any) -> None:
        self._hub = hub
        self._parked: greenlet | None = None
        self._queued: Any = None  # gevent's handle of the queued wake-up

    def park(self, via: greenlet | None = None, *, requeue: bool = False) -> None:
        """Park the current greenlet; switch to ``via`` (taken elsewhere) or to the hub.

        ``requeue``: wake it again as soon as the hub gets control (a yield).
        """
        self._parked = getcurrent()
        if requeue:
            self.wake()
        try:
            (via or self._hub).switch()
        finally:
            self._parked = None
            self._unqueue()

    def wake(self) -> None:
        """Resume the parked greenlet from gevent's hub soon (home thread only)."""
        if self._parked is not None and self._queued is None:
            self._queued = self._hub.loop.run_callback(self.resume)

    def resume(self, *_: Any) -> None:
        """Resume the parked greenlet now; called by gevent's hub (and its watchers)."""
        self._unqueue()
        parked = self._parked
        if parked is not None:
            parked.switch()

    def take(self) -> greenlet | None:
        """The parked greenlet, for the caller to switch into; it no longer waits here."""
        parked, self._parked = self._parked, None
        self._unqueue()
        return parked

    def _unqueue(self) -> None:
        queued = self._queued
        if queued is not None:
            self._queued = None
            queued.stop()


class _GreenSignal:
    """:class:`~asgigreen.hubs.Signal` for a greenlet; set from any thread."""

    __slots__ = ("_flag", "_home", "_spot")

    def __init__(self, home: _Home) -> None:
        self._home = home
        self._flag = False
        self._spot = _Spot(home.hub)

    def wait(self, via: greenlet | None = None) -> None:
        """Park until set; the first switch goes to ``via`` if given (a taken greenlet)."""
        while not self._flag:
            self._spot.park(via)
            via = None
        self._flag = False

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        if _native_ident() == self._home.thread:
            self._set_here()
        else:
            self._home.hub.loop.run_callback_threadsafe(self._set_here)

    def _set_here(self) -> None:
        self._flag = True
        self._spot.wake()

    def hand_over(self) -> None:
        """Set; a greenlet parked here runs at once, the caller once the hub has control."""
        if not self._home.here():
            self.set()
            return
        self._flag = True
        parked = self._spot.take()
        if parked is None:
            return
        # A loop's greenlet yields at its loop's spot, where call_soon_and_wait()
        # can take it too.
        loop = _get_running_loop()
        spot = loop.spot if isinstance(loop, _GreenEventLoop) else _Spot(self._home.hub)
        spot.park(via=parked, requeue=True)


class _NativeSignal:
    """:class:`~asgigreen.hubs.Signal` for a native thread other than home."""

    __slots__ = ("_unset",)

    def __init__(self) -> None:
        # Held while unset: wait() blocks acquiring it, set() releases it.
        self._unset = _native_lock()
        self._unset.acquire()

    def wait(self) -> None:
        self._unset.acquire()

    def set(self) -> None:
        try:
            self._unset.release()
        except RuntimeError:
            pass  # already set


class _HomeFuture(Future[Any]):
    """A Future guarded by a native lock.

    Completions are handed between greenlets and native threads but never
    waited on while pending (callers park on a signal instead), so gevent's
    cooperative lock buys nothing here and costs much more.
    """

    def __init__(self) -> None:
        # The fields Future.__init__ sets, without building the cooperative
        # Condition it would make only for us to replace.
        self._condition = threading.Condition(_native_lock())
        self._state = "PENDING"
        self._result = None
        self._exception = None
        self._waiters: list[Any] = []
        self._done_callbacks: list[Callable[[Future[Any]], object]] = []


def _wait(home: _Home, future: Future[Any]) -> None:
    signal = _GreenSignal(home)
    future.add_done_callback(lambda _: signal.set())
    signal.wait()


# -- workers --------------------------------------------------------------------


class _GreenletWorker(Executor):
    """One long-lived greenlet that runs jobs one at a time, in order."""

    def __init__(self, home: _Home) -> None:
        self._home = home
        self._jobs: deque[_Job] = deque()
        self._greenlet = greenlet(self._serve, parent=home.hub)
        # Parked with nothing to do: a switch into it is safe.
        self._idle = True
        home.serial_workers += 1
        home.serial_idle += 1
        self._shutdown = False
        self._stopped: Future[None] = Future()
        #: The native thread standing in for this worker for real-thread work.
        self.real_thread: _RealThreadWorker | None = None

    def submit(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> Future[_T]:
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        return _submit_job(self.run_job, fn, args, kwargs)

    def run_job(self, job: _Job) -> bool:
        """Run ``job``; True if it ended before this returned.

        From an idle worker's own OS thread, switch straight into it.
        """
        self._jobs.append(job)
        if self._idle and len(self._jobs) == 1 and self._home.here():
            self._set_idle(False)
            return self._home.switch_attached(job, self._greenlet)
        self._home.call_soon(self._wake)
        return False

    def holds_back(self, job: _Job) -> bool:
        """Whether ``job``, just given, waits for a job this worker is running."""
        return not self._idle and bool(self._jobs) and self._jobs[-1] is job

    def _wake(self) -> None:
        if self._idle:
            self._set_idle(False)
            self._greenlet.switch()

    def _set_idle(self, idle: bool) -> None:
        self._idle = idle
        self._home.serial_idle += 1 if idle else -1

    def _serve(self) -> None:
        while True:
            if not self._jobs:
                if self._shutdown:
                    self._home.serial_workers -= 1
                    self._stopped.set_result(None)
                    return
                self._set_idle(True)
                self._home.hub.switch()
                continue
            job = self._jobs.popleft()
            job.run()
            caller = job.caller
            if caller is None:
                job.finish()
                continue
            # The caller is parked in a direct switch: give it control back
            # and park here, with a wake-up queued if work remains.
            job.caller = None
            del job  # a parked worker must not keep the call's data alive
            self._set_idle(True)
            if self._jobs or self._shutdown:
                self._home.call_soon(self._wake)
            caller.switch()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if not self._shutdown:
            self._shutdown = True
            if cancel_futures:
                for job in self._jobs:
                    job.cancelled = True
            self._home.call_soon(self._wake)
        if self.real_thread is not None:
            self.real_thread.shutdown(wait=wait)
        if wait and self._home.here() and getcurrent() is not self._greenlet:
            _wait(self._home, self._stopped)


class _Runners(Executor):
    """Runs each job on a greenlet of its own, at most ``limit`` at once.

    Jobs over the limit wait in line. Creating a greenlet costs far more than
    switching to a parked one, so finished runners park for reuse, up to
    ``keep`` of them. Each job starts in an empty context, like a new thread.
    """

    def __init__(self, home: _Home, limit: int | None = None, keep: int = 256) -> None:
        self._home = home
        self.limit = limit
        self._keep = keep
        self._busy = 0
        self._waiting: deque[_Job] = deque()
        self._idle: list[greenlet] = []
        #: Every runner made, for deadlock reports (which look at busy ones).
        self.runners: weakref.WeakSet[greenlet] = weakref.WeakSet()

    @property
    def busy(self) -> int:
        """Runners running a job."""
        return self._busy

    @property
    def idle(self) -> int:
        """Runners parked for reuse."""
        return len(self._idle)

    def submit(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> Future[_T]:
        return _submit_job(self.run_job, fn, args, kwargs)

    def run_job(self, job: _Job) -> bool:
        """Run ``job``; True if it ended before this returned.

        From the home thread, switch straight into the runner.
        """
        if self.limit is not None and self._busy >= self.limit:
            self._waiting.append(job)
            return False
        self._busy += 1
        home = self._home
        if home.here():
            return home.switch_attached(job, self._take(), job)
        home.call_soon(self._start, job)
        return False

    def _start(self, job: _Job) -> None:
        self._take().switch(job)

    def _start_waiting(self) -> None:
        if self._waiting and (self.limit is None or self._busy < self.limit):
            self._busy += 1
            self._start(self._waiting.popleft())

    def _take(self) -> greenlet:
        if self._idle:
            return self._idle.pop()
        runner = greenlet(self._serve, parent=self._home.hub)
        self.runners.add(runner)
        return runner

    def holds_back(self, job: _Job) -> bool:
        """Whether ``job``, just given, waits in line for a runner."""
        return bool(self._waiting) and self._waiting[-1] is job

    def _serve(self, job: _Job) -> None:
        me = getcurrent()
        hub = self._home.hub
        while True:
            # Each job starts in an empty context, as on a new thread; set
            # here rather than via Context.run() to keep a C frame off the
            # stack a parked runner must save.
            me.gr_context = contextvars.Context()
            job.run()
            caller = job.caller
            job.finish()
            self._busy -= 1
            if self._waiting:
                if caller is None:
                    # Nobody to hand control back to: take the next job here.
                    self._busy += 1
                    job = self._waiting.popleft()
                    continue
                self._home.call_soon(self._start_waiting)
            if len(self._idle) >= self._keep:
                if caller is not None:
                    me.parent = caller  # ending hands control to the parked caller
                return
            self._idle.append(me)
            # Park (holding no finished job: its data must be freed); whoever
            # hands over the next job switches back in with it.
            del job
            job = caller.switch() if caller is not None else hub.switch()


class _RealThreadWorker(Executor):
    """A native OS thread that runs jobs one at a time (gevent's thread pool)."""

    def __init__(self, home: _Home, threads: int = 1) -> None:
        self._home = home
        self._pool = ThreadPool(threads, hub=home.hub)
        home.real_workers.add(self)

    def counts(self) -> tuple[int, int]:
        """Threads running a job, and threads waiting for one."""
        pool = self._pool
        threads = pool.size
        busy = min(len(pool), threads)
        return busy, threads - busy

    def submit(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> Future[_T]:
        return _submit_job(self.run_job, fn, args, kwargs)

    def run_job(self, job: _Job) -> bool:
        # The job records its own outcome on the native thread; the pool's
        # result only tells gevent's hub (in the home thread) that it ended.
        done = self._pool.spawn(job.run)
        done.rawlink(lambda _: job.finish())
        return False

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._pool.kill()


def _submit_job(
    run_job: Callable[[_Job], bool],
    fn: Callable[..., _T],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
) -> Future[_T]:
    future: Future[_T] = _HomeFuture()
    job = _Job(lambda: fn(*args, **kwargs))
    job.on_done = lambda done: done.settle(future)
    future.add_done_callback(job.cancel_if)
    if run_job(job):
        job.settle(future)
    return future


# -- event loops for async_to_sync ----------------------------------------------


def _native_selector_class() -> type[selectors.EpollSelector] | None:
    """The unpatched epoll selector (Linux); None elsewhere."""
    try:
        cls: type[selectors.EpollSelector] = get_original("selectors", "EpollSelector")
    except (AttributeError, ImportError):
        return None
    return None if cls.__module__.startswith("gevent") else cls


class _GreenSelector(selectors.BaseSelector):
    """A native selector whose blocking waits let other greenlets run.

    Polls without blocking first; only when nothing is ready does it park
    the greenlet at :attr:`spot` until the native selector's own descriptor
    is readable, the timeout passes, or the spot is woken.
    """

    def __init__(self, home: _Home, native: type[selectors.EpollSelector]) -> None:
        self._home = home
        self._native = native()
        self._readable = home.hub.loop.io(self._native.fileno(), 1)
        self._readable_seen = False
        #: Where the loop's greenlet parks: in select(), or yielding to a
        #: greenlet it handed a result (see ``_GreenSignal.hand_over``).
        self.spot = _Spot(home.hub)
        self._last_yield = _monotonic()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._native.select(0)
        if ready or (timeout is not None and timeout <= 0):
            # A loop with ready work on every pass would never park: let the
            # hub and the other greenlets run as often as the interpreter
            # would let other threads run.
            # A zero timer, not a queued callback: gevent's hub runs queued
            # callbacks for a while before it looks at timers and I/O again.
            if _monotonic() - self._last_yield >= _YIELD_INTERVAL and self._home.here():
                self._park(0)
            return ready
        if _native_ident() != self._home.thread:
            return self._native.select(timeout)
        if self._park(timeout):
            return self._native.select(0)
        # A timeout or a wake-up: any I/O that arrived meanwhile is seen on
        # the loop's next pass, which polls again.
        return []

    def _park(self, timeout: float | None) -> bool:
        """Park until readable (then True), the timeout, or a wake-up."""
        self._readable_seen = False
        self._readable.start(self._on_readable)
        timer = None if timeout is None else self._home.hub.loop.timer(timeout)
        if timer is not None:
            timer.start(self.spot.resume)
        try:
            self.spot.park()
        finally:
            self._last_yield = _monotonic()
            self._readable.stop()
            if timer is not None:
                timer.close()
        return self._readable_seen

    def _on_readable(self) -> None:
        self._readable_seen = True
        self.spot.resume()

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._native.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._native.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._native.modify(fileobj, events, data)

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._native.get_map()

    def close(self) -> None:
        self._readable.close()
        self._native.close()


class _GreenEventLoop(asyncio.SelectorEventLoop):
    """An event loop for a greenlet: a :class:`_GreenSelector` and native self-pipe."""

    def __init__(self, home: _Home, native: type[selectors.EpollSelector]) -> None:
        self._green_selector = _GreenSelector(home, native)
        #: The spot the loop's greenlet parks at when idle (see _GreenSelector).
        self.spot = self._green_selector.spot
        super().__init__(self._green_selector)

    def _make_self_pipe(self) -> None:
        # gevent's sockets would put a hub round trip on every wake-up.
        self._ssock, self._csock = _socket.socketpair()
        self._ssock.setblocking(False)
        self._csock.setblocking(False)
        self._internal_fds += 1  # type: ignore[attr-defined]
        self._add_reader(self._ssock.fileno(), self._read_from_self)  # type: ignore[attr-defined]

    def wake_with(self, callback: Callable[..., Any], *args: Any) -> None:
        """``call_soon_threadsafe`` for a caller on the loop's own OS thread."""
        self.call_soon(callback, *args)
        self.spot.wake()

    def abandon_after_fork(self) -> None:
        """Release this loop's descriptors in a forked child, and retire it.

        The epoll instance is shared with the parent: unregistering anything
        through it, as the loop's ``close()`` does, would break the parent's
        copy. The selector's own close never unregisters. The loop is then
        marked closed: collecting it later must not close its descriptors
        again (by then their numbers may belong to the child's own files).
        """
        for sock in (self._ssock, self._csock):
            sock.close()
        self._green_selector.close()
        self._closed = True  # BaseEventLoop's flag: close() and __del__ do nothing now

    def reusable(self) -> bool:
        """Whether the last run left nothing behind that a later one could see.

        Nothing scheduled or watched but the self-pipe, and no settings
        changed. Reads asyncio's private state: anything unknown counts as
        not reusable.
        """
        state = self.__dict__
        scheduled = state.get("_scheduled")
        if scheduled:
            # Timers cancelled early (wait_for that finished in time) linger.
            if not all(handle.cancelled() for handle in scheduled):
                return False
            scheduled.clear()
            state["_timer_cancelled_count"] = 0
        return (
            not self.is_closed()
            and not self.get_debug()
            and not state.get("_ready", True)
            and not state.get("_asyncgens", True)
            and state.get("_asyncgens_shutdown_called", True) is False
            and state.get("_default_executor", True) is None
            and state.get("_exception_handler", True) is None
            and state.get("_task_factory", True) is None
            and not state.get("_signal_handlers", True)
            and len(self._green_selector.get_map()) == 1
        )


# -- the hub ------------------------------------------------------------------


class GeventHub(Hub):
    """Workers are greenlets of a gevent-monkeypatched process.

    Settings (also through :func:`configure`):

    * ``real_threads`` (env ``ASGIGREEN_REAL_THREADS=1``): send all
      ``sync_to_async`` work to native OS threads, as the threads hub does.
    * ``max_greenlets`` (env ``ASGIGREEN_MAX_GREENLETS``): how many
      non-thread-sensitive calls run at once; the rest wait in line.
    * ``max_real_threads`` (env ``ASGIGREEN_MAX_REAL_THREADS``): native
      threads for non-thread-sensitive calls sent to real threads.
    """

    name = "gevent"

    def __init__(self) -> None:
        self.real_threads = _env_flag("ASGIGREEN_REAL_THREADS")
        self.max_greenlets = _env_int("ASGIGREEN_MAX_GREENLETS", _DEFAULT_MAX_GREENLETS)
        self.max_real_threads = _env_int("ASGIGREEN_MAX_REAL_THREADS", _DEFAULT_MAX_REAL_THREADS)
        self._native_selector = _native_selector_class()
        self._reset()

    def _reset(self) -> None:
        self._home = _Home()
        self._pool = _Runners(self._home, limit=self.max_greenlets)
        self._spawned = _Runners(self._home)
        self._idle_loops: list[_GreenEventLoop] = []
        self._real_pool: _RealThreadWorker | None = None

    def activate(self) -> None:
        _asyncio_state.install()
        if os.environ.get("ASGIGREEN_BLOCKING_MS", "").strip():
            # Imported only when asked for: off, blocking detection costs nothing.
            from .. import blocking

            blocking.enable_from_environment()

    def _worker_counts(self) -> tuple[int, int, int, int]:
        home, pool = self._home, self._pool
        busy = home.serial_workers - home.serial_idle + pool.busy
        idle = home.serial_idle + pool.idle
        for real in list(home.real_workers):
            real_busy, real_idle = real.counts()
            busy += real_busy
            idle += real_idle
        return busy, idle, self._spawned.busy, len(self._idle_loops)

    def after_fork_in_child(self) -> None:
        super().after_fork_in_child()
        for loop in self._idle_loops:
            loop.abandon_after_fork()
        self._reset()

    # -- identity -------------------------------------------------------------

    def worker_id(self) -> int:
        return id(getcurrent())

    def worker_local(self) -> Any:
        return gevent.local.local()

    def new_signal(self) -> _GreenSignal | _NativeSignal:
        if _native_ident() == self._home.thread:
            return _GreenSignal(self._home)
        return _NativeSignal()

    def new_lock(self) -> Any:
        return _native_lock()

    def new_future(self) -> Future[Any]:
        return _HomeFuture()

    # -- where sync work runs -------------------------------------------------

    def serial_executor(self) -> Executor:
        return _GreenletWorker(self._home)

    def run_in_executor(
        self,
        loop: asyncio.AbstractEventLoop,
        executor: Executor | None,
        func: Callable[[], _T],
        real_thread: bool | None = None,
    ) -> asyncio.Future[_T]:
        if real_thread is None:
            real_thread = self.real_threads
        runner = self._runner(executor, real_thread)
        future: asyncio.Future[_T] = loop.create_future()
        if runner is not None:
            job = _Job(func)
            job.on_done = lambda done: self._deliver(loop, done.settle, future)
            if runner(job):
                # Done during a direct switch. Tasks already ready to run (a
                # disconnect listener) must still go first, as when a thread
                # reports through the loop; with none, a loop pass would only
                # cost time (on gevent's own selector, a trip through its hub).
                if getattr(loop, "_ready", True):
                    loop.call_soon(job.settle, future)
                else:
                    job.settle(future)
            else:
                future.add_done_callback(job.cancel_if)
                owner = getattr(runner, "__self__", None)
                if isinstance(owner, (_GreenletWorker, _Runners)) and owner.holds_back(job):
                    _deadlock.queued_behind(owner, func)
            return future
        assert executor is not None
        submitted = executor.submit(func)
        submitted.add_done_callback(lambda done: self._deliver(loop, _copy_outcome, done, future))
        future.add_done_callback(lambda f: submitted.cancel() if f.cancelled() else None)
        return future

    def uses_real_thread(self, real_thread: bool | None) -> bool:
        return self.real_threads if real_thread is None else real_thread

    def _runner(
        self, executor: Executor | None, real_thread: bool
    ) -> Callable[[_Job], bool] | None:
        """How to run a job for ``executor``; None for a foreign executor."""
        if executor is None:
            if real_thread:
                return self._real_thread_pool().run_job
            return self._pool.run_job
        if isinstance(executor, _GreenletWorker):
            if real_thread:
                if executor.real_thread is None:
                    executor.real_thread = _RealThreadWorker(self._home)
                return executor.real_thread.run_job
            return executor.run_job
        if real_thread and isinstance(executor, CurrentThreadExecutor):
            if isinstance(executor._signal, _NativeSignal):
                return None  # the blocked caller is a native thread already
            # A greenlet caller can't become a thread: one native thread, the
            # process-wide worker's, stands in for all of them.
            return self._runner(self.process_serial_executor(), real_thread)
        return None

    def _real_thread_pool(self) -> _RealThreadWorker:
        if self._real_pool is None:
            self._real_pool = _RealThreadWorker(self._home, self.max_real_threads)
        return self._real_pool

    def _deliver(
        self, loop: asyncio.AbstractEventLoop, callback: Callable[..., Any], *args: Any
    ) -> None:
        """Run ``callback(*args)`` on ``loop``, waking it; nothing if it closed."""
        if not loop.is_closed():
            self.call_soon_threadsafe(loop, callback, *args)

    def _green_loop_here(self, loop: asyncio.AbstractEventLoop) -> _GreenEventLoop | None:
        """``loop`` if it is an open loop of this hub on the caller's OS thread."""
        if (
            isinstance(loop, _GreenEventLoop)
            and _native_ident() == self._home.thread
            and not loop.is_closed()
            and not loop.get_debug()  # debug mode rejects call_soon from other greenlets
        ):
            return loop
        return None

    def call_soon_threadsafe(
        self, loop: asyncio.AbstractEventLoop, callback: Callable[..., object], *args: Any
    ) -> None:
        green = self._green_loop_here(loop)
        if green is not None:
            green.wake_with(callback, *args)
        else:
            loop.call_soon_threadsafe(callback, *args)

    def call_soon_and_wait(
        self,
        loop: asyncio.AbstractEventLoop,
        signal: Signal,
        callback: Callable[..., object],
        *args: Any,
    ) -> None:
        green = self._green_loop_here(loop)
        if green is None or not isinstance(signal, _GreenSignal) or not self._home.here():
            super().call_soon_and_wait(loop, signal, callback, *args)
            return
        # The loop's greenlet, if it is idle: the caller is about to park
        # anyway, so it switches straight there (unless it won't park at all).
        idle = None if signal.is_set() else green.spot.take()
        green.call_soon(callback, *args)
        if idle is None:
            green.spot.wake()
        signal.wait(via=idle)

    def hand_over(self, signal: Signal) -> None:
        if isinstance(signal, _GreenSignal):
            signal.hand_over()
        else:
            signal.set()

    # -- how async code is run for a sync caller ------------------------------

    def spawn(self, func: Callable[[], _T]) -> Future[_T]:
        return _submit_job(self._spawned.run_job, func, (), {})

    def run_on_new_loop(self, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
        if self._native_selector is None or _native_ident() != self._home.thread:
            run_on_fresh_loop(main)
            return
        # A new loop costs several times a whole short call: reuse clean ones.
        idle = self._idle_loops
        loop = idle.pop() if idle else _GreenEventLoop(self._home, self._native_selector)
        reuse = False
        try:
            run_to_completion(loop, main)
            reuse = loop.reusable()
        finally:
            if reuse and len(idle) < _MAX_IDLE_LOOPS:
                idle.append(loop)
            else:
                loop.close()


def _copy_outcome(source: Future[Any], target: asyncio.Future[Any]) -> None:
    if target.done():
        return
    if source.cancelled():
        target.cancel()
        return
    # result() rather than exception(): gevent's thread pool futures raise
    # from exception() instead of returning the error.
    try:
        result = source.result()
    except BaseException as exc:
        target.set_exception(exc)
    else:
        target.set_result(result)


def configure(
    *,
    real_threads: bool | None = None,
    max_greenlets: int | None = None,
    max_real_threads: int | None = None,
    blocking_ms: int | None = None,
) -> GeventHub:
    """Change the gevent hub's settings (see :class:`GeventHub`); returns the hub.

    Selects the gevent hub if another was in use. ``blocking_ms`` turns
    blocking detection on with that threshold, or off with 0
    (:mod:`asgigreen.blocking`; env ``ASGIGREEN_BLOCKING_MS``).
    """
    hub = get_asgigreen_hub()
    if not isinstance(hub, GeventHub):
        from . import use

        use("gevent")
        hub = get_asgigreen_hub()
        assert isinstance(hub, GeventHub)
    if real_threads is not None:
        hub.real_threads = real_threads
    if max_greenlets is not None:
        if max_greenlets < 1:
            raise ValueError("max_greenlets must be at least 1")
        hub.max_greenlets = hub._pool.limit = max_greenlets
    if max_real_threads is not None:
        if max_real_threads < 1:
            raise ValueError("max_real_threads must be at least 1")
        hub.max_real_threads = max_real_threads
    if blocking_ms is not None:
        from .. import blocking

        if blocking_ms == 0:
            blocking.disable()
        else:
            blocking.enable(blocking_ms)
    return hub
