"""Views covering both handler paths: sync and async views, ORM in both."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

from asgiref.sync import sync_to_async
from django.core.exceptions import SynchronousOnlyOperation
from django.http import HttpRequest, HttpResponse, JsonResponse

from djangoproject.checks import alias_state
from djangoproject.notes.models import Note

_inflight = 0
_max_inflight = 0
_inflight_lock = threading.Lock()


def _on_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _text(request: HttpRequest) -> str:
    return str(json.loads(request.body)["text"])


def notes(request: HttpRequest) -> HttpResponse:
    """Sync view: POST adds a note, GET lists them; the ORM runs right here."""
    on_loop = _on_running_loop()  # must be False: sync code never sees a loop
    if request.method == "POST":
        note = Note.objects.create(text=_text(request), via="sync")
        return JsonResponse({"id": note.pk, "on_loop": on_loop}, status=201)
    texts = list(Note.objects.values_list("text", flat=True))
    return JsonResponse({"texts": texts, "on_loop": on_loop})


def _count_sync() -> int:
    return Note.objects.count()


async def async_notes(request: HttpRequest) -> HttpResponse:
    """Async view: the async ORM API, sync_to_async, and Django's async-safety guard."""
    on_loop = _on_running_loop()  # must be True
    try:
        Note.objects.count()  # sync ORM on the loop: Django must refuse
        guarded = False
    except SynchronousOnlyOperation:
        guarded = True
    body: dict[str, Any] = {"on_loop": on_loop, "guarded": guarded}
    if request.method == "POST":
        note = await Note.objects.acreate(text=_text(request), via="async")
        body["id"] = note.pk
        body["count"] = await sync_to_async(_count_sync)()
        return JsonResponse(body, status=201)
    body["texts"] = [note.text async for note in Note.objects.all()]
    body["count"] = await Note.objects.acount()
    return JsonResponse(body)


async def async_sleep(request: HttpRequest) -> HttpResponse:
    """Async view that sleeps, recording how many ran at once."""
    global _inflight, _max_inflight
    with _inflight_lock:
        _inflight += 1
        _max_inflight = max(_max_inflight, _inflight)
    try:
        await asyncio.sleep(float(request.GET.get("delay", "0.2")))
    finally:
        with _inflight_lock:
            _inflight -= 1
    return JsonResponse({"on_loop": _on_running_loop()})


def state(request: HttpRequest) -> HttpResponse:
    """The process's aliasing state, plus the async_sleep high-water mark."""
    return JsonResponse({**alias_state(), "max_inflight": _max_inflight})
