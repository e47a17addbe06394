"""Reads: search (the query language over FTS5), post history and per-channel statistics.

A query is compiled once into SQL. The textual part that FTS5 can express becomes one MATCH
read in the index's rowid order, which is the post date (``versions.id`` is a date-ordered
key), so newest-first search reads only as many index entries as it shows. Anything FTS5
cannot express alone (a lone NOT, a filter inside an OR) becomes SQL around per-term MATCH
subqueries. A post matches when any of its versions satisfies the query; it is shown once.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from archiver.channels import parse_ref, post_link
from archiver.errors import TelewatchError
from archiver.query import (
    All,
    And,
    Filter,
    Node,
    Not,
    Or,
    Phrase,
    Prefix,
    Query,
    Term,
    is_text,
    to_fts,
)
from archiver.snippets import Span, snippet
from archiver.store import pg_search
from archiver.store.archive import Archive, iso_utc, parse_ts
from archiver.store.channels import require_channel
from archiver.store.ingest import EPOCH
from archiver.store.search_filters import filter_sql

SORTS = ("newest", "relevance")
RELEVANCE_WINDOW = 1000  # matching versions ranked by bm25 for --sort relevance (see plan)
_HYDRATE_CHUNK = 200


@dataclass(frozen=True, slots=True)
class Hit:
    """One post found by a search."""

    post_id: int
    version_id: int  # the newest version that matched
    channel_id: int
    channel: str | None  # username
    channel_title: str | None
    message_id: int
    date: datetime
    text: str  # the latest version
    snippet: str  # from the version that matched
    spans: list[Span]  # matched words in ``snippet``
    link: str
    edited: bool
    deleted: bool
    deleted_at: datetime | None
    views: int | None
    forwarded_from: str | None
    media_kind: str | None

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` object: exactly the keys the CLI documents."""
        from archiver.snippets import mark

        return {
            "channel_id": self.channel_id,
            "channel": self.channel,
            "channel_title": self.channel_title,
            "message_id": self.message_id,
            "date": iso_utc(self.date),
            "text": self.text,
            "snippet": mark(self.snippet, self.spans),
            "link": self.link,
            "edited": self.edited,
            "deleted": self.deleted,
            "views": self.views,
            "forwarded_from": self.forwarded_from,
        }


# ---------------------------------------------------------------------------- compiling


def _key(day_text: str) -> int:
    dt = parse_ts(day_text)
    assert dt is not None
    return max(0, int(dt.timestamp()) - EPOCH) << 32


class _Compiler:
    def __init__(self, channel_ids: dict[str, int]) -> None:
        self.channel_ids = channel_ids
        self.params: list[Any] = []

    def where(self, node: Node) -> str:
        if isinstance(node, All):
            return "1"
        expr = to_fts(node) if is_text(node) else None
        if expr is not None:
            self.params.append(expr)
            return "v.id IN (SELECT rowid FROM versions_fts WHERE versions_fts MATCH ?)"
        if isinstance(node, Term | Phrase | Prefix):  # unreachable: text always compiles
            raise AssertionError(node)
        if isinstance(node, And):
            return "(" + " AND ".join(self.where(n) for n in node.items) + ")"
        if isinstance(node, Or):
            return "(" + " OR ".join(self.where(n) for n in node.items) + ")"
        if isinstance(node, Not):
            return f"NOT {self.where(node.item)}"
        return self.filter(node)

    def filter(self, f: Filter) -> str:
        return filter_sql(f, self.channel_ids, self.params)


@dataclass(frozen=True, slots=True)
class _Plan:
    sql: str
    params: tuple[Any, ...]
    ranked: bool = False  # relevance: the newest RELEVANCE_WINDOW matches, most relevant first


async def _channel_ids(archive: Archive, query: Query) -> dict[str, int]:
    out: dict[str, int] = {}
    for f in query.filters:
        if f.field == "channel" and f.value not in out:
            parse_ref(f.value)  # a clear error for something that is not a channel at all
            out[f.value] = (await require_channel(archive, f.value)).id
    return out


