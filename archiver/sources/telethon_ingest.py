"""Telethon messages into the archive: readable ones as posts (new ones with alerts, backfill
without), unreadable ones raw-only and marked, never skipped; their media after them.

A message that does not convert (an unknown type, a malformed object) is stored as a post
with its id, its date (or when it was seen), no text and Telegram's object as JSON in
``versions.raw``; ``posts.unreadable`` says why and ``stats`` counts it. When a later read
converts it, the mark is cleared.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial
from typing import Any

from telethon import errors

from archiver.config import Settings
from archiver.models import IngestStats, Post
from archiver.sources.media import MB, MediaStore, downloaded_indexes, record_media, wanted
from archiver.sources.result import SyncOptions
from archiver.sources.telethon_convert import PoisonMessage, message_to_post, raw_json
from archiver.sources.telethon_flood import FloodPolicy, FloodWaitTooLong
from archiver.store.archive import Archive, utcnow
from archiver.store.following import clear_unreadable, mark_unreadable
from archiver.store.ingest import ingest

log = logging.getLogger(__name__)

SOURCE = "telethon"


def poison_post(msg: Any, channel_id: int, reason: str, now: datetime) -> Post:
    """A message that does not convert, as a raw-only post: its id, its date when it has one
    (else when it was seen), no text, the source object as JSON for provenance."""
    try:
        raw = raw_json(msg)
    except (TypeError, ValueError, AttributeError):
        raw = f'{{"_": "{type(msg).__name__}", "unreadable": true}}'
    date = getattr(msg, "date", None)
    if not isinstance(date, datetime):
        date = now
    return Post(channel_id=channel_id, message_id=int(msg.id), date=date, raw=raw)


def convert(
    messages: Sequence[Any], channel_id: int | None = None, now: datetime | None = None
) -> tuple[list[tuple[Any, Post]], dict[int, tuple[Any, Post, str]]]:
    """Messages as posts, and the unreadable ones (id -> message, raw-only post, reason),
    logged with their ids (never their text)."""
    out: list[tuple[Any, Post]] = []
    bad: dict[int, tuple[Any, Post, str]] = {}
    for msg in messages:
        try:
            out.append((msg, message_to_post(msg)))
        except PoisonMessage as exc:
            mid = getattr(msg, "id", None)
            log.warning("channel %s message %s: unreadable, kept raw-only (%s)",
                        channel_id, mid, exc)  # fmt: skip
            if channel_id is not None and isinstance(mid, int):
                bad[mid] = (msg, poison_post(msg, channel_id, str(exc), now or utcnow()), str(exc))
    return out, bad


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
        except FloodWaitTooLong as exc:  # upload.GetFile waits: the files wait, the posts not
            log.info("%s: not downloaded (%s waits); fetched when the post is next read",
                     what, exc.method)  # fmt: skip
            continue
        if data is None or len(data) > limit:
            continue
        stored = await asyncio.to_thread(store.put, data, post.media[todo[0]].mime_type)
        if await record_media(archive, post.channel_id, post.message_id, todo[0], stored):
            stored_count += 1
    return stored_count


async def ingest_messages(
    archive: Archive,
    channel_id: int,
    messages: Sequence[Any],
    *,
    is_new: Callable[[int], bool],
    now: datetime,
) -> tuple[IngestStats, list[tuple[Any, Post]], int]:
    """Ingest messages of one channel: new posts with alerts, backfill without; unreadable
    ones raw-only and marked. Returns the stats, the readable pairs and the unreadable count."""
    pairs, bad = convert(messages, channel_id, now)
    stats = IngestStats()
    fresh = [post for _, post in pairs if is_new(post.message_id)]
    old = [post for _, post in pairs if not is_new(post.message_id)]
    if fresh:
        stats += await ingest(archive, fresh, source=SOURCE, alerts=True)
    if old:
        stats += await ingest(archive, old, source=SOURCE, alerts=False)
    if bad:
        stats += await ingest(archive, [post for _, post, _ in bad.values()], source=SOURCE,
                              alerts=False)  # fmt: skip
        await mark_unreadable(archive, channel_id, {mid: why for mid, (_, _, why) in bad.items()})
    if pairs:
        await clear_unreadable(archive, channel_id, [post.message_id for _, post in pairs])
    return stats, pairs, len(bad)
