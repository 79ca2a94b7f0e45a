"""A base class for servers of stateless protocols.

"Stateless" here means there are no connections to track: think UDP, or
messages pulled off a queue. The server decides which incoming message belongs
to which *scope* (a user, a chat room, a client address...) and keeps one
running ASGI application instance per scope, reusing it for later messages.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, TypedDict

from .compatibility import guarantee_single_callable

__all__ = ["ApplicationInstance", "StatelessServer"]

logger = logging.getLogger(__name__)


class ApplicationInstance(TypedDict):
    """What :attr:`StatelessServer.application_instances` keeps per scope."""

    input_queue: asyncio.Queue[Any]  # feeds the instance's receive()
    future: asyncio.Future[Any]  # the task running the instance
    scope: Any
    last_used: float  # time.time() of creation or last lookup


class StatelessServer:
    """Pool of ASGI application instances for a connectionless protocol.

    Subclasses implement two coroutines:

    * :meth:`handle` reads incoming data (forever, or until the server should
      stop) and, for each message, calls
      ``self.get_or_create_application_instance(scope_id, scope)`` and puts
      the message on the queue it returns;
    * :meth:`application_send` delivers what an application sends.

    At most ``max_applications`` instances are kept; making room evicts the
    least recently used one. Every ``application_checker_interval`` seconds,
    instances that have finished are dropped, and those that crashed are
    passed to :meth:`application_exception` (which logs them).
    """

    #: Seconds between two sweeps for finished application instances.
    application_checker_interval: float = 0.1

    def __init__(self, application: Any, max_applications: int = 1000) -> None:
        self.application = application
        self.max_applications = max_applications
        #: The running application instances, by scope id.
        self.application_instances: dict[Any, ApplicationInstance] = {}
        self._reports: set[asyncio.Future[None]] = set()

    # -- running -------------------------------------------------------------

    def run(self) -> None:
        """Run the server in a new event loop until :meth:`handle` returns.

        Ctrl-C stops it quietly.
        """
        try:
            asyncio.run(self.arun())
        except KeyboardInterrupt:
            logger.info("Exiting due to Ctrl-C/interrupt")

    async def arun(self) -> None:
        """Run :meth:`handle` and the application checker in the current loop.

        Returns when :meth:`handle` returns. If either of them fails, the
        other is cancelled and the error propagates.
        """
        checker = asyncio.ensure_future(self.application_checker())
        handler = asyncio.ensure_future(self.handle())
        try:
            # The checker loops forever, so it can only finish by failing.
            finished, _ = await asyncio.wait(
                {checker, handler}, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            checker.cancel()
            handler.cancel()
            await asyncio.gather(checker, handler, return_exceptions=True)
        for task in finished:
            task.result()

    async def handle(self) -> None:
        """Receive incoming data and route it to application instances."""
        raise NotImplementedError("You must implement handle()")

    async def application_send(self, scope: Any, message: Any) -> None:
        """Deliver a message that the application instance for ``scope`` sent."""
        raise NotImplementedError("You must implement application_send()")

    # -- application instances -------------------------------------------------

    def get_or_create_application_instance(self, scope_id: Any, scope: Any) -> asyncio.Queue[Any]:
        """Return the input queue of the instance for ``scope_id``.

        An existing instance is reused (and marked as just used; ``scope`` is
        then ignored). Otherwise a new instance is started with ``scope``,
        first evicting the least recently used ones if the pool is full. An
        instance that has finished counts as gone even before
        :meth:`application_checker` sweeps it (asgiref would hand back its
        queue, where nobody reads a new message); if it crashed, its
        exception still goes to :meth:`application_exception`. Must be
        called from inside the running event loop.
        """
        existing = self.application_instances.get(scope_id)
        if existing is not None:
            future = existing["future"]
            if not future.done():
                existing["last_used"] = time.time()
                return existing["input_queue"]
            del self.application_instances[scope_id]
            failure = None if future.cancelled() else future.exception()
            if failure is not None:
                report = asyncio.ensure_future(self.application_exception(failure, existing))
                # The loop keeps only weak references to tasks.
                self._reports.add(report)
                report.add_done_callback(self._reports.discard)

        while self.application_instances and (
            len(self.application_instances) >= self.max_applications
        ):
            self.delete_oldest_application_instance()

        input_queue: asyncio.Queue[Any] = asyncio.Queue()
        application = guarantee_single_callable(self.application)

        async def send(message: Any) -> None:
            await self.application_send(scope, message)

        future = asyncio.ensure_future(application(scope, input_queue.get, send))
        self.application_instances[scope_id] = {
            "input_queue": input_queue,
            "future": future,
            "scope": scope,
            "last_used": time.time(),
        }
        return input_queue

    def delete_oldest_application_instance(self) -> None:
        """Evict the least recently used instance (the first one on ties)."""
        if not self.application_instances:
            return
        instances = self.application_instances
        oldest = min(instances, key=lambda scope_id: instances[scope_id]["last_used"])
        self.delete_application_instance(oldest)

    def delete_application_instance(self, scope_id: Any) -> None:
        """Forget the instance for ``scope_id``, cancelling it if still running.

        Raises :class:`KeyError` if there is no such instance.
        """
        instance = self.application_instances.pop(scope_id)
        if not instance["future"].done():
            instance["future"].cancel()

    async def application_checker(self) -> None:
        """Forever: drop finished instances, reporting the ones that failed."""
        while True:
            await asyncio.sleep(self.application_checker_interval)
            for scope_id, instance in list(self.application_instances.items()):
                future = instance["future"]
                if not future.done():
                    continue
                # A cancelled future has no exception to report (and asking
                # it for one would raise CancelledError here).
                exception = None if future.cancelled() else future.exception()
                if exception is not None:
                    await self.application_exception(exception, instance)
                # application_exception() may have removed it already, or a
                # new instance may have taken the id meanwhile: leave those.
                if self.application_instances.get(scope_id) is instance:
                    del self.application_instances[scope_id]

    async def application_exception(
        self, exception: BaseException, application_details: ApplicationInstance
    ) -> None:
        """Called with the exception of every crashed instance; logs it.

        Override to do more (report to an error tracker, restart...).
        """
        logger.error("Exception inside application: %s", exception, exc_info=exception)
