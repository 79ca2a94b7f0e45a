"""Traces follow the work: OpenTelemetry spans and Sentry scopes across the bridges.

With the real opentelemetry-sdk (an in-memory span exporter) and the real
sentry-sdk (a transport that keeps envelopes instead of sending them), in the
run's mode: plain (threads hub: worker threads) or patched (gevent hub:
greenlet workers, the loop greenlets of ``async_to_sync``, real threads).

* In this process: a span or scope opened before a bridge is the parent of
  what the work opens on the other side, on every kind of worker the hub
  has, through nested bridges, and for concurrent callers each with their
  own. A caller whose context holds no scope never sees another's, and
  AsgiToWsgi's lifespan is in no request's trace (both were wrong before).
* Served as users serve them (``tests/tracingapps``), with real HTTP clients
  sending ``traceparent`` and ``sentry-trace`` headers, concurrently, and
  the server writing its spans and events to a file the test reads: a
  Django sync view calling async code and an async view calling the
  database, through Django's ASGI handler under uvicorn (plain) or
  ``asgigreen serve`` (patched), through its WSGI handler and through
  AsgiToWsgi under gunicorn (``-k gthread`` plain, ``-k gevent`` patched);
  a Flask async view under gunicorn and under ``asgigreen serve``.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import io
import json
import re
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sentry_sdk
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sentry_sdk.envelope import Envelope
from sentry_sdk.integrations.threading import ThreadingIntegration
from sentry_sdk.transport import Transport
from services import Service, bin_path, gunicorn, listening_socket, python_env
from tracingapps.recording import native_thread_id

from asgigreen import hubs
from asgigreen.asgi_to_wsgi import AsgiToWsgi
from asgigreen.realthread import in_real_thread, run_in_real_thread
from asgigreen.sync import (
    AsyncSingleThreadContext,
    ThreadSensitiveContext,
    async_to_sync,
    sync_to_async,
)

TESTS_DIR = Path(__file__).resolve().parent
PATCHED = hubs.get_hub().name == "gevent"
CHILD_TIMEOUT = 60
RECORD_TIMEOUT = 15.0


def _greenlet_id() -> int:
    if not PATCHED:
        return 0
    from greenlet import getcurrent

    return id(getcurrent())


@dataclass(frozen=True)
class Where:
    """The OS thread and greenlet some code ran on."""

    thread: int
    greenlet: int

    @classmethod
    def here(cls) -> Where:
        return cls(native_thread_id(), _greenlet_id())


# -- OpenTelemetry in this process ----------------------------------------------------


class Spans:
    """A tracer of a provider of its own, exporting finished spans to memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("test_tracing")

    def span(self, name: str) -> Any:
        return self.tracer.start_as_current_span(name)

    def finished(self) -> dict[str, ReadableSpan]:
        spans = self.exporter.get_finished_spans()
        by_name = {span.name: span for span in spans}
        assert len(by_name) == len(spans), [span.name for span in spans]
        return by_name

    def parent_of(self, name: str) -> str | None:
        """The name of the finished span ``name``'s parent; None for a root span."""
        spans = self.finished()
        parent = spans[name].parent
        if parent is None:
            return None
        assert parent.trace_id == spans[name].context.trace_id
        names = [other.name for other in spans.values() if other.context.span_id == parent.span_id]
        assert names, f"{name}'s parent is not a span of this test"
        return names[0]


@pytest.fixture
def spans() -> Iterator[Spans]:
    recorder = Spans()
    yield recorder
    recorder.provider.shutdown()


def _assert_ran_on(kind: str, caller: Where, worker: Where) -> None:
    """The work ran where the hub sends that kind of call, not on the caller."""
    real = "real thread" in kind
    if PATCHED and not real:
        assert worker.thread == caller.thread and worker.greenlet != caller.greenlet, kind
    else:
        assert worker.thread != caller.thread, kind


SYNC_TO_ASYNC_KINDS = [
    "thread-sensitive",
    "thread-sensitive, in a ThreadSensitiveContext",
    "not thread-sensitive",
    "not thread-sensitive, own executor",
    "thread-sensitive, real thread",
    "not thread-sensitive, real thread",
]


