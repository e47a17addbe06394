"""The one ingest path: every source (export, Telethon, web) writes posts through here.

One call is one transaction. What each observation means is decided by the pure rules of
:mod:`archiver.record.events` (a new post, the same content again, a new version, a revert to
an earlier version, an older text arriving late, a missing or deleted post seen again); this
module writes those events: posts and versions (the old content is never overwritten), a
``post_events`` row for every change after a post was first seen, refreshed counters, and -
when ``alerts`` is true - the alerts those changes cause (:mod:`archiver.store.followups`),
so there is no alert without its post and no committed post without its alerts. Re-running the
same input changes nothing. Deletions: :mod:`archiver.store.deletions`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

import aiosqlite

from archiver.evidence.capture import Raw, json_object
from archiver.evidence.log import Observation
from archiver.evidence.log import append as log_append
from archiver.models import Entity, IngestStats, Media, Post
from archiver.query import Doc
from archiver.record import events as ev
from archiver.record.content import Signature, kept, lossy_dump, signature, text_sha
from archiver.store.archive import Archive, Matcher, ts, utcnow
from archiver.store.followups import (
    Recipients,
    alerted_recipients,
    change_recipients,
    version_words,
)
from archiver.store.postgres import dialect
from archiver.store.wakeup import announce
from archiver.text import Analysis, words_text

log = logging.getLogger(__name__)

# versions.id = (unix(post date) - EPOCH) << 32 | sequence: newest-first is index order, and
# the versions of one post (same date) sort in the order they were observed.
EPOCH = 1_356_998_400  # 2013-01-01, before Telegram existed; good until 2081
SEQ_MASK = 0xFFFF_FFFF
_CHUNK = 500

content_sha = text_sha  # the text's hash (versions.sha256); kept under its old name


def version_key(seconds: int, seq: int) -> int:
    """The id of a version of a post dated ``seconds`` (Unix time)."""
    return ((seconds - EPOCH) << 32) | (seq & SEQ_MASK)


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
    current: int
    sha: str
    sig: str | None
    edit_date: str | None
    state: str
    date: str
    media_kind: str | None
    has_link: bool
    since: ev.Since | None = None  # how the current version became current
    versions: list[ev.Known] | None = None  # every version in the order observed, lazily

    def current_known(self) -> ev.Known:
        return ev.Known(self.current, Signature.load(self.sha, self.sig), self.edit_date)

    def held(self) -> ev.Held:
        versions = tuple(self.versions) if self.versions is not None else (self.current_known(),)
        return ev.Held(versions, self.current, self.state, self.since)


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
                "SELECT p.message_id, p.id, p.current_version_id, v.sha256, v.content_sig,"
                " v.edit_date, p.state, p.date, p.media_kind, p.has_link,"
                " e.id, e.edit_date, coalesce(e.source, v.source), coalesce(e.at, v.seen_at)"
                " FROM posts p JOIN versions v ON v.id = p.current_version_id"
                # the revert that made the current version current again, if one did
                " LEFT JOIN post_events e ON e.id = (SELECT max(r.id) FROM post_events r"
                " WHERE r.post_id = p.id AND r.kind = 'reverted')"
                " AND e.version_id = p.current_version_id"
                f" WHERE p.channel_id = ? AND p.message_id IN ({marks})"
            )
            async with db.execute(sql, (channel_id, *chunk)) as cur:
                async for r in cur:
                    since = ev.Since(r[11] if r[10] is not None else r[5], r[12], r[13])
                    out[(channel_id, r[0])] = _Existing(
                        r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], bool(r[9]), since
                    )
    return out


async def _load_versions(db: aiosqlite.Connection, post_id: int) -> list[ev.Known]:
    async with db.execute(
        "SELECT id, sha256, content_sig, edit_date FROM versions WHERE post_id = ? ORDER BY id",
        (post_id,),
    ) as cur:
        return [ev.Known(r[0], Signature.load(r[1], r[2]), r[3]) async for r in cur]


async def _next_ids(db: aiosqlite.Connection) -> tuple[int, int, int]:
    async with db.execute("SELECT coalesce(max(id), 0) FROM posts") as cur:
        row = await cur.fetchone()
    post_id = int(row[0]) if row else 0
    async with db.execute("SELECT value FROM meta WHERE key = 'version_seq'") as cur:
        row = await cur.fetchone()
    seq = int(row[0]) if row else 0
    async with db.execute("SELECT coalesce(max(id), 0) FROM post_events") as cur:
        row = await cur.fetchone()
    event_id = int(row[0]) if row else 0
    return post_id, seq, event_id


async def usernames(
    db: aiosqlite.Connection, ids: Sequence[int] | set[int]
) -> dict[int, str | None]:
    uniq = list(set(ids))
    marks = ",".join("?" * len(uniq))
    async with db.execute(f"SELECT id, username FROM channels WHERE id IN ({marks})", uniq) as cur:
        return {r[0]: r[1] async for r in cur}


class AlertBuffer:
    """Alerts of one transaction, written in one statement at the end."""

    def __init__(self, matcher: Matcher | None, now: str) -> None:
        self.matcher = matcher
        self.now = now
        self.rows: list[tuple[Any, ...]] = []

    def recipients_of(self, post_id: int, kinds: Sequence[str] | None = None) -> Recipients:
        """Recipients (and rules) of the alerts this transaction queued for a post so far."""
        out: Recipients = {}
        for row in self.rows:
            if row[0] == post_id and (kinds is None or row[4] in kinds):
                out.setdefault(row[3], set()).update(json.loads(row[5]))
        return out

    async def alerted(
        self, db: aiosqlite.Connection, post_id: int, kinds: Sequence[str] | None = None
    ) -> Recipients:
        """Everyone alerted about a post: in the archive and queued in this transaction."""
        out = await alerted_recipients(db, post_id, kinds)
        for r, rules in self.recipients_of(post_id, kinds).items():
            out.setdefault(r, set()).update(rules)
        return out

    def add(
        self,
        post_id: int,
        version_id: int,
        prev_version_id: int | None,
        kind: str,
        recipients: Recipients,
        event_id: int = 0,
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
                    event_id,
                )
            )

    async def flush(self, db: aiosqlite.Connection) -> int:
        if not self.rows:
            return 0
        before = db.total_changes
        await db.executemany(
            "INSERT INTO alerts (post_id, version_id, prev_version_id, recipient, kind,"
            " rules, created_at, event_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            self.rows,
        )
        queued = db.total_changes - before
        if queued:
            await announce(db)  # the bots in other processes wake at commit
        return queued


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
    sha: str  # the text's SHA-256 (versions.sha256)
    text: str
    entities: str | None
    raw: str | None
    words: str  # the indexed words (archiver.text.words_text); "" for a service message
    is_service: bool
    media_kind: str | None
    link: bool
    counts: tuple[Any, ...]  # views, forwards, replies, reactions, reactions_json
    post_fields: tuple[Any, ...]  # the posts columns from media_kind to service_action
    sig: str  # the other parts of the content (archiver.record.content.Signature.dump)
    content_sha: str  # SHA-256 over every part of the content


def prepare(posts: Sequence[Post]) -> list[Prepared]:
    """:class:`Prepared` for each post."""
    out: list[Prepared] = []
    for p in posts:
        date = ts(p.date)
        assert date is not None
        media_kind = p.media[0].kind if p.media else None
        link = has_link(p)
        fwd = p.forward
        sig = signature(p)
        out.append(
            Prepared(
                p.channel_id, p.message_id, int(p.date.timestamp()), date, ts(p.edit_date),
                p.edited or (p.edit_date is not None and not p.edit_hidden), sig.text, p.text,
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
                sig.dump(), sig.content_sha,
            )
        )  # fmt: skip
    return out


def _prepared(posts: Sequence[Post] | Sequence[Prepared]) -> list[Prepared]:
    """A batch is all posts or all prepared rows (a bulk import prepares them ahead)."""
    if posts and isinstance(posts[0], Prepared):
        return list(posts)  # type: ignore[arg-type]
    return prepare(posts)  # type: ignore[arg-type]


class _Batch:
    """The rows one ingest call writes, gathered while its observations are decided."""

    def __init__(
        self,
        db: aiosqlite.Connection,
        source: str,
        now: str,
        ids: tuple[int, int, int],
        buf: AlertBuffer,
        names: dict[int, str | None],
        capture: Raw | None = None,
    ) -> None:
        self.db, self.source, self.now, self.buf, self.names = db, source, now, buf, names
        self.capture = capture  # what the batch was read from (a web page), if given
        self.observed: list[Observation] = []  # the log's entries, in the order observed
        self.pr: Prepared | None = None  # the reading being decided
        self.post_id, self.seq, self.event_id = ids
        self.new_posts: list[tuple[Any, ...]] = []
        self.new_versions: list[tuple[Any, ...]] = []
        self.counters: list[tuple[Any, ...]] = []
        self.current: list[tuple[Any, ...]] = []  # (version id, versions added, post id)
        self.filled: list[tuple[Any, ...]] = []
        self.states: list[tuple[Any, ...]] = []
        self.events: list[tuple[Any, ...]] = []
        # versions this batch added (not in the table until write()): a new post's first one,
        # and later ones
        self.first_words: dict[int, tuple[int, str]] = {}
        self.batch_words: dict[int, list[tuple[int, str]]] = {}
        self.added = self.versions_added = self.updated = 0
        # An export's formatting and links are a lossy reading (archiver.record.content.LOSSY)
        self.lossy = source == ev.EXPORT

    def sig(self, pr: Prepared) -> str:
        """The stored form of a reading's parts after the text."""
        return lossy_dump(pr.sig) if self.lossy else pr.sig

    def version_row(self, pr: Prepared, post_id: int, sig: str) -> int:
        self.seq += 1
        vid = version_key(pr.seconds, self.seq)
        self.new_versions.append(
            (vid, post_id, pr.text, pr.entities, pr.edit_date, self.now, pr.sha, self.source,
             pr.raw, pr.words, sig, pr.content_sha)
        )  # fmt: skip
        self.batch_words.setdefault(post_id, []).append((vid, pr.words))
        self.versions_added += 1
        return vid

    def event(
        self,
        post_id: int,
        kind: str,
        version_id: int | None,
        prev: int | None,
        *,
        edit_date: str | None = None,
        how: str | None = None,
        evidence: str | None = None,
        parts: Sequence[str] = (),
    ) -> int:
        self.event_id += 1
        self.events.append(
            (self.event_id, post_id, kind, version_id, prev, self.now, self.source, edit_date,
             how, evidence, ",".join(parts) or None)
        )  # fmt: skip
        pr = self.pr
        assert pr is not None
        added = kind in (ev.NEW_VERSION, ev.LATE_VERSION)
        self.observed.append(
            Observation(
                self.now, post_id, pr.channel_id, pr.message_id, kind, self.source,
                event_id=self.event_id, version_id=version_id,
                version=(pr.text, pr.entities, pr.content_sha) if added else None,
                prev_version_id=prev, edit_date=edit_date, parts=",".join(parts) or None,
                how=how, evidence=evidence, capture=self.capture_of(pr),
            )
        )  # fmt: skip
        return self.event_id

    def capture_of(self, pr: Prepared) -> Raw | None:
        """The raw capture of a reading: the page it was read from, or the message object
        Telethon gave (stored as versions.raw)."""
        if self.capture is not None:
            return self.capture
        if self.source == "telethon" and pr.raw:
            return json_object(
                url=f"tg://channel/{pr.channel_id}/message/{pr.message_id}",
                fetched_at=self.now,
                raw_json=pr.raw,
            )
        return None

    def new_post(self, pr: Prepared) -> _Existing:
        self.post_id += 1
        pid = self.post_id
        self.seq += 1
        vid = version_key(pr.seconds, self.seq)
        sig = self.sig(pr)
        self.new_posts.append(
            (pid, pr.channel_id, pr.message_id, pr.date, self.now, self.source, vid,
             int(pr.edited), *pr.counts, self.now, *pr.post_fields)
        )  # fmt: skip
        self.new_versions.append(
            (vid, pid, pr.text, pr.entities, pr.edit_date, self.now, pr.sha, self.source, pr.raw,
             pr.words, sig, pr.content_sha)
        )  # fmt: skip
        self.first_words[pid] = (vid, pr.words)
        self.observed.append(
            Observation(
                self.now, pid, pr.channel_id, pr.message_id, "seen", self.source,
                version_id=vid, version=(pr.text, pr.entities, pr.content_sha),
                capture=self.capture_of(pr),
            )
        )  # fmt: skip
        self.added += 1
        self.versions_added += 1
        return _Existing(
            pid, vid, pr.sha, sig, pr.edit_date, ev.PRESENT, pr.date, pr.media_kind, pr.link,
            ev.Since(pr.edit_date, self.source, self.now),
        )  # fmt: skip

    def doc(self, pr: Prepared, old: _Existing, words: str, *, deleted: bool = False) -> Doc:
        return make_doc(
            Analysis.from_words_text(words), channel_id=pr.channel_id,
            username=self.names.get(pr.channel_id), date=old.date, edited=True, deleted=deleted,
            media_kind=old.media_kind, link=old.has_link, is_service=False,
        )  # fmt: skip

    async def words_of(self, post_id: int) -> list[tuple[int, str]]:
        """Every version of a post with its words: archived ones and this batch's."""
        have = await version_words(self.db, post_id)
        first = self.first_words.get(post_id)
        added = ([first] if first else []) + self.batch_words.get(post_id, [])
        seen = {v for v, _ in have}
        return have + [(v, w) for v, w in added if v not in seen]

    async def change_alerts(
        self, pr: Prepared, old: _Existing, kind: str, vid: int, prev: int, event_id: int
    ) -> None:
        """Alerts for an edit or a revert that made ``vid`` current (follow-ups included)."""
        if self.buf.matcher is None or pr.is_service:
            return
        versions = await self.words_of(old.post_id)
        now_words = next((w for v, w in versions if v == vid), pr.words)
        before = [self.doc(pr, old, w) for v, w in versions if v != vid]
        alerted = await self.buf.alerted(self.db, old.post_id)
        recipients = change_recipients(
            self.buf.matcher, kind, self.doc(pr, old, now_words), before, alerted
        )
        self.buf.add(old.post_id, vid, prev, kind, recipients, event_id)

    async def restore_alerts(self, post_id: int, vid: int, event_id: int) -> None:
        """A deleted post seen again: whoever was told of the deletion gets the correction."""
        if self.buf.matcher is None:
            return
        told = await self.buf.alerted(self.db, post_id, ("deleted",))
        self.buf.add(post_id, vid, None, "restored", told, event_id)

    async def observe(self, pr: Prepared, old: _Existing) -> None:
        """Decide what a reading of an archived post means, and gather its rows."""
        self.pr = pr
        self.counters.append((*pr.counts, self.now, old.post_id))
        sig = self.sig(pr)
        seen = ev.Seen(Signature.load(pr.sha, sig), self.source, pr.edit_date, pr.is_service)
        events = ev.observe(old.held(), seen)
        if old.versions is None and any(
            e.kind in (ev.NEW_VERSION, ev.LATE_VERSION) for e in events
        ):  # not the current content: is it an earlier version?
            old.versions = await _load_versions(self.db, old.post_id)
            if not any(v.id == old.current for v in old.versions):  # written by this batch
                old.versions.append(old.current_known())
            events = ev.observe(old.held(), seen)
        changed = False
        for e in events:
            changed = await self._apply(pr, old, e, seen.sig) or changed
        if not changed:
            self.updated += 1

    async def _apply(self, pr: Prepared, old: _Existing, e: ev.Event, seen: Signature) -> bool:
        """Gather the rows of one event; whether it changed the content or state."""
        if e.kind in (ev.RESTORED_EV, ev.PRESENT_EV):
            old.state = ev.state_after(old.state, e)
            self.states.append((old.state, self.now, old.post_id))
            eid = self.event(
                old.post_id, e.kind, old.current, None, how=self.source,
                evidence=f"the post was read again ({self.source})",
            )  # fmt: skip
            if e.kind == ev.RESTORED_EV:
                await self.restore_alerts(old.post_id, old.current, eid)
            return True
        if e.kind == ev.FILLED:
            merged = kept(seen, old.current_known().sig)
            self.filled.append((merged.dump(), merged.content_sha, old.current))
            old.sig = merged.dump()
            if old.versions is not None:
                old.versions = [
                    ev.Known(v.id, merged, v.edit_date) if v.id == old.current else v
                    for v in old.versions
                ]
            return False
        if e.kind == ev.REVERTED:
            assert e.version is not None and e.prev is not None
            self.current.append((e.version, 0, old.post_id))
            eid = self.event(old.post_id, ev.REVERTED, e.version, e.prev, edit_date=pr.edit_date)
            old.current = e.version
            target = old.held().version(e.version)
            old.sha, old.sig = target.sig.text, target.sig.dump()
            old.edit_date = pr.edit_date or target.edit_date
            old.since = ev.Since(pr.edit_date, self.source, self.now)
            await self.change_alerts(pr, old, "reverted", e.version, e.prev, eid)
            return True
        if e.kind in (ev.NEW_VERSION, ev.LATE_VERSION):
            vid = self.version_row(pr, old.post_id, seen.dump())
            known = ev.Known(vid, seen, pr.edit_date)
            assert old.versions is not None
            old.versions.append(known)
            if e.kind == ev.LATE_VERSION:  # an older text arriving late: history, not current
                self.current.append((old.current, 1, old.post_id))
                self.event(
                    old.post_id, ev.LATE_VERSION, vid, old.current, edit_date=pr.edit_date,
                    parts=e.parts,
                )  # fmt: skip
                return True
            prev = old.current
            self.current.append((vid, 1, old.post_id))
            eid = self.event(
                old.post_id, ev.NEW_VERSION, vid, prev, edit_date=pr.edit_date, parts=e.parts
            )
            old.current, old.sha, old.sig, old.edit_date = vid, pr.sha, seen.dump(), pr.edit_date
            old.since = ev.Since(pr.edit_date, self.source, self.now)
            await self.change_alerts(pr, old, "edited", vid, prev, eid)
            return True
        raise AssertionError(f"unexpected event {e.kind}")

    async def write(self) -> None:
        db = self.db
        if self.new_posts:
            await db.executemany(
                "INSERT INTO posts (id, channel_id, message_id, date, first_seen_at, source,"
                " current_version_id, edited, views, forwards, replies, reactions, reactions_json,"
                " counts_at, media_kind, media_json, has_link, fwd_from_id, fwd_from_title,"
                " fwd_from_message_id, reply_to, grouped_id, is_service, service_action)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                self.new_posts,
            )
        if self.new_versions:
            await db.executemany(
                "INSERT INTO versions (id, post_id, text, entities, edit_date, seen_at, sha256,"
                " source, raw, words, content_sig, content_sha) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                self.new_versions,
            )
            if dialect(db) == "sqlite":  # PostgreSQL indexes versions.words itself
                await db.executemany(  # the index, in the same transaction (schema migration 2)
                    "INSERT INTO versions_fts (rowid, words) VALUES (?, ?)",
                    [(v[0], v[9]) for v in self.new_versions if v[9]],
                )
            await db.execute(
                "INSERT INTO meta (key, value) VALUES ('version_seq', ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(self.seq),),
            )
        if self.counters:
            await db.executemany(
                "UPDATE posts SET views = coalesce(?, views), forwards = coalesce(?, forwards),"
                " replies = coalesce(?, replies), reactions = coalesce(?, reactions),"
                " reactions_json = coalesce(?, reactions_json), counts_at = ? WHERE id = ?",
                self.counters,
            )
        if self.current:
            await db.executemany(
                "UPDATE posts SET current_version_id = ?, version_count = version_count + ?,"
                " edited = 1 WHERE id = ?",
                self.current,
            )
        if self.filled:
            await db.executemany(
                "UPDATE versions SET content_sig = ?, content_sha = ? WHERE id = ?", self.filled
            )
        if self.states:
            await db.executemany(
                "UPDATE posts SET state = ?, state_at = ?, deleted_at = NULL, deleted_how = NULL,"
                " deleted_evidence = NULL WHERE id = ?",
                self.states,
            )
        if self.events:
            await db.executemany(
                "INSERT INTO post_events (id, post_id, kind, version_id, prev_version_id, at,"
                " source, edit_date, how, evidence, parts) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                self.events,
            )
        if self.observed:  # the log, in the same transaction (archiver.evidence.log)
            await log_append(db, self.observed)


