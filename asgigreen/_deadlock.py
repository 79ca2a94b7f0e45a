"""Deadlock reports: a bridge call that can never run raises :class:`DeadlockError`.

asgiref hangs when a ``sync_to_async`` call waits, through a cycle, for
itself, or says "would deadlock" without naming the cycle. asgigreen builds a
wait-for graph from what the bridges and hubs know (a call queued behind a
busy worker or a full pool, a worker parked in ``async_to_sync`` for its
coroutine's task, the task awaiting a queued call) and from the stack of a
worker blocked in a wait it can read. A call found on a cycle is withdrawn
(it never runs) and its ``await`` raises :class:`DeadlockError`, whose
message names each worker, the call it runs and its call site, what it
waits for, and the fix.

What is detected, and nothing else:

* **A thread-sensitive worker waiting for itself.** A ``sync_to_async``
  call queued on a thread-sensitive worker (the process-wide one or a
  :class:`~asgigreen.sync.ThreadSensitiveContext`'s) from an event loop
  running on that same worker, inside the call it is running (a sync
  function that started ``asyncio.run()`` instead of using
  ``async_to_sync``). Certain, so raised at once, as the call is queued.
  asgiref's two errors for this shape, "Single thread executor already
  being used, would deadlock" (a call made in a context inherited from the
  call holding the process-wide worker, raised as asgiref raises it) and
  "You cannot submit onto CurrentThreadExecutor from its own thread", keep
  their first words and are :class:`DeadlockError` too, naming the call
  that holds the worker.
* **A thread-sensitive worker waiting for a thread or greenlet that waits
  for it.** The worker runs a sync function blocked, with no timeout, in
  ``Thread.join()``, ``concurrent.futures.Future.result()`` (a
  ``ThreadPoolExecutor`` job), or on the gevent hub a greenlet's ``join()``
  or ``get()`` called on a plain name (``g.join()``, read from the caller's
  bytecode, as gevent's compiled join leaves no frame); the thread, job or
  greenlet waited for is in ``run_until_complete()`` (``asyncio.run()``)
  of an event loop whose main task waits, itself or through the tasks and
  ``gather`` it awaits, for a call queued on that worker.
* **A bound used up by calls that wait on each other.** Every greenlet the
  gevent hub allows ``thread_sensitive=False`` calls (``max_greenlets``), or
  every thread of the threads hub's default pool, runs a call parked in
  ``async_to_sync`` whose coroutine's task (or a task or ``gather`` it
  awaits) waits for a call queued on that same full pool.

Waits are followed through nothing else: a task awaiting a plain future,
an ``asyncio.Event``, ``asyncio.wait()`` or a ``TaskGroup``; a thread
blocked on a lock, a queue or a socket, or waiting with a timeout; a loop in
``run_forever()``; executors that are not the hub's own (an ``executor=``
given, a loop's own default executor, the gevent hub's native threads) end
the search, and nothing is reported: a call that legitimately takes long is
never reported. A cycle that a timeout will break (``asyncio.wait_for``
around the queued call) is reported anyway: the call could not have run
before the timeout.

The first shape is checked as the call queues; the others by one watchdog
(a thread on the threads hub, a timer of gevent's hub on the gevent hub)
that runs only while some call is queued behind a busy worker or a full
pool: :data:`CHECK_INTERVAL` seconds after the first such call and as long
as any is queued, each cycle it finds confirmed by a second look
:data:`CONFIRM_DELAY` later. So a cycle is reported within about half a
second. Of a pool's cycle one call is withdrawn, which is enough to break
it: the call that made it (the newest).

Cost: a call that needn't queue pays one look at an empty dict (about
10 ns; ``async_to_sync`` about 45 ns more, for its record); a queued call,
a record of a few microseconds; while calls are queued, a look every
:data:`CHECK_INTERVAL` of about a microsecond per queued call (measured: a
mean of 0.8 ms, at most 3 ms, with 1000 calls queued for 10 greenlets).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

from . import _calls, _stacks

__all__ = ["CHECK_INTERVAL", "CONFIRM_DELAY", "DeadlockError"]

#: Seconds between the watchdog's looks while calls are queued behind busy
#: workers or full pools.
CHECK_INTERVAL = 0.2
#: Seconds after a look that found a cycle before the look that confirms it.
CONFIRM_DELAY = 0.05

_log = logging.getLogger("asgigreen")
# Of a full pool's workers, how many a report names one by one.
_HOLDERS_SHOWN = 3
_monotonic = time.monotonic


class DeadlockError(RuntimeError):
    """A bridge call can never complete: what it waits for waits for it.

    Raised where asgiref would hang, or say "would deadlock" without the
    cause: for a ``sync_to_async`` call queued on a thread-sensitive worker
    that is running the event loop the call was made from, or is blocked in
    ``Thread.join()``, ``Future.result()`` or a gevent greenlet's ``join()``
    on the thread running that loop; and for a call queued on a full pool
    (the gevent hub's ``max_greenlets``, the threads hub's default pool)
    whose every worker is parked in ``async_to_sync`` waiting for calls
    queued there. It comes at once, or within about half a second, where the
    call that closed the cycle was awaited; that call is withdrawn and never
    runs, and the rest of the process goes on. Waits that can't be read for
    sure (locks, queues, timeouts, other executors) are never guessed at:
    such cycles still hang.

    The message is the report: each worker on the cycle, the call it runs
    and its call site, what it waits for, and the fix. A ``RuntimeError``, as
    asgiref's errors for these cases are.

    ``summary``: the message's first line; ``cycle``: its steps, one line
    each; ``fix``: what to change.
    """

    def __init__(self, summary: str, cycle: Iterable[str], fix: str) -> None:
        self.summary = summary
        self.cycle = tuple(cycle)
        self.fix = fix
        lines = [summary, *(f"  {step}" for step in self.cycle), f"Fix: {fix}"]
        super().__init__("\n".join(lines))


DeadlockError.__module__ = "asgigreen.sync"

_FIX_OWN_LOOP = (
    "call async code from sync code with async_to_sync, not asyncio.run() or "
    "loop.run_until_complete(): its thread-sensitive calls then run on the waiting "
    "worker itself. Or pass thread_sensitive=False to the inner sync_to_async if "
    "the function need not share the worker."
)
_FIX_FOREIGN = (
    "don't make a thread-sensitive function wait for a thread or greenlet that runs "
    "its own event loop: call the async code from the function itself with "
    "async_to_sync (its thread-sensitive calls then run on the waiting worker), or "
    "pass thread_sensitive=False to the inner sync_to_async if the function need "
    "not share the worker."
)
_FIX_SERIAL = (
    "a thread-sensitive worker runs one call at a time: the call holding it must not "
    "wait for another call queued on it. Reach the inner code through async_to_sync "
    "from the call itself, or make one of the calls thread_sensitive=False."
)
_FIX_POOL = (
    "calls that take a slot of a bounded pool must not wait for calls queued on the "
    "same pool. Make the inner sync_to_async thread_sensitive=True (it then runs on "
    "the worker waiting in async_to_sync, taking no slot), or raise the bound: "
    "ASGIGREEN_MAX_GREENLETS or asgigreen.hubs.gevent.configure(max_greenlets=...) "
    "on the gevent hub, loop.set_default_executor(ThreadPoolExecutor(max_workers=...)) "
    "on the threads hub."
)


# -- what the hubs and the bridges record ---------------------------------------

#: Filled by the hubs for a ``sync_to_async`` call that had to queue behind a
#: busy worker or a full pool: its work function, and where it queued. The
#: bridge takes the entry out right after submitting, on the same worker,
#: so this holds an entry only for that moment.
behind: dict[Callable[..., Any], Any] = {}

#: The ``async_to_sync`` calls in progress, with what they wait for (the
#: bridge's record of the coroutine's task).
awaiting: dict[_calls.BridgeCall, Any] = {}


def queued_behind(target: Any, work: Callable[..., Any]) -> None:
    """From a hub: ``work`` of a ``sync_to_async`` call waits for ``target``'s workers."""
    behind[work] = target


