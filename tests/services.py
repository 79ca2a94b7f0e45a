"""Real services for the integration tests: PostgreSQL, Redis, server processes.

Everything listens on 127.0.0.1 only, is started by the fixtures themselves
and is stopped (killed if need be) on the way out, whatever happened.

* :func:`postgres`: a throwaway PostgreSQL cluster from the distribution's
  server binaries (``initdb`` + ``pg_ctl``), run as the ``postgres`` user
  when the tests run as root (PostgreSQL refuses root). Skipped, with the
  reason, only when the binaries are not installed.
* :func:`redis_server`: a ``redis-server`` without persistence.
* :class:`Service`: any server subprocess with its output in a log file.
* :func:`drive`: concurrent HTTP clients on threads, with figures.
"""

from __future__ import annotations

import contextlib
import glob
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening_socket() -> socket.socket:
    """A bound, listening socket on 127.0.0.1 to hand to a server by descriptor.

    Clients may connect before the server accepts: no race over the port.
    """
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


# -- server subprocesses ---------------------------------------------------------


class Service:
    """A subprocess whose output goes to ``log``; always stopped on exit.

    Use as a context manager. ``stop()`` sends ``stop_signal``, then kills
    it if it has not ended within :data:`STOP_TIMEOUT`.
    """

    def __init__(
        self,
        argv: Sequence[str],
        log: Path,
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        pass_fds: Sequence[int] = (),
        stop_signal: int = signal.SIGTERM,
    ) -> None:
        self.argv = list(argv)
        self.log = log
        self.stop_signal = stop_signal
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                env=env,
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                pass_fds=tuple(pass_fds),
                # Its own process group: stop() also reaches its children
                # (gunicorn's workers, celery's pool) if it dies first.
                start_new_session=True,
            )

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, self.stop_signal)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        # Whatever is left of the group (a worker that outlived its master).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait(STOP_TIMEOUT)


def wait_until(check: Any, what: str, service: Service | None = None, timeout: float = 0) -> None:
    """Poll ``check()`` until it returns true; fail with ``what`` and the log if not."""
    deadline = time.monotonic() + (timeout or START_TIMEOUT)
    last: BaseException | None = None
    while time.monotonic() < deadline:
        if service is not None and not service.alive():
            pytest.fail(
                f"{what}: the process exited ({service.proc.returncode})\n{service.output()}"
            )
        try:
            if check():
                return
        except Exception as exc:
            last = exc
        time.sleep(0.1)
    log = service.output() if service is not None else ""
    pytest.fail(f"{what}: not ready after {timeout or START_TIMEOUT:.0f}s ({last!r})\n{log}")


# -- HTTP clients --------------------------------------------------------------------


def http_get(port: int, path: str, timeout: float = 30.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def http_json(port: int, path: str, timeout: float = 30.0) -> Any:
    status, body = http_get(port, path, timeout)
    assert status == 200, (status, body[:2000])
    return json.loads(body)


@dataclass
class Figures:
    """What a batch of clients saw."""

    ok: int = 0
    failed: int = 0
    seconds: float = 0.0
    statuses: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)

    def line(self, label: str) -> str:
        errors = dict(self.errors.most_common(4))
        return (
            f"{label}: {self.ok} ok, {self.failed} failed in {self.seconds:.2f}s; "
            f"statuses {dict(self.statuses)}; errors {errors}"
        )


def _error_name(status: int, body: bytes) -> str:
    """The exception name a failing view reported (JSON ``error``), if any."""
    try:
        return str(json.loads(body)["error"])
    except Exception:
        pass
    text = body.decode("utf-8", "replace")
    for name in ("SynchronousOnlyOperation", "RuntimeError"):
        if name in text:
            return name
    return f"HTTP {status}"


def drive(
    port: int,
    clients: int,
    paths: Sequence[str] | Any,
    *,
    timeout: float = 60.0,
) -> Figures:
    """``clients`` threads at once, each requesting ``paths`` in turn.

    ``paths`` is a list of paths, or a function of the client number
    returning one. Each request uses a fresh connection. A response counts
    as ok only with status 200.
    """
    figures = Figures()
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def client(number: int) -> None:
        mine = paths(number) if callable(paths) else paths
        try:
            start.wait(timeout)
        except threading.BrokenBarrierError:
            return
        for path in mine:
            try:
                status, body = http_get(port, path, timeout)
            except Exception as exc:
                status, body, name = 0, repr(exc).encode(), type(exc).__name__
            else:
                name = "" if status == 200 else _error_name(status, body)
            with lock:
                figures.statuses[str(status)] += 1
                if status == 200:
                    figures.ok += 1
                else:
                    figures.failed += 1
                    figures.errors[name] += 1
                    if len(figures.samples) < 3:
                        figures.samples.append(body[:500].decode("utf-8", "replace"))

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    start.wait(timeout)
    began = time.monotonic()
    deadline = began + timeout * 2
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    figures.seconds = time.monotonic() - began
    assert not any(t.is_alive() for t in threads), "a client hung"
    return figures


# -- PostgreSQL ----------------------------------------------------------------------


def _postgres_bindir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are: PATH first, then Debian's layout."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(os.path.realpath(found)).parent
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    return Path(versions[-1]).parent if versions else None


