"""A loop kept busy by one task, beside a ticker greenlet (gevent only).

Run by ``test_stress_busy_loop.py``::

    python -m gevent.monkey scenario_busy_loop.py SECONDS

A ticker greenlet loops on ``gevent.sleep(0.01)`` and notes each tick. The
main greenlet calls ``async_to_sync(main)``: there one task spins on
``await asyncio.sleep(0)`` for ``SECONDS`` (the loop always has work, so it
never waits for I/O), while another task of the same loop awaits a
thread-sensitive ``sync_to_async`` (which runs on the main greenlet, parked
in ``async_to_sync``). Reported: the ticker's longest gap during the busy
window, its ticks, the spinner's turns, and how long the thread-sensitive
call took (None if it had not completed when the window closed).
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import time

import gevent
from stress_census import emit, watchdog

from asgigreen.sync import async_to_sync, sync_to_async

SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
TICK = 0.01

ticks: list[float] = []


def ticker() -> None:
    while True:
        gevent.sleep(TICK)
        ticks.append(time.monotonic())


def sensitive() -> int:
    time.sleep(0.01)  # cooperative: gives the hub a turn while in the call
    return 42


async def main() -> dict[str, object]:
    stop = False
    turns = 0

    async def spinner() -> None:
        nonlocal turns
        while not stop:
            await asyncio.sleep(0)
            turns += 1

    async def call() -> float:
        started = time.monotonic()
        assert await sync_to_async(sensitive)() == 42
        return time.monotonic() - started

    window_start = time.monotonic()
    spin = asyncio.create_task(spinner())
    await asyncio.sleep(0)
    sensitive_task = asyncio.create_task(call())
    done, _ = await asyncio.wait([sensitive_task], timeout=SECONDS)
    remaining = SECONDS - (time.monotonic() - window_start)
    if remaining > 0:
        await asyncio.sleep(remaining)
    window_end = time.monotonic()
    stop = True
    await spin
    took = sensitive_task.result() if sensitive_task in done else None
    if took is None:
        sensitive_task.cancel()
        await asyncio.gather(sensitive_task, return_exceptions=True)
    return {"start": window_start, "end": window_end, "turns": turns, "sensitive_s": took}


def worst_gap(start: float, end: float) -> float:
    inside = [t for t in ticks if start <= t <= end]
    before = [t for t in ticks if t < start]
    points = [before[-1] if before else start, *inside, end]
    return max(b - a for a, b in itertools.pairwise(points))


def run() -> None:
    watchdog(SECONDS + 40)
    tick = gevent.spawn(ticker)
    gevent.sleep(0.1)  # ticking before the loop starts
    window = async_to_sync(main)()
    gevent.sleep(0.1)
    tick.kill()
    start, end = float(window["start"]), float(window["end"])  # type: ignore[arg-type]
    emit(
        {
            "window_s": round(end - start, 3),
            "ticks": sum(start <= t <= end for t in ticks),
            "expected_ticks": int((end - start) / TICK),
            "worst_gap_ms": round(worst_gap(start, end) * 1000, 1),
            "spinner_turns": window["turns"],
            "sensitive_ms": None
            if window["sensitive_s"] is None
            else round(float(window["sensitive_s"]) * 1000, 1),  # type: ignore[arg-type]
        }
    )


if __name__ == "__main__":
    run()
