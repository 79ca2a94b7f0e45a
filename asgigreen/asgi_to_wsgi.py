"""Serve an ASGI application from a WSGI server: :class:`AsgiToWsgi`.

New async code (a Starlette app, Django's ASGI handler) can then ship inside
an existing WSGI deployment, such as ``gunicorn -k gevent``, unchanged.

How a request runs
------------------

Each process has **one event loop** for all ASGI applications wrapped here,
started on the first request in a worker of its own: a greenlet on the
gevent hub (the hub's cooperative event loop, so waiting for I/O lets the
other greenlets run), a daemon thread on the threads hub. Every request's
ASGI coroutine runs as a task on that loop, so a gevent worker serves many
requests at once with no OS thread per request, and what the application's
``lifespan`` startup creates (connection pools, clients bound to a loop)
serves every request, as it would under an ASGI server.

The WSGI server's worker for the request (its greenlet or thread) stays
with it until the application is done and moves the data:

* **request body**: read from ``wsgi.input`` only when the application
  calls ``receive()`` and only as much as one message holds
  (``body_chunk_size``), so an upload is never held in memory whole;
* **response**: ``http.response.start`` becomes ``start_response``, and the
  body messages come out of the returned iterable as the application sends
  them. ``send()`` of a body message waits while ``response_buffer`` chunks
  are already waiting for the server (backpressure: a slow client slows
  the application down instead of filling memory);
* **disconnect**: WSGI servers notice a departed client only when a read
  or a write fails. An upload cut off (``wsgi.input`` returns ``b""``
  before ``Content-Length`` is reached, or its read raises: ``OSError``,
  gunicorn's ``NoMoreData``, gevent.pywsgi's ``IOError``, a reset
  connection) counts as the client leaving, and so does the server closing
  the iterable before the end of the response (what it does when a write
  fails). From then on every pending and later ``receive()`` returns
  ``http.disconnect`` at once, and ``send()`` raises
  :class:`~asgigreen.wsgi.ClientDisconnected`. The application gets
  ``disconnect_grace`` seconds to finish, then its task is cancelled.
  However it ends then (returning, raising ``ClientDisconnected``, being
  cancelled) the WSGI call ends cleanly and what it raised is only logged
  (at debug level for disconnects and cancellation): the response body just
  stops, or, if the response had not started, the call answers ``400 Bad
  Request`` (which a client that only half-closed still reads). Once the
  response is complete ``receive()`` also answers ``http.disconnect``, as
  ASGI servers do.

The two sides meet through a mailbox: the loop side appends messages and
sets the hub's :class:`~asgigreen.hubs.Signal` the WSGI worker parks on;
the WSGI side hands data back with the hub's ``call_soon_threadsafe``. The
two hand-offs every request makes go through the hub's quicker paths:
:meth:`~asgigreen.hubs.Hub.call_soon_and_wait` to start the application and
:meth:`~asgigreen.hubs.Hub.hand_over` when it ends, so on the gevent hub an
idle loop starts the request at once and the finished response goes out at
once, instead of each waiting behind every greenlet already queued.

Errors raised by the application before it starts the response are
re-raised from the WSGI call, so the WSGI server (and error-reporting
middleware around this one) see them and answer 500; errors after that are
raised from the iterable, and the server drops the connection. A
cancellation is never raised to the server as ``asyncio.CancelledError``
(a ``BaseException``, which ends a ``gunicorn -k gthread`` worker): with
the client still there it becomes a ``RuntimeError``.

Lifespan
--------

WSGI has no startup or shutdown hooks, so ``lifespan`` runs **once per
process**: startup just before the first request is served (or when
:meth:`AsgiToWsgi.startup` is called, e.g. from gunicorn's
``post_worker_init`` hook), shutdown when :meth:`AsgiToWsgi.shutdown` is
called (gunicorn's ``worker_exit`` hook) or else at interpreter exit through
:mod:`atexit`. A worker killed outright (``SIGKILL``, gunicorn's timeout
kill) runs no shutdown. ``lifespan="auto"`` (the default) carries on when
the application does not support the protocol, ``"on"`` requires it,
``"off"`` skips it. A failed startup (``lifespan.startup.failed`` or a
timeout) makes every request of the process fail with
:class:`LifespanFailed`, as an ASGI server would refuse to serve. A forked
child (gunicorn without ``--preload`` forks before any request) starts its
own loop and its own lifespan.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import logging
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import quote

from . import hubs
from .compatibility import guarantee_single_callable
from .wsgi import ClientDisconnected

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["AsgiToWsgi", "LifespanFailed"]

logger = logging.getLogger(__name__)

_Message = dict[str, Any]
_K = TypeVar("_K")
_V = TypeVar("_V")
_BODY_CHUNK_SIZE = 64 * 1024
_SAFE_PATH_CHARS = "/:@!$&'()*+,;=-._~"
# PEP 3333: an application must not send these; the WSGI server owns them.
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
_TOKEN_CHARS = frozenset(
    b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
# As ints: ``13 in value`` is a plain byte search, several times quicker here.
_CR, _LF, _NUL = b"\r\n\0"
_ASGI_VERSIONS = {"version": "3.0", "spec_version": "2.4"}
# What the WSGI call answers when the client left before the response started.
_CUT_OFF_BODY = b"The request body was cut off: the client disconnected.\n"
_CUT_OFF_STATUS = "400 Bad Request"
_CUT_OFF_HEADERS = (
    ("Content-Type", "text/plain; charset=utf-8"),
    ("Content-Length", str(len(_CUT_OFF_BODY))),
)


class LifespanFailed(RuntimeError):
    """The application's lifespan startup failed or timed out.

    Raised for every request of the process: as under an ASGI server, an
    application whose startup failed does not serve. With ``lifespan="on"``
    an application without lifespan support counts as failed too.
    """


# Caches of conversions every request repeats; bounded, since the keys
# (status codes, header names) come from applications and clients.
_CACHE_LIMIT = 512
_status_lines: dict[int, str] = {}
_response_names: dict[bytes, str | None] = {}
_request_names: dict[str, bytes] = {}


def _remember(cache: dict[_K, _V], key: _K, value: _V) -> _V:
    if len(cache) < _CACHE_LIMIT:
        cache[key] = value
    return value


def _status_line(status: int) -> str:
    line = _status_lines.get(status)
    if line is not None:
        return line
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    return _remember(_status_lines, status, f"{status} {phrase}")


def _response_name(name: bytes) -> str | None:
    """A response header name for WSGI; None for the hop-by-hop ones it must drop."""
    if not name or not _TOKEN_CHARS.issuperset(name):
        raise ValueError(f"Malformed response header name {name!r}")
    if name.lower() in _HOP_BY_HOP:
        return _remember(_response_names, name, None)
    return _remember(_response_names, name, name.decode("latin-1"))


def _wsgi_headers(headers: Any) -> list[tuple[str, str]]:
    """ASGI response headers as WSGI ones; malformed ones raise ``ValueError``."""
    converted: list[tuple[str, str]] = []
    names = _response_names
    for name, value in headers:
        if type(name) is not bytes:
            name = bytes(name)
        if type(value) is not bytes:
            value = bytes(value)
        text = names[name] if name in names else _response_name(name)
        if _CR in value or _LF in value or _NUL in value:
            raise ValueError(f"Response header {name!r} has CR, LF or NUL in {value!r}")
        if text is not None:  # hop-by-hop: the WSGI server decides framing and connection
            converted.append((text, value.decode("latin-1")))
    return converted


def _request_name(key: str) -> bytes:
    """The ASGI header name for a WSGI environ key (``HTTP_X_Y`` -> ``x-y``); b"" if none."""
    if key.startswith("HTTP_"):
        # CGI keeps these two without the prefix; a client's copies are ignored.
        name = b"" if key in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH") else key[5:].encode()
    elif key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        name = key.encode()
    else:
        name = b""
    return _remember(_request_names, key, name.replace(b"_", b"-").lower())


def _request_headers(environ: WSGIEnvironment) -> list[tuple[bytes, bytes]]:
    """The request headers of a WSGI environ, as ASGI wants them."""
    headers = []
    names = _request_names
    for key, value in environ.items():
        name = names.get(key)
        if name is None:
            name = _request_name(key)
        # An empty CONTENT_TYPE or CONTENT_LENGTH means "none"; HTTP_* may be empty.
        if name and (value or key[0] == "H"):
            headers.append((name, value.encode("latin-1")))
    return headers


def _utf8(text: str) -> str:
    """A WSGI (latin-1 decoded) path as the UTF-8 text ASGI wants."""
    return text if text.isascii() else text.encode("latin-1").decode("utf-8", "replace")


def _park(future: Future[Any]) -> None:
    """Wait for ``future`` on this worker without blocking the others."""
    if future.done():
        return
    signal = hubs.get_hub().new_signal()
    future.add_done_callback(lambda _: signal.set())
    signal.wait()


# -- the process's event loop ---------------------------------------------------


class _ProcessLoop:
    """The event loop all wrapped applications of this process run on."""

    def __init__(self) -> None:
        self.ready: Future[asyncio.AbstractEventLoop] = hubs.get_hub().new_future()
        self.loop: asyncio.AbstractEventLoop | None = None
        thread = threading.Thread(target=self._run, name="asgigreen-asgi-to-wsgi", daemon=True)
        thread.start()

    def _run(self) -> None:
        try:
            hubs.get_hub().run_on_new_loop(self._main)
        except BaseException as exc:
            if not self.ready.done():
                self.ready.set_exception(exc)
            raise

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        self.loop = loop
        forever: asyncio.Future[None] = loop.create_future()
        self.ready.set_result(loop)
        await forever


_process_loop: _ProcessLoop | None = None
_process_loop_lock = threading.Lock()


def _get_runner() -> _ProcessLoop:
    """This process's loop runner, started on first use (and again after a fork)."""
    global _process_loop
    runner = _process_loop
    if runner is None:
        with _process_loop_lock:
            runner = _process_loop
            if runner is None:
                runner = _process_loop = _ProcessLoop()
    if runner.loop is None:
        _park(runner.ready)
        runner.ready.result()  # raises if the loop could not start
    return runner