async def plan(
    archive: Archive, query: Query, sort: str = "newest", *, below: int | None = None
) -> _Plan:
    """The SQL that yields ``(version id, post id)`` rows in display order.

    Newest first reads the index in its own order. Relevance ranks by bm25 the newest
    :data:`RELEVANCE_WINDOW` matching versions only (the plan is ``ranked``; the rest follow
    newest first, see :func:`iter_matches`): bm25 over every match of a common word took
    0.25 - 0.7 s at 1,000,000 posts. ``below``: only versions with a smaller id (older)."""
    if sort not in SORTS:
        raise TelewatchError(f"sort: expected one of {', '.join(SORTS)}, got {sort!r}")
    if pg_search.is_postgres(archive):
        p = pg_search.plan(query, await _channel_ids(archive, query), below=below, since_key=_key)
        return _Plan(p.sql, p.params)
    c = _Compiler(await _channel_ids(archive, query))
    root = query.root
    items = list(root.items) if isinstance(root, And) else [root]
    text_items = [n for n in items if is_text(n)]
    match = to_fts(And(tuple(text_items))) if len(text_items) > 1 else None
    if len(text_items) == 1:
        match = to_fts(text_items[0])
    if match is None:
        where = c.where(root)
        if below is not None:
            where += " AND v.id < ?"
            c.params.append(below)
        sql = (
            "SELECT v.id, v.post_id FROM versions v JOIN posts p ON p.id = v.post_id"
            f" WHERE p.is_service = 0 AND {where} ORDER BY v.id DESC"
        )
        return _Plan(sql, tuple(c.params))
    rest = [n for n in items if n not in text_items]
    conds = ["versions_fts MATCH ?", "p.is_service = 0"]
    c.params.append(match)
    for n in rest:
        conds.append(c.where(n))
        if isinstance(n, Filter) and n.field == "since":
            conds.append("versions_fts.rowid >= ?")
            c.params.append(_key(n.bound))
        elif isinstance(n, Filter) and n.field == "until":
            conds.append("versions_fts.rowid < ?")
            c.params.append(_key(n.bound))
    if below is not None:
        conds.append("versions_fts.rowid < ?")
        c.params.append(below)
    joins = (
        " FROM versions_fts JOIN versions v ON v.id = versions_fts.rowid"
        " JOIN posts p ON p.id = v.post_id"
        f" WHERE {' AND '.join(conds)} ORDER BY versions_fts.rowid DESC"
    )
    if sort == "relevance":
        sql = (
            "SELECT vid, pid FROM (SELECT v.id AS vid, v.post_id AS pid,"
            f" bm25(versions_fts) AS score{joins} LIMIT {RELEVANCE_WINDOW})"
            " ORDER BY score, vid DESC"
        )
        return _Plan(sql, tuple(c.params), ranked=True)
    return _Plan("SELECT v.id, v.post_id" + joins, tuple(c.params))


def _ranked(query: Query) -> Node | None:
    """The textual part of ``query`` that a relevance search ranks: the MATCH of
    :func:`plan` (None when FTS5 cannot express it, and the order is newest first)."""
    root = query.root
    items = list(root.items) if isinstance(root, And) else [root]
    text_items = [n for n in items if is_text(n)]
    if not text_items:
        return None
    node = text_items[0] if len(text_items) == 1 else And(tuple(text_items))
    return node if to_fts(node) is not None else None


# ---------------------------------------------------------------------------- reading


async def iter_matches(
    archive: Archive, query: Query, *, sort: str = "newest"
) -> AsyncIterator[tuple[int, int]]:
    """``(post id, version id)`` of each matching post once, in display order, lazily.

    Relevance: the newest :data:`RELEVANCE_WINDOW` matching versions, most relevant first
    (bm25), then every older match, newest first."""
    if pg_search.is_postgres(archive):
        if sort not in SORTS:
            raise TelewatchError(f"sort: expected one of {', '.join(SORTS)}, got {sort!r}")
        ranked = _ranked(query) if sort == "relevance" else None
        async for pair in pg_search.iter_matches(
            archive,
            query,
            await _channel_ids(archive, query),
            ranked=ranked,
            window=RELEVANCE_WINDOW,
            since_key=_key,
        ):
            yield pair
        return
    p = await plan(archive, query, sort)
    seen: set[int] = set()
    rows = 0
    oldest: int | None = None
    async with archive.db.execute(p.sql, p.params) as cur:
        async for vid, pid in cur:
            rows += 1
            oldest = vid if oldest is None else min(oldest, vid)
            if pid not in seen:
                seen.add(pid)
                yield pid, vid
    if not p.ranked or rows < RELEVANCE_WINDOW or oldest is None:
        return
    tail = await plan(archive, query, "newest", below=oldest)
    async with archive.db.execute(tail.sql, tail.params) as cur:
        async for vid, pid in cur:
            if pid not in seen:
                seen.add(pid)
                yield pid, vid


