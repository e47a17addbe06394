"""The live listener: new, edited and deleted posts of the ``join = true`` channels as they
happen, through the same ingest path as sync, and nothing lost across downtime.

- **Start and every reconnect**: each channel is resolved and joined (when not yet), read
  forward from its high-water mark, and its recent window (``[recheck] recent_days``) is read
  again by id before live events are trusted: Telethon's own catch-up brings back new posts
  only (it drops the edits and deletions of a channel difference, see
  :mod:`archiver.sources.telethon_reread`). Reconnects are both the ones Telethon does by
  itself (the client's ``reconnect_hooks``) and the ones :func:`run_live` does when the
  connection is lost for good.
- **Gaps Telegram reports** (``channelDifferenceTooLong``, a channel difference carrying
  edits or deletions, ``differenceTooLong``), which Telethon handles silently, reach us
  through the client's ``gap_hooks`` and trigger the same re-read for that channel.
- **Reconciliation**: every ``reconcile_seconds`` (2 minutes) each channel's newest page is
  read (one ``getHistory``): posts whose update never came (Telethon resyncs by itself only
  after 15 minutes of silence), and edits and deletions of the newest posts. Its channel
  object also says whether this account is still a member: one that left (or was removed) is
  joined again.
- **Isolation**: a channel that cannot be resolved, joined or read gets its status and is
  tried again after its backoff; the others go on, and the listener stays up. A join refused
  with ``CHANNELS_TOO_MUCH`` leaves the channel polled (reconciled) instead of live.
- **New posts alert at once**, even during a long first backfill: above the newest id at the
  start of following, posts are new (see :mod:`archiver.sources.telethon`). A channel's
  event handlers are registered as soon as it is joined and its start of following is known,
  before its forward read: a channel is live while its own or another channel's first
  backfill (hours, for ``backfill = "all"``) is still going on.

Live posts never move the high-water mark: only a forward read (or a newest page that reaches
down to it) proves there is no hole below an id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from telethon import errors, events, functions, utils

from archiver.config import ChannelConfig, Settings, account_name
from archiver.errors import NotLoggedIn, TelewatchError
from archiver.sources.result import ChannelSyncResult, SyncOptions
from archiver.sources.telethon import SOURCE, _Pass, read_new, run_channel, start_following
from archiver.sources.telethon_accounts import account_full
from archiver.sources.telethon_flood import AccountFloodWait, FloodWaitTooLong
from archiver.sources.telethon_ingest import ingest_messages, store_media
from archiver.sources.telethon_reread import reconcile_newest, reread_window
from archiver.sources.telethon_session import check_login
from archiver.sources.telethon_status import JOIN_STATUSES, classify
from archiver.store.accounts import mark_joined
from archiver.store.channels import get_channel
from archiver.store.deletions import confirm_deleted
from archiver.store.following import get_following, get_status, set_status, update_following

log = logging.getLogger(__name__)

RECONNECT_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
RECONCILE_SECONDS = 120.0  # the newest page of every followed channel, this often


class LiveListener:
    """Follows the ``join = true`` Telethon channels of ``settings`` on ``client``."""

    def __init__(
        self,
        archive: Any,
        client: Any,
        settings: Settings,
        *,
        options: SyncOptions | None = None,
        channels: Callable[[], Sequence[ChannelConfig]] | None = None,
    ) -> None:
        self.archive = archive
        self._configs = channels  # this account's channels, read at each pass (None: all)
        self.client = client
        self.settings = settings
        self.options = options or SyncOptions()
        self.channels: dict[int, ChannelConfig] = {}  # followed: marked id -> its config
        self.gaps: set[int | None] = set()  # channels to re-read (None: all of them)
        self.wake = asyncio.Event()  # set when a gap was reported
        self._handlers: list[tuple[Any, Any]] = []
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reconnects = 0  # reconnects no re-read has started after yet
        self._rereading = False
        self._marked: set[int] = set()  # channels whose join is recorded for this account

    @property
    def configs(self) -> list[ChannelConfig]:
        every = self.settings.channels if self._configs is None else self._configs()
        return [c for c in every if c.source == SOURCE and c.join]

    @property
    def account(self) -> str:
        """The name of the account this listener follows channels with."""
        return account_name(self.settings)

    @property
    def pending(self) -> list[ChannelConfig]:
        """Configured channels not followed yet (never resolved, or refused so far)."""
        followed = set(self.channels.values())
        return [c for c in self.configs if c not in followed]

    async def start(self) -> list[ChannelSyncResult]:
        """Hook into the client, then resolve, join, read and re-read every channel."""
        hooks = getattr(self.client, "reconnect_hooks", None)
        if hooks is not None:
            hooks.append(self.on_reconnect)
        gap_hooks = getattr(self.client, "gap_hooks", None)
        if gap_hooks is not None:
            gap_hooks.append(self.on_gap)
        return await self.catch_up(reread=True)

    def stop(self) -> None:
        for callback, builder in self._handlers:
            self.client.remove_event_handler(callback, builder)
        self._handlers = []
        for name, hook in (("reconnect_hooks", self.on_reconnect), ("gap_hooks", self.on_gap)):
            hooks = getattr(self.client, name, None)
            if hooks is not None and hook in hooks:
                hooks.remove(hook)
        for task in self._tasks:
            task.cancel()

    def _register(self) -> None:
        """(Re)register the event handlers for the followed channels' numeric ids (a
        username would make Telethon resolve it again)."""
        for callback, builder in self._handlers:
            self.client.remove_event_handler(callback, builder)
        ids = sorted(self.channels)
        self._handlers = [
            (self._on_message, events.NewMessage(chats=ids)),
            (self._on_message, events.MessageEdited(chats=ids)),
            (self._on_deleted, events.MessageDeleted(chats=ids)),
        ]
        for callback, builder in self._handlers:
            self.client.add_event_handler(callback, builder)

    # ------------------------------------------------------------------------- passes
    async def catch_up(
        self, *, reread: bool = True, only: set[int | None] | None = None
    ) -> list[ChannelSyncResult]:
        """One pass over the followed channels (``only``: those marked ids; None in it or no
        ``only``: all). With ``reread``, the recent window is read again (start, reconnect,
        gap); without, the newest page reconciles. A channel's failure is its status; the
        others go on."""
        async with self._lock:
            results = []
            for cfg in self.configs:
                if only is not None and None not in only:
                    ids = {i for i, c in self.channels.items() if c == cfg}
                    if not ids & only:
                        continue
                results.append(await self._channel(cfg, reread))
            log.info("live: following %d channel(s), %d pending", len(self.channels),
                     len(self.pending))  # fmt: skip
            return results

    async def _channel(self, cfg: ChannelConfig, reread: bool) -> ChannelSyncResult:
        async def body(p: _Pass) -> None:
            await self._join(p)
            if self.channels.get(p.row.id) != cfg:
                await start_following(p)  # first: a live post above follow_from alerts
                self.channels[p.row.id] = cfg
                self._register()  # live from now on, not after every channel's backfill
            if p.row.backfilled and not reread:
                if not await reconcile_newest(p):
                    await read_new(p)
            else:
                await read_new(p)
            if reread:
                await reread_window(p)

        try:
            return await run_channel(
                self.archive, self.client, cfg, self.settings, self.options, body
            )
        except NotLoggedIn:
            raise
        except (TelewatchError, OSError) as exc:
            log.warning("live %s: %s", cfg.ref, exc)
        except Exception:  # the listener must stay up: log with the traceback, go on
            log.exception("live %s: unexpected failure", cfg.ref)
        return ChannelSyncResult(str(cfg.ref), SOURCE, status="error")

    async def _join(self, p: _Pass) -> None:
        """Join unless this account is a member; a refused join is the channel's status
        (too_many_channels, join_pending: tried again daily, the channel is polled meanwhile)."""
        f = await get_following(self.archive, p.row.id)
        if f is not None and f.joined_at is not None:
            if p.row.id not in self._marked:  # once per listener, not at every reconcile
                await mark_joined(self.archive, p.cfg.ref, self.account)
                self._marked.add(p.row.id)
            return
        st = await get_status(self.archive, p.cfg.ref)
        now = self.options.now()
        if st is not None and st.status in JOIN_STATUSES and st.waiting(now):
            return
        try:
            with contextlib.suppress(errors.UserAlreadyParticipantError):
                await p.policy.call(
                    p.name, lambda: self.client(functions.channels.JoinChannelRequest(p.peer))
                )
        except (errors.ChannelsTooMuchError, errors.InviteRequestSentError) as exc:
            problem = classify(exc, now=now, attempts=0, was_readable=True, joining=True)
            await set_status(
                self.archive, p.cfg.ref, source=SOURCE, status=problem.status,
                reason=problem.reason, retry_at=problem.retry_at, now=now, channel_id=p.row.id,
            )  # fmt: skip
            log.warning("live %s: join refused: %s", p.name, problem.reason)
            if isinstance(exc, errors.ChannelsTooMuchError) and len(self.settings.accounts) > 1:
                await account_full(self.archive, self.account, p.cfg, now=now)
            return
        except FloodWaitTooLong as exc:  # the ledger keeps JoinChannel waiting; reads go on
            log.warning("live %s: not joined yet: %s", p.name, exc)
            return
        await update_following(self.archive, p.row.id, joined_at=now)
        await mark_joined(self.archive, p.cfg.ref, self.account)
        if st is not None and st.status in JOIN_STATUSES:
            await set_status(self.archive, p.cfg.ref, source=SOURCE, status="ok", now=now,
                             channel_id=p.row.id)  # fmt: skip
        log.info("live %s: joined", p.name)

    # ------------------------------------------------------------------------- signals
    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def on_reconnect(self) -> None:
        """Telethon reconnected by itself: read forward and re-read, in the background. A
        flapping connection gets the re-read in progress and at most one more (covering every
        reconnect since it began), not one per reconnect."""
        self._reconnects += 1
        if self._rereading:
            return
        self._rereading = True
        self._spawn(self._reread_after_reconnects())

    async def _reread_after_reconnects(self) -> None:
        try:
            while self._reconnects:
                log.info("live: reconnected (%d time(s)); catching up and re-reading the recent"
                         " window", self._reconnects)  # fmt: skip
                self._reconnects = 0
                await self.catch_up(reread=True)
        finally:
            self._rereading = False

    def on_gap(self, channel_id: int | None, reason: str) -> None:
        """Telegram reported a gap Telethon fills silently: re-read that channel."""
        log.warning("live: gap in the updates of %s (%s); re-reading",
                    channel_id if channel_id is not None else "every channel", reason)  # fmt: skip
        self.gaps.add(channel_id)
        self.wake.set()

    async def reread_gaps(self) -> list[ChannelSyncResult]:
        only, self.gaps = set(self.gaps), set()
        self.wake.clear()
        if not only:
            return []
        return await self.catch_up(reread=True, only=only)

    # -------------------------------------------------------------------------- events
    async def _on_message(self, event: Any) -> None:
        await self.ingest_messages([event.message])

    async def _on_deleted(self, event: Any) -> None:
        await self.mark_deleted(event.chat_id, event.deleted_ids)

    async def ingest_messages(self, messages: Sequence[Any]) -> int:
        """New or edited messages from an event; returns the versions added."""
        if not messages:
            return 0
        first = messages[0]
        peer = getattr(first, "peer_id", None)
        channel_id = utils.get_peer_id(peer) if peer is not None else None
        try:
            row = await get_channel(self.archive, channel_id) if channel_id else None
            if row is None or row.id not in self.channels:
                log.warning("live: message %s of a channel not followed ignored",
                            getattr(first, "id", "?"))  # fmt: skip
                return 0
            f = await get_following(self.archive, row.id)
            follow_from = f.follow_from if f is not None else None

            def is_new(mid: int) -> bool:
                if follow_from is None:
                    return row.backfilled
                return mid > follow_from

            stats, pairs, _ = await ingest_messages(
                self.archive, row.id, messages, is_new=is_new, now=self.options.now()
            )
            if pairs:
                await store_media(self.archive, self.client, self.settings, self.options,
                                  _policy(self), pairs)  # fmt: skip
        except TelewatchError as exc:
            log.warning("live: channel %s message %s: %s", channel_id, first.id, exc)
            return 0
        except Exception:  # an event handler is an edge: log with the traceback, keep listening
            log.exception("live: channel %s message %s: not ingested", channel_id, first.id)
            return 0
        log.info(
            "live: channel %s message %s: %d new, %d edited",
            channel_id,
            first.id,
            stats.posts_added,
            stats.versions_added - stats.posts_added,
        )
        return stats.versions_added

    async def mark_deleted(self, channel_id: int | None, message_ids: Sequence[int]) -> int:
        """Telegram's deletion update: a confirmed deletion (``how="live"``)."""
        if channel_id is None or channel_id not in self.channels:
            return 0
        try:
            return await confirm_deleted(
                self.archive, channel_id, message_ids, how="live", alerts=True
            )
        except Exception:  # an event handler is an edge: log with the traceback, keep listening
            log.exception("live: channel %s: deletion of %d post(s) not recorded", channel_id,
                          len(message_ids))  # fmt: skip
            return 0