def _reset_after_fork() -> None:
    # The parent's loop thread does not exist in the child.
    global _process_loop, _process_loop_lock
    _process_loop = None
    _process_loop_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


# -- lifespan -------------------------------------------------------------------


class _Lifespan:
    """The lifespan protocol for one application in one process (on the loop)."""

    def __init__(self, application: Any, mode: str, startup_timeout: float) -> None:
        self.application = application
        self.mode = mode
        self.startup_timeout = startup_timeout
        self.state: dict[str, Any] = {}
        self.supported = False
        self.failure: str | None = None
        self._incoming: asyncio.Queue[_Message] | None = None
        self._answers: asyncio.Queue[_Message] | None = None
        self._task: asyncio.Task[None] | None = None
        #: The task running startup (kept so it is not garbage-collected).
        self.starting: asyncio.Future[None] | None = None

    async def startup(self) -> None:
        self._incoming = asyncio.Queue()
        self._answers = asyncio.Queue()
        scope = {"type": "lifespan", "asgi": dict(_ASGI_VERSIONS), "state": self.state}
        self._task = task = asyncio.ensure_future(self._run(scope))
        # The loop keeps only weak references to tasks: hold it while it runs.
        _running_lifespans.add(task)
        task.add_done_callback(_running_lifespans.discard)
        answer = await self._exchange({"type": "lifespan.startup"}, self.startup_timeout)
        kind = answer.get("type")
        if kind == "lifespan.startup.complete":
            self.supported = True
        elif kind == "lifespan.startup.failed":
            self.failure = f"lifespan startup failed: {answer.get('message', '')}"
        elif kind == "unsupported":
            if self.mode == "on":
                self.failure = f"lifespan is not supported by the application: {answer['error']}"
            else:
                logger.info("ASGI 'lifespan' protocol appears unsupported: %s", answer["error"])
        elif kind == "timeout":
            self.failure = f"lifespan startup timed out: {answer['error']}"
        else:
            self.failure = f"lifespan startup answered {kind!r}"
        if self.failure is not None:
            logger.error("%s", self.failure)

    async def shutdown(self, timeout: float) -> None:
        if not self.supported:
            return
        self.supported = False
        answer = await self._exchange({"type": "lifespan.shutdown"}, timeout)
        if answer.get("type") == "lifespan.shutdown.failed":
            logger.error("lifespan shutdown failed: %s", answer.get("message", ""))
        elif answer.get("type") != "lifespan.shutdown.complete":
            logger.error("lifespan shutdown did not complete: %s", answer)

    async def _exchange(self, message: _Message, timeout: float) -> _Message:
        assert self._incoming is not None and self._answers is not None and self._task
        await self._incoming.put(message)
        answer = asyncio.ensure_future(self._answers.get())
        try:
            await asyncio.wait(
                {answer, self._task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if not answer.done():
                answer.cancel()
        if answer.done() and not answer.cancelled():
            return answer.result()
        if self._task.done():
            return {"type": "unsupported", "error": "the application returned or raised"}
        return {"type": "timeout", "error": f"no answer within {timeout:g} s"}

    async def _run(self, scope: dict[str, Any]) -> None:
        assert self._incoming is not None and self._answers is not None
        answers = self._answers

        async def send(message: _Message) -> None:
            await answers.put(message)

        try:
            await self.application(scope, self._incoming.get, send)
        except Exception as exc:
            if self.supported:
                logger.exception("Exception in the ASGI lifespan task")
            else:
                await answers.put({"type": "unsupported", "error": repr(exc)})


_running_lifespans: set[asyncio.Future[None]] = set()


def _cancel_soon(lifespan: _Lifespan, loop: asyncio.AbstractEventLoop) -> None:
    task = lifespan._task
    if task is not None and not task.done():
        try:
            loop.call_soon_threadsafe(task.cancel)
        except RuntimeError:
            pass  # the loop is closed


# -- one request ------------------------------------------------------------------


class _Exchange:
    """One request: the ASGI task on the loop and the WSGI side on the server's worker.

    The loop side owns the ``_loop_*`` state; the mailbox, its counters and
    ``_room`` are guarded by ``_lock``, since on the threads hub both sides
    run at once.
    """

    __slots__ = (
        "_abandoned",
        "_body_wanted",
        "_ended",
        "_final_chunk_seen",
        "_finished",
        "_input",
        "_lock",
        "_loop",
        "_loop_body",
        "_loop_complete",
        "_loop_disconnected",
        "_loop_started",
        "_mailbox",
        "_owner",
        "_queued_chunks",
        "_receive_lock",
        "_remaining",
        "_room",
        "_signal",
        "_task",
    )

    def __init__(
        self,
        owner: AsgiToWsgi,
        environ: WSGIEnvironment,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        hub = hubs.get_hub()
        self._owner = owner
        self._loop = loop
        self._signal = hub.new_signal()
        self._lock = hub.new_lock()
        self._mailbox: deque[tuple[Any, ...]] = deque()
        self._queued_chunks = 0
        self._room: asyncio.Future[None] | None = None

        # The request body, read on the WSGI side.
        self._input = environ["wsgi.input"]
        length = environ.get("CONTENT_LENGTH", "")
        self._remaining: int | None
        if length:
            try:
                self._remaining = max(0, int(length))
            except ValueError:
                self._remaining = 0
        elif environ.get("wsgi.input_terminated"):
            self._remaining = None  # read until the server reports the end
        else:
            self._remaining = 0  # PEP 3333: no length, no body

        # WSGI side.
        self._final_chunk_seen = False
        self._ended = False
        self._abandoned = False

        # Loop side.
        self._task: asyncio.Task[None] | None = None
        self._loop_disconnected = False
        self._loop_started = False
        self._loop_complete = False
        # "empty": no body, not yet reported; "reading"; "done".
        self._loop_body = "empty" if self._remaining == 0 else "reading"
        self._body_wanted: asyncio.Future[tuple[bytes, bool] | None] | None = None
        self._receive_lock: asyncio.Lock | None = None
        self._finished: asyncio.Future[None] | None = None

    # -- loop side ------------------------------------------------------------

    def begin(self, scope: dict[str, Any]) -> None:
        """Start the application's task (a loop callback)."""
        self._task = self._loop.create_task(self._run(scope))

    async def _run(self, scope: dict[str, Any]) -> None:
        error: BaseException | None = None
        try:
            await self._owner.application(scope, self.receive, self.send)
        except asyncio.CancelledError as exc:
            error = exc
            raise
        except BaseException as exc:
            # KeyboardInterrupt or SystemExit too: raised on the WSGI side,
            # they must not stop the loop every request shares.
            error = exc
        finally:
            self._close_loop_side()
            self._post(("end", error), last=True)

    def _post(
        self, item: tuple[Any, ...], chunk: bool = False, wait: bool = False, last: bool = False
    ) -> Any:
        room = None
        with self._lock:
            # The WSGI side drains the mailbox before it parks: only an empty
            # mailbox can have it parked, so only then does it need waking.
            wake = not self._mailbox
            self._mailbox.append(item)
            if chunk:
                self._queued_chunks += 1
                if wait and self._queued_chunks >= self._owner.response_buffer:
                    room = self._room = self._loop.create_future()
        if last and asyncio._get_running_loop() is self._loop:
            # The WSGI side is most likely waiting for just this: let it run now.
            hubs.get_hub().hand_over(self._signal)
        elif wake:
            self._signal.set()
        return room

    async def receive(self) -> _Message:
        """ASGI ``receive()``: body chunks read on demand, then ``http.disconnect``.

        Once the client is known to be gone (or the response is complete),
        every call answers ``http.disconnect`` at once.
        """
        # Made on first use: most requests never call receive() twice at once.
        if self._receive_lock is None:
            self._receive_lock = asyncio.Lock()
        async with self._receive_lock:
            if self._loop_disconnected or self._loop_complete:
                return {"type": "http.disconnect"}
            if self._loop_body == "empty":
                self._loop_body = "done"
                return {"type": "http.request", "body": b"", "more_body": False}
            if self._loop_body == "reading":
                wanted = self._body_wanted
                if wanted is None:
                    wanted = self._body_wanted = self._loop.create_future()
                    self._post(("read",))
                # Shielded: a receive() cancelled while the piece is on its way
                # (Starlette's is_disconnected() does that) leaves it to the
                # next call instead of dropping it.
                got = await asyncio.shield(wanted)
                self._body_wanted = None
                if got is None:  # the client left: disconnected() answered
                    return {"type": "http.disconnect"}
                data, more = got
                if not more:
                    self._loop_body = "done"
                return {"type": "http.request", "body": data, "more_body": more}
            # The body was all read: wait for the response to end or the client to leave.
            if self._finished is None:
                self._finished = self._loop.create_future()
            await asyncio.shield(self._finished)
        return {"type": "http.disconnect"}

    async def send(self, message: _Message) -> None:
        """ASGI ``send()``: hand response messages to the WSGI side."""
        if self._loop_disconnected:
            raise ClientDisconnected("The client disconnected")
        kind = message["type"]
        if kind == "http.response.start":
            if self._loop_started:
                raise RuntimeError("http.response.start sent twice")
            status = int(message["status"])
            headers = _wsgi_headers(message.get("headers", ()))
            self._loop_started = True
            self._post(("start", _status_line(status), headers))
        elif kind == "http.response.body":
            if not self._loop_started:
                raise RuntimeError("http.response.body sent before http.response.start")
            if self._loop_complete:
                raise RuntimeError("http.response.body sent after the response was complete")
            data = bytes(message.get("body", b""))
            more = bool(message.get("more_body", False))
            if not more:
                self._loop_complete = True
                self._post(("body", data, False), chunk=True)
                self._close_loop_side()
                return
            if not data:
                return
            room = self._post(("body", data, True), chunk=True, wait=True)
            if room is not None:
                await room
        elif kind == "http.response.trailers":
            pass  # WSGI cannot send trailers
        else:
            raise RuntimeError(f"Unexpected ASGI message type {kind!r} for an HTTP response")

    def _close_loop_side(self) -> None:
        """The response is complete or the client left: release receive() waiters."""
        finished = self._finished
        if finished is not None and not finished.done():
            finished.set_result(None)

    def body_arrived(self, data: bytes, more: bool) -> None:
        """A loop callback: the WSGI side read a piece of the body."""
        wanted = self._body_wanted
        if wanted is not None and not wanted.done():
            wanted.set_result((data, more))

    def room_made(self, room: asyncio.Future[None]) -> None:
        """A loop callback: the WSGI side took queued chunks."""
        if not room.done():
            room.set_result(None)

    def disconnected(self) -> None:
        """A loop callback: the client is gone (or the server stopped iterating)."""
        if self._loop_disconnected:
            return
        self._loop_disconnected = True
        wanted = self._body_wanted
        if wanted is not None and not wanted.done():
            wanted.set_result(None)
        with self._lock:
            room, self._room = self._room, None
        if room is not None and not room.done():
            room.set_exception(ClientDisconnected("The client disconnected"))
        self._close_loop_side()
        task = self._task
        if task is not None and not task.done():
            self._loop.call_later(self._owner.disconnect_grace, task.cancel)

    # -- WSGI side ------------------------------------------------------------

    def _to_loop(self, callback: Callable[..., Any], *args: Any) -> None:
        try:
            hubs.get_hub().call_soon_threadsafe(self._loop, callback, *args)
        except RuntimeError:
            pass  # the loop is closed: the process is going away

    def start(self, scope: dict[str, Any]) -> None:
        """Start the application on the loop; returns once it has posted something."""
        try:
            hubs.get_hub().call_soon_and_wait(self._loop, self._signal, self.begin, scope)
        except BaseException:
            self._interrupt()
            raise

    def _next_item(self) -> tuple[Any, ...]:
        """The next message from the loop side; parks this worker until there is one.

        If the wait is interrupted (a gevent ``Timeout``, a kill), the
        application is cancelled and the exception propagates.
        """
        try:
            while True:
                with self._lock:
                    if self._mailbox:
                        item = self._mailbox.popleft()
                        room = None
                        if item[0] == "body":
                            self._queued_chunks -= 1
                            if self._room is not None and (
                                self._queued_chunks < self._owner.response_buffer
                            ):
                                room, self._room = self._room, None
                        break
                self._signal.wait()
        except BaseException:
            self._interrupt()
            raise
        if room is not None:
            self._to_loop(self.room_made, room)
        return item

    def _interrupt(self) -> None:
        self._ended = True
        self._abandon()
        task = self._task
        if task is not None:
            self._to_loop(task.cancel)

    def _read_body(self) -> None:
        """Answer the application's ``receive()`` with the next piece of body."""
        if self._abandoned:
            return
        remaining = self._remaining
        size = self._owner.body_chunk_size
        if remaining is not None:
            size = min(size, remaining)
        try:
            data = self._input.read(size) if size else b""
        except Exception as exc:
            # The client went away mid-upload (OSError, gunicorn's NoMoreData,
            # gevent.pywsgi's IOError, a reset), or sent a malformed body.
            logger.debug("Reading the request body failed: %r", exc)
            self._abandon()
            return
        except BaseException:
            # A gevent Timeout or a kill while reading: cancel the application.
            self._interrupt()
            raise
        if remaining is None:
            more = bool(data)
        else:
            if size and not data:
                # The body ended before its Content-Length: the client left.
                logger.debug("The request body ended %d bytes short", remaining)
                self._abandon()
                return
            # A short read still counts; the next one tells whether it ended.
            self._remaining = remaining = remaining - len(data)
            more = remaining > 0
        self._to_loop(self.body_arrived, data, more)

    def _abandon(self) -> None:
        if not self._abandoned:
            self._abandoned = True
            self._to_loop(self.disconnected)

    def head(self) -> tuple[str, list[tuple[str, str]]]:
        """Serve the application until it starts its response; its status and headers.

        Re-raises what the application raised before that (a cancellation as
        ``RuntimeError``). If the client left first, the application's end is
        only logged and this answers ``400 Bad Request`` for it, with
        ``_ended`` set: the caller then sends :data:`_CUT_OFF_BODY`.
        """
        while True:
            item = self._next_item()
            kind = item[0]
            if kind == "start":
                return item[1], item[2]
            if kind == "read":
                self._read_body()
            elif kind == "end":
                self._ended = True
                error = item[1]
                if self._abandoned:
                    self._final_chunk_seen = True
                    _after_disconnect(error)
                    return _CUT_OFF_STATUS, list(_CUT_OFF_HEADERS)
                if error is not None:
                    raise _for_server(error, "before it started its response")
                raise RuntimeError("The ASGI application returned without starting a response")

    def completed_body(self) -> list[bytes] | None:
        """The whole body if the application has already finished cleanly, else None.

        Lets the common small response go back as a list, without a trip
        through the iterator.
        """
        with self._lock:
            items = self._mailbox
            if len(items) < 2:
                return None
            end, last = items[-1], items[-2]
            if end[0] != "end" or end[1] is not None or last[0] != "body" or last[2]:
                return None  # not finished, failed, or the last chunk said "more"
            bodies = [item[1] for item in items if item[0] == "body"]
            if len(bodies) != len(items) - 1:
                return None  # a body read is still pending
            items.clear()
            self._queued_chunks = 0
        self._ended = self._final_chunk_seen = True
        return [data for data in bodies if data]

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        while not self._ended:
            item = self._next_item()
            kind = item[0]
            if kind == "body":
                if not item[2]:
                    self._final_chunk_seen = True
                if item[1]:
                    return item[1]  # type: ignore[no-any-return]
            elif kind == "read":
                self._read_body()
            elif kind == "end":
                self._ended = True
                error = item[1]
                if self._abandoned:
                    _after_disconnect(error)  # the client is gone: just end the body
                elif error is not None:
                    raise _for_server(error, "in the middle of its response")
                elif not self._final_chunk_seen:
                    raise RuntimeError(
                        "The ASGI application returned without completing its response"
                    )
        raise StopIteration

    def close(self) -> None:
        """Called by the WSGI server when it is done with the response.

        Before the end of the response this means the client left: the
        application hears ``http.disconnect`` and has ``disconnect_grace``
        seconds to finish. Either way this waits until it has.
        """
        if not self._final_chunk_seen:
            self._abandon()
        while not self._ended:
            item = self._next_item()
            if item[0] == "end":
                self._ended = True
                _after_disconnect(item[1], fatal=False)
            elif item[0] == "read":
                self._read_body()


def _after_disconnect(error: BaseException | None, fatal: bool = True) -> None:
    """How the application ended once the client had left: logged, not raised.

    Only ``KeyboardInterrupt``, ``SystemExit`` and the like still go to the
    WSGI side (unless ``fatal`` is false: from ``close()``), as they do with
    the client there.
    """
    if error is None:
        return
    if isinstance(error, (OSError, asyncio.CancelledError)):
        logger.debug("The ASGI application ended after the client disconnected: %r", error)
    elif isinstance(error, Exception) or not fatal:
        logger.error(
            "Exception in the ASGI application after the client disconnected", exc_info=error
        )
    else:
        raise error


def _for_server(error: BaseException, where: str) -> BaseException:
    """What the WSGI call raises for the application's ``error``.

    A cancellation (not the client leaving: that is handled before) is a
    ``BaseException`` a WSGI server does not catch; gunicorn's gthread
    worker would exit. The server gets a ``RuntimeError`` instead.
    """
    if isinstance(error, asyncio.CancelledError):
        wrapped = RuntimeError(f"The ASGI application was cancelled {where}")
        wrapped.__cause__ = error
        return wrapped
    return error


# -- the adapter -------------------------------------------------------------------


class AsgiToWsgi:
    """Wrap an ASGI application (ASGI 2 or 3) into a WSGI application.

    * ``lifespan``: ``"auto"`` (run it once per process if the application
      supports it), ``"on"`` (the application must support it) or
      ``"off"``. ``startup_timeout`` / ``shutdown_timeout`` bound each step;
      a failed or timed-out startup makes every request raise
      :class:`LifespanFailed`.
    * ``body_chunk_size``: the most request body one ``receive()`` returns.
    * ``response_buffer``: how many response chunks may wait for the server
      before ``send()`` waits (backpressure); at least 1.
    * ``disconnect_grace``: seconds the application may keep running after
      the client left before its task is cancelled.

    See the module documentation for how requests, disconnects and lifespan
    are handled.
    """

    def __init__(
        self,
        application: Any,
        *,
        lifespan: Literal["auto", "on", "off"] = "auto",
        startup_timeout: float = 60.0,
        shutdown_timeout: float = 30.0,
        body_chunk_size: int = _BODY_CHUNK_SIZE,
        response_buffer: int = 1,
        disconnect_grace: float = 5.0,
    ) -> None:
        if lifespan not in ("auto", "on", "off"):
            raise ValueError(f"lifespan must be 'auto', 'on' or 'off', not {lifespan!r}")
        if body_chunk_size < 1 or response_buffer < 1:
            raise ValueError("body_chunk_size and response_buffer must be at least 1")
        self.application = guarantee_single_callable(application)
        self.lifespan = lifespan
        self.startup_timeout = startup_timeout
        self.shutdown_timeout = shutdown_timeout
        self.body_chunk_size = body_chunk_size
        self.response_buffer = response_buffer
        self.disconnect_grace = disconnect_grace
        # Per process: the loop runner the lifespan below belongs to, and its outcome.
        self._lifespan_runner: _ProcessLoop | None = None
        self._lifespan: _Lifespan | None = None
        self._started: Future[None] | None = None
        # The runner whose startup succeeded: requests on it skip the checks.
        self._serving: _ProcessLoop | None = None
        self._lock = threading.Lock()

    # -- lifespan ---------------------------------------------------------------

    def startup(self) -> None:
        """Run the lifespan startup in this process now, if not done yet.

        Called by the first request otherwise. Raises :class:`LifespanFailed`
        if it failed.
        """
        self._ready()

    def _ready(self) -> asyncio.AbstractEventLoop:
        runner = _process_loop
        if runner is None or runner.loop is None:
            runner = _get_runner()
        loop = runner.loop
        assert loop is not None
        if self._lifespan_runner is not runner:
            with self._lock:
                if self._lifespan_runner is not runner:
                    begun: Future[None] = hubs.get_hub().new_future()
                    self._started = begun
                    if self.lifespan == "off":
                        begun.set_result(None)
                    else:
                        self._lifespan = _Lifespan(
                            self.application, self.lifespan, self.startup_timeout
                        )
                        # In a context of its own, not the first request's: what
                        # startup begins (background tasks) must not inherit that
                        # request's trace span and Sentry scope.
                        loop.call_soon_threadsafe(
                            self._begin_lifespan,
                            self._lifespan,
                            begun,
                            context=contextvars.Context(),
                        )
                    self._lifespan_runner = runner
        started = self._started
        assert started is not None
        if not started.done():
            _park(started)
        lifespan = self._lifespan
        if lifespan is not None and lifespan.failure is not None:
            raise LifespanFailed(lifespan.failure)
        self._serving = runner
        return loop

    def _begin_lifespan(self, lifespan: _Lifespan, started: Future[None]) -> None:
        async def run() -> None:
            try:
                await lifespan.startup()
            finally:
                started.set_result(None)
            if lifespan.supported:
                _shutdown_at_exit(self)

        lifespan.starting = asyncio.ensure_future(run())
        # An adapter dropped without shutdown() leaves no lifespan task behind.
        weakref.finalize(self, _cancel_soon, lifespan, asyncio.get_running_loop())

    def shutdown(self) -> None:
        """Run the lifespan shutdown in this process, if startup ran; waits for it.

        Also run at interpreter exit if not called.
        """
        lifespan = self._lifespan
        runner = _process_loop
        if (
            runner is None
            or runner.loop is None
            or self._lifespan_runner is not runner
            or lifespan is None
            or not lifespan.supported
        ):
            return
        done = asyncio.run_coroutine_threadsafe(
            lifespan.shutdown(self.shutdown_timeout), runner.loop
        )
        _park(done)

    # -- requests -----------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Any:
        runner = _process_loop
        loop = runner.loop if runner is self._serving and runner is not None else None
        if loop is None:
            loop = self._ready()
        exchange = _Exchange(self, environ, loop)
        exchange.start(self.build_scope(environ))
        status, headers = exchange.head()
        start_response(status, headers)
        if exchange._ended:  # the client left before the response started
            return [_CUT_OFF_BODY]
        body = exchange.completed_body()
        return exchange if body is None else body

    def build_scope(self, environ: WSGIEnvironment) -> dict[str, Any]:
        """The ASGI HTTP scope for a WSGI environ."""
        get = environ.get
        script_name = get("SCRIPT_NAME", "")
        full_path = script_name + get("PATH_INFO", "")
        raw_uri = get("RAW_URI") or get("REQUEST_URI")
        if raw_uri:
            raw_path = raw_uri.encode("latin-1").partition(b"?")[0]
        else:
            raw_path = quote(full_path.encode("latin-1"), safe=_SAFE_PATH_CHARS).encode("ascii")
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": dict(_ASGI_VERSIONS),
            "http_version": get("SERVER_PROTOCOL", "HTTP/1.1").partition("/")[2] or "1.1",
            "method": environ["REQUEST_METHOD"].upper(),
            "scheme": get("wsgi.url_scheme", "http"),
            "path": _utf8(full_path),
            "raw_path": raw_path,
            "query_string": get("QUERY_STRING", "").encode("latin-1"),
            "root_path": _utf8(script_name),
            "headers": _request_headers(environ),
            "server": (get("SERVER_NAME", "localhost"), _port(get("SERVER_PORT"))),
        }
        if get("REMOTE_ADDR"):
            scope["client"] = (environ["REMOTE_ADDR"], _port(get("REMOTE_PORT")))
        lifespan = self._lifespan
        if lifespan is not None and lifespan.supported:
            scope["state"] = dict(lifespan.state)
        return scope


def _port(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


# Applications whose lifespan started, shut down at interpreter exit.
_at_exit: weakref.WeakSet[AsgiToWsgi] = weakref.WeakSet()
_at_exit_registered = False


def _shutdown_at_exit(application: AsgiToWsgi) -> None:
    global _at_exit_registered
    _at_exit.add(application)
    if not _at_exit_registered:
        _at_exit_registered = True
        atexit.register(_run_exit_shutdowns)


def _run_exit_shutdowns() -> None:
    for application in list(_at_exit):
        try:
            application.shutdown()
        except Exception:
            logger.exception("lifespan shutdown at exit failed")
