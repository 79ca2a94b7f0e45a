"""Static types for ASGI 3 scopes, events and applications.

Every name that ``asgiref.typing`` (3.13) exports is available here with the
same shape, so annotations written against asgiref keep type-checking when the
import is switched to ``asgigreen.typing``.

A note on optional keys: the core scope and event types mirror asgiref exactly,
which means some keys the ASGI spec calls optional (``more_body``, ``body``,
``subprotocol``...) are declared as required. Keeping the shapes identical
matters more for a drop-in replacement than being stricter than asgiref. The
extension-only types that asgiref does not provide (zero-copy send, early
hints, TLS) follow the spec and mark optional keys ``NotRequired``.

Spec: https://asgi.readthedocs.io/en/latest/specs/index.html
"""

# No ``from __future__ import annotations`` here: TypedDict can only tell
# NotRequired keys apart (``__optional_keys__``) when annotations are real
# objects rather than strings.
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Literal, NotRequired, Protocol, TypeAlias, TypedDict

__all__ = (
    "ASGI2Application",
    "ASGI2Protocol",
    "ASGI3Application",
    "ASGIApplication",
    "ASGIReceiveCallable",
    "ASGIReceiveEvent",
    "ASGISendCallable",
    "ASGISendEvent",
    "ASGIVersions",
    "HTTPDisconnectEvent",
    "HTTPRequestEvent",
    "HTTPResponseBodyEvent",
    "HTTPResponseDebugEvent",
    "HTTPResponseEarlyHintEvent",
    "HTTPResponsePathsendEvent",
    "HTTPResponseStartEvent",
    "HTTPResponseTrailersEvent",
    "HTTPResponseZeroCopySendEvent",
    "HTTPScope",
    "HTTPServerPushEvent",
    "LifespanScope",
    "LifespanShutdownCompleteEvent",
    "LifespanShutdownEvent",
    "LifespanShutdownFailedEvent",
    "LifespanStartupCompleteEvent",
    "LifespanStartupEvent",
    "LifespanStartupFailedEvent",
    "Scope",
    "TLSExtensionInfo",
    "WWWScope",
    "WebSocketAcceptEvent",
    "WebSocketCloseEvent",
    "WebSocketConnectEvent",
    "WebSocketDisconnectEvent",
    "WebSocketReceiveEvent",
    "WebSocketResponseBodyEvent",
    "WebSocketResponseStartEvent",
    "WebSocketScope",
    "WebSocketSendEvent",
)

# Headers travel as (name, value) byte pairs; names are lower-cased.
_Headers: TypeAlias = Iterable[tuple[bytes, bytes]]


# --------------------------------------------------------------------------
# Scopes
# --------------------------------------------------------------------------


class ASGIVersions(TypedDict):
    """The ``scope["asgi"]`` dict: which ASGI and sub-spec versions are in use."""

    spec_version: str
    version: Literal["2.0"] | Literal["3.0"]


class HTTPScope(TypedDict):
    """Connection scope for one HTTP request."""

    type: Literal["http"]
    asgi: ASGIVersions
    http_version: str
    method: str
    scheme: str
    path: str
    raw_path: bytes
    query_string: bytes
    root_path: str
    headers: _Headers
    client: tuple[str, int] | None
    server: tuple[str, int | None] | None
    # Copy of the lifespan state, only present when the server supports it.
    state: NotRequired[dict[str, Any]]
    # Keyed by extension name, e.g. "http.response.trailers" or "tls".
    extensions: dict[str, dict[object, object]] | None


class WebSocketScope(TypedDict):
    """Connection scope for one WebSocket connection."""

    type: Literal["websocket"]
    asgi: ASGIVersions
    http_version: str
    scheme: str
    path: str
    raw_path: bytes
    query_string: bytes
    root_path: str
    headers: _Headers
    client: tuple[str, int] | None
    server: tuple[str, int | None] | None
    subprotocols: Iterable[str]
    state: NotRequired[dict[str, Any]]
    extensions: dict[str, dict[object, object]] | None


