"""Run Django Channels' own tests with asgigreen's in-memory channel layer in its place.

A compatibility check, not part of the project's tests, and not run by CI:
Channels' tests are only in its source repository (the sdist has none) and
CI cannot fetch from GitHub. Give it a checkout, ideally at the tag of the
installed Channels::

    git clone --branch 4.3.2 https://github.com/django/channels /tmp/channels
    python tools/channels_suite.py /tmp/channels

Without a checkout (no argument, no ``CHANNELS_CHECKOUT`` in the
environment) it says so and exits 0.

A small pytest plugin, written to a temporary directory and loaded with
``-p``, replaces ``channels.layers.InMemoryChannelLayer`` with
``asgigreen.layers.InMemoryChannelLayer`` before any test module is
imported, so both the tests that import the class and those that name
``"channels.layers.InMemoryChannelLayer"`` as a ``BACKEND`` get asgigreen's.
Nothing else of Channels changes. It runs in up to three modes:

* ``plain``: real asgiref, threads hub;
* ``alias``: ``asgigreen.install_as_asgiref()`` first, so Channels and
  Django run on asgigreen's bridges too;
* ``gevent``: as ``alias``, under ``python -m gevent.monkey`` (gevent hub).

Channels' tests need ``pytest-django``, ``async-timeout`` and ``daphne``
besides pytest and pytest-asyncio. Keep pytest-django out of the project's
own venv (it would load into the project's test runs too)::

    pip install --target /tmp/channels-deps --no-deps pytest-django async-timeout
    PYTHONPATH=/tmp/channels-deps python tools/channels_suite.py /tmp/channels

The browser tests in ``tests/sample_project`` (selenium) are left out.

Each mode prints its counts and failures; the exit code is 1 if any test
failed or the substitution did not take, 2 if the run could not start.

Usage: ``python tools/channels_suite.py [CHECKOUT] [--modes plain,alias,gevent]
[--results FILE] [-- extra pytest arguments]``
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import re
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

from _process_group import call

REPO = Path(__file__).resolve().parents[1]
MODES = ("plain", "alias", "gevent")
NEEDED = {"pytest_django": "pytest-django", "async_timeout": "async-timeout", "daphne": "daphne"}
RUN_TIMEOUT_SECONDS = 900
TEST_TIMEOUT_SECONDS = 120

PLUGIN_NAME = "_asgigreen_channels_substitute"
# Loaded with -p: imported before pytest collects (and so imports) any test.
PLUGIN_SOURCE = """\
import json
import os
import sys

if os.environ.get("ASGIGREEN_SUITE_ALIAS") == "1":
    import asgigreen

    asgigreen.install_as_asgiref()

import channels
import channels.layers

import asgigreen.layers

channels.layers.InMemoryChannelLayer = asgigreen.layers.InMemoryChannelLayer


def pytest_sessionfinish(session, exitstatus):
    from channels.layers import InMemoryChannelLayer, channel_layers

    from asgigreen import hubs

    asgiref = sys.modules.get("asgiref")
    facts = {
        "layer": f"{InMemoryChannelLayer.__module__}.{InMemoryChannelLayer.__qualname__}",
        "asgiref": repr(asgiref) if asgiref is not None else None,
        "asgiref_is_asgigreen": bool(getattr(asgiref, "__asgigreen_alias__", False)),
        "hub": hubs.get_hub().name,
        "channels": channels.__file__,
        "channels_version": getattr(channels, "__version__", "?"),
    }
    with open(os.environ["ASGIGREEN_SUITE_FACTS"], "w", encoding="utf-8") as out:
        json.dump(facts, out)
