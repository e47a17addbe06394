"""The one ingest path: every source (export, Telethon, web) writes posts through here.

One call is one transaction: new posts and their first version, new versions for changed
texts (the old text is never overwritten), refreshed counters, and - when ``alerts`` is true -
the alerts those changes cause, so there is no alert without its post and no committed post
without its alerts. Re-running the same input changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, NamedTuple

import aiosqlite

from archiver.models import Entity, IngestStats, Media, Post
from archiver.query import Doc
from archiver.store.archive import Archive, Matcher, ts, utcnow
from archiver.text import Analysis, analyze, words_text

log = logging.getLogger(__name__)

# versions.id = (unix(post date) - EPOCH) << 32 | sequence: newest-first is index order.
EPOCH = 1_356_998_400  # 2013-01-01, before Telegram existed; good until 2081
SEQ_MASK = 0xFFFF_FFFF
_CHUNK = 500


def version_key(seconds: int, seq: int) -> int:
    """The id of a version of a post dated ``seconds`` (Unix time)."""
    return ((seconds - EPOCH) << 32) | (seq & SEQ_MASK)


def content_sha(text: str) -> str:
    """SHA-256 of a post's text with line endings and outer blanks made uniform, so the
    same text read by different sources is the same version."""
    canon = text.replace("\r\n", "\n").strip()
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()


def has_link(post: Post) -> bool:
    return any(e.type in ("url", "text_link") for e in post.entities) or "http" in post.text


def make_doc(
    analysis: Analysis,
    *,
    channel_id: int,
    username: str | None,
    date: str,
    edited: bool,
    deleted: bool,
    media_kind: str | None,
    link: bool,
    is_service: bool,
) -> Doc:
    return Doc(
        words=analysis.words,
        word_set=frozenset(analysis.words),
        channel_id=channel_id,
        channel_username=username,
        date=date,
        edited=edited,
        deleted=deleted,
        media_kind=media_kind,
        has_link=link,
        is_service=is_service,
    )


_ENTITY_FIELDS = tuple(f.name for f in fields(Entity))
_MEDIA_FIELDS = tuple(f.name for f in fields(Media))
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _compact(obj: object, names: tuple[str, ...]) -> dict[str, object]:
    """The non-None fields of a flat dataclass (dataclasses.asdict deep-copies: 10x slower)."""
    out: dict[str, object] = {}
    for name in names:
        value = getattr(obj, name)
        if value is not None:
            out[name] = value
    return out


def _entities_json(post: Post) -> str | None:
    if not post.entities:
        return None
    return _dumps([_compact(e, _ENTITY_FIELDS) for e in post.entities])


def _media_json(post: Post) -> str | None:
    if not post.media:
        return None
    return _dumps([_compact(m, _MEDIA_FIELDS) for m in post.media])


@dataclass(slots=True)
class _Existing:
    post_id: int
    current_version_id: int
    sha: str
    edit_date: str | None
    deleted: bool
    date: str
    media_kind: str | None
    has_link: bool
    edited: bool
    shas: dict[str, tuple[int, str | None]] | None = None  # every version: sha -> (id, edit_date)


async def _fetch_existing(
    db: aiosqlite.Connection, posts: Sequence[Prepared]
) -> dict[tuple[int, int], _Existing]:
    by_channel: dict[int, list[int]] = {}
    for p in posts:
        by_channel.setdefault(p.channel_id, []).append(p.message_id)
    out: dict[tuple[int, int], _Existing] = {}
    for channel_id, ids in by_channel.items():
        uniq = sorted(set(ids))
        for i in range(0, len(uniq), _CHUNK):
            chunk = uniq[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            sql = (
                "SELECT p.message_id, p.id, p.current_version_id, v.sha256, v.edit_date,"
                " p.deleted_at, p.date, p.media_kind, p.has_link, p.edited"
                " FROM posts p JOIN versions v ON v.id = p.current_version_id"
                f" WHERE p.channel_id = ? AND p.message_id IN ({marks})"
            )
            async with db.execute(sql, (channel_id, *chunk)) as cur:
                async for r in cur:
                    out[(channel_id, r[0])] = _Existing(
                        r[1], r[2], r[3], r[4], r[5] is not None, r[6], r[7], bool(r[8]), bool(r[9])
                    )
    return out


async def _version_shas(
    db: aiosqlite.Connection, post_id: int
) -> dict[str, tuple[int, str | None]]:
    async with db.execute(
        "SELECT id, sha256, edit_date FROM versions WHERE post_id = ? ORDER BY id", (post_id,)
    ) as cur:
        return {r[1]: (r[0], r[2]) async for r in cur}


async def _next_ids(db: aiosqlite.Connection) -> tuple[int, int]:
    async with db.execute("SELECT coalesce(max(id), 0) FROM posts") as cur:
        row = await cur.fetchone()
    post_id = int(row[0]) if row else 0
    async with db.execute("SELECT value FROM meta WHERE key = 'version_seq'") as cur:
        row = await cur.fetchone()
    seq = int(row[0]) if row else 0
    return post_id, seq


async def _usernames(db: aiosqlite.Connection, ids: Iterable[int]) -> dict[int, str | None]:
    uniq = list(set(ids))
    marks = ",".join("?" * len(uniq))
    async with db.execute(f"SELECT id, username FROM channels WHERE id IN ({marks})", uniq) as cur:
        return {r[0]: r[1] async for r in cur}


async def _previous_recipients(
    db: aiosqlite.Connection, post_id: int
) -> dict[int, tuple[set[str], int | None]]:
    """Recipients already alerted about a post: their rules and the first alert's message id."""
    out: dict[int, tuple[set[str], int | None]] = {}
    async with db.execute(
        "SELECT recipient, rules, tg_message_id FROM alerts WHERE post_id = ? ORDER BY id",
        (post_id,),
    ) as cur:
        async for r in cur:
            rules, first = out.get(r[0], (set(), r[2]))
            rules.update(json.loads(r[1]))
            out[r[0]] = (rules, first if first is not None else r[2])
    return out