class LifespanScope(TypedDict):
    """Scope of the single lifespan "connection" a server opens at startup."""

    type: Literal["lifespan"]
    asgi: ASGIVersions
    # Shared dict the application may fill during startup; servers copy it
    # into every later HTTP/WebSocket scope.
    state: NotRequired[dict[str, Any]]


#: The scope of an HTTP request or a WebSocket connection.
WWWScope: TypeAlias = HTTPScope | WebSocketScope
#: Any scope an ASGI 3 application is called with.
Scope: TypeAlias = HTTPScope | WebSocketScope | LifespanScope


class TLSExtensionInfo(TypedDict):
    """Value of ``scope["extensions"]["tls"]`` (the ASGI TLS extension).

    Certificates are PEM strings; ``tls_version`` and ``cipher_suite`` are the
    numeric codes from the TLS RFCs (``0x0304`` is TLS 1.3).
    """

    server_cert: str | None
    client_cert_chain: NotRequired[Iterable[str]]
    client_cert_name: NotRequired[str | None]
    client_cert_error: NotRequired[str | None]
    tls_version: int | None
    cipher_suite: int | None


# --------------------------------------------------------------------------
# HTTP events
# --------------------------------------------------------------------------


class HTTPRequestEvent(TypedDict):
    """A chunk of the request body (server -> application)."""

    type: Literal["http.request"]
    body: bytes
    more_body: bool


class HTTPResponseStartEvent(TypedDict):
    """Status line and headers of the response (application -> server)."""

    type: Literal["http.response.start"]
    status: int
    headers: _Headers
    # True announces that an ``http.response.trailers`` event will follow.
    trailers: bool


class HTTPResponseBodyEvent(TypedDict):
    """A chunk of the response body (application -> server)."""

    type: Literal["http.response.body"]
    body: bytes
    more_body: bool


class HTTPResponseTrailersEvent(TypedDict):
    """Trailing headers, sent after the last body chunk (trailers extension)."""

    type: Literal["http.response.trailers"]
    headers: _Headers
    more_trailers: bool


class HTTPResponsePathsendEvent(TypedDict):
    """Ask the server to send a file by absolute path (path send extension)."""

    type: Literal["http.response.pathsend"]
    path: str


class _FileWithDescriptor(Protocol):
    """Anything backed by a real OS file descriptor, as ``os.sendfile`` needs."""

    def fileno(self) -> int: ...


class HTTPResponseZeroCopySendEvent(TypedDict):
    """Ask the server to send from an open file (zero copy send extension).

    Without ``offset`` the server reads from the file's current position;
    without ``count`` it reads to the end of the file.
    """

    type: Literal["http.response.zerocopysend"]
    file: _FileWithDescriptor
    offset: NotRequired[int]
    count: NotRequired[int]
    more_body: NotRequired[bool]


class HTTPResponseEarlyHintEvent(TypedDict):
    """A ``103 Early Hints`` response carrying ``Link`` header values."""

    type: Literal["http.response.early_hint"]
    links: Iterable[bytes]


class HTTPResponseDebugEvent(TypedDict):
    """Test-only debug payload sent before the response starts (debug extension)."""

    type: Literal["http.response.debug"]
    info: dict[str, object]


class HTTPServerPushEvent(TypedDict):
    """Ask the server to push another resource over HTTP/2 (push extension)."""

    type: Literal["http.response.push"]
    path: str
    headers: _Headers


class HTTPDisconnectEvent(TypedDict):
    """The client went away, or the response is complete."""

    type: Literal["http.disconnect"]


# --------------------------------------------------------------------------
# WebSocket events
# --------------------------------------------------------------------------


class WebSocketConnectEvent(TypedDict):
    """The client asked to open the WebSocket; accept or close it."""

    type: Literal["websocket.connect"]


class WebSocketAcceptEvent(TypedDict):
    """Accept the connection, optionally choosing a subprotocol."""

    type: Literal["websocket.accept"]
    subprotocol: str | None
    headers: _Headers


class WebSocketReceiveEvent(TypedDict):
    """A message from the client; exactly one of ``bytes``/``text`` is set."""

    type: Literal["websocket.receive"]
    bytes: bytes | None
    text: str | None


