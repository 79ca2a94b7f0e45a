"""The hub layer: selection, worker identity, the hub's primitives, fork.

Selection is process-wide and chosen once, so everything that picks a hub
runs in a fresh subprocess; the rest runs on this process's hub, in both
modes.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from asgigreen import hubs
from asgigreen.local import Local
from asgigreen.sync import ThreadSensitiveContext, async_to_sync, sync_to_async

pytestmark = pytest.mark.timeout(60)


def worker_id() -> int:
    return hubs.get_hub().worker_id()


def gevent_patched() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and bool(monkey.is_module_patched("threading"))


def in_new_thread(func: Callable[[], Any]) -> Any:
    outcome: list[Any] = []
    thread = threading.Thread(target=lambda: outcome.append(func()))
    thread.start()
    thread.join(10)
    assert outcome, "the thread did not finish"
    return outcome[0]


# -- the hub of this process ------------------------------------------------------


def test_the_hub_matches_how_the_process_was_started() -> None:
    expected = "gevent" if gevent_patched() else "threads"
    hub = hubs.get_hub()
    assert hub.name == expected
    assert hubs.get_hub() is hub
    assert isinstance(hub, hubs.Hub)
    assert set(hubs.HUB_NAMES) == {"threads", "gevent"}


def test_worker_id_is_stable_per_worker_and_differs_between_workers() -> None:
    here = worker_id()
    assert worker_id() == here
    assert hubs.worker_id() == here
    other = in_new_thread(lambda: (worker_id(), worker_id()))
    assert other[0] == other[1]
    assert other[0] != here


@pytest.mark.threads_only
def test_threads_hub_worker_is_the_os_thread() -> None:
    assert worker_id() == threading.get_ident()
    assert in_new_thread(lambda: worker_id() == threading.get_ident())


@pytest.mark.gevent_only
def test_gevent_hub_worker_is_the_greenlet() -> None:
    import gevent
    import greenlet

    assert worker_id() == id(greenlet.getcurrent())
    spawned = gevent.spawn(lambda: (worker_id(), id(greenlet.getcurrent())))
    ids = spawned.get(timeout=5)
    assert ids[0] == ids[1] != worker_id()


def test_worker_local_is_private_to_each_worker() -> None:
    namespace = hubs.get_hub().worker_local()
    namespace.value = "here"

    def other() -> tuple[bool, str]:
        missing = not hasattr(namespace, "value")
        namespace.value = "there"
        return missing, namespace.value

    assert in_new_thread(other) == (True, "there")
    assert namespace.value == "here"


def test_signal_set_before_wait_is_consumed_and_set_from_elsewhere_wakes() -> None:
    hub = hubs.get_hub()
    signal_ = hub.new_signal()
    signal_.set()
    signal_.wait()  # returns at once: the flag was set

    def set_later() -> None:
        time.sleep(0.05)
        signal_.set()

    thread = threading.Thread(target=set_later)
    began = time.monotonic()
    thread.start()
    signal_.wait()  # the earlier set() was consumed: this waits for the thread
    waited = time.monotonic() - began
    thread.join(5)
    assert 0.03 < waited < 2


def test_lock_and_future_primitives() -> None:
    hub = hubs.get_hub()
    lock = hub.new_lock()
    with lock:
        pass
    future = hub.new_future()
    assert isinstance(future, Future)
    in_new_thread(lambda: future.set_result("handed over"))
    assert future.result(1) == "handed over"


def test_serial_executor_runs_calls_in_order_on_one_dedicated_worker() -> None:
    executor = hubs.get_hub().serial_executor()
    try:
        order: list[int] = []
        futures = [executor.submit(lambda n=n: (order.append(n), worker_id())[1]) for n in range(5)]
        ids = {future.result(5) for future in futures}
        assert order == [0, 1, 2, 3, 4]
        assert len(ids) == 1
        assert worker_id() not in ids
        assert executor.submit(worker_id).result(5) in ids
    finally:
        executor.shutdown()


def test_two_serial_executors_have_different_workers() -> None:
    hub = hubs.get_hub()
    first, second = hub.serial_executor(), hub.serial_executor()
    try:
        assert first.submit(worker_id).result(5) != second.submit(worker_id).result(5)
    finally:
        first.shutdown()
        second.shutdown()


def test_spawn_runs_on_a_fresh_worker_and_reports_the_outcome() -> None:
    hub = hubs.get_hub()
    assert hub.spawn(worker_id).result(5) != worker_id()

    def fail() -> None:
        raise ArithmeticError("spawned")

    with pytest.raises(ArithmeticError, match="spawned"):
        hub.spawn(fail).result(5)


def test_run_on_new_loop_runs_here_and_cleans_up_left_over_tasks() -> None:
    hub = hubs.get_hub()
    seen: dict[str, Any] = {}
    leftover_cancelled = threading.Event()

    async def linger() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            leftover_cancelled.set()
            raise

    async def main() -> None:
        seen["worker"] = worker_id()
        seen["loop"] = asyncio.get_running_loop()
        seen["leftover"] = asyncio.ensure_future(linger())
        await asyncio.sleep(0)

    hub.run_on_new_loop(main)
    assert seen["worker"] == worker_id()
    assert isinstance(seen["loop"], asyncio.AbstractEventLoop)
    assert leftover_cancelled.is_set()
    assert seen["leftover"].cancelled()
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()


@pytest.mark.asyncio
async def test_process_wide_serial_executor_is_where_thread_sensitive_work_runs() -> None:
    hub = hubs.get_hub()
    executor = hub.process_serial_executor()
    assert hub.process_serial_executor() is executor
    assert await sync_to_async(worker_id)() == executor.submit(worker_id).result(5)


# -- handing work to a loop and back ----------------------------------------------------


class LoopOnAWorker:
    """An event loop running on a worker of its own until stopped."""

    def __init__(self) -> None:
        hub = hubs.get_hub()
        self.ready: Future[asyncio.AbstractEventLoop] = hub.new_future()
        self._stop: asyncio.Future[None] | None = None
        self.done = hub.spawn(lambda: hub.run_on_new_loop(self._main))
        signal_ = hub.new_signal()
        self.ready.add_done_callback(lambda _: signal_.set())
        signal_.wait()
        self.loop = self.ready.result(0)

    async def _main(self) -> None:
        self._stop = asyncio.get_running_loop().create_future()
        self.ready.set_result(asyncio.get_running_loop())
        await self._stop

    def stop(self) -> None:
        assert self._stop is not None
        stop = self._stop
        hubs.get_hub().call_soon_threadsafe(self.loop, lambda: stop.done() or stop.set_result(None))
        self.done.result(5)


def test_call_soon_and_wait_runs_the_callback_on_the_loop_and_parks_until_signalled() -> None:
    hub = hubs.get_hub()
    runner = LoopOnAWorker()
    try:
        signal_ = hub.new_signal()
        seen: dict[str, Any] = {}

        def callback(value: str) -> None:
            seen["value"] = value
            seen["loop"] = asyncio.get_running_loop()
            seen["worker"] = worker_id()
            # The answer comes a while later, from the loop.
            asyncio.get_running_loop().call_later(0.05, signal_.set)

        began = time.monotonic()
        hub.call_soon_and_wait(runner.loop, signal_, callback, "handed")
        assert time.monotonic() - began >= 0.04
        assert seen == {"value": "handed", "loop": runner.loop, "worker": seen["worker"]}
        assert seen["worker"] != worker_id()
    finally:
        runner.stop()


def test_call_soon_and_wait_with_the_signal_already_set_returns_and_the_loop_runs_on() -> None:
    hub = hubs.get_hub()
    runner = LoopOnAWorker()
    try:
        signal_ = hub.new_signal()
        signal_.set()
        ran = hub.new_signal()
        hub.call_soon_and_wait(runner.loop, signal_, ran.set)  # consumes the earlier set()
        ran.wait()  # the callback still ran on the loop
        again = hub.new_signal()
        hub.call_soon_and_wait(runner.loop, again, again.set)
    finally:
        runner.stop()  # the loop still answers


def test_hand_over_wakes_the_worker_parked_on_the_signal() -> None:
    hub = hubs.get_hub()
    parked = hub.new_signal()
    answered = hub.new_signal()
    woken: list[int] = []

    def wait_for_it() -> None:
        parked.wait()
        woken.append(worker_id())
        answered.set()

    waiter = hub.spawn(wait_for_it)
    time.sleep(0.02)  # let it park
    hub.hand_over(parked)
    answered.wait()
    waiter.result(5)
    assert woken and woken[0] != worker_id()


@pytest.mark.gevent_only
def test_gevent_call_soon_and_wait_runs_an_idle_loop_before_queued_greenlets() -> None:
    import gevent

    hub = hubs.get_hub()
    runner = LoopOnAWorker()
    try:
        gevent.sleep(0.01)  # the loop is now idle in select()
        order: list[str] = []
        queued = [gevent.spawn(order.append, f"greenlet {n}") for n in range(3)]
        signal_ = hub.new_signal()

        def callback() -> None:
            order.append("loop")
            signal_.set()

        hub.call_soon_and_wait(runner.loop, signal_, callback)
        gevent.joinall(queued, timeout=5)
        assert order[0] == "loop", order
        assert sorted(order[1:]) == ["greenlet 0", "greenlet 1", "greenlet 2"]
    finally:
        runner.stop()


@pytest.mark.gevent_only
def test_gevent_hand_over_runs_the_parked_greenlet_before_the_caller_goes_on() -> None:
    import gevent

    hub = hubs.get_hub()
    signal_ = hub.new_signal()
    order: list[str] = []

    def parked() -> None:
        signal_.wait()
        order.append("woken")

    def caller() -> None:
        hub.hand_over(signal_)
        order.append("caller goes on")

    waiter = gevent.spawn(parked)
    gevent.sleep(0)  # parked now
    gevent.spawn(caller).join(5)
    waiter.join(5)
    assert order == ["woken", "caller goes on"]


@pytest.mark.gevent_only
def test_gevent_a_wake_that_comes_too_late_does_not_resume_the_greenlet_elsewhere() -> None:
    import gevent
    import gevent.event
    import greenlet

    hub = hubs.get_hub()
    signal_ = hub.new_signal()
    elsewhere = gevent.event.Event()
    state: list[str] = []

    class Interrupted(Exception):
        pass

    def parked() -> None:
        try:
            signal_.wait()
        except Interrupted:
            state.append("interrupted")
        # Parked somewhere else now; only `elsewhere` may wake it.
        elsewhere.wait()
        state.append("woken by elsewhere")

    greenlet_ = gevent.spawn(parked)
    gevent.sleep(0)

    def wake_then_interrupt() -> None:
        signal_.set()  # its wake-up waits in gevent's queue...
        # ...while the greenlet is resumed another way (and this one after it).
        gevent.get_hub().loop.run_callback(greenlet.getcurrent().switch)
        greenlet_.throw(Interrupted())

    gevent.spawn(wake_then_interrupt).join(5)
    gevent.sleep(0.05)  # the queued wake-up has run by now
    assert state == ["interrupted"]
    assert not greenlet_.dead
    elsewhere.set()
    greenlet_.join(5)
    assert state == ["interrupted", "woken by elsewhere"]


# -- gevent hub settings -------------------------------------------------------------


@pytest.mark.gevent_only
def test_gevent_hub_configure_rejects_bad_values() -> None:
    from asgigreen.hubs import gevent as gevent_hub

    with pytest.raises(ValueError, match="max_greenlets must be at least 1"):
        gevent_hub.configure(max_greenlets=0)
    with pytest.raises(ValueError, match="max_real_threads must be at least 1"):
        gevent_hub.configure(max_real_threads=0)


@pytest.mark.gevent_only
@pytest.mark.asyncio
async def test_gevent_hub_max_greenlets_bounds_concurrent_calls() -> None:
    from asgigreen.hubs import gevent as gevent_hub

    hub = gevent_hub.configure()
    previous = hub.max_greenlets
    lock = threading.Lock()
    now = peak = 0

    def busy() -> None:
        nonlocal now, peak
        with lock:
            now += 1
            peak = max(peak, now)
        time.sleep(0.02)
        with lock:
            now -= 1

    gevent_hub.configure(max_greenlets=2)
    try:
        await asyncio.gather(*(sync_to_async(busy, thread_sensitive=False)() for _ in range(6)))
    finally:
        gevent_hub.configure(max_greenlets=previous)
    assert peak == 2


# -- selection, in subprocesses -------------------------------------------------------


def run_python(
    tmp_path: Path, code: str, *, patched: bool = False, env: dict[str, str] | None = None
) -> tuple[int, Any, str]:
    """Run ``code`` in a fresh interpreter (under ``python -m gevent.monkey`` if
    ``patched``); returns the exit code, the JSON of its last stdout line, stderr."""
    import subprocess

    script = tmp_path / "probe.py"
    script.write_text(textwrap.dedent(code))
    command = [sys.executable]
    if patched:
        command += ["-m", "gevent.monkey"]
    command.append(os.fspath(script))
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ASGIGREEN_")}
    environment.update(env or {})
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=30, env=environment, cwd=tmp_path
    )
    lines = done.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else None
    except ValueError:
        answer = None
    return done.returncode, answer, done.stderr


HUB_AND_A_CALL = """
    import asyncio, json
    from asgigreen import hubs
    from asgigreen.sync import async_to_sync, sync_to_async

    async def main():
        return await sync_to_async(lambda: 21 * 2)()

    print(json.dumps({"hub": hubs.get_hub().name, "result": async_to_sync(main)()}))
