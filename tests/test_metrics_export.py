"""The export recipes of docs/metrics.rst, run as written, against a known load.

The recipes are taken from the page itself (the code blocks named
``otel-recipe`` and ``prometheus-recipe``), so what the documentation shows
is what runs here: through the real OpenTelemetry SDK (an in-memory metric
reader), and through prometheus_client's text exposition, both generated
directly and scraped over loopback HTTP from ``start_http_server``. Both
modes (threads hub, gevent hub).
"""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from asgigreen import hubs
from asgigreen.sync import sync_to_async

pytestmark = pytest.mark.timeout(30)

HUB = hubs.get_hub()
DOC = Path(__file__).resolve().parent.parent / "docs" / "metrics.rst"

# The load every test puts on the hub: thread-sensitive calls on the
# process-wide worker (one runs, the rest queue) and free calls (all run).
SENSITIVE = 5
FREE = 3


def recipe(name: str) -> dict[str, Any]:
    """Run the code block ``:name: <name>`` of docs/metrics.rst; its globals."""
    lines = DOC.read_text().splitlines()
    start = lines.index(f"   :name: {name}") + 1
    body: list[str] = []
    for line in lines[start:]:
        if line and not line.startswith("   "):
            break
        body.append(line[3:])
    namespace: dict[str, Any] = {"__name__": f"metrics_recipe_{name.replace('-', '_')}"}
    exec(compile("\n".join(body), f"{DOC}:{name}", "exec"), namespace)
    return namespace


class Load:
    """Parked calls of both kinds; ``check`` runs while they are parked."""

    def __init__(self) -> None:
        self._release = threading.Event()
        self.arrived = 0

    def _park(self) -> None:
        self.arrived += 1
        assert self._release.wait(20), "the load was never released"

    async def run(self, check: Callable[[], Awaitable[None]]) -> None:
        tasks = [asyncio.ensure_future(sync_to_async(self._park)()) for _ in range(SENSITIVE)]
        tasks += [
            asyncio.ensure_future(sync_to_async(self._park, thread_sensitive=False)())
            for _ in range(FREE)
        ]
        try:
            deadline = time.monotonic() + 5
            # One thread-sensitive call and every free one get to run.
            while self.arrived < 1 + FREE:
                assert time.monotonic() < deadline, f"the load did not start: {HUB.stats()}"
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.05)
            await check()
        finally:
            self._release.set()
        await asyncio.gather(*tasks)


@pytest.fixture
def quiet() -> Iterator[None]:
    """No call of an earlier test still in flight."""
    deadline = time.monotonic() + 5
    while any(figures.in_flight for figures in HUB.stats().calls().values()):
        assert time.monotonic() < deadline, HUB.stats()
        time.sleep(0.01)
    yield


# -- OpenTelemetry ---------------------------------------------------------------------


def otel_points(reader: Any) -> dict[tuple[str, tuple[tuple[str, Any], ...]], float]:
    """Every data point the reader collected, by metric name and attributes."""
    points: dict[tuple[str, tuple[tuple[str, Any], ...]], float] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    key = (metric.name, tuple(sorted(point.attributes.items())))
                    points[key] = point.value
    return points


