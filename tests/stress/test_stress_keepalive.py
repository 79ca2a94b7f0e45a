"""Keep-alive load through Flask, Django and a plain ASGI app, every answer checked.

50 keep-alive clients x 40 requests (2000) per case, each request with its
own ``n`` and an answer known in advance (status 200 and the exact JSON
body). Servers, all on 127.0.0.1 and stopped in the end:

* ``gunicorn -k gevent`` (1 worker, 1000 connections), apps calling
  ``asgigreen.patch_all()`` at the top: Flask sync and async views (the
  async one awaits a thread-sensitive ``sync_to_async``), Django sync and
  async views using the ORM on a SQLite file;
* ``asgigreen serve``: the same WSGI apps, and an ASGI app making bridge
  calls (``stress_asgi_app.py``).

The servers patch themselves, so these run once, in the plain pytest run.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import stress_asgi_app
from stress_client import keepalive_load
from stress_support import STRESS_DIR, gunicorn_gevent, serve, stress_env

pytestmark = [pytest.mark.threads_only, pytest.mark.timeout(240)]

CLIENTS = 50
REQUESTS = 40
TOTAL = CLIENTS * REQUESTS
USERS = 50  # stress_django_app.USERS (not imported here: it configures Django)


def _django_expected(n: int) -> dict[str, Any]:
    k = n % USERS
    return {"n": n, "user": f"user-{k}", "id": k + 1, "users": USERS}


# name -> (app, path for n, expected body for n)
CASES: dict[str, tuple[str, Callable[[int], str], Callable[[int], Any]]] = {
    "flask-sync": (
        "stress_flask_app:app",
        lambda n: f"/sync?n={n}",
        lambda n: {"n": n, "v": 3 * n},
    ),
    "flask-async": (
        "stress_flask_app:app",
        lambda n: f"/async?n={n}",
        lambda n: {"n": n, "v": 3 * n, "same_worker": True},
    ),
    "django-orm": ("stress_django_app:application", lambda n: f"/orm?n={n}", _django_expected),
    "django-orm-async": (
        "stress_django_app:application",
        lambda n: f"/orm-async?n={n}",
        _django_expected,
    ),
    "asgi-bridges": (
        "stress_asgi_app:app",
        lambda n: f"/bridges?n={n}",
        stress_asgi_app.expected,
    ),
}


@pytest.fixture(scope="module")
def app_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The servers' environment, with the Django database created and filled."""
    db = tmp_path_factory.mktemp("stress-django") / "db.sqlite3"
    env = stress_env(STRESS_DJANGO_DB=str(db))
    subprocess.run(
        [sys.executable, str(STRESS_DIR / "stress_django_app.py"), "setup"],
        env=env,
        cwd=STRESS_DIR,
        check=True,
        timeout=120,
        capture_output=True,
    )
    return env


class _Servers:
    """One server per (app, server kind), started on first use, stopped with the module."""

    def __init__(self, env: dict[str, str], base: Path) -> None:
        self.env = env
        self.base = base
        self.ports: dict[tuple[str, str], int] = {}
        self.stack: list[Any] = []

    def port(self, app: str, server: str) -> int:
        key = (app, server)
        if key not in self.ports:
            where = self.base / f"{server}-{app.replace(':', '-')}"
            where.mkdir()
            if server == "gunicorn-gevent":
                manager = gunicorn_gevent(app, where, env=self.env)
            else:
                manager = serve(app, where, env=self.env)
            self.ports[key] = manager.__enter__()
            self.stack.append(manager)
        return self.ports[key]

    def close(self) -> None:
        while self.stack:
            self.stack.pop().__exit__(None, None, None)


@pytest.fixture(scope="module")
def servers(
    app_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[_Servers]:
    started = _Servers(app_env, tmp_path_factory.mktemp("stress-servers"))
    try:
        yield started
    finally:
        started.close()


@pytest.mark.parametrize(
    ("case", "server"),
    [
        ("flask-sync", "gunicorn-gevent"),
        ("flask-async", "gunicorn-gevent"),
        ("django-orm", "gunicorn-gevent"),
        ("django-orm-async", "gunicorn-gevent"),
        ("flask-sync", "serve"),
        ("flask-async", "serve"),
        ("django-orm", "serve"),
        ("django-orm-async", "serve"),
        ("asgi-bridges", "serve"),
    ],
)
def test_keepalive_load(case: str, server: str, servers: _Servers, say: Any) -> None:
    app, path, expect = CASES[case]
    port = servers.port(app, server)
    figures = keepalive_load(port, path, expect, clients=CLIENTS, requests=REQUESTS, timeout=90)
    say(figures.line(f"keepalive {case} {server}"))
    assert figures.ok == TOTAL, (
        f"{figures.ok}/{TOTAL} ok; failures {dict(figures.failures)}; samples:\n"
        + "\n".join(figures.samples)
    )
