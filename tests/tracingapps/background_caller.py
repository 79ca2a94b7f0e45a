"""A caller whose context holds no Sentry scope, after a request started the loop's worker.

Run as ``python [-m gevent.monkey] -m tracingapps.background_caller``; prints
one JSON object: each captured message and the tags its event carried.

A thread started before ``sentry_sdk.init()`` (a scheduler, a consumer) has
no Sentry scope in its context. A request's ``async_to_sync`` call starts
the first worker for event loops; Sentry's ThreadingIntegration runs that
thread in a copy of the request's scopes. The background thread's
``async_to_sync`` call then gets the same worker, and its coroutine must see
the background thread's context, not the request's tags.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import sentry_sdk
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from asgigreen.sync import async_to_sync

captured: dict[str, Any] = {}


class Capture(Transport):
    def capture_envelope(self, envelope: Envelope) -> None:
        for item in envelope.items:
            event = item.get_event()
            if event is not None:
                captured[event["message"]] = event.get("tags", {})


async def report(message: str) -> None:
    sentry_sdk.capture_message(message)


def main() -> None:
    go = threading.Event()
    background = threading.Thread(target=lambda: (go.wait(30), async_to_sync(report)("background")))
    background.start()  # before init, as a thread started at import time

    sentry_sdk.init(dsn="http://public@127.0.0.1:9/1", transport=Capture)
    with sentry_sdk.isolation_scope() as scope:
        scope.set_tag("who", "request")
        async_to_sync(report)("request")

    go.set()
    background.join(30)
    print(json.dumps(captured, sort_keys=True))


if __name__ == "__main__":
    main()
