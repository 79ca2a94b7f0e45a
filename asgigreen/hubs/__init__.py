"""The hub layer: the one place that knows what a "worker" is.

The bridges in :mod:`asgigreen.sync` and :mod:`asgigreen.local` speak of
workers (who is running now, where thread-sensitive work goes, how a sync
caller parks while async code runs for it) and leave the meaning to a hub:

* ``threads`` (the default): a worker is an OS thread, as in asgiref.
* ``gevent``: a worker is a greenlet in a gevent-monkeypatched process, with
  real OS threads still available on request for blocking C code.

Selection, in order: :func:`use` if called, else the ``ASGIGREEN_HUB``
environment variable (``threads`` or ``gevent``), else ``gevent`` when gevent
has monkeypatched :mod:`threading`, else ``threads``. The choice is made on
first use and kept; call :func:`use` before the bridges run to change it.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import os
import sys
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor, Future
from typing import Any, Protocol, TypeVar

from .. import _calls

__all__ = [
    "HUB_NAMES",
    "CallStats",
    "Hub",
    "HubMismatchError",
    "HubStats",
    "Lock",
    "Signal",
    "get_hub",
    "use",
]

_T = TypeVar("_T")

#: The names :func:`use` and ``ASGIGREEN_HUB`` accept.
HUB_NAMES = ("threads", "gevent")


class Lock(Protocol):
    """The context-manager part of :class:`threading.Lock`."""

    def __enter__(self) -> bool: ...

    def __exit__(self, exc_type: Any, exc: Any, tb: Any, /) -> Any: ...


class Signal(Protocol):
    """A wake-up flag one worker parks on and any worker (or thread) sets.

    ``wait()`` returns once ``set()`` has been called since the last
    ``wait()`` returned; it consumes the flag.
    """

    def wait(self) -> None: ...

    def set(self) -> None: ...


@dataclasses.dataclass(frozen=True, slots=True)
class CallStats:
    """Figures for one kind of bridge call (see :class:`HubStats`).

    A call is *in flight* from the moment it is made until its sync side
    ends (``sync_to_async``: the function returned or raised; for
    ``async_to_sync``: the coroutine finished and the caller resumed). It is
    *queued* while it waits for a worker, before its function starts.
    Queued calls are in flight too: the calls running are
    ``in_flight - queued``.
    """

    #: Calls made and not yet ended, queued ones included.
    in_flight: int
    #: Calls waiting for a worker (always 0 for ``async_to_sync``).
    queued: int
    #: Calls made since the process started (or forked).
    started: int
    #: Calls ended with a result.
    completed: int
    #: Calls ended with an error (for ``async_to_sync``, also a caller
    #: interrupted before the coroutine finished).
    failed: int
    #: Calls that ended without starting: their caller gave up (a cancelled
    #: task) while they waited, or the worker they waited for stopped
    #: serving. Their function never runs.
    #: ``started == in_flight + completed + failed + cancelled``.
    cancelled: int


@dataclasses.dataclass(frozen=True, slots=True)
class HubStats:
    """What the hub is doing now, and has done: :meth:`Hub.stats` returns one.

    ``sync_to_async`` calls are counted by where they run, each in one kind:

    * ``thread_sensitive``: on a thread-sensitive worker (the process-wide
      one, a :class:`~asgigreen.sync.ThreadSensitiveContext`'s, or the sync
      caller parked in ``async_to_sync``), one call at a time per worker.
    * ``free``: ``thread_sensitive=False`` calls, concurrently on the pool
      (or the ``executor`` given).
    * ``real_thread``: on the gevent hub, calls sent to native OS threads
      (``real_thread=True`` or the hub's ``real_threads`` setting), whether
      thread-sensitive or not. Always zero on the threads hub, whose workers
      are all OS threads already.

    Workers are the hub's own: thread-sensitive workers, the pool's workers
    and (gevent hub) native threads; a sync caller parked in
    ``async_to_sync`` is not one. Loops are what runs ``async_to_sync``
    coroutines without an outer loop to go back to: on the threads hub a
    pooled thread each, on the gevent hub an event loop on a greenlet (idle:
    a clean loop kept for the next call).
    """

    #: The hub's name (``"threads"`` or ``"gevent"``).
    hub: str
    #: ``sync_to_async`` calls on thread-sensitive workers.
    thread_sensitive: CallStats
    #: ``sync_to_async`` calls with ``thread_sensitive=False``.
    free: CallStats
    #: ``sync_to_async`` calls on native threads (gevent hub).
    real_thread: CallStats
    #: ``async_to_sync`` calls.
    async_to_sync: CallStats
    #: Seconds the longest-waiting queued ``sync_to_async`` call has waited
    #: for a worker so far; 0.0 when none is queued.
    longest_wait: float
    #: Workers running a call.
    workers_busy: int
    #: Workers waiting for a call.
    workers_idle: int
    #: Loops running an ``async_to_sync`` call.
    loops_busy: int
    #: Loops kept for the next call.
    loops_idle: int

    def calls(self) -> dict[str, CallStats]:
        """The four :class:`CallStats` by kind: ``thread_sensitive``, ``free``,
        ``real_thread``, ``async_to_sync`` (a label for exporters)."""
        return {
            "thread_sensitive": self.thread_sensitive,
            "free": self.free,
            "real_thread": self.real_thread,
            "async_to_sync": self.async_to_sync,
        }

    def as_dict(self) -> dict[str, str | int | float]:
        """Every figure under a flat name: ``free_queued``, ``workers_busy``...

        For logging and JSON; each kind's figures are prefixed with its name.
        """
        flat: dict[str, str | int | float] = {"hub": self.hub}
        for kind, figures in self.calls().items():
            for field in dataclasses.fields(CallStats):
                flat[f"{kind}_{field.name}"] = getattr(figures, field.name)
        flat["longest_wait"] = self.longest_wait
        flat["workers_busy"] = self.workers_busy
        flat["workers_idle"] = self.workers_idle
        flat["loops_busy"] = self.loops_busy
        flat["loops_idle"] = self.loops_idle
        return flat


def _field_setters(cls: type) -> list[Callable[[Any, Any], None]]:
    return [cls.__dict__[field.name].__set__ for field in dataclasses.fields(cls)]


_SETTERS: dict[type, list[Callable[[Any, Any], None]]] = {
    cls: _field_setters(cls) for cls in (CallStats, HubStats)
}


_CALL_STATS_SETTERS = _SETTERS[CallStats]
_new_object = object.__new__


def _build(cls: type[_T], values: tuple[Any, ...]) -> _T:
    # A frozen dataclass's __init__ goes through object.__setattr__ for each
    # field, at several times the cost of the slot's own setter; stats() is
    # meant to be read on every request. Same fields, same order.
    instance = object.__new__(cls)
    for setter, value in zip(_SETTERS[cls], values, strict=True):
        setter(instance, value)
    return instance


# The last CallStats made for each kind, with its figures: figures that have
# not changed since (often whole kinds: real threads, async_to_sync) need no
# new one.
_recent: list[tuple[tuple[int, ...], CallStats] | None] = [None, None, None, None]


def _call_stats(kind: int, values: tuple[int, ...]) -> CallStats:
    recent = _recent[kind]
    if recent is not None and recent[0] == values:
        return recent[1]
    # _build(CallStats, values), unrolled: this runs for each kind on each read.
    made = _new_object(CallStats)
    set_in_flight, set_queued, set_started, set_completed, set_failed, set_cancelled = (
        _CALL_STATS_SETTERS
    )
    set_in_flight(made, values[0])
    set_queued(made, values[1])
    set_started(made, values[2])
    set_completed(made, values[3])
    set_failed(made, values[4])
    set_cancelled(made, values[5])
    _recent[kind] = (values, made)
    return made


class Hub(abc.ABC):
    """What a worker is, where sync work runs, and how the bridges wait.

    A hub is a process-wide singleton chosen once (see :func:`get_hub`). Every
    method may be called from any worker unless it says otherwise.
    """

    #: The name used by :func:`~asgigreen.hubs.use` and ``ASGIGREEN_HUB``.
    name: str = ""

    # -- identity -----------------------------------------------------------

    @abc.abstractmethod
    def worker_id(self) -> int:
        """Identity of the current worker (an OS thread or a greenlet)."""

    @abc.abstractmethod
    def worker_local(self) -> Any:
        """A new namespace whose attributes are private to each worker.

        It behaves like :class:`threading.local`; a worker's attributes are
        dropped when the worker ends.
        """

    @abc.abstractmethod
    def new_signal(self) -> Signal:
        """A :class:`~asgigreen.hubs.Signal` for the current worker to park on."""

    def new_lock(self) -> Lock:
        """A mutex for state shared across workers and OS threads.

        Held only briefly and never across a wait, so it may be a native
        lock even where workers are greenlets.
        """
        return threading.Lock()

    def new_future(self) -> Future[Any]:
        """A :class:`concurrent.futures.Future` for results handed between workers."""
        return Future()

    # -- where sync work runs -----------------------------------------------

    @abc.abstractmethod
    def serial_executor(self) -> Executor:
        """A new executor that runs one call at a time on one dedicated worker.

        Thread-sensitive work runs on these: the process-wide one and one per
        :class:`~asgigreen.sync.ThreadSensitiveContext`.
        """

    @abc.abstractmethod
    def run_in_executor(
        self,
        loop: asyncio.AbstractEventLoop,
        executor: Executor | None,
        func: Callable[[], _T],
        real_thread: bool | None = None,
    ) -> asyncio.Future[_T]:
        """Run ``func`` on ``executor`` and return a future of ``loop`` for it.

        ``executor=None`` means the hub's default for work that is not
        thread-sensitive. ``real_thread=True`` asks for a native OS thread
        standing in for ``executor``'s worker (``None``: the hub's setting).
        Cancelling the returned future cancels the call if it has not
        started. Called from the worker running ``loop``.
        """

    def uses_real_thread(self, real_thread: bool | None) -> bool:
        """Whether work given ``real_thread`` (as :meth:`run_in_executor` takes
        it) goes to a native thread standing in for a worker that is not one.

        False on a hub whose workers are all OS threads already.
        """
        return False

    def call_soon_threadsafe(
        self, loop: asyncio.AbstractEventLoop, callback: Callable[..., object], *args: Any
    ) -> None:
        """Schedule ``callback(*args)`` on ``loop`` from any worker, waking it.

        ``loop.call_soon_threadsafe``, except that a hub may wake a loop of
        its own more cheaply. Raises ``RuntimeError`` if the loop is closed.
        """
        loop.call_soon_threadsafe(callback, *args)

    def call_soon_and_wait(
        self,
        loop: asyncio.AbstractEventLoop,
        signal: Signal,
        callback: Callable[..., object],
        *args: Any,
    ) -> None:
        """Schedule ``callback(*args)`` on ``loop``, then park on ``signal`` until set.

        For a worker that hands work to a loop and waits for the answer. A
        hub may run the loop at once, instead of after everything already
        waiting for its turn, when its worker is idle. ``signal`` must be the
        current worker's. Raises ``RuntimeError`` if the loop is closed.
        """
        self.call_soon_threadsafe(loop, callback, *args)
        signal.wait()

    def hand_over(self, signal: Signal) -> None:
        """Set ``signal``, for a caller with nothing urgent left to do.

        A hub may run the worker parked on it at once and resume the caller
        afterwards, instead of after everything already waiting its turn.
        """
        signal.set()

    # -- how async code is run for a sync caller ----------------------------

    @abc.abstractmethod
    def spawn(self, func: Callable[[], _T]) -> Future[_T]:
        """Run ``func`` on a fresh worker of its own and return its future.

        ``func`` starts in an empty context, as on a new thread, whatever a
        reused worker's own context holds. ``async_to_sync`` runs its event
        loop this way; the caller parks on
        the future with
        :meth:`~asgigreen.current_thread_executor.CurrentThreadExecutor.run_until_future`.
        """

    @abc.abstractmethod
    def run_on_new_loop(self, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``main()`` to completion on an event loop of its own, here.

        Blocks the current worker until done. The loop starts with nothing
        scheduled and is cleaned up afterwards as ``asyncio.run`` does; the
        hub may reuse it for a later call once it is clean.
        """

    _process_serial: Executor | None = None

    def process_serial_executor(self) -> Executor:
        """The process-wide :meth:`serial_executor`, for thread-sensitive work
        outside any ``ThreadSensitiveContext`` or ``async_to_sync``."""
        executor = self._process_serial
        if executor is None:
            with _lock:
                executor = self._process_serial
                if executor is None:
                    executor = self._process_serial = self.serial_executor()
        return executor

    # -- statistics ---------------------------------------------------------

    def stats(self) -> HubStats:
        """The bridge calls in flight and queued, workers and loops, and totals.

        Cheap enough to read on every request: it reads counters kept as
        calls go, without walking the calls. Call figures cover the whole
        process (every hub it used) and start from zero in a forked child.
        Safe from any worker or thread. The call figures are read at one
        moment; the worker and loop figures just after.
        """
        figures, longest_wait = _calls.counts()
        ts, free, real, a2s = [_call_stats(kind, values) for kind, values in enumerate(figures)]
        return _build(
            HubStats,
            (self.name, ts, free, real, a2s, longest_wait, *self._worker_counts()),
        )

    @abc.abstractmethod
    def _worker_counts(self) -> tuple[int, int, int, int]:
        """Workers busy and idle, loops busy and idle (see :class:`HubStats`)."""

    # -- lifecycle ----------------------------------------------------------

    def activate(self) -> None:  # noqa: B027 (optional hook)
        """Called once when the hub becomes the process's hub."""

    def after_fork_in_child(self) -> None:
        """Drop workers inherited from the parent; they do not exist here."""
        self._process_serial = None


