"""The sync/async bridges: ``sync_to_async`` and ``async_to_sync``.

What these mean follows asgiref. Where the work physically runs (an OS
thread, a greenlet) is the hub's business: this module asks the hub for
workers, executors and event loops, and never decides itself.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import os
import sys
import warnings
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from . import _calls, _deadlock, hubs
from ._deadlock import DeadlockError
from .current_thread_executor import CurrentThreadExecutor
from .local import Local, WorkerLocal, _rehome, _Storage

if TYPE_CHECKING:
    from _typeshed import OptExcInfo

__all__ = [
    "AsyncSingleThreadContext",
    "AsyncToSync",
    "DeadlockError",
    "SyncToAsync",
    "ThreadSensitiveContext",
    "async_to_sync",
    "iscoroutinefunction",
    "markcoroutinefunction",
    "sync_to_async",
]

_F = TypeVar("_F", bound=Callable[..., Any])
_P = ParamSpec("_P")
_R = TypeVar("_R")

_UNSET = object()

# Choose the hub now: the gevent hub must track running loops from the
# start, before any greenlet asks whether one is running.
hubs.get_hub()

# Deadlock reports: calls the hubs queued behind busy workers (empty unless
# one just did), and the async_to_sync calls in progress with their tasks.
_queued_behind = _deadlock.behind
_awaiting = _deadlock.awaiting


def _caller_frame(depth: int = 1) -> FrameType:
    # The frame that called the bridge, which is ``depth`` frames up (2 from
    # a helper of the bridge); the bridge's own frame when nothing did (a
    # greenlet whose run is the bridge itself has no caller).
    bridge = sys._getframe(depth)
    return bridge.f_back or bridge


def _restore_context(context: contextvars.Context) -> None:
    """Make the current context's variables match ``context``.

    Used to carry variable changes across a bridge in both directions.
    ``Local`` storage found on the way is re-homed to the current worker:
    the bridge is moving it here on purpose.
    """
    for var, value in context.items():
        if type(value) is _Storage:
            value = _rehome(value)
        if var.get(_UNSET) is not value:
            var.set(value)


if sys.version_info >= (3, 12):
    iscoroutinefunction = inspect.iscoroutinefunction
    markcoroutinefunction = inspect.markcoroutinefunction
else:
    import asyncio.coroutines

    def iscoroutinefunction(func: object) -> bool:
        """Whether ``func`` is a coroutine function or marked as one."""
        return asyncio.iscoroutinefunction(func)

    def markcoroutinefunction(func: _F) -> _F:
        """Mark ``func`` so :func:`iscoroutinefunction` reports it as async."""
        func._is_coroutine = asyncio.coroutines._is_coroutine  # type: ignore[attr-defined]
        return func


def _is_async_callable(func: object) -> bool:
    # An instance with an async __call__ is an async callable too.
    return iscoroutinefunction(func) or iscoroutinefunction(getattr(func, "__call__", func))  # noqa: B004


class AsyncSingleThreadContext:
    """Run every ``async_to_sync`` call in the block on one worker.

    Without it each call from sync code gets a worker of its own. Only the
    outermost block on a context takes effect; nested blocks are no-ops.

    >>> with AsyncSingleThreadContext():
    ...     async_to_sync(first)()
    ...     async_to_sync(second)()  # same worker as first
    """

    def __init__(self) -> None:
        self.token: contextvars.Token[AsyncSingleThreadContext] | None = None

    def __enter__(self) -> AsyncSingleThreadContext:
        if AsyncToSync.async_single_thread_context.get(None) is None:
            self.token = AsyncToSync.async_single_thread_context.set(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.token is None:
            return
        executor = AsyncToSync.context_to_thread_executor.pop(self, None)
        if executor is not None:
            executor.shutdown()
        AsyncToSync.async_single_thread_context.reset(self.token)
        self.token = None


class ThreadSensitiveContext:
    """Give the thread-sensitive ``sync_to_async`` calls of a block their own worker.

    By default all thread-sensitive calls outside ``async_to_sync`` share one
    process-wide worker; inside this block they share one worker of the
    block's own (Django's ASGI handler opens one per request). Only the
    outermost block takes effect.

    ``executor`` supplies the worker: it must run one call at a time on one
    worker (``ThreadPoolExecutor(max_workers=1)``, for example). Such a block
    applies even when nested, takes precedence over an enclosing
    ``async_to_sync``, can be entered once, and leaves the executor running
    for its owner. Tasks started in it must finish before it exits; their
    thread-sensitive calls raise ``RuntimeError`` afterwards.

    >>> async with ThreadSensitiveContext():
    ...     await sync_to_async(orm_call)()
    """

    def __init__(self, *, executor: Executor | None = None) -> None:
        self._executor = executor
        self.token: contextvars.Token[ThreadSensitiveContext] | None = None
        self._hidden_executor: CurrentThreadExecutor | None = None
        self._exited = False

    async def __aenter__(self) -> ThreadSensitiveContext:
        if self._executor is None:
            if SyncToAsync.thread_sensitive_context.get(None) is None:
                self.token = SyncToAsync.thread_sensitive_context.set(self)
            return self
        if self.token is not None:
            raise RuntimeError("ThreadSensitiveContext is already entered")
        if self._exited:
            raise RuntimeError("ThreadSensitiveContext with an executor cannot be entered again")
        self.token = SyncToAsync.thread_sensitive_context.set(self)
        SyncToAsync.context_to_thread_executor[self] = self._executor
        # The caller's own executor (from an enclosing async_to_sync) would
        # win over this block; hide it while the block runs. A nested
        # async_to_sync installs a fresh one, so its calls don't land on the
        # supplied executor's single worker, which is busy waiting for them.
        self._hidden_executor = getattr(AsyncToSync.executors, "current", None)
        AsyncToSync.executors.current = None
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.token is None:
            return
        executor = SyncToAsync.context_to_thread_executor.pop(self, None)
        SyncToAsync.thread_sensitive_context.reset(self.token)
        self.token = None
        if self._executor is not None:
            AsyncToSync.executors.current = self._hidden_executor
            self._hidden_executor = None
            self._exited = True
            return
        if executor is not None:
            # Without waiting: the worker finishes what it was given and ends
            # on its own. Waiting would need a worker of its own per context
            # (the context's worker may be parked on this very loop), and
            # under a burst of requests those pile up.
            executor.shutdown(wait=False)


class AsyncToSync(Generic[_P, _R]):
    """Call an async function from sync code and wait for its result.

    If the caller was itself reached through ``sync_to_async``, the coroutine
    runs on that outer event loop; otherwise the hub runs it on a fresh loop
    on another worker. Meanwhile the caller serves thread-sensitive
    ``sync_to_async`` calls made by the coroutine (see
    :class:`~asgigreen.current_thread_executor.CurrentThreadExecutor`).
    Calling it where an event loop is running raises ``RuntimeError``.
    """

    #: ``current``: the executor of the innermost ``async_to_sync`` caller.
    executors: Local = Local()

    #: Fallback lookup of that executor for code that lost its context
    #: (callbacks scheduled straight onto the loop).
    loop_thread_executors: dict[asyncio.AbstractEventLoop, CurrentThreadExecutor] = {}

    async_single_thread_context: contextvars.ContextVar[AsyncSingleThreadContext] = (
        contextvars.ContextVar("async_single_thread_context")
    )
    context_to_thread_executor: weakref.WeakKeyDictionary[AsyncSingleThreadContext, Executor] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(
        self,
        awaitable: Callable[_P, Coroutine[Any, Any, _R]] | Callable[_P, Awaitable[_R]],
        force_new_loop: bool = False,
    ) -> None:
        if not callable(awaitable) or not _is_async_callable(awaitable):
            # Detection has false negatives (decorated callables), so only warn.
            warnings.warn("async_to_sync was passed a non-async-marked callable", stacklevel=2)
        self.awaitable = awaitable
        try:
            self.__self__ = awaitable.__self__  # type: ignore[union-attr]
        except AttributeError:
            pass
        self.force_new_loop = force_new_loop

    def __call__(self, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        __traceback_hide__ = True
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError(
                "You cannot use AsyncToSync in the same thread as an async event loop - "
                "just await the async function directly."
            )

        outer_loop = None if self.force_new_loop else _outer_event_loop()
        call_result: Future[_R] = hubs.get_hub().new_future()
        old_executor = getattr(self.executors, "current", None)
        current_executor = CurrentThreadExecutor(old_executor)
        self.executors.current = current_executor
        # A list so main_wrap can hand back the context as it ends.
        context = [contextvars.copy_context()]
        task_context = getattr(SyncToAsync.threadlocal, "task_context", None)
        running = _RunningCall()
        call = _calls.async_to_sync_call(self.awaitable, _caller_frame())
        _awaiting[call] = running
        try:
            coroutine = self.awaitable(*args, **kwargs)
            awaitable = self.main_wrap(
                call_result, sys.exc_info(), task_context, context, coroutine, running
            )
            if outer_loop is not None and _schedule(outer_loop, awaitable, call_result, coroutine):
                _wait_cancelling_on_interrupt(current_executor, call_result, running)
            else:
                self._run_on_new_loop(awaitable, current_executor, running, call_result)
        except BaseException as interruption:
            if not running.interrupted or not _gets_the_result(interruption, call_result):
                raise
            # The coroutine finished before it could be cancelled: its
            # result (a message taken off a queue, say) is the caller's.
        finally:
            _restore_context(context[0])
            self.executors.current = old_executor
            del _awaiting[call]
            _calls.leave_async_to_sync(call, call_result)
        return call_result.result()

    def _run_on_new_loop(
        self,
        awaitable: Coroutine[Any, Any, None],
        current_executor: CurrentThreadExecutor,
        running: _RunningCall,
        call_result: Future[Any],
    ) -> None:
        async def run() -> None:
            loop = asyncio.get_running_loop()
            self.loop_thread_executors[loop] = current_executor
            # Real asgiref's thread-sensitive sync_to_async would look for
            # its own caller here, find none and run elsewhere: make it fail.
            foreign = _real_asgiref_sync()
            if foreign is not None:
                foreign.AsyncToSync.loop_thread_executors[loop] = _MIXED_BRIDGES
            try:
                await awaitable
            finally:
                del self.loop_thread_executors[loop]
                if foreign is not None:
                    foreign.AsyncToSync.loop_thread_executors.pop(loop, None)

        hub = hubs.get_hub()
        runner = functools.partial(hub.run_on_new_loop, run)
        single_thread_context = self.async_single_thread_context.get(None)
        try:
            if single_thread_context is None:
                finished = hub.spawn(runner)
            else:
                pinned = self.context_to_thread_executor.get(single_thread_context)
                if pinned is None:
                    pinned = hub.serial_executor()
                    self.context_to_thread_executor[single_thread_context] = pinned
                finished = pinned.submit(runner)
        except BaseException:
            # Interrupted while the loop was being started (the gevent hub
            # switches straight into it): the call may be running already.
            _cancel_and_drain(current_executor, call_result, running)
            raise
        _wait_cancelling_on_interrupt(current_executor, finished, running)
        finished.result()

    def __get__(self, parent: Any, objtype: Any) -> Callable[_P, _R]:
        """Bind as a method when used as a decorator in a class body."""
        func = functools.partial(self.__call__, parent)
        return functools.update_wrapper(func, self.awaitable)

    async def main_wrap(
        self,
        call_result: Future[_R],
        exc_info: OptExcInfo,
        task_context: list[asyncio.Task[Any]] | None,
        context: list[contextvars.Context],
        awaitable: Coroutine[Any, Any, _R] | Awaitable[_R],
        running: _RunningCall | None = None,
    ) -> None:
        """Await ``awaitable`` on the event loop and settle ``call_result``."""
        __traceback_hide__ = True
        _restore_context(context[0])
        current_task = asyncio.current_task()
        if running is not None and not running.started(current_task):
            # The caller was interrupted before the call began.
            if inspect.iscoroutine(awaitable):
                awaitable.close()
            call_result.set_exception(asyncio.CancelledError())
            return
        if current_task is not None and task_context is not None:
            task_context.append(current_task)
        try:
            # Re-raise the caller's in-flight exception so the coroutine sees
            # the same sys.exc_info() the sync caller had.
            if exc_info[1] is not None:
                try:
                    raise exc_info[1]
                except BaseException:
                    result = await awaitable
            else:
                result = await awaitable
        except BaseException as exc:
            call_result.set_exception(exc)
        else:
            call_result.set_result(result)
        finally:
            if running is not None:
                running.ended()
            if current_task is not None and task_context is not None:
                task_context.remove(current_task)
            context[0] = contextvars.copy_context()


_MIXED_BRIDGES_MESSAGE = (
    "{inner}'s thread-sensitive sync_to_async was called inside {outer}'s async_to_sync. "
    "Real asgiref and asgigreen are both loaded and do not know each other's workers, so "
    "the call would not run on the thread that called async_to_sync (Django's database "
    "connections would be opened on the wrong thread). Call asgigreen.install_as_asgiref() "
    "once at start-up, before Django, Channels or anything else imports asgiref, so that "
    "every import of asgiref gets asgigreen."
)


def _real_asgiref_sync() -> Any:
    """Real asgiref's ``sync`` module if it is loaded beside this one, else None."""
    module = sys.modules.get("asgiref.sync")
    if module is None or module is sys.modules[__name__]:
        return None
    return module