"""


@pytest.mark.parametrize(
    ("patched", "env", "expected"),
    [
        (False, {}, "threads"),
        (True, {}, "gevent"),
        (True, {"ASGIGREEN_HUB": "threads"}, "threads"),
        (True, {"ASGIGREEN_HUB": " Gevent "}, "gevent"),
        (False, {"ASGIGREEN_HUB": "gevent"}, "gevent"),
    ],
    ids=["plain", "patched", "patched-env-threads", "patched-env-gevent", "plain-env-gevent"],
)
def test_hub_selection_by_detection_and_environment(
    tmp_path: Path, patched: bool, env: dict[str, str], expected: str
) -> None:
    code, answer, stderr = run_python(tmp_path, HUB_AND_A_CALL, patched=patched, env=env)
    assert code == 0, stderr
    assert answer == {"hub": expected, "result": 42}


def test_unknown_hub_in_the_environment_is_refused(tmp_path: Path) -> None:
    code, _, stderr = run_python(tmp_path, HUB_AND_A_CALL, env={"ASGIGREEN_HUB": "fibres"})
    assert code != 0
    assert "ValueError" in stderr
    assert "ASGIGREEN_HUB='fibres' is not a hub" in stderr
    assert "threads, gevent" in stderr


def test_use_picks_the_hub_and_refuses_unknown_names(tmp_path: Path) -> None:
    code, answer, stderr = run_python(
        tmp_path,
        """
        import json
        from asgigreen import hubs
        first = hubs.use("threads").name
        try:
            hubs.use("fibres")
        except ValueError as exc:
            refused = str(exc)
        second = hubs.use("gevent").name
        print(json.dumps({"first": first, "second": second, "now": hubs.get_hub().name,
                          "refused": refused}))
        """,
        patched=True,
    )
    assert code == 0, stderr
    assert answer["first"] == "threads"
    assert answer["second"] == answer["now"] == "gevent"
    assert "Unknown asgigreen hub 'fibres'" in answer["refused"]


MISMATCH = """
    import asyncio, json
    from asgigreen import hubs
    from asgigreen.sync import async_to_sync, sync_to_async   # picks the threads hub

    first = hubs.get_hub().name
    {keep_threads}
    from gevent import monkey
    monkey.patch_all()

    async def main():
        return "ran"

    outcome = {{"first": first}}
    try:
        outcome["hub"] = hubs.get_hub().name
    except hubs.HubMismatchError as exc:
        outcome["get_hub"] = str(exc)
        outcome["is_runtime_error"] = isinstance(exc, RuntimeError)
    try:
        outcome["call"] = async_to_sync(main)()
    except hubs.HubMismatchError as exc:
        outcome["call"] = "HubMismatchError"
    print(json.dumps(outcome))