_hub: Hub | None = None
# True while the hub is the threads hub picked by detection: gevent patching
# threading afterwards would leave it wrong, so get_hub() keeps checking.
_watch_for_patching = False
_lock = threading.Lock()


def _gevent_patched_threading() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    if monkey is None:
        return False
    try:
        return bool(monkey.is_module_patched("threading"))
    except Exception:
        return False


class HubMismatchError(RuntimeError):
    """gevent monkeypatched the process after asgigreen chose the threads hub."""


_MISMATCH = (
    "gevent monkeypatched threading after asgigreen had chosen the threads hub, so "
    "sync_to_async/async_to_sync would run greenlets as if they were threads. Patch "
    "first: call gevent.monkey.patch_all() (or asgigreen.patch_all()) before importing "
    "asgigreen, Django, Flask or anything that imports asgiref; under gunicorn use "
    "'-k gevent' without --preload, or patch at the top of the config file. To keep "
    "the threads hub on purpose, call asgigreen.hubs.use('threads') or set "
    "ASGIGREEN_HUB=threads."
)


def _create(name: str) -> Hub:
    if name == "threads":
        from .threads import ThreadsHub

        return ThreadsHub()
    if name == "gevent":
        try:
            from .gevent import GeventHub
        except ImportError as exc:
            raise RuntimeError(
                "The gevent hub needs gevent and greenlet: pip install 'asgigreen[gevent]'"
            ) from exc
        return GeventHub()
    raise ValueError(f"Unknown asgigreen hub {name!r}; choose one of {', '.join(HUB_NAMES)}")


