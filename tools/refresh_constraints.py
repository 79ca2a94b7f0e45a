"""Write constraints/tests.txt: the development dependencies at the versions CI tests.

``make test``, ``.ci/run`` and ``tools/matrix.py`` install with ``pip install
-c constraints/tests.txt``, so a new release of a dependency changes nothing
until this script is run and the tests pass with what it wrote. The pins are
read from the virtual environments the tests run in: the one running this
script (``.venv``, this Python) and ``build/venv-VERSION`` for each rootfs
Python. Only the dependency closure of asgigreen's extras is written, so
anything installed there by hand stays out. A package whose version differs
between Pythons gets one line per range of them, with an environment marker
(Django: 5.2 LTS before 3.14, 6.x from it, as matrix.py's DJANGO asks)::

    .venv/bin/python tools/refresh_constraints.py              # the venvs as they are
    .venv/bin/python tools/refresh_constraints.py --upgrade    # newest versions first

``--upgrade`` (``make constraints``) first upgrades ``.venv`` to the newest
versions pyproject.toml allows (not with ``--keep-host``), then reinstalls
each rootfs venv with those same versions (its own Django series), or with
its newest ones when the host's do not install there. The rootfs needs root
(``make rootfs``). A rootfs Python not named, or whose venv is missing, keeps its
lines from the current file.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import subprocess
import sys
import sysconfig
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import matrix
from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = matrix.ROOT
CONSTRAINTS = matrix.CONSTRAINTS
#: The extras ``.venv`` gets on --upgrade: what CI and the make targets install.
HOST_EXTRAS = "tests,docs,release,bench,demo"
#: The host's pins handed to a rootfs install (under the repo, so it sees it).
HOST_PINS = ROOT / "build" / "constraints-host.txt"
UPGRADE_LIMIT = 1200

Pins = dict[str, str]


def _say(text: str) -> None:
    print(f"refresh_constraints: {text}", flush=True)


# -- reading a venv ------------------------------------------------------------------------------


def site_packages(venv: Path, version: str) -> Path:
    return venv / "lib" / f"python{version}" / "site-packages"


def _environment(version: str) -> dict[str, str]:
    """Marker variables for CPython ``version`` on this platform."""
    env = {key: str(value) for key, value in default_environment().items()}
    env.update(python_version=version, python_full_version=f"{version}.0")
    env.update(implementation_version=f"{version}.0")
    return env


def frozen(site: Path, version: str) -> Pins:
    """name -> version for asgigreen's dependency closure (all extras) in ``site``."""
    dists: dict[str, importlib.metadata.Distribution] = {}
    for dist in importlib.metadata.distributions(path=[str(site)]):
        name = dist.metadata["Name"]
        if name:
            dists.setdefault(canonicalize_name(name), dist)
    if "asgigreen" not in dists:
        sys.exit(f"refresh_constraints: asgigreen is not installed in {site}")
    env = _environment(version)
    root = dists["asgigreen"]
    todo = [(root, frozenset(root.metadata.get_all("Provides-Extra") or []))]
    seen: set[tuple[str, frozenset[str]]] = set()
    pins: Pins = {}
    while todo:
        dist, extras = todo.pop()
        for text in dist.requires or []:
            req = Requirement(text)
            wanted = req.marker is None or any(
                req.marker.evaluate({**env, "extra": extra}) for extra in (*extras, "")
            )
            name = canonicalize_name(req.name)
            if not wanted or name not in dists:
                continue
            key = (name, frozenset(req.extras))
            if key in seen:
                continue
            seen.add(key)
            pins[name] = dists[name].version
            todo.append((dists[name], frozenset(req.extras)))
    pins.pop("asgigreen", None)
    return pins


def from_file(path: Path, version: str) -> Pins:
    """The pins ``path`` gives CPython ``version``."""
    pins: Pins = {}
    if not path.is_file():
        return pins
    env = _environment(version)
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement as exc:
            sys.exit(f"refresh_constraints: {path}:{number}: {exc}")
        pinned = [spec.version for spec in req.specifier if spec.operator == "=="]
        if pinned and (req.marker is None or req.marker.evaluate(env)):
            pins[canonicalize_name(req.name)] = pinned[0]
    return pins


# -- writing -------------------------------------------------------------------------------------


def lines_for(name: str, by_python: Mapping[str, str]) -> list[str]:
    """``name``'s pins: one line, or one per run of Pythons sharing a version."""
    order = sorted(by_python, key=Version)
    runs: list[tuple[str, str]] = []  # (first Python of the run, version)
    for python in order:
        if not runs or runs[-1][1] != by_python[python]:
            runs.append((python, by_python[python]))
    if len(runs) == 1:
        return [f"{name}=={runs[0][1]}"]
    out = []
    for i, (first, pinned) in enumerate(runs):
        bounds = []
        if i > 0:
            bounds.append(f'python_version >= "{first}"')
        if i + 1 < len(runs):
            bounds.append(f'python_version < "{runs[i + 1][0]}"')
        out.append(f"{name}=={pinned} ; {' and '.join(bounds)}")
    return out


