"""``asgigreen serve``: the command, in subprocesses, with real clients.

Which interface an application speaks is checked in both modes; the
command itself runs in subprocesses, once (plain run). Each server is
started on port 0 (it prints the URL it got), driven, then stopped with
SIGINT as Ctrl-C would, and must exit cleanly; it is killed in any case.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from services import at_once, bin_path, http_get, listening_socket

from asgigreen.serve import ServeError, detect_interface, import_application

pytestmark = pytest.mark.timeout(180)

TESTS_DIR = Path(__file__).resolve().parent
ROOT = TESTS_DIR.parent
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


# -- which interface ------------------------------------------------------------------


def wsgi_function(environ: Any, start_response: Any) -> Any:
    return []


async def asgi_function(scope: Any, receive: Any, send: Any) -> None:
    pass


class Asgi2:
    def __init__(self, scope: Any) -> None:
        pass

    async def __call__(self, receive: Any, send: Any) -> None:
        pass


class AsyncCallable:
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        pass


class WsgiCallable:
    def __call__(self, environ: Any, start_response: Any) -> Any:
        return []


def test_detect_interface() -> None:
    from django.core.handlers.asgi import ASGIHandler
    from django.core.handlers.wsgi import WSGIHandler
    from flask import Flask

    from asgigreen.asgi_to_wsgi import AsgiToWsgi
    from asgigreen.wsgi import WsgiToAsgi

    assert detect_interface(wsgi_function) == "wsgi"
    assert detect_interface(WsgiCallable()) == "wsgi"
    assert detect_interface(Flask(__name__)) == "wsgi"
    assert detect_interface(functools.partial(wsgi_function)) == "wsgi"
    assert detect_interface(asgi_function) == "asgi"
    assert detect_interface(AsyncCallable()) == "asgi"
    assert detect_interface(Asgi2) == "asgi"
    assert detect_interface(lambda scope: Asgi2(scope)) == "asgi"  # ASGI 2 factory
    assert detect_interface(WsgiToAsgi(wsgi_function)) == "asgi"
    assert detect_interface(AsgiToWsgi(asgi_function)) == "wsgi"
    marked = WsgiCallable()
    marked._asgi_single_callable = True  # type: ignore[attr-defined]
    assert detect_interface(marked) == "asgi"
    with pytest.raises(ServeError, match="callable"):
        detect_interface(42)
    # Django's handlers are built without settings only at call time.
    assert detect_interface(WSGIHandler.__call__.__get__(object())) == "wsgi"
    assert detect_interface(ASGIHandler.__call__.__get__(object())) == "asgi"


def test_import_application_errors() -> None:
    assert import_application("test_serve:wsgi_function") is wsgi_function
    assert import_application("test_serve:Asgi2.__call__") is Asgi2.__call__
    assert isinstance(import_application("test_serve:WsgiCallable", factory=True), WsgiCallable)
    with pytest.raises(ServeError, match="module:attribute"):
        import_application("test_serve")
    with pytest.raises(ServeError, match="Could not import module 'no_such_module'"):
        import_application("no_such_module:app")
    with pytest.raises(ServeError, match="'missing' not found"):
        import_application("test_serve:missing")


# -- the command -------------------------------------------------------------------------

PROBE = """
import json, os, sys, time

import gevent.monkey

PATCHED_BEFORE_IMPORT = gevent.monkey.is_module_patched("threading")