def _detect() -> tuple[str, bool]:
    """The hub to use, and whether it was picked by detection alone."""
    name = os.environ.get("ASGIGREEN_HUB", "").strip().lower()
    if name:
        if name not in HUB_NAMES:
            raise ValueError(
                f"ASGIGREEN_HUB={name!r} is not a hub; choose one of {', '.join(HUB_NAMES)}"
            )
        return name, False
    return ("gevent" if _gevent_patched_threading() else "threads"), True


def get_hub() -> Hub:
    """The process's hub, chosen on first call (see the module docstring).

    Raises :class:`HubMismatchError` if gevent patched threading after the
    threads hub was picked by detection.
    """
    hub = _hub
    if hub is None:
        name, detected = _detect()
        hub = _install(name, watch=detected and name == "threads")
    if _watch_for_patching and _gevent_patched_threading():
        raise HubMismatchError(_MISMATCH)
    return hub


def use(name: str) -> Hub:
    """Make ``name`` (``"threads"`` or ``"gevent"``) the process's hub.

    Call it at start-up, before any bridge runs: work already running stays
    on the hub it started on.
    """
    return _install(name, watch=False)


def _install(name: str, *, watch: bool) -> Hub:
    global _hub, _watch_for_patching
    with _lock:
        if _hub is None or _hub.name != name:
            hub = _create(name)
            hub.activate()
            _hub = hub
            _calls.set_worker_id(hub.worker_id)
        _watch_for_patching = watch
        return _hub


def worker_id() -> int:
    """Identity of the current worker on the process's hub."""
    return get_hub().worker_id()


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()
    hub = _hub
    if hub is not None:
        hub.after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
