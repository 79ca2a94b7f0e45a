"""One sync-only and one async-only middleware.

Django adapts each to the handler's mode with asgiref's bridges, so a request
crosses sync_to_async/async_to_sync on its way in and out.
"""

from collections.abc import Awaitable, Callable

from django.http import HttpRequest, HttpResponse
from django.utils.decorators import async_only_middleware, sync_only_middleware


@sync_only_middleware
def sync_tag(
    get_response: Callable[[HttpRequest], HttpResponse],
) -> Callable[[HttpRequest], HttpResponse]:
    def middleware(request: HttpRequest) -> HttpResponse:
        response = get_response(request)
        response["X-Sync-Middleware"] = "1"
        return response

    return middleware


@async_only_middleware
def async_tag(
    get_response: Callable[[HttpRequest], Awaitable[HttpResponse]],
) -> Callable[[HttpRequest], Awaitable[HttpResponse]]:
    async def middleware(request: HttpRequest) -> HttpResponse:
        response = await get_response(request)
        response["X-Async-Middleware"] = "1"
        return response

    return middleware
