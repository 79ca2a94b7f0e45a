"""Django settings for the gevent-worker tests: PostgreSQL from the PG* variables.

``WORKER_PG_DRIVER=psycopg2`` makes Django use psycopg2 although psycopg 3
is installed (Django prefers psycopg 3 when it can import it).
"""

import os
import sys

if os.environ.get("WORKER_PG_DRIVER") == "psycopg2":
    # A None entry makes `import psycopg` fail, so Django falls back to psycopg2.
    sys.modules["psycopg"] = None  # type: ignore[assignment]

SECRET_KEY = "asgigreen-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
INSTALLED_APPS = ["djangoproject.notes"]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "workerproject.urls"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": os.environ.get("PGHOST", "127.0.0.1"),
        "PORT": os.environ.get("PGPORT", "5432"),
        "USER": os.environ.get("PGUSER", "postgres"),
        "NAME": os.environ.get("PGDATABASE", "postgres"),
        # Closed at the end of each request or task: a gevent worker has one
        # connection per busy greenlet, and they must not pile up.
        "CONN_MAX_AGE": 0,
    }
}

CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"django.request": {"handlers": ["stderr"], "level": "ERROR"}},
}
