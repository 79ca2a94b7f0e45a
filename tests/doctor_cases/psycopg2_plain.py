"""psycopg2 without psycogreen: every query blocks all greenlets (``driver.psycopg2``)."""

from typing import Any

import psycopg2  # noqa: F401


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})
