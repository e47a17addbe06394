"""Evidence bundles (issue 19): the zip's files, a round trip (make -> verify OK), and every
kind of one-byte tampering found and named by the offline verifier, both as a plain edit
(manifest.json's hash gives it away) and as a forger's (manifest.json re-hashed to match, so
the chain, the captures and the report must give it away). The log here is in memory, written
with the real chain; tests/evidence/test_bundle_archive.py makes bundles from real archives."""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archiver.evidence import bundles
from archiver.evidence.bundle_check import verify_bundle
from archiver.evidence.bundles import Wanted, make_bundle
from archiver.evidence.warc import read_captures
from evidence.bundlekit import MemLog, flip, read_member, rewrite

CH = -1001811111111
HTTP = (
    b"HTTP/1.1 200 OK\r\nContent-Type:  text/html; charset=utf-8\r\nServer:nginx\r\n\r\n"
    b'<div class="tgme_widget_message_text">\xd0\x95\xd0\xb2\xd0\xb0\xd0\xba\xd1\x83\xd0\xb0'
    b"\xd1\x86\xd1\x96\xd1\x8f</div>"
)
JSON = b'{"_": "Message", "id": 7, "message": "\xd0\x95\xd0\xb2\xd0\xb0\xd0\xba\xd1\x83\xd0\xb0"}'
NOT_FOUND = (
    b'HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<div class="tgme_widget_message_error">'
    b"Post not found</div>"
)


def story() -> MemLog:
    """Post 7: seen, edited, edited back, missing, then confirmed deleted; post 8 seen once.
    Another post's entries (9) sit between them, so the bundle carries links of other posts."""
    log = MemLog()
    log.add(
        7,
        7,
        "seen",
        "2024-05-01 12:07:00",
        version=(1, "Евакуація о 18:00 з центру"),
        capture=(JSON, "application/json", "https://t.me/saltpepper/7"),
    )
    log.add(9, 9, "seen", "2024-05-01 12:09:00", version=(3, "another post"))
    log.add(
        7,
        7,
        "edited",
        "2024-05-01 13:00:00",
        version=(2, "Евакуація о 19:00 з центру"),
        edit_date="2024-05-01 12:59:00",
        source="web",
        capture=(
            HTTP,
            "application/http;msgtype=response",
            "https://t.me/saltpepper/7?embed=1&mode=tme",
        ),
    )
    log.add(8, 8, "seen", "2024-05-01 13:05:00", version=(4, "Усе спокійно"))
    log.root("2024-05-01")
    log.add(7, 7, "reverted", "2024-05-02 09:00:00", version=(1, "Евакуація о 18:00 з центру"))
    log.add(
        7,
        7,
        "missing",
        "2024-05-02 10:00:00",
        source="web",
        how="listing",
        evidence="not on the channel's page t.me/s/saltpepper",
    )
    log.add(
        7,
        7,
        "deleted",
        "2024-05-02 11:00:00",
        source="web",
        how="web_embed",
        evidence='the post page said "Post not found"',
        capture=(
            NOT_FOUND,
            "application/http;msgtype=response",
            "https://t.me/saltpepper/7?embed=1&mode=tme",
        ),
    )
    log.add(9, 9, "edited", "2024-05-02 12:00:00", version=(5, "another post, edited"))
    log.root("2024-05-02")
    return log  # fmt: skip


COVERAGE = {
    "watched_since": "2024-04-01T00:00:00Z",
    "last_check_at": "2024-05-02T12:00:00Z",
    "last_full_check_at": "2024-05-02T00:00:00Z",
    "unwatched": [
        {"start": "2024-03-01T00:00:00Z", "end": "2024-03-02T00:00:00Z", "faults": []},
        {"start": "2024-05-01T20:00:00Z", "end": "2024-05-01T23:00:00Z",
         "faults": [{"status": "flood_wait", "reason": "FLOOD_WAIT 3600", "count": 2}]},
    ],
}  # fmt: skip


async def coverage_of(channel_id: int) -> dict[str, Any] | None:
    return COVERAGE if channel_id == CH else None


async def build(tmp_path: Path, log: MemLog | None = None, name: str = "b.zip") -> Path:
    log = log or story()
    wanted = [Wanted(7, CH, "saltpepper", 7), Wanted(8, CH, "saltpepper", 8)]
    out = tmp_path / name
    await make_bundle(
        log, wanted, out, coverage_of=coverage_of,
        request={"links": ["t.me/saltpepper/7", "@saltpepper/8"], "query": None},
    )  # fmt: skip
    return out


