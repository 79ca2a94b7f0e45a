"""``asgigreen serve MODULE:APP``: a WSGI or ASGI application under uvicorn.

The migration path from ``gunicorn -k gevent module:wsgi_app`` to ASGI keeps
the application as it is: this command patches the process with gevent
*before* importing the application (so its database drivers, sockets and
``time.sleep`` stay cooperative), makes ``import asgiref`` give asgigreen,
imports the application, wraps a WSGI application in
:class:`~asgigreen.wsgi.WsgiToAsgi` and serves it with uvicorn, whose
asyncio event loop cooperates with the gevent hub.

The event loop
--------------

In one process (``--workers 1``) uvicorn runs on the hub's own event loop
(:meth:`asgigreen.hubs.Hub.run_on_new_loop`): on the gevent hub a loop whose
selector is a native ``epoll`` that yields to gevent when idle, so the WSGI
workers (greenlets) run whenever uvicorn waits. The listening socket is a
native socket too: asyncio drives it without blocking, gevent's socket
wrapper would only add cost. uvicorn's ``--loop`` option takes a custom loop
factory (``"module:callable"``) in uvicorn 0.36 and later; that is the hook
the ``--workers`` mode below uses, since there uvicorn's own code creates
the loop.

Several processes (``--workers N``) come from uvicorn's own supervisor: it
binds the socket in the parent, which stays unpatched and never imports the
application, and spawns fresh interpreters. In each of them the first thing
uvicorn asks for is the event loop factory; that is when the worker patches
(see :mod:`asgigreen._serve_workers`), before uvicorn imports the
application. The loop there runs on gevent's selector. For gunicorn, the
same server is available as a worker class: ``gunicorn -k
asgigreen.serve.GunicornWorker module:app`` (see :mod:`asgigreen._serve_gunicorn`).

Which interface an application speaks (``--interface auto``)
------------------------------------------------------------

ASGI if the object says so (``_asgi_single_callable`` or
``_asgi_double_callable`` set true), if it is a coroutine function or has an
``async def __call__`` (ASGI 3), or if it is a class or a sync callable
taking exactly one positional argument (ASGI 2: ``app(scope)``). Any other
callable is WSGI (``app(environ, start_response)``: a function, a Flask or
Django WSGI application, WSGI middleware). ``--interface wsgi`` or ``asgi``
overrides the guess.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import sys
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import socket

    import uvicorn

__all__ = [
    "HUBS",
    "INTERFACES",
    "detect_interface",
    "import_application",
    "load_application",
    "prepare_process",
    "serve",
]

# Nothing here imports asgigreen's bridges, uvicorn or the application at
# module level: this module is imported before the process is patched.

HUBS = ("gevent", "threads")
INTERFACES = ("auto", "wsgi", "asgi")

logger = logging.getLogger("uvicorn.error")


class ServeError(Exception):
    """The application could not be found or used; the message says why."""


def prepare_process(hub: str) -> None:
    """Make this process ready to import the application; call it first.

    ``gevent``: :func:`asgigreen.patch_all` (gevent monkeypatching, the
    asgiref alias, the gevent hub). ``threads``: the asgiref alias and the
    threads hub, no patching. Calling it again with the same hub is harmless.
    """
    if hub == "gevent":
        from . import patch_all

        patch_all()
    elif hub == "threads":
        from . import hubs, install_as_asgiref

        install_as_asgiref()
        hubs.use("threads")
    else:
        raise ValueError(f"Unknown hub {hub!r}; choose one of {', '.join(HUBS)}")


def import_application(target: str, *, factory: bool = False) -> Any:
    """The object named by ``target``, ``"module:attribute"`` (dots allowed after the colon).

    With ``factory=True`` the attribute is called without arguments and its
    result returned (``module:create_app``).
    """
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise ServeError(f"Application {target!r} must be given as 'module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name and not module_name.startswith(f"{exc.name}."):
            raise
        raise ServeError(
            f"Could not import module {module_name!r} (working directory {os.getcwd()})"
        ) from None
    obj: Any = module
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ServeError(
                f"Attribute {attribute!r} not found in module {module_name!r}"
            ) from None
    if factory:
        if not callable(obj):
            raise ServeError(f"{target!r} is not callable, so it cannot be a factory")
        obj = obj()
    return obj


def _positional_parameters(func: Callable[..., Any]) -> int | None:
    """How many positional arguments ``func`` takes, or None if it takes any number."""
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return None
    count = 0
    for parameter in signature.parameters.values():
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            return None
        if parameter.kind in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            count += 1
    return count


def detect_interface(application: Any) -> Literal["wsgi", "asgi"]:
    """``"asgi"`` or ``"wsgi"``, by the rule in the module documentation."""
    from .sync import iscoroutinefunction

    if not callable(application):
        raise ServeError(f"The application must be callable, not {type(application).__name__}")
    if getattr(application, "_asgi_single_callable", False) or getattr(
        application, "_asgi_double_callable", False
    ):
        return "asgi"
    if inspect.isclass(application):
        return "asgi"
    call = application if inspect.isroutine(application) else type(application).__call__
    if iscoroutinefunction(application) or iscoroutinefunction(call):
        return "asgi"
    if _positional_parameters(application) == 1:
        return "asgi"
    return "wsgi"


def load_application(
    target: str, *, interface: str = "auto", factory: bool = False
) -> tuple[Any, str]:
    """Import ``target`` and make it an ASGI 3 application.

    Returns the application and a short description of what was done. Call
    :func:`prepare_process` first.
    """
    from .compatibility import guarantee_single_callable
    from .wsgi import WsgiToAsgi

    if interface not in INTERFACES:
        raise ValueError(f"Unknown interface {interface!r}; choose one of {', '.join(INTERFACES)}")
    application = import_application(target, factory=factory)
    kind = detect_interface(application) if interface == "auto" else interface
    how = "detected" if interface == "auto" else "as told"
    if kind == "wsgi":
        return WsgiToAsgi(application), f"{target} is WSGI ({how}), served through WsgiToAsgi"
    return guarantee_single_callable(application), f"{target} is ASGI ({how})"


def _native_socket_class() -> type[socket.socket]:
    """The socket class asyncio should get: the unpatched one if gevent patched."""
    import socket

    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("socket"):
        original: type[socket.socket] = monkey.get_original("socket", "socket")
        return original
    return socket.socket


def _listen(host: str, port: int) -> socket.socket:
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on connections
    # accepted from a socket that says it is TCP. Without it, Nagle's
    # algorithm holds small responses back for tens of milliseconds.
    sock = _native_socket_class()(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _url(host: str, sock: socket.socket) -> str:
    port = sock.getsockname()[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def uvicorn_options(hub: str, log_level: str) -> dict[str, Any]:
    """The uvicorn Config options asgigreen serve sets, whatever the mode."""
    return {
        "log_level": log_level,
        # uvloop would run its own loop in C, blind to gevent: not when patched.
        "loop": "asyncio" if hub == "gevent" else "auto",
        "http": "auto",  # httptools if installed (pip install httptools), else h11
        "lifespan": "auto",
    }


def serve(
    target: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    hub: str = "gevent",
    interface: str = "auto",
    factory: bool = False,
    log_level: str = "info",
) -> None:
    """Serve ``target`` until interrupted (SIGINT / SIGTERM); see the module docs.

    With one worker this prepares the current process (patching it with the
    gevent hub), so call it before anything else is imported. With several,
    the current process only supervises them and stays as it is.
    """
    if workers < 1:
        raise ValueError("workers must be at least 1")
    if workers > 1:
        _serve_workers(target, host, port, workers, hub, interface, factory, log_level)
        return
    prepare_process(hub)
    import uvicorn

    from . import hubs

    application, description = load_application(target, interface=interface, factory=factory)
    config = uvicorn.Config(application, host=host, **uvicorn_options(hub, log_level))
    server = uvicorn.Server(config)
    sock = _listen(host, port)
    banner = (
        f"asgigreen serve: {description}; hub {hubs.get_hub().name}; "
        f"uvicorn {uvicorn.__version__} on {_url(host, sock)} (Press CTRL+C to quit)"
    )
    try:
        if hub == "gevent":
            hubs.get_hub().run_on_new_loop(lambda: _serve_announced(server, sock, banner))
        else:
            _run_on_uvicorns_loop(config, _serve_announced(server, sock, banner))
    finally:
        sock.close()


def _run_on_uvicorns_loop(config: uvicorn.Config, main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on the event loop uvicorn would pick (uvloop if installed)."""
    import asyncio

    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(main)


