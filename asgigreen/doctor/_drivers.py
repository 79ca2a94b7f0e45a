"""Drivers that block every greenlet of a gevent-patched process.

A driver whose C code waits on the network itself (libpq without a wait
callback, libmysqlclient, gRPC's core, libldap, OCI, libmemcached, ODBC)
holds the OS thread that all greenlets share: while one request waits for
its database, no other request runs. Each check here looks for one driver,
in :data:`sys.modules` and, where Django names the driver, in its
settings, and says whether it waits cooperatively.

Checks run only in a patched process; without gevent, blocking is the
normal way for sync code to wait.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import selectors
import sys
from collections.abc import Callable
from typing import Any

from . import _django
from ._finding import Finding

__all__ = ["CHECKS"]

_REAL_THREAD = (
    "or run each call on a native thread: asgigreen.run_in_real_thread(func, ...) from "
    "sync code, await sync_to_async(func, real_thread=True)() from async code"
)


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _engines(*names: str) -> list[str]:
    """``DATABASES`` aliases whose ENGINE is one of ``names``."""
    return [
        alias
        for alias, database in _django.setting("DATABASES").items()
        if str(database.get("ENGINE", "")) in names
    ]


def _postgres_driver() -> str | None:
    """The module Django's PostgreSQL backend uses, or would: psycopg 3 if installed."""
    chosen = sys.modules.get("django.db.backends.postgresql.psycopg_any")
    if chosen is not None:
        return "psycopg" if getattr(chosen, "is_psycopg3", False) else "psycopg2"
    for name in ("psycopg", "psycopg2"):
        if _importable(name):
            return name
    return None


def _databases_using(driver: str) -> list[str]:
    aliases = _engines("django.db.backends.postgresql")
    if not aliases or _postgres_driver() != driver:
        return []
    return [
        f"DATABASES[{alias!r}] (Django's PostgreSQL backend uses {driver} here)"
        for alias in aliases
    ]


def _function_name(func: object) -> str:
    module = getattr(func, "__module__", None) or "?"
    return f"{module}.{getattr(func, '__qualname__', repr(func))}"


def check_psycopg2() -> list[Finding]:
    found = ["psycopg2 is imported"] if "psycopg2" in sys.modules else []
    found += _databases_using("psycopg2")
    if not found:
        return []
    try:
        extensions = importlib.import_module("psycopg2.extensions")
    except ImportError:
        return []  # Django says psycopg2 but it is not installed: Django will say so
    callback = extensions.get_wait_callback()
    if callback is not None:
        return [
            Finding(
                "driver.psycopg2",
                "ok",
                "psycopg2 waits cooperatively",
                f"{'; '.join(found)}; its wait callback is {_function_name(callback)}.",
            )
        ]
    return [
        Finding(
            "driver.psycopg2",
            "error",
            "psycopg2 blocks every greenlet while it waits for PostgreSQL",
            f"{'; '.join(found)}, and no wait callback is set "
            "(psycopg2.extensions.get_wait_callback() is None): libpq waits for the "
            "server in C, holding the thread all greenlets share.",
            "Right after gevent patches (first lines of the application module, or "
            "gunicorn's post_fork hook), call: from psycogreen.gevent import patch_psycopg; "
            "patch_psycopg()   (pip install psycogreen); or move to psycopg 3, which is "
            f"cooperative when imported after patching; {_REAL_THREAD}.",
        )
    ]


def check_psycopg() -> list[Finding]:
    waiting = sys.modules.get("psycopg.waiting")
    if waiting is None:
        return []
    wait = getattr(waiting, "wait", None)
    blocking = []
    if wait is not None and wait is getattr(waiting, "wait_c", None):
        forced = os.environ.get("PSYCOPG_WAIT_FUNC") == "wait_c"
        blocking.append(
            "it waits with its C function wait_c"
            + (
                " (PSYCOPG_WAIT_FUNC=wait_c)"
                if forced
                else ", chosen because it was imported before gevent patched select"
            )
        )
    if (
        getattr(waiting, "DefaultSelector", selectors.DefaultSelector)
        is not selectors.DefaultSelector
    ):
        blocking.append(
            "it connects with the unpatched selector it imported before gevent patched selectors"
        )
    if not blocking:
        return [
            Finding(
                "driver.psycopg",
                "ok",
                "psycopg 3 waits cooperatively",
                f"psycopg is imported; it waits with {getattr(wait, '__name__', wait)}, which "
                "yields to gevent.",
            )
        ]
    return [
        Finding(
            "driver.psycopg",
            "error",
            "psycopg 3 blocks every greenlet while it waits for PostgreSQL",
            f"psycopg is imported, but {' and '.join(blocking)}.",
            "Import psycopg only after gevent has patched: let asgigreen serve patch first "
            "(don't import psycopg, or Django's database layer, from a sitecustomize, a .pth "
            "file or code that runs before the patching), and leave PSYCOPG_WAIT_FUNC unset.",
        )
    ]


