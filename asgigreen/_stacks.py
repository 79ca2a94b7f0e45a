"""Reading what a blocked stack, or a blocked task, waits for (for deadlock reports).

Only waits that can be read for sure are recognised, each without a
timeout: ``Thread.join()``, ``concurrent.futures.Future.result()`` (and
``exception()``), and on gevent a greenlet's ``join()`` or ``get()`` called
on a plain name, which gevent runs in compiled code, leaving no frame of its
own: for that one the caller's bytecode says which object it calls. Anything
else (a lock, a queue, a socket, a call with a timeout) reads as nothing.

Frames of other threads are read while those threads run on, so every
reader here is defensive: it reads a few named locals of frames it has
recognised by file and name, and gives up on anything unexpected.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dis
import os
import sys
import threading
from collections.abc import Collection
from types import FrameType
from typing import Any, TypeVar

__all__ = [
    "Wait",
    "awaited",
    "blocked_in",
    "called_without_arguments",
    "loop_main_task",
    "runs_future",
    "site",
]

_K = TypeVar("_K")

_THREADING = threading.__file__
_FUTURES_DIR = os.path.dirname(concurrent.futures.__file__)
_FUTURES_BASE = os.path.join(_FUTURES_DIR, "_base.py")
_FUTURES_THREAD = os.path.join(_FUTURES_DIR, "thread.py")
_BASE_EVENTS = asyncio.base_events.__file__
_GEVENT_DIR = f"{os.sep}gevent{os.sep}"
# A stack walked this far without finding what it looks for doesn't have it.
_DEPTH = 400
# Bytecode that sits between a method's load and its call without meaning.
_NOISE = frozenset({"CACHE", "PRECALL", "PUSH_NULL", "KW_NAMES", "EXTENDED_ARG", "NOP"})
_LOCAL_LOADS = frozenset({"LOAD_FAST", "LOAD_FAST_BORROW", "LOAD_FAST_CHECK", "LOAD_DEREF"})
_GLOBAL_LOADS = frozenset({"LOAD_GLOBAL", "LOAD_NAME"})


def site(frame: FrameType | None) -> str:
    """``path.py:12 in qualname`` for ``frame``."""
    if frame is None:
        return "<unknown>"
    code = frame.f_code
    return f"{code.co_filename}:{frame.f_lineno} in {code.co_qualname}"


class Wait:
    """A recognised wait: ``kind`` (``"thread"``, ``"future"``, ``"greenlet"``),
    the object waited for, and where the user's code waits."""

    __slots__ = ("kind", "target", "where")

    def __init__(self, kind: str, target: Any, where: str) -> None:
        self.kind = kind
        self.target = target
        self.where = where


def _waiting_primitive(filename: str) -> bool:
    # Files whose frames a wait passes through on its way down.
    return filename == _THREADING or filename.startswith(_FUTURES_DIR) or _GEVENT_DIR in filename


def blocked_in(frame: FrameType | None) -> Wait | None:
    """The wait the stack whose innermost frame is ``frame`` is blocked in, if
    it is one this module recognises (see the module docstring)."""
    innermost = frame
    while frame is not None and _waiting_primitive(frame.f_code.co_filename):
        code = frame.f_code
        if code.co_filename == _THREADING and code.co_name == "join":
            thread = frame.f_locals.get("self")
            if isinstance(thread, threading.Thread) and frame.f_locals.get("timeout") is None:
                return Wait("thread", thread, site(frame.f_back))
            return None
        if code.co_filename == _FUTURES_BASE and code.co_name in ("result", "exception"):
            future = frame.f_locals.get("self")
            if future is not None and frame.f_locals.get("timeout") is None:
                return Wait("future", future, site(frame.f_back))
            return None
        frame = frame.f_back
    if frame is None or frame is not innermost:
        return None
    greenlet_type = _gevent_greenlet_type()
    if greenlet_type is None:
        return None
    target = called_without_arguments(frame, ("join", "get"))
    if isinstance(target, greenlet_type):
        return Wait("greenlet", target, site(frame))
    return None


def _gevent_greenlet_type() -> type | None:
    gevent = sys.modules.get("gevent")
    return getattr(gevent, "Greenlet", None) if gevent is not None else None


def called_without_arguments(frame: FrameType, names: Collection[str]) -> Any:
    """The object ``frame`` is stopped calling a method of (one of ``names``)
    with no arguments, as in ``name.join()``; None for anything else."""
    instructions = [i for i in dis.get_instructions(frame.f_code) if i.opname not in _NOISE]
    at = None
    for index, instruction in enumerate(instructions):
        if instruction.offset > frame.f_lasti:
            break
        at = index
    if at is None or at < 2:
        return None
    call, method, owner = instructions[at], instructions[at - 1], instructions[at - 2]
    if call.opname != "CALL" or call.arg != 0:
        return None
    if method.opname not in ("LOAD_ATTR", "LOAD_METHOD") or method.argval not in names:
        return None
    if owner.opname in _LOCAL_LOADS:
        return frame.f_locals.get(owner.argval)
    if "LOAD_FAST" in owner.opname and isinstance(owner.argval, tuple):
        # 3.13+ pairs (LOAD_FAST_LOAD_FAST, STORE_FAST_LOAD_FAST): the name
        # loaded last is the method's object.
        return frame.f_locals.get(owner.argval[-1])
    if owner.opname in _GLOBAL_LOADS:
        # 3.11+ shows a global loaded with a NULL as "name + NULL".
        return frame.f_globals.get(str(owner.argval).removesuffix(" + NULL"))
    return None


def awaited(task: Any, waiting: dict[Any, _K]) -> list[_K]:
    """The values of ``waiting`` (keyed by task) whose task ``task`` waits for:
    itself, or a task or ``gather`` it awaits, and so on down."""
    found = []
    todo = [task]
    seen: set[int] = set()
    while todo and len(seen) < 1000:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        value = waiting.get(current)
        if value is not None:
            found.append(value)
            continue
        waited = getattr(current, "_fut_waiter", None)
        if isinstance(waited, asyncio.Task):
            todo.append(waited)
        elif waited is not None:
            # A gather's future ends only once every child has.
            todo.extend(getattr(waited, "_children", ()))
    return found


def loop_main_task(frame: FrameType | None, loop: asyncio.AbstractEventLoop) -> Any:
    """The task ``loop.run_until_complete()`` runs for, if the stack from
    ``frame`` is inside it; None otherwise (``run_forever()``, say)."""
    for _ in range(_DEPTH):
        if frame is None:
            break
        code = frame.f_code
        if (
            code.co_name == "run_until_complete"
            and code.co_filename == _BASE_EVENTS
            and frame.f_locals.get("self") is loop
        ):
            return frame.f_locals.get("future")
        frame = frame.f_back
    return None


def runs_future(frame: FrameType | None, future: Any) -> bool:
    """Whether the stack from ``frame`` runs ``future``'s ThreadPoolExecutor job."""
    for _ in range(_DEPTH):
        if frame is None:
            break
        code = frame.f_code
        if code.co_filename == _FUTURES_THREAD and code.co_name == "run":
            # The job's own ``_WorkItem.run``; 3.14 runs it through a
            # ``WorkerContext.run`` frame that holds no future.
            job: Any = frame.f_locals.get("self")
            if hasattr(job, "future"):
                return job.future is future
        frame = frame.f_back
    return False
