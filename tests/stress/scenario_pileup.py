"""Native threads while many ThreadSensitiveContexts come and go (plain process).

Run by ``test_stress_pileup.py``::

    python scenario_pileup.py ROUNDS CONTEXTS

``ROUNDS`` rounds, each ``CONTEXTS`` concurrent tasks that each enter a
``ThreadSensitiveContext`` (its own thread-sensitive worker, as Django's
ASGI handler opens one per request) and make one thread-sensitive
``sync_to_async`` call in it. The native thread count (``/proc/self/task``)
is taken before, after each round, and once more after up to 5 s for idle
threads to end.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time

from stress_census import emit, native_threads, watchdog

from asgigreen.sync import ThreadSensitiveContext, sync_to_async

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
CONTEXTS = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
SETTLED_BELOW = int(sys.argv[3]) if len(sys.argv) > 3 else 50


def where() -> int:
    return threading.get_ident()


async def one_request() -> int:
    async with ThreadSensitiveContext():
        return await sync_to_async(where)()


async def rounds() -> tuple[list[int], list[int], int]:
    counts = []
    distinct = []
    main = threading.get_ident()
    on_main = 0
    for _ in range(ROUNDS):
        idents = await asyncio.gather(*[one_request() for _ in range(CONTEXTS)])
        distinct.append(len(set(idents)))
        on_main += sum(ident == main for ident in idents)
        counts.append(native_threads())
    return counts, distinct, on_main


def main() -> None:
    watchdog(150)
    before = native_threads()
    started = time.monotonic()
    counts, distinct, on_main = asyncio.run(rounds())
    seconds = time.monotonic() - started
    deadline = time.monotonic() + 5
    while native_threads() >= SETTLED_BELOW and time.monotonic() < deadline:
        time.sleep(0.1)
    emit(
        {
            "rounds": ROUNDS,
            "contexts": CONTEXTS,
            "before": before,
            "after_each_round": counts,
            "peak": max(counts),
            "settled": native_threads(),
            "distinct_workers_per_round": distinct,
            "calls_on_the_loop_thread": on_main,
            "seconds": round(seconds, 1),
        }
    )


if __name__ == "__main__":
    main()
