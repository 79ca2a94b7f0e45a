"""A Flask app with async views, ready for gevent workers.

The first two lines are the whole adoption: they monkeypatch with gevent
(unless the server already did), make asgiref resolve to asgigreen (Flask
runs ``async def`` views through ``asgiref.sync.async_to_sync``) and select
the gevent hub. They must come before Flask is imported.
"""

import asgigreen

asgigreen.patch_all()

import asyncio  # noqa: E402
import os  # noqa: E402
import sqlite3  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from flask import Flask, jsonify, request  # noqa: E402

DATABASE = Path(os.environ.get("EXAMPLE_DATA_DIR", Path(__file__).parent)) / "visits.sqlite3"

app = Flask(__name__)


def _db() -> sqlite3.Connection:
    db = sqlite3.connect(DATABASE, timeout=20)
    db.execute("CREATE TABLE IF NOT EXISTS visits (path TEXT NOT NULL)")
    return db


@app.get("/")
def home() -> Any:
    """A sync view: runs straight on the request's greenlet."""
    with _db() as db:
        visits = db.execute("SELECT count(*) FROM visits").fetchone()[0]
    from asgigreen import hubs

    return jsonify(
        asgiref_is_asgigreen=sys.modules.get("asgiref") is not None
        and getattr(sys.modules["asgiref"], "__asgigreen_alias__", False),
        hub=hubs.get_hub().name,
        visits=visits,
    )


@app.get("/hello")
async def hello() -> Any:
    """An async view: Flask gives it an event loop of its own via async_to_sync.

    Under gunicorn -k gevent on the real asgiref, concurrent requests here
    fail with "You cannot use AsyncToSync in the same thread as an async
    event loop"; with asgigreen each greenlet has its own running loop.
    """
    n = int(request.args.get("n", "0"))
    await asyncio.sleep(0.1)  # an async SDK call, say
    with _db() as db:
        db.execute("INSERT INTO visits (path) VALUES (?)", ("/hello",))
    return jsonify(hello=n)
