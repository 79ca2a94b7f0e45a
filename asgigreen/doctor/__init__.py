"""``asgigreen doctor [MODULE:APP]``: what would go wrong serving this application.

The doctor loads the application exactly as ``asgigreen serve`` would, with
the same ``--hub``, ``--workers``, ``--factory``, ``--interface`` and
``--app-dir`` (:func:`asgigreen.serve.prepare_process`, then
:func:`asgigreen.serve.load_application`; nothing is served), and then
looks at the process it got:

* whether gevent patched it, and when: before the application was imported,
  or late, after modules that matter (``patch.*``, ``early.*``);
* the hub chosen, and why (``hub.*``);
* the real asgiref loaded beside asgigreen's alias (``asgiref.*``);
* drivers that block every greenlet, found in :data:`sys.modules` or in
  Django's ``DATABASES`` and ``CACHES`` (``driver.*``);
* an in-memory channel layer while several worker processes would run
  (``layers.*``);
* known traps of the running Python, gevent, Django and uvicorn
  (``python.*``, ``gevent.*``, ``django.*``, ``serve.uvicorn``).

Each :class:`~asgigreen.doctor.Finding` has a severity (``error``,
``warning``, ``info``, ``ok``) and, where something is to be done, its fix.
The exit status is 1 if any error was found (also any warning with
``--strict``), else 0; ``--ignore ID`` (a glob, repeatable) keeps a finding
in the report but out of the exit status.

Run it in a fresh process (the command does): the application stays
imported, and whatever ran before the doctor counts as having run before
the patching.

The ``--json`` output is one JSON object on stdout (whatever the
application prints while it is imported goes to stderr)::

    {
      "schema": 1,
      "asgigreen": "0.1.0",
      "target": "mysite.asgi:application",   # null without MODULE:APP
      "options": {"hub": "gevent", "workers": 1, "factory": false,
                  "interface": "auto", "app_dir": "/srv/mysite"},
      "status": "error",                     # worst counted severity: error, warning or ok
      "exit_status": 1,
      "counts": {"error": 1, "warning": 0, "info": 2, "ok": 3},
      "findings": [
        {"id": "driver.psycopg2", "severity": "error", "title": "...",
         "detail": "...", "fix": "...", "ignored": false}
      ]
    }

``schema`` changes only when a key is removed or its meaning changes; keys
may be added. Finding ids are stable; titles, details and fixes are prose
and may be reworded. ``counts`` leaves out ignored findings.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass

from ._finding import SEVERITIES, Finding, Severity
from ._load import LoadOptions, Observation, load

__all__ = ["SCHEMA", "Finding", "LoadOptions", "Report", "Severity", "diagnose"]

#: The version of the ``--json`` layout (see the module documentation).
SCHEMA = 1


@dataclass(frozen=True)
class Report:
    """The doctor's findings about one way of serving one application."""

    options: LoadOptions
    findings: tuple[Finding, ...]
    #: With ``strict``, warnings count towards the exit status too.
    strict: bool = False

    def counts(self) -> dict[str, int]:
        """How many findings of each severity, leaving out ignored ones."""
        counts: dict[str, int] = dict.fromkeys(SEVERITIES, 0)
        for finding in self.findings:
            if not finding.ignored:
                counts[finding.severity] += 1
        return counts

    @property
    def status(self) -> str:
        """``"error"``, ``"warning"`` or ``"ok"``: the worst severity counted."""
        counts = self.counts()
        return "error" if counts["error"] else "warning" if counts["warning"] else "ok"

    @property
    def exit_status(self) -> int:
        """1 on an error (or a warning, when strict), else 0."""
        status = self.status
        return 1 if status == "error" or (self.strict and status == "warning") else 0


def _ignoring(findings: Iterable[Finding], patterns: Iterable[str]) -> list[Finding]:
    patterns = tuple(patterns)
    return [
        finding.ignore()
        if any(fnmatch.fnmatchcase(finding.id, pattern) for pattern in patterns)
        else finding
        for finding in findings
    ]


def _findings(observation: Observation) -> list[Finding]:
    # Imported only now: the checks import nothing heavy, but the doctor
    # should import as little as possible before the process is prepared.
    from . import _checks, _drivers, _versions
    from ._load import gevent_patched

    findings: list[Finding] = []
    for check in _checks.CHECKS:
        findings += check(observation)
    if gevent_patched():
        for driver_check in _drivers.CHECKS:
            findings += driver_check()
    for version_check in _versions.CHECKS:
        findings += version_check(observation)
    # Errors, then warnings, then the rest in the order the checks ran.
    order = {"error": 0, "warning": 1}
    return sorted(findings, key=lambda finding: order.get(finding.severity, 2))


def diagnose(
    target: str | None = None,
    *,
    hub: str = "gevent",
    workers: int = 1,
    factory: bool = False,
    interface: str = "auto",
    ignore: Iterable[str] = (),
    strict: bool = False,
) -> Report:
    """Load ``target`` as ``asgigreen serve`` would, in this process, and report.

    The arguments are serve's (``target`` may be None: only the process is
    prepared); ``ignore`` holds globs of finding ids to report but not count.
    Call it first thing in a fresh process, as the command does.
    """
    if workers < 1:
        raise ValueError("workers must be at least 1")
    options = LoadOptions(target, hub=hub, workers=workers, factory=factory, interface=interface)
    observation = load(options)
    return Report(options, tuple(_ignoring(_findings(observation), ignore)), strict=strict)
