"""Tests for asgigreen.testing.ApplicationCommunicator."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import time
from typing import Any

import pytest

from asgigreen.testing import ApplicationCommunicator


class Boom(Exception):
    pass


async def echo_app(scope: Any, receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        await send({"echo": message, "path": scope["path"]})


async def silent_app(scope: Any, receive: Any, send: Any) -> None:
    await asyncio.Event().wait()


async def crash_on_first_message(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    raise Boom("application failed")


# --- basic exchange ----------------------------------------------------------


@pytest.mark.asyncio
async def test_messages_go_in_and_come_out() -> None:
    communicator = ApplicationCommunicator(echo_app, {"path": "/echo"})
    await communicator.send_input({"n": 1})
    await communicator.send_input({"n": 2})
    assert await communicator.receive_output() == {"echo": {"n": 1}, "path": "/echo"}
    assert await communicator.receive_output() == {"echo": {"n": 2}, "path": "/echo"}
    communicator.stop()


@pytest.mark.asyncio
async def test_asgi2_application_is_supported() -> None:
    class Legacy:
        def __init__(self, scope: Any) -> None:
            self.scope = scope

        async def __call__(self, receive: Any, send: Any) -> None:
            await send({"from": "legacy", "scope": self.scope, "got": await receive()})

    communicator = ApplicationCommunicator(Legacy, {"type": "test"})
    await communicator.send_input("hi")
    assert await communicator.receive_output() == {
        "from": "legacy",
        "scope": {"type": "test"},
        "got": "hi",
    }
    await communicator.wait()


@pytest.mark.asyncio
async def test_application_gets_the_scope_object_itself() -> None:
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)

    scope = {"type": "http"}
    communicator = ApplicationCommunicator(app, scope)
    await communicator.wait()
    assert seen == [scope]
    assert seen[0] is scope


def test_can_be_built_outside_an_event_loop() -> None:
    # Queues and the task bind to whichever loop first uses them.
    communicator = ApplicationCommunicator(echo_app, {"path": "/late"})

    async def use_it() -> Any:
        await communicator.send_input("x")
        reply = await communicator.receive_output()
        communicator.stop()
        return reply

    assert asyncio.run(use_it()) == {"echo": "x", "path": "/late"}


# --- receive_output ------------------------------------------------------------


@pytest.mark.asyncio
async def test_receive_output_times_out_and_cancels_the_application() -> None:
    cancelled = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    communicator = ApplicationCommunicator(app, {})
    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        await communicator.receive_output(timeout=0.05)
    assert time.monotonic() - started < 1
    assert cancelled.is_set()
    assert communicator.future.cancelled()


@pytest.mark.asyncio
async def test_receive_output_reports_the_application_error_not_a_timeout() -> None:
    communicator = ApplicationCommunicator(crash_on_first_message, {})
    await communicator.send_input({"type": "go"})
    with pytest.raises(Boom, match="application failed"):
        await communicator.receive_output(timeout=0.1)


@pytest.mark.asyncio
async def test_error_raised_while_cancelled_is_reported() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise Boom("cleanup went wrong") from None

    communicator = ApplicationCommunicator(app, {})
    with pytest.raises(Boom, match="cleanup went wrong"):
        await communicator.receive_output(timeout=0.02)


@pytest.mark.asyncio
async def test_receive_output_timeout_does_not_leave_caller_cancelling() -> None:
    task = asyncio.current_task()
    assert task is not None
    with pytest.raises(asyncio.TimeoutError):
        await ApplicationCommunicator(silent_app, {}).receive_output(timeout=0.01)
    # Our own task must carry on normally after a handled timeout.
    await asyncio.sleep(0.01)
    if hasattr(task, "cancelling"):
        assert task.cancelling() == 0


@pytest.mark.asyncio
async def test_send_input_raises_once_the_application_has_crashed() -> None:
    communicator = ApplicationCommunicator(crash_on_first_message, {})
    await communicator.send_input("first")
    await asyncio.wait({communicator.future})
    with pytest.raises(Boom):
        await communicator.send_input("second")


# --- receive_nothing -----------------------------------------------------------


@pytest.mark.asyncio
async def test_receive_nothing_true_when_silent() -> None:
    communicator = ApplicationCommunicator(silent_app, {})
    started = time.monotonic()
    assert await communicator.receive_nothing(timeout=0.05) is True
    assert time.monotonic() - started >= 0.05
    communicator.stop()


@pytest.mark.asyncio
async def test_receive_nothing_false_when_a_message_waits_and_keeps_it() -> None:
    communicator = ApplicationCommunicator(echo_app, {"path": "/"})
    await communicator.send_input("ping")
    assert await communicator.receive_nothing() is False
    # The message was only looked at, not consumed.
    assert await communicator.receive_output() == {"echo": "ping", "path": "/"}
    assert await communicator.receive_nothing(timeout=0.02) is True
    communicator.stop()


@pytest.mark.asyncio
async def test_receive_nothing_notices_a_late_message_early() -> None:
    async def late_app(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(0.05)
        await send("late")

    communicator = ApplicationCommunicator(late_app, {})
    started = time.monotonic()
    assert await communicator.receive_nothing(timeout=5, interval=0.01) is False
    assert time.monotonic() - started < 2
    assert await communicator.receive_output() == "late"


@pytest.mark.asyncio
async def test_receive_nothing_raises_application_error() -> None:
    communicator = ApplicationCommunicator(crash_on_first_message, {})
    await communicator.send_input("go")
    await asyncio.wait({communicator.future})
    with pytest.raises(Boom):
        await communicator.receive_nothing()


# --- wait and stop -------------------------------------------------------------


@pytest.mark.asyncio
async def test_wait_returns_when_the_application_finishes() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(await receive())

    communicator = ApplicationCommunicator(app, {})
    await communicator.send_input("bye")
    await communicator.wait(timeout=1)
    assert communicator.future.done()
    assert await communicator.receive_output() == "bye"


@pytest.mark.asyncio
async def test_wait_reraises_the_application_error() -> None:
    communicator = ApplicationCommunicator(crash_on_first_message, {})
    await communicator.send_input("go")
    with pytest.raises(Boom):
        await communicator.wait()


@pytest.mark.asyncio
async def test_wait_cancels_a_stuck_application_without_raising() -> None:
    communicator = ApplicationCommunicator(silent_app, {})
    started = time.monotonic()
    await communicator.wait(timeout=0.05)  # returns normally: no TimeoutError
    assert time.monotonic() - started < 1
    assert communicator.future.cancelled()


@pytest.mark.asyncio
async def test_wait_reports_error_raised_during_cancellation() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            raise Boom("during shutdown")

    communicator = ApplicationCommunicator(app, {})
    with pytest.raises(Boom, match="during shutdown"):
        await communicator.wait(timeout=0.02)


@pytest.mark.asyncio
async def test_cancelling_the_waiter_also_cancels_the_application() -> None:
    communicator = ApplicationCommunicator(silent_app, {})
    waiter = asyncio.ensure_future(communicator.wait(timeout=10))
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert communicator.future.cancelled()


@pytest.mark.asyncio
async def test_stop_cancels_a_running_application() -> None:
    communicator = ApplicationCommunicator(silent_app, {})
    await communicator.receive_nothing(timeout=0.01)
    communicator.stop()
    await asyncio.wait({communicator.future})
    assert communicator.future.cancelled()


def test_stop_before_start_does_nothing() -> None:
    communicator = ApplicationCommunicator(silent_app, {})
    communicator.stop()
    assert communicator._future is None


@pytest.mark.asyncio
async def test_stop_reraises_unless_told_not_to() -> None:
    communicator = ApplicationCommunicator(crash_on_first_message, {})
    await communicator.send_input("go")
    await asyncio.wait({communicator.future})
    communicator.stop(exceptions=False)
    with pytest.raises(Boom):
        communicator.stop()


@pytest.mark.asyncio
async def test_garbage_collection_cancels_the_application() -> None:
    tasks: list[asyncio.Task[Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.append(task)
        await asyncio.Event().wait()

    communicator = ApplicationCommunicator(app, {})
    await communicator.receive_nothing(timeout=0.01)
    del communicator
    gc.collect()
    await asyncio.sleep(0.01)
    assert tasks[0].cancelled()


# --- context variables -----------------------------------------------------------

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")


@pytest.mark.asyncio
async def test_application_starts_with_a_clean_context() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(request_id.get("unset"))
        request_id.set("set by the app")
        await send(request_id.get())

    token = request_id.set("set by the test")
    try:
        communicator = ApplicationCommunicator(app, {})
        assert await communicator.receive_output() == "unset"
        assert await communicator.receive_output() == "set by the app"
        # Nor does the application's value leak back into the test.
        assert request_id.get() == "set by the test"
    finally:
        request_id.reset(token)
