"""Executor results wake their loop at once in a patched process (gevent#2213).

CPython 3.13.12+, 3.14.3+ and 3.15 deliver a ``run_in_executor`` result
directly when the finishing thread's running loop is the destination loop
(gh-141696). Under gevent the executor's "threads" are greenlets on the
loop's own OS thread: unless each greenlet has its own running loop, the
result is set without waking the loop, which then sleeps until an unrelated
timer fires. Each loop kind asgigreen runs is checked here: the hub's loops
(``async_to_sync``), uvicorn's loop under ``asgigreen serve``, and
``AsgiToWsgi``'s loop under ``gunicorn -k gevent``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from services import Service, gunicorn, http_get, python_env, wait_until

from asgigreen.sync import async_to_sync

pytestmark = pytest.mark.timeout(120)

#: Each hand-off must complete well inside this (seconds).
LIMIT = 0.05
ROUNDS = 5

# The probe, as an importable module for the server subprocesses. It times
# each kind of executor hand-off on the running loop; a timer 1 s away
# bounds a lost wake-up, so a stall shows as a figure instead of a hang.
PROBE = """
import asyncio
import json
import socket
import time


def work():
    return 42


async def measure():
    loop = asyncio.get_running_loop()
    keepalive = loop.call_later(1.0, lambda: None)
    worst = {"run_in_executor": 0.0, "to_thread": 0.0, "getaddrinfo": 0.0}
    try:
        for _ in range(ROUNDS):
            started = time.perf_counter()
            assert await loop.run_in_executor(None, work) == 42
            worst["run_in_executor"] = max(worst["run_in_executor"], time.perf_counter() - started)
            started = time.perf_counter()
            assert await asyncio.to_thread(work) == 42
            worst["to_thread"] = max(worst["to_thread"], time.perf_counter() - started)
            started = time.perf_counter()
            assert await loop.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)
            worst["getaddrinfo"] = max(worst["getaddrinfo"], time.perf_counter() - started)
    finally:
        keepalive.cancel()
    return worst


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = json.dumps(await measure()).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def wsgi_application():
    from asgigreen.asgi_to_wsgi import AsgiToWsgi

    return AsgiToWsgi(app)
""".replace("ROUNDS", str(ROUNDS))


def _assert_prompt(worst: dict[str, float], where: str) -> None:
    print(f"\n[wake-ups] {where}: " + ", ".join(f"{k}={v * 1000:.1f} ms" for k, v in worst.items()))
    slow = {name: seconds for name, seconds in worst.items() if seconds >= LIMIT}
    assert not slow, f"{where}: executor results not delivered at once: {slow}"


@pytest.fixture
def probe_dir(tmp_path: Path) -> Path:
    (tmp_path / "wakeup_probe.py").write_text(PROBE)
    (tmp_path / "wakeup_wsgi.py").write_text(
        "from wakeup_probe import wsgi_application\napplication = wsgi_application()\n"
    )
    return tmp_path


def _measure_here() -> dict[str, float]:
    namespace: dict[str, Any] = {}
    exec(compile(PROBE, "wakeup_probe", "exec"), namespace)
    result: dict[str, float] = async_to_sync(namespace["measure"])()
    return result


@pytest.mark.gevent_only
def test_the_hubs_loops_get_executor_results_at_once() -> None:
    _assert_prompt(_measure_here(), "async_to_sync's loop")


@pytest.mark.gevent_only
def test_the_hubs_loops_get_results_at_once_when_nested_in_a_worker() -> None:
    # async_to_sync inside sync_to_async: the inner loop's greenlet is not the
    # one that started the outer loop.
    from asgigreen.sync import sync_to_async

    async def outer() -> dict[str, float]:
        return await sync_to_async(_measure_here)()

    _assert_prompt(async_to_sync(outer)(), "a nested async_to_sync loop")


@pytest.mark.threads_only
def test_the_threads_hub_forced_in_a_patched_process_gets_results_at_once(
    probe_dir: Path,
) -> None:
    script = (
        "import asyncio, json, wakeup_probe\n"
        "from asgigreen.sync import async_to_sync\n"
        "from asgigreen import hubs\n"
        "assert hubs.get_hub().name == 'threads'\n"
        "print(json.dumps(async_to_sync(wakeup_probe.measure)()))\n"
    )
    env = python_env(ASGIGREEN_HUB="threads", PYTHONPATH=str(probe_dir))
    done = subprocess.run(
        [sys.executable, "-c", "import gevent.monkey; gevent.monkey.patch_all()\n" + script],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    _assert_prompt(json.loads(done.stdout), "the threads hub in a patched process")


@pytest.fixture
def serve_probe(probe_dir: Path) -> Iterator[int]:
    from services import listening_socket

    sock = listening_socket()
    port = sock.getsockname()[1]
    sock.close()
    argv = [
        sys.executable, "-m", "asgigreen", "serve", "wakeup_probe:app",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    env = python_env(PYTHONPATH=str(probe_dir))
    with Service(argv, probe_dir / "serve.log", env=env, cwd=probe_dir) as service:
        wait_until(lambda: _up(port), "asgigreen serve", service)
        yield port


def _up(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.threads_only  # the server is a patched subprocess either way
def test_uvicorns_loop_under_serve_gets_executor_results_at_once(serve_probe: int) -> None:
    status, body = http_get(serve_probe, "/", timeout=30)
    assert status == 200, body[:300]
    _assert_prompt(json.loads(body), "uvicorn's loop under asgigreen serve")


@pytest.mark.threads_only  # the server is a patched subprocess either way
def test_asgi_to_wsgis_loop_under_gunicorn_gevent_gets_results_at_once(probe_dir: Path) -> None:
    env = python_env(PYTHONPATH=str(probe_dir))
    with gunicorn("wakeup_wsgi:application", "gevent", env, probe_dir) as (port, service):
        wait_until(lambda: http_get(port, "/", timeout=5)[0] == 200, "gunicorn", service)
        status, body = http_get(port, "/", timeout=30)
    assert status == 200, body[:300]
    _assert_prompt(json.loads(body), "AsgiToWsgi's loop under gunicorn -k gevent")


def test_the_probe_would_see_a_lost_wake_up() -> None:
    # The figures above can only fail if a lost wake-up shows in them: a
    # result set without waking the loop waits for the probe's 1 s timer.
    async def lose_one() -> float:
        loop = asyncio.get_running_loop()
        keepalive = loop.call_later(0.2, lambda: None)
        future = loop.create_future()
        started = time.perf_counter()
        # As gh-141696 does when it takes the loop for the caller's own:
        # the result is set from outside the loop without a wake-up.
        threading.Timer(0.01, lambda: future.set_result(None)).start()
        await future
        keepalive.cancel()
        return time.perf_counter() - started

    assert asyncio.run(lose_one()) >= LIMIT
