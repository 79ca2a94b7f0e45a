"""asyncio's per-thread state, kept per greenlet (asgigreen.hubs._asyncio_state).

Each test runs two event loops in two greenlets of one OS thread, switching
between them in the middle of a task step, the way the gevent hub's direct
switches do, and checks that each greenlet sees only its own state.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from asgigreen import hubs

pytestmark = [pytest.mark.gevent_only, pytest.mark.timeout(30)]

greenlet_module = pytest.importorskip("greenlet")


@pytest.fixture(autouse=True)
def _hub_active() -> None:
    # The gevent hub installs the tracer when it becomes the process's hub.
    assert hubs.get_hub().name == "gevent"


def _run_in_other_greenlet(body: Callable[[], Any]) -> Any:
    """Run ``body`` on a new raw greenlet, switched to directly from here."""
    return greenlet_module.greenlet(body).switch()


def test_a_greenlet_switched_to_from_a_task_sees_no_loop_and_no_task() -> None:
    seen: dict[str, Any] = {}

    def other() -> None:
        seen["loop"] = asyncio.events._get_running_loop()
        try:
            asyncio.current_task()
        except RuntimeError:
            seen["task"] = "no running loop"

    async def main() -> None:
        me = asyncio.current_task()
        _run_in_other_greenlet(other)
        seen["back"] = asyncio.current_task() is me

    asyncio.run(main())
    assert seen == {"loop": None, "task": "no running loop", "back": True}


def test_each_greenlet_runs_its_own_task_on_one_os_thread() -> None:
    # On 3.14+ the running task is kept per OS thread: without the tracer
    # the inner loop's task could not start ("Cannot enter into task ...
    # while another task ... is being executed").
    seen: dict[str, Any] = {}

    def other() -> int:
        async def inner() -> int:
            seen["inner_task"] = asyncio.current_task()
            await asyncio.sleep(0)
            return 7

        return asyncio.run(inner())

    async def outer() -> None:
        me = asyncio.current_task()
        seen["result"] = _run_in_other_greenlet(other)
        seen["same_task_after"] = asyncio.current_task() is me
        await asyncio.sleep(0)

    asyncio.run(outer())
    assert seen["result"] == 7
    assert seen["inner_task"] is not None
    assert seen["same_task_after"] is True


def test_loops_interleaved_in_two_greenlets_keep_their_tasks() -> None:
    # Greenlet A's task switches to B; B's task switches back to A while B's
    # loop runs; A finishes its step and later resumes B. Both loops are
    # inside a task step at every switch.
    parent = greenlet_module.getcurrent()
    log: list[tuple[str, bool]] = []
    holder: dict[str, Any] = {}

    def in_b() -> None:
        async def b_main() -> None:
            me = asyncio.current_task()
            parent.switch("b-parked")
            log.append(("b resumed in its task", asyncio.current_task() is me))

        asyncio.run(b_main())

    async def a_main() -> None:
        me = asyncio.current_task()
        b = greenlet_module.greenlet(in_b)
        holder["b"] = b
        assert b.switch() == "b-parked"
        log.append(("a back in its task", asyncio.current_task() is me))
        await asyncio.sleep(0)
        log.append(("a after a loop pass", asyncio.current_task() is me))
        b.switch()
        log.append(("a after b finished", asyncio.current_task() is me))

    asyncio.run(a_main())
    assert log == [
        ("a back in its task", True),
        ("a after a loop pass", True),
        ("b resumed in its task", True),
        ("a after b finished", True),
    ]
    assert holder["b"].dead


def test_async_generators_are_registered_with_the_loop_of_their_greenlet() -> None:
    # run_forever installs its loop's async generator hooks for the whole OS
    # thread: without per-greenlet hooks a generator first iterated in A
    # while B's loop runs would be registered with B's loop.
    parent = greenlet_module.getcurrent()
    loops: dict[str, asyncio.AbstractEventLoop] = {}

    async def ticks() -> AsyncIterator[int]:
        yield 1
        yield 2

    def in_b() -> None:
        async def b_main() -> None:
            loops["b"] = asyncio.get_running_loop()
            parent.switch()

        asyncio.run(b_main())

    async def a_main() -> None:
        loops["a"] = asyncio.get_running_loop()
        b = greenlet_module.greenlet(in_b)
        b.switch()  # B parks with its loop running
        gen = ticks()
        assert await gen.__anext__() == 1
        in_a = gen in loops["a"]._asyncgens  # type: ignore[attr-defined]
        in_b_loop = gen in loops["b"]._asyncgens  # type: ignore[attr-defined]
        await gen.aclose()
        b.switch()
        assert (in_a, in_b_loop) == (True, False)

    asyncio.run(a_main())
    assert sys.get_asyncgen_hooks() == (None, None)


def test_debug_mode_origin_tracking_stays_with_its_loop() -> None:
    parent = greenlet_module.getcurrent()
    depths: dict[str, int] = {}

    def in_b() -> None:
        async def b_main() -> None:
            depths["b_inside"] = sys.get_coroutine_origin_tracking_depth()
            parent.switch()

        asyncio.run(b_main(), debug=True)

    async def a_main() -> None:
        b = greenlet_module.greenlet(in_b)
        b.switch()
        depths["a_while_b_runs"] = sys.get_coroutine_origin_tracking_depth()
        b.switch()

    asyncio.run(a_main())
    assert depths["b_inside"] > 0
    assert depths["a_while_b_runs"] == 0


def test_nothing_stays_parked_once_the_loops_end() -> None:
    from asgigreen.hubs import _asyncio_state

    # Loops that earlier tests left serving (AsgiToWsgi's) stay parked.
    before = _asyncio_state.parked_count()
    test_loops_interleaved_in_two_greenlets_keep_their_tasks()
    test_async_generators_are_registered_with_the_loop_of_their_greenlet()
    assert _asyncio_state.parked_count() == before
