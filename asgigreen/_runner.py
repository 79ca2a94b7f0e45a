"""Running a coroutine on a fresh event loop, as ``asyncio.run`` does, but cheaper."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any


def run_loop_to_completion(
    main: Callable[[], Coroutine[Any, Any, None]],
    new_loop: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop,
) -> None:
    """Run ``main()`` on a new event loop, then clean up and close the loop.

    Cleanup matches ``asyncio.run``: tasks still pending are cancelled and
    awaited, async generators are finalised and the default executor is shut
    down. Steps with nothing to do are skipped: they each cost a loop turn.
    """
    loop = new_loop()
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(main())
    finally:
        try:
            _cancel_pending(loop)
            if getattr(loop, "_asyncgens", True):
                loop.run_until_complete(loop.shutdown_asyncgens())
            if getattr(loop, "_default_executor", True) is not None:
                loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _cancel_pending(loop: asyncio.AbstractEventLoop) -> None:
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    if not pending:
        return
    for task in pending:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    for task in pending:
        if not task.cancelled() and task.exception() is not None:
            loop.call_exception_handler(
                {
                    "message": "unhandled exception in a task left running by async_to_sync",
                    "exception": task.exception(),
                    "task": task,
                }
            )
