"""The observation log: every observation that changed the record, hash-chained
(docs/evidence.md; the chain's formulas are in :mod:`archiver.evidence.chain`).

Writers (:mod:`archiver.store.ingest`, :mod:`archiver.store.deletions`) call :func:`append`
inside the transaction that makes the change, so there is no change without its entry and no
entry without its change. Readers: :func:`entries_for_post`, :func:`links`,
:func:`root_covering`, :func:`get_capture`; :func:`verify` is ``telewatch log verify``;
:func:`make_root` closes a finished UTC day (:mod:`archiver.evidence.roots`).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

import aiosqlite
import orjson

from archiver.evidence import chain
from archiver.evidence.capture import Raw

if TYPE_CHECKING:
    from archiver.evidence.tsa import TsaClient
    from archiver.store.archive import Archive

log = logging.getLogger(__name__)

KINDS = ("seen", "edited", "late", "reverted", "missing", "deleted", "restored", "present")
_CHUNK = 500
_COLUMNS = (
    "seq, at, post_id, channel_id, message_id, kind, event_id, version_id, source, content,"
    " content_sha, capture_sha, prev_hash, entry_hash"
)


@dataclass(slots=True)
class Observation:
    """One observation to log. ``version``: (text, entities JSON, content_sha) of
    ``version_id`` when the caller has it at hand (else it is read from ``versions``)."""

    at: str
    post_id: int
    channel_id: int
    message_id: int
    kind: str
    source: str
    event_id: int | None = None
    version_id: int | None = None
    version: tuple[str, str | None, str | None] | None = None
    prev_version_id: int | None = None
    edit_date: str | None = None
    parts: str | None = None
    how: str | None = None
    evidence: str | None = None
    capture: Raw | None = None


@dataclass(frozen=True)
class Entry:
    seq: int
    at: str
    post_id: int
    channel_id: int
    message_id: int
    kind: str
    event_id: int | None
    version_id: int | None
    source: str
    content: str
    content_sha: str
    capture_sha: str | None
    prev_hash: str
    entry_hash: str

    def link(self) -> chain.Link:
        return chain.Link(
            self.seq,
            chain.post_key(self.channel_id, self.message_id),
            self.content_sha,
            self.capture_sha,
            self.prev_hash,
            self.entry_hash,
        )


@dataclass(frozen=True)
class Root:
    day: str
    seq: int
    root_hash: str
    tsa_url: str | None
    tsa_token: bytes | None
    made_at: str


@dataclass(frozen=True)
class Capture:
    sha256: str
    media_type: str
    size: int
    body: bytes  # uncompressed
    first_at: str


# --------------------------------------------------------------------------- writing


def content_of(
    obs: Observation,
    username: str | None,
    version: tuple[str, str | None, str | None] | None,
    *,
    reconstructed: bool = False,
) -> dict[str, Any]:
    """What an entry says it observed (its ``content``, before canonical JSON)."""
    out: dict[str, Any] = {
        "kind": obs.kind,
        "at": obs.at,
        "channel": {"id": obs.channel_id, "username": username},
        "message_id": obs.message_id,
        "source": obs.source,
    }
    if obs.version_id is not None and version is not None:
        text, entities, content_sha = version
        out["version"] = {
            "id": obs.version_id,
            "text": text,
            "entities": orjson.loads(entities) if entities else None,
            "content_sha": content_sha,
        }
    for key in ("prev_version_id", "edit_date", "parts", "how", "evidence"):
        value = getattr(obs, key)
        if value is not None:
            out[key] = value
    if obs.capture is not None:
        out["capture"] = obs.capture.ref()
    if reconstructed:
        out["reconstructed"] = True
    return out


async def _versions(
    db: aiosqlite.Connection, ids: set[int]
) -> dict[int, tuple[str, str | None, str | None]]:
    out: dict[int, tuple[str, str | None, str | None]] = {}
    uniq = sorted(ids)
    for i in range(0, len(uniq), _CHUNK):
        chunk = uniq[i : i + _CHUNK]
        marks = ",".join("?" * len(chunk))
        async with db.execute(
            f"SELECT id, text, entities, content_sha FROM versions WHERE id IN ({marks})", chunk
        ) as cur:
            async for r in cur:
                out[r[0]] = (r[1], r[2], r[3])
    return out


async def _usernames(db: aiosqlite.Connection, ids: set[int]) -> dict[int, str | None]:
    uniq = sorted(ids)
    marks = ",".join("?" * len(uniq))
    async with db.execute(f"SELECT id, username FROM channels WHERE id IN ({marks})", uniq) as cur:
        return {r[0]: r[1] async for r in cur}


async def last_link(db: aiosqlite.Connection) -> tuple[int, str]:
    """(seq, entry_hash) of the log's last entry; (0, GENESIS) for an empty log."""
    async with db.execute(
        "SELECT seq, entry_hash FROM observations ORDER BY seq DESC LIMIT 1"
    ) as cur:
        row = await cur.fetchone()
    return (int(row[0]), str(row[1])) if row else (0, chain.GENESIS)


