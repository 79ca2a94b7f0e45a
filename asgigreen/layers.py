"""Channel layers: the interface Django Channels expects, and an in-memory layer.

A channel layer carries messages (dicts) between the parts of an application:
:meth:`~BaseChannelLayer.send` puts a message on a named channel and
:meth:`~BaseChannelLayer.receive` takes the oldest one off it, waiting if
there is none; groups broadcast one message to many channels.

:class:`BaseChannelLayer` holds what every layer shares (name rules,
per-channel capacities, the settings Channels passes in). Any layer written
to it, or to Channels' own base class, works with Channels' consumers.

:class:`InMemoryChannelLayer` keeps everything in this process. Unlike the
in-memory layer that ships with Channels, one instance may be used at the
same time from several event loops (in different threads, or in different
greenlets of a gevent-monkeypatched process) and from sync code through
``async_to_sync``: nothing in it belongs to one event loop. For several
processes or machines, switch to ``channels_redis`` (see ``docs/layers.rst``).

Settings::

    CHANNEL_LAYERS = {"default": {"BACKEND": "asgigreen.layers.InMemoryChannelLayer"}}
"""

from __future__ import annotations

import asyncio
import copy
import fnmatch
import itertools
import logging
import re
import secrets
import time
from collections import deque
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from . import hubs

__all__ = [
    "MAX_NAME_LENGTH",
    "BaseChannelLayer",
    "ChannelFull",
    "InMemoryChannelLayer",
    "InvalidNameError",
    "MessageTooLarge",
]

logger = logging.getLogger(__name__)

#: Channel and group names must be shorter than this (the rule Channels applies).
MAX_NAME_LENGTH = 100

# Code written for Channels catches Channels' exception classes; when Channels
# is installed ours derive from them so such code catches ours too.
if TYPE_CHECKING:
    _ChannelFullBase = Exception
    _MessageTooLargeBase = Exception
else:
    try:
        from channels.exceptions import ChannelFull as _ChannelFullBase
        from channels.exceptions import MessageTooLarge as _MessageTooLargeBase
    except ImportError:
        _ChannelFullBase = _MessageTooLargeBase = Exception


class ChannelFull(_ChannelFullBase):
    """A message was refused because its channel already holds its capacity.

    ``channel`` names the channel and ``capacity`` is its limit. A subclass
    of ``channels.exceptions.ChannelFull`` when Channels is installed.
    """

    def __init__(self, channel: str = "", capacity: int | None = None) -> None:
        self.channel = channel
        self.capacity = capacity
        if capacity is None:
            super().__init__(channel)
        else:
            super().__init__(
                f"Channel {channel!r} is full: it already holds {capacity} unread "
                "messages, its capacity. Its reader is slow or gone; raise the capacity "
                "(the 'capacity' or 'channel_capacity' layer settings) if it is only slow."
            )


class MessageTooLarge(_MessageTooLargeBase):
    """A message was refused because it is too large for the layer.

    The in-memory layer has no size limit; the class is here because the
    layer interface names it. A subclass of
    ``channels.exceptions.MessageTooLarge`` when Channels is installed.
    """


class InvalidNameError(TypeError):
    """A channel or group name breaks the naming rules; the message says how.

    A :class:`TypeError`, as Channels raises for bad names.
    """


# -- names ---------------------------------------------------------------------

_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
_CHANNEL_NAME = re.compile(r"[A-Za-z0-9_.-]+(?:![A-Za-z0-9_.-]*)?")
_GROUP_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_ALLOWED = "ASCII letters, digits, hyphens (-), underscores (_) and periods (.)"


