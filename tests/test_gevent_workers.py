"""asgigreen in real gevent workers: gunicorn, Celery, PostgreSQL, Redis.

Every server here is the real thing, started by the test on 127.0.0.1 and
stopped in the end: ``gunicorn -k gevent`` (1 worker, 1000 connections),
a Celery worker with ``-P gevent`` on a Redis broker and result backend, and
a PostgreSQL cluster (``tests/services.py``). The apps are in
``tests/workerproject``.

Each scenario runs on asgigreen and, as a control, on the real asgiref
(``ASGIGREEN_CONTROL=1``: same app, no ``patch_all()``, plain ``-k gevent``),
where the control shows the failure asgigreen fixes. Figures are printed
(``pytest -s`` shows them).

The tests drive subprocesses, which patch themselves, so they run once, in
the plain pytest run (``threads_only``).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from services import (
    ROOT,
    TESTS_DIR,
    Postgres,
    Service,
    drive,
    free_port,
    gunicorn,
    http_get,
    http_json,
    python_env,
    wait_until,
)

pytestmark = [pytest.mark.threads_only, pytest.mark.timeout(180)]

VARIANTS = ["asgigreen", "asgiref-control"]
CHILD_TIMEOUT = 120


@pytest.fixture
def report(capsys: pytest.CaptureFixture[str]) -> Callable[[str], None]:
    """Print a line of figures, shown even when pytest captures output."""

    def emit(line: str) -> None:
        with capsys.disabled():
            print(f"\n[gevent workers] {line}", flush=True)

    return emit


def variant_env(variant: str, **extra: str) -> dict[str, str]:
    if variant == "asgiref-control":
        extra["ASGIGREEN_CONTROL"] = "1"
    return python_env(**extra)


def run_python(code: str, env: dict[str, str], timeout: float = CHILD_TIMEOUT) -> str:
    """Run ``code`` in a fresh interpreter; return its stdout, failing on a non-zero exit."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        cwd=TESTS_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, (
        f"child failed ({result.returncode})\n--- stdout\n{result.stdout}\n"
        f"--- stderr\n{result.stderr}"
    )
    return result.stdout


def last_json(output: str) -> Any:
    return json.loads(output.strip().splitlines()[-1])


@pytest.fixture
def database(postgres: Postgres) -> dict[str, str]:
    """A fresh PostgreSQL database with the notes table; the PG* variables for it."""
    env = postgres.env(postgres.create_database("worker"))
    run_python(
        """
        import asgigreen
        asgigreen.install_as_asgiref()
        import django
        django.setup()
        from django.core.management import call_command
        call_command("migrate", verbosity=0)
        """,
        python_env(DJANGO_SETTINGS_MODULE="workerproject.settings", **env),
    )
    return env


def count_notes(postgres: Postgres, env: dict[str, str], via: str) -> int:
    with contextlib.closing(postgres.connect(env["PGDATABASE"])) as conn:
        row = conn.execute("SELECT count(*) FROM notes_note WHERE via = %s", (via,)).fetchone()
        return int(row[0])


def wait_for_app(port: int, service: Service, path: str) -> Any:
    result: list[Any] = []

    def ready() -> bool:
        status, body = http_get(port, path, timeout=5)
        if status == 200:
            result.append(json.loads(body))
        return status == 200

    wait_until(ready, "gunicorn app", service)
    return result[0]


def check_alias(state: dict[str, Any], variant: str) -> None:
    if variant == "asgigreen":
        assert state["asgiref_sync"] == "asgigreen.sync", state
    else:
        assert state["asgiref_sync"] == "asgiref.sync", state


def assert_clean_log(service: Service) -> None:
    output = service.output()
    assert "Traceback" not in output, output[-5000:]


