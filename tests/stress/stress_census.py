"""The child side of a stress scenario: what it counts, and how it reports.

Each scenario in this directory runs in a process of its own (the same mode
as the pytest run that started it: gevent-patched or plain), so a defect
that hangs, leaks or leaves work behind cannot spill into other tests. The
scenario prints one line, ``STRESS-RESULT {json}``, as its last word; the
test (see ``stress_support.run_child``) parses it, prints the figures and
asserts on them.

Counted here, from inside the process:

* ``rss_kb``: ``VmRSS`` from ``/proc/self/status``;
* ``threads``: native threads (``/proc/self/task``); ``fds``: open descriptors;
* ``tasks_pending``: ``asyncio.Task`` objects not done, found by a
  ``gc.get_objects()`` scan (every loop's, not only a running one's);
* ``loops_open`` / ``loops_running``: event loops not closed / still running;
* ``greenlets_alive``: greenlets not dead; ``greenlets_idle`` and
  ``loops_idle``: how many of those the gevent hub keeps parked on purpose
  for reuse (its idle runners and its clean loops), so that
  ``greenlets_busy`` = alive - idle - the hub's own is what is left working;
* ``objects``: ``len(gc.get_objects())`` after a full collection.
"""

from __future__ import annotations

import asyncio
import faulthandler
import gc
import json
import os
import sys
import threading
import time
from collections import Counter
from typing import Any

RESULT_PREFIX = "STRESS-RESULT "


def patched() -> bool:
    """Whether gevent has monkeypatched threading in this process."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and bool(monkey.is_module_patched("threading"))


def watchdog(seconds: float) -> None:
    """Dump every thread's traceback to stderr and exit 3 after ``seconds``.

    A native thread of faulthandler's own: it fires even when a stuck hub or
    loop holds every greenlet. The parent's timeout is longer, so a hang
    shows where it hung.
    """
    faulthandler.dump_traceback_later(seconds, exit=True, file=sys.stderr)


def status_kb(key: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return -1


def native_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _greenlet_class() -> Any:
    try:
        from greenlet import greenlet
    except ImportError:
        return None
    return greenlet


def _idle_by_design() -> tuple[set[int], set[int]]:
    """ids of the greenlets and loops the hub keeps parked for reuse."""
    greenlets: set[int] = set()
    loops: set[int] = set()
    from asgigreen import hubs

    hub = hubs.get_hub()
    if hub.name != "gevent":
        return greenlets, loops
    for pool_name in ("_pool", "_spawned"):
        pool = getattr(hub, pool_name, None)
        greenlets.update(id(g) for g in getattr(pool, "_idle", ()))
    gevent_hub = getattr(getattr(hub, "_home", None), "hub", None)
    if gevent_hub is not None:
        greenlets.add(id(gevent_hub))
    serial = getattr(hub, "_process_serial", None)
    worker = getattr(serial, "_greenlet", None)
    if worker is not None:
        greenlets.add(id(worker))
    loops.update(id(loop) for loop in getattr(hub, "_idle_loops", ()))
    return greenlets, loops


def census(*, types: bool = False) -> dict[str, Any]:
    """Counts of what is alive in this process now (after a full collection)."""
    gc.collect()
    gc.collect()
    greenlet_class = _greenlet_class()
    idle_greenlets, idle_loops = _idle_by_design()
    tasks_pending = loops_open = loops_running = loops_idle = 0
    greenlets_alive = greenlets_idle = 0
    objects = gc.get_objects()
    by_type: Counter[str] = Counter()
    for obj in objects:
        # type(), not isinstance(): a lazy proxy's __class__ may run code.
        kind = type(obj)
        if types:
            by_type[kind.__qualname__] += 1
        if issubclass(kind, asyncio.Task):
            if not obj.done():
                tasks_pending += 1
        elif issubclass(kind, asyncio.AbstractEventLoop):
            if not obj.is_closed():
                loops_open += 1
                if id(obj) in idle_loops:
                    loops_idle += 1
            if obj.is_running():
                loops_running += 1
        elif greenlet_class is not None and issubclass(kind, greenlet_class) and not obj.dead:
            greenlets_alive += 1
            if id(obj) in idle_greenlets:
                greenlets_idle += 1
    figures: dict[str, Any] = {
        "rss_kb": status_kb("VmRSS"),
        "threads": native_threads(),
        "py_threads": threading.active_count(),
        "fds": open_fds(),
        "tasks_pending": tasks_pending,
        "loops_open": loops_open,
        "loops_idle": loops_idle,
        "loops_running": loops_running,
        "greenlets_alive": greenlets_alive,
        "greenlets_idle": greenlets_idle,
        # The main greenlet is alive and working: not counted as busy.
        "greenlets_busy": max(0, greenlets_alive - greenlets_idle - 1),
        "objects": len(objects),
    }
    del objects
    if types:
        figures["by_type"] = dict(by_type)
    return figures


def growth(before: dict[str, Any], after: dict[str, Any], top: int = 8) -> list[list[Any]]:
    """The types whose object counts grew most between two censuses taken with types."""
    old = before.get("by_type", {})
    new = after.get("by_type", {})
    grown = [(name, count - old.get(name, 0)) for name, count in new.items()]
    grown = [item for item in grown if item[1] > 0]
    grown.sort(key=lambda item: -item[1])
    return [list(item) for item in grown[:top]]


def emit(result: dict[str, Any]) -> None:
    """Print the result line the parent reads, and flush."""
    result.setdefault("hub", _hub_name())
    result.setdefault("python", sys.version.split()[0])
    sys.stdout.write(RESULT_PREFIX + json.dumps(result, sort_keys=True) + "\n")
    sys.stdout.flush()


def _hub_name() -> str:
    if "asgigreen.hubs" not in sys.modules:
        return "gevent" if patched() else "threads"
    from asgigreen import hubs

    return hubs.get_hub().name


class Clock:
    """Seconds since it was made."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self.started
