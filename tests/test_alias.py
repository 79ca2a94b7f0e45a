"""asgigreen.install_as_asgiref(): asgiref imports resolve to asgigreen.

``sys.modules`` is process-wide, so every scenario runs in a fresh interpreter,
plain or gevent-monkeypatched as the scenario asks, whatever mode pytest
itself runs in.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

TESTS_DIR = Path(__file__).resolve().parent
CHILD_TIMEOUT = 60

# First thing in every child: note any file of the real asgiref being opened
# (see djangoproject.checks), then patch if the mode asks for it.
WATCH = "from djangoproject.checks import watch_real_asgiref\nwatch_real_asgiref()\n"
PRELUDES = {
    "plain": WATCH,
    "gevent": WATCH + "from gevent import monkey\nmonkey.patch_all()\n",
}
HUB_OF_MODE = {"plain": "threads", "gevent": "gevent"}

both_modes = pytest.mark.parametrize("mode", ["plain", "gevent"])


def run_child(code: str, mode: str = "plain") -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (after the mode's prelude); it must succeed.

    ``subprocess.run`` kills the child if it outlives the timeout.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("ASGIGREEN_HUB", "PYTHONPATH")}
    env["PYTHONPATH"] = str(TESTS_DIR)
    script = PRELUDES[mode] + textwrap.dedent(code)
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=TESTS_DIR,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
    )
    assert result.returncode == 0, (
        f"child failed ({result.returncode})\n--- stdout\n{result.stdout}\n"
        f"--- stderr\n{result.stderr}"
    )
    assert result.stdout.rstrip().endswith("OK"), result.stdout
    return result


@both_modes
def test_asgiref_imports_give_asgigreen_modules(mode: str) -> None:
    run_child(
        f"""
        import sys
        import asgigreen
        asgigreen.install_as_asgiref()

        import asgiref
        import asgiref.sync
        from asgiref.sync import sync_to_async, async_to_sync
        from asgiref.local import Local
        import asgigreen.sync, asgigreen.local

        assert sync_to_async is asgigreen.sync.sync_to_async
        assert asgiref.sync.sync_to_async is asgigreen.sync.sync_to_async
        assert Local is asgigreen.local.Local
        assert sys.modules["asgiref.sync"] is sys.modules["asgigreen.sync"]
        assert asgiref.__version__ == "3.13.0", asgiref.__version__
        assert asgigreen.__version__ == "0.1.0", asgigreen.__version__

        from asgigreen._alias import SUBMODULES
        assert SUBMODULES == {{
            "compatibility", "current_thread_executor", "local", "server", "sync",
            "testing", "timeout", "typing", "wsgi",
        }}
        import importlib
        for sub in sorted(SUBMODULES):
            aliased = importlib.import_module("asgiref." + sub)
            assert aliased is importlib.import_module("asgigreen." + sub), sub
            assert getattr(asgiref, sub) is aliased, sub
            assert aliased.__name__ == "asgigreen." + sub  # the module is not renamed
            assert aliased.__spec__.name == "asgigreen." + sub

        # The bridges work when reached through the asgiref names.
        import asyncio
        async def add(a, b):
            await asyncio.sleep(0)
            return a + b
        assert async_to_sync(add)(1, 2) == 3
        async def outer():
            return await sync_to_async(lambda: Local is asgiref.local.Local)()
        assert asyncio.run(outer()) is True

        from djangoproject.checks import assert_aliased
        assert_aliased({HUB_OF_MODE[mode]!r})
        print("OK")
        """,
        mode,
    )


def test_submodule_attribute_access_after_importing_only_the_package() -> None:
    run_child(
        """
        import sys
        import asgigreen
        asgigreen.install_as_asgiref()
        import asgiref

        # Nothing but the package is imported yet ...
        assert "asgiref.local" not in sys.modules
        assert "asgigreen.local" not in sys.modules
        # ... and attribute access imports the submodule.
        import asgigreen.local
        assert asgiref.local is asgigreen.local
        assert asgiref.local.Local is asgigreen.local.Local
        assert sys.modules["asgiref.local"] is asgigreen.local
        assert {"sync", "local", "wsgi", "__version__"} <= set(dir(asgiref))
        assert not hasattr(asgiref, "no_such_thing")
        assert repr(asgiref) == "<module 'asgiref' (alias of asgigreen)>", repr(asgiref)
        print("OK")
        """
    )


def test_installing_does_not_import_the_bridges_or_pick_a_hub() -> None:
    # Installed first and patched later, as in a gunicorn config file whose
    # gevent workers patch after the fork: the gevent hub is still chosen.
    run_child(
        """
        import sys
        import asgigreen
        asgigreen.install_as_asgiref()
        assert "asgigreen.sync" not in sys.modules
        assert "asgigreen.hubs" not in sys.modules

        from gevent import monkey
        monkey.patch_all()

        from asgiref.sync import async_to_sync
        from asgigreen import hubs
        assert sys.modules["asgiref.sync"] is sys.modules["asgigreen.sync"]
        assert hubs.get_hub().name == "gevent", hubs.get_hub().name

        async def answer():
            return 42
        assert async_to_sync(answer)() == 42
        print("OK")
        """
    )


@both_modes
def test_install_is_idempotent(mode: str) -> None:
    run_child(
        """
        import sys
        import asgigreen
        from asgigreen._alias import _AliasFinder

        asgigreen.install_as_asgiref()
        import asgiref.sync
        package = sys.modules["asgiref"]
        asgigreen.install_as_asgiref()
        asgigreen.install_as_asgiref()
        assert sys.modules["asgiref"] is package
        assert sys.modules["asgiref.sync"] is sys.modules["asgigreen.sync"]
        assert sum(isinstance(f, _AliasFinder) for f in sys.meta_path) == 1

        # Forgetting the package only gets the alias back, never the real one.
        del sys.modules["asgiref"]
        import asgiref
        assert asgiref.__asgigreen_alias__ is True
        assert asgiref.__version__ == "3.13.0"
        asgigreen.install_as_asgiref()

        from djangoproject.checks import assert_aliased
        assert_aliased("threads" if "gevent.monkey" not in sys.modules else "gevent")
        print("OK")
        """,
        mode,
    )


def test_real_asgiref_imported_first_is_refused_with_the_module_names() -> None:
    run_child(
        """
        import sys
        import asgiref.sync  # the real one
        import asgiref.local
        real = dict(sys.modules)
        meta_path = list(sys.meta_path)

        import asgigreen
        try:
            asgigreen.install_as_asgiref()
        except asgigreen.AsgirefAlreadyImported as exc:
            error = exc
        else:
            raise AssertionError("install_as_asgiref() accepted real asgiref")

        assert isinstance(error, RuntimeError)
        assert {"asgiref", "asgiref.sync", "asgiref.local"} <= set(error.modules), error.modules
        message = str(error)
        for name in ("asgiref", "asgiref.sync", "asgiref.local"):
            assert name in message, message
        assert "install_as_asgiref()" in message, message
        assert "before importing Django, Flask or Channels" in message, message
        assert "manage.py" in message and "gunicorn" in message, message

        # Nothing was changed: the real modules stay, no finder was added.
        assert sys.meta_path == meta_path
        assert all(sys.modules[n] is real[n] for n in real if n.startswith("asgiref"))
        assert "asgigreen" not in sys.modules["asgiref.sync"].__file__

        # The watch every child starts with (djangoproject.checks) saw it too.
        from djangoproject.checks import alias_state
        opened = alias_state()["real_asgiref_opened"]
        assert any(path.endswith(".py") or path.endswith(".pyc") for path in opened), opened
        print("OK")
        """
    )


def test_real_package_alone_is_refused() -> None:
    run_child(
        """
        import asgiref  # only the real package, no submodule
        import asgigreen
        try:
            asgigreen.install_as_asgiref()
        except asgigreen.AsgirefAlreadyImported as exc:
            assert exc.modules == ("asgiref",), exc.modules
        else:
            raise AssertionError("install_as_asgiref() accepted real asgiref")
        print("OK")
        """
    )


def test_foreign_asgiref_modules_after_install_are_refused() -> None:
    run_child(
        """
        import sys, types
        import asgigreen
        asgigreen.install_as_asgiref()
        import asgiref.sync

        # Someone slips another module in under an asgiref name.
        sys.modules["asgiref.local"] = types.ModuleType("asgiref.local")
        try:
            asgigreen.install_as_asgiref()
        except asgigreen.AsgirefAlreadyImported as exc:
            assert exc.modules == ("asgiref.local",), exc.modules
            assert "asgiref.local" in str(exc)
        else:
            raise AssertionError("a foreign asgiref.local went unnoticed")
        del sys.modules["asgiref.local"]

        # A foreign package behind the alias: importing under it is refused too.
        sys.modules["asgiref"] = types.ModuleType("asgiref")
        sys.modules["asgiref"].__path__ = []
        try:
            import asgiref.timeout
        except asgigreen.AsgirefAlreadyImported as exc:
            assert exc.modules == ("asgiref",), exc.modules
        else:
            raise AssertionError("a foreign asgiref package went unnoticed")
        print("OK")
        """
    )


def test_missing_submodule_is_a_clear_import_error() -> None:
    run_child(
        """
        import asgigreen
        asgigreen.install_as_asgiref()

        try:
            import asgiref.no_such_module
        except ModuleNotFoundError as exc:
            assert exc.name == "asgiref.no_such_module", exc.name
            message = str(exc)
        else:
            raise AssertionError("import asgiref.no_such_module succeeded")
        assert "'asgiref.no_such_module'" in message, message
        assert "asgigreen" in message and "asgiref.sync" in message, message

        import importlib
        try:
            importlib.import_module("asgiref.no_such_module")
        except ImportError as exc:
            assert exc.name == "asgiref.no_such_module"
        else:
            raise AssertionError("import_module succeeded")

        # The failure left nothing behind, and real asgiref was not consulted.
        import sys
        assert "asgiref.no_such_module" not in sys.modules
        from djangoproject.checks import real_asgiref_dir
        assert real_asgiref_dir() is not None  # it is installed, just never used
        assert not [
            n for n, m in sys.modules.items()
            if (getattr(m, "__file__", None) or "").startswith(real_asgiref_dir())
        ]
        print("OK")
        """
    )


def test_single_thread_executor_is_there_and_replaceable() -> None:
    run_child(
        """
        import asgigreen
        asgigreen.install_as_asgiref()

        import asyncio
        import threading
        from concurrent.futures import Executor, ThreadPoolExecutor
        from asgiref.sync import SyncToAsync, sync_to_async

        assert isinstance(SyncToAsync.single_thread_executor, Executor)
        SyncToAsync.single_thread_executor = ThreadPoolExecutor(1, thread_name_prefix="mine")

        async def main():
            return await sync_to_async(lambda: threading.current_thread().name)()

        name = asyncio.run(main())
        assert name.startswith("mine"), name
        print("OK")
        """
    )
