"""Bridge overheads, asgigreen against asgiref, measured side by side.

Plain process (threads hub)::

    python benchmarks/bridges.py

gevent-monkeypatched process (gevent hub, chosen automatically)::

    python -m gevent.monkey benchmarks/bridges.py

Each library runs in a worker process of its own, started the same way as
this script (patched or not), so that neither library's process-wide set-up
(the gevent hub's greenlet tracer, thread pools) weighs on the other. This
script drives both workers in turn, one batch at a time, alternating which
goes first, and never lets them run at the same time. Every figure is the
median over rounds of the time per call, measured inside the worker.

The patched mode also starts, per library, a fresh process that keeps 10,000
``sync_to_async`` calls in flight at once and reports its peak memory growth.

See README.rst in this directory for what each row means.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

# The helpers live next to this file; ``python -m gevent.monkey <script>``
# does not put the script's directory on sys.path as ``python <script>`` does.
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from _chart import COLOURS, Bar, BarChart, Group, Series, command_line  # noqa: E402
from _timing import (  # noqa: E402
    Batch,
    PairResult,
    ReportedError,
    Settings,
    Table,
    WorkerProcess,
    describe_error,
    gevent_patched,
    measure_pair,
    read_status_kb,
    reset_peak_rss,
    serve_requests,
)

LIBRARIES = ("asgiref", "asgigreen")
GATHER_WIDTH = 1000

# Targets, as candidate/baseline time ratios (<= 1.0: asgigreen no slower).
THREADS_TARGET = 1.0
GEVENT_SPEEDUP_TARGET = 0.2
INFLIGHT_RSS_TARGET_MB = 100.0


@dataclass(frozen=True)
class Row:
    key: str
    title: str
    calls_per_unit: int = 1
    #: Ratio target in a plain process and in a patched one (None: no target).
    threads_target: float | None = THREADS_TARGET
    gevent_target: float | None = None
    patched_only: bool = False


ROWS = (
    Row(
        "s2a_sensitive",
        "sync_to_async, thread_sensitive=True",
        gevent_target=GEVENT_SPEEDUP_TARGET,
    ),
    Row(
        "s2a_insensitive",
        "sync_to_async, thread_sensitive=False",
        gevent_target=GEVENT_SPEEDUP_TARGET,
    ),
    Row("a2s_sync", "async_to_sync from sync code"),
    Row(
        "gather_insensitive",
        f"gather {GATHER_WIDTH} x sync_to_async, t_s=False",
        calls_per_unit=GATHER_WIDTH,
    ),
    Row(
        "gather_sensitive",
        f"gather {GATHER_WIDTH} x sync_to_async, t_s=True",
        calls_per_unit=GATHER_WIDTH,
    ),
    Row(
        "a2s_greenlet",
        "async_to_sync from a greenlet",
        threads_target=None,
        gevent_target=GEVENT_SPEEDUP_TARGET,
        patched_only=True,
    ),
)


# -- the work both libraries are timed on -----------------------------------


def work() -> int:
    """The sync function behind every ``sync_to_async`` row."""
    return 1


async def awork() -> int:
    """The async function behind every ``async_to_sync`` row."""
    return 1


# -- worker side ---------------------------------------------------------------


def load_library(name: str) -> tuple[ModuleType, dict[str, Any]]:
    """Import ``name``'s ``sync`` module; describe the library and its hub."""
    if name == "asgiref":
        import asgiref
        import asgiref.sync

        return asgiref.sync, {"version": asgiref.__version__, "hub": None, "hub_note": None}
    if name == "asgigreen":
        import asgigreen
        import asgigreen.hubs
        import asgigreen.sync

        note = None
        try:
            hub = asgigreen.hubs.get_hub()
        except Exception as exc:
            # The hub asgigreen auto-selects is not usable (yet): say so, and
            # measure the threads hub rather than nothing.
            note = f"auto-selected hub failed ({describe_error(exc)}); fell back to threads"
            hub = asgigreen.hubs.use("threads")
        return asgigreen.sync, {"version": asgigreen.__version__, "hub": hub.name, "hub_note": note}
    raise ValueError(f"unknown library {name!r}")


