"""A small HTTP/1.1 load generator: keep-alive clients on one asyncio loop.

Used by benchmarks/wsgi.py and examples/migration/demo.py, always in a
process of its own (so its work never lands in the server's process)::

    python benchmarks/_load.py --port 8000 --path /items/1 --clients 100 --requests 5

Each client opens one connection, all connections are opened first, then
every client sends its requests one after another on its connection (keep-
alive) and the clock runs from the first request to the last answer. A
request is ok when its answer is complete with status 200. Prints one JSON
line: ok, failed, the first error, seconds, req/s, and latency p50/p99 in
ms. Bounded: a round that has not ended after ``--timeout`` seconds stops,
and what had not finished counts as failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

__all__ = ["run_load"]


class _Client(asyncio.Protocol):
    """One keep-alive connection sending ``count`` requests in turn."""

    def __init__(self, request: bytes, count: int, report: _Report, go: asyncio.Event) -> None:
        self.request = request
        self.left = count
        self.report = report
        self.go = go
        self.buffer = bytearray()
        self.sent_at = 0.0
        self.transport: asyncio.Transport | None = None
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.connected.set_result(None)

    def start(self) -> None:
        if self.left:
            self._send()
        else:
            self._finish()

    def _send(self) -> None:
        assert self.transport is not None
        self.sent_at = time.perf_counter()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            parsed = _parse(self.buffer)
            if parsed is None:
                return
            status, used, close = parsed
            del self.buffer[:used]
            self.report.answered(status, time.perf_counter() - self.sent_at)
            self.left -= 1
            if self.left == 0:
                self._finish()
                return
            if close:
                self.report.failed(self.left, "server closed the connection")
                self.left = 0
                self._finish()
                return
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.connected.done():
            self.connected.set_exception(exc or ConnectionError("closed before use"))
        if self.left:
            self.report.failed(self.left, f"connection lost: {exc!r}")
            self.left = 0
        if not self.finished.done():
            self.finished.set_result(None)

    def _finish(self) -> None:
        if self.transport is not None:
            self.transport.close()
        if not self.finished.done():
            self.finished.set_result(None)


def _parse(buffer: bytearray) -> tuple[int, int, bool] | None:
    """(status, bytes used, connection closes) for a complete answer, else None."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buffer[:end]).split(b"\r\n")
    status = int(head[0].split(b" ", 2)[1])
    length: int | None = None
    chunked = close = False
    for line in head[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif name == b"connection" and b"close" in value.lower():
            close = True
    position = end + 4
    if chunked:
        while True:
            line_end = buffer.find(b"\r\n", position)
            if line_end < 0:
                return None
            size = int(bytes(buffer[position:line_end]).split(b";")[0], 16)
            position = line_end + 2 + size + 2
            if position > len(buffer):
                return None
            if size == 0:
                return status, position, close
    length = length or 0
    if len(buffer) < position + length:
        return None
    return status, position + length, close


class _Report:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.failures = 0
        self.first_error: str | None = None

    def answered(self, status: int, seconds: float) -> None:
        if status == 200:
            self.latencies.append(seconds)
        else:
            self.failed(1, f"HTTP {status}")

    def failed(self, count: int, why: str) -> None:
        self.failures += count
        if self.first_error is None:
            self.first_error = why


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))
    return ordered[index] * 1000


async def _round(
    host: str, port: int, path: str, clients: int, requests: int, timeout: float
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    report = _Report()
    go = asyncio.Event()
    protocols: list[_Client] = []
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            connections = [
                loop.create_connection(lambda: _Client(request, requests, report, go), host, port)
                for _ in range(clients)
            ]
            for outcome in await asyncio.gather(*connections, return_exceptions=True):
                if isinstance(outcome, BaseException):
                    report.failed(requests, f"connect: {outcome!r}")
                else:
                    protocols.append(outcome[1])
            started = time.perf_counter()
            for protocol in protocols:
                protocol.start()
            await asyncio.gather(*(protocol.finished for protocol in protocols))
    except TimeoutError:
        for protocol in protocols:
            if protocol.left:
                report.failed(protocol.left, f"no answer within {timeout:g} s")
                protocol.left = 0
            if protocol.transport is not None:
                protocol.transport.abort()
    elapsed = time.perf_counter() - started
    ok = len(report.latencies)
    return {
        "ok": ok,
        "failed": report.failures,
        "first_error": report.first_error,
        "seconds": elapsed,
        "rps": ok / elapsed if elapsed > 0 else 0.0,
        "p50_ms": _percentile(report.latencies, 0.50),
        "p99_ms": _percentile(report.latencies, 0.99),
    }


def run_load(
    port: int,
    path: str = "/",
    clients: int = 100,
    requests: int = 5,
    *,
    host: str = "127.0.0.1",
    timeout: float = 60.0,
) -> dict[str, Any]:
    """One round of load, in this process (see the module documentation)."""
    return asyncio.run(_round(host, port, path, clients, requests, timeout))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="HTTP/1.1 keep-alive load, one JSON line out")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--requests", type=int, default=5, help="requests per client")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per round")
    args = parser.parse_args(argv)
    result = run_load(
        args.port, args.path, args.clients, args.requests, host=args.host, timeout=args.timeout
    )
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
