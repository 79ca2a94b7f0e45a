"""Tests for asgigreen.server.StatelessServer, driven over real UDP sockets."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from asgigreen.server import ApplicationInstance, StatelessServer

# --- a small UDP server and client -----------------------------------------------


class UDPServer(StatelessServer):
    """One application instance per client address; replies go back by UDP.

    Incoming datagrams become ``{"type": "udp.receive", "data": ...}`` events;
    the application answers with ``{"type": "udp.send", "data": ...}``.
    """

    application_checker_interval = 0.01

    def __init__(self, application: Any, max_applications: int = 1000) -> None:
        super().__init__(application, max_applications=max_applications)
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.setblocking(False)
        self.address: tuple[str, int] = self.socket.getsockname()
        self.transport: asyncio.DatagramTransport | None = None
        self.should_stop = asyncio.Event()
        self.reported: list[tuple[BaseException, ApplicationInstance]] = []

    async def handle(self) -> None:
        server = self

        class Protocol(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                scope = {"type": "udp", "client": addr}
                queue = server.get_or_create_application_instance(addr, scope)
                queue.put_nowait({"type": "udp.receive", "data": data})

        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(Protocol, sock=self.socket)
        try:
            await self.should_stop.wait()
        finally:
            self.transport.close()

    async def application_send(self, scope: Any, message: Any) -> None:
        assert message["type"] == "udp.send"
        assert self.transport is not None
        self.transport.sendto(message["data"], scope["client"])

    async def application_exception(
        self, exception: BaseException, application_details: ApplicationInstance
    ) -> None:
        self.reported.append((exception, application_details))


class UDPClient:
    def __init__(self) -> None:
        self.replies: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    async def connect(self, address: tuple[str, int]) -> UDPClient:
        replies = self.replies

        class Protocol(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                replies.put_nowait(data)

        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(
            Protocol, local_addr=("127.0.0.1", 0), remote_addr=address
        )
        return self

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        address: tuple[str, int] = self.transport.get_extra_info("sockname")
        return address

    async def ask(self, data: bytes, timeout: float = 2) -> bytes:
        assert self.transport is not None
        self.transport.sendto(data)
        return await asyncio.wait_for(self.replies.get(), timeout)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def counting_app(scope: Any, receive: Any, send: Any) -> None:
    """Replies "<n>:<data>" where n counts messages seen by this instance."""
    seen = 0
    while True:
        event = await receive()
        seen += 1
        data = event["data"]
        if data == b"crash":
            raise ValueError("asked to crash")
        if data == b"quit":
            await send({"type": "udp.send", "data": b"bye"})
            return
        await send({"type": "udp.send", "data": f"{seen}:".encode() + data})


async def start(server: UDPServer) -> asyncio.Task[None]:
    task = asyncio.ensure_future(server.arun())
    # Let handle() open its endpoint before clients talk to it.
    while server.transport is None:
        await asyncio.sleep(0.001)
    return task


@pytest_asyncio.fixture
async def clients() -> AsyncIterator[list[UDPClient]]:
    made: list[UDPClient] = []
    yield made
    for client in made:
        client.close()


async def new_client(clients: list[UDPClient], server: UDPServer) -> UDPClient:
    client = await UDPClient().connect(server.address)
    clients.append(client)
    return client


async def stop(server: UDPServer, task: asyncio.Task[None]) -> None:
    server.should_stop.set()
    await asyncio.wait_for(task, 2)
    for instance in server.application_instances.values():
        instance["future"].cancel()


# --- routing ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_each_client_gets_its_own_instance(clients: list[UDPClient]) -> None:
    server = UDPServer(counting_app)
    task = await start(server)
    alice = await new_client(clients, server)
    bob = await new_client(clients, server)

    assert await alice.ask(b"a") == b"1:a"
    assert await alice.ask(b"b") == b"2:b"
    assert await bob.ask(b"c") == b"1:c"
    assert await alice.ask(b"d") == b"3:d"

    assert set(server.application_instances) == {alice.address, bob.address}
    assert server.application_instances[bob.address]["scope"] == {
        "type": "udp",
        "client": bob.address,
    }
    await stop(server, task)


@pytest.mark.asyncio
async def test_asgi2_application_is_accepted(clients: list[UDPClient]) -> None:
    class Legacy:
        def __init__(self, scope: Any) -> None:
            self.scope = scope

        async def __call__(self, receive: Any, send: Any) -> None:
            while True:
                event = await receive()
                await send({"type": "udp.send", "data": b"legacy:" + event["data"]})

    server = UDPServer(Legacy)
    task = await start(server)
    client = await new_client(clients, server)
    assert await client.ask(b"hi") == b"legacy:hi"
    await stop(server, task)


# --- the instance pool -----------------------------------------------------------


@pytest.mark.asyncio
async def test_pool_is_capped_and_evicts_the_oldest(clients: list[UDPClient]) -> None:
    server = UDPServer(counting_app, max_applications=2)
    task = await start(server)
    first, second, third = [await new_client(clients, server) for _ in range(3)]

    assert await first.ask(b"x") == b"1:x"
    assert await second.ask(b"x") == b"1:x"
    first_future = server.application_instances[first.address]["future"]
    assert await third.ask(b"x") == b"1:x"

    assert set(server.application_instances) == {second.address, third.address}
    await asyncio.sleep(0)
    assert first_future.cancelled()
    # Coming back starts a fresh instance, whose counter restarts.
    assert await first.ask(b"again") == b"1:again"
    assert len(server.application_instances) == 2
    await stop(server, task)


@pytest.mark.asyncio
async def test_recent_use_protects_from_eviction(clients: list[UDPClient]) -> None:
    server = UDPServer(counting_app, max_applications=2)
    task = await start(server)
    first, second, third = [await new_client(clients, server) for _ in range(3)]

    await first.ask(b"x")
    await second.ask(b"x")
    await first.ask(b"x")  # first is now the most recently used
    await third.ask(b"x")

    assert set(server.application_instances) == {first.address, third.address}
    await stop(server, task)


@pytest.mark.asyncio
async def test_get_or_create_reuses_the_queue() -> None:
    server = StatelessServer(counting_app)
    queue = server.get_or_create_application_instance("id", {"n": 1})
    first_use = server.application_instances["id"]["last_used"]
    await asyncio.sleep(0.01)
    assert server.get_or_create_application_instance("id", {"n": 2}) is queue
    # The original scope stays; only the timestamp moves.
    assert server.application_instances["id"]["scope"] == {"n": 1}
    assert server.application_instances["id"]["last_used"] > first_use
    server.delete_application_instance("id")


@pytest.mark.asyncio
async def test_delete_application_instance() -> None:
    server = StatelessServer(counting_app)
    server.get_or_create_application_instance("id", {})
    future = server.application_instances["id"]["future"]

    server.delete_application_instance("id")
    await asyncio.sleep(0)

    assert "id" not in server.application_instances
    assert future.cancelled()
    with pytest.raises(KeyError):
        server.delete_application_instance("id")
    server.delete_oldest_application_instance()  # empty pool: nothing to do


# --- the application checker ---------------------------------------------------------


@pytest.mark.asyncio
async def test_crashed_instances_are_reported_and_dropped(clients: list[UDPClient]) -> None:
    server = UDPServer(counting_app)
    task = await start(server)
    client = await new_client(clients, server)
    await client.ask(b"hello")

    assert client.transport is not None
    client.transport.sendto(b"crash")
    for _ in range(200):
        if server.reported:
            break
        await asyncio.sleep(0.01)

    [(exception, details)] = server.reported
    assert isinstance(exception, ValueError)
    assert details["scope"]["client"] == client.address
    assert client.address not in server.application_instances
    await stop(server, task)


@pytest.mark.asyncio
async def test_finished_instances_are_dropped_silently(clients: list[UDPClient]) -> None:
    server = UDPServer(counting_app)
    task = await start(server)
    client = await new_client(clients, server)

    assert await client.ask(b"quit") == b"bye"
    for _ in range(200):
        if not server.application_instances:
            break
        await asyncio.sleep(0.01)

    assert server.application_instances == {}
    assert server.reported == []
    await stop(server, task)


@pytest.mark.asyncio
async def test_a_message_for_a_finished_instance_starts_a_new_one_before_any_sweep(
    clients: list[UDPClient],
) -> None:
    server = UDPServer(counting_app)
    server.application_checker_interval = 60  # no sweep during this test
    task = await start(server)
    client = await new_client(clients, server)
    assert await client.ask(b"one") == b"1:one"
    assert await client.ask(b"quit") == b"bye"
    # Not lost in the finished instance's queue: a fresh instance answers.
    assert await client.ask(b"again") == b"1:again"

    assert client.transport is not None
    client.transport.sendto(b"crash")
    for _ in range(200):
        if server.application_instances[client.address]["future"].done():
            break
        await asyncio.sleep(0.01)
    assert await client.ask(b"after") == b"1:after"
    await asyncio.sleep(0.01)  # the crash report runs as a task of its own
    [(exception, details)] = server.reported  # reported once, not lost either
    assert isinstance(exception, ValueError)
    assert details["scope"]["client"] == client.address
    await stop(server, task)


@pytest.mark.asyncio
async def test_checker_tolerates_instances_cancelled_from_outside() -> None:
    server = StatelessServer(counting_app)
    server.application_checker_interval = 0.01
    server.get_or_create_application_instance("id", {})
    server.application_instances["id"]["future"].cancel()

    checker = asyncio.ensure_future(server.application_checker())
    await asyncio.sleep(0.05)

    assert not checker.done(), "the checker must keep running"
    assert server.application_instances == {}
    checker.cancel()


@pytest.mark.asyncio
async def test_default_report_logs_the_traceback(caplog: pytest.LogCaptureFixture) -> None:
    server = StatelessServer(counting_app)
    try:
        raise ValueError("broken app")
    except ValueError as exc:
        error = exc
    details: Any = {}

    with caplog.at_level(logging.ERROR, logger="asgigreen.server"):
        await server.application_exception(error, details)

    [record] = caplog.records
    assert "broken app" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[1] is error


# --- arun / run ------------------------------------------------------------------


class ScriptedServer(StatelessServer):
    """A server whose handle() runs a given coroutine function."""

    application_checker_interval = 0.01

    def __init__(self, script: Any) -> None:
        super().__init__(counting_app)
        self.script = script

    async def handle(self) -> None:
        await self.script(self)

    async def application_send(self, scope: Any, message: Any) -> None:
        pass


@pytest.mark.asyncio
async def test_arun_returns_when_handle_returns_and_stops_the_checker() -> None:
    checker_task: list[asyncio.Task[Any]] = []

    async def script(server: StatelessServer) -> None:
        await asyncio.sleep(0.03)  # let the checker run a few rounds
        checker_task.extend(
            task
            for task in asyncio.all_tasks()
            if getattr(task.get_coro(), "__name__", "") == "application_checker"
        )

    await asyncio.wait_for(ScriptedServer(script).arun(), 2)
    [checker] = checker_task
    assert checker.cancelled()


@pytest.mark.asyncio
async def test_arun_propagates_errors_from_handle() -> None:
    async def script(server: StatelessServer) -> None:
        raise OSError("socket went away")

    with pytest.raises(OSError, match="socket went away"):
        await asyncio.wait_for(ScriptedServer(script).arun(), 2)


@pytest.mark.asyncio
async def test_arun_propagates_checker_failure_and_stops_handle() -> None:
    handle_cancelled = asyncio.Event()

    class FragileServer(ScriptedServer):
        async def application_exception(self, exception: BaseException, details: Any) -> None:
            raise RuntimeError("reporting failed")

    async def script(server: StatelessServer) -> None:
        server.get_or_create_application_instance("id", {}).put_nowait({"data": b"crash"})
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            handle_cancelled.set()
            raise

    with pytest.raises(RuntimeError, match="reporting failed"):
        await asyncio.wait_for(FragileServer(script).arun(), 2)
    assert handle_cancelled.is_set()


def test_run_drives_its_own_loop() -> None:
    calls: list[str] = []

    async def script(server: StatelessServer) -> None:
        calls.append("handled")
        asyncio.get_running_loop()  # raises if not inside a loop

    ScriptedServer(script).run()
    assert calls == ["handled"]


def test_run_exits_quietly_on_ctrl_c(caplog: pytest.LogCaptureFixture) -> None:
    async def script(server: StatelessServer) -> None:
        raise KeyboardInterrupt

    with caplog.at_level(logging.INFO, logger="asgigreen.server"):
        ScriptedServer(script).run()
    assert any("interrupt" in record.getMessage() for record in caplog.records)


@pytest.mark.asyncio
async def test_base_class_methods_must_be_overridden() -> None:
    server = StatelessServer(counting_app)
    with pytest.raises(NotImplementedError):
        await server.handle()
    with pytest.raises(NotImplementedError):
        await server.application_send({}, {})
