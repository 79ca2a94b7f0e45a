"""The doctor's report as text for people, or as JSON for CI (schema in the package docs)."""

from __future__ import annotations

import json
import textwrap
from typing import Any

from .. import __version__
from . import SCHEMA, Report

__all__ = ["as_json", "as_text"]

_WIDTH = 100
_INDENT = " " * 10


def as_json(report: Report, *, app_dir: str) -> str:
    """The report as the documented JSON object."""
    options = report.options
    document: dict[str, Any] = {
        "schema": SCHEMA,
        "asgigreen": __version__,
        "target": options.target,
        "options": {
            "hub": options.hub,
            "workers": options.workers,
            "factory": options.factory,
            "interface": options.interface,
            "app_dir": app_dir,
        },
        "status": report.status,
        "exit_status": report.exit_status,
        "counts": report.counts(),
        "findings": [finding.as_dict() for finding in report.findings],
    }
    return json.dumps(document, indent=2)


def _wrapped(text: str, first: str) -> list[str]:
    """``text`` wrapped under the finding's title, its own line breaks kept."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        if not paragraph.strip():
            continue  # blank lines in error messages: the layout has its own
        stripped = paragraph.lstrip()
        # Keep an error message's own indentation (its lists, its code lines).
        inner = _INDENT + " " * (len(paragraph) - len(stripped))
        lines += textwrap.wrap(
            stripped,
            _WIDTH,
            initial_indent=first if not lines else inner,
            subsequent_indent=inner + ("  " if stripped.startswith("- ") else ""),
            break_on_hyphens=False,
            break_long_words=False,
        )
    return lines


def as_text(report: Report) -> str:
    """The report for a terminal: one block per finding, worst first, and a summary."""
    options = report.options
    workers = f"{options.workers} worker process{'es' if options.workers > 1 else ''}"
    lines = [
        f"asgigreen doctor: {options.target or '(no application)'}, hub {options.hub}, {workers}",
        "",
    ]
    for finding in report.findings:
        label = finding.severity + (" (ignored)" if finding.ignored else "")
        lines.append(f"{label.upper():<9} {finding.id}: {finding.title}")
        if finding.detail:
            lines += _wrapped(finding.detail, _INDENT)
        if finding.fix:
            lines += _wrapped(finding.fix, _INDENT + "fix: ")
    counts = report.counts()
    lines += [
        "",
        f"{counts['error']} error{'s' * (counts['error'] != 1)}, "
        f"{counts['warning']} warning{'s' * (counts['warning'] != 1)}"
        + (
            f", {sum(f.ignored for f in report.findings)} ignored"
            if any(f.ignored for f in report.findings)
            else ""
        )
        + f": {report.status}",
    ]
    return "\n".join(lines)