class _Entry:
    """A ``sync_to_async`` call queued behind busy workers, while it waits."""

    __slots__ = ("call", "loop", "pending", "target", "task", "waiter", "waiter_id")

    def __init__(
        self,
        call: _calls.BridgeCall,
        target: Any,
        loop: asyncio.AbstractEventLoop,
        pending: asyncio.Future[Any],
        waiter_id: int,
        waiter: Any,
    ) -> None:
        self.call = call
        self.target = target
        self.loop = loop
        self.pending = pending
        # The task awaiting the call, and the worker running its loop.
        self.task = asyncio.current_task(loop)
        self.waiter_id = waiter_id
        self.waiter = waiter


_lock = threading.Lock()
_entries: dict[_calls.BridgeCall, _Entry] = {}


def watch(
    hub: Any,
    call: _calls.BridgeCall,
    work: Callable[..., Any],
    pending: asyncio.Future[Any],
    loop: asyncio.AbstractEventLoop,
) -> None:
    """From the bridge, after submitting ``work``: watch ``call`` if it queued.

    Raises :class:`DeadlockError` (the call withdrawn) when it queued on a
    thread-sensitive worker that is running the very call this one was made
    from: the worker can never get to it.
    """
    target = behind.pop(work, None)
    if target is None or call._state != _calls._QUEUED:
        return
    try:
        error = _register(hub, call, target, pending, loop)
    except Exception:  # a diagnostic must never break the call
        _log.debug("asgigreen deadlock check failed", exc_info=True)
        return
    if error is not None:
        raise error


