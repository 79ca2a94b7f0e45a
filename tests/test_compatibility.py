"""Tests for telling ASGI 2 and ASGI 3 applications apart and adapting them."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from asgigreen.compatibility import (
    double_to_single_callable,
    guarantee_single_callable,
    is_double_callable,
)
from asgigreen.sync import markcoroutinefunction

# --- Sample applications -------------------------------------------------


async def asgi3_function(scope: Any, receive: Any, send: Any) -> None:
    await send({"scope": scope, "got": await receive()})


def asgi2_function(scope: Any) -> Any:
    async def instance(receive: Any, send: Any) -> None:
        await send({"scope": scope, "got": await receive()})

    return instance


class ASGI2Class:
    instances_made = 0

    def __init__(self, scope: Any) -> None:
        type(self).instances_made += 1
        self.scope = scope

    async def __call__(self, receive: Any, send: Any) -> None:
        await send({"scope": self.scope, "got": await receive()})


class ASGI3Middleware:
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.inner(scope, receive, send)


class ASGI2Router:
    """An instance whose plain ``__call__`` takes the scope (ASGI 2 style)."""

    def __call__(self, scope: Any) -> Any:
        return ASGI2Class(scope)


class Recorder:
    """A receive/send pair backed by lists, to drive apps without a server."""

    def __init__(self, *incoming: Any) -> None:
        self.incoming = list(incoming)
        self.sent: list[Any] = []

    async def receive(self) -> Any:
        return self.incoming.pop(0)

    async def send(self, message: Any) -> None:
        self.sent.append(message)


# --- is_double_callable ----------------------------------------------------


@pytest.mark.parametrize(
    "application",
    [asgi2_function, ASGI2Class, ASGI2Router()],
    ids=["function-returning-coroutine-function", "class", "instance-with-sync-call"],
)
def test_detects_asgi2(application: Any) -> None:
    assert is_double_callable(application) is True


@pytest.mark.parametrize(
    "application",
    [
        asgi3_function,
        ASGI3Middleware(asgi3_function),
        functools.partial(asgi3_function),
    ],
    ids=["coroutine-function", "instance-with-async-call", "partial"],
)
def test_detects_asgi3(application: Any) -> None:
    assert is_double_callable(application) is False


def test_function_marked_as_coroutine_function_counts_as_asgi3() -> None:
    def returns_a_coroutine(scope: Any, receive: Any, send: Any) -> Any:
        return asgi3_function(scope, receive, send)

    assert is_double_callable(returns_a_coroutine) is True
    assert is_double_callable(markcoroutinefunction(returns_a_coroutine)) is False


def test_explicit_hints_win_over_guessing() -> None:
    class FlaggedSingle(ASGI2Class):
        _asgi_single_callable = True

    async def flagged_double(scope: Any) -> None:
        pass

    flagged_double._asgi_double_callable = True  # type: ignore[attr-defined]

    assert is_double_callable(FlaggedSingle) is False
    assert is_double_callable(flagged_double) is True


def test_single_hint_beats_double_hint() -> None:
    class Confused:
        _asgi_single_callable = True
        _asgi_double_callable = True

    assert is_double_callable(Confused) is False


def test_false_hints_are_ignored() -> None:
    class NotReallySingle(ASGI2Class):
        _asgi_single_callable = False

    assert is_double_callable(NotReallySingle) is True


# --- double_to_single_callable / guarantee_single_callable -------------------


def test_wrapped_application_looks_single() -> None:
    wrapped = double_to_single_callable(asgi2_function)
    assert is_double_callable(wrapped) is False


@pytest.mark.asyncio
async def test_wrapped_application_forwards_scope_receive_and_send() -> None:
    wrapped = double_to_single_callable(asgi2_function)
    channel = Recorder({"type": "ping"})

    await wrapped({"type": "test"}, channel.receive, channel.send)

    assert channel.sent == [{"scope": {"type": "test"}, "got": {"type": "ping"}}]


@pytest.mark.asyncio
async def test_wrapped_class_is_instantiated_per_call() -> None:
    wrapped = double_to_single_callable(ASGI2Class)
    before = ASGI2Class.instances_made

    for number in range(3):
        channel = Recorder(number)
        await wrapped({"n": number}, channel.receive, channel.send)
        assert channel.sent == [{"scope": {"n": number}, "got": number}]

    assert ASGI2Class.instances_made == before + 3


@pytest.mark.asyncio
async def test_wrapped_application_propagates_errors() -> None:
    class Broken:
        def __init__(self, scope: Any) -> None:
            pass

        async def __call__(self, receive: Any, send: Any) -> None:
            raise LookupError("from the app")

    wrapped = double_to_single_callable(Broken)
    with pytest.raises(LookupError, match="from the app"):
        await wrapped({}, Recorder().receive, Recorder().send)


def test_guarantee_leaves_single_callables_untouched() -> None:
    middleware = ASGI3Middleware(asgi3_function)
    assert guarantee_single_callable(asgi3_function) is asgi3_function
    assert guarantee_single_callable(middleware) is middleware


@pytest.mark.asyncio
async def test_guarantee_wraps_double_callables() -> None:
    single = guarantee_single_callable(ASGI2Router())
    assert is_double_callable(single) is False

    channel = Recorder("hello")
    await single({"type": "x"}, channel.receive, channel.send)
    assert channel.sent == [{"scope": {"type": "x"}, "got": "hello"}]
