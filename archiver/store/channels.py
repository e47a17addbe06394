"""Channels: identity, versioned metadata, the per-channel resume cursor and sync state."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime

from archiver.channels import ChannelRef, parse_ref
from archiver.errors import ChannelNotFound
from archiver.models import ChannelInfo
from archiver.store.archive import Archive, parse_ts, ts, utcnow
from archiver.store.coverage import watched

_VERSIONED = ("username", "title", "description", "subscribers")


@dataclass(frozen=True, slots=True)
class ChannelRow:
    id: int
    username: str | None
    title: str | None
    description: str | None
    subscribers: int | None
    access_hash: int | None
    source: str
    created_at: datetime
    backfilled_at: datetime | None
    high_water: int
    backfill_low: int | None
    last_sync_at: datetime | None
    last_sync_ok_at: datetime | None
    last_sync_status: str | None
    last_error: str | None
    flood_wait_until: datetime | None

    @property
    def backfilled(self) -> bool:
        return self.backfilled_at is not None

    @property
    def name(self) -> str:
        """How to show the channel: its username, else its title, else its id."""
        return self.username or self.title or str(self.id)

    @classmethod
    def from_row(cls, r: sqlite3.Row) -> ChannelRow:
        return cls(
            id=r["id"],
            username=r["username"],
            title=r["title"],
            description=r["description"],
            subscribers=r["subscribers"],
            access_hash=r["access_hash"],
            source=r["source"],
            created_at=parse_ts(r["created_at"]) or utcnow(),
            backfilled_at=parse_ts(r["backfilled_at"]),
            high_water=r["high_water"],
            backfill_low=r["backfill_low"],
            last_sync_at=parse_ts(r["last_sync_at"]),
            last_sync_ok_at=parse_ts(r["last_sync_ok_at"]),
            last_sync_status=r["last_sync_status"],
            last_error=r["last_error"],
            flood_wait_until=parse_ts(r["flood_wait_until"]),
        )


async def upsert_channel(archive: Archive, info: ChannelInfo, *, source: str) -> ChannelRow:
    """Create the channel or update what changed. A change of username, title, description
    or subscriber count adds a row to ``channel_versions``; None never overwrites a known value."""
    now = ts(utcnow())
    async with archive.transaction() as db:
        async with db.execute("SELECT * FROM channels WHERE id = ?", (info.id,)) as cur:
            row = await cur.fetchone()
        new = {
            "username": info.username.lower() if info.username else None,
            "title": info.title,
            "description": info.description,
            "subscribers": info.subscribers,
        }
        if row is None:
            await db.execute(
                "INSERT INTO channels (id, username, title, description, subscribers, access_hash,"
                " source, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (info.id, *new.values(), info.access_hash, source, now),
            )
            changed = True
            merged = new
        else:
            merged = {k: (new[k] if new[k] is not None else row[k]) for k in _VERSIONED}
            changed = any(merged[k] != row[k] for k in _VERSIONED)
            access_hash = info.access_hash if info.access_hash is not None else row["access_hash"]
            await db.execute(
                "UPDATE channels SET username = ?, title = ?, description = ?, subscribers = ?,"
                " access_hash = ? WHERE id = ?",
                (*merged.values(), access_hash, info.id),
            )
        if changed:
            await db.execute(
                "INSERT INTO channel_versions (channel_id, seen_at, username, title, description,"
                " subscribers) VALUES (?, ?, ?, ?, ?, ?)",
                (info.id, now, *merged.values()),
            )
        async with db.execute("SELECT * FROM channels WHERE id = ?", (info.id,)) as cur:
            out = await cur.fetchone()
    assert out is not None
    return ChannelRow.from_row(out)


async def get_channel(archive: Archive, ref: str | int | ChannelRef) -> ChannelRow | None:
    """The archived channel named by a username, a bare or marked id, or a t.me link."""
    parsed = ref if isinstance(ref, ChannelRef) else parse_ref(str(ref))
    if parsed.id is not None:
        row = await archive.fetchone("SELECT * FROM channels WHERE id = ?", (parsed.id,))
    else:
        row = await archive.fetchone(
            "SELECT * FROM channels WHERE username = ? COLLATE NOCASE", (parsed.username,)
        )
    return None if row is None else ChannelRow.from_row(row)


async def require_channel(archive: Archive, ref: str | int | ChannelRef) -> ChannelRow:
    row = await get_channel(archive, ref)
    if row is None:
        raise ChannelNotFound(
            f"no archived channel matches '{ref}' (see `telewatch stats` for the channels archived)"
        )
    return row


async def list_channels(archive: Archive) -> list[ChannelRow]:
    rows = await archive.fetchall(
        "SELECT * FROM channels ORDER BY coalesce(username, title, CAST(id AS TEXT))"
    )
    return [ChannelRow.from_row(r) for r in rows]


async def set_cursor(
    archive: Archive,
    channel_id: int,
    *,
    high_water: int | None = None,
    backfill_low: int | None = None,
    backfilled: bool | None = None,
) -> None:
    """Move the resume cursor. ``high_water`` only ever grows."""
    sets: list[str] = []
    params: list[object] = []
    if high_water is not None:
        sets.append("high_water = max(high_water, ?)")
        params.append(high_water)
    if backfill_low is not None:
        sets.append("backfill_low = ?")
        params.append(backfill_low)
    if backfilled is not None:
        sets.append("backfilled_at = ?")
        params.append(ts(utcnow()) if backfilled else None)
    if not sets:
        return
    async with archive.transaction() as db:
        await db.execute(
            f"UPDATE channels SET {', '.join(sets)} WHERE id = ?", (*params, channel_id)
        )


async def record_sync(
    archive: Archive,
    channel_id: int,
    *,
    status: str,
    error: str | None = None,
    flood_wait_until: datetime | None = None,
) -> None:
    """Record the outcome of one sync of one channel (shown by ``stats`` and ``health``),
    and its coverage: a successful check extends the channel's watched span, a failed one is
    kept with its reason (archiver.store.coverage)."""
    now = ts(utcnow())
    async with archive.transaction() as db:
        await db.execute(
            "UPDATE channels SET last_sync_at = ?, last_sync_status = ?, last_error = ?,"
            " flood_wait_until = ?,"
            " last_sync_ok_at = CASE WHEN ? = 'ok' THEN ? ELSE last_sync_ok_at END WHERE id = ?",
            (now, status, error, ts(flood_wait_until), status, now, channel_id),
        )
        if status == "ok" and now is not None:
            await watched(db, channel_id, now)
        else:
            await db.execute(
                "INSERT INTO channel_faults (channel_id, at, status, reason) VALUES (?, ?, ?, ?)",
                (channel_id, now, status, error),
            )


@dataclass(frozen=True, slots=True)
class RereadState:
    """Where a channel's re-read rotation stands (archiver.record.reread)."""

    cursor: int | None  # the next message id the rotation reads at or below; None: the top
    started_at: datetime | None  # when the current round began
    last_full_check_at: datetime | None  # when a round last reached the oldest post


