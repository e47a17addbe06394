"""The Telethon source: channel resolution, sync and the recent window.

The only module (with its ``telethon_*`` siblings) that imports Telethon; everything read goes
through :func:`archiver.store.ingest.ingest` / :func:`~archiver.store.ingest.mark_deleted`.
Siblings: ``telethon_session`` (``login``, the only code that prompts, and
``connect_client``), ``telethon_flood`` (flood waits, in one place), ``telethon_convert``
(Message -> Post), ``telethon_live`` (the live listener). This module re-exports the public
names of the first two.

- **Resolution, once.** A username is resolved with ``ResolveUsername`` (the request Telegram
  punishes most) the first time only; its id and access hash go into the archive, and later
  runs build ``InputPeerChannel`` from there: an idle sync is one history request.
- **Sync.** Each channel is read forward from its high-water mark
  (``iter_messages(min_id=high_water, reverse=True)``) in batches; each batch is one ingest
  transaction, and the cursor moves only after it commits, so a crash resumes with no
  duplicates and no holes. The first pass is the backfill: for ``count``/``age`` it starts at
  the matching lower bound (kept in ``backfill_low`` so a resumed first pass keeps it), and it
  ingests without alerts until it completes.
- **Flood waits.** Every request and every restartable read goes through
  :class:`~archiver.sources.telethon_flood.FloodPolicy`: a wait up to ``[telegram]
  flood_wait_ceiling`` is slept and the read resumes from the committed cursor; a longer one
  skips the channel until the wait is over, recorded for ``stats``.
- **Recent window.** :func:`recheck_channel` re-reads the newest archived posts by id: changed
  text becomes a version, counters are refreshed, a post that comes back missing is marked
  deleted.
- **Media.** Metadata always; the ``[media] download`` kinds are fetched after their post is
  ingested and stored by :mod:`archiver.sources.media`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from telethon import errors, functions, types, utils

from archiver.config import Backfill, ChannelConfig, Settings
from archiver.errors import NotLoggedIn, SourceError
from archiver.models import IngestStats, Post, bare_id
from archiver.sources.media import MB, MediaStore, downloaded_indexes, record_media, wanted
from archiver.sources.telethon_convert import PoisonMessage, channel_info, message_to_post
from archiver.sources.telethon_flood import FloodPolicy, FloodWaitTooLong, translate
from archiver.sources.telethon_session import (
    NOT_LOGGED_IN,
    REVOKED,
    LoginPrompts,
    connect_client,
    login,
    make_client,
    session_path,
)
from archiver.store.archive import Archive, ts
from archiver.store.channels import ChannelRow, get_channel, record_sync, set_cursor, upsert_channel
from archiver.store.deletions import mark_deleted
from archiver.store.ingest import ingest
from archiver.sync import ChannelSyncResult, SyncOptions

__all__ = [
    "NOT_LOGGED_IN",
    "REVOKED",
    "SOURCE",
    "FloodPolicy",
    "FloodWaitTooLong",
    "LoginPrompts",
    "backfill_floor",
    "connect_client",
    "login",
    "make_client",
    "recheck_channel",
    "resolve_channel",
    "session_path",
    "store_media",
    "sync_telethon_channel",
]

log = logging.getLogger(__name__)

SOURCE = "telethon"

# ------------------------------------------------------------------------------ resolution


def input_peer(row: ChannelRow) -> Any:
    """The archived channel as Telethon's ``InputPeerChannel`` (needs its access hash)."""
    return types.InputPeerChannel(bare_id(row.id), row.access_hash)


