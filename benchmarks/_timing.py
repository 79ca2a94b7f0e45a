"""Shared helpers for the benchmarks: paired, interleaved timing and memory figures.

A *batch* is a callable that runs ``n`` units of work and returns the seconds
they took, measured by the batch itself so that set-up outside the loop is not
counted. :func:`measure_pair` times a baseline batch (asgiref) and a candidate
batch (asgigreen) doing the same work, in alternating order round after round,
so that noise from the machine lands on both equally; each side's figure is
the median over rounds.
"""

from __future__ import annotations

import json
import math
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Batch",
    "PairResult",
    "ReportedError",
    "Settings",
    "Side",
    "Table",
    "WorkerProcess",
    "describe_error",
    "gevent_patched",
    "measure_pair",
    "read_status_kb",
    "reset_peak_rss",
    "serve_requests",
]

#: Runs ``n`` units of work and returns the seconds they took.
Batch = Callable[[int], float]


def gevent_patched() -> bool:
    """Whether gevent has monkeypatched threading in this process."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and bool(monkey.is_module_patched("threading"))


@dataclass(frozen=True)
class Settings:
    """How long and how often each side of a pair is timed."""

    #: Timed rounds per side; each round runs one batch of each side.
    rounds: int = 21
    #: Rough wall time of one batch of the slower side, in seconds.
    batch_seconds: float = 0.15
    #: Upper bound on units per batch, whatever the calibration says.
    max_units: int = 1_000_000


@dataclass
class Side:
    """One library's figures for one benchmark."""

    #: Seconds per call, one entry per timed round.
    per_call: list[float] = field(default_factory=list)
    #: Why the side stopped being measured, if it failed.
    error: str | None = None

    @property
    def median_us(self) -> float | None:
        if not self.per_call:
            return None
        return statistics.median(self.per_call) * 1e6


@dataclass
class PairResult:
    """The baseline and candidate figures for one benchmark."""

    name: str
    #: Calls in one unit of work (1, or the width of a gather).
    calls_per_unit: int
    #: Units per timed batch, the same for both sides.
    units: int
    baseline: Side
    candidate: Side
    #: The candidate/baseline ratio to stay at or under, if there is one.
    target: float | None = None

    @property
    def ratio(self) -> float | None:
        """The median of the per-round candidate/baseline ratios.

        Each round times both sides back to back, so a per-round ratio is
        little affected by the machine slowing down or speeding up between
        rounds; its median is steadier than the ratio of the two medians.
        """
        ratios = self.paired_ratios()
        return statistics.median(ratios) if ratios else None

    def paired_ratios(self) -> list[float]:
        """Candidate/baseline per round, for rounds both sides completed."""
        pairs = zip(self.baseline.per_call, self.candidate.per_call, strict=False)
        return [c / b for b, c in pairs if b > 0]

    def ratio_quartiles(self) -> tuple[float, float] | None:
        """The 25th and 75th percentiles of :meth:`paired_ratios`."""
        ratios = self.paired_ratios()
        if len(ratios) < 2:
            return None
        q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
        return q1, q3

    @property
    def verdict(self) -> str:
        if self.target is None:
            return "-"
        if self.candidate.error is not None:
            return "FAIL"
        ratio = self.ratio
        if ratio is None:
            return "n/a"
        return "PASS" if ratio <= self.target else "FAIL"

    @property
    def within_noise(self) -> bool:
        """Whether the target lies inside the p25-p75 spread of per-round ratios.

        The verdict could then go either way on another run.
        """
        quartiles = self.ratio_quartiles()
        if self.target is None or quartiles is None:
            return False
        return quartiles[0] <= self.target < quartiles[1]

    def as_dict(self) -> dict[str, Any]:
        quartiles = self.ratio_quartiles()
        return {
            "name": self.name,
            "calls_per_unit": self.calls_per_unit,
            "units_per_batch": self.units,
            "baseline_us": self.baseline.median_us,
            "candidate_us": self.candidate.median_us,
            "baseline_rounds_us": [s * 1e6 for s in self.baseline.per_call],
            "candidate_rounds_us": [s * 1e6 for s in self.candidate.per_call],
            "baseline_error": self.baseline.error,
            "candidate_error": self.candidate.error,
            "ratio": self.ratio,
            "ratio_p25": quartiles[0] if quartiles else None,
            "ratio_p75": quartiles[1] if quartiles else None,
            "target": self.target,
            "verdict": self.verdict,
            "within_noise": self.within_noise,
        }


class ReportedError(Exception):
    """A failure already described elsewhere (in a worker process)."""


def describe_error(exc: BaseException) -> str:
    """A one-line description of ``exc`` for a table cell or a report."""
    if isinstance(exc, ReportedError):
        return str(exc)
    text = str(exc).strip().splitlines()
    detail = text[0] if text else ""
    line = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return line if len(line) <= 200 else line[:197] + "..."


def _run(batch: Batch, units: int, side: Side) -> float | None:
    """Run one batch; on failure record it on ``side`` and return None."""
    try:
        return batch(units)
    except Exception as exc:
        side.error = describe_error(exc)
        return None


def _calibrate(sides: Sequence[tuple[Batch, Side]], settings: Settings) -> int:
    """Units per batch so that the slower side takes about ``batch_seconds``.

    The calibration batches also serve as warm-up for both sides.
    """
    goal = settings.batch_seconds
    units = 1
    slowest = 0.0
    while True:
        times = [
            elapsed
            for batch, side in sides
            if side.error is None and (elapsed := _run(batch, units, side)) is not None
        ]
        if not times:
            return units
        slowest = max(times)
        if slowest >= goal / 4 or units >= settings.max_units:
            break
        if slowest <= 0:
            units *= 10
        else:
            # Aim a little past goal/4 so the loop usually ends next time.
            units = max(units * 2, math.ceil(units * goal / (3 * slowest)))
        units = min(units, settings.max_units)
    return max(1, min(settings.max_units, round(units * goal / slowest)))