# -- Django under gunicorn -k gevent -------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_django_under_gunicorn_gevent(
    report: Callable[[str], None],
    variant: str,
    postgres: Postgres,
    database: dict[str, str],
    tmp_path: Path,
) -> None:
    """200 concurrent clients, each hitting a PostgreSQL view, a view sending
    through Channels' in-memory layer with async_to_sync, and a view calling a
    plain async helper with async_to_sync."""
    worker = "asgigreen.gunicorn.GeventWorker" if variant == "asgigreen" else "gevent"
    env = variant_env(variant, **database)
    with gunicorn("workerproject.wsgi:application", worker, env, tmp_path) as (port, service):
        state = wait_for_app(port, service, "/state/")
        check_alias(state, variant)
        assert state["driver"] == "psycopg", state
        if variant == "asgigreen":
            assert state["hub"] == "gevent", state

        def plan(i: int) -> list[str]:
            return [f"/orm/?n={i}", f"/group-send/?n={i}", f"/async-helper/?n={i}"]

        figures = drive(port, 200, plan)
    report(figures.line(f"Django, gunicorn -k {worker}, 200 clients x 3 views, {variant}"))
    if variant == "asgigreen":
        assert figures.failed == 0, (figures.line("failed"), figures.samples)
        assert figures.ok == 600
        assert count_notes(postgres, database, "sync") == 200
        assert_clean_log(service)
    else:
        # The real asgiref: async_to_sync in one greenlet leaks its running
        # loop to the others, so their ORM calls and async_to_sync calls fail.
        assert figures.failed > 0, figures.line("control")
        assert set(figures.errors) & {"SynchronousOnlyOperation", "RuntimeError"}, figures.errors


# -- Flask async views under gunicorn -k gevent -------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_flask_async_views_under_gunicorn_gevent(
    report: Callable[[str], None], variant: str, tmp_path: Path
) -> None:
    """100 concurrent clients x 3 requests to an async view awaiting asyncio.sleep(0.1)."""
    env = variant_env(variant)
    with gunicorn("workerproject.flaskapp:app", "gevent", env, tmp_path) as (port, service):
        wait_for_app(port, service, "/state")
        # One request first: Flask imports asgiref.sync on its first async view.
        http_get(port, "/sleep?delay=0")
        check_alias(http_json(port, "/state"), variant)
        figures = drive(port, 100, lambda i: [f"/sleep?n={i}"] * 3)
    report(figures.line(f"Flask async view, gunicorn -k gevent, 100 clients x 3, {variant}"))
    if variant == "asgigreen":
        assert figures.failed == 0, (figures.line("failed"), figures.samples)
        assert figures.ok == 300
        assert figures.seconds < 2.0, figures.line("too slow")
        assert_clean_log(service)
    else:
        assert figures.failed > 150, figures.line("control")


