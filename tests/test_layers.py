"""Channel layers: the interface suite, and the in-memory layer under concurrency.

The interface tests take a ``case`` (a :class:`LayerCase`) and run against
every layer it names:

* ``memory``: :class:`asgigreen.layers.InMemoryChannelLayer`, in both modes;
* ``redis``: ``channels_redis.core.RedisChannelLayer`` against a real Redis
  server that the ``redis_url`` fixture starts on a free port and stops
  afterwards. Only in the plain mode (it does not depend on the hub, so one
  mode is enough); skipped, with the reason, if ``redis-server`` or
  channels_redis is not installed.

Redis differs from memory in ways the cases carry: time settings in whole
seconds, and a pause (``settle``) whenever a test needs a receiver to have
reached the server, or a cancelled receive to have left it.

The rest is about the in-memory layer alone: races between cancellation and
delivery, event loops that close under a waiting receiver, and one instance
used at once from many event loops, threads, greenlets and sync code with no
message lost or duplicated.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import re
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from asgigreen import hubs
from asgigreen.layers import (
    MAX_NAME_LENGTH,
    BaseChannelLayer,
    ChannelFull,
    InMemoryChannelLayer,
    InvalidNameError,
)
from asgigreen.sync import async_to_sync

pytestmark = pytest.mark.timeout(120)

HUB = hubs.get_hub().name


# -- the layers under test -------------------------------------------------------


@dataclass
class LayerCase:
    """How to make one kind of layer, and what to allow for in its behaviour."""

    name: str
    #: Makes a layer from Channels-style settings (expiry, capacity, ...).
    factory: Callable[..., Any]
    #: What ``send`` raises on a full channel.
    full_error: type[BaseException]
    #: Seconds for a receiver to reach the server, or a cancelled one to leave it.
    settle: float = 0.0
    #: A short expiry setting, and how long to wait for it to pass.
    short_expiry: float = 0.2
    expiry_wait: float = 0.5
    in_memory: bool = True

    @contextlib.asynccontextmanager
    async def layer(self, **settings: Any) -> AsyncIterator[Any]:
        layer = self.factory(**settings)
        try:
            yield layer
        finally:
            # Leaves nothing behind for the next test (Redis is shared).
            await layer.flush()
            if hasattr(layer, "close"):
                await layer.close()

    async def pause(self) -> None:
        """Let the event loop run, and a server catch up if there is one."""
        await asyncio.sleep(self.settle)


def _redis_server_binary() -> str | None:
    return shutil.which("redis-server")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server on 127.0.0.1, without persistence, for this session."""
    binary = _redis_server_binary()
    if binary is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
    workdir = tmp_path_factory.mktemp("redis")
    port = _free_port()
    log = workdir / "redis.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 30
        while not _redis_answers(port):
            if proc.poll() is not None:
                pytest.fail(f"redis-server exited ({proc.returncode}): {log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"redis-server did not answer within 30 s: {log.read_text()}")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _memory_case() -> LayerCase:
    return LayerCase("memory", InMemoryChannelLayer, ChannelFull)


REDIS_SOCKET_TIMEOUT = 15


def _redis_case(url: str) -> LayerCase:
    from channels.exceptions import ChannelFull as ChannelsChannelFull
    from channels_redis.core import RedisChannelLayer

    def factory(**settings: Any) -> Any:
        # A prefix of its own per layer: tests never see each other's keys.
        # redis-py 8 reads with a 5 s socket timeout by default, exactly as long
        # as channels_redis's blocking pops wait: an idle receive then fails
        # (redis/redis-py#4091). A longer timeout keeps the two apart.
        host = {"address": url, "socket_timeout": REDIS_SOCKET_TIMEOUT}
        return RedisChannelLayer(hosts=[host], prefix=f"t{uuid.uuid4().hex[:12]}", **settings)

    # Redis counts expiry in whole seconds (EXPIRE, and scores cut to ints).
    return LayerCase(
        "redis",
        factory,
        ChannelsChannelFull,
        settle=0.2,
        short_expiry=1,
        expiry_wait=2.2,
        in_memory=False,
    )


@pytest.fixture(
    params=[
        "memory",
        pytest.param("redis", marks=pytest.mark.threads_only),
    ]
)
def case(request: pytest.FixtureRequest) -> LayerCase:
    if request.param == "memory":
        return _memory_case()
    pytest.importorskip("channels_redis", reason="channels_redis is not installed")
    return _redis_case(request.getfixturevalue("redis_url"))


async def receive_within(layer: Any, channel: str, timeout: float = 1.0) -> Any:
    """The next message on ``channel``, or None if none comes within ``timeout``."""
    try:
        return await asyncio.wait_for(layer.receive(channel), timeout)
    except TimeoutError:
        return None


def msg(n: int, **extra: Any) -> dict[str, Any]:
    return {"type": "test.message", "n": n, **extra}


# -- send and receive -------------------------------------------------------------


@pytest.mark.asyncio
async def test_send_then_receive_in_order(case: LayerCase) -> None:
    async with case.layer() as layer:
        for n in range(5):
            await layer.send("orders", msg(n, text="hello", data=b"\x00\x01"))
        received = [await layer.receive("orders") for _ in range(5)]
        assert received == [msg(n, text="hello", data=b"\x00\x01") for n in range(5)]
        assert await receive_within(layer, "orders", 0.3) is None


@pytest.mark.asyncio
async def test_receive_waits_for_a_later_send(case: LayerCase) -> None:
    async with case.layer() as layer:
        waiting = asyncio.create_task(layer.receive("later"))
        await case.pause()
        assert not waiting.done()
        await layer.send("later", msg(1))
        assert await asyncio.wait_for(waiting, 5) == msg(1)


@pytest.mark.asyncio
async def test_channels_are_independent(case: LayerCase) -> None:
    async with case.layer() as layer:
        await layer.send("one", msg(1))
        await layer.send("two", msg(2))
        assert await layer.receive("two") == msg(2)
        assert await layer.receive("one") == msg(1)


@pytest.mark.asyncio
async def test_receivers_see_a_copy_not_the_senders_dict(case: LayerCase) -> None:
    async with case.layer() as layer:
        message = {"type": "test.message", "items": [1, 2], "meta": {"a": 1}}
        await layer.send("copies", message)
        message["items"].append(3)
        message["meta"]["a"] = 2
        message["type"] = "changed"
        assert await layer.receive("copies") == {
            "type": "test.message",
            "items": [1, 2],
            "meta": {"a": 1},
        }


@pytest.mark.asyncio
async def test_messages_must_be_dicts(case: LayerCase) -> None:
    async with case.layer() as layer:
        with pytest.raises((TypeError, AssertionError)):
            await layer.send("typed", ["not", "a", "dict"])
        if case.in_memory:  # channels_redis only checks when the group has members
            with pytest.raises(TypeError, match="must be a dict, not str"):
                await layer.group_send("typed", "text")
            with pytest.raises(ValueError, match="reserved"):
                await layer.send("typed", {"__asgi_channel__": "x"})


@pytest.mark.asyncio
async def test_waiting_receivers_are_served_first_come_first_served(case: LayerCase) -> None:
    async with case.layer() as layer:
        receivers = []
        for _ in range(3):
            receivers.append(asyncio.create_task(layer.receive("queue")))
            await asyncio.sleep(0)
            await case.pause()
        for n in range(3):
            await layer.send("queue", msg(n))
        results = await asyncio.wait_for(asyncio.gather(*receivers), 10)
        assert results == [msg(0), msg(1), msg(2)]


# -- process-local channels ---------------------------------------------------------


@pytest.mark.asyncio
async def test_new_channel_names_are_valid_unique_and_process_local(case: LayerCase) -> None:
    async with case.layer() as layer:
        names = [await layer.new_channel() for _ in range(200)]
        assert len(set(names)) == len(names)
        for name in names:
            assert "!" in name
            assert len(name) < MAX_NAME_LENGTH
            assert layer.require_valid_channel_name(name)
            assert layer.non_local_name(name) == name[: name.index("!") + 1]
        prefixed = await layer.new_channel("chat")
        assert prefixed.startswith("chat.")


@pytest.mark.asyncio
async def test_process_local_channels_carry_messages(case: LayerCase) -> None:
    async with case.layer() as layer:
        first, second = await layer.new_channel(), await layer.new_channel()
        waiting = asyncio.create_task(layer.receive(first))
        await case.pause()
        await layer.send(second, msg(2))
        await layer.send(first, msg(1))
        assert await asyncio.wait_for(waiting, 5) == msg(1)
        assert await layer.receive(second) == msg(2)


@pytest.mark.asyncio
async def test_extensions_are_declared(case: LayerCase) -> None:
    async with case.layer() as layer:
        assert "groups" in layer.extensions
        assert "flush" in layer.extensions


# -- names --------------------------------------------------------------------------

GOOD_CHANNELS = [
    "a",
    "http.request",
    "chat-room_1.x",
    "x" * (MAX_NAME_LENGTH - 1),
    "daphne!",
    "a.b!c-d_e.f",
]
BAD_CHANNELS = [
    "",
    "x" * MAX_NAME_LENGTH,
    "has space",
    "tab\there",
    "new\nline",
    "semi;colon",
    "ünïcode",
    "two!bangs!",
    "!leading",
    "slash/path",
]
# Refused here, let through by Channels' own check (and so by channels_redis):
# its pattern ends in "$", which also matches before a final newline, and it
# allows any Unicode word character after the "!". The spec says ASCII.
STRICTER_THAN_CHANNELS = ["trailing\n", "local!ünïcode"]
GOOD_GROUPS = ["room", "chat.room-1_x", "g" * (MAX_NAME_LENGTH - 1)]
BAD_GROUPS = ["", "g" * MAX_NAME_LENGTH, "has space", "local!part", "star*", "ünïcode"]


@pytest.mark.asyncio
async def test_valid_names_are_accepted(case: LayerCase) -> None:
    async with case.layer() as layer:
        for name in GOOD_CHANNELS:
            assert layer.require_valid_channel_name(name) is True
        for group in GOOD_GROUPS:
            assert layer.require_valid_group_name(group) is True
        await layer.send(GOOD_CHANNELS[3], msg(1))
        assert await layer.receive(GOOD_CHANNELS[3]) == msg(1)
        await layer.group_add(GOOD_GROUPS[2], GOOD_CHANNELS[1])
        await layer.group_discard(GOOD_GROUPS[2], GOOD_CHANNELS[1])


@pytest.mark.asyncio
@pytest.mark.parametrize("name", [*BAD_CHANNELS, 42, None, b"bytes"])
async def test_bad_channel_names_are_refused_everywhere(case: LayerCase, name: Any) -> None:
    await _refused_everywhere(case, name)


@pytest.mark.asyncio
@pytest.mark.parametrize("name", STRICTER_THAN_CHANNELS)
async def test_names_channels_lets_through_are_refused_here(name: str) -> None:
    await _refused_everywhere(_memory_case(), name)


async def _refused_everywhere(case: LayerCase, name: Any) -> None:
    async with case.layer() as layer:
        with pytest.raises(TypeError):
            layer.require_valid_channel_name(name)
        with pytest.raises(TypeError):
            await layer.send(name, msg(1))
        with pytest.raises(TypeError):
            await layer.receive(name)
        with pytest.raises(TypeError):
            await layer.group_add("room", name)
        with pytest.raises(TypeError):
            await layer.group_discard("room", name)


@pytest.mark.asyncio
@pytest.mark.parametrize("group", [*BAD_GROUPS, 7])
async def test_bad_group_names_are_refused_everywhere(case: LayerCase, group: Any) -> None:
    async with case.layer() as layer:
        with pytest.raises(TypeError):
            layer.require_valid_group_name(group)
        with pytest.raises(TypeError):
            await layer.group_add(group, "chan")
        with pytest.raises(TypeError):
            await layer.group_discard(group, "chan")
        with pytest.raises(TypeError):
            await layer.group_send(group, msg(1))


@pytest.mark.parametrize(
    ("kind", "name", "says"),
    [
        ("channel", 42, "must be a str, not int"),
        ("channel", "", "is empty"),
        ("channel", "x" * 120, "is 120 characters long; names must be shorter than 100"),
        ("channel", "has space", "contains ' '"),
        ("channel", "a;b c", "contains ' ', ';'"),
        ("channel", "two!bangs!", "more than one '!'"),
        ("channel", "!leading", "at least one character before the '!'"),
        ("channel", "new\nline", "contains '\\n'"),
        ("group", "local!part", "only channel names may contain"),
        ("group", "star*", "contains '*'; names may only contain ASCII letters"),
    ],
)
def test_name_errors_say_what_is_wrong(kind: str, name: Any, says: str) -> None:
    layer = InMemoryChannelLayer()
    check = (
        layer.require_valid_channel_name if kind == "channel" else layer.require_valid_group_name
    )
    with pytest.raises(InvalidNameError) as info:
        check(name)
    assert says in str(info.value)
    assert isinstance(info.value, TypeError)


def test_receive_only_names_must_end_at_the_bang() -> None:
    layer = InMemoryChannelLayer()
    assert layer.require_valid_channel_name("daphne.x!", receive=True)
    assert layer.require_valid_channel_name("plain", receive=True)
    with pytest.raises(InvalidNameError, match="after its '!'"):
        layer.require_valid_channel_name("daphne.x!abc", receive=True)
    assert layer.valid_channel_names(["a", "b!c"])
    with pytest.raises(InvalidNameError):
        layer.valid_channel_names([])


# -- capacity -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_send_to_a_full_channel_raises_channel_full(case: LayerCase) -> None:
    async with case.layer(capacity=3) as layer:
        for n in range(3):
            await layer.send("small", msg(n))
        with pytest.raises(case.full_error):
            await layer.send("small", msg(3))
        assert await layer.receive("small") == msg(0)
        await layer.send("small", msg(4))
        assert [await layer.receive("small") for _ in range(3)] == [msg(1), msg(2), msg(4)]


def test_channel_full_names_the_channel_and_is_channels_own() -> None:
    from channels.exceptions import ChannelFull as ChannelsChannelFull

    error = ChannelFull("room.x", 5)
    assert isinstance(error, ChannelsChannelFull)
    assert error.channel == "room.x" and error.capacity == 5
    assert "'room.x' is full" in str(error) and "5" in str(error)
    assert InMemoryChannelLayer.ChannelFull is ChannelFull


@pytest.mark.asyncio
async def test_capacity_globs_first_match_wins(case: LayerCase) -> None:
    capacities = {"chat.special": 1, "chat.*": 3, re.compile(r"raw\.\d+$"): 4}
    async with case.layer(capacity=2, channel_capacity=capacities) as layer:
        assert layer.get_capacity("chat.special") == 1
        assert layer.get_capacity("chat.other") == 3
        assert layer.get_capacity("raw.12") == 4
        assert layer.get_capacity("raw.x") == 2
        assert layer.get_capacity("chatter") == 2
        assert layer.get_capacity("nochat.special") == 2
        for channel, capacity in [("chat.special", 1), ("chat.other", 3), ("raw.7", 4), ("b", 2)]:
            for n in range(capacity):
                await layer.send(channel, msg(n))
            with pytest.raises(case.full_error):
                await layer.send(channel, msg(capacity))


@pytest.mark.asyncio
async def test_capacity_pattern_order_matters(case: LayerCase) -> None:
    async with case.layer(channel_capacity={"chat.*": 3, "chat.special": 1}) as layer:
        assert layer.get_capacity("chat.special") == 3


def test_bad_settings_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match="capacity=0 must be a whole number above 0"):
        InMemoryChannelLayer(capacity=0)
    with pytest.raises(ValueError, match="expiry=-1"):
        InMemoryChannelLayer(expiry=-1)
    with pytest.raises(ValueError, match=r"channel_capacity\['a\.\*'\]=1.5"):
        InMemoryChannelLayer(channel_capacity={"a.*": 1.5})
    with pytest.raises(ValueError, match="keys must be glob strings"):
        InMemoryChannelLayer(channel_capacity={3: 1})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="unknown settings colour"):
        InMemoryChannelLayer(colour="blue")
    # channels_redis's own options are accepted, so one CONFIG serves both.
    layer = InMemoryChannelLayer(hosts=["redis://x"], prefix="p", symmetric_encryption_keys=["k"])
    assert layer.capacity == 100 and layer.expiry == 60 and layer.group_expiry == 86400