def render(pins_by_python: Mapping[str, Pins], sources: Mapping[str, str]) -> str:
    names = sorted({name for pins in pins_by_python.values() for name in pins})
    read = ", ".join(f"{python} ({sources[python]})" for python in sorted(sources, key=Version))
    out = [
        "# The development dependencies at the versions CI tested, for CPython 3.11-3.15.",
        "# `make test`, .ci/run and tools/matrix.py install with `pip install -c` this file.",
        "# Written by tools/refresh_constraints.py (`make constraints` upgrades, then writes",
        "# it); hold a package back by editing its line, then run the tests.",
        f"# Read from: {read}.",
    ]
    for name in names:
        by_python = {python: pins[name] for python, pins in pins_by_python.items() if name in pins}
        out += lines_for(name, by_python)
    return "\n".join(out) + "\n"


# -- upgrading -----------------------------------------------------------------------------------


def _pip(args: Sequence[str]) -> None:
    argv = [sys.executable, "-m", "pip", "install", "--quiet", *args]
    _say(" ".join(argv))
    try:
        subprocess.run(argv, cwd=ROOT, check=True, timeout=UPGRADE_LIMIT)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        sys.exit(f"refresh_constraints: the upgrade of this venv failed: {exc}")


def upgrade_host() -> None:
    _pip(["--upgrade", "--upgrade-strategy", "eager", "-e", f".[{HOST_EXTRAS}]"])


def upgrade_rootfs(version: str, host: Pins) -> bool:
    """Reinstall ``build/venv-VERSION`` with the host's versions, else its newest ones."""
    own = {canonicalize_name(Requirement(matrix.DJANGO.get(version, "django")).name)}
    HOST_PINS.parent.mkdir(parents=True, exist_ok=True)
    HOST_PINS.write_text(
        "".join(f"{name}=={pinned}\n" for name, pinned in sorted(host.items()) if name not in own),
        encoding="utf-8",
    )
    if matrix.install(version, HOST_PINS):
        return True
    _say(
        f"{version}: the host's versions do not all install there (see "
        f"build/results/{version}-install.log); taking {version}'s newest instead"
    )
    return matrix.install(version, None)


# -- main ----------------------------------------------------------------------------------------


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--upgrade", action="store_true", help="upgrade the venvs to the newest versions first"
    )
    parser.add_argument(
        "--keep-host",
        action="store_true",
        help="with --upgrade: leave .venv as it is; bring the rootfs venvs to its versions",
    )
    parser.add_argument(
        "versions",
        nargs="*",
        metavar="VERSION",
        help=f"rootfs Pythons to read (default: {' '.join(matrix.DEFAULT_VERSIONS)})",
    )
    ns = parser.parse_args(None if argv is None else list(argv))
    if sys.prefix == sys.base_prefix:
        sys.exit("refresh_constraints: run it with the venv's Python: .venv/bin/python")
    host_version = matrix.version_of_this_python()
    # Every rootfs Python gets lines; those not asked for keep theirs.
    versions = [v for v in (ns.versions or matrix.DEFAULT_VERSIONS) if v != host_version]
    every = sorted({*matrix.DEFAULT_VERSIONS, *versions} - {host_version}, key=Version)
    if ns.upgrade:
        if versions and os.geteuid() != 0:
            sys.exit("refresh_constraints: --upgrade of the rootfs venvs needs root (sudo)")
        if not ns.keep_host:
            upgrade_host()
    site = Path(sysconfig.get_paths()["purelib"])
    pins_by_python: dict[str, Pins] = {host_version: frozen(site, host_version)}
    sources = {host_version: matrix._rel(Path(sys.prefix))}
    failed = False
    for version in every:
        venv = ROOT / "build" / f"venv-{version}"
        asked = version in versions
        if asked and ns.upgrade and not upgrade_rootfs(version, pins_by_python[host_version]):
            failed = True
        if asked and site_packages(venv, version).is_dir():
            pins_by_python[version] = frozen(site_packages(venv, version), version)
            sources[version] = matrix._rel(venv)
        else:
            why = f"no {matrix._rel(venv)}" if asked else "not asked for"
            _say(f"{version}: {why}; keeping its pins from the current file")
            pins_by_python[version] = from_file(CONSTRAINTS, version)
            sources[version] = "kept"
    if failed:
        _say("an install failed; constraints/tests.txt left as it was")
        return 1
    text = render(pins_by_python, sources)
    CONSTRAINTS.parent.mkdir(parents=True, exist_ok=True)
    old = CONSTRAINTS.read_text(encoding="utf-8") if CONSTRAINTS.is_file() else ""
    CONSTRAINTS.write_text(text, encoding="utf-8")
    changed = sum(1 for line in set(text.splitlines()) ^ set(old.splitlines()) if "==" in line)
    _say(f"wrote {matrix._rel(CONSTRAINTS)} ({changed} lines differ from before)")
    if ns.upgrade:
        _say("now run the tests (make test, make test-pythons) before committing it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
