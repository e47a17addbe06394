"""A small in-memory Telegram behind a *real* Telethon client: only its sender is replaced.

:class:`FakeTelegram` answers the MTProto request objects a ``TelegramClient`` sends through
``client._sender`` (Telethon 1.45's ``MTProtoSender``), so Telethon's own code runs on top of
it: ``connect()`` (``InvokeWithLayer(InitConnection(GetConfig))``, then ``get_me()`` and
``_on_login()``'s ``GetState`` + ``GetDifference``, ``client/telegrambaseclient.py:560-618``,
``client/auth.py:385-405``), the update loop and its ``MessageBox`` (gaps, ``getDifference``,
``getChannelDifference`` with ``channelDifferenceTooLong``, ``client/updates.py:267-499``,
``_updates/messagebox.py``), the flood bookkeeping of ``client/users.py:32-140`` and the
history iterators. Every answer is serialised and parsed back
(``BinaryReader(bytes(obj)).tgread_object()``), so the client sees what a server sends.

What it models, each with where the behaviour comes from:

- **Accounts and auth keys.** A session is logged in when its auth key is registered for an
  account (:meth:`FakeTelegram.session`, :meth:`FakeTelegram.session_file`); a key Telegram
  does not know gets ``AUTH_KEY_UNREGISTERED`` on every request that needs a login
  (https://core.telegram.org/api/errors#401-unauthorized). Connecting with no key makes a new,
  unregistered one, as the real sender's key exchange does (``network/mtprotosender.py``).
- **Access hashes per account.** Each account sees its own ``access_hash`` for a channel;
  another account's hash is ``CHANNEL_INVALID`` (https://core.telegram.org/api/peers: "the
  access_hash is specific to the user"; TESTING.md).
- **Joins.** ``channels.joinChannel`` fails with ``CHANNELS_TOO_MUCH`` beyond the account's
  limit (500, 1,000 with Premium: ``channels_limit_default``/``channels_limit_premium``,
  https://core.telegram.org/api/config#channels-limit-default), ``CHANNEL_PRIVATE`` for a
  private channel or a banned account, ``CHANNEL_INVALID`` with a wrong hash,
  ``INVITE_REQUEST_SENT`` where joins need an admin's approval while the public channel
  stays readable (:attr:`FakeChannel.join_request`; the errors of
  https://core.telegram.org/method/channels.joinChannel). Membership is per account and shows as
  ``Channel.left`` in every answer that carries the channel.
- **Resolution.** ``contacts.resolveUsername`` answers ``USERNAME_NOT_OCCUPIED`` for an unknown
  or private channel's name.
- **Files.** ``upload.getFile`` answers ``upload.file`` with the bytes of a photo or document
  put in :attr:`FakeTelegram.files` (by its id), ``limit`` bytes from ``offset``
  (https://core.telegram.org/api/files#downloading-files); a file in this DC, so Telethon's
  ``client/downloads.py`` sends it on the main sender through ``_call`` like every request.
  Downloads are flood-limited like any method (``FLOOD_WAIT_X``, and ``FLOOD_PREMIUM_WAIT_X``
  for accounts without Premium, https://core.telegram.org/api/errors#420-flood).
- **Flood waits as Telegram keeps them.** Once an account got ``FLOOD_WAIT_X`` for a method,
  every request of that method before the deadline gets ``FLOOD_WAIT`` with the seconds left
  (and is counted in :attr:`FakeTelegram.sent_during_wait`, the figure our ledger must keep at
  0). :meth:`FakeTelegram.limit` makes a method flood after N requests, as
  ``ResolveUsername`` does (https://core.telegram.org/api/errors#420-flood).
- **Updates.** Each channel keeps a ``pts`` and an event log: a post is
  ``updateNewChannelMessage``, an edit ``updateEditChannelMessage``, a deletion
  ``updateDeleteChannelMessages`` (https://core.telegram.org/api/updates). They are pushed to
  every connected client of a member account whose connection subscribed to updates (a
  connection that only ever sent ``invokeWithoutUpdates`` is not,
  https://core.telegram.org/method/invokeWithoutUpdates), unless the test says the update was
  lost (``push=False``). ``updates.getDifference`` reports channels with news since the given
  date as ``updateChannelTooLong``; ``updates.getChannelDifference`` answers
  ``channelDifferenceEmpty``, ``channelDifference`` (new messages in ``new_messages``, edits
  and deletions in ``other_updates``) or, when more than ``limit`` events are missing,
  ``channelDifferenceTooLong`` (https://core.telegram.org/constructor/updates.channelDifferenceTooLong).
- **Connections.** A request on a disconnected sender raises ``ConnectionError('Cannot send
  requests while disconnected')`` as ``MTProtoSender.send`` does; :meth:`FakeSender.drop`
  loses the connection for good, :meth:`FakeSender.outage` loses it for a while and
  reconnects by itself (updates sent meanwhile never arrive), then calls the client's
  ``_handle_auto_reconnect`` as ``MTProtoSender._reconnect`` does.

Every request is recorded (:attr:`FakeTelegram.requests`, :meth:`FakeTelegram.count`);
:meth:`FakeTelegram.fail` injects an error into the N-th next request of a type.
:func:`connected` gives a real, connected ``TelegramClient`` (telewatch's own class) wired to
the fake; :func:`fake_client` an unconnected one.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from telethon import errors, functions, types
from telethon.crypto import AuthKey
from telethon.extensions import BinaryReader
from telethon.network.mtprotosender import MTProtoSender
from telethon.sessions import SQLiteSession, StringSession

from archiver.models import marked_id

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SELF_ID = 777000111  # the default account
DC = (2, "149.154.167.51", 443)
CHANNEL_LIMIT = 500  # channels an account may join (1,000 with Premium)


def roundtrip(obj: Any) -> Any:
    """What the client receives when a server sends ``obj``."""
    return BinaryReader(bytes(obj)).tgread_object()


def method_of(request: Any) -> str:
    """``channels.GetMessages`` for ``functions.channels.GetMessagesRequest``."""
    module = type(request).__module__.rsplit(".", 1)[-1]
    name = type(request).__name__.removesuffix("Request")
    return name if module == "functions" else f"{module}.{name}"


class Clock:
    """Telegram's clock (and the test's): time passes only when told."""

    def __init__(self, start: datetime = T0 + timedelta(days=1)) -> None:
        self.at = start

    def now(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@dataclass
class _Failure:
    kind: type
    make: Callable[[Any], BaseException]
    after: int  # matching requests to let through first
    times: int
    every: int = 0  # fail only every N-th matching request
    seen: int = 0
    account: int | None = None  # only this account's requests (None: any account's)


@dataclass
class _Limit:
    kind: type
    count: int
    seconds: int
    used: dict[int, int] = field(default_factory=dict)  # account -> requests so far


@dataclass
class FakeAccount:
    id: int
    channel_limit: int = CHANNEL_LIMIT
    pts: int = 1
    seq: int = 0
    flood: dict[str, datetime] = field(default_factory=dict)  # method -> deadline

    def user(self) -> Any:
        return types.User(id=self.id, is_self=True, access_hash=self.id * 3 + 1, first_name="Desk")


@dataclass
class _Event:
    pts: int
    pts_count: int
    date: datetime
    update: Any
    new_id: int | None = None  # the message a new-post event created


class FakeChannel:
    def __init__(self, tg: FakeTelegram, channel: Any, about: str, subscribers: int | None):
        self.tg = tg
        self.channel = channel  # as the default account sees it
        self.about = about
        self.subscribers = subscribers
        self.ids: list[int] = []  # ascending
        self.messages: dict[int, Any] = {}
        self.next_id = 1
        self.pts = 1
        self.events: list[_Event] = []
        self.members: set[int] = set()
        self.banned: set[int] = set()
        self.private = False
        self.join_request = False  # joins wait for an admin's approval (INVITE_REQUEST_SENT)

    @property
    def marked_id(self) -> int:
        return int(marked_id(self.channel.id))

    @property
    def bare_id(self) -> int:
        return int(self.channel.id)

    def hash_for(self, account: int) -> int:
        """This account's access hash for the channel (the default account's is the one the
        channel was made with)."""
        if account == SELF_ID:
            return int(self.channel.access_hash)
        digest = hashlib.sha256(f"{self.channel.id}:{account}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    def seen_by(self, account: int) -> Any:
        """The ``Channel`` object as this account receives it."""
        c = self.channel
        return types.Channel(
            id=c.id,
            title=c.title,
            photo=c.photo,
            date=c.date,
            broadcast=True,
            left=account not in self.members,
            access_hash=self.hash_for(account),
            username=None if self.private else c.username,
        )

    def readable_by(self, account: int) -> bool:
        if account in self.banned:
            return False
        return not self.private or account in self.members


class FakeTelegram:
    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock or Clock()
        self.channels: dict[int, FakeChannel] = {}  # bare id -> channel
        self.accounts: dict[int, FakeAccount] = {SELF_ID: FakeAccount(SELF_ID)}
        self.keys: dict[bytes, int] = {}  # registered auth key -> account
        self.requests: list[Any] = []  # unwrapped requests, in order
        self.sent_by: list[tuple[int | None, Any]] = []  # (account, request)
        self.sent_during_wait: list[Any] = []  # requests sent while their method was waiting
        self.failures: list[_Failure] = []
        self.happenings: list[tuple[type, int, Callable[[], Any]]] = []  # see during()
        self.limits: list[_Limit] = []
        self.senders: list[FakeSender] = []
        self.authorized = True  # False: Telegram revoked every session
        self.files: dict[int, bytes] = {}  # photo or document id -> its bytes (upload.getFile)

    # ------------------------------------------------------------------- building the world
    def add_account(self, user_id: int, *, channel_limit: int = CHANNEL_LIMIT) -> FakeAccount:
        acc = FakeAccount(user_id, channel_limit=channel_limit)
        self.accounts[user_id] = acc
        return acc

    def register(self, key: bytes, account: int = SELF_ID) -> None:
        """Telegram now knows this auth key as a login of ``account``."""
        self.accounts.setdefault(account, FakeAccount(account))
        self.keys[key] = account

    def _new_key(self, account: int) -> AuthKey:
        key = hashlib.sha512(f"key:{account}:{len(self.keys)}".encode()).digest() * 4
        self.register(key, account)
        return AuthKey(key)

    def session(self, account: int = SELF_ID) -> StringSession:
        """A session string logged in as ``account``."""
        s = StringSession()
        s.set_dc(*DC)
        s.auth_key = self._new_key(account)
        return s

    def session_file(self, path: Path, account: int = SELF_ID) -> Path:
        """A SQLite session file (Telethon's own format) logged in as ``account``: it keeps the
        update state, so ``catch_up=True`` has something to catch up from."""
        s = SQLiteSession(str(path))
        s.set_dc(*DC)
        s.auth_key = self._new_key(account)
        s.save()
        s.close()
        return path if path.name.endswith(".session") else path.with_name(path.name + ".session")

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
        fc = FakeChannel(self, ch, about, subscribers)
        self.channels[bare_id] = fc
        return fc

    def channel(self, bare_id: int | None = None) -> FakeChannel:
        return self.channels[bare_id] if bare_id is not None else next(iter(self.channels.values()))

    def join(self, account: int = SELF_ID, *bare_ids: int) -> None:
        """Make ``account`` a member of the channels (default: the first), as if it joined."""
        for b in bare_ids or (self.channel().bare_id,):
            self.channels[b].members.add(account)

    def _event(self, fc: FakeChannel, make: Callable[[int], Any], count: int, push: bool,
               new_id: int | None = None) -> None:  # fmt: skip
        fc.pts += count
        upd = make(fc.pts)
        fc.events.append(_Event(fc.pts, count, self.clock.now(), upd, new_id))
        if push:
            self._push(fc, upd)

    def _store(self, fc: FakeChannel, msg: Any, push: bool, new: bool) -> Any:
        if msg.id not in fc.messages:
            bisect.insort(fc.ids, msg.id)
        fc.messages[msg.id] = msg
        fc.next_id = max(fc.next_id, msg.id + 1)
        if new:
            self._event(
                fc, lambda pts: types.UpdateNewChannelMessage(msg, pts, 1), 1, push, new_id=msg.id
            )
        else:
            self._event(fc, lambda pts: types.UpdateEditChannelMessage(msg, pts, 1), 1, push)
        return msg

    def post(
        self,
        text: str = "",
        *,
        bare_id: int | None = None,
        id: int | None = None,
        date: datetime | None = None,
        push: bool = True,
        **fields: Any,
    ) -> Any:
        """A new post (a real ``types.Message``); ids count up from 1 unless given. ``push``:
        False when Telegram never delivers its update (a gap the client sees later, or never)."""
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
        return self._store(fc, msg, push, new=True)

    def posts(self, n: int, *, bare_id: int | None = None, text: str = "post {}",
              push: bool = True) -> list[Any]:  # fmt: skip
        return [self.post(text.format(i + 1), bare_id=bare_id, push=push) for i in range(n)]

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
        return self._store(fc, msg, True, new=True)

    def edit(self, id: int, text: str, *, bare_id: int | None = None, push: bool = True,
             **fields: Any) -> Any:  # fmt: skip
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
        return self._store(fc, msg, push, new=False)

    def delete(self, *ids: int, bare_id: int | None = None, push: bool = True) -> None:
        fc = self.channel(bare_id)
        gone = [i for i in ids if fc.messages.pop(i, None) is not None]
        for i in gone:
            fc.ids.remove(i)
        if gone:
            self._event(
                fc,
                lambda pts: types.UpdateDeleteChannelMessages(fc.bare_id, gone, pts, len(gone)),
                len(gone),
                push,
            )

    # ------------------------------------------------------------------------- observation
    def fail(
        self,
        kind: type,
        make: Callable[[Any], BaseException],
        *,
        after: int = 0,
        times: int = 1,
        every: int = 0,
        account: int | None = None,
    ) -> None:
        """Answer the request of type ``kind`` that comes after ``after`` more of them with
        ``make(request)`` raised, ``times`` times (with ``every``: only every N-th of them;
        with ``account``: only that account's requests. Telegram's flood waits and limits are
        per account: FLOOD_WAIT_X "for the method, for this account",
        https://core.telegram.org/api/errors#420-flood)."""
        self.failures.append(_Failure(kind, make, after, times, every, account=account))

    def revoke(self, account: int) -> None:
        """The account's sessions are logged out (from another device: Settings, Devices):
        every auth key of it gets AUTH_KEY_UNREGISTERED from now on, the other accounts' keys
        go on working (https://core.telegram.org/api/errors#401-unauthorized;
        https://core.telegram.org/method/auth.resetAuthorizations)."""
        self.keys = {k: a for k, a in self.keys.items() if a != account}

    def during(self, kind: type, action: Callable[[], Any], *, after: int = 0) -> None:
        """Run ``action`` (a post, an edit...) in the world while Telegram serves the request
        of type ``kind`` that comes after ``after`` more of them: something that happens
        while the client is busy, e.g. a live post during another channel's backfill."""
        self.happenings.append((kind, after, action))

    def limit(self, kind: type, count: int, seconds: int) -> None:
        """Each account may send ``count`` requests of ``kind``; the next gets a flood wait of
        ``seconds`` (and Telegram keeps it: see the module docstring)."""
        self.limits.append(_Limit(kind, count, seconds))

    def count(self, kind: type) -> int:
        return sum(isinstance(r, kind) for r in self.requests)

    def counts(self) -> dict[str, int]:
        """Requests by method, e.g. ``{"messages.GetHistory": 3}``."""
        out: dict[str, int] = {}
        for r in self.requests:
            out[method_of(r)] = out.get(method_of(r), 0) + 1
        return out

    # -------------------------------------------------------------------------- pushing
    def _push(self, fc: FakeChannel, upd: Any) -> None:
        for sender in list(self.senders):
            acc = sender.account
            if acc is None or not sender.subscribed or not sender.connected or sender.down:
                continue
            if acc not in fc.members or acc in fc.banned:
                continue
            updates = types.Updates(
                updates=[upd], users=[], chats=[fc.seen_by(acc)], date=self.clock.now(), seq=0
            )
            sender.updates_queue.put_nowait(roundtrip(updates))

    # ----------------------------------------------------------------------------- serving
    def answer(self, request: Any, sender: FakeSender) -> Any:
        wrapped = False
        if isinstance(request, functions.InvokeWithLayerRequest):
            request = request.query
        if isinstance(request, functions.InvokeWithoutUpdatesRequest):  # receive_updates=False
            request = request.query
            wrapped = True
        if isinstance(request, functions.InitConnectionRequest):
            request = request.query
        if not wrapped:
            sender.subscribed = True  # a connection that sends a plain request gets updates
        self.requests.append(request)
        account = sender.account
        self.sent_by.append((account, request))
        due, waiting = [], []
        for kind, after, action in self.happenings:
            if not isinstance(request, kind):
                waiting.append((kind, after, action))
            elif after > 0:
                waiting.append((kind, after - 1, action))
            else:
                due.append(action)
        self.happenings = waiting
        for action in due:
            action()
        if not isinstance(request, functions.help.GetConfigRequest):
            if account is None or not self.authorized:
                raise errors.AuthKeyUnregisteredError(request=request)
            self._flood_check(self.accounts[account], request)
        for f in self.failures:
            if f.account is not None and f.account != account:
                continue
            if isinstance(request, f.kind) and f.times > 0:
                if f.after > 0:
                    f.after -= 1
                    continue
                f.seen += 1
                if f.every and f.seen % f.every:
                    continue
                f.times -= 1
                exc = f.make(request)
                if isinstance(exc, errors.FloodWaitError) and account is not None:
                    self._flood_set(self.accounts[account], request, exc.seconds)
                raise exc
        handler = self._handlers().get(type(request))
        if handler is None:
            raise NotImplementedError(f"the fake Telegram does not answer {type(request).__name__}")
        result = handler(request, account)
        return result if isinstance(result, list) else roundtrip(result)

    def _flood_set(self, acc: FakeAccount, request: Any, seconds: int) -> None:
        acc.flood[method_of(request)] = self.clock.now() + timedelta(seconds=seconds)

    def _flood_check(self, acc: FakeAccount, request: Any) -> None:
        due = acc.flood.get(method_of(request))
        now = self.clock.now()
        if due is not None and due > now:
            self.sent_during_wait.append(request)
            left = int((due - now).total_seconds() + 0.999)
            raise errors.FloodWaitError(request=request, capture=left)
        for lim in self.limits:
            if isinstance(request, lim.kind):
                used = lim.used.get(acc.id, 0) + 1
                lim.used[acc.id] = used
                if used > lim.count:
                    self._flood_set(acc, request, lim.seconds)
                    raise errors.FloodWaitError(request=request, capture=lim.seconds)

    def _handlers(self) -> dict[type, Callable[[Any, Any], Any]]:
        return {
            functions.help.GetConfigRequest: self._config,
            functions.messages.GetHistoryRequest: self._history,
            functions.channels.GetMessagesRequest: self._get_messages,
            functions.contacts.ResolveUsernameRequest: self._resolve,
            functions.channels.GetFullChannelRequest: self._full,
            functions.channels.JoinChannelRequest: self._join,
            functions.updates.GetStateRequest: self._state,
            functions.updates.GetDifferenceRequest: self._difference,
            functions.updates.GetChannelDifferenceRequest: self._channel_difference,
            functions.users.GetUsersRequest: self._users,
            functions.channels.GetChannelsRequest: self._get_channels,
            functions.upload.GetFileRequest: self._get_file,
        }

    def _peer(self, peer: Any, account: int) -> FakeChannel:
        """The channel an ``InputPeerChannel``/``InputChannel`` names, if the hash is this
        account's; ``CHANNEL_PRIVATE`` when the account may not read it."""
        fc = self.channels.get(peer.channel_id)
        if fc is None or fc.hash_for(account) != peer.access_hash:
            raise errors.ChannelInvalidError(request=None)
        if not fc.readable_by(account):
            raise errors.ChannelPrivateError(request=None)
        return fc

    def _config(self, req: Any, account: Any) -> Any:
        now = self.clock.now()
        return types.Config(
            date=now, expires=now + timedelta(hours=1), test_mode=False, this_dc=DC[0],
            dc_options=[types.DcOption(id=DC[0], ip_address=DC[1], port=DC[2])],
            dc_txt_domain_name="", chat_size_max=200, megagroup_size_max=200000,
            forwarded_count_max=100, online_update_period_ms=210000,
            offline_blur_timeout_ms=5000, offline_idle_timeout_ms=30000,
            online_cloud_timeout_ms=300000, notify_cloud_delay_ms=30000,
            notify_default_delay_ms=1500, push_chat_period_ms=60000, push_chat_limit=2,
            edit_time_limit=172800, revoke_time_limit=2147483647,
            revoke_pm_time_limit=2147483647, rating_e_decay=2419200, stickers_recent_limit=200,
            channels_read_media_period=604800, call_receive_timeout_ms=20000,
            call_ring_timeout_ms=90000, call_connect_timeout_ms=30000,
            call_packet_timeout_ms=10000, me_url_prefix="https://t.me/",
            caption_length_max=1024, message_length_max=4096, webfile_dc_id=4,
        )  # fmt: skip

    def _history(self, req: Any, account: int) -> Any:
        fc = self._peer(req.peer, account)
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
            pts=fc.pts, count=n, messages=window, topics=[], chats=[fc.seen_by(account)], users=[]
        )

    def _get_messages(self, req: Any, account: int) -> Any:
        fc = self._peer(req.channel, account)
        out = []
        for im in req.id:
            msg = fc.messages.get(im.id)
            out.append(msg if msg is not None else types.MessageEmpty(id=im.id, peer_id=None))
        return types.messages.ChannelMessages(
            pts=fc.pts, count=len(out), messages=out, topics=[], chats=[fc.seen_by(account)],
            users=[],
        )  # fmt: skip

    def _get_channels(self, req: Any, account: int) -> Any:
        # access_hash=0 is refused, as Telegram does for a user account's unknown channels
        return types.messages.Chats(chats=[self._peer(c, account).seen_by(account) for c in req.id])

    def _resolve(self, req: Any, account: int) -> Any:
        for fc in self.channels.values():
            if not fc.private and (fc.channel.username or "").lower() == req.username.lower():
                return types.contacts.ResolvedPeer(
                    peer=types.PeerChannel(fc.channel.id), chats=[fc.seen_by(account)], users=[]
                )
        raise errors.UsernameNotOccupiedError(request=req)

    def _full(self, req: Any, account: int) -> Any:
        fc = self._peer(req.channel, account)
        full = types.ChannelFull(
            id=fc.channel.id,
            about=fc.about,
            read_inbox_max_id=0,
            read_outbox_max_id=0,
            unread_count=0,
            chat_photo=types.PhotoEmpty(id=0),
            notify_settings=types.PeerNotifySettings(),
            bot_info=[],
            pts=fc.pts,
            participants_count=fc.subscribers,
        )
        return types.messages.ChatFull(full_chat=full, chats=[fc.seen_by(account)], users=[])

    def _join(self, req: Any, account: int) -> Any:
        fc = self.channels.get(req.channel.channel_id)
        if fc is None or fc.hash_for(account) != req.channel.access_hash:
            raise errors.ChannelInvalidError(request=req)
        if account in fc.banned or (fc.private and account not in fc.members):
            raise errors.ChannelPrivateError(request=req)
        if fc.join_request and account not in fc.members:
            raise errors.InviteRequestSentError(request=req)  # the request waits for an admin
        if account not in fc.members:
            joined = sum(account in c.members for c in self.channels.values())
            if joined >= self.accounts[account].channel_limit:
                raise errors.ChannelsTooMuchError(request=req)
            fc.members.add(account)
        return types.Updates(
            updates=[types.UpdateChannel(fc.bare_id)],
            users=[],
            chats=[fc.seen_by(account)],
            date=self.clock.now(),
            seq=0,
        )

    def _state(self, req: Any, account: int) -> Any:
        acc = self.accounts[account]
        return types.updates.State(
            pts=acc.pts, qts=0, date=self.clock.now(), seq=acc.seq, unread_count=0
        )

    def _difference(self, req: Any, account: int) -> Any:
        """Channels with news since ``req.date`` come as ``updateChannelTooLong``; the client
        then asks each for its channel difference (https://core.telegram.org/api/updates)."""
        acc = self.accounts[account]
        since = req.date
        busy = [
            fc
            for fc in self.channels.values()
            if account in fc.members and any(e.date > since for e in fc.events)
        ]
        now = self.clock.now()
        if not busy:
            return types.updates.DifferenceEmpty(date=now, seq=acc.seq)
        return types.updates.Difference(
            new_messages=[],
            new_encrypted_messages=[],
            other_updates=[types.UpdateChannelTooLong(fc.bare_id) for fc in busy],
            chats=[fc.seen_by(account) for fc in busy],
            users=[],
            state=types.updates.State(pts=acc.pts, qts=0, date=now, seq=acc.seq, unread_count=0),
        )

    def _channel_difference(self, req: Any, account: int) -> Any:
        fc = self._peer(req.channel, account)
        missing = [e for e in fc.events if e.pts > req.pts]
        if not missing:
            return types.updates.ChannelDifferenceEmpty(pts=fc.pts, final=True)
        ch = fc.seen_by(account)
        if len(missing) > req.limit:
            top = fc.ids[-1] if fc.ids else 0
            dialog = types.Dialog(
                peer=types.PeerChannel(fc.bare_id), top_message=top, read_inbox_max_id=top,
                read_outbox_max_id=0, unread_count=0, unread_mentions_count=0,
                unread_reactions_count=0, unread_poll_votes_count=0,
                notify_settings=types.PeerNotifySettings(), pts=fc.pts,
            )  # fmt: skip
            latest = [fc.messages[i] for i in reversed(fc.ids[-req.limit :])]
            return types.updates.ChannelDifferenceTooLong(
                dialog=dialog, messages=latest, chats=[ch], users=[], final=True
            )
        new_ids = {e.new_id for e in missing if e.new_id is not None}
        new = [fc.messages[i] for i in sorted(new_ids) if i in fc.messages]
        other = [
            e.update
            for e in missing
            if e.new_id is None
            and not (
                isinstance(e.update, types.UpdateEditChannelMessage)
                and e.update.message.id in new_ids
            )
        ]
        return types.updates.ChannelDifference(
            pts=fc.pts, new_messages=new, other_updates=other, chats=[ch], users=[], final=True
        )

    def _get_file(self, req: Any, account: int) -> Any:
        data = self.files.get(req.location.id)
        if data is None:
            raise errors.LocationInvalidError(request=req)  # a file this fake never had
        chunk = data[req.offset : req.offset + req.limit]
        return types.upload.File(type=types.storage.FileJpeg(), mtime=0, bytes=chunk)

    def _users(self, req: Any, account: int) -> list[Any]:
        return [self.accounts[account].user()]


class FakeSender:
    """Stands in for Telethon's ``MTProtoSender`` (``network/mtprotosender.py``): the same
    ``connect``/``send``/``disconnect``/``disconnected`` surface, answering from a
    :class:`FakeTelegram` instead of a socket."""

    def __init__(self, tg: FakeTelegram, client: Any) -> None:
        self.tg = tg
        self.client = client
        self.auth_key: Any = client._sender.auth_key  # what TelegramBaseClient gave its sender
        self.updates_queue: asyncio.Queue[Any] = client._updates_queue
        self._updates_queue = self.updates_queue  # for MTProtoSender._store_own_updates
        self.connected = False
        self.subscribed = False
        self.down = False
        self._disconnected: asyncio.Future[None] | None = None
        tg.senders.append(self)

    @property
    def account(self) -> int | None:
        key = getattr(self.auth_key, "key", None)
        return self.tg.keys.get(key) if key else None

    def send(self, request: Any, ordered: bool = False) -> asyncio.Future[Any]:
        if not self.connected:  # MTProtoSender.send, network/mtprotosender.py:189
            raise ConnectionError("Cannot send requests while disconnected")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        try:
            result = self.tg.answer(request, self)
            MTProtoSender._store_own_updates(self, result)  # updates in a result are queued
            fut.set_result(result)
        except BaseException as exc:
            fut.set_exception(exc)
        return fut

    def is_connected(self) -> bool:
        return self.connected

    def _transport_connected(self) -> bool:
        return self.connected and not self.down

    def _keepalive_ping(self, rnd_id: int) -> None:
        pass

    @property
    def disconnected(self) -> asyncio.Future[None]:
        if self._disconnected is None or (self._disconnected.done() and self.connected):
            self._disconnected = asyncio.get_running_loop().create_future()
        return self._disconnected

    async def connect(self, connection: Any) -> bool:
        if self.connected:
            return False  # MTProtoSender.connect: "Sender already connected"
        if self.auth_key is None or not getattr(self.auth_key, "key", None):
            # the key exchange makes a new key, which no account has logged in with yet
            self.auth_key = AuthKey(hashlib.sha512(str(id(self)).encode()).digest() * 4)
        self.connected = True
        self.subscribed = False
        return True

    async def disconnect(self) -> None:
        self.connected = False
        fut = self.disconnected
        if not fut.done():
            fut.set_result(None)

    def drop(self, exc: BaseException | None = None) -> None:
        """The connection is lost for good (what Telethon reports once its retries give up)."""
        self.connected = False
        fut = self.disconnected
        if not fut.done():
            if exc is None:
                fut.set_result(None)
            else:
                fut.set_exception(exc)

    @contextlib.contextmanager
    def outage(self) -> Iterator[None]:
        """The connection is down for a while: updates sent meanwhile never arrive. On leaving,
        it comes back by itself and the client's ``_handle_auto_reconnect`` runs, as after
        ``MTProtoSender._reconnect`` (``network/mtprotosender.py:425``)."""
        self.down = True
        try:
            yield
        finally:
            self.down = False
            self.subscribed = False  # a new connection: subscribed again by the next request
            asyncio.get_running_loop().create_task(self.client._handle_auto_reconnect())


def attach(client: Any, tg: FakeTelegram) -> Any:
    """Wire a real, unconnected client to ``tg``: its sender answers from the fake. Telethon's
    own ``connect()`` runs on top of it."""
    client._sender = FakeSender(tg, client)
    return client


def fake_client(
    tg: FakeTelegram,
    session: Any = None,
    *,
    receive_updates: bool = False,
    account: int = SELF_ID,
    catch_up: bool = False,
) -> Any:
    """telewatch's own client class, unconnected, talking to nothing but ``tg``; with no
    ``session``, a session string logged in as ``account``."""
    from archiver.sources.telethon_session import make_client

    client = make_client(
        session if session is not None else tg.session(account),
        1,
        "0" * 32,
        receive_updates=receive_updates,
        catch_up=catch_up,
    )
    return attach(client, tg)


async def connected(
    tg: FakeTelegram,
    session: Any = None,
    *,
    receive_updates: bool = False,
    account: int = SELF_ID,
    catch_up: bool = False,
) -> Any:
    """:func:`fake_client`, connected with Telethon's real ``connect()``."""
    client = fake_client(
        tg, session, receive_updates=receive_updates, account=account, catch_up=catch_up
    )
    await client.connect()
    return client


def factory_for(tg: FakeTelegram, made: list[Any] | None = None) -> Callable[..., Any]:
    """A ``factory`` for ``connect_client``/``login`` that builds fake-wired clients."""

    def make(session: Any, api_id: int, api_hash: str, *, receive_updates: bool = False,
             catch_up: bool = False) -> Any:  # fmt: skip
        client = fake_client(tg, session, receive_updates=receive_updates, catch_up=catch_up)
        if made is not None:
            made.append(client)
        return client

    return make


class Sleeper:
    """An injectable sleeper that records the waits and lets no real time pass: it moves
    Telegram's clock (when it has one) and makes Telethon forget its own memory of past flood
    waits (``client._flood_waited_requests``, keyed on real time), as real time passing would."""

    def __init__(self, client: Any = None, clock: Clock | None = None) -> None:
        self.client = client
        self.clock = clock
        if clock is None and client is not None and isinstance(client._sender, FakeSender):
            self.clock = client._sender.tg.clock
        self.slept: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)
        if self.clock is not None:
            self.clock.advance(seconds)
        if self.client is not None:
            self.client._flood_waited_requests.clear()


def flood(seconds: int) -> Callable[[Any], BaseException]:
    return lambda request: errors.FloodWaitError(request=request, capture=seconds)


def settings_for(
    tmp_path: Any,
    *channels: Any,
    download: frozenset[str] = frozenset(),
    max_size_mb: float = 20.0,
    recheck: dict[str, Any] | None = None,
    **telegram: Any,
) -> Any:
    """Settings for tests: api id/hash set, the session and media under ``tmp_path``, and
    ``channels`` (ChannelConfig objects, or usernames with ``backfill = "all"``); ``recheck``
    changes ``[recheck]`` keys (``recent_days``, ``full_recheck_days``)."""
    from dataclasses import replace

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
    settings = Settings(
        storage=StorageSettings(path=tmp_path / "a.db", media_dir=tmp_path / "media"),
        telegram=TelegramSettings(**tg),
        media=MediaSettings(download=download, max_size_mb=max_size_mb),
        channels=chans,
    )
    if recheck:
        settings = replace(settings, recheck=replace(settings.recheck, **recheck))
    return settings
