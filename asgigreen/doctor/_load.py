"""Load the application as ``asgigreen serve`` would, watching when gevent patches.

The loading itself is :mod:`asgigreen.serve`'s: :func:`~asgigreen.serve.prepare_process`
then :func:`~asgigreen.serve.load_application`, the two steps every serving
mode takes (``--workers N`` takes them in each worker process, which is what
this process stands in for). Nothing is served: uvicorn is never started.

What this module adds is a witness. Before anything else it subscribes to
gevent's patch events (:mod:`gevent.events`), so the first time gevent
starts patching, whoever asked for it, the moment is recorded: the modules
already imported, the threads already running, and the code that asked.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import threading
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .. import serve

__all__ = ["LoadOptions", "Observation", "PatchMoment", "gevent_patched", "load"]

# Frames of these packages are machinery between the code that asked for the
# patching and gevent; the first frame outside them is the one to name.
_MACHINERY = ("gevent", "zope", "asgigreen", "importlib", "runpy")


@dataclass(frozen=True)
class LoadOptions:
    """The ``asgigreen serve`` options that change how the application is loaded."""

    target: str | None = None
    hub: str = "gevent"
    workers: int = 1
    factory: bool = False
    interface: str = "auto"


@dataclass(frozen=True)
class PatchMoment:
    """The moment gevent began patching this process."""

    #: True if :func:`asgigreen.serve.prepare_process` asked, before the application.
    by_serve: bool
    #: ``"path.py:12"`` of the code that asked, if it was not asgigreen's.
    where: str
    #: Every module imported by then.
    modules: frozenset[str]
    #: Names of the threads (other than the main one) already running by then.
    threads: tuple[str, ...]


@dataclass
class Observation:
    """What happened while the application was loaded."""

    options: LoadOptions
    #: gevent had patched threading before the doctor began (``python -m gevent.monkey``).
    patched_at_start: bool = False
    #: The modules imported before the doctor began.
    preloaded: frozenset[str] = frozenset()
    patch: PatchMoment | None = None
    #: What :func:`~asgigreen.serve.prepare_process` raised, if anything.
    prepare_error: BaseException | None = None
    #: What importing the application raised, if anything.
    load_error: BaseException | None = None
    #: How serve would run the application (``"app:x is WSGI (detected), ..."``).
    description: str = ""
    #: The hub's name once the process was prepared (before the application).
    hub_before_app: str | None = None
    #: Set once the application was imported.
    application: object = field(default=None, repr=False)


def gevent_patched(module: str = "threading") -> bool:
    """Whether gevent has patched ``module``, without importing gevent."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is None:
        return False
    try:
        return bool(monkey.is_module_patched(module))
    except Exception:
        return False


def _asking_frame(start: types.FrameType | None) -> tuple[bool, str]:
    """Whether serve asked for the patching, and where the asking code is."""
    by_serve = False
    where = ""
    frame = start
    while frame is not None:
        code = frame.f_code
        if code is serve.prepare_process.__code__:
            by_serve = True
        module = str(frame.f_globals.get("__name__", ""))
        outside = module.partition(".")[0] not in _MACHINERY and not code.co_filename.startswith(
            "<"
        )
        if outside and not where:
            where = f"{_short_path(code.co_filename)}:{frame.f_lineno}"
        frame = frame.f_back
    return by_serve, where


def _short_path(path: str) -> str:
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return path
    return path if relative.startswith("..") else relative


@contextlib.contextmanager
def _watch_patching(record: Callable[[PatchMoment], None]) -> Iterator[None]:
    """Call ``record`` the first time gevent is about to patch, while inside."""
    if importlib.util.find_spec("gevent") is None:
        yield
        return
    from gevent import events

    seen = False

    def subscriber(event: object) -> None:
        nonlocal seen
        if seen or not isinstance(event, events.GeventWillPatchEvent):
            return
        seen = True
        by_serve, where = _asking_frame(sys._getframe(1))
        main = threading.main_thread()
        record(
            PatchMoment(
                by_serve=by_serve,
                where=where,
                modules=frozenset(sys.modules),
                threads=tuple(t.name for t in threading.enumerate() if t is not main),
            )
        )

    events.subscribers.append(subscriber)
    try:
        yield
    finally:
        events.subscribers.remove(subscriber)


def _current_hub_name() -> str | None:
    hubs = sys.modules.get("asgigreen.hubs")
    hub = getattr(hubs, "_hub", None)
    return getattr(hub, "name", None)


def load(options: LoadOptions) -> Observation:
    """Prepare this process and import the application as serve would; never raises.

    Call it first thing in a fresh process: whatever it imports stays
    imported. What the application prints goes to stderr, so that stdout
    carries only the report.
    """
    observation = Observation(
        options,
        patched_at_start=gevent_patched(),
        preloaded=frozenset(sys.modules),
    )

    def record(moment: PatchMoment) -> None:
        observation.patch = moment

    with _watch_patching(record), contextlib.redirect_stdout(sys.stderr):
        try:
            serve.prepare_process(options.hub)
        except Exception as exc:
            observation.prepare_error = exc
            return observation
        observation.hub_before_app = _current_hub_name()
        if options.target is None:
            return observation
        try:
            observation.application, observation.description = serve.load_application(
                options.target, interface=options.interface, factory=options.factory
            )
        except (Exception, SystemExit) as exc:
            observation.load_error = exc
    return observation
