"""AsgiToWsgi: an ASGI application served by real WSGI servers.

* Direct calls (both modes): the scope built from an environ, lifespan
  modes, closing the response early, ASGI 2 applications.
* An in-process server (both modes): gevent's ``pywsgi`` in the patched run,
  werkzeug's threaded server in the plain one, with real HTTP clients:
  streaming both ways, backpressure, disconnects, errors, concurrency.
* ``gunicorn -k gevent`` in a subprocess (once, in the plain run): one
  worker serving many requests at once without a thread each, lifespan once
  per process, disconnects, Django's ASGI handler.
* Cut-off uploads (raw sockets that close, half-close or reset mid-body)
  under the in-process servers and ``gunicorn -k gthread / gevent /
  gevent_pywsgi / sync``: ``http.disconnect`` at once, a clean end of the
  WSGI call, the worker process kept.

The application is tests/asgi_to_wsgi_app.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import io
import json
import logging
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asgi_to_wsgi_app as sample
import pytest
from services import Service, at_once, gunicorn, http_get, wait_until

from asgigreen import hubs
from asgigreen.asgi_to_wsgi import AsgiToWsgi, LifespanFailed

pytestmark = pytest.mark.timeout(180)

TESTS_DIR = Path(__file__).resolve().parent

GEVENT_MODE = hubs.get_hub().name == "gevent"


def environ_for(path: str = "/", method: str = "GET", body: bytes = b"", **extra: Any) -> Any:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "40000",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if body:
        environ["CONTENT_LENGTH"] = str(len(body))
    environ.update(extra)
    return environ


class Answer:
    """What a direct call produced."""

    def __init__(self) -> None:
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Any:
        self.status, self.headers = status, headers
        return lambda data: None


def call(application: Any, environ: Any) -> tuple[Answer, bytes]:
    answer = Answer()
    result = application(environ, answer.start_response)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return answer, body


async def tiny(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers HTTP with the request body; has no lifespan support."""
    if scope["type"] != "http":
        raise RuntimeError(f"no {scope['type']} here")
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"x-len", b"%d" % len(body))]}
    )
    await send({"type": "http.response.body", "body": body or b"empty"})


# -- the scope, from an environ ------------------------------------------------------


def test_scope_follows_the_environ() -> None:
    adapter = AsgiToWsgi(tiny, lifespan="off")
    environ = environ_for(
        "/caf\xc3\xa9 x",
        "post",
        SCRIPT_NAME="/app",
        QUERY_STRING="a=%20b&c=\xe9",
        SERVER_PROTOCOL="HTTP/1.0",
        SERVER_NAME="example.org",
        SERVER_PORT="8443",
        REMOTE_ADDR="10.0.0.1",
        REMOTE_PORT="5555",
        CONTENT_TYPE="text/plain",
        CONTENT_LENGTH="",
        HTTP_X_FORWARDED_FOR="1.2.3.4",
        HTTP_CONTENT_TYPE="ignored/duplicate",
        HTTP_ACCEPT_LANGUAGE="en",
        **{"wsgi.url_scheme": "https"},
    )
    scope = adapter.build_scope(environ)
    assert scope["type"] == "http"
    assert scope["asgi"]["version"] == "3.0"
    assert scope["method"] == "POST"
    assert scope["http_version"] == "1.0"
    assert scope["scheme"] == "https"
    # path: SCRIPT_NAME + PATH_INFO, decoded from the latin-1 of the UTF-8 bytes.
    assert scope["path"] == "/app/café x"
    assert scope["root_path"] == "/app"
    assert scope["raw_path"] == b"/app/caf%C3%A9%20x"
    assert scope["query_string"] == b"a=%20b&c=\xe9"
    assert scope["server"] == ("example.org", 8443)
    assert scope["client"] == ("10.0.0.1", 5555)
    assert sorted(scope["headers"]) == [
        (b"accept-language", b"en"),
        (b"content-type", b"text/plain"),
        (b"x-forwarded-for", b"1.2.3.4"),
    ]
    assert "state" not in scope  # lifespan is off


def test_scope_raw_path_prefers_the_server_raw_uri_and_tolerates_gaps() -> None:
    adapter = AsgiToWsgi(tiny, lifespan="off")
    environ = environ_for("/a b", RAW_URI="/a%20b?q=1", SERVER_PORT="", REMOTE_PORT="x")
    del environ["REMOTE_ADDR"]
    scope = adapter.build_scope(environ)
    assert scope["raw_path"] == b"/a%20b"
    assert scope["server"] == ("testserver", 0)
    assert "client" not in scope
    environ = environ_for("/", REMOTE_PORT="x")
    assert adapter.build_scope(environ)["client"] == ("127.0.0.1", 0)