@pytest.fixture
async def bundle(tmp_path: Path) -> Path:
    return await build(tmp_path)


async def test_round_trip_verifies(bundle: Path) -> None:
    v = verify_bundle(bundle)
    assert v.problems == []
    assert v.ok
    line = v.lines()[0]
    assert line.startswith("bundle verified: 2 post(s), 6 entries, log entries 1-8 chained")
    assert "root of 2024-05-02" in line
    assert "3 capture(s) match their entries; the report matches the entries" in line


async def test_the_zip_holds_the_six_files(bundle: Path) -> None:
    with zipfile.ZipFile(bundle) as zf:
        assert sorted(zf.namelist()) == sorted(
            ["report.md", "report.html", "log.jsonl", "roots.json", "captures.warc.gz",
             "manifest.json"]
        )  # fmt: skip
    manifest = json.loads(read_member(bundle, "manifest.json"))
    assert set(manifest["files"]) == {
        "report.md", "report.html", "log.jsonl", "roots.json", "captures.warc.gz",
    }  # fmt: skip
    assert manifest["telewatch_version"]
    assert manifest["made_at"]
    assert manifest["log"] == {
        "first_seq": 1, "last_seq": 8, "root": {"day": "2024-05-02", "seq": 8, "tsa": False},
    }  # fmt: skip


async def test_log_holds_the_posts_entries_in_full_and_the_others_as_links(bundle: Path) -> None:
    lines = [json.loads(x) for x in read_member(bundle, "log.jsonl").splitlines()]
    assert [x["seq"] for x in lines] == list(range(1, 9))
    full = [x["seq"] for x in lines if "content" in x]
    assert full == [1, 3, 4, 5, 6, 7]  # posts 7 and 8; post 9's entries 2 and 8 are links
    assert set(lines[1]) == {
        "seq", "post_key", "content_sha", "capture_sha", "prev_hash", "entry_hash",
    }  # fmt: skip
    assert lines[1]["post_key"] == f"{lines[0]['channel_id']}/9"  # post 9's, public ids
    roots = json.loads(read_member(bundle, "roots.json"))
    assert [(r["day"], r["seq"]) for r in roots] == [("2024-05-01", 4), ("2024-05-02", 8)]


async def test_captures_are_warc_records_with_the_bytes_as_stored(bundle: Path) -> None:
    with zipfile.ZipFile(bundle) as zf, zf.open("captures.warc.gz") as f:
        records = list(read_captures(f))
    kinds = [(r.kind, r.uri) for r in records]
    assert ("resource", "https://t.me/saltpepper/7") in kinds
    assert ("response", "https://t.me/saltpepper/7?embed=1&mode=tme") in kinds
    import hashlib

    shas = {r.sha256 for r in records}
    assert hashlib.sha256(HTTP).hexdigest() in shas  # headers kept as received ("  ", ":n")
    assert hashlib.sha256(NOT_FOUND).hexdigest() in shas
    assert all(r.claimed == r.sha256 for r in records)
    dates = {r.date for r in records}
    assert "2024-05-01T13:00:00Z" in dates


async def test_report_tells_versions_diff_deletion_and_coverage(bundle: Path) -> None:
    md = read_member(bundle, "report.md").decode()
    assert "## https://t.me/saltpepper/7" in md
    assert "Евакуація о 18:00 з центру" in md and "Евакуація о 19:00 з центру" in md
    assert "edit time: 2024-05-01 12:59:00" in md
    assert "[-18:00 -]{+19:00 +}" in md  # the word diff
    deleted = "Deleted: confirmed at 2024-05-02 11:00:00 by web (web\\_embed): the post page said"
    assert f'{deleted} "Post not found".' in md
    assert "not watched from 2024-05-01 20:00:00 to 2024-05-01 23:00:00" in md
    assert "FLOOD\\_WAIT 3600 x2" in md
    assert "2024-03-01" not in md  # a window far from the post is not its coverage
    post8 = md.split("## https://t.me/saltpepper/8")[1]
    assert "No deletion observed." in post8
    html = read_member(bundle, "report.html").decode()
    assert "<del>18:00 </del><ins>19:00 </ins>" in html


