"""The live listener: new, edited and deleted posts of the ``join = true`` channels as they
happen, through the same ingest path as sync.

On start it resolves and joins each channel (``JoinChannelRequest`` once per channel, ever),
registers Telethon's ``NewMessage``, ``MessageEdited`` and ``MessageDeleted`` events for the
channels' numeric marked ids (a username would make Telethon resolve it again), and catches up
from each high-water mark with the ordinary sync, before anything live is trusted. It catches
up again after every reconnect: the ones Telethon does by itself (reported by the client's
``reconnect_hooks``) and the ones :func:`run_live` does when the connection is lost for good.

Live posts are ingested but never move the high-water mark: only a forward read proves there
is no hole below an id, so the next sync re-reads them (unchanged text costs nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from functools import partial
from typing import Any

from telethon import errors, events, functions

from archiver.config import ChannelConfig, Settings
from archiver.errors import NotLoggedIn, TelewatchError
from archiver.sources.telethon import (
    REVOKED,
    SOURCE,
    FloodPolicy,
    convert,
    resolve_channel,
    store_media,
    sync_telethon_channel,
)
from archiver.store.archive import Archive, ts, utcnow
from archiver.store.channels import get_channel
from archiver.store.deletions import mark_deleted
from archiver.store.ingest import ingest
from archiver.sync import ChannelSyncResult, SyncOptions, guarded

log = logging.getLogger(__name__)

JOINED_KEY = "telethon.joined.{}"  # meta key: when this account joined the channel
RECONNECT_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
CATCH_UP_SECONDS = 600.0  # a catch-up at least this often, even with no reconnect


async def join_once(
    archive: Archive, client: Any, row_id: int, peer: Any, policy: FloodPolicy
) -> bool:
    """Join the channel unless this archive already did; True when a request was made."""
    key = JOINED_KEY.format(row_id)
    if await archive.get_meta(key) is not None:
        return False
    with contextlib.suppress(errors.UserAlreadyParticipantError):
        await policy.call(
            f"join {row_id}", lambda: client(functions.channels.JoinChannelRequest(peer))
        )
    async with archive.transaction() as db:
        await db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, ts(utcnow())),
        )
    log.info("channel %s: joined", row_id)
    return True


class LiveListener:
    """Follows the ``join = true`` Telethon channels of ``settings`` on ``client``."""

    def __init__(
        self,
        archive: Archive,
        client: Any,
        settings: Settings,
        *,
        options: SyncOptions | None = None,
    ) -> None:
        self.archive = archive
        self.client = client
        self.settings = settings
        self.options = options or SyncOptions()
        self.channels: dict[int, ChannelConfig] = {}  # marked id -> its config
        self.pending: list[ChannelConfig] = []  # not resolved or joined yet
        self._handlers: list[tuple[Any, Any]] = []
        self._catch_up_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def configs(self) -> list[ChannelConfig]:
        return [c for c in self.settings.channels if c.source == SOURCE and c.join]

    def _policy(self) -> FloodPolicy:
        return FloodPolicy(
            self.settings.telegram.flood_wait_ceiling,
            self.options.sleeper,
            self.options.max_flood_waits,
        )

    async def start(self) -> list[ChannelSyncResult]:
        """Resolve and join the channels, register the handlers, then catch up."""
        self.pending = list(self.configs)
        hooks = getattr(self.client, "reconnect_hooks", None)
        if hooks is not None:
            hooks.append(self.on_reconnect)
        return await self.catch_up()

    async def _resolve_pending(self) -> None:
        """Resolve and join the channels not followed yet; a channel that fails (a flood wait,
        a private channel) is logged and tried again at the next catch-up."""
        if not self.pending:
            return
        policy = self._policy()
        still: list[ChannelConfig] = []
        added = 0
        for cfg in self.pending:
            try:
                row, peer = await resolve_channel(self.archive, self.client, cfg, policy)
                await join_once(self.archive, self.client, row.id, peer, policy)
            except NotLoggedIn:
                raise
            except TelewatchError as exc:
                log.warning("live %s: not followed yet: %s", cfg.ref, exc)
                still.append(cfg)
                continue
            self.channels[row.id] = cfg
            added += 1
        self.pending = still
        if added:
            self._register()
        log.info("live: following %d channel(s), %d pending", len(self.channels), len(still))

    def _register(self) -> None:
        """(Re)register the event handlers for the followed channels' numeric ids."""
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

    def stop(self) -> None:
        for callback, builder in self._handlers:
            self.client.remove_event_handler(callback, builder)
        self._handlers = []
        hooks = getattr(self.client, "reconnect_hooks", None)
        if hooks is not None and self.on_reconnect in hooks:
            hooks.remove(self.on_reconnect)
        for task in self._tasks:
            task.cancel()

    async def catch_up(self) -> list[ChannelSyncResult]:
        """Sync every followed channel from its high-water mark (the ordinary sync path)."""
        async with self._catch_up_lock:
            await self._resolve_pending()
            results = []
            for cfg in self.channels.values():
                results.append(
                    await guarded(
                        self.archive,
                        cfg,
                        partial(
                            sync_telethon_channel,
                            self.archive,
                            self.client,
                            cfg,
                            self.settings,
                            options=self.options,
                        ),
                        what="catch-up",
                    )
                )
            return results

    async def on_reconnect(self) -> None:
        """Called after Telethon reconnected by itself: catch up in the background."""
        log.info("live: reconnected; catching up")
        task = asyncio.get_running_loop().create_task(self.catch_up())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _on_message(self, event: Any) -> None:
        await self.ingest_messages([event.message])

    async def _on_deleted(self, event: Any) -> None:
        await self.mark_deleted(event.chat_id, event.deleted_ids)

    async def ingest_messages(self, messages: Sequence[Any]) -> int:
        """New or edited messages from an event; returns the versions added."""
        pairs = convert(messages)
        if not pairs:
            return 0
        channel_id = pairs[0][1].channel_id
        try:
            row = await get_channel(self.archive, channel_id)
            if row is None:  # not resolved by us: never happens for a followed channel
                log.warning(
                    "live: message %s of unknown channel %s ignored",
                    pairs[0][1].message_id,
                    channel_id,
                )
                return 0
            stats = await ingest(
                self.archive, [post for _, post in pairs], source=SOURCE, alerts=row.backfilled
            )
            await store_media(
                self.archive, self.client, self.settings, self.options, self._policy(), pairs
            )
        except TelewatchError as exc:
            log.warning("live: channel %s message %s: %s", channel_id, pairs[0][1].message_id, exc)
            return 0
        except Exception:  # an event handler is an edge: log with the traceback, keep listening
            log.exception(
                "live: channel %s message %s: not ingested", channel_id, pairs[0][1].message_id
            )
            return 0
        log.info(
            "live: channel %s message %s: %d new, %d edited",
            channel_id,
            pairs[0][1].message_id,
            stats.posts_added,
            stats.versions_added - stats.posts_added,
        )
        return stats.versions_added

    async def mark_deleted(self, channel_id: int | None, message_ids: Sequence[int]) -> int:
        if channel_id is None or channel_id not in self.channels:
            return 0
        try:
            return await mark_deleted(
                self.archive, channel_id, message_ids, how="live", alerts=True
            )
        except Exception:  # an event handler is an edge: log with the traceback, keep listening
            log.exception(
                "live: channel %s: deletion of %d post(s) not recorded",
                channel_id,
                len(message_ids),
            )
            return 0


