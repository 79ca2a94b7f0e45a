"""A cancel-after-N-seconds context manager, kept for asgiref compatibility.

New code should use :func:`asyncio.timeout` (Python 3.11+). This exists because
``asgiref.timeout.timeout`` is public API, so code importing it must keep
working when switched to asgigreen.

How it works: on entry we schedule a timer on the event loop. If the timer
fires while the block is still running, it cancels the task running the block;
on exit we recognise the resulting :class:`asyncio.CancelledError` as ours and
turn it into :class:`asyncio.TimeoutError`. A cancellation from anybody else
passes through untouched.
"""

from __future__ import annotations

import asyncio
import warnings
from types import TracebackType

__all__ = ["timeout"]


# Lower-case class name: it is asgiref's public name.
class timeout:
    """Raise :class:`asyncio.TimeoutError` if the block outlives ``timeout`` seconds.

    Usage, inside a running task::

        async with timeout(1.5) as t:
            await something_slow()
        # t.expired tells whether the time ran out (if it did, the
        # TimeoutError propagates out of the block).

    ``timeout=None`` disables the limit; zero or a negative value expires at
    the block's first suspension point. The block may also be entered with a
    plain ``with``; it still has to run inside an asyncio task.

    Deprecated, like asgiref's version: prefer ``asyncio.timeout()``.
    """

    def __init__(
        self,
        timeout: float | None,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        warnings.warn(
            "asgigreen.timeout.timeout is deprecated. Use asyncio.timeout() instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        if loop is None:
            loop = asyncio.get_running_loop()
        else:
            warnings.warn(
                "The loop argument to timeout() is deprecated.",
                DeprecationWarning,
                stacklevel=2,
            )
        self._loop = loop
        self._delay = timeout
        self._deadline: float | None = None
        self._timer: asyncio.Handle | None = None
        self._task: asyncio.Task[object] | None = None
        self._expired = False
        # How many cancellation requests the task already had on entry
        # (Python 3.11+), so we can tell ours apart from anybody else's.
        self._cancelling_on_entry = 0

    # -- public state ------------------------------------------------------

    @property
    def expired(self) -> bool:
        """True once the time limit was reached and the block was cancelled."""
        return self._expired

    @property
    def remaining(self) -> float | None:
        """Seconds left before expiry (never negative); None if there is no limit."""
        if self._deadline is None:
            return None
        return max(self._deadline - self._loop.time(), 0.0)

    def cancel(self) -> None:
        """Disarm the time limit; the block may then run for as long as it likes.

        Has no effect once the limit has already expired.
        """
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._expired:
            self._deadline = None

    # -- context manager protocol ------------------------------------------

    def __enter__(self) -> timeout:
        return self._start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self._finish(exc_type, exc_val)

    async def __aenter__(self) -> timeout:
        return self._start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self._finish(exc_type, exc_val)

    # -- internals ---------------------------------------------------------

    def _start(self) -> timeout:
        if self._delay is None:
            return self
        task = asyncio.current_task(self._loop)
        if task is None:
            raise RuntimeError("timeout() has to be used inside an asyncio task")
        self._task = task
        self._cancelling_on_entry = task.cancelling()
        self._deadline = self._loop.time() + self._delay
        if self._delay <= 0:
            # Already due: queue the expiry right away so it runs before the
            # task resumes from its first suspension (a past-due timer would
            # only be queued behind the task on the next loop pass).
            self._timer = self._loop.call_soon(self._expire)
        else:
            self._timer = self._loop.call_at(self._deadline, self._expire)
        return self

    def _expire(self) -> None:
        self._timer = None
        if self._task is not None:
            self._expired = True
            self._task.cancel()

    def _finish(self, exc_type: type[BaseException] | None, exc_val: BaseException | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        task, self._task = self._task, None
        if task is None or not self._expired:
            return

        # We cancelled the task: withdraw that request so the task does not
        # look "being cancelled" to code that runs after the block.
        cancelled_by_someone_else = task.uncancel() > self._cancelling_on_entry

        if (
            exc_type is not None
            and issubclass(exc_type, asyncio.CancelledError)
            and not cancelled_by_someone_else
        ):
            raise TimeoutError from exc_val
