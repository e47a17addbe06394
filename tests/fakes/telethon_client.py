"""A tiny in-memory Telegram behind a *real* Telethon client (only its sender is replaced).

:class:`FakeTelegram` holds channels and their messages as real ``telethon.tl.types`` objects
and answers the requests telewatch makes, the way Telegram does: ``messages.getHistory``
(offset id/date, negative ``add_offset``, the window clamped to the request, never shifted),
``channels.getMessages`` (``messageEmpty`` for deleted ids), ``contacts.resolveUsername``,
``channels.getFullChannel``, ``channels.joinChannel``, ``updates.getState`` (the
authorisation check) and ``users.getUsers``. Every answer is serialised and parsed back
(``BinaryReader(bytes(obj)).tgread_object()``), so the client sees exactly what a server sends.

Every request is recorded (``requests``, :meth:`count`); :meth:`fail` injects an error (a
``FloodWaitError``, a ``ConnectionError``...) into the N-th next request of a type.
:func:`fake_client` gives a real, unconnected ``TelegramClient`` wired to it.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from telethon import errors, functions, types
from telethon.extensions import BinaryReader
from telethon.sessions import StringSession

from archiver.models import marked_id

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SELF_ID = 777000111


def roundtrip(obj: Any) -> Any:
    """What the client receives when a server sends ``obj``."""
    return BinaryReader(bytes(obj)).tgread_object()


@dataclass
class _Failure:
    kind: type
    make: Callable[[Any], BaseException]
    after: int  # matching requests to let through first
    times: int


class FakeChannel:
    def __init__(self, channel: Any, about: str, subscribers: int | None) -> None:
        self.channel = channel
        self.about = about
        self.subscribers = subscribers
        self.ids: list[int] = []  # ascending
        self.messages: dict[int, Any] = {}
        self.next_id = 1

    @property
    def marked_id(self) -> int:
        return int(marked_id(self.channel.id))


class FakeTelegram:
    def __init__(self) -> None:
        self.channels: dict[int, FakeChannel] = {}  # bare id -> channel
        self.requests: list[Any] = []
        self.failures: list[_Failure] = []
        self.authorized = True

    # ------------------------------------------------------------------- building the world
    def add_channel(
        self,
        bare_id: int = 1811111111,
        username: str | None = "vsaldo",
        title: str = "Test channel",
        *,
        access_hash: int | None = None,
        about: str = "",
        subscribers: int | None = 1000,
    ) -> FakeChannel:
        ch = types.Channel(
            id=bare_id,
            title=title,
            photo=types.ChatPhotoEmpty(),
            date=T0,
            broadcast=True,
            left=True,
            access_hash=access_hash if access_hash is not None else bare_id * 7 + 3,
            username=username,
        )
        fc = FakeChannel(ch, about, subscribers)
        self.channels[bare_id] = fc
        return fc

    def channel(self, bare_id: int | None = None) -> FakeChannel:
        return self.channels[bare_id] if bare_id is not None else next(iter(self.channels.values()))

    def _store(self, fc: FakeChannel, msg: Any) -> Any:
        if msg.id not in fc.messages:
            bisect.insort(fc.ids, msg.id)
        fc.messages[msg.id] = msg
        fc.next_id = max(fc.next_id, msg.id + 1)
        return msg

    def post(
        self,
        text: str = "",
        *,
        bare_id: int | None = None,
        id: int | None = None,
        date: datetime | None = None,
        **fields: Any,
    ) -> Any:
        """A new post (a real ``types.Message``); ids count up from 1 unless given."""
        fc = self.channel(bare_id)
        mid = id if id is not None else fc.next_id
        msg = types.Message(
            id=mid,
            peer_id=types.PeerChannel(fc.channel.id),
            date=date or T0 + timedelta(minutes=mid),
            message=text,
            post=True,
            **fields,
        )
        return self._store(fc, msg)

    def posts(self, n: int, *, bare_id: int | None = None, text: str = "post {}") -> list[Any]:
        return [self.post(text.format(i + 1), bare_id=bare_id) for i in range(n)]

    def service(self, action: Any, *, bare_id: int | None = None, id: int | None = None) -> Any:
        fc = self.channel(bare_id)
        mid = id if id is not None else fc.next_id
        msg = types.MessageService(
            id=mid,
            peer_id=types.PeerChannel(fc.channel.id),
            date=T0 + timedelta(minutes=mid),
            action=action,
            post=True,
        )
        return self._store(fc, msg)

    def edit(self, id: int, text: str, *, bare_id: int | None = None, **fields: Any) -> Any:
        fc = self.channel(bare_id)
        old = fc.messages[id]
        msg = types.Message(
            id=id,
            peer_id=old.peer_id,
            date=old.date,
            message=text,
            post=True,
            edit_date=fields.pop("edit_date", old.date + timedelta(hours=1)),
            views=fields.pop("views", old.views),
            forwards=fields.pop("forwards", old.forwards),
            **fields,
        )
        return self._store(fc, msg)

    def delete(self, *ids: int, bare_id: int | None = None) -> None:
        fc = self.channel(bare_id)
        for i in ids:
            if fc.messages.pop(i, None) is not None:
                fc.ids.remove(i)

    # ------------------------------------------------------------------------- observation
    def fail(
        self,
        kind: type,
        make: Callable[[Any], BaseException],
        *,
        after: int = 0,
        times: int = 1,
    ) -> None:
        """Answer the request of type ``kind`` that comes after ``after`` more of them with
        ``make(request)`` raised, ``times`` times."""
        self.failures.append(_Failure(kind, make, after, times))

    def count(self, kind: type) -> int:
        return sum(isinstance(r, kind) for r in self.requests)

    # ----------------------------------------------------------------------------- serving
    def answer(self, request: Any) -> Any:
        if isinstance(request, functions.InvokeWithoutUpdatesRequest):  # receive_updates=False
            request = request.query
        self.requests.append(request)
        for f in self.failures:
            if isinstance(request, f.kind) and f.times > 0:
                if f.after > 0:
                    f.after -= 1
                    continue
                f.times -= 1
                raise f.make(request)
        handler = self._handlers().get(type(request))
        if handler is None:
            raise NotImplementedError(f"the fake Telegram does not answer {type(request).__name__}")
        result = handler(request)
        return result if isinstance(result, list) else roundtrip(result)

    def _handlers(self) -> dict[type, Callable[[Any], Any]]:
        return {
            functions.messages.GetHistoryRequest: self._history,
            functions.channels.GetMessagesRequest: self._get_messages,
            functions.contacts.ResolveUsernameRequest: self._resolve,
            functions.channels.GetFullChannelRequest: self._full,
            functions.channels.JoinChannelRequest: self._join,
            functions.updates.GetStateRequest: self._state,
            functions.users.GetUsersRequest: self._users,
            functions.channels.GetChannelsRequest: self._get_channels,
        }

    def _peer(self, peer: Any) -> FakeChannel:
        fc = self.channels.get(peer.channel_id)
        if fc is None or fc.channel.access_hash != peer.access_hash:
            raise errors.ChannelInvalidError(request=None)
        return fc

    def _history(self, req: Any) -> Any:
        fc = self._peer(req.peer)
        ids = fc.ids
        n = len(ids)
        if req.offset_id:
            i = n - bisect.bisect_left(ids, req.offset_id)  # first (newest-first) index < offset
        elif req.offset_date:
            i = sum(1 for m in fc.messages.values() if m.date >= req.offset_date)
        else:
            i = 0
        lo = max(i + req.add_offset, 0)
        hi = min(max(i + req.add_offset + req.limit, 0), n)
        window = [fc.messages[ids[n - 1 - k]] for k in range(lo, hi)]  # newest first
        if req.min_id:
            window = [m for m in window if m.id > req.min_id]
        if req.max_id:
            window = [m for m in window if m.id < req.max_id]
        return types.messages.ChannelMessages(
            pts=1, count=n, messages=window, topics=[], chats=[fc.channel], users=[]
        )

    def _get_messages(self, req: Any) -> Any:
        fc = self._peer(req.channel)
        out = []
        for im in req.id:
            msg = fc.messages.get(im.id)
            out.append(msg if msg is not None else types.MessageEmpty(id=im.id, peer_id=None))
        return types.messages.ChannelMessages(
            pts=1, count=len(out), messages=out, topics=[], chats=[fc.channel], users=[]
        )

    def _get_channels(self, req: Any) -> Any:
        # access_hash=0 is refused, as Telegram does for a user account's unknown channels
        return types.messages.Chats(chats=[self._peer(c).channel for c in req.id])

    def _resolve(self, req: Any) -> Any:
        for fc in self.channels.values():
            if (fc.channel.username or "").lower() == req.username.lower():
                return types.contacts.ResolvedPeer(
                    peer=types.PeerChannel(fc.channel.id), chats=[fc.channel], users=[]
                )
        raise errors.UsernameNotOccupiedError(request=req)

    def _full(self, req: Any) -> Any:
        fc = self._peer(req.channel)
        full = types.ChannelFull(
            id=fc.channel.id,
            about=fc.about,
            read_inbox_max_id=0,
            read_outbox_max_id=0,
            unread_count=0,
            chat_photo=types.PhotoEmpty(id=0),
            notify_settings=types.PeerNotifySettings(),
            bot_info=[],
            pts=1,
            participants_count=fc.subscribers,
        )
        return types.messages.ChatFull(full_chat=full, chats=[fc.channel], users=[])

    def _join(self, req: Any) -> Any:
        fc = self._peer(req.channel)
        fc.channel.left = False
        return types.Updates(updates=[], users=[], chats=[fc.channel], date=T0, seq=0)

    def _state(self, req: Any) -> Any:
        if not self.authorized:
            raise errors.AuthKeyUnregisteredError(request=req)
        return types.updates.State(pts=1, qts=0, date=T0, seq=0, unread_count=0)

    def _users(self, req: Any) -> list[Any]:
        return [types.User(id=SELF_ID, is_self=True, access_hash=1, first_name="Desk")]


class FakeSender:
    """Stands in for Telethon's ``MTProtoSender``: answers from a :class:`FakeTelegram`."""

    def __init__(self, tg: FakeTelegram) -> None:
        self.tg = tg
        self.connected = False
        self._disconnected: asyncio.Future[None] | None = None

    def send(self, request: Any, ordered: bool = False) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        try:
            fut.set_result(self.tg.answer(request))
        except BaseException as exc:
            fut.set_exception(exc)
        return fut

    def is_connected(self) -> bool:
        return self.connected

    @property
    def disconnected(self) -> asyncio.Future[None]:
        if self._disconnected is None or (self._disconnected.done() and self.connected):
            self._disconnected = asyncio.get_running_loop().create_future()
        return self._disconnected

    async def connect(self, *args: Any, **kwargs: Any) -> bool:
        self.connected = True
        return True

    async def disconnect(self) -> None:
        self.connected = False

    def drop(self, exc: BaseException | None = None) -> None:
        """The connection is lost for good (what Telethon reports once its retries give up)."""
        self.connected = False
        fut = self.disconnected
        if not fut.done():
            if exc is None:
                fut.set_result(None)
            else:
                fut.set_exception(exc)