class _AlertBuffer:
    def __init__(self, matcher: Matcher | None, now: str) -> None:
        self.matcher = matcher
        self.now = now
        self.rows: list[tuple[Any, ...]] = []
        self.texts: dict[int, str] = {}  # versions of this batch, not in the table yet

    def recipients_of(self, post_id: int) -> dict[int, set[str]]:
        """Recipients (and rules) of the alerts this batch queued for a post so far."""
        out: dict[int, set[str]] = {}
        for row in self.rows:
            if row[0] == post_id:
                out.setdefault(row[3], set()).update(json.loads(row[5]))
        return out

    def add(
        self,
        post_id: int,
        version_id: int,
        prev_version_id: int | None,
        kind: str,
        recipients: dict[int, set[str]],
    ) -> None:
        for recipient, rules in sorted(recipients.items()):
            self.rows.append(
                (
                    post_id,
                    version_id,
                    prev_version_id,
                    recipient,
                    kind,
                    json.dumps(sorted(rules), ensure_ascii=False),
                    self.now,
                )
            )

    def match(self, doc: Doc, kind: str) -> dict[int, set[str]]:
        if self.matcher is None:
            return {}
        return {r: set(names) for r, names in self.matcher.match(doc, kind).items()}

    async def flush(self, db: aiosqlite.Connection) -> int:
        if not self.rows:
            return 0
        before = db.total_changes
        await db.executemany(
            "INSERT OR IGNORE INTO alerts (post_id, version_id, prev_version_id, recipient, kind,"
            " rules, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            self.rows,
        )
        return db.total_changes - before


class Prepared(NamedTuple):
    """One post as ingest writes it, all that does not depend on the archive: computed ahead
    (CPU only, no I/O; a bulk import does it in a worker process, as a tuple is cheap to send
    between processes), so SQLite only assigns ids and writes."""

    channel_id: int
    message_id: int
    seconds: int  # Unix time of the post's date: the version key
    date: str
    edit_date: str | None
    edited: bool
    sha: str
    text: str
    entities: str | None
    raw: str | None
    words: str  # the indexed words (archiver.text.words_text); "" for a service message
    is_service: bool
    media_kind: str | None
    link: bool
    counts: tuple[Any, ...]  # views, forwards, replies, reactions, reactions_json
    post_fields: tuple[Any, ...]  # the posts columns from media_kind to service_action


