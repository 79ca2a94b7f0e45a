"""An ASGI app whose view blocks the hub inside ``sync_to_async``.

Served by ``asgigreen serve blockingapp.asgi:app`` (which patches first).
"""

import json

from gevent.monkey import get_original

from asgigreen.sync import sync_to_async
from blockingapp import records

records.install()

real_sleep = get_original("time", "sleep")


def fetch_report():
    real_sleep(0.3)  # blocking C call on the worker greenlet
    return "done"


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/report":
        result = await sync_to_async(fetch_report)()
    else:
        result = "ok"
    body = json.dumps(result).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})
