"""Blocking C code from sync code in a gevent worker: :func:`run_in_real_thread`.

A sync view or Celery task in a gevent worker runs on a greenlet. A driver
that blocks in C (psycopg2 without psycogreen, mysqlclient, a CPU-bound
extension) then stalls every greenlet of the process. These helpers hand
the call to a native OS thread and park only the calling greenlet.

They are the public bridges put together,
``async_to_sync(sync_to_async(func, real_thread=True))``, so they carry
context variables both ways and raise what ``func`` raises. They are for
sync code only: called where an event loop is running (async code), they
raise ``RuntimeError`` at once, naming the function and what to write
instead, ``await sync_to_async(func, real_thread=True)()``; nothing is
called or scheduled then, on either hub.

Where the call runs, on the gevent hub:

* thread-sensitive (the default): on *one* native thread that the gevent hub
  keeps for all greenlet callers, one call at a time. A database connection
  opened there (Django keeps one per thread) is only ever used by that
  thread, so it is safe for any driver; calls from different greenlets take
  turns on it.
* ``thread_sensitive=False``: on the hub's pool of native threads
  (``ASGIGREEN_MAX_REAL_THREADS``, 20 by default), concurrently. Each pool
  thread has its own connection, and a whole call stays on one thread, so a
  transaction opened and closed inside one call is fine; two calls may land
  on different threads, so never spread one transaction over several calls.

Either way the function uses the native thread's own connection, not the
calling greenlet's: a transaction opened by the caller does not cover it.

On the threads hub (a plain process) the caller already is a real thread and
the function is simply called.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar, overload

__all__ = ["in_real_thread", "run_in_real_thread"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _names(func: object) -> tuple[str, str]:
    """How the error names ``func``: its qualified name (else its repr), and in code."""
    qualname = getattr(func, "__qualname__", None)
    name = getattr(func, "__name__", None)
    shown = qualname if isinstance(qualname, str) and qualname else repr(func)
    return shown, name if isinstance(name, str) and name.isidentifier() else "func"


def _refuse_async_caller(caller: str, func: object, thread_sensitive: bool) -> None:
    """Raise if an event loop runs here: the call would block it (or fail in AsyncToSync)."""
    # Imported here, as in _call_on_real_thread: ``import asgigreen`` stays
    # light before patch_all() (asyncio imports threading, socket, ...).
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return  # sync code: carry on
    shown, name = _names(func)
    options = "" if thread_sensitive else "thread_sensitive=False, "
    raise RuntimeError(
        f"{caller}({shown}) was called from async code (an event loop is running in "
        f"this thread), where it would block the loop. It is for sync code; from async "
        f"code write `await sync_to_async({name}, {options}real_thread=True)()` "
        f"(with the same arguments) instead."
    )


def _call_on_real_thread(func: Callable[[], _R], thread_sensitive: bool) -> _R:
    # Imported here: the package imports this module before patch_all() has
    # run, and asgigreen.sync picks the hub when it is imported.
    from . import hubs
    from .sync import async_to_sync, sync_to_async

    if hubs.get_hub().name != "gevent":
        return func()

    offload = sync_to_async(func, thread_sensitive=thread_sensitive, real_thread=True)
    return async_to_sync(offload)()


def run_in_real_thread(func: Callable[_P, _R], /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
    """Call ``func(*args, **kwargs)`` on a native OS thread, wait, return its result.

    For sync code (no running event loop) on the gevent hub; thread-sensitive
    (see the module docstring). Raises whatever ``func`` raises.

    >>> rows = run_in_real_thread(list, Book.objects.filter(shelf=3))

    Raises ``RuntimeError`` when called from async code (see the module
    docstring).
    """
    _refuse_async_caller("run_in_real_thread", func, True)
    return _call_on_real_thread(functools.partial(func, *args, **kwargs), True)


@overload
def in_real_thread(
    func: Callable[_P, _R], *, thread_sensitive: bool = True
) -> Callable[_P, _R]: ...


@overload
def in_real_thread(
    func: None = None, *, thread_sensitive: bool = True
) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]: ...


def in_real_thread(
    func: Callable[_P, _R] | None = None, *, thread_sensitive: bool = True
) -> Callable[_P, _R] | Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Decorate a sync function so each call runs on a native OS thread.

    ``@in_real_thread`` or ``@in_real_thread(thread_sensitive=False)``; see
    the module docstring for where the calls run. A call from async code
    raises ``RuntimeError``, as :func:`run_in_real_thread` does.
    """

    def decorate(target: Callable[_P, _R]) -> Callable[_P, _R]:
        @functools.wraps(target)
        def call(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            _refuse_async_caller("in_real_thread", target, thread_sensitive)
            return _call_on_real_thread(
                functools.partial(target, *args, **kwargs), thread_sensitive
            )

        return call

    if func is None:
        return decorate
    return decorate(func)
