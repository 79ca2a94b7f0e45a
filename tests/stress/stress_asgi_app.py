"""A plain ASGI app making bridge calls per request, for ``asgigreen serve``.

``/bridges?n=N`` awaits, in turn: a thread-sensitive ``sync_to_async``, a
non-thread-sensitive one, and a thread-sensitive one whose sync function
calls ``async_to_sync`` on a coroutine that itself awaits a thread-sensitive
``sync_to_async`` (which must run on that same sync worker). The answer is
known from ``n``; ``same_worker`` says the innermost call ran where it must.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any
from urllib.parse import parse_qs

from asgigreen.sync import async_to_sync, sync_to_async


def _sensitive(n: int) -> int:
    return n + 1


def _plain(n: int) -> int:
    return n + 2


async def _inner(n: int, worker: int) -> tuple[int, bool]:
    await asyncio.sleep(0)
    return await sync_to_async(lambda: (n + 3, threading.get_ident() == worker))()


def _nested(n: int) -> tuple[int, bool]:
    return async_to_sync(_inner)(n, threading.get_ident())


def expected(n: int) -> dict[str, Any]:
    return {"n": n, "a": n + 1, "b": n + 2, "c": n + 3, "same_worker": True}


async def _answer(send: Any, status: int, data: dict[str, Any]) -> None:
    body = json.dumps(data).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if scope["path"] == "/ping":
        await _answer(send, 200, {"ok": True})
        return
    try:
        n = int(parse_qs(scope["query_string"].decode())["n"][0])
        a = await sync_to_async(_sensitive)(n)
        b = await sync_to_async(_plain, thread_sensitive=False)(n)
        c, same_worker = await sync_to_async(_nested)(n)
    except Exception as exc:
        await _answer(send, 500, {"error": type(exc).__name__, "message": str(exc)[:300]})
        return
    await _answer(send, 200, {"n": n, "a": a, "b": b, "c": c, "same_worker": same_worker})