async def resolve_channel(
    archive: Archive, client: Any, cfg: ChannelConfig, policy: FloodPolicy
) -> tuple[ChannelRow, Any]:
    """The channel's archive row and input peer. Known with an access hash: no request.
    Otherwise one ``ResolveUsername`` (or a session-cache lookup for a numeric id) and one
    ``GetFullChannel``; the result is upserted (metadata versioned) with its access hash."""
    name = str(cfg.ref)
    row = await get_channel(archive, cfg.ref)
    if row is not None and row.access_hash is not None:
        return row, input_peer(row)
    if cfg.ref.username is not None:
        username = cfg.ref.username
        res = await policy.call(
            name, lambda: client(functions.contacts.ResolveUsernameRequest(username))
        )
        peer_id = utils.get_peer_id(res.peer)
        chat = next((c for c in res.chats if utils.get_peer_id(c) == peer_id), None)
        if not isinstance(chat, types.Channel):
            raise SourceError(f"{name}: not a channel (a user or a bot?); check [[channels]]")
        peer = types.InputPeerChannel(chat.id, chat.access_hash)
    else:
        assert cfg.ref.id is not None
        try:
            peer = await client.get_input_entity(types.PeerChannel(bare_id(cfg.ref.id)))
        except ValueError:
            raise SourceError(
                f"{name}: no access hash known for this id: list the channel by username or"
                " link in [[channels]] (or join it with this account first)"
            ) from None
    full = await policy.call(name, lambda: client(functions.channels.GetFullChannelRequest(peer)))
    chat = next((c for c in full.chats if c.id == peer.channel_id), None)
    if chat is None:
        raise SourceError(f"{name}: Telegram returned no channel for this id")
    info = channel_info(chat, full.full_chat)
    row = await upsert_channel(archive, info, source=SOURCE)
    log.info("channel %s resolved to %s", name, row.id)
    if row.access_hash is None:
        raise SourceError(f"{name}: Telegram gave no access hash for the channel")
    return row, input_peer(row)


# ------------------------------------------------------------------------------------ sync


@dataclass
class _Pass:
    """One pass over one channel: what it needs and what it counts."""

    archive: Archive
    client: Any
    settings: Settings
    options: SyncOptions
    policy: FloodPolicy
    row: ChannelRow
    peer: Any
    alerts: bool
    high_water: int  # committed: everything up to here is archived
    stats: IngestStats = field(default_factory=IngestStats)
    fetched: int = 0
    poison: int = 0
    media_stored: int = 0
    deleted: int = 0


def convert(messages: Sequence[Any]) -> list[tuple[Any, Post]]:
    """Messages as posts; a poison message is logged with its ids and left out."""
    out: list[tuple[Any, Post]] = []
    for msg in messages:
        try:
            out.append((msg, message_to_post(msg)))
        except PoisonMessage as exc:
            log.warning(
                "channel %s message %s: skipped (%s)",
                utils.get_peer_id(msg.peer_id) if getattr(msg, "peer_id", None) else "?",
                getattr(msg, "id", "?"),
                exc,
            )
    return out


async def _refresh_metadata(p: _Pass, messages: Sequence[Any]) -> None:
    """Title/username changes seen in the channel object that came with a page."""
    chat = getattr(messages[-1], "chat", None)
    if not isinstance(chat, types.Channel):
        return
    info = channel_info(chat)
    if (info.title, info.username) != (p.row.title, p.row.username):
        p.row = await upsert_channel(p.archive, info, source=SOURCE)


async def store_media(
    archive: Archive,
    client: Any,
    settings: Settings,
    options: SyncOptions,
    policy: FloodPolicy,
    pairs: Sequence[tuple[Any, Post]],
) -> int:
    """Download the ``[media] download`` kinds of already ingested posts into the media
    folder (content-addressed), skipping media already stored; returns the files recorded.
    Downloads go through ``options.fetch_media`` when set (tests give bytes that way)."""
    ms = settings.media
    if not ms.download:
        return 0
    store = MediaStore(settings.storage.media_dir)
    limit = ms.max_size_mb * MB
    stored_count = 0

    async def fetch(msg: Any) -> bytes | None:
        if options.fetch_media is not None:
            return await options.fetch_media(msg)
        data = await client.download_media(msg, file=bytes)
        return data if isinstance(data, bytes) else None

    for msg, post in pairs:
        todo = [i for i, m in enumerate(post.media) if wanted(m, ms.download, ms.max_size_mb)]
        if not todo:
            continue
        done = await downloaded_indexes(archive, post.channel_id, post.message_id)
        if set(todo) <= done:
            continue
        what = f"channel {post.channel_id} media of {post.message_id}"
        try:
            data = await policy.call(what, partial(fetch, msg))
        except errors.RPCError as exc:  # an expired file reference etc.: the post stays archived
            log.warning("%s: not downloaded (%s)", what, exc.__class__.__name__)
            continue
        if data is None or len(data) > limit:
            continue
        stored = await asyncio.to_thread(store.put, data, post.media[todo[0]].mime_type)
        if await record_media(archive, post.channel_id, post.message_id, todo[0], stored):
            stored_count += 1
    return stored_count


