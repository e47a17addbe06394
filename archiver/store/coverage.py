"""Coverage: what the archive can and cannot vouch for, per channel (docs/record.md).

- **Watched spans.** Every successful check of a channel (a sync pass, a re-read, the live
  follow's reconciliation) extends its current span when it comes within ``WATCH_TOLERANCE``
  of the span's end, else starts a new one. Between spans nobody was watching: the process was
  down, a flood wait or an error stopped the checks (``channel_faults`` keeps why). A post
  published and deleted inside such a window was never seen: that is a gap, not an absence.
- **Id ranges.** Message ids are consecutive within a channel, so the archived ids form ranges;
  ids inside the channel's span that were never archived were deleted before we looked (or
  are service messages the source does not show, or were missed).
- **Re-reads.** When the rotation last re-read the whole channel.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import aiosqlite

from archiver.store.archive import Archive, iso_utc, parse_ts, ts, utcnow

WATCH_TOLERANCE = timedelta(minutes=90)  # = [schedule] stale_after_minutes' default


async def watched(
    db: aiosqlite.Connection, channel_id: int, at: str, tolerance: timedelta = WATCH_TOLERANCE
) -> None:
    """Inside a write transaction: the channel was checked successfully at ``at``."""
    async with db.execute(
        "SELECT id, ended_at FROM watch_spans WHERE channel_id = ? ORDER BY ended_at DESC LIMIT 1",
        (channel_id,),
    ) as cur:
        last = await cur.fetchone()
    when = parse_ts(at)
    assert when is not None
    if last is not None:
        end = parse_ts(last[1])
        assert end is not None
        if end >= when:
            return
        if when - end <= tolerance:
            await db.execute("UPDATE watch_spans SET ended_at = ? WHERE id = ?", (at, last[0]))
            return
    await db.execute(
        "INSERT INTO watch_spans (channel_id, source, started_at, ended_at)"
        " SELECT id, source, ?, ? FROM channels WHERE id = ?",
        (at, at, channel_id),
    )


async def note_watched(archive: Archive, channel_id: int, at: datetime | None = None) -> None:
    """The channel was checked successfully (the live follow calls this on reconciliation)."""
    when = ts(at or utcnow())
    assert when is not None
    async with archive.transaction() as db:
        await watched(db, channel_id, when)


@dataclass(frozen=True, slots=True)
class Window:
    """A time window nobody was watching the channel, and what failed in it."""

    start: datetime
    end: datetime | None  # None: up to now
    faults: tuple[tuple[str, str | None, int], ...] = ()  # (status, reason, how many times)

    def as_json(self) -> dict[str, Any]:
        return {
            "start": iso_utc(self.start),
            "end": iso_utc(self.end),
            "faults": [{"status": s, "reason": r, "count": n} for s, r, n in self.faults],
        }


@dataclass(frozen=True, slots=True)
class Coverage:
    channel_id: int
    name: str
    source: str
    posts: int
    ranges: tuple[tuple[int, int], ...]  # archived message ids, as inclusive ranges
    never_seen: int  # ids inside the archived span that were never archived
    states: dict[str, int]  # posts per deletion state
    watched_since: datetime | None
    unwatched: tuple[Window, ...]
    last_check_at: datetime | None
    last_full_check_at: datetime | None
    reread_cursor: int | None
    notes: tuple[str, ...] = field(default=())

    def as_json(self) -> dict[str, Any]:
        return {
            "channel_id": self.channel_id,
            "channel": self.name,
            "source": self.source,
            "posts": self.posts,
            "id_ranges": [list(r) for r in self.ranges],
            "ids_never_seen": self.never_seen,
            "states": self.states,
            "watched_since": iso_utc(self.watched_since),
            "unwatched": [w.as_json() for w in self.unwatched],
            "last_check_at": iso_utc(self.last_check_at),
            "last_full_check_at": iso_utc(self.last_full_check_at),
            "reread_cursor": self.reread_cursor,
        }


async def _ranges(archive: Archive, channel_id: int) -> list[tuple[int, int]]:
    rows = await archive.fetchall(
        "SELECT min(message_id), max(message_id) FROM (SELECT message_id,"
        " message_id - row_number() OVER (ORDER BY message_id) AS grp FROM posts"
        " WHERE channel_id = ?) GROUP BY grp ORDER BY 1",
        (channel_id,),
    )
    return [(r[0], r[1]) for r in rows]


async def _windows(
    archive: Archive, channel_id: int, now: datetime, tolerance: timedelta
) -> tuple[datetime | None, list[Window]]:
    spans = [
        (parse_ts(r[0]), parse_ts(r[1]))
        for r in await archive.fetchall(
            "SELECT started_at, ended_at FROM watch_spans WHERE channel_id = ? ORDER BY started_at",
            (channel_id,),
        )
    ]
    if not spans:
        return None, []
    gaps: list[tuple[datetime, datetime | None]] = []
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end is not None and start is not None
        gaps.append((end, start))
    last_end = spans[-1][1]
    assert last_end is not None
    if now - last_end > tolerance:
        gaps.append((last_end, None))
    out: list[Window] = []
    for start, end in gaps:
        rows = await archive.fetchall(
            "SELECT status, reason, count(*) FROM channel_faults WHERE channel_id = ?"
            " AND at >= ? AND (? IS NULL OR at <= ?) GROUP BY status, reason ORDER BY min(at)",
            (channel_id, ts(start), ts(end), ts(end)),
        )
        out.append(Window(start, end, tuple((r[0], r[1], r[2]) for r in rows)))
    return spans[0][0], out


async def channel_coverage(
    archive: Archive,
    channel_id: int,
    *,
    now: datetime | None = None,
    tolerance: timedelta = WATCH_TOLERANCE,
) -> Coverage:
    """The coverage of one archived channel (see the module docstring)."""
    ch = await archive.fetchone(
        "SELECT id, coalesce(username, title, CAST(id AS TEXT)), source, last_sync_ok_at,"
        " last_full_check_at, reread_cursor FROM channels WHERE id = ?",
        (channel_id,),
    )
    if ch is None:
        raise KeyError(channel_id)
    ranges = await _ranges(archive, channel_id)
    posts = sum(hi - lo + 1 for lo, hi in ranges)
    never = (ranges[-1][1] - ranges[0][0] + 1 - posts) if ranges else 0
    states = {
        r[0]: r[1]
        for r in await archive.fetchall(
            "SELECT state, count(*) FROM posts WHERE channel_id = ? GROUP BY state", (channel_id,)
        )
    }
    since, windows = await _windows(archive, channel_id, now or utcnow(), tolerance)
    return Coverage(
        channel_id=ch[0],
        name=str(ch[1]),
        source=ch[2],
        posts=posts,
        ranges=tuple(ranges),
        never_seen=never,
        states=states,
        watched_since=since,
        unwatched=tuple(windows),
        last_check_at=parse_ts(ch[3]),
        last_full_check_at=parse_ts(ch[4]),
        reread_cursor=ch[5],
    )


@dataclass(frozen=True, slots=True)
class Fault:
    at: datetime
    status: str
    reason: str | None


async def recent_faults(archive: Archive, channel_id: int, limit: int = 10) -> list[Fault]:
    """The channel's newest failed checks, newest first."""
    rows = await archive.fetchall(
        "SELECT at, status, reason FROM channel_faults WHERE channel_id = ?"
        " ORDER BY at DESC, id DESC LIMIT ?",
        (channel_id, limit),
    )
    out = []
    for r in rows:
        at = parse_ts(r[0])
        assert at is not None
        out.append(Fault(at, r[1], r[2]))
    return out
