"""The client for examples/stateless_server/server.py: two users, two connections.

Run the server first, then::

    python examples/stateless_server/client.py [--port 8765]

Alice speaks on two different connections: her second connection continues
the same conversation (the line numbers go on), because the server keys its
application instances by user, not by connection. Bob's lines go to an
instance of his own. Prints every reply and exits.
"""

from __future__ import annotations

import argparse
import asyncio


async def say(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: str) -> str:
    writer.write(line.encode() + b"\n")
    await writer.drain()
    reply = await asyncio.wait_for(reader.readline(), timeout=10)
    return reply.decode().rstrip("\n")


async def main(host: str, port: int) -> None:
    first = await asyncio.open_connection(host, port)
    second = await asyncio.open_connection(host, port)
    script = [
        (first, "alice hello"),
        (first, "bob hi there"),
        (second, "alice still me, other connection"),
        (second, "bob how many?"),
        (first, "alice bye"),
        (first, "alice back again"),
    ]
    for (reader, writer), line in script:
        print(f"> {line}")
        print(f"< {await say(reader, writer, line)}")
    for _, writer in (first, second):
        writer.close()
        await writer.wait_closed()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    asyncio.run(main(args.host, args.port))