async def test_missing_is_not_called_deleted(tmp_path: Path) -> None:
    log = MemLog()
    log.add(7, 7, "seen", "2024-05-01 12:07:00", version=(1, "text"))
    log.add(7, 7, "missing", "2024-05-01 13:00:00", source="web", how="listing")
    log.add(8, 8, "seen", "2024-05-01 13:05:00", version=(2, "other"))
    log.root("2024-05-01")
    out = await build(tmp_path, log)
    md = read_member(out, "report.md").decode()
    assert "Not shown in a listing at 2024-05-01 13:00:00 (web), not confirmed" in md
    assert "Deleted" not in md
    assert verify_bundle(out).ok


async def test_a_bundle_before_any_root_says_it_is_not_anchored(tmp_path: Path) -> None:
    log = MemLog()
    log.add(7, 7, "seen", "2024-05-01 12:07:00", version=(1, "text"))
    log.add(8, 8, "seen", "2024-05-01 13:05:00", version=(2, "other"))
    out = await build(tmp_path, log)
    v = verify_bundle(out)
    assert v.ok, v.problems
    assert "not yet covered by a daily root" in v.lines()[0]


# ---------------------------------------------------------------------------- tampering


def _entry_line(bundle: Path, seq: int) -> bytes:
    for line in read_member(bundle, "log.jsonl").splitlines(keepends=True):
        if json.loads(line)["seq"] == seq:
            return line
    raise AssertionError(seq)


def _swap_lines(data: bytes, a: int, b: int) -> bytes:
    lines = data.splitlines(keepends=True)
    lines[a - 1], lines[b - 1] = lines[b - 1], lines[a - 1]
    return b"".join(lines)


def _drop_line(data: bytes, n: int) -> bytes:
    lines = data.splitlines(keepends=True)
    del lines[n - 1]
    return b"".join(lines)


def _change_content(data: bytes) -> bytes:
    """Entry 3's text 19:00 -> 17:00, content_sha recomputed (the forger's best)."""
    out = []
    for line in data.splitlines(keepends=True):
        obj = json.loads(line)
        if obj["seq"] == 3:
            obj["content"] = obj["content"].replace("19:00", "17:00")
            import hashlib

            obj["content_sha"] = hashlib.sha256(obj["content"].encode()).hexdigest()
            line = json.dumps(obj, sort_keys=True, ensure_ascii=False,
                              separators=(",", ":")).encode() + b"\n"  # fmt: skip
        out.append(line)
    return b"".join(out)


def _rechain(data: bytes) -> bytes:
    """The whole log re-hashed after entry 3's text changed: the chain holds, the roots do not."""
    from archiver.evidence import chain

    out = []
    prev: str | None = None
    for line in _change_content(data).splitlines():
        obj = json.loads(line)
        if prev is not None:
            obj["prev_hash"] = prev
        key = obj.get("post_key") or chain.post_key(obj["channel_id"], obj["message_id"])
        obj["entry_hash"] = chain.entry_hash(
            obj["seq"], key, obj["content_sha"], obj["capture_sha"], obj["prev_hash"]
        )
        prev = obj["entry_hash"]
        out.append(
            json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
            + b"\n"
        )
    return b"".join(out)


def _members(data: bytes) -> list[bytes]:
    """The gzip members of a WARC file (one per record), decompressed."""
    import zlib

    out = []
    while data:
        d = zlib.decompressobj(wbits=31)
        out.append(d.decompress(data))
        data = d.unused_data
    return out


def _warc_byte(data: bytes) -> bytes:
    """One byte of the web capture changed inside the WARC, each record re-compressed as
    warcio writes it (one gzip member per record), so the file still reads."""
    import gzip

    members = _members(data)
    for i, m in enumerate(members):
        if "Евакуація</div>".encode() in m:
            members[i] = flip(m, "Евакуація</div>".encode(), "Евакуаціz</div>".encode())
            break
    else:
        raise AssertionError("no web capture")
    return b"".join(gzip.compress(m) for m in members)


def _warc_date(data: bytes) -> bytes:
    """The web capture's WARC-Date a day earlier (the record re-compressed as warcio writes)."""
    import gzip

    members = _members(data)
    for i, m in enumerate(members):
        if b"WARC-Date: 2024-05-01T13:00:00Z" in m:
            members[i] = flip(m, b"WARC-Date: 2024-05-01", b"WARC-Date: 2024-04-30")
            break
    else:
        raise AssertionError("no web capture")
    return b"".join(gzip.compress(m) for m in members)


