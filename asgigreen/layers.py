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
``async_to_sync``: nothing in it belongs to one event loop. Tests written
for Channels' layer can look inside it the same way, through its
``channels`` and ``groups`` attributes. For several processes or machines,
switch to ``channels_redis`` (see ``docs/layers.rst``).

Settings::

    CHANNEL_LAYERS = {"default": {"BACKEND": "asgigreen.layers.InMemoryChannelLayer"}}
"""

from __future__ import annotations

import asyncio
import copy
import fnmatch
import heapq
import itertools
import logging
import re
import secrets
import time
from collections import deque
from collections.abc import ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from types import MappingProxyType
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


# A waiter's states; every change happens under the layer's lock.
_WAITING = 0  # in its channel's queue of waiters, no message yet
_HANDED = 1  # a sender gave it a message; its receive() has not returned it yet
_DONE = 2  # the message was returned or given back, or the receive gave up

# A queued message: (expiry deadline on the monotonic clock, the message).
_Item = tuple[float, dict[str, Any]]
# An expiry record: (deadline, channel) in the queue, (deadline, number,
# channel) in the heap. Only compared by identity with the channel's own.
_Entry = tuple[Any, ...]


class _Channel:
    """One channel: its unread messages, oldest first, and the receives on it.

    Messages and waiting receivers are never both present: a message
    arriving while receivers wait goes straight to the first of them.

    These are the values of :attr:`InMemoryChannelLayer.channels`. Read them
    as the ``asyncio.Queue`` objects Channels' own layer keeps there:
    :meth:`qsize`, :meth:`empty`, :meth:`full` and :attr:`maxsize`.
    """

    __slots__ = ("handed", "indexed", "maxsize", "messages", "name", "waiters")

    def __init__(self, name: str, maxsize: int) -> None:
        self.name = name
        #: The channel's capacity, fixed when the entry was made.
        self.maxsize = maxsize
        self.messages: deque[_Item] = deque()
        self.waiters: deque[_Waiter] = deque()
        # Receives handed a message from here that have not returned it yet.
        self.handed = 0
        # This channel's live entry in the layer's expiry records, if any.
        self.indexed: _Entry | None = None

    def qsize(self) -> int:
        """How many unread messages the channel holds (expired ones not yet dropped included)."""
        return len(self.messages)

    def empty(self) -> bool:
        """Whether the channel holds no unread message."""
        return not self.messages

    def full(self) -> bool:
        """Whether the channel holds its capacity of unread messages."""
        return len(self.messages) >= self.maxsize

    def idle(self) -> bool:
        """No message, and no receive waiting or about to return: the entry may go."""
        return not self.messages and not self.waiters and not self.handed

    def __repr__(self) -> str:
        return (
            f"<channel {self.name!r}: {len(self.messages)} unread (capacity {self.maxsize}), "
            f"{len(self.waiters) + self.handed} receive(s) pending>"
        )


class _Waiter:
    """One receive() parked on an empty channel, on its own event loop."""

    __slots__ = ("future", "home", "loop", "message", "state")

    def __init__(
        self, home: _Channel, loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]
    ) -> None:
        # The channel entry it waits in (the entry may leave the layer's table
        # while a message handed from it is on its way).
        self.home = home
        self.loop = loop
        self.future = future
        self.state = _WAITING
        self.message: _Item | None = None


def _deadline(record: tuple[float, _Channel]) -> float:
    return record[0]


def _resolve(waiters: list[_Waiter]) -> None:
    """On the waiters' own loop: let their receive() calls resume."""
    for waiter in waiters:
        if not waiter.future.done():
            waiter.future.set_result(None)