async def store_captures(db: aiosqlite.Connection, raws: Sequence[Raw]) -> None:
    """Keep each capture once (content-addressed), zlib-compressed."""
    rows: dict[str, tuple[Any, ...]] = {}
    for raw in raws:
        sha = raw.sha256
        if sha not in rows:
            rows[sha] = (
                sha,
                raw.media_type,
                len(raw.data),
                zlib.compress(raw.data, 6),
                raw.fetched_at,
            )
    if rows:
        await db.executemany(
            "INSERT INTO captures (sha256, media_type, size, body, first_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            list(rows.values()),
        )


async def append(
    db: aiosqlite.Connection, observations: Sequence[Observation], *, reconstructed: bool = False
) -> int:
    """Append entries for ``observations`` (in order) to the log, inside the caller's
    transaction; returns the last seq."""
    seq, prev = await last_link(db)
    if not observations:
        return seq
    need = {o.version_id for o in observations if o.version_id is not None and o.version is None}
    versions = await _versions(db, need) if need else {}
    names = await _usernames(db, {o.channel_id for o in observations})
    await store_captures(db, [o.capture for o in observations if o.capture is not None])
    rows: list[tuple[Any, ...]] = []
    for o in observations:
        seq += 1
        version = o.version
        if version is None and o.version_id is not None:
            version = versions.get(o.version_id)
        text = chain.canonical(
            content_of(o, names.get(o.channel_id), version, reconstructed=reconstructed)
        )
        content_sha = chain.sha256_hex(text)
        capture_sha = o.capture.sha256 if o.capture is not None else None
        key = chain.post_key(o.channel_id, o.message_id)
        entry = chain.entry_hash(seq, key, content_sha, capture_sha, prev)
        rows.append(
            (seq, o.at, o.post_id, o.channel_id, o.message_id, o.kind, o.event_id, o.version_id,
             o.source, text.decode(), content_sha, capture_sha, prev, entry)
        )  # fmt: skip
        prev = entry
    await db.executemany(
        f"INSERT INTO observations ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows
    )
    return seq


# --------------------------------------------------------------------------- reading


def _entry(r: Any) -> Entry:
    return Entry(*tuple(r))


async def entries_for_post(archive: Archive, post_id: int) -> list[Entry]:
    rows = await archive.fetchall(
        f"SELECT {_COLUMNS} FROM observations WHERE post_id = ? ORDER BY seq", (post_id,)
    )
    return [_entry(r) for r in rows]


async def links(archive: Archive, first_seq: int, last_seq: int) -> list[chain.Link]:
    """The chain's links from ``first_seq`` to ``last_seq``, both included."""
    rows = await archive.fetchall(
        "SELECT seq, channel_id, message_id, content_sha, capture_sha, prev_hash, entry_hash"
        " FROM observations WHERE seq BETWEEN ? AND ? ORDER BY seq",
        (first_seq, last_seq),
    )
    return [chain.Link(r[0], chain.post_key(r[1], r[2]), r[3], r[4], r[5], r[6]) for r in rows]


def _root(r: Any) -> Root:
    token = r[4]
    return Root(r[0], r[1], r[2], r[3], bytes(token) if token is not None else None, r[5])


async def root_covering(archive: Archive, seq: int) -> Root | None:
    """The first daily root at or after entry ``seq`` (None until that day has its root)."""
    row = await archive.fetchone(
        "SELECT day, seq, root_hash, tsa_url, tsa_token, made_at FROM log_roots"
        " WHERE seq >= ? ORDER BY seq, day LIMIT 1",
        (seq,),
    )
    return _root(row) if row is not None else None


async def roots(archive: Archive) -> list[Root]:
    rows = await archive.fetchall(
        "SELECT day, seq, root_hash, tsa_url, tsa_token, made_at FROM log_roots ORDER BY day"
    )
    return [_root(r) for r in rows]


async def get_capture(archive: Archive, sha256: str) -> Capture | None:
    """A stored capture, uncompressed; None when it was never kept or was pruned."""
    row = await archive.fetchone(
        "SELECT sha256, media_type, size, body, first_at FROM captures WHERE sha256 = ?",
        (sha256,),
    )
    if row is None:
        return None
    return Capture(row[0], row[1], row[2], zlib.decompress(row[3]), row[4])


async def count(archive: Archive) -> int:
    row = await archive.fetchone("SELECT count(*) FROM observations")
    return int(row[0]) if row else 0


# --------------------------------------------------------------------------- verifying and roots


async def verify(archive: Archive) -> chain.Broken | None:
    """``telewatch log verify``: see :mod:`archiver.evidence.verify`."""
    from archiver.evidence.verify import verify_archive

    return await verify_archive(archive)


async def make_root(archive: Archive, day: date, *, tsa: TsaClient | None) -> Root | None:
    """The root of a finished UTC day: see :mod:`archiver.evidence.roots`."""
    from archiver.evidence.roots import make_day_root

    return await make_day_root(archive, day, tsa=tsa)