def _register(
    hub: Any,
    call: _calls.BridgeCall,
    target: Any,
    pending: asyncio.Future[Any],
    loop: asyncio.AbstractEventLoop,
) -> DeadlockError | None:
    view = _view_of(hub)
    if view is None:
        return None
    entry = _Entry(call, target, loop, pending, hub.worker_id(), view.current_worker())
    if view.slots(target) == 1:
        holders = view.holders(target)
        if holders and holders[0][0] == entry.waiter_id:
            if not _withdraw(entry):
                return None
            pending.cancel()
            return _own_loop_error(view, entry)
    with _lock:
        _entries[call] = entry
    view.arm(CHECK_INTERVAL)
    return None


def _withdraw(entry: _Entry) -> bool:
    """Take the call out of its queue for good; False if it started meanwhile."""
    _calls.abandon(entry.call)
    with _lock:
        _entries.pop(entry.call, None)
    return entry.call._state == _calls._ABANDONED


# -- errors raised straight away ------------------------------------------------


def _own_loop_error(view: _View, entry: _Entry) -> DeadlockError:
    holder = _calls.bridge_call_running_on(entry.waiter_id)
    steps = [
        f"it waits for {view.describe_target(entry.target)} "
        f"({view.describe_worker(entry.waiter_id)}),",
        f"which is running {_chain(holder)},",
        "which is running the event loop this call was made from (started there "
        "without async_to_sync), so the worker can't take the call until that call returns.",
    ]
    return DeadlockError(f"{_short(entry.call)} can never run:", steps, _FIX_OWN_LOOP)


def process_worker_in_use(hub: Any, func: Callable[..., Any], caller: FrameType) -> DeadlockError:
    """asgiref's "would deadlock" error, naming the call that holds the worker.

    For a thread-sensitive call made in a context inherited from a call
    running on the process-wide worker (an event loop started inside it
    without ``async_to_sync``).
    """
    holder = None
    worker = "the process-wide thread-sensitive worker"
    try:
        view = _view_of(hub)
        target = view.process_worker() if view is not None else None
        holders = view.holders(target) if view is not None and target is not None else None
        if view is not None and holders:
            holder = _calls.bridge_call_running_on(holders[0][0])
            worker = f"{worker} ({view.describe_worker(holders[0][0])})"
    except Exception:  # the error is raised anyway, naming less
        _log.debug("asgigreen deadlock report failed", exc_info=True)
    steps = [
        f"it would wait for {worker},",
        f"which is running {_chain(holder)}," if holder is not None else "which is busy,",
        "and this code runs inside that call (in a context inherited from it, here "
        "through an event loop started without async_to_sync), so the worker can't "
        "take the new call until the call it runs returns.",
    ]
    return DeadlockError(
        "Single thread executor already being used, would deadlock: "
        f"sync_to_async({_name(func)}) from {_calls.call_site(caller.f_code, caller.f_lasti)} "
        "can never run:",
        steps,
        _FIX_OWN_LOOP,
    )