async def _commit(p: _Pass, messages: list[Any]) -> None:
    """Ingest one batch (one transaction), store its media, then move the cursor."""
    pairs = convert(messages)
    p.poison += len(messages) - len(pairs)
    p.fetched += len(messages)
    if pairs:
        posts = [post for _, post in pairs]
        p.stats += await ingest(p.archive, posts, source=SOURCE, alerts=p.alerts)
        p.media_stored += await store_media(
            p.archive, p.client, p.settings, p.options, p.policy, pairs
        )
        await _refresh_metadata(p, messages)
    top = max(m.id for m in messages)
    await set_cursor(p.archive, p.row.id, high_water=top)
    p.high_water = max(p.high_water, top)


async def _read_forward(p: _Pass) -> None:
    """Read from the committed cursor to the newest message. Restartable: a flood wait or a
    crash loses at most the uncommitted batch, which the next read fetches again."""
    batch: list[Any] = []
    async for msg in p.client.iter_messages(
        p.peer, min_id=p.high_water, reverse=True, wait_time=p.options.page_wait
    ):
        batch.append(msg)
        if len(batch) >= p.options.batch_size:
            await _commit(p, batch)
            batch = []
    if batch:
        await _commit(p, batch)


async def backfill_floor(client: Any, peer: Any, backfill: Backfill, now: datetime) -> int:
    """The id a first pass starts above: 0 for ``all``; below the N-th newest message for a
    count; the newest message older than the age limit for an age. One request at most."""
    if backfill.kind == "count":
        n = backfill.count or 0
        found = await client.get_messages(peer, limit=1, add_offset=max(n - 1, 0))
        if not found:
            return 0
        return int(found[0].id) if n == 0 else int(found[0].id) - 1
    if backfill.kind == "age":
        assert backfill.age is not None
        found = await client.get_messages(peer, limit=1, offset_date=now - backfill.age)
        return int(found[0].id) if found else 0
    return 0


def _result(p: _Pass, cfg: ChannelConfig, started: float, **kw: Any) -> ChannelSyncResult:
    values: dict[str, Any] = {
        "channel": str(cfg.ref),
        "source": SOURCE,
        "channel_id": p.row.id,
        "new_posts": p.stats.posts_added,
        "edits": p.stats.versions_added - p.stats.posts_added,
        "deletions": p.deleted,
        "fetched": p.fetched,
        "skipped_messages": p.poison,
        "media_stored": p.media_stored,
        "backfilled": p.row.backfilled,
        "high_water": p.high_water,
        "duration": time.monotonic() - started,
    }
    values.update(kw)
    return ChannelSyncResult(**values)


async def _run_channel(
    archive: Archive,
    client: Any,
    cfg: ChannelConfig,
    settings: Settings,
    options: SyncOptions | None,
    body: Callable[[_Pass], Awaitable[None]],
) -> ChannelSyncResult:
    """Resolve, honour a pending flood wait, run ``body``; translate and record the outcome."""
    opts = options or SyncOptions()
    started = time.monotonic()
    name = str(cfg.ref)
    policy = FloodPolicy(settings.telegram.flood_wait_ceiling, opts.sleeper, opts.max_flood_waits)
    row = await get_channel(archive, cfg.ref)
    now = opts.now()
    if row is not None and row.flood_wait_until is not None and row.flood_wait_until > now:
        log.info("channel %s: in a flood wait until %s, skipped", name, row.flood_wait_until)
        return ChannelSyncResult(
            name,
            SOURCE,
            row.id,
            status="skipped",
            backfilled=row.backfilled,
            high_water=row.high_water,
            flood_wait_until=row.flood_wait_until,
        )
    p: _Pass | None = None
    try:
        row, peer = await resolve_channel(archive, client, cfg, policy)
        p = _Pass(
            archive, client, settings, opts, policy, row, peer, row.backfilled, row.high_water
        )
        await body(p)
    except FloodWaitTooLong as exc:
        until = now + timedelta(seconds=exc.seconds)
        if row is not None:
            await record_sync(
                archive, row.id, status="flood_wait", error=str(exc), flood_wait_until=until
            )
        log.warning("%s", exc)
        if p is None:
            return ChannelSyncResult(name, SOURCE, row.id if row else None, status="flood_wait",
                                     error=str(exc), flood_wait_until=until)  # fmt: skip
        return _result(p, cfg, started, status="flood_wait", error=str(exc), flood_wait_until=until)
    except errors.RPCError as exc:
        err = translate(name, exc)
        if row is not None and not isinstance(err, NotLoggedIn):
            await record_sync(archive, row.id, status="error", error=str(err))
        raise err from None
    except OSError as exc:  # the connection dropped and Telethon's reconnects gave up
        hw = p.high_water if p is not None else (row.high_water if row else 0)
        err = SourceError(f"{name}: connection to Telegram lost ({exc}); resumes after {hw}")
        if row is not None:
            await record_sync(archive, row.id, status="error", error=str(err))
        raise err from None
    await record_sync(archive, p.row.id, status="ok")
    return _result(p, cfg, started)