# -- groups -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_group_send_reaches_each_member_once(case: LayerCase) -> None:
    async with case.layer() as layer:
        members = [await layer.new_channel() for _ in range(3)] + ["plain.member"]
        for channel in members:
            await layer.group_add("room", channel)
        await layer.group_add("room", members[0])  # again: still one membership
        await layer.group_add("other", "outsider")
        await layer.group_send("room", msg(1))
        for channel in members:
            assert await layer.receive(channel) == msg(1)
        for channel in [*members, "outsider"]:
            assert await receive_within(layer, channel, 0.2) is None


@pytest.mark.asyncio
async def test_each_group_member_gets_its_own_copy(case: LayerCase) -> None:
    async with case.layer() as layer:
        await layer.group_add("room", "a")
        await layer.group_add("room", "b")
        await layer.group_send("room", {"type": "t", "items": [1]})
        first = await layer.receive("a")
        first["items"].append(2)
        assert await layer.receive("b") == {"type": "t", "items": [1]}


@pytest.mark.asyncio
async def test_group_discard_stops_delivery_and_ignores_non_members(case: LayerCase) -> None:
    async with case.layer() as layer:
        await layer.group_add("room", "stays")
        await layer.group_add("room", "leaves")
        await layer.group_discard("room", "leaves")
        await layer.group_discard("room", "never.joined")
        await layer.group_discard("no.such.group", "stays")
        await layer.group_send("room", msg(1))
        assert await layer.receive("stays") == msg(1)
        assert await receive_within(layer, "leaves", 0.2) is None