@dataclass
class Postgres:
    """A running cluster; connect as ``user`` on 127.0.0.1:``port`` (trust auth)."""

    port: int
    user: str = "postgres"
    host: str = "127.0.0.1"
    _created: int = 0

    def connect(self, dbname: str = "postgres") -> Any:
        import psycopg

        return psycopg.connect(
            host=self.host, port=self.port, user=self.user, dbname=dbname, autocommit=True
        )

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database; its name."""
        self._created += 1
        name = f"{prefix}_{os.getpid()}_{self._created}"
        with contextlib.closing(self.connect()) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def env(self, dbname: str) -> dict[str, str]:
        """Variables the worker project's settings read."""
        return {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGDATABASE": dbname,
        }


@contextlib.contextmanager
def run_postgres() -> Iterator[Postgres]:
    bindir = _postgres_bindir()
    if bindir is None:
        pytest.skip(
            "PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's "
            "'postgresql' package (.ci/run does)"
        )
    as_user: list[str] = []
    owner: tuple[int, int] | None = None
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root: use the account the package made.
        import pwd

        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run PostgreSQL as")
        runuser = shutil.which("runuser")
        if runuser is None:
            pytest.skip("running as root and 'runuser' is missing to run PostgreSQL as postgres")
        as_user = [runuser, "-u", "postgres", "--"]
        owner = (account.pw_uid, account.pw_gid)
    # Not pytest's tmp_path: its parents are private to root.
    base = Path(tempfile.mkdtemp(prefix="asgigreen-pg-"))
    data = base / "data"
    log = base / "server.log"
    if owner is not None:
        os.chown(base, *owner)
    port = free_port()
    pg_ctl = [*as_user, str(bindir / "pg_ctl"), "-D", str(data)]
    started = False
    try:
        subprocess.run(
            [*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
             "--auth=trust", "--encoding=UTF8", "--no-sync"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        options = " ".join(
            [
                "-c listen_addresses=127.0.0.1",
                f"-c port={port}",
                f"-c unix_socket_directories={data}",
                # A gevent worker opens one connection per busy greenlet.
                "-c max_connections=500",
                # Throwaway data: no durability needed.
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            ]
        )
        started = True
        result = subprocess.run(
            [*pg_ctl, "-l", str(log), "-w", "-t", "60", "-o", options, "start"],
            capture_output=True, text=True, timeout=90,
        )  # fmt: skip
        if result.returncode != 0:
            server_log = log.read_text(errors="replace") if log.exists() else ""
            pytest.fail(f"pg_ctl start failed:\n{result.stdout}{result.stderr}\n{server_log}")
        yield Postgres(port=port)
    finally:
        if started:
            subprocess.run([*pg_ctl, "-m", "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL server for the whole session (skipped if not installed)."""
    pytest.importorskip("psycopg", reason="psycopg is in the 'tests' extra")
    with run_postgres() as server:
        yield server


# -- Redis ---------------------------------------------------------------------------


def _redis_ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(64).startswith(b"+PONG")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis server for the session; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip(
            "redis-server not found: install Debian's 'redis-server' package (.ci/run does)"
        )
    base = tmp_path_factory.mktemp("redis")
    port = free_port()
    argv = [
        binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
        "--appendonly", "no", "--dir", str(base), "--daemonize", "no",
    ]  # fmt: skip
    with Service(argv, base / "redis.log") as service:
        wait_until(lambda: _redis_ping(port), "redis-server", service)
        yield f"redis://127.0.0.1:{port}"


# -- child processes of Python -------------------------------------------------------

TESTS_DIR = Path(__file__).resolve().parent
ROOT = TESTS_DIR.parent


def python_env(**extra: str) -> dict[str, str]:
    """The environment for a Python child: the tests dir importable, no hub forced."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("ASGIGREEN_HUB", "ASGIGREEN_REAL_THREADS", "PYTHONPATH")
        and not k.startswith(("DJANGO_", "PG"))
    }
    env["PYTHONPATH"] = str(TESTS_DIR)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def bin_path(name: str) -> str:
    """A console script installed next to this interpreter."""
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else name


def at_once(clients: int, call: Callable[[], Any], timeout: float = 60) -> tuple[list[Any], float]:
    """``call()`` from ``clients`` threads at once: the results (or errors) and the seconds."""
    results: list[Any] = []

    def client() -> None:
        try:
            results.append(call())
        except Exception as exc:
            results.append(exc)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    return results, time.monotonic() - started


def _gunicorn_has(setting: str) -> bool:
    from gunicorn.config import KNOWN_SETTINGS

    return any(known.name == setting for known in KNOWN_SETTINGS)


@contextlib.contextmanager
def gunicorn(
    app: str, worker_class: str, env: dict[str, str], tmp_path: Path, *extra: str
) -> Iterator[tuple[int, Service]]:
    """``gunicorn -k worker_class`` with 1 worker and 1000 connections; yields (port, service).

    The listening socket is made here and handed over by descriptor, so the
    port is known and clients may connect before the worker is up.
    """
    sock = listening_socket()
    port = sock.getsockname()[1]
    if _gunicorn_has("control_socket_disable"):
        # Newer gunicorns open a control socket in $HOME: not wanted here.
        extra = ("--no-control-socket", *extra)
    argv = [
        bin_path("gunicorn"),
        "--worker-class", worker_class,
        "--workers", "1",
        "--worker-connections", "1000",
        "--bind", f"fd://{sock.fileno()}",
        "--graceful-timeout", "3",
        "--timeout", "120",
        "--log-level", "warning",
        *extra,
        app,
    ]  # fmt: skip
    try:
        service = Service(
            argv, tmp_path / "gunicorn.log", env=env, cwd=TESTS_DIR, pass_fds=[sock.fileno()]
        )
    finally:
        sock.close()
    with service:
        yield port, service
