"""Child processes in process groups of their own, for the tools' time limits.

A run that outlives its limit, or is interrupted by Ctrl-C, is stopped with
everything it started (TERM, then KILL), so no server or worker it spawned
is left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

#: Seconds a group gets to end after TERM before it is sent KILL.
GRACE_SECONDS = 10.0


def stop_group(proc: subprocess.Popen[Any], grace: float = GRACE_SECONDS) -> None:
    """End ``proc``'s whole process group: TERM, then KILL if it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue


def start(
    argv: list[str],
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    log: IO[bytes] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new process group, no stdin; output to ``log`` if given."""
    return subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT if log is not None else None,
        start_new_session=True,
    )


def wait(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    """``proc``'s exit code, or None if it ran out of time; its group is stopped either way."""
    try:
        return int(proc.wait(timeout))
    except subprocess.TimeoutExpired:
        return None
    finally:
        if proc.poll() is None:
            stop_group(proc)


def call(
    argv: list[str],
    timeout: float,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    log: IO[bytes] | None = None,
) -> int | None:
    """Run ``argv`` in its own process group; its exit code, or None if it ran out of time."""
    return wait(start(argv, cwd, env, log), timeout)


def pip_download_sdist(requirement: str, dest: Path, timeout: float) -> int | None:
    """``pip download`` the sdist of ``requirement`` (``name==version``) into ``dest``.

    The interpreter running the tool downloads it, so the index and
    certificates it is set up with apply. Its exit code, or None on time out.
    """
    argv = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
    argv += ["--no-binary", ":all:", requirement, "-d", str(dest)]
    return call(argv, timeout)
