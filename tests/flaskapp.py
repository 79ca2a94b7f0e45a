"""A Flask app with async views, for the integration tests.

Flask runs ``async def`` views through asgiref's ``async_to_sync``; with
asgigreen installed as asgiref that is asgigreen's. Import this module only
after ``asgigreen.install_as_asgiref()``.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from djangoproject.checks import alias_state
from flask import Flask, jsonify, request

app = Flask(__name__)

_inflight = 0
_max_inflight = 0
_inflight_lock = threading.Lock()


def _on_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@app.get("/sync")
def sync_view() -> Any:
    return jsonify(on_loop=_on_running_loop())


@app.get("/async")
async def async_view() -> Any:
    """Sleeps on an event loop, recording how many requests were in here at once."""
    global _inflight, _max_inflight
    with _inflight_lock:
        _inflight += 1
        _max_inflight = max(_max_inflight, _inflight)
    try:
        await asyncio.sleep(float(request.args.get("delay", "0")))
        # Async work inside the view: a task on the same loop.
        doubled = await asyncio.create_task(_double(int(request.args.get("n", "1"))))
    finally:
        with _inflight_lock:
            _inflight -= 1
    return jsonify(on_loop=_on_running_loop(), doubled=doubled)


async def _double(n: int) -> int:
    await asyncio.sleep(0)
    return 2 * n


@app.post("/async-echo")
async def async_echo() -> Any:
    data = request.get_json()
    await asyncio.sleep(0)
    return jsonify(echo=data), 201


@app.get("/state")
def state() -> Any:
    return jsonify(**alias_state(), max_inflight=_max_inflight)