def _sync_to_async_for(kind: str, func: Callable[[], Where], pool: ThreadPoolExecutor) -> Any:
    options: dict[str, Any] = {"thread_sensitive": not kind.startswith("not")}
    if "real thread" in kind:
        options["real_thread"] = True
    if "own executor" in kind:
        options["executor"] = pool
    return sync_to_async(func, **options)


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", SYNC_TO_ASYNC_KINDS)
async def test_otel_span_is_the_parent_across_sync_to_async(spans: Spans, kind: str) -> None:
    def child() -> Where:
        with spans.span("child"):
            return Where.here()

    with ThreadPoolExecutor(2) as pool:
        call = _sync_to_async_for(kind, child, pool)
        with spans.span("parent"):
            caller = Where.here()
            if "ThreadSensitiveContext" in kind:
                async with ThreadSensitiveContext():
                    worker = await call()
            else:
                worker = await call()
    _assert_ran_on(kind, caller, worker)
    assert spans.parent_of("child") == "parent"
    assert spans.parent_of("parent") is None


async def _async_child(spans: Spans) -> Where:
    with spans.span("child"):
        await asyncio.sleep(0)
        return Where.here()


def _through_sync_to_async(call: Callable[[], Where], real_thread: bool = False) -> Where:
    """``call()`` from sync code that async code reached through ``sync_to_async``."""

    async def main() -> Where:
        result: Where = await sync_to_async(call, real_thread=real_thread)()
        return result

    return asyncio.run(main())


ASYNC_TO_SYNC_KINDS: dict[str, Callable[[Callable[[], Where]], Where]] = {
    # The caller is plain sync code: the loop runs on a worker of its own.
    "new loop": lambda call: call(),
    "in an AsyncSingleThreadContext": lambda call: _in_single_thread_context(call),
    # The caller was reached through sync_to_async: back on that loop.
    "outer loop": lambda call: _through_sync_to_async(call),
    # Called from a real thread (the gevent hub's native threads).
    "from a real thread": lambda call: _through_sync_to_async(call, real_thread=True),
}


def _in_single_thread_context(call: Callable[[], Where]) -> Where:
    with AsyncSingleThreadContext():
        return call()


@pytest.mark.parametrize("kind", list(ASYNC_TO_SYNC_KINDS))
def test_otel_span_is_the_parent_across_async_to_sync(spans: Spans, kind: str) -> None:
    def caller() -> Where:
        with spans.span("parent"):
            assert async_to_sync(_async_child)(spans) != Where.here()
        return Where.here()

    ASYNC_TO_SYNC_KINDS[kind](caller)
    assert spans.parent_of("child") == "parent"


def test_otel_span_is_the_parent_in_run_in_real_thread(spans: Spans) -> None:
    def child(name: str) -> Where:
        with spans.span(name):
            return Where.here()

    @in_real_thread(thread_sensitive=False)
    def free_child() -> Where:
        return child("free child")

    with spans.span("parent"):
        caller = Where.here()
        sensitive = run_in_real_thread(child, "child")
        free = free_child()
    assert spans.parent_of("child") == "parent"
    assert spans.parent_of("free child") == "parent"
    if PATCHED:  # plain: the caller is a real thread already and just calls
        assert sensitive.thread != caller.thread and free.thread != caller.thread


@pytest.mark.asyncio
async def test_otel_parents_through_nested_bridges(spans: Spans) -> None:
    """async -> sync -> async -> sync on a real thread -> async -> sync, a span at each level."""

    def level5() -> None:
        with spans.span("5 sync, not thread-sensitive"):
            pass

    async def level4() -> None:
        with spans.span("4 async"):
            await sync_to_async(level5, thread_sensitive=False)()

    def level3() -> None:
        with spans.span("3 sync, real thread"):
            async_to_sync(level4)()

    async def level2() -> None:
        with spans.span("2 async"):
            await sync_to_async(level3, real_thread=True)()

    def level1() -> None:
        with spans.span("1 sync"):
            async_to_sync(level2)()

    with spans.span("0 async"):
        await sync_to_async(level1)()
    names = sorted(spans.finished())
    for child, parent in zip(names[1:], names, strict=False):
        assert spans.parent_of(child) == parent
    assert len({span.context.trace_id for span in spans.finished().values()}) == 1