@pytest.mark.asyncio
async def test_group_send_to_an_empty_or_unknown_group_does_nothing(case: LayerCase) -> None:
    async with case.layer() as layer:
        await layer.group_send("nobody.here", msg(1))
        await layer.group_add("emptied", "chan")
        await layer.group_discard("emptied", "chan")
        await layer.group_send("emptied", msg(2))
        assert await receive_within(layer, "chan", 0.2) is None


@pytest.mark.asyncio
async def test_group_send_skips_full_channels_without_raising(case: LayerCase) -> None:
    async with case.layer(capacity=1) as layer:
        await layer.group_add("room", "full")
        await layer.group_add("room", "free")
        await layer.send("full", msg(0))
        await layer.group_send("room", msg(1))
        assert await layer.receive("free") == msg(1)
        assert await layer.receive("full") == msg(0)
        assert await receive_within(layer, "full", 0.2) is None


@pytest.mark.asyncio
async def test_group_send_wakes_waiting_members(case: LayerCase) -> None:
    async with case.layer() as layer:
        members = [await layer.new_channel() for _ in range(5)]
        for channel in members:
            await layer.group_add("live", channel)
        waiting = [asyncio.create_task(layer.receive(channel)) for channel in members]
        await asyncio.sleep(0)
        await case.pause()
        await layer.group_send("live", msg(7))
        assert await asyncio.wait_for(asyncio.gather(*waiting), 10) == [msg(7)] * 5


# -- expiry -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_unread_messages_expire(case: LayerCase) -> None:
    async with case.layer(expiry=case.short_expiry) as layer:
        await layer.send("stale", msg(1))
        await asyncio.sleep(case.expiry_wait)
        await layer.send("stale", msg(2))
        assert await layer.receive("stale") == msg(2)
        assert await receive_within(layer, "stale", 0.3) is None


@pytest.mark.asyncio
async def test_expired_messages_no_longer_count_against_capacity(case: LayerCase) -> None:
    async with case.layer(expiry=case.short_expiry, capacity=2) as layer:
        await layer.send("cap", msg(1))
        await layer.send("cap", msg(2))
        await asyncio.sleep(case.expiry_wait)
        await layer.send("cap", msg(3))
        await layer.send("cap", msg(4))
        assert [await layer.receive("cap") for _ in range(2)] == [msg(3), msg(4)]


@pytest.mark.asyncio
async def test_group_memberships_expire(case: LayerCase) -> None:
    async with case.layer(group_expiry=case.short_expiry) as layer:
        await layer.group_add("brief", "member")
        await asyncio.sleep(case.expiry_wait)
        await layer.group_add("brief", "newcomer")
        await layer.group_send("brief", msg(1))
        assert await layer.receive("newcomer") == msg(1)
        assert await receive_within(layer, "member", 0.3) is None


@pytest.mark.asyncio
async def test_group_add_renews_a_membership() -> None:
    layer = InMemoryChannelLayer(group_expiry=1.0)
    await layer.group_add("renewed", "member")
    await asyncio.sleep(0.6)
    await layer.group_add("renewed", "member")
    await asyncio.sleep(0.6)  # past the first membership's end, not the renewed one's
    await layer.group_send("renewed", msg(1))
    assert await receive_within(layer, "member", 0.5) == msg(1)