_HYDRATE = """
SELECT p.id, f.vid, p.channel_id, c.username, c.title, p.message_id, p.date, cur.text AS text,
       hit.text AS hit_text, p.edited, p.deleted_at, p.views, p.fwd_from_title, p.fwd_from_id,
       p.media_kind
FROM (SELECT json_extract(value, '$[0]') AS pid, json_extract(value, '$[1]') AS vid
      FROM json_each(?)) f
JOIN posts p ON p.id = f.pid
JOIN channels c ON c.id = p.channel_id
JOIN versions cur ON cur.id = p.current_version_id
JOIN versions hit ON hit.id = f.vid
"""


async def hydrate(archive: Archive, query: Query, found: Sequence[tuple[int, int]]) -> list[Hit]:
    """The posts of ``found`` (post id, version id), in its order: one query for them all."""
    if not found:
        return []
    if pg_search.is_postgres(archive):
        rows = await archive.fetchall(pg_search.HYDRATE, pg_search.hydrate_params(found))
    else:
        rows = await archive.fetchall(_HYDRATE, (json.dumps(found),))
    by_key = {(r[0], r[1]): r for r in rows}
    hits: list[Hit] = []
    for pid, vid in found:
        r = by_key.get((pid, vid))
        if r is None:
            continue
        snip, spans = snippet(r["hit_text"], query)
        date = parse_ts(r["date"])
        assert date is not None
        fwd = r["fwd_from_title"] or (str(r["fwd_from_id"]) if r["fwd_from_id"] else None)
        hits.append(
            Hit(
                post_id=pid,
                version_id=vid,
                channel_id=r["channel_id"],
                channel=r["username"],
                channel_title=r["title"],
                message_id=r["message_id"],
                date=date,
                text=r["text"],
                snippet=snip,
                spans=spans,
                link=post_link(r["channel_id"], r["username"], r["message_id"]),
                edited=bool(r["edited"]),
                deleted=r["deleted_at"] is not None,
                deleted_at=parse_ts(r["deleted_at"]),
                views=r["views"],
                forwarded_from=fwd,
                media_kind=r["media_kind"],
            )
        )
    return hits


async def search(
    archive: Archive, query: Query, *, limit: int = 20, offset: int = 0, sort: str = "newest"
) -> list[Hit]:
    """One page of results."""
    found: list[tuple[int, int]] = []
    i = 0
    async for pair in iter_matches(archive, query, sort=sort):
        if i >= offset:
            found.append(pair)
            if len(found) >= limit:
                break
        i += 1
    return await hydrate(archive, query, found)


async def iter_hits(
    archive: Archive, query: Query, *, sort: str = "newest", limit: int | None = None
) -> AsyncIterator[Hit]:
    """Every result (for exports), hydrated in chunks; memory stays flat."""
    batch: list[tuple[int, int]] = []
    n = 0
    async for pair in iter_matches(archive, query, sort=sort):
        batch.append(pair)
        n += 1
        if len(batch) >= _HYDRATE_CHUNK:
            for hit in await hydrate(archive, query, batch):
                yield hit
            batch = []
        if limit is not None and n >= limit:
            break
    for hit in await hydrate(archive, query, batch):
        yield hit


async def count(archive: Archive, query: Query, *, cap: int | None = None) -> int:
    """How many posts match (one SQL statement). With ``cap``, counting stops past it and
    the answer is at most ``cap + 1``: "more than ``cap``" (a common word at 1,000,000 posts
    matches 80,000 of them, and counting each costs a read of its version)."""
    p = await plan(archive, query)
    limit = "" if cap is None else f" LIMIT {int(cap) + 1}"
    row = await archive.fetchone(
        f"SELECT count(*) FROM (SELECT DISTINCT post_id FROM ({p.sql}){limit})", p.params
    )
    return 0 if row is None else int(row[0])


# ---------------------------------------------------------------------------- history


@dataclass(frozen=True, slots=True)
class VersionInfo:
    text: str
    edit_date: datetime | None
    seen_at: datetime
    sha256: str
    source: str


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """One change after the post was first seen (archiver.record.events), as history shows it."""

    kind: str  # edited | late | reverted | missing | deleted | restored | present
    at: datetime  # when telewatch observed it
    source: str
    version: int | None  # 1-based index into PostHistory.versions
    edit_date: datetime | None
    how: str | None
    evidence: str | None
    parts: tuple[str, ...] = ()  # for a new version: what changed (text, links, fmt, media, html)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "parts": list(self.parts),
            "at": iso_utc(self.at),
            "source": self.source,
            "version": self.version,
            "edit_date": iso_utc(self.edit_date),
            "how": self.how,
            "evidence": self.evidence,
        }


