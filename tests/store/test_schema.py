"""The archive file: pragmas on every connection, migrations keyed on user_version, and
clear errors for files that are not (or not yet) ours."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
from conftest import MakeChannel, MakePost

from archiver.errors import TelewatchError
from archiver.store.archive import BUSY_TIMEOUT_MS, PAGE_SIZE, Archive, ArchiveError
from archiver.store.schema import MIGRATIONS


async def pragma(archive: Archive, name: str) -> object:
    row = await archive.fetchone(f"PRAGMA {name}")
    assert row is not None
    return row[0]


async def test_new_archive_is_migrated_with_wal_busy_timeout_and_foreign_keys(
    archive: Archive,
) -> None:
    assert await pragma(archive, "user_version") == len(MIGRATIONS)
    assert str(await pragma(archive, "journal_mode")).lower() == "wal"
    assert await pragma(archive, "busy_timeout") == BUSY_TIMEOUT_MS
    assert await pragma(archive, "foreign_keys") == 1
    assert await pragma(archive, "page_size") == PAGE_SIZE == 16384


async def test_the_schema_has_the_tables_the_issue_asks_for(archive: Archive) -> None:
    rows = await archive.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
    names = {r[0] for r in rows}
    assert {"channels", "channel_versions", "posts", "versions", "versions_fts"} <= names


async def test_foreign_keys_are_enforced(archive: Archive) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        async with archive.transaction() as db:
            await db.execute(
                "INSERT INTO posts (channel_id, message_id, date, first_seen_at, source)"
                " VALUES (-1009999, 1, '2024-01-01 00:00:00', '2024-01-01 00:00:00', 'x')"
            )


async def test_reopening_is_a_no_op(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    a = await Archive.open(path)
    async with a.transaction() as db:
        await db.execute("INSERT INTO meta (key, value) VALUES ('probe', 'kept')")
    schema = await a.fetchall("SELECT type, name, sql FROM sqlite_master ORDER BY name")
    await a.close()

    b = await Archive.open(path)
    try:
        assert await pragma(b, "user_version") == len(MIGRATIONS)
        assert await b.get_meta("probe") == "kept"
        again = await b.fetchall("SELECT type, name, sql FROM sqlite_master ORDER BY name")
        assert [tuple(r) for r in again] == [tuple(r) for r in schema]
        # Every connection gets its pragmas, not only the one that created the file.
        assert await pragma(b, "foreign_keys") == 1
        assert await pragma(b, "busy_timeout") == BUSY_TIMEOUT_MS
    finally:
        await b.close()


async def test_a_file_from_a_newer_telewatch_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    with sqlite3.connect(path) as con:
        con.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(ArchiveError) as err:
        await Archive.open(path)
    message = str(err.value)
    assert str(path) in message
    assert "newer telewatch" in message
    assert "upgrade" in message
    assert "\n" not in message
    assert isinstance(err.value, TelewatchError)


async def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 200)
    with pytest.raises(ArchiveError) as err:
        await Archive.open(path)
    assert str(path) in str(err.value)
    assert "not a telewatch archive" in str(err.value)
    assert path.read_text().startswith("these are my notes")  # never overwritten


async def test_open_without_create_on_a_missing_file_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "a.db"
    with pytest.raises(ArchiveError, match="telewatch import"):
        await Archive.open(path, create=False)
    assert not path.parent.exists()


async def test_close_is_idempotent_and_reported(tmp_path: Path) -> None:
    a = await Archive.open(tmp_path / "a.db")
    assert not a.closed
    await a.close()
    await a.close()
    assert a.closed


async def test_a_failed_transaction_rolls_back(archive: Archive) -> None:
    with pytest.raises(RuntimeError):
        async with archive.transaction() as db:
            await db.execute("INSERT INTO meta (key, value) VALUES ('half', 'done')")
            raise RuntimeError("boom")
    assert await archive.get_meta("half") is None
    # The archive is usable afterwards: no transaction left open.
    async with archive.transaction() as db:
        await db.execute("INSERT INTO meta (key, value) VALUES ('after', 'ok')")
    assert await archive.get_meta("after") == "ok"


async def test_fts_is_an_external_content_table_over_versions(archive: Archive) -> None:
    row = await archive.fetchone("SELECT sql FROM sqlite_master WHERE name = 'versions_fts'")
    assert row is not None
    sql = row[0]
    assert 'content="versions"' in sql  # the spelling Datasette's detect_fts looks for
    triggers = await archive.fetchall(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'versions'"
    )
    # Inserts are indexed by ingest itself (migration 2, twice as fast); deletions and updates
    # made by any tool are followed by triggers.
    assert {r[0] for r in triggers} == {"versions_ad", "versions_au"}


async def test_the_index_stays_consistent_through_ingest_and_hand_edits(
    archive: Archive, make_channel: MakeChannel, make_post: MakePost
) -> None:
    from archiver.store.ingest import ingest

    await make_channel()
    await ingest(archive, [make_post(i, f"эвакуация номер {i}") for i in range(1, 6)],
                 source="export", alerts=False)  # fmt: skip
    await ingest(archive, [make_post(2, "обстріл")], source="export", alerts=False)
    async with archive.transaction() as db:  # what a Datasette or sqlite-utils user might do
        await db.execute("UPDATE versions SET words = 'ручная правка'"
                         " WHERE id = (SELECT min(id) FROM versions)")  # fmt: skip
        await db.execute("DELETE FROM versions WHERE id = (SELECT max(id) FROM versions)")
    async with archive.transaction() as db:
        # FTS5 raises "database disk image is malformed" when index and content disagree.
        await db.execute(
            "INSERT INTO versions_fts (versions_fts, rank) VALUES ('integrity-check', 1)"
        )
    hits = await archive.fetchall(
        "SELECT rowid FROM versions_fts WHERE versions_fts MATCH 'words : \"правка\"'"
    )
    assert len(hits) == 1


def _schema_2_archive(path: Path) -> None:
    """An archive as telewatch wrote it before migration 3: a ``lemmas`` column, indexed."""
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode = WAL")  # as telewatch made it
    con.executescript(MIGRATIONS[0])
    con.executescript(MIGRATIONS[1])
    con.executescript(
        """
        PRAGMA user_version = 2;
        INSERT INTO channels (id, username, title, source, created_at)
        VALUES (-1001811111111, 'vsaldo', 'Сальдо', 'export', '2024-05-01 12:00:00');
        INSERT INTO posts (id, channel_id, message_id, date, first_seen_at, source,
                           current_version_id, version_count, edited)
        VALUES (1, -1001811111111, 7, '2024-05-01 12:00:00', '2024-05-01 12:00:00', 'export',
                2, 2, 1);
        INSERT INTO versions (id, post_id, text, seen_at, sha256, source, raw, words, lemmas)
        VALUES (1, 1, 'Объявлена эвакуация', '2024-05-01 12:00:00', 'a', 'export', '{"id":7}',
                'объявлена эвакуация', 'объявить эвакуация'),
               (2, 1, 'Эвакуацию отменили', '2024-05-01 13:00:00', 'b', 'export', NULL,
                'эвакуацию отменили', 'отменить эвакуация');
        INSERT INTO versions_fts (rowid, words, lemmas) SELECT id, words, lemmas FROM versions;
        INSERT INTO alerts (post_id, version_id, prev_version_id, recipient, kind, rules,
                            created_at)
        VALUES (1, 2, 1, 42, 'edited', '["r"]', '2024-05-01 13:00:00');
        """
    )
    con.commit()
    con.close()


async def test_migration_3_drops_the_lemmas_and_keeps_every_version(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from archiver.query import parse
    from archiver.store.search import search

    caplog.set_level(logging.INFO, logger="archiver.store.archive")
    new = await Archive.open(tmp_path / "new.db")
    await new.close()
    assert not [r for r in caplog.records if "migrating" in r.getMessage()]  # quiet when new

    path = tmp_path / "old.db"
    _schema_2_archive(path)
    archive = await Archive.open(path)
    assert [r.getMessage() for r in caplog.records if "migrating" in r.getMessage()] == [
        f"archive {path}: migrating schema {n} -> {n + 1}" for n in range(2, len(MIGRATIONS))
    ]
    try:
        assert await pragma(archive, "user_version") == len(MIGRATIONS)
        assert await pragma(archive, "foreign_keys") == 1
        assert await pragma(archive, "page_size") == 4096  # an existing file keeps its pages
        columns = [r[1] for r in await archive.fetchall("PRAGMA table_info(versions)")]
        assert "lemmas" not in columns and "words" in columns
        rows = await archive.fetchall("SELECT id, text, raw, words FROM versions ORDER BY id")
        assert [tuple(r) for r in rows] == [
            (1, "Объявлена эвакуация", '{"id":7}', "объявлена эвакуация"),
            (2, "Эвакуацию отменили", None, "эвакуацию отменили"),
        ]
        assert await archive.fetchall("PRAGMA foreign_key_check") == []
        alert = await archive.fetchone("SELECT version_id, prev_version_id FROM alerts")
        assert alert is not None and tuple(alert) == (2, 1)
        async with archive.transaction() as db:  # the rebuilt index agrees with its content
            await db.execute(
                "INSERT INTO versions_fts (versions_fts, rank) VALUES ('integrity-check', 1)"
            )
        # Word forms now come from the query: "эвакуация" finds the edited post's new text.
        hits = await search(archive, parse("эвакуация"))
        assert [(h.message_id, h.text) for h in hits] == [(7, "Эвакуацию отменили")]
        # The triggers follow the new table: a hand edit is re-indexed.
        async with archive.transaction() as db:
            await db.execute("UPDATE versions SET words = 'ручная правка' WHERE id = 2")
        found = await archive.fetchall(
            "SELECT rowid FROM versions_fts WHERE versions_fts MATCH 'правка'"
        )
        assert [r[0] for r in found] == [2]
    finally:
        await archive.close()


async def test_an_archive_being_upgraded_elsewhere_is_busy_not_damaged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by review: another process's long migration holds the write lock; opening the
    archive meanwhile said "not a telewatch archive or damaged"."""
    import archiver.store.archive as archive_module

    monkeypatch.setattr(archive_module, "BUSY_TIMEOUT_MS", 200)
    path = tmp_path / "old.db"
    _schema_2_archive(path)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # as a migrating telewatch does
    try:
        with pytest.raises(ArchiveError, match="is busy: another telewatch process") as info:
            await Archive.open(path)
        assert "damaged" not in str(info.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    archive = await Archive.open(path)  # free again: it migrates
    try:
        assert await pragma(archive, "user_version") == len(MIGRATIONS)
    finally:
        await archive.close()


async def test_a_migration_another_process_ran_meanwhile_is_not_run_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by review: the version was read before waiting for the write lock, so a second
    process started during an upgrade ran the same migration again once it got the lock."""
    import asyncio
    import threading

    from archiver.store.archive import _statements

    path = tmp_path / "old.db"
    _schema_2_archive(path)
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("PRAGMA foreign_keys = OFF")
    holder.execute("BEGIN IMMEDIATE")
    locked = threading.Event()

    def other_process_migrates() -> None:
        locked.wait(5)
        for statement in _statements(MIGRATIONS[2]):
            holder.execute(statement)
        holder.execute("PRAGMA user_version = 3")
        holder.execute("COMMIT")

    caplog.set_level(logging.INFO, logger="archiver.store.archive")
    worker = threading.Thread(target=other_process_migrates)
    worker.start()
    opening = asyncio.create_task(Archive.open(path))
    await asyncio.sleep(0.3)  # it is waiting for the lock now
    locked.set()
    archive = await opening
    worker.join()
    holder.close()
    try:
        assert await pragma(archive, "user_version") == len(MIGRATIONS)
        assert not [r for r in caplog.records if "schema 2 -> 3" in r.getMessage()]
        columns = [r[1] for r in await archive.fetchall("PRAGMA table_info(versions)")]
        assert "lemmas" not in columns
    finally:
        await archive.close()


async def test_the_heartbeat_migration_gives_old_heartbeats_a_state(tmp_path: Path) -> None:
    """A heartbeat written before the migration that added its state reads as running (what
    it meant then)."""
    before = next(i for i, m in enumerate(MIGRATIONS) if "heartbeats ADD COLUMN state" in m)
    path = tmp_path / "old.db"
    con = sqlite3.connect(path)
    for migration in MIGRATIONS[:before]:
        con.executescript(migration)
    con.executescript(
        f"PRAGMA user_version = {before};"
        "INSERT INTO heartbeats (process, pid, at) VALUES ('run', 7, '2024-05-01 12:00:00');"
    )
    con.commit()
    con.close()
    async with await Archive.open(path) as archive:
        row = await archive.fetchone("SELECT pid, state, note FROM heartbeats")
        assert row is not None and tuple(row) == (7, "running", None)