@pytest.mark.asyncio
async def test_a_channel_whose_message_expires_leaves_its_groups() -> None:
    # Nobody read it for a whole expiry: the reader is taken for gone.
    layer = InMemoryChannelLayer(expiry=0.2)
    await layer.group_add("room", "dead")
    await layer.group_add("lobby", "dead")
    await layer.group_add("room", "alive")
    await layer.group_send("room", msg(1))
    assert await layer.receive("alive") == msg(1)
    await asyncio.sleep(0.4)
    await layer.group_send("room", msg(2))
    await layer.group_send("lobby", msg(3))
    assert await layer.receive("alive") == msg(2)
    assert await receive_within(layer, "dead", 0.3) is None
    # Joining again after that works as usual.
    await layer.group_add("room", "dead")
    await layer.group_send("room", msg(4))
    assert await layer.receive("dead") == msg(4)


@pytest.mark.asyncio
@pytest.mark.parametrize("trigger", ["receive", "group_send"])
async def test_expired_messages_on_untouched_channels_are_swept(trigger: str) -> None:
    # The moments Channels' own layer cleans up: every receive and group_send.
    layer = InMemoryChannelLayer(expiry=0.5)
    for n in range(50):
        await layer.send(f"abandoned.{n}", msg(n))
    await asyncio.sleep(0.6)
    await layer.send("trigger", msg(0))  # a send to another channel leaves them be
    assert len(layer.channels) == 51
    if trigger == "receive":
        await layer.receive("trigger")
        assert dict(layer.channels) == {}
    else:
        await layer.group_send("nobody", msg(1))
        assert set(layer.channels) == {"trigger"}


# -- flush and close ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_flush_drops_messages_and_groups(case: LayerCase) -> None:
    async with case.layer() as layer:
        await layer.send("kept", msg(1))
        await layer.group_add("room", "member")
        await layer.flush()
        assert await receive_within(layer, "kept", 0.3) is None
        await layer.group_send("room", msg(2))
        assert await receive_within(layer, "member", 0.3) is None
        # The layer works as before afterwards.
        await layer.send("kept", msg(3))
        assert await layer.receive("kept") == msg(3)


@pytest.mark.asyncio
async def test_flush_keeps_waiting_receivers_waiting() -> None:
    layer = InMemoryChannelLayer()
    waiting = asyncio.create_task(layer.receive("patient"))
    await asyncio.sleep(0)
    await layer.flush()
    await asyncio.sleep(0)
    assert not waiting.done()
    await layer.send("patient", msg(1))
    assert await asyncio.wait_for(waiting, 2) == msg(1)


@pytest.mark.asyncio
async def test_close_is_harmless_and_the_layer_stays_usable() -> None:
    layer = InMemoryChannelLayer()
    await layer.send("c", msg(1))
    await layer.close()
    assert await layer.receive("c") == msg(1)


@pytest.mark.asyncio
async def test_the_base_layer_names_what_a_subclass_must_provide() -> None:
    layer = BaseChannelLayer()
    assert layer.extensions == []
    for call in (
        layer.send("c", msg(1)),
        layer.receive("c"),
        layer.new_channel(),
        layer.group_add("g", "c"),
        layer.group_discard("g", "c"),
        layer.group_send("g", msg(1)),
        layer.flush(),
    ):
        with pytest.raises(NotImplementedError, match="BaseChannelLayer does not implement"):
            await call
    await layer.close()


# -- looking inside: .channels and .groups, as Channels' layer shows them ---------------
#
# Tests written for Channels' own in-memory layer read these two attributes;
# the shapes and the moments entries come and go are the ones that layer has.


@pytest.mark.asyncio
async def test_a_channel_is_listed_while_it_holds_unread_messages() -> None:
    layer = InMemoryChannelLayer(capacity=3)
    assert "inbox" not in layer.channels and len(layer.channels) == 0
    await layer.send("inbox", msg(1))
    await layer.send("inbox", msg(2))
    queue = layer.channels["inbox"]
    assert (queue.qsize(), queue.empty(), queue.full(), queue.maxsize) == (2, False, False, 3)
    await layer.send("inbox", msg(3))
    assert layer.channels["inbox"].full()
    assert await layer.receive("inbox") == msg(1)
    assert list(layer.channels) == ["inbox"] and layer.channels["inbox"].qsize() == 2
    await layer.receive("inbox")
    await layer.receive("inbox")
    # Emptied by its last receive: gone, as from Channels' dict.
    assert "inbox" not in layer.channels
    assert layer.channels == {} and layer.channels.get("inbox") is None


@pytest.mark.asyncio
async def test_channel_capacity_settings_show_as_maxsize() -> None:
    layer = InMemoryChannelLayer(capacity=5, channel_capacity={"chat.*": 2})
    await layer.send("chat.room", msg(1))
    await layer.send("other", msg(1))
    assert layer.channels["chat.room"].maxsize == 2
    assert layer.channels["other"].maxsize == 5


@pytest.mark.asyncio
async def test_a_waiting_receive_lists_its_channel_until_it_returns_or_gives_up() -> None:
    layer = InMemoryChannelLayer()
    waiting = asyncio.create_task(layer.receive("listening"))
    await asyncio.sleep(0)
    # A consumer waiting for messages: Channels' tests find its name this way.
    assert list(layer.channels.keys()) == ["listening"]
    assert layer.channels["listening"].empty()
    await layer.send("listening", msg(1))
    # Handed over, but the receive has not returned it yet: still listed.
    assert "listening" in layer.channels
    assert await waiting == msg(1)
    assert "listening" not in layer.channels

    giving_up = asyncio.create_task(layer.receive("listening"))
    await asyncio.sleep(0)
    assert "listening" in layer.channels
    giving_up.cancel()
    await asyncio.gather(giving_up, return_exceptions=True)
    assert "listening" not in layer.channels


@pytest.mark.asyncio
async def test_deleting_a_listed_channel_drops_its_messages_but_no_receive() -> None:
    layer = InMemoryChannelLayer()
    # Messages only: they go, and so does the entry.
    await layer.send("dropped", msg(1))
    del layer.channels["dropped"]
    assert "dropped" not in layer.channels
    assert await receive_within(layer, "dropped", 0.1) is None
    with pytest.raises(KeyError):
        del layer.channels["never-there"]

    # A message already handed to a receive still reaches it.
    handed = asyncio.create_task(layer.receive("handed"))
    await asyncio.sleep(0)
    await layer.send("handed", msg(2))
    del layer.channels["handed"]
    assert "handed" not in layer.channels
    assert await asyncio.wait_for(handed, 2) == msg(2)
    assert "handed" not in layer.channels

    # A receive still waiting keeps the name listed, and gets the next message.
    waiting = asyncio.create_task(layer.receive("waited"))
    await asyncio.sleep(0)
    del layer.channels["waited"]
    assert "waited" in layer.channels and not waiting.done()
    await layer.send("waited", msg(3))
    assert await asyncio.wait_for(waiting, 2) == msg(3)
    assert layer.channels == {}


