"""Both bridges nested four deep under fire, every call accounted for.

Run by ``test_stress_chaos.py`` in a process of its own::

    python -m gevent.monkey scenario_chaos.py SECONDS WORKERS SEED   # greenlets
    python scenario_chaos.py SECONDS WORKERS SEED                     # threads

Each call is the chain::

    level1 (sync, the caller)  -> async_to_sync(level2)
    level2 (async)             -> await sync_to_async(level3)   thread-sensitive
    level3 (sync)              -> async_to_sync(level4)
    level4 (async)             -> await sync_to_async(level5)   thread-sensitive
    level5 (sync)              -> "<n>:5", each level appending its mark

so a call's value is ``"<n>:5:4:3:2"``, and level3 and level5 must run on
the caller itself (asgiref: thread-sensitive work inside ``async_to_sync``
runs on the thread blocked in it). ``WORKERS`` callers (greenlets when
patched, threads otherwise) make calls back to back for ``SECONDS``, each
on its own greenlet or thread (a call to be killed gets a greenlet of its
own); each call draws one interruption, or none:

* ``timeout`` (gevent): a ``gevent.Timeout`` of 1-200 ms around the call;
* ``kill`` (gevent): ``greenlet.kill()`` of the calling greenlet after 0-200 ms;
* ``cancel2`` / ``cancel4``: the task awaiting level3 (on level2's loop) or
  level5 (level4's) is cancelled after 0-200 ms;
* ``wait_for`` (threads): ``asyncio.wait_for`` of 1-200 ms around level2's await.

Some calls pause 1.5 s in level4 (slow), most 0-20 ms; level5 sleeps 0-3 ms
(``time.sleep``, cooperative when patched). Verdicts, per call:

* ``ok``: it returned its own value, or raised the very interruption it
  drew (the timeout object, GreenletExit, CancelledError, TimeoutError);
* ``wrong``: any other value or exception (an uninterrupted call raising
  CancelledError, say);
* ``lost``: no outcome by the end (its caller hangs; a killed call's
  greenlet is given 30 s);
* ``misplaced``: level3 or level5 ran on another worker than the caller;
* ``not_cancelled``: an interrupted call whose coroutine (level2) was still
  running 1 s after the call ended (async_to_sync did not cancel it), and
  ``still_running``: coroutines still running at the end.

Then nothing may be pending: the census (``stress_census.py``) after the
run counts asyncio tasks not done, loops still running, and busy greenlets,
against a census after the warm-up; and 100 plain calls must still work.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import random
import sys
import threading
import time
import traceback
from collections import Counter
from typing import Any

import stress_census as census_
from stress_census import census, emit, patched, watchdog

PATCHED = patched()
if PATCHED:
    import gevent
    from greenlet import GreenletExit, getcurrent
else:
    getcurrent = threading.get_ident  # type: ignore[assignment]

from asgigreen.sync import async_to_sync, sync_to_async  # noqa: E402

SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 12.0
WORKERS = int(sys.argv[2]) if len(sys.argv) > 2 else (200 if PATCHED else 40)
SEED = int(sys.argv[3]) if len(sys.argv) > 3 else 1
HANG = 30.0  # a call with no outcome after this long is lost
GRACE = 1.0  # an interrupted call's coroutine must have ended this soon after
SLOW = 1.5

if PATCHED:
    KINDS = ["none"] * 8 + ["timeout"] * 4 + ["kill"] * 4 + ["cancel2"] * 2 + ["cancel4"] * 2
else:
    KINDS = ["none"] * 8 + ["cancel2"] * 4 + ["cancel4"] * 4 + ["wait_for"] * 4

CANCELLED = (asyncio.CancelledError, concurrent.futures.CancelledError)


class Call:
    __slots__ = (
        "coro_ended",
        "coro_state",
        "delay",
        "ended",
        "error",
        "kind",
        "misplaced",
        "n",
        "outcome",
        "pause",
        "started",
        "timeout",
        "value",
        "worker",
    )

    def __init__(self, n: int, rng: random.Random) -> None:
        self.n = n
        self.kind = rng.choice(KINDS)
        self.delay = rng.uniform(0.001, 0.2)
        self.pause = SLOW if rng.random() < 0.1 else rng.choice([0.0, 0.0, 0.002, 0.02])
        self.worker: Any = None
        self.started: float | None = None
        self.ended: float | None = None
        self.outcome: str | None = None
        self.value: Any = None
        self.error: BaseException | None = None
        self.timeout: Any = None
        self.coro_state: str | None = None
        self.coro_ended: float | None = None
        self.misplaced: list[str] = []

    def expected(self) -> str:
        return f"{self.n}:5:4:3:2"


calls: dict[int, Call] = {}
_counter = iter(range(1, 10**9))


def _check_worker(call: Call, level: str) -> None:
    if getcurrent() != call.worker:
        call.misplaced.append(level)


def level5(n: int) -> str:
    call = calls[n]
    _check_worker(call, "level5")
    pause = random.choice([0, 0, 0.001, 0.003])
    if pause:
        time.sleep(pause)  # cooperative when patched
    return f"{n}:5"


async def _maybe_cancelled(call: Call, kind: str, awaitable: Any) -> Any:
    if call.kind == kind:
        task = asyncio.ensure_future(awaitable)
        asyncio.get_running_loop().call_later(call.delay, task.cancel)
        return await task
    if call.kind == "wait_for" and kind == "cancel2":
        return await asyncio.wait_for(awaitable, call.delay)
    return await awaitable


async def _pause_then_level5(call: Call) -> str:
    await asyncio.sleep(call.pause)
    return await sync_to_async(level5)(call.n)


async def level4(n: int) -> str:
    call = calls[n]
    return await _maybe_cancelled(call, "cancel4", _pause_then_level5(call)) + ":4"


def level3(n: int) -> str:
    call = calls[n]
    _check_worker(call, "level3")
    return async_to_sync(level4)(n) + ":3"


async def level2(n: int) -> str:
    call = calls[n]
    call.coro_state = "running"
    try:
        value = await _maybe_cancelled(call, "cancel2", sync_to_async(level3)(n))
    except CANCELLED:
        call.coro_state = "cancelled"
        raise
    except BaseException as exc:
        call.coro_state = f"raised {type(exc).__name__}"
        raise
    else:
        call.coro_state = "completed"
        return value + ":2"
    finally:
        call.coro_ended = time.monotonic()


def level1(call: Call) -> None:
    call.started = time.monotonic()
    timeout = None
    if call.kind == "timeout":
        timeout = call.timeout = gevent.Timeout(call.delay)
        timeout.start()
    try:
        call.value = async_to_sync(level2)(call.n)
        call.outcome = "returned"
    except BaseException as exc:
        call.outcome = "raised"
        call.error = exc
        if PATCHED and isinstance(exc, GreenletExit):
            raise
    finally:
        call.ended = time.monotonic()
        if timeout is not None:
            timeout.close()


def new_call(rng: random.Random) -> Call:
    call = Call(next(_counter), rng)
    calls[call.n] = call
    return call


def run_one_greenlet(rng: random.Random, kinds: bool = True) -> Call:
    call = new_call(rng)
    if not kinds:
        call.kind, call.pause = "none", 0.0
    if call.kind != "kill":
        # On the caller's own greenlet, call after call: what a worker
        # records about one call (the loop it served, say) must not leak
        # into its next one.
        call.worker = getcurrent()
        level1(call)
        return call
    # A greenlet of its own, to be killed.
    worker = gevent.spawn(level1, call)
    call.worker = worker
    gevent.spawn_later(call.delay, worker.kill, block=False)
    worker.join(HANG)
    return call


def run_one_thread(rng: random.Random, kinds: bool = True) -> Call:
    call = new_call(rng)
    if not kinds:
        call.kind, call.pause = "none", 0.0
    call.worker = threading.get_ident()
    level1(call)
    return call


run_one = run_one_greenlet if PATCHED else run_one_thread


def caller(number: int, until: float) -> None:
    rng = random.Random(SEED * 100_003 + number)
    while time.monotonic() < until:
        run_one(rng)


def judge(call: Call) -> str:
    if call.outcome == "returned":
        return "ok" if call.value == call.expected() else "wrong"
    if call.outcome == "raised":
        error = call.error
        if call.kind == "timeout" and error is call.timeout:
            return "ok"
        if call.kind == "kill" and PATCHED and isinstance(error, GreenletExit):
            return "ok"
        if call.kind in ("cancel2", "cancel4") and isinstance(error, CANCELLED):
            return "ok"
        if call.kind == "wait_for" and isinstance(error, TimeoutError):
            return "ok"
        return "wrong"
    # No outcome: killed before it started, or lost.
    if call.kind == "kill" and call.started is None and getattr(call.worker, "dead", False):
        return "ok"
    return "lost"


def describe(call: Call) -> str:
    what = repr(call.error) if call.outcome == "raised" else repr(call.value)
    return (
        f"n={call.n} kind={call.kind} delay={call.delay:.3f} pause={call.pause} "
        f"outcome={call.outcome} {what[:200]} coroutine={call.coro_state}"
    )


def _await_chain(task: asyncio.Task[Any]) -> list[str]:
    """The coroutines a task is suspended in, outermost first, and what the last awaits."""
    chain = []
    awaited: Any = task.get_coro()
    for _ in range(20):
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is None:
            chain.append(f"{awaited!r:.200}")
            break
        chain.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
        if awaited is None:
            break
    return chain


def stuck_stacks(limit: int = 2) -> list[str]:
    """Where a few of the tasks still pending wait, and the greenlets running their loops."""
    found = []
    for obj in gc.get_objects():
        if len(found) >= limit:
            break
        if issubclass(type(obj), asyncio.Task) and not obj.done():
            found.append(f"{obj!r:.300}\n  awaiting: " + " -> ".join(_await_chain(obj)))
    if PATCHED:
        from greenlet import greenlet

        for obj in gc.get_objects():
            if len(found) >= 2 * limit:
                break
            if (
                issubclass(type(obj), greenlet)
                and obj
                and obj.gr_frame is not None
                and "run_forever" in "".join(traceback.format_stack(obj.gr_frame))
            ):
                stack = "".join(traceback.format_stack(obj.gr_frame)[-8:])
                found.append("greenlet running a loop:\n" + stack[-1500:])
    return found


def main() -> None:
    watchdog(SECONDS + HANG + 40)
    rng = random.Random(SEED)
    for _ in range(50):  # warm-up: pools, idle loops and workers exist
        run_one(rng, kinds=False)
    baseline = census()
    clock = census_.Clock()
    until = time.monotonic() + SECONDS
    if PATCHED:
        workers = [gevent.spawn(caller, number, until) for number in range(WORKERS)]
        gevent.joinall(workers, timeout=SECONDS + HANG + 5)
        stuck_callers = sum(not worker.dead for worker in workers)
    else:
        threads = [
            threading.Thread(target=caller, args=(number, until), daemon=True)
            for number in range(WORKERS)
        ]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + SECONDS + HANG + 5
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        stuck_callers = sum(thread.is_alive() for thread in threads)
    chaos_seconds = clock()
    # Let interrupted work wind down before looking for leftovers.
    settle_until = time.monotonic() + GRACE + SLOW + 0.5
    while time.monotonic() < settle_until:
        if PATCHED:
            gevent.sleep(0.1)
        else:
            time.sleep(0.1)
    after = census()
    verdicts: Counter[str] = Counter()
    samples: dict[str, list[str]] = {}
    interrupted_by: Counter[str] = Counter()
    coroutine_states: Counter[str] = Counter()
    for call in calls.values():
        verdict = judge(call)
        verdicts[verdict] += 1
        if verdict != "ok":
            samples.setdefault(verdict, []).append(describe(call))
        if call.misplaced:
            verdicts["misplaced"] += 1
            samples.setdefault("misplaced", []).append(describe(call) + f" {call.misplaced}")
        if call.outcome == "raised" and verdict == "ok":
            interrupted_by[call.kind] += 1
            if call.coro_state == "running" or (
                call.coro_ended is not None
                and call.ended is not None
                and call.coro_ended - call.ended > GRACE
            ):
                verdicts["not_cancelled"] += 1
                if call.coro_ended is None:
                    late = f" still running {time.monotonic() - call.ended:.1f} s after the call"
                else:
                    late = f" ended {call.coro_ended - call.ended:.2f} s after the call"
                samples.setdefault("not_cancelled", []).append(describe(call) + late)
        if call.coro_state == "running":
            verdicts["still_running"] += 1
        coroutine_states[str(call.coro_state)] += 1
    # The bridges still work afterwards.
    check_rng = random.Random(SEED + 7)
    total_before_check = len(calls)
    finals = [run_one(check_rng, kinds=False) for _ in range(100)]
    final_ok = sum(judge(call) == "ok" and not call.misplaced for call in finals)
    emit(
        {
            "mode": "gevent" if PATCHED else "threads",
            "workers": WORKERS,
            "seconds": round(chaos_seconds, 1),
            "calls": total_before_check,
            "kinds": dict(Counter(call.kind for call in list(calls.values())[:total_before_check])),
            "interrupted_by": dict(interrupted_by),
            "verdicts": dict(verdicts),
            "coroutine_states": dict(coroutine_states),
            "samples": {key: value[:5] for key, value in samples.items()},
            "stuck_callers": stuck_callers,
            "baseline": baseline,
            "after": after,
            "final_ok": final_ok,
            "stuck_stacks": stuck_stacks() if after["tasks_pending"] else [],
        }
    )


if __name__ == "__main__":
    main()