AsyncBatch = Callable[[int], Coroutine[Any, Any, float]]


def _s2a_sequential(sync: ModuleType, thread_sensitive: bool) -> AsyncBatch:
    call = sync.sync_to_async(work, thread_sensitive=thread_sensitive)

    async def batch(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            await call()
        return time.perf_counter() - start

    return batch


def _s2a_gathered(sync: ModuleType, thread_sensitive: bool) -> AsyncBatch:
    call = sync.sync_to_async(work, thread_sensitive=thread_sensitive)

    async def batch(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            await asyncio.gather(*[call() for _ in range(GATHER_WIDTH)])
        return time.perf_counter() - start

    return batch


def _a2s_sequential(sync: ModuleType) -> Batch:
    call = sync.async_to_sync(awork)

    def batch(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            call()
        return time.perf_counter() - start

    return batch


def _in_greenlet(batch: Batch) -> Batch:
    import gevent

    def run(n: int) -> float:
        elapsed: float = gevent.spawn(batch, n).get()
        return elapsed

    return run


def _on_loop(factory: AsyncBatch) -> tuple[Batch, Callable[[], None]]:
    """Run an async batch on one event loop kept for the whole benchmark row."""
    loop = asyncio.new_event_loop()

    def run(n: int) -> float:
        return loop.run_until_complete(factory(n))

    def close() -> None:
        try:
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()

    return run, close


def _nothing() -> None:
    pass


def build_batch(sync: ModuleType, key: str) -> tuple[Batch, Callable[[], None]]:
    """The batch for benchmark row ``key`` and the clean-up to run after it."""
    if key == "s2a_sensitive":
        return _on_loop(_s2a_sequential(sync, thread_sensitive=True))
    if key == "s2a_insensitive":
        return _on_loop(_s2a_sequential(sync, thread_sensitive=False))
    if key == "gather_insensitive":
        return _on_loop(_s2a_gathered(sync, thread_sensitive=False))
    if key == "gather_sensitive":
        return _on_loop(_s2a_gathered(sync, thread_sensitive=True))
    if key == "a2s_sync":
        return _a2s_sequential(sync), _nothing
    if key == "a2s_greenlet":
        return _in_greenlet(_a2s_sequential(sync)), _nothing
    raise ValueError(f"unknown benchmark {key!r}")


def worker_main(library: str, pin_cpu: int | None) -> None:
    """Serve ``setup``/``run``/``teardown`` requests for one library."""
    if pin_cpu is not None:
        # Before any thread starts, so that every thread inherits it.
        os.sched_setaffinity(0, {pin_cpu})
    sync, meta = load_library(library)
    current: tuple[Batch, Callable[[], None]] | None = None

    def teardown() -> None:
        nonlocal current
        if current is not None:
            cleanup, current = current[1], None
            cleanup()

    def handle(request: dict[str, Any]) -> dict[str, Any]:
        nonlocal current
        op = request["op"]
        if op == "hello":
            return {"meta": {**meta, "cpus": sorted(os.sched_getaffinity(0))}}
        if op == "setup":
            teardown()
            current = build_batch(sync, request["row"])
            return {}
        if op == "run":
            if current is None:
                raise RuntimeError("run before setup")
            gc.collect()
            return {"elapsed": current[0](int(request["units"]))}
        if op == "teardown":
            teardown()
            return {}
        raise ValueError(f"unknown request {op!r}")

    serve_requests(handle)
    sys.stdout.flush()
    sys.stderr.flush()
    # Leftover executor threads (or greenlets) must not hold the exit up.
    os._exit(0)


# -- in-flight memory (one fresh process per library) ------------------------


def inflight_main(library: str, calls: int, sleep: float, hold: float, timeout: float) -> None:
    """Keep ``calls`` sleeping ``sync_to_async`` calls in flight at once; print one JSON line.

    Each call sleeps until ``hold`` seconds after the first one started, and
    at least ``sleep`` seconds: with only the short sleep, the first calls
    would end before the last ones start, and far fewer than ``calls`` would
    ever be in flight together. Waiting in ``time.sleep`` (rather than on an
    event, whose wait parks deeper) keeps every call parked exactly where a
    sleeping call parks.
    """
    sync, meta = load_library(library)
    lock = threading.Lock()
    active = peak = 0
    release_at = 0.0  # time.monotonic() until which the calls sleep
    start = 0.0  # time.perf_counter() when the measured calls begin
    all_in_after: float | None = None

    def nap(seconds: float) -> None:
        nonlocal active, peak, all_in_after
        with lock:
            active += 1
            peak = max(peak, active)
            if active == calls and all_in_after is None:
                all_in_after = time.perf_counter() - start
        try:
            time.sleep(max(seconds, release_at - time.monotonic()))
        finally:
            with lock:
                active -= 1

    call = sync.sync_to_async(nap, thread_sensitive=False)

    async def main() -> dict[str, Any]:
        nonlocal peak, release_at, start
        # Warm up: start the library's workers before the baseline is taken.
        await asyncio.gather(*[call(0.001) for _ in range(16)])
        gc.collect()
        peak_was_reset = reset_peak_rss()
        rss_before = read_status_kb("VmRSS")
        hwm_before = read_status_kb("VmHWM")
        baseline = rss_before if peak_was_reset else hwm_before
        peak = 0
        start = time.perf_counter()
        release_at = time.monotonic() + hold
        tasks = [asyncio.ensure_future(call(sleep)) for _ in range(calls)]
        done, pending = await asyncio.wait(tasks, timeout=timeout)
        elapsed = time.perf_counter() - start
        hwm_after = read_status_kb("VmHWM")
        errors = [task.exception() for task in done if task.exception() is not None]
        growth = None
        if baseline is not None and hwm_after is not None:
            growth = (hwm_after - baseline) / 1024
        return {
            "library": library,
            "meta": meta,
            "calls": calls,
            "sleep": sleep,
            "hold": hold,
            "all_in_flight_after": all_in_after,
            "timeout": timeout,
            "ok": len(done) - len(errors),
            "failed": len(errors),
            "first_error": describe_error(errors[0]) if errors else None,
            "pending": len(pending),
            "timed_out": bool(pending),
            "seconds": elapsed,
            "max_concurrent": peak,
            "rss_before_mb": rss_before / 1024 if rss_before is not None else None,
            "peak_rss_mb": hwm_after / 1024 if hwm_after is not None else None,
            "peak_growth_mb": growth,
            "peak_reset": peak_was_reset,
        }

    loop = asyncio.new_event_loop()
    result = loop.run_until_complete(main())
    print(json.dumps(result), flush=True)
    sys.stderr.flush()
    # Pending calls (after a timeout) must not hold the exit up.
    os._exit(0)


# -- driver ------------------------------------------------------------------


# -- the switch tracer's cost (asgigreen only: asgiref has no tracer) ----------

SWITCH_PAIRS = 200_000
SWITCH_ROUNDS = 9


def _switch_ns(pairs: int) -> float:
    """Nanoseconds per greenlet switch: ``pairs`` round trips to a partner greenlet."""
    from greenlet import getcurrent, greenlet

    here = getcurrent()
    running = True

    def partner() -> None:
        while running:
            here.switch()

    other = greenlet(partner)
    other.switch()  # started, parked in its loop
    start = time.perf_counter()
    for _ in range(pairs):
        other.switch()
    elapsed = time.perf_counter() - start
    running = False
    other.switch()  # let it end
    return elapsed / (2 * pairs) * 1e9


def _switch_ns_with_loop(pairs: int) -> float:
    """As :func:`_switch_ns`, from inside a task step of a running event loop."""

    async def main() -> float:
        return _switch_ns(pairs)

    return asyncio.run(main())


def switch_main(pairs: int, rounds: int) -> None:
    """Time a greenlet switch without and with the tracer; print one JSON line."""
    from greenlet import settrace

    from asgigreen.hubs import _asyncio_state

    def median(measure: Callable[[int], float]) -> float:
        samples = sorted(measure(pairs) for _ in range(rounds))
        return samples[len(samples) // 2]

    previous = settrace(None)
    bare = median(_switch_ns)
    bare_loop = median(_switch_ns_with_loop)
    _asyncio_state.install()
    traced = median(_switch_ns)
    traced_loop = median(_switch_ns_with_loop)
    settrace(previous)
    print(
        json.dumps(
            {"bare": bare, "bare_loop": bare_loop, "traced": traced, "traced_loop": traced_loop}
        )
    )


def run_switch_cost(report: Report, out: Callable[[str], None]) -> None:
    argv = _script_argv(True, "--switch-cost")
    out("")
    out(
        f"greenlet switch tracer (asgigreen.hubs._asyncio_state), {SWITCH_PAIRS:,} round "
        f"trips between two greenlets, median of {SWITCH_ROUNDS}; ns per switch"
    )
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, IndexError, ValueError) as exc:
        note = f"switch cost: no result ({describe_error(exc)})"
        out(f"  ! {note}")
        report.notes.append(note)
        return
    report.switch_cost = figures
    out(SWITCH_TABLE.header())
    for title, bare, traced in (
        ("no loop running", figures["bare"], figures["traced"]),
        ("a loop running (state swapped)", figures["bare_loop"], figures["traced_loop"]),
    ):
        out(SWITCH_TABLE.row([title, f"{bare:.0f}", f"{traced:.0f}", f"{traced - bare:+.0f}"]))


def _script_argv(patched: bool, *args: str) -> list[str]:
    """How to start this script again, patched the same way as this process."""
    prefix = [sys.executable, "-m", "gevent.monkey"] if patched else [sys.executable]
    return [*prefix, os.path.abspath(__file__), *args]


class LibraryWorker:
    """The driver's handle on one library's worker process, restarted if killed."""

    def __init__(
        self, library: str, patched: bool, timeout: float, pin_cpu: int | None = None
    ) -> None:
        self.library = library
        self.patched = patched
        self.timeout = timeout
        self.pin_cpu = pin_cpu
        self.meta: dict[str, Any] = {}
        self._process: WorkerProcess | None = None

    def _ensure(self) -> WorkerProcess:
        if self._process is None or not self._process.alive:
            args = ["--worker", self.library]
            if self.pin_cpu is not None:
                args += ["--pin-cpu", str(self.pin_cpu)]
            self._process = WorkerProcess(_script_argv(self.patched, *args))
            self.meta = self._process.request({"op": "hello"}, timeout=60)["meta"]
        return self._process

    def start(self) -> dict[str, Any]:
        self._ensure()
        return self.meta

    def setup(self, row: str) -> Batch:
        """The batch for ``row``; a failed set-up gives a batch that fails."""
        try:
            self._ensure().request({"op": "setup", "row": row}, timeout=self.timeout)
        except Exception as exc:
            message = f"set-up failed: {describe_error(exc)}"

            def failed(n: int) -> float:
                raise ReportedError(message)

            return failed

        def run(n: int) -> float:
            process = self._process
            if process is None or not process.alive:
                raise ReportedError("worker died earlier in this row")
            reply = process.request({"op": "run", "units": n}, timeout=self.timeout)
            elapsed: float = reply["elapsed"]
            return elapsed

        return run

    def teardown(self) -> None:
        process = self._process
        if process is not None and process.alive:
            try:
                process.request({"op": "teardown"}, timeout=self.timeout)
            except Exception:
                process.kill()

    def close(self) -> None:
        if self._process is not None:
            self._process.close()
            self._process = None


@dataclass
class Report:
    mode: str
    patched: bool
    settings: Settings
    pin_cpu: int | None = None
    meta: dict[str, dict[str, Any]] = field(default_factory=dict)
    rows: list[PairResult] = field(default_factory=list)
    inflight: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    verdicts: list[str] = field(default_factory=list)
    #: Verdicts whose target lies inside the spread of per-round ratios.
    within_noise: int = 0
    #: ns per greenlet switch without and with the tracer (patched mode).
    switch_cost: dict[str, float] = field(default_factory=dict)


def _fmt_us(value: float | None) -> str:
    if value is None:
        return "failed"
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


BRIDGE_TABLE = Table(
    [
        ("benchmark (per call)", 46),
        ("asgiref us", 10),
        ("asgigreen us", 12),
        ("ratio", 6),
        ("p25-p75", 11),
        ("target", 7),
        ("result", 6),
    ]
)


def run_bridges(report: Report, batch_timeout: float, out: Callable[[str], None]) -> None:
    workers = {
        lib: LibraryWorker(lib, report.patched, batch_timeout, report.pin_cpu) for lib in LIBRARIES
    }
    try:
        for lib, worker in workers.items():
            try:
                report.meta[lib] = worker.start()
            except Exception as exc:
                report.meta[lib] = {"version": "?", "hub": None, "start_error": str(exc)}
        green = report.meta["asgigreen"]
        hub = green.get("hub") or "?"
        out(
            f"asgigreen bridges benchmark: {report.mode}, asgigreen hub: {hub}\n"
            f"  asgiref {report.meta['asgiref'].get('version')}, "
            f"asgigreen {green.get('version')}, Python {platform.python_version()}"
            + (f", gevent {_gevent_version()}" if report.patched else "")
            + f", {os.cpu_count()} CPUs\n"
            f"  each library in its own worker process"
            + (
                ""
                if report.pin_cpu is None
                else " pinned to CPUs "
                + " and ".join(str(report.meta[lib].get("cpus")) for lib in LIBRARIES)
            )
            + f"; {report.settings.rounds} interleaved rounds of "
            f"~{report.settings.batch_seconds:g} s batches; median us per call\n"
            "  ratio: median over rounds of asgigreen time / asgiref time "
            "(<= 1.0: asgigreen no slower); p25-p75: spread of those per-round ratios"
        )
        if green.get("hub_note"):
            out(f"  NOTE: {green['hub_note']}")
            report.notes.append(str(green["hub_note"]))
        for lib in LIBRARIES:
            if report.meta[lib].get("start_error"):
                note = f"{lib} worker failed to start: {report.meta[lib]['start_error']}"
                out(f"  NOTE: {note}")
                report.notes.append(note)
        out("")
        out(BRIDGE_TABLE.header())
        for row in ROWS:
            if row.patched_only and not report.patched:
                continue
            target = row.gevent_target if report.patched else row.threads_target
            title = row.title
            if row.key == "a2s_sync" and report.patched:
                title = "async_to_sync from sync code (main greenlet)"
            baseline = workers["asgiref"].setup(row.key)
            candidate = workers["asgigreen"].setup(row.key)
            result = measure_pair(
                title,
                baseline,
                candidate,
                report.settings,
                calls_per_unit=row.calls_per_unit,
                target=target,
            )
            for worker in workers.values():
                worker.teardown()
            report.rows.append(result)
            quartiles = result.ratio_quartiles()
            spread = f"{quartiles[0]:.2f}-{quartiles[1]:.2f}" if quartiles else "-"
            out(
                BRIDGE_TABLE.row(
                    [
                        title,
                        _fmt_us(result.baseline.median_us),
                        _fmt_us(result.candidate.median_us),
                        _fmt_ratio(result.ratio),
                        spread,
                        "-" if target is None else f"<= {target:.2f}",
                        result.verdict + ("?" if result.within_noise else ""),
                    ]
                )
            )
            if target is not None:
                report.verdicts.append(result.verdict)
                if result.within_noise:
                    report.within_noise += 1
        if report.within_noise:
            out(
                "  ?: the target lies inside the p25-p75 spread: the verdict is within noise "
                "(more --rounds or --pin-cpu 0 narrow it)"
            )
        for result in report.rows:
            for lib, side in (("asgiref", result.baseline), ("asgigreen", result.candidate)):
                if side.error:
                    note = f"{result.name}: {lib} failed: {side.error}"
                    out(f"  ! {note}")
                    report.notes.append(note)
    finally:
        for worker in workers.values():
            worker.close()


def _gevent_version() -> str:
    try:
        import gevent

        return str(gevent.__version__)
    except ImportError:
        return "?"


SWITCH_TABLE = Table(
    [
        ("greenlet switch", 46),
        ("no tracer ns", 12),
        ("traced ns", 10),
        ("tracer cost ns", 14),
    ]
)

INFLIGHT_TABLE = Table(
    [
        ("library", 9),
        ("ok", 6),
        ("failed", 6),
        ("pending", 7),
        ("max concurrent", 14),
        ("all in after s", 14),
        ("wall s", 14),
        ("peak RSS growth MB", 18),
        ("target", 9),
        ("result", 6),
    ]
)


def run_inflight_child(
    library: str, patched: bool, calls: int, sleep: float, hold: float, timeout: float
) -> dict[str, Any]:
    argv = _script_argv(
        patched,
        "--inflight",
        library,
        "--inflight-calls",
        str(calls),
        "--inflight-sleep",
        str(sleep),
        "--inflight-hold",
        str(hold),
        "--inflight-timeout",
        str(timeout),
    )
    hard_limit = timeout + 60
    started = time.perf_counter()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=hard_limit)
    except subprocess.TimeoutExpired:
        return {
            "library": library,
            "error": f"process killed after {hard_limit:g} s without a result",
            "seconds": time.perf_counter() - started,
        }
    lines = done.stdout.strip().splitlines()
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, ValueError):
        tail = (done.stderr.strip().splitlines() or ["no error output"])[-1]
        return {
            "library": library,
            "error": f"process exited ({done.returncode}) without a result: {tail}",
            "seconds": time.perf_counter() - started,
        }
    return result


def run_inflight(
    report: Report,
    calls: int,
    sleep: float,
    hold: float,
    timeout: float,
    out: Callable[[str], None],
) -> None:
    out("")
    out(
        f"{calls:,} in-flight sync_to_async calls, thread_sensitive=False, each library "
        "in a fresh process"
    )
    out(
        f"  each call: time.sleep({sleep:g})"
        + (f", or until {hold:g} s after the first call started if that is later" if hold else "")
        + f"; timeout {timeout:g} s"
    )
    out("  peak RSS growth: VmHWM at the end minus VmRSS before the calls (VmHWM reset)")
    out(INFLIGHT_TABLE.header())
    for library in LIBRARIES:
        result = run_inflight_child(library, report.patched, calls, sleep, hold, timeout)
        report.inflight.append(result)
        is_target = library == "asgigreen"
        target = f"<= {INFLIGHT_RSS_TARGET_MB:g} MB" if is_target else "-"
        if "error" in result:
            verdict = "FAIL" if is_target else "-"
            out(INFLIGHT_TABLE.row([library, *["-"] * 7, target, verdict]))
            note = f"in-flight, {library}: {result['error']}"
            out(f"  ! {note}")
            report.notes.append(note)
        else:
            growth = result.get("peak_growth_mb")
            complete = result["ok"] == calls
            verdict = "-"
            if is_target:
                fits = growth is not None and growth <= INFLIGHT_RSS_TARGET_MB
                verdict = "PASS" if complete and fits else "FAIL"
            all_in = result.get("all_in_flight_after")
            wall = f"{result['seconds']:.2f}"
            if result["timed_out"]:
                wall += " (timeout)"
            out(
                INFLIGHT_TABLE.row(
                    [
                        library,
                        str(result["ok"]),
                        str(result["failed"]),
                        str(result["pending"]),
                        str(result["max_concurrent"]),
                        "never" if all_in is None else f"{all_in:.2f}",
                        wall,
                        "?" if growth is None else f"{growth:.1f}",
                        target,
                        verdict,
                    ]
                )
            )
            if result.get("first_error"):
                note = f"in-flight, {library}: first failure: {result['first_error']}"
                out(f"  ! {note}")
                report.notes.append(note)
            if not result.get("peak_reset"):
                note = (
                    f"in-flight, {library}: could not reset VmHWM; growth is measured "
                    "from the earlier peak and may be understated"
                )
                out(f"  ! {note}")
                report.notes.append(note)
            hub = (result.get("meta") or {}).get("hub")
            if hub is not None and library == "asgigreen":
                out(f"  (asgigreen hub in that process: {hub})")
        if is_target:
            report.verdicts.append(verdict)


def _report_json(report: Report) -> dict[str, Any]:
    return {
        "mode": report.mode,
        "patched": report.patched,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "rounds": report.settings.rounds,
        "batch_seconds": report.settings.batch_seconds,
        "libraries": report.meta,
        "rows": [row.as_dict() for row in report.rows],
        "inflight": report.inflight,
        "switch_cost_ns": report.switch_cost,
        "notes": report.notes,
        "targets_passed": report.verdicts.count("PASS"),
        "targets_total": len(report.verdicts),
        "targets_within_noise": report.within_noise,
        "pin_cpu": report.pin_cpu,
    }


def _chart(report: Report, command: str) -> BarChart:
    """The run's headline figures as a chart: one group of bars per table row."""
    groups = []
    for row in report.rows:
        quartiles = row.ratio_quartiles()
        note = "" if row.ratio is None else f"ratio {row.ratio:.2f}"
        if quartiles:
            note += f" (p25-p75 {quartiles[0]:.2f}-{quartiles[1]:.2f})"
        if row.target is not None:
            note += f"; target ≤ {row.target:.2f}: {row.verdict}"
            if row.within_noise:
                note += " (within noise)"
        bars = [
            Bar(
                lib,
                lib,
                side.median_us,
                "failed" if side.median_us is None else f"{_fmt_us(side.median_us)} µs",
            )
            for lib, side in (("asgiref", row.baseline), ("asgigreen", row.candidate))
        ]
        for bar, side in zip(bars, (row.baseline, row.candidate), strict=True):
            if side.error:
                bar.text = f"no figure: {side.error}"[:90]
        groups.append(Group(row.name, "µs per call", bars, note.strip("; ")))
    green = report.meta.get("asgigreen", {})
    hub = green.get("hub") or "?"
    versions = (
        f"asgiref {report.meta.get('asgiref', {}).get('version')}, "
        f"asgigreen {green.get('version')}, CPython {platform.python_version()}"
        + (f", gevent {_gevent_version()}" if report.patched else "")
        + f", {os.cpu_count()} CPUs"
    )
    footnotes = []
    for result in report.inflight:
        library = result.get("library")
        if "error" in result:
            footnotes.append(f"{result.get('calls', '')} in flight, {library}: {result['error']}")
            continue
        growth = result.get("peak_growth_mb")
        footnotes.append(
            f"{result['calls']:,} sync_to_async calls in flight at once, {library}: "
            f"{result['ok']:,} ok"
            + (
                f", {result['pending']:,} unfinished at the {result['timeout']:g} s timeout"
                if result["timed_out"]
                else f" in {result['seconds']:.1f} s"
            )
            + ("" if growth is None else f", peak RSS +{growth:.1f} MB")
        )
    if report.switch_cost:
        cost = report.switch_cost
        footnotes.append(
            "asgigreen's greenlet switch tracer: "
            f"{cost['traced'] - cost['bare']:+.0f} ns a switch with no loop running, "
            f"{cost['traced_loop'] - cost['bare_loop']:+.0f} ns with a loop's state swapped"
        )
    return BarChart(
        title=f"Bridges, {report.mode}: asgigreen ({hub} hub) against asgiref",
        series=[
            Series("asgiref", COLOURS["asgiref"]),
            Series("asgigreen", COLOURS["asgigreen"]),
        ],
        groups=groups,
        subtitle=[
            f"Median µs per call over {report.settings.rounds} interleaved rounds, shorter is "
            "better; ratio: median of per-round asgigreen/asgiref times. " + versions + ".",
            f"$ {command}  ({time.strftime('%Y-%m-%d')})",
        ],
        footnotes=footnotes,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Time asgigreen's sync/async bridges against asgiref's, side by side. "
        "Run under 'python -m gevent.monkey' for the gevent hub."
    )
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    parser.add_argument("--rounds", type=int, help="timed rounds per library (default 21)")
    parser.add_argument(
        "--batch-seconds", type=float, help="rough length of one batch (default 0.15)"
    )
    parser.add_argument(
        "--batch-timeout",
        type=float,
        default=30.0,
        help="seconds a worker may take for one batch before it is killed (default 30)",
    )
    parser.add_argument(
        "--skip-inflight", action="store_true", help="skip the in-flight memory measurement"
    )
    parser.add_argument(
        "--inflight-calls", type=int, default=10_000, help="in-flight calls (default 10000)"
    )
    parser.add_argument(
        "--inflight-sleep", type=float, default=0.05, help="seconds each call sleeps (0.05)"
    )
    parser.add_argument(
        "--inflight-hold",
        type=float,
        default=3.0,
        help="calls sleep until this many seconds after the first started, so that all "
        "are in flight together (default 3; 0: each just sleeps --inflight-sleep)",
    )
    parser.add_argument(
        "--inflight-timeout",
        type=float,
        help="seconds to wait for the in-flight calls (default 30, 10 with --quick)",
    )
    parser.add_argument(
        "--pin-cpu",
        type=int,
        metavar="CPU",
        help="pin both timing workers (all their threads) to this CPU: less noise, "
        "but thread hand-offs then never cross cores",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    parser.add_argument(
        "--svg", metavar="PATH", help="also draw the timing rows as an SVG chart here"
    )
    parser.add_argument(
        "--check", action="store_true", help="exit with status 1 if a target is missed"
    )
    # Internal: the worker processes.
    parser.add_argument("--worker", choices=LIBRARIES, help=argparse.SUPPRESS)
    parser.add_argument("--inflight", choices=LIBRARIES, help=argparse.SUPPRESS)
    parser.add_argument("--switch-cost", action="store_true", help=argparse.SUPPRESS)
    return parser


def _given(argv: list[str] | None) -> list[str]:
    return sys.argv[1:] if argv is None else argv


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.svg and not args.svg.lower().endswith(".svg"):
        _parser().error(f"--svg {args.svg}: the chart is an SVG document; name it *.svg")
    patched = gevent_patched()
    inflight_timeout = args.inflight_timeout or (10.0 if args.quick else 30.0)
    if args.worker:
        worker_main(args.worker, args.pin_cpu)
        return 0
    if args.switch_cost:
        switch_main(SWITCH_PAIRS // (10 if args.quick else 1), SWITCH_ROUNDS)
        return 0
    if args.inflight:
        inflight_main(
            args.inflight,
            args.inflight_calls,
            args.inflight_sleep,
            args.inflight_hold,
            inflight_timeout,
        )
        return 0

    settings = Settings(
        rounds=args.rounds or (5 if args.quick else 21),
        batch_seconds=args.batch_seconds or (0.05 if args.quick else 0.15),
    )
    mode = "gevent-monkeypatched process" if patched else "plain process"
    report = Report(mode=mode, patched=patched, settings=settings, pin_cpu=args.pin_cpu)

    def out(line: str) -> None:
        print(line, flush=True)

    started = time.perf_counter()
    run_bridges(report, args.batch_timeout, out)
    if patched:
        run_switch_cost(report, out)
    if patched and not args.skip_inflight:
        run_inflight(
            report,
            args.inflight_calls,
            args.inflight_sleep,
            args.inflight_hold,
            inflight_timeout,
            out,
        )
    passed = report.verdicts.count("PASS")
    out("")
    noisy = f", {report.within_noise} within noise" if report.within_noise else ""
    out(
        f"targets: {passed}/{len(report.verdicts)} PASS{noisy} "
        f"({time.perf_counter() - started:.0f} s in all)"
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as sink:
            json.dump(_report_json(report), sink, indent=2)
            sink.write("\n")
    if args.svg:
        prefix = ["python", "-m", "gevent.monkey"] if patched else ["python"]
        command = command_line([*prefix, "benchmarks/bridges.py"], _given(argv))
        out(f"chart: {_chart(report, command).write(args.svg)}")
    if args.check and passed != len(report.verdicts):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
