"""Re-reading archived posts by id: edits and deletions nobody told us about.

Telegram pushes edits and deletions to a connected client, but nothing brings them back after
downtime: Telethon's catch-up moves a channel's ``pts`` before applying the edits and
deletions of a channel difference and then drops them as already applied
(``_updates/messagebox.py:783-797``), and drops ``channelDifferenceTooLong`` altogether. So
the archive itself says what to look at again (the design of docs/record.md, the same for
both sources):

- **The recent window**: every archived post up to ``[recheck] recent_days`` old, read again
  with ``channels.getMessages`` (100 ids a request) on every pass, at every start and
  reconnect of the live listener, and after every gap Telegram reports.
- **The rotation**: older posts, from the newest archived id down to the oldest, a share per
  pass (:func:`archiver.record.reread.rotation_quota`), so the whole channel is read again at
  least once every ``[recheck] full_recheck_days``.
- **The newest page** (:func:`reconcile_newest`): one ``messages.getHistory`` of the newest
  100 posts, every ~2 minutes for the channels followed live: new posts whose update never
  came, and edits and deletions of the newest posts.

A post ``getMessages`` answers with ``messageEmpty`` is a confirmed deletion
(``how="recheck"``); a changed post is a new version; a post seen again after it was missing
or deleted is restored. A post deleted while nobody watched and never archived cannot be
recovered: it is an id never seen, a gap in coverage.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING

from telethon import types

from archiver.record.reread import pass_interval, rotation_quota
from archiver.store.archive import ts
from archiver.store.channels import advance_reread, get_reread, set_cursor
from archiver.store.deletions import confirm_deleted

if TYPE_CHECKING:
    from archiver.sources.telethon import _Pass

log = logging.getLogger(__name__)

CHUNK = 100  # ids per channels.getMessages (Telegram's limit)
EVIDENCE = "channels.getMessages answered messageEmpty for this id"


async def check_ids(p: _Pass, ids: list[int]) -> None:
    """Read these archived posts again by id: changes become versions, ``messageEmpty``
    confirms a deletion."""
    from archiver.sources.telethon_ingest import ingest_messages, store_media

    for i in range(0, len(ids), CHUNK):
        chunk = ids[i : i + CHUNK]
        if i and p.options.page_wait:
            await p.options.sleeper(p.options.page_wait)
        got = await p.policy.call(p.name, partial(p.client.get_messages, p.peer, ids=chunk))
        present = [m for m in got if m is not None and not isinstance(m, types.MessageEmpty)]
        gone = sorted(set(chunk) - {m.id for m in present})
        p.fetched += len(present)
        p.reread += len(chunk)
        if present:
            stats, pairs, bad = await ingest_messages(
                p.archive, p.row.id, present, is_new=lambda _: True, now=p.options.now()
            )
            p.stats += stats
            p.poison += bad
            if pairs:
                p.media_stored += await store_media(
                    p.archive, p.client, p.settings, p.options, p.policy, pairs
                )
        if gone:
            p.deleted += await confirm_deleted(
                p.archive, p.row.id, gone, how="recheck", evidence=EVIDENCE, alerts=True
            )
        p.policy.progress()


async def window_ids(p: _Pass) -> list[int]:
    """Archived posts (not confirmed deleted) up to ``recent_days`` old, oldest first."""
    since = p.options.now() - timedelta(days=p.settings.recheck.recent_days)
    rows = await p.archive.fetchall(
        "SELECT message_id FROM posts WHERE channel_id = ? AND deleted_at IS NULL AND date >= ?"
        " ORDER BY message_id",
        (p.row.id, ts(since)),
    )
    return [int(r[0]) for r in rows]


async def reread_window(p: _Pass) -> int:
    """Read the recent window again; returns the posts asked for."""
    ids = await window_ids(p)
    await check_ids(p, ids)
    if ids:
        log.info("channel %s: re-read %d recent post(s)", p.name, len(ids))
    return len(ids)


async def reread_rotation(p: _Pass) -> int:
    """Read the rotation's share of older posts again; returns the posts asked for."""
    now = p.options.now()
    since = ts(now - timedelta(days=p.settings.recheck.recent_days))
    older = "channel_id = ? AND deleted_at IS NULL AND date < ?"
    state = await get_reread(p.archive, p.row.id)
    row = await p.archive.fetchone(f"SELECT count(*) FROM posts WHERE {older}", (p.row.id, since))
    total = int(row[0]) if row else 0
    if total == 0:
        return 0
    below, params = "", [p.row.id, since]
    if state.cursor is not None:
        below = " AND message_id <= ?"
        params.append(state.cursor)
    row = await p.archive.fetchone(f"SELECT count(*) FROM posts WHERE {older}{below}", params)
    remaining = int(row[0]) if row else 0
    quota = rotation_quota(
        total=total,
        remaining=remaining,
        started_at=state.started_at,
        now=now,
        period=timedelta(days=p.settings.recheck.full_recheck_days),
        interval=pass_interval(
            p.row.last_sync_at, now, timedelta(days=p.settings.recheck.full_recheck_days)
        ),
    )
    if quota <= 0:
        await advance_reread(p.archive, p.row.id, cursor=None, now=now)
        return 0
    rows = await p.archive.fetchall(
        f"SELECT message_id FROM posts WHERE {older}{below} ORDER BY message_id DESC LIMIT ?",
        (*params, quota),
    )
    ids = sorted(int(r[0]) for r in rows)
    await check_ids(p, ids)
    done = len(ids) >= remaining
    await advance_reread(p.archive, p.row.id, cursor=None if done else ids[0] - 1, now=now)
    log.info("channel %s: rotation re-read %d older post(s)%s", p.name, len(ids),
             ", a full round done" if done else "")  # fmt: skip
    return len(ids)


async def reread_channel(p: _Pass) -> None:
    """The recent window, then the rotation's share."""
    await reread_window(p)
    await reread_rotation(p)


async def reconcile_newest(p: _Pass, limit: int = 100) -> bool:
    """One ``getHistory`` of the newest ``limit`` posts: ingest what is new or changed, confirm
    deletions among them (one ``getMessages`` for the ids missing from the page). Returns
    False when the page does not reach down to the high-water mark (more is new than one page
    holds): the caller then reads forward."""
    page = await p.policy.call(p.name, lambda: p.client.get_messages(p.peer, limit=limit))
    msgs = [m for m in page if m is not None]
    p.fetched += len(msgs)
    if not msgs:
        return True
    from archiver.sources.telethon import _refresh_metadata
    from archiver.sources.telethon_ingest import ingest_messages

    stats, _, bad = await ingest_messages(
        p.archive, p.row.id, msgs, is_new=p.is_new, now=p.options.now()
    )
    p.stats += stats
    p.poison += bad
    await _refresh_metadata(p, msgs)  # a new title; a channel this account has left
    low, top = min(m.id for m in msgs), max(m.id for m in msgs)
    complete = len(msgs) < limit or low <= p.high_water + 1
    if complete and p.row.backfilled and top > p.high_water:
        await set_cursor(p.archive, p.row.id, high_water=top)
        p.high_water = top
    rows = await p.archive.fetchall(
        "SELECT message_id FROM posts WHERE channel_id = ? AND deleted_at IS NULL"
        " AND message_id BETWEEN ? AND ?",
        (p.row.id, low, top),
    )
    seen = {m.id for m in msgs}
    absent = sorted(int(r[0]) for r in rows if int(r[0]) not in seen)
    if absent:
        await check_ids(p, absent)
    p.policy.progress()
    return complete
