"""What the doctor reports: :class:`Finding`, one fact about the process, with its fix."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

__all__ = ["SEVERITIES", "Finding", "Severity"]

Severity = Literal["error", "warning", "info", "ok"]

#: Most severe first; the order findings are reported in.
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info", "ok")


@dataclass(frozen=True)
class Finding:
    """One thing the doctor found.

    ``id`` is stable (``"driver.psycopg2"``): CI can match it and
    ``--ignore`` takes it. ``severity`` is ``"error"`` (serving this way
    fails or stalls under load), ``"warning"`` (it may), ``"info"`` or
    ``"ok"``. ``detail`` says what was seen, ``fix`` what to do about it
    (empty when there is nothing to do). ``ignored`` is true when
    ``--ignore`` matched the id: the finding is still reported, but does not
    count towards the exit status.
    """

    id: str
    severity: Severity
    title: str
    detail: str = ""
    fix: str = ""
    ignored: bool = False

    def ignore(self) -> Finding:
        """This finding, marked as ignored."""
        return replace(self, ignored=True)

    def as_dict(self) -> dict[str, object]:
        """The finding as the ``--json`` output has it."""
        return {
            "id": self.id,
            "severity": self.severity,
            "title": self.title,
            "detail": self.detail,
            "fix": self.fix,
            "ignored": self.ignored,
        }