# -- Celery -P gevent with a Redis broker ---------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_celery_gevent_pool_orm_and_async_to_sync(
    report: Callable[[str], None],
    variant: str,
    postgres: Postgres,
    database: dict[str, str],
    redis_server: str,
    tmp_path: Path,
) -> None:
    """200 tasks at once, each: ORM insert and query, async_to_sync, ORM count."""
    celery_app = pytest.importorskip("celery").Celery
    db_number = 1 if variant == "asgigreen" else 2
    broker = f"{redis_server}/{db_number}"
    env = variant_env(variant, CELERY_BROKER_URL=broker, CELERY_RESULT_BACKEND=broker, **database)
    argv = [
        sys.executable, "-m", "celery", "-A", "workerproject.tasks", "worker",
        "-P", "gevent", "-c", "200", "--loglevel", "WARNING",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
        "-n", f"{variant}@127.0.0.1",
    ]  # fmt: skip
    client = celery_app("client", broker=broker, backend=broker)
    client.conf.update(result_serializer="json", accept_content=["json"])
    try:
        with Service(argv, tmp_path / "celery.log", env=env, cwd=TESTS_DIR) as service:
            # The worker answers a ping once it consumes.
            wait_until(lambda: bool(client.control.ping(timeout=1.0)), "celery worker", service, 90)
            began = time.monotonic()
            pending = [
                client.send_task("workerproject.orm_and_async", args=[i]) for i in range(200)
            ]
            results = [r.get(timeout=90) for r in pending]
            seconds = time.monotonic() - began
    finally:
        client.close()
    errors = Counter(r["error"] for r in results if "error" in r)
    done = [r for r in results if "error" not in r]
    # From the first task starting to the last one ending, in the worker.
    span = max(r["ended"] for r in done) - min(r["began"] for r in done) if done else 0.0
    report(
        f"Celery -P gevent -c 200, 200 tasks (ORM + async_to_sync), {variant}: {len(done)} "
        f"ok, {sum(errors.values())} failed in {seconds:.2f}s (tasks ran within "
        f"{span:.2f}s); errors {dict(errors)}"
    )
    assert len(results) == 200  # every result was stored and fetched
    if variant == "asgigreen":
        assert not errors, [r for r in results if "error" in r][:3]
        assert sorted(r["doubled"] for r in results) == [2 * i for i in range(200)]
        assert count_notes(postgres, database, "celery") == 200
        assert "Traceback" not in service.output(), service.output()[-5000:]
    else:
        assert errors["SynchronousOnlyOperation"] > 0, errors


# -- 50 greenlets, SELECT pg_sleep(0.1) through the ORM ------------------------------

PG_SLEEP = """
    import json, os, sys, time
    how = sys.argv[1]
    if how == "psycopg2-direct-control":
        from gevent import monkey
        monkey.patch_all()
    else:
        import asgigreen
        asgigreen.patch_all()

    import django
    django.setup()
    import gevent
    from gevent.event import Event
    from django.db import connection

    def pg_sleep():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(0.1)")
        return connection.Database.__name__

    if how in ("psycopg3", "psycopg2-direct-control"):
        run = lambda func: func()
    elif how == "psycopg2-real-thread":
        run = asgigreen.run_in_real_thread
    else:  # psycopg2-real-thread-pool
        run = lambda func: asgigreen.in_real_thread(func, thread_sensitive=False)()

    gaps = []
    stop = False
    def ticker():
        last = time.monotonic()
        while not stop:
            gevent.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    go = Event()
    connected = []
    drivers = []
    def worker():
        if how == "psycopg3":
            # Connect first: the figure is for the queries, not 50 backend starts.
            connection.ensure_connection()
        connected.append(1)
        go.wait()
        drivers.append(run(pg_sleep))
        if how == "psycopg3":
            connection.close()

    tick = gevent.spawn(ticker)
    began = time.monotonic()
    workers = [gevent.spawn(worker) for _ in range(50)]
    while len(connected) < 50:
        gevent.sleep(0.001)
    connect_seconds = time.monotonic() - began
    gaps.clear()
    began = time.monotonic()
    go.set()
    gevent.joinall(workers, raise_error=True)
    seconds = time.monotonic() - began
    stop = True
    tick.join()
    print(json.dumps({
        "seconds": seconds,
        "connect_seconds": connect_seconds,
        "ticks": len(gaps),
        "max_gap": max(gaps, default=seconds),
        "drivers": sorted(set(drivers)),
    }))
"""


