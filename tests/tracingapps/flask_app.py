"""A Flask app with an async view that crosses back into sync code, traced.

Flask runs ``async def`` views through asgiref's ``async_to_sync``, which is
asgigreen's here (``install_as_asgiref()`` comes first). ``app`` is the WSGI
application behind a ``request`` span (:mod:`tracingapps.requestspans`), with
Sentry's Flask integration. ``/async?who=NAME`` sets the name as a Sentry tag
and breadcrumb on the request's scope, then records spans and events in the
view and in sync work it awaits through ``sync_to_async`` (thread-sensitive,
not, and on a real thread).
"""

from __future__ import annotations

import asyncio
from typing import Any

import asgigreen

asgigreen.install_as_asgiref()

import sentry_sdk  # noqa: E402
from flask import Flask, jsonify, request  # noqa: E402
from sentry_sdk.integrations.flask import FlaskIntegration  # noqa: E402

from asgigreen import hubs  # noqa: E402
from asgigreen.sync import sync_to_async  # noqa: E402

from .recording import native_thread_id, start  # noqa: E402
from .requestspans import TraceWsgi  # noqa: E402

tracer = start([FlaskIntegration()])
flask_app = Flask(__name__)


def _span(name: str, who: str) -> Any:
    return tracer.start_as_current_span(name, attributes={"who": who, "thread": native_thread_id()})


def work(who: str, where: str) -> str:
    with _span(f"work {where}", who), sentry_sdk.start_span(op="work", name=f"work {where} {who}"):
        sentry_sdk.capture_message(f"work {where} {who}")
    return who


@flask_app.get("/async")
async def async_view() -> Any:
    who = request.args["who"]
    sentry_sdk.set_tag("who", who)
    sentry_sdk.add_breadcrumb(message=f"view {who}")
    with _span("async view", who):
        sentry_sdk.capture_message(f"async view {who}")
        await asyncio.sleep(0.05)  # concurrent requests interleave here
        values = [
            await sync_to_async(work)(who, "sensitive"),
            await sync_to_async(work, thread_sensitive=False)(who, "free"),
            await sync_to_async(work, real_thread=True)(who, "real thread"),
        ]
    return jsonify(who=who, values=values, hub=hubs.get_hub().name)


app = TraceWsgi(flask_app)
