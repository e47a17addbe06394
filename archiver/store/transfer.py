"""Moving a SQLite archive to PostgreSQL (``telewatch migrate --to postgresql://...``).

Table by table, parents before children (the foreign keys), each read from SQLite in batches
in primary-key order and written to PostgreSQL in one transaction per batch. Resumable: a
table with an integer key continues after the highest id PostgreSQL already holds (batches
are committed whole, in key order), any other table is written with ``ON CONFLICT DO
NOTHING``; so a second run after a failure or Ctrl-C copies the rest and duplicates nothing.
The target must be empty or hold a copy of this same source (``meta`` key
:data:`SOURCE_KEY`). At the end each table is verified: the number of rows and a hash of its
rows (order-independent: the sum of a SHA-256 per row) must be equal on both sides.

The source should not change while it is copied (stop ``telewatch run``): rows changed after
their batch was copied would be found by the verification, which then fails and names the
table.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archiver.errors import TelewatchError
from archiver.store.archive import Archive, ts, utcnow
from archiver.store.postgres import PgConnection, redact

log = logging.getLogger(__name__)

BATCH = 2000
SOURCE_KEY = "migrated_from"  # meta key on the target: the source archive's path
# SQLite's own tables (the FTS5 index and its shadow tables): PostgreSQL indexes otherwise
_SQLITE_ONLY = ("versions_fts", "sqlite_")

Progress = Callable[[str, int, int], None]  # table, rows done, rows in the table


class MigrateError(TelewatchError):
    """The copy cannot start, or failed: what and what to do."""


@dataclass(frozen=True, slots=True)
class TableCopy:
    name: str
    rows: int  # in the source (and, verified, in the target)
    copied: int  # by this run (0 when a previous run had copied it all)


@dataclass(frozen=True, slots=True)
class _Table:
    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]  # primary key columns
    int_key: bool  # a single INTEGER primary key (the rowid): resumable by max(id)


async def _tables(source: Archive) -> list[_Table]:
    """SQLite's tables in an order where every table comes after those it references."""
    names = [
        r[0]
        for r in await source.fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        )
        if not r[0].startswith(_SQLITE_ONLY)
    ]
    info: dict[str, _Table] = {}
    parents: dict[str, set[str]] = {}
    for name in names:
        cols = await source.fetchall(f'PRAGMA table_info("{name}")')
        key = tuple(c["name"] for c in sorted(cols, key=lambda c: c["pk"]) if c["pk"])
        int_key = len(key) == 1 and any(
            c["name"] == key[0] and str(c["type"]).upper() == "INTEGER" for c in cols
        )
        info[name] = _Table(name, tuple(c["name"] for c in cols), key, int_key)
        fks = await source.fetchall(f'PRAGMA foreign_key_list("{name}")')
        parents[name] = {f["table"] for f in fks if f["table"] != name}
    ordered: list[_Table] = []
    done: set[str] = set()
    while len(ordered) < len(names):
        ready = [n for n in names if n not in done and parents[n] <= done]
        if not ready:
            raise MigrateError("the source's tables reference each other in a circle")
        for n in ready:
            ordered.append(info[n])
            done.add(n)
    return ordered


async def _pg_columns(pg: PgConnection, table: str) -> set[str]:
    rows = await pg.execute_fetchall(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = ?",
        (table,),
    )
    return {r[0] for r in rows}


def _row_hash(row: Sequence[Any]) -> int:
    return int.from_bytes(hashlib.sha256(repr(tuple(row)).encode()).digest(), "big")


async def _batches(
    source: Archive, t: _Table, after: int | None, size: int | None = None
) -> AsyncIterator[list[tuple[Any, ...]]]:
    """``t``'s rows in key order, ``size`` (else ``BATCH``) at a time after key ``after``, on
    either backend."""
    size = size or BATCH
    cols = ", ".join(f'"{c}"' for c in t.columns)
    order = ", ".join(f'"{c}"' for c in t.key)
    if t.int_key:
        last = after if after is not None else None
        while True:
            where = "" if last is None else f' WHERE "{t.key[0]}" > ?'
            rows = await source.fetchall(
                f'SELECT {cols} FROM "{t.name}"{where} ORDER BY {order} LIMIT {size}',
                () if last is None else (last,),
            )
            if not rows:
                return
            yield [tuple(r) for r in rows]
            last = rows[-1][t.columns.index(t.key[0])]
    else:
        offset = 0
        while True:
            rows = await source.fetchall(
                f'SELECT {cols} FROM "{t.name}" ORDER BY {order} LIMIT {size} OFFSET {offset}'
            )
            if not rows:
                return
            yield [tuple(r) for r in rows]
            offset += len(rows)


async def _copy_table(
    source: Archive, target: Archive, t: _Table, total: int, progress: Progress | None
) -> int:
    pg = _pg(target)
    after: int | None = None
    done = 0
    if t.int_key:
        row = await target.fetchone(f'SELECT max("{t.key[0]}"), count(*) FROM "{t.name}"')
        if row is not None and row[0] is not None:
            after, done = int(row[0]), int(row[1])
    if progress is not None:
        progress(t.name, done, total)
    insert = _upsert(t)
    copied = 0
    async for batch in _batches(source, t, after):
        try:
            async with target.transaction() as db:
                added = len(batch)
                if t.int_key:  # after the highest id: no conflict is possible, COPY is fastest
                    await pg.copy_rows(t.name, t.columns, batch)
                else:
                    cur = await db.executemany(insert, batch)
                    added = max(cur.rowcount, 0)
        except sqlite3.Error as exc:
            first = batch[0][t.columns.index(t.key[0])] if t.key else "?"
            raise MigrateError(
                f"migrate: table {t.name}, the batch from {t.key[0] if t.key else 'row'}"
                f" {first}: {exc}; the batches before it are copied: fix the cause and run the"
                " same command again to continue"
            ) from None
        copied += added
        done += len(batch)
        if progress is not None:
            progress(t.name, done, total)
    return copied