@pytest.mark.asyncio
async def test_the_views_refuse_to_store_anything() -> None:
    layer = InMemoryChannelLayer()
    await layer.group_add("room", "member")
    with pytest.raises(TypeError, match="send"):
        layer.channels["x"] = asyncio.Queue()  # type: ignore[index]
    with pytest.raises(TypeError, match="group_add"):
        layer.groups["room"] = {}  # type: ignore[index]
    with pytest.raises(TypeError):
        layer.groups["room"]["intruder"] = 0.0  # type: ignore[index]
    with pytest.raises(AttributeError):
        layer.channels = {}  # type: ignore[misc]
    assert dict(layer.groups["room"]).keys() == {"member"}


@pytest.mark.asyncio
async def test_groups_map_each_member_to_the_wall_clock_time_it_joined() -> None:
    layer = InMemoryChannelLayer()
    assert layer.groups == {}
    before = time.time()
    await layer.group_add("room", "alice")
    await layer.group_add("room", "bob")
    await layer.group_add("lobby", "alice")
    after = time.time()
    assert set(layer.groups) == {"room", "lobby"}
    assert set(layer.groups["room"]) == {"alice", "bob"}
    for group, members in layer.groups.items():
        for channel, joined in members.items():
            assert isinstance(joined, float)
            assert before - 0.5 <= joined <= after + 0.5, (group, channel, joined)
    first = layer.groups["room"]["alice"]
    await asyncio.sleep(0.05)
    await layer.group_add("room", "alice")  # renewed: a later time
    assert layer.groups["room"]["alice"] > first
    await layer.group_discard("room", "alice")
    await layer.group_discard("room", "bob")
    # A group goes with its last member, as in Channels' group_discard.
    assert layer.groups == {"lobby": {"alice": layer.groups["lobby"]["alice"]}}
    del layer.groups["lobby"]
    assert layer.groups == {}
    await layer.group_send("lobby", msg(1))
    assert await receive_within(layer, "alice", 0.1) is None


@pytest.mark.asyncio
async def test_sends_leave_expired_messages_for_the_next_receive_to_clean_up() -> None:
    # Channels' moments: receive and group_send clean every channel; send does not.
    layer = InMemoryChannelLayer(expiry=0.5)
    await layer.send("unread", msg(1))
    await asyncio.sleep(0.6)
    await layer.send("fresh", msg(2))
    assert set(layer.channels) == {"unread", "fresh"}
    assert await layer.receive("fresh") == msg(2)
    assert layer.channels == {}


@pytest.mark.asyncio
async def test_cleanup_takes_a_channel_with_expired_messages_out_of_its_groups() -> None:
    layer = InMemoryChannelLayer(expiry=0.1)
    await layer.group_add("room", "dead")
    await layer.group_add("room", "alive")
    await layer.group_add("lobby", "dead")
    await layer.group_send("room", msg(1))
    assert await layer.receive("alive") == msg(1)
    await asyncio.sleep(0.15)
    assert set(layer.groups["room"]) == {"dead", "alive"}  # nothing has cleaned up yet
    await layer.group_send("room", msg(2))
    assert set(layer.groups) == {"room"} and set(layer.groups["room"]) == {"alive"}
    assert "dead" not in layer.channels
    assert set(layer.channels) == {"alive"}


@pytest.mark.asyncio
async def test_a_send_to_a_full_channel_drops_its_expired_messages_first() -> None:
    # Where Channels' layer would raise ChannelFull for messages nobody can read.
    layer = InMemoryChannelLayer(expiry=0.5, capacity=2)
    await layer.group_add("room", "slow")
    await layer.send("slow", msg(1))
    await layer.send("slow", msg(2))
    await asyncio.sleep(0.6)
    await layer.send("slow", msg(3))
    assert layer.channels["slow"].qsize() == 1
    assert layer.groups == {}  # it expired messages: taken for gone, as ever
    assert await layer.receive("slow") == msg(3)


@pytest.mark.asyncio
async def test_lapsed_memberships_leave_groups_at_the_next_cleanup() -> None:
    layer = InMemoryChannelLayer(group_expiry=1.0)
    await layer.group_add("room", "lapsing")
    await layer.group_add("room", "renewed")
    await asyncio.sleep(0.6)
    await layer.group_add("room", "renewed")
    await asyncio.sleep(0.6)  # past the first memberships' end, not the renewed one's
    await layer.send("elsewhere", msg(0))  # a send is not a cleanup moment
    assert set(layer.groups["room"]) == {"lapsing", "renewed"}
    await layer.receive("elsewhere")
    assert set(layer.groups["room"]) == {"renewed"}
    await asyncio.sleep(0.5)
    await layer.group_send("room", msg(1))
    assert layer.groups == {}
    assert await receive_within(layer, "renewed", 0.1) is None


@pytest.mark.asyncio
async def test_flush_leaves_only_channels_with_receives_waiting() -> None:
    layer = InMemoryChannelLayer()
    waiting = asyncio.create_task(layer.receive("patient"))
    await asyncio.sleep(0)
    await layer.send("queued", msg(1))
    await layer.group_add("room", "patient")
    await layer.flush()
    assert list(layer.channels) == ["patient"] and layer.groups == {}
    await layer.send("patient", msg(2))
    assert await asyncio.wait_for(waiting, 2) == msg(2)
    assert layer.channels == {}


@pytest.mark.asyncio
async def test_clearing_the_views_drops_messages_and_memberships() -> None:
    layer = InMemoryChannelLayer()
    waiting = asyncio.create_task(layer.receive("patient"))
    await asyncio.sleep(0)
    for name in ("a", "b"):
        await layer.send(name, msg(1))
        await layer.group_add("room", name)
    layer.channels.clear()
    assert list(layer.channels) == ["patient"]
    layer.groups.clear()
    assert layer.groups == {}
    await layer.send("patient", msg(2))
    assert await asyncio.wait_for(waiting, 2) == msg(2)


@pytest.mark.asyncio
async def test_bookkeeping_stays_small_over_many_short_lived_channels_and_groups() -> None:
    # Every message and membership leaves an expiry record; records of
    # channels and memberships that are gone must not pile up.
    layer = InMemoryChannelLayer(expiry=60, group_expiry=3600)
    for n in range(3000):
        name = f"short.{n}"
        await layer.send(name, msg(n))
        await layer.group_add("room", name)
        assert await layer.receive(name) == msg(n)
        await layer.group_discard("room", name)
        await layer.group_add("lobby", "stayer")  # renewed over and over
    assert layer.channels == {} and set(layer.groups) == {"lobby"}
    assert len(layer._due) + len(layer._due_later) <= 70
    assert len(layer._joins) <= 70


@pytest.mark.asyncio
async def test_expiry_records_rebuilt_among_stale_ones_still_find_every_message() -> None:
    layer = InMemoryChannelLayer(expiry=0.5)
    for n in range(100):
        await layer.send(f"keep.{n}", msg(n))
    # Pairs of short-lived channels: the first of each pair leaves a stale
    # record behind, enough of them to make the layer rebuild its records.
    for n in range(600):
        await layer.send(f"a.{n}", msg(n))
        await layer.send(f"b.{n}", msg(n))
        await layer.receive(f"a.{n}")
        await layer.receive(f"b.{n}")
    assert len(layer._due) + len(layer._due_later) <= 2 * 100 + 64
    assert len(layer.channels) == 100
    await asyncio.sleep(0.6)
    await layer.group_send("nobody", msg(0))
    assert layer.channels == {}


