"""Settings for the small Django project the integration tests run.

The SQLite file comes from ``DJANGO_TEST_DB`` so each test run gets its own.
"""

import os

SECRET_KEY = "asgigreen-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]

INSTALLED_APPS = ["djangoproject.notes"]

MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",
    "djangoproject.middleware.sync_tag",
    "djangoproject.middleware.async_tag",
]

ROOT_URLCONF = "djangoproject.urls"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJANGO_TEST_DB", ":memory:"),
        "OPTIONS": {"timeout": 20},
    }
}

USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Errors while handling a request go to stderr, where the tests look for them.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"django.request": {"handlers": ["stderr"], "level": "ERROR"}},
}