class _MixedBridgesTrap(Executor):
    """Stands in for asgiref's thread-sensitive worker of an asgigreen loop: refuses work."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        raise RuntimeError(_MIXED_BRIDGES_MESSAGE.format(outer="asgigreen", inner="asgiref"))


_MIXED_BRIDGES = _MixedBridgesTrap()


class _RunningCall:
    """The task running an ``async_to_sync`` call, for a caller interrupted meanwhile.

    A sync caller interrupted while it waits (a gevent ``Timeout``, a kill,
    Ctrl-C) cancels the coroutine instead of leaving it running with nobody
    to take its result, as ``asyncio.wait_for`` would.
    """

    __slots__ = ("_lock", "_loop", "_task", "interrupted")

    def __init__(self) -> None:
        self._lock = hubs.get_hub().new_lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        self.interrupted = False

    def started(self, task: asyncio.Task[Any] | None) -> bool:
        """Called by the coroutine's task as it begins; False if already cancelled."""
        with self._lock:
            if self.interrupted:
                return False
            if task is not None:
                self._loop, self._task = task.get_loop(), task
            return True

    def ended(self) -> None:
        with self._lock:
            self._loop = self._task = None

    def cancel(self) -> None:
        """From the interrupted caller: cancel the task, or the call before it begins."""
        with self._lock:
            self.interrupted = True
            loop, task = self._loop, self._task
        if loop is not None and task is not None:
            try:
                hubs.get_hub().call_soon_threadsafe(loop, task.cancel)
            except RuntimeError:
                pass  # the loop closed: the call is over


