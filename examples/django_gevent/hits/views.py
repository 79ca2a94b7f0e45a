"""Plain sync views, as a gevent worker runs them: one greenlet per request.

``hello`` mixes the sync ORM with ``async_to_sync`` (the way Channels'
``group_send`` or an async SDK gets called from sync code). On the real
asgiref in a gevent worker, concurrent requests here fail with
``SynchronousOnlyOperation`` or "You cannot use AsyncToSync in the same
thread as an async event loop"; on asgigreen they don't.
"""

from __future__ import annotations

import asyncio
import sys

from asgiref.sync import async_to_sync
from django.db.models import Count
from django.http import HttpRequest, JsonResponse

import asgigreen
from hits.models import Hit


async def greet(name: str) -> str:
    await asyncio.sleep(0.05)  # stands in for an async client call
    return f"hello, {name}"


def home(request: HttpRequest) -> JsonResponse:
    from asgigreen import hubs

    return JsonResponse(
        {
            "asgiref_is_asgigreen": getattr(sys.modules["asgiref"], "__asgigreen_alias__", False),
            "hub": hubs.get_hub().name,
            "hits": Hit.objects.count(),
        }
    )


def hello(request: HttpRequest) -> JsonResponse:
    name = request.GET.get("n", "world")
    greeting = async_to_sync(greet)(name)  # async code, from a sync view
    Hit.objects.create(name=name)  # the sync ORM, right after
    return JsonResponse({"greeting": greeting, "hits": Hit.objects.count()})


def _top_names() -> list[dict[str, object]]:
    return list(Hit.objects.values("name").annotate(n=Count("id")).order_by("-n")[:5])


def report(request: HttpRequest) -> JsonResponse:
    # With a driver that blocks in C (psycopg2 without psycogreen), a query on
    # the request's greenlet would stall every other request of the worker:
    # run the ORM block on a native thread instead. (Harmless on SQLite.)
    return JsonResponse({"top": asgigreen.run_in_real_thread(_top_names)})
