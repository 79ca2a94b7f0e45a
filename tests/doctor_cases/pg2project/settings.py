"""Settings of a project on PostgreSQL where only psycopg2 is installed."""

import sys

# This checkout has psycopg 3 too; hide it, so Django's PostgreSQL backend
# picks psycopg2 as it does where psycopg 3 is not installed.
sys.modules["psycopg"] = None  # type: ignore[assignment]

SECRET_KEY = "doctor-case-not-secret"
INSTALLED_APPS: list[str] = []
ROOT_URLCONF = "pg2project.urls"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": "127.0.0.1",
        "NAME": "never-connected",
    }
}