@pytest.mark.asyncio
async def test_opentelemetry_recipe_reports_the_load(quiet: None) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        recipe("otel-recipe")["observe_asgigreen"](provider.get_meter("asgigreen-test"))
        before = otel_points(reader)
        seen: dict[tuple[str, tuple[tuple[str, Any], ...]], float] = {}

        async def check() -> None:
            seen.update(otel_points(reader))

        await Load().run(check)
        after = otel_points(reader)
    finally:
        provider.shutdown()

    def kind(name: str, which: str) -> tuple[str, tuple[tuple[str, Any], ...]]:
        return (name, (("kind", which),))

    assert seen[kind("asgigreen.calls.in_flight", "thread_sensitive")] == SENSITIVE
    assert seen[kind("asgigreen.calls.queued", "thread_sensitive")] == SENSITIVE - 1
    assert seen[kind("asgigreen.calls.in_flight", "free")] == FREE
    assert seen[kind("asgigreen.calls.queued", "free")] == 0
    assert seen[kind("asgigreen.calls.in_flight", "real_thread")] == 0
    assert seen[("asgigreen.calls.longest_wait", ())] >= 0.04
    assert seen[("asgigreen.workers", (("state", "busy"),))] >= 1 + FREE
    assert after[("asgigreen.calls.longest_wait", ())] == 0.0
    assert after[kind("asgigreen.calls.in_flight", "thread_sensitive")] == 0

    def grew(name: str, attributes: tuple[tuple[str, Any], ...]) -> float:
        return after[(name, attributes)] - before[(name, attributes)]

    assert grew("asgigreen.calls.started", (("kind", "thread_sensitive"),)) == SENSITIVE
    assert grew("asgigreen.calls.started", (("kind", "free"),)) == FREE
    completed = (("kind", "free"), ("outcome", "completed"))
    assert grew("asgigreen.calls.ended", completed) == FREE
    failed = (("kind", "thread_sensitive"), ("outcome", "failed"))
    assert grew("asgigreen.calls.ended", failed) == 0
    # Every kind and outcome is reported, zero or not.
    assert len([key for key in after if key[0] == "asgigreen.calls.ended"]) == 4 * 3


# -- prometheus_client ---------------------------------------------------------------


def prometheus_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def check_prometheus_load(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> None:
    def kind(name: str, which: str) -> tuple[str, tuple[tuple[str, str], ...]]:
        return (name, (("kind", which),))

    assert samples[kind("asgigreen_calls_in_flight", "thread_sensitive")] == SENSITIVE
    assert samples[kind("asgigreen_calls_queued", "thread_sensitive")] == SENSITIVE - 1
    assert samples[kind("asgigreen_calls_queued", "free")] == 0
    assert samples[("asgigreen_longest_wait_seconds", ())] >= 0.04
    assert samples[("asgigreen_workers", (("state", "busy"),))] >= 1 + FREE
    assert ("asgigreen_calls_started_total", (("kind", "async_to_sync"),)) in samples
    ended = ("asgigreen_calls_ended_total", (("kind", "free"), ("outcome", "cancelled")))
    assert ended in samples


@pytest.fixture
def registry() -> Any:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    registry.register(recipe("prometheus-recipe")["AsgigreenCollector"]())
    return registry


@pytest.mark.asyncio
async def test_prometheus_recipe_exposes_the_load(quiet: None, registry: Any) -> None:
    from prometheus_client import generate_latest

    before = prometheus_samples(generate_latest(registry).decode())
    seen: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    async def check() -> None:
        seen.update(prometheus_samples(generate_latest(registry).decode()))

    await Load().run(check)
    check_prometheus_load(seen)
    assert seen[("asgigreen_calls_in_flight", (("kind", "free"),))] == FREE
    after = prometheus_samples(generate_latest(registry).decode())
    started = ("asgigreen_calls_started_total", (("kind", "thread_sensitive"),))
    assert after[started] - before[started] == SENSITIVE
    completed = ("asgigreen_calls_ended_total", (("kind", "free"), ("outcome", "completed")))
    assert after[completed] - before[completed] == FREE
    assert after[("asgigreen_longest_wait_seconds", ())] == 0.0


@pytest.mark.asyncio
async def test_prometheus_recipe_scraped_over_http(quiet: None, registry: Any) -> None:
    from prometheus_client import start_http_server

    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"

        def scrape() -> str:
            with urllib.request.urlopen(url, timeout=10) as response:
                assert response.status == 200
                assert response.headers["Content-Type"].startswith("text/plain")
                return str(response.read().decode())

        seen: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

        async def check() -> None:
            # The scrape is a free call of its own while it runs.
            seen.update(prometheus_samples(await sync_to_async(scrape, thread_sensitive=False)()))

        await Load().run(check)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
    check_prometheus_load(seen)
    assert seen[("asgigreen_calls_in_flight", (("kind", "free"),))] == FREE + 1
    assert not thread.is_alive()