# -- Sentry in this process -----------------------------------------------------------


class SentryEvents:
    """What a Sentry client sent, as event dicts (transactions apart)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.transactions: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def keep(self, envelope: Envelope) -> None:
        with self._lock:
            for item in envelope.items:
                event = item.get_event()
                if event is not None:
                    self.events.append(dict(event))
                transaction = item.get_transaction_event()
                if transaction is not None:
                    self.transactions.append(dict(transaction))

    def by_message(self) -> dict[str, dict[str, Any]]:
        found = {event["message"]: event for event in self.events}
        assert len(found) == len(self.events), [event["message"] for event in self.events]
        return found

    def transaction(self, name: str) -> dict[str, Any]:
        (found,) = [t for t in self.transactions if t["transaction"] == name]
        return found


@pytest.fixture
def sentry() -> Iterator[SentryEvents]:
    kept = SentryEvents()

    class Keep(Transport):
        def capture_envelope(self, envelope: Envelope) -> None:
            kept.keep(envelope)

    sentry_sdk.init(
        dsn="http://public@127.0.0.1:9/1",  # never contacted: Keep replaces the network
        transport=Keep,
        traces_sample_rate=1.0,
        # Only the integration that concerns threads (the default ones would
        # also patch http.client and logging for the rest of the session).
        default_integrations=False,
        integrations=[ThreadingIntegration()],
    )
    try:
        yield kept
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.get_global_scope().set_client(None)


def _trace_of(event: dict[str, Any]) -> dict[str, Any]:
    trace_context: dict[str, Any] = event["contexts"]["trace"]
    return trace_context


def _sentry_work(label: str) -> Where:
    """Sync work for a request: a Sentry span and a message inside it."""
    with sentry_sdk.start_span(op="work", name=f"work {label}"):
        sentry_sdk.capture_message(f"work {label}")
    return Where.here()


def _assert_scope_reached(sentry: SentryEvents, label: str, transaction: str) -> None:
    """The event ``work LABEL`` carries the request's tag, breadcrumb and trace."""
    event = sentry.by_message()[f"work {label}"]
    assert event["tags"] == {"who": label}
    assert [crumb["message"] for crumb in event["breadcrumbs"]["values"]] == [f"start {label}"]
    outer = sentry.transaction(transaction)
    (work_span,) = [span for span in outer["spans"] if span["description"] == f"work {label}"]
    assert _trace_of(event)["trace_id"] == _trace_of(outer)["trace_id"]
    assert _trace_of(event)["span_id"] == work_span["span_id"]
    assert work_span["parent_span_id"] == _trace_of(outer)["span_id"]


@contextlib.contextmanager
def _request_scope(label: str) -> Iterator[None]:
    """What a server integration opens for a request: a scope, a transaction."""
    with sentry_sdk.isolation_scope() as scope:
        scope.set_tag("who", label)
        sentry_sdk.add_breadcrumb(message=f"start {label}")
        with sentry_sdk.start_transaction(name=f"request {label}"):
            yield


def test_sentry_keeps_its_scopes_in_real_context_variables() -> None:
    """Patched too: sentry-sdk falls back to thread-locals only for gevent before 20.9.

    Scopes in thread-locals would stay with each greenlet and never cross a
    bridge; in context variables the bridges carry them like any other.
    """
    import contextvars

    from sentry_sdk import scope, utils

    assert utils.HAS_REAL_CONTEXTVARS
    assert type(scope._current_scope) is contextvars.ContextVar
    assert type(scope._isolation_scope) is contextvars.ContextVar


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", SYNC_TO_ASYNC_KINDS)
async def test_sentry_scope_reaches_sync_to_async(sentry: SentryEvents, kind: str) -> None:
    with ThreadPoolExecutor(2) as pool:
        call = _sync_to_async_for(kind, lambda: _sentry_work("a"), pool)
        with _request_scope("a"):
            caller = Where.here()
            if "ThreadSensitiveContext" in kind:
                async with ThreadSensitiveContext():
                    worker = await call()
            else:
                worker = await call()
    _assert_ran_on(kind, caller, worker)
    _assert_scope_reached(sentry, "a", "request a")


