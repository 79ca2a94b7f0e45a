"""A one-file Django project for the keep-alive stress tests, on a SQLite file.

Served as WSGI (``stress_django_app:application``) by ``gunicorn -k gevent``
and by ``asgigreen serve``. ``python stress_django_app.py setup`` creates
the database (``STRESS_DJANGO_DB``) and :data:`USERS` users, read back by
the views, so every answer is known in advance:

* ``/orm?n=N``: a sync view, two ORM queries;
* ``/orm-async?n=N``: an async view doing the same with the async ORM
  (thread-sensitive ``sync_to_async`` inside Django, run for the view by
  ``async_to_sync`` in the request's worker).
"""

import asgigreen

asgigreen.patch_all()

import os  # noqa: E402
import sys  # noqa: E402

from django.conf import settings  # noqa: E402

USERS = 50

settings.configure(
    DEBUG=False,
    SECRET_KEY="asgigreen-stress-tests",
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[],
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth"],
    DATABASES={
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ["STRESS_DJANGO_DB"],
            "OPTIONS": {"timeout": 20},
            "CONN_MAX_AGE": 0,
        }
    },
    USE_TZ=True,
    DEFAULT_AUTO_FIELD="django.db.models.AutoField",
    LOGGING={
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"stderr": {"class": "logging.StreamHandler"}},
        "loggers": {"django.request": {"handlers": ["stderr"], "level": "ERROR"}},
    },
)

import django  # noqa: E402

django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpRequest, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402


def expected(n: int) -> dict[str, object]:
    """The body /orm and /orm-async answer for ``n``."""
    k = n % USERS
    return {"n": n, "user": f"user-{k}", "id": k + 1, "users": USERS}


def _failure(exc: Exception) -> JsonResponse:
    return JsonResponse({"error": type(exc).__name__, "message": str(exc)[:300]}, status=500)


def ping(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


def orm(request: HttpRequest) -> JsonResponse:
    n = int(request.GET["n"])
    try:
        user = User.objects.get(username=f"user-{n % USERS}")
        users = User.objects.count()
    except Exception as exc:
        return _failure(exc)
    return JsonResponse({"n": n, "user": user.username, "id": user.id, "users": users})


async def orm_async(request: HttpRequest) -> JsonResponse:
    n = int(request.GET["n"])
    try:
        user = await User.objects.aget(username=f"user-{n % USERS}")
        users = await User.objects.acount()
    except Exception as exc:
        return _failure(exc)
    return JsonResponse({"n": n, "user": user.username, "id": user.id, "users": users})


urlpatterns = [path("ping", ping), path("orm", orm), path("orm-async", orm_async)]

application = get_wsgi_application()


def setup() -> None:
    from django.core.management import call_command

    call_command("migrate", run_syncdb=True, verbosity=0, interactive=False)
    User.objects.all().delete()
    User.objects.bulk_create(User(id=k + 1, username=f"user-{k}") for k in range(USERS))


if __name__ == "__main__" and sys.argv[1:] == ["setup"]:
    setup()
