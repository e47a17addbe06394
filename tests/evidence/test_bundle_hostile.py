"""`telewatch evidence verify` reads files from anyone: a zip made to mislead or to exhaust
the verifier (duplicate member names, members that inflate to gigabytes) is refused in one
line per problem, without reading more than it must. The honest bundle is the one
test_bundle_format.py builds."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from archiver.evidence import bundle_check
from archiver.evidence.bundle_check import verify_bundle
from evidence.test_bundle_format import build


def members(bundle: Path) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(bundle) as zf:
        return [(n, zf.read(n)) for n in zf.namelist()]


async def test_a_second_member_of_the_same_name_is_refused(tmp_path: Path) -> None:
    """A zip may hold two members named report.md: Python's zipfile (and so the checks) reads
    the last, many unzip tools and viewers show the first. A forged report put first would be
    what a reader sees of a bundle that 'verified'."""
    good = await build(tmp_path)
    forged = tmp_path / "two.zip"
    with zipfile.ZipFile(forged, "w") as zf, pytest.warns(UserWarning, match="Duplicate"):
        zf.writestr("report.md", b"# The post was never edited\n")
        for name, data in members(good):
            zf.writestr(name, data)
    problems = verify_bundle(forged).problems
    assert any(p.startswith("report.md: more than one member of this name") for p in problems), (
        problems
    )


async def test_a_member_that_inflates_past_the_limit_is_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A few kilobytes of deflate can declare and inflate to gigabytes; the files read whole
    (manifest.json, roots.json, the reports) are refused past a size, before reading them."""
    monkeypatch.setattr(bundle_check, "MAX_MEMBER", 1 << 20)
    good = await build(tmp_path)
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members(good):
            zf.writestr(name, b" " * (8 << 20) if name == "roots.json" else data)
    v = verify_bundle(bomb)
    assert any(p.startswith("roots.json: larger than") for p in v.problems), v.problems
    assert not v.ok


async def test_an_inflating_manifest_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bundle_check, "MAX_MEMBER", 1 << 20)
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", b"[" + b" " * (8 << 20) + b"]")
    v = verify_bundle(bomb)
    assert v.problems == ["manifest.json: larger than 1048576 bytes: not a bundle telewatch wrote"]