async def _reconnect(
    listener: LiveListener, stop_event: asyncio.Event, delays: Sequence[float]
) -> None:
    client = listener.client
    attempt = 0
    while not stop_event.is_set():
        try:
            await client.connect()
            if not await client.is_user_authorized():
                raise NotLoggedIn(REVOKED)
        except OSError as exc:
            delay = delays[min(attempt, len(delays) - 1)]
            attempt += 1
            log.warning("live: reconnect failed (%s); retrying in %.0fs", exc, delay)
            await listener.options.sleeper(delay)
            continue
        log.info("live: reconnected; catching up")
        await listener.catch_up()
        return


async def run_live(
    archive: Archive,
    client: Any,
    settings: Settings,
    stop_event: asyncio.Event,
    *,
    options: SyncOptions | None = None,
    reconnect_delays: Sequence[float] = RECONNECT_DELAYS,
    catch_up_seconds: float | None = CATCH_UP_SECONDS,
) -> None:
    """Follow the channels until ``stop_event`` is set. A connection lost for good is
    reconnected (with growing delays) and followed by a catch-up; a revoked session raises
    :class:`NotLoggedIn`. Every ``catch_up_seconds`` with no disconnection, a catch-up runs
    anyway (one history request per idle channel): Telegram does not push every update of a
    big channel to a user account, and the catch-up is what moves the cursor."""
    listener = LiveListener(archive, client, settings, options=options)
    await listener.start()
    stop = asyncio.ensure_future(stop_event.wait())
    try:
        while not stop_event.is_set():
            disconnected = client.disconnected
            done, _ = await asyncio.wait(
                {stop, disconnected},
                timeout=catch_up_seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if stop_event.is_set():
                break
            if not done:
                await listener.catch_up()
                continue
            if not disconnected.cancelled() and disconnected.exception() is not None:
                log.warning("live: disconnected from Telegram (%s)", disconnected.exception())
            else:
                log.warning("live: disconnected from Telegram")
            await _reconnect(listener, stop_event, reconnect_delays)
    finally:
        stop.cancel()
        listener.stop()
