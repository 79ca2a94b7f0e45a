"""A correct, minimal ASGI application: the other set-ups' wrong part is elsewhere.

Used with the real asgiref imported by ``real_asgiref/sitecustomize.py``,
and under ``python -m gevent.monkey`` with ``--hub threads``.
"""

from typing import Any


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})