class _ChannelsView(Mapping[str, _Channel]):
    """:attr:`InMemoryChannelLayer.channels`: a live, read-mostly view of its channels."""

    __slots__ = ("_layer",)

    def __init__(self, layer: InMemoryChannelLayer) -> None:
        self._layer = layer

    def _snapshot(self) -> dict[str, _Channel]:
        with self._layer._lock:
            return dict(self._layer._channels)

    def __getitem__(self, name: str) -> _Channel:
        return self._layer._channels[name]

    def __contains__(self, name: object) -> bool:
        return name in self._layer._channels

    def __len__(self) -> int:
        return len(self._layer._channels)

    def __iter__(self) -> Iterator[str]:
        return iter(self._snapshot())

    def keys(self) -> KeysView[str]:
        return self._snapshot().keys()

    def values(self) -> ValuesView[_Channel]:
        return self._snapshot().values()

    def items(self) -> ItemsView[str, _Channel]:
        return self._snapshot().items()

    def __delitem__(self, name: str) -> None:
        """Drop ``name``'s unread messages; the entry stays while receivers wait on it."""
        self._layer._drop_channels([name])

    def clear(self) -> None:
        """Drop every channel's unread messages (as ``flush()`` does for channels)."""
        self._layer._drop_channels(None)

    def __setitem__(self, name: str, value: object) -> None:
        raise TypeError(
            "InMemoryChannelLayer.channels is for inspection: put messages on a channel with send()"
        )

    def __repr__(self) -> str:
        return repr(self._snapshot())


