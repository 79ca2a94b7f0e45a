"""OpenTelemetry and Sentry set up the way an app would, recording to a file.

Every finished span, and every Sentry event or transaction, becomes one JSON
line appended to the file named by ``$TRACING_RECORD``, written straight
from the exporter and the transport: nothing is sent anywhere. Only the
fields the tests compare are kept.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from typing import Any

import sentry_sdk
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from sentry_sdk.envelope import Envelope
from sentry_sdk.integrations import Integration
from sentry_sdk.transport import Transport

# Never contacted: the transport below replaces the network.
_DSN = "http://public@127.0.0.1:9/1"


def native_thread_id() -> int:
    """The OS thread running the caller, even where gevent patched ``threading``."""
    try:
        from gevent.monkey import get_original
    except ImportError:
        return threading.get_ident()
    get_ident: Any = get_original("_thread", "get_ident")
    return int(get_ident())


def _append(record: dict[str, Any]) -> None:
    # One write per line on an O_APPEND descriptor: lines from several
    # threads or processes never interleave.
    line = (json.dumps(record) + "\n").encode()
    fd = os.open(os.environ["TRACING_RECORD"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


class FileSpanExporter(SpanExporter):
    """Writes each span's name, ids, parent and attributes."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for span in spans:
            context = span.get_span_context()
            assert context is not None
            _append(
                {
                    "kind": "span",
                    "name": span.name,
                    "trace_id": f"{context.trace_id:032x}",
                    "span_id": f"{context.span_id:016x}",
                    "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
                    "attributes": dict(span.attributes or {}),
                }
            )
        return SpanExportResult.SUCCESS


class FileTransport(Transport):
    """A Sentry transport that writes events and transactions instead of sending them."""

    def capture_envelope(self, envelope: Envelope) -> None:
        for item in envelope.items:
            found = item.get_event() or item.get_transaction_event()
            if found is None:
                continue
            event: dict[str, Any] = dict(found)
            trace_context = event.get("contexts", {}).get("trace", {})
            _append(
                {
                    "kind": "sentry-" + event.get("type", "event"),
                    "message": event.get("message") or event.get("logentry", {}).get("message"),
                    "transaction": event.get("transaction"),
                    "tags": event.get("tags", {}),
                    "breadcrumbs": [
                        crumb.get("message")
                        for crumb in event.get("breadcrumbs", {}).get("values", [])
                    ],
                    "trace": {
                        key: trace_context.get(key)
                        for key in ("trace_id", "span_id", "parent_span_id")
                    },
                    "spans": [
                        {
                            key: span.get(key)
                            for key in (
                                "op",
                                "description",
                                "span_id",
                                "parent_span_id",
                                "trace_id",
                            )
                        }
                        for span in event.get("spans", [])
                    ],
                }
            )


def start(integrations: list[Integration]) -> trace.Tracer:
    """Install the tracer provider and initialise Sentry; the app's tracer."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(FileSpanExporter()))
    trace.set_tracer_provider(provider)
    sentry_sdk.init(
        dsn=_DSN,
        transport=FileTransport,
        traces_sample_rate=1.0,
        # The default integrations (threading among them) as users have
        # them; only the ones named here of those that enable themselves.
        auto_enabling_integrations=False,
        integrations=integrations,
    )
    return trace.get_tracer("tracingapps")
