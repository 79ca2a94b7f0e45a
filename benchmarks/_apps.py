"""The applications benchmarks/wsgi.py serves, and the adapters around them.

Importable as ``_apps`` by the benchmark's own server processes and by
gunicorn (``--pythonpath benchmarks``). Nothing here imports an adapter
library until asked: each server process loads only the one it measures.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable
from typing import Any

#: The I/O wait per request, in seconds: time.sleep (cooperative when patched)
#: or asyncio.sleep.
IO_SECONDS = float(os.environ.get("BENCH_IO_SECONDS", "0.05"))

_BODY = b"ok"
_HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(_BODY)))]


def wsgi_io(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """WSGI, waits on I/O (``time.sleep``) for IO_SECONDS."""
    time.sleep(IO_SECONDS)
    start_response("200 OK", _HEADERS)
    return [_BODY]


def wsgi_noio(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """WSGI, answers at once."""
    start_response("200 OK", _HEADERS)
    return [_BODY]


async def asgi_io(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """ASGI, awaits ``asyncio.sleep(IO_SECONDS)``; lifespan acknowledged."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    await asyncio.sleep(IO_SECONDS)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")],
        }
    )
    await send({"type": "http.response.body", "body": _BODY})


def wsgi_to_asgi(library: str, app: str) -> Any:
    """``app`` ("io" or "noio") behind ``library``'s WSGI-to-ASGI adapter."""
    wsgi = {"io": wsgi_io, "noio": wsgi_noio}[app]
    if library == "asgigreen":
        from asgigreen.wsgi import WsgiToAsgi

        return WsgiToAsgi(wsgi)
    if library == "a2wsgi":
        from a2wsgi import WSGIMiddleware

        return WSGIMiddleware(wsgi)
    if library == "asgiref":
        from asgiref.wsgi import WsgiToAsgi as AsgirefWsgiToAsgi

        return AsgirefWsgiToAsgi(wsgi)
    if library == "none":
        return asgi_io
    raise ValueError(f"unknown library {library!r}")


def asgi_to_wsgi(library: str) -> Any:
    """:func:`asgi_io` behind ``library``'s ASGI-to-WSGI adapter ("none": WSGI io)."""
    if library == "asgigreen":
        from asgigreen.asgi_to_wsgi import AsgiToWsgi

        return AsgiToWsgi(asgi_io)
    if library == "a2wsgi":
        from a2wsgi import ASGIMiddleware

        return ASGIMiddleware(asgi_io)
    if library == "none":
        return wsgi_io
    raise ValueError(f"unknown library {library!r}")
