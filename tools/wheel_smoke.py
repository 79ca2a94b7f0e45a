"""Install the built wheel into a fresh venv and check it works there, away from the checkout.

::

    python tools/wheel_smoke.py [dist/ | WHEEL] [--constraints FILE] [--python PYTHON]

With a directory (``make wheel-smoke`` passes ``dist/``), its one asgigreen
wheel is used, and the sdist beside it is checked too; with no argument a
wheel is built first (``python -m build --wheel``, the ``release`` extra).
The wheel goes into a new venv in a temporary directory with the ``gevent``
extra, within the constraints file (default ``constraints/tests.txt``).
Every check runs in an empty temporary directory with a clean environment,
so the checkout can't be imported by mistake; each prints one line, and the
last line counts them. Exit status 1 if any check failed.
"""

from __future__ import annotations

import argparse
import email.parser
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / "constraints" / "tests.txt"
#: What the sdist must carry besides the package: what it takes to test,
#: document and benchmark asgigreen from it.
SDIST_MUST_HAVE = (
    "LICENSE",
    "README.rst",
    "CHANGELOG.rst",
    "pyproject.toml",
    "constraints/tests.txt",
    "docs/conf.py",
    "docs/index.rst",
    "tests/conftest.py",
    "examples/",
    "benchmarks/",
    "tools/",
)
#: Seconds: creating the venv and installing, and each check's child process.
INSTALL_LIMIT = 600
CHECK_LIMIT = 120

# Run in the new venv: the bridges both ways, on the hub the process should get.
BRIDGES = textwrap.dedent(
    """
    import asyncio, sys, threading
    import asgigreen
    from asgigreen import hubs
    from asgigreen.sync import async_to_sync, sync_to_async

    expected = sys.argv[1]
    assert hubs.get_hub().name == expected, (hubs.get_hub().name, expected)

    def add(a, b):
        return a + b

    async def outer():
        # async -> sync -> async: a thread-sensitive call that calls back in.
        def inner():
            return async_to_sync(asyncio.sleep)(0, "back") + "!"
        one = await sync_to_async(add)(1, 2)
        two = await sync_to_async(inner)()
        three = await sync_to_async(add, thread_sensitive=False)(3, 4)
        return one, two, three

    assert async_to_sync(outer)() == (3, "back!", 7)

    # Many sync callers in async_to_sync at once: threads, or greenlets once
    # gevent has patched threading (asgiref fails this under gevent).
    results = []
    def caller(i):
        results.append(async_to_sync(asyncio.sleep)(0.01, i))
    workers = [threading.Thread(target=caller, args=(i,)) for i in range(50)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    assert sorted(results) == list(range(50)), results
    print(hubs.get_hub().name, asgigreen.__file__)
    """
)

ALIAS = textwrap.dedent(
    """
    import asgigreen, asgigreen.sync
    asgigreen.install_as_asgiref()
    import asgiref, asgiref.sync
    assert asgiref.sync is asgigreen.sync, asgiref.sync
    assert asgiref.sync.async_to_sync is asgigreen.sync.async_to_sync
    assert getattr(asgiref, "__asgigreen_alias__", False), asgiref
    assert asgiref.__version__ == "3.13.0", asgiref.__version__
    print(asgiref.sync.__name__)
    """
)

LOCATION = textwrap.dedent(
    """
    import importlib.metadata, json, sys, sysconfig
    import asgigreen
    print(json.dumps({
        "file": asgigreen.__file__,
        "purelib": sysconfig.get_paths()["purelib"],
        "version": asgigreen.__version__,
        "metadata_version": importlib.metadata.version("asgigreen"),
        "path": sys.path,
    }))
    """
)


class CheckFailed(Exception):
    pass


