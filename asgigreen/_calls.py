"""Records of the bridge calls in progress, and the counts behind ``Hub.stats()``.

Every ``sync_to_async`` and ``async_to_sync`` call gets a :class:`BridgeCall`
for as long as it lasts: what it calls, where user code made the call, and
the worker running its sync side. Diagnostics (blocking and deadlock
reports) find a worker's call with :func:`bridge_call_running_on`.

The same records keep the per-kind counts that the hubs report in
:meth:`asgigreen.hubs.Hub.stats`. A record costs a few hundred nanoseconds
per call; it holds the caller's code object and line, never its frame.

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
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from types import CodeType
from typing import Any

__all__ = [
    "KINDS",
    "BridgeCall",
    "bridge_call_running_on",
    "current_bridge_call",
]


def _native_lock() -> Any:
    # Held for a few counter updates only, from greenlets and native threads
    # alike: gevent's cooperative lock would cost more and buy nothing.
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None:
        try:
            return monkey.get_original("_thread", "allocate_lock")()
        except Exception:
            pass
    return threading.Lock()


#: The kinds calls are counted by, in the order of the counters below.
KINDS = ("thread_sensitive", "free", "real_thread", "async_to_sync")
_THREAD_SENSITIVE, _FREE, _REAL_THREAD, _ASYNC_TO_SYNC = range(4)

# A record's life: queued until its sync side starts on a worker, running,
# then ended; abandoned if its caller gave up before it started.
_QUEUED, _RUNNING, _ENDED, _ABANDONED = range(4)

_monotonic = time.monotonic
_getframe = sys._getframe
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
        "_line",
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
        caller: Any,
        thread_sensitive: bool | None,
    ) -> None:
        self._kind_index = kind_index
        self._func = func
        self._code: CodeType | None = caller.f_code if caller is not None else None
        self._line: int = caller.f_lineno if caller is not None else 0
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
        code = self._code
        if code is None:
            return "<unknown>"
        if code.co_filename.startswith(_asyncio_dir):
            # Awaited by the event loop itself: a task of its own (create_task,
            # gather). asyncio's debug mode records where tasks are created.
            return "<an asyncio task>"
        return f"{code.co_filename}:{self._line} in {code.co_qualname}"

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


def _unwrapped(func: Any) -> Any:
    # A partial says less than the function it wraps.
    while isinstance(func, functools.partial):
        func = func.func
    return func


# -- the registry -------------------------------------------------------------

_lock = _native_lock()
# Bumped at fork: records made before it belong to the parent's figures.
_generation = 0
# Per kind: calls made and not ended (queued included), and calls queued.
_in_flight = [0, 0, 0, 0]
_queued = [0, 0, 0, 0]
# Per kind, since start: calls made, ended normally, ended with an error,
# and abandoned before they started.
_made = [0, 0, 0, 0]
_completed = [0, 0, 0, 0]
_failed = [0, 0, 0, 0]
_cancelled = [0, 0, 0, 0]
# Queued calls, oldest first; records that have left the queue are dropped
# from the front lazily, and the whole deque is compacted if one stuck call
# would otherwise keep every later record alive.
_waiting: deque[BridgeCall] = deque()
# The innermost call whose sync side is on each worker.
_running: dict[int, BridgeCall] = {}

_worker_id: Callable[[], int] = threading.get_ident


def set_worker_id(worker_id: Callable[[], int]) -> None:
    """Tell the registry how to name the current worker (the hub's ``worker_id``)."""
    global _worker_id
    _worker_id = worker_id


def sync_to_async_call(
    func: Callable[..., Any], thread_sensitive: bool, real_thread: bool, caller: Any
) -> BridgeCall:
    """Record a ``sync_to_async`` call that is about to be queued for a worker.

    ``real_thread``: whether the hub sends it to a native thread standing in
    for a greenlet worker. ``caller``: the frame that awaited the bridge.
    """
    kind = _REAL_THREAD if real_thread else _THREAD_SENSITIVE if thread_sensitive else _FREE
    call = BridgeCall(kind, func, caller, thread_sensitive)
    with _lock:
        _made[kind] += 1
        _in_flight[kind] += 1
        _queued[kind] += 1
        waiting = _waiting
        while waiting and waiting[0]._state != _QUEUED:
            waiting.popleft()
        waiting.append(call)
        if len(waiting) > 2 * (_queued[0] + _queued[1] + _queued[2]) + 64:
            _compact_waiting()
    return call


def _compact_waiting() -> None:
    global _waiting
    _waiting = deque(call for call in _waiting if call._state == _QUEUED)


def async_to_sync_call(func: Callable[..., Any], caller: Any) -> BridgeCall:
    """Record an ``async_to_sync`` call; its sync side is the current worker."""
    call = BridgeCall(_ASYNC_TO_SYNC, func, caller, None)
    call._state = _RUNNING
    worker = call.worker = _worker_id()
    with _lock:
        _made[_ASYNC_TO_SYNC] += 1
        _in_flight[_ASYNC_TO_SYNC] += 1
        call.outer = _running.get(worker)
        _running[worker] = call
    return call


def enter(call: BridgeCall) -> None:
    """The sync side of ``call`` starts on the current worker.

    Raises :class:`asyncio.CancelledError` if its caller already gave up
    (:func:`abandon`): the hub started it after it was cancelled.
    """
    worker = _worker_id()
    with _lock:
        if call._state != _QUEUED:
            raise asyncio.CancelledError("the caller gave up before the call started")
        call._state = _RUNNING
        call.worker = worker
        call.outer = _running.get(worker)
        _running[worker] = call
        if call._generation == _generation:
            _queued[call._kind_index] -= 1


def leave(call: BridgeCall, failed: bool) -> None:
    """The sync side of ``call`` ended (with an error if ``failed``)."""
    with _lock:
        call._state = _ENDED
        worker = call.worker
        if worker is not None and _running.get(worker) is call:
            outer = call.outer
            if outer is None:
                del _running[worker]
            else:
                _running[worker] = outer
        if call._generation == _generation:
            kind = call._kind_index
            _in_flight[kind] -= 1
            if failed:
                _failed[kind] += 1
            else:
                _completed[kind] += 1


def leave_async_to_sync(call: BridgeCall, outcome: Future[Any]) -> None:
    """An ``async_to_sync`` call ended; it failed unless ``outcome`` holds a result."""
    failed = not outcome.done() or outcome.cancelled() or outcome.exception() is not None
    leave(call, failed)


def abandon(call: BridgeCall) -> None:
    """The caller of a ``sync_to_async`` call stopped waiting for it.

    Counts it cancelled if it had not started; otherwise nothing.
    """
    if call._state != _QUEUED:
        return  # the usual case, without the lock
    with _lock:
        if call._state != _QUEUED:
            return
        call._state = _ABANDONED
        if call._generation == _generation:
            kind = call._kind_index
            _queued[kind] -= 1
            _in_flight[kind] -= 1
            _cancelled[kind] += 1


# -- reading ------------------------------------------------------------------


def bridge_call_running_on(worker_id: int) -> BridgeCall | None:
    """The innermost call whose sync side is on worker ``worker_id``, if any.

    ``worker_id`` as the hub's ``worker_id()`` gives it: a thread's ident on
    the threads hub; ``id()`` of the greenlet on the gevent hub (for a native
    thread there, of that thread's main greenlet). Follow
    :attr:`BridgeCall.outer` for the calls it is nested in.
    """
    return _running.get(worker_id)


def current_bridge_call() -> BridgeCall | None:
    """The innermost call whose sync side is on the current worker, if any."""
    return _running.get(_worker_id())


def snapshot() -> tuple[list[int], list[int], list[int], list[int], list[int], list[int], float]:
    """The counters by kind, and the longest current wait for a worker in seconds.

    In flight, queued, made, completed, failed, cancelled; all read at one
    moment.
    """
    with _lock:
        waiting = _waiting
        while waiting and waiting[0]._state != _QUEUED:
            waiting.popleft()
        oldest = waiting[0].started if waiting else None
        counts = (
            _in_flight[:],
            _queued[:],
            _made[:],
            _completed[:],
            _failed[:],
            _cancelled[:],
        )
    wait = 0.0 if oldest is None else max(0.0, _monotonic() - oldest)
    return (*counts, wait)


def _after_fork_in_child() -> None:
    # Calls inherited from the parent are not the child's to count: its
    # figures start from zero. Those still running on greenlets carried over
    # keep their records for diagnostics but no longer touch the counters.
    global _lock, _generation, _waiting
    _lock = _native_lock()
    _generation += 1
    for counters in (_in_flight, _queued, _made, _completed, _failed, _cancelled):
        counters[:] = [0, 0, 0, 0]
    _waiting = deque()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
