"""Accept both ASGI 2 ("double callable") and ASGI 3 ("single callable") apps.

ASGI 2 applications are called twice: ``app(scope)`` builds an instance, and
``await instance(receive, send)`` runs it. ASGI 3 applications are one
coroutine function, ``await app(scope, receive, send)``. Servers and test
harnesses call :func:`guarantee_single_callable` once and then only deal with
the ASGI 3 style.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias, cast

from .sync import iscoroutinefunction

__all__ = ["double_to_single_callable", "guarantee_single_callable", "is_double_callable"]

# Deliberately loose: callers pass plain dicts as scopes and all sorts of
# callables as apps, and asgiref (untyped) accepts all of them.
SingleCallable: TypeAlias = Callable[[Any, Any, Any], Awaitable[Any]]


def is_double_callable(application: Any) -> bool:
    """Tell whether ``application`` is an ASGI 2 (double callable) application.

    The answer comes, in order of preference, from:

    * an explicit ``_asgi_single_callable`` / ``_asgi_double_callable``
      attribute set to a true value (frameworks use these when guessing fails);
    * the object being a class: instantiating it with the scope is ASGI 2;
    * whether calling it (or its ``__call__``) gives a coroutine straight away,
      which is ASGI 3.
    """
    if getattr(application, "_asgi_single_callable", False):
        return False
    if getattr(application, "_asgi_double_callable", False):
        return True
    if inspect.isclass(application):
        return True
    # An instance with an ``async def __call__`` is ASGI 3. A plain
    # ``def __call__`` proves nothing yet: the object itself may still be
    # marked as a coroutine function, which the final check catches.
    if callable(application) and iscoroutinefunction(application.__call__):
        return False
    return not iscoroutinefunction(application)


def double_to_single_callable(application: Any) -> SingleCallable:
    """Wrap an ASGI 2 application so it can be called the ASGI 3 way."""

    async def single_callable(scope: Any, receive: Any, send: Any) -> Any:
        instance = application(scope)
        return await instance(receive, send)

    return single_callable


def guarantee_single_callable(application: Any) -> SingleCallable:
    """Return ``application`` in ASGI 3 form, wrapping it only if it is ASGI 2."""
    if is_double_callable(application):
        return double_to_single_callable(application)
    return cast(SingleCallable, application)