@pytest.mark.parametrize("kind", list(ASYNC_TO_SYNC_KINDS))
def test_sentry_scope_reaches_async_to_sync(sentry: SentryEvents, kind: str) -> None:
    async def work() -> Where:
        await asyncio.sleep(0)
        return _sentry_work("a")

    def caller() -> Where:
        with _request_scope("a"):
            async_to_sync(work)()
        return Where.here()

    ASYNC_TO_SYNC_KINDS[kind](caller)
    _assert_scope_reached(sentry, "a", "request a")


def test_sentry_scope_reaches_run_in_real_thread(sentry: SentryEvents) -> None:
    with _request_scope("a"):
        run_in_real_thread(_sentry_work, "a")
    _assert_scope_reached(sentry, "a", "request a")


def test_sentry_scope_of_a_request_does_not_reach_a_later_caller_without_one() -> None:
    """Regression: the threads hub's loop threads kept the scopes they were started with.

    Sentry's ThreadingIntegration runs a new thread in a copy of its starter's
    scopes, and the threads hub keeps its threads for later calls, so a
    caller without a scope of its own had its async_to_sync coroutine run
    with the tags of the request that happened to start the thread. In a
    fresh process, so the request surely starts that thread.
    """
    prefix = ["-m", "gevent.monkey", "--module"] if PATCHED else ["-m"]
    result = subprocess.run(
        [sys.executable, *prefix, "tracingapps.background_caller"],
        env=python_env(ASGIGREEN_HUB=hubs.get_hub().name),
        cwd=TESTS_DIR,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"request": {"who": "request"}, "background": {}}


def test_asgi_to_wsgi_lifespan_is_outside_the_first_requests_trace(
    spans: Spans, sentry: SentryEvents
) -> None:
    """Regression: AsgiToWsgi began the lifespan in the context of the request that
    started it, so startup, and every task it left running, was in that request's
    span and Sentry scope."""
    seen: dict[str, int] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            seen["startup"] = trace.get_current_span().get_span_context().span_id
            sentry_sdk.capture_message("startup")
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        seen["request"] = trace.get_current_span().get_span_context().span_id
        _sentry_work("a")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    adapter = AsgiToWsgi(app)
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
    }
    try:
        with _request_scope("a"), spans.span("first request") as span:
            assert b"".join(adapter(environ, lambda status, headers: None)) == b"ok"
    finally:
        adapter.shutdown()
    assert seen == {"startup": trace.INVALID_SPAN_ID, "request": span.get_span_context().span_id}
    _assert_scope_reached(sentry, "a", "request a")
    startup = sentry.by_message()["startup"]
    assert startup.get("tags", {}) == {}, startup
    assert startup.get("breadcrumbs", {}).get("values", []) == [], startup
    assert _trace_of(startup)["trace_id"] != _trace_of(sentry.transaction("request a"))["trace_id"]


# -- concurrent callers in this process --------------------------------------------------


@pytest.mark.asyncio
async def test_concurrent_tasks_keep_their_own_spans_and_scopes(
    spans: Spans, sentry: SentryEvents
) -> None:
    """30 tasks at once, all through the one thread-sensitive worker and the others."""

    def sync_work(label: str, where: str) -> None:
        with spans.span(f"{where} {label}"):
            time.sleep(0.002)  # others' calls queue behind this one
            _sentry_work(f"{where} {label}")

    async def async_work(label: str) -> None:
        with spans.span(f"async {label}"):
            await asyncio.sleep(0.002)
            _sentry_work(f"async {label}")
            await sync_to_async(sync_work)(label, "back")

    async def request(label: str) -> None:
        with _request_scope(label), spans.span(f"request {label}"):
            await asyncio.sleep(0.001)
            await sync_to_async(sync_work)(label, "sensitive")
            await sync_to_async(sync_work, thread_sensitive=False)(label, "free")
            await sync_to_async(lambda: async_to_sync(async_work)(label))()

    labels = [f"r{i}" for i in range(30)]
    await asyncio.gather(*(request(label) for label in labels))
    for label in labels:
        for where, parent in [
            ("sensitive", f"request {label}"),
            ("free", f"request {label}"),
            ("async", f"request {label}"),
            ("back", f"async {label}"),
        ]:
            assert spans.parent_of(f"{where} {label}") == parent
            _assert_request_event(sentry, f"{where} {label}", label)