@pytest.mark.asyncio
async def test_a_message_put_back_late_still_expires_on_time() -> None:
    """A handed message goes back in front of a newer one, and expires before it."""
    layer = InMemoryChannelLayer(expiry=0.5)
    await layer.group_add("room", "late")
    # Driven by hand, so it is handed a message but never resumed to return it.
    receive = layer.receive("late")
    receive.send(None)
    await layer.send("late", msg(1))  # handed over, deadline in 0.5 s
    await asyncio.sleep(0.3)
    await layer.send("late", msg(2))  # queued, deadline 0.3 s after msg(1)'s
    with pytest.raises(asyncio.CancelledError):
        receive.throw(asyncio.CancelledError())
    assert layer.channels["late"].qsize() == 2  # msg(1) went back, in front
    await asyncio.sleep(0.3)  # msg(1) has expired, msg(2) not yet
    assert await layer.receive("late") == msg(2)
    assert layer.groups == {}  # msg(1) expired unread: taken for gone


@pytest.mark.asyncio
async def test_the_views_can_be_read_from_another_thread_while_the_layer_works() -> None:
    """A native OS thread (in both modes) reads the views while this loop churns."""
    layer = InMemoryChannelLayer(capacity=1000)
    problems: list[BaseException] = []
    state = {"stop": False, "done": False, "reads": 0}

    def reader() -> None:
        try:
            while not state["stop"]:
                for name, queue in layer.channels.items():
                    assert name.startswith("churn.") and queue.qsize() >= 0
                for members in layer.groups.values():
                    assert all(isinstance(joined, float) for joined in members.values())
                layer.channels == {}  # noqa: B015 - only that it does not raise
                state["reads"] += 1
        except BaseException as error:  # pragma: no cover - reported below
            problems.append(error)
        finally:
            state["done"] = True

    if HUB == "gevent":
        from gevent.monkey import get_original

        get_original("_thread", "start_new_thread")(reader, ())
    else:
        threading.Thread(target=reader, daemon=True).start()
    try:
        deadline = time.monotonic() + 30
        while not state["reads"] and not state["done"] and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        reads_before = state["reads"]
        for n in range(2000):
            name = f"churn.{n % 37}"
            await layer.send(name, msg(n))
            await layer.group_add(f"g{n % 11}", name)
            if n % 3:
                await layer.receive(name)
            if n % 5 == 0:
                await layer.group_discard(f"g{n % 11}", name)
            if n % 100 == 0:
                await asyncio.sleep(0.001)  # the reader gets the GIL for sure
        reads_during = state["reads"] - reads_before
    finally:
        state["stop"] = True
        deadline = time.monotonic() + 30
        while not state["done"] and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
    assert state["done"] and not problems, problems
    assert reads_during > 0


# -- cancellation ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_cancelled_receive_loses_no_later_message(case: LayerCase) -> None:
    async with case.layer() as layer:
        for _ in range(3):
            waiting = asyncio.create_task(layer.receive("cancelled"))
            await asyncio.sleep(0)
            await case.pause()
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
        # channels_redis: a BZPOPMIN the server has not yet dropped would
        # take the message for a client that has gone (see LayerCase.settle).
        await case.pause()
        await layer.send("cancelled", msg(1))
        assert await layer.receive("cancelled") == msg(1)


@pytest.mark.asyncio
async def test_timed_out_receives_racing_sends_lose_and_duplicate_nothing(
    case: LayerCase,
) -> None:
    """Receivers with ever shorter timeouts against a steady sender."""
    count = 300 if case.in_memory else 40
    # Redis gets gentler timeouts: channels_redis loses a message whenever a
    # receive is cancelled after the server popped it but before the reply
    # arrived (a few percent of messages at 0.1-5 ms timeouts; see
    # docs/layers.rst). The in-memory layer must lose nothing even so.
    case_timeouts = [0, 0.0001, 0.001, 0.005, 0.05] if case.in_memory else [0.05, 0.1, 0.3]
    async with case.layer(capacity=count) as layer:
        received: list[int] = []

        async def sender() -> None:
            for n in range(count):
                await layer.send("racy", msg(n))
                await asyncio.sleep(0 if n % 3 else 0.001)

        async def receiver(seed: int) -> None:
            rng = random.Random(seed)
            while len(received) < count:
                timeout = rng.choice(case_timeouts)
                got = await receive_within(layer, "racy", timeout)
                if got is not None:
                    received.append(got["n"])

        receivers = [asyncio.create_task(receiver(seed)) for seed in range(4)]
        await sender()
        await asyncio.wait_for(asyncio.gather(*receivers), 60)
        assert sorted(received) == list(range(count))


@pytest.mark.asyncio
async def test_a_message_handed_to_a_receiver_cancelled_before_it_ran_goes_back_first() -> None:
    layer = InMemoryChannelLayer()
    waiting = asyncio.create_task(layer.receive("handed"))
    await asyncio.sleep(0)
    await layer.send("handed", msg(1))  # handed to the waiting receive ...
    waiting.cancel()  # ... which is cancelled before it could return it
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await layer.send("handed", msg(2))
    assert await layer.receive("handed") == msg(1)
    assert await layer.receive("handed") == msg(2)
    assert layer._channels == {}


@pytest.mark.asyncio
async def test_a_handed_message_goes_to_the_next_waiting_receiver() -> None:
    layer = InMemoryChannelLayer()
    first = asyncio.create_task(layer.receive("relay"))
    await asyncio.sleep(0)
    second = asyncio.create_task(layer.receive("relay"))
    await asyncio.sleep(0)
    await layer.send("relay", msg(1))
    first.cancel()
    assert await asyncio.wait_for(second, 2) == msg(1)
    assert first.cancelled()


@pytest.mark.asyncio
async def test_cancelled_receives_leave_nothing_behind() -> None:
    layer = InMemoryChannelLayer()
    tasks = [asyncio.create_task(layer.receive(f"gone.{n % 10}")) for n in range(500)]
    await asyncio.sleep(0)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert layer._channels == {}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "cancel_first", [True, False], ids=["cancel-then-send", "send-then-cancel"]
)
async def test_cancellation_racing_delivery_across_loops(cancel_first: bool) -> None:
    """The receiver's loop is held up while a message is handed to it and it is cancelled.

    Its loop then runs the wake-up and the cancellation in either order; the
    message must go back to the channel either way.
    """
    layer = InMemoryChannelLayer()
    registered = threading.Event()
    gate = threading.Event()
    outcome: dict[str, Any] = {}

    async def receiver_side() -> None:
        task = asyncio.create_task(layer.receive("crossed"))
        await asyncio.sleep(0)
        outcome["loop"], outcome["task"] = asyncio.get_running_loop(), task
        registered.set()
        gate.wait()  # holds this loop still while the other side acts
        try:
            outcome["result"] = await task
        except asyncio.CancelledError:
            outcome["result"] = "cancelled"

    thread = threading.Thread(target=asyncio.run, args=(receiver_side(),))
    thread.start()
    try:
        while not registered.is_set():
            await asyncio.sleep(0.001)
        loop, task = outcome["loop"], outcome["task"]
        if cancel_first:
            loop.call_soon_threadsafe(task.cancel)
            await layer.send("crossed", msg(1))
        else:
            await layer.send("crossed", msg(1))
            loop.call_soon_threadsafe(task.cancel)
    finally:
        gate.set()
        while thread.is_alive():
            await asyncio.sleep(0.001)
    assert outcome["result"] == "cancelled"
    await layer.send("crossed", msg(2))
    assert await layer.receive("crossed") == msg(1)
    assert await layer.receive("crossed") == msg(2)


