"""psycopg2 made cooperative with psycogreen: ``driver.psycopg2`` is ok."""

from typing import Any

import psycopg2  # noqa: F401
from psycogreen.gevent import patch_psycopg

patch_psycopg()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})
