"""Apps for ``tests/test_tracing.py``: Django and Flask views that cross the bridges.

Each app records its OpenTelemetry spans and Sentry events (see
:mod:`tracingapps.recording`) so the test, in another process, can check
whose parent each span has and which request each event describes.
"""
