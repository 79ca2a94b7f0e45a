"""Running a coroutine to completion on an event loop, as ``asyncio.run`` does."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any


def run_to_completion(
    loop: asyncio.AbstractEventLoop, main: Callable[[], Coroutine[Any, Any, None]]
) -> None:
    """Run ``main()`` on ``loop``, then clean up after it as ``asyncio.run`` does.

    Tasks still pending are cancelled and awaited, async generators are
    finalised and the default executor is shut down; steps with nothing to
    do are skipped, as each costs a loop turn. The loop is left open.
    """
    try:
        loop.run_until_complete(main())
    finally:
        _cancel_pending(loop)
        if getattr(loop, "_asyncgens", True):
            loop.run_until_complete(loop.shutdown_asyncgens())
        if getattr(loop, "_default_executor", True) is not None:
            loop.run_until_complete(loop.shutdown_default_executor())


def run_on_fresh_loop(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """:func:`run_to_completion` on a new event loop, closed afterwards."""
    loop = asyncio.new_event_loop()
    try:
        run_to_completion(loop, main)
    finally:
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
