"""The ASGI application tests/test_asgi_to_wsgi.py serves through AsgiToWsgi.

Importable in the test process (both modes) and by ``gunicorn -k gevent``
(``asgi_to_wsgi_app:application``, with tests/ on the path). Written the way
a Starlette application behaves: lifespan with state, streaming responses,
a task listening for ``http.disconnect`` while the response streams.

``A2W_EVENTS`` (a file path), if set, receives one line per lifespan event
and per observed disconnect, so a test can see them from outside the process.
``A2W_DISCONNECT_GRACE`` sets the adapter's ``disconnect_grace`` (seconds).
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
RECORDS: dict[str, Any] = {"startups": 0, "shutdowns": 0, "streams": {}, "uploads": {}}
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


async def cut_upload(receive: Receive, send: Send, query: Any) -> None:
    """Reads the body with receive() like Starlette's ``request.body()``; for cut-off uploads.

    Notes ``upload-reading`` once the first piece arrived (the test then
    cuts the connection while this waits in receive()) and
    ``upload-disconnect <monotonic time> <bytes> <next receive()>`` when
    ``http.disconnect`` comes. Then, by ``then``: ``raise``
    ClientDisconnected (as Starlette does), ``return`` without a response,
    ``respond`` (send() raises), or ``ignore`` it and sleep until cancelled.
    """
    token = query.get("t", ["none"])[0]
    then = query.get("then", ["raise"])[0]
    record: dict[str, Any] = {"received": 0, "disconnect": None, "again": None}
    RECORDS["uploads"][token] = record
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                record["disconnect"] = time.monotonic()
                # Any later receive() answers at once too.
                again = await asyncio.wait_for(receive(), 1.0)
                record["again"] = again["type"]
                note(
                    f"upload-disconnect {token} {record['disconnect']:.6f} "
                    f"{record['received']} {again['type']}"
                )
                break
            if not record["received"]:
                note(f"upload-reading {token}")
            record["received"] += len(message.get("body", b""))
            if not message.get("more_body", False):
                await respond(send, {"length": record["received"]})
                return
        if then == "raise":
            raise ClientDisconnected("the client left during the upload")
        if then == "respond":
            try:
                await respond(send, {"length": record["received"]})
            except ClientDisconnected:
                note(f"upload-send-refused {token}")
                raise
        elif then == "ignore":
            await asyncio.sleep(60)
    except asyncio.CancelledError:
        record["cancelled"] = time.monotonic()
        note(f"upload-cancelled {token} {record['cancelled']:.6f}")
        raise


async def peek(receive: Receive) -> Message | None:
    """Like Starlette's ``request.is_disconnected()``: a receive() cancelled at its first wait.

    The message if one was there at once, else None.
    """
    probe = asyncio.ensure_future(receive())
    await asyncio.sleep(0)  # it runs up to its wait for the next piece of body
    probe.cancel()
    try:
        return await probe
    except asyncio.CancelledError:
        return None


async def cancelled() -> None:
    """Raise CancelledError as an application does when something it awaits is cancelled."""
    never = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(never.cancel)
    await never


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
    elif path == "/upload-cut":
        await cut_upload(receive, send, query)
    elif path == "/probing-upload":
        # Checks for a disconnect before each piece, as a Starlette view may.
        total = probes = 0
        while True:
            probes += 1
            message = await peek(receive) or await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected("disconnected while reading")
            total += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        await respond(send, {"length": total, "probes": probes})
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
    elif path == "/cancelled-before":
        await cancelled()
    elif path == "/cancelled-after":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        await cancelled()
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


application = AsgiToWsgi(app, disconnect_grace=float(os.environ.get("A2W_DISCONNECT_GRACE", "5")))