def test_scope_headers_keep_empty_values_and_many_distinct_names_stay_correct() -> None:
    from asgigreen import asgi_to_wsgi as module

    adapter = AsgiToWsgi(tiny, lifespan="off")
    environ = environ_for("/", HTTP_X_EMPTY="", CONTENT_TYPE="", HTTP_X_SEEN="1")
    headers = adapter.build_scope(environ)["headers"]
    assert (b"x-empty", b"") in headers
    assert (b"x-seen", b"1") in headers
    assert not any(name == b"content-type" for name, _ in headers)
    # Clients choose header names: the conversions remembered stay bounded,
    # and names past the bound still convert.
    many = {f"HTTP_X_NAME_{n}": str(n) for n in range(3 * module._CACHE_LIMIT)}
    headers = adapter.build_scope(environ_for("/", **many))["headers"]
    assert len(module._request_names) <= module._CACHE_LIMIT
    last = 3 * module._CACHE_LIMIT - 1
    assert (f"x-name-{last}".encode(), str(last).encode()) in headers
    assert sum(name.startswith(b"x-name-") for name, _ in headers) == len(many)


# -- direct calls ----------------------------------------------------------------------


def test_direct_call_body_both_ways() -> None:
    adapter = AsgiToWsgi(tiny)  # "auto": the app refusing lifespan is fine
    answer, body = call(adapter, environ_for("/", "POST", b"x" * 200_000))
    assert answer.status == "200 OK"
    assert ("x-len", "200000") in answer.headers
    assert body == b"x" * 200_000
    answer, body = call(adapter, environ_for("/"))
    assert body == b"empty"


def test_chunked_request_body_without_content_length() -> None:
    adapter = AsgiToWsgi(tiny, lifespan="off", body_chunk_size=1000)
    environ = environ_for("/", "POST", **{"wsgi.input_terminated": True})
    environ["wsgi.input"] = io.BytesIO(b"y" * 2500)
    answer, body = call(adapter, environ)
    assert ("x-len", "2500") in answer.headers
    # No length and no input_terminated: no body (PEP 3333).
    environ = environ_for("/", "POST")
    environ["wsgi.input"] = io.BytesIO(b"never read")
    answer, body = call(adapter, environ)
    assert body == b"empty"


def test_asgi2_application() -> None:
    class Application:
        def __init__(self, scope: dict[str, Any]) -> None:
            self.scope = scope

        async def __call__(self, receive: Any, send: Any) -> None:
            if self.scope["type"] == "lifespan":
                raise RuntimeError("no lifespan")
            await send({"type": "http.response.start", "status": 418, "headers": []})
            await send({"type": "http.response.body", "body": b"double"})

    answer, body = call(AsgiToWsgi(Application), environ_for("/"))
    assert (answer.status, body) == ("418 I'm a Teapot", b"double")


def _lifespan_app(
    startup: Callable[[Any], Any] | None = None,
    events: list[str] | None = None,
) -> Any:
    async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if events is not None:
                    events.append(message["type"])
                if message["type"] == "lifespan.startup":
                    if startup is not None:
                        await startup(send)
                        continue
                    scope["state"]["ready"] = True
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        state = scope.get("state")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": json.dumps(state).encode()})

    return application


def test_lifespan_runs_once_and_shares_its_state() -> None:
    events: list[str] = []
    adapter = AsgiToWsgi(_lifespan_app(events=events))
    for _ in range(3):
        _, body = call(adapter, environ_for("/"))
        assert json.loads(body) == {"ready": True}
    assert events == ["lifespan.startup"]
    adapter.shutdown()
    assert events == ["lifespan.startup", "lifespan.shutdown"]
    adapter.shutdown()  # once only
    assert events == ["lifespan.startup", "lifespan.shutdown"]


def test_lifespan_off_and_unsupported() -> None:
    events: list[str] = []
    _, body = call(AsgiToWsgi(_lifespan_app(events=events), lifespan="off"), environ_for("/"))
    assert (json.loads(body), events) == (None, [])
    # "auto": an application that raises on the lifespan scope still serves.
    _, body = call(AsgiToWsgi(tiny), environ_for("/"))
    assert body == b"empty"
    # "on": it must support lifespan.
    with pytest.raises(LifespanFailed, match="not supported"):
        call(AsgiToWsgi(tiny, lifespan="on"), environ_for("/"))


def test_failed_or_stuck_startup_fails_every_request() -> None:
    async def refuse(send: Any) -> None:
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    adapter = AsgiToWsgi(_lifespan_app(startup=refuse))
    for _ in range(2):
        with pytest.raises(LifespanFailed, match="no database"):
            call(adapter, environ_for("/"))

    async def hang(send: Any) -> None:
        await asyncio.sleep(60)

    adapter = AsgiToWsgi(_lifespan_app(startup=hang), startup_timeout=0.2)
    started = time.monotonic()
    with pytest.raises(LifespanFailed, match="timed out"):
        call(adapter, environ_for("/"))
    assert time.monotonic() - started < 5