"""


def test_gevent_patching_after_the_threads_hub_was_detected_fails_loudly(
    tmp_path: Path,
) -> None:
    code, answer, stderr = run_python(tmp_path, MISMATCH.format(keep_threads=""))
    assert code == 0, stderr
    assert answer["first"] == "threads"
    assert answer["is_runtime_error"] is True
    assert answer["call"] == "HubMismatchError"
    message = answer["get_hub"]
    # It says what happened and how to fix it.
    assert "gevent monkeypatched threading after asgigreen had chosen the threads hub" in message
    assert "patch_all()" in message
    assert "before importing" in message
    assert "use('threads')" in message
    assert "ASGIGREEN_HUB=threads" in message


def test_threads_hub_chosen_on_purpose_survives_later_patching(tmp_path: Path) -> None:
    code, answer, stderr = run_python(tmp_path, MISMATCH.format(keep_threads='hubs.use("threads")'))
    assert code == 0, stderr
    assert answer == {"first": "threads", "hub": "threads", "call": "ran"}


@pytest.mark.parametrize("setting", ["ASGIGREEN_MAX_GREENLETS", "ASGIGREEN_MAX_REAL_THREADS"])
@pytest.mark.parametrize("value", ["0", "lots"])
def test_gevent_hub_rejects_bad_numbers_in_the_environment(
    tmp_path: Path, setting: str, value: str
) -> None:
    code, _, stderr = run_python(tmp_path, HUB_AND_A_CALL, patched=True, env={setting: value})
    assert code != 0
    assert f"{setting}={value!r}" in stderr


def test_gevent_hub_real_threads_from_the_environment(tmp_path: Path) -> None:
    code, answer, stderr = run_python(
        tmp_path,
        """
        import asyncio, json
        from gevent.monkey import get_original
        from asgigreen.sync import sync_to_async

        native = get_original("threading", "get_ident")

        async def main():
            return [await sync_to_async(native)(),
                    await sync_to_async(native, thread_sensitive=False)()]

        print(json.dumps({"home": native(), "ran_on": asyncio.run(main())}))
        """,
        patched=True,
        env={"ASGIGREEN_REAL_THREADS": "1"},
    )
    assert code == 0, stderr
    assert answer["home"] not in answer["ran_on"]


# -- fork ---------------------------------------------------------------------------


def _exercise_bridges() -> None:
    """Use every kind of worker once, so the hub holds state worth rebuilding."""

    async def main() -> None:
        await sync_to_async(worker_id)()
        await sync_to_async(worker_id, thread_sensitive=False)()
        async with ThreadSensitiveContext():
            await sync_to_async(worker_id)()

    asyncio.run(main())
    async_to_sync(asyncio.sleep)(0)


def _child_checks() -> None:
    """What a forked child must still be able to do; raises if it cannot."""
    local = Local()

    async def echo(value: int) -> int:
        await asyncio.sleep(0.001)
        return value

    assert async_to_sync(echo)(7) == 7

    async def main() -> list[Any]:
        local.value = "child"
        sensitive = await sync_to_async(lambda: (worker_id(), local.value))()
        other = await sync_to_async(worker_id, thread_sensitive=False)()
        async with ThreadSensitiveContext():
            in_context = await sync_to_async(worker_id)()
        nested = await sync_to_async(lambda: async_to_sync(echo)(8))()
        return [sensitive, other, in_context, nested]

    sensitive, other, in_context, nested = asyncio.run(main())
    assert sensitive[1] == "child"
    assert len({sensitive[0], other, in_context}) == 3
    assert nested == 8


def _fork_and_check(child: Callable[[], None], timeout: float = 10) -> None:
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        status = 1
        try:
            child()
            status = 0
        except BaseException:
            import traceback

            os.write(2, traceback.format_exc().encode())
        finally:
            os._exit(status)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"the forked child did not finish within {timeout} s (hung)")
        time.sleep(0.01)
    assert os.WIFEXITED(status), f"child ended abnormally: status {status}"
    assert os.WEXITSTATUS(status) == 0, "the bridges failed in the forked child (see stderr)"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_bridges_work_in_a_forked_child() -> None:
    _exercise_bridges()
    _fork_and_check(_child_checks)
    # And the parent is unharmed.
    _child_checks()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_fork_while_a_thread_sensitive_worker_is_busy() -> None:
    # The parent's process-wide worker is mid-call when the fork happens: the
    # child has no such worker and must get a new one, not wait for a ghost.
    busy = threading.Event()
    release = threading.Event()

    def occupy() -> None:
        busy.set()
        release.wait(60)  # a child that waited for this worker would time out

    executor = ThreadPoolExecutor(max_workers=1)

    def start() -> None:
        async def main() -> None:
            await sync_to_async(occupy)()

        asyncio.run(main())

    try:
        pending = executor.submit(start)
        assert busy.wait(5)
        _fork_and_check(_child_checks)
    finally:
        release.set()
        pending.result(10)
        executor.shutdown()
