"""Known traps of the running Python, gevent, greenlet, Django and uvicorn versions.

The supported ranges are README.rst's "Supported versions": CPython 3.11 to
3.15 (not the free-threaded builds, which gevent does not support), gevent
24.2 or newer, Django 5.2 LTS and 6.x, uvicorn 0.36 or newer for
``--workers``.
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
import sysconfig
from collections.abc import Callable

from ._finding import Finding
from ._load import Observation, gevent_patched

__all__ = ["CHECKS", "asyncio_wakeup_trap", "installed_version"]

_PYTHONS = ((3, 11), (3, 15))
_GEVENT = (24, 2)
_GREENLET = (3, 0)
_UVICORN_WORKERS = (0, 36)


def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution``, or None."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _parsed(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0])[:3])


def asyncio_wakeup_trap() -> bool:
    """Whether this Python has gh-141696: executor results set straight on the loop.

    In a patched process, code that runs an event loop on a greenlet without
    asgigreen's per-greenlet asyncio state then waits for an unrelated timer
    to see a result (gevent#2213).
    """
    version = sys.version_info[:3]
    return version >= (3, 14, 3) or (3, 13, 12) <= version < (3, 14)


def _free_threaded() -> bool:
    return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def _uses_gevent(observation: Observation) -> bool:
    return observation.options.hub == "gevent" or gevent_patched()


def check_versions(observation: Observation) -> list[Finding]:
    python = sys.version.split()[0]
    names = ("gevent", "greenlet", "Django", "Flask", "uvicorn", "channels")
    found = [f"{name} {v}" for name in names if (v := installed_version(name))]
    return [
        Finding(
            "versions",
            "info",
            f"Python {python}" + ("" if not found else ", " + ", ".join(found)),
            f"{sys.executable} ({sys.implementation.name}"
            + (", free-threaded)" if _free_threaded() else ")"),
        )
    ]


def check_python(observation: Observation) -> list[Finding]:
    findings: list[Finding] = []
    version = sys.version_info[:2]
    low, high = _PYTHONS
    if not low <= version <= high:
        findings.append(
            Finding(
                "python.unsupported",
                "warning",
                f"Python {version[0]}.{version[1]} is outside asgigreen's supported range",
                "asgigreen supports CPython 3.11 to 3.15; asyncio's per-thread state changes "
                "between versions, and asgigreen follows each one it supports.",
                "Use CPython 3.11 to 3.15.",
            )
        )
    if _free_threaded():
        findings.append(
            Finding(
                "python.free-threaded",
                "error" if _uses_gevent(observation) else "warning",
                "a free-threaded Python build",
                "gevent does not support free-threaded builds (gevent#2127), and asgigreen "
                "is not tested on them.",
                "Use the regular (GIL) build of the same Python.",
            )
        )
    if gevent_patched() and asyncio_wakeup_trap():
        findings.append(
            Finding(
                "python.gh141696",
                "info",
                "this Python hands executor results straight to a running loop (gh-141696)",
                "In a patched process that would leave results waiting for an unrelated timer "
                "(gevent#2213); asgigreen keeps asyncio's per-thread state per greenlet, so "
                "its bridges are not affected. An event loop run on a greenlet without "
                "asgigreen (the real asgiref, asyncio.run in gevent.spawn) still is.",
            )
        )
    return findings


def check_gevent(observation: Observation) -> list[Finding]:
    if not _uses_gevent(observation):
        return []
    findings: list[Finding] = []
    for name, minimum in (("gevent", _GEVENT), ("greenlet", _GREENLET)):
        version = installed_version(name)
        if version is None:
            findings.append(
                Finding(
                    f"{name}.missing",
                    "error",
                    f"{name} is not installed",
                    "The gevent hub needs gevent and greenlet.",
                    "pip install 'asgigreen[gevent]'",
                )
            )
        elif _parsed(version) < minimum:
            wanted = ".".join(map(str, minimum))
            findings.append(
                Finding(
                    f"{name}.unsupported",
                    "error",
                    f"{name} {version} is older than asgigreen supports",
                    f"asgigreen needs {name} {wanted} or newer.",
                    f"pip install '{name}>={wanted}'",
                )
            )
    return findings


def check_django(observation: Observation) -> list[Finding]:
    if "django" not in sys.modules:
        return []
    version = installed_version("Django")
    if version is None:
        return []
    parsed = _parsed(version)[:2]
    python = sys.version_info[:2]
    problem = ""
    if parsed < (5, 2):
        problem = "asgigreen supports Django 5.2 LTS and 6.x"
    elif parsed[0] == 5 and python >= (3, 15):
        problem = "Django 5.2 supports Python up to 3.14; use Django 6 on 3.15"
    if not problem:
        return []
    return [
        Finding(
            "django.unsupported",
            "warning",
            f"Django {version} on Python {python[0]}.{python[1]}",
            problem + ".",
            "Upgrade Django: pip install 'Django>=5.2'.",
        )
    ]


def check_uvicorn(observation: Observation) -> list[Finding]:
    version = installed_version("uvicorn")
    if version is None:
        return [
            Finding(
                "serve.uvicorn",
                "error",
                "uvicorn is not installed",
                "asgigreen serve runs the application with uvicorn.",
                "pip install 'asgigreen[serve]'",
            )
        ]
    workers = observation.options.workers
    if workers > 1 and _parsed(version) < _UVICORN_WORKERS:
        return [
            Finding(
                "serve.uvicorn",
                "error",
                f"uvicorn {version} cannot run asgigreen's worker processes",
                "--workers needs uvicorn's loop factory hook, new in uvicorn 0.36.",
                "pip install 'uvicorn>=0.36'",
            )
        ]
    return []


#: Every version check, in report order.
CHECKS: tuple[Callable[[Observation], list[Finding]], ...] = (
    check_versions,
    check_python,
    check_gevent,
    check_django,
    check_uvicorn,
)
