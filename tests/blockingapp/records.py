"""A log handler writing each ``asgigreen`` record as one JSON line.

The file is ``BLOCKING_RECORDS`` from the environment; nothing is set up
without it. The record's ``asgigreen_blocking`` report, if any, goes along.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any


class JsonLines(logging.Handler):
    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def emit(self, record: logging.LogRecord) -> None:
        entry: dict[str, Any] = {
            "level": record.levelname,
            "message": record.getMessage(),
            "pid": os.getpid(),
        }
        report = getattr(record, "asgigreen_blocking", None)
        if report is not None:
            entry["report"] = {
                "site": report.site,
                "started_by": report.started_by,
                "duration_ms": report.duration_ms,
                "threshold_ms": report.threshold_ms,
                "still_blocked": report.still_blocked,
                "fix": report.fix,
                "stack": [f"{f.filename}:{f.lineno}:{f.name}" for f in report.stack],
            }
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(json.dumps(entry) + "\n")


def install() -> None:
    path = os.environ.get("BLOCKING_RECORDS")
    if path:
        logging.getLogger("asgigreen").addHandler(JsonLines(path))
