"""Django Channels consumers, unchanged, on ``asgigreen.layers.InMemoryChannelLayer``.

Channels imports ``asgiref``, and ``sys.modules`` is process-wide, so each
scenario runs in a fresh interpreter that calls
``asgigreen.install_as_asgiref()`` before Django or Channels is imported and
configures Django with::

    CHANNEL_LAYERS = {"default": {"BACKEND": "asgigreen.layers.InMemoryChannelLayer"}}

The child runs in the mode pytest runs in: plain (threads hub) under
``python -m pytest``, gevent-monkeypatched (gevent hub) under
``python -m gevent.monkey --module pytest``. It checks that real asgiref was
never loaded (``djangoproject.checks``) and prints OK last.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from asgigreen import hubs

pytest.importorskip("channels", reason="Django Channels is not installed")

pytestmark = pytest.mark.timeout(180)

TESTS_DIR = Path(__file__).resolve().parent
CHILD_TIMEOUT = 120
HUB = hubs.get_hub().name

PRELUDE = {
    "threads": "",
    "gevent": "from gevent import monkey\nmonkey.patch_all()\n",
}

# Django and Channels set up inside the child; the consumers under test.
SETUP = """
from djangoproject.checks import assert_aliased, watch_real_asgiref
watch_real_asgiref()
{patch}
import asgigreen
asgigreen.install_as_asgiref()

import asyncio, json, threading
import django
from django.conf import settings

settings.configure(
    SECRET_KEY="asgigreen-layer-tests",
    INSTALLED_APPS=[],
    DATABASES={{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}}},
    CHANNEL_LAYERS={{
        "default": {{
            "BACKEND": "asgigreen.layers.InMemoryChannelLayer",
            # channels_redis's connection options are accepted and ignored,
            # so this block would serve channels_redis unchanged.
            "CONFIG": {{"capacity": 50, "expiry": 30, "hosts": ["redis://127.0.0.1:6379"]}},
        }}
    }},
)
django.setup()

from asgiref.sync import async_to_sync
from channels.generic.websocket import AsyncWebsocketConsumer, WebsocketConsumer
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

import asgigreen.layers


class AsyncChat(AsyncWebsocketConsumer):
    groups = ["room"]

    async def connect(self):
        await self.accept()
        await self.send(text_data=json.dumps({{"channel": self.channel_name}}))

    async def receive(self, text_data=None, bytes_data=None):
        await self.channel_layer.group_send(
            "room", {{"type": "chat.message", "text": text_data, "by": "async"}}
        )

    async def chat_message(self, event):
        await self.send(text_data=json.dumps({{"to": "async", **event}}))


class SyncChat(WebsocketConsumer):
    groups = ["room"]

    def connect(self):
        self.accept()
        self.send(text_data=json.dumps({{"channel": self.channel_name}}))

    def receive(self, text_data=None, bytes_data=None):
        async_to_sync(self.channel_layer.group_send)(
            "room", {{"type": "chat.message", "text": text_data, "by": "sync"}}
        )

    def chat_message(self, event):
        self.send(text_data=json.dumps({{"to": "sync", **event}}))


async def next_json(communicator):
    return json.loads(await communicator.receive_from(timeout=5))
"""


def run_child(body: str, tmp_path: Path) -> str:
    """Run SETUP plus ``body`` in a fresh interpreter in this run's mode; return stdout."""
    code = SETUP.format(patch=PRELUDE[HUB]) + textwrap.dedent(body)
    env = {k: v for k, v in os.environ.items() if k not in ("ASGIGREEN_HUB", "PYTHONPATH")}
    env["PYTHONPATH"] = str(TESTS_DIR)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
    )
    assert result.returncode == 0 and result.stdout.rstrip().endswith("OK"), (
        f"child failed ({result.returncode})\n--- stdout\n{result.stdout}\n"
        f"--- stderr\n{result.stderr}"
    )
    return result.stdout


