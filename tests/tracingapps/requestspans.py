"""A server span per request, continuing the client's ``traceparent``.

What an OpenTelemetry server instrumentation does, kept to the part the
tests need: the span is current while the application runs, so every span
the views start belongs to the client's trace. The ``who`` query parameter
is recorded on the span.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from opentelemetry import propagate, trace

_tracer = trace.get_tracer("tracingapps.requestspans")


def _who(query: str) -> str:
    return parse_qs(query).get("who", [""])[0]


class TraceAsgi:
    """ASGI middleware: each HTTP request runs inside a ``request`` span."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]
        }
        attributes = {"who": _who(scope["query_string"].decode("latin-1"))}
        with _tracer.start_as_current_span(
            "request",
            context=propagate.extract(headers),
            kind=trace.SpanKind.SERVER,
            attributes=attributes,
        ):
            await self.app(scope, receive, send)


async def _lifespan(receive: Any, send: Any) -> None:
    # Django's handler refuses lifespan with an error, which the server only
    # logs but Sentry would record as an event: answer it here.
    while True:
        message = await receive()
        kind = message["type"].rsplit(".", 1)[-1]
        await send({"type": f"lifespan.{kind}.complete"})
        if kind == "shutdown":
            return


class TraceWsgi:
    """WSGI middleware: each request, its response body included, runs inside a ``request`` span."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        carrier = {"traceparent": environ.get("HTTP_TRACEPARENT", "")}
        attributes = {"who": _who(environ.get("QUERY_STRING", ""))}
        with _tracer.start_as_current_span(
            "request",
            context=propagate.extract(carrier),
            kind=trace.SpanKind.SERVER,
            attributes=attributes,
        ):
            body = self.app(environ, start_response)
            try:
                return list(body)
            finally:
                close = getattr(body, "close", None)
                if close is not None:
                    close()
