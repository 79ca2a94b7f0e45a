"""``asgigreen.patch_all()``: the one line a gevent worker needs.

It does three things, in the only order that works:

1. gevent monkeypatching (``gevent.monkey.patch_all()``), unless the host
   already did it (gunicorn's gevent worker, Celery's ``-P gevent``);
2. :func:`~asgigreen.install_as_asgiref`, so Django, Flask and Channels get
   asgigreen when they import asgiref;
3. the gevent hub (:func:`asgigreen.hubs.use`), optionally with every
   ``sync_to_async`` call sent to native threads (``real_threads=True``).

It must run before the first import of Django's database layer, Flask,
psycopg or asgiref: those capture thread locals, locks, sockets and wait
functions when they are imported, and asgiref must never be the real one.
Called too late it raises :class:`PatchOrderError` naming the modules that
came first, rather than leaving a process that fails under load.
"""

from __future__ import annotations

import sys
import threading

from ._alias import _foreign_modules, install_as_asgiref

__all__ = ["PatchOrderError", "patch_all"]

# What each module keeps for good when imported before gevent patches: this
# is why it must come after patch_all(), and what the error says about it.
_TOO_EARLY_BEFORE_PATCHING = {
    "django.db": "Django's database layer: its per-thread connection store, and the "
    "real asgiref it imports",
    # gevent warns that ssl patched after its import can break.
    "flask": "Flask: it pulls in ssl and socketserver, unpatched",
    "psycopg": "psycopg 3: it picked its C wait function, which blocks all greenlets",
    "asgigreen.sync": "asgigreen's bridges: they picked the threads hub on import",
}
_REAL_ASGIREF = "the real package; asgigreen can no longer stand in for it"

_WHERE = (
    "Call patch_all() before anything imports Django, Flask, Channels, psycopg or "
    "asgiref: as the first lines of the program's entry point (manage.py, wsgi.py, "
    "asgi.py, the Celery app module given to -A, or your script):\n\n"
    "    import asgigreen\n"
    "    asgigreen.patch_all()\n\n"
    "Under gunicorn use '-k asgigreen.gunicorn.GeventWorker' (it calls patch_all() "
    "right after gevent patches the worker, before the app is loaded), or '-k gevent' "
    "with those two lines at the top of wsgi.py; either way without --preload, which "
    "imports the app in the unpatched master process."
)

_lock = threading.Lock()


class PatchOrderError(RuntimeError):
    """:func:`patch_all` ran after modules it has to precede were imported.

    ``modules`` holds their names; ``gevent_was_patched`` tells whether gevent
    had already patched the process (the host did it) when the call came.
    ``hint``, if given, is the host's own advice, put first.
    """

    def __init__(self, modules: list[str], gevent_was_patched: bool, hint: str = "") -> None:
        self.modules = tuple(modules)
        self.gevent_was_patched = gevent_was_patched
        when = (
            "gevent had already patched this process (the host did, e.g. gunicorn's "
            "gevent worker or celery -P gevent), but these modules came before "
            "asgigreen.patch_all():"
            if gevent_was_patched
            else "these modules were imported before gevent monkeypatched this process:"
        )
        lines = "".join(f"\n  - {name}: {_reason(name)}" for name in _summarised(self.modules))
        advice = f"{hint}\n\n{_WHERE}" if hint else _WHERE
        super().__init__(f"asgigreen.patch_all() was called too late; {when}{lines}\n\n{advice}")


def _summarised(names: tuple[str, ...]) -> list[str]:
    """``names`` without the submodules of packages also listed."""
    listed = set(names)
    return [
        name
        for name in names
        if not any(name.startswith(other + ".") for other in listed if other != name)
    ]


def _reason(name: str) -> str:
    if name == "asgiref" or name.startswith("asgiref."):
        return _REAL_ASGIREF
    return _TOO_EARLY_BEFORE_PATCHING.get(name, "imported too early")


def _gevent_patched_threading() -> bool:
    # Only look: importing gevent.monkey here would be harmless, but a process
    # that never imported it has certainly not been patched.
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and bool(monkey.is_module_patched("threading"))


def _imported_too_early(patched: bool) -> list[str]:
    early = _foreign_modules()  # the real asgiref, in any case
    if not patched:
        early += [name for name in _TOO_EARLY_BEFORE_PATCHING if name in sys.modules]
    elif "asgigreen.sync" in sys.modules:
        # asgigreen.sync chose its hub on import; if that was before the host
        # patched, the hub layer knows it is the wrong one.
        from . import hubs

        try:
            hubs.get_hub()
        except hubs.HubMismatchError:
            early.append("asgigreen.sync")
    return early


def patch_all(*, real_threads: bool | None = None) -> None:
    """Make this process a gevent worker in which asgiref is asgigreen.

    Monkeypatches with gevent unless threading is already patched, then
    :func:`~asgigreen.install_as_asgiref` and the gevent hub. With
    ``real_threads=True`` every ``sync_to_async`` call runs on a native OS
    thread (:func:`asgigreen.hubs.gevent.configure`); ``None`` keeps the hub's
    setting (``ASGIGREEN_REAL_THREADS``). Calling it again is harmless.

    Raises :class:`PatchOrderError` if Django's database layer, Flask,
    psycopg or asgigreen.sync were imported before gevent patched, or the
    real asgiref at any time before this call.
    """
    with _lock:
        patched = _gevent_patched_threading()
        early = _imported_too_early(patched)
        if early:
            raise PatchOrderError(early, patched)
        if not patched:
            try:
                from gevent import monkey
            except ImportError as exc:
                raise RuntimeError(
                    "asgigreen.patch_all() needs gevent: pip install 'asgigreen[gevent]'"
                ) from exc
            monkey.patch_all()
        install_as_asgiref()
        # Imported only now: ``import asgigreen`` comes before the patching,
        # and should bring in as little as possible ahead of it.
        from . import hubs

        hubs.use("gevent")
        if real_threads is not None:
            from .hubs.gevent import configure

            configure(real_threads=real_threads)