class WebSocketSendEvent(TypedDict):
    """A message to the client; exactly one of ``bytes``/``text`` is set."""

    type: Literal["websocket.send"]
    bytes: bytes | None
    text: str | None


class WebSocketResponseStartEvent(TypedDict):
    """Deny the handshake with a custom HTTP response (denial response extension)."""

    type: Literal["websocket.http.response.start"]
    status: int
    headers: _Headers


class WebSocketResponseBodyEvent(TypedDict):
    """Body chunk of a handshake denial response (denial response extension)."""

    type: Literal["websocket.http.response.body"]
    body: bytes
    more_body: bool


class WebSocketDisconnectEvent(TypedDict):
    """The connection closed, from either side."""

    type: Literal["websocket.disconnect"]
    code: int
    reason: str | None


class WebSocketCloseEvent(TypedDict):
    """Close the connection (or reject it, if sent before accepting)."""

    type: Literal["websocket.close"]
    code: int
    reason: str | None


# --------------------------------------------------------------------------
# Lifespan events
# --------------------------------------------------------------------------


class LifespanStartupEvent(TypedDict):
    type: Literal["lifespan.startup"]


class LifespanShutdownEvent(TypedDict):
    type: Literal["lifespan.shutdown"]


class LifespanStartupCompleteEvent(TypedDict):
    type: Literal["lifespan.startup.complete"]


class LifespanStartupFailedEvent(TypedDict):
    type: Literal["lifespan.startup.failed"]
    message: str


class LifespanShutdownCompleteEvent(TypedDict):
    type: Literal["lifespan.shutdown.complete"]


class LifespanShutdownFailedEvent(TypedDict):
    type: Literal["lifespan.shutdown.failed"]
    message: str


# --------------------------------------------------------------------------
# Event unions and callables
# --------------------------------------------------------------------------

# These two unions list the same members as asgiref's, so exhaustive checks
# written against asgiref behave identically. Extension events asgiref leaves
# out (path send, zero copy, early hints, debug) are deliberately not added.

#: An event ``receive()`` can return.
ASGIReceiveEvent: TypeAlias = (
    HTTPRequestEvent
    | HTTPDisconnectEvent
    | WebSocketConnectEvent
    | WebSocketReceiveEvent
    | WebSocketDisconnectEvent
    | LifespanStartupEvent
    | LifespanShutdownEvent
)

#: An event an application can ``send()``.
ASGISendEvent: TypeAlias = (
    HTTPResponseStartEvent
    | HTTPResponseBodyEvent
    | HTTPResponseTrailersEvent
    | HTTPServerPushEvent
    | HTTPDisconnectEvent
    | WebSocketAcceptEvent
    | WebSocketSendEvent
    | WebSocketResponseStartEvent
    | WebSocketResponseBodyEvent
    | WebSocketCloseEvent
    | LifespanStartupCompleteEvent
    | LifespanStartupFailedEvent
    | LifespanShutdownCompleteEvent
    | LifespanShutdownFailedEvent
)

#: The ``receive`` an application is given.
ASGIReceiveCallable: TypeAlias = Callable[[], Awaitable[ASGIReceiveEvent]]
#: The ``send`` an application is given.
ASGISendCallable: TypeAlias = Callable[[ASGISendEvent], Awaitable[None]]


# --------------------------------------------------------------------------
# Applications
# --------------------------------------------------------------------------


class ASGI2Protocol(Protocol):
    """A legacy "double callable" application: built with the scope, then awaited."""

    def __init__(self, scope: Scope) -> None: ...

    async def __call__(self, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None: ...


#: An ASGI 2 (double callable) application: a class called with the scope.
ASGI2Application: TypeAlias = type[ASGI2Protocol]
#: An ASGI 3 (single callable) application: ``await app(scope, receive, send)``.
ASGI3Application: TypeAlias = Callable[
    [Scope, ASGIReceiveCallable, ASGISendCallable],
    Awaitable[None],
]
#: An ASGI 2 or ASGI 3 application.
ASGIApplication: TypeAlias = ASGI2Application | ASGI3Application
