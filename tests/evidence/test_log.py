"""The observation log (archiver/evidence/log.py) written by ingest and deletions in the same
transaction as the change, on a real SQLite archive; `verify` names the first broken link
after each kind of tampering (docs/evidence.md)."""

from __future__ import annotations

import json
import sqlite3
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

from conftest import CHANNEL_ID, MakeChannel, MakePost

from archiver.evidence import chain
from archiver.evidence.capture import http_response
from archiver.evidence.log import count, entries_for_post, get_capture, links, verify
from archiver.evidence.retention import prune_captures
from archiver.models import Media
from archiver.store.archive import Archive
from archiver.store.deletions import confirm_deleted, confirm_present, mark_missing
from archiver.store.ingest import ingest


def page(body: bytes = b"<html>listing</html>") -> object:
    return http_response(
        url="https://t.me/s/vsaldo", fetched_at="2024-05-01 12:30:00", http_version="HTTP/1.1",
        status=200, reason="OK", headers=[("Content-Type", "text/html")], body=body,
    )  # fmt: skip


async def history(archive: Archive, make_post: MakePost) -> None:
    """seen (2 posts, one page capture), edited, reverted, missing, deleted, restored."""
    cap = page()
    await ingest(
        archive, [make_post(1, "перший"), make_post(2, "другий")], source="web", alerts=False,
        capture=cap,  # type: ignore[arg-type]
    )  # fmt: skip
    await ingest(archive, [make_post(1, "перший, виправлено")], source="web", alerts=False)
    await ingest(archive, [make_post(1, "перший")], source="web", alerts=False)
    await mark_missing(archive, CHANNEL_ID, [2], source="web")
    await confirm_deleted(archive, CHANNEL_ID, [2], how="web_embed", alerts=False)
    await confirm_present(archive, CHANNEL_ID, [2], how="web_embed", alerts=False)


