"""What each bridge leaves behind per call, over many calls.

Run by ``test_stress_leaks.py`` in a process of its own::

    [python -m gevent.monkey] scenario_leaks.py sync_to_async|async_to_sync CALLS WARMUP

* ``sync_to_async``: ``CALLS`` awaits of a thread-sensitive
  ``sync_to_async`` one after the other in one task. Censuses are taken
  after the warm-up and after the calls *while that task still runs* (what
  piles up waiting for the loop to go idle counts), and again after
  ``asyncio.run`` returned.
* ``async_to_sync``: ``CALLS`` calls from sync code (the main thread or
  greenlet), one after the other.

RSS is also sampled every tenth of the run. The result carries the
censuses (see ``stress_census.py``), the samples, and the types whose
object counts grew most.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from stress_census import census, emit, growth, status_kb, watchdog

from asgigreen.sync import async_to_sync, sync_to_async

BRIDGE = sys.argv[1]
CALLS = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
WARMUP = int(sys.argv[3]) if len(sys.argv) > 3 else 5_000


def work() -> int:
    return 1


async def async_work() -> int:
    return 1


def measure_sync_to_async() -> dict[str, Any]:
    call = sync_to_async(work)
    figures: dict[str, Any] = {"samples_kb": []}

    async def many() -> None:
        total = 0
        for _ in range(WARMUP):
            total += await call()
        figures["before"] = census(types=True)
        started = time.perf_counter()
        step = max(1, CALLS // 10)
        for i in range(CALLS):
            total += await call()
            if i % step == step - 1:
                figures["samples_kb"].append(status_kb("VmRSS"))
        figures["seconds"] = time.perf_counter() - started
        figures["during"] = census(types=True)
        figures["total"] = total

    asyncio.run(many())
    figures["after"] = census(types=True)
    return figures


def measure_async_to_sync() -> dict[str, Any]:
    call = async_to_sync(async_work)
    figures: dict[str, Any] = {"samples_kb": []}
    total = 0
    for _ in range(WARMUP):
        total += call()
    figures["before"] = census(types=True)
    started = time.perf_counter()
    step = max(1, CALLS // 10)
    for i in range(CALLS):
        total += call()
        if i % step == step - 1:
            figures["samples_kb"].append(status_kb("VmRSS"))
    figures["seconds"] = time.perf_counter() - started
    figures["during"] = census(types=True)
    figures["after"] = figures["during"]
    figures["total"] = total
    return figures


def main() -> None:
    watchdog(float(sys.argv[4]) if len(sys.argv) > 4 else 170)
    measure = {"sync_to_async": measure_sync_to_async, "async_to_sync": measure_async_to_sync}
    figures = measure[BRIDGE]()
    figures["top_growers"] = growth(figures["before"], figures["during"])
    figures["top_growers_after"] = growth(figures["before"], figures["after"])
    for key in ("before", "during", "after"):
        figures[key].pop("by_type", None)
    figures.update(bridge=BRIDGE, calls=CALLS, warmup=WARMUP)
    emit(figures)


if __name__ == "__main__":
    main()
