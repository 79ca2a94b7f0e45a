"""A StatelessServer for a line-based TCP protocol: one application instance per user.

Run it (Ctrl-C stops it)::

    python examples/stateless_server/server.py            # listens on 127.0.0.1:8765

then, in another terminal, the included client::

    python examples/stateless_server/client.py

The protocol: every line a client sends is ``USER TEXT``. Connections don't
matter, users do: the server routes each line to the application instance
for that user (its *scope*), creating it on the user's first line and keeping
it for the next ones, whichever connection they come on. An instance keeps
its own state (here, how many lines the user sent) for as long as it lives;
``bye`` ends it, and the next line from that user starts a fresh one.
Replies go to the connection the user spoke on last.

The application is written like any ASGI application (``scope``,
``receive``, ``send``), for a protocol of our own: messages of type
``line.receive`` in and ``line.send`` out.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

from asgigreen.server import StatelessServer


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """One user's conversation: numbers their lines, shouts them back."""
    user = scope["user"]
    lines = 0
    while True:
        message = await receive()
        text = message["text"]
        lines += 1
        if text == "bye":
            await send({"type": "line.send", "text": f"{user}: goodbye after {lines} lines"})
            return  # the instance ends; the server drops it
        await send({"type": "line.send", "text": f"{user} #{lines}: {text.upper()}"})


class LineServer(StatelessServer):
    """Reads ``USER TEXT`` lines from TCP connections; a scope per user."""

    def __init__(self, application: Any, host: str, port: int, **kwargs: Any) -> None:
        super().__init__(application, **kwargs)
        self.host = host
        self.port = port
        # Where each user's replies go: the connection they last spoke on.
        self.writers: dict[str, asyncio.StreamWriter] = {}
        self.listening: asyncio.Event | None = None

    async def handle(self) -> None:
        server = await asyncio.start_server(self.connection, self.host, self.port)
        port = server.sockets[0].getsockname()[1]
        print(f"stateless line server on {self.host}:{port} (Ctrl-C to stop)", flush=True)
        async with server:
            await server.serve_forever()

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                user, _, text = line.decode("utf-8", "replace").strip().partition(" ")
                if not user:
                    continue
                self.writers[user] = writer
                queue = self.get_or_create_application_instance(
                    user, {"type": "line", "user": user}
                )
                queue.put_nowait({"type": "line.receive", "text": text})
        finally:
            for user, known in list(self.writers.items()):
                if known is writer:
                    del self.writers[user]
            writer.close()

    async def application_send(self, scope: dict[str, Any], message: dict[str, Any]) -> None:
        writer = self.writers.get(scope["user"])
        if writer is not None and message["type"] == "line.send":
            writer.write(message["text"].encode() + b"\n")
            await writer.drain()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    LineServer(application, args.host, args.port, max_applications=1000).run()


if __name__ == "__main__":
    main()