def test_closing_early_tells_the_app_and_cancels_it_after_the_grace() -> None:
    seen: dict[str, Any] = {}
    done = threading.Event()

    async def stubborn(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        try:
            message = await receive()
            if message["type"] == "http.request":  # the (empty) body, unless already gone
                message = await receive()
            seen["message"] = message
            await asyncio.sleep(30)  # ignores the disconnect
        except asyncio.CancelledError:
            seen["cancelled"] = True
            raise
        finally:
            done.set()

    adapter = AsgiToWsgi(stubborn, lifespan="off", disconnect_grace=0.2)
    answer = Answer()
    result = adapter(environ_for("/"), answer.start_response)
    assert next(iter(result)) == b"first"
    started = time.monotonic()
    result.close()
    assert time.monotonic() - started < 3
    assert done.wait(1)
    assert seen == {"message": {"type": "http.disconnect"}, "cancelled": True}


def test_send_after_disconnect_raises_and_the_app_ends() -> None:
    outcome: dict[str, Any] = {}

    async def streamer(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            for _ in range(1000):
                await send({"type": "http.response.body", "body": b"chunk", "more_body": True})
        except OSError as exc:
            outcome["error"] = type(exc).__name__

    adapter = AsgiToWsgi(streamer, lifespan="off")
    result = adapter(environ_for("/"), Answer().start_response)
    chunks = iter(result)
    assert next(chunks) == b"chunk"
    result.close()
    assert outcome == {"error": "ClientDisconnected"}


def test_app_errors_surface_where_wsgi_expects_them() -> None:
    adapter = AsgiToWsgi(sample.app)
    # Before the response: raised from the call itself, the server answers 500.
    with pytest.raises(ValueError, match="before the response"):
        adapter(environ_for("/error-before"), Answer().start_response)
    with pytest.raises(RuntimeError, match="without starting a response"):
        adapter(environ_for("/no-response"), Answer().start_response)
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        adapter(environ_for("/bad-header"), Answer().start_response)
    # In the middle: raised from the iterable, the server drops the connection.
    answer = Answer()
    result = adapter(environ_for("/error-after"), answer.start_response)
    chunks = iter(result)
    assert next(chunks) == b"partial"
    with pytest.raises(ValueError, match="middle of the response"):
        next(chunks)
    result.close()
    # And the adapter keeps serving.
    answer, _ = call(adapter, environ_for("/state"))
    assert answer.status == "200 OK"


def test_a_cancelled_app_is_a_runtime_error_for_the_server() -> None:
    """CancelledError is a BaseException: raised to a WSGI server it ends a gthread worker."""
    adapter = AsgiToWsgi(sample.app)
    with pytest.raises(RuntimeError, match="cancelled before it started its response") as raised:
        adapter(environ_for("/cancelled-before"), Answer().start_response)
    assert isinstance(raised.value.__cause__, asyncio.CancelledError)
    result = adapter(environ_for("/cancelled-after"), Answer().start_response)
    chunks = iter(result)
    assert next(chunks) == b"partial"
    with pytest.raises(RuntimeError, match="cancelled in the middle of its response"):
        next(chunks)
    result.close()
    answer, _ = call(adapter, environ_for("/state"))
    assert answer.status == "200 OK"


def test_hop_by_hop_headers_are_dropped() -> None:
    answer, body = call(AsgiToWsgi(sample.app), environ_for("/hop-by-hop"))
    assert answer.status == "201 Created"
    assert answer.headers == [("x-kept", "1")]
    assert body == b"hop"


@pytest.mark.gevent_only
def test_an_interrupted_worker_cancels_the_app() -> None:
    import gevent

    cancelled = threading.Event()

    async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            while True:
                await asyncio.sleep(0.05)
                await send({"type": "http.response.body", "body": b".", "more_body": True})
        except asyncio.CancelledError:
            cancelled.set()
            raise

    result = AsgiToWsgi(slow, lifespan="off")(environ_for("/"), Answer().start_response)
    with pytest.raises(gevent.Timeout), gevent.Timeout(0.3):
        for _ in result:
            pass
    assert cancelled.wait(2)


@pytest.mark.gevent_only
def test_a_worker_interrupted_before_the_response_starts_cancels_the_app() -> None:
    import gevent

    cancelled = threading.Event()

    async def hesitant(scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    adapter = AsgiToWsgi(hesitant, lifespan="off")
    began = time.monotonic()
    with pytest.raises(gevent.Timeout), gevent.Timeout(0.2):
        adapter(environ_for("/"), Answer().start_response)
    assert time.monotonic() - began < 2
    assert cancelled.wait(2)
    # The loop every request shares still serves.
    answer, body = call(AsgiToWsgi(tiny, lifespan="off"), environ_for("/", "POST", b"still"))
    assert answer.status.startswith("200")
    assert body == b"still"


# -- an in-process server ------------------------------------------------------------


def mounted(application: Any, impatient: Any = None) -> Any:
    """WSGI middleware mounting the application at /mount as well (SCRIPT_NAME).

    ``impatient``, if given, serves the paths under /impatient/ instead.
    """

    def wrapper(environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if impatient is not None and path.startswith("/impatient/"):
            environ["PATH_INFO"] = path[len("/impatient") :]
            return impatient(environ, start_response)
        if path.startswith("/mount/"):
            environ["SCRIPT_NAME"] = "/mount"
            environ["PATH_INFO"] = path[len("/mount") :]
        return application(environ, start_response)

    return wrapper


class Server:
    def __init__(self, port: int, name: str) -> None:
        self.port = port
        self.name = name

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)

    def request(
        self, method: str, path: str, body: Any = None, headers: Any = ()
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        connection = self.connect()
        try:
            connection.request(method, path, body=body, headers=dict(headers))
            response = connection.getresponse()
            return response.status, response.headers, response.read()
        finally:
            connection.close()

    def json(self, path: str) -> Any:
        status, _, body = self.request("GET", path)
        assert status == 200, (status, body)
        return json.loads(body)

    def assert_serving(self) -> None:
        assert self.json("/state")["startups"] >= 1


#: ``disconnect_grace`` of the sample application the server fixture serves at /impatient/.
IMPATIENT_GRACE = 0.3


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    impatient = AsgiToWsgi(sample.app, disconnect_grace=IMPATIENT_GRACE)
    application = mounted(sample.application, impatient)
    if GEVENT_MODE:
        from gevent.pywsgi import WSGIServer

        gevent_server = WSGIServer(("127.0.0.1", 0), application, log=None)
        gevent_server.start()
        try:
            yield Server(gevent_server.server_port, "gevent.pywsgi")
        finally:
            gevent_server.stop(timeout=2)
    else:
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        werkzeug_server = make_server("127.0.0.1", 0, application, threaded=True)
        thread = threading.Thread(target=werkzeug_server.serve_forever, daemon=True)
        thread.start()
        try:
            yield Server(werkzeug_server.server_port, "werkzeug")
        finally:
            werkzeug_server.shutdown()
            thread.join(5)


def test_live_scope_and_lifespan(server: Server) -> None:
    connection = server.connect()
    connection.request(
        "POST",
        "/mount/scope/caf%C3%A9?x=1&y=%C3%A9",
        body=b"hello",
        headers={"X-Custom": "yes", "Content-Type": "text/plain"},
    )
    client_port = connection.sock.getsockname()[1]
    response = connection.getresponse()
    scope = json.loads(response.read())
    connection.close()
    assert response.status == 200
    assert response.headers["x-asgi"] == "yes"
    assert scope["method"] == "POST"
    assert scope["http_version"] == "1.1"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/mount/scope/café"
    assert scope["root_path"] == "/mount"
    assert scope["raw_path"] == "/mount/scope/caf%C3%A9"
    assert scope["query_string"] == "x=1&y=%C3%A9"
    assert scope["client"] == ["127.0.0.1", client_port]
    assert scope["server"][1] == server.port
    headers = dict(scope["headers"])
    assert headers["x-custom"] == "yes"
    assert headers["content-type"] == "text/plain"
    assert headers["content-length"] == "5"
    assert headers["host"] == f"127.0.0.1:{server.port}"
    assert scope["body"] == "hello"
    assert scope["state"]["startups"] >= 1
    # Lifespan ran once for this application in this process (no startup per
    # request), and requests run on the loop the lifespan ran on.
    first, second = server.json("/state"), server.json("/state")
    assert first["state"] == second["state"] == scope["state"]
    assert first["startups"] == second["startups"]
    assert first["loop_id"] == second["loop_id"] == first["state"]["loop_id"]


def test_live_request_body_is_read_lazily(server: Server) -> None:
    total = 10 * 1024 * 1024
    client = socket.create_connection(("127.0.0.1", server.port), timeout=15)
    try:
        client.sendall(
            b"POST /first-chunk HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n" % total
        )
        client.sendall(b"x" * 65536)
        # The answer comes while 10 MB minus 64 KiB have not even been sent.
        response = http.client.HTTPResponse(client)
        response.begin()
        assert response.status == 200
        assert json.loads(response.read()) == {"first": 65536, "more": True}
    finally:
        client.close()
    server.assert_serving()


def test_live_large_uploads_stream_in_bounded_chunks(server: Server) -> None:
    body = bytes(range(256)) * 80_000  # 20 MB
    status, _, answer = server.request("POST", "/upload", body)
    result = json.loads(answer)
    assert status == 200
    assert result["length"] == len(body)
    assert result["largest"] <= 65536
    assert result["chunks"] >= len(body) // 65536

    connection = server.connect()
    connection.request("POST", "/upload", body=iter([b"a" * 100_000] * 5), encode_chunked=True)
    response = connection.getresponse()
    assert json.loads(response.read())["length"] == 500_000
    connection.close()


def test_live_response_streams_as_the_app_sends(server: Server) -> None:
    token = uuid.uuid4().hex
    connection = server.connect()
    connection.request("GET", f"/stream?t={token}&n=5&interval=0.3")
    response = connection.getresponse()
    assert response.read(6) == b"00000\n"
    # The first chunk is here while the application is still producing.
    assert sample.RECORDS["streams"][token]["sent"] < 5
    assert response.read() == b"".join(b"%05d\n" % n for n in range(1, 5))
    connection.close()


def _wait_for(condition: Callable[[], Any], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_live_backpressure_then_disconnect(server: Server) -> None:
    token = uuid.uuid4().hex
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.settimeout(15)
    client.connect(("127.0.0.1", server.port))
    client.sendall(
        b"GET /stream?t=%s&size=65536&interval=0&n=3000 HTTP/1.1\r\nHost: t\r\n\r\n"
        % token.encode()
    )
    assert client.recv(4096).startswith(b"HTTP/1.1 200")
    _wait_for(lambda: token in sample.RECORDS["streams"])
    record = sample.RECORDS["streams"][token]
    # Nobody reads: production stalls far below the 3000 chunks (190 MB).
    deadline = time.monotonic() + 10
    while True:
        sent = record["sent"]
        time.sleep(0.3)
        if record["sent"] == sent:
            break
        assert time.monotonic() < deadline, "the application was never held back"
    assert sent < 200
    closed_at = time.monotonic()
    client.close()
    _wait_for(lambda: record["done"], timeout=3)
    noticed = record["disconnect"] or record["send_error"][0]
    assert noticed - closed_at < 1.0
    assert record["send_error"][1] == "ClientDisconnected"
    server.assert_serving()


def test_live_disconnect_mid_stream_reaches_the_app(server: Server) -> None:
    token = uuid.uuid4().hex
    connection = server.connect()
    connection.request("GET", f"/stream?t={token}&interval=0.02")
    sock = connection.sock
    response = connection.getresponse()
    assert response.read(6) == b"00000\n"
    record = sample.RECORDS["streams"][token]
    closed_at = time.monotonic()
    sock.shutdown(socket.SHUT_RDWR)
    sock.close()
    response.close()
    connection.close()
    _wait_for(lambda: record["done"], timeout=3)
    assert record["disconnect"] is not None
    assert record["disconnect"] - closed_at < 1.0
    server.assert_serving()


def test_live_errors_and_the_server_keeps_serving(server: Server) -> None:
    for path in ("/error-before", "/no-response", "/bad-header"):
        status, headers, _ = server.request("GET", path)
        assert status == 500, path
        assert "set-cookie" not in headers
        server.assert_serving()
    connection = server.connect()
    connection.request("GET", "/error-after")
    response = connection.getresponse()
    assert response.status == 200
    # The server drops the connection: a chunked body stays unterminated, a
    # close-delimited one (werkzeug's) ends with whatever the server adds.
    try:
        rest = response.read()
    except (http.client.IncompleteRead, ConnectionError):
        pass
    else:
        assert rest.startswith(b"partial") and server.name == "werkzeug"
    connection.close()
    server.assert_serving()


def test_live_body_longer_than_content_length(server: Server) -> None:
    client = socket.create_connection(("127.0.0.1", server.port), timeout=15)
    try:
        client.sendall(
            b"POST /upload HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
            b"Content-Length: 5\r\n\r\nhelloEXTRA"
        )
        response = http.client.HTTPResponse(client)
        response.begin()
        assert (response.status, json.loads(response.read())["length"]) == (200, 5)
    finally:
        client.close()
    server.assert_serving()


# -- cut-off uploads: the client leaves while the application reads the body --------

#: How a client cuts off its upload: FIN, half-close (it still reads the answer), RST.
CUT_OFFS = ("close", "shutdown", "reset")
#: What the application does once it heard http.disconnect (see asgi_to_wsgi_app.cut_upload).
AFTER_DISCONNECT = ("raise", "return", "respond")
CUT_HEADERS = (
    b"POST %s HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\n"
    b"Content-Length: 1000000\r\n\r\n"
)


def cut_upload(port: int, path: str, how: str, reading: Callable[[], Any]) -> tuple[float, Any]:
    """Send the headers of a 1 MB upload and 100 kB of it, then cut the connection.

    ``reading()`` tells when the application has the first piece (it then
    waits in receive() for more). Returns when the cut happened
    (``time.monotonic()``) and, for a half-close, the (status, body) that
    still came back, or the error reading it raised.
    """
    client = socket.create_connection(("127.0.0.1", port), timeout=15)
    try:
        client.sendall(CUT_HEADERS % path.encode())
        client.sendall(b"u" * 100_000)
        _wait_for(reading, timeout=10)
        closed_at = time.monotonic()
        if how == "reset":
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        if how != "shutdown":
            return closed_at, None
        client.shutdown(socket.SHUT_WR)
        response = http.client.HTTPResponse(client)
        try:
            response.begin()
            return closed_at, (response.status, response.read())
        except (OSError, http.client.HTTPException) as exc:
            return closed_at, repr(exc)
    finally:
        client.close()


def test_live_cut_off_uploads_hear_disconnect_at_once(server: Server) -> None:
    """Each way of cutting an upload off is http.disconnect for receive(), at once.

    gevent.pywsgi's ``wsgi.input`` raises (an IOError for the short body,
    ConnectionResetError for the RST); werkzeug's returns short, then b"".
    """
    latencies = []
    for number, how in enumerate(CUT_OFFS * len(AFTER_DISCONNECT)):
        then = AFTER_DISCONNECT[number // len(CUT_OFFS)]
        token = uuid.uuid4().hex
        closed_at, answer = cut_upload(
            server.port,
            f"/upload-cut?t={token}&then={then}",
            how,
            lambda token=token: sample.RECORDS["uploads"].get(token, {}).get("received"),
        )
        record = sample.RECORDS["uploads"][token]
        _wait_for(lambda record=record: record["again"], timeout=3)
        latency = record["disconnect"] - closed_at
        latencies.append(latency)
        assert latency < 1.0, (how, then, latency)
        assert record["again"] == "http.disconnect"  # a later receive() too
        if how == "shutdown":
            # The WSGI call ended cleanly, with an answer the client can still read.
            assert isinstance(answer, tuple) and answer[0] == 400, (how, then, answer)
        server.assert_serving()
    print(
        f"\n{server.name}: {len(latencies)} cut-off uploads, http.disconnect after "
        f"{max(latencies) * 1000:.0f} ms at most (disconnect_grace 5 s)"
    )


def test_live_app_ignoring_a_cut_off_upload_is_cancelled_cleanly(server: Server) -> None:
    """Past disconnect_grace the application is cancelled; the server sees a clean end."""
    for how in CUT_OFFS:
        token = uuid.uuid4().hex
        closed_at, answer = cut_upload(
            server.port,
            f"/impatient/upload-cut?t={token}&then=ignore",
            how,
            lambda token=token: sample.RECORDS["uploads"].get(token, {}).get("received"),
        )
        record = sample.RECORDS["uploads"][token]
        _wait_for(lambda record=record: record.get("cancelled"), timeout=5)
        assert record["disconnect"] - closed_at < 1.0
        waited = record["cancelled"] - record["disconnect"]
        assert IMPATIENT_GRACE * 0.8 < waited < IMPATIENT_GRACE + 2, waited
        if how == "shutdown":
            # No CancelledError out of the WSGI call: it answered.
            assert isinstance(answer, tuple) and answer[0] == 400, answer
        server.assert_serving()


def test_live_receive_cancelled_while_a_piece_is_on_its_way_loses_none(server: Server) -> None:
    """A receive() cancelled at its first wait (Starlette's is_disconnected()) drops no body."""
    body = b"p" * 300_000  # 5 pieces of at most 64 KiB
    status, _, answer = server.request("POST", "/probing-upload", body)
    assert status == 200
    assert json.loads(answer)["length"] == len(body)


def test_live_cancelled_app_is_a_500_and_the_server_keeps_serving(server: Server) -> None:
    status, _, _ = server.request("GET", "/cancelled-before")
    assert status == 500
    server.assert_serving()


def test_live_thread_sensitive_sync_code_runs_off_the_loop(server: Server) -> None:
    assert server.json("/sync") == {"on_loop": False}


def test_live_many_requests_at_once(server: Server) -> None:
    # A first burst lets this process's own clients start what they need
    # (gevent resolves names on a pool of native threads).
    warm_up, _ = at_once(50, lambda: server.json("/sleep?s=0"))
    baseline = max(result["threads"] for result in warm_up)
    results, elapsed = at_once(50, lambda: server.json("/sleep?s=0.3"))
    assert all(isinstance(result, dict) for result in results), results[:3]
    assert len(results) == 50
    assert elapsed < 5, f"50 requests sleeping 0.3 s took {elapsed:.2f} s: not concurrent"
    if GEVENT_MODE:
        # Cooperative: no OS thread per request.
        assert max(result["threads"] for result in results) <= baseline + 2


# -- gunicorn -k gevent in a subprocess ---------------------------------------------------


@contextlib.contextmanager
def gunicorn_gevent(app: str, tmp_path: Path, env: dict[str, str]) -> Iterator[tuple[int, Service]]:
    with gunicorn(app, "gevent", env, tmp_path) as (port, service):
        wait_until(lambda: http_get(port, "/state", timeout=5)[0] == 200, "gunicorn", service)
        yield port, service


def _child_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ASGIGREEN_HUB", "PYTHONPATH")}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS_DIR), str(tmp_path)])
    env["A2W_EVENTS"] = str(tmp_path / "events")
    env.update(extra)
    return env


def _events(tmp_path: Path) -> list[str]:
    try:
        return (tmp_path / "events").read_text().split("\n")[:-1]
    except FileNotFoundError:
        return []


@pytest.mark.threads_only
def test_gunicorn_gevent_one_worker_serves_many_at_once(tmp_path: Path) -> None:
    with gunicorn_gevent("asgi_to_wsgi_app:application", tmp_path, _child_env(tmp_path)) as (
        port,
        service,
    ):
        baseline = json.loads(http_get(port, "/sleep?s=0")[1])["threads"]
        answers: list[Any] = []

        def client() -> None:
            try:
                status, body = http_get(port, "/sleep?s=0.5", timeout=30)
                answers.append(json.loads(body) if status == 200 else status)
            except Exception as exc:
                answers.append(exc)

        clients = [threading.Thread(target=client) for _ in range(100)]
        started = time.monotonic()
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join(60)
        elapsed = time.monotonic() - started
        assert len(answers) == 100
        assert all(isinstance(answer, dict) for answer in answers), answers[:3]
        assert len({answer["pid"] for answer in answers}) == 1
        # 100 requests of 0.5 s in one worker: together, not one after another.
        assert elapsed < 5, f"took {elapsed:.2f} s"
        assert max(answer["threads"] for answer in answers) <= baseline + 2
        pid = answers[0]["pid"]
    # Lifespan: startup once in the worker, shutdown when it exited.
    events = _events(tmp_path)
    assert events.count(f"{pid} startup") == 1, events
    assert f"{pid} shutdown" in events, (events, service.output()[-3000:])
    assert "Traceback" not in service.output()


@pytest.mark.threads_only
def test_gunicorn_gevent_streams_and_notices_disconnects(tmp_path: Path) -> None:
    with gunicorn_gevent("asgi_to_wsgi_app:application", tmp_path, _child_env(tmp_path)) as (
        port,
        service,
    ):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        connection.request("GET", "/stream?t=live&n=5&interval=0.2")
        response = connection.getresponse()
        first_at = time.monotonic()
        assert response.read(6) == b"00000\n"
        assert response.read() == b"".join(b"%05d\n" % n for n in range(1, 5))
        assert time.monotonic() - first_at > 0.5  # the rest came later: streamed
        connection.close()

        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        connection.request("GET", "/stream?t=gone&interval=0.02")
        sock = connection.sock
        response = connection.getresponse()
        assert response.read(6) == b"00000\n"
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        response.close()
        connection.close()
        closed_at = time.monotonic()
        wait_until(
            lambda: any(e.endswith("disconnect gone") for e in _events(tmp_path)),
            "disconnect",
            service,
            5,
        )
        assert time.monotonic() - closed_at < 2

        body = b"z" * 3_000_000
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        connection.request("POST", "/upload", body=body)
        result = json.loads(connection.getresponse().read())
        connection.close()
        assert result["length"] == len(body) and result["largest"] <= 65536

        for path in ("/error-before", "/no-response"):
            assert http_get(port, path)[0] == 500
        assert http_get(port, "/state")[0] == 200


#: gunicorn workers that serve AsgiToWsgi: threads hub (gthread, sync), gevent hub (the others).
CUT_WORKER_CLASSES = ("gthread", "gevent", "gevent_pywsgi", "sync")
#: Lines a clean end of every WSGI call leaves out of gunicorn's log (at --log-level info).
UNCLEAN = ("Traceback", "CancelledError", "Error handling request", "Socket error processing")


def _event_time(tmp_path: Path, prefix: str) -> float | None:
    """The time on the first event line starting with ``prefix`` (after the pid), if any."""
    for line in _events(tmp_path):
        _, _, event = line.partition(" ")
        if event.startswith(prefix):
            return float(event.split()[2])
    return None


def _cut_uploads_under_gunicorn(
    port: int, service: Service, tmp_path: Path, cuts: list[tuple[str, str]], wait: str
) -> dict[str, Any]:
    """Each (how, then) of ``cuts`` once, then a normal request; what came of it.

    ``wait`` is the event awaited after each cut (``upload-disconnect`` or
    ``upload-cancelled``), for at most 3 s, well under the default
    disconnect_grace of 5 s.
    """
    seen: dict[str, Any] = {"latencies": [], "waited": [], "answers": [], "pids": []}
    for how, then in cuts:
        token = uuid.uuid4().hex
        closed_at, answer = cut_upload(
            port,
            f"/upload-cut?t={token}&then={then}",
            how,
            lambda token=token: any(
                e.endswith(f" upload-reading {token}") for e in _events(tmp_path)
            ),
        )
        deadline = time.monotonic() + 3
        while _event_time(tmp_path, f"{wait} {token}") is None and time.monotonic() < deadline:
            time.sleep(0.01)
        heard = _event_time(tmp_path, f"upload-disconnect {token}")
        seen["latencies"].append(None if heard is None else heard - closed_at)
        cancelled = _event_time(tmp_path, f"upload-cancelled {token}")
        seen["waited"].append(None if cancelled is None or heard is None else cancelled - heard)
        again = [e for e in _events(tmp_path) if f"upload-disconnect {token} " in e]
        seen.setdefault("again", []).append(again[0].split()[-1] if again else None)
        if how == "shutdown":
            seen["answers"].append(answer[0] if isinstance(answer, tuple) else answer)
        try:
            status, body = http_get(port, "/state", timeout=30)
            seen["pids"].append(json.loads(body)["pid"] if status == 200 else status)
        except Exception as exc:
            seen["pids"].append(repr(exc))
    log = service.output()
    seen["boots"] = log.count("Booting worker")
    seen["unclean"] = {marker: log.count(marker) for marker in UNCLEAN if marker in log}
    return seen


@pytest.mark.threads_only
@pytest.mark.timeout(300)
@pytest.mark.parametrize("worker_class", CUT_WORKER_CLASSES)
def test_gunicorn_cut_off_uploads_hear_disconnect_and_the_worker_survives(
    tmp_path: Path, worker_class: str
) -> None:
    """11 uploads cut off while the application waits in receive() (the issue's figure)."""
    cuts = [
        (CUT_OFFS[n % len(CUT_OFFS)], AFTER_DISCONNECT[(n // len(CUT_OFFS)) % 3]) for n in range(11)
    ]
    env = _child_env(tmp_path)
    with gunicorn(
        "asgi_to_wsgi_app:application", worker_class, env, tmp_path, "--log-level", "info"
    ) as (port, service):
        wait_until(lambda: http_get(port, "/state", timeout=5)[0] == 200, "gunicorn", service)
        pid = json.loads(http_get(port, "/state")[1])["pid"]
        seen = _cut_uploads_under_gunicorn(port, service, tmp_path, cuts, "upload-disconnect")
        output = service.output()
    heard = [latency for latency in seen["latencies"] if latency is not None]
    print(
        f"\ngunicorn -k {worker_class}: {len(cuts)} cut-off uploads; http.disconnect seen "
        f"{len(heard)}/{len(cuts)}, at most {max(heard, default=float('nan')) * 1000:.0f} ms "
        f"after the cut; worker exits {seen['boots'] - 1}; same worker after each: "
        f"{seen['pids'].count(pid)}/{len(cuts)}; half-closed clients got {seen['answers']}; "
        f"unclean log lines {seen['unclean']}"
    )
    assert len(heard) == len(cuts), seen
    assert max(heard) < 1.0, seen  # disconnect_grace is 5 s
    assert seen["again"] == ["http.disconnect"] * len(cuts), seen
    assert seen["pids"] == [pid] * len(cuts), (seen, output[-3000:])
    assert seen["boots"] == 1, output[-3000:]
    assert seen["answers"] == [400] * sum(how == "shutdown" for how, _ in cuts), seen
    assert not seen["unclean"], output[-5000:]


@pytest.mark.threads_only
@pytest.mark.timeout(120)
@pytest.mark.parametrize("worker_class", CUT_WORKER_CLASSES)
def test_gunicorn_app_ignoring_a_cut_off_upload_is_cancelled_and_the_worker_survives(
    tmp_path: Path, worker_class: str
) -> None:
    """Cancelled after disconnect_grace: no CancelledError reaches gunicorn."""
    cuts = [(how, "ignore") for how in CUT_OFFS]
    env = _child_env(tmp_path, A2W_DISCONNECT_GRACE="0.5")
    with gunicorn(
        "asgi_to_wsgi_app:application", worker_class, env, tmp_path, "--log-level", "info"
    ) as (port, service):
        wait_until(lambda: http_get(port, "/state", timeout=5)[0] == 200, "gunicorn", service)
        pid = json.loads(http_get(port, "/state")[1])["pid"]
        seen = _cut_uploads_under_gunicorn(port, service, tmp_path, cuts, "upload-cancelled")
        output = service.output()
    print(
        f"\ngunicorn -k {worker_class}, app ignoring the disconnect: cancelled after "
        f"{seen['waited']} s (grace 0.5 s); worker exits {seen['boots'] - 1}; "
        f"half-closed client got {seen['answers']}; unclean log lines {seen['unclean']}"
    )
    assert all(latency is not None and latency < 1.0 for latency in seen["latencies"]), seen
    assert all(w is not None and 0.4 < w < 2.5 for w in seen["waited"]), seen
    assert seen["pids"] == [pid] * len(cuts), (seen, output[-3000:])
    assert seen["boots"] == 1, output[-3000:]
    assert seen["answers"] == [400], seen
    assert not seen["unclean"], output[-5000:]


DJANGO_ENTRY = """
import asgigreen

asgigreen.patch_all()  # gunicorn's gevent worker patched already: alias and hub

from django.core.asgi import get_asgi_application

from asgigreen.wsgi import AsgiToWsgi

application = AsgiToWsgi(get_asgi_application())
"""


@pytest.mark.threads_only
def test_django_asgi_handler_under_gunicorn_gevent(tmp_path: Path) -> None:
    (tmp_path / "django_via_wsgi.py").write_text(DJANGO_ENTRY)
    env = _child_env(
        tmp_path,
        DJANGO_SETTINGS_MODULE="djangoproject.settings",
        DJANGO_TEST_DB=str(tmp_path / "db.sqlite3"),
    )
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--verbosity", "0"],
        env=env,
        cwd=TESTS_DIR,
        check=True,
        timeout=120,
    )
    with gunicorn("django_via_wsgi:application", "gevent", env, tmp_path) as (port, service):
        wait_until(lambda: http_get(port, "/notes/", timeout=5)[0] == 200, "django", service)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("POST", "/notes/", body=json.dumps({"text": "via wsgi"}))
        created = connection.getresponse()
        assert created.status == 201, created.read()
        assert json.loads(created.read())["on_loop"] is False
        connection.close()
        status, body = http_get(port, "/async-notes/")
        result = json.loads(body)
        assert status == 200
        assert result["texts"] == ["via wsgi"]
        assert result["on_loop"] is True and result["guarded"] is True
        # Async views of one worker run together.
        answers: list[int] = []

        def client() -> None:
            answers.append(http_get(port, "/async-sleep/?delay=0.5", timeout=30)[0])

        clients = [threading.Thread(target=client) for _ in range(50)]
        started = time.monotonic()
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join(60)
        assert answers == [200] * 50
        assert time.monotonic() - started < 5
        assert "Traceback" not in service.output(), service.output()[-3000:]