def test_a_send_from_another_loop_wakes_the_receiver_at_once() -> None:
    """Nothing else would wake the receiving loop before its 5 s timeout.

    So the message only arrives promptly if the send wakes that loop itself
    (Channels' own in-memory layer delivers it when the loop next wakes for
    some other reason).
    """
    layer = InMemoryChannelLayer()
    waiting = threading.Event()
    arrived: list[float] = []

    async def receiver() -> None:
        task = asyncio.create_task(layer.receive("prompt"))
        await asyncio.sleep(0)
        waiting.set()
        await asyncio.wait_for(task, 5)
        arrived.append(time.monotonic())

    thread = threading.Thread(target=asyncio.run, args=(receiver(),))
    thread.start()
    assert waiting.wait(5)
    time.sleep(0.05)
    sent = time.monotonic()
    async_to_sync(layer.send)("prompt", msg(1))
    thread.join(10)
    assert arrived, "the receive never returned"
    assert arrived[0] - sent < 0.5


def test_a_receiver_whose_loop_closed_gives_its_message_back() -> None:
    layer = InMemoryChannelLayer()
    abandoned = asyncio.new_event_loop()
    task = abandoned.create_task(layer.receive("orphaned"))
    abandoned.run_until_complete(asyncio.sleep(0))
    abandoned.close()  # without cancelling the receive

    async def main() -> list[Any]:
        await layer.send("orphaned", msg(1))
        await layer.send("orphaned", msg(2))
        return [await layer.receive("orphaned"), await layer.receive("orphaned")]

    assert asyncio.run(main()) == [msg(1), msg(2)]
    # When the dead task is collected its receive is closed: nothing is redelivered.
    del task
    gc.collect()

    async def after() -> Any:
        return await receive_within(layer, "orphaned", 0.1)

    assert asyncio.run(after()) is None


def test_a_receive_closed_before_delivery_is_dropped_by_the_next_call() -> None:
    layer = InMemoryChannelLayer()
    loop = asyncio.new_event_loop()
    coroutine = layer.receive("closing")
    future = loop.create_task(coroutine)
    loop.run_until_complete(asyncio.sleep(0))
    coroutine.close()  # GeneratorExit at the await: no lock taken there
    loop.close()
    del future

    async def main() -> Any:
        await layer.send("closing", msg(1))
        return await layer.receive("closing")

    assert asyncio.run(main()) == msg(1)
    assert layer._channels == {}


# -- one layer, many loops, threads and greenlets -------------------------------------


@dataclass
class Tally:
    """What the workers sent and received, checked at the end."""

    sent_work: list[str]
    got_work: list[str]
    sent_fanout: list[str]
    got_fanout: list[tuple[str, str]]
    members: list[str]
    errors: list[BaseException]

    @classmethod
    def new(cls) -> Tally:
        return cls([], [], [], [], [], [])

    def received(self) -> tuple[int, int]:
        return len(self.got_work), len(self.got_fanout)


WORK_CHANNELS = [f"work.{n}" for n in range(8)]


async def _receive_or_none(layer: Any, channel: str, timeout: float) -> Any:
    try:
        return await asyncio.wait_for(layer.receive(channel), timeout)
    except TimeoutError:
        return None