def _upsert(t: _Table) -> str:
    """The insert of a table without an integer key: the source's row wins over one the
    target has (a migration of the new database wrote ``meta`` rows; a previous run copied
    an older value), and only a changed row counts as copied."""
    cols = ", ".join(f'"{c}"' for c in t.columns)
    marks = ", ".join("?" * len(t.columns))
    sql = f'INSERT INTO "{t.name}" ({cols}) VALUES ({marks})'
    rest = [c for c in t.columns if c not in t.key]
    if not t.key or not rest:
        return sql + " ON CONFLICT DO NOTHING"
    keys = ", ".join(f'"{c}"' for c in t.key)
    sets = ", ".join(f'"{c}" = excluded."{c}"' for c in rest)
    old = ", ".join(f'"{t.name}"."{c}"' for c in rest)
    new = ", ".join(f'excluded."{c}"' for c in rest)
    return (
        f"{sql} ON CONFLICT ({keys}) DO UPDATE SET {sets}"
        f" WHERE ({old}, 0) IS DISTINCT FROM ({new}, 0)"
    )


def _pg(target: Archive) -> PgConnection:
    db: object = target.db
    assert isinstance(db, PgConnection)
    return db


async def _digest(archive: Archive, t: _Table) -> tuple[int, int]:
    """(rows, hash) of a table: streamed in batches, the hash independent of the order."""
    count, total = 0, 0
    async for rows in _batches(archive, t, None, BATCH * 5):
        for r in rows:
            total = (total + _row_hash(r)) % (1 << 256)
        count += len(rows)
    return count, total


async def migrate(
    source: Archive, target: Archive, *, progress: Progress | None = None
) -> list[TableCopy]:
    """Copy ``source`` (SQLite) into ``target`` (PostgreSQL), resuming a previous run, and
    verify every table. Raises :class:`MigrateError` with one line on any failure."""
    if source.dialect != "sqlite" or target.dialect != "postgresql":
        raise MigrateError("migrate: copies a SQLite archive to PostgreSQL only")
    where = redact(target.url or "")
    identity = str(source.path.resolve())
    marked = await target.get_meta(SOURCE_KEY)
    if marked is not None and marked != identity:
        raise MigrateError(
            f"migrate: {where} already holds a copy of another archive ({marked});"
            " migrate into an empty database"
        )
    if marked is None:
        used = await target.fetchone(
            "SELECT (SELECT count(*) FROM posts) + (SELECT count(*) FROM channels)"
            " + (SELECT count(*) FROM rules)"
        )
        if used is not None and used[0]:
            raise MigrateError(
                f"migrate: {where} is not empty (it holds an archive already);"
                " migrate into an empty database"
            )
        async with target.transaction() as db:
            await db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (SOURCE_KEY, identity))
        log.info("migrate %s -> %s: started %s", source.path, where, ts(utcnow()))
    tables = await _tables(source)
    pg = _pg(target)
    for t in tables:
        missing = set(t.columns) - await _pg_columns(pg, t.name)
        if missing:
            raise MigrateError(
                f"migrate: table {t.name}: PostgreSQL has no column {sorted(missing)[0]!r}"
                " (the two schemas differ); upgrade telewatch and run it again"
            )
    out: list[TableCopy] = []
    for t in tables:
        count = await source.fetchone(f'SELECT count(*) FROM "{t.name}"')
        total = int(count[0]) if count is not None else 0
        copied = await _copy_table(source, target, t, total, progress)
        out.append(TableCopy(t.name, total, copied))
        log.info("migrate: table %s: %d rows, %d copied now", t.name, total, copied)
    await pg.script("ANALYZE")
    for t in tables:
        src = await _digest(source, t)
        dst = await _digest(target, t)
        if t.name == "meta":  # the target's own mark of its source is not the source's
            mark = await target.fetchone("SELECT key, value FROM meta WHERE key = ?", (SOURCE_KEY,))
            if mark is not None:
                dst = (dst[0] - 1, (dst[1] - _row_hash(mark)) % (1 << 256))
        if src[0] != dst[0]:
            raise MigrateError(
                f"migrate: verification failed: table {t.name} has {src[0]} rows in SQLite"
                f" and {dst[0]} on PostgreSQL; was the archive written to meanwhile? stop"
                " telewatch and run the same command again"
            )
        if src[1] != dst[1]:
            raise MigrateError(
                f"migrate: verification failed: table {t.name} holds other values on"
                " PostgreSQL than in SQLite; was the archive written to meanwhile? stop"
                " telewatch, empty the database and migrate again"
            )
    return out


async def open_pair(path: Path, url: str) -> tuple[Archive, Archive]:
    """The source archive (which must exist) and the target (created when new)."""
    source = await Archive.open(path, create=False)
    try:
        target = await Archive.open(path, url=url)
    except BaseException:
        await source.close()
        raise
    return source, target
