"""``telewatch migrate --to postgresql://...`` (issue 18): a SQLite archive copied to the real
PostgreSQL of tests/pg.py, resumable after a failure, verified by counts and hashes."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from conftest import CHANNEL_ID, T0, new_post

from archiver.cli import cli
from archiver.models import ChannelInfo
from archiver.rules import RuleLoader
from archiver.store import outbox, transfer
from archiver.store.access import set_access
from archiver.store.archive import Archive
from archiver.store.channels import upsert_channel
from archiver.store.deletions import confirm_deleted
from archiver.store.ingest import ingest
from archiver.store.personal_rules import add_rule
from archiver.store.postgres import PgConnection
from archiver.store.transfer import MigrateError, migrate, open_pair

OTHER = -1002222222222


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for var in ("TELEWATCH_CONFIG", "TELEWATCH_DATABASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    yield


async def _fill(path: Path, posts: int = 25) -> None:
    """An archive with something in most tables: two channels, posts with edits and a
    deletion, rules and the alerts they queued, access, mutes, a heartbeat."""
    async with await Archive.open(path) as a:
        await upsert_channel(a, ChannelInfo(CHANNEL_ID, "vsaldo", "Сальдо"), source="telethon")
        await upsert_channel(a, ChannelInfo(OTHER, None, "Херсонська ОДА"), source="export")
        await add_rule(a, 77, "эвакуация")
        RuleLoader([]).install(a)
        batch = [new_post(i, f"эвакуация {i}" if i % 3 else f"пост {i}") for i in range(1, posts)]
        batch.append(new_post(1, "Херсон", channel_id=OTHER))
        await ingest(a, batch, source="telethon", alerts=True)
        edits = [new_post(i, f"эвакуация {i}, правка", edit_date=T0 + timedelta(days=1))
                 for i in range(1, 6)]  # fmt: skip
        await ingest(a, edits, source="telethon", alerts=True)
        await confirm_deleted(a, CHANNEL_ID, [2], how="live", alerts=True)
        await set_access(a, 55, False, by=1)
        await outbox.mute(a, 77, ("эвакуация",), datetime(2030, 1, 1, tzinfo=UTC))
        await a.heartbeat("run", 4242)


async def _counts(a: Archive) -> dict[str, int]:
    out = {}
    for t in ("channels", "posts", "versions", "post_events", "alerts", "rules", "access",
              "mutes", "heartbeats", "channel_versions"):  # fmt: skip
        row = await a.fetchone(f"SELECT count(*) FROM {t}")
        assert row is not None
        out[t] = int(row[0])
    return out


async def _migrate(path: Path, url: str) -> list[transfer.TableCopy]:
    source, target = await open_pair(path, url)
    try:
        return await migrate(source, target)
    finally:
        await target.close()
        await source.close()


def run(*args: str, db: Path | None = None, url: str | None = None) -> Result:
    env = {"TELEWATCH_DATABASE_URL": url} if url else {}
    argv = (["--db", str(db)] if db is not None else []) + list(args)
    return CliRunner().invoke(cli, argv, env=env, catch_exceptions=False)


async def test_every_row_is_copied_and_verified(tmp_path: Path, pg_url: str) -> None:
    db = tmp_path / "a.db"
    await _fill(db)
    copied = await _migrate(db, pg_url)
    async with await Archive.open(db) as a, await Archive.open(pg_url) as b:
        before = await _counts(a)
        assert await _counts(b) == before
        assert before["alerts"] > 0 and before["post_events"] > 0 and before["mutes"] == 1
        rows = {t.name: t for t in copied}
        assert rows["posts"].rows == rows["posts"].copied == before["posts"]
        # ids are kept: a version's id is its sort key
        ids = "SELECT id, post_id, sha256 FROM versions ORDER BY id"
        assert [tuple(r) for r in await a.fetchall(ids)] == [
            tuple(r) for r in await b.fetchall(ids)
        ]
        # and new rows continue after them on both
        await add_rule(b, 78, "мост")
        await add_rule(a, 78, "мост")
        last = "SELECT max(id) FROM rules"
        assert (await a.fetchone(last))[0] == (await b.fetchone(last))[0]  # type: ignore[index]
    # The archive reads the same through the commands
    for args in (("stats", "--json"), ("alerts", "--json"), ("history", "vsaldo", "1")):
        on_sqlite = await asyncio.to_thread(run, *args, db=db)
        on_pg = await asyncio.to_thread(run, *args, url=pg_url)
        assert on_sqlite.exit_code == on_pg.exit_code == 0, on_pg.output
        assert on_pg.stdout == on_sqlite.stdout, args


async def test_a_failed_run_continues_where_it_stopped_and_duplicates_nothing(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "a.db"
    await _fill(db, posts=40)
    monkeypatch.setattr(transfer, "BATCH", 7)
    real = PgConnection.copy_rows
    calls = {"versions": 0}

    async def fail_third_versions_batch(self: Any, table: str, *args: Any) -> None:
        if table == "versions":
            calls["versions"] += 1
            if calls["versions"] == 3:
                raise sqlite3.OperationalError("could not write to file: No space left")
        await real(self, table, *args)

    monkeypatch.setattr(PgConnection, "copy_rows", fail_third_versions_batch)
    with pytest.raises(MigrateError) as err:
        await _migrate(db, pg_url)
    line = str(err.value)
    assert line.startswith("migrate: table versions, the batch from id ")
    assert "No space left" in line and "run the same command again" in line
    assert "\n" not in line
    async with await Archive.open(pg_url) as b:
        assert (await _counts(b))["versions"] == 14  # two whole batches, none of the third

    monkeypatch.setattr(PgConnection, "copy_rows", real)
    again = {t.name: t for t in await _migrate(db, pg_url)}
    async with await Archive.open(db) as a, await Archive.open(pg_url) as b:
        assert await _counts(b) == await _counts(a)
        assert again["versions"].copied == again["versions"].rows - 14
        assert again["channels"].copied == 0  # done by the first run
    third = {t.name: t.copied for t in await _migrate(db, pg_url)}  # all there: nothing to do
    assert set(third.values()) == {0}


async def test_verification_finds_a_row_that_differs(tmp_path: Path, pg_url: str) -> None:
    db = tmp_path / "a.db"
    await _fill(db, posts=5)
    await _migrate(db, pg_url)
    async with await Archive.open(pg_url) as b, b.transaction() as tx:
        await tx.execute(
            "UPDATE versions SET text = 'подменено' WHERE id = (SELECT min(id) FROM versions)"
        )
    with pytest.raises(MigrateError, match=r"verification failed: table versions holds other"):
        await _migrate(db, pg_url)


async def test_a_database_holding_another_archive_is_refused(tmp_path: Path, pg_url: str) -> None:
    await _fill(tmp_path / "a.db", posts=3)
    await _fill(tmp_path / "b.db", posts=3)
    await _migrate(tmp_path / "a.db", pg_url)
    with pytest.raises(MigrateError, match="already holds a copy of another archive"):
        await _migrate(tmp_path / "b.db", pg_url)
    async with await Archive.open(pg_url) as used:  # made by telewatch, not by migrate
        await ingest(used, [new_post(1, "x")], source="telethon", alerts=False)


def test_the_command_copies_shows_each_table_and_says_what_next(
    tmp_path: Path, pg_url: str
) -> None:
    db = tmp_path / "a.db"
    asyncio.run(_fill(db, posts=6))
    result = run("migrate", "--to", pg_url, db=db)
    assert result.exit_code == 0, result.output
    assert "posts: 6 rows (6 copied now), verified" in result.stdout
    assert result.stdout.splitlines()[-1].endswith(
        "tables copied and verified; set [storage] url (or TELEWATCH_DATABASE_URL) to use it"
    )
    stats = [json.loads(x) for x in run("stats", "--json", url=pg_url).stdout.splitlines()]
    assert {s["channel_id"] for s in stats} == {CHANNEL_ID, OTHER}


def test_the_command_refuses_a_url_of_another_kind_in_one_line(tmp_path: Path) -> None:
    result = run("migrate", "--to", "mysql://u:s3cret@h/db", db=tmp_path / "a.db")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "Error: migrate: --to: expected a postgresql:// URL (not shown)"
    ]
