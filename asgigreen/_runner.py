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
        ran_again = False
        if getattr(loop, "_asyncgens", True):
            loop.run_until_complete(loop.shutdown_asyncgens())
            ran_again = True
        if getattr(loop, "_default_executor", True) is not None:
            loop.run_until_complete(loop.shutdown_default_executor())
            ran_again = True
        if ran_again:  # tasks may have been started meanwhile
            _cancel_pending(loop)


def run_on_fresh_loop(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """:func:`run_to_completion` on a new event loop, closed afterwards."""
    loop = asyncio.new_event_loop()
    try:
        run_to_completion(loop, main)
    finally:
        loop.close()


# Rounds of cancelling before a loop's leftovers are given up on: each
# round's tasks may have started others (an async_to_sync call arriving from a
# worker as the loop ends).
_CANCEL_ROUNDS = 10


def _cancel_pending(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel and await the loop's pending tasks, and those they leave behind.

    A handle still waiting in the loop's ready queue (a task being started
    from another worker) is run first, so that its task is cancelled too
    rather than dropped with its caller waiting on it for ever.
    """
    for _ in range(_CANCEL_ROUNDS):
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        if not pending:
            if not getattr(loop, "_ready", None):
                return
            loop.run_until_complete(asyncio.sleep(0))
            continue
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
