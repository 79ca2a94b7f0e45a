"""A Flask app with an async view, for ``gunicorn -k gevent``.

The way a project adopts asgigreen with plain ``-k gevent``: ``patch_all()``
as the first lines of the module gunicorn loads (gunicorn's gevent worker
has patched by then; patch_all() adds the asgiref alias and the gevent hub).
"""

from workerproject import control

if not control():
    import asgigreen

    asgigreen.patch_all()

import asyncio
import sys
from typing import Any

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.get("/sleep")
async def sleep() -> Any:
    await asyncio.sleep(float(request.args.get("delay", "0.1")))
    return jsonify(n=int(request.args.get("n", "0")))


@app.errorhandler(Exception)
def report(exc: Exception) -> Any:
    # The exception's name, so the tests can count failures by kind.
    return jsonify(error=type(exc).__name__, message=str(exc)), 500


@app.get("/state")
def state() -> Any:
    return jsonify(
        control=control(),
        asgiref_sync=getattr(sys.modules.get("asgiref.sync"), "__name__", None),
    )
