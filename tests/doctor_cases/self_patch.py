"""An application that patches with gevent itself, served with ``--hub threads``.

The hub serve chose (threads) stays while gevent patches underneath it:
``hub.threads-patched``.
"""

from gevent import monkey

monkey.patch_all()

from typing import Any  # noqa: E402


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})