def test_concurrent_sync_callers_keep_their_own_spans_and_scopes(
    spans: Spans, sentry: SentryEvents
) -> None:
    """20 threads (greenlets, patched) at once through async_to_sync and real threads."""

    def sync_work(label: str, where: str) -> None:
        with spans.span(f"{where} {label}"):
            time.sleep(0.002)
            _sentry_work(f"{where} {label}")

    async def async_work(label: str) -> None:
        with spans.span(f"async {label}"):
            await asyncio.sleep(0.002)
            _sentry_work(f"async {label}")
            await sync_to_async(sync_work)(label, "sensitive")
            await sync_to_async(sync_work, thread_sensitive=False, real_thread=True)(label, "real")

    errors: list[BaseException] = []

    def request(label: str) -> None:
        try:
            with _request_scope(label), spans.span(f"request {label}"):
                async_to_sync(async_work)(label)
                run_in_real_thread(sync_work, label, "run_in_real_thread")
        except BaseException as exc:
            errors.append(exc)

    labels = [f"t{i}" for i in range(20)]
    threads = [threading.Thread(target=request, args=(label,)) for label in labels]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    for label in labels:
        for where, parent in [
            ("async", f"request {label}"),
            ("sensitive", f"async {label}"),
            ("real", f"async {label}"),
            ("run_in_real_thread", f"request {label}"),
        ]:
            assert spans.parent_of(f"{where} {label}") == parent
            _assert_request_event(sentry, f"{where} {label}", label)


def _assert_request_event(sentry: SentryEvents, work: str, label: str) -> None:
    """The event of ``work`` belongs to request ``label`` alone: tag, breadcrumbs, trace."""
    event = sentry.by_message()[f"work {work}"]
    assert event["tags"] == {"who": label}, (work, event["tags"])
    assert [crumb["message"] for crumb in event["breadcrumbs"]["values"]] == [f"start {label}"]
    outer = sentry.transaction(f"request {label}")
    assert _trace_of(event)["trace_id"] == _trace_of(outer)["trace_id"]
    assert f"work {work}" in [span["description"] for span in outer["spans"]]


# -- served as users serve them ---------------------------------------------------------------


@dataclass(frozen=True)
class Client:
    """One request's label and the trace headers its client sent."""

    who: str
    otel_trace: str
    otel_parent: str
    sentry_trace: str
    sentry_parent: str

    @classmethod
    def new(cls, who: str) -> Client:
        return cls(
            who,
            secrets.token_hex(16),
            secrets.token_hex(8),
            secrets.token_hex(16),
            secrets.token_hex(8),
        )

    def get(self, port: int, path: str) -> Any:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request(
                "GET",
                f"{path}?who={self.who}",
                headers={
                    "traceparent": f"00-{self.otel_trace}-{self.otel_parent}-01",
                    "sentry-trace": f"{self.sentry_trace}-{self.sentry_parent}-1",
                },
            )
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        assert response.status == 200, body[:2000]
        return json.loads(body)


def _all_at_once(calls: list[Callable[[], Any]]) -> list[Any]:
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            results[index] = calls[index]()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    return results


@dataclass
class Record:
    """What a server wrote: spans and Sentry events of the requests, by label."""

    spans: list[dict[str, Any]]
    events: list[dict[str, Any]]
    transactions: list[dict[str, Any]]

    @classmethod
    def read(cls, path: Path, requests: int) -> Record:
        """Wait until the server has written all ``requests`` (their last records come
        after the response), then read it."""
        deadline = time.monotonic() + RECORD_TIMEOUT
        while True:
            lines = path.read_text().splitlines() if path.exists() else []
            records = [json.loads(line) for line in lines]
            record = cls(
                [r for r in records if r["kind"] == "span"],
                [r for r in records if r["kind"] == "sentry-event"],
                [r for r in records if r["kind"] == "sentry-transaction"],
            )
            done = [span for span in record.spans if span["name"] == "request"]
            if len(done) >= requests and len(record.transactions) >= requests:
                return record
            assert time.monotonic() < deadline, (
                f"{len(done)} request spans and {len(record.transactions)} transactions "
                f"of {requests} recorded"
            )
            time.sleep(0.05)


