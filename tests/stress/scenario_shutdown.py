"""``sync_to_async`` at interpreter shutdown: it must not hang the exit.

Run by ``test_stress_shutdown.py`` in this run's mode::

    [python -m gevent.monkey] scenario_shutdown.py atexit|thread asgigreen|asgiref

Both bridges' workers are used once first, so they exist and sit idle at
exit. Then the main module ends, and either

* ``atexit``: an atexit handler, or
* ``thread``: a non-daemon thread still running after the main thread
  returned (it sleeps 0.3 s first),

runs ``asyncio.run()`` of a thread-sensitive and of a non-thread-sensitive
``sync_to_async`` call. Each outcome is printed (``result 42`` or
``refused <RuntimeError message>`` or ``error <repr>``), with the time it
took, and so is ``main-done <time.monotonic()>`` when the main module ends:
the test measures from there to the process's exit. ``asgiref`` runs the
same with the real asgiref, for the figures it prints side by side.
"""

from __future__ import annotations

import asyncio
import atexit
import sys
import threading
import time

WHERE = sys.argv[1]
LIBRARY = sys.argv[2] if len(sys.argv) > 2 else "asgigreen"

if LIBRARY == "asgiref":
    from asgiref.sync import sync_to_async
else:
    from asgigreen.sync import sync_to_async


def value() -> int:
    return 42


def one(label: str, thread_sensitive: bool) -> None:
    started = time.monotonic()
    try:
        outcome = f"result {asyncio.run(sync_to_async(value, thread_sensitive=thread_sensitive)())}"
    except RuntimeError as exc:
        outcome = f"refused {exc}"
    except BaseException as exc:
        outcome = f"error {exc!r}"
    print(f"{label}: {outcome} ({time.monotonic() - started:.2f} s)", flush=True)


def late() -> None:
    one("thread-sensitive", True)
    one("not thread-sensitive", False)


def straggler() -> None:
    time.sleep(0.3)  # still running after the main thread returned
    late()


asyncio.run(sync_to_async(value)())
asyncio.run(sync_to_async(value, thread_sensitive=False)())
if WHERE == "atexit":
    atexit.register(late)
else:
    threading.Thread(target=straggler).start()
print(f"main-done {time.monotonic():.6f}", flush=True)