async def get_reread(archive: Archive, channel_id: int) -> RereadState:
    row = await archive.fetchone(
        "SELECT reread_cursor, reread_started_at, last_full_check_at FROM channels WHERE id = ?",
        (channel_id,),
    )
    if row is None:
        return RereadState(None, None, None)
    return RereadState(row[0], parse_ts(row[1]), parse_ts(row[2]))


async def advance_reread(
    archive: Archive, channel_id: int, *, cursor: int | None, now: datetime
) -> None:
    """Record the rotation's progress: the next id to read at or below (``cursor``), or
    ``None`` when it reached the channel's oldest post: the round is complete
    (``last_full_check_at = now``) and the next one starts from the top."""
    when = ts(now)
    async with archive.transaction() as db:
        if cursor is None:
            await db.execute(
                "UPDATE channels SET reread_cursor = NULL, reread_started_at = NULL,"
                " last_full_check_at = ? WHERE id = ?",
                (when, channel_id),
            )
        else:
            await db.execute(
                "UPDATE channels SET reread_cursor = ?,"
                " reread_started_at = coalesce(reread_started_at, ?) WHERE id = ?",
                (cursor, when, channel_id),
            )


async def rotation_counts(archive: Archive, channel_id: int, cursor: int | None) -> tuple[int, int]:
    """(posts in the rotation, posts not re-read yet this round): every archived post, and
    those at or below ``cursor`` (all of them when the round has not started)."""
    row = await archive.fetchone(
        "SELECT count(*), count(*) FILTER (WHERE ? IS NULL OR message_id <= ?) FROM posts"
        " WHERE channel_id = ?",
        (cursor, cursor, channel_id),
    )
    return (int(row[0]), int(row[1])) if row is not None else (0, 0)
