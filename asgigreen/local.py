"""``Local``: storage that follows a worker in sync code and a task in async code.

A worker is what the hub says it is: an OS thread on the threads hub, a
greenlet on the gevent hub.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any, final

from . import hubs

__all__ = ["Local"]

_set = object.__setattr__

# Names the implementation uses; user code may not set them.
_RESERVED = frozenset({"_data", "_lock", "_storage", "_per_worker"})


def _reserved(key: str) -> AttributeError:
    return AttributeError(f"Cannot set attribute {key!r} on Local: the name is reserved")


class _Storage:
    """A Local's data, tagged with the worker that may see it.

    The data lives in a context variable, and context variables can reach a
    worker the bridges did not send them to (a thread started with a copy of
    its parent's context, a greenlet whose ``gr_context`` was copied). The
    tag makes such inherited data invisible: only the bridges re-tag data
    when they move a context to another worker on purpose (:func:`_rehome`).
    """

    __slots__ = ("data", "owner")

    def __init__(self, owner: int, data: dict[str, Any]) -> None:
        self.owner = owner
        self.data = data


def _rehome(storage: _Storage) -> _Storage:
    """The same data, now owned by the current worker."""
    return _Storage(hubs.get_hub().worker_id(), storage.data)


class _ContextStorage:
    """Attribute access over a context variable holding copy-on-write storage."""

    __slots__ = ("_var",)

    def __init__(self) -> None:
        self._var: contextvars.ContextVar[_Storage] = contextvars.ContextVar("asgigreen.local")

    def _current(self) -> _Storage | None:
        storage = self._var.get(None)
        if storage is None or storage.owner != hubs.get_hub().worker_id():
            return None
        return storage

    def get(self, key: str) -> Any:
        storage = self._current()
        if storage is None:
            raise KeyError(key)
        return storage.data[key]

    def set(self, key: str, value: Any) -> None:
        storage = self._current()
        data = {} if storage is None else dict(storage.data)
        data[key] = value
        self._var.set(_Storage(hubs.get_hub().worker_id(), data))

    def delete(self, key: str) -> None:
        storage = self._current()
        if storage is None or key not in storage.data:
            raise KeyError(key)
        data = dict(storage.data)
        del data[key]
        self._var.set(_Storage(storage.owner, data))


class WorkerLocal:
    """A namespace private to each worker of the process's hub.

    The hub's namespace is made on first use, so a module may create one at
    import time, before the hub is chosen.
    """

    __slots__ = ("_namespace",)

    def __init__(self) -> None:
        _set(self, "_namespace", None)

    def _get(self) -> Any:
        namespace = self._namespace
        if namespace is None:
            namespace = hubs.get_hub().worker_local()
            _set(self, "_namespace", namespace)
        return namespace

    def __getattr__(self, key: str) -> Any:
        return getattr(self._get(), key)

    def __setattr__(self, key: str, value: Any) -> None:
        setattr(self._get(), key, value)

    def __delattr__(self, key: str) -> None:
        delattr(self._get(), key)


@final
class Local:
    """A namespace local to the current worker in sync code and task in async code.

    With ``thread_critical=False`` (the default) a value set in an async task
    is seen by code it awaits, by tasks it creates (they copy its context) and
    by sync code it calls through ``sync_to_async``; a value set in sync code
    is private to its worker and seen by async code it calls through
    ``async_to_sync``. Changes made across a bridge come back with the call.

    With ``thread_critical=True`` values never cross a bridge: sync code sees
    one namespace per worker (like :class:`threading.local`); async code sees
    one per worker that is also scoped like a context variable.

    A worker's values are dropped when the worker ends: on the gevent hub,
    when gevent lets go of the greenlet, which for a ``threading.Thread`` is
    after the hub has run its link callbacks (on 3.13+ that is just after
    ``join()`` returns), as for :class:`gevent.local.local`.

    ``Local`` cannot be subclassed; use it as an attribute bag.
    """

    def __new__(cls, thread_critical: bool = False) -> Local:
        if cls is not Local:
            raise TypeError("asgigreen.local.Local cannot be subclassed")
        impl = _ThreadCriticalLocal if thread_critical else _DefaultLocal
        return object.__new__(impl)

    def __init__(self, thread_critical: bool = False) -> None:
        pass

    # Declared so type checkers treat a Local as an open namespace.
    def __getattr__(self, key: str) -> Any: ...

    def __setattr__(self, key: str, value: Any) -> None: ...

    def __delattr__(self, key: str) -> None: ...


def _missing(local: object, key: str) -> AttributeError:
    # Built on every getattr(local, name, default) miss: keep it cheap (no repr).
    return AttributeError(f"{type(local).__name__!r} object has no attribute {key!r}")


class _ContextNamespace:
    """Attributes kept in a context variable (see :class:`_ContextStorage`).

    No lock: stored dicts are never mutated (every change makes a new one)
    and a context can be entered by one thread at a time only.
    """

    def __init__(self) -> None:
        _set(self, "_storage", _ContextStorage())

    def __getattr__(self, key: str) -> Any:
        try:
            return self._storage.get(key)
        except KeyError:
            raise _missing(self, key) from None

    def __setattr__(self, key: str, value: Any) -> None:
        if key in _RESERVED:
            raise _reserved(key)
        self._storage.set(key, value)

    def __delattr__(self, key: str) -> None:
        try:
            self._storage.delete(key)
        except KeyError:
            raise _missing(self, key) from None


class _DefaultLocal(_ContextNamespace, Local):  # type: ignore[misc]
    """``Local(thread_critical=False)``: context-variable storage."""

    def __init__(self, thread_critical: bool = False) -> None:
        _ContextNamespace.__init__(self)


class _ThreadCriticalLocal(Local):  # type: ignore[misc]
    """``Local(thread_critical=True)``: per worker, never crossing a bridge."""

    def __init__(self, thread_critical: bool = False) -> None:
        _set(self, "_per_worker", WorkerLocal())

    def _namespace(self) -> Any:
        per_worker = self._per_worker
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return per_worker
        # In async code each task chain gets its own view, still on this worker.
        try:
            return per_worker.async_storage
        except AttributeError:
            per_worker.async_storage = _ContextNamespace()
            return per_worker.async_storage

    def __getattr__(self, key: str) -> Any:
        if key == "_per_worker":
            raise AttributeError(key)
        return getattr(self._namespace(), key)

    def __setattr__(self, key: str, value: Any) -> None:
        if key in _RESERVED:
            raise _reserved(key)
        setattr(self._namespace(), key, value)

    def __delattr__(self, key: str) -> None:
        delattr(self._namespace(), key)
