"""Django and Flask run unchanged on asgigreen via install_as_asgiref().

Each scenario runs in a fresh interpreter that calls
``asgigreen.install_as_asgiref()`` before Django or Flask is imported, plain
(threads hub) or gevent-monkeypatched (gevent hub), whatever mode pytest
itself runs in. Every child checks that ``asgiref.sync`` is
``asgigreen.sync`` and that no module of the real asgiref was loaded.

* Django (``tests/djangoproject``): ``Client`` (WSGI handler) and
  ``AsyncClient`` (ASGI handler), then the ASGI application under a real
  uvicorn server, with sync and async views and the ORM on SQLite.
* Flask (``tests/flaskapp.py``) with ``async def`` views: the test client, a
  real gevent ``WSGIServer`` and a real threaded werkzeug server, with
  concurrent clients.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(240)

TESTS_DIR = Path(__file__).resolve().parent
CHILD_TIMEOUT = 120
SERVER_START_TIMEOUT = 60
HTTP_TIMEOUT = 30

# First thing in every child: note any file of the real asgiref being opened
# (see djangoproject.checks), then patch if the mode asks for it.
WATCH = "from djangoproject.checks import watch_real_asgiref\nwatch_real_asgiref()\n"
PRELUDES = {
    "plain": WATCH,
    "gevent": WATCH + "from gevent import monkey\nmonkey.patch_all()\n",
}
HUB_OF_MODE = {"plain": "threads", "gevent": "gevent"}

both_modes = pytest.mark.parametrize("mode", ["plain", "gevent"])


def child_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ASGIGREEN_HUB", "PYTHONPATH")}
    env["PYTHONPATH"] = str(TESTS_DIR)
    env["DJANGO_SETTINGS_MODULE"] = "djangoproject.settings"
    env["DJANGO_TEST_DB"] = str(tmp_path / "db.sqlite3")
    env["PORT_FILE"] = str(tmp_path / "port")
    return env


def script(mode: str, code: str) -> str:
    return PRELUDES[mode] + textwrap.dedent(code)


def run_child(code: str, mode: str, tmp_path: Path) -> None:
    """Run ``code`` in a fresh interpreter; it must print OK last and exit 0.

    ``subprocess.run`` kills the child if it outlives the timeout.
    """
    result = subprocess.run(
        [sys.executable, "-c", script(mode, code)],
        env=child_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
    )
    assert result.returncode == 0 and result.stdout.rstrip().endswith("OK"), (
        f"child failed ({result.returncode})\n--- stdout\n{result.stdout}\n"
        f"--- stderr\n{result.stderr}"
    )


@contextlib.contextmanager
def serve(code: str, mode: str, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """Start a server child that writes its port to ``$PORT_FILE``; yield (port, log).

    The child is terminated (killed if it lingers) on the way out; its output
    is printed if the test fails.
    """
    port_file = tmp_path / "port"
    log = tmp_path / "server.log"
    with open(log, "wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-c", script(mode, code)],
            env=child_env(tmp_path),
            cwd=tmp_path,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while not port_file.exists():
            assert proc.poll() is None, f"server exited ({proc.returncode})"
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        yield int(port_file.read_text()), log
    except BaseException:
        proc.kill()
        proc.wait(10)
        print(f"--- server output\n{log.read_text(errors='replace')}")
        raise
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


# The lines a server child uses to publish its port once it is listening.
PUBLISH_PORT = """
    def publish_port(port):
        import os
        tmp = os.environ["PORT_FILE"] + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(port))
        os.replace(tmp, os.environ["PORT_FILE"])
"""


def request(
    port: int, method: str, path: str, body: Any = None
) -> tuple[int, http.client.HTTPMessage, Any]:
    """One HTTP request to 127.0.0.1:``port``; returns status, headers, JSON body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT)
    try:
        headers = {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        assert response.status < 500, raw
        return response.status, response.headers, json.loads(raw)
    finally:
        conn.close()


def concurrently(calls: list[Callable[[], Any]]) -> tuple[list[Any], float]:
    """Run ``calls`` at once on threads (greenlets if pytest is patched).

    Returns their results in order and the wall time taken.
    """
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(i: int, call: Callable[[], Any]) -> None:
        try:
            results[i] = call()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, c), daemon=True) for i, c in enumerate(calls)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(HTTP_TIMEOUT * 2)
    elapsed = time.monotonic() - start
    assert not any(t.is_alive() for t in threads), "a client hung"
    if errors:
        raise errors[0]
    return results, elapsed


def rows(tmp_path: Path) -> list[tuple[str, str]]:
    """The notes table, read straight from the SQLite file."""
    with contextlib.closing(sqlite3.connect(tmp_path / "db.sqlite3")) as db:
        return list(db.execute("SELECT text, via FROM notes_note ORDER BY id"))