def own_worker_error() -> DeadlockError:
    """asgiref's error for a call sent to the parked caller by that caller's own worker."""
    here = _calls.current_bridge_call()
    try:
        new = _submitting_call()
    except Exception:  # the error is raised anyway, naming less
        new = None
    what = _short(new) if new is not None else "a thread-sensitive sync_to_async call"
    steps = [
        "it would run on the worker parked in async_to_sync, which is this very worker:",
        f"it is running {_chain(here)}," if here is not None else "it is busy,",
        "which runs the event loop this call was made from (started there without "
        "async_to_sync), so it can't take the call until that call returns.",
    ]
    return DeadlockError(
        f"You cannot submit onto CurrentThreadExecutor from its own thread: {what} can never run:",
        steps,
        _FIX_OWN_LOOP,
    )


def _submitting_call() -> _calls.BridgeCall | None:
    # The record of the sync_to_async call being submitted, from its frame.
    frame: FrameType | None = sys._getframe(1)
    for _ in range(12):
        if frame is None:
            break
        code = frame.f_code
        if code.co_qualname == "SyncToAsync.__call__" and code.co_filename == _SYNC_FILE:
            call = frame.f_locals.get("call")
            return call if isinstance(call, _calls.BridgeCall) else None
        frame = frame.f_back
    return None


_SYNC_FILE = os.path.join(os.path.dirname(__file__), "sync.py")


# -- describing -----------------------------------------------------------------


def _name(func: Any) -> str:
    module = getattr(func, "__module__", None)
    name = getattr(func, "__qualname__", None) or type(func).__qualname__
    return f"{module}.{name}" if isinstance(module, str) else str(name)


def _short(call: _calls.BridgeCall) -> str:
    """``sync_to_async(module.func) from path.py:12 in caller``."""
    return call.describe().split(", ", 1)[0]


def _chain(call: _calls.BridgeCall | None) -> str:
    """A call and the calls it is nested in on its worker, innermost first."""
    parts = []
    while call is not None:
        parts.append(call.describe())
        call = call.outer
    return ", inside ".join(parts) if parts else "nothing the bridges know of"


# -- the hubs, as the checks see them ---------------------------------------------

# A worker holding a slot of a target: its id and its innermost frame (None
# where it can't be read).
_Holder = tuple[int, FrameType | None]


class _View:
    """What the checks need to know of one hub's workers."""

    def __init__(self, hub: Any) -> None:
        self.hub = hub

    def current_worker(self) -> Any:
        return None

    def slots(self, target: Any) -> int:
        raise NotImplementedError

    def holders(self, target: Any) -> list[_Holder] | None:
        """The workers holding every slot of ``target``; None if a slot is free."""
        raise NotImplementedError

    def waiter_frame(self, entry: _Entry) -> FrameType | None:
        raise NotImplementedError

    def process_worker(self) -> Any:
        return self.hub._process_serial

    def describe_target(self, target: Any) -> str:
        raise NotImplementedError

    def describe_worker(self, worker_id: int) -> str:
        return f"worker {worker_id:#x}"

    def arm(self, delay: float) -> None:
        raise NotImplementedError

    def begin(self) -> None:
        """Called as a look starts."""

    def end(self) -> None:
        """Called as a look ends."""

    def _serial_name(self, target: Any) -> str:
        if target is self.hub._process_serial:
            return "the process-wide thread-sensitive worker"
        return "a ThreadSensitiveContext's thread-sensitive worker"


