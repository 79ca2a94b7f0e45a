"""Shared test configuration.

The suite runs in two modes: a plain process (threads hub) and a
gevent-monkeypatched process (``python -m gevent.monkey --module pytest``,
gevent hub). Each concern below lives in its own function.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# PostgreSQL and Redis servers for the gevent-worker tests.
from services import postgres, redis_server  # noqa: F401

from asgigreen import hubs

# -- hub mode markers -----------------------------------------------------------

# Marker name -> the hub a test carrying it needs.
_MODE_MARKERS = {"threads_only": "threads", "gevent_only": "gevent"}


def _skip_tests_for_other_hub(items: list[pytest.Item]) -> None:
    """Skip tests marked ``threads_only`` / ``gevent_only`` in the other mode."""
    running = hubs.get_hub().name
    for item in items:
        for marker, needed in _MODE_MARKERS.items():
            if needed != running and item.get_closest_marker(marker) is not None:
                how = (
                    "python -m gevent.monkey --module pytest"
                    if needed == "gevent"
                    else "python -m pytest"
                )
                item.add_marker(
                    pytest.mark.skip(
                        reason=f"{marker}: needs the {needed} hub, this run uses the "
                        f"{running} hub (run with `{how}`)"
                    )
                )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _skip_tests_for_other_hub(items)


# -- Django on SQLite -----------------------------------------------------------


@pytest.fixture(scope="session")
def django_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path | None]:
    """Django configured once per process with a SQLite file database.

    Installs ``django.contrib.contenttypes`` and ``django.contrib.auth`` and
    creates their tables, so tests can run real ORM queries. Yields the
    database path, or None if something else had configured Django already
    (its settings are then left alone).
    """
    django = pytest.importorskip("django")
    from django.conf import settings

    if settings.configured:
        yield None
        return
    path = tmp_path_factory.mktemp("django") / "db.sqlite3"
    settings.configure(
        DEBUG=False,
        SECRET_KEY="asgigreen-tests",
        USE_TZ=True,
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": os.fspath(path),
                "OPTIONS": {"timeout": 20},
            }
        },
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth"],
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
    )
    django.setup()
    from django.core.management import call_command
    from django.db import connections

    call_command("migrate", run_syncdb=True, verbosity=0, interactive=False)
    connections.close_all()
    yield path
