"""`telewatch log verify` against changes made to the record itself (posts, post_events)
rather than to the log: the log says a post was deleted, so an archive that no longer says so,
or says so without the log, is broken (docs/evidence.md, Verifying)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from conftest import CHANNEL_ID, MakeChannel, MakePost

from archiver.evidence.log import verify
from archiver.store.archive import Archive
from archiver.store.deletions import confirm_deleted, confirm_present, mark_missing
from archiver.store.ingest import ingest


async def history(archive: Archive, make_post: MakePost) -> None:
    """Post 1 edited and reverted; post 2 missing, deleted, restored, missing again, present;
    post 3 deleted."""
    await ingest(
        archive, [make_post(1, "one"), make_post(2, "two"), make_post(3, "three")],
        source="web", alerts=False,
    )  # fmt: skip
    await ingest(archive, [make_post(1, "one, fixed")], source="web", alerts=False)
    await ingest(archive, [make_post(1, "one")], source="web", alerts=False)
    await mark_missing(archive, CHANNEL_ID, [2], source="web")
    await confirm_deleted(archive, CHANNEL_ID, [2, 3], how="web_embed", alerts=False)
    await confirm_present(archive, CHANNEL_ID, [2], how="web_embed", alerts=False)
    await mark_missing(archive, CHANNEL_ID, [2], source="web")
    await confirm_present(archive, CHANNEL_ID, [2], how="web_embed", alerts=False)


@pytest.fixture
async def made(archive: Archive, make_channel: MakeChannel, make_post: MakePost) -> Path:
    await make_channel()
    await history(archive, make_post)
    assert await verify(archive) is None  # the honest archive verifies
    path = Path(archive.path)
    await archive.close()
    return path


async def broken_after(path: Path, *statements: str) -> str | None:
    con = sqlite3.connect(path)
    with con:
        for s in statements:
            con.execute(s)
    con.close()
    async with await Archive.open(path) as a:
        broken = await verify(a)
    return None if broken is None else str(broken)


def post_id(path: Path, message_id: int) -> int:
    con = sqlite3.connect(path)
    (pid,) = con.execute("SELECT id FROM posts WHERE message_id = ?", (message_id,)).fetchone()
    con.close()
    return int(pid)


async def test_a_deletion_removed_from_the_record_is_found(made: Path) -> None:
    """The deleted post 3 made present again, its deletion event dropped: the log still says
    it was deleted."""
    pid = post_id(made, 3)
    broken = await broken_after(
        made,
        f"DELETE FROM post_events WHERE post_id = {pid}",
        f"UPDATE posts SET state = 'present', state_at = NULL, deleted_at = NULL,"
        f" deleted_how = NULL, deleted_evidence = NULL WHERE id = {pid}",
    )
    assert broken is not None and "post_events" in broken


async def test_a_post_state_changed_without_an_event_is_found(made: Path) -> None:
    pid = post_id(made, 1)
    broken = await broken_after(
        made,
        f"UPDATE posts SET state = 'deleted', deleted_at = '2024-05-02 00:00:00',"
        f" deleted_how = 'live' WHERE id = {pid}",
    )
    assert broken is not None and "state" in broken and "deleted" in broken


async def test_a_deletion_state_undone_without_touching_events_is_found(made: Path) -> None:
    pid = post_id(made, 3)
    broken = await broken_after(
        made, f"UPDATE posts SET state = 'present', deleted_at = NULL WHERE id = {pid}"
    )
    assert broken is not None and "state" in broken


async def test_an_event_whose_evidence_is_rewritten_is_found(made: Path) -> None:
    pid = post_id(made, 3)
    broken = await broken_after(
        made,
        "UPDATE post_events SET evidence = 'Telegram reported the deletion', how = 'live'"
        f" WHERE post_id = {pid} AND kind = 'deleted'",
    )
    assert broken is not None and "post_events" in broken


async def test_an_event_added_without_an_entry_is_found(made: Path) -> None:
    pid = post_id(made, 1)
    broken = await broken_after(
        made,
        "INSERT INTO post_events (post_id, kind, version_id, at, source, how, evidence)"
        f" VALUES ({pid}, 'deleted', NULL, '2024-05-03 00:00:00', 'manual', 'manual', 'x')",
    )
    assert broken is not None and "post_events" in broken


async def test_a_post_added_without_an_entry_is_found(made: Path) -> None:
    broken = await broken_after(
        made,
        "INSERT INTO posts (id, channel_id, message_id, date, first_seen_at, source,"
        " current_version_id) VALUES (999, "
        f"{CHANNEL_ID}, 99, '2024-05-01 00:00:00', '2024-05-01 00:00:00', 'web', 1)",
    )
    assert broken is not None and "no 'seen' entry" in broken


async def test_an_entry_moved_to_another_post_is_found(made: Path) -> None:
    """``observations.post_id`` is outside the hashes: it must agree with the channel and
    message the entry's content names (a bundle selects a post's entries by it)."""
    one, three = post_id(made, 1), post_id(made, 3)
    broken = await broken_after(
        made,
        f"UPDATE observations SET post_id = {one} WHERE post_id = {three} AND kind = 'deleted'",
    )
    assert broken is not None and "post_id" in broken


async def test_a_version_added_without_an_entry_is_found(made: Path) -> None:
    """A text slipped into a post's history (and made current) without the log."""
    pid = post_id(made, 1)
    broken = await broken_after(
        made,
        "INSERT INTO versions (id, post_id, text, seen_at, sha256, source, words) VALUES"
        f" (424242, {pid}, 'a text nobody saw', '2024-05-01 00:00:00', 'x', 'web', '')",
        f"UPDATE posts SET current_version_id = 424242 WHERE id = {pid}",
    )
    assert broken is not None and "version 424242" in broken
