"""asgigreen's in-memory layer made directly, without Django's settings.

With ``--workers 2``: ``layers.in-memory-workers``.
"""

from typing import Any

from asgigreen.layers import InMemoryChannelLayer

layer = InMemoryChannelLayer()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await layer.send("pings", {"type": "ping"})
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})