# For each view: each span's name and its parent's (None: the client's span).
DJANGO_SYNC_SPANS = {
    "request": None,
    "sync view": "request",
    "async part": "sync view",
    "query sensitive": "async part",
    "query free": "async part",
    "query real thread": "sync view",
}
DJANGO_ASYNC_SPANS = {
    "request": None,
    "async view": "request",
    "query sensitive": "async view",
    "query free": "async view",
    "query real thread": "async view",
}
FLASK_SPANS = {
    "request": None,
    "async view": "request",
    "work sensitive": "async view",
    "work free": "async view",
    "work real thread": "async view",
}


def _check_request(record: Record, client: Client, expected: dict[str, str | None]) -> None:
    """Request ``client.who``'s spans and events are its own, and nest as they ran."""
    who = client.who
    # OpenTelemetry: every span of the request in the client's trace, each
    # under the span that was current where it started.
    mine = [span for span in record.spans if span["attributes"].get("who") == who]
    by_name = {span["name"]: span for span in mine}
    assert sorted(span["name"] for span in mine) == sorted(expected), who
    for span in mine:
        assert span["trace_id"] == client.otel_trace, (who, span)
        parent = expected[span["name"]]
        parent_id = client.otel_parent if parent is None else by_name[parent]["span_id"]
        assert span["parent_id"] == parent_id, (who, span["name"], parent)
    if PATCHED:
        view = next(name for name in expected if name.endswith("view"))
        real = next(name for name in expected if name.endswith("real thread"))
        assert by_name[real]["attributes"]["thread"] != by_name[view]["attributes"]["thread"]

    # Sentry: the request's own transaction continues the client's trace,
    # and each event carries the request's tag and breadcrumb, and a span of
    # that transaction.
    (transaction,) = [t for t in record.transactions if t["tags"].get("who") == who]
    assert transaction["trace"]["trace_id"] == client.sentry_trace, who
    assert transaction["trace"]["parent_span_id"] == client.sentry_parent, who
    span_ids = {transaction["trace"]["span_id"]} | {s["span_id"] for s in transaction["spans"]}
    works = [s for s in transaction["spans"] if s["op"] == "work"]
    assert works and all(s["description"].endswith(f" {who}") for s in works), (who, works)
    assert all(s["parent_span_id"] in span_ids for s in transaction["spans"]), who
    events = [e for e in record.events if re.search(rf" {who}$", e["message"] or "")]
    expected_messages = {f"{name} {who}" for name in expected if name != "request"}
    expected_messages.discard(f"sync view {who}")  # that view captures nothing itself
    assert {e["message"] for e in events} == expected_messages, who
    for event in events:
        assert event["tags"].get("who") == who, event
        views = [crumb for crumb in event["breadcrumbs"] if crumb and crumb.startswith("view ")]
        assert views == [f"view {who}"], event
        assert event["trace"]["trace_id"] == client.sentry_trace, event
        assert event["trace"]["span_id"] in span_ids, event


def _assert_nothing_else(record: Record, clients: list[Client]) -> None:
    """No span or event belongs to no request (an error, a lost scope)."""
    labels = {client.who for client in clients}
    assert all(span["attributes"].get("who") in labels for span in record.spans)
    assert all(event["tags"].get("who") in labels for event in record.events), [
        event for event in record.events if event["tags"].get("who") not in labels
    ]


@contextlib.contextmanager
def _asgigreen_serve(app: str, tmp_path: Path) -> Iterator[tuple[int, Path, Service]]:
    """``asgigreen serve``: patched (gevent hub), or ``--hub threads`` (plain)."""
    record = tmp_path / "record.jsonl"
    env = python_env(TRACING_RECORD=str(record))
    hub = () if PATCHED else ("--hub", "threads")
    argv = [sys.executable, "-m", "asgigreen", "serve", "--port", "0", *hub, app]
    with Service(argv, tmp_path / "server.log", env=env, cwd=TESTS_DIR) as service:
        deadline = time.monotonic() + 60
        while not (
            found := re.search(r"asgigreen serve: .* on http://\S+:(\d+)", service.output())
        ):
            assert service.alive(), service.output()
            assert time.monotonic() < deadline, service.output()
            time.sleep(0.05)
        yield int(found.group(1)), record, service