async def sync_telethon_channel(
    archive: Archive,
    client: Any,
    cfg: ChannelConfig,
    settings: Settings,
    *,
    options: SyncOptions | None = None,
) -> ChannelSyncResult:
    """One sync of one channel: from its high-water mark to its newest post; the first pass
    is its backfill (see the module docstring). Raises :class:`SourceError` naming the
    channel (recorded for ``stats``) when Telegram refuses; a long flood wait is a result."""

    async def body(p: _Pass) -> None:
        first = not p.row.backfilled
        if first:
            low = p.row.backfill_low
            if low is None:
                low = await p.policy.call(
                    str(cfg.ref),
                    lambda: backfill_floor(p.client, p.peer, cfg.backfill, p.options.now()),
                )
                await set_cursor(p.archive, p.row.id, backfill_low=low)
                log.info(
                    "channel %s: backfill (%s) starts above message %d", cfg.ref, cfg.backfill, low
                )
            p.high_water = max(p.high_water, low)
        await p.policy.call(str(cfg.ref), lambda: _read_forward(p))
        if first:
            await set_cursor(p.archive, p.row.id, high_water=p.high_water, backfilled=True)
            p.row = await get_channel(p.archive, p.row.id) or p.row
            log.info("channel %s: backfill complete at message %d", cfg.ref, p.high_water)

    return await _run_channel(archive, client, cfg, settings, options, body)


# --------------------------------------------------------------------------- recent window


async def recent_ids(archive: Archive, channel_id: int, posts: int, since: datetime) -> list[int]:
    """Archived, not deleted posts of the recent window: the newest ``posts`` ones and every
    one dated after ``since``, oldest first."""
    rows = await archive.fetchall(
        "SELECT message_id FROM posts WHERE channel_id = ? AND deleted_at IS NULL AND ("
        " message_id IN (SELECT message_id FROM posts WHERE channel_id = ?"
        "  ORDER BY message_id DESC LIMIT ?) OR date >= ?) ORDER BY message_id",
        (channel_id, channel_id, posts, ts(since)),
    )
    return [int(r[0]) for r in rows]


async def recheck_channel(
    archive: Archive,
    client: Any,
    cfg: ChannelConfig,
    settings: Settings,
    *,
    options: SyncOptions | None = None,
) -> ChannelSyncResult:
    """Re-read the recent window of one channel by id (100 per request): a changed text is a
    new version (alerting once the channel is backfilled), counters are refreshed, a post that
    comes back missing is marked deleted (``how="recheck"``). Also refreshes the channel's
    description and subscriber count (versioned when they change)."""
    tgs = settings.telegram

    async def body(p: _Pass) -> None:
        name = str(cfg.ref)
        full = await p.policy.call(
            name, lambda: p.client(functions.channels.GetFullChannelRequest(p.peer))
        )
        chat = next((c for c in full.chats if c.id == p.peer.channel_id), None)
        if isinstance(chat, types.Channel):
            p.row = await upsert_channel(
                p.archive, channel_info(chat, full.full_chat), source=SOURCE
            )
        since = p.options.now() - timedelta(hours=tgs.recent_hours)
        ids = await recent_ids(p.archive, p.row.id, tgs.recent_posts, since)
        for i in range(0, len(ids), 100):
            chunk = ids[i : i + 100]
            if i and p.options.page_wait:
                await p.options.sleeper(p.options.page_wait)
            got = await p.policy.call(name, partial(p.client.get_messages, p.peer, ids=chunk))
            present = [m for m in got if m is not None and not isinstance(m, types.MessageEmpty)]
            gone = sorted(set(chunk) - {m.id for m in present})
            p.fetched += len(present)
            pairs = convert(present)
            p.poison += len(present) - len(pairs)
            if pairs:
                p.stats += await ingest(
                    p.archive, [post for _, post in pairs], source=SOURCE, alerts=p.alerts
                )
                p.media_stored += await store_media(
                    p.archive, p.client, p.settings, p.options, p.policy, pairs
                )
            if gone:
                p.deleted += await mark_deleted(
                    p.archive, p.row.id, gone, how="recheck", alerts=True
                )

    return await _run_channel(archive, client, cfg, settings, options, body)
