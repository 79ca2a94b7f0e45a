"""Apps the gevent-worker integration tests run in real servers and workers.

Each entry point calls ``asgigreen.patch_all()`` (or relies on the asgigreen
gunicorn worker) unless ``ASGIGREEN_CONTROL=1``: the control runs the same
code on the real asgiref, to show what asgigreen fixes.
"""

import os


def control() -> bool:
    """True when this process is the plain-asgiref control run."""
    return os.environ.get("ASGIGREEN_CONTROL") == "1"
