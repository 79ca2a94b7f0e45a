"""asgigreen.local.Local: which code sees a value, and when it goes away.

Default Locals follow the context across the bridges (both ways, changes
included) and are private to a worker in sync code. Thread-critical Locals
are private to a worker and never cross a bridge. Both modes.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import threading
import weakref
from collections.abc import Callable
from typing import Any

import pytest

from asgigreen import hubs
from asgigreen.local import Local
from asgigreen.sync import async_to_sync, sync_to_async

pytestmark = pytest.mark.timeout(30)

both_kinds = pytest.mark.parametrize(
    "thread_critical", [False, True], ids=["default", "thread_critical"]
)


def worker_id() -> int:
    return hubs.get_hub().worker_id()


def read(local: Any, name: str = "value") -> Any:
    return getattr(local, name, "<unset>")


def in_new_thread(func: Callable[[], Any]) -> Any:
    """``func()`` on a new thread (a greenlet under gevent), and its result."""
    outcome: list[Any] = []
    thread = threading.Thread(target=lambda: outcome.append(func()))
    thread.start()
    thread.join(10)
    assert outcome, "the thread did not finish"
    return outcome[0]


def isolated(func: Callable[[], Any]) -> Any:
    """Run sync test code in a context of its own, so no value leaks out."""
    return contextvars.Context().run(func)


# -- plain attribute behaviour ----------------------------------------------------


@both_kinds
def test_set_get_and_delete(thread_critical: bool) -> None:
    def body() -> None:
        local = Local(thread_critical=thread_critical)
        local.colour = "green"
        assert local.colour == "green"
        local.colour = "blue"
        assert local.colour == "blue"
        del local.colour
        with pytest.raises(AttributeError):
            local.colour  # noqa: B018
        with pytest.raises(AttributeError):
            del local.colour
        assert not hasattr(local, "never_set")

    isolated(body)


@both_kinds
def test_separate_locals_do_not_share_values(thread_critical: bool) -> None:
    def body() -> None:
        first = Local(thread_critical=thread_critical)
        second = Local(thread_critical=thread_critical)
        first.value = 1
        second.value = 2
        assert (first.value, second.value) == (1, 2)

    isolated(body)


@both_kinds
def test_reserved_names_and_subclassing_are_refused(thread_critical: bool) -> None:
    local = Local(thread_critical=thread_critical)
    with pytest.raises(AttributeError, match="reserved"):
        local._storage = "x"
    with pytest.raises(AttributeError, match="reserved"):
        local._per_worker = "x"
    assert isinstance(local, Local)
    with pytest.raises(TypeError, match="cannot be subclassed"):

        class Mine(Local):
            pass

        Mine()


# -- sync code: one namespace per worker --------------------------------------------


@both_kinds
def test_sync_value_is_private_to_its_worker(thread_critical: bool) -> None:
    def body() -> None:
        local = Local(thread_critical=thread_critical)
        local.value = "main"

        def other() -> tuple[Any, Any]:
            before = read(local)
            local.value = "other"
            return before, read(local)

        assert in_new_thread(other) == ("<unset>", "other")
        assert local.value == "main"

    isolated(body)


def test_copied_context_does_not_carry_a_default_local_to_another_worker() -> None:
    # A context variable can reach another worker by a copied context; the
    # Local's value must still stay with the worker that set it.
    def body() -> None:
        local = Local()
        local.value = "main"
        copied = contextvars.copy_context()
        assert copied.run(read, local) == "main"
        assert in_new_thread(lambda: copied.run(read, local)) == "<unset>"

    isolated(body)


def test_concurrent_sync_callers_each_see_their_own_value() -> None:
    local = Local()  # a default Local carries the value to the coroutine
    critical = Local(thread_critical=True)  # stays with each caller

    async def echo() -> Any:
        await asyncio.sleep(0.01)
        return read(local)

    results: dict[int, Any] = {}

    def caller(n: int) -> None:
        local.value = n
        critical.value = -n
        results[n] = (async_to_sync(echo)(), critical.value)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == {n: (n, -n) for n in range(10)}


# -- default Local across the bridges -------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("thread_sensitive", [True, False])
async def test_default_local_crosses_into_sync_code_and_changes_come_back(
    thread_sensitive: bool,
) -> None:
    local = Local()
    local.value = "from async"

    def read_and_change() -> Any:
        seen = read(local)
        local.value = "from sync"
        local.added = "new"
        return seen

    seen = await sync_to_async(read_and_change, thread_sensitive=thread_sensitive)()
    assert seen == "from async"
    assert local.value == "from sync"
    assert local.added == "new"


@pytest.mark.asyncio
async def test_default_local_deletion_in_sync_code_comes_back() -> None:
    local = Local()
    local.value = "doomed"
    local.kept = "kept"

    def delete() -> None:
        del local.value

    await sync_to_async(delete)()
    assert read(local) == "<unset>"
    assert local.kept == "kept"


def test_default_local_crosses_into_async_code_and_changes_come_back() -> None:
    def body() -> tuple[Any, Any]:
        local = Local()
        local.value = "from sync"

        async def read_and_change() -> Any:
            seen = read(local)
            await asyncio.sleep(0)
            local.value = "from async"
            return seen

        seen = async_to_sync(read_and_change)()
        return seen, local.value

    assert isolated(body) == ("from sync", "from async")


def test_default_local_round_trip_through_nested_bridges() -> None:
    def body() -> Any:
        local = Local()
        local.trail = "sync"

        def deepest() -> None:
            local.trail += " > deepest sync"

        async def middle() -> None:
            local.trail += " > async"
            await sync_to_async(deepest)()
            local.trail += " > async again"

        async_to_sync(middle)()
        return local.trail

    assert isolated(body) == "sync > async > deepest sync > async again"


@pytest.mark.asyncio
async def test_default_local_is_copied_into_tasks_and_not_back() -> None:
    local = Local()
    local.value = "parent"

    async def child(name: str) -> Any:
        seen = read(local)
        local.value = name
        await asyncio.sleep(0.01)
        return seen, local.value

    results = await asyncio.gather(child("one"), child("two"))
    assert results == [("parent", "one"), ("parent", "two")]
    assert local.value == "parent"


# -- thread-critical Local ----------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("thread_sensitive", [True, False])
async def test_thread_critical_value_stays_out_of_sync_code(thread_sensitive: bool) -> None:
    local = Local(thread_critical=True)
    local.value = "async"

    def read_and_change() -> Any:
        seen = read(local)
        local.value = "sync"
        return seen

    seen = await sync_to_async(read_and_change, thread_sensitive=thread_sensitive)()
    assert seen == "<unset>"
    assert local.value == "async"


def test_thread_critical_value_stays_out_of_async_code() -> None:
    local = Local(thread_critical=True)
    local.value = "sync"

    async def read_and_change() -> Any:
        seen = read(local)
        local.value = "async"
        return seen

    try:
        assert async_to_sync(read_and_change)() == "<unset>"
        assert local.value == "sync"
    finally:
        del local.value


def test_thread_critical_value_is_seen_by_work_sent_back_to_the_same_worker() -> None:
    # The blocked sync caller runs the coroutine's thread-sensitive calls
    # itself, so they see its thread-critical values, as on one thread.
    local = Local(thread_critical=True)
    local.value = "caller"

    def nested() -> tuple[Any, int]:
        return read(local), worker_id()

    async def main() -> tuple[Any, Any]:
        return read(local), await sync_to_async(nested)()

    try:
        in_async, (in_nested, nested_worker) = async_to_sync(main)()
        assert in_async == "<unset>"
        assert (in_nested, nested_worker) == ("caller", worker_id())
    finally:
        del local.value


@pytest.mark.asyncio
async def test_thread_critical_in_async_code_is_scoped_like_a_context_variable() -> None:
    local = Local(thread_critical=True)
    local.value = "parent"

    async def child(name: str) -> Any:
        seen = read(local)
        local.value = name
        await asyncio.sleep(0.01)
        return seen, local.value

    results = await asyncio.gather(child("one"), child("two"))
    assert results == [("parent", "one"), ("parent", "two")]
    assert local.value == "parent"


# -- lifetime -------------------------------------------------------------------------


class Payload:
    pass


@both_kinds
def test_value_set_on_a_worker_is_freed_when_the_worker_ends(thread_critical: bool) -> None:
    local = Local(thread_critical=thread_critical)
    refs: list[weakref.ref[Payload]] = []

    def store() -> bool:
        payload = Payload()
        refs.append(weakref.ref(payload))
        local.value = payload
        return read(local) is payload

    assert in_new_thread(store) is True
    if hubs.get_hub().name == "gevent":
        # A gevent thread is a Greenlet, and its values go with the Greenlet
        # object, as gevent.local's (and so asgiref's, patched) do. gevent
        # holds a finished Greenlet until the hub has run its link callbacks;
        # from 3.13 on, join() returns before that, so give the hub its turn.
        import gevent

        gevent.sleep(0)
    for _ in range(3):
        gc.collect()
    assert refs[0]() is None
    assert read(local) == "<unset>"
