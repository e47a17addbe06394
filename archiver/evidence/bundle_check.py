"""``telewatch evidence verify FILE.zip``: check a bundle offline, without the archive.

Every problem is one line naming the file and the entry, record or line. What is checked:

1. ``manifest.json`` is in its one canonical form, and every other file has the SHA-256 and
   size it gives (no file missing, none added);
2. ``log.jsonl``: each line is canonical; the entries' seqs follow one another; each
   ``prev_hash`` is the entry_hash before it; each ``entry_hash`` is recomputed
   (:mod:`archiver.evidence.chain`, over the post it is about too); each full entry's content
   hashes to its ``content_sha`` and agrees with the columns beside it; no entry of a bundled
   post is there as a bare link (withheld);
3. ``roots.json``: each root's hash is the entry_hash of its entry; the last entry is the
   covering root's; each RFC 3161 token covers its root's hash, and its signature holds
   (:mod:`archiver.evidence.stamps`);
4. ``captures.warc.gz``: each record's bytes hash to what the entries' ``capture_sha`` say,
   for the URL they name; each capture an entry names is there;
5. ``report.md`` and ``report.html`` are exactly what the entries' content and the manifest
   say (:mod:`archiver.evidence.report`, written again and compared).

The manifest's hashes are not signed: whoever changes a file can change them too. What a
forger cannot redo is checks 2-5: the entries chain to a root whose hash the authority
signed, and the report and captures are bound to the entries.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import struct
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from archiver.channels import post_link
from archiver.evidence import chain
from archiver.evidence.bundles import (
    ENTRY_KEYS,
    FILES,
    FORMAT,
    LINK_KEYS,
    canonical_json,
    manifest_bytes,
)
from archiver.evidence.facts import BadContent, PostFacts, parse_content, post_facts, post_key
from archiver.evidence.report import (
    REPORT_FORMAT,
    Section,
    head_section,
    html_parts,
    markdown_parts,
    post_section,
    unlogged_section,
)
from archiver.evidence.stamps import Stamp, TokenProblem, check_token
from archiver.evidence.warc import WarcError, read_captures, warc_date

ROOT_KEYS = {"day", "seq", "root_hash", "tsa_url", "tsa_token", "made_at"}
# the fields of manifest.json, as bundles.make_bundle writes them: any other is a change
MANIFEST_KEYS = {
    "": {"format", "report_format", "telewatch_version", "made_at", "archive_id", "request",
         "posts", "coverage", "log", "roots", "captures_missing", "files"},
    "posts[]": {"post_id", "channel_id", "channel", "message_id", "link", "entries"},
    "coverage{}": {"watched_since", "last_check_at", "last_full_check_at", "unwatched"},
    "log": {"first_seq", "last_seq", "root"},
    "roots[]": {"day", "seq", "tsa_url", "made_at"},
    "files{}": {"sha256", "size"},
    "request": {"links", "query", "since", "until"},
    "log.root": {"day", "seq", "tsa"},
    "unwatched[]": {"start", "end", "faults"},
    "faults[]": {"status", "reason", "count"},
}  # fmt: skip
MAX_PROBLEMS = 50  # past this many, the rest are counted, not listed
# The most a file read whole (manifest.json, roots.json, the reports), or one line of
# log.jsonl, may inflate to: a bundle is untrusted input, and a few kilobytes of deflate can
# declare and inflate to gigabytes. A bundle of --max-posts posts is far below it.
MAX_MEMBER = 256 << 20


# What zipfile raises for a member it cannot read: a broken deflate stream, a bad CRC, a
# method or version it does not know, the 'encrypted' flag (RuntimeError), a cut-short file
_UNREADABLE = (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, OSError, EOFError)


class _TooBig(Exception):
    """A member, or a line of log.jsonl, larger than :data:`MAX_MEMBER`."""


def _read(zf: zipfile.ZipFile, name: str) -> bytes:
    """A member read whole, refused past :data:`MAX_MEMBER` before reading (KeyError when
    there is none). The size checked is the one declared, which zipfile reads no further
    than."""
    if zf.getinfo(name).file_size > MAX_MEMBER:
        raise _TooBig(f"{name}: larger than {MAX_MEMBER} bytes: not a bundle telewatch wrote")
    return zf.read(name)


@dataclass
class Verdict:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    summary: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        if self.ok:
            return [f"bundle verified: {self.summary}", *self.notes]
        shown = self.problems[:MAX_PROBLEMS]
        more = len(self.problems) - len(shown)
        return shown + ([f"... and {more} more problem(s)"] if more > 0 else [])


@dataclass
class _Entry:
    line: int
    seq: int
    content: dict[str, Any]
    capture_sha: str | None
    post_id: Any = None


@dataclass
class _Log:
    first: int | None = None
    last: int | None = None
    lines: int = 0
    hashes: dict[int, str] = field(default_factory=dict)  # entry_hash at the roots' seqs
    entries: list[_Entry] = field(default_factory=list)
    bare: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # post_key -> (line, seq)


def _read_json(zf: zipfile.ZipFile, name: str, v: Verdict) -> Any:
    try:
        data = _read(zf, name)
    except KeyError:
        v.problems.append(f"{name}: missing from the bundle")
        return None
    except _TooBig as exc:
        v.problems.append(str(exc))
        return None
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:  # (nested deeper than Python's stack)
        v.problems.append(f"{name}: not valid JSON ({exc})")
        return None


_LOCAL = struct.Struct("<4s5H3L2H")  # a local file header (APPNOTE 4.3.7)


def _check_layout(zf: zipfile.ZipFile, path: Path, v: Verdict) -> None:
    """The members back to back from the first byte to the central directory, each local
    header saying what the directory says: zipfile reads the directory only, tools that
    stream a zip read the local headers, and they must see the same files."""
    infos = sorted(zf.infolist(), key=lambda i: i.header_offset)
    end = 0
    with path.open("rb") as f:
        for info in infos:
            if info.header_offset != end:
                where = "before its first member" if end == 0 else f"before {info.filename}"
                v.problems.append(
                    f"{path.name}: {info.header_offset - end} byte(s) no member accounts for"
                    f" {where} (a file only some unzip tools show)"
                )
                return
            f.seek(info.header_offset)
            head = f.read(_LOCAL.size)
            if len(head) < _LOCAL.size:
                v.problems.append(f"{info.filename}: its local header is cut short")
                return
            sig, _ver, flags, method, _t, _d, crc, csize, usize, nlen, xlen = _LOCAL.unpack(head)
            name = f.read(nlen)
            said = info.orig_filename.encode("utf-8" if flags & 0x800 else "cp437")
            sizes = (crc, csize, usize) == (info.CRC, info.compress_size, info.file_size)
            if flags & 0x08 or 0xFFFFFFFF in (csize, usize):
                sizes = True  # in a data descriptor or zip64 field: zipfile checks the CRC
            if sig != b"PK\x03\x04" or name != said or method != info.compress_type or not sizes:
                v.problems.append(
                    f"{info.filename}: its local header does not say what the zip's directory"
                    " says (name, method, CRC or size)"
                )
                return
            end = info.header_offset + _LOCAL.size + nlen + xlen + info.compress_size
            if flags & 0x08:  # a data descriptor after the data, with or without its signature
                f.seek(end)
                end += 16 if f.read(4) == b"PK\x07\x08" else 12
    start_dir = getattr(zf, "start_dir", end)
    if start_dir != end:
        v.problems.append(
            f"{path.name}: {start_dir - end} byte(s) no member accounts for before the zip's"
            " directory (a file only some unzip tools show)"
        )


def _hash_member(zf: zipfile.ZipFile, name: str) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with zf.open(name) as f:
        while chunk := f.read(1 << 16):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _check_manifest_fields(manifest: dict[str, Any], v: Verdict) -> None:
    def same(where: str, obj: Any) -> None:
        if not isinstance(obj, dict) or set(obj) != MANIFEST_KEYS[where]:
            v.problems.append(f"manifest.json: {where or 'the top'} has other fields (edited)")

    same("", manifest)
    same("log", manifest.get("log"))
    same("request", manifest.get("request"))
    if (manifest.get("log") or {}).get("root") is not None:
        same("log.root", manifest["log"]["root"])
    for cov in (manifest.get("coverage") or {}).values():
        for w in (cov.get("unwatched") or []) if isinstance(cov, dict) else []:
            same("unwatched[]", w)
            for f in (w.get("faults") or []) if isinstance(w, dict) else []:
                same("faults[]", f)
    for key, each in (("posts", "posts[]"), ("roots", "roots[]")):
        for item in manifest.get(key) or []:
            same(each, item)
    for key, each in (("coverage", "coverage{}"), ("files", "files{}")):
        for item in (manifest.get(key) or {}).values():
            same(each, item)


def _check_files(zf: zipfile.ZipFile, manifest: dict[str, Any], v: Verdict) -> None:
    listed = manifest.get("files")
    if not isinstance(listed, dict):
        v.problems.append("manifest.json: no 'files' with the hashes of the bundle's files")
        return
    names = set(zf.namelist())
    for name in sorted(names - set(listed) - {"manifest.json"}):
        v.problems.append(f"{name}: not listed in manifest.json (a file added to the bundle)")
    for name in FILES:
        if name not in listed:
            v.problems.append(f"manifest.json: does not list {name}")
    for name, want in sorted(listed.items()):
        if name not in names:
            v.problems.append(f"{name}: listed in manifest.json but missing from the bundle")
            continue
        try:
            sha, size = _hash_member(zf, name)
        except _UNREADABLE as exc:
            v.problems.append(f"{name}: cannot be read from the zip ({exc})")
            continue
        if not isinstance(want, dict) or sha != want.get("sha256") or size != want.get("size"):
            v.problems.append(
                f"{name}: its SHA-256 or size is not the one manifest.json gives (changed)"
            )


def _lines(f: IO[bytes], v: Verdict) -> Iterator[tuple[int, bytes]]:
    """The lines of log.jsonl, none read past :data:`MAX_MEMBER` (a problem ends them)."""
    n = 0
    while line := f.readline(MAX_MEMBER + 1):
        n += 1
        if len(line) > MAX_MEMBER:
            v.problems.append(
                f"log.jsonl line {n}: longer than {MAX_MEMBER} bytes: not a bundle telewatch"
                " wrote (the rest of the log was not read)"
            )
            return
        yield n, line


def _check_log(zf: zipfile.ZipFile, root_seqs: set[int], v: Verdict) -> _Log:
    out = _Log()
    if "log.jsonl" not in zf.namelist():
        v.problems.append("log.jsonl: missing from the bundle")
        return out
    prev: str | None = None
    expected: int | None = None
    with zf.open("log.jsonl") as f:
        for n, raw in _lines(f, v):
            where = f"log.jsonl line {n}"
            out.lines = n
            try:
                obj = json.loads(raw)
            except (ValueError, RecursionError):
                v.problems.append(f"{where}: not valid JSON")
                prev, expected = None, None
                continue
            if not isinstance(obj, dict) or not isinstance(obj.get("seq"), int):
                v.problems.append(f"{where}: not a log entry (no seq)")
                prev, expected = None, None
                continue
            seq = obj["seq"]
            where = f"log.jsonl line {n} (entry {seq})"
            full = "content" in obj
            keys = ENTRY_KEYS if full else LINK_KEYS
            if set(obj) != set(keys):
                v.problems.append(f"{where}: has other fields than a log entry's")
                prev, expected = None, seq + 1
                continue
            if canonical_json(obj) + b"\n" != raw:
                v.problems.append(f"{where}: not in canonical form (the line was edited)")
            if expected is not None and seq != expected:
                v.problems.append(
                    f"{where}: entry {expected} should come here (an entry dropped, added or moved)"
                )
            elif prev is not None and obj["prev_hash"] != prev:
                v.problems.append(
                    f"{where}: its prev_hash is not the entry_hash of the entry before it"
                    " (entries changed or reordered)"
                )
            if full:
                key = chain.post_key(obj["channel_id"], obj["message_id"])
            else:
                key = str(obj["post_key"])
                out.bare.setdefault(key, []).append((n, seq))
            recomputed = chain.entry_hash(
                seq, key, str(obj["content_sha"]), obj["capture_sha"], str(obj["prev_hash"])
            )
            if obj["entry_hash"] != recomputed:
                v.problems.append(f"{where}: its entry_hash is not the hash of its fields")
            if full:
                _check_entry(obj, n, where, out, v)
            if out.first is None:
                out.first = seq
            out.last = seq
            if seq in root_seqs:
                out.hashes[seq] = str(obj["entry_hash"])
            prev, expected = str(obj["entry_hash"]), seq + 1
    return out


_COLUMNS_FROM_CONTENT = ("at", "kind", "source", "message_id")


def _check_entry(obj: dict[str, Any], n: int, where: str, out: _Log, v: Verdict) -> None:
    text = obj["content"]
    if not isinstance(text, str):
        v.problems.append(f"{where}: its content is not text")
        return
    if chain.sha256_hex(text.encode()) != obj["content_sha"]:
        v.problems.append(f"{where}: its content does not hash to its content_sha (changed)")
    try:
        content = parse_content(text)
        cid, _mid = post_key(content)
    except BadContent as exc:
        v.problems.append(f"{where}: {exc}")
        return
    wrong = [k for k in _COLUMNS_FROM_CONTENT if obj[k] != content.get(k)]
    if obj["channel_id"] != cid:
        wrong.append("channel_id")
    version = content.get("version")
    vid = version.get("id") if isinstance(version, dict) else None
    if obj["version_id"] != vid and vid is not None:
        wrong.append("version_id")
    capture = content.get("capture")
    named = capture.get("sha256") if isinstance(capture, dict) else None
    if obj["capture_sha"] != named:
        wrong.append("capture_sha")
    if wrong:
        v.problems.append(f"{where}: {', '.join(wrong)} disagree(s) with its content")
    out.entries.append(_Entry(n, int(obj["seq"]), content, obj["capture_sha"], obj["post_id"]))


def _check_withheld(manifest: dict[str, Any], log: _Log, v: Verdict) -> None:
    """A bare link's hash commits to the post it is about: one of a bundled post is an entry
    of that post its maker left out."""
    posts = manifest.get("posts")
    for p in posts if isinstance(posts, list) else []:
        if not isinstance(p, dict) or "channel_id" not in p or "message_id" not in p:
            continue  # (a manifest with other fields is a problem of its own)
        key = chain.post_key(p["channel_id"], p["message_id"])
        for n, seq in log.bare.get(key, []):
            v.problems.append(
                f"log.jsonl line {n}: entry {seq} of post {p.get('link')} is withheld: only its"
                " link is in the bundle"
            )


def _check_roots(
    roots: Any, manifest: dict[str, Any], log: _Log, trusted: Sequence[bytes], v: Verdict
) -> list[tuple[dict[str, Any], Stamp | None]]:
    out: list[tuple[dict[str, Any], Stamp | None]] = []
    if not isinstance(roots, list):
        v.problems.append("roots.json: not a list of roots")
        return out
    listed = manifest.get("roots") or []
    if [
        {k: r.get(k) for k in ("day", "seq", "tsa_url", "made_at")}
        for r in roots
        if isinstance(r, dict)
    ] != listed:
        v.problems.append("roots.json: its roots are not the ones manifest.json lists")
    for r in roots:
        if not isinstance(r, dict) or not isinstance(r.get("seq"), int):
            v.problems.append("roots.json: a root without its entry's seq")
            continue
        if set(r) != ROOT_KEYS:
            v.problems.append(f"roots.json: the root of entry {r['seq']} has other fields")
        where = f"roots.json, root of {r.get('day')} (entry {r['seq']})"
        have = log.hashes.get(r["seq"])
        if have is None:
            v.problems.append(f"{where}: its entry is not in log.jsonl")
        elif have != r.get("root_hash"):
            v.problems.append(f"{where}: its root_hash is not that entry's entry_hash")
        stamp = None
        if r.get("tsa_token") is not None:
            try:
                token = base64.b64decode(str(r["tsa_token"]), validate=True)
                stamp = check_token(token, str(r.get("root_hash")), trusted=trusted)
            except TokenProblem as exc:
                v.problems.append(f"{where}: the timestamp token does not hold: {exc}")
            except (binascii.Error, ValueError) as exc:
                v.problems.append(f"{where}: the timestamp token is not base64 ({exc})")
            else:
                if f"{stamp.time:%Y-%m-%d}" < str(r.get("day")):
                    v.problems.append(f"{where}: the token is older than the day it closes")
        out.append((r, stamp))
    cover = (manifest.get("log") or {}).get("root")
    if cover is not None:
        if log.last != cover.get("seq"):
            v.problems.append(
                f"log.jsonl: ends at entry {log.last}, not at the covering root's entry"
                f" {cover.get('seq')} (entries dropped or added at the end)"
            )
        if not any(r.get("seq") == cover.get("seq") for r, _ in out):
            v.problems.append("roots.json: the covering root manifest.json names is not there")
    return out


def _check_captures(zf: zipfile.ZipFile, manifest: dict[str, Any], log: _Log, v: Verdict) -> int:
    named: dict[str, list[_Entry]] = {}
    for e in log.entries:
        if e.capture_sha:
            named.setdefault(e.capture_sha, []).append(e)
    found: set[str] = set()
    records = 0
    if "captures.warc.gz" not in zf.namelist():
        v.problems.append("captures.warc.gz: missing from the bundle")
        return 0
    with zf.open("captures.warc.gz") as f:
        try:
            for rec in read_captures(f):
                records += 1
                where = f"captures.warc.gz record {rec.number} ({rec.uri})"
                if rec.claimed is not None and rec.claimed != rec.sha256:
                    v.problems.append(
                        f"{where}: its bytes do not hash to its WARC-Block-Digest (changed)"
                    )
                entries = named.get(rec.sha256)
                if not entries:
                    v.problems.append(f"{where}: no log entry names these bytes as its capture")
                    continue
                found.add(rec.sha256)
                refs = [e.content.get("capture") or {} for e in entries]
                urls = {r.get("url") for r in refs} - {None}
                if urls and rec.uri not in urls:
                    v.problems.append(f"{where}: entry {entries[0].seq} names another URL")
                dates = {warc_date(str(r["fetched_at"])) for r in refs if r.get("fetched_at")}
                if dates and rec.date not in dates:
                    v.problems.append(
                        f"{where}: its WARC-Date is not when entry {entries[0].seq} says it was"
                        " fetched"
                    )
        except WarcError as exc:
            v.problems.append(f"captures.warc.gz: {exc}")
            return records
    gone = set(manifest.get("captures_missing") or [])
    for sha in sorted(gone - (set(named) - found)):
        v.problems.append(
            f"manifest.json: lists capture {sha[:12]} as no longer kept, but no entry is missing it"
        )
    for sha, entries in named.items():
        if sha in gone and sha not in found:
            v.notes.append(
                f"log.jsonl line {entries[0].line} (entry {entries[0].seq}): its capture was no"
                " longer kept by the archive when the bundle was made (the report says so)"
            )
        elif sha not in found:
            v.problems.append(
                f"log.jsonl line {entries[0].line} (entry {entries[0].seq}): its capture is"
                " not in captures.warc.gz (or its bytes were changed)"
            )
    return records


def _sections(manifest: dict[str, Any], log: _Log, v: Verdict) -> list[Section] | None:
    by_post: dict[tuple[int, int], list[tuple[int, dict[str, Any]]]] = {}
    post_ids: dict[tuple[int, int], set[Any]] = {}
    for e in log.entries:
        by_post.setdefault(post_key(e.content), []).append((e.seq, e.content))
        post_ids.setdefault(post_key(e.content), set()).add(e.post_id)
    sections = [head_section(manifest)]
    posts = manifest.get("posts")
    if not isinstance(posts, list):
        v.problems.append("manifest.json: no list of posts")
        return None
    for p in posts:
        key = (p.get("channel_id"), p.get("message_id"))
        entries = by_post.pop(key, [])
        if p.get("link") != post_link(p.get("channel_id"), p.get("channel"), p.get("message_id")):
            v.problems.append(f"manifest.json: the post {p.get('link')} has another channel or id")
        if entries and post_ids.get(key) != {p.get("post_id")}:
            v.problems.append(
                f"manifest.json: the post {p.get('link')} has another post_id than its entries"
            )
        if len(entries) != p.get("entries"):
            v.problems.append(
                f"log.jsonl: {len(entries)} entries of {p.get('link')}, manifest.json says"
                f" {p.get('entries')}"
            )
        if not entries:
            sections.append(unlogged_section(p))
            continue
        try:
            facts: PostFacts = post_facts(entries)
        except BadContent as exc:
            v.problems.append(f"log.jsonl: the entries of {p.get('link')}: {exc}")
            return None
        cov = (manifest.get("coverage") or {}).get(str(p.get("channel_id")))
        missing = frozenset(manifest.get("captures_missing") or [])
        sections.append(post_section(facts, cov, missing, manifest.get("made_at")))
    for key, entries in by_post.items():
        v.problems.append(
            f"log.jsonl: entry {entries[0][0]} is about a post manifest.json does not list"
            f" ({key[0]}/{key[1]})"
        )
    return sections


def _compare(zf: zipfile.ZipFile, name: str, parts: list[tuple[str, str]], v: Verdict) -> None:
    try:
        have = _read(zf, name).decode("utf-8")
    except KeyError:
        v.problems.append(f"{name}: missing from the bundle")
        return
    except _TooBig as exc:
        v.problems.append(str(exc))
        return
    except UnicodeDecodeError:
        v.problems.append(f"{name}: not UTF-8 text")
        return
    want = "".join(t for _, t in parts)
    if have == want:
        return
    i = next((k for k, (a, b) in enumerate(zip(have, want, strict=False)) if a != b), None)
    if i is None:
        i = min(len(have), len(want))
    line = want.count("\n", 0, i) + 1
    pos = 0
    label = parts[-1][0]
    for lbl, text in parts:
        if i < pos + len(text):
            label = lbl
            break
        pos += len(text)
    what = "its head" if label in ("head", "tail") else f"the part on {label}"
    v.problems.append(
        f"{name} line {line}: {what} is not what the log entries and manifest.json say"
        " (the report was changed)"
    )


def verify_bundle(path: Path, *, trusted: Sequence[bytes] = ()) -> Verdict:
    """Check the bundle at ``path``; never raises for a bad bundle (its problems are listed)."""
    try:
        return _verify(path, trusted)
    except (KeyError, TypeError, AttributeError, ValueError, *_UNREADABLE) as exc:
        # a structure no telewatch writes (a forged manifest, say), a member zipfile cannot
        # read: one line, no traceback
        return Verdict(problems=[f"{path}: not a bundle this telewatch can read ({exc!r})"])


def _verify(path: Path, trusted: Sequence[bytes]) -> Verdict:
    v = Verdict()
    try:
        zf = zipfile.ZipFile(path)
    except FileNotFoundError:
        v.problems.append(f"{path}: no such file")
        return v
    except (zipfile.BadZipFile, OSError) as exc:
        v.problems.append(f"{path}: not a readable zip file ({exc})")
        return v
    with zf:
        for info in zf.infolist():
            if info.flag_bits & 0x1:
                v.problems.append(f"{info.filename}: encrypted (telewatch writes no such member)")
            elif info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                v.problems.append(
                    f"{info.filename}: compression method {info.compress_type}, not one"
                    " telewatch writes"
                )
        if not v.problems:
            _check_layout(zf, path, v)
        if v.problems:
            return v
        names = zf.namelist()
        for name in sorted({n for n in names if names.count(n) > 1}):
            v.problems.append(
                f"{name}: more than one member of this name (unzip tools may show another one"
                " than the one checked)"
            )
        manifest = _read_json(zf, "manifest.json", v)
        if not isinstance(manifest, dict):
            if manifest is not None:
                v.problems.append("manifest.json: not a JSON object")
            return v
        if manifest_bytes(manifest) != _read(zf, "manifest.json"):
            v.problems.append("manifest.json: not in its canonical form (it was edited)")
        if manifest.get("format") != FORMAT:
            v.problems.append(
                f"manifest.json: format {manifest.get('format')!r}, not {FORMAT!r}: not a"
                " telewatch bundle, or one this telewatch cannot check"
            )
            return v
        _check_manifest_fields(manifest, v)
        _check_files(zf, manifest, v)
        roots = _read_json(zf, "roots.json", v)
        root_seqs = {r["seq"] for r in roots or [] if isinstance(r, dict) and "seq" in r}
        log = _check_log(zf, root_seqs, v)
        want = manifest.get("log") or {}
        if (log.first, log.last) != (want.get("first_seq"), want.get("last_seq")):
            v.problems.append(
                f"log.jsonl: holds entries {log.first} to {log.last}, manifest.json says"
                f" {want.get('first_seq')} to {want.get('last_seq')}"
            )
        _check_withheld(manifest, log, v)
        stamped = _check_roots(roots, manifest, log, trusted, v) if roots is not None else []
        if roots is not None and canonical_json(roots) + b"\n" != _read(zf, "roots.json"):
            v.problems.append("roots.json: not in its canonical form (it was edited)")
        records = _check_captures(zf, manifest, log, v)
        if manifest.get("report_format") != REPORT_FORMAT:
            v.notes.append(
                f"the report (format {manifest.get('report_format')}) was not checked: this"
                f" telewatch writes format {REPORT_FORMAT}"
            )
        else:
            sections = _sections(manifest, log, v)
            if sections is not None:
                _compare(zf, "report.md", list(markdown_parts(sections)), v)
                _compare(zf, "report.html", list(html_parts(sections)), v)
    posts = len(manifest.get("posts") or [])
    if log.first is None:
        chained = "no log entries"
    else:
        chained = f"log entries {log.first}-{log.last} chained"
    cover = (manifest.get("log") or {}).get("root")
    if cover is None:
        anchor = "not yet covered by a daily root (nothing vouches for when they were written)"
    else:
        stamp = next((s for r, s in stamped if r.get("seq") == cover.get("seq")), None)
        anchor = f"to the root of {cover.get('day')}"
        if stamp is not None:
            anchor += f", timestamped {stamp.time:%Y-%m-%d %H:%M:%S} UTC by {stamp.signer}" + (
                "" if stamp.trusted else " (signer not checked: give --tsa-cert)"
            )
        else:
            anchor += " (no timestamp token)"
    v.summary = f"{posts} post(s), {len(log.entries)} entries, {chained} {anchor}; "
    v.summary += f"{records} capture(s) match their entries; the report matches the entries"
    return v
