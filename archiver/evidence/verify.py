"""``telewatch log verify``: the whole log checked against itself and against the archive.

In seq order, for each entry: the seqs run 1, 2, 3 ... without a gap; ``content_sha`` is the
SHA-256 of ``content``; the columns say what ``content`` says (kind, time, post, version);
the version the entry names still has the text and entities the entry logged; its capture,
when still kept, has the bytes of its ``capture_sha``; ``prev_hash`` and ``entry_hash`` hold
(:func:`archiver.evidence.chain.verify_links`; the hash commits to the entry's channel_id
and message_id columns too, so neither can be changed without breaking it). Then each daily
root: its hash is the entry_hash of its last entry, and its RFC 3161 token, if any, stamps
that hash. The first thing that does not hold is reported as a
:class:`~archiver.evidence.chain.Broken`.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from archiver.errors import TelewatchError
from archiver.evidence import chain
from archiver.evidence.log import roots
from archiver.evidence.retention import PRUNED_BEFORE

if TYPE_CHECKING:
    from archiver.store.archive import Archive

_FETCH = 2000


class LogBroken(TelewatchError):
    """``telewatch log verify`` found a broken link (the message names the first)."""

    def __init__(self, broken: chain.Broken) -> None:
        super().__init__(
            f"the observation log is broken at entry {broken.seq}: {broken.reason}"
            " (docs/evidence.md, Verifying)"
        )
        self.broken = broken


@dataclass(frozen=True)
class Summary:
    """An intact log: how many entries, the last root's day, captures pruned since."""

    entries: int
    last_root: str | None
    captures_pruned: int


async def _versions(archive: Archive, ids: set[int]) -> dict[int, tuple[str, Any]]:
    """The text and entities of these versions (one query per 500)."""
    out: dict[int, tuple[str, Any]] = {}
    uniq = sorted(ids)
    for i in range(0, len(uniq), 500):
        chunk = uniq[i : i + 500]
        marks = ",".join("?" * len(chunk))
        for r in await archive.fetchall(
            f"SELECT id, text, entities FROM versions WHERE id IN ({marks})", chunk
        ):
            out[r[0]] = (r[1], json.loads(r[2]) if r[2] else None)
    return out


def _version_id(content_text: str) -> int | None:
    try:
        version = json.loads(content_text).get("version")
    except (ValueError, AttributeError):
        return None
    vid = version.get("id") if isinstance(version, dict) else None
    return vid if isinstance(vid, int) else None


def _columns(r: Any, content: dict[str, Any]) -> str | None:
    """What of an entry's columns differs from its content (the columns are an index)."""
    version = content.get("version")
    checks = (
        ("kind", r[5], content.get("kind")),
        ("at", r[1], content.get("at")),
        ("message_id", r[4], content.get("message_id")),
        ("channel_id", r[3], (content.get("channel") or {}).get("id")),
        ("source", r[8], content.get("source")),
        ("version_id", r[7], version.get("id") if isinstance(version, dict) else r[7]),
    )
    for name, column, said in checks:
        if column != said:
            return f"its {name} column ({column}) is not what its content says ({said})"
    return None