def run_mixed_workload(
    layer: InMemoryChannelLayer,
    *,
    spawn: Callable[[Callable[[], None]], Any],
    join: Callable[[Any], None],
    sync_workers: int,
    loop_workers: int,
    per_sender: int,
    extra_loop_spawn: Callable[[Callable[[], None]], Any] | None = None,
) -> Tally:
    """Sync workers (async_to_sync) and event-loop workers share one layer.

    Half the sync workers send, half receive; every loop worker runs senders
    and receivers as tasks. Work messages go to competing receivers on eight
    shared channels; fan-out messages go through ``group_send`` to a group
    with one member per loop worker and per receiving sync worker. Receivers
    time out and retry all the time, so cancellations race deliveries.
    """
    tally = Tally.new()
    stop = threading.Event()
    lock = threading.Lock()

    def note_sent(kind: list[str], ident: str) -> None:
        with lock:
            kind.append(ident)

    def guarded(body: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                body()
            except BaseException as exc:
                tally.errors.append(exc)
                stop.set()

        return run

    send = async_to_sync(layer.send)
    group_send = async_to_sync(layer.group_send)
    group_add = async_to_sync(layer.group_add)
    new_channel = async_to_sync(layer.new_channel)
    receive_or_none = async_to_sync(_receive_or_none)

    def sync_sender(worker: int) -> None:
        for n in range(per_sender):
            ident = f"sync{worker}.{n}"
            if n % 5 == 4:
                note_sent(tally.sent_fanout, ident)
                group_send("fanout", {"type": "fan", "id": ident})
            else:
                note_sent(tally.sent_work, ident)
                send(WORK_CHANNELS[(worker + n) % len(WORK_CHANNELS)], {"type": "w", "id": ident})

    def sync_receiver(worker: int, member: str) -> None:
        rng = random.Random(worker)
        channel = member
        while not stop.is_set():
            got = receive_or_none(layer, channel, rng.choice([0.001, 0.003, 0.01]))
            if got is None:
                # Nothing there: try another channel, as a busy worker would.
                channel = member if rng.random() < 0.5 else rng.choice(WORK_CHANNELS)
                continue
            if got["type"] == "fan":
                tally.got_fanout.append((member, got["id"]))
            else:
                tally.got_work.append(got["id"])

    def loop_worker(worker: int, member: str) -> None:
        async def receiver(channel: str, seed: int) -> None:
            rng = random.Random(seed)
            while not stop.is_set():
                got = await _receive_or_none(layer, channel, rng.choice([0.0005, 0.003, 0.03]))
                if got is None:
                    continue
                if got["type"] == "fan":
                    tally.got_fanout.append((member, got["id"]))
                else:
                    tally.got_work.append(got["id"])

        async def sender() -> None:
            for n in range(per_sender):
                ident = f"loop{worker}.{n}"
                note_sent(tally.sent_work, ident)
                await layer.send(WORK_CHANNELS[n % len(WORK_CHANNELS)], {"type": "w", "id": ident})
                if n % 7 == 0:
                    await asyncio.sleep(0.001)

        async def main() -> None:
            receivers = [
                asyncio.create_task(receiver(channel, worker * 100 + index))
                for index, channel in enumerate([member, *WORK_CHANNELS[worker % 2 :: 2]])
            ]
            await sender()
            await asyncio.gather(*receivers)

        asyncio.run(main())

    # Members join before anything is sent, so each fan-out has a fixed audience.
    receiving = list(range(sync_workers // 2, sync_workers))
    sync_members = {worker: new_channel("sync") for worker in receiving}
    loop_members = [new_channel("loop") for _ in range(loop_workers)]
    tally.members = [*sync_members.values(), *loop_members]
    for member in tally.members:
        group_add("fanout", member)

    handles = []
    for worker, member in enumerate(loop_members):
        starter = extra_loop_spawn if (extra_loop_spawn and worker == 0) else spawn
        handles.append(starter(guarded(lambda w=worker, m=member: loop_worker(w, m))))
    for worker, member in sync_members.items():
        handles.append(spawn(guarded(lambda w=worker, m=member: sync_receiver(w, m))))
    sender_handles = [
        spawn(guarded(lambda w=worker: sync_sender(w))) for worker in range(sync_workers // 2)
    ]
    # Known in advance, so the end is plain to see.
    fanout_per_sender = sum(1 for n in range(per_sender) if n % 5 == 4)
    work_total = (sync_workers // 2) * (per_sender - fanout_per_sender) + loop_workers * per_sender
    fanout_total = (sync_workers // 2) * fanout_per_sender * len(tally.members)
    handles.extend(sender_handles)
    deadline = time.monotonic() + 60
    while not stop.is_set() and time.monotonic() < deadline:
        if tally.received() == (work_total, fanout_total):
            break
        time.sleep(0.02)
    stop.set()
    for handle in handles:
        join(handle)
    # Messages still queued when the receivers stopped (the deadline passed)
    # were not lost: count them too, so the check below sees every message.
    leftovers = async_to_sync(_drain)(layer, [*WORK_CHANNELS, *tally.members])
    for channel, got in leftovers:
        if got["type"] == "fan":
            tally.got_fanout.append((channel, got["id"]))
        else:
            tally.got_work.append(got["id"])
    return tally


async def _drain(layer: Any, channels: list[str]) -> list[tuple[str, Any]]:
    found = []
    for channel in channels:
        while (got := await _receive_or_none(layer, channel, 0.01)) is not None:
            found.append((channel, got))
    return found


def check_tally(tally: Tally) -> None:
    assert not tally.errors, tally.errors
    duplicated = [ident for ident, seen in Counter(tally.got_work).items() if seen > 1]
    assert not duplicated, f"delivered twice: {duplicated[:10]}"
    missing = sorted(set(tally.sent_work) - set(tally.got_work))
    assert not missing, f"lost {len(missing)}: {missing[:10]}"
    assert sorted(tally.got_work) == sorted(tally.sent_work)
    expected_fanout = Counter(
        (member, ident) for member in tally.members for ident in tally.sent_fanout
    )
    got_fanout = Counter(tally.got_fanout)
    assert got_fanout == expected_fanout, (
        f"fan-out lost {sum((expected_fanout - got_fanout).values())}, "
        f"duplicated {sum((got_fanout - expected_fanout).values())}"
    )


def _thread_spawn(body: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread


def _thread_join(thread: threading.Thread) -> None:
    thread.join(90)
    assert not thread.is_alive(), "a worker did not finish"


@pytest.mark.threads_only
def test_threads_with_loops_and_sync_callers_share_one_layer() -> None:
    """Four OS threads running event loops, twelve more calling through async_to_sync."""
    layer = InMemoryChannelLayer(capacity=100_000)
    tally = run_mixed_workload(
        layer,
        spawn=_thread_spawn,
        join=_thread_join,
        sync_workers=12,
        loop_workers=4,
        per_sender=150,
    )
    check_tally(tally)
    print(
        f"\n[threads] {len(tally.sent_work)} work + {len(tally.sent_fanout)}x"
        f"{len(tally.members)} fan-out messages, none lost or duplicated"
    )
    assert len(tally.sent_work) == 6 * 120 + 4 * 150


@pytest.mark.gevent_only
def test_fifty_greenlets_and_two_loops_share_one_layer() -> None:
    """Fifty greenlets through async_to_sync, two greenlets running event loops."""
    import gevent

    layer = InMemoryChannelLayer(capacity=100_000)

    def join(greenlet: Any) -> None:
        greenlet.join(90)
        assert greenlet.dead, "a greenlet did not finish"

    tally = run_mixed_workload(
        layer,
        spawn=gevent.spawn,
        join=join,
        sync_workers=50,
        loop_workers=2,
        per_sender=60,
    )
    check_tally(tally)
    print(
        f"\n[gevent] {len(tally.sent_work)} work + {len(tally.sent_fanout)}x"
        f"{len(tally.members)} fan-out messages, none lost or duplicated"
    )
    assert len(tally.sent_work) == 25 * 48 + 2 * 60


@pytest.mark.gevent_only
def test_greenlets_and_a_loop_on_a_native_thread_share_one_layer() -> None:
    """One of the loops runs on a native OS thread, the rest on greenlets."""
    import gevent
    from gevent.monkey import get_original

    start_native_thread = get_original("_thread", "start_new_thread")
    layer = InMemoryChannelLayer(capacity=100_000)

    class NativeHandle:
        # A flag rather than Thread.is_alive(): the original Thread class
        # still finds gevent's patched locks in its module, so asking it
        # from a greenlet does not tell reliably when the thread ended.
        def __init__(self, body: Callable[[], None]) -> None:
            self.done = False
            start_native_thread(self.run, (body,))

        def run(self, body: Callable[[], None]) -> None:
            try:
                body()
            finally:
                self.done = True

    def join(handle: Any) -> None:
        if isinstance(handle, gevent.Greenlet):
            handle.join(90)
            assert handle.dead, "a greenlet did not finish"
            return
        deadline = time.monotonic() + 90
        while not handle.done:  # a blocking wait would stall every greenlet
            assert time.monotonic() < deadline, "the native thread did not finish"
            gevent.sleep(0.01)

    tally = run_mixed_workload(
        layer,
        spawn=gevent.spawn,
        join=join,
        sync_workers=20,
        loop_workers=2,
        per_sender=40,
        extra_loop_spawn=NativeHandle,
    )
    check_tally(tally)


def test_sync_code_sends_and_receives_through_async_to_sync() -> None:
    layer = InMemoryChannelLayer()
    send = async_to_sync(layer.send)
    receive = async_to_sync(layer.receive)
    results: list[Any] = []
    receiver = threading.Thread(target=lambda: results.append(receive("sync.chan")))
    receiver.start()
    time.sleep(0.05)
    send("sync.chan", msg(1))
    receiver.join(10)
    assert results == [msg(1)]
    async_to_sync(layer.group_add)("room", "sync.chan")
    async_to_sync(layer.group_send)("room", msg(2))
    assert receive("sync.chan") == msg(2)


def test_two_layers_never_hand_out_the_same_name() -> None:
    first, second = InMemoryChannelLayer(), InMemoryChannelLayer()
    names = {async_to_sync(layer.new_channel)() for layer in (first, second) for _ in range(50)}
    assert len(names) == 100
