"""Reads for time lines and charts: what happened to posts, and when.

- :func:`post_events` gives the observed changes of a set of posts (edits, reverts,
  deletions, restores...), for a time line that marks them.
- :func:`daily_activity` counts a channel's posts, edits and confirmed deletions per day in
  a time zone: posts by their date, edits by Telegram's edit time (the time telewatch saw
  the edit when the source gave none), deletions by when they were confirmed.
- :func:`post_info` gives what a post page shows beside its history: media, counters, the
  forward's origin.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from archiver.store.archive import Archive, parse_ts, ts


@dataclass(frozen=True, slots=True)
class PostEvent:
    post_id: int
    kind: str  # edited | late | reverted | missing | deleted | restored | present
    at: datetime  # when telewatch observed it
    edit_date: datetime | None  # Telegram's edit time, when the source gave one
    how: str | None  # deletions: live | recheck | web_embed | manual
    evidence: str | None
    text: str | None = None  # the text of the version current after it

    @property
    def when(self) -> datetime:
        """When it happened, as well as the archive knows: the edit time, else when seen."""
        return self.edit_date or self.at


async def post_events(archive: Archive, post_ids: Sequence[int]) -> dict[int, list[PostEvent]]:
    """The events of each post, in the order observed."""
    out: dict[int, list[PostEvent]] = {}
    ids = list(dict.fromkeys(post_ids))
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        rows = await archive.fetchall(
            "SELECT e.post_id, e.kind, e.at, e.edit_date, e.how, e.evidence, v.text"
            " FROM post_events e LEFT JOIN versions v ON v.id = e.version_id"
            f" WHERE e.post_id IN ({','.join('?' * len(chunk))}) ORDER BY e.post_id, e.id",
            chunk,
        )
        for r in rows:
            at = parse_ts(r[2])
            assert at is not None
            out.setdefault(r[0], []).append(
                PostEvent(r[0], r[1], at, parse_ts(r[3]), r[4], r[5], r[6])
            )
    return out


async def first_texts(archive: Archive, post_ids: Sequence[int]) -> dict[int, str]:
    """The text of each post's first version (as first seen)."""
    out: dict[int, str] = {}
    ids = list(dict.fromkeys(post_ids))
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        rows = await archive.fetchall(
            "SELECT v.post_id, v.text FROM versions v JOIN (SELECT post_id, min(id) AS id"
            f" FROM versions WHERE post_id IN ({','.join('?' * len(chunk))}) GROUP BY post_id)"
            " f ON f.id = v.id",
            chunk,
        )
        out.update({r[0]: r[1] for r in rows})
    return out


@dataclass(frozen=True, slots=True)
class Day:
    day: date
    posts: int = 0
    edits: int = 0
    deletions: int = 0


def _hours(rows: Sequence[Any], tz: ZoneInfo) -> dict[date, int]:
    """UTC hour buckets (``YYYY-MM-DD HH``, count) summed into days of ``tz``: right for
    every zone whose offset is whole hours."""
    out: dict[date, int] = {}
    for hour, n in rows:
        if hour is None:
            continue
        dt = datetime.strptime(hour, "%Y-%m-%d %H").replace(tzinfo=UTC)
        d = dt.astimezone(tz).date()
        out[d] = out.get(d, 0) + int(n)
    return out


async def daily_activity(
    archive: Archive, channel_id: int, start: date, end: date, tz: ZoneInfo
) -> list[Day]:
    """Posts, edits and confirmed deletions per day of ``tz``, ``start`` to ``end``
    inclusive, every day present (zeros included)."""
    lo = ts(datetime.combine(start, datetime.min.time(), tz))
    hi = ts(datetime.combine(end + timedelta(days=1), datetime.min.time(), tz))
    posts = await archive.fetchall(
        "SELECT substr(date, 1, 13), count(*) FROM posts WHERE channel_id = ? AND"
        " is_service = 0 AND date >= ? AND date < ? GROUP BY 1",
        (channel_id, lo, hi),
    )
    edits = await archive.fetchall(
        "SELECT substr(coalesce(e.edit_date, e.at), 1, 13), count(*) FROM post_events e"
        " JOIN posts p ON p.id = e.post_id WHERE p.channel_id = ? AND e.kind = 'edited'"
        " AND coalesce(e.edit_date, e.at) >= ? AND coalesce(e.edit_date, e.at) < ? GROUP BY 1",
        (channel_id, lo, hi),
    )
    deletions = await archive.fetchall(
        "SELECT substr(e.at, 1, 13), count(*) FROM post_events e"
        " JOIN posts p ON p.id = e.post_id WHERE p.channel_id = ? AND e.kind = 'deleted'"
        " AND e.at >= ? AND e.at < ? GROUP BY 1",
        (channel_id, lo, hi),
    )
    p, e, d = _hours(posts, tz), _hours(edits, tz), _hours(deletions, tz)
    days = []
    day = start
    while day <= end:
        days.append(Day(day, p.get(day, 0), e.get(day, 0), d.get(day, 0)))
        day += timedelta(days=1)
    return days


async def last_post_date(archive: Archive, channel_id: int) -> datetime | None:
    row = await archive.fetchone(
        "SELECT max(date) FROM posts WHERE channel_id = ? AND is_service = 0", (channel_id,)
    )
    return None if row is None else parse_ts(row[0])


@dataclass(frozen=True, slots=True)
class PostInfo:
    post_id: int
    media: tuple[dict[str, Any], ...]  # kind, and size, width, height, name, mime when known
    views: int | None
    forwards: int | None
    replies: int | None
    forwarded_from: str | None
    reply_to: int | None
    first_seen_at: datetime | None
    source: str


async def post_info(archive: Archive, channel_id: int, message_id: int) -> PostInfo | None:
    r = await archive.fetchone(
        "SELECT id, media_kind, media_json, views, forwards, replies, fwd_from_title,"
        " fwd_from_id, reply_to, first_seen_at, source FROM posts"
        " WHERE channel_id = ? AND message_id = ?",
        (channel_id, message_id),
    )
    if r is None:
        return None
    media: list[dict[str, Any]] = []
    if r["media_json"]:
        try:
            loaded = json.loads(r["media_json"])
        except ValueError:
            loaded = []
        media = [m for m in loaded if isinstance(m, dict)] if isinstance(loaded, list) else []
    if not media and r["media_kind"]:
        media = [{"kind": r["media_kind"]}]
    fwd = r["fwd_from_title"] or (str(r["fwd_from_id"]) if r["fwd_from_id"] else None)
    return PostInfo(
        post_id=r["id"],
        media=tuple(media),
        views=r["views"],
        forwards=r["forwards"],
        replies=r["replies"],
        forwarded_from=fwd,
        reply_to=r["reply_to"],
        first_seen_at=parse_ts(r["first_seen_at"]),
        source=r["source"],
    )
