"""Backups: an online, verified copy; the newest N kept; restore gives back the same archive."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import MakeChannel, MakePost

from archiver.backup import (
    BackupError,
    backup,
    backup_name,
    list_backups,
    restore,
    verify,
)
from archiver.cli import cli
from archiver.lock import FileLock
from archiver.maintenance import maintain
from archiver.store.archive import Archive
from archiver.store.ingest import ingest

NOW = datetime(2024, 5, 1, 3, 30, tzinfo=UTC)


def post_count(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT count(*) FROM posts").fetchone()[0])
    finally:
        conn.close()


def texts(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT v.text FROM posts p JOIN versions v ON v.id = p.current_version_id "
            "ORDER BY p.message_id"
        ).fetchall()
        return [r[0] for r in rows]
    finally:
        conn.close()


async def test_backup_is_a_verified_copy_taken_while_the_archive_is_open(
    archive: Archive, make_channel: MakeChannel, make_post: MakePost, tmp_path: Path
) -> None:
    await make_channel()
    await ingest(
        archive, [make_post(i, f"пост {i}") for i in range(1, 6)], source="test", alerts=False
    )
    result = await backup(archive.path, tmp_path / "backups", keep=3, now=NOW)
    assert result.path == tmp_path / "backups" / "a-20240501T033000Z.db"
    assert result.removed == ()
    assert result.size == result.path.stat().st_size > 0
    verify(result.path)
    assert post_count(result.path) == 5
    # a backup is one self-contained file: no -wal beside it, no .partial left
    assert sorted(p.name for p in (tmp_path / "backups").iterdir()) == [result.path.name]
    # the copy is a working archive (search index included)
    copy = await Archive.open(result.path, create=False)
    try:
        row = await copy.fetchone(
            "SELECT count(*) FROM versions_fts WHERE versions_fts MATCH 'пост'"
        )
        assert row is not None and row[0] == 5
    finally:
        await copy.close()


async def test_keeps_the_newest_n(archive: Archive, tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    made = []
    for day in range(5):
        r = await backup(archive.path, folder, keep=2, now=NOW + timedelta(days=day))
        made.append(r.path)
    assert list_backups(archive.path, folder) == made[-2:]
    # foreign files in the folder are never touched
    (folder / "notes.txt").write_text("keep me")
    (folder / "other-20200101T000000Z.db").write_bytes(b"")
    await backup(archive.path, folder, keep=2, now=NOW + timedelta(days=9))
    assert (folder / "notes.txt").exists()
    assert (folder / "other-20200101T000000Z.db").exists()
    assert [p.name for p in list_backups(archive.path, folder)] == [
        made[-1].name,
        backup_name(archive.path, NOW + timedelta(days=9)),
    ]


async def test_two_backups_in_one_second_are_both_kept(archive: Archive, tmp_path: Path) -> None:
    first = await backup(archive.path, tmp_path, keep=5, now=NOW)
    second = await backup(archive.path, tmp_path, keep=5, now=NOW)
    assert first.path != second.path
    assert list_backups(archive.path, tmp_path) == [first.path, second.path]


async def test_restore_round_trip(
    archive: Archive, make_channel: MakeChannel, make_post: MakePost, tmp_path: Path
) -> None:
    await make_channel()
    await ingest(
        archive, [make_post(1, "первый"), make_post(2, "второй")], source="t", alerts=False
    )
    saved = await backup(archive.path, tmp_path / "b", keep=1, now=NOW)
    before = texts(archive.path)

    # later: more posts and an edit, then a restore
    await ingest(archive, [make_post(2, "второй, изменён"), make_post(3, "третий")], source="t",
                 alerts=False)  # fmt: skip
    assert texts(archive.path) != before
    await archive.close()

    await restore(saved.path, archive.path)
    assert texts(archive.path) == before
    reopened = await Archive.open(archive.path, create=False)
    try:
        await maintain(reopened)  # a restored archive is a working archive
        row = await reopened.fetchone("PRAGMA integrity_check")
        assert row is not None and row[0] == "ok"
    finally:
        await reopened.close()


def test_a_damaged_backup_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "a-20240501T033000Z.db"
    bad.write_bytes(b"SQLite format 3\x00" + b"\x00" * 200)
    with pytest.raises(BackupError, match=r"a-20240501T033000Z\.db"):
        verify(bad)
    with pytest.raises(BackupError, match="no such backup file"):
        verify(tmp_path / "missing.db")


def test_no_archive_no_backup(tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="no archive to back up"):
        from archiver.backup import backup_sync

        backup_sync(tmp_path / "none.db", tmp_path / "b", 3)


async def _new_archive(path: Path) -> None:
    await (await Archive.open(path)).close()


def test_cli_backup_and_restore(tmp_path: Path) -> None:
    archive = tmp_path / "a.db"
    asyncio.run(_new_archive(archive))
    config = tmp_path / "config.toml"
    config.write_text(
        f'[storage]\npath = "{archive}"\nbackup_dir = "{tmp_path / "bk"}"\nbackup_keep = 2\n'
    )
    runner = CliRunner()
    result = runner.invoke(cli, ["--config", str(config), "backup"])
    assert result.exit_code == 0, result.output
    assert "verified" in result.output
    [made] = list_backups(archive, tmp_path / "bk")

    # a restore while a run or sync holds the archive refuses, and changes nothing
    held = FileLock(archive.with_name("a.db.lock"), "the archive")
    held.acquire()
    try:
        result = runner.invoke(cli, ["--config", str(config), "restore", str(made), "--yes"])
    finally:
        held.release()
    assert result.exit_code == 1
    assert "in use by another telewatch" in result.output

    result = runner.invoke(cli, ["--config", str(config), "restore", str(made), "--yes"])
    assert result.exit_code == 0, result.output
    assert "restored" in result.output

    result = runner.invoke(cli, ["--config", str(config), "maintenance"])
    assert result.exit_code == 0, result.output