def prepare(posts: Sequence[Post]) -> list[Prepared]:
    """:class:`Prepared` for each post."""
    out: list[Prepared] = []
    for p in posts:
        date = ts(p.date)
        assert date is not None
        media_kind = p.media[0].kind if p.media else None
        link = has_link(p)
        fwd = p.forward
        out.append(
            Prepared(
                p.channel_id, p.message_id, int(p.date.timestamp()), date, ts(p.edit_date),
                p.edited or p.edit_date is not None, content_sha(p.text), p.text,
                _entities_json(p), p.raw, "" if p.is_service else words_text(p.text),
                p.is_service, media_kind, link,
                (
                    p.views, p.forwards, p.replies, p.reactions_count,
                    json.dumps(p.reactions, ensure_ascii=False) if p.reactions else None,
                ),
                (
                    media_kind, _media_json(p), int(link),
                    fwd.from_id if fwd else None, fwd.from_title if fwd else None,
                    fwd.from_message_id if fwd else None,
                    p.reply_to, p.grouped_id, int(p.is_service), p.service_action,
                ),
            )
        )  # fmt: skip
    return out


def _prepared(posts: Sequence[Post] | Sequence[Prepared]) -> list[Prepared]:
    """A batch is all posts or all prepared rows (a bulk import prepares them ahead)."""
    if posts and isinstance(posts[0], Prepared):
        return list(posts)  # type: ignore[arg-type]
    return prepare(posts)  # type: ignore[arg-type]


