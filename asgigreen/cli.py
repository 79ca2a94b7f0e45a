"""The ``asgigreen`` command line (also ``python -m asgigreen``).

Only ``serve`` for now. Nothing heavy is imported before the subcommand has
prepared the process: ``serve`` must patch gevent before anything else.
"""

from __future__ import annotations

import argparse
import sys

from .serve import HUBS, INTERFACES, ServeError

__all__ = ["main"]

_LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asgigreen",
        description="asgigreen: asgiref's bridges for gevent-monkeypatched processes, and tools.",
    )
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
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes, supervised by uvicorn (default 1: serve in this process)",
    )
    serve.add_argument(
        "--hub",
        choices=HUBS,
        default="gevent",
        help="gevent: patch the process (default); threads: no patching, OS threads",
    )
    serve.add_argument(
        "--interface",
        choices=INTERFACES,
        default="auto",
        help="what the application speaks (default: detected; see docs/migration.rst)",
    )
    serve.add_argument(
        "--factory", action="store_true", help="APP is a factory: call it to get the application"
    )
    serve.add_argument(
        "--log-level", choices=_LOG_LEVELS, default="info", help="uvicorn's log level"
    )
    serve.add_argument(
        "--app-dir",
        default=".",
        help="directory put first on sys.path to import the application (default: .)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    return 2  # argparse already refused anything else


def _serve(args: argparse.Namespace) -> int:
    import os

    from .serve import serve

    sys.path.insert(0, os.path.abspath(args.app_dir))
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
