"""A correct application that would show if it were served, and prints while imported.

uvicorn runs the lifespan startup as soon as it serves; this one then writes
the file named by ``DOCTOR_MARKER``. The doctor only loads it, so the file
must never appear, and what it prints must not reach the doctor's stdout.
"""

import os
from pathlib import Path
from typing import Any

print("lifespan_marker: imported")


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await receive()
        Path(os.environ["DOCTOR_MARKER"]).write_text("served\n")
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def create_app() -> Any:
    """The same application, for ``--factory``."""
    return app