def _name_problem(kind: str, name: object, *, local_allowed: bool) -> str:
    """Why ``name`` is not a valid ``kind`` name, in words (called on failure only)."""
    if not isinstance(name, str):
        shown = repr(name)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        return f"{kind} name must be a str, not {type(name).__name__} ({shown})"
    if not name:
        return f"{kind} name is empty"
    if len(name) >= MAX_NAME_LENGTH:
        return (
            f"{kind} name {name[:40]!r}... is {len(name)} characters long; "
            f"names must be shorter than {MAX_NAME_LENGTH}"
        )
    if "!" in name:
        if not local_allowed:
            return (
                f"{kind} name {name!r} contains '!', which only channel names may "
                "contain (to mark a process-local channel)"
            )
        if name.count("!") > 1:
            return f"{kind} name {name!r} contains more than one '!'"
        if name.startswith("!"):
            return f"{kind} name {name!r} needs at least one character before the '!'"
    bad = sorted({char for char in name if char not in _NAME_CHARS and char != "!"})
    listed = ", ".join(repr(char) for char in bad)
    extra = ", plus one '!' to mark a process-local channel" if local_allowed else ""
    return f"{kind} name {name!r} contains {listed}; names may only contain {_ALLOWED}{extra}"


def _check_number(setting: str, value: object, *, integer: bool) -> None:
    wanted = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, wanted) or not value > 0:
        kind = "a whole number" if integer else "a number of seconds"
        raise ValueError(f"Channel layer setting {setting}={value!r} must be {kind} above 0")


# Options of channels_redis that mean nothing in memory. The in-memory layer
# accepts and ignores them so one CONFIG block serves both backends and the
# switch between them is the BACKEND line alone.
_REDIS_ONLY_OPTIONS = frozenset(
    {"hosts", "prefix", "symmetric_encryption_keys", "random_prefix_length", "serializer_format"}
)


