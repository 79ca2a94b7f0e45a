"""Sphinx configuration for asgigreen's documentation.

Built by ``make docs`` (``sphinx-build -W --keep-going -n``): every warning
fails the build and every cross-reference must resolve. There is no
intersphinx: the build runs without a network, so references to objects of
other projects (the standard library, gevent, Django, asgiref) are listed in
``nitpick_ignore_regex`` below rather than linked.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asgigreen  # noqa: E402

project = "asgigreen"
author = "The asgigreen developers"
copyright = "the asgigreen developers"
release = asgigreen.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.viewcode",
]

exclude_patterns = ["_build"]
root_doc = "index"
language = "en"
# ``code`` in the guides is an inline literal, as in the README.
default_role = "literal"

html_theme = "furo"
html_title = f"asgigreen {release}"
html_static_path = ["_static"]
html_theme_options = {
    "source_repository": "",
    "navigation_with_keys": True,
}
html_show_sourcelink = False
html_copy_source = False

# -- autodoc -----------------------------------------------------------------

autodoc_default_options = {
    "members": True,
    "show-inheritance": True,
}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_class_signature = "separated"
# Names that annotations (strings, under ``from __future__ import
# annotations``) use unqualified, where autodoc cannot evaluate them.
autodoc_type_aliases = {
    "Signal": "asgigreen.hubs.Signal",
}

# -- nitpicky ----------------------------------------------------------------

nitpicky = True
# Objects of other projects: without a network there is no inventory to link
# them to (see the module docstring). Each pattern names whole modules of
# other projects, never one of asgigreen's.
_EXTERNAL_MODULES = (
    "asyncio",
    "collections",
    "concurrent",
    "contextlib",
    "contextvars",
    "enum",
    "logging",
    "multiprocessing",
    "os",
    "pathlib",
    "queue",
    "selectors",
    "signal",
    "socket",
    "threading",
    "types",
    "typing",
    "typing_extensions",
    "weakref",
    "abc",
    "argparse",
    "atexit",
    "fnmatch",
    "functools",
    "io",
    "re",
    "sys",
    "traceback",
    "_asyncio",
    "gevent",
    "greenlet",
    "gunicorn",
    "uvicorn",
    "django",
    "channels",
    "channels_redis",
    "asgiref",
    "psycopg",
    "psycopg2",
    "opentelemetry",
    "sentry_sdk",
    "prometheus_client",
)
nitpick_ignore_regex = [
    (r"py:.*", rf"({'|'.join(_EXTERNAL_MODULES)})(\..*)?"),
    # Builtins the Python domain does not resolve by itself.
    (r"py:.*", r"(BaseException|Exception|RuntimeError|ValueError|TypeError|KeyError)"),
    (r"py:.*", r"(TimeoutError|OSError|LookupError|NotImplementedError|ImportError)"),
    (r"py:.*", r"(Ellipsis|NoneType|EllipsisType)"),
    # typeshed's types, which exist only for the type checker (imported
    # under ``if TYPE_CHECKING``), so signatures name them unqualified; and
    # concurrent.futures' Future, unqualified in a signature that also names
    # one of them (autodoc then cannot evaluate any of its annotations).
    (r"py:class", r"(OptExcInfo|WSGIEnvironment|WSGIApplication|StartResponse|Future)"),
    # Private names that signatures mention: type variables (``_R``, ``_P``)
    # and private helper classes; private modules, named in docstrings to
    # say where a thing lives. They have no entry, by design.
    (r"py:(class|obj|mod)", r"([\w.]+\.)?_[A-Za-z][\w.]*"),
]

# -- doctest -----------------------------------------------------------------

# Only ``.. doctest::`` blocks run. The ``>>>`` examples in the library's
# docstrings are illustrations that need a Django model or a running event
# loop (``async with`` at the top level), so they are not collected.
doctest_test_doctest_blocks = ""

# -- checks ------------------------------------------------------------------


def public_modules() -> list[str]:
    """Every importable asgigreen module whose dotted name has no ``_`` part."""
    names = ["asgigreen"]
    for info in pkgutil.walk_packages(asgigreen.__path__, "asgigreen."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        names.append(info.name)
    return sorted(names)


def _check_api_coverage(app: Any, env: Any) -> None:
    """Warn (so fail the build) for a public name the API reference leaves out.

    A public name is one in a public module's ``__all__``. It counts as
    documented when the Python domain knows it under that module, or when
    the module's page says where it is documented (a re-export: the same
    object documented under another module).
    """
    from sphinx.util import logging

    log = logging.getLogger("asgigreen.docs")
    objects = env.get_domain("py").objects
    for modname in public_modules():
        module = importlib.import_module(modname)
        if modname not in objects:
            log.warning("API reference: module %s is not documented", modname)
            continue
        for name in getattr(module, "__all__", ()):
            full = f"{modname}.{name}"
            if full in objects:
                continue
            value = getattr(module, name, None)
            home = getattr(value, "__module__", None)
            qualname = getattr(value, "__qualname__", name)
            if home and f"{home}.{qualname}" in objects:
                continue
            log.warning("API reference: %s is in __all__ but not documented", full)


def _drop_foreign_docstrings(
    app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """Leave out a method's docstring inherited from outside asgigreen.

    A method that overrides one of the standard library's without a
    docstring of its own (``CurrentThreadExecutor.submit``) would show the
    standard library's, which is not written in reStructuredText. One
    inherited from an asgigreen class (a hub's methods, from ``Hub``) stays.
    """
    if what != "method" or getattr(obj, "__doc__", None):
        return
    modname, _, rest = name.rpartition(".")
    owner: Any = None
    while modname and owner is None:
        try:
            owner = importlib.import_module(modname)
        except ImportError:
            modname, _, head = modname.rpartition(".")
            rest = f"{head}.{rest}"
    parts = rest.split(".")
    for part in parts[:-1]:
        owner = getattr(owner, part, None)
    if not isinstance(owner, type):
        return
    for base in owner.__mro__[1:]:
        inherited = base.__dict__.get(parts[-1])
        if getattr(inherited, "__doc__", None):
            if not base.__module__.startswith("asgigreen"):
                lines[:] = []
            return


def _source_module(app: Any, modname: str, fullname: str) -> str | None:
    """Where viewcode looks for an object's source: where it was defined.

    Sphinx's own lookup takes an attribute's *value* for the object, so a
    class attribute holding an instance (``AsyncToSync.executors``, a
    :class:`~asgigreen.local.Local`) sends it to the instance's class's
    module, and a builtin value to ``builtins``, which has no source page.
    Only classes and functions move; anything else stays in its module.
    """
    try:
        obj: Any = importlib.import_module(modname)
        for part in fullname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        return modname
    obj = getattr(obj, "__func__", obj)
    home = getattr(obj, "__module__", None)
    if (isinstance(obj, type) or (callable(obj) and hasattr(obj, "__code__"))) and (
        isinstance(home, str) and home.startswith("asgigreen")
    ):
        return home
    return modname


# Sphinx writes a ParamSpec's parts wrongly under ``from __future__ import
# annotations`` (``*args: ~typing.~_P``, ``Callable[[~_P], ...]``), and the
# signature then shows as raw text; these put them back as written.
_PARAMSPEC_FIXES = (
    (re.compile(r"(\*\*\w+): ~typing\.~(\w+)"), r"\1: \2.kwargs"),
    (re.compile(r"(\*\w+): ~typing\.~(\w+)"), r"\1: \2.args"),
    (re.compile(r"Callable\[\[~(_\w+)\]"), r"Callable[\1"),
)


def _fix_paramspec(
    app: Any,
    what: str,
    name: str,
    obj: Any,
    options: Any,
    signature: str | None,
    return_annotation: str | None,
) -> tuple[str | None, str | None] | None:
    if signature is None or ("~typing.~" not in signature and "[[~_" not in signature):
        return None
    for pattern, replacement in _PARAMSPEC_FIXES:
        signature = pattern.sub(replacement, signature)
    return signature, return_annotation


def setup(app: Any) -> None:
    app.connect("autodoc-process-signature", _fix_paramspec)
    app.connect("viewcode-follow-imported", _source_module)
    app.connect("env-check-consistency", _check_api_coverage)
    app.connect("autodoc-process-docstring", _drop_foreign_docstrings)