@dataclass(frozen=True, slots=True)
class PostHistory:
    channel_id: int
    channel: str | None
    channel_title: str | None
    message_id: int
    date: datetime
    link: str
    versions: list[VersionInfo]  # in the order they were observed
    deleted: bool  # a confirmed deletion
    deleted_at: datetime | None
    deleted_how: str | None
    state: str = "present"  # present | missing | deleted | restored
    deleted_evidence: str | None = None
    events: list[HistoryEvent] = field(default_factory=list)
    current: int = 1  # 1-based index of the current version

    def to_json(self) -> dict[str, Any]:

        return {
            "channel_id": self.channel_id,
            "message_id": self.message_id,
            "versions": [
                {
                    "text": v.text,
                    "edit_date": iso_utc(v.edit_date),
                    "seen_at": iso_utc(v.seen_at),
                    "source": v.source,
                    "sha256": v.sha256,
                }
                for v in self.versions
            ],
            "current_version": self.current,
            "state": self.state,
            "deleted": self.deleted,
            "deleted_at": iso_utc(self.deleted_at),
            "deleted_how": self.deleted_how,
            "deleted_evidence": self.deleted_evidence,
            "events": [e.to_json() for e in self.events],
        }


class PostNotFound(TelewatchError):
    pass


async def export_rows(archive: Archive, hits: Sequence[Hit]) -> list[dict[str, Any]]:
    """The rows ``telewatch export`` and the bot's ``/export`` write: each hit's search fields
    and its record (:func:`record_fields`)."""
    extra = await record_fields(archive, [h.post_id for h in hits])
    return [{**h.to_json(), **extra.get(h.post_id, {})} for h in hits]


RECORD_FIELDS = (
    "state",
    "version_count",
    "first_text",
    "edit_times",
    "deleted_at",
    "deleted_how",
    "deletion_evidence",
)