@pytest.mark.parametrize(
    "how",
    ["psycopg3", "psycopg2-real-thread", "psycopg2-real-thread-pool", "psycopg2-direct-control"],
)
def test_fifty_greenlets_pg_sleep_through_the_orm(
    report: Callable[[str], None], how: str, database: dict[str, str]
) -> None:
    driver = "psycopg" if how == "psycopg3" else "psycopg2"
    env = python_env(
        DJANGO_SETTINGS_MODULE="workerproject.settings", WORKER_PG_DRIVER=driver, **database
    )
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PG_SLEEP), how],
        env=env,
        cwd=TESTS_DIR,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    figures = last_json(result.stdout)
    report(
        f"50 greenlets x SELECT pg_sleep(0.1) via the ORM, {how}: {figures['seconds']:.2f}s "
        f"(connecting first: {figures['connect_seconds']:.2f}s); ticker {figures['ticks']} "
        f"ticks of 10ms, longest gap {figures['max_gap'] * 1000:.0f}ms"
    )
    assert figures["drivers"] == [driver], figures
    if how == "psycopg3":
        # psycopg 3 waits on its socket with the select module gevent patched.
        assert figures["seconds"] < 0.5, figures
        assert figures["max_gap"] < 0.2, figures
    elif how == "psycopg2-direct-control":
        # Blocking C on the greenlets: the ticker stalls while they sleep.
        assert figures["max_gap"] > 1.0, figures
    else:
        # Real threads: the hub stays free; the ticker keeps ticking.
        assert figures["max_gap"] < 0.5, figures
        assert figures["ticks"] >= figures["seconds"] / 0.01 / 3, figures
        if how == "psycopg2-real-thread-pool":
            assert figures["seconds"] < 1.5, figures


# -- the order of imports --------------------------------------------------------------

WRONG_ORDERS = {
    "django-before-patch_all": ("import django.db", ["django.db", "asgiref"], False),
    "flask-before-patch_all": ("import flask", ["flask"], False),
    "psycopg-before-patch_all": ("import psycopg", ["psycopg"], False),
    "real-asgiref-after-host-patched": (
        "from gevent import monkey; monkey.patch_all(); import asgiref.sync",
        ["asgiref"],
        True,
    ),
    "asgigreen.sync-before-host-patched": (
        "import asgigreen.sync; from gevent import monkey; monkey.patch_all()",
        ["asgigreen.sync"],
        True,
    ),
}


@pytest.mark.parametrize("case", list(WRONG_ORDERS))
def test_wrong_import_order_fails_loudly(report: Callable[[str], None], case: str) -> None:
    before, named, host_patched = WRONG_ORDERS[case]
    code = f"""
        {before}
        import json
        import asgigreen
        try:
            asgigreen.patch_all()
        except asgigreen.PatchOrderError as exc:
            print(json.dumps({{"message": str(exc), "modules": exc.modules,
                               "patched": exc.gevent_was_patched}}))
        else:
            print(json.dumps(None))
    """
    outcome = last_json(run_python(code, python_env()))
    assert outcome is not None, f"{case}: patch_all() accepted the wrong order"
    message = outcome["message"]
    for name in named:
        assert f"  - {name}:" in message, message
    assert outcome["patched"] is host_patched
    assert "import asgigreen\n    asgigreen.patch_all()" in message
    assert "asgigreen.gunicorn.GeventWorker" in message
    report(f"wrong order '{case}': PatchOrderError names {outcome['modules']}")


def test_right_orders_are_accepted() -> None:
    """patch_all() first; or after a host patched, before Django; twice; real_threads."""
    code = """
        import json, sys
        if sys.argv[1] == "host-patched-first":
            from gevent import monkey
            monkey.patch_all()
        import asgigreen
        asgigreen.patch_all(real_threads=True)
        asgigreen.patch_all()  # again: harmless, keeps the setting
        import django.db, flask
        import asgiref.sync
        from gevent import monkey
        from asgigreen import hubs
        hub = hubs.get_hub()
        print(json.dumps({
            "alias": asgiref.sync is sys.modules["asgigreen.sync"],
            "patched": monkey.is_module_patched("threading"),
            "hub": hub.name,
            "real_threads": hub.real_threads,
        }))
    """
    for how in ("patch_all-first", "host-patched-first"):
        result = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code), how],
            env=python_env(),
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT,
        )
        assert result.returncode == 0, result.stderr
        assert last_json(result.stdout) == {
            "alias": True,
            "patched": True,
            "hub": "gevent",
            "real_threads": True,
        }, how