async def ingest(
    archive: Archive,
    posts: Sequence[Post] | Sequence[Prepared],
    *,
    source: str,
    alerts: bool,
) -> IngestStats:
    """Write a batch of posts in one transaction; see the module docstring. ``posts`` may be
    :class:`Post` objects or their :func:`prepare` computed ahead."""
    prepared = _prepared(posts)
    if not posts:
        return IngestStats()
    now = ts(utcnow())
    assert now is not None
    matcher = await archive.current_matcher() if alerts else None
    async with archive.transaction() as db:
        existing = await _fetch_existing(db, prepared)
        usernames = await _usernames(db, (p.channel_id for p in prepared)) if matcher else {}
        post_id, seq = await _next_ids(db)
        buf = _AlertBuffer(matcher, now)
        new_posts: list[tuple[Any, ...]] = []
        new_versions: list[tuple[Any, ...]] = []
        counters: list[tuple[Any, ...]] = []
        current: list[tuple[Any, ...]] = []
        added = versions_added = updated = 0
        for pr in prepared:
            key = (pr.channel_id, pr.message_id)
            sha, date, edit_date = pr.sha, pr.date, pr.edit_date
            old = existing.get(key)
            if old is None:
                post_id += 1
                seq += 1
                vid = version_key(pr.seconds, seq)
                new_posts.append(
                    (post_id, pr.channel_id, pr.message_id, date, now, source, vid, int(pr.edited),
                     *pr.counts, now, *pr.post_fields)
                )  # fmt: skip
                new_versions.append(
                    (vid, post_id, pr.text, pr.entities, edit_date, now, sha, source, pr.raw,
                     pr.words)
                )  # fmt: skip
                buf.texts[vid] = pr.text
                existing[key] = _Existing(
                    post_id, vid, sha, edit_date, False, date, pr.media_kind, pr.link,
                    pr.edited, {sha: (vid, edit_date)},
                )  # fmt: skip
                added += 1
                versions_added += 1
                if matcher and not pr.is_service:
                    doc = make_doc(
                        Analysis.from_words_text(pr.words), channel_id=pr.channel_id,
                        username=usernames.get(pr.channel_id),
                        date=date, edited=pr.edited, deleted=False,
                        media_kind=pr.media_kind, link=pr.link, is_service=False,
                    )  # fmt: skip
                    buf.add(post_id, vid, None, "new", buf.match(doc, "new"))
                continue

            counters.append((*pr.counts, now, old.post_id))
            if sha == old.sha:
                updated += 1
                continue
            if old.shas is None:
                old.shas = await _version_shas(db, old.post_id)
            if sha in old.shas:  # a text we already have: a revert, or an older export
                vid, _ = old.shas[sha]
                if edit_date is not None and (old.edit_date is None or edit_date > old.edit_date):
                    current.append((vid, 0, old.post_id))
                    old.current_version_id, old.sha, old.edit_date = vid, sha, edit_date
                updated += 1
                continue
            seq += 1
            vid = version_key(pr.seconds, seq)
            new_versions.append(
                (vid, old.post_id, pr.text, pr.entities, edit_date, now, sha, source, pr.raw,
                 pr.words)
            )  # fmt: skip
            buf.texts[vid] = pr.text
            old.shas[sha] = (vid, edit_date)
            versions_added += 1
            # Telegram and exports always date an edit; the web preview never does. So an
            # undated text is older than a dated current one, unless it comes from the web.
            older = old.edit_date is not None and (
                edit_date < old.edit_date if edit_date is not None else source != "web"
            )
            if older:  # an older text arriving late (e.g. an old export): history, not current
                current.append((old.current_version_id, 1, old.post_id))
                continue
            prev_vid = old.current_version_id
            current.append((vid, 1, old.post_id))
            old.current_version_id, old.sha, old.edit_date = vid, sha, edit_date
            if matcher and not pr.is_service:
                await _edit_alerts(
                    db, buf, pr, old, vid, prev_vid, Analysis.from_words_text(pr.words), usernames
                )

        if new_posts:
            await db.executemany(
                "INSERT INTO posts (id, channel_id, message_id, date, first_seen_at, source,"
                " current_version_id, edited, views, forwards, replies, reactions, reactions_json,"
                " counts_at, media_kind, media_json, has_link, fwd_from_id, fwd_from_title,"
                " fwd_from_message_id, reply_to, grouped_id, is_service, service_action)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                new_posts,
            )
        if new_versions:
            await db.executemany(
                "INSERT INTO versions (id, post_id, text, entities, edit_date, seen_at, sha256,"
                " source, raw, words) VALUES (?,?,?,?,?,?,?,?,?,?)",
                new_versions,
            )
            await db.executemany(  # the index, in the same transaction (schema migration 2)
                "INSERT INTO versions_fts (rowid, words) VALUES (?, ?)",
                [(v[0], v[9]) for v in new_versions if v[9]],
            )
            await db.execute(
                "INSERT INTO meta (key, value) VALUES ('version_seq', ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(seq),),
            )
        if counters:
            await db.executemany(
                "UPDATE posts SET views = coalesce(?, views), forwards = coalesce(?, forwards),"
                " replies = coalesce(?, replies), reactions = coalesce(?, reactions),"
                " reactions_json = coalesce(?, reactions_json), counts_at = ? WHERE id = ?",
                counters,
            )
        if current:
            await db.executemany(
                "UPDATE posts SET current_version_id = ?, version_count = version_count + ?,"
                " edited = 1 WHERE id = ?",
                current,
            )
        queued = await buf.flush(db)
    if queued and archive.on_alerts is not None:
        archive.on_alerts()
    stats = IngestStats(
        posts_added=added,
        versions_added=versions_added,
        posts_updated=updated,
        alerts_queued=queued,
        high_water=max(p.message_id for p in prepared),
    )
    log.debug("ingest %s: %s", source, stats)
    return stats


