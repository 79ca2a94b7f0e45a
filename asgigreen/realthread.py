"""Blocking C code from sync code in a gevent worker: :func:`run_in_real_thread`.

A sync view or Celery task in a gevent worker runs on a greenlet. A driver
that blocks in C (psycopg2 without psycogreen, mysqlclient, a CPU-bound
extension) then stalls every greenlet of the process. These helpers hand
the call to a native OS thread and park only the calling greenlet.

They are the public bridges put together,
``async_to_sync(sync_to_async(func, real_thread=True))``, so they carry
context variables both ways and raise what ``func`` raises. From async code
use ``await sync_to_async(func, real_thread=True)()`` directly.

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
    """
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
    the module docstring for where the calls run.
    """

    def decorate(target: Callable[_P, _R]) -> Callable[_P, _R]:
        @functools.wraps(target)
        def call(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            return _call_on_real_thread(
                functools.partial(target, *args, **kwargs), thread_sensitive
            )

        return call

    if func is None:
        return decorate
    return decorate(func)
