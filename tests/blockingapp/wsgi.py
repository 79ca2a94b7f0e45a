"""Plain WSGI views, one blocking the worker in psycopg2 and one in the real time.sleep.

Served by ``gunicorn -k asgigreen.gunicorn.GeventWorker blockingapp.wsgi:application``,
or by plain ``-k gevent``: the ``patch_all()`` below then installs the
gevent hub, which reads ``ASGIGREEN_BLOCKING_MS`` (under the asgigreen worker
it has run already and this call does nothing more).
"""

import asgigreen

asgigreen.patch_all()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

import psycopg2  # noqa: E402
from gevent.monkey import get_original  # noqa: E402

from blockingapp import records  # noqa: E402

records.install()

if os.environ.get("BLOCKINGAPP_PSYCOGREEN") == "1":
    # The fix the warning gives for psycopg2: its waits go through gevent.
    from psycogreen.gevent import patch_psycopg

    patch_psycopg()

real_sleep = get_original("time", "sleep")


def pg_view():
    # psycopg2 without psycogreen: the query waits in C, holding the thread.
    conn = psycopg2.connect("")  # PG* from the environment
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_sleep(0.3)")
            return cur.fetchone()
    finally:
        conn.close()


def sleep_view():
    real_sleep(0.3)  # the time.sleep gevent did not patch
    return "slept"


def sleep_in_real_thread_view():
    # The other fix the warning gives: the blocking call on a native thread.
    asgigreen.run_in_real_thread(real_sleep, 0.3)
    return "slept"


def state_view():
    from asgigreen import hubs

    blocking = sys.modules.get("asgigreen.blocking")
    return {
        "hub": hubs.get_hub().name,
        "threshold_ms": blocking.threshold_ms() if blocking is not None else None,
    }


VIEWS = {
    "/pg": pg_view,
    "/sleep": sleep_view,
    "/sleep-real-thread": sleep_in_real_thread_view,
    "/state": state_view,
    "/ok": lambda: "ok",
}


def application(environ, start_response):
    view = VIEWS.get(environ["PATH_INFO"])
    if view is None:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found"]
    body = json.dumps(view(), default=str).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
