"""asyncio's per-OS-thread state, kept per greenlet instead.

CPython keeps some of asyncio's state per OS thread. Greenlets share one OS
thread, so a greenlet switched to while another runs an event loop would see
that loop as its own, and on 3.14+ that loop's running task too. When
greenlets stand in for threads (a gevent-monkeypatched process), that state
has to follow each greenlet. :func:`install` sets a greenlet switch tracer
that does so: the state of the greenlet switched away from is parked with it,
and the state of the greenlet switched to is restored (or cleared, as on a new
thread).

What CPython keeps per thread, and what this module does with each item:

* **The running loop** (``asyncio.events._get_running_loop``), every
  version: swapped. (In the thread state itself since 3.14, gh-121695;
  before that in the thread state's dict, read through the same functions.)
* **The running task**, 3.14+: swapped. 3.14 moved it from a dict keyed by
  loop into the thread state (gh-129898, PR #129899), and ``_enter_task``
  refuses a second task on the same thread. Read and written only through
  ``asyncio.tasks._swap_current_task``, which checks the loop is the one
  running. Before 3.14 the dict keyed by loop needs nothing from us.
* **The async generator hooks** (``sys.set_asyncgen_hooks``), every version:
  swapped. ``run_forever`` installs its loop's hooks for the thread and puts
  the old ones back when it returns, so interleaved loops on one thread
  would register and finalise async generators on the wrong loop.
* **The coroutine origin tracking depth**, set by ``run_forever`` for a loop
  in debug mode: swapped with the hooks, for the same reason.
* **The list of all tasks**, 3.14+ (``asyncio_tasks_head``, gh-129898): left
  alone. Tasks are linked to the thread that created them, but
  ``all_tasks(loop)`` keeps only the given loop's, so the greenlet a task
  was created on does not matter.
* **The event loop policy's current loop** (``get_event_loop`` /
  ``set_event_loop``): left alone. It lives in a ``threading.local``, which
  gevent's patching already makes per greenlet.

Parked state survives a fork: gevent's greenlets go on running in the child,
and each must get its own loop back when it is resumed there.

The tracer runs on every greenlet switch, so its common paths cost one call
(nothing running, nothing parked) or one swap of a small tuple.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

from greenlet import greenlet, settrace

__all__ = ["install", "parked_count"]

_get_running_loop = asyncio.events._get_running_loop
_set_running_loop = asyncio.events._set_running_loop
_get_asyncgen_hooks = sys.get_asyncgen_hooks
_set_asyncgen_hooks = sys.set_asyncgen_hooks
_get_origin_depth = sys.get_coroutine_origin_tracking_depth
_set_origin_depth = sys.set_coroutine_origin_tracking_depth

#: Whether the running task is kept per thread (gh-129898, CPython 3.14).
TASK_PER_THREAD = sys.version_info >= (3, 14)

_swap_current_task: Callable[[Any, Any], Any] | None = (
    asyncio.tasks._swap_current_task  # type: ignore[attr-defined]
    if TASK_PER_THREAD
    else None
)

# A greenlet's state while it is switched away: (running loop, running task,
# asyncgen hooks, origin tracking depth). A greenlet with nothing to keep has
# no entry, and gets the state of a new thread when switched to.
_State = tuple[Any, Any, Any, int]
_parked: dict[greenlet, _State] = {}
_NO_HOOKS = _get_asyncgen_hooks()  # (None, None), as on a new thread
_chained: Any = None


def _on_switch(event: str, args: tuple[greenlet, greenlet]) -> None:
    origin, target = args
    loop = _get_running_loop()
    # Only a greenlet running a loop, or one switched back to with state
    # parked, has anything to move: every other switch costs this test.
    if loop is not None or target in _parked:
        hooks = _get_asyncgen_hooks()
        depth = _get_origin_depth()
        if loop is not None:
            task = None if _swap_current_task is None else _swap_current_task(loop, None)
            if not origin.dead:  # a dying greenlet's loop must not be kept alive
                _parked[origin] = (loop, task, hooks, depth)
        elif (hooks != _NO_HOOKS or depth) and not origin.dead:
            _parked[origin] = (None, None, hooks, depth)
        # Write only what differs: setting the running loop is the dearest
        # call here before 3.14.
        new_loop, new_task, new_hooks, new_depth = _parked.pop(target, _NEW_THREAD)
        if new_loop is not loop:
            _set_running_loop(new_loop)
        if new_task is not None:
            _swap_current_task(new_loop, new_task)  # type: ignore[misc]
        if new_hooks != hooks:
            _set_asyncgen_hooks(*new_hooks)
        if new_depth != depth:
            _set_origin_depth(new_depth)
    if _chained is not None:
        _chained(event, args)


_NEW_THREAD: _State = (None, None, _NO_HOOKS, 0)


def install() -> None:
    """Keep asyncio's per-thread state per greenlet from now on (idempotent).

    Another tracer already set with ``greenlet.settrace`` keeps being called
    after ours.
    """
    global _chained
    previous = settrace(_on_switch)
    if previous is not _on_switch:
        _chained = previous


def parked_count() -> int:
    """How many greenlets have state parked: switched away with a loop running."""
    return len(_parked)
