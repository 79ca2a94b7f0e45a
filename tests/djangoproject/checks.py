"""What the integration tests check inside each process they start.

Plain Python, no Django: the Flask app and the test scripts use it too.
"""

from __future__ import annotations

import importlib.machinery
import os
import sys
from typing import Any


def real_asgiref_dir() -> str | None:
    """Where the real asgiref package is installed, found without importing it."""
    spec = importlib.machinery.PathFinder.find_spec("asgiref")
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.realpath(next(iter(spec.submodule_search_locations)))


_opened_real_files: list[str] = []


def watch_real_asgiref() -> None:
    """Record every file opened inside the real asgiref package from now on.

    An audit hook sees the loader open a module's source or bytecode, so an
    import of real asgiref by any route shows up in :func:`alias_state`.
    """
    real_dir = real_asgiref_dir()
    if real_dir is None:
        return
    prefix = real_dir + os.sep

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            path = os.fsdecode(args[0])
            if "asgiref" in path and os.path.realpath(path).startswith(prefix):
                _opened_real_files.append(path)

    sys.addaudithook(hook)


def alias_state() -> dict[str, Any]:
    """Whether ``asgiref`` in this process is asgigreen, and nothing else."""
    from asgigreen import hubs

    real_dir = real_asgiref_dir()
    real_files = sorted(
        name
        for name, module in list(sys.modules.items())
        if real_dir is not None
        and isinstance(getattr(module, "__file__", None), str)
        and os.path.realpath(module.__file__).startswith(real_dir + os.sep)
    )
    asgiref_modules = sorted(n for n in sys.modules if n == "asgiref" or n.startswith("asgiref."))
    mismatched = [
        name
        for name in asgiref_modules
        if name != "asgiref"
        and sys.modules[name] is not sys.modules.get("asgigreen." + name.split(".", 1)[1])
    ]
    package = sys.modules.get("asgiref")
    return {
        "asgiref_modules": asgiref_modules,
        "mismatched": mismatched,
        "real_asgiref_loaded": real_files,
        "real_asgiref_opened": list(_opened_real_files),
        "sync_is_ours": "asgiref.sync" in sys.modules
        and sys.modules["asgiref.sync"] is sys.modules.get("asgigreen.sync"),
        "package_is_alias": getattr(package, "__asgigreen_alias__", False) is True,
        "asgiref_version": getattr(package, "__version__", None),
        "hub": hubs.get_hub().name,
    }


def assert_aliased(hub: str) -> None:
    """Fail unless asgiref is asgigreen here, real asgiref never loaded, on ``hub``."""
    state = alias_state()
    assert state["sync_is_ours"], state
    assert state["package_is_alias"], state
    assert state["asgiref_version"] == "3.13.0", state
    assert not state["mismatched"], state
    assert not state["real_asgiref_loaded"], state
    assert not state["real_asgiref_opened"], state
    assert state["hub"] == hub, state