async def ingest(
    archive: Archive,
    posts: Sequence[Post] | Sequence[Prepared],
    *,
    source: str,
    alerts: bool,
    capture: Raw | None = None,
) -> IngestStats:
    """Write a batch of posts in one transaction; see the module docstring. ``posts`` may be
    :class:`Post` objects or their :func:`prepare` computed ahead. ``capture``: the raw page
    the batch was read from (the web source), kept with the log's entries of the batch."""
    prepared = _prepared(posts)
    if not posts:
        return IngestStats()
    now = ts(utcnow())
    assert now is not None
    matcher = await archive.current_matcher() if alerts else None
    async with archive.transaction() as db:
        if archive.fence is not None:  # a worker still holding the channels' units
            await archive.fence(db, {p.channel_id for p in prepared})
        existing = await _fetch_existing(db, prepared)
        names = await usernames(db, {p.channel_id for p in prepared}) if matcher else {}
        buf = AlertBuffer(matcher, now)
        batch = _Batch(db, source, now, await _next_ids(db), buf, names, capture)
        for pr in prepared:
            key = (pr.channel_id, pr.message_id)
            old = existing.get(key)
            if old is None:
                existing[key] = batch.new_post(pr)
                if matcher and not pr.is_service:
                    doc = make_doc(
                        Analysis.from_words_text(pr.words), channel_id=pr.channel_id,
                        username=names.get(pr.channel_id),
                        date=pr.date, edited=pr.edited, deleted=False,
                        media_kind=pr.media_kind, link=pr.link, is_service=False,
                    )  # fmt: skip
                    hits = {r: set(n) for r, n in matcher.match(doc, "new").items()}
                    buf.add(batch.post_id, existing[key].current, None, "new", hits)
                continue
            await batch.observe(pr, old)
        await batch.write()
        queued = await buf.flush(db)
    if queued and archive.on_alerts is not None:
        archive.on_alerts()
    stats = IngestStats(
        posts_added=batch.added,
        versions_added=batch.versions_added,
        posts_updated=batch.updated,
        alerts_queued=queued,
        high_water=max(p.message_id for p in prepared),
    )
    log.debug("ingest %s: %s", source, stats)
    return stats


async def known_ids(archive: Archive, channel_id: int, min_id: int, max_id: int) -> dict[int, str]:
    """Message id -> text sha256 of the current version, for archived posts in range that are
    not confirmed deleted."""
    rows = await archive.fetchall(
        "SELECT p.message_id, v.sha256 FROM posts p JOIN versions v ON v.id = p.current_version_id"
        " WHERE p.channel_id = ? AND p.message_id BETWEEN ? AND ? AND p.state != 'deleted'",
        (channel_id, min_id, max_id),
    )
    return {r[0]: r[1] for r in rows}