class _ThreadsView(_View):
    def __init__(self, hub: Any) -> None:
        super().__init__(hub)
        self._frames: dict[int, FrameType] = {}
        self._timer = _ThreadTimer(lambda: _look(self))

    def begin(self) -> None:
        self._frames = sys._current_frames()

    def end(self) -> None:
        self._frames = {}  # frames keep their locals alive

    def slots(self, target: Any) -> int:
        return int(target._max_workers)

    def holders(self, target: Any) -> list[_Holder] | None:
        with target._lock:
            threads = list(target._threads)
            idle = target._idle
        if idle > 0 or len(threads) < target._max_workers:
            return None
        frames = self._frames
        return [(t.ident, frames.get(t.ident)) for t in threads if t.ident is not None]

    def waiter_frame(self, entry: _Entry) -> FrameType | None:
        return self._frames.get(entry.waiter_id)

    def describe_target(self, target: Any) -> str:
        if self.slots(target) == 1:
            return self._serial_name(target)
        return f"the threads hub's default pool ({target._max_workers} threads, all busy)"

    def describe_worker(self, worker_id: int) -> str:
        for thread in threading.enumerate():
            if thread.ident == worker_id:
                return f"thread {thread.name!r} ({worker_id:#x})"
        return f"thread {worker_id:#x}"

    def arm(self, delay: float) -> None:
        self._timer.arm(delay)