def test_gunicorn_preload_is_refused_with_the_reason(
    report: Callable[[str], None], tmp_path: Path
) -> None:
    """--preload imports the app in the unpatched master: the worker refuses to boot."""
    with gunicorn(
        "workerproject.wsgi:application",
        "asgigreen.gunicorn.GeventWorker",
        python_env(),
        tmp_path,
        "--preload",
    ) as (_, service):
        service.proc.wait(60)
        output = service.output()
    assert service.proc.returncode != 0, output
    assert "PatchOrderError" in output and "drop --preload" in output, output[-3000:]
    report(f"gunicorn --preload: exit {service.proc.returncode}, PatchOrderError in the log")


def test_run_in_real_thread_from_a_plain_greenlet() -> None:
    """From greenlets with no loop: native threads, results, errors, context."""
    code = """
        import asgigreen
        asgigreen.patch_all()
        import contextvars, json, threading, time
        import gevent
        from gevent.monkey import get_original

        native_ident = get_original("_thread", "get_ident")
        home = native_ident()
        var = contextvars.ContextVar("var")

        def blocking(n):
            get_original("time", "sleep")(0.05)  # blocks its OS thread, not the hub
            var.set(var.get() + 1)
            return native_ident(), n

        def worker(n):
            var.set(n)
            ident, got = asgigreen.run_in_real_thread(blocking, n)
            return ident != home, got == n, var.get() == n + 1

        try:
            asgigreen.run_in_real_thread(int, "x")
        except ValueError:
            raised = True
        ticks = []
        ticker = gevent.spawn(lambda: [ticks.append(gevent.sleep(0.01)) for _ in range(30)])
        outcomes = [g.get() for g in [gevent.spawn(worker, n) for n in range(5)]]
        ticker.join()
        print(json.dumps({"raised": raised, "outcomes": outcomes, "ticks": len(ticks)}))
    """
    outcome = last_json(run_python(code, python_env()))
    assert outcome["raised"] is True
    assert outcome["outcomes"] == [[True, True, True]] * 5, outcome
    assert outcome["ticks"] == 30


def test_run_in_real_thread_on_the_threads_hub_just_calls() -> None:
    """In a plain process the caller is a real thread already."""
    import threading

    import asgigreen

    assert asgigreen.run_in_real_thread(threading.get_ident) == threading.get_ident()
    double = asgigreen.in_real_thread(lambda n: 2 * n, thread_sensitive=False)
    assert double(21) == 42
    with pytest.raises(ValueError):
        asgigreen.run_in_real_thread(int, "x")


# -- the examples, run with the one command their READMEs give --------------------------


@pytest.mark.parametrize("example", ["django_gevent", "flask_gevent"])
def test_examples_run_with_one_command(
    report: Callable[[str], None], example: str, tmp_path: Path
) -> None:
    port = free_port()
    env = python_env(PORT=str(port), EXAMPLE_DATA_DIR=str(tmp_path))
    env.pop("PYTHONPATH")
    argv = [sys.executable, str(ROOT / "examples" / example / "run.py")]
    with Service(argv, tmp_path / "example.log", env=env, cwd=tmp_path) as service:

        def up() -> bool:
            return http_get(port, "/", timeout=5)[0] == 200

        wait_until(up, example, service)
        home = http_json(port, "/")
        assert home["asgiref_is_asgigreen"] is True and home["hub"] == "gevent", home
        figures = drive(port, 50, lambda i: [f"/hello?n={i}", "/"])
        if example == "django_gevent":
            # The ORM on a native thread via asgigreen.run_in_real_thread.
            assert len(http_json(port, "/report")["top"]) == 5
    report(figures.line(f"example {example}, 50 clients x 2"))
    assert figures.failed == 0, (figures.line("failed"), figures.samples)
    assert "Traceback" not in service.output(), service.output()