CASES = [
    # (name, file, change, what the problem line must say)
    ("report text", "report.md", lambda d: flip(d, "19:00 з".encode(), "17:00 з".encode()),
     ["report.md line", "https://t.me/saltpepper/7"]),
    ("report html", "report.html", lambda d: flip(d, b"Deleted: confirmed", b"Deleted: Confirmed"),
     ["report.html line", "https://t.me/saltpepper/7"]),
    ("report head", "report.md", lambda d: flip(d, b"2 post(s)", b"3 post(s)"),
     ["report.md line", "its head"]),
    ("capture bytes", "captures.warc.gz", _warc_byte,
     ["captures.warc.gz record", "do not hash to its WARC-Block-Digest"]),
    ("capture date", "captures.warc.gz", _warc_date,
     ["captures.warc.gz record", "WARC-Date is not when entry"]),
    ("log entry content", "log.jsonl", lambda d: flip(d, b"19:00", b"17:00"),
     ["log.jsonl line 3 (entry 3)", "content does not hash to its content_sha"]),
    ("log entry content re-hashed", "log.jsonl", _change_content,
     ["log.jsonl line 3 (entry 3)", "entry_hash is not the hash of its fields"]),
    ("log re-chained", "log.jsonl", _rechain,
     ["roots.json, root of 2024-05-01 (entry 4)", "root_hash is not that entry's entry_hash"]),
    ("entry order", "log.jsonl", lambda d: _swap_lines(d, 3, 4),
     ["log.jsonl line 3 (entry 4)", "entry 3 should come here"]),
    ("dropped entry", "log.jsonl", lambda d: _drop_line(d, 5),
     ["log.jsonl line 5 (entry 6)", "entry 5 should come here"]),
    ("dropped last entry", "log.jsonl", lambda d: _drop_line(d, 8),
     ["ends at entry 7, not at the covering root's entry 8"]),
    ("log whitespace", "log.jsonl", lambda d: d.replace(b'","entry_hash"', b'", "entry_hash"', 1),
     ["log.jsonl line 1 (entry 1)", "not in canonical form"]),
    ("entry column", "log.jsonl", lambda d: flip(d, b'"kind":"deleted"', b'"kind":"missing"'),
     ["log.jsonl line 7 (entry 7)", "kind disagree(s) with its content"]),
    ("root field renamed", "roots.json", lambda d: flip(d, b'"tsa_token"', b'"tsa_uoken"'),
     ["roots.json: the root of entry 4 has other fields"]),
    ("root hash", "roots.json", lambda d: flip(d, b'"root_hash":"', b'"root_hash":"0'),
     ["roots.json, root of 2024-05-01"]),
]  # fmt: skip


@pytest.mark.parametrize("forge", [False, True], ids=["edit", "forged-manifest"])
@pytest.mark.parametrize(("name", "member", "change", "says"), CASES, ids=[c[0] for c in CASES])
async def test_tampering_is_found_and_named(
    tmp_path: Path, bundle: Path, name: str, member: str, change: Any, says: list[str], forge: bool
) -> None:
    bad = rewrite(bundle, tmp_path / "bad.zip", member, change, forge=forge)
    v = verify_bundle(bad)
    assert not v.ok
    hits = [p for p in v.problems if all(s in p for s in says)]
    assert hits, f"{name}: no problem says {says}: {v.problems}"
    hashed = [p for p in v.problems if p.startswith(f"{member}: its SHA-256")]
    assert bool(hashed) is not forge, v.problems  # a plain edit is also caught by its hash


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda d: flip(d, b'"made_at": "', b'"made_at": "1'), "report.md line"),
        (lambda d: flip(d, b'"sha256": "', b'"sha256": "0'), "its SHA-256 or size"),
        (lambda d: flip(d, b'"entries": 5', b'"entries": 4'), "manifest.json says 4"),
        (lambda d: flip(d, b'"first_seq": 1', b'"first_seq": 2'), "manifest.json says 2 to 8"),
        (lambda d: d.replace(b'": ', b'":  ', 1), "manifest.json: not in its canonical form"),
        (lambda d: d[:-5], "manifest.json: not valid JSON"),
        (lambda d: flip(d, b'"archive_id"', b'"archive_ie"'), "the top has other fields"),
        (lambda d: flip(d, b'"since": null', b'"sincf": null'), "request has other fields"),
        (lambda d: flip(d, b'"post_id": 8', b'"post_id": 9'), "another post_id than its entries"),
        (
            lambda d: flip(d, b'"channel": "saltpepper"', b'"channel": "saltpeppes"'),
            "has another channel or id",
        ),
    ],
    ids=[
        "made_at",
        "a file hash",
        "entry count",
        "log range",
        "whitespace",
        "truncated",
        "renamed key",
        "renamed request key",
        "post id",
        "channel name",
    ],
)
async def test_manifest_tampering_is_found(
    tmp_path: Path, bundle: Path, change: Any, says: str
) -> None:
    bad = rewrite(bundle, tmp_path / "bad.zip", "manifest.json", change)
    v = verify_bundle(bad)
    assert any(says in p for p in v.problems), v.problems


