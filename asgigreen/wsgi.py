"""Serve a WSGI application from an ASGI server.

Each request runs on a worker of its own, taken from a small pool of idle
serial executors (:meth:`~asgigreen.hubs.Hub.serial_executor`): an OS thread
on the threads hub, a greenlet on the gevent hub. The application's call, its
iteration and its ``close()`` all happen on that worker, which also serves
the thread-sensitive ``sync_to_async`` calls the application makes.

The worker and the event loop meet only through the public bridges. The
worker pulls request body data and pushes response messages with
``async_to_sync``, so it waits for each ``send()`` to finish (backpressure)
and never holds more than one response chunk. On the loop, one task reads
``receive()``: it buffers a bounded amount of request body ahead of the
application, and it notices ``http.disconnect``, after which every bridge
call the worker makes raises :class:`ClientDisconnected`, so the response
iterable is closed promptly.

Known limit: while the application neither reads the request body nor
finishes its response, at most 64 KiB of body are read ahead; past that,
``receive()`` is not called, so a disconnect is noticed only once the
application reads the body or the response ends.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote_to_bytes

from . import hubs
from .sync import async_to_sync, sync_to_async

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import WSGIApplication

    from .asgi_to_wsgi import AsgiToWsgi as AsgiToWsgi
    from .typing import ASGIReceiveCallable, ASGISendCallable, Scope

__all__ = [
    "AsgiToWsgi",
    "ClientDisconnected",
    "FileWrapper",
    "RequestBodyTooLarge",
    "WsgiToAsgi",
    "WsgiToAsgiInstance",
]

_Message = dict[str, Any]
_Receive = Callable[[], Any]
_Send = Callable[[_Message], Any]

# Request body read ahead of the application, at most (plus one message).
_BODY_BUFFER_LIMIT = 64 * 1024
# Smallest block wsgi.file_wrapper reads: every block costs one trip to the
# event loop, so tiny blocks (Django asks for 4 KiB) would be slow.
_FILE_BLOCK_SIZE = 64 * 1024
_DEFAULT_MAX_REQUEST_HEADERS = 1000
_DEFAULT_MAX_IDLE_WORKERS = 32

# RFC 9110 token characters, the only ones allowed in a header name.
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_UNSAFE_HEADER_VALUE = re.compile(r"[\r\n\0]")
_STATUS_CODE = re.compile(r"[1-9][0-9][0-9]")


class ClientDisconnected(OSError):
    """The client went away before the response was complete.

    Raised inside the WSGI application by ``wsgi.input`` reads and response
    writes once the server reported ``http.disconnect``.
    """


class RequestBodyTooLarge(OSError):
    """The request body is longer than ``max_request_body_size``.

    Raised by ``wsgi.input`` reads; if the application then fails before
    starting its response, the client gets a 413.
    """


class _Rejected(ValueError):
    """A request refused before the application sees it."""

    def __init__(self, status: int, message: str, close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.close = close


def _plain_response(status: int, text: str, close: bool = False) -> list[_Message]:
    headers = [(b"content-type", b"text/plain")]
    if close:
        # The request body can't be delimited, so the connection can't carry
        # another request. Other refusals leave an unread body for the server
        # to drain: closing a socket with unread data resets it, and the
        # client may never see the answer.
        headers.append((b"connection", b"close"))
    return [
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": text.encode("latin-1")},
    ]


def _final_body() -> _Message:
    # A fresh dict each time: servers and middleware may keep or alter messages.
    return {"type": "http.response.body"}


def _server_error() -> list[_Message]:
    return _plain_response(500, "Internal Server Error")


def _too_large_text(limit: int | None) -> str:
    return f"Content Too Large: the request body exceeds {limit} bytes"


class FileWrapper:
    """``wsgi.file_wrapper``: a response iterable reading a file in blocks.

    Closing the response closes the file.
    """

    def __init__(self, filelike: Any, block_size: int = 8192) -> None:
        self.filelike = filelike
        self.block_size = max(block_size, _FILE_BLOCK_SIZE)

    def __iter__(self) -> FileWrapper:
        return self

    def __next__(self) -> bytes:
        data: bytes = self.filelike.read(self.block_size)
        if not data:
            raise StopIteration
        return data

    def close(self) -> None:
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()


class _InputStream:
    """``wsgi.input``: the request body, fetched from the server as it is read.

    ``fetch()`` blocks until the server has more data and returns it, or
    returns ``b""`` once the body is complete.
    """

    def __init__(self, fetch: Callable[[], bytes]) -> None:
        self._fetch = fetch
        self._buffer = bytearray()
        self._eof = False

    def _fill(self) -> bool:
        """Append the next piece of body to the buffer; False at the end."""
        if self._eof:
            return False
        data = self._fetch()
        if not data:
            self._eof = True
            return False
        self._buffer += data
        return True

    def _take(self, size: int) -> bytes:
        data = bytes(self._buffer[:size])
        # Deleting from the front of a bytearray is cheap in CPython.
        del self._buffer[:size]
        return data

    def read(self, size: int | None = -1) -> bytes:
        """Read ``size`` bytes (fewer only at the end), or all with no size."""
        if size is None or size < 0:
            while self._fill():
                pass
            return self._take(len(self._buffer))
        while len(self._buffer) < size and self._fill():
            pass
        return self._take(size)

    def readline(self, size: int | None = -1) -> bytes:
        """Read one line, newline included; at most ``size`` bytes if given."""
        limit = None if size is None or size < 0 else size
        scanned = 0
        while True:
            newline = self._buffer.find(b"\n", scanned)
            if newline >= 0:
                end = newline + 1
                break
            scanned = len(self._buffer)
            if (limit is not None and scanned >= limit) or not self._fill():
                end = scanned
                break
        return self._take(end if limit is None else min(end, limit))

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        """Read lines until the end, or until ``hint`` bytes were read."""
        lines: list[bytes] = []
        total = 0
        for line in self:
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


class _WorkerPool:
    """Idle serial executors kept for the next requests, at most ``max_idle``.

    Each comes with the ``sync_to_async`` bridge that runs a request on it,
    built once per worker rather than once per request. Only the event loop
    takes and returns workers; list ``append``/``pop`` are atomic, so several
    loops may share one pool.
    """

    def __init__(self, max_idle: int) -> None:
        self.max_idle = max_idle
        self._idle: list[_Worker] = []
        self._pid = os.getpid()

    @property
    def idle(self) -> int:
        return len(self._idle)

    def acquire(self) -> _Worker:
        if self._pid != os.getpid():
            # Workers inherited through fork don't exist in this process.
            self._idle = []
            self._pid = os.getpid()
        try:
            return self._idle.pop()
        except IndexError:
            return _Worker(hubs.get_hub().serial_executor())

    def release(self, worker: _Worker, reusable: bool = True) -> None:
        if reusable and len(self._idle) < self.max_idle and self._pid == os.getpid():
            self._idle.append(worker)
        else:
            worker.executor.shutdown(wait=False)


class _Worker:
    """A serial executor and the bridge that runs one request on it.

    The request's own code runs on the executor's single worker (that is
    what makes its thread-local state its own); its nested ``async_to_sync``
    calls lend that same worker to thread-sensitive work, as they always do.
    """

    __slots__ = ("executor", "run")

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self.run = sync_to_async(
            _run_on_worker,
            thread_sensitive=False,
            executor=cast("Any", executor),
        )


def _settle(future: asyncio.Future[None], _: object = None) -> None:
    if not future.done():
        future.set_result(None)


def _run_on_worker(instance: WsgiToAsgiInstance, environ: dict[str, Any]) -> None:
    instance._run_on_worker(environ)


async def _fetch_body(instance: WsgiToAsgiInstance) -> bytes:
    return await instance._next_body()


async def _deliver_messages(
    instance: WsgiToAsgiInstance, messages: list[_Message], completes: bool
) -> None:
    await instance._deliver(messages, completes)


# The worker's bridges back to the loop, built once: building an
# async_to_sync wrapper costs more than a call through it.
_fetch_body_sync = async_to_sync(_fetch_body)
_deliver_messages_sync = async_to_sync(_deliver_messages)


_shared_pool: _WorkerPool | None = None


def _default_pool() -> _WorkerPool:
    global _shared_pool
    if _shared_pool is None:
        _shared_pool = _WorkerPool(_DEFAULT_MAX_IDLE_WORKERS)
    return _shared_pool


class WsgiToAsgi:
    """Wrap a WSGI application into an ASGI application.

    ``duplicate_header_limit`` caps how often one request header name may
    repeat (400 beyond it; ``None`` disables). ``max_request_headers`` caps
    the number of request headers (431 beyond it) and
    ``max_request_body_size`` the request body in bytes (413 beyond it);
    ``None`` disables either. Up to ``max_idle_workers`` idle workers are kept
    for later requests.

    ``lifespan`` scopes are acknowledged; other non-HTTP scopes are refused
    with ``ValueError``.
    """

    def __init__(
        self,
        wsgi_application: WSGIApplication,
        duplicate_header_limit: int | None = 100,
        *,
        max_request_headers: int | None = _DEFAULT_MAX_REQUEST_HEADERS,
        max_request_body_size: int | None = None,
        max_idle_workers: int = _DEFAULT_MAX_IDLE_WORKERS,
    ) -> None:
        self.wsgi_application = wsgi_application
        self.duplicate_header_limit = duplicate_header_limit
        self.max_request_headers = max_request_headers
        self.max_request_body_size = max_request_body_size
        self._workers = _WorkerPool(max_idle_workers)

    @property
    def idle_workers(self) -> int:
        """How many idle workers are kept for the next requests."""
        return self._workers.idle

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        """Serve one ASGI connection with a fresh :class:`WsgiToAsgiInstance`."""
        instance = WsgiToAsgiInstance(
            self.wsgi_application,
            self.duplicate_header_limit,
            max_request_headers=self.max_request_headers,
            max_request_body_size=self.max_request_body_size,
            workers=self._workers,
        )
        await instance(scope, receive, send)


class WsgiToAsgiInstance:
    """One request (or one lifespan) served by a wrapped WSGI application.

    Its response state belongs to the request's worker and its connection
    state to the event loop; the worker only reads the loop's flags.
    """

    def __init__(
        self,
        wsgi_application: WSGIApplication,
        duplicate_header_limit: int | None = 100,
        *,
        max_request_headers: int | None = _DEFAULT_MAX_REQUEST_HEADERS,
        max_request_body_size: int | None = None,
        workers: _WorkerPool | None = None,
    ) -> None:
        self.wsgi_application = wsgi_application
        self.duplicate_header_limit = duplicate_header_limit
        self.max_request_headers = max_request_headers
        self.max_request_body_size = max_request_body_size
        self._workers = workers
        self.scope: dict[str, Any] = {}

        # Response, on the worker.
        self._status: int | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._content_length: int | None = None
        self._headers_sent = False
        self._bytes_sent = 0
        self._response_done = False
        self._worker_done = False
        # The last messages of the response, sent by the loop after the worker.
        self._final_messages: list[_Message] | None = None
        # Sends messages from the worker; set when the worker starts.
        self._deliver_sync: Callable[[list[_Message], bool], None]

        # Connection, on the loop.
        self._receive: _Receive | None = None
        self._send: _Send | None = None
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._body_complete = False
        self._body_error: BaseException | None = None
        self._disconnected = False
        self._send_failed = False
        self._response_complete = False
        self._in_flight: asyncio.Task[Any] | None = None
        self._data_ready: asyncio.Event | None = None
        self._room: asyncio.Event | None = None

    # -- on the event loop ----------------------------------------------------

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        """Run the WSGI application for this ASGI scope."""
        kind = scope.get("type")
        if kind == "lifespan":
            await _acknowledge_lifespan(receive, send)
            return
        if kind != "http":
            raise ValueError(
                f"WsgiToAsgi only serves HTTP; it cannot handle a {kind!r} scope "
                "(serve websockets with an ASGI application)"
            )
        self.scope = cast("dict[str, Any]", scope)
        self._receive = receive
        self._send = cast("_Send", send)
        try:
            environ = self.build_environ(
                self.scope, _InputStream(functools.partial(_fetch_body_sync, self))
            )
        except _Rejected as rejection:
            for message in _plain_response(rejection.status, rejection.message, rejection.close):
                await send(cast("Any", message))
            return

        length = environ.get("CONTENT_LENGTH")
        if length == "0":
            self._body_complete = True
        self._data_ready = asyncio.Event()
        self._room = asyncio.Event()
        heard: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        reader = asyncio.ensure_future(
            self._read_request(None if length is None else int(length), heard)
        )
        reader.add_done_callback(functools.partial(_settle, heard))
        # Start the application once the first request message is in (as
        # asgiref does, and it is usually the whole body), not before: an
        # ASGI server only calls an application that has a request to serve.
        try:
            await heard
        except BaseException:
            reader.cancel()
            raise
        workers = self._workers or _default_pool()
        worker = workers.acquire()
        try:
            await worker.run(self, environ)
        except Exception:
            # The response may be complete although the application failed
            # afterwards (in close(), say): the client still gets it.
            if self._final_messages is not None and not self._disconnected:
                try:
                    await self._deliver(self._final_messages, True)
                except Exception:
                    pass  # The application's error is the one to report.
            raise
        else:
            if self._final_messages is not None and not self._disconnected:
                await self._deliver(self._final_messages, True)
        finally:
            # Nothing waits for the reader's end: a cancelled task just stops.
            reader.cancel()
            if not self._worker_done:
                # We were cancelled while the application runs its own code:
                # stop it at its next step, as if the client had left, and
                # don't reuse a worker that is still busy.
                self._end_connection()
            workers.release(worker, reusable=self._worker_done)

    def build_environ(self, scope: dict[str, Any], body: Any) -> dict[str, Any]:
        """The WSGI environ for an HTTP scope, with ``body`` as ``wsgi.input``.

        Raises ``ValueError`` for a request that must be refused.
        """
        script_name = scope.get("root_path", "").encode("utf-8")
        path = _request_path(scope)
        if script_name and path.startswith(script_name):
            path = path[len(script_name) :]
        environ: dict[str, Any] = {
            "REQUEST_METHOD": scope["method"],
            "SCRIPT_NAME": script_name.decode("latin-1"),
            "PATH_INFO": path.decode("latin-1"),
            "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
            "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": scope.get("scheme", "http"),
            "wsgi.input": body,
            "wsgi.input_terminated": True,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.file_wrapper": FileWrapper,
        }
        # WSGI requires a server name and port even where ASGI has none; a
        # unix socket is reported as its path with port 0.
        server = scope.get("server")
        if server is None:
            environ["SERVER_NAME"], environ["SERVER_PORT"] = "localhost", "80"
        else:
            environ["SERVER_NAME"] = server[0]
            environ["SERVER_PORT"] = str(server[1] if server[1] is not None else 0)
        client = scope.get("client")
        if client is not None:
            environ["REMOTE_ADDR"] = client[0]
            if client[1] is not None:
                environ["REMOTE_PORT"] = str(client[1])
        environ.update(self._header_variables(scope.get("headers") or ()))
        return environ

    def _header_variables(self, headers: Iterable[Any]) -> dict[str, str]:
        """CONTENT_* and HTTP_* variables, refusing requests over the limits."""
        values: dict[str, list[str]] = {}
        for count, (raw_name, raw_value) in enumerate(headers, 1):
            if self.max_request_headers is not None and count > self.max_request_headers:
                raise _Rejected(
                    431,
                    "Request Header Fields Too Large: "
                    f"more than {self.max_request_headers} request headers",
                )
            name = raw_name.decode("latin-1").upper().replace("-", "_")
            if name not in ("CONTENT_LENGTH", "CONTENT_TYPE"):
                name = "HTTP_" + name
            seen = values.setdefault(name, [])
            if self.duplicate_header_limit and len(seen) >= self.duplicate_header_limit:
                raise _Rejected(400, "Bad Request: Too many duplicate headers")
            seen.append(raw_value.decode("latin-1"))
        variables = {
            # Split cookie headers (HTTP/2 sends one per cookie) rejoin with
            # the cookie separator; other repeats form a comma list.
            name: ("; " if name == "HTTP_COOKIE" else ",").join(parts)
            for name, parts in values.items()
        }
        if "CONTENT_LENGTH" in values:
            variables["CONTENT_LENGTH"] = self._checked_content_length(values["CONTENT_LENGTH"])
        return variables

    def _checked_content_length(self, declared: list[str]) -> str:
        distinct = {value.strip() for value in declared}
        length = distinct.pop() if len(distinct) == 1 else ""
        if not (length.isascii() and length.isdigit()):
            raise _Rejected(400, "Bad Request: invalid Content-Length", close=True)
        limit = self.max_request_body_size
        if limit is not None and int(length) > limit:
            raise _Rejected(413, _too_large_text(limit))
        return str(int(length))

    async def _read_request(self, content_length: int | None, heard: asyncio.Future[None]) -> None:
        """Own ``receive()``: buffer body ahead of the worker, watch for disconnect.

        Body past Content-Length is dropped, as PEP 3333 allows.
        """
        assert self._receive is not None and self._data_ready and self._room
        remaining = content_length
        received = 0
        while True:
            if not self._body_complete and self._buffered >= _BODY_BUFFER_LIMIT:
                self._room.clear()
                await self._room.wait()
                continue
            try:
                message = await self._receive()
            except Exception as exc:
                self._body_error = exc
                self._data_ready.set()
                return
            finally:
                if not heard.done():
                    heard.set_result(None)
            kind = message.get("type")
            if kind == "http.disconnect":
                self._end_connection()
                return
            if kind != "http.request":
                self._body_error = ValueError(f"Unexpected ASGI message {kind!r} for a request")
                self._data_ready.set()
                return
            if self._body_complete:
                continue
            body = message.get("body", b"")
            if remaining is not None:
                body = body[:remaining]
                remaining -= len(body)
            received += len(body)
            limit = self.max_request_body_size
            if limit is not None and received > limit:
                self._body_error = RequestBodyTooLarge(
                    f"The request body exceeds the {limit} bytes allowed"
                )
                self._body_complete = True
            elif body:
                self._chunks.append(body)
                self._buffered += len(body)
            if remaining == 0 or not message.get("more_body", False):
                self._body_complete = True
            self._data_ready.set()

    def _end_connection(self) -> None:
        """The client is gone: wake the worker, make its bridge calls fail."""
        self._disconnected = True
        if self._data_ready is not None:
            self._data_ready.set()
        if self._in_flight is not None and not self._response_complete:
            self._in_flight.cancel()

    async def _next_body(self) -> bytes:
        """Hand the worker all buffered body data; ``b""`` at the end."""
        assert self._data_ready is not None and self._room is not None
        while True:
            if self._disconnected:
                raise ClientDisconnected("The client disconnected")
            if self._chunks:
                data = b"".join(self._chunks)
                self._chunks.clear()
                self._buffered = 0
                self._room.set()
                return data
            if self._body_error is not None:
                raise self._body_error
            if self._body_complete:
                return b""
            self._data_ready.clear()
            await self._data_ready.wait()

    async def _deliver(self, messages: list[_Message], completes: bool) -> None:
        """Send response messages for the worker, stopping if the client leaves."""
        assert self._send is not None
        if self._disconnected:
            raise ClientDisconnected("The client disconnected")
        if self._send_failed:
            raise RuntimeError("The ASGI send() already failed for this response")
        if completes:
            # A disconnect reported after this is the server's "response
            # done" notice: don't interrupt the final send for it.
            self._response_complete = True
        task = asyncio.current_task()
        self._in_flight = task
        try:
            for message in messages:
                await self._send(message)
        except asyncio.CancelledError:
            if not self._disconnected:
                raise
            if task is not None:
                task.uncancel()
            raise ClientDisconnected("The client disconnected") from None
        except BaseException:
            self._send_failed = True
            raise
        finally:
            self._in_flight = None

    # -- on the worker --------------------------------------------------------

    def _run_on_worker(self, environ: dict[str, Any]) -> None:
        try:
            self._run_application(environ)
        finally:
            self._worker_done = True

    def _run_application(self, environ: dict[str, Any]) -> None:
        # Also what the application's write() callable sends through.
        self._deliver_sync = functools.partial(_deliver_messages_sync, self)
        deliver = self._deliver_final
        failure: Exception | None = None
        try:
            result = self.wsgi_application(environ, self.start_response)
            try:
                self._stream_response(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except ClientDisconnected:
            if not self._disconnected:
                raise
            # The client left: nobody to answer and nothing went wrong here.
        except Exception as exc:
            failure = exc
        if failure is None:
            return
        # Answer outside the except block so the error keeps a clean traceback.
        if not self._headers_sent and not self._disconnected and not self._send_failed:
            self._headers_sent = True
            # An oversized body is the client's fault, whatever the application
            # turned the error into; only that error itself is fully handled.
            too_large = isinstance(self._body_error, RequestBodyTooLarge)
            if too_large:
                limit = self.max_request_body_size
                answer = _plain_response(413, _too_large_text(limit))
            else:
                answer = _server_error()
            try:
                deliver(answer, True)
            except Exception:
                pass  # The client can't be told; the application's error matters more.
            if too_large and failure is self._body_error:
                return
        raise failure

    def _stream_response(self, result: Iterable[bytes]) -> None:
        # For a list the last chunk is known, so the final message can travel
        # with it instead of making a trip of its own.
        last = len(result) - 1 if isinstance(result, (list, tuple)) else -1
        for index, chunk in enumerate(result):
            self._write(chunk, index == last)
            if self._response_done:
                return
        if not self._response_done:
            self._response_done = True
            self._deliver_final([*self._start_message(), _final_body()], True)

    def _deliver_final(self, messages: list[_Message], completes: bool) -> None:
        """Leave the response's last messages for the loop to send.

        Nothing follows them, so rather than a trip to the loop and back the
        loop sends them once the worker is done: most responses (a list of
        bytes) then cost no trip at all.
        """
        if self._disconnected:
            raise ClientDisconnected("The client disconnected")
        self._final_messages = messages

    def start_response(
        self,
        status: str,
        response_headers: list[tuple[str, str]],
        exc_info: OptExcInfo | None = None,
    ) -> Callable[[bytes], object]:
        """WSGI ``start_response``: check and record the status and headers.

        A second call needs ``exc_info``; once headers were sent it re-raises
        that exception, as PEP 3333 requires.
        """
        if exc_info is not None:
            try:
                if self._headers_sent and exc_info[1] is not None:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # Don't keep a frame <-> traceback cycle alive.
        elif self._status is not None:
            raise ValueError("start_response was already called; a second call needs exc_info")
        self._status, self._headers, self._content_length = _check_response_head(
            status, response_headers
        )
        return self._write

    def _write(self, data: bytes, last: bool = False) -> None:
        """Send one body chunk (also the WSGI ``write()`` callable)."""
        if self._response_done:
            return
        if type(data) is not bytes:
            if not isinstance(data, (bytearray, memoryview)):
                raise TypeError(
                    f"A WSGI response body must be bytes, not {type(data).__name__}: {data!r:.60}"
                )
            data = bytes(data)
        if self._content_length is not None:
            # Never send more than the declared Content-Length; reaching it
            # ends the response.
            allowed = self._content_length - self._bytes_sent
            if len(data) >= allowed:
                data = data[:allowed]
                last = True
        messages = self._start_message()
        messages.append({"type": "http.response.body", "body": data, "more_body": True})
        self._bytes_sent += len(data)
        if last:
            messages.append(_final_body())
            self._response_done = True
            self._deliver_final(messages, True)
            return
        self._deliver_sync(messages, False)

    def _start_message(self) -> list[_Message]:
        """The ``http.response.start`` message if it is still due, else nothing."""
        if self._headers_sent:
            return []
        if self._status is None:
            raise RuntimeError("The WSGI application sent a body before calling start_response")
        self._headers_sent = True
        return [{"type": "http.response.start", "status": self._status, "headers": self._headers}]


def _request_path(scope: dict[str, Any]) -> bytes:
    """The request path as bytes: the raw bytes when the server gives them.

    ``raw_path`` keeps bytes that are not UTF-8, which ``path`` has lost. It is
    used only when it matches ``path``, since middleware that rewrites
    ``path`` often leaves ``raw_path`` alone.
    """
    path: str = scope["path"]
    raw_path = scope.get("raw_path")
    if raw_path:
        decoded = unquote_to_bytes(raw_path)
        if decoded.decode("utf-8", "replace") == path:
            return decoded
    return path.encode("utf-8")


def _check_response_head(
    status: object, headers: object
) -> tuple[int, list[tuple[bytes, bytes]], int | None]:
    """Validate what the application gave ``start_response`` and encode it.

    Returns the status code, the ASGI headers and the Content-Length if any.
    Errors are raised here, inside the application's call, so they point at
    the culprit.
    """
    if not isinstance(status, str):
        raise TypeError(f"The WSGI status must be a str, not {type(status).__name__}")
    code, _, reason = status.partition(" ")
    if not _STATUS_CODE.fullmatch(code) or _UNSAFE_HEADER_VALUE.search(reason):
        raise ValueError(f"Malformed WSGI status {status!r}: expected e.g. '200 OK'")
    if not isinstance(headers, (list, tuple)):
        raise TypeError(f"WSGI response headers must be a list, not {type(headers).__name__}")
    encoded: list[tuple[bytes, bytes]] = []
    content_length: int | None = None
    for header in headers:
        if not isinstance(header, (list, tuple)) or len(header) != 2:
            raise TypeError(f"A WSGI response header must be a (name, value) pair: {header!r}")
        name, value = header
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError(
                f"WSGI response header names and values must be str: {name!r}: {value!r}"
            )
        if not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"Malformed WSGI response header name {name!r}")
        if _UNSAFE_HEADER_VALUE.search(value):
            raise ValueError(f"WSGI response header {name} has CR, LF or NUL in {value!r}")
        try:
            raw_value = value.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError(
                f"WSGI response header {name} must be latin-1 encodable: {value!r}"
            ) from None
        lower = name.lower()
        if lower == "content-length":
            if not (value.strip().isascii() and value.strip().isdigit()):
                raise ValueError(f"Malformed WSGI Content-Length {value!r}")
            content_length = int(value)
        encoded.append((lower.encode("ascii"), raw_value))
    return int(code), encoded, content_length


async def _acknowledge_lifespan(receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    """Answer startup and shutdown: a WSGI application has no hooks for them."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def __getattr__(name: str) -> Any:
    # The other direction, AsgiToWsgi, lives in its own module, which needs
    # ClientDisconnected from this one: it is imported when first asked for.
    if name == "AsgiToWsgi":
        from .asgi_to_wsgi import AsgiToWsgi

        return AsgiToWsgi
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
