"""Drive an ASGI application from a test, without a server or sockets."""

from __future__ import annotations

import asyncio
import contextvars
import time
from typing import Any

from .compatibility import guarantee_single_callable

__all__ = ["ApplicationCommunicator"]


class ApplicationCommunicator:
    """Run one instance of an ASGI application and talk to it.

    The test plays the server: :meth:`send_input` queues an event for the
    application's ``receive()``, :meth:`receive_output` returns the next event
    it passed to ``send()``. The application starts running on first use, as
    an asyncio task. If it crashes, the next call re-raises its exception, so
    failures show up in the test rather than vanishing.

    ASGI 2 (double callable) applications are accepted too.
    """

    def __init__(self, application: Any, scope: Any) -> None:
        # Queues and task are created lazily, so that a communicator can be
        # built outside a running event loop; they bind to the loop that
        # first uses them.
        self._future: asyncio.Future[Any] | None = None
        self._input_queue: asyncio.Queue[Any] | None = None
        self._output_queue: asyncio.Queue[Any] | None = None
        self.application = guarantee_single_callable(application)
        self.scope = scope

    @property
    def input_queue(self) -> asyncio.Queue[Any]:
        """Events waiting for the application's ``receive()``."""
        if self._input_queue is None:
            self._input_queue = asyncio.Queue()
        return self._input_queue

    @property
    def output_queue(self) -> asyncio.Queue[Any]:
        """Events the application has ``send()``-ed and the test has not read yet."""
        if self._output_queue is None:
            self._output_queue = asyncio.Queue()
        return self._output_queue

    @property
    def future(self) -> asyncio.Future[Any]:
        """The task running the application; starts it on first access."""
        if self._future is None:
            # A server would run the application in a fresh context. Starting
            # it from an empty one keeps context variables the test has set
            # from leaking into the application.
            self._future = contextvars.Context().run(self._start_application)
        return self._future

    def _start_application(self) -> asyncio.Future[Any]:
        running = self.application(self.scope, self.input_queue.get, self.output_queue.put)
        # ensure_future copies the current (empty) context into the new task.
        return asyncio.ensure_future(running)

    # -- talking to the application -----------------------------------------

    async def send_input(self, message: Any) -> None:
        """Queue ``message`` for the application to ``receive()``."""
        self._raise_if_application_failed()
        await self.input_queue.put(message)

    async def receive_output(self, timeout: float | None = 1) -> Any:
        """Return the next message the application sent.

        If nothing arrives within ``timeout`` seconds, the application is
        cancelled and :class:`asyncio.TimeoutError` is raised, unless the
        application has failed, in which case its own exception is raised.
        """
        self._raise_if_application_failed()
        try:
            return await asyncio.wait_for(self.output_queue.get(), timeout)
        except TimeoutError:
            if self.future.done():
                # It already finished: its error explains the silence better.
                self.future.result()
            else:
                await self._cancel_application()
                # An error raised while unwinding from the cancellation counts.
                if not self.future.cancelled():
                    self.future.result()
            raise

    async def receive_nothing(self, timeout: float = 0.1, interval: float = 0.01) -> bool:
        """Check that the application sends nothing for ``timeout`` seconds.

        Polls every ``interval`` seconds without consuming anything; returns
        False as soon as a message is waiting, True otherwise. The last sleep
        may overrun ``timeout`` by up to one ``interval``.
        """
        self._raise_if_application_failed()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.output_queue.empty():
                return False
            await asyncio.sleep(interval)
        return self.output_queue.empty()

    # -- ending the application ---------------------------------------------

    async def wait(self, timeout: float | None = 1) -> None:
        """Wait up to ``timeout`` seconds for the application to return.

        An exception raised by the application is re-raised here. An
        application still running when the time is up is cancelled, and then
        this returns normally (no timeout error), as asgiref does.
        """
        try:
            await asyncio.wait({self.future}, timeout=timeout)
        finally:
            # Also reached if the caller itself is cancelled: never leave the
            # application running behind the test's back.
            if not self.future.done():
                await self._cancel_application()
        if not self.future.cancelled():
            self.future.result()

    def stop(self, exceptions: bool = True) -> None:
        """Cancel the application if it is still running (without waiting).

        If it has already finished and ``exceptions`` is true, re-raise its
        exception, if any.
        """
        future = self._future
        if future is None:
            return
        if not future.done():
            future.cancel()
        elif exceptions:
            future.result()

    def __del__(self) -> None:
        try:
            self.stop(exceptions=False)
        except RuntimeError:
            # Cancelling needs the event loop, which may be closed by now.
            pass

    # -- helpers --------------------------------------------------------------

    def _raise_if_application_failed(self) -> None:
        if self.future.done():
            self.future.result()

    async def _cancel_application(self) -> None:
        """Cancel the application and wait until it has finished unwinding."""
        self.future.cancel()
        # asyncio.wait never raises the task's outcome; callers inspect it.
        await asyncio.wait({self.future})