def test_websocket_consumers_chat_through_the_layer(tmp_path: Path) -> None:
    """An async and a sync consumer in one group; messages from each reach both."""
    run_child(
        f"""
        async def main():
            layer = get_channel_layer()
            assert type(layer) is asgigreen.layers.InMemoryChannelLayer, type(layer)
            assert layer.capacity == 50 and layer.expiry == 30

            chat_a = WebsocketCommunicator(AsyncChat.as_asgi(), "/ws/async/")
            chat_s = WebsocketCommunicator(SyncChat.as_asgi(), "/ws/sync/")
            assert (await chat_a.connect(timeout=5))[0]
            assert (await chat_s.connect(timeout=5))[0]
            name_a = (await next_json(chat_a))["channel"]
            name_s = (await next_json(chat_s))["channel"]
            assert ".inmemory!" in name_a and name_a != name_s

            # A frame to each consumer becomes a group message to both.
            for sender, by in ((chat_a, "async"), (chat_s, "sync")):
                await sender.send_to(text_data=f"hello from {{by}}")
                for receiver, to in ((chat_a, "async"), (chat_s, "sync")):
                    got = await next_json(receiver)
                    assert got == {{
                        "to": to, "type": "chat.message", "text": f"hello from {{by}}", "by": by
                    }}, got

            # Straight to one consumer's channel name.
            await layer.send(name_s, {{"type": "chat.message", "text": "just you", "by": "test"}})
            assert (await next_json(chat_s))["text"] == "just you"
            assert await chat_a.receive_nothing(timeout=0.2)

            await chat_a.disconnect()
            await chat_s.disconnect()
            # Both left the group on disconnect: nobody gets this.
            await layer.group_send("room", {{"type": "chat.message", "text": "gone"}})
            assert await layer.group_send("room", {{"type": "chat.message"}}) is None

        asyncio.run(main())
        assert_aliased({HUB!r})
        print("OK")
        """,
        tmp_path,
    )


def test_sync_code_on_other_threads_reaches_consumers(tmp_path: Path) -> None:
    """group_send from sync code (threads or greenlets) while consumers wait on the main loop.

    Sync code calling ``async_to_sync(layer.group_send)`` runs the send on an
    event loop of its own; the consumers' receives wait on the main loop and
    must be woken there.
    """
    run_child(
        f"""
        async def main():
            layer = get_channel_layer()
            chats = [
                WebsocketCommunicator(cls.as_asgi(), "/ws/")
                for cls in (AsyncChat, SyncChat, AsyncChat, SyncChat)
            ]
            for chat in chats:
                assert (await chat.connect(timeout=5))[0]
                await next_json(chat)

            def broadcast(n):
                async_to_sync(layer.group_send)(
                    "room", {{"type": "chat.message", "text": f"news {{n}}", "by": "thread"}}
                )

            threads = [threading.Thread(target=broadcast, args=(n,)) for n in range(5)]
            for thread in threads:
                thread.start()
            for chat in chats:
                texts = sorted([(await next_json(chat))["text"] for _ in range(5)])
                assert texts == [f"news {{n}}" for n in range(5)], texts
            for thread in threads:
                thread.join(10)
            for chat in chats:
                assert await chat.receive_nothing(timeout=0.1)
                await chat.disconnect()

        asyncio.run(main())
        assert_aliased({HUB!r})
        print("OK")
        """,
        tmp_path,
    )


def test_tests_can_look_inside_the_layer_as_with_channels_own(tmp_path: Path) -> None:
    """``layer.channels`` and ``layer.groups`` while consumers connect, chat and leave.

    Tests written for Channels' in-memory layer find a connected consumer's
    channel name in ``layer.channels`` (its receive waits there), check
    memberships in ``layer.groups`` and expect ``layer.groups == {}`` once
    everyone has disconnected.
    """
    run_child(
        f"""
        import time

        async def main():
            layer = get_channel_layer()
            assert layer.channels == {{}} and layer.groups == {{}}
            before = time.time()
            chat_a = WebsocketCommunicator(AsyncChat.as_asgi(), "/ws/async/")
            chat_s = WebsocketCommunicator(SyncChat.as_asgi(), "/ws/sync/")
            assert (await chat_a.connect(timeout=5))[0]
            assert (await chat_s.connect(timeout=5))[0]
            name_a = (await next_json(chat_a))["channel"]
            name_s = (await next_json(chat_s))["channel"]

            # Each consumer waits in receive() on its own channel.
            assert sorted(layer.channels) == sorted([name_a, name_s]), dict(layer.channels)
            assert all(layer.channels[name].empty() for name in (name_a, name_s))
            assert layer.channels[name_a].maxsize == 50
            members = layer.groups["room"]
            assert set(members) == {{name_a, name_s}}, dict(members)
            assert all(before - 1 <= joined <= time.time() + 1 for joined in members.values())

            # A message sent straight to a name found there reaches that consumer.
            only = list(layer.channels.keys())[0]
            target = chat_a if only == name_a else chat_s
            await layer.send(only, {{"type": "chat.message", "text": "found you"}})
            assert (await next_json(target))["text"] == "found you"

            await chat_a.disconnect()
            assert set(layer.groups["room"]) == {{name_s}}
            assert name_a not in layer.channels
            await chat_s.disconnect()
            assert layer.groups == {{}}, dict(layer.groups)
            assert layer.channels == {{}}, dict(layer.channels)

        asyncio.run(main())
        assert_aliased({HUB!r})
        print("OK")
        """,
        tmp_path,
    )
