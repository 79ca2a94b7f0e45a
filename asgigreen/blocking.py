"""Blocking detection: which call kept gevent's hub from running, and how to fix it.

In a gevent worker every greenlet of a thread shares that thread. Sync code
that blocks it (a C database driver without gevent support, ``time.sleep``
from the unpatched module, a long computation) stalls every other greenlet:
requests wait, timeouts fire late, health checks fail. gevent's monitor
thread can notice that the hub has not run for a while, but says no more.

With detection on, asgigreen logs one warning per call site on the
``asgigreen`` logger, naming:

* the call that started the work: the ``sync_to_async`` call site, or, for
  a plain WSGI view served by ``gunicorn -k gevent``, the view (the
  innermost frame of application code on the blocked stack);
* how long the hub was kept from running (a lower bound, see below);
* the fix: ``sync_to_async(func, real_thread=True)``,
  :func:`asgigreen.run_in_real_thread`, or a driver that cooperates with
  gevent (psycogreen for psycopg2, ...);
* the blocked greenlet's stack.

Turn it on with ``ASGIGREEN_BLOCKING_MS=100`` in the environment (read when
the gevent hub is chosen), :func:`enable`, or
``asgigreen.hubs.gevent.configure(blocking_ms=100)``. Off by default, and
then nothing of it is loaded, started or installed.

How it works: this is gevent's own monitoring, reported better. Enabling
sets ``gevent.config.monitor_thread`` and ``max_blocking_time`` (the
threshold), starts the monitor thread of the calling thread's hub if it is
running (gevent starts one for every other hub as it starts running, in any
thread) and subscribes to gevent's
:class:`gevent.events.EventLoopBlocked`. gevent's monitor wakes every
threshold and reports a hub that saw no greenlet switch since its last
look, so a block is always caught once it lasts twice the threshold, and may
be from once the threshold. The monitor also samples the thread's stack
twice per threshold (through ``add_monitoring_function``), and the warning
shows the sample taken just after the monitor's previous look: a stack from
inside the block, for sure. The warning is logged once the hub runs again
(from a greenlet of the blocked thread, so log handlers may do cooperative
I/O), with the time the hub was kept waiting: at least from the monitor's
last look that saw switches to the moment the hub ran. A block still going on
after :data:`STILL_BLOCKED_AFTER` seconds (or four thresholds, if longer)
is reported from the monitor thread at once, as still blocked: a worker
that never gets its hub back would otherwise never say why.

gevent prints its own report of each block to stderr; while asgigreen's
detection is on, that report is dropped for the blocks asgigreen handles
(every block it is told of), so each block is reported once, in the log.

Which blocks count: any in the main thread's hub; in another native thread,
a block by a greenlet other than the thread's main one (a thread that runs
its work on its main greenlet, such as asgigreen's real-thread workers,
holds up no one when it blocks).

In a process on the threads hub (not monkeypatched) OS threads do not hold
each other up, so there is nothing to detect: :func:`enable` raises
``RuntimeError`` saying so; ``ASGIGREEN_BLOCKING_MS`` is read only by the
gevent hub and has no effect there.
"""

from __future__ import annotations

import _thread
import contextlib
import inspect
import logging
import os
import site
import sys
import sysconfig
import time
import traceback
import warnings
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import _calls, hubs

__all__ = [
    "ENV_VAR",
    "STILL_BLOCKED_AFTER",
    "BlockingReport",
    "disable",
    "enable",
    "threshold_ms",
]

#: The environment variable the gevent hub reads when it is chosen.
ENV_VAR = "ASGIGREEN_BLOCKING_MS"

#: Seconds after which a block still going on is reported without waiting
#: for it to end (or four thresholds, if that is longer).
STILL_BLOCKED_AFTER = 1.0

logger = logging.getLogger("asgigreen")

try:
    from gevent.monkey import get_original

    # The monitor threads and the hub threads share this state: a native
    # lock, whatever gevent patched.
    _allocate_lock: Callable[[], Any] = get_original("_thread", "allocate_lock")
    _native_ident: Callable[[], int] = get_original("_thread", "get_ident")
except ImportError:  # no gevent: enable() refuses anyway
    _allocate_lock = _thread.allocate_lock
    _native_ident = _thread.get_ident


