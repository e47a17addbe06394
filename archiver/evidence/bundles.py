"""Evidence bundles: one zip anyone can check offline (``telewatch evidence``, docs/evidence.md).

A bundle holds, for the posts asked for:

- ``report.md`` and ``report.html``: each post, every version with its times and source, the
  word diff between versions, the deletion claim and how it was established, the channel's
  coverage around it (:mod:`archiver.evidence.report`, written from the log entries alone);
- ``log.jsonl``: one line per log entry, in order, from the first entry of these posts to the
  daily root that covers the last: the posts' own entries in full, the others as their chain
  links (the post each is about and its hashes, no content: a link of a bundled post would
  show it was withheld);
- ``roots.json``: the daily roots inside that range, with their RFC 3161 tokens (base64);
- ``captures.warc.gz``: the captures the entries name, as WARC records
  (:mod:`archiver.evidence.warc`);
- ``manifest.json``: the SHA-256 and size of every other file, and what the report is made
  from (the request, when and by what the bundle was made, each channel's coverage).

Nothing is held whole in memory but the posts' own entries (at most ``max_posts`` posts): the
links and the captures are streamed, each file is written to a temporary folder and then
into the zip, and the zip is renamed into place only once complete.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any, Protocol, cast

from archiver import __version__
from archiver.channels import parse_ref, post_link
from archiver.errors import TelewatchError
from archiver.evidence import chain
from archiver.evidence import log as evlog
from archiver.evidence.facts import BadContent, PostFacts, parse_content, post_facts, post_key
from archiver.evidence.report import (
    AROUND,
    REPORT_FORMAT,
    head_section,
    html_parts,
    markdown_parts,
    post_section,
    unlogged_section,
)
from archiver.evidence.warc import CaptureWriter
from archiver.query import Query
from archiver.store.archive import Archive, parse_ts, ts, utcnow

log = logging.getLogger(__name__)

FORMAT = "telewatch-evidence-bundle/1"
DEFAULT_MAX_POSTS = 500
LINKS_CHUNK = 5000
FILES = ("report.md", "report.html", "log.jsonl", "roots.json", "captures.warc.gz")
ENTRY_KEYS = (
    "seq", "at", "post_id", "channel_id", "message_id", "kind", "event_id", "version_id",
    "source", "content", "content_sha", "capture_sha", "prev_hash", "entry_hash",
)  # fmt: skip
LINK_KEYS = ("seq", "post_key", "content_sha", "capture_sha", "prev_hash", "entry_hash")


class BundleError(TelewatchError):
    """A bundle cannot be made as asked (a link, the query, the limit, the output file)."""

    exit_code = 2


# ---------------------------------------------------------------------------- what the log gives


class LogReader(Protocol):
    """What a bundle reads of the observation log (archiver.evidence.log's API)."""

    async def entries_for_post(self, post_id: int) -> Sequence[evlog.Entry]: ...
    async def links(self, first_seq: int, last_seq: int) -> Sequence[chain.Link]: ...
    async def root_covering(self, seq: int) -> evlog.Root | None: ...
    async def get_capture(self, sha256: str) -> evlog.Capture | None: ...


class ArchiveLog:
    """:class:`LogReader` over an archive's observation log."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive

    async def entries_for_post(self, post_id: int) -> Sequence[evlog.Entry]:
        return await evlog.entries_for_post(self.archive, post_id)

    async def links(self, first_seq: int, last_seq: int) -> Sequence[chain.Link]:
        return await evlog.links(self.archive, first_seq, last_seq)

    async def root_covering(self, seq: int) -> evlog.Root | None:
        return await evlog.root_covering(self.archive, seq)

    async def get_capture(self, sha256: str) -> evlog.Capture | None:
        return await evlog.get_capture(self.archive, sha256)


# ---------------------------------------------------------------------------- which posts


@dataclass(frozen=True, slots=True)
class Wanted:
    post_id: int
    channel_id: int
    username: str | None
    message_id: int

    @property
    def link(self) -> str:
        return post_link(self.channel_id, self.username, self.message_id)


_AT_POST = re.compile(r"^@?([A-Za-z][A-Za-z0-9_]{3,31})/(\d{1,10})/?$")


def parse_post_link(text: str) -> tuple[str | int, int]:
    """(channel username or marked id, message id) of ``t.me/channel/123``, ``@channel/123``
    or ``https://t.me/c/1811111111/123``."""
    m = _AT_POST.match(text.strip())
    if m:
        return m.group(1).lower(), int(m.group(2))
    ref = parse_ref(text)  # BadChannelRef: one line naming the text
    if ref.message_id is None:
        raise BundleError(f"'{text}' names a channel, not a post: use t.me/channel/123")
    channel = ref.username if ref.username is not None else ref.id
    assert channel is not None
    return channel, ref.message_id


async def posts_for_links(archive: Archive, links: Sequence[str]) -> list[Wanted]:
    from archiver.store.channels import require_channel

    out: dict[int, Wanted] = {}
    for text in links:
        channel, mid = parse_post_link(text)
        ch = await require_channel(archive, channel)
        row = await archive.fetchone(
            "SELECT id FROM posts WHERE channel_id = ? AND message_id = ?", (ch.id, mid)
        )
        if row is None:
            raise BundleError(f"{text}: no such post in the archive")
        out.setdefault(row[0], Wanted(row[0], ch.id, ch.username, mid))
    return list(out.values())


async def posts_for_query(archive: Archive, query: Query, *, cap: int) -> list[Wanted]:
    """The posts the query finds, newest first; more than ``cap`` is refused."""
    from archiver.store.search import iter_matches

    ids: list[int] = []
    # closed before the archive is, also when the limit stops it early
    matches = cast(AsyncGenerator[tuple[int, int], None], iter_matches(archive, query))
    async with aclosing(matches) as found:
        async for pid, _vid in found:
            ids.append(pid)
            if len(ids) > cap:
                break
    if len(ids) > cap:
        raise BundleError(
            f"the query finds more than {cap} posts, the limit of one bundle (--max-posts):"
            " narrow it (--since, --until, channel:) or make several bundles"
        )
    return await _wanted(archive, ids)


async def _wanted(archive: Archive, ids: Sequence[int]) -> list[Wanted]:
    found: dict[int, Wanted] = {}
    for i in range(0, len(ids), 500):
        chunk = list(ids[i : i + 500])
        marks = ",".join("?" * len(chunk))
        for r in await archive.fetchall(
            "SELECT p.id, p.channel_id, c.username, p.message_id FROM posts p"
            f" JOIN channels c ON c.id = p.channel_id WHERE p.id IN ({marks})",
            chunk,
        ):
            found[r[0]] = Wanted(r[0], r[1], r[2], r[3])
    return [found[i] for i in ids if i in found]


# ---------------------------------------------------------------------------- writing


@dataclass(frozen=True, slots=True)
class Summary:
    path: Path
    posts: int
    entries: int  # the posts' own entries
    links: int  # lines of log.jsonl
    captures: int
    root_day: str | None
    size: int


class _Hashing:
    """A binary file that hashes what is written to it."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f = f
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()


def canonical_json(obj: Any) -> bytes:
    """The one byte form of manifest.json, roots.json and each line of log.jsonl."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (
        json.dumps(manifest, sort_keys=True, ensure_ascii=False, indent=1).encode("utf-8") + b"\n"
    )