class _Verifier:
    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.captures: dict[str, str | None] = {}  # sha -> None (good or pruned) / a problem
        self.pruned = 0
        self.absent: set[str] = set()  # captures not in the archive
        self.pruned_before: str | bool | None = False  # meta, read when first needed
        self.versions: dict[int, tuple[str, Any]] = {}  # of the chunk being checked

    async def capture(self, sha: str, at: str) -> str | None:
        if sha in self.captures:
            return self._missing_too_new(sha, at) or self.captures[sha]
        row = await self.archive.fetchone("SELECT body FROM captures WHERE sha256 = ?", (sha,))
        problem = None
        if row is None:
            self.absent.add(sha)
            self.pruned += 1  # pruned by retention: the entry still verifies (docs/evidence.md)
            if self.pruned_before is False:
                self.pruned_before = await self.archive.get_meta(PRUNED_BEFORE)
            if too_new := self._missing_too_new(sha, at):
                return too_new
        else:
            try:
                data = zlib.decompress(row[0])
            except zlib.error:
                problem = f"capture {sha[:12]}… does not decompress"
            else:
                if hashlib.sha256(data).hexdigest() != sha:
                    problem = f"capture {sha[:12]}…'s bytes do not match its hash"
        self.captures[sha] = problem
        return problem

    def _missing_too_new(self, sha: str, at: str) -> str | None:
        """Retention prunes only captures that every entry naming them predates: one missing
        for an entry at or after the last cutoff (or with no pruning ever) was deleted."""
        if sha not in self.absent:
            return None
        cutoff = self.pruned_before
        if isinstance(cutoff, str) and at < cutoff:
            return None
        why = f"the entry is not older than its last cutoff, {cutoff}" if cutoff else "it never ran"
        return f"capture {sha[:12]}… is missing, and retention cannot have removed it ({why})"

    async def entry(self, r: Any) -> str | None:
        """What is wrong with one entry apart from its links, if anything."""
        content_text: str = r[9]
        if chain.sha256_hex(content_text.encode()) != r[10]:
            return "content_sha does not match its content"
        try:
            content = json.loads(content_text)
        except ValueError:
            return "its content is not JSON"
        if not isinstance(content, dict):
            return "its content is not a JSON object"
        wrong = _columns(r, content)
        if wrong:
            return wrong
        version = content.get("version")
        if isinstance(version, dict):
            vid = version.get("id")
            held = self.versions.get(vid) if isinstance(vid, int) else None
            if held is None:
                return f"version {vid} it logged is no longer in the archive"
            if held[0] != version.get("text"):
                return f"version {vid}'s text differs from what was logged"
            if held[1] != version.get("entities"):
                return f"version {vid}'s entities differ from what was logged"
        capture = content.get("capture")
        if (capture or {}).get("sha256") != r[11]:
            return "its capture_sha is not the capture its content names"
        if r[11] is not None:
            return await self.capture(r[11], str(r[1]))
        return None


_STATES = "('missing', 'deleted', 'restored', 'present')"


async def _record(archive: Archive) -> chain.Broken | None:
    """The record against its log: each entry's post is the channel and message its content
    names; each ``post_events`` row is named by exactly one entry saying the same (kind,
    version, time, how, evidence), and each entry's event exists; each version has the entry
    that added it; each post has its ``seen`` entry; each post's state is what its last
    state entry made it (``present`` without one). The log covers these; a row changed, added
    or removed beside it is found here."""
    pg = getattr(archive, "dialect", "sqlite") == "postgresql"
    differs = "IS DISTINCT FROM" if pg else "IS NOT"  # (NULL-safe !=)

    def said(key: str) -> str:
        return f"(o.content::jsonb ->> '{key}')" if pg else f"json_extract(o.content, '$.{key}')"

    row = await archive.fetchone(
        "SELECT o.seq, o.post_id FROM observations o LEFT JOIN posts p ON p.id = o.post_id"
        " WHERE p.id IS NULL OR p.channel_id != o.channel_id OR p.message_id != o.message_id"
        " ORDER BY o.seq LIMIT 1"
    )
    if row is not None:
        return chain.Broken(
            row[0], f"its post_id column ({row[1]}) is not the post of its channel and message"
        )
    row = await archive.fetchone(
        "SELECT o.seq, o.event_id FROM observations o LEFT JOIN post_events e"
        " ON e.id = o.event_id WHERE o.event_id IS NOT NULL AND (e.id IS NULL"
        f" OR e.post_id != o.post_id OR e.kind != o.kind OR e.version_id {differs} o.version_id"
        f" OR e.at != o.at OR e.how {differs} {said('how')}"
        f" OR e.evidence {differs} {said('evidence')})"
        " ORDER BY o.seq LIMIT 1"
    )
    if row is not None:
        return chain.Broken(
            row[0], f"post_events row {row[1]} is missing or differs from what was logged"
        )
    row = await archive.fetchone(
        "SELECT min(o.seq), o.event_id FROM observations o WHERE o.event_id IS NOT NULL"
        " GROUP BY o.event_id HAVING count(*) > 1 ORDER BY 1 LIMIT 1"
    )
    if row is not None:
        return chain.Broken(row[0], f"post_events row {row[1]} is named by more than one entry")
    row = await archive.fetchone(  # (EXCEPT sorts once: observations.event_id has no index)
        "SELECT e.id, e.post_id, e.kind FROM post_events e WHERE e.id = (SELECT min(id) FROM"
        " (SELECT id FROM post_events EXCEPT SELECT event_id FROM observations"
        " WHERE event_id IS NOT NULL))"
    )
    if row is not None:
        return chain.Broken(
            0, f"post_events row {row[0]} ({row[2]}, post {row[1]}) has no entry in the log"
        )
    row = await archive.fetchone(
        "SELECT v.id, v.post_id FROM versions v WHERE v.id = (SELECT min(id) FROM (SELECT id"
        " FROM versions EXCEPT SELECT version_id FROM observations WHERE kind IN"
        " ('seen', 'edited', 'late') AND version_id IS NOT NULL))"
    )
    if row is not None:
        return chain.Broken(
            0, f"version {row[0]} (post {row[1]}) has no entry in the log that added it"
        )
    row = await archive.fetchone(
        "SELECT p.id, p.channel_id, p.message_id FROM posts p WHERE NOT EXISTS"
        " (SELECT 1 FROM observations o WHERE o.post_id = p.id AND o.kind = 'seen')"
        " ORDER BY p.id LIMIT 1"
    )
    if row is not None:
        return chain.Broken(
            0, f"post {row[0]} (channel {row[1]}, message {row[2]}) has no 'seen' entry"
        )
    row = await archive.fetchone(
        "SELECT * FROM (SELECT p.id, p.state, (SELECT o.kind FROM observations o"
        f" WHERE o.post_id = p.id AND o.kind IN {_STATES} ORDER BY o.seq DESC LIMIT 1) AS logged,"
        f" (SELECT max(o.seq) FROM observations o WHERE o.post_id = p.id) AS last FROM posts p)"
        f" AS s WHERE state {differs} coalesce(logged, 'present') ORDER BY id LIMIT 1"
    )
    if row is not None:
        return chain.Broken(
            int(row[3] or 0),
            f"post {row[0]}'s state is {row[1]!r}, its log says {row[2] or 'present'!r}",
        )
    return None


