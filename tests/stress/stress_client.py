"""Keep-alive HTTP/1.1 clients that check every answer, on one asyncio loop.

``benchmarks/_load.py`` counts status codes only; the stress tests need more:
each request carries its own ``n`` and its answer must be exactly the body
expected for that ``n``. :func:`keepalive_load` opens ``clients``
connections, then every client sends ``requests`` requests one after the
other on its connection. An answer is ok when its status is 200 and its
JSON body equals ``expect(n)``. Anything else is a failure, counted by
reason. A client whose connection is closed reconnects and goes on (the
reconnection is counted). The whole round is bounded by ``timeout``:
whatever has not been answered then counts as failed.

Run it in a plain process (the stress tests that use it are ``threads_only``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LoadFigures:
    requests: int = 0
    ok: int = 0
    seconds: float = 0.0
    reconnects: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return self.requests - self.ok

    def fail(self, reason: str, sample: str) -> None:
        self.failures[reason] += 1
        if len(self.samples) < 5:
            self.samples.append(f"{reason}: {sample[:400]}")

    def line(self, label: str) -> str:
        rate = self.ok / self.seconds if self.seconds else 0.0
        text = (
            f"{label}: {self.ok}/{self.requests} ok in {self.seconds:.1f} s "
            f"({rate:.0f} req/s, {self.reconnects} reconnects)"
        )
        if self.failures:
            text += f"; failures {dict(self.failures.most_common(5))}"
        return text


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, the server closes the connection) of one answer."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length: int | None = None
    chunked = close = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        value = value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value:
            chunked = True
        elif name == b"connection" and value == b"close":
            close = True
    if chunked:
        body = bytearray()
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            body += await reader.readexactly(size)
            await reader.readexactly(2)
        return status, bytes(body), close
    if length is None:
        return status, await reader.read(), True
    return status, await reader.readexactly(length), close


async def _round(
    port: int,
    path: Callable[[int], str],
    expect: Callable[[int], Any],
    clients: int,
    requests: int,
    timeout: float,
) -> LoadFigures:
    figures = LoadFigures(requests=clients * requests)
    go = asyncio.Event()
    ready = 0

    def one_ready() -> None:
        nonlocal ready
        ready += 1
        if ready == clients:
            go.set()

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", port)

    async def client(number: int) -> None:
        try:
            reader, writer = await connect()
        finally:
            one_ready()
        await go.wait()
        try:
            for i in range(requests):
                n = number * requests + i
                request = f"GET {path(n)} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
                try:
                    writer.write(request.encode())
                    status, body, close = await _read_answer(reader)
                except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
                    figures.fail(type(exc).__name__, f"n={n}: {exc!r}")
                    writer.close()
                    reader, writer = await connect()
                    figures.reconnects += 1
                    continue
                check(n, status, body)
                if close:
                    writer.close()
                    reader, writer = await connect()
                    figures.reconnects += 1
        finally:
            writer.close()

    def check(n: int, status: int, body: bytes) -> None:
        try:
            data = json.loads(body)
        except ValueError:
            figures.fail(f"HTTP {status}, not JSON", f"n={n}: {body!r}")
            return
        if status != 200:
            name = data.get("error", "?") if isinstance(data, dict) else "?"
            figures.fail(f"HTTP {status} {name}", f"n={n}: {body.decode(errors='replace')}")
        elif data != expect(n):
            figures.fail("wrong body", f"n={n}: got {data!r}, expected {expect(n)!r}")
        else:
            figures.ok += 1

    # Every connection is open before the first request goes out.
    tasks = [asyncio.create_task(client(number)) for number in range(clients)]
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            await go.wait()
            started = time.monotonic()
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    except TimeoutError:
        for task in tasks:
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        figures.fail("no answer in time", f"round stopped after {timeout:g} s")
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and not isinstance(outcome, asyncio.CancelledError):
            figures.fail(f"client {type(outcome).__name__}", repr(outcome))
    figures.seconds = time.monotonic() - started
    return figures


def keepalive_load(
    port: int,
    path: Callable[[int], str],
    expect: Callable[[int], Any],
    *,
    clients: int = 50,
    requests: int = 40,
    timeout: float = 90.0,
) -> LoadFigures:
    """One bounded round of checked keep-alive load (see the module docstring)."""
    return asyncio.run(_round(port, path, expect, clients, requests, timeout))