def _wait_cancelling_on_interrupt(
    executor: CurrentThreadExecutor, until: Future[Any], running: _RunningCall
) -> None:
    """Serve ``executor`` until ``until`` is done; on an interruption, cancel first."""
    try:
        executor._serve_until(until)
    except BaseException:
        _cancel_and_drain(executor, until, running)
        raise


def _cancel_and_drain(
    executor: CurrentThreadExecutor, until: Future[Any], running: _RunningCall
) -> None:
    """For an interrupted caller: cancel the call, and serve it while it unwinds.

    Its clean-up may need the caller's thread-sensitive calls. A second
    interruption stops the wait at once.
    """
    running.cancel()
    try:
        executor._serve_until(until)
    finally:
        executor._quit()


def _gets_the_result(interruption: BaseException, call_result: Future[Any]) -> bool:
    """Whether a caller interrupted after its call had already ended takes its result.

    Yes for a timeout or an error thrown in, whose purpose the call's end has
    met; not when the caller itself must end (a kill, Ctrl-C, exit).
    """
    if not call_result.done() or call_result.cancelled() or call_result.exception() is not None:
        return False
    if isinstance(interruption, (SystemExit, KeyboardInterrupt, GeneratorExit)):
        return False
    greenlet_module = sys.modules.get("greenlet")
    return greenlet_module is None or not isinstance(interruption, greenlet_module.GreenletExit)