async def verify_archive(archive: Archive) -> chain.Broken | None:
    return (await check(archive))[0]


async def check(archive: Archive) -> tuple[chain.Broken | None, Summary]:
    """The first broken link (or None) and what was checked."""
    v = _Verifier(archive)
    prev = chain.GENESIS
    expected = 1
    count = 0
    hashes: dict[int, str] = {}
    wanted = {r.seq for r in await roots(archive)}
    async with archive.db.execute(
        "SELECT seq, at, post_id, channel_id, message_id, kind, event_id, version_id, source,"
        " content, content_sha, capture_sha, prev_hash, entry_hash FROM observations"
        " ORDER BY seq"
    ) as cur:
        while rows := await cur.fetchmany(_FETCH):
            wanted_versions = {i for r in rows if (i := _version_id(r[9])) is not None}
            v.versions = await _versions(archive, wanted_versions)
            for r in rows:
                seq = int(r[0])
                if seq != expected:
                    why = f"expected seq {expected}" + (
                        f" after {expected - 1}" if expected > 1 else " first"
                    )
                    return chain.Broken(seq, why), Summary(count, None, v.pruned)
                problem = await v.entry(r)
                if problem is not None:
                    return chain.Broken(seq, problem), Summary(count, None, v.pruned)
                link = chain.Link(seq, chain.post_key(r[3], r[4]), r[10], r[11], r[12], r[13])
                broken = chain.verify_links([link], start_prev=prev)
                if broken is not None:
                    return broken, Summary(count, None, v.pruned)
                prev = link.entry_hash
                expected = seq + 1
                count += 1
                if seq in wanted:
                    hashes[seq] = link.entry_hash
    broken = await _record(archive)
    if broken is not None:
        return broken, Summary(count, None, v.pruned)
    last_root = None
    for root in await roots(archive):
        if root.seq not in hashes:
            return chain.Broken(
                root.seq, f"the root of {root.day} names an entry that is not in the log"
            ), Summary(count, last_root, v.pruned)
        if root.root_hash != hashes[root.seq]:
            return chain.Broken(
                root.seq, f"the root of {root.day} is not this entry's entry_hash"
            ), Summary(count, last_root, v.pruned)
        if root.tsa_token is not None:
            from archiver.evidence.stamps import TokenProblem
            from archiver.evidence.stamps import check_token as check_signed
            from archiver.evidence.tsa import TsaError, check_token

            try:
                check_token(root.tsa_token, root.root_hash)
                # its CMS signature, against the certificate it carries: a changed byte of the
                # time or of the signature (who signed it is for `openssl ts -verify` to say)
                check_signed(root.tsa_token, root.root_hash)
            except (TsaError, TokenProblem) as exc:
                return chain.Broken(
                    root.seq, f"the timestamp of {root.day}'s root: {exc}"
                ), Summary(count, last_root, v.pruned)
        last_root = root.day
    return None, Summary(count, last_root, v.pruned)
