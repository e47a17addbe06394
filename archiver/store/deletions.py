"""Deletion is a claim with evidence (docs/record.md).

A post's ``state``: ``present``; ``missing`` when a listing did not show it (the web preview
leaves out posts that still exist, so this is not a deletion and says nothing to anyone);
``deleted`` once a check confirmed it (Telegram's deletion update, ``channels.GetMessages``
answering ``MessageEmpty``, the post's own page saying "Post not found"); ``restored`` when it
is seen again after that. Only a confirmed deletion is a deletion in search, history, stats
and the bot, and only it queues ``deleted`` alerts, which say how it was established. A
restore tells whoever was told of the deletion (a correction); the deletion stays in the
post's history (``post_events``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiosqlite

from archiver.evidence.capture import Raw
from archiver.evidence.log import Observation
from archiver.evidence.log import append as log_append
from archiver.query import Doc
from archiver.record import events as ev
from archiver.store.archive import Archive, ts, utcnow
from archiver.store.followups import change_recipients, version_words
from archiver.store.ingest import AlertBuffer, usernames

log = logging.getLogger(__name__)

_CHUNK = 500
# A post whose own page showed it within this time is not marked missing again because a
# listing leaves it out (the web preview hides some posts for good): checked again after it.
CHECK_VALID = timedelta(days=1)
HOW = {
    "live": "Telegram reported the deletion",
    "recheck": "Telegram returned no message for this id",
    "web_embed": 'the post page said "Post not found"',
    "manual": "marked by hand",
}


def _source_of(how: str) -> str:
    if how.startswith("web"):
        return "web"
    return "manual" if how == "manual" else "telethon"


async def _rows(db: aiosqlite.Connection, channel_id: int, ids: list[int]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for i in range(0, len(ids), _CHUNK):
        chunk = ids[i : i + _CHUNK]
        marks = ",".join("?" * len(chunk))
        async with db.execute(
            "SELECT id, current_version_id, state, date, edited, media_kind, has_link,"
            " is_service, checked_at, message_id FROM posts"
            f" WHERE channel_id = ? AND message_id IN ({marks})",
            (channel_id, *chunk),
        ) as cur:
            out += [tuple(r) async for r in cur]
    return out


async def _claim(
    archive: Archive,
    channel_id: int,
    message_ids: Iterable[int],
    claim: str,
    *,
    source: str,
    how: str | None,
    evidence: str | None,
    alerts: bool,
    at: datetime | None,
    capture: Raw | None = None,
) -> int:
    """Apply one claim about the existence of posts; returns how many changed state. Each
    change gets its entry in the observation log, with ``capture`` (the page that showed it)
    when there is one."""
    ids = sorted(set(message_ids))
    if not ids:
        return 0
    when = ts(at or datetime.now(UTC))
    now = ts(utcnow())
    assert when is not None and now is not None
    matcher = await archive.current_matcher() if alerts else None
    changed = 0
    async with archive.transaction() as db:
        if archive.fence is not None:  # a worker still holding the channel's unit
            await archive.fence(db, [channel_id])
        buf = AlertBuffer(matcher, now)
        names = await usernames(db, [channel_id]) if matcher else {}
        async with db.execute("SELECT coalesce(max(id), 0) FROM post_events") as cur:
            row = await cur.fetchone()
        event_id = int(row[0]) if row else 0
        recent = ts((at or datetime.now(UTC)) - CHECK_VALID)
        observed: list[Observation] = []
        for pid, vid, state, date, edited, media_kind, link, service, checked, mid in await _rows(
            db, channel_id, ids
        ):
            if (
                claim == ev.MISSING
                and checked is not None
                and recent is not None
                and checked > recent
            ):
                continue  # its own page showed it lately: a listing that hides it says nothing new
            event = ev.absent(state, claim)
            if event is None:
                continue
            new_state = ev.state_after(state, event)
            event_id += 1
            await db.execute(
                "INSERT INTO post_events (id, post_id, kind, version_id, at, source, how,"
                " evidence) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (event_id, pid, event.kind, vid, when, source, how, evidence),
            )
            observed.append(
                Observation(
                    when, pid, channel_id, mid, event.kind, source, event_id=event_id,
                    version_id=vid, how=how, evidence=evidence, capture=capture,
                )
            )  # fmt: skip
            if new_state == ev.DELETED:
                await db.execute(
                    "UPDATE posts SET state = ?, state_at = ?, deleted_at = ?, deleted_how = ?,"
                    " deleted_evidence = ? WHERE id = ?",
                    (new_state, when, when, how, evidence, pid),
                )
            else:
                await db.execute(
                    "UPDATE posts SET state = ?, state_at = ?, deleted_at = NULL,"
                    " deleted_how = NULL, deleted_evidence = NULL,"
                    " checked_at = CASE WHEN ? THEN ? ELSE checked_at END WHERE id = ?",
                    (new_state, when, claim == ev.PRESENT, when, pid),
                )
            changed += 1
            if matcher is None or service:
                continue
            if event.kind == ev.DELETED_EV:
                docs = [
                    Doc(
                        words=tuple(w.split()),
                        word_set=frozenset(w.split()),
                        channel_id=channel_id,
                        channel_username=names.get(channel_id),
                        date=date,
                        edited=bool(edited),
                        deleted=True,
                        media_kind=media_kind,
                        has_link=bool(link),
                    )
                    for _, w in await version_words(db, pid)
                ]
                alerted = await buf.alerted(db, pid)
                buf.add(
                    pid, vid, None, "deleted",
                    change_recipients(matcher, "deleted", None, docs, alerted), event_id,
                )  # fmt: skip
            elif event.kind == ev.RESTORED_EV:
                buf.add(pid, vid, None, "restored", await buf.alerted(db, pid, ("deleted",)),
                        event_id)  # fmt: skip
        await log_append(db, observed)
        queued = await buf.flush(db)
    if queued and archive.on_alerts is not None:
        archive.on_alerts()
    if changed:
        log.info("channel %s: %d post(s) %s (%s)", channel_id, changed, claim, how or source)
    return changed


async def mark_missing(
    archive: Archive,
    channel_id: int,
    message_ids: Iterable[int],
    *,
    source: str,
    at: datetime | None = None,
    capture: Raw | None = None,
) -> int:
    """A listing did not show these posts: present or restored -> missing. No alert: this is
    not a deletion (the web preview leaves out posts that still exist)."""
    return await _claim(
        archive, channel_id, message_ids, ev.MISSING, source=source, how="listing",
        evidence="not shown in the channel's listing", alerts=False, at=at, capture=capture,
    )  # fmt: skip


async def confirm_deleted(
    archive: Archive,
    channel_id: int,
    message_ids: Iterable[int],
    *,
    how: str,
    evidence: str | None = None,
    alerts: bool,
    at: datetime | None = None,
    source: str | None = None,
    capture: Raw | None = None,
) -> int:
    """A confirmed deletion (``how``: live | recheck | web_embed | manual; ``evidence`` in
    words, by default the usual wording for ``how``). Queues ``deleted`` alerts with
    ``alerts``. Returns how many posts became deleted (never erased)."""
    src = source or _source_of(how)
    return await _claim(
        archive, channel_id, message_ids, ev.DELETED, source=src, how=how,
        evidence=evidence or HOW.get(how), alerts=alerts, at=at, capture=capture,
    )  # fmt: skip


async def confirm_present(
    archive: Archive,
    channel_id: int,
    message_ids: Iterable[int],
    *,
    how: str,
    alerts: bool,
    at: datetime | None = None,
    source: str | None = None,
    capture: Raw | None = None,
) -> int:
    """A check showed these posts exist (without re-reading their content): missing ->
    present, deleted -> restored (whoever was told of the deletion gets a correction)."""
    src = source or _source_of(how)
    return await _claim(
        archive, channel_id, message_ids, ev.PRESENT, source=src, how=how,
        evidence=f"the post exists ({how})", alerts=alerts, at=at, capture=capture,
    )  # fmt: skip


async def mark_deleted(
    archive: Archive,
    channel_id: int,
    message_ids: Iterable[int],
    *,
    how: str,
    alerts: bool,
    at: datetime | None = None,
) -> int:
    """The old name of :func:`confirm_deleted` (``how``: live or recheck)."""
    return await confirm_deleted(archive, channel_id, message_ids, how=how, alerts=alerts, at=at)


async def missing_ids(archive: Archive, channel_id: int, *, limit: int) -> list[int]:
    """Posts in state missing, the longest-unchecked first: what to confirm next."""
    rows = await archive.fetchall(
        "SELECT message_id FROM posts WHERE channel_id = ? AND state = 'missing'"
        " ORDER BY coalesce(checked_at, ''), message_id LIMIT ?",
        (channel_id, limit),
    )
    return [r[0] for r in rows]


async def note_checked(
    archive: Archive, channel_id: int, message_ids: Iterable[int], at: datetime | None = None
) -> None:
    """The posts' own pages were asked about: they showed the post (then a listing that hides
    it is not believed for ``CHECK_VALID``), or gave no answer (an error page, a timeout: the
    longest-unchecked go first next time)."""
    ids = sorted(set(message_ids))
    if not ids:
        return
    when = ts(at or utcnow())
    async with archive.transaction() as db:
        await db.executemany(
            "UPDATE posts SET checked_at = ? WHERE channel_id = ? AND message_id = ?",
            [(when, channel_id, m) for m in ids],
        )