"""


def _outcomes(report: Path) -> dict[str, str]:
    """Each test's outcome, by its node id, from pytest's JUnit XML."""
    results: dict[str, str] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        module = case.get("classname", "").replace(".", "/")
        name = f"{module}.py::{case.get('name')}"
        outcome = "passed"
        for child in case:
            if child.tag == "skipped":
                outcome = "xfailed" if child.get("type") == "pytest.xfail" else "skipped"
            elif child.tag == "failure":
                outcome = "failed"
            elif child.tag == "error":
                outcome = "error"
        results[name] = outcome
    return results


def _run(
    checkout: Path, mode: str, scratch: Path, extra: list[str]
) -> tuple[Counter[str], list[str], list[str]]:
    """One mode: (counts, failing test ids, problems)."""
    report = scratch / f"{mode}.xml"
    facts_file = scratch / f"{mode}.facts.json"
    runner = ["-m", "gevent.monkey", "--module", "pytest"] if mode == "gevent" else ["-m", "pytest"]
    timeout_args = (
        [f"--timeout={TEST_TIMEOUT_SECONDS}"] if importlib.util.find_spec("pytest_timeout") else []
    )
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(scratch), str(REPO), os.environ.get("PYTHONPATH")])
    )
    env["ASGIGREEN_SUITE_ALIAS"] = "0" if mode == "plain" else "1"
    env["ASGIGREEN_SUITE_FACTS"] = str(facts_file)
    env.pop("ASGIGREEN_HUB", None)
    argv = [
        sys.executable,
        *runner,
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        PLUGIN_NAME,
        *timeout_args,
        f"--junitxml={report}",
        "--ignore=tests/sample_project",
        *(extra or ["tests"]),
    ]
    print(f"=== {mode}: {' '.join(argv[1:])}", flush=True)
    code = call(argv, RUN_TIMEOUT_SECONDS, cwd=checkout, env=env)
    problems: list[str] = []
    try:
        outcomes = _outcomes(report)
    except (OSError, ET.ParseError):
        how = f"ran out of {RUN_TIMEOUT_SECONDS} s" if code is None else f"exited {code}"
        return Counter(), [], [f"{mode}: the run {how} without a report"]
    try:
        facts = json.loads(facts_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        problems.append(f"{mode}: the substitution plugin left no record")
    else:
        print(
            f"    layer {facts['layer']}; asgiref {facts['asgiref']}; hub {facts['hub']}; "
            f"Channels {facts['channels_version']} from {facts['channels']}"
        )
        if facts["layer"] != "asgigreen.layers.InMemoryChannelLayer":
            problems.append(f"{mode}: the tests ran with {facts['layer']}")
        if facts["asgiref_is_asgigreen"] != (mode != "plain"):
            problems.append(f"{mode}: asgiref was {facts['asgiref']}")
        if facts["hub"] != ("gevent" if mode == "gevent" else "threads"):
            problems.append(f"{mode}: asgigreen's hub was {facts['hub']}")
    counts = Counter(outcomes.values())
    failing = sorted(name for name, outcome in outcomes.items() if outcome in ("failed", "error"))
    return counts, failing, problems


def _checkout_version(checkout: Path) -> str:
    text = (checkout / "channels" / "__init__.py").read_text(encoding="utf-8")
    found = re.search(r"""__version__\s*=\s*["']([^"']+)["']""", text)
    return found.group(1) if found else "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "checkout",
        nargs="?",
        type=Path,
        default=os.environ.get("CHANNELS_CHECKOUT") or None,
        help="a checkout of https://github.com/django/channels (or $CHANNELS_CHECKOUT)",
    )
    parser.add_argument(
        "--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}"
    )
    parser.add_argument("--results", type=Path, help="write the counts to FILE as JSON")
    parser.add_argument("pytest_args", nargs="*", help="after --: test paths or pytest options")
    args = parser.parse_args()

    if args.checkout is None:
        print(
            "channels_suite: skipped: no Channels checkout given (Channels' tests are not "
            "in its sdist, and this run cannot fetch GitHub). Pass a path to a checkout of "
            "https://github.com/django/channels, or set CHANNELS_CHECKOUT."
        )
        return 0
    checkout = Path(args.checkout).resolve()
    if not (checkout / "tests" / "test_inmemorychannel.py").is_file():
        print(f"channels_suite: {checkout} is not a Channels checkout (no tests/ there)")
        return 2
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        print(f"channels_suite: unknown modes {', '.join(unknown)}; choose from {MODES}")
        return 2
    missing = [dist for module, dist in NEEDED.items() if not importlib.util.find_spec(module)]
    if missing:
        print(
            f"channels_suite: cannot run: Channels' tests need {', '.join(missing)} "
            f"(pip install --target DIR {' '.join(missing)}, then PYTHONPATH=DIR)"
        )
        return 2
    if "gevent" in modes and not importlib.util.find_spec("gevent"):
        print("channels_suite: gevent is not installed: leaving out the gevent mode")
        modes.remove("gevent")

    version = _checkout_version(checkout)
    try:
        installed = importlib.metadata.version("channels")
    except importlib.metadata.PackageNotFoundError:
        installed = "not installed"
    print(f"Channels checkout {checkout} ({version}); installed Channels: {installed}")
    if installed != version:
        print("    note: the tests import the checkout's own channels package")

    started = time.monotonic()
    results: dict[str, tuple[Counter[str], list[str], list[str]]] = {}
    with tempfile.TemporaryDirectory(prefix="channels-suite-") as scratch_name:
        scratch = Path(scratch_name)
        (scratch / f"{PLUGIN_NAME}.py").write_text(PLUGIN_SOURCE, encoding="utf-8")
        for mode in modes:
            results[mode] = _run(checkout, mode, scratch, args.pytest_args)

    print(f"\nChannels {version} tests with asgigreen.layers.InMemoryChannelLayer substituted")
    print(f"{'mode':<10}{'passed':>8}{'failed':>8}{'errors':>8}{'skipped':>9}")
    problems: list[str] = []
    for mode, (counts, failing, mode_problems) in results.items():
        print(
            f"{mode:<10}{counts['passed']:>8}{counts['failed']:>8}{counts['error']:>8}"
            f"{counts['skipped']:>9}"
        )
        problems += mode_problems + [f"{mode}: {name} failed" for name in failing]
    for problem in problems:
        print(f"PROBLEM: {problem}")
    print("channels_suite: " + ("OK" if not problems else "FAILED"))
    if args.results:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        summary = {
            "channels": version,
            "python": f"{sys.version_info.major}.{sys.version_info.minor}",
            "ok": not problems,
            "seconds": round(time.monotonic() - started, 1),
            "modes": {mode: dict(counts) for mode, (counts, _, _) in results.items()},
            "problems": problems,
        }
        args.results.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