def _policy(listener: LiveListener) -> Any:
    from archiver.sources.telethon_flood import FloodPolicy

    o = listener.options
    return FloodPolicy(listener.settings.telegram.flood_wait_ceiling, o.sleeper, o.max_flood_waits,
                       o.now)  # fmt: skip


async def _reconnect(
    listener: LiveListener, stop_event: asyncio.Event, delays: Sequence[float]
) -> None:
    client = listener.client
    attempt = 0
    while not stop_event.is_set():
        try:
            await client.connect()
            await check_login(client, listener.options.now)
        except OSError as exc:
            delay = delays[min(attempt, len(delays) - 1)]
            attempt += 1
            log.warning("live: reconnect failed (%s); retrying in %.0fs", exc, delay)
            await listener.options.sleeper(delay)
            continue
        except AccountFloodWait as exc:
            log.warning("live: %s", exc)
            await listener.options.sleeper(float(exc.seconds))
            continue
        log.info("live: reconnected; catching up and re-reading the recent window")
        await listener.catch_up(reread=True)
        return


async def run_live(
    archive: Any,
    client: Any,
    settings: Settings,
    stop_event: asyncio.Event,
    *,
    options: SyncOptions | None = None,
    reconnect_delays: Sequence[float] = RECONNECT_DELAYS,
    catch_up_seconds: float | None = RECONCILE_SECONDS,
    channels: Callable[[], Sequence[ChannelConfig]] | None = None,
) -> None:
    """Follow the channels until ``stop_event`` is set. A connection lost for good is
    reconnected (with growing delays) and followed by a catch-up and re-read; a revoked
    session raises :class:`NotLoggedIn`. A reported gap re-reads its channel at once; every
    ``catch_up_seconds`` the newest page of each channel is reconciled. ``channels``: the
    channels of this client's account, asked again at every pass (None: every configured
    ``join = true`` Telethon channel)."""
    listener = LiveListener(archive, client, settings, options=options, channels=channels)
    await listener.start()
    stop = asyncio.ensure_future(stop_event.wait())
    try:
        while not stop_event.is_set():
            disconnected = client.disconnected
            gap = asyncio.ensure_future(listener.wake.wait())
            try:
                done, _ = await asyncio.wait(
                    {stop, disconnected, gap},
                    timeout=catch_up_seconds,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                gap.cancel()
            if stop_event.is_set():
                break
            if disconnected in done:
                if not disconnected.cancelled() and disconnected.exception() is not None:
                    log.warning("live: disconnected from Telegram (%s)", disconnected.exception())
                else:
                    log.warning("live: disconnected from Telegram")
                await _reconnect(listener, stop_event, reconnect_delays)
            elif gap in done:
                await listener.reread_gaps()
            else:
                await listener.catch_up(reread=False)
    finally:
        stop.cancel()
        listener.stop()
