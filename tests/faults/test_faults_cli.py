"""Faults at the command line: a full disk during import and maintenance, a damaged archive,
an output folder that does not exist, a confirmation prompt with nobody to answer. Each ends
with one line naming the cause and the fix and a documented exit code, never a traceback.

The full disk is SQLite's own: ``PRAGMA max_page_count`` on the connection under test makes
the next growth fail with SQLITE_FULL ("database or disk is full"), exactly as a full disk
does (shared/TESTING.md)."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from archiver.cli import cli
from archiver.store.archive import Archive


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def export_file(path: Path, n: int) -> Path:
    messages = [
        {"id": i, "type": "message", "date_unixtime": str(1_700_000_000 + i),
         "text": f"post {i} " + "слово " * 200}
        for i in range(1, n + 1)
    ]  # fmt: skip
    doc = {"name": "Test", "type": "public_channel", "id": 1811111111, "messages": messages}
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


@pytest.fixture
def full_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every archive opened from now on may grow by two pages, no more."""
    real = Archive.open.__func__  # type: ignore[attr-defined]

    async def open_full(cls: Any, path: Any, **kw: Any) -> Archive:
        archive: Archive = await real(cls, path, **kw)
        row = await (await archive.db.execute("PRAGMA page_count")).fetchone()
        await archive.db.execute(f"PRAGMA max_page_count = {int(row[0]) + 2}")
        return archive

    monkeypatch.setattr(Archive, "open", classmethod(open_full))


def test_a_full_disk_during_import_is_one_line(tmp_path: Path, full_disk: None) -> None:
    db = tmp_path / "a.db"
    result = run("--db", str(db), "import", str(export_file(tmp_path / "result.json", 300)))
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        f"Error: {db}: the disk is full (database or disk is full); free some space and run the"
        " command again (the last batch was rolled back; nothing archived before it is lost)"
    )


def test_a_full_disk_during_maintenance_is_one_line(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    assert run("--db", str(db), "import", str(export_file(tmp_path / "r.json", 300))).exit_code == 0
    with sqlite3.connect(db) as conn:  # many FTS segments: the merge must write
        for _ in range(50):
            conn.execute("INSERT INTO versions_fts(versions_fts, rank) VALUES('automerge', 0)")
        # the index follows changes of the words (schema 4's trigger): new segments to merge
        conn.execute("UPDATE versions SET words = words || ' x' WHERE rowid % 7 = 0")
    with sqlite3.connect(db) as conn:  # no free pages left: the merge must grow the file
        conn.execute("VACUUM")
    real = Archive.open.__func__  # type: ignore[attr-defined]

    async def open_full(cls: Any, path: Any, **kw: Any) -> Archive:
        archive: Archive = await real(cls, path, **kw)
        row = await (await archive.db.execute("PRAGMA page_count")).fetchone()
        await archive.db.execute(f"PRAGMA max_page_count = {int(row[0])}")
        return archive

    with pytest.MonkeyPatch.context() as m:
        m.setattr(Archive, "open", classmethod(open_full))
        result = run("--db", str(db), "maintenance")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: {db}: the disk is full (database or disk is full); free some space and run the"
        " command again (the last batch was rolled back; nothing archived before it is lost)"
    ]


def damage(db: Path) -> None:
    """Overwrite every page after the first: the header and the schema stay, the b-trees of
    the tables do not (a disk that lost its writes, a copy taken mid-write)."""
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = conn.execute("PRAGMA page_size").fetchone()[0]
    size = db.stat().st_size
    with db.open("r+b") as f:
        f.seek(page)
        f.write(b"\xa5" * (size - page))


@pytest.mark.parametrize("command", [["stats"], ["export"], ["maintenance"], ["search", "слово"]])
def test_a_damaged_archive_says_restore_a_backup(tmp_path: Path, command: list[str]) -> None:
    db = tmp_path / "a.db"
    assert run("--db", str(db), "import", str(export_file(tmp_path / "r.json", 300))).exit_code == 0
    damage(db)
    result = run("--db", str(db), *command)
    assert result.exit_code == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"Error: {db}: ")
    assert "damaged" in last and "telewatch restore" in last


def test_export_to_a_missing_folder_names_it(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    assert run("--db", str(db), "import", str(export_file(tmp_path / "r.json", 3))).exit_code == 0
    out = tmp_path / "no" / "such" / "x.csv"
    result = run("--db", str(db), "export", "--output", str(out))
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"Error: --output {out}: cannot write (No such file or directory); check that the folder"
        " exists and is writable"
    )


def test_restore_with_nobody_to_confirm_says_use_yes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the default backup folder is data/backups here
    db = tmp_path / "a.db"
    assert run("--db", str(db), "import", str(export_file(tmp_path / "r.json", 3))).exit_code == 0
    assert run("--db", str(db), "backup").exit_code == 0
    [made] = list((tmp_path / "data" / "backups").glob("a-*.db"))
    result = run("--db", str(db), "restore", str(made), input="")  # stdin at its end
    assert result.exit_code == 1
    assert "Aborted" not in result.output
    assert result.output.strip().splitlines()[-1] == (
        f"Error: restore: nothing to ask for confirmation on (no terminal, or the connection"
        f" dropped); run `telewatch restore {made} --yes` to replace {db}"
    )


def test_an_invalid_buffer_from_telegram_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from telethon.errors import InvalidBufferError

    import archiver.sources.telethon as tg

    async def login(*a: Any, **kw: Any) -> Any:
        raise InvalidBufferError(b"\x6c\xfe\xff\xff")

    monkeypatch.setattr(tg, "login", login)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TELEWATCH_API_ID", "1")
    monkeypatch.setenv("TELEWATCH_API_HASH", "0123456789abcdef")
    result = run("login")
    assert result.exit_code == 1
    assert (
        result.output.strip()
        .splitlines()[-1]
        .startswith(
            "Error: the connection to Telegram returned data that is not Telegram's"
            " (InvalidBufferError); check the network"
        )
    )


def test_asyncio_is_quiet_about_telethons_failed_pings(caplog: pytest.LogCaptureFixture) -> None:
    """No ERROR line with a traceback for a ping future Telethon failed with the network."""
    from archiver.cli import _loop_errors

    caplog.set_level("DEBUG")
    loop = asyncio.new_event_loop()
    try:
        failed = ConnectionError("Connection to Telegram failed")
        _loop_errors(loop, {"message": "Future exception was never retrieved", "exception": failed})
    finally:
        loop.close()
    assert [r.levelname for r in caplog.records if r.name == "archiver.cli"] == ["DEBUG"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_login_with_nothing_to_read_from_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review of issue 15: stdin at its end (cron, a dropped SSH session, `docker compose run`
    without -it) at the phone prompt printed click's bare "Aborted!"."""
    from functools import partial

    from fakes.telethon_client import FakeTelegram
    from sources.test_telethon_session import logging_in

    import archiver.sources.telethon as tg

    monkeypatch.setattr(tg, "login", partial(tg.login, factory=logging_in(FakeTelegram(), [])))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TELEWATCH_API_ID", "1")
    monkeypatch.setenv("TELEWATCH_API_HASH", "0123456789abcdef0123456789abcdef")
    result = CliRunner().invoke(cli, ["login"], input="")
    assert result.exit_code == 1, result.output
    assert "Aborted" not in result.output
    assert (
        result.output.strip()
        .splitlines()[-1]
        .startswith("Error: login: nothing to read the answers from")
    )