class _GeventView(_View):
    def current_worker(self) -> Any:
        from greenlet import getcurrent

        return getcurrent()

    def slots(self, target: Any) -> int:
        if hasattr(target, "_greenlet"):
            return 1
        return int(target.limit or 0)

    def holders(self, target: Any) -> list[_Holder] | None:
        if hasattr(target, "_greenlet"):  # a thread-sensitive worker greenlet
            if target._idle:
                return None
            return [(id(target._greenlet), target._greenlet.gr_frame)]
        if target.limit is None or target.busy < target.limit:
            return None
        idle = {id(runner) for runner in target._idle}
        return [
            (id(runner), runner.gr_frame)
            for runner in list(target.runners)
            if runner and id(runner) not in idle
        ]

    def waiter_frame(self, entry: _Entry) -> FrameType | None:
        frame: FrameType | None = getattr(entry.waiter, "gr_frame", None)
        return frame

    def describe_target(self, target: Any) -> str:
        if hasattr(target, "_greenlet"):
            return self._serial_name(target)
        return (
            f"the gevent hub's greenlets for thread_sensitive=False calls "
            f"(max_greenlets={target.limit}, all busy)"
        )

    def describe_worker(self, worker_id: int) -> str:
        return f"greenlet {worker_id:#x}"

    def arm(self, delay: float) -> None:
        home = self.hub._home
        if _native_ident() != home.thread:
            home.call_soon(self.arm, delay)
            return
        due = _monotonic() + delay
        timer = self._timer
        if timer is not None:
            if self._due <= due:
                return
            timer.close()
        self._due = due
        self._timer = home.hub.loop.timer(delay, ref=False)
        self._timer.start(self._fire)

    _timer: Any = None
    _due = 0.0

    def _fire(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.close()
        _look(self)


def _native_ident() -> int:
    monkey = sys.modules.get("gevent.monkey")
    if monkey is None:
        return threading.get_ident()
    global _native_ident
    get_ident: Callable[[], int] = monkey.get_original("_thread", "get_ident")
    _native_ident = get_ident
    return get_ident()


_views: dict[int, _View | None] = {}


def _view_of(hub: Any) -> _View | None:
    view: _View | None = _views.get(id(hub), _MISSING)
    if view is _MISSING:
        view = None
        if hub.name == "gevent":
            view = _GeventView(hub)
        elif hub.name == "threads" and not _patched():
            # Patched threads are greenlets: their stacks aren't in
            # sys._current_frames(), and a watchdog thread would be one.
            view = _ThreadsView(hub)
        _views[id(hub)] = view
    return view


_MISSING: Any = object()


def _patched() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and bool(monkey.is_module_patched("threading"))


class _ThreadTimer:
    """One daemon thread that runs the looks; it sleeps while none is due."""

    def __init__(self, callback: Callable[[], None]) -> None:
        self._callback = callback
        self._condition = threading.Condition(threading.Lock())
        self._due: float | None = None
        self._thread: threading.Thread | None = None

    def arm(self, delay: float) -> None:
        due = _monotonic() + delay
        with self._condition:
            if self._due is None or due < self._due:
                self._due = due
                self._condition.notify()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="asgigreen-deadlock-watchdog", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            with self._condition:
                while self._due is None:
                    self._condition.wait()
                wait = self._due - _monotonic()
                if wait > 0:
                    self._condition.wait(wait)
                    continue
                self._due = None
            self._callback()


# -- the looks --------------------------------------------------------------------

# Entries found on a cycle by the previous look, to be confirmed by the next.
_suspects: frozenset[_Entry] = frozenset()


def _look(view: _View) -> None:
    """One look at the calls queued behind busy workers; report a confirmed cycle."""
    global _suspects
    try:
        with _lock:
            entries = list(_entries.values())
        live = []
        for entry in entries:
            if entry.call._state == _calls._QUEUED and not entry.pending.done():
                live.append(entry)
            else:
                with _lock:
                    _entries.pop(entry.call, None)
        if not live:
            _suspects = frozenset()
            return
        view.begin()
        try:
            graph = _Graph(view, live)
            stuck = graph.stuck()
            confirmed = stuck & _suspects
            error = None
            if confirmed:
                closing = max(confirmed, key=lambda entry: entry.call.started)
                error = graph.report(closing)
        finally:
            view.end()
        if error is not None:
            _suspects = frozenset()
            _fail(view, closing, error)
            view.arm(CHECK_INTERVAL)
        elif stuck:
            _suspects = frozenset(stuck)
            view.arm(CONFIRM_DELAY)
        else:
            _suspects = frozenset()
            view.arm(CHECK_INTERVAL)
    except Exception:  # a diagnostic must never break the process
        _log.debug("asgigreen deadlock check failed", exc_info=True)
        view.arm(CHECK_INTERVAL)


def _fail(view: _View, entry: _Entry, error: DeadlockError) -> None:
    if not _withdraw(entry):
        return
    pending = entry.pending

    def settle() -> None:
        if not pending.done():
            pending.set_exception(error)

    try:
        view.hub.call_soon_threadsafe(entry.loop, settle)
    except RuntimeError:
        pass  # the loop closed: nobody waits any more


class _Graph:
    """The wait-for graph of one look: queued calls, the workers they wait for,
    and what those workers wait for."""

    def __init__(self, view: _View, entries: list[_Entry]) -> None:
        self.view = view
        self.entries = entries
        self.by_task = {entry.task: entry for entry in entries if entry.task is not None}
        self._holders: dict[int, list[_Holder] | None] = {}
        # Per worker: the queued calls it waits for, each with how.
        self._waits: dict[int, dict[_Entry, str]] = {}

    def holders(self, entry: _Entry) -> list[_Holder] | None:
        key = id(entry.target)
        if key not in self._holders:
            holders = self.view.holders(entry.target)
            if holders is not None and len(holders) < self.view.slots(entry.target):
                holders = None  # a slot is taken by something not yet running
            self._holders[key] = holders
        return self._holders[key]

    def waits(self, holder: _Holder) -> dict[_Entry, str]:
        worker, frame = holder
        if worker not in self._waits:
            self._waits[worker] = self._find_waits(worker, frame)
        return self._waits[worker]

    def stuck(self) -> set[_Entry]:
        """The queued calls that can never run: the greatest set in which each
        call's every holder waits for a call of the set."""
        stuck = set(self.entries)
        changed = True
        while changed:
            changed = False
            for entry in list(stuck):
                holders = self.holders(entry)
                if not holders or any(not (self.waits(h).keys() & stuck) for h in holders):
                    stuck.discard(entry)
                    changed = True
        return stuck

    def _find_waits(self, worker: int, frame: FrameType | None) -> dict[_Entry, str]:
        # Each wait as a clause that the call waited for completes.
        call = _calls.bridge_call_running_on(worker)
        if call is None:
            return {}
        if call.kind == "async_to_sync":
            running = awaiting.get(call)
            task = getattr(running, "_task", None)
            if task is None:
                return {}
            return {
                entry: "parked there until its coroutine's task ends, and that task waits for"
                for entry in _stacks.awaited(task, self.by_task)
            }
        wait = _stacks.blocked_in(frame)
        if wait is None:
            return {}
        target, where = wait.target, wait.where
        waits: dict[_Entry, str] = {}
        for entry in self.entries:
            waiter_frame = self.view.waiter_frame(entry)
            if wait.kind == "thread" and target.ident == entry.waiter_id:
                how = f"blocked in Thread.join() at {where}, on thread {target.name!r}"
            elif wait.kind == "future" and _stacks.runs_future(waiter_frame, target):
                how = f"blocked in Future.result() at {where}, on a ThreadPoolExecutor job"
            elif wait.kind == "greenlet" and target is entry.waiter:
                how = f"blocked joining greenlet {id(target):#x} at {where}"
            else:
                continue
            # That thread's loop must be running for a task that waits for the
            # call: one that runs on and stops without waiting for it would
            # let the thread end.
            main = _stacks.loop_main_task(waiter_frame, entry.loop)
            if main is not None and entry in _stacks.awaited(main, self.by_task):
                waits[entry] = f"{how}, which runs the event loop of"
        return waits

    def report(self, closing: _Entry) -> DeadlockError:
        """The error for ``closing``: the cycle from it back to it."""
        view = self.view
        stuck = self.stuck()
        steps: list[str] = []
        fix = _FIX_SERIAL
        entry = closing
        seen: set[_Entry] = set()

        def next_of(waits: dict[_Entry, str]) -> _Entry:
            return closing if closing in waits else next(iter(waits.keys() & stuck))

        def name(entry: _Entry) -> str:
            return "this very call." if entry is closing else f"{_short(entry.call)},"

        while entry not in seen:
            seen.add(entry)
            holders = self.holders(entry) or []
            if len(holders) == 1:
                worker = holders[0][0]
                waits = self.waits(holders[0])
                following = next_of(waits)
                steps.append(
                    f"it waits for {view.describe_target(entry.target)} "
                    f"({view.describe_worker(worker)}),"
                )
                steps.append(f"which is running {_chain(_calls.bridge_call_running_on(worker))},")
                steps.append(f"{waits[following]} {name(following)}")
                if "event loop" in waits[following]:
                    fix = _FIX_FOREIGN
                entry = following
                continue
            fix = _FIX_POOL
            steps.append(
                f"it waits for {view.describe_target(entry.target)}, whose {len(holders)} "
                "workers each wait for a call queued there:"
            )
            shown = holders[:_HOLDERS_SHOWN]
            for holder in shown:
                waits = self.waits(holder)
                following = next_of(waits)
                running = _calls.bridge_call_running_on(holder[0])
                steps.append(
                    f"{view.describe_worker(holder[0])} is running {_chain(running)}, "
                    f"{waits[following]} {name(following)}"
                )
            if len(holders) > len(shown):
                steps.append(f"and {len(holders) - len(shown)} more workers, waiting likewise.")
            break
        return DeadlockError(f"{_short(closing.call)} can never run:", steps, fix)


def _after_fork_in_child() -> None:
    global _lock, _suspects
    _lock = threading.Lock()
    # The hub's queues start empty in the child; calls in progress on
    # greenlets carried over keep their async_to_sync records.
    _entries.clear()
    behind.clear()
    _suspects = frozenset()
    _views.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