def application(environ, start_response):
    import asgigreen.sync
    from asgigreen import hubs

    if environ["PATH_INFO"] == "/sleep":
        time.sleep(0.3)  # cooperative when patched
    body = json.dumps({
        "pid": os.getpid(),
        "patched_before_import": PATCHED_BEFORE_IMPORT,
        "asgiref_is_asgigreen": sys.modules.get("asgiref.sync") is asgigreen.sync
            or __import__("asgiref.sync").sync is asgigreen.sync,
        "hub": hubs.get_hub().name,
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
"""


class Served:
    """A server subprocess; its output goes to a file; always stopped in the end."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str], cwd: Path) -> None:
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                argv,
                env=env,
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own group, as a terminal's job
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_url(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            found = re.search(r"asgigreen serve: .* on (http://\S+)", self.output())
            if found:
                return found.group(1)
            if self.proc.poll() is not None:
                pytest.fail(f"server exited ({self.proc.returncode}):\n{self.output()}")
            time.sleep(0.05)
        pytest.fail(f"server did not start:\n{self.output()}")

    def interrupt(self, group: bool = False) -> int:
        """Ctrl-C: SIGINT to the process (or its whole group); its exit status."""
        if group:
            os.killpg(self.proc.pid, signal.SIGINT)
        else:
            self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(STOP_TIMEOUT)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(STOP_TIMEOUT)


@contextlib.contextmanager
def served(argv: list[str], tmp_path: Path, cwd: Path = ROOT, **env: str) -> Iterator[Served]:
    environment = {k: v for k, v in os.environ.items() if k not in ("ASGIGREEN_HUB", "PYTHONPATH")}
    environment["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(TESTS_DIR)])
    environment["MIGRATION_DB"] = str(tmp_path / "migration.sqlite3")
    environment.update(env)
    server = Served(argv, tmp_path / "server.log", environment, cwd)
    try:
        yield server
    except BaseException:
        print(f"--- server output\n{server.output()}")
        raise
    finally:
        server.kill()


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "asgigreen", "serve", "--port", "0", *args]


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def get_json(port: int, path: str) -> Any:
    status, body = http_get(port, path, timeout=30)
    assert status == 200, (status, body[:500])
    return json.loads(body)


def assert_clean_exit(server: Served, status: int) -> None:
    output = server.output()
    assert status == 0, output
    assert "Traceback" not in output, output
    assert "Finished server process" in output, output


@pytest.mark.threads_only
def test_serve_the_migration_example_then_ctrl_c(tmp_path: Path) -> None:
    """The console script, on the WSGI example app: patched, concurrent, clean stop."""
    argv = [bin_path("asgigreen"), "serve", "examples.migration.app:application", "--port", "0"]
    with served(argv, tmp_path) as server:
        url = server.wait_for_url()
        port = port_of(url)
        assert "is WSGI (detected), served through WsgiToAsgi; hub gevent" in server.output()
        assert get_json(port, "/items/7") == {"id": 7, "name": "item 7"}
        assert get_json(port, "/")["items"] >= 100
        # 50 requests, each waiting 50 ms in time.sleep: together, in one process.
        results, elapsed = at_once(50, lambda: get_json(port, "/items/3"))
        assert results == [{"id": 3, "name": "item 3"}] * 50
        assert elapsed < 2.5, f"{elapsed:.2f} s"
        assert_clean_exit(server, server.interrupt())


@pytest.mark.threads_only
def test_serve_patches_before_importing_the_app(tmp_path: Path) -> None:
    (tmp_path / "probe.py").write_text(PROBE)
    with served(command("probe:application", "--log-level", "info"), tmp_path) as server:
        port = port_of(server.wait_for_url())
        probe = get_json(port, "/")
        assert probe["patched_before_import"] is True
        assert probe["asgiref_is_asgigreen"] is True
        assert probe["hub"] == "gevent"
        results, elapsed = at_once(30, lambda: get_json(port, "/sleep"))
        assert all(isinstance(result, dict) for result in results), results[:3]
        assert elapsed < 3, f"30 requests sleeping 0.3 s took {elapsed:.2f} s"
        assert_clean_exit(server, server.interrupt())


@pytest.mark.threads_only
def test_serve_an_asgi_app_with_its_lifespan(tmp_path: Path) -> None:
    with served(command("asgi_to_wsgi_app:app"), tmp_path) as server:
        port = port_of(server.wait_for_url())
        assert "asgi_to_wsgi_app:app is ASGI (detected)" in server.output()
        state = get_json(port, "/state")
        assert state["startups"] == 1 and state["state"]["startups"] == 1
        assert get_json(port, "/sync") == {"on_loop": False}
        assert_clean_exit(server, server.interrupt())


@pytest.mark.threads_only
def test_serve_with_the_threads_hub_and_a_forced_interface(tmp_path: Path) -> None:
    (tmp_path / "probe.py").write_text(PROBE)
    argv = command("probe:application", "--hub", "threads", "--interface", "wsgi")
    with served(argv, tmp_path) as server:
        port = port_of(server.wait_for_url())
        assert "is WSGI (as told)" in server.output()
        probe = get_json(port, "/")
        assert probe["patched_before_import"] is False
        assert probe["hub"] == "threads"
        assert probe["asgiref_is_asgigreen"] is True
        results, elapsed = at_once(20, lambda: get_json(port, "/sleep"))
        assert all(isinstance(result, dict) for result in results), results[:3]
        assert elapsed < 3
        assert_clean_exit(server, server.interrupt())


@pytest.mark.threads_only
def test_serve_several_workers_under_uvicorns_supervisor(tmp_path: Path) -> None:
    (tmp_path / "probe.py").write_text(PROBE)
    with served(command("probe:application", "--workers", "2"), tmp_path) as server:
        port = port_of(server.wait_for_url())
        pids: set[int] = set()
        deadline = time.monotonic() + 30
        while len(pids) < 2:
            assert time.monotonic() < deadline, f"one worker only: {pids}"
            results, _ = at_once(20, lambda: get_json(port, "/"))
            for probe in results:
                assert isinstance(probe, dict), probe
                assert probe["patched_before_import"] is True
                assert probe["asgiref_is_asgigreen"] is True
                assert probe["hub"] == "gevent"
                pids.add(probe["pid"])
        results, elapsed = at_once(60, lambda: get_json(port, "/sleep"))
        assert all(isinstance(result, dict) for result in results), results[:3]
        assert elapsed < 3
        status = server.interrupt(group=True)  # Ctrl-C reaches the whole group
        output = server.output()
        assert status == 0, output
        assert "Traceback" not in output, output
        assert "Stopping parent process" in output, output
        for pid in pids:
            assert not os.path.exists(f"/proc/{pid}") or _is_zombie(pid), f"worker {pid} left"


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.threads_only
def test_gunicorn_worker_class(tmp_path: Path) -> None:
    (tmp_path / "probe.py").write_text(PROBE)
    sock = listening_socket()
    port = sock.getsockname()[1]
    argv = [
        bin_path("gunicorn"), "-k", "asgigreen.serve.GunicornWorker", "-w", "2",
        "--bind", f"fd://{sock.fileno()}", "--graceful-timeout", "5", "--log-level", "info",
        "probe:application",
    ]  # fmt: skip
    from gunicorn.config import KNOWN_SETTINGS

    if any(known.name == "control_socket_disable" for known in KNOWN_SETTINGS):
        argv.insert(1, "--no-control-socket")
    environment = {k: v for k, v in os.environ.items() if k not in ("ASGIGREEN_HUB", "PYTHONPATH")}
    environment["PYTHONPATH"] = str(tmp_path)
    log = tmp_path / "gunicorn.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv,
            env=environment,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            pass_fds=[sock.fileno()],
            start_new_session=True,
        )
    sock.close()
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                probe = get_json(port, "/")
                break
            except (OSError, AssertionError):
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        assert probe["patched_before_import"] is True
        assert probe["asgiref_is_asgigreen"] is True
        results, elapsed = at_once(50, lambda: get_json(port, "/sleep"))
        assert all(isinstance(result, dict) for result in results), results[:3]
        assert elapsed < 3
        proc.send_signal(signal.SIGTERM)  # gunicorn's graceful stop
        assert proc.wait(STOP_TIMEOUT) == 0, log.read_text()
        output = log.read_text()
        assert "Traceback" not in output, output
        assert "Finished server process" in output, output
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(STOP_TIMEOUT)


@pytest.mark.threads_only
def test_serve_reports_a_bad_target(tmp_path: Path) -> None:
    for target, message in (
        ("no_such_module:app", "Could not import module 'no_such_module'"),
        ("examples.migration.app:missing", "'missing' not found"),
        ("examples.migration.app", "module:attribute"),
    ):
        done = subprocess.run(
            command(target),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env={k: v for k, v in os.environ.items() if k != "ASGIGREEN_HUB"},
        )
        assert done.returncode == 1, done.stderr
        assert message in done.stderr
        assert "Traceback" not in done.stderr