def entry_line(e: evlog.Entry) -> dict[str, Any]:
    return {k: getattr(e, k) for k in ENTRY_KEYS}


def link_line(link: chain.Link) -> dict[str, Any]:
    return {k: getattr(link, k) for k in LINK_KEYS}


def root_json(r: evlog.Root) -> dict[str, Any]:
    return {
        "day": r.day,
        "seq": r.seq,
        "root_hash": r.root_hash,
        "tsa_url": r.tsa_url,
        "tsa_token": base64.b64encode(r.tsa_token).decode() if r.tsa_token else None,
        "made_at": r.made_at,
    }


def _window_json(w: dict[str, Any], ranges: Sequence[tuple[datetime, datetime]]) -> bool:
    start = parse_ts(w["start"].replace("T", " ").removesuffix("Z"))
    end = parse_ts(w["end"].replace("T", " ").removesuffix("Z")) if w.get("end") else None
    assert start is not None
    return any(start <= hi and (end is None or end >= lo) for lo, hi in ranges)


CoverageOf = Callable[[int], Awaitable[dict[str, Any] | None]]


def archive_coverage(archive: Archive, tolerance: timedelta | None = None) -> CoverageOf:
    from archiver.store.coverage import WATCH_TOLERANCE, channel_coverage

    async def of(channel_id: int) -> dict[str, Any] | None:
        try:
            cov = await channel_coverage(
                archive, channel_id, tolerance=tolerance or WATCH_TOLERANCE
            )
        except KeyError:
            return None
        return cov.as_json()

    return of