def manage(tmp_path: Path, *args: str) -> str:
    """Run the project's manage.py (which installs asgigreen at its top)."""
    result = subprocess.run(
        [sys.executable, str(TESTS_DIR / "djangoproject" / "manage.py"), *args],
        env=child_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


# -- Django: test clients ------------------------------------------------------


@both_modes
def test_django_test_clients_wsgi_and_asgi_handlers(mode: str, tmp_path: Path) -> None:
    run_child(
        f"""
        import asgigreen
        asgigreen.install_as_asgiref()

        import asyncio
        import json

        import django
        django.setup()
        from django.core.management import call_command
        from django.test import AsyncClient, Client

        from djangoproject.checks import assert_aliased
        from djangoproject.notes.models import Note

        call_command("migrate", verbosity=0)

        def body(text):
            return dict(data=json.dumps({{"text": text}}), content_type="application/json")

        def check(response, status, on_loop):
            assert response.status_code == status, (response.status_code, response.content)
            assert response["X-Sync-Middleware"] == "1"
            assert response["X-Async-Middleware"] == "1"
            data = response.json()
            assert data["on_loop"] is on_loop, data
            return data

        # WSGI handler: the sync view runs directly, the async one via async_to_sync.
        client = Client()
        check(client.post("/notes/", **body("wsgi sync")), 201, False)
        data = check(client.post("/async-notes/", **body("wsgi async")), 201, True)
        assert data["guarded"] is True and data["count"] == 2, data
        assert check(client.get("/notes/"), 200, False)["texts"] == ["wsgi sync", "wsgi async"]
        data = check(client.get("/async-notes/"), 200, True)
        assert data["texts"] == ["wsgi sync", "wsgi async"] and data["count"] == 2, data

        # ASGI handler: sync views via sync_to_async in a ThreadSensitiveContext.
        async def asgi_requests():
            aclient = AsyncClient()
            check(await aclient.post("/notes/", **body("asgi sync")), 201, False)
            data = check(await aclient.post("/async-notes/", **body("asgi async")), 201, True)
            assert data["guarded"] is True and data["count"] == 4, data
            responses = await asyncio.gather(
                *(aclient.post("/notes/", **body(f"asgi sync {{i}}")) for i in range(5)),
                *(aclient.post("/async-notes/", **body(f"asgi async {{i}}")) for i in range(5)),
                *(aclient.get("/async-notes/") for _ in range(3)),
                *(aclient.get("/notes/") for _ in range(3)),
            )
            for r in responses[:5]:
                check(r, 201, False)
            for r in responses[5:10]:
                check(r, 201, True)
            return check(await aclient.get("/notes/"), 200, False)["texts"]

        texts = asyncio.run(asgi_requests())
        assert len(texts) == 14 and texts[:4] == [
            "wsgi sync", "wsgi async", "asgi sync", "asgi async"
        ], texts

        # The ORM in this thread sees what the views wrote.
        assert Note.objects.count() == 14
        assert Note.objects.filter(via="async").count() == 7
        assert_aliased({HUB_OF_MODE[mode]!r})
        print("OK")
        """,
        mode,
        tmp_path,
    )
    written = rows(tmp_path)
    assert len(written) == 14
    assert written[:2] == [("wsgi sync", "sync"), ("wsgi async", "async")]


def test_django_manage_py_installs_asgigreen_first(tmp_path: Path) -> None:
    manage(tmp_path, "migrate", "--verbosity=0")
    assert "No changes detected" in manage(tmp_path, "makemigrations", "--check", "--dry-run")
    manage(tmp_path, "check")
    assert rows(tmp_path) == []
    # Inside a manage.py process, once Django has imported asgiref:
    code = (
        "import django.test, django.core.handlers.asgi; "
        "from djangoproject.checks import assert_aliased; assert_aliased('threads'); print('OK')"
    )
    assert manage(tmp_path, "shell", "--no-startup", "--verbosity=0", "-c", code).strip() == "OK"


# -- Django: a real uvicorn server ---------------------------------------------

UVICORN_DJANGO = (
    PUBLISH_PORT
    + """
    from djangoproject.asgi import application  # installs asgigreen as asgiref first

    import socket

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    publish_port(sock.getsockname()[1])  # connections queue until uvicorn accepts
    config = uvicorn.Config(application, lifespan="off", log_level="warning")
    uvicorn.Server(config).run(sockets=[sock])
"""
)


@both_modes
def test_django_asgi_app_under_uvicorn(mode: str, tmp_path: Path) -> None:
    manage(tmp_path, "migrate", "--verbosity=0")
    with serve(UVICORN_DJANGO, mode, tmp_path) as (port, log):
        status, headers, data = request(port, "POST", "/notes/", {"text": "first"})
        assert status == 201 and data["on_loop"] is False, data
        assert headers["X-Sync-Middleware"] == "1" and headers["X-Async-Middleware"] == "1"

        status, _, data = request(port, "POST", "/async-notes/", {"text": "second"})
        assert status == 201 and data["on_loop"] is True and data["guarded"] is True, data
        assert data["count"] == 2, data

        # Concurrent clients: sync ORM writes, async ORM reads, sleeping async views.
        calls: list[Callable[[], Any]] = [
            *(lambda i=i: request(port, "POST", "/notes/", {"text": f"n{i}"}) for i in range(8)),
            *(lambda: request(port, "GET", "/async-notes/") for _ in range(4)),
            *(lambda: request(port, "GET", "/async-sleep/?delay=0.5") for _ in range(10)),
        ]
        results, elapsed = concurrently(calls)
        assert [r[0] for r in results] == [201] * 8 + [200] * 14
        assert all(r[2]["on_loop"] is True for r in results[8:])
        assert elapsed < 4, f"10 async sleeps of 0.5s took {elapsed:.1f}s: not concurrent"

        status, _, data = request(port, "GET", "/notes/")
        assert status == 200 and data["on_loop"] is False
        assert data["texts"][:2] == ["first", "second"]
        assert sorted(data["texts"][2:]) == sorted(f"n{i}" for i in range(8))

        _, _, state = request(port, "GET", "/state/")
        assert state["max_inflight"] > 1, state
        assert state["sync_is_ours"] and state["package_is_alias"], state
        assert state["asgiref_version"] == "3.13.0", state
        assert state["real_asgiref_loaded"] == [] and state["mismatched"] == [], state
        assert state["real_asgiref_opened"] == [], state
        assert state["hub"] == HUB_OF_MODE[mode], state
    assert len(rows(tmp_path)) == 10
    output = log.read_text(errors="replace")
    assert "Traceback" not in output, output


# -- Flask ---------------------------------------------------------------------


@both_modes
def test_flask_async_views_with_the_test_client(mode: str, tmp_path: Path) -> None:
    run_child(
        f"""
        import asgigreen
        asgigreen.install_as_asgiref()

        import sys
        import threading

        from flaskapp import app
        from djangoproject.checks import assert_aliased

        assert "asgiref.sync" not in sys.modules  # Flask imports it on first async view
        client = app.test_client()

        r = client.get("/async?n=21")
        assert r.status_code == 200, r.data
        assert r.json == {{"on_loop": True, "doubled": 42}}, r.json
        r = client.get("/sync")
        assert r.status_code == 200 and r.json == {{"on_loop": False}}, r.json
        r = client.post("/async-echo", json={{"a": [1, 2]}})
        assert r.status_code == 201 and r.json == {{"echo": {{"a": [1, 2]}}}}, r.json

        # Requests from several workers at once each get their own event loop.
        results = []
        def hit(i):
            r = app.test_client().get(f"/async?delay=0.3&n={{i}}")
            results.append((r.status_code, r.json["doubled"]))
        threads = [threading.Thread(target=hit, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(results) == [(200, 2 * i) for i in range(6)], results
        assert client.get("/state").json["max_inflight"] > 1

        assert_aliased({HUB_OF_MODE[mode]!r})
        print("OK")
        """,
        mode,
        tmp_path,
    )


GEVENT_FLASK = (
    PUBLISH_PORT
    + """
    import asgigreen
    asgigreen.install_as_asgiref()

    from gevent.pywsgi import WSGIServer

    from flaskapp import app

    server = WSGIServer(("127.0.0.1", 0), app, log=None)
    server.start()
    publish_port(server.server_port)
    server.serve_forever()
"""
)

WERKZEUG_FLASK = (
    PUBLISH_PORT
    + """
    import asgigreen
    asgigreen.install_as_asgiref()

    from werkzeug.serving import make_server

    from flaskapp import app

    server = make_server("127.0.0.1", 0, app, threaded=True)
    publish_port(server.server_port)
    server.serve_forever()
"""
)


@pytest.mark.parametrize(
    ("mode", "server"),
    [("gevent", GEVENT_FLASK), ("plain", WERKZEUG_FLASK)],
    ids=["gevent-pywsgi", "plain-werkzeug-threaded"],
)
def test_flask_async_views_under_a_real_wsgi_server(mode: str, server: str, tmp_path: Path) -> None:
    with serve(server, mode, tmp_path) as (port, log):
        status, _, data = request(port, "GET", "/async?n=5")
        assert status == 200 and data == {"on_loop": True, "doubled": 10}, data

        calls: list[Callable[[], Any]] = [
            *(lambda i=i: request(port, "GET", f"/async?delay=0.5&n={i}") for i in range(20)),
            *(lambda: request(port, "GET", "/sync") for _ in range(5)),
            *(lambda i=i: request(port, "POST", "/async-echo", {"i": i}) for i in range(5)),
        ]
        results, elapsed = concurrently(calls)
        assert [r[2]["doubled"] for r in results[:20]] == [2 * i for i in range(20)]
        assert all(r[2] == {"on_loop": False} for r in results[20:25])
        assert [r[0] for r in results[25:]] == [201] * 5
        assert [r[2]["echo"]["i"] for r in results[25:]] == list(range(5))
        assert elapsed < 5, f"20 async sleeps of 0.5s took {elapsed:.1f}s: not concurrent"

        _, _, state = request(port, "GET", "/state")
        assert state["max_inflight"] > 1, state
        assert state["sync_is_ours"] and state["package_is_alias"], state
        assert state["real_asgiref_loaded"] == [] and state["mismatched"] == [], state
        assert state["real_asgiref_opened"] == [], state
        assert state["hub"] == HUB_OF_MODE[mode], state
    output = log.read_text(errors="replace")
    assert "Traceback" not in output, output
