"""The ASGI application tests/test_asgi_to_wsgi.py serves through AsgiToWsgi.

Importable in the test process (both modes) and by ``gunicorn -k gevent``
(``asgi_to_wsgi_app:application``, with tests/ on the path). Written the way
a Starlette application behaves: lifespan with state, streaming responses,
a task listening for ``http.disconnect`` while the response streams.

``A2W_EVENTS`` (a file path), if set, receives one line per lifespan event
and per observed disconnect, so a test can see them from outside the process.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from asgigreen.sync import sync_to_async
from asgigreen.wsgi import AsgiToWsgi, ClientDisconnected

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: What the application saw, per process; tests in the same process read it.
RECORDS: dict[str, Any] = {"startups": 0, "shutdowns": 0, "streams": {}}
_lock = threading.Lock()


def note(line: str) -> None:
    path = os.environ.get("A2W_EVENTS")
    if path:
        with open(path, "a", encoding="utf-8") as events:
            events.write(f"{os.getpid()} {line}\n")


def _native_threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return -1


async def lifespan(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            RECORDS["startups"] += 1
            scope["state"]["startups"] = RECORDS["startups"]
            scope["state"]["loop_id"] = id(asyncio.get_running_loop())
            note("startup")
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            RECORDS["shutdowns"] += 1
            note("shutdown")
            await send({"type": "lifespan.shutdown.complete"})
            return


async def respond(send: Send, payload: Any, status: int = 200) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"x-asgi", b"yes")],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def read_body(receive: Receive) -> tuple[bytes, list[int]]:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected("disconnected while reading")
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), [len(chunk) for chunk in chunks]


def _blocking_work() -> dict[str, Any]:
    try:
        asyncio.get_running_loop()
        on_loop = True
    except RuntimeError:
        on_loop = False
    time.sleep(0.01)
    return {"on_loop": on_loop}


async def stream(scope: dict[str, Any], receive: Receive, send: Send, query: Any) -> None:
    """Chunks until ``n`` are sent or the client leaves; records what happened."""
    token = query.get("t", ["none"])[0]
    count = int(query.get("n", ["1000000"])[0])
    size = int(query.get("size", ["6"])[0])
    interval = float(query.get("interval", ["0.02"])[0])
    record: dict[str, Any] = {"sent": 0, "disconnect": None, "send_error": None, "done": False}
    RECORDS["streams"][token] = record
    loop = asyncio.get_running_loop()

    async def listen() -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                record["disconnect"] = loop.time()
                note(f"disconnect {token}")
                return

    listener = asyncio.ensure_future(listen())
    await send({"type": "http.response.start", "status": 200, "headers": []})
    try:
        for number in range(count):
            chunk = (b"%05d\n" % number).ljust(size, b".")
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            record["sent"] = number + 1
            if interval:
                await asyncio.sleep(interval)
        await send({"type": "http.response.body", "body": b""})
    except OSError as exc:
        record["send_error"] = (loop.time(), type(exc).__name__)
    finally:
        record["done"] = True
        await asyncio.sleep(0.05)
        listener.cancel()


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await lifespan(scope, receive, send)
        return
    assert scope["type"] == "http"
    path = scope["path"]
    query = parse_qs(scope["query_string"].decode())
    if "/scope" in path:
        body, sizes = await read_body(receive)
        printable = {
            key: scope[key]
            for key in (
                "http_version",
                "method",
                "scheme",
                "path",
                "root_path",
                "client",
                "server",
                "state",
            )
            if key in scope
        }
        printable["raw_path"] = scope["raw_path"].decode("latin-1")
        printable["query_string"] = scope["query_string"].decode("latin-1")
        printable["headers"] = [
            [n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]
        ]
        printable["asgi"] = scope["asgi"]
        printable["body"] = body.decode("latin-1")
        await respond(send, printable)
    elif path == "/upload":
        body, sizes = await read_body(receive)
        await respond(send, {"length": len(body), "chunks": len(sizes), "largest": max(sizes)})
    elif path == "/first-chunk":
        # Answers after the first piece of body, never reading the rest.
        message = await receive()
        await respond(send, {"first": len(message.get("body", b"")), "more": message["more_body"]})
    elif path == "/sleep":
        await asyncio.sleep(float(query.get("s", ["0.05"])[0]))
        await respond(send, {"pid": os.getpid(), "threads": _native_threads()})
    elif path == "/stream":
        await stream(scope, receive, send, query)
    elif path == "/record":
        token = query.get("t", ["none"])[0]
        await respond(send, RECORDS["streams"].get(token))
    elif path == "/state":
        await respond(
            send,
            {
                "state": scope.get("state"),
                "startups": RECORDS["startups"],
                "loop_id": id(asyncio.get_running_loop()),
                "pid": os.getpid(),
            },
        )
    elif path == "/sync":
        result = await sync_to_async(_blocking_work)()
        await respond(send, result)
    elif path == "/error-before":
        raise ValueError("failed before the response")
    elif path == "/error-after":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise ValueError("failed in the middle of the response")
    elif path == "/no-response":
        return
    elif path == "/bad-header":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"x-bad", b"a\r\nset-cookie: evil=1")],
            }
        )
    elif path == "/hop-by-hop":
        await send(
            {
                "type": "http.response.start",
                "status": 201,
                "headers": [
                    (b"connection", b"close"),
                    (b"transfer-encoding", b"chunked"),
                    (b"x-kept", b"1"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b"hop"})
    else:
        await respond(send, {"error": "not found"}, status=404)


application = AsgiToWsgi(app)
