"""Archives older than the log get one: the migration rebuilds it from posts, versions and
post_events in (observed time, id) order, each entry marked reconstructed, and it verifies;
new observations chain on after it."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

from conftest import CHANNEL_ID, MakePost

from archiver.evidence.log import verify
from archiver.store.archive import Archive
from archiver.store.deletions import confirm_deleted
from archiver.store.ingest import ingest
from archiver.store.schema import MIGRATIONS
from tests.store.test_record_migration import _schema_3_archive


def _before_the_log(path: Path) -> None:
    """Take the archive back to the schema before the log (what the previous telewatch left):
    the log's migration and every later one undone."""
    log = next(i for i, m in enumerate(MIGRATIONS) if "'evidence.backfill'" in m)
    later = [t for m in MIGRATIONS[log + 1 :] for t in re.findall(r"CREATE TABLE (\w+)", m)]
    con = sqlite3.connect(path)
    con.executescript(
        "".join(f"DROP TABLE {t};" for t in later)
        + f"""
        DROP TABLE observations; DROP TABLE captures; DROP TABLE log_roots;
        DELETE FROM meta WHERE key = 'evidence.backfill';
        PRAGMA user_version = {log};
        """
    )
    con.close()


async def test_an_archive_of_the_previous_schema_gets_its_log(
    tmp_path: Path, make_post: MakePost
) -> None:
    path = tmp_path / "old.db"
    async with await Archive.open(path) as a:
        await a.write(
            "INSERT INTO channels (id, username, source, created_at) VALUES (?, 'vsaldo',"
            " 'telethon', '2024-05-01 00:00:00')",
            (CHANNEL_ID,),
        )
        await ingest(a, [make_post(1, "one"), make_post(2, "two")], source="web", alerts=False)
        await ingest(a, [make_post(1, "one, edited")], source="web", alerts=False)
        await confirm_deleted(a, CHANNEL_ID, [2], how="live", alerts=False)
    _before_the_log(path)
    async with await Archive.open(path) as a:
        rows = await a.fetchall("SELECT seq, kind, message_id, content FROM observations")
        assert [(r[0], r[1], r[2]) for r in rows] == [
            (1, "seen", 1), (2, "seen", 2), (3, "edited", 1), (4, "deleted", 2),
        ]  # fmt: skip
        contents = [json.loads(r[3]) for r in rows]
        assert all(c["reconstructed"] is True for c in contents)
        assert contents[2]["version"]["text"] == "one, edited"
        assert contents[3]["how"] == "live"
        assert await verify(a) is None
        # and the log goes on from there
        await ingest(a, [make_post(3, "three")], source="web", alerts=False)
        last = await a.fetchone("SELECT seq, content FROM observations ORDER BY seq DESC")
        assert last[0] == 5 and "reconstructed" not in json.loads(last[1])
        assert await verify(a) is None
    async with await Archive.open(path) as a:  # once only
        assert (await a.fetchone("SELECT count(*) FROM observations"))[0] == 5


async def test_a_schema_3_archive_migrates_to_a_verified_log(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _schema_3_archive(path)
    async with await Archive.open(path) as a:
        rows = await a.fetchall("SELECT kind, message_id, at FROM observations ORDER BY seq")
        assert [(r[0], r[1]) for r in rows] == [
            ("seen", 1), ("seen", 2), ("seen", 3), ("seen", 4), ("edited", 1), ("edited", 1),
            ("missing", 2), ("deleted", 3), ("deleted", 4),
        ]  # fmt: skip
        assert [r[2] for r in rows] == sorted(r[2] for r in rows)
        assert await verify(a) is None