async def record_fields(archive: Archive, post_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """What exports add to each post (docs/record.md, "Exports"): its deletion state, every
    version in the order observed (texts, edit times, when seen, by which source), the first
    text, the edit times, and the deletion's time and how it was established."""
    out: dict[int, dict[str, Any]] = {}
    if not post_ids:
        return out
    for i in range(0, len(post_ids), 500):
        chunk = list(post_ids[i : i + 500])
        marks = ",".join("?" * len(chunk))
        for r in await archive.fetchall(
            "SELECT id, state, deleted_at, deleted_how, deleted_evidence FROM posts"
            f" WHERE id IN ({marks})",
            chunk,
        ):
            out[r[0]] = {
                "state": r[1],
                "deleted_at": iso_utc(parse_ts(r[2])),
                "deleted_how": r[3],
                "deletion_evidence": r[4],
                "versions": [],
            }
        for r in await archive.fetchall(
            "SELECT post_id, text, edit_date, seen_at, source FROM versions"
            f" WHERE post_id IN ({marks}) ORDER BY post_id, id",
            chunk,
        ):
            out[r[0]]["versions"].append(
                {
                    "text": r[1],
                    "edit_date": iso_utc(parse_ts(r[2])),
                    "seen_at": iso_utc(parse_ts(r[3])),
                    "source": r[4],
                }
            )
    for rec in out.values():
        versions = rec["versions"]
        rec["version_count"] = len(versions)
        rec["first_text"] = versions[0]["text"] if versions else ""
        rec["edit_times"] = [v["edit_date"] or "unknown" for v in versions[1:]]
    return out


async def history(archive: Archive, channel: str | int, message_id: int) -> PostHistory:
    """Every version of one post in the order telewatch observed them (a version's id grows
    with each observation), the events after it was first seen, and its deletion state."""
    ch = await require_channel(archive, channel)
    post = (
        await archive.fetchone(
            "SELECT * FROM posts WHERE channel_id = ? AND message_id = ?", (ch.id, message_id)
        )
        if 0 < message_id < 2**63  # a bigger number is no post (and no SQLite integer)
        else None
    )
    if post is None:
        raise PostNotFound(
            f"{ch.name}: no post {message_id} in the archive "
            f"(newest archived: {await _max_message(archive, ch.id)})"
        )
    rows = await archive.fetchall(
        "SELECT id, text, edit_date, seen_at, sha256, source FROM versions WHERE post_id = ?"
        " ORDER BY id",
        (post["id"],),
    )
    versions = []
    index: dict[int, int] = {}
    for i, r in enumerate(rows, 1):
        seen = parse_ts(r["seen_at"])
        assert seen is not None
        index[r["id"]] = i
        versions.append(
            VersionInfo(r["text"], parse_ts(r["edit_date"]), seen, r["sha256"], r["source"])
        )
    events = []
    for e in await archive.fetchall(
        "SELECT kind, at, source, version_id, edit_date, how, evidence, parts FROM post_events"
        " WHERE post_id = ? ORDER BY id",
        (post["id"],),
    ):
        at = parse_ts(e["at"])
        assert at is not None
        events.append(
            HistoryEvent(
                e["kind"], at, e["source"], index.get(e["version_id"]),
                parse_ts(e["edit_date"]), e["how"], e["evidence"],
                tuple(e["parts"].split(",")) if e["parts"] else (),
            )
        )  # fmt: skip
    date = parse_ts(post["date"])
    assert date is not None
    return PostHistory(
        channel_id=ch.id,
        channel=ch.username,
        channel_title=ch.title,
        message_id=message_id,
        date=date,
        link=post_link(ch.id, ch.username, message_id),
        versions=versions,
        deleted=post["state"] == "deleted",
        deleted_at=parse_ts(post["deleted_at"]),
        deleted_how=post["deleted_how"],
        state=post["state"],
        deleted_evidence=post["deleted_evidence"],
        events=events,
        current=index.get(post["current_version_id"], len(versions)),
    )


async def _max_message(archive: Archive, channel_id: int) -> int | None:
    row = await archive.fetchone(
        "SELECT max(message_id) FROM posts WHERE channel_id = ?", (channel_id,)
    )
    return None if row is None else row[0]


# ---------------------------------------------------------------------------- stats


@dataclass(frozen=True, slots=True)
class ChannelStats:
    channel_id: int
    channel: str | None
    title: str | None
    source: str
    posts: int
    edits: int  # versions beyond the first
    edited_posts: int
    deletions: int
    first_post: datetime | None
    last_post: datetime | None
    last_sync: datetime | None
    last_sync_ok: datetime | None
    sync_status: str | None
    last_error: str | None
    flood_wait_until: datetime | None
    backfilled: bool
    missing: int = 0  # posts a listing did not show, deletion not confirmed
    last_full_check: datetime | None = None  # when a re-read last covered the whole channel

    def to_json(self) -> dict[str, Any]:

        return {
            "channel_id": self.channel_id,
            "channel": self.channel,
            "title": self.title,
            "source": self.source,
            "posts": self.posts,
            "edits": self.edits,
            "edited_posts": self.edited_posts,
            "deletions": self.deletions,
            "first_post": iso_utc(self.first_post),
            "last_post": iso_utc(self.last_post),
            "last_sync": iso_utc(self.last_sync),
            "last_sync_ok": iso_utc(self.last_sync_ok),
            "sync_status": self.sync_status,
            "last_error": self.last_error,
            "flood_wait_until": iso_utc(self.flood_wait_until),
            "backfilled": self.backfilled,
            "missing_unconfirmed": self.missing,
            "last_full_check": iso_utc(self.last_full_check),
        }


async def channel_stats(archive: Archive) -> list[ChannelStats]:
    rows = await archive.fetchall(
        """
        SELECT c.*, coalesce(s.posts, 0) AS posts, coalesce(s.edits, 0) AS edits,
               coalesce(s.edited_posts, 0) AS edited_posts, coalesce(s.deletions, 0) AS deletions,
               coalesce(s.missing, 0) AS missing, s.first_post, s.last_post
        FROM channels c LEFT JOIN (
            SELECT channel_id, count(*) AS posts, sum(version_count - 1) AS edits,
                   sum(edited) AS edited_posts, count(deleted_at) AS deletions,
                   sum(state = 'missing') AS missing,
                   min(date) AS first_post, max(date) AS last_post
            FROM posts WHERE is_service = 0 GROUP BY channel_id
        ) s ON s.channel_id = c.id
        ORDER BY coalesce(c.username, c.title, CAST(c.id AS TEXT))
        """
    )
    return [
        ChannelStats(
            channel_id=r["id"],
            channel=r["username"],
            title=r["title"],
            source=r["source"],
            posts=r["posts"],
            edits=r["edits"],
            edited_posts=r["edited_posts"],
            deletions=r["deletions"],
            first_post=parse_ts(r["first_post"]),
            last_post=parse_ts(r["last_post"]),
            last_sync=parse_ts(r["last_sync_at"]),
            last_sync_ok=parse_ts(r["last_sync_ok_at"]),
            sync_status=r["last_sync_status"],
            last_error=r["last_error"],
            flood_wait_until=parse_ts(r["flood_wait_until"]),
            backfilled=r["backfilled_at"] is not None,
            missing=r["missing"],
            last_full_check=parse_ts(r["last_full_check_at"]),
        )
        for r in rows
    ]
