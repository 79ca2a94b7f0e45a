"""A Celery app for ``celery -A workerproject.tasks worker -P gevent``.

The way a project adopts asgigreen with Celery: ``patch_all()`` as the first
lines of the module named by ``-A``. Celery's ``-P gevent`` has patched by
the time this module is imported; patch_all() adds the asgiref alias and the
gevent hub before Django is imported (Celery's Django fixup sets Django up
when the worker starts).
"""

from workerproject import control

if not control():
    import asgigreen

    asgigreen.patch_all()

import asyncio
import os
import time
from typing import Any

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "workerproject.settings")

app = Celery(
    "workerproject",
    broker=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"),
    backend=os.environ.get("CELERY_RESULT_BACKEND", "redis://127.0.0.1:6379/0"),
)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


async def _double_later(n: int) -> int:
    await asyncio.sleep(0.05)
    return 2 * n


@app.task(name="workerproject.orm_and_async")
def orm_and_async(n: int) -> dict[str, Any]:
    """ORM, then async_to_sync, then ORM again; failures come back by name."""
    from asgiref.sync import async_to_sync
    from django.db import connection
    from djangoproject.notes.models import Note

    began = time.time()
    try:
        Note.objects.create(text=f"task {n}", via="celery")
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(0.02)")
        doubled = async_to_sync(_double_later)(n)
        count = Note.objects.filter(via="celery").count()
    except Exception as exc:
        return {"n": n, "error": type(exc).__name__, "message": str(exc)}
    return {"n": n, "doubled": doubled, "count": count, "began": began, "ended": time.time()}