def _call_with_context_restored(context: contextvars.Context, child: Callable[[], _R]) -> _R:
    _restore_context(context)
    # Calling the partial's function directly keeps one C frame off the
    # stack that a parked greenlet worker must save (memory per call).
    if type(child) is functools.partial:
        return child.func(*child.args, **child.keywords)  # type: ignore[no-any-return]
    return child()


def _outer_event_loop() -> asyncio.AbstractEventLoop | None:
    """The loop of the ``sync_to_async`` call we are inside, if still usable."""
    local = SyncToAsync.threadlocal
    # A loop from before a fork belongs to the parent process.
    if getattr(local, "main_event_loop_pid", None) != os.getpid():
        return None
    loop: asyncio.AbstractEventLoop | None = getattr(local, "main_event_loop", None)
    if loop is None or loop.is_closed() or not loop.is_running():
        return None
    return loop


def _schedule(
    loop: asyncio.AbstractEventLoop,
    awaitable: Coroutine[Any, Any, None],
    call_result: Future[Any],
    inner: object,
) -> bool:
    """Start ``awaitable`` (main_wrap of ``inner``) as a task of the running
    ``loop``; False if the loop closed."""
    try:
        hubs.get_hub().call_soon_threadsafe(loop, _start_task, loop, awaitable, call_result, inner)
    except RuntimeError:
        return False
    return True