async def _serve_announced(server: uvicorn.Server, sock: socket.socket, banner: str) -> None:
    """``server.serve()``, logging ``banner`` once it accepts connections."""
    import asyncio

    serving = asyncio.ensure_future(server.serve(sockets=[sock]))
    while not server.started and not serving.done():
        await asyncio.sleep(0.01)
    if server.started:
        logger.info("%s", banner)
    await serving


def _serve_workers(
    target: str,
    host: str,
    port: int,
    workers: int,
    hub: str,
    interface: str,
    factory: bool,
    log_level: str,
) -> None:
    from uvicorn.supervisors import Multiprocess

    from ._serve_workers import WorkerConfig

    config = WorkerConfig(
        target,
        hub=hub,
        interface=interface,
        factory=factory,
        host=host,
        port=port,
        workers=workers,
        **uvicorn_options(hub, log_level),
    )
    sock = _listen(host, port)
    # Listen now: connections made before a worker is up wait in the backlog.
    sock.listen(config.backlog)
    logger.info(
        "asgigreen serve: %s in %d worker processes (hub %s), supervised by uvicorn, on %s",
        target,
        workers,
        hub,
        _url(host, sock),
    )
    try:
        Multiprocess(config, sockets=[sock]).run()
    finally:
        sock.close()


def __getattr__(name: str) -> Any:
    # The gunicorn worker class, imported only when gunicorn asks for it.
    if name == "GunicornWorker":
        from ._serve_gunicorn import GunicornWorker

        return GunicornWorker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