class BaseChannelLayer:
    """What every channel layer shares; subclass it to write a layer.

    Settings (keyword arguments, as in Channels' ``CHANNEL_LAYERS[...]["CONFIG"]``):

    * ``expiry``: seconds a message may sit unread before it is dropped (60).
    * ``group_expiry``: seconds a group membership lasts after its latest
      :meth:`group_add` (86400, one day).
    * ``capacity``: how many unread messages a channel may hold before
      :meth:`send` raises :class:`ChannelFull` (100).
    * ``channel_capacity``: capacities for particular channels, a mapping of
      glob patterns (``"http.request"``, ``"chat.*"``) or compiled regular
      expressions to capacities. The first pattern matching the whole name
      wins, in the mapping's order; other channels get ``capacity``.

    Name rules, as in Channels: names are str, shorter than
    :data:`MAX_NAME_LENGTH` characters, of ASCII letters, digits, hyphens,
    underscores and periods. A channel name may also hold one ``!``, with at
    least one character before it: a process-local channel, such as those
    :meth:`new_channel` makes. Bad names raise :class:`InvalidNameError`.
    """

    MAX_NAME_LENGTH: ClassVar[int] = MAX_NAME_LENGTH

    #: The optional parts of the interface this layer provides: ``"groups"``
    #: (:meth:`group_add`, :meth:`group_discard`, :meth:`group_send`) and
    #: ``"flush"`` (:meth:`flush`).
    extensions: ClassVar[list[str]] = []

    #: The exceptions, also reachable from the layer as the interface asks.
    ChannelFull: ClassVar[type[ChannelFull]] = ChannelFull
    MessageTooLarge: ClassVar[type[MessageTooLarge]] = MessageTooLarge

    def __init__(
        self,
        *,
        expiry: float = 60,
        group_expiry: float = 86400,
        capacity: int = 100,
        channel_capacity: Mapping[str | re.Pattern[str], int] | None = None,
    ) -> None:
        _check_number("expiry", expiry, integer=False)
        _check_number("group_expiry", group_expiry, integer=False)
        _check_number("capacity", capacity, integer=True)
        self.expiry = expiry
        self.group_expiry = group_expiry
        self.capacity = capacity
        #: ``channel_capacity`` compiled: (pattern, capacity) pairs in order.
        self.channel_capacity: list[tuple[re.Pattern[str], int]] = self.compile_capacities(
            channel_capacity or {}
        )

    # -- capacities -------------------------------------------------------------

    def compile_capacities(
        self, channel_capacity: Mapping[str | re.Pattern[str], int]
    ) -> list[tuple[re.Pattern[str], int]]:
        """``channel_capacity`` as (compiled pattern, capacity) pairs, in order.

        Strings are globs (:mod:`fnmatch` syntax, matching the whole name);
        compiled patterns are kept as given and tried with ``match``.
        """
        if not isinstance(channel_capacity, Mapping):
            raise ValueError(
                "Channel layer setting channel_capacity must be a mapping of name "
                f"patterns to capacities, not {type(channel_capacity).__name__}"
            )
        compiled = []
        for pattern, capacity in channel_capacity.items():
            _check_number(f"channel_capacity[{pattern!r}]", capacity, integer=True)
            if isinstance(pattern, str):
                compiled.append((re.compile(fnmatch.translate(pattern)), capacity))
            elif isinstance(pattern, re.Pattern):
                compiled.append((pattern, capacity))
            else:
                raise ValueError(
                    f"Channel layer setting channel_capacity has the key {pattern!r}; "
                    "keys must be glob strings or compiled regular expressions"
                )
        return compiled

    def get_capacity(self, channel: str) -> int:
        """The capacity of ``channel``: the first matching pattern's, else ``capacity``."""
        for pattern, capacity in self.channel_capacity:
            if pattern.match(channel):
                return capacity
        return self.capacity

    # -- names ------------------------------------------------------------------

    def match_type_and_length(self, name: object) -> bool:
        """Whether ``name`` is a str shorter than :data:`MAX_NAME_LENGTH`."""
        return isinstance(name, str) and len(name) < self.MAX_NAME_LENGTH

    def require_valid_channel_name(self, name: str, receive: bool = False) -> bool:
        """Return True for a valid channel name; raise :class:`InvalidNameError` otherwise.

        ``receive=True`` also requires a process-local name to end at its
        ``!``, for layers that receive on the shared prefix only.
        """
        if not (
            isinstance(name, str)
            and len(name) < self.MAX_NAME_LENGTH
            and _CHANNEL_NAME.fullmatch(name)
        ):
            raise InvalidNameError(_name_problem("Channel", name, local_allowed=True))
        if receive and "!" in name and not name.endswith("!"):
            raise InvalidNameError(
                f"Channel name {name!r} has characters after its '!'; this layer "
                "receives on process-local channels by the part up to the '!' only"
            )
        return True

    def require_valid_group_name(self, name: str) -> bool:
        """Return True for a valid group name; raise :class:`InvalidNameError` otherwise."""
        if not (
            isinstance(name, str)
            and len(name) < self.MAX_NAME_LENGTH
            and _GROUP_NAME.fullmatch(name)
        ):
            raise InvalidNameError(_name_problem("Group", name, local_allowed=False))
        return True

    def valid_channel_names(self, names: list[str], receive: bool = False) -> bool:
        """Check every name in a non-empty list (see :meth:`require_valid_channel_name`)."""
        if not isinstance(names, list) or not names:
            raise InvalidNameError(
                f"Expected a non-empty list of channel names, got {type(names).__name__}"
            )
        for name in names:
            self.require_valid_channel_name(name, receive=receive)
        return True

    def non_local_name(self, name: str) -> str:
        """The part of a process-local name up to and including ``!``; other names whole."""
        bang = name.find("!")
        return name if bang < 0 else name[: bang + 1]

    # -- the interface ----------------------------------------------------------

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        """Put ``message`` on ``channel``; raise :class:`ChannelFull` if it is at capacity."""
        raise NotImplementedError(f"{type(self).__name__} does not implement send()")

    async def receive(self, channel: str) -> dict[str, Any]:
        """Take the oldest message off ``channel``, waiting for one if it is empty."""
        raise NotImplementedError(f"{type(self).__name__} does not implement receive()")

    async def new_channel(self, prefix: str = "specific") -> str:
        """A fresh process-local channel name for a reader in this process."""
        raise NotImplementedError(f"{type(self).__name__} does not implement new_channel()")

    async def group_add(self, group: str, channel: str) -> None:
        """Make ``channel`` a member of ``group`` (groups extension)."""
        raise NotImplementedError(
            f"{type(self).__name__} does not implement group_add() (the groups extension)"
        )

    async def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group`` if it is a member (groups extension)."""
        raise NotImplementedError(
            f"{type(self).__name__} does not implement group_discard() (the groups extension)"
        )

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """Send ``message`` to each channel in ``group``, skipping full ones (groups extension)."""
        raise NotImplementedError(
            f"{type(self).__name__} does not implement group_send() (the groups extension)"
        )

    async def flush(self) -> None:
        """Drop every message and group (flush extension)."""
        raise NotImplementedError(
            f"{type(self).__name__} does not implement flush() (the flush extension)"
        )

    async def close(self) -> None:
        """Release what the layer holds; this base has nothing to release."""


# -- the in-memory layer ------------------------------------------------------------

# Values that copy.deepcopy would return unchanged: a dict holding only these
# is copied with dict.copy(), many times cheaper, with the same result.
_ATOMS = frozenset({str, int, float, bool, bytes, type(None)})


def _copy_message(message: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``message`` that shares nothing mutable with it."""
    if type(message) is dict:
        for value in message.values():
            if type(value) not in _ATOMS:
                break
        else:
            return message.copy()
    return copy.deepcopy(message)