async def test_every_change_is_an_entry_and_the_log_verifies(
    archive: Archive, make_channel: MakeChannel, make_post: MakePost
) -> None:
    await make_channel()
    await history(archive, make_post)
    rows = await archive.fetchall("SELECT seq, kind, post_id FROM observations ORDER BY seq")
    assert [(r[0], r[1]) for r in rows] == [
        (1, "seen"), (2, "seen"), (3, "edited"), (4, "reverted"), (5, "missing"),
        (6, "deleted"), (7, "restored"),
    ]  # fmt: skip
    assert await verify(archive) is None
    assert await count(archive) == 7
    one = await entries_for_post(archive, rows[0][2])
    assert [e.kind for e in one] == ["seen", "edited", "reverted"]
    first = json.loads(one[0].content)
    assert first["version"]["text"] == "перший"
    assert first["channel"] == {"id": CHANNEL_ID, "username": "vsaldo"}
    assert "reconstructed" not in first
    # the page both posts were first seen on is kept once, and both entries name it
    assert one[0].capture_sha is not None
    two = await entries_for_post(archive, rows[1][2])
    assert two[0].capture_sha == one[0].capture_sha
    assert (await archive.fetchone("SELECT count(*) FROM captures"))[0] == 1
    capture = await get_capture(archive, one[0].capture_sha)
    assert capture is not None
    assert capture.body.startswith(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<html>")
    assert chain.verify_links(await links(archive, 1, 7)) is None
    assert [e.link() for e in one] == [
        lk for lk in await links(archive, 1, 7) if lk.seq in {e.seq for e in one}
    ]
    deleted = json.loads(two[2].content)
    assert deleted["how"] == "web_embed"
    assert deleted["evidence"] == 'the post page said "Post not found"'


async def test_reading_the_same_again_logs_nothing(
    archive: Archive, make_channel: MakeChannel, make_post: MakePost
) -> None:
    await make_channel()
    await ingest(archive, [make_post(1, "a")], source="web", alerts=False)
    await ingest(archive, [make_post(1, "a", views=5)], source="web", alerts=False)
    assert await count(archive) == 1  # counters are not observations of the record


def tamper(path: Path, sql: str, *params: object) -> None:
    con = sqlite3.connect(path)
    if params:
        con.execute(sql, params)
    else:
        con.executescript(sql)
    con.commit()
    con.close()


async def broken_after(tmp_path: Path, make_post: MakePost, sql: str, *params: object) -> str:
    path = tmp_path / "t.db"
    async with await Archive.open(path) as a:
        await a.write(
            "INSERT INTO channels (id, username, source, created_at) VALUES (?, 'vsaldo', 'web',"
            " '2024-05-01 00:00:00')",
            (CHANNEL_ID,),
        )
        await history(a, make_post)
        assert await verify(a) is None
    tamper(path, sql, *params)
    async with await Archive.open(path) as a:
        broken = await verify(a)
    assert broken is not None
    return str(broken)


async def test_a_version_text_changed(tmp_path: Path, make_post: MakePost) -> None:
    got = await broken_after(
        tmp_path, make_post,
        "UPDATE versions SET text = 'підроблено' WHERE text = 'перший, виправлено'",
    )  # fmt: skip
    assert got.startswith("entry 3: version ") and got.endswith(
        "'s text differs from what was logged"
    )


async def test_an_entry_content_changed(tmp_path: Path, make_post: MakePost) -> None:
    got = await broken_after(
        tmp_path, make_post,
        "UPDATE observations SET content = replace(content, 'другий', 'інший') WHERE seq = 2",
    )  # fmt: skip
    assert got == "entry 2: content_sha does not match its content"


async def test_an_entry_content_rehashed(tmp_path: Path, make_post: MakePost) -> None:
    # content and content_sha both rewritten: the entry's own hash gives it away
    path = tmp_path / "t.db"
    con_sql = "SELECT content FROM observations WHERE seq = 5"
    async with await Archive.open(path) as a:
        await a.write(
            "INSERT INTO channels (id, username, source, created_at) VALUES (?, 'vsaldo', 'web',"
            " '2024-05-01 00:00:00')",
            (CHANNEL_ID,),
        )
        await history(a, make_post)
        content = (await a.fetchone(con_sql))[0].replace("listing", "lstng")
    tamper(
        path, "UPDATE observations SET content = ?, content_sha = ? WHERE seq = 5",
        content, chain.sha256_hex(content.encode()),
    )  # fmt: skip
    async with await Archive.open(path) as a:
        assert str(await verify(a)) == "entry 5: entry_hash does not match its recomputed hash"


async def test_entries_reordered(tmp_path: Path, make_post: MakePost) -> None:
    got = await broken_after(
        tmp_path, make_post,
        "UPDATE observations SET seq = -1 WHERE seq = 3;"
        " UPDATE observations SET seq = 3 WHERE seq = 4;"
        " UPDATE observations SET seq = 4 WHERE seq = -1;",
    )  # fmt: skip
    assert got == "entry 3: prev_hash does not match the previous entry's entry_hash"


async def test_an_entry_removed(tmp_path: Path, make_post: MakePost) -> None:
    got = await broken_after(tmp_path, make_post, "DELETE FROM observations WHERE seq = 4")
    assert got == "entry 5: expected seq 4 after 3"


async def test_a_capture_changed(tmp_path: Path, make_post: MakePost) -> None:
    got = await broken_after(
        tmp_path, make_post, "UPDATE captures SET body = ?",
        zlib.compress(b"HTTP/1.1 200 OK\r\n\r\n<html>something else</html>"),
    )  # fmt: skip
    assert got.startswith("entry 1: capture ") and got.endswith("'s bytes do not match its hash")


async def test_a_pruned_capture_still_verifies(tmp_path: Path, make_post: MakePost) -> None:
    path = tmp_path / "t.db"
    async with await Archive.open(path) as a:
        await a.write(
            "INSERT INTO channels (id, username, source, created_at) VALUES (?, 'vsaldo', 'web',"
            " '2024-05-01 00:00:00')",
            (CHANNEL_ID,),
        )
        await history(a, make_post)
        # retention a year on: every entry naming a capture is older than its cutoff
        later = datetime.now(UTC) + timedelta(days=400)
        assert await prune_captures(a, 30, now=later) == 1
    async with await Archive.open(path) as a:
        assert await verify(a) is None


async def test_a_capture_deleted_by_hand_is_named(tmp_path: Path, make_post: MakePost) -> None:
    """Not retention: a capture gone though no cutoff reached its entries (it passed as
    "pruned" before)."""
    path = tmp_path / "t.db"
    async with await Archive.open(path) as a:
        await a.write(
            "INSERT INTO channels (id, username, source, created_at) VALUES (?, 'vsaldo', 'web',"
            " '2024-05-01 00:00:00')",
            (CHANNEL_ID,),
        )
        await history(a, make_post)
        first = (await entries_for_post(a, (await a.fetchone("SELECT min(id) FROM posts"))[0]))[0]
        # a retention cutoff that has passed, but not these entries
        assert await prune_captures(a, 30, now=datetime.now(UTC)) == 0
    tamper(path, "DELETE FROM captures")
    async with await Archive.open(path) as a:
        broken = await verify(a)
    assert broken is not None and broken.seq == first.seq
    assert "is missing, and retention cannot have removed it (the entry is not older" in (
        broken.reason
    )


async def test_a_version_filled_in_later_still_verifies(
    archive: Archive, make_channel: MakeChannel, make_post: MakePost
) -> None:
    # A photo an export gives no stable id for, then Telegram's id for it: the same version,
    # its content_sha filled in place (record.md), which is not tampering: verify compares the
    # logged text and entities.
    await make_channel()
    unknown = make_post(1, "фото", media=(Media("photo"),))
    known = make_post(1, "фото", media=(Media("photo", file_unique_id="photo:1"),))
    await ingest(archive, [unknown], source="export", alerts=False)
    before = await archive.fetchone("SELECT content_sha FROM versions")
    await ingest(archive, [known], source="telethon", alerts=False)
    after = await archive.fetchone("SELECT content_sha FROM versions")
    assert before[0] != after[0]  # filled in place
    assert await count(archive) == 1
    assert await verify(archive) is None
