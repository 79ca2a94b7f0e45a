"""The application being migrated: a plain WSGI app, as deployed today with::

    gunicorn -k gevent --worker-connections 1000 examples.migration.app:application

It keeps its data in SQLite (the embedded default) and, per request, waits
about 50 ms on I/O: here ``time.sleep``, standing in for a call to another
service. In a gevent-patched process that wait is cooperative, which is why
one worker serves many requests at once; the app itself knows nothing about
gevent, asyncio or ASGI, and nothing in it changes for the migration.

Moved to ASGI, unchanged::

    asgigreen serve examples.migration.app:application

Routes: ``/`` (counts), ``/items/<id>`` (one item, after the I/O wait),
``POST /items`` (form field ``name``: adds one).
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs

#: The database file (created and filled on first use).
DATABASE = os.environ.get("MIGRATION_DB") or os.path.join(
    tempfile.gettempdir(), f"asgigreen-migration-{os.getuid()}.sqlite3"
)
#: The I/O wait per request, in seconds.
IO_SECONDS = float(os.environ.get("MIGRATION_IO_SECONDS", "0.05"))

# One connection per worker (a greenlet when patched, else a thread), as
# WSGI applications usually keep them.
_connections = threading.local()
_setup_lock = threading.Lock()
_ready = False


def _connection() -> sqlite3.Connection:
    global _ready
    connection: sqlite3.Connection | None = getattr(_connections, "db", None)
    if connection is None:
        connection = _connections.db = sqlite3.connect(DATABASE, timeout=30)
    if not _ready:
        with _setup_lock:
            if not _ready:
                _create(connection)
                _ready = True
    return connection


def _create(db: sqlite3.Connection) -> None:
    with db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT)")
        if db.execute("SELECT count(*) FROM items").fetchone()[0] == 0:
            db.executemany(
                "INSERT INTO items (name) VALUES (?)", [(f"item {n}",) for n in range(1, 101)]
            )


def _json(start_response: Any, status: str, payload: Any) -> Iterable[bytes]:
    body = json.dumps(payload).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def application(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """The WSGI entry point."""
    db = _connection()
    path = environ.get("PATH_INFO", "/")
    method = environ["REQUEST_METHOD"]
    if path == "/" and method == "GET":
        count = db.execute("SELECT count(*) FROM items").fetchone()[0]
        return _json(start_response, "200 OK", {"items": count})
    if path.startswith("/items/") and method == "GET":
        row = db.execute("SELECT id, name FROM items WHERE id = ?", (path[7:],)).fetchone()
        time.sleep(IO_SECONDS)  # the call to another service
        if row is None:
            return _json(start_response, "404 Not Found", {"error": "no such item"})
        return _json(start_response, "200 OK", {"id": row[0], "name": row[1]})
    if path == "/items" and method == "POST":
        size = int(environ.get("CONTENT_LENGTH") or 0)
        form = parse_qs(environ["wsgi.input"].read(size).decode())
        name = form.get("name", ["unnamed"])[0]
        with db:
            new_id = db.execute("INSERT INTO items (name) VALUES (?)", (name,)).lastrowid
        return _json(start_response, "201 Created", {"id": new_id, "name": name})
    return _json(start_response, "404 Not Found", {"error": "not found"})
