"""Tests for asgigreen.typing: the names exist, the shapes match the ASGI spec."""

from __future__ import annotations

import os
import sys
import textwrap
import typing
from pathlib import Path

import pytest

from asgigreen import typing as asgi_typing

# The public names of asgiref.typing 3.13; code importing any of them from
# asgiref must be able to import them from asgigreen instead.
ASGIREF_NAMES = [
    "ASGIVersions",
    "HTTPScope",
    "WebSocketScope",
    "LifespanScope",
    "WWWScope",
    "Scope",
    "HTTPRequestEvent",
    "HTTPResponseStartEvent",
    "HTTPResponseBodyEvent",
    "HTTPResponseTrailersEvent",
    "HTTPResponsePathsendEvent",
    "HTTPServerPushEvent",
    "HTTPDisconnectEvent",
    "WebSocketConnectEvent",
    "WebSocketAcceptEvent",
    "WebSocketReceiveEvent",
    "WebSocketSendEvent",
    "WebSocketResponseStartEvent",
    "WebSocketResponseBodyEvent",
    "WebSocketDisconnectEvent",
    "WebSocketCloseEvent",
    "LifespanStartupEvent",
    "LifespanShutdownEvent",
    "LifespanStartupCompleteEvent",
    "LifespanStartupFailedEvent",
    "LifespanShutdownCompleteEvent",
    "LifespanShutdownFailedEvent",
    "ASGIReceiveEvent",
    "ASGISendEvent",
    "ASGIReceiveCallable",
    "ASGISendCallable",
    "ASGI2Protocol",
    "ASGI2Application",
    "ASGI3Application",
    "ASGIApplication",
]

# Every event TypedDict and the "type" string the spec gives it.
EVENT_TYPES = {
    "HTTPRequestEvent": "http.request",
    "HTTPResponseStartEvent": "http.response.start",
    "HTTPResponseBodyEvent": "http.response.body",
    "HTTPResponseTrailersEvent": "http.response.trailers",
    "HTTPResponsePathsendEvent": "http.response.pathsend",
    "HTTPResponseZeroCopySendEvent": "http.response.zerocopysend",
    "HTTPResponseEarlyHintEvent": "http.response.early_hint",
    "HTTPResponseDebugEvent": "http.response.debug",
    "HTTPServerPushEvent": "http.response.push",
    "HTTPDisconnectEvent": "http.disconnect",
    "WebSocketConnectEvent": "websocket.connect",
    "WebSocketAcceptEvent": "websocket.accept",
    "WebSocketReceiveEvent": "websocket.receive",
    "WebSocketSendEvent": "websocket.send",
    "WebSocketResponseStartEvent": "websocket.http.response.start",
    "WebSocketResponseBodyEvent": "websocket.http.response.body",
    "WebSocketDisconnectEvent": "websocket.disconnect",
    "WebSocketCloseEvent": "websocket.close",
    "LifespanStartupEvent": "lifespan.startup",
    "LifespanShutdownEvent": "lifespan.shutdown",
    "LifespanStartupCompleteEvent": "lifespan.startup.complete",
    "LifespanStartupFailedEvent": "lifespan.startup.failed",
    "LifespanShutdownCompleteEvent": "lifespan.shutdown.complete",
    "LifespanShutdownFailedEvent": "lifespan.shutdown.failed",
}


def typeddicts() -> list[type]:
    return [
        obj
        for obj in vars(asgi_typing).values()
        if isinstance(obj, type) and typing.is_typeddict(obj)
    ]


def union_members(alias: object) -> set[str]:
    return {member.__name__ for member in typing.get_args(alias)}


@pytest.mark.parametrize("name", ASGIREF_NAMES)
def test_asgiref_name_is_exported(name: str) -> None:
    assert name in asgi_typing.__all__
    assert hasattr(asgi_typing, name)


def test_all_lists_only_real_names() -> None:
    for name in asgi_typing.__all__:
        assert hasattr(asgi_typing, name), name


def test_star_import_gives_the_public_names() -> None:
    namespace: dict[str, object] = {}
    exec("from asgigreen.typing import *", namespace)
    assert set(ASGIREF_NAMES) <= namespace.keys()
    # Private helpers stay private.
    assert "_Headers" not in namespace


@pytest.mark.parametrize("cls", typeddicts(), ids=lambda cls: cls.__name__)
def test_annotations_resolve_at_runtime(cls: type) -> None:
    # The module uses postponed annotations; a typo in one would only show up
    # when someone (pydantic, typeguard...) resolves the hints.
    hints = typing.get_type_hints(cls)
    assert hints


@pytest.mark.parametrize(("name", "event_type"), sorted(EVENT_TYPES.items()))
def test_event_type_literal(name: str, event_type: str) -> None:
    hints = typing.get_type_hints(getattr(asgi_typing, name))
    assert hints["type"] == typing.Literal[event_type]


def test_every_event_class_is_checked() -> None:
    events = {cls.__name__ for cls in typeddicts() if cls.__name__.endswith("Event")}
    assert events == EVENT_TYPES.keys()


@pytest.mark.parametrize(
    ("cls", "scope_type"),
    [
        (asgi_typing.HTTPScope, "http"),
        (asgi_typing.WebSocketScope, "websocket"),
        (asgi_typing.LifespanScope, "lifespan"),
    ],
)
def test_scope_type_literal_and_optional_state(cls: type, scope_type: str) -> None:
    hints = typing.get_type_hints(cls)
    assert hints["type"] == typing.Literal[scope_type]
    assert hints["asgi"] is asgi_typing.ASGIVersions
    # "state" only exists when the server supports lifespan state.
    assert cls.__optional_keys__ == frozenset({"state"})  # type: ignore[attr-defined]