async def make_bundle(
    reader: LogReader,
    wanted: Sequence[Wanted],
    output: Path,
    *,
    coverage_of: CoverageOf,
    request: dict[str, Any],
    archive_id: str | None = None,
    made_at: datetime | None = None,
) -> Summary:
    """Write the bundle of ``wanted`` to ``output`` (see the module docstring)."""
    made = ts(made_at or utcnow())
    per_post: list[tuple[Wanted, list[evlog.Entry]]] = []
    for w in wanted:
        per_post.append((w, list(await reader.entries_for_post(w.post_id))))
    full = {e.seq: e for _, entries in per_post for e in entries}
    first = min(full) if full else None
    last = max(full) if full else None
    roots: list[evlog.Root] = []
    covering: evlog.Root | None = None
    if first is not None and last is not None:
        covering = await reader.root_covering(last)
        end = covering.seq if covering is not None else last
        r = await reader.root_covering(first)
        while r is not None and r.seq <= end:
            roots.append(r)
            r = await reader.root_covering(r.seq + 1)
        last = end

    # facts of each post, from its entries' content (as the verifier will compute them)
    posts_json: list[dict[str, Any]] = []
    coverage: dict[str, Any] = {}
    spans: dict[int, list[tuple[datetime, datetime]]] = {}
    facts_of: list[PostFacts | None] = []
    for w, entries in per_post:
        posts_json.append(
            {"post_id": w.post_id, "channel_id": w.channel_id, "channel": w.username,
             "message_id": w.message_id, "link": w.link, "entries": len(entries)}
        )  # fmt: skip
        if not entries:
            facts_of.append(None)
            continue
        try:
            contents = [(e.seq, parse_content(e.content)) for e in entries]
            facts = post_facts(contents)
        except BadContent as exc:
            raise BundleError(f"{w.link}: a log entry cannot be read ({exc})") from None
        if post_key(contents[0][1]) != (w.channel_id, w.message_id):
            raise BundleError(f"{w.link}: its log entries name another post")
        facts_of.append(facts)
        lo = parse_ts(facts.first_at)
        hi = parse_ts(facts.last_at)
        assert lo is not None and hi is not None
        spans.setdefault(w.channel_id, []).append((lo - AROUND, hi + AROUND))
    for cid, ranges in spans.items():
        cov = await coverage_of(cid)
        if cov is None:
            continue
        coverage[str(cid)] = {
            "watched_since": cov.get("watched_since"),
            "last_check_at": cov.get("last_check_at"),
            "last_full_check_at": cov.get("last_full_check_at"),
            "unwatched": [w for w in cov.get("unwatched", []) if _window_json(w, ranges)],
        }
    meta: dict[str, Any] = {
        "format": FORMAT,
        "report_format": REPORT_FORMAT,
        "telewatch_version": __version__,
        "made_at": made,
        "archive_id": archive_id,
        "request": {k: request.get(k) for k in ("links", "query", "since", "until")},
        "posts": posts_json,
        "coverage": coverage,
        "log": {
            "first_seq": first,
            "last_seq": last,
            "root": {"day": covering.day, "seq": covering.seq, "tsa": bool(covering.tsa_token)}
            if covering is not None
            else None,
        },
        "roots": [{"day": r.day, "seq": r.seq, "tsa_url": r.tsa_url, "made_at": r.made_at}
                  for r in roots],
    }  # fmt: skip
    output = output.expanduser()
    if output.is_dir():
        raise BundleError(f"--output {output}: is a folder; give a file name ending in .zip")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        tmpdir = Path(tempfile.mkdtemp(prefix=".telewatch-bundle-", dir=output.parent))
    except OSError as exc:
        raise BundleError(
            f"--output {output}: cannot write there ({exc.strerror}); check the folder"
        ) from None
    try:
        files: dict[str, dict[str, Any]] = {}

        def put(name: str) -> _Hashing:
            return _Hashing((tmpdir / name).open("wb"))

        def done(name: str, h: _Hashing) -> None:
            h.f.close()
            files[name] = {"sha256": h.sha.hexdigest(), "size": h.size}

        lines = 0
        h = put("log.jsonl")
        if first is not None and last is not None:
            seq = first
            while seq <= last:
                upto = min(seq + LINKS_CHUNK - 1, last)
                for link in await reader.links(seq, upto):
                    e = full.get(link.seq)
                    h.write(canonical_json(entry_line(e) if e else link_line(link)) + b"\n")
                    lines += 1
                seq = upto + 1
        done("log.jsonl", h)

        h = put("roots.json")
        h.write(canonical_json([root_json(r) for r in roots]) + b"\n")
        done("roots.json", h)

        captures = 0
        h = put("captures.warc.gz")
        writer = CaptureWriter(h, software=f"telewatch {__version__}")
        written: set[str] = set()
        missing: list[str] = []
        for seq in sorted(full):
            e = full[seq]
            if e.capture_sha is None or e.capture_sha in written:
                continue
            written.add(e.capture_sha)
            cap = await reader.get_capture(e.capture_sha)
            ref = parse_content(e.content).get("capture") or {}
            if cap is None:
                log.warning("bundle: capture of entry %d is no longer stored", seq)
                missing.append(e.capture_sha)
                continue
            writer.add(
                sha256=e.capture_sha,
                media_type=cap.media_type,
                body=cap.body,
                uri=str(ref.get("url") or post_link(e.channel_id, None, e.message_id)),
                fetched_at=str(ref.get("fetched_at") or e.at),
            )
            captures += 1
        done("captures.warc.gz", h)

        # the report last: it says which captures the archive no longer keeps
        meta["captures_missing"] = missing
        sections = [head_section(meta)]
        for i, ((w, _), pf) in enumerate(zip(per_post, facts_of, strict=True)):
            if pf is None:
                sections.append(unlogged_section(posts_json[i]))
            else:
                cov = coverage.get(str(w.channel_id))
                sections.append(post_section(pf, cov, frozenset(missing), made))
        h = put("report.md")
        for _, text in markdown_parts(sections):
            h.write(text.encode("utf-8"))
        done("report.md", h)
        h = put("report.html")
        for _, text in html_parts(sections):
            h.write(text.encode("utf-8"))
        done("report.html", h)

        manifest = {**meta, "files": files}
        (tmpdir / "manifest.json").write_bytes(manifest_bytes(manifest))
        part = tmpdir / "bundle.zip"
        with zipfile.ZipFile(part, "w") as zf:
            for name in FILES:
                method = zipfile.ZIP_STORED if name.endswith(".gz") else zipfile.ZIP_DEFLATED
                zf.write(tmpdir / name, name, compress_type=method)
            zf.write(tmpdir / "manifest.json", "manifest.json", compress_type=zipfile.ZIP_DEFLATED)
        os.replace(part, output)
        size = output.stat().st_size
    except OSError as exc:
        raise BundleError(
            f"--output {output}: cannot write the bundle ({exc.strerror}); check the folder and"
            " the free space"
        ) from None
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    log.info(
        "bundle: %d post(s), %d entries, %d log lines, %d capture(s)",
        len(wanted), len(full), lines, captures,
    )  # fmt: skip
    return Summary(
        output, len(wanted), len(full), lines, captures, covering.day if covering else None, size
    )


async def bundle_from_archive(
    archive: Archive,
    output: Path,
    *,
    links: Sequence[str] = (),
    query: Query | None = None,
    request: dict[str, Any],
    max_posts: int = DEFAULT_MAX_POSTS,
    tolerance: timedelta | None = None,
) -> Summary:
    """The bundle of the posts ``links`` name, or that ``query`` finds (at most
    ``max_posts``), from the archive's observation log."""
    if query is not None:
        wanted = await posts_for_query(archive, query, cap=max_posts)
    else:
        if len(links) > max_posts:
            raise BundleError(
                f"{len(links)} posts asked for, more than the limit of one bundle ({max_posts})"
            )
        wanted = await posts_for_links(archive, links)
    if not wanted:
        raise BundleError("no post found: no bundle written")
    return await make_bundle(
        ArchiveLog(archive),
        wanted,
        output,
        coverage_of=archive_coverage(archive, tolerance),
        request=request,
        archive_id=await archive.get_meta("archive_id"),
    )
