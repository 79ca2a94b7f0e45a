"""The ``asgigreen`` command line (also ``python -m asgigreen``).

Commands:

* ``asgigreen serve MODULE:APP``: serve a WSGI or ASGI application with
  uvicorn in a gevent-patched process (:mod:`asgigreen.serve`).
* ``asgigreen doctor [MODULE:APP]``: load the application as ``serve``
  would, with the same options, and report what would go wrong, each
  finding with its fix; ``--json`` for CI, exit status 1 on an error
  (:mod:`asgigreen.doctor`).
* ``asgigreen --version``: the installed version (:data:`asgigreen.__version__`).

Nothing heavy is imported before the command has prepared the process:
``serve`` and ``doctor`` must let gevent patch before anything else.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import __version__
from .serve import HUBS, INTERFACES, ServeError

__all__ = ["main"]

_LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _add_loading_options(command: argparse.ArgumentParser) -> None:
    """The options that decide how the application is loaded: serve's and doctor's."""
    command.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="worker processes, supervised by uvicorn (default 1: serve in this process)",
    )
    command.add_argument(
        "--hub",
        choices=HUBS,
        default="gevent",
        help="gevent: patch the process (default); threads: no patching, OS threads",
    )
    command.add_argument(
        "--interface",
        choices=INTERFACES,
        default="auto",
        help="what the application speaks (default: detected; see docs/migration.rst)",
    )
    command.add_argument(
        "--factory", action="store_true", help="APP is a factory: call it to get the application"
    )
    command.add_argument(
        "--app-dir",
        default=".",
        help="directory put first on sys.path to import the application (default: .)",
    )


_DOCTOR_DESCRIPTION = """\
Prepare this process and import MODULE:APP exactly as 'asgigreen serve' would
with the same options (nothing is served), then report: whether and when gevent
patched, the hub and why, modules imported before the patching, the real asgiref
beside asgigreen's alias, drivers that block under gevent, an in-memory channel
layer with several workers, and known traps of the running versions.
"""

_DOCTOR_EPILOG = """\
Each finding has a stable id, a severity (error, warning, info, ok) and its fix.
Ids: serve.prepare, app.load, patch.when, patch.late, patch.order, early.<module>,
early.threads, hub.choice, hub.threads-patched, hub.gevent-unpatched, hub.mismatch,
hub.env-ignored, asgiref.real, asgiref.alias, driver.<name> (psycopg2, psycopg,
mysqlclient, grpc, oracledb, cx_oracle, python-ldap, pylibmc, pyodbc, pymssql, pyzmq),
layers.in-memory, layers.in-memory-workers, versions, python.unsupported,
python.free-threaded, python.gh141696, gevent.*, greenlet.*, django.unsupported,
serve.uvicorn.

Exit status: 0 if no error was found, 1 if one was (or a warning, with --strict),
2 on bad arguments. The --json layout is documented in asgigreen.doctor.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asgigreen",
        description="asgigreen: asgiref's bridges for gevent-monkeypatched processes, and tools.",
    )
    parser.add_argument("--version", action="version", version=f"asgigreen {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="serve a WSGI or ASGI application with uvicorn in a gevent-patched process",
        description="Patch the process with gevent (hub 'gevent'), make 'asgiref' resolve to "
        "asgigreen, import MODULE:APP, wrap it in asgigreen.wsgi.WsgiToAsgi if it is a WSGI "
        "application, and serve it with uvicorn until Ctrl-C.",
    )
    serve.add_argument(
        "target", metavar="MODULE:APP", help="the application, e.g. mysite.wsgi:application"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument(
        "--port", type=int, default=8000, help="port to bind, 0 for any (default 8000)"
    )
    _add_loading_options(serve)
    serve.add_argument(
        "--log-level", choices=_LOG_LEVELS, default="info", help="uvicorn's log level"
    )
    doctor = commands.add_parser(
        "doctor",
        help="load an application as serve would and report what would go wrong",
        description=_DOCTOR_DESCRIPTION,
        epilog=_DOCTOR_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    doctor.add_argument(
        "target",
        metavar="MODULE:APP",
        nargs="?",
        help="the application, e.g. mysite.asgi:application (default: check the process only)",
    )
    _add_loading_options(doctor)
    doctor.add_argument("--json", action="store_true", help="print the report as JSON (for CI)")
    doctor.add_argument(
        "--strict", action="store_true", help="exit with status 1 on warnings as well"
    )
    doctor.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="ID",
        help="report finding ID (a glob, e.g. 'driver.*') without counting it; repeatable",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "doctor":
        return _doctor(args)
    return 2  # argparse already refused anything else


def _app_dir(args: argparse.Namespace) -> str:
    app_dir = os.path.abspath(str(args.app_dir))
    sys.path.insert(0, app_dir)
    return app_dir


def _serve(args: argparse.Namespace) -> int:
    from .serve import serve

    _app_dir(args)
    try:
        serve(
            args.target,
            host=args.host,
            port=args.port,
            workers=args.workers,
            hub=args.hub,
            interface=args.interface,
            factory=args.factory,
            log_level=args.log_level,
        )
    except ServeError as exc:
        print(f"asgigreen serve: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass  # Ctrl-C: uvicorn has shut down cleanly already
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from .doctor import diagnose
    from .doctor._render import as_json, as_text

    app_dir = _app_dir(args)
    report = diagnose(
        args.target,
        hub=args.hub,
        workers=args.workers,
        factory=args.factory,
        interface=args.interface,
        ignore=args.ignore,
        strict=args.strict,
    )
    print(as_json(report, app_dir=app_dir) if args.json else as_text(report))
    if _threads_left():
        # The application started threads of its own while it was imported;
        # the doctor's answer must not wait for them to end.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(report.exit_status)
    return report.exit_status


def _threads_left() -> bool:
    import threading

    main = threading.main_thread()
    return any(
        thread is not main and not thread.daemon and thread.is_alive()
        for thread in threading.enumerate()
    )
