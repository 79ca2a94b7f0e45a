"""Sync views, as a gevent worker runs them: each on a greenlet of its own.

Some query PostgreSQL through the sync ORM, some call ``async_to_sync``
(Channels' in-memory layer, a plain async helper) and then the ORM again.
Failures are answered as JSON ``{"error": <exception name>}`` with status
500, so the tests can count what went wrong in the control run.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
from collections.abc import Callable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from djangoproject.notes.models import Note

from workerproject import control

View = Callable[[HttpRequest], dict[str, Any]]


def reporting(view: View) -> Callable[[HttpRequest], HttpResponse]:
    @functools.wraps(view)
    def respond(request: HttpRequest) -> HttpResponse:
        try:
            return JsonResponse(view(request))
        except Exception as exc:
            return JsonResponse({"error": type(exc).__name__, "message": str(exc)}, status=500)

    return respond


def _n(request: HttpRequest) -> int:
    return int(request.GET.get("n", "0"))


@reporting
def state(request: HttpRequest) -> dict[str, Any]:
    hub = None
    if "asgigreen.sync" in sys.modules:
        from asgigreen import hubs

        hub = hubs.get_hub().name
    return {
        "pid": os.getpid(),
        "control": control(),
        "asgiref_sync": getattr(sys.modules.get("asgiref.sync"), "__name__", None),
        "hub": hub,
        "driver": connection.Database.__name__,
    }


@reporting
def orm(request: HttpRequest) -> dict[str, Any]:
    n = _n(request)
    Note.objects.create(text=f"orm {n}", via="sync")
    with connection.cursor() as cursor:
        # Holds the view in flight a little, so requests overlap.
        cursor.execute("SELECT pg_sleep(0.02)")
    return {"n": n, "count": Note.objects.filter(via="sync").count()}


async def _roundtrip(n: int) -> int:
    layer = get_channel_layer()
    assert layer is not None
    channel = await layer.new_channel()
    group = f"client-{n}"
    await layer.group_add(group, channel)
    await layer.group_send(group, {"type": "ping", "n": n})
    message = await asyncio.wait_for(layer.receive(channel), 10)
    await layer.group_discard(group, channel)
    return int(message["n"])


@reporting
def group_send(request: HttpRequest) -> dict[str, Any]:
    n = _n(request)
    received = async_to_sync(_roundtrip)(n)
    # The sync ORM right after, in the same greenlet, and in its siblings.
    return {"n": received, "count": Note.objects.count()}


async def _double_later(n: int) -> int:
    await asyncio.sleep(0.05)
    return 2 * n


@reporting
def async_helper(request: HttpRequest) -> dict[str, Any]:
    n = _n(request)
    doubled = async_to_sync(_double_later)(n)
    return {"doubled": doubled, "count": Note.objects.count()}