@contextlib.contextmanager
def _asgi_server(app: str, tmp_path: Path) -> Iterator[tuple[int, Path, Service]]:
    """The ASGI app under uvicorn (plain) or ``asgigreen serve`` (patched)."""
    if PATCHED:
        with _asgigreen_serve(app, tmp_path) as served:
            yield served
        return
    record = tmp_path / "record.jsonl"
    env = python_env(TRACING_RECORD=str(record))
    sock = listening_socket()
    argv = [
        bin_path("uvicorn"), "--fd", str(sock.fileno()), "--log-level", "warning", app,
    ]  # fmt: skip
    try:
        service = Service(
            argv, tmp_path / "server.log", env=env, cwd=TESTS_DIR, pass_fds=[sock.fileno()]
        )
        port = sock.getsockname()[1]
    finally:
        sock.close()
    with service:
        yield port, record, service


@contextlib.contextmanager
def _wsgi_server(app: str, tmp_path: Path) -> Iterator[tuple[int, Path, Service]]:
    """The WSGI app under gunicorn: ``-k gthread`` (plain) or ``-k gevent`` (patched)."""
    record = tmp_path / "record.jsonl"
    env = python_env(TRACING_RECORD=str(record))
    worker, extra = ("gevent", ()) if PATCHED else ("gthread", ("--threads", "16"))
    with gunicorn(app, worker, env, tmp_path, *extra) as (port, service):
        yield port, record, service


def _drive(
    port: int, paths: list[tuple[str, dict[str, str | None]]]
) -> list[tuple[Client, dict[str, str | None]]]:
    """One request per (path, expected spans) at once, each with its own label and trace."""
    clients = [(Client.new(f"u{i}"), path, expected) for i, (path, expected) in enumerate(paths)]
    replies = _all_at_once([lambda c=c, p=p: c.get(port, p) for c, p, _ in clients])
    for (client, _, _), reply in zip(clients, replies, strict=True):
        assert reply["who"] == client.who and set(reply["values"]) == {client.who}, reply
        assert reply["hub"] == ("gevent" if PATCHED else "threads"), reply
    return [(client, expected) for client, _, expected in clients]


def _check_served(
    record_path: Path, service: Service, requests: list[tuple[Client, dict[str, str | None]]]
) -> None:
    record = Record.read(record_path, len(requests))
    for client, expected in requests:
        _check_request(record, client, expected)
    _assert_nothing_else(record, [client for client, _ in requests])
    assert "Traceback" not in service.output(), service.output()


DJANGO_VIEWS = [("/sync/", DJANGO_SYNC_SPANS), ("/async/", DJANGO_ASYNC_SPANS)] * 6


def test_django_asgi_served(tmp_path: Path) -> None:
    with _asgi_server("tracingapps.django_app:asgi_application", tmp_path) as (
        port,
        record,
        service,
    ):
        requests = _drive(port, DJANGO_VIEWS)
        _check_served(record, service, requests)


def test_django_wsgi_served(tmp_path: Path) -> None:
    with _wsgi_server("tracingapps.django_app:wsgi_application", tmp_path) as (
        port,
        record,
        service,
    ):
        requests = _drive(port, DJANGO_VIEWS)
        _check_served(record, service, requests)


def test_django_asgi_through_asgi_to_wsgi_served(tmp_path: Path) -> None:
    app = "tracingapps.django_app:asgi_through_wsgi"
    with _wsgi_server(app, tmp_path) as (port, record, service):
        requests = _drive(port, DJANGO_VIEWS)
        _check_served(record, service, requests)


@pytest.mark.parametrize("server", ["gunicorn", "asgigreen serve"])
def test_flask_async_view_served(tmp_path: Path, server: str) -> None:
    """Under gunicorn, and under ``asgigreen serve`` (through WsgiToAsgi)."""
    start = _wsgi_server if server == "gunicorn" else _asgigreen_serve
    with start("tracingapps.flask_app:app", tmp_path) as (port, record, service):
        requests = _drive(port, [("/async", FLASK_SPANS)] * 12)
        _check_served(record, service, requests)
