"""A Django project in one module: views that cross both bridges while traced.

``asgi_application`` and ``wsgi_application`` are Django's handlers behind a
``request`` span (:mod:`tracingapps.requestspans`), with Sentry's Django
integration; ``asgi_through_wsgi`` is the ASGI handler in
:class:`~asgigreen.asgi_to_wsgi.AsgiToWsgi`, the span around it. Each view
takes ``?who=NAME``, sets it as a Sentry tag and breadcrumb on the request's
scope, and records spans and events in every place its work runs:

* ``/sync/``: a sync view calling async code through ``async_to_sync``,
  which comes back through ``sync_to_async`` (thread-sensitive and not) and
  ``run_in_real_thread``;
* ``/async/``: an async view calling the database through ``sync_to_async``
  (thread-sensitive, not, and on a real thread).
"""

from __future__ import annotations

import asyncio
from typing import Any

import asgigreen

asgigreen.install_as_asgiref()

import django  # noqa: E402
from django.conf import settings  # noqa: E402

settings.configure(
    DEBUG=False,
    SECRET_KEY="asgigreen-tracing-tests",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    INSTALLED_APPS=[],
    MIDDLEWARE=[],
    USE_TZ=True,
)
django.setup()

import sentry_sdk  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.db import connection  # noqa: E402
from django.http import HttpRequest, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402
from sentry_sdk.integrations.django import DjangoIntegration  # noqa: E402

from asgigreen import hubs  # noqa: E402
from asgigreen.asgi_to_wsgi import AsgiToWsgi  # noqa: E402
from asgigreen.realthread import run_in_real_thread  # noqa: E402
from asgigreen.sync import async_to_sync, sync_to_async  # noqa: E402

from .recording import native_thread_id, start  # noqa: E402
from .requestspans import TraceAsgi, TraceWsgi  # noqa: E402

tracer = start([DjangoIntegration()])


def _span(name: str, who: str) -> Any:
    return tracer.start_as_current_span(name, attributes={"who": who, "thread": native_thread_id()})


def _mark_request(request: HttpRequest) -> str:
    """The request's label, put on its Sentry scope."""
    who = request.GET["who"]
    sentry_sdk.set_tag("who", who)
    sentry_sdk.add_breadcrumb(message=f"view {who}")
    return who


def query(who: str, where: str) -> str:
    """A real database round trip, inside an OTel span and a Sentry span."""
    with (
        _span(f"query {where}", who),
        sentry_sdk.start_span(op="work", name=f"query {where} {who}"),
    ):
        with connection.cursor() as cursor:
            cursor.execute("SELECT %s", [who])
            (value,) = cursor.fetchone()
        sentry_sdk.capture_message(f"query {where} {who}")
    return f"{value}"


async def async_part(who: str) -> list[str]:
    with _span("async part", who), sentry_sdk.start_span(op="work", name=f"async part {who}"):
        sentry_sdk.capture_message(f"async part {who}")
        await asyncio.sleep(0.05)  # concurrent requests interleave here
        return [
            await sync_to_async(query)(who, "sensitive"),
            await sync_to_async(query, thread_sensitive=False)(who, "free"),
        ]


def sync_view(request: HttpRequest) -> JsonResponse:
    who = _mark_request(request)
    with _span("sync view", who):
        values = async_to_sync(async_part)(who)
        values.append(run_in_real_thread(query, who, "real thread"))
    return JsonResponse({"who": who, "values": values, "hub": hubs.get_hub().name})


async def async_view(request: HttpRequest) -> JsonResponse:
    who = _mark_request(request)
    with _span("async view", who):
        sentry_sdk.capture_message(f"async view {who}")
        await asyncio.sleep(0.05)
        values = [
            await sync_to_async(query)(who, "sensitive"),
            await sync_to_async(query, thread_sensitive=False)(who, "free"),
            await sync_to_async(query, real_thread=True)(who, "real thread"),
        ]
    return JsonResponse({"who": who, "values": values, "hub": hubs.get_hub().name})


urlpatterns = [path("sync/", sync_view), path("async/", async_view)]

asgi_application = TraceAsgi(get_asgi_application())
wsgi_application = TraceWsgi(get_wsgi_application())
# The ASGI handler under a WSGI server; Django refuses lifespan, so none.
asgi_through_wsgi = TraceWsgi(AsgiToWsgi(get_asgi_application(), lifespan="off"))