@dataclass(frozen=True)
class BlockingReport:
    """What a warning reports; attached to its log record as ``asgigreen_blocking``.

    For log handlers that want the figures rather than the text (JSON logs,
    error trackers).
    """

    #: The call site the warning is given once for: ``"path.py:42"``.
    site: str
    #: What started the work: ``"sync_to_async(fetch) at views.py:42"``, or the view.
    started_by: str
    #: How long the hub was kept from running, at least, in milliseconds.
    duration_ms: int
    #: The threshold in force, in milliseconds.
    threshold_ms: int
    #: True when reported while the block was still going on.
    still_blocked: bool
    #: What to do about it, in a sentence or two.
    fix: str
    #: The blocked greenlet's stack, outermost frame first.
    stack: traceback.StackSummary = field(repr=False)


def threshold_ms() -> int | None:
    """The threshold in milliseconds while detection is on, else None."""
    return _state.threshold_ms


def enable(threshold_ms: int = 100) -> None:
    """Report sync code that keeps gevent's hub from running for ``threshold_ms``.

    Needs the gevent hub (a gevent-monkeypatched process): on the threads
    hub it raises ``RuntimeError``, as there is nothing to detect. A
    threshold that is not a whole number of milliseconds, at least 1, is a
    ``ValueError``. Calling it again changes the threshold. See the module
    docs for what is reported and how.
    """
    _check_threshold(threshold_ms, "threshold_ms")
    hub = hubs.get_hub()
    if hub.name != "gevent":
        raise RuntimeError(
            "Blocking detection watches gevent's hub, and this process uses asgigreen's "
            f"{hub.name!r} hub (gevent has not monkeypatched it), where sync work runs on OS "
            "threads that do not hold each other up: there is nothing to detect. Enable it "
            "in a gevent worker, after patching (asgigreen.patch_all(), gunicorn -k gevent, "
            f"python -m gevent.monkey), e.g. with {ENV_VAR}=100 in its environment."
        )
    _state.start(threshold_ms)


def disable() -> None:
    """Stop reporting; forget which call sites were reported. Harmless when off.

    gevent's settings are put back as they were, and the monitor threads
    detection started are stopped.
    """
    _state.stop()


def enable_from_environment() -> None:
    """Start detection if ``ASGIGREEN_BLOCKING_MS`` says so (0 or empty: off).

    Called by the gevent hub when it becomes the process's hub; not for
    general use (it does not check which hub is in use).
    """
    raw = os.environ.get(ENV_VAR, "").strip()
    if not raw:
        return
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(
            f"{ENV_VAR}={raw!r}: the blocking threshold is a whole number of milliseconds, "
            f"e.g. {ENV_VAR}=100 (0 or unset: off)"
        )
    if value:
        _state.start(value)


def _check_threshold(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"{name}={value!r}: the blocking threshold is a whole number of milliseconds, "
            "at least 1 (e.g. 100)"
        )


# -- where the blocking call came from --------------------------------------------------


