"""The in-memory channel layer polled under short gevent Timeouts (gevent only).

Run by ``test_stress_layers.py``::

    python -m gevent.monkey scenario_layers.py MESSAGES

A sender greenlet sends ``MESSAGES`` numbered messages to one channel of
``asgigreen.layers.InMemoryChannelLayer`` through ``async_to_sync``, 0-5 ms
apart. The receiver (the main greenlet) polls the way a sync consumer with
a deadline does::

    with gevent.Timeout(0.02, False):
        message = async_to_sync(layer.receive)(channel)

until every message came, or 30 s passed, then goes on polling until
nothing more arrives for 0.5 s (a late duplicate would show). Reported:
what was received, in order; how many polls ended in the timeout.
"""

from __future__ import annotations

import itertools
import random
import sys
import time
from typing import Any

import gevent
from stress_census import census, emit, watchdog

from asgigreen.layers import InMemoryChannelLayer
from asgigreen.sync import async_to_sync

MESSAGES = int(sys.argv[1]) if len(sys.argv) > 1 else 300
POLL = 0.02


def main() -> None:
    watchdog(80)
    layer = InMemoryChannelLayer(capacity=MESSAGES * 2)
    channel = async_to_sync(layer.new_channel)()
    rng = random.Random(3)
    sent: list[int] = []
    send_errors: list[str] = []

    def sender() -> None:
        for i in range(MESSAGES):
            try:
                async_to_sync(layer.send)(channel, {"type": "test.message", "i": i})
                sent.append(i)
            except Exception as exc:
                send_errors.append(repr(exc))
            gevent.sleep(rng.uniform(0, 0.005))

    received: list[int] = []
    polls = timeouts = errors = 0
    error_samples: list[str] = []

    def poll() -> None:
        nonlocal polls, timeouts, errors
        polls += 1
        message: Any = None
        try:
            with gevent.Timeout(POLL, False):
                message = async_to_sync(layer.receive)(channel)
        except Exception as exc:
            errors += 1
            if len(error_samples) < 3:
                error_samples.append(repr(exc))
            return
        if message is None:
            timeouts += 1
        else:
            received.append(message["i"])

    started = time.monotonic()
    sending = gevent.spawn(sender)
    deadline = started + 30
    while len(received) < MESSAGES and time.monotonic() < deadline:
        poll()
    sending.join(10)
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < 0.5:
        count = len(received)
        poll()
        if len(received) != count:
            quiet_since = time.monotonic()
    seconds = time.monotonic() - started
    gevent.sleep(0.2)
    after = census()
    missing = sorted(set(range(MESSAGES)) - set(received))
    duplicates = len(received) - len(set(received))
    out_of_order = sum(1 for a, b in itertools.pairwise(received) if b < a)
    emit(
        {
            "messages": MESSAGES,
            "sent": len(sent),
            "send_errors": send_errors[:3],
            "received": len(received),
            "in_order": received == sorted(received),
            "exactly_once_in_order": received == list(range(MESSAGES)),
            "missing": len(missing),
            "missing_sample": missing[:10],
            "duplicates": duplicates,
            "out_of_order": out_of_order,
            "polls": polls,
            "timeouts": timeouts,
            "errors": errors,
            "error_samples": error_samples,
            "seconds": round(seconds, 2),
            "tasks_pending": after["tasks_pending"],
            "loops_running": after["loops_running"],
        }
    )


if __name__ == "__main__":
    main()
