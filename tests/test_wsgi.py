"""WsgiToAsgi: environ, streaming both ways, backpressure, disconnects, limits.

The first half drives the ASGI application directly (as a server would);
the second half runs it under a real uvicorn server and talks HTTP to it.
"""

from __future__ import annotations

import asyncio
import http.client
import io
import json
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvicorn

from asgigreen import hubs
from asgigreen.testing import ApplicationCommunicator
from asgigreen.wsgi import (
    ClientDisconnected,
    RequestBodyTooLarge,
    WsgiToAsgi,
    WsgiToAsgiInstance,
)

Environ = dict[str, Any]


def make_scope(**overrides: Any) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "query_string": b"",
        "root_path": "",
        "headers": [],
        "client": ("10.0.0.7", 51234),
        "server": ("example.org", 8000),
    }
    scope.update(overrides)
    return scope


def environ_for(scope: dict[str, Any], **options: Any) -> Environ:
    return WsgiToAsgiInstance(None, **options).build_environ(scope, None)  # type: ignore[arg-type]


def hello_app(environ: Environ, start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


async def serve(
    app: Any,
    scope: dict[str, Any] | None = None,
    body: list[bytes] | None = None,
    send: Callable[[dict[str, Any]], Any] | None = None,
    timeout: float = 5,
) -> tuple[list[dict[str, Any]], BaseException | None]:
    """Run one request to the end: returns what the app sent and what it raised."""
    parts = body or [b""]
    incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for index, part in enumerate(parts):
        more = index < len(parts) - 1
        incoming.put_nowait({"type": "http.request", "body": part, "more_body": more})
    sent: list[dict[str, Any]] = []

    async def record(message: dict[str, Any]) -> None:
        sent.append(message)
        if send is not None:
            await send(message)

    try:
        await asyncio.wait_for(app(scope or make_scope(), incoming.get, record), timeout)
    except Exception as exc:
        return sent, exc
    return sent, None


def status_of(messages: list[dict[str, Any]]) -> int:
    assert messages[0]["type"] == "http.response.start"
    status: int = messages[0]["status"]
    return status


def body_of(messages: list[dict[str, Any]]) -> bytes:
    return b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")


def is_complete(messages: list[dict[str, Any]]) -> bool:
    last = messages[-1]
    return last["type"] == "http.response.body" and not last.get("more_body", False)


async def eventually(condition: Callable[[], bool], timeout: float = 3) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


def responding_with(iterable: Any) -> Callable[[Environ, Any], Any]:
    """A WSGI application answering 200 with ``iterable`` as the body."""

    def app(environ: Environ, start_response: Any) -> Any:
        start_response("200 OK", [])
        return iterable

    return app


class Ticker:
    """A response iterable that yields forever and records its close()."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.produced = 0
        self.closed_at: float | None = None
        self.workers: set[int] = set()

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        self.workers.add(hubs.worker_id())
        if self.produced:
            time.sleep(self.interval)
        self.produced += 1
        if self.produced > 10_000:
            raise StopIteration
        return b"tick\n"

    def close(self) -> None:
        self.workers.add(hubs.worker_id())
        self.closed_at = time.monotonic()


# -- environ ---------------------------------------------------------------


def test_environ_basics() -> None:
    environ = environ_for(
        make_scope(
            method="POST",
            http_version="2",
            scheme="https",
            query_string=b"a=1&b=%20",
            headers=[
                (b"content-type", b"application/json"),
                (b"content-length", b"12"),
                (b"x-trace", b"one"),
                (b"X-Trace", b"two"),
                (b"cookie", b"a=1"),
                (b"cookie", b"b=2"),
                (b"user-agent", b"caf\xe9"),
            ],
        )
    )
    assert environ["REQUEST_METHOD"] == "POST"
    assert environ["SERVER_PROTOCOL"] == "HTTP/2"
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["QUERY_STRING"] == "a=1&b=%20"
    assert environ["CONTENT_TYPE"] == "application/json"
    assert environ["CONTENT_LENGTH"] == "12"
    assert "HTTP_CONTENT_TYPE" not in environ
    assert "HTTP_CONTENT_LENGTH" not in environ
    assert environ["HTTP_X_TRACE"] == "one,two"
    assert environ["HTTP_COOKIE"] == "a=1; b=2"
    assert environ["HTTP_USER_AGENT"] == "caf\xe9"
    assert (environ["REMOTE_ADDR"], environ["REMOTE_PORT"]) == ("10.0.0.7", "51234")
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("example.org", "8000")
    assert environ["wsgi.version"] == (1, 0)
    assert environ["wsgi.errors"] is sys.stderr
    assert environ["wsgi.multithread"] is True
    assert environ["wsgi.multiprocess"] is True
    assert environ["wsgi.run_once"] is False
    assert environ["wsgi.input_terminated"] is True
    assert callable(environ["wsgi.file_wrapper"])


def test_environ_paths() -> None:
    environ = environ_for(make_scope(root_path="/app", path="/app/items/1"))
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("/app", "/items/1")
    # A root_path that is not a prefix of the path leaves the path alone.
    environ = environ_for(make_scope(root_path="/app", path="/items/1"))
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("/app", "/items/1")
    # Non-ASCII paths are their UTF-8 bytes as latin-1 characters.
    environ = environ_for(make_scope(root_path="/中国", path="/中国/中文"))
    assert environ["SCRIPT_NAME"] == "/中国".encode().decode("latin-1")
    assert environ["PATH_INFO"] == "/中文".encode().decode("latin-1")


def test_environ_prefers_raw_path_bytes() -> None:
    # %E9 is not UTF-8: path has lost the byte, raw_path still has it.
    scope = make_scope(path="/caf\ufffd", raw_path=b"/caf%E9")
    assert environ_for(scope)["PATH_INFO"] == "/caf\xe9"
    # raw_path that no longer matches path (rewritten by middleware) is ignored.
    scope = make_scope(path="/rewritten", raw_path=b"/original")
    assert environ_for(scope)["PATH_INFO"] == "/rewritten"
    # Percent-escapes are decoded, as WSGI servers do.
    scope = make_scope(path="/a b", raw_path=b"/a%20b")
    assert environ_for(scope)["PATH_INFO"] == "/a b"


def test_environ_server_defaults() -> None:
    environ = environ_for(make_scope(server=None, client=None))
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("localhost", "80")
    assert "REMOTE_ADDR" not in environ
    assert "REMOTE_PORT" not in environ
    environ = environ_for(make_scope(server=("/run/app.sock", None)))
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("/run/app.sock", "0")
    scope = make_scope()
    for key in ("http_version", "scheme", "query_string", "root_path", "headers"):
        del scope[key]
    environ = environ_for(scope)
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert environ["wsgi.url_scheme"] == "http"
    assert environ["QUERY_STRING"] == environ["SCRIPT_NAME"] == ""


@pytest.mark.asyncio
async def test_environ_reaches_the_application() -> None:
    seen: list[Environ] = []

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        seen.append(environ)
        return hello_app(environ, start_response)

    scope = make_scope(root_path="/r", path="/r/x", headers=[(b"x-a", b"1")])
    messages, error = await serve(WsgiToAsgi(app), scope)
    assert error is None
    assert status_of(messages) == 200
    assert (seen[0]["SCRIPT_NAME"], seen[0]["PATH_INFO"], seen[0]["HTTP_X_A"]) == ("/r", "/x", "1")


# -- workers ----------------------------------------------------------------


@pytest.mark.asyncio
async def test_requests_run_concurrently_on_their_own_workers() -> None:
    # asgiref runs every WSGI request on one shared thread: the first request
    # would wait forever for the second to start.
    started: list[int] = []

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        started.append(hubs.worker_id())
        deadline = time.monotonic() + 5
        while len(started) < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        start_response("200 OK", [])
        return [str(len(started)).encode()]

    application = WsgiToAsgi(app)
    results = await asyncio.gather(serve(application), serve(application))
    assert [body_of(messages) for messages, _ in results] == [b"2", b"2"]
    assert len(set(started)) == 2


@pytest.mark.asyncio
async def test_call_iteration_and_close_share_one_worker_off_the_loop() -> None:
    ticker = Ticker(interval=0)
    called_on: list[int] = []

    def app(environ: Environ, start_response: Any) -> Ticker:
        called_on.append(hubs.worker_id())
        start_response("200 OK", [("Content-Length", "15")])
        return ticker

    messages, error = await serve(WsgiToAsgi(app))
    assert error is None
    assert body_of(messages) == b"tick\n" * 3
    assert ticker.closed_at is not None
    assert ticker.workers == set(called_on)
    assert called_on[0] != hubs.worker_id()


@pytest.mark.asyncio
async def test_workers_are_reused_and_the_idle_list_is_bounded() -> None:
    workers: list[int] = []
    running: list[int] = []

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        workers.append(hubs.worker_id())
        running.append(1)
        deadline = time.monotonic() + 5
        while environ["QUERY_STRING"] == "wait" and len(running) < 3:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        start_response("200 OK", [])
        return []

    application = WsgiToAsgi(app, max_idle_workers=2)
    assert application.idle_workers == 0
    await serve(application)
    await serve(application)
    assert workers[0] == workers[1]
    assert application.idle_workers == 1

    running.clear()
    waiting = make_scope(query_string=b"wait")
    results = await asyncio.gather(*(serve(application, waiting) for _ in range(3)))
    assert all(error is None for _, error in results)
    assert len(set(workers[2:])) == 3
    assert application.idle_workers == 2


@pytest.mark.asyncio
@pytest.mark.threads_only
async def test_threads_hub_worker_is_another_os_thread() -> None:
    native: list[int] = []

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        native.append(threading.get_native_id())
        return hello_app(environ, start_response)

    await serve(WsgiToAsgi(app))
    assert native[0] != threading.get_native_id()


@pytest.mark.asyncio
@pytest.mark.gevent_only
async def test_gevent_hub_worker_is_a_greenlet() -> None:
    import greenlet

    seen: list[Any] = []

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        seen.append(greenlet.getcurrent())
        return hello_app(environ, start_response)

    await serve(WsgiToAsgi(app))
    assert seen[0] is not greenlet.getcurrent()


# -- request body ------------------------------------------------------------


@pytest.mark.asyncio
async def test_request_body_streams_to_the_application_as_it_arrives() -> None:
    progress: list[bytes] = []

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        stream = environ["wsgi.input"]
        progress.append(stream.read(5))
        progress.append(stream.readline())
        progress.append(stream.read())
        start_response("200 OK", [])
        return [b"|".join(progress)]

    communicator = ApplicationCommunicator(WsgiToAsgi(app), make_scope(method="POST"))
    await communicator.send_input({"type": "http.request", "body": b"hello wor", "more_body": True})
    # The application has the first bytes while the rest is still unsent.
    await eventually(lambda: progress == [b"hello"])
    await communicator.send_input({"type": "http.request", "body": b"ld\nrest", "more_body": True})
    await eventually(lambda: len(progress) == 2)
    await communicator.send_input({"type": "http.request", "body": b" of it"})
    assert (await communicator.receive_output(3))["status"] == 200
    assert (await communicator.receive_output(3))["body"] == b"hello| world\n|rest of it"
    await communicator.wait(3)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("read", "expected"),
    [
        (lambda s: s.read(), b"line1\nline2\nline3"),
        (
            lambda s: [s.read(3), s.read(7), s.read(100), s.read(1)],
            [b"lin", b"e1\nline", b"2\nline3", b""],
        ),
        (lambda s: s.readlines(), [b"line1\n", b"line2\n", b"line3"]),
        (lambda s: list(s), [b"line1\n", b"line2\n", b"line3"]),
        (lambda s: [s.readline(3), s.readline(), s.readline(-1)], [b"lin", b"e1\n", b"line2\n"]),
        (lambda s: s.readlines(7), [b"line1\n", b"line2\n"]),
        (lambda s: [s.read(0), s.readline(0), s.read(None)], [b"", b"", b"line1\nline2\nline3"]),
    ],
)
async def test_input_stream_reading(read: Callable[[Any], Any], expected: Any) -> None:
    results: list[Any] = []

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        results.append(read(environ["wsgi.input"]))
        start_response("200 OK", [])
        return []

    body = [b"line1\nli", b"ne", b"", b"2\n", b"line3"]
    _, error = await serve(WsgiToAsgi(app), make_scope(method="POST"), body)
    assert error is None
    assert results == [expected]


@pytest.mark.asyncio
async def test_request_body_is_read_ahead_only_a_bounded_amount() -> None:
    go = threading.Event()
    total: list[int] = []

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        deadline = time.monotonic() + 5
        while not go.is_set() and time.monotonic() < deadline:
            time.sleep(0.005)
        total.append(len(environ["wsgi.input"].read()))
        start_response("200 OK", [])
        return []

    communicator = ApplicationCommunicator(WsgiToAsgi(app), make_scope(method="POST"))
    chunk = b"x" * 8192
    for _ in range(63):
        await communicator.send_input({"type": "http.request", "body": chunk, "more_body": True})
    await communicator.send_input({"type": "http.request", "body": chunk})
    await asyncio.sleep(0.2)
    # 512 KiB were offered; at most 64 KiB (plus one message) were taken.
    assert communicator.input_queue.qsize() >= 64 - 9
    go.set()
    assert (await communicator.receive_output(3))["status"] == 200
    await communicator.wait(3)
    assert total == [64 * 8192]


@pytest.mark.asyncio
async def test_body_longer_than_content_length_is_cut() -> None:
    def app(environ: Environ, start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [environ["wsgi.input"].read()]

    scope = make_scope(method="POST", headers=[(b"content-length", b"5")])
    messages, error = await serve(WsgiToAsgi(app), scope, [b"hel", b"loEXTRA", b"MORE"])
    assert error is None
    assert body_of(messages) == b"hello"


@pytest.mark.asyncio
async def test_declared_body_over_the_maximum_gets_413_without_running_the_app() -> None:
    called: list[bool] = []

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        called.append(True)
        return hello_app(environ, start_response)

    scope = make_scope(method="POST", headers=[(b"content-length", b"11")])
    messages, error = await serve(WsgiToAsgi(app, max_request_body_size=10), scope, [b"x" * 11])
    assert error is None
    assert status_of(messages) == 413
    assert b"10 bytes" in body_of(messages)
    assert not called
    # At the limit is fine.
    scope = make_scope(method="POST", headers=[(b"content-length", b"10")])
    messages, error = await serve(WsgiToAsgi(app, max_request_body_size=10), scope, [b"x" * 10])
    assert status_of(messages) == 200


@pytest.mark.asyncio
async def test_streamed_body_over_the_maximum_gets_413() -> None:
    raised: list[BaseException] = []

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        stream = environ["wsgi.input"]
        assert stream.read(8) == b"x" * 8
        try:
            stream.read()
        except RequestBodyTooLarge as exc:
            raised.append(exc)
            raise
        return hello_app(environ, start_response)

    application = WsgiToAsgi(app, max_request_body_size=10)
    messages, error = await serve(application, make_scope(method="POST"), [b"x" * 8, b"x" * 8])
    assert error is None
    assert status_of(messages) == 413
    assert is_complete(messages)
    assert isinstance(raised[0], OSError)


@pytest.mark.asyncio
async def test_streamed_body_over_the_maximum_gets_413_even_if_the_app_wraps_the_error() -> None:
    class UnreadableBody(Exception):
        pass

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        try:
            environ["wsgi.input"].read()
        except OSError as exc:
            raise UnreadableBody("could not read the body") from exc
        return hello_app(environ, start_response)

    application = WsgiToAsgi(app, max_request_body_size=10)
    messages, error = await serve(application, make_scope(method="POST"), [b"x" * 8, b"x" * 8])
    # The client hears it sent too much; the application's own error still surfaces.
    assert isinstance(error, UnreadableBody)
    assert status_of(messages) == 413


@pytest.mark.asyncio
async def test_disconnect_while_reading_the_body_stops_the_app() -> None:
    raised: list[BaseException] = []

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        try:
            environ["wsgi.input"].read()
        except ClientDisconnected as exc:
            raised.append(exc)
            raise
        return hello_app(environ, start_response)

    application = WsgiToAsgi(app)
    communicator = ApplicationCommunicator(application, make_scope(method="POST"))
    await communicator.send_input({"type": "http.request", "body": b"part", "more_body": True})
    await communicator.send_input({"type": "http.disconnect"})
    await communicator.wait(2)
    assert isinstance(raised[0], OSError)
    assert await communicator.receive_nothing()
    assert application.idle_workers == 1


# -- response ----------------------------------------------------------------


@pytest.mark.asyncio
async def test_response_streams_with_backpressure() -> None:
    produced: list[int] = []
    allowed = asyncio.Semaphore(0)

    def app(environ: Environ, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        for number in range(50):
            produced.append(number)
            yield b"%d," % number

    async def slow_send(message: dict[str, Any]) -> None:
        if message.get("more_body"):
            await allowed.acquire()

    running = asyncio.ensure_future(serve(WsgiToAsgi(app), send=slow_send))
    granted = 0
    for sends_allowed in (0, 3, 10):
        for _ in range(sends_allowed - granted):
            allowed.release()
        granted = sends_allowed
        await asyncio.sleep(0.1)
        # One chunk waits for send(); the iterator is not drained beyond it.
        assert len(produced) == sends_allowed + 1
    for _ in range(50):
        allowed.release()
    messages, error = await running
    assert error is None
    assert body_of(messages) == b"".join(b"%d," % n for n in range(50))
    assert is_complete(messages)


@pytest.mark.asyncio
async def test_disconnect_mid_stream_closes_the_iterable_quickly() -> None:
    ticker = Ticker()
    application = WsgiToAsgi(responding_with(ticker))
    communicator = ApplicationCommunicator(application, make_scope())
    await communicator.send_input({"type": "http.request"})
    assert (await communicator.receive_output(2))["status"] == 200
    assert (await communicator.receive_output(2))["body"] == b"tick\n"
    disconnected_at = time.monotonic()
    await communicator.send_input({"type": "http.disconnect"})
    await communicator.wait(2)
    assert ticker.closed_at is not None
    assert ticker.closed_at - disconnected_at < 1
    assert application.idle_workers == 1


@pytest.mark.asyncio
async def test_disconnect_while_send_is_stuck_does_not_hang() -> None:
    ticker = Ticker(interval=0)
    stuck = asyncio.Event()
    incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    incoming.put_nowait({"type": "http.request"})

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            stuck.set()
            await asyncio.Event().wait()  # a client that never reads

    application = WsgiToAsgi(responding_with(ticker))
    asgi_app: Any = application  # plain dicts stand in for the ASGI TypedDicts
    running = asyncio.ensure_future(asgi_app(make_scope(), incoming.get, send))
    await asyncio.wait_for(stuck.wait(), 2)
    disconnected_at = time.monotonic()
    incoming.put_nowait({"type": "http.disconnect"})
    await asyncio.wait_for(running, 2)
    assert ticker.closed_at is not None
    assert ticker.closed_at - disconnected_at < 1
    assert ticker.produced == 1
    assert application.idle_workers == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("send_blocks", [False, True])
async def test_cancelled_request_stops_the_application(send_blocks: bool) -> None:
    # Whether the worker is in the application's code or waiting on send(),
    # a server cancelling the request must not leave it running.
    ticker = Ticker()
    incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    incoming.put_nowait({"type": "http.request"})

    async def send(message: dict[str, Any]) -> None:
        if send_blocks and message["type"] == "http.response.body":
            await asyncio.Event().wait()

    asgi_app: Any = WsgiToAsgi(responding_with(ticker))
    running = asyncio.ensure_future(asgi_app(make_scope(), incoming.get, send))
    # Blocked on send() after the first chunk, or busy between chunks.
    await eventually(lambda: ticker.produced >= (1 if send_blocks else 2))
    cancelled_at = time.monotonic()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(running, 2)
    await eventually(lambda: ticker.closed_at is not None, timeout=1)
    produced = ticker.produced
    await asyncio.sleep(0.1)
    assert ticker.produced == produced
    assert ticker.closed_at is not None
    assert ticker.closed_at - cancelled_at < 1


@pytest.mark.asyncio
async def test_send_failing_mid_stream_closes_the_iterable_and_raises() -> None:
    ticker = Ticker(interval=0)

    async def failing_send(message: dict[str, Any]) -> None:
        if message.get("body") and ticker.produced >= 3:
            raise ConnectionResetError("client gone")

    application = WsgiToAsgi(responding_with(ticker))
    messages, error = await serve(application, send=failing_send, timeout=3)
    assert isinstance(error, ConnectionResetError)
    assert ticker.closed_at is not None
    assert ticker.produced == 3
    assert not is_complete(messages)
    assert application.idle_workers == 1


@pytest.mark.asyncio
async def test_content_length_ends_the_response_and_closes_the_iterable() -> None:
    ticker = Ticker(interval=0)

    def app(environ: Environ, start_response: Any) -> Ticker:
        start_response("200 OK", [("Content-Length", "7")])
        return ticker

    messages, error = await serve(WsgiToAsgi(app))
    assert error is None
    assert body_of(messages) == b"tick\nti"
    assert is_complete(messages)
    assert ticker.produced == 2
    assert ticker.closed_at is not None


@pytest.mark.asyncio
async def test_write_callable_and_bytes_like_chunks() -> None:
    def app(environ: Environ, start_response: Any) -> list[Any]:
        write = start_response("200 OK", [])
        write(b"a")
        write(b"b")
        return [bytearray(b"c"), memoryview(b"d")]

    messages, error = await serve(WsgiToAsgi(app))
    assert error is None
    assert [m.get("body") for m in messages[1:]] == [b"a", b"b", b"c", b"d", None]


@pytest.mark.asyncio
async def test_file_wrapper_streams_the_file_and_closes_it() -> None:
    content = bytes(range(256)) * 1000
    opened: list[io.BytesIO] = []

    def app(environ: Environ, start_response: Any) -> Any:
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        opened.append(io.BytesIO(content))
        return environ["wsgi.file_wrapper"](opened[0], 4096)

    messages, error = await serve(WsgiToAsgi(app))
    assert error is None
    assert body_of(messages) == content
    assert len(messages) > 3  # sent in blocks, not in one piece
    assert opened[0].closed


# -- errors from the application -----------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("status", "headers", "error", "match"),
    [
        ("200 OK", [("X-Bad", "a\r\nInjected: 1")], ValueError, "CR, LF or NUL"),
        ("200 OK", [("X-Bad", "line\nbreak")], ValueError, "CR, LF or NUL"),
        ("200 OK", [("X-Euro", "5 \u20ac")], ValueError, "latin-1"),
        ("200 OK", [(b"X-Bytes", "v")], TypeError, "must be str"),
        ("200 OK", [("X-Number", 5)], TypeError, "must be str"),
        ("200 OK", [("Bad Name", "v")], ValueError, "header name"),
        ("200 OK", [("X-Triple", "a", "b")], TypeError, "pair"),
        ("200 OK", [("Content-Length", "ten")], ValueError, "Content-Length"),
        (200, [], TypeError, "status must be a str"),
        ("OK", [], ValueError, "Malformed WSGI status"),
        ("200 OK\r\nX: y", [], ValueError, "Malformed WSGI status"),
    ],
)
async def test_malformed_response_head_is_a_clear_error_and_a_500(
    status: Any, headers: Any, error: type[Exception], match: str
) -> None:
    raised_in_app: list[BaseException] = []

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        try:
            start_response(status, headers)
        except Exception as exc:
            raised_in_app.append(exc)
            raise
        return [b"never"]

    messages, raised = await serve(WsgiToAsgi(app))
    assert isinstance(raised, error)
    assert raised is raised_in_app[0]  # raised by start_response itself
    assert match in str(raised)
    assert status_of(messages) == 500
    assert is_complete(messages)


@pytest.mark.asyncio
async def test_application_errors_before_and_after_the_response_started() -> None:
    def failing_early(environ: Environ, start_response: Any) -> list[bytes]:
        raise LookupError("boom")

    messages, error = await serve(WsgiToAsgi(failing_early))
    assert isinstance(error, LookupError)
    assert (status_of(messages), body_of(messages)) == (500, b"Internal Server Error")

    def failing_late(environ: Environ, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"partial"
        raise LookupError("boom")

    messages, error = await serve(WsgiToAsgi(failing_late))
    assert isinstance(error, LookupError)
    assert status_of(messages) == 200
    assert body_of(messages) == b"partial"
    assert not is_complete(messages)


@pytest.mark.asyncio
async def test_bad_body_chunks_and_missing_start_response() -> None:
    def str_chunk(environ: Environ, start_response: Any) -> list[Any]:
        start_response("200 OK", [])
        return ["text"]

    messages, error = await serve(WsgiToAsgi(str_chunk))
    assert isinstance(error, TypeError)
    assert "must be bytes, not str" in str(error)
    assert status_of(messages) == 500

    def no_start(environ: Environ, start_response: Any) -> list[bytes]:
        return [b"body"]

    messages, error = await serve(WsgiToAsgi(no_start))
    assert isinstance(error, RuntimeError)
    assert "start_response" in str(error)
    assert status_of(messages) == 500


@pytest.mark.asyncio
async def test_start_response_twice_needs_exc_info() -> None:
    def app(environ: Environ, start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        start_response("201 Created", [])
        return []

    messages, error = await serve(WsgiToAsgi(app))
    assert isinstance(error, ValueError)
    assert "exc_info" in str(error)
    assert status_of(messages) == 500

    def replaces(environ: Environ, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("X-Old", "1")])
        try:
            raise KeyError("oops")
        except KeyError:
            start_response("503 Service Unavailable", [("X-New", "1")], sys.exc_info())
        return [b"sorry"]

    messages, error = await serve(WsgiToAsgi(replaces))
    assert error is None
    assert messages[0]["status"] == 503
    assert messages[0]["headers"] == [(b"x-new", b"1")]


@pytest.mark.asyncio
async def test_exc_info_after_headers_were_sent_reraises_it() -> None:
    original = KeyError("original failure")
    reraised: list[BaseException] = []

    def app(environ: Environ, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"started"
        try:
            raise original
        except KeyError:
            try:
                start_response("500 Internal Server Error", [], sys.exc_info())
            except KeyError as exc:
                reraised.append(exc)
                raise

    messages, error = await serve(WsgiToAsgi(app))
    assert reraised == [original]
    assert error is original
    assert status_of(messages) == 200
    assert not is_complete(messages)


# -- limits on the request -------------------------------------------------------


@pytest.mark.asyncio
async def test_request_header_limits() -> None:
    called: list[bool] = []

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        called.append(True)
        return hello_app(environ, start_response)

    many = [(b"x-h%d" % n, b"v") for n in range(4)]
    messages, _ = await serve(WsgiToAsgi(app, max_request_headers=3), make_scope(headers=many))
    assert status_of(messages) == 431
    assert b"3" in body_of(messages)

    repeated = [(b"x-same", b"v")] * 4
    messages, _ = await serve(WsgiToAsgi(app, 3), make_scope(headers=repeated))
    assert (status_of(messages), body_of(messages)) == (
        400,
        b"Bad Request: Too many duplicate headers",
    )
    assert not called

    application = WsgiToAsgi(app, None, max_request_headers=None)
    messages, _ = await serve(application, make_scope(headers=[(b"x-same", b"v")] * 2000))
    assert status_of(messages) == 200


@pytest.mark.asyncio
@pytest.mark.parametrize("value", [b"ten", b"-1", b"1e3", b""])
async def test_invalid_content_length_is_a_400(value: bytes) -> None:
    scope = make_scope(method="POST", headers=[(b"content-length", value)])
    messages, error = await serve(WsgiToAsgi(hello_app), scope)
    assert error is None
    assert status_of(messages) == 400
    # Without a usable length the body can't be delimited: don't reuse the connection.
    assert (b"connection", b"close") in messages[0]["headers"]


@pytest.mark.asyncio
async def test_conflicting_content_lengths_are_a_400_and_equal_ones_are_fine() -> None:
    headers = [(b"content-length", b"3"), (b"content-length", b"4")]
    messages, _ = await serve(WsgiToAsgi(hello_app), make_scope(method="POST", headers=headers))
    assert status_of(messages) == 400
    headers = [(b"content-length", b"3"), (b"content-length", b"3")]
    scope = make_scope(method="POST", headers=headers)
    messages, _ = await serve(WsgiToAsgi(hello_app), scope, [b"abc"])
    assert status_of(messages) == 200


# -- other scopes ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_lifespan_is_acknowledged() -> None:
    communicator = ApplicationCommunicator(WsgiToAsgi(hello_app), {"type": "lifespan"})
    await communicator.send_input({"type": "lifespan.startup"})
    assert await communicator.receive_output(1) == {"type": "lifespan.startup.complete"}
    await communicator.send_input({"type": "lifespan.shutdown"})
    assert await communicator.receive_output(1) == {"type": "lifespan.shutdown.complete"}
    await communicator.wait(1)


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["websocket", "something-else"])
async def test_non_http_scopes_are_refused(kind: str) -> None:
    async def receive() -> dict[str, Any]:
        raise AssertionError("should not be called")

    async def send(message: dict[str, Any]) -> None:
        raise AssertionError("should not be called")

    with pytest.raises(ValueError, match="WsgiToAsgi only serves HTTP"):
        await WsgiToAsgi(hello_app)(make_scope(type=kind), receive, send)  # type: ignore[arg-type]


# -- under a real uvicorn server -----------------------------------------------------

RECORDS: dict[str, dict[str, Any]] = {}


def _record(environ: Environ) -> dict[str, Any]:
    token = environ["QUERY_STRING"].partition("t=")[2] or "none"
    return RECORDS.setdefault(token, {"closed": threading.Event(), "produced": 0})


class _Recorded:
    """Response iterable recording how far it got and when it was closed."""

    def __init__(self, record: dict[str, Any], chunk: bytes, interval: float) -> None:
        self.record, self.chunk, self.interval = record, chunk, interval

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self.record["produced"] >= 400:
            raise StopIteration
        if self.record["produced"] and self.interval:
            time.sleep(self.interval)
        self.record["produced"] += 1
        self.record["worker"] = hubs.worker_id()
        return self.chunk

    def close(self) -> None:
        self.record["closed_at"] = time.monotonic()
        self.record["closed"].set()


def _echo_lines(environ: Environ, start_response: Any) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    for line in environ["wsgi.input"]:
        yield b"echo:" + line


def server_app(environ: Environ, start_response: Any) -> Any:
    path = environ["PATH_INFO"]
    if path == "/ping":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(hubs.worker_id()).encode()]
    if path.startswith("/environ"):
        start_response("200 OK", [("Content-Type", "application/json")])
        printable = {k: v for k, v in environ.items() if isinstance(v, str)}
        return [json.dumps(printable).encode()]
    if path == "/echo":
        return _echo_lines(environ, start_response)
    if path == "/upload":
        data = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"%d:%s" % (len(data), data[:16])]
    if path == "/ticker":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _Recorded(_record(environ), b"tick\n", interval=0.02)
    if path == "/big":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return _Recorded(_record(environ), b"x" * 65536, interval=0)
    if path == "/bad-header":
        start_response("200 OK", [("X-Bad", "a\r\nSet-Cookie: evil=1")])
        return [b"never"]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found"]


MAIN_APP = WsgiToAsgi(server_app)
LIMITED_APP = WsgiToAsgi(
    server_app, 3, max_request_headers=20, max_request_body_size=1000, max_idle_workers=1
)


async def dispatch(scope: Any, receive: Any, send: Any) -> None:
    limited = scope["type"] == "http" and scope["path"].startswith("/base/limited/")
    if limited:
        scope = dict(scope, root_path="/base/limited")
    await (LIMITED_APP if limited else MAIN_APP)(scope, receive, send)


class LiveServer:
    def __init__(self, port: int) -> None:
        self.port = port

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def request(
        self, method: str, path: str, body: Any = None, headers: Any = ()
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        connection = self.connect()
        try:
            connection.putrequest(method, path, skip_accept_encoding=True)
            for name, value in headers:
                connection.putheader(name, value)
            if body is not None and not any(n.lower() == "content-length" for n, _ in headers):
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body)
            response = connection.getresponse()
            return response.status, response.headers, response.read()
        finally:
            connection.close()

    def assert_serving(self) -> None:
        status, _, body = self.request("GET", "/ping")
        assert status == 200
        assert body.isdigit()


@pytest.fixture(scope="module")
def live() -> Iterator[LiveServer]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    config = uvicorn.Config(
        dispatch,
        lifespan="on",
        root_path="/base",
        http="h11",
        ws="none",
        log_level="critical",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive(), "uvicorn did not start (lifespan refused?)"
        assert time.monotonic() < deadline, "uvicorn did not start in time"
        time.sleep(0.01)
    yield LiveServer(listener.getsockname()[1])
    server.should_exit = True
    thread.join(10)
    listener.close()


def test_live_environ(live: LiveServer) -> None:
    connection = live.connect()
    connection.putrequest("GET", "/environ/caf%E9?x=1&y=%C3%A9", skip_accept_encoding=True)
    connection.putheader("X-Multi", "one")
    connection.putheader("X-Multi", "two")
    connection.putheader("Cookie", "a=1")
    connection.putheader("Cookie", "b=2")
    connection.putheader("Content-Type", "text/plain")
    connection.endheaders()
    response = connection.getresponse()
    environ = json.loads(response.read())
    client_port = connection.sock.getsockname()[1]
    connection.close()
    assert response.status == 200
    assert environ["REQUEST_METHOD"] == "GET"
    assert environ["SCRIPT_NAME"] == "/base"
    assert environ["PATH_INFO"] == "/environ/caf\xe9"
    assert environ["QUERY_STRING"] == "x=1&y=%C3%A9"
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert environ["wsgi.url_scheme"] == "http"
    assert environ["HTTP_X_MULTI"] == "one,two"
    assert environ["HTTP_COOKIE"] == "a=1; b=2"
    assert environ["CONTENT_TYPE"] == "text/plain"
    assert environ["HTTP_HOST"] == f"127.0.0.1:{live.port}"
    assert (environ["REMOTE_ADDR"], environ["REMOTE_PORT"]) == ("127.0.0.1", str(client_port))
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("127.0.0.1", str(live.port))


def test_live_streams_both_ways(live: LiveServer) -> None:
    connection = live.connect()
    connection.putrequest("POST", "/echo", skip_accept_encoding=True)
    connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()

    def send_chunk(data: bytes) -> None:
        connection.send(b"%x\r\n%s\r\n" % (len(data), data))

    send_chunk(b"first\n")
    response = connection.getresponse()
    assert response.status == 200
    # The echo of the first line arrives while the request is still open.
    assert response.read(len(b"echo:first\n")) == b"echo:first\n"
    send_chunk(b"sec")
    send_chunk(b"ond\nthird")
    assert response.read(len(b"echo:second\n")) == b"echo:second\n"
    connection.send(b"0\r\n\r\n")
    assert response.read() == b"echo:third"
    connection.close()
    live.assert_serving()


def test_live_large_upload(live: LiveServer) -> None:
    body = bytes(range(256)) * 40_000  # 10 MB, far more than is ever buffered
    status, _, answer = live.request("POST", "/upload", body)
    assert (status, answer) == (200, b"%d:%s" % (len(body), body[:16]))


def test_live_backpressure_then_disconnect(live: LiveServer) -> None:
    token = uuid.uuid4().hex
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.settimeout(10)
    client.connect(("127.0.0.1", live.port))
    client.sendall(b"GET /big?t=%s HTTP/1.1\r\nHost: test\r\n\r\n" % token.encode())
    assert client.recv(4096).startswith(b"HTTP/1.1 200")
    record = RECORDS[token]
    # The client reads nothing: production stalls (no change for 0.3 s) far
    # below the 400 chunks (25 MiB) the application could produce.
    deadline = time.monotonic() + 5
    while True:
        produced = record["produced"]
        time.sleep(0.3)
        if record["produced"] == produced:
            break
        assert time.monotonic() < deadline, "the application was drained without a reader"
    assert produced < 120
    idle_before = MAIN_APP.idle_workers
    closed_by_client = time.monotonic()
    client.close()
    assert record["closed"].wait(2)
    assert record["closed_at"] - closed_by_client < 1
    assert record["produced"] < 400
    _wait_for(lambda: MAIN_APP.idle_workers > idle_before)
    live.assert_serving()


def _wait_for(condition: Callable[[], bool], timeout: float = 3) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_live_disconnect_closes_the_iterable_and_frees_the_worker(live: LiveServer) -> None:
    token = uuid.uuid4().hex
    connection = live.connect()
    connection.request("GET", f"/ticker?t={token}")
    response = connection.getresponse()
    assert response.read(5) == b"tick\n"
    record = RECORDS[token]
    idle_before = MAIN_APP.idle_workers
    closed_by_client = time.monotonic()
    connection.sock.shutdown(socket.SHUT_RDWR)
    connection.close()
    assert record["closed"].wait(2), "close() was not called"
    assert record["closed_at"] - closed_by_client < 1
    _wait_for(lambda: MAIN_APP.idle_workers == idle_before + 1)
    # The freed worker is the one the next request gets.
    status, _, worker = live.request("GET", "/ping")
    assert (status, int(worker)) == (200, record["worker"])


def test_live_limits(live: LiveServer) -> None:
    many = [(f"X-Header-{n}", "v") for n in range(21)]
    status, _, body = live.request("GET", "/limited/ping", headers=many)
    assert status == 431
    live.assert_serving()

    repeated = [("X-Same", "v")] * 4
    status, _, body = live.request("GET", "/limited/ping", headers=repeated)
    assert (status, body) == (400, b"Bad Request: Too many duplicate headers")
    live.assert_serving()

    # The connection survives a 413: the server drains the unread body.
    connection = live.connect()
    connection.request("POST", "/limited/upload", body=b"x" * 100_000)
    response = connection.getresponse()
    assert (response.status, response.read()) == (
        413,
        b"Content Too Large: the request body exceeds 1000 bytes",
    )
    connection.request("GET", "/ping")
    assert connection.getresponse().status == 200
    connection.close()

    status, _, body = live.request("POST", "/limited/upload", b"x" * 1000)
    assert (status, body) == (200, b"1000:" + b"x" * 16)

    connection = live.connect()
    chunks = iter([b"x" * 600, b"x" * 600, b"x" * 600])
    connection.request("POST", "/limited/upload", body=chunks, encode_chunked=True)
    response = connection.getresponse()
    assert response.status == 413
    response.read()
    connection.close()
    live.assert_serving()


def test_live_body_longer_than_content_length(live: LiveServer) -> None:
    client = socket.create_connection(("127.0.0.1", live.port), timeout=10)
    client.sendall(b"POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhelloEXTRA")
    response = http.client.HTTPResponse(client)
    response.begin()
    assert (response.status, response.read()) == (200, b"5:hello")
    client.close()
    live.assert_serving()


def test_live_malformed_response_header_is_a_500(live: LiveServer) -> None:
    status, headers, _ = live.request("GET", "/bad-header")
    assert status == 500
    assert "X-Bad" not in headers
    assert "Set-Cookie" not in headers
    live.assert_serving()