def attach(client: Any, tg: FakeTelegram) -> Any:
    """Wire a real, unconnected client to ``tg``: its sender answers from the fake, and
    ``connect()`` makes no connection."""
    sender = FakeSender(tg)
    client._sender = sender

    async def connect() -> None:
        await sender.connect()

    client.connect = connect
    return client


def fake_client(tg: FakeTelegram, session: Any = None, *, receive_updates: bool = False) -> Any:
    """telewatch's own client class, connected to nothing but ``tg``."""
    from archiver.sources.telethon import make_client

    client = make_client(session or StringSession(), 1, "0" * 32, receive_updates=receive_updates)
    return attach(client, tg)


def factory_for(tg: FakeTelegram, made: list[Any] | None = None) -> Callable[..., Any]:
    """A ``factory`` for ``connect_client``/``login`` that builds fake-wired clients."""

    def make(session: Any, api_id: int, api_hash: str, *, receive_updates: bool = False) -> Any:
        client = fake_client(tg, session, receive_updates=receive_updates)
        if made is not None:
            made.append(client)
        return client

    return make


class Sleeper:
    """An injectable sleeper that records the waits and lets no time pass. After a flood wait
    it also forgets the client's memory of it, as real time passing would."""

    def __init__(self, client: Any = None) -> None:
        self.client = client
        self.slept: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)
        if self.client is not None:
            self.client._flood_waited_requests.clear()


