"""Settings of a project with nothing wrong in them (SQLite, no layers)."""

SECRET_KEY = "doctor-case-not-secret"
INSTALLED_APPS: list[str] = []
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