async def test_a_log_line_longer_than_any_entry_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """log.jsonl is read line by line; one line without an end must not be read whole."""
    monkeypatch.setattr(bundle_check, "MAX_MEMBER", 1 << 20)
    good = await build(tmp_path)
    bad = tmp_path / "line.zip"
    with zipfile.ZipFile(bad, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members(good):
            zf.writestr(name, data + b"{" * (8 << 20) if name == "log.jsonl" else data)
    v = verify_bundle(bad)
    assert any("log.jsonl line" in p and "longer than" in p for p in v.problems), v.problems


async def test_an_entry_of_the_post_withheld_as_a_bare_link_is_named(tmp_path: Path) -> None:
    """docs/evidence.md ("What a bundle proves, and what it does not"): the bundle's maker
    (with their own archive's post_id column pointed elsewhere, say, which no hash covers)
    leaves an entry of the post out as a bare link, here its revert to the first text, so
    that the report shows version 2 current when it was deleted. Each link's hash commits to
    the post it is about, so the verifier names the entry withheld."""
    from evidence.test_bundle_format import story

    log = story()
    reverted = next(e for e in log.entries if e.kind == "reverted")
    object.__setattr__(reverted, "post_id", 99)  # outside every hash
    out = await build(tmp_path, log)
    with zipfile.ZipFile(out) as zf:
        report = zf.read("report.md").decode()
        lines = zf.read("log.jsonl").decode().splitlines()
    assert "an earlier version is current again" not in report  # (the honest report has it)
    assert '"content"' not in lines[reverted.seq - 1]  # a bare link in the bundle
    v = verify_bundle(out)
    assert not v.ok
    assert (
        f"log.jsonl line {reverted.seq}: entry {reverted.seq} of post"
        " https://t.me/saltpepper/7 is withheld: only its link is in the bundle"
    ) in v.problems, v.problems


async def test_a_bare_link_said_to_be_of_another_post_breaks_the_chain(tmp_path: Path) -> None:
    """The same withheld entry, its link's post_key changed to another post's: its entry_hash
    no longer holds (the key is inside it), and the next root's hash would have to change."""
    import json

    from evidence.test_bundle_format import story

    log = story()
    reverted = next(e for e in log.entries if e.kind == "reverted")
    object.__setattr__(reverted, "post_id", 99)
    good = await build(tmp_path, log)
    bad = tmp_path / "other.zip"
    with zipfile.ZipFile(bad, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members(good):
            if name == "log.jsonl":
                lines = data.splitlines(keepends=True)
                obj = json.loads(lines[reverted.seq - 1])
                obj["post_key"] = f"{reverted.channel_id}/9"
                lines[reverted.seq - 1] = bundle_check.canonical_json(obj) + b"\n"
                data = b"".join(lines)
            zf.writestr(name, data)
    problems = verify_bundle(bad).problems
    assert any(
        p.startswith(f"log.jsonl line {reverted.seq} (entry {reverted.seq}): its entry_hash is not")
        for p in problems
    ), problems
    assert not any("is withheld" in p for p in problems), problems


@pytest.mark.parametrize("name", ["manifest.json", "roots.json", "log.jsonl"])
async def test_json_nested_past_the_recursion_limit_is_one_line(tmp_path: Path, name: str) -> None:
    """A few hundred kilobytes of '[' make json.loads raise RecursionError, not ValueError: a
    traceback for the reader unless it is caught as the bad JSON it is."""
    good = await build(tmp_path)
    deep = b"[" * 200_000 + b"]" * 200_000
    bad = tmp_path / "deep.zip"
    with zipfile.ZipFile(bad, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for member, data in members(good):
            zf.writestr(
                member, deep + (b"\n" if name == "log.jsonl" else b"") if member == name else data
            )
    v = verify_bundle(bad)
    assert not v.ok
    assert any(p.startswith(name) and "not valid JSON" in p for p in v.problems), v.problems


async def test_an_entry_content_nested_past_the_recursion_limit_is_one_line(
    tmp_path: Path,
) -> None:
    import json

    from archiver.evidence import chain
    from archiver.evidence.bundles import canonical_json

    good = await build(tmp_path)
    bad = tmp_path / "deep.zip"
    with zipfile.ZipFile(bad, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for member, data in members(good):
            if member == "log.jsonl":
                lines = data.splitlines(keepends=True)
                first = json.loads(lines[0])
                first["content"] = "[" * 200_000 + "]" * 200_000
                first["content_sha"] = chain.sha256_hex(first["content"].encode())
                lines[0] = canonical_json(first) + b"\n"
                data = b"".join(lines)
            zf.writestr(member, data)
    v = verify_bundle(bad)
    assert not v.ok
    assert any("content is not JSON" in p for p in v.problems), v.problems


async def test_any_byte_of_the_zip_changed_is_a_verdict_never_a_traceback(tmp_path: Path) -> None:
    """Every 13th byte of the whole zip file flipped in turn (its headers, its deflate
    streams, its central directory): the verifier answers with problems, it does not raise
    zlib.error, NotImplementedError (a compression method byte) or RuntimeError (the
    'encrypted' flag bit)."""
    good = (await build(tmp_path)).read_bytes()
    bad = tmp_path / "flipped.zip"
    for at in range(0, len(good), 13):
        data = bytearray(good)
        data[at] ^= 0xFF
        bad.write_bytes(bytes(data))
        verify_bundle(bad)  # raises on the old code


async def test_an_encrypted_member_is_named(tmp_path: Path) -> None:
    good = await build(tmp_path)
    data = bytearray(good.read_bytes())
    central = data.find(b"PK\x01\x02")  # the first central directory entry: its flag bits
    data[central + 8] |= 1
    local = data.find(b"PK\x03\x04")
    data[local + 6] |= 1
    bad = tmp_path / "enc.zip"
    bad.write_bytes(bytes(data))
    problems = verify_bundle(bad).problems
    assert any("encrypted" in p for p in problems), problems


def local_entry(name: str, data: bytes) -> bytes:
    """One zip local file header and its stored data (APPNOTE 4.3.7), as a streaming unzip
    tool reads it."""
    import struct
    import zlib

    head = struct.pack(
        "<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0x21, zlib.crc32(data), len(data), len(data),
        len(name), 0,
    )  # fmt: skip
    return head + name.encode() + data


async def test_a_member_hidden_outside_the_central_directory_is_found(tmp_path: Path) -> None:
    """zipfile reads the central directory and takes bytes before the first member for a
    stub; tools that stream a zip (reading local headers in order) see a report.md put there.
    A bundle is only telewatch's members, back to back from the first byte."""
    good = (await build(tmp_path)).read_bytes()
    bad = tmp_path / "hidden.zip"
    bad.write_bytes(local_entry("report.md", b"# The post was never deleted\n") + good)
    with zipfile.ZipFile(bad) as zf:  # what the checks read is the genuine bundle
        assert zf.read("report.md") == dict(members(tmp_path / "b.zip"))["report.md"]
    problems = verify_bundle(bad).problems
    assert any("before its first member" in p for p in problems), problems


async def test_a_local_header_that_disagrees_with_the_directory_is_found(tmp_path: Path) -> None:
    good = bytearray((await build(tmp_path)).read_bytes())
    good[22] ^= 0x01  # report.md's local header: its uncompressed size (APPNOTE 4.3.7)
    bad = tmp_path / "local.zip"
    bad.write_bytes(bytes(good))
    problems = verify_bundle(bad).problems
    assert any("report.md: its local header" in p for p in problems), problems