def check_mysqlclient() -> list[Finding]:
    module = sys.modules.get("MySQLdb")
    if module is not None and str(getattr(module, "__name__", "")).startswith("pymysql"):
        return [
            Finding(
                "driver.mysqlclient",
                "ok",
                "MySQLdb is PyMySQL",
                "pymysql.install_as_MySQLdb() was called: pure Python, it waits on gevent's "
                "sockets.",
            )
        ]
    if module is not None:
        found = ["MySQLdb (mysqlclient) is imported"]
    else:
        aliases = _engines("django.db.backends.mysql")
        if not aliases or not _importable("MySQLdb"):
            return []
        found = [
            f"DATABASES[{alias!r}] uses Django's MySQL backend, which imports MySQLdb "
            "(mysqlclient, installed here)"
            for alias in aliases
        ]
    return [
        Finding(
            "driver.mysqlclient",
            "error",
            "mysqlclient (MySQLdb) blocks every greenlet while it waits for MySQL",
            f"{'; '.join(found)}: libmysqlclient waits for the server in C.",
            "pip install PyMySQL and call import pymysql; pymysql.install_as_MySQLdb() right "
            f"after gevent patches (it is pure Python, so it cooperates); {_REAL_THREAD}.",
        )
    ]


def _grpc_gevent_enabled(cygrpc: Any) -> bool:
    # grpc.experimental.gevent.init_gevent() sets this module global; older
    # releases only set gevent_hub.
    activated = getattr(cygrpc, "g_gevent_activated", None)
    if activated is None:
        return getattr(cygrpc, "gevent_hub", None) is not None
    return bool(activated)


def check_grpc() -> list[Finding]:
    if "grpc" not in sys.modules:
        return []
    if _grpc_gevent_enabled(sys.modules.get("grpc._cython.cygrpc")):
        return [
            Finding(
                "driver.grpc",
                "ok",
                "gRPC runs on gevent",
                "grpc.experimental.gevent.init_gevent() was called.",
            )
        ]
    return [
        Finding(
            "driver.grpc",
            "error",
            "gRPC without its gevent support blocks or hangs greenlets",
            "grpc is imported, but grpc.experimental.gevent.init_gevent() was not called: "
            "gRPC's core waits in C threads of its own, so a call stalls the hub, and "
            "callbacks into Python can wait forever.",
            "Right after gevent patches and before any channel or server is created: import "
            "grpc.experimental.gevent; grpc.experimental.gevent.init_gevent().",
        )
    ]


def check_oracledb() -> list[Finding]:
    oracledb = sys.modules.get("oracledb")
    is_thin = getattr(oracledb, "is_thin_mode", None)
    if oracledb is None or not callable(is_thin) or is_thin():
        return []
    return [
        Finding(
            "driver.oracledb",
            "warning",
            "python-oracledb in thick mode blocks every greenlet while it waits",
            "oracledb.init_oracle_client() was called: queries go through Oracle's C "
            "client library.",
            "Use thin mode (pure Python, cooperative): don't call init_oracle_client(); "
            f"{_REAL_THREAD}.",
        )
    ]


def _memcached_caches() -> list[str]:
    return [
        f"CACHES[{alias!r}] uses PyLibMCCache"
        for alias, cache in _django.setting("CACHES").items()
        if str(cache.get("BACKEND", "")).endswith("PyLibMCCache")
    ]


def _blocking_module(
    module: str, ident: str, what: str, fix: str, extra: Callable[[], list[str]] | None = None
) -> Callable[[], list[Finding]]:
    """A check for a C driver that has no cooperative mode: found means a warning."""

    def check() -> list[Finding]:
        found = [f"{module} is imported"] if module in sys.modules else []
        if extra is not None:
            found += extra()
        if not found:
            return []
        return [
            Finding(
                ident,
                "warning",
                f"{what} blocks every greenlet while it waits",
                f"{'; '.join(found)}: its C library waits on the network itself.",
                f"{fix}; {_REAL_THREAD}.",
            )
        ]

    check.__name__ = f"check_{module.strip('_').lower()}"
    return check


def check_pyzmq() -> list[Finding]:
    if "zmq" not in sys.modules or "zmq.green" in sys.modules:
        return []
    return [
        Finding(
            "driver.pyzmq",
            "warning",
            "pyzmq's own sockets block every greenlet",
            "zmq is imported, zmq.green is not.",
            "import zmq.green as zmq: the same API on gevent.",
        )
    ]


#: Every driver check, in report order.
CHECKS: tuple[Callable[[], list[Finding]], ...] = (
    check_psycopg2,
    check_psycopg,
    check_mysqlclient,
    check_grpc,
    check_oracledb,
    _blocking_module(
        "cx_Oracle",
        "driver.cx_oracle",
        "cx_Oracle",
        "Move to python-oracledb in thin mode (pure Python, cooperative)",
    ),
    _blocking_module(
        "_ldap", "driver.python-ldap", "python-ldap", "Use ldap3 (pure Python, cooperative)"
    ),
    _blocking_module(
        "pylibmc",
        "driver.pylibmc",
        "pylibmc",
        "Use pymemcache (Django: django.core.cache.backends.memcached.PyMemcacheCache)",
        _memcached_caches,
    ),
    _blocking_module("pyodbc", "driver.pyodbc", "pyodbc", "There is no cooperative ODBC driver"),
    _blocking_module(
        "pymssql", "driver.pymssql", "pymssql", "There is no cooperative SQL Server driver"
    ),
    check_pyzmq,
)