@dataclass
class Smoke:
    work: Path
    venv: Path = field(init=False)
    run_dir: Path = field(init=False)
    passed: int = 0
    failed: int = 0
    skipped: int = 0

    def __post_init__(self) -> None:
        self.venv = self.work / "venv"
        self.run_dir = self.work / "run"
        self.run_dir.mkdir()

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    def check(self, name: str, body: Callable[[], str]) -> bool:
        try:
            detail = body()
        except CheckFailed as exc:
            self.failed += 1
            print(f"FAIL  {name}: {exc}", flush=True)
            return False
        if detail.startswith("SKIP"):
            self.skipped += 1
            print(f"skip  {name}: {detail.removeprefix('SKIP').lstrip(': ')}", flush=True)
        else:
            self.passed += 1
            print(f"ok    {name}" + (f": {detail}" if detail else ""), flush=True)
        return True

    def run(
        self, argv: Sequence[str], limit: float = CHECK_LIMIT
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the empty directory, the checkout nowhere on its path."""
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")
            and not key.startswith("ASGIGREEN_")
        }
        env["PYTHONNOUSERSITE"] = "1"
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        try:
            return subprocess.run(
                list(argv),
                cwd=self.run_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=limit,
            )
        except subprocess.TimeoutExpired as exc:
            raise CheckFailed(f"no answer within {limit:.0f} s: {' '.join(argv)}") from exc

    def ok(self, argv: Sequence[str], limit: float = CHECK_LIMIT) -> str:
        done = self.run(argv, limit)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-15:]
            raise CheckFailed(
                f"exit {done.returncode} from {' '.join(argv)}\n      " + "\n      ".join(tail)
            )
        return done.stdout.strip()


# -- the artifacts -------------------------------------------------------------------------------


def wheel_version(wheel: Path) -> str:
    return wheel.name.split("-")[1]


def check_wheel_contents(wheel: Path) -> str:
    version = wheel_version(wheel)
    info = f"asgigreen-{version}.dist-info/"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = email.parser.Parser().parsestr(archive.read(info + "METADATA").decode("utf-8"))
    stray = [n for n in names if not n.startswith(("asgigreen/", info))]
    if stray:
        raise CheckFailed(f"files outside the package: {', '.join(stray[:10])}")
    for needed in ("asgigreen/__init__.py", "asgigreen/py.typed", info + "licenses/LICENSE"):
        if needed not in names:
            raise CheckFailed(f"{needed} is missing")
    if metadata.get("License-Expression") != "BSD-3-Clause":
        raise CheckFailed(f"License-Expression is {metadata.get('License-Expression')!r}")
    requires = metadata.get_all("Requires-Dist") or []
    if not any(r.startswith("gevent") and 'extra == "gevent"' in r for r in requires):
        raise CheckFailed(f"no gevent requirement for the gevent extra in {requires}")
    return f"{len(names)} files, only asgigreen/ and its dist-info"


def check_sdist_contents(sdist: Path) -> str:
    with tarfile.open(sdist) as archive:
        top, *_ = archive.getnames()[0].split("/")
        names = {name.removeprefix(top + "/") for name in archive.getnames()}
    missing = [
        need
        for need in SDIST_MUST_HAVE
        if need not in names and not any(n.startswith(need) for n in names)
    ]
    tracked = _tracked_files()
    untracked_missing = sorted(tracked - names) if tracked else []
    junk = sorted(n for n in names if "__pycache__" in n or n.endswith((".pyc", ".sqlite3")))
    if missing or untracked_missing or junk:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if untracked_missing:
            parts.append(f"tracked files left out: {', '.join(untracked_missing[:10])}")
        if junk:
            parts.append(f"build leftovers: {', '.join(junk[:10])}")
        raise CheckFailed("; ".join(parts))
    return f"{len(names)} entries" + (", every tracked file" if tracked else "")


def _tracked_files() -> set[str]:
    """The checkout's files under git, if this is a git checkout."""
    try:
        out = subprocess.run(
            ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return set()
    # .gitignore is a git matter, not the sdist's.
    return {line for line in out.splitlines() if line and line != ".gitignore"}


def build_wheel(out: Path) -> Path:
    argv = [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(ROOT)]
    print(f"building: {' '.join(argv)}", flush=True)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=INSTALL_LIMIT)
    except subprocess.TimeoutExpired:
        sys.exit(f"wheel_smoke: the build took more than {INSTALL_LIMIT} s")
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
        sys.exit(
            "wheel_smoke: the build failed (is `build` installed? pip install -e '.[release]')"
        )
    return next(out.glob("asgigreen-*.whl"))


def find_artifacts(target: Path) -> tuple[Path, Path | None]:
    if target.is_file():
        sdists = list(target.parent.glob(f"asgigreen-{wheel_version(target)}.tar.gz"))
        return target, (sdists[0] if sdists else None)
    wheels = sorted(target.glob("asgigreen-*.whl"))
    if len(wheels) != 1:
        sys.exit(
            f"wheel_smoke: {target} has {len(wheels)} asgigreen wheels, not one "
            "(make dist empties dist/ first)"
        )
    sdists = list(target.glob(f"asgigreen-{wheel_version(wheels[0])}.tar.gz"))
    return wheels[0], (sdists[0] if sdists else None)


# -- the checks in the venv ----------------------------------------------------------------------


def run_checks(smoke: Smoke, wheel: Path, constraints: Path | None, python: str) -> None:
    version = wheel_version(wheel)

    def install() -> str:
        try:
            subprocess.run(
                [python, "-m", "venv", str(smoke.venv)],
                check=True,
                capture_output=True,
                timeout=INSTALL_LIMIT,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            raise CheckFailed(f"python -m venv failed: {exc}") from exc
        pinned = ["-c", str(constraints)] if constraints else []
        smoke.ok(
            [smoke.python, "-m", "pip", "install", "--quiet", *pinned, f"{wheel}[gevent]"],
            INSTALL_LIMIT,
        )
        got = smoke.ok([smoke.python, "-m", "pip", "list", "--format=freeze"])
        wanted = {"asgigreen", "gevent", "greenlet"}
        have = {line.split("==")[0].lower() for line in got.splitlines()}
        if not wanted <= have:
            raise CheckFailed(f"not installed: {', '.join(sorted(wanted - have))}")
        pins = " within " + _rel(constraints) if constraints else " (no constraints)"
        return f"{wheel.name}[gevent]{pins}"

    if not smoke.check("install into a fresh venv", install):
        return

    def location() -> str:
        info = json.loads(smoke.ok([smoke.python, "-c", LOCATION]))
        where = Path(info["file"]).resolve()
        purelib = Path(info["purelib"]).resolve()
        if purelib not in where.parents:
            raise CheckFailed(f"asgigreen imported from {where}, not from {purelib}")
        if any(entry and Path(entry).resolve() == ROOT for entry in info["path"]):
            raise CheckFailed(f"the checkout {ROOT} is on sys.path")
        if not info["version"] == info["metadata_version"] == version:
            raise CheckFailed(
                f"__version__ {info['version']}, metadata {info['metadata_version']}, "
                f"wheel {version}"
            )
        return f"{where.parent} ({version})"

    smoke.check("import from the venv's site-packages", location)

    script = smoke.run_dir / "smoke_bridges.py"
    script.write_text(BRIDGES, encoding="utf-8")

    def bridges(patched: bool) -> Callable[[], str]:
        def body() -> str:
            runner = ["-m", "gevent.monkey"] if patched else []
            hub = "gevent" if patched else "threads"
            out = smoke.ok([smoke.python, *runner, str(script), hub])
            return f"{hub} hub" if out.startswith(hub) else f"{hub} hub ({out})"

        return body

    smoke.check("sync_to_async / async_to_sync, plain process", bridges(False))
    smoke.check("sync_to_async / async_to_sync, python -m gevent.monkey", bridges(True))

    def serve_help() -> str:
        out = smoke.ok([str(smoke.venv / "bin" / "asgigreen"), "serve", "--help"])
        if "usage:" not in out or "serve" not in out:
            raise CheckFailed(f"unexpected help text: {out[:200]!r}")
        return "the console script prints its usage"

    smoke.check("asgigreen serve --help", serve_help)

    def version_flag() -> str:
        done = smoke.run([str(smoke.venv / "bin" / "asgigreen"), "--version"])
        text = (done.stdout + done.stderr).strip()
        if done.returncode != 0 and "unrecognized arguments" in text:
            return "SKIP: this asgigreen has no --version flag yet"
        if done.returncode != 0 or version not in text.split():
            raise CheckFailed(f"exit {done.returncode}, printed {text!r}, wanted {version}")
        return text

    smoke.check("asgigreen --version", version_flag)

    def alias() -> str:
        out = smoke.ok([smoke.python, "-c", ALIAS])
        return f"asgiref.sync is {out}"

    smoke.check("install_as_asgiref(), then import asgiref.sync", alias)


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", nargs="?", type=Path, help="a wheel, or a folder with one")
    parser.add_argument(
        "--constraints",
        type=Path,
        default=CONSTRAINTS if CONSTRAINTS.is_file() else None,
        help=f"pip constraints for the install (default: {_rel(CONSTRAINTS)})",
    )
    parser.add_argument("--python", default=sys.executable, help="the Python to make the venv with")
    ns = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="asgigreen-wheel-smoke-"))
    try:
        if ns.target is None:
            wheel, sdist = build_wheel(work / "dist"), None
        else:
            wheel, sdist = find_artifacts(ns.target.resolve())
        smoke = Smoke(work)
        smoke.check("wheel contents", lambda: check_wheel_contents(wheel))
        if sdist is not None:
            smoke.check("sdist contents", lambda: check_sdist_contents(sdist))
        constraints = ns.constraints.resolve() if ns.constraints else None
        run_checks(smoke, wheel, constraints, ns.python)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = f"{smoke.passed} passed, {smoke.failed} failed"
    if smoke.skipped:
        summary += f", {smoke.skipped} skipped"
    print(summary, flush=True)
    return 1 if smoke.failed else 0


if __name__ == "__main__":
    sys.exit(main())
