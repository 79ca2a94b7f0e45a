"""Records of the bridge calls in progress, and the counts behind ``Hub.stats()``.

Every ``sync_to_async`` and ``async_to_sync`` call gets a :class:`BridgeCall`
for as long as it lasts: what it calls, where user code made the call, and
the worker running its sync side. Diagnostics (blocking and deadlock
reports) find a worker's call with :func:`bridge_call_running_on`.

The same records keep the per-kind counts that the hubs report in
:meth:`asgigreen.hubs.Hub.stats`. A record costs under a microsecond per
call (two short holds of one lock, a few dict operations); it holds the
caller's code object and instruction offset, never its frame.

This module imports nothing from asgigreen: the hub layer tells it how to
name the current worker (:func:`set_worker_id`).
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from types import CodeType, FrameType
from typing import Any

__all__ = [
    "KINDS",
    "BridgeCall",
    "bridge_call_running_on",
    "call_site",
    "current_bridge_call",
    "running_calls",
]


#: The kinds calls are counted by, in the order of the counters below.
KINDS = ("thread_sensitive", "free", "real_thread", "async_to_sync")
_THREAD_SENSITIVE, _FREE, _REAL_THREAD, _ASYNC_TO_SYNC = range(4)

# A record's life: queued until its sync side starts on a worker, running,
# then ended; abandoned if its caller gave up before it started.
_QUEUED, _RUNNING, _ENDED, _ABANDONED = range(4)

_monotonic = time.monotonic
_asyncio_dir = os.path.dirname(asyncio.__file__) + os.sep


class BridgeCall:
    """One ``sync_to_async`` or ``async_to_sync`` call in progress.

    Attributes:

    * ``kind``: ``"sync_to_async"`` or ``"async_to_sync"``.
    * ``func_name``: qualified name of the wrapped callable.
    * ``site``: where user code called (or awaited) the bridge, as
      ``"path.py:123 in caller"``.
    * ``thread_sensitive``: the ``sync_to_async`` setting; None for
      ``async_to_sync``.
    * ``started``: :func:`time.monotonic` when the call was made.
    * ``worker``: ``hub.worker_id()`` of the worker running the sync side:
      for ``sync_to_async`` the worker running the function, once it has
      started (None while queued); for ``async_to_sync`` the sync caller,
      which waits there (and serves thread-sensitive calls meanwhile).
    * ``outer``: the call that was innermost on that worker when this one
      started there (a sync function calling ``async_to_sync``, say), or None.
    """

    __slots__ = (
        "_code",
        "_func",
        "_generation",
        "_kind_index",
        "_lasti",
        "_state",
        "outer",
        "started",
        "thread_sensitive",
        "worker",
    )

    def __init__(
        self,
        kind_index: int,
        func: Callable[..., Any],
        caller: FrameType,
        thread_sensitive: bool | None,
    ) -> None:
        self._kind_index = kind_index
        self._func = func
        self._code = caller.f_code
        # The line is worked out only if asked for: f_lineno costs more than
        # the rest of the record (it walks the line table).
        self._lasti = caller.f_lasti
        self.thread_sensitive = thread_sensitive
        self.started = _monotonic()
        self.worker: int | None = None
        self.outer: BridgeCall | None = None
        self._state = _QUEUED
        self._generation = _generation

    @property
    def kind(self) -> str:
        return "async_to_sync" if self._kind_index == _ASYNC_TO_SYNC else "sync_to_async"

    @property
    def func_name(self) -> str:
        func = _unwrapped(self._func)
        name = getattr(func, "__qualname__", None)
        if not isinstance(name, str):
            name = type(func).__qualname__
        return name

    @property
    def site(self) -> str:
        return call_site(self._code, self._lasti)

    @property
    def running(self) -> bool:
        """Whether the sync side has started and not yet ended."""
        return self._state == _RUNNING

    def describe(self) -> str:
        """One line naming the call, its site, its state and its worker."""
        module = getattr(_unwrapped(self._func), "__module__", None)
        name = f"{module}.{self.func_name}" if isinstance(module, str) else self.func_name
        parts = [f"{self.kind}({name}) from {self.site}"]
        if self.thread_sensitive is not None:
            parts.append("thread-sensitive" if self.thread_sensitive else "not thread-sensitive")
        if self._kind_index == _REAL_THREAD:
            parts.append("on a real thread")
        age = _monotonic() - self.started
        state = self._state
        if state == _QUEUED:
            parts.append(f"waiting {age:.3f} s for a worker")
        elif state == _RUNNING:
            parts.append(f"running {age:.3f} s on worker {self.worker:#x}")
        elif state == _ENDED:
            parts.append("ended")
        else:
            parts.append("abandoned before it started")
        return ", ".join(parts)

    def __repr__(self) -> str:
        return f"<BridgeCall {self.describe()}>"


def call_site(code: CodeType, lasti: int) -> str:
    """``path.py:12 in qualname`` for a bridge called from ``code`` at ``lasti``."""
    if code.co_filename.startswith(_asyncio_dir):
        # Awaited by the event loop itself: a task of its own (create_task,
        # gather). asyncio's debug mode records where tasks are created.
        return "<an asyncio task>"
    return f"{code.co_filename}:{_line_of(code, lasti)} in {code.co_qualname}"


def _line_of(code: CodeType, lasti: int) -> int | str:
    for start, end, line in code.co_lines():
        if start <= lasti < end and line is not None:
            return line
    return "?"


def _unwrapped(func: Any) -> Any:
    # A partial says less than the function it wraps.
    while isinstance(func, functools.partial):
        func = func.func
    return func


# -- the registry -------------------------------------------------------------
#
# Every call updates these, so the hot path is kept short: the totals are
# ints under a native lock, taken twice per call (made, ended) with
# acquire()/release(), which costs half of ``with``; a call starting only
# takes itself out of its queue, one dict operation, atomic on its own.


def _native_lock() -> Any:
    # Taken from greenlets and native threads alike, never across a switch:
    # gevent's cooperative lock would cost more and buy nothing.
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None:
        try:
            return monkey.get_original("_thread", "allocate_lock")()
        except Exception:
            pass
    return threading.Lock()


_lock = _native_lock()
# Bumped at fork: records made before it belong to the parent's figures.
_generation = 0
# Per kind, since start: calls made, ended normally, ended with an error,
# and abandoned before they started.
_made = [0, 0, 0, 0]
_completed = [0, 0, 0, 0]
_failed = [0, 0, 0, 0]
_cancelled = [0, 0, 0, 0]
# Per kind, the calls waiting for a worker, oldest first. Taking a call out
# is how its start and its abandonment decide which came first.
_queued: list[dict[BridgeCall, None]] = [{} for _ in KINDS]
# The innermost call whose sync side is on each worker; only that worker
# changes its own entry.
_running: dict[int, BridgeCall] = {}
_MISSING: Any = object()

_worker_id: Callable[[], int] = threading.get_ident


def set_worker_id(worker_id: Callable[[], int]) -> None:
    """Tell the registry how to name the current worker (the hub's ``worker_id``)."""
    global _worker_id
    _worker_id = worker_id


def sync_to_async_call(
    func: Callable[..., Any], thread_sensitive: bool, real_thread: bool, caller: FrameType
) -> BridgeCall:
    """Record a ``sync_to_async`` call that is about to be queued for a worker.

    ``real_thread``: whether the hub sends it to a native thread standing in
    for a greenlet worker. ``caller``: the frame that awaited the bridge.
    """
    kind = _REAL_THREAD if real_thread else _THREAD_SENSITIVE if thread_sensitive else _FREE
    call = BridgeCall(kind, func, caller, thread_sensitive)
    lock = _lock
    lock.acquire()
    try:
        _made[kind] += 1
        _queued[kind][call] = None
    finally:
        lock.release()
    return call


def async_to_sync_call(func: Callable[..., Any], caller: FrameType) -> BridgeCall:
    """Record an ``async_to_sync`` call; its sync side is the current worker."""
    call = BridgeCall(_ASYNC_TO_SYNC, func, caller, None)
    call._state = _RUNNING
    worker = call.worker = _worker_id()
    lock = _lock
    lock.acquire()
    try:
        _made[_ASYNC_TO_SYNC] += 1
    finally:
        lock.release()
    call.outer = _running.get(worker)
    _running[worker] = call
    return call


def enter(call: BridgeCall) -> None:
    """The sync side of ``call`` starts on the current worker.

    Raises :class:`asyncio.CancelledError` if its caller already gave up
    (:func:`abandon`): the hub started it after it was cancelled.
    """
    if call._generation == _generation and (
        _queued[call._kind_index].pop(call, _MISSING) is _MISSING
    ):
        raise asyncio.CancelledError("the caller gave up before the call started")
    worker = call.worker = _worker_id()
    call.outer = _running.get(worker)
    _running[worker] = call
    call._state = _RUNNING


def leave(call: BridgeCall, failed: bool) -> None:
    """The sync side of ``call`` ended (with an error if ``failed``)."""
    call._state = _ENDED
    worker = call.worker
    if worker is not None and _running.get(worker) is call:
        outer = call.outer
        if outer is None:
            del _running[worker]
        else:
            _running[worker] = outer
    if call._generation == _generation:
        lock = _lock
        lock.acquire()
        try:
            (_failed if failed else _completed)[call._kind_index] += 1
        finally:
            lock.release()


def leave_async_to_sync(call: BridgeCall, outcome: Future[Any]) -> None:
    """An ``async_to_sync`` call ended; it failed unless ``outcome`` holds a result."""
    failed = not outcome.done() or outcome.cancelled() or outcome.exception() is not None
    leave(call, failed)


def abandon(call: BridgeCall) -> None:
    """The caller of a ``sync_to_async`` call stopped waiting for it.

    Counts it cancelled if it had not started; otherwise nothing.
    """
    if call._state != _QUEUED or call._generation != _generation:
        return  # the usual case: it ran
    if _queued[call._kind_index].pop(call, _MISSING) is not _MISSING:
        call._state = _ABANDONED
        with _lock:
            _cancelled[call._kind_index] += 1


# -- reading ------------------------------------------------------------------


def bridge_call_running_on(worker_id: int) -> BridgeCall | None:
    """The innermost call whose sync side is on worker ``worker_id``, if any.

    ``worker_id`` as the hub's ``worker_id()`` gives it: a thread's ident on
    the threads hub; ``id()`` of the greenlet on the gevent hub (for a native
    thread there, of that thread's main greenlet). Follow
    :attr:`BridgeCall.outer` for the calls it is nested in.
    """
    return _running.get(worker_id)


def running_calls() -> dict[int, BridgeCall]:
    """A copy of what :func:`bridge_call_running_on` reads: worker id to innermost call."""
    return _running.copy()


def current_bridge_call() -> BridgeCall | None:
    """The innermost call whose sync side is on the current worker, if any."""
    return _running.get(_worker_id())


#: What :func:`counts` gives for each kind: in flight, queued, made,
#: completed, failed, cancelled.
Figures = tuple[int, int, int, int, int, int]


def counts() -> tuple[list[Figures], float]:
    """The figures of each kind (as :data:`KINDS`), read at one moment, and
    the seconds the oldest queued ``sync_to_async`` call has waited (0.0: none).
    """
    oldest: float | None = None
    figures: list[Figures] = []
    with _lock:
        for kind in range(len(KINDS)):
            # Queued calls are made under the lock: none is queued and not made.
            waiting = _queued[kind]
            made, completed = _made[kind], _completed[kind]
            failed, cancelled = _failed[kind], _cancelled[kind]
            in_flight = made - completed - failed - cancelled
            figures.append((in_flight, len(waiting), made, completed, failed, cancelled))
            if waiting:
                head = _first(waiting)
                if head is not None and (oldest is None or head.started < oldest):
                    oldest = head.started
    return figures, 0.0 if oldest is None else max(0.0, _monotonic() - oldest)


def _first(waiting: dict[BridgeCall, None]) -> BridgeCall | None:
    # Another thread may change the dict while we look.
    for _ in range(3):
        try:
            return next(iter(waiting), None)
        except RuntimeError:
            continue
    return None


def _after_fork_in_child() -> None:
    # Calls inherited from the parent are not the child's to count: its
    # figures start from zero. Those still running on greenlets carried over
    # keep their records for diagnostics but no longer touch the counters.
    global _generation
    _generation += 1
    global _lock
    _lock = _native_lock()
    for counters in (_made, _completed, _failed, _cancelled):
        counters[:] = [0, 0, 0, 0]
    for waiting in _queued:
        waiting.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