def measure_pair(
    name: str,
    baseline: Batch,
    candidate: Batch,
    settings: Settings,
    *,
    calls_per_unit: int = 1,
    target: float | None = None,
) -> PairResult:
    """Time ``baseline`` and ``candidate`` doing the same work, interleaved.

    Both sides run the same number of units per batch. Rounds alternate which
    side goes first. A side that raises is recorded as failed and left out of
    later rounds; the other side is still measured.
    """
    result = PairResult(
        name=name,
        calls_per_unit=calls_per_unit,
        units=0,
        baseline=Side(),
        candidate=Side(),
        target=target,
    )
    sides = [(baseline, result.baseline), (candidate, result.candidate)]
    result.units = units = _calibrate(sides, settings)
    calls = units * calls_per_unit
    for round_no in range(settings.rounds):
        ordered = sides if round_no % 2 == 0 else sides[::-1]
        for batch, side in ordered:
            if side.error is not None:
                continue
            elapsed = _run(batch, units, side)
            if elapsed is not None:
                side.per_call.append(elapsed / calls)
    # Rounds must pair up: a side that failed part-way keeps its rounds but
    # the median of a failed side is not reported.
    for _, side in sides:
        if side.error is not None:
            side.per_call.clear()
    return result


# -- memory -----------------------------------------------------------------


def read_status_kb(key: str) -> int | None:
    """A ``kB`` figure such as ``VmRSS`` or ``VmHWM`` from /proc/self/status."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak RSS (``VmHWM``) to the current RSS, if allowed."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


# -- worker processes ---------------------------------------------------------


class WorkerProcess:
    """A child process answering one JSON request per line, with timeouts.

    The child reads requests on stdin and writes one JSON reply line per
    request on stdout (see :func:`serve_requests`); its stderr is kept for
    error messages. A request that gets no reply in time kills the child.
    """

    def __init__(self, argv: Sequence[str]) -> None:
        # Lives as long as the worker; closed in close().
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        self._proc = subprocess.Popen(
            list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr
        )
        self._buffer = b""

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None

    def receive(self, timeout: float) -> dict[str, Any]:
        """The next reply line, waiting at most ``timeout`` seconds."""
        stdout = self._proc.stdout
        assert stdout is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise TimeoutError(f"no answer within {timeout:g} s; worker killed")
            readable, _, _ = select.select([stdout.fileno()], [], [], remaining)
            if not readable:
                continue
            chunk = os.read(stdout.fileno(), 65536)
            if not chunk:
                self._proc.wait()
                raise ReportedError(
                    f"worker exited ({self._proc.returncode}): {self.stderr_tail()}"
                )
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        reply: dict[str, Any] = json.loads(line)
        return reply

    def request(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send ``message`` and return the reply; a reply with ``error`` raises."""
        stdin = self._proc.stdin
        assert stdin is not None
        try:
            stdin.write(json.dumps(message).encode() + b"\n")
            stdin.flush()
        except OSError as exc:
            raise ReportedError(
                f"worker gone ({describe_error(exc)}): {self.stderr_tail()}"
            ) from exc
        reply = self.receive(timeout)
        if reply.get("error") is not None:
            raise ReportedError(str(reply["error"]))
        return reply

    def stderr_tail(self, limit: int = 300) -> str:
        self._stderr.seek(0)
        lines = self._stderr.read().decode(errors="replace").strip().splitlines()
        tail = lines[-1] if lines else "no error output"
        return tail[-limit:]

    def kill(self) -> None:
        if self.alive:
            self._proc.kill()
        self._proc.wait()

    def close(self, timeout: float = 10.0) -> None:
        """Ask the child to exit (by closing its stdin); kill it if it lingers."""
        if self._proc.stdin is not None:
            try:
                self._proc.stdin.close()
            except OSError:
                pass
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self._stderr.close()


def serve_requests(handle: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """The child's side of :class:`WorkerProcess`: answer requests until stdin closes.

    Replies go to the original stdout; anything else printed to stdout is sent
    to stderr instead, so stray output cannot corrupt the replies.
    """
    replies = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    sys.stdout.flush()
    os.dup2(2, 1)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            reply = handle(json.loads(line))
        except Exception as exc:
            reply = {"error": describe_error(exc)}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


# -- output -----------------------------------------------------------------


class Table:
    """A plain-text table printed one row at a time, so progress shows."""

    def __init__(self, columns: Sequence[tuple[str, int]], *, first_left: bool = True) -> None:
        #: ``(heading, width)``; the first column is left-aligned.
        self.columns = list(columns)
        self.first_left = first_left

    def _line(self, cells: Sequence[str]) -> str:
        parts = []
        for index, (cell, (_, width)) in enumerate(zip(cells, self.columns, strict=True)):
            if index == 0 and self.first_left:
                parts.append(cell.ljust(width))
            else:
                parts.append(cell.rjust(width))
        return "  ".join(parts).rstrip()

    def header(self) -> str:
        heading = self._line([title for title, _ in self.columns])
        rule = "  ".join("-" * width for _, width in self.columns)
        return f"{heading}\n{rule}"

    def row(self, cells: Sequence[str]) -> str:
        return self._line(cells)
