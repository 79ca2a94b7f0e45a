"""Make ``import asgiref`` give asgigreen: :func:`install_as_asgiref`.

After the call, the name ``asgiref`` belongs to asgigreen for the rest of the
process. A finder at the front of :data:`sys.meta_path` answers every import
under it:

* ``asgiref`` is a small alias package reporting :data:`ASGIREF_VERSION` as
  its ``__version__``;
* ``asgiref.sync`` and the other submodules asgiref has are asgigreen's own
  module objects (``sys.modules["asgiref.sync"] is asgigreen.sync``);
* any other ``asgiref.*`` fails with a :class:`ModuleNotFoundError` saying
  asgigreen does not provide it.

The submodules are imported when first asked for, not by the call itself.
That matters because importing :mod:`asgigreen.sync` picks the hub (threads
or gevent): calling :func:`install_as_asgiref` in a process that gevent
patches only later, such as a gunicorn master whose gevent workers patch
after the fork, still gets the gevent hub in the workers.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import threading
import types
from collections.abc import Sequence

__all__ = ["ASGIREF_VERSION", "SUBMODULES", "AsgirefAlreadyImported", "install_as_asgiref"]

#: The asgiref release whose API asgigreen follows; the alias package's
#: ``__version__``, for code that checks asgiref's version.
ASGIREF_VERSION = "3.13.0"

#: asgiref's submodules, each answered by the asgigreen module of the same name.
SUBMODULES = frozenset(
    {
        "compatibility",
        "current_thread_executor",
        "local",
        "server",
        "sync",
        "testing",
        "timeout",
        "typing",
        "wsgi",
    }
)

_PACKAGE = "asgiref"
_PREFIX = _PACKAGE + "."
# Set on the alias package so it can be told apart from the real one.
_MARKER = "__asgigreen_alias__"

_ADVICE = (
    "Call asgigreen.install_as_asgiref() before anything imports asgiref: before "
    "importing Django, Flask or Channels, e.g. at the very top of manage.py, wsgi.py, "
    "asgi.py or the gunicorn config file."
)

_install_lock = threading.Lock()


class AsgirefAlreadyImported(RuntimeError):
    """Real asgiref modules are loaded, so asgigreen cannot take their place.

    ``modules`` holds the names of the offending :data:`sys.modules` entries.
    """

    def __init__(self, modules: Sequence[str]) -> None:
        self.modules = tuple(modules)
        super().__init__(
            f"asgiref is already imported ({', '.join(self.modules)}), so asgigreen "
            "cannot stand in for it: code holding those modules would mix asgiref's "
            f"bridges with asgigreen's. {_ADVICE}"
        )


def _is_ours(name: str, module: object) -> bool:
    """Whether ``module``, found at ``sys.modules[name]``, is asgigreen's alias."""
    if name == _PACKAGE:
        return getattr(module, _MARKER, False) is True
    sub = name[len(_PREFIX) :]
    return sub in SUBMODULES and module is sys.modules.get(f"asgigreen.{sub}")


def _foreign_modules() -> list[str]:
    """Names of ``asgiref`` entries in :data:`sys.modules` that are not ours."""
    return sorted(
        name
        for name, module in list(sys.modules.items())
        if (name == _PACKAGE or name.startswith(_PREFIX)) and not _is_ours(name, module)
    )


def _package_getattr(name: str) -> types.ModuleType:
    # Lets ``import asgiref; asgiref.sync`` work without importing asgiref.sync first.
    if name in SUBMODULES:
        return importlib.import_module(_PREFIX + name)
    raise AttributeError(f"module {_PACKAGE!r} has no attribute {name!r}")


def _package_dir() -> list[str]:
    package = sys.modules.get(_PACKAGE)
    names = set(vars(package)) if package is not None else set()
    return sorted(names | SUBMODULES)


class _AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers imports of ``asgiref`` and ``asgiref.*`` with asgigreen."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == _PACKAGE:
            return importlib.machinery.ModuleSpec(
                fullname, self, origin="alias of asgigreen", is_package=True
            )
        if not fullname.startswith(_PREFIX):
            return None
        parent = sys.modules.get(_PACKAGE)
        if parent is not None and not _is_ours(_PACKAGE, parent):
            # Something put the real package in place behind our back.
            raise AsgirefAlreadyImported(_foreign_modules())
        if fullname[len(_PREFIX) :] in SUBMODULES:
            return importlib.machinery.ModuleSpec(fullname, self)
        raise ModuleNotFoundError(
            f"No module named {fullname!r}: asgigreen.install_as_asgiref() made asgigreen "
            f"stand in for asgiref, and asgigreen provides only "
            f"{', '.join(sorted(_PREFIX + sub for sub in SUBMODULES))}.",
            name=fullname,
        )

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None  # the default module; exec_module fills or replaces it

    def exec_module(self, module: types.ModuleType) -> None:
        name = module.__name__
        if name == _PACKAGE:
            vars(module).update(
                {
                    "__doc__": "asgiref, provided by asgigreen (see asgigreen.install_as_asgiref).",
                    "__version__": ASGIREF_VERSION,
                    "__getattr__": _package_getattr,
                    "__dir__": _package_dir,
                    _MARKER: True,
                }
            )
            return
        # The import system returns whatever sys.modules holds once exec_module
        # is done, so replacing the placeholder makes asgiref.X *be* asgigreen.X.
        sys.modules[name] = importlib.import_module("asgigreen." + name[len(_PREFIX) :])


def _finder() -> _AliasFinder | None:
    for finder in sys.meta_path:
        if isinstance(finder, _AliasFinder):
            return finder
    return None


def install_as_asgiref() -> None:
    """Make ``asgiref`` and its submodules resolve to asgigreen in this process.

    Call it before anything imports asgiref, i.e. before importing Django,
    Flask or Channels: at the very top of ``manage.py``, ``wsgi.py``,
    ``asgi.py`` or the gunicorn config file. Calling it again is harmless.

    Raises :class:`AsgirefAlreadyImported` if real asgiref modules are
    already loaded; the two are never mixed.
    """
    with _install_lock:
        foreign = _foreign_modules()
        if foreign:
            raise AsgirefAlreadyImported(foreign)
        if _finder() is None:
            sys.meta_path.insert(0, _AliasFinder())
        importlib.import_module(_PACKAGE)