def _check_message(message: object) -> None:
    if not isinstance(message, dict):
        raise TypeError(f"A channel layer message must be a dict, not {type(message).__name__}")
    if "__asgi_channel__" in message:
        raise ValueError(
            "The message key '__asgi_channel__' is reserved for channel layers' own use"
        )


# A waiter's states. Changes happen under the layer's lock, except the last
# one made by a receive() returning its message: by then nothing else can
# reach the waiter (its loop ran the wake-up, so it was not closed).
_WAITING = 0  # in its channel's queue of waiters, no message yet
_HANDED = 1  # a sender gave it a message; its receive() has not returned it yet
_DONE = 2  # the message was returned or given back, or the receive gave up


class _Waiter:
    """One receive() parked on an empty channel, on its own event loop."""

    __slots__ = ("channel", "future", "loop", "message", "state")

    def __init__(
        self, channel: str, loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]
    ) -> None:
        self.channel = channel
        self.loop = loop
        self.future = future
        self.state = _WAITING
        # (expiry deadline, message) once handed a message.
        self.message: tuple[float, dict[str, Any]] | None = None


class _Channel:
    """A channel's unread messages, oldest first, and its parked receivers.

    Never both at once: a message arriving while receivers wait goes straight
    to the first of them.
    """

    __slots__ = ("messages", "waiters")

    def __init__(self) -> None:
        self.messages: deque[tuple[float, dict[str, Any]]] = deque()
        self.waiters: deque[_Waiter] = deque()


def _resolve(waiters: list[_Waiter]) -> None:
    """On the waiters' own loop: let their receive() calls resume."""
    for waiter in waiters:
        if not waiter.future.done():
            waiter.future.set_result(None)