async def test_a_dropped_or_added_file_is_named(tmp_path: Path, bundle: Path) -> None:
    with zipfile.ZipFile(bundle) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    dropped = tmp_path / "dropped.zip"
    with zipfile.ZipFile(dropped, "w") as zf:
        for n, data in members.items():
            if n != "captures.warc.gz":
                zf.writestr(n, data)
        zf.writestr("extra.txt", b"x")
    problems = verify_bundle(dropped).problems
    assert "captures.warc.gz: listed in manifest.json but missing from the bundle" in problems
    assert any(p.startswith("extra.txt: not listed in manifest.json") for p in problems)


async def test_not_a_zip_is_one_line(tmp_path: Path) -> None:
    p = tmp_path / "x.zip"
    p.write_bytes(b"not a zip")
    assert len(verify_bundle(p).problems) == 1
    assert verify_bundle(tmp_path / "none.zip").problems == [
        f"{tmp_path / 'none.zip'}: no such file"
    ]


async def test_a_changed_token_is_named(tmp_path: Path) -> None:
    log = story()
    object.__setattr__(log.roots[1], "tsa_token", b"\x30\x03\x02\x01\x00")  # no real token
    out = await build(tmp_path, log)
    roots = json.loads(read_member(out, "roots.json"))
    assert base64.b64decode(roots[1]["tsa_token"]) == b"\x30\x03\x02\x01\x00"
    v = verify_bundle(out)
    assert any(
        p.startswith("roots.json, root of 2024-05-02 (entry 8): the timestamp token does not hold")
        for p in v.problems
    ), v.problems


async def test_a_capture_the_archive_no_longer_keeps_is_said_not_hidden(tmp_path: Path) -> None:
    log = story()
    pruned = hashlib.sha256(JSON).hexdigest()
    del log.captures[pruned]
    out = await build(tmp_path, log)
    assert json.loads(read_member(out, "manifest.json"))["captures_missing"] == [pruned]
    assert f"{pruned[:12]} (no longer kept)" in read_member(out, "report.md").decode()
    v = verify_bundle(out)
    assert v.ok, v.problems
    assert any("its capture was no longer kept by the archive" in n for n in v.lines()[1:])
    # claiming another capture was not kept is a change of the manifest
    bad = rewrite(
        out,
        tmp_path / "bad.zip",
        "manifest.json",
        lambda d: flip(d, pruned.encode(), hashlib.sha256(HTTP).hexdigest().encode()),
    )
    assert any(p.startswith("manifest.json: lists capture") for p in verify_bundle(bad).problems)


async def test_links_are_streamed_in_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = read_member(await build(tmp_path, name="whole.zip"), "log.jsonl")
    monkeypatch.setattr(bundles, "LINKS_CHUNK", 3)
    chunked = await build(tmp_path, name="chunked.zip")
    assert read_member(chunked, "log.jsonl") == whole
    assert verify_bundle(chunked).ok


async def test_a_post_without_log_entries_is_said_to_be_unproven(tmp_path: Path) -> None:
    log = story()
    out = tmp_path / "u.zip"
    await make_bundle(
        log, [Wanted(7, CH, "saltpepper", 7), Wanted(42, CH, "saltpepper", 42)], out,
        coverage_of=coverage_of, request={"links": ["t.me/saltpepper/7", "t.me/saltpepper/42"]},
    )  # fmt: skip
    md = read_member(out, "report.md").decode()
    part = md.split("## https://t.me/saltpepper/42")[1]
    assert "the observation log has no entry for it" in part
    assert "this bundle proves nothing about it" in part
    assert verify_bundle(out).ok