def _start_task(
    loop: asyncio.AbstractEventLoop,
    awaitable: Coroutine[Any, Any, None],
    call_result: Future[Any],
    inner: object,
) -> None:
    task = loop.create_task(awaitable)

    # A task cancelled before its first step never runs its coroutine, so
    # main_wrap can't settle the caller's future: the outer loop's own
    # shutdown does that to a call that arrives as the loop ends.
    def settle_if_never_run(_: asyncio.Task[None]) -> None:
        if not call_result.done():
            if inspect.iscoroutine(inner):
                inner.close()  # never started: no "never awaited" warning
            call_result.set_exception(asyncio.CancelledError())

    task.add_done_callback(settle_if_never_run)


class _SyncToAsyncType(type):
    """Gives :class:`SyncToAsync` its ``single_thread_executor`` class attribute."""

    _chosen_single_thread_executor: Executor | None = None

    @property
    def single_thread_executor(cls) -> Executor:
        """The process-wide worker for thread-sensitive work (asgiref's name).

        The hub's own unless one was assigned; assigning an executor (it must
        run one call at a time on one worker) replaces it for later calls.
        """
        return cls._chosen_single_thread_executor or hubs.get_hub().process_serial_executor()

    @single_thread_executor.setter
    def single_thread_executor(cls, executor: Executor | None) -> None:
        cls._chosen_single_thread_executor = executor