async def _edit_alerts(
    db: aiosqlite.Connection,
    buf: _AlertBuffer,
    p: Prepared,
    old: _Existing,
    vid: int,
    prev_vid: int,
    analysis: Analysis,
    usernames: dict[int, str | None],
) -> None:
    """Alerts for an edit: recipients whose rules now match but did not before, and everyone
    already alerted about this post (they get old against new)."""
    old_text = buf.texts.get(prev_vid)  # the previous version may be in this same batch
    if old_text is None:
        async with db.execute("SELECT text FROM versions WHERE id = ?", (prev_vid,)) as cur:
            row = await cur.fetchone()
        old_text = row[0] if row else ""
    common = {
        "channel_id": p.channel_id,
        "username": usernames.get(p.channel_id),
        "date": old.date,
        "edited": True,
        "deleted": old.deleted,
        "media_kind": old.media_kind,
        "link": old.has_link,
        "is_service": False,
    }
    now_hits = buf.match(make_doc(analysis, **common), "edited")  # type: ignore[arg-type]
    before_hits = buf.match(make_doc(analyze(old_text), **common), "edited")  # type: ignore[arg-type]
    recipients: dict[int, set[str]] = {}
    for r, rules in now_hits.items():
        if rules - before_hits.get(r, set()):
            recipients[r] = set(rules)
    previous = {r: rules for r, (rules, _) in (await _previous_recipients(db, old.post_id)).items()}
    for r, rules in buf.recipients_of(old.post_id).items():  # queued earlier in this batch
        previous.setdefault(r, set()).update(rules)
    for r, rules in previous.items():
        wanted = {n for n in rules if buf.matcher is None or buf.matcher.wants(n, "edited")}
        if wanted:
            recipients.setdefault(r, set()).update(wanted | now_hits.get(r, set()))
    buf.add(old.post_id, vid, prev_vid, "edited", recipients)


async def mark_deleted(
    archive: Archive,
    channel_id: int,
    message_ids: Iterable[int],
    *,
    how: str,
    alerts: bool,
    at: datetime | None = None,
) -> int:
    """Mark posts deleted (never erased); returns how many were newly marked. With ``alerts``,
    queue ``deleted`` alerts to everyone alerted about the post and to rules that match it."""
    ids = sorted(set(message_ids))
    if not ids:
        return 0
    when = ts(at or datetime.now(UTC))
    now = ts(utcnow())
    assert now is not None
    matcher = await archive.current_matcher() if alerts else None
    marked = queued = 0
    async with archive.transaction() as db:
        buf = _AlertBuffer(matcher, now)
        username = (await _usernames(db, [channel_id])).get(channel_id) if matcher else None
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = list(
                await (
                    await db.execute(
                        "SELECT p.id, p.current_version_id, p.date, p.edited, p.media_kind,"
                        " p.has_link, p.is_service, v.words FROM posts p"
                        " JOIN versions v ON v.id = p.current_version_id"
                        f" WHERE p.channel_id = ? AND p.message_id IN ({marks})"
                        " AND p.deleted_at IS NULL",
                        (channel_id, *chunk),
                    )
                ).fetchall()
            )
            if not rows:
                continue
            await db.executemany(
                "UPDATE posts SET deleted_at = ?, deleted_how = ? WHERE id = ?",
                [(when, how, r[0]) for r in rows],
            )
            marked += len(rows)
            if matcher is None:
                continue
            for r in rows:
                if r[6]:
                    continue
                words_ = tuple(r[7].split())
                doc = Doc(
                    words=words_, word_set=frozenset(words_),
                    channel_id=channel_id, channel_username=username, date=r[2],
                    edited=bool(r[3]), deleted=True, media_kind=r[4], has_link=bool(r[5]),
                )  # fmt: skip
                recipients = buf.match(doc, "deleted")
                for rcp, (rules, _) in (await _previous_recipients(db, r[0])).items():
                    wanted = {n for n in rules if matcher.wants(n, "deleted")}
                    if wanted:
                        recipients.setdefault(rcp, set()).update(wanted)
                buf.add(r[0], r[1], None, "deleted", recipients)
        queued = await buf.flush(db)
    if queued and archive.on_alerts is not None:
        archive.on_alerts()
    if marked:
        log.info("channel %s: %d post(s) marked deleted (%s)", channel_id, marked, how)
    return marked


async def known_ids(archive: Archive, channel_id: int, min_id: int, max_id: int) -> dict[int, str]:
    """Message id -> sha256 of the current version, for archived, not deleted posts in range."""
    rows = await archive.fetchall(
        "SELECT p.message_id, v.sha256 FROM posts p JOIN versions v ON v.id = p.current_version_id"
        " WHERE p.channel_id = ? AND p.message_id BETWEEN ? AND ? AND p.deleted_at IS NULL",
        (channel_id, min_id, max_id),
    )
    return {r[0]: r[1] for r in rows}