def _library_dirs() -> tuple[str, ...]:
    """Directories whose code is not the application's: stdlib, site-packages, ours."""
    paths = sysconfig.get_paths()
    found = {paths.get(key, "") for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    found.update(getattr(site, "getsitepackages", list)())
    found.add(os.path.dirname(os.path.abspath(__file__)))
    for name in ("gevent", "greenlet", "zope"):
        module = sys.modules.get(name)
        location = getattr(module, "__file__", None)
        if location:
            found.add(os.path.dirname(os.path.abspath(location)))
    return tuple(os.path.join(os.path.realpath(p), "") for p in found if p)


_library_cache: dict[str, bool] = {}


def _is_library(filename: str) -> bool:
    known = _library_cache.get(filename)
    if known is None:
        if filename.startswith("<"):
            known = True  # frozen modules, exec'd strings
        else:
            known = os.path.realpath(filename).startswith(_state.library_dirs())
        if len(_library_cache) < 10_000:
            _library_cache[filename] = known
    return known


def _innermost_application_index(stack: Sequence[traceback.FrameSummary]) -> int:
    """Where the innermost frame of application code is, else the innermost frame."""
    for index in range(len(stack) - 1, -1, -1):
        if not _is_library(stack[index].filename):
            return index
    return len(stack) - 1


#: A frame as sampled: file, line, name, qualified name, whether it is async code.
_Frame = tuple[str, int, str, str, bool]


def _walk(top: Any) -> list[_Frame]:
    """The frames from ``top`` outwards, outermost first, as plain values."""
    frames = []
    while top is not None:
        code = top.f_code
        async_code = bool(code.co_flags & _ASYNC_CODE)
        frames.append(
            (code.co_filename, top.f_lineno or 0, code.co_name, code.co_qualname, async_code)
        )
        top = top.f_back
    frames.reverse()
    return frames


# Code running as a coroutine (or async generator): blocking there blocks its
# event loop as well as the hub, and the fix is spelled differently.
_ASYNC_CODE = inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR | inspect.CO_ITERABLE_COROUTINE


def _blocking_drivers() -> list[str]:
    """Drivers loaded in this process that block the thread in C under gevent."""
    found = []
    extensions = sys.modules.get("psycopg2.extensions")
    get_wait_callback = getattr(extensions, "get_wait_callback", None)
    if get_wait_callback is not None and get_wait_callback() is None:
        found.append(
            "psycopg2 is loaded without a wait callback, so every query blocks the "
            "thread: pip install psycogreen and call psycogreen.gevent.patch_psycopg() "
            "right after gevent patches"
        )
    if "MySQLdb" in sys.modules:
        found.append(
            "mysqlclient (MySQLdb) is loaded: it waits in C, so every query blocks the "
            "thread; PyMySQL cooperates with gevent once patched"
        )
    return found


# -- the episode, from detection to warning ---------------------------------------------


@dataclass
class _Episode:
    """One greenlet keeping one hub from running."""

    hub: Any
    greenlet: Any
    #: The block began at or before this perf_counter reading.
    start: float
    #: The last time the monitor saw it still blocked.
    seen: float
    key: str
    #: The innermost frame of application code, named as ``key`` is.
    blocked_at: str
    started_by: str
    fix: str
    stack: traceback.StackSummary
    end: float = 0.0
    reported: bool = False


class _State:
    """Everything detection keeps while on; one per process (``_state``)."""

    def __init__(self) -> None:
        self.threshold_ms: int | None = None
        self._lock = _allocate_lock()
        self._reported: set[str] = set()
        self._pending: dict[Any, _Episode] = {}  # hub -> the episode going on there
        self._finished: dict[Any, list[_Episode]] = {}  # hub -> episodes to log there
        self._queued: set[Any] = set()  # hubs with a callback queued for when they run
        self._started: weakref.WeakSet[Any] = weakref.WeakSet()  # monitors started while on
        self._watched: weakref.WeakSet[Any] = weakref.WeakSet()  # monitors that sample for us
        # hub -> (perf_counter, frames, calls): its thread's stack at the
        # monitor's last pass, and the bridge calls running then. Read
        # together: by the time a block is reported, the greenlet may have
        # left the call the stack shows.
        self._samples: dict[Any, tuple[float, list[_Frame], dict[int, _calls.BridgeCall]]] = {}
        self._saved_config: tuple[Any, Any] | None = None
        self._library_dirs: tuple[str, ...] | None = None

    def library_dirs(self) -> tuple[str, ...]:
        if self._library_dirs is None:
            self._library_dirs = _library_dirs()
        return self._library_dirs

    # -- on and off -----------------------------------------------------------------

    def start(self, threshold_ms: int) -> None:
        import gevent
        import gevent.events

        config = gevent.config
        with self._lock:
            if self._saved_config is None:
                self._saved_config = (config.monitor_thread, config.max_blocking_time)
            self.threshold_ms = threshold_ms
        config.max_blocking_time = threshold_ms / 1000
        config.monitor_thread = True
        if _on_gevent_event not in gevent.events.subscribers:
            gevent.events.subscribers.append(_on_gevent_event)
        if config.max_memory_usage is None:
            # A monitor on the main hub also watches memory, and warns once when
            # psutil is missing; no memory limit was asked for. (Left in place:
            # a filter for that one message of gevent's, from its monitor.)
            warnings.filterwarnings(
                "ignore", "Unable to monitor memory usage", RuntimeWarning, r"gevent\._monitor"
            )
        hub = gevent.get_hub()
        # Hub.run() starts the monitor itself, now monitor_thread is set. Not
        # before it runs: a monitor that wakes to a hub not yet running takes
        # it for gone and stops for good (seen under asgigreen serve). A
        # greenlet is true once started.
        monitor = hub.start_periodic_monitoring_thread() if hub else hub.periodic_monitoring_thread
        for watched in {*self._watched, monitor} - {None}:
            self._watch(watched)  # the sampling period follows the threshold

    def _watch(self, monitor: Any) -> None:
        """Have ``monitor`` sample its hub's stack twice per threshold (see :meth:`sample`)."""
        threshold = self.threshold_ms
        if threshold is not None:
            monitor.add_monitoring_function(self.sample, threshold / 2000)
            self._watched.add(monitor)

    def stop(self) -> None:
        if self.threshold_ms is None:
            return
        import gevent
        import gevent.events
        from greenlet import gettrace

        with contextlib.suppress(ValueError):
            gevent.events.subscribers.remove(_on_gevent_event)
        with self._lock:
            self.threshold_ms = None
            self._reported.clear()
            self._pending.clear()
            self._finished.clear()
            self._queued.clear()
            self._samples.clear()
            saved, self._saved_config = self._saved_config, None
            started, self._started = list(self._started), weakref.WeakSet()
            watched, self._watched = list(self._watched), weakref.WeakSet()
        if saved is not None:
            gevent.config.monitor_thread, gevent.config.max_blocking_time = saved
        for monitor in watched:
            with contextlib.suppress(Exception):
                monitor.add_monitoring_function(self.sample, None)
        here = _native_ident()
        for monitor in started:
            hub = monitor.hub
            # kill() puts back, in the calling thread, the greenlet tracer its
            # own replaced: right only in its hub's thread with its tracer on
            # top. Elsewhere the thread is just told to stop; its tracer stays
            # chained under whatever came later, counting switches.
            tracer = getattr(monitor, "_greenlet_tracer", None)
            if hub is not None and hub.thread_ident == here and gettrace() is tracer:
                monitor.kill()
            else:
                monitor.should_run = False
            if hub is not None and hub.periodic_monitoring_thread is monitor:
                hub.periodic_monitoring_thread = None

    def after_fork_in_child(self) -> None:
        self._lock = _allocate_lock()
        self._samples.clear()
        self._pending.clear()
        self._finished.clear()
        self._queued.clear()

    # -- in a monitor thread --------------------------------------------------------

    def monitor_started(self, monitor: Any) -> None:
        if self.threshold_ms is None:
            return
        saved = self._saved_config
        if saved is not None and not saved[0]:
            self._started.add(monitor)  # started because detection set monitor_thread
        self._watch(monitor)

    def sample(self, hub: Any) -> None:
        """Keep the stack of ``hub``'s thread, as of this pass of its monitor.

        gevent's monitor calls its functions in order on each pass, its own
        check first. When a check finds the hub blocked, the sample from the
        pass before was taken after the previous check, which saw switches:
        inside the block, for sure. A stack taken when the event arrives
        could already be past it (gevent builds its report first).
        """
        try:
            top = sys._current_frames().get(hub.thread_ident)
            self._samples[hub] = (time.perf_counter(), _walk(top), _calls.running_calls())
            del top
        except Exception:
            logger.debug("asgigreen's blocking detection could not sample", exc_info=True)

    def blocked(self, event: Any) -> None:
        """gevent's monitor saw ``event.hub`` blocked by ``event.greenlet``."""
        now = time.perf_counter()
        threshold = self.threshold_ms
        if threshold is None:
            return
        # asgigreen reports this block (or decided it holds no one up): gevent's
        # printed report of it would say the same thing again, less usefully.
        del event.info[:]
        hub = getattr(event, "hub", None) or _monitored_hub()
        blocker = event.greenlet
        if hub is None or blocker is None or not _holds_others_up(hub, blocker):
            return
        period = float(event.blocking_time or threshold / 1000)
        still_after = max(STILL_BLOCKED_AFTER, 4 * threshold / 1000)
        report_now = None
        with self._lock:
            going_on = self._pending.get(hub)
            if going_on is not None and going_on.greenlet is blocker:
                going_on.seen = now
                if not going_on.reported and now - going_on.start >= still_after:
                    going_on.reported = True
                    going_on.end = now
                    report_now = going_on
                    del self._pending[hub]
            else:
                going_on = None
        if report_now is not None:
            _emit(report_now, threshold, still_blocked=True)
            return
        if going_on is not None:
            return
        episode = self._capture(hub, blocker, now, period)
        if episode is None:
            return
        with self._lock:
            if episode.key in self._reported:
                return
            previous = self._pending.pop(hub, None)
            if previous is not None:
                # A new greenlet blocking: the previous one has ended by now.
                previous.end = previous.seen
                self._finished.setdefault(hub, []).append(previous)
            self._pending[hub] = episode
            queue = hub not in self._queued
            self._queued.add(hub)
        if queue:
            try:
                hub.loop.run_callback_threadsafe(self.hub_ran, hub)
            except Exception:  # the loop is gone: nothing will run there again
                with self._lock:
                    self._pending.pop(hub, None)
                    self._queued.discard(hub)

    def _capture(self, hub: Any, blocker: Any, now: float, period: float) -> _Episode | None:
        sample = self._samples.get(hub)
        if sample is not None and now - sample[0] <= 2 * period + 0.5 and sample[1]:
            _, frames, running = sample
        else:  # none yet (the first pass): the stack now, most likely still the block's
            running = _calls.running_calls()
            frames = _walk(sys._current_frames().get(hub.thread_ident))
        if not frames:
            return None
        stack = traceback.StackSummary.from_list(
            [(filename, line, name, None) for filename, line, name, _, _ in frames]
        )
        if _is_hub_loop(stack[-1]):
            return None  # the hub's own loop: the block had ended when the stack was taken
        index = _innermost_application_index(stack)
        inner = stack[index]
        _, _, _, qualname, in_async_code = frames[index]
        # Named as asgigreen._calls names a bridge call's site.
        blocked_at = f"{inner.filename}:{inner.lineno} in {qualname}"
        call = running.get(id(blocker))
        if call is not None:
            key = call.site
            started_by = f"{call.kind}({call.func_name}) at {call.site}"
            if call.thread_sensitive is not None:
                sensitive = call.thread_sensitive
                started_by += ", thread-sensitive" if sensitive else ", not thread-sensitive"
            fix = _fix_for_sync_to_async(call.func_name)
            if call.kind != "sync_to_async":
                fix = _FIX_IN_ASYNC_CODE if in_async_code else _FIX_IN_SYNC_CODE
        else:
            key = blocked_at
            started_by = (
                f"the view (or task) at {blocked_at}; no bridge call: it ran on its own greenlet"
            )
            fix = _FIX_IN_ASYNC_CODE if in_async_code else _FIX_IN_SYNC_CODE
        return _Episode(
            hub=hub,
            greenlet=blocker,
            # No switch since the monitor's previous look, a period ago at least.
            start=now - period,
            seen=now,
            key=key,
            blocked_at=blocked_at,
            started_by=started_by,
            fix=fix,
            stack=stack,
        )

    # -- in the blocked hub's thread, once its hub runs again -----------------------

    def hub_ran(self, hub: Any) -> None:
        end = time.perf_counter()
        with self._lock:
            self._queued.discard(hub)
            done = self._finished.pop(hub, [])
            going_on = self._pending.pop(hub, None)
        if going_on is not None:
            going_on.end = end
            done.append(going_on)
        threshold = self.threshold_ms
        if not done or threshold is None:
            return
        import gevent

        # Not from the hub itself: a log handler that does cooperative I/O
        # (a socket) could not wait there.
        for episode in done:
            gevent.spawn_raw(_emit, episode, threshold, False)

    def claim(self, key: str) -> bool:
        """True the first time ``key`` is to be reported."""
        with self._lock:
            if key in self._reported or self.threshold_ms is None:
                return False
            self._reported.add(key)
            return True


_state = _State()


def _monitored_hub() -> Any:
    """The hub of the monitor thread running this (gevent before 24.11 names no hub)."""
    from greenlet import getcurrent

    ref = getattr(getcurrent(), "gevent_monitoring_thread", None)
    monitor = ref() if ref is not None else None
    return None if monitor is None else monitor.hub


def _holds_others_up(hub: Any, blocker: Any) -> bool:
    """Whether ``blocker`` blocking ``hub`` keeps other greenlets waiting."""
    if getattr(hub, "main_hub", False):
        return True
    # Another native thread: only if it runs greenlets besides its main one.
    return getattr(blocker, "parent", None) is not None


def _is_hub_loop(frame: traceback.FrameSummary) -> bool:
    return frame.name == "run" and frame.filename.endswith(os.path.join("gevent", "hub.py"))


def _on_gevent_event(event: object) -> None:
    """Our subscriber to gevent's events; must never raise into gevent's monitor."""
    try:
        from gevent.events import EventLoopBlocked, PeriodicMonitorThreadStartedEvent

        if isinstance(event, EventLoopBlocked):
            _state.blocked(event)
        elif isinstance(event, PeriodicMonitorThreadStartedEvent):
            _state.monitor_started(event.monitor)
    except Exception:
        logger.debug("asgigreen's blocking detection failed on %r", event, exc_info=True)


# -- the warning -----------------------------------------------------------------------

_FIX_IN_SYNC_CODE = (
    "run the blocking call on a native thread, "
    "asgigreen.run_in_real_thread(func, *args) (or decorate func with "
    "@asgigreen.in_real_thread), or make it cooperative: a driver that waits through "
    "gevent (psycopg2 with psycogreen, PyMySQL rather than mysqlclient, ...)"
)


_FIX_IN_ASYNC_CODE = (
    "this is async code, blocking its event loop too: move the blocking call into a "
    "sync function and await sync_to_async(func, real_thread=True)(*args), or use a "
    "client that waits through asyncio or gevent (psycopg2 with psycogreen, PyMySQL "
    "rather than mysqlclient, ...)"
)


def _fix_for_sync_to_async(func_name: str) -> str:
    name = func_name.rpartition(".")[2]  # a qualified name's last part: how code names it
    return (
        f"run it on a native thread, sync_to_async({name}, real_thread=True) "
        "(asgigreen.hubs.gevent.configure(real_threads=True) or ASGIGREEN_REAL_THREADS=1 "
        "does it for every call), or make the blocking call cooperative: a driver that "
        "waits through gevent (psycopg2 with psycogreen, PyMySQL rather than "
        "mysqlclient, ...)"
    )


def _emit(episode: _Episode, threshold: int, still_blocked: bool) -> None:
    if not _state.claim(episode.key):
        return
    duration_ms = max(threshold, round((episode.end - episode.start) * 1000))
    inner = episode.stack[_innermost_application_index(episode.stack)]
    drivers = _blocking_drivers()
    report = BlockingReport(
        site=episode.key,
        started_by=episode.started_by,
        duration_ms=duration_ms,
        threshold_ms=threshold,
        still_blocked=still_blocked,
        fix=episode.fix,
        stack=episode.stack,
    )
    how_long = (
        f"for {duration_ms} ms so far, and still does"
        if still_blocked
        else f"for at least {duration_ms} ms"
    )
    lines = [
        f"asgigreen: blocking call at {episode.key} kept gevent's hub from running "
        f"{how_long} (threshold {threshold} ms): every other greenlet of the thread waited.",
        f"  Started by: {episode.started_by}",
    ]
    if episode.blocked_at != episode.key:
        lines.append(f"  Blocked at: {episode.blocked_at}")
    if inner.line:
        lines.append(f"      {inner.line}")
    lines.append(f"  Fix: {episode.fix}.")
    lines.extend(f"  Note: {driver}." for driver in drivers)
    lines.append("  Stack of the blocked greenlet (most recent call last):")
    lines.extend(entry.rstrip("\n") for entry in episode.stack.format())
    lines.append(
        f"  (One warning per call site; detection is on with a {threshold} ms threshold, "
        f"{ENV_VAR} or asgigreen.blocking.enable().)"
    )
    logger.warning("\n".join(lines), extra={"asgigreen_blocking": report})


def _after_fork_in_child() -> None:
    _state.after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