class _GroupsView(Mapping[str, Mapping[str, float]]):
    """:attr:`InMemoryChannelLayer.groups`: a live, read-mostly view of its groups."""

    __slots__ = ("_layer",)

    def __init__(self, layer: InMemoryChannelLayer) -> None:
        self._layer = layer

    def _snapshot(self) -> dict[str, Mapping[str, float]]:
        layer = self._layer
        offset = layer._wall_offset
        with layer._lock:
            return {
                group: MappingProxyType({name: joined + offset for name, joined in members.items()})
                for group, members in layer._groups.items()
            }

    def __getitem__(self, group: str) -> Mapping[str, float]:
        layer = self._layer
        offset = layer._wall_offset
        with layer._lock:
            members = layer._groups[group]
            return MappingProxyType({name: joined + offset for name, joined in members.items()})

    def __contains__(self, group: object) -> bool:
        return group in self._layer._groups

    def __len__(self) -> int:
        return len(self._layer._groups)

    def __iter__(self) -> Iterator[str]:
        with self._layer._lock:
            return iter(list(self._layer._groups))

    def keys(self) -> KeysView[str]:
        return self._snapshot().keys()

    def values(self) -> ValuesView[Mapping[str, float]]:
        return self._snapshot().values()

    def items(self) -> ItemsView[str, Mapping[str, float]]:
        return self._snapshot().items()

    def __delitem__(self, group: str) -> None:
        """End every membership of ``group`` (``group_discard`` for each member)."""
        self._layer._drop_groups([group])

    def clear(self) -> None:
        """End every membership of every group."""
        self._layer._drop_groups(None)

    def __setitem__(self, group: str, value: object) -> None:
        raise TypeError(
            "InMemoryChannelLayer.groups is for inspection: add a channel to a group "
            "with group_add()"
        )

    def __repr__(self) -> str:
        return repr({group: dict(members) for group, members in self._snapshot().items()})


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
      ``group_expiry`` seconds after its latest :meth:`group_add`. Both are
      cleaned up when Channels' layer cleans them up, at the start of every
      :meth:`receive` and :meth:`group_send`; besides, :meth:`send` to a
      full channel drops that channel's expired messages before it counts.
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
    * :attr:`channels` and :attr:`groups` show the state as Channels' layer
      shows its own, for tests that look inside.
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
        # Channels with unread messages or a receive pending, and only those.
        self._channels: dict[str, _Channel] = {}
        # group -> {channel: monotonic time of its latest group_add}
        self._groups: dict[str, dict[str, float]] = {}
        # channel -> the groups it is in, to drop a dead channel from all of them.
        self._memberships: dict[str, set[str]] = {}
        self._member_count = 0
        # Expiry records: each channel holding messages has one live record,
        # due at or before its oldest message's deadline, so the cleanup finds
        # what expired without looking at anything else. Records are made in
        # deadline order as channels get their first message (a deque); the
        # few out of order (a message put back, a channel still holding
        # messages after a cleanup) go to a heap. A record the channel no
        # longer holds is stale and skipped.
        self._due: deque[tuple[float, _Channel]] = deque()
        self._due_later: list[tuple[float, int, _Channel]] = []
        self._entries = itertools.count(1)
        # (join time, group, channel) for each group_add, oldest first (so in
        # order of lapsing); entries a later group_add or a discard made stale
        # are skipped, and compacted away when they outnumber the live ones.
        self._joins: deque[tuple[float, str, str]] = deque()
        # Waiters whose receive() coroutine was closed at its await (its task
        # was garbage-collected, say): the next call that takes the lock settles
        # them, since the collector may run while this very thread holds it.
        self._orphans: deque[_Waiter] = deque()
        # Monotonic to wall-clock time, for the join times shown in .groups.
        self._wall_offset = time.time() - time.monotonic()
        self._channels_view = _ChannelsView(self)
        self._groups_view = _GroupsView(self)
        # Unique names without asking the OS for randomness each time.
        self._name_base = secrets.token_hex(6)
        self._serial = itertools.count(1)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} expiry={self.expiry} group_expiry={self.group_expiry} "
            f"capacity={self.capacity}>"
        )

    # -- what Channels' layer shows -----------------------------------------------

    @property
    def channels(self) -> _ChannelsView:
        """The channels holding unread messages or with a receive pending, by name.

        As in Channels' layer, a channel appears with its first message or
        when a receive starts waiting on it, and goes once it is empty with
        no receive pending: when the last message is received, or when the
        cleanup (see the class docstring) drops its expired messages. Values
        answer ``qsize()``, ``empty()``, ``full()`` and ``maxsize`` like the
        ``asyncio.Queue`` objects Channels keeps. A live view, safe to read
        from any thread; iterating it walks a snapshot. ``del`` drops a
        channel's unread messages (the name stays while receivers wait on it,
        and they keep waiting); nothing can be stored in it.
        """
        return self._channels_view

    @property
    def groups(self) -> _GroupsView:
        """Each group's members: ``{group: {channel: time of its latest group_add}}``.

        Times are ``time.time()`` values, as in Channels' layer (measured on
        the monotonic clock, so a wall-clock step does not shorten a
        membership). A group goes when its last member leaves, by
        :meth:`group_discard`, by expiry or by its channel's messages
        expiring. A live view: each group's members are a read-only
        snapshot; ``del`` ends all of a group's memberships.
        """
        return self._groups_view

    # -- the interface ----------------------------------------------------------

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        """Put a copy of ``message`` on ``channel``.

        Raises :class:`ChannelFull` if the channel already holds its capacity
        of unread messages.
        """
        self.require_valid_channel_name(channel)
        _check_message(message)
        copied = _copy_message(message)
        woken: list[_Waiter] = []
        with self._lock:
            now = self._housekeeping_locked(woken)
            accepted = self._put_locked(channel, copied, now, woken)
        if woken:
            self._wake(woken)
        if not accepted:
            raise ChannelFull(channel, self.get_capacity(channel))

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
            if self._cleanup_due_locked(now):
                self._clean_expired_locked(now)
            state = self._channels.get(channel)
            if state is not None and state.messages:
                item = state.messages.popleft()
                if not state.messages:
                    # Its expiry record, when it is the latest, can go now
                    # (the usual case: a message sent, then soon received).
                    entry = state.indexed
                    due = self._due
                    if entry is not None and due and due[-1] is entry:
                        due.pop()
                        state.indexed = None
                    if state.idle():
                        del self._channels[channel]
                waiter = None
            else:
                if state is None:
                    state = self._new_channel_locked(channel)
                waiter = _Waiter(state, loop, loop.create_future())
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
        home = waiter.home
        with self._lock:
            handed = waiter.message
            waiter.message = None
            waiter.state = _DONE
            home.handed -= 1
            if home.idle() and self._channels.get(home.name) is home:
                del self._channels[home.name]
        if handed is None:  # pragma: no cover - a resolved future means a message
            raise RuntimeError("receive() woke without a message")
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
            members = self._groups.setdefault(group, {})
            if channel not in members:
                self._member_count += 1
                self._memberships.setdefault(channel, set()).add(group)
            members[channel] = now
            self._joins.append((now, group, channel))
            if len(self._joins) > 2 * self._member_count + 64:
                self._compact_joins_locked()
        if woken:
            self._wake(woken)

    async def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group``; nothing happens if it is not a member."""
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        woken: list[_Waiter] = []
        with self._lock:
            self._housekeeping_locked(woken)
            self._leave_locked(group, channel)
        if woken:
            self._wake(woken)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """Send a copy of ``message`` to each channel in ``group``.

        A channel at capacity misses the message; no error is raised.
        """
        self.require_valid_group_name(group)
        _check_message(message)
        woken: list[_Waiter] = []
        with self._lock:
            now = self._housekeeping_locked(woken)
            if self._cleanup_due_locked(now):
                self._clean_expired_locked(now)
            members = self._groups.get(group)
            targets = list(members) if members else []
        if woken:
            self._wake(woken)
        if not targets:
            return
        # Copy outside the lock: deepcopy may run arbitrary code (__deepcopy__).
        copies = [_copy_message(message) for _ in targets]
        full = 0
        with self._lock:
            now = time.monotonic()
            for name, copied in zip(targets, copies, strict=True):
                if not self._put_locked(name, copied, now, woken):
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
            self._drop_channels_locked(None)
            self._groups.clear()
            self._memberships.clear()
            self._member_count = 0
            self._joins.clear()
        if woken:
            self._wake(woken)

    async def close(self) -> None:
        """Nothing to release: the layer holds no connections and stays usable."""

    # -- internals: all *_locked methods need the lock held -----------------------

    def _new_channel_locked(self, name: str) -> _Channel:
        state = self._channels[name] = _Channel(name, self.get_capacity(name))
        return state

    def _cleanup_due_locked(self, now: float) -> bool:
        """Whether a message has expired or a membership lapsed (maybe a stale record)."""
        due, later, joins = self._due, self._due_later, self._joins
        return bool(
            (due and due[0][0] <= now)
            or (later and later[0][0] <= now)
            or (joins and joins[0][0] <= now - self.group_expiry)
        )

    def _hand_locked(
        self, state: _Channel, waiter: _Waiter, item: _Item, woken: list[_Waiter]
    ) -> None:
        """Give ``item`` to ``waiter``, just taken off ``state``'s waiters."""
        waiter.message = item
        waiter.state = _HANDED
        state.handed += 1
        woken.append(waiter)

    def _release_locked(self, state: _Channel) -> None:
        """A receive handed a message from ``state`` is done with it."""
        state.handed -= 1
        if state.idle() and self._channels.get(state.name) is state:
            del self._channels[state.name]

    def _index_locked(self, state: _Channel) -> None:
        """Give ``state`` (holding messages) a fresh expiry record, due with its oldest."""
        deadline = state.messages[0][0]
        due = self._due
        entry: _Entry
        if not due or due[-1][0] <= deadline:
            entry = (deadline, state)
            due.append(entry)
        else:
            entry = (deadline, next(self._entries), state)
            heapq.heappush(self._due_later, entry)
        state.indexed = entry
        if len(due) + len(self._due_later) > 2 * len(self._channels) + 64:
            # Mostly stale records (channels emptied and gone): start afresh.
            live = [
                (current.messages[0][0], current)
                for current in self._channels.values()
                if current.messages
            ]
            live.sort(key=_deadline)
            for current in self._channels.values():
                current.indexed = None
            for record in live:
                record[1].indexed = record
            self._due = deque(live)
            self._due_later = []

    def _put_locked(
        self, channel: str, message: dict[str, Any], now: float, woken: list[_Waiter]
    ) -> bool:
        """Deliver ``message`` to ``channel``'s first waiter or queue it; False if full."""
        state = self._channels.get(channel)
        if state is None:
            state = self._new_channel_locked(channel)
        elif state.waiters:
            waiter = state.waiters.popleft()
            waiter.message = (now + self.expiry, message)
            waiter.state = _HANDED
            state.handed += 1
            woken.append(waiter)
            return True
        elif len(state.messages) >= state.maxsize:
            # Expired messages are not unread ones: they don't fill the channel.
            self._expire_locked(state, now)
            if len(state.messages) >= state.maxsize:
                return False
        state.messages.append((now + self.expiry, message))
        if state.indexed is None:
            self._index_locked(state)
        return True

    def _put_back_locked(self, name: str, item: _Item, now: float, woken: list[_Waiter]) -> None:
        """Return a message a receiver did not take to the front of its channel.

        It was accepted once, so capacity does not apply; a waiting receiver
        gets it at once.
        """
        if item[0] <= now:
            return
        state = self._channels.get(name)
        if state is None:
            state = self._new_channel_locked(name)
        if state.waiters:
            self._hand_locked(state, state.waiters.popleft(), item, woken)
        else:
            state.messages.appendleft(item)
            # It may expire before the message the last record was made for.
            self._index_locked(state)

    def _settle_locked(self, waiter: _Waiter, now: float, woken: list[_Waiter]) -> None:
        """A waiter's receive() gave up: unqueue it, or pass its message on."""
        home = waiter.home
        if waiter.state == _WAITING:
            try:
                home.waiters.remove(waiter)
            except ValueError:
                pass
            if home.idle() and self._channels.get(home.name) is home:
                del self._channels[home.name]
        elif waiter.state == _HANDED:
            item = waiter.message
            waiter.message = None
            if item is not None:
                self._put_back_locked(home.name, item, now, woken)
            self._release_locked(home)
        waiter.state = _DONE

    def _give_up(self, waiter: _Waiter) -> None:
        woken: list[_Waiter] = []
        with self._lock:
            self._settle_locked(waiter, time.monotonic(), woken)
        if woken:
            self._wake(woken)

    def _expire_locked(self, state: _Channel, now: float) -> None:
        """Drop ``state``'s expired messages; if any, its channel leaves all its groups."""
        messages = state.messages
        if not messages or messages[0][0] > now:
            return
        while messages and messages[0][0] <= now:
            messages.popleft()
        for group in list(self._memberships.get(state.name, ())):
            self._leave_locked(group, state.name)

    def _leave_locked(self, group: str, channel: str) -> None:
        members = self._groups.get(group)
        if members is not None and members.pop(channel, None) is not None:
            self._member_count -= 1
            if not members:
                del self._groups[group]
        groups = self._memberships.get(channel)
        if groups is not None:
            groups.discard(group)
            if not groups:
                del self._memberships[channel]

    def _compact_joins_locked(self) -> None:
        self._joins = deque(
            sorted(
                (joined, group, channel)
                for group, members in self._groups.items()
                for channel, joined in members.items()
            )
        )

    def _housekeeping_locked(self, woken: list[_Waiter]) -> float:
        """Settle orphaned waiters; return now."""
        now = time.monotonic()
        while self._orphans:
            self._settle_locked(self._orphans.popleft(), now, woken)
        return now

    def _clean_expired_locked(self, now: float) -> None:
        """Drop every expired message and lapsed membership (receive and group_send do this).

        A channel that loses a message this way leaves all its groups, and
        goes if nothing is left in it. The expiry records and the join order
        find what is due without looking at anything else.
        """
        while True:
            # Read afresh each time: making a record may have rebuilt them.
            due, later = self._due, self._due_later
            entry: _Entry
            if due and due[0][0] <= now:
                entry = due.popleft()
            elif later and later[0][0] <= now:
                entry = heapq.heappop(later)
            else:
                break
            state: _Channel = entry[-1]
            if state.indexed is not entry:
                continue
            state.indexed = None
            if self._channels.get(state.name) is not state:
                continue
            self._expire_locked(state, now)
            if state.messages:
                self._index_locked(state)
            elif state.idle():
                del self._channels[state.name]
        joins = self._joins
        if joins:
            lapsed = now - self.group_expiry
            while joins and joins[0][0] <= lapsed:
                joined, group, channel = joins.popleft()
                members = self._groups.get(group)
                if members is not None and members.get(channel) == joined:
                    self._leave_locked(group, channel)

    def _drop_channels_locked(self, names: Iterable[str] | None) -> None:
        """Drop the unread messages of ``names`` (None: of all channels).

        An entry with receivers waiting stays, for them to keep waiting; the
        others go. A name not present raises KeyError.
        """
        everything = names is None
        for name in list(self._channels) if names is None else names:
            state = self._channels[name]
            state.messages.clear()
            if not state.waiters:
                del self._channels[name]
        if everything:
            # No message is left anywhere: no record is live either.
            self._due = deque()
            self._due_later = []
            for state in self._channels.values():
                state.indexed = None

    def _drop_channels(self, names: Iterable[str] | None) -> None:
        with self._lock:
            self._drop_channels_locked(names)

    def _drop_groups(self, groups: Iterable[str] | None) -> None:
        """End every membership of ``groups`` (None: of all groups)."""
        with self._lock:
            if groups is None:
                groups = list(self._groups)
            for group in groups:
                for channel in list(self._groups[group]):
                    self._leave_locked(group, channel)

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
