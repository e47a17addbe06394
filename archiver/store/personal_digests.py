"""A chat's own daily digest (``/digest daily HH:MM``): when it is due, and which one was
sent. The time of day is in the display time zone. ``claimed`` (the due time of the last
digest taken for sending) is written before the send and compared-and-set, so a digest is
sent at most once whatever happens (a restart, two bots on one archive)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo

from archiver.store.archive import Archive, parse_ts, ts
from archiver.store.quiet import parse_time

WINDOW = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class DueDigest:
    chat_id: int
    due: datetime  # UTC: the digest covers [since, due)
    since: datetime
    claimed: str | None  # the claim it replaces (compare-and-set)


def last_due(at: time, now: datetime, tz: tzinfo) -> datetime:
    """The latest moment at or before ``now`` when the local clock showed ``at``."""
    local = now.astimezone(tz)
    for back in range(3):  # a day the clocks change may skip the time: the day before
        day = (local - timedelta(days=back)).date()
        due = datetime.combine(day, at, tzinfo=tz)
        # Compared as instants: two datetimes of one tzinfo compare by wall clock, which
        # takes a time the clocks skipped (03:30 on the spring-forward day) for one past
        # at 04:10, though it lies 20 minutes ahead.
        if due.astimezone(UTC) <= now.astimezone(UTC):
            return due.astimezone(now.tzinfo)
    return (local - WINDOW).astimezone(now.tzinfo)  # unreachable


async def set_digest(archive: Archive, chat_id: int, at: time, now: datetime, tz: tzinfo) -> None:
    """The chat's digest at ``at`` every day; the first is the next one to come (the one
    just past counts as sent)."""
    claimed = ts(last_due(at, now, tz))
    await archive.write(
        "INSERT INTO personal_digests (chat_id, at, claimed) VALUES (?, ?, ?)"
        " ON CONFLICT (chat_id) DO UPDATE SET at = excluded.at, claimed = excluded.claimed",
        (chat_id, f"{at:%H:%M}", claimed),
    )


async def clear_digest(archive: Archive, chat_id: int) -> bool:
    rows = await archive.write(
        "DELETE FROM personal_digests WHERE chat_id = ? RETURNING chat_id", (chat_id,)
    )
    return bool(rows)


async def get_digest(archive: Archive, chat_id: int) -> time | None:
    row = await archive.fetchone("SELECT at FROM personal_digests WHERE chat_id = ?", (chat_id,))
    return None if row is None else parse_time(row[0])


async def due_digests(archive: Archive, now: datetime, tz: tzinfo) -> list[DueDigest]:
    """The digests due at ``now`` and not yet claimed."""
    out: list[DueDigest] = []
    for r in await archive.fetchall("SELECT chat_id, at, claimed FROM personal_digests"):
        due = last_due(parse_time(r[1]), now, tz)
        claimed = parse_ts(r[2])
        if claimed is not None and claimed >= due:
            continue
        since = max(due - WINDOW, claimed) if claimed is not None else due - WINDOW
        out.append(DueDigest(r[0], due, since, r[2]))
    return out


async def claim_digest(archive: Archive, d: DueDigest) -> bool:
    """Take ``d`` for sending (before the send): False when someone else did, or it changed."""
    rows = await archive.write(
        "UPDATE personal_digests SET claimed = ? WHERE chat_id = ? AND claimed IS ?"
        " RETURNING chat_id",
        (ts(d.due), d.chat_id, d.claimed),
    )
    return bool(rows)


async def unclaim_digest(archive: Archive, d: DueDigest) -> None:
    """Telegram certainly did not take it: due again at the next look."""
    await archive.write(
        "UPDATE personal_digests SET claimed = ? WHERE chat_id = ? AND claimed = ?",
        (d.claimed, d.chat_id, ts(d.due)),
    )
