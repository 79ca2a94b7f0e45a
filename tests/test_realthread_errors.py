"""run_in_real_thread / in_real_thread called from async code (both modes).

They are for sync code. Called where an event loop is running they would
block the loop (threads hub) or fail deep inside AsyncToSync (gevent hub):
either way the caller must get one clear error, naming the function it
passed and the async spelling to use instead, before anything runs.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import asgigreen
from asgigreen.sync import sync_to_async

pytestmark = pytest.mark.timeout(60)


def load_rows(shelf: int, calls: list[int]) -> list[int]:
    calls.append(shelf)
    return [shelf] * 3


def _threads() -> set[int]:
    return {thread.ident or 0 for thread in threading.enumerate()}


def test_run_in_real_thread_from_async_code_names_the_function_and_the_fix() -> None:
    calls: list[int] = []

    async def view() -> dict[str, Any]:
        threads_before = _threads()
        tasks_before = len(asyncio.all_tasks())
        with pytest.raises(RuntimeError) as raised:
            asgigreen.run_in_real_thread(load_rows, 3, calls)
        # Nothing was scheduled: no task, no new thread, the function never ran.
        await asyncio.sleep(0.05)
        return {
            "message": str(raised.value),
            "new_tasks": len(asyncio.all_tasks()) - tasks_before,
            "new_threads": len(_threads() - threads_before),
        }

    outcome = asyncio.run(view())
    print(f"\nrun_in_real_thread from async code: {outcome['message']}")
    message = outcome["message"]
    assert "run_in_real_thread(load_rows)" in message
    assert "async code" in message
    assert "await sync_to_async(load_rows, real_thread=True)()" in message
    assert "AsyncToSync" not in message
    assert calls == []
    assert (outcome["new_tasks"], outcome["new_threads"]) == (0, 0)


def test_in_real_thread_decorated_call_from_async_code_names_the_function_and_the_fix() -> None:
    calls: list[int] = []

    @asgigreen.in_real_thread(thread_sensitive=False)
    def fetch_page(number: int) -> int:
        calls.append(number)
        return number

    sensitive = asgigreen.in_real_thread(load_rows)

    async def view() -> tuple[str, str]:
        with pytest.raises(RuntimeError) as pooled:
            fetch_page(7)
        with pytest.raises(RuntimeError) as default:
            sensitive(1, calls)
        return str(pooled.value), str(default.value)

    pooled, default = asyncio.run(view())
    print(f"\nin_real_thread(thread_sensitive=False) from async code: {pooled}")
    assert "in_real_thread(" in pooled and "<locals>.fetch_page)" in pooled
    assert "await sync_to_async(fetch_page, thread_sensitive=False, real_thread=True)()" in pooled
    assert "in_real_thread(load_rows)" in default
    assert "await sync_to_async(load_rows, real_thread=True)()" in default
    assert calls == []


def test_sync_code_under_an_async_caller_still_runs_in_a_real_thread() -> None:
    """The check looks at the calling thread or greenlet: sync_to_async's sync side passes."""
    calls: list[int] = []

    async def view() -> list[int]:
        return await sync_to_async(lambda: asgigreen.run_in_real_thread(load_rows, 5, calls))()

    assert asyncio.run(view()) == [5, 5, 5]
    assert calls == [5]
    # And with no loop at all, as before.
    assert asgigreen.run_in_real_thread(load_rows, 6, calls) == [6, 6, 6]