async def test_post_text_is_escaped_in_both_reports(tmp_path: Path) -> None:
    log = MemLog()
    text = '<script>alert("x")</script> **bold** ``` & [link](http://e.x)'
    log.add(7, 7, "seen", "2024-05-01 12:07:00", version=(1, text))
    log.add(8, 8, "seen", "2024-05-01 12:08:00", version=(2, "other"))
    out = await build(tmp_path, log)
    html = read_member(out, "report.html").decode()
    assert "<script>" not in html and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    md = read_member(out, "report.md").decode()
    assert f"````text\n{text}\n````" in md  # a fence longer than any backtick run in the text
    assert verify_bundle(out).ok


async def test_a_manifest_of_another_shape_is_one_line(tmp_path: Path, bundle: Path) -> None:
    def odd(data: bytes) -> bytes:
        manifest = json.loads(data)
        manifest["posts"] = ["not a post"]
        return json.dumps(manifest, sort_keys=True, ensure_ascii=False, indent=1).encode() + b"\n"

    bad = rewrite(bundle, tmp_path / "bad.zip", "manifest.json", odd)
    (problem,) = verify_bundle(bad).problems
    assert problem.startswith(f"{bad}: not a bundle this telewatch can read")


async def test_entries_rebuilt_when_the_log_began_are_marked(tmp_path: Path) -> None:
    log = MemLog()
    log.add(7, 7, "seen", "2024-05-01 12:07:00", version=(1, "old text"), reconstructed=True)
    log.add(7, 7, "edited", "2024-05-02 12:00:00", version=(2, "new text"))
    log.add(8, 8, "seen", "2024-05-02 12:08:00", version=(3, "other"))
    out = await build(tmp_path, log)
    rows = [ln for ln in read_member(out, "report.md").decode().splitlines() if ln.startswith("| ")]
    assert (
        "| 1 | 2024-05-01 12:07:00 | first seen (rebuilt from the archive when the log began)"
        in ("\n".join(rows))
    )
    assert not any("rebuilt" in r for r in rows if r.startswith("| 2 "))
    assert verify_bundle(out).ok


MEMBERS = ["report.md", "report.html", "log.jsonl", "roots.json", "captures.warc.gz",
           "manifest.json"]  # fmt: skip
_ZIP: dict[str, bytes] = {}


def _story_members(tmp: Path) -> dict[str, bytes]:
    """The members of one story bundle (made once for the property tests below)."""
    if not _ZIP:
        import asyncio

        path = asyncio.run(build(tmp))
        with zipfile.ZipFile(path) as zf:
            _ZIP.update({n: zf.read(n) for n in zf.namelist()})
    return _ZIP


def _write(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for n, data in members.items():
            zf.writestr(n, data)
    return path


@settings(max_examples=150, deadline=None, derandomize=True)
@given(member=st.sampled_from(MEMBERS), where=st.floats(0, 1, exclude_max=True),
       bit=st.integers(0, 7))  # fmt: skip
def test_any_one_byte_change_is_found(
    tmp_path_factory: pytest.TempPathFactory, member: str, where: float, bit: int
) -> None:
    tmp = tmp_path_factory.mktemp("flip")
    members = dict(_story_members(tmp))
    data = bytearray(members[member])
    i = int(where * len(data))
    data[i] ^= 1 << bit
    members[member] = bytes(data)
    v = verify_bundle(_write(tmp / "bad.zip", members))
    assert not v.ok, (member, i)


TEXT_MEMBERS = ["report.md", "report.html", "log.jsonl", "roots.json"]


@settings(max_examples=150, deadline=None, derandomize=True)
@given(member=st.sampled_from(TEXT_MEMBERS), where=st.floats(0, 1, exclude_max=True),
       bit=st.integers(0, 6))  # fmt: skip
def test_any_one_byte_change_is_found_even_with_the_manifest_rehashed(
    tmp_path_factory: pytest.TempPathFactory, member: str, where: float, bit: int
) -> None:
    tmp = tmp_path_factory.mktemp("forge")
    members = dict(_story_members(tmp))
    data = bytearray(members[member])
    i = int(where * len(data))
    data[i] ^= 1 << bit
    members[member] = bytes(data)
    manifest = json.loads(members["manifest.json"])
    manifest["files"][member] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    members["manifest.json"] = bundles.manifest_bytes(manifest)
    v = verify_bundle(_write(tmp / "bad.zip", members))
    assert not v.ok, (member, i, bytes(data[max(0, i - 20) : i + 20]))
