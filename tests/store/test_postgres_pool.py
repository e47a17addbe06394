"""The PostgreSQL archive's connection pool (archiver/store/postgres.py, psycopg_pool): tasks
run statements side by side, a transaction keeps its connection and the write lock, and a
connection the server drops is made again."""

from __future__ import annotations

import asyncio
import contextvars
import sqlite3

import psycopg

from archiver.store.archive import Archive

WITHIN = 20.0  # a functional time-out, not a timing claim


async def _until(check: str, url: str) -> None:
    """Wait until the query ``check`` (on its own connection) answers true."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        while not (await (await conn.execute(check)).fetchone() or (False,))[0]:
            await asyncio.sleep(0.02)


async def test_a_read_runs_while_another_task_waits_on_its_statement(pg_url: str) -> None:
    async with (
        await Archive.open(pg_url) as archive,
        await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as other,
    ):
        await other.execute("SELECT pg_advisory_lock(42)")
        blocked = asyncio.create_task(archive.fetchone("SELECT pg_advisory_lock(42)"))
        await _until(
            "SELECT count(*) = 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted", pg_url
        )
        # One connection would queue this behind the waiting statement; the pool runs it now
        row = await asyncio.wait_for(archive.fetchone("SELECT 7"), WITHIN)
        assert row is not None and row[0] == 7
        assert not blocked.done()
        await other.execute("SELECT pg_advisory_unlock(42)")
        await asyncio.wait_for(blocked, WITHIN)


async def test_a_transaction_keeps_its_connection_and_others_do_not_see_it_before_commit(
    pg_url: str,
) -> None:
    async with await Archive.open(pg_url) as archive:
        seen_inside: list[object] = []
        seen_outside: list[object] = []
        async with archive.transaction() as db:
            await db.execute("INSERT INTO meta (key, value) VALUES ('k', 'v')")
            row = await archive.fetchone("SELECT value FROM meta WHERE key = 'k'")
            seen_inside.append(None if row is None else row[0])
            # another task (the bot's command handler: a context of its own) reads beside it
            other = await asyncio.get_running_loop().create_task(
                archive.fetchone("SELECT value FROM meta WHERE key = 'k'"),
                context=contextvars.Context(),
            )
            seen_outside.append(None if other is None else other[0])
        assert seen_inside == ["v"]  # the transaction reads its own write
        assert seen_outside == [None]  # not visible elsewhere before the commit
        row = await archive.fetchone("SELECT value FROM meta WHERE key = 'k'")
        assert row is not None and row[0] == "v"


async def test_writers_of_two_processes_still_take_turns(pg_url: str) -> None:
    async with await Archive.open(pg_url) as one, await Archive.open(pg_url) as two:
        order: list[str] = []

        async def second() -> None:
            async with two.transaction() as db:
                order.append("two")
                await db.execute("INSERT INTO meta (key, value) VALUES ('two', '2')")

        async with one.transaction() as db:
            await db.execute("INSERT INTO meta (key, value) VALUES ('one', '1')")
            task = asyncio.create_task(second(), context=contextvars.Context())
            await _until(  # the second writer waits for the write lock
                "SELECT count(*) = 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
                pg_url,
            )
            order.append("one")
        await asyncio.wait_for(task, WITHIN)
        assert order == ["one", "two"]


async def test_a_connection_the_server_drops_is_made_again(pg_url: str) -> None:
    async with await Archive.open(pg_url) as archive:
        assert (await archive.fetchone("SELECT 1")) is not None
        async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as admin:
            cur = await admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            assert ((await cur.fetchone()) or (0,))[0] >= 1
        failures = 0
        for _ in range(3):  # the statement that meets the dead connection fails, once
            try:
                row = await archive.fetchone("SELECT 2")
                break
            except sqlite3.OperationalError:
                failures += 1
        assert failures <= 1
        assert row is not None and row[0] == 2
        async with archive.transaction() as db:  # and writing works again
            await db.execute("INSERT INTO meta (key, value) VALUES ('after', 'drop')")
        assert (await archive.get_meta("after")) == "drop"