class InMemoryChannelLayer(BaseChannelLayer):
    """A channel layer in this process's memory, shareable across loops and threads.

    Settings are those of :class:`BaseChannelLayer`; channels_redis's
    connection options (``hosts``, ``prefix``, ...) are accepted and ignored,
    so a CONFIG written for Redis works here too. Behaviour:

    * Messages are copied on the way in, so neither the sender nor another
      receiver of the same group message sees changes made to it.
    * A message unread after ``expiry`` seconds is dropped, and its channel
      leaves every group it is in: a channel nobody reads is taken for dead
      (the channel layer specification allows this). A membership also ends
      ``group_expiry`` seconds after its latest :meth:`group_add`.
    * Capacity is counted per channel name, process-local names included.
      :meth:`group_send` skips full channels silently, as the interface says.
    * Receivers waiting on one channel are served in the order they started
      waiting. A :meth:`receive` that is cancelled never loses a message: one
      handed to it just before the cancellation goes back to the front of the
      channel (or to the next waiting receiver).
    * All state sits behind one short-held lock (the hub's), never held while
      waiting; a waiting receiver is woken on its own event loop. So one
      instance serves any number of event loops in any threads or greenlets,
      and sync code through ``async_to_sync``.
    * :meth:`flush` drops messages and groups but not waiting receivers: they
      keep waiting and get the next message sent to their channel.
    """

    extensions: ClassVar[list[str]] = ["groups", "flush"]

    def __init__(
        self,
        *,
        expiry: float = 60,
        group_expiry: float = 86400,
        capacity: int = 100,
        channel_capacity: Mapping[str | re.Pattern[str], int] | None = None,
        **redis_options: Any,
    ) -> None:
        unknown = sorted(set(redis_options) - _REDIS_ONLY_OPTIONS)
        if unknown:
            raise TypeError(
                f"InMemoryChannelLayer got unknown settings {', '.join(unknown)}; it takes "
                "expiry, group_expiry, capacity and channel_capacity (and ignores "
                f"channels_redis's {', '.join(sorted(_REDIS_ONLY_OPTIONS))})"
            )
        super().__init__(
            expiry=expiry,
            group_expiry=group_expiry,
            capacity=capacity,
            channel_capacity=channel_capacity,
        )
        self._lock = hubs.get_hub().new_lock()
        self._channels: dict[str, _Channel] = {}
        # group -> {channel: monotonic time of its latest group_add}
        self._groups: dict[str, dict[str, float]] = {}
        # channel -> the groups it is in, to drop a dead channel from all of them.
        self._memberships: dict[str, set[str]] = {}
        # Waiters whose receive() coroutine was closed at its await (its task
        # was garbage-collected, say): the next call that takes the lock settles
        # them, since the collector may run while this very thread holds it.
        self._orphans: deque[_Waiter] = deque()
        now = time.monotonic()
        self._next_sweep = now
        self._next_group_sweep = now
        # Unique names without asking the OS for randomness each time.
        self._name_base = secrets.token_hex(6)
        self._serial = itertools.count(1)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} expiry={self.expiry} group_expiry={self.group_expiry} "
            f"capacity={self.capacity}>"
        )

    # -- the interface ----------------------------------------------------------

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        """Put a copy of ``message`` on ``channel``.

        Raises :class:`ChannelFull` if the channel already holds its capacity
        of unread messages.
        """
        self.require_valid_channel_name(channel)
        _check_message(message)
        item = (time.monotonic() + self.expiry, _copy_message(message))
        woken: list[_Waiter] = []
        with self._lock:
            now = self._housekeeping_locked(woken)
            if not self._put_locked(channel, item, now, woken):
                raise ChannelFull(channel, self.get_capacity(channel))
        if woken:
            self._wake(woken)

    async def receive(self, channel: str) -> dict[str, Any]:
        """The oldest unread message on ``channel``, waiting for one if need be.

        Several receivers on one channel are served first come, first
        served. Cancelling a receive never loses a message.
        """
        self.require_valid_channel_name(channel)
        loop = asyncio.get_running_loop()
        woken: list[_Waiter] = []
        with self._lock:
            now = self._housekeeping_locked(woken)
            state = self._channels.get(channel)
            if state is None:
                state = self._channels[channel] = _Channel()
            elif state.messages:
                self._expire_locked(channel, state, now)
            if state.messages:
                item = state.messages.popleft()
                if not state.messages and not state.waiters:
                    del self._channels[channel]
                waiter = None
            else:
                waiter = _Waiter(channel, loop, loop.create_future())
                state.waiters.append(waiter)
        if woken:
            self._wake(woken)
        if waiter is None:
            return item[1]
        try:
            await waiter.future
        except GeneratorExit:
            # The coroutine is being closed, maybe by the garbage collector
            # while this very thread holds the lock: don't take it here.
            self._orphans.append(waiter)
            raise
        except BaseException:
            self._give_up(waiter)
            raise
        handed = waiter.message
        if handed is None:  # pragma: no cover - a resolved future means a message
            raise RuntimeError("receive() woke without a message")
        waiter.message = None
        waiter.state = _DONE
        return handed[1]

    async def new_channel(self, prefix: str = "specific") -> str:
        """A new process-local channel name, ``<prefix>.inmemory!<unique part>``."""
        if not isinstance(prefix, str) or "!" in prefix:
            raise InvalidNameError(f"new_channel() prefix {prefix!r} must be a str without '!'")
        name = f"{prefix.rstrip('.')}.inmemory!{self._name_base}{next(self._serial)}"
        self.require_valid_channel_name(name)
        return name

    async def group_add(self, group: str, channel: str) -> None:
        """Add ``channel`` to ``group``, or renew its membership if it is already in."""
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        woken: list[_Waiter] = []
        with self._lock:
            now = self._housekeeping_locked(woken)
            self._groups.setdefault(group, {})[channel] = now
            self._memberships.setdefault(channel, set()).add(group)
        if woken:
            self._wake(woken)

    async def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group``; nothing happens if it is not a member."""
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        with self._lock:
            self._leave_locked(group, channel)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """Send a copy of ``message`` to each channel in ``group``.

        A channel at capacity misses the message; no error is raised.
        """
        self.require_valid_group_name(group)
        _check_message(message)
        woken: list[_Waiter] = []
        with self._lock:
            now = self._housekeeping_locked(woken)
            members = self._groups.get(group)
            if members:
                lapsed = now - self.group_expiry
                targets = [name for name, joined in members.items() if joined > lapsed]
                if len(targets) < len(members):
                    for name, joined in list(members.items()):
                        if joined <= lapsed:
                            self._leave_locked(group, name)
            else:
                targets = []
        if woken:
            self._wake(woken)
        if not targets:
            return
        # Copy outside the lock: deepcopy may run arbitrary code (__deepcopy__).
        deadline = time.monotonic() + self.expiry
        items = [(deadline, _copy_message(message)) for _ in targets]
        full = 0
        with self._lock:
            now = time.monotonic()
            for name, item in zip(targets, items, strict=True):
                if not self._put_locked(name, item, now, woken):
                    full += 1
        if woken:
            self._wake(woken)
        if full:
            logger.info(
                "group_send to %r skipped %d of %d channels: they are full",
                group,
                full,
                len(targets),
            )

    async def flush(self) -> None:
        """Drop all messages and groups; receivers already waiting keep waiting."""
        woken: list[_Waiter] = []
        with self._lock:
            self._housekeeping_locked(woken)
            for name, state in list(self._channels.items()):
                state.messages.clear()
                if not state.waiters:
                    del self._channels[name]
            self._groups.clear()
            self._memberships.clear()
        if woken:
            self._wake(woken)

    async def close(self) -> None:
        """Nothing to release: the layer holds no connections and stays usable."""

    # -- internals: all *_locked methods need the lock held -----------------------

    def _put_locked(
        self, channel: str, item: tuple[float, dict[str, Any]], now: float, woken: list[_Waiter]
    ) -> bool:
        """Deliver ``item`` to ``channel``'s first waiter or queue it; False if full."""
        state = self._channels.get(channel)
        if state is None:
            state = self._channels[channel] = _Channel()
        elif state.waiters:
            waiter = state.waiters.popleft()
            waiter.message = item
            waiter.state = _HANDED
            woken.append(waiter)
            return True
        elif state.messages:
            self._expire_locked(channel, state, now)
            if len(state.messages) >= self.get_capacity(channel):
                return False
        state.messages.append(item)
        return True

    def _put_back_locked(
        self, channel: str, item: tuple[float, dict[str, Any]], now: float, woken: list[_Waiter]
    ) -> None:
        """Return a message a receiver did not take to the front of its channel.

        It was accepted once, so capacity does not apply; a waiting receiver
        gets it at once.
        """
        if item[0] <= now:
            return
        state = self._channels.get(channel)
        if state is None:
            state = self._channels[channel] = _Channel()
        if state.waiters:
            waiter = state.waiters.popleft()
            waiter.message = item
            waiter.state = _HANDED
            woken.append(waiter)
        else:
            state.messages.appendleft(item)

    def _settle_locked(self, waiter: _Waiter, now: float, woken: list[_Waiter]) -> None:
        """A waiter's receive() gave up: unqueue it, or pass its message on."""
        if waiter.state == _WAITING:
            state = self._channels.get(waiter.channel)
            if state is not None:
                try:
                    state.waiters.remove(waiter)
                except ValueError:
                    pass
                if not state.waiters and not state.messages:
                    del self._channels[waiter.channel]
        elif waiter.state == _HANDED:
            item = waiter.message
            waiter.message = None
            if item is not None:
                self._put_back_locked(waiter.channel, item, now, woken)
        waiter.state = _DONE

    def _give_up(self, waiter: _Waiter) -> None:
        woken: list[_Waiter] = []
        with self._lock:
            self._settle_locked(waiter, time.monotonic(), woken)
        if woken:
            self._wake(woken)

    def _expire_locked(self, channel: str, state: _Channel, now: float) -> None:
        """Drop ``channel``'s expired messages; if any, it leaves all its groups."""
        messages = state.messages
        if messages[0][0] > now:
            return
        while messages and messages[0][0] <= now:
            messages.popleft()
        for group in list(self._memberships.get(channel, ())):
            self._leave_locked(group, channel)

    def _leave_locked(self, group: str, channel: str) -> None:
        members = self._groups.get(group)
        if members is not None and members.pop(channel, None) is not None and not members:
            del self._groups[group]
        groups = self._memberships.get(channel)
        if groups is not None:
            groups.discard(group)
            if not groups:
                del self._memberships[channel]

    def _housekeeping_locked(self, woken: list[_Waiter]) -> float:
        """Settle orphaned waiters and sweep expired state when due; return now."""
        now = time.monotonic()
        if self._orphans:
            while self._orphans:
                self._settle_locked(self._orphans.popleft(), now, woken)
        if now >= self._next_sweep:
            self._sweep_locked(now)
        return now

    def _sweep_locked(self, now: float) -> None:
        """Expire messages on channels nobody touches, and lapsed memberships.

        Busy channels expire their messages as they are used; this catches the
        rest, at most every half ``expiry`` (and every half ``group_expiry``
        for memberships), so its cost stays small.
        """
        self._next_sweep = now + min(max(self.expiry / 2, 0.05), 30.0)
        for name, state in list(self._channels.items()):
            if state.messages:
                self._expire_locked(name, state, now)
                if not state.messages and not state.waiters:
                    del self._channels[name]
        if now >= self._next_group_sweep:
            self._next_group_sweep = now + min(max(self.group_expiry / 2, 0.05), 600.0)
            lapsed = now - self.group_expiry
            for group, members in list(self._groups.items()):
                for name, joined in list(members.items()):
                    if joined <= lapsed:
                        self._leave_locked(group, name)

    def _wake(self, woken: Iterable[_Waiter]) -> None:
        """Resume the receive() calls of ``woken``, each on its own event loop.

        Called without the lock. A waiter on the running loop is resolved
        directly; others get one thread-safe callback per loop. A waiter whose
        loop has closed cannot resume, so its message goes back.
        """
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # a coroutine thrown into by hand, outside any loop
            running = None
        elsewhere: dict[asyncio.AbstractEventLoop, list[_Waiter]] = {}
        for waiter in woken:
            if waiter.loop is running:
                if not waiter.future.done():
                    waiter.future.set_result(None)
            else:
                elsewhere.setdefault(waiter.loop, []).append(waiter)
        for loop, waiters in elsewhere.items():
            try:
                loop.call_soon_threadsafe(_resolve, waiters)
            except RuntimeError:  # the loop is closed
                for waiter in waiters:
                    self._give_up(waiter)