class SyncToAsync(Generic[_P, _R], metaclass=_SyncToAsyncType):
    """Call a sync function from async code without blocking the event loop.

    With ``thread_sensitive=True`` (the default) every such call runs on one
    worker: the sync caller blocked in an enclosing ``async_to_sync`` if
    there is one, else the worker of the enclosing
    :class:`ThreadSensitiveContext`, else one process-wide worker. Use it for
    code that must stay on one thread (database connections, most ORMs).

    With ``thread_sensitive=False`` calls run concurrently on ``executor``,
    or on the hub's default for such work.

    ``real_thread=True`` (an asgigreen addition) asks the hub for a native OS
    thread: on the gevent hub, for blocking C code that would otherwise stall
    every greenlet. Thread-sensitive calls still share one such thread per
    worker. ``None`` follows the hub's setting; the threads hub always uses
    real threads.

    A call that can never run, because the worker it waits for waits for it,
    raises :class:`DeadlockError` naming the cycle instead of hanging.
    """

    #: Per worker: the event loop (and its pid) of the call running there,
    #: so a nested ``async_to_sync`` can go back to it.
    threadlocal: Any = WorkerLocal()

    thread_sensitive_context: contextvars.ContextVar[ThreadSensitiveContext] = (
        contextvars.ContextVar("thread_sensitive_context")
    )

    #: Set while a call holds the process-wide worker, to catch a nested call
    #: that would wait for it forever.
    deadlock_context: contextvars.ContextVar[bool] = contextvars.ContextVar("deadlock_context")

    context_to_thread_executor: weakref.WeakKeyDictionary[ThreadSensitiveContext, Executor] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(
        self,
        func: Callable[_P, _R],
        thread_sensitive: bool = True,
        executor: ThreadPoolExecutor | None = None,
        context: contextvars.Context | None = None,
        *,
        real_thread: bool | None = None,
    ) -> None:
        if not callable(func) or _is_async_callable(func):
            raise TypeError("sync_to_async can only be applied to sync functions.")
        if thread_sensitive and executor is not None:
            raise TypeError("executor must not be set when thread_sensitive is True")
        functools.update_wrapper(self, func)
        self.func = func
        self.context = context
        self._thread_sensitive = thread_sensitive
        self._executor = executor
        self._real_thread = real_thread
        markcoroutinefunction(self)
        try:
            self.__self__ = func.__self__  # type: ignore[attr-defined]
        except AttributeError:
            pass

    async def __call__(self, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        __traceback_hide__ = True
        loop = asyncio.get_running_loop()
        executor = self._pick_executor(loop) if self._thread_sensitive else self._executor
        context = contextvars.copy_context() if self.context is None else self.context
        child = functools.partial(self.func, *args, **kwargs)

        def in_context(child: Callable[[], _R]) -> _R:
            return context.run(_call_with_context_restored, context, child)

        task_context: list[asyncio.Task[Any]] = []
        exc_info = sys.exc_info()

        hub = hubs.get_hub()
        call = _calls.sync_to_async_call(
            self.func,
            self._thread_sensitive,
            hub.uses_real_thread(self._real_thread),
            _caller_frame(),
        )

        def work() -> _R:
            _calls.enter(call)
            try:
                result = self.thread_handler(loop, exc_info, task_context, in_context, child)
            except BaseException:
                _calls.leave(call, failed=True)
                raise
            _calls.leave(call, failed=False)
            return result

        try:
            pending = hub.run_in_executor(loop, executor, work, self._real_thread)
        except BaseException:
            # Never left set when the call didn't go out (asgiref#495).
            self.deadlock_context.set(False)
            _calls.abandon(call)
            raise
        try:
            if _queued_behind:
                # It waits for a busy worker or a full pool: watch for a cycle.
                _deadlock.watch(hub, call, work, pending, loop)
            return await asyncio.shield(pending)
        except asyncio.CancelledError:
            # The sync side may be inside an async_to_sync whose task runs on
            # this loop: cancel that task and let the sync code finish.
            cancel_call = True
            if task_context:
                inner = task_context[0]
                inner.cancel()
                try:
                    await inner
                    cancel_call = False
                except asyncio.CancelledError:
                    pass
            if pending.done():
                raise
            if cancel_call:
                pending.cancel()
            return await pending
        finally:
            if self.context is None:
                _restore_context(context)
            self.deadlock_context.set(False)
            _calls.abandon(call)  # nothing unless it never started

    def _pick_executor(self, loop: asyncio.AbstractEventLoop) -> Executor:
        caller: CurrentThreadExecutor | None = getattr(AsyncToSync.executors, "current", None)
        if caller is not None:
            return caller
        sensitive_context = self.thread_sensitive_context.get(None)
        if sensitive_context is not None:
            if sensitive_context._exited:
                raise RuntimeError(
                    "ThreadSensitiveContext has exited. Tasks created inside a context "
                    "with an executor must finish before it exits."
                )
            executor = self.context_to_thread_executor.get(sensitive_context)
            if executor is None:
                executor = hubs.get_hub().serial_executor()
                self.context_to_thread_executor[sensitive_context] = executor
            return executor
        loop_caller = AsyncToSync.loop_thread_executors.get(loop)
        if loop_caller is not None:
            return loop_caller
        foreign = _real_asgiref_sync()
        if foreign is not None and (
            getattr(foreign.AsyncToSync.executors, "current", None) is not None
            or loop in foreign.AsyncToSync.loop_thread_executors
        ):
            raise RuntimeError(_MIXED_BRIDGES_MESSAGE.format(outer="asgiref", inner="asgigreen"))
        if self.deadlock_context.get(False):
            # The caller of __call__, as the call records name it.
            raise _deadlock.process_worker_in_use(hubs.get_hub(), self.func, _caller_frame(2))
        self.deadlock_context.set(True)
        return SyncToAsync.single_thread_executor

    def __get__(self, parent: Any, objtype: Any) -> Callable[_P, Coroutine[Any, Any, _R]]:
        """Bind as a method when used as a decorator in a class body."""
        func = functools.partial(self.__call__, parent)
        return functools.update_wrapper(func, self.func)

    def thread_handler(
        self,
        loop: asyncio.AbstractEventLoop,
        exc_info: OptExcInfo,
        task_context: list[asyncio.Task[Any]],
        func: Callable[..., _R],
        *args: Any,
        **kwargs: Any,
    ) -> _R:
        """Run ``func(*args, **kwargs)`` on the worker.

        Records ``loop`` for nested ``async_to_sync`` calls and re-raises the
        caller's in-flight exception around the call so ``sys.exc_info()``
        matches. APM agents wrap this method; ``args[0]`` is the call as a
        :func:`functools.partial`.
        """
        __traceback_hide__ = True
        local = self.threadlocal
        # The worker is inside this call only until it returns: put back what
        # an enclosing call recorded, so a later async_to_sync on this worker
        # never mistakes a loop it has left (and the hub may have lent to
        # someone else since) for its own.
        outer = getattr(local, "main_event_loop", None), getattr(local, "task_context", None)
        local.main_event_loop = loop
        local.main_event_loop_pid = os.getpid()
        local.task_context = task_context
        try:
            if exc_info[1] is not None:
                try:
                    raise exc_info[1]
                except BaseException:
                    return func(*args, **kwargs)
            return func(*args, **kwargs)
        finally:
            local.main_event_loop, local.task_context = outer


@overload
def async_to_sync(
    *, force_new_loop: bool = False
) -> Callable[
    [Callable[_P, Coroutine[Any, Any, _R]] | Callable[_P, Awaitable[_R]]],
    Callable[_P, _R],
]: ...


@overload
def async_to_sync(
    awaitable: Callable[_P, Coroutine[Any, Any, _R]] | Callable[_P, Awaitable[_R]],
    *,
    force_new_loop: bool = False,
) -> Callable[_P, _R]: ...


def async_to_sync(
    awaitable: Callable[_P, Coroutine[Any, Any, _R]] | Callable[_P, Awaitable[_R]] | None = None,
    *,
    force_new_loop: bool = False,
) -> (
    Callable[
        [Callable[_P, Coroutine[Any, Any, _R]] | Callable[_P, Awaitable[_R]]],
        Callable[_P, _R],
    ]
    | Callable[_P, _R]
):
    """Wrap an async function so sync code can call it (see :class:`AsyncToSync`).

    Usable directly or as a decorator, with or without arguments.
    """
    if awaitable is None:
        return lambda f: AsyncToSync(f, force_new_loop=force_new_loop)
    return AsyncToSync(awaitable, force_new_loop=force_new_loop)


@overload
def sync_to_async(
    *,
    thread_sensitive: bool = True,
    executor: ThreadPoolExecutor | None = None,
    context: contextvars.Context | None = None,
    real_thread: bool | None = None,
) -> Callable[[Callable[_P, _R]], Callable[_P, Coroutine[Any, Any, _R]]]: ...


@overload
def sync_to_async(
    func: Callable[_P, _R],
    *,
    thread_sensitive: bool = True,
    executor: ThreadPoolExecutor | None = None,
    context: contextvars.Context | None = None,
    real_thread: bool | None = None,
) -> Callable[_P, Coroutine[Any, Any, _R]]: ...


def sync_to_async(
    func: Callable[_P, _R] | None = None,
    *,
    thread_sensitive: bool = True,
    executor: ThreadPoolExecutor | None = None,
    context: contextvars.Context | None = None,
    real_thread: bool | None = None,
) -> (
    Callable[[Callable[_P, _R]], Callable[_P, Coroutine[Any, Any, _R]]]
    | Callable[_P, Coroutine[Any, Any, _R]]
):
    """Wrap a sync function so async code can await it (see :class:`SyncToAsync`).

    Usable directly or as a decorator, with or without arguments.
    """
    options: dict[str, Any] = {
        "thread_sensitive": thread_sensitive,
        "executor": executor,
        "context": context,
        "real_thread": real_thread,
    }
    if func is None:
        return lambda f: SyncToAsync(f, **options)
    return SyncToAsync(func, **options)