def flood(seconds: int) -> Callable[[Any], BaseException]:
    return lambda request: errors.FloodWaitError(request=request, capture=seconds)


def settings_for(
    tmp_path: Any,
    *channels: Any,
    download: frozenset[str] = frozenset(),
    max_size_mb: float = 20.0,
    **telegram: Any,
) -> Any:
    """Settings for tests: api id/hash set, the session and media under ``tmp_path``, and
    ``channels`` (ChannelConfig objects, or usernames with ``backfill = "all"``)."""
    from archiver.channels import parse_ref
    from archiver.config import (
        Backfill,
        ChannelConfig,
        MediaSettings,
        Settings,
        StorageSettings,
        TelegramSettings,
    )

    chans = tuple(
        c if isinstance(c, ChannelConfig) else ChannelConfig(parse_ref(c), backfill=Backfill("all"))
        for c in channels
    )
    tg = {"api_id": 12345, "api_hash": "0123456789abcdef0123456789abcdef"}
    tg["session"] = tmp_path / "tw.session"
    tg.update(telegram)
    return Settings(
        storage=StorageSettings(path=tmp_path / "a.db", media_dir=tmp_path / "media"),
        telegram=TelegramSettings(**tg),
        media=MediaSettings(download=download, max_size_mb=max_size_mb),
        channels=chans,
    )