def test_http_scope_keys() -> None:
    assert asgi_typing.HTTPScope.__required_keys__ == {
        "type",
        "asgi",
        "http_version",
        "method",
        "scheme",
        "path",
        "raw_path",
        "query_string",
        "root_path",
        "headers",
        "client",
        "server",
        "extensions",
    }


def test_websocket_scope_has_subprotocols_but_no_method() -> None:
    keys = asgi_typing.WebSocketScope.__required_keys__
    assert "subprotocols" in keys
    assert "method" not in keys


def test_asgi_versions() -> None:
    hints = typing.get_type_hints(asgi_typing.ASGIVersions)
    assert set(typing.get_args(hints["version"])) == {
        typing.Literal["2.0"],
        typing.Literal["3.0"],
    }
    assert hints["spec_version"] is str


def test_scope_unions() -> None:
    assert union_members(asgi_typing.WWWScope) == {"HTTPScope", "WebSocketScope"}
    assert union_members(asgi_typing.Scope) == {"HTTPScope", "WebSocketScope", "LifespanScope"}


def test_receive_event_union() -> None:
    assert union_members(asgi_typing.ASGIReceiveEvent) == {
        "HTTPRequestEvent",
        "HTTPDisconnectEvent",
        "WebSocketConnectEvent",
        "WebSocketReceiveEvent",
        "WebSocketDisconnectEvent",
        "LifespanStartupEvent",
        "LifespanShutdownEvent",
    }


def test_send_event_union_matches_asgiref_membership() -> None:
    # Same members as asgiref, so exhaustive matches written for asgiref still hold.
    assert union_members(asgi_typing.ASGISendEvent) == {
        "HTTPResponseStartEvent",
        "HTTPResponseBodyEvent",
        "HTTPResponseTrailersEvent",
        "HTTPServerPushEvent",
        "HTTPDisconnectEvent",
        "WebSocketAcceptEvent",
        "WebSocketSendEvent",
        "WebSocketResponseStartEvent",
        "WebSocketResponseBodyEvent",
        "WebSocketCloseEvent",
        "LifespanStartupCompleteEvent",
        "LifespanStartupFailedEvent",
        "LifespanShutdownCompleteEvent",
        "LifespanShutdownFailedEvent",
    }


def test_extension_events_mark_spec_optional_keys() -> None:
    zerocopy = asgi_typing.HTTPResponseZeroCopySendEvent
    assert zerocopy.__required_keys__ == {"type", "file"}
    assert zerocopy.__optional_keys__ == {"offset", "count", "more_body"}
    assert asgi_typing.HTTPResponseEarlyHintEvent.__required_keys__ == {"type", "links"}


def test_tls_extension_keys() -> None:
    tls = asgi_typing.TLSExtensionInfo
    assert tls.__required_keys__ == {"server_cert", "tls_version", "cipher_suite"}
    assert tls.__optional_keys__ == {"client_cert_chain", "client_cert_name", "client_cert_error"}


def test_matches_asgiref_shapes_when_installed() -> None:
    asgiref_typing = pytest.importorskip("asgiref.typing")
    for name in asgiref_typing.__all__:
        theirs: typing.Any = getattr(asgiref_typing, name)
        ours: typing.Any = getattr(asgi_typing, name)
        if typing.is_typeddict(theirs):
            assert theirs.__required_keys__ == ours.__required_keys__, name
            assert theirs.__optional_keys__ == ours.__optional_keys__, name
            # Compare by repr so ASGIVersions from either module reads the same.
            their_hints = {
                key: repr(value).replace("asgiref", "asgigreen")
                for key, value in typing.get_type_hints(theirs).items()
            }
            our_hints = {key: repr(value) for key, value in typing.get_type_hints(ours).items()}
            assert their_hints == our_hints, name


def test_mypy_accepts_valid_and_rejects_invalid_usage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mypy_api = pytest.importorskip("mypy.api")
    # Realistic usage that must type-check, plus one line (marked "#!") that
    # sends the wrong event type and must be the only error reported.
    source = tmp_path / "usage.py"
    source.write_text(
        textwrap.dedent(
            """
            from asgigreen.typing import (
                ASGI3Application, ASGIApplication, ASGIReceiveCallable, ASGISendCallable,
                HTTPResponseStartEvent, Scope,
            )

            async def app(
                scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
            ) -> None:
                event = await receive()
                if event["type"] == "http.request":
                    body: bytes = event["body"]
                await send({"type": "http.response.start", "status": 200, "headers": [],
                            "trailers": False})

            class Legacy:
                def __init__(self, scope: Scope) -> None:
                    self.scope = scope

                async def __call__(self, receive: ASGIReceiveCallable,
                                   send: ASGISendCallable) -> None:
                    pass

            single: ASGI3Application = app
            either: ASGIApplication = Legacy
            also_either: ASGIApplication = app

            def bad_start(s: int, t: bool) -> HTTPResponseStartEvent:
                return {"type": "http.response.body", "status": s, "headers": [], "trailers": t}  #!
            """
        )
    )
    monkeypatch.setenv("MYPYPATH", str(Path(__file__).resolve().parents[1]))
    stdout, stderr, status = mypy_api.run(
        [
            "--strict",
            "--no-incremental",
            "--cache-dir",
            os.devnull,
            "--python-executable",
            sys.executable,
            str(source),
        ]
    )
    errors = [line for line in stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1, stdout + stderr
    bad_line = next(
        number
        for number, line in enumerate(source.read_text().splitlines(), start=1)
        if line.endswith("#!")
    )
    assert f"usage.py:{bad_line}:" in errors[0]
    assert "http.response.body" in errors[0]
    assert status == 1
