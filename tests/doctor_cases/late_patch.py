"""Wrong import order: Django's database layer and psycopg before gevent patches.

Served with ``--hub threads`` (asgigreen serve does not patch then), the
module patches by itself, too late: ``patch.late``, ``early.django.db``,
``early.psycopg``, ``driver.psycopg`` (it picked its C wait function) and
``hub.threads-patched``. (Without settings, gevent's patching itself fails
here: it looks at every object made so far, Django's lazy settings too.)
"""

import os
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "plainproject.settings")

import django.db  # noqa: F401
import psycopg  # noqa: F401
from gevent import monkey

monkey.patch_all()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})
