"""A Flask app for the keep-alive stress tests (``gunicorn -k gevent`` and ``asgigreen serve``).

``patch_all()`` first, as a project on plain ``-k gevent`` does (under
``asgigreen serve`` the command has done it already; a second call is
harmless). Every answer says which request it answers, so a response sent
to the wrong client, or computed for another request, shows.
"""

import asgigreen

asgigreen.patch_all()

import asyncio  # noqa: E402
import threading  # noqa: E402
from typing import Any  # noqa: E402

from asgiref.sync import sync_to_async  # noqa: E402  (asgigreen's, through the alias)
from flask import Flask, g, jsonify, request  # noqa: E402

app = Flask(__name__)


@app.before_request
def remember_worker() -> None:
    # The request's own worker (a greenlet here): where thread-sensitive
    # calls made inside its async view must run, as asgiref runs them on
    # the thread blocked in async_to_sync.
    g.worker = threading.get_ident()


@app.get("/ping")
def ping() -> Any:
    return jsonify(ok=True)


@app.get("/sync")
def sync_view() -> Any:
    n = int(request.args["n"])
    return jsonify(n=n, v=3 * n)


def _triple(n: int, worker: int) -> dict[str, Any]:
    return {"v": 3 * n, "same_worker": threading.get_ident() == worker}


@app.get("/async")
async def async_view() -> Any:
    """An async view awaiting a thread-sensitive sync_to_async (Flask runs it in async_to_sync)."""
    n = int(request.args["n"])
    await asyncio.sleep(0)
    answer = await sync_to_async(_triple)(n, g.worker)
    return jsonify(n=n, **answer)


@app.errorhandler(Exception)
def report(exc: Exception) -> Any:
    return jsonify(error=type(exc).__name__, message=str(exc)[:300]), 500
