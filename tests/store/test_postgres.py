"""The archive on PostgreSQL (issue 18): opening, the schema, the SQL translation."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from archiver.config import load_settings
from archiver.errors import ConfigError
from archiver.store import pg_schema
from archiver.store.archive import Archive, ArchiveError
from archiver.store.postgres import redact, translate
from archiver.store.schema import MIGRATIONS, POSTGRES_MIGRATIONS


def test_every_migration_after_the_baseline_has_a_postgresql_form() -> None:
    later = set(range(pg_schema.BASELINE_VERSION + 1, len(MIGRATIONS) + 1))
    assert set(POSTGRES_MIGRATIONS) == later


@pytest.mark.parametrize(
    ("sqlite", "postgresql"),
    [
        ("SELECT a FROM t WHERE b = ?", "SELECT a FROM t WHERE b = %s"),
        ("SELECT '?%' FROM t WHERE b LIKE ?", "SELECT '?%%' FROM t WHERE b ILIKE %s"),
        ("UPDATE t SET h = max(h, ?)", "UPDATE t SET h = greatest(h, %s)"),
        ("SELECT max(id) FROM t", "SELECT max(id) FROM t"),
        ("SELECT group_concat(a || char(30) || b, char(31))",
         "SELECT string_agg((a || chr(30) || b)::text, chr(31))"),
        ("SELECT iif(s = 'x', n, NULL)", "SELECT CASE WHEN s = 'x' THEN n ELSE NULL END"),
        ("WHERE c IS ? AND d IS NOT ?",
         "WHERE c IS NOT DISTINCT FROM %s AND d IS DISTINCT FROM %s"),
        ("WHERE username = ? COLLATE NOCASE", "WHERE lower(username) = lower(%s)"),
        ("SELECT sum(a.status = 'sent'), sum(n)",
         "SELECT sum(CASE WHEN a.status = 'sent' THEN 1 ELSE 0 END), sum(n)"),
        ("SET c = CASE WHEN ? THEN ? ELSE c END", "SET c = CASE WHEN %s <> 0 THEN %s ELSE c END"),
    ],
)  # fmt: skip
def test_translate(sqlite: str, postgresql: str) -> None:
    assert translate(sqlite).sql == postgresql


def test_numbered_placeholders_take_their_parameters() -> None:
    t = translate("UPDATE a SET s = 1 WHERE id = ?2 AND until > ?1 AND x = ?2")
    assert t.sql == "UPDATE a SET s = 1 WHERE id = %s AND until > %s AND x = %s"
    assert t.order == (1, 0, 1)


def test_redact_hides_the_password() -> None:
    assert redact("postgresql://tw:s3cret@db:5432/arch") == "postgresql://tw:***@db:5432/arch"
    assert redact("postgresql:///arch?host=/run") == "postgresql:///arch?host=/run"


async def test_a_new_database_gets_the_current_schema(pg_url: str) -> None:
    async with await Archive.open(pg_url) as a:
        assert a.dialect == "postgresql"
        assert await a._user_version() == len(MIGRATIONS)
        tables = {
            r[0]
            for r in await a.fetchall(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = current_schema()"
            )
        }
    assert {"channels", "posts", "versions", "alerts", "rules", "telewatch_schema"} <= tables
    async with await Archive.open(pg_url) as again:  # opening again migrates nothing
        assert await again._user_version() == len(MIGRATIONS)


async def test_rows_read_by_name_and_index_and_ids_follow_sqlite(pg_archive: Archive) -> None:
    async with pg_archive.transaction() as db:
        await db.execute(
            "INSERT INTO rules (owner, name, query, created_at) VALUES (?, ?, ?, ?)",
            (1, "a", "x", "2024-01-01 00:00:00"),
        )
        await db.execute(
            "INSERT INTO rules (id, owner, name, query, created_at) VALUES (7, 1, 'b', 'y', '')"
        )
        await db.execute("INSERT INTO rules (owner, name, query, created_at) VALUES (1,'c','z','')")
    rows = await pg_archive.fetchall("SELECT id, name FROM rules ORDER BY id")
    assert [(r["id"], r[1]) for r in rows] == [(1, "a"), (7, "b"), (8, "c")]
    assert dict(rows[0]) == {"id": 1, "name": "a"}


async def test_a_failed_transaction_leaves_nothing(pg_archive: Archive) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        async with pg_archive.transaction() as db:
            await db.execute("INSERT INTO meta (key, value) VALUES ('k', 'v')")
            await db.execute("INSERT INTO meta (key, value) VALUES ('k', 'w')")
    assert await pg_archive.get_meta("k") is None


async def test_another_database_is_refused(pg_url: str) -> None:
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE invoices (id int)")
    with pytest.raises(ArchiveError, match=r"something else.*'invoices'"):
        await Archive.open(pg_url)


async def test_no_server_is_one_line_without_the_password(tmp_path: object) -> None:
    url = f"postgresql://tw:s3cret@/telewatch?host={tmp_path}&connect_timeout=2"
    with pytest.raises(ArchiveError, match="cannot connect to PostgreSQL") as err:
        await Archive.open(url)
    assert "s3cret" not in str(err.value)
    assert "\n" not in str(err.value)


def test_storage_url_from_the_file_and_the_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[storage]\nurl = "postgresql://tw:pw@db/arch"\n')
    assert load_settings(cfg, env={}).storage.url == "postgresql://tw:pw@db/arch"
    env = {"TELEWATCH_DATABASE_URL": "postgresql://other/x"}
    assert load_settings(cfg, env=env).storage.url == "postgresql://other/x"
    assert load_settings(None, env=env).storage.url == "postgresql://other/x"
    assert load_settings(cfg, env=env, db=tmp_path / "a.db").storage.url is None  # --db: SQLite


def test_a_storage_url_of_another_kind_is_refused_without_its_value(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[storage]\nurl = "mysql://tw:s3cret@db/arch"\n')
    with pytest.raises(ConfigError, match=r"storage\.url: expected a postgresql:// URL") as err:
        load_settings(cfg, env={})
    assert "s3cret" not in str(err.value)
    with pytest.raises(ConfigError, match="TELEWATCH_DATABASE_URL"):
        load_settings(None, env={"TELEWATCH_DATABASE_URL": "sqlite:///x"})


async def test_a_lost_connection_fails_one_statement_and_the_next_connects_again(
    pg_archive: Archive, pg_url: str
) -> None:
    import psycopg

    row = await pg_archive.fetchone("SELECT pg_backend_pid()")
    assert row is not None
    with psycopg.connect(pg_url, autocommit=True) as admin:  # a restart, as the server sees it
        admin.execute("SELECT pg_terminate_backend(%s)", (row[0],))
    with pytest.raises(sqlite3.OperationalError):
        await pg_archive.fetchone("SELECT 1")
    async with pg_archive.transaction() as db:  # connected again
        await db.execute("INSERT INTO meta (key, value) VALUES ('after', 'loss')")
    assert await pg_archive.get_meta("after") == "loss"


def test_config_check_names_the_server_without_the_password(tmp_path: Path) -> None:
    from archiver.config import summary

    settings = load_settings(None, env={"TELEWATCH_DATABASE_URL": "postgresql://tw:s3cret@db/a"})
    assert "archive: PostgreSQL postgresql://tw:***@db/a" in summary(settings)
    assert "s3cret" not in repr(settings) and "s3cret" not in "\n".join(summary(settings))


@pytest.mark.parametrize("workers", [False, True])
async def test_an_export_imports_on_postgresql_inline_and_with_the_worker_process(
    pg_archive: Archive, tmp_path: Path, workers: bool
) -> None:
    """A big export (16 MB and more) is read by a worker process while the bulk writer
    writes: that path must not run SQLite's PRAGMAs on PostgreSQL."""
    import json

    from test_cli import EXPORT

    from archiver.sources.export import import_file

    export = tmp_path / "result.json"
    export.write_text(json.dumps(EXPORT, ensure_ascii=False), encoding="utf-8")
    (result,) = await import_file(pg_archive, export, username="vsaldo", workers=workers)
    assert (result.posts_added, result.versions_added) == (2, 2)


async def test_text_sorts_byte_by_byte_as_on_sqlite_whatever_the_database_collation(
    any_archive: Archive,
) -> None:
    """Every text column is COLLATE "C" on PostgreSQL (a database made with en_US.UTF-8
    would otherwise sort 'a' < 'B' < 'b' and compare times by its locale's rules); and the
    same names sort the same on both backends."""
    if any_archive.dialect == "postgresql":
        rows = await any_archive.fetchall(
            "SELECT table_name, column_name, collation_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND data_type = 'text'"
        )
        assert rows and {r[2] for r in rows} == {"C"}, [tuple(r) for r in rows if r[2] != "C"]
    refs = ["b", "B", "a", "Ä", "ä", "z", "Я", "я", "_x", "10", "9"]
    async with any_archive.transaction() as db:
        await db.executemany(
            "INSERT INTO followed_channels (ref, source, added_at) VALUES (?, 'web', '')",
            [(r,) for r in refs],
        )
    got = await any_archive.fetchall("SELECT ref FROM followed_channels ORDER BY ref")
    assert [r[0] for r in got] == sorted(refs, key=lambda r: r.encode())


async def test_executemany_of_an_insert_is_one_statement_for_statement_triggers(
    pg_archive: Archive,
) -> None:
    """The search counts are statement triggers (archiver.store.pg_search): a batch of
    versions written by executemany must fire them once for all its rows (a COPY), not per
    row (one per row made an import 15 times slower, docs/benchmarks.md "Scale") nor per
    chunk; every row and value arrives as before (NULLs, quotes, tabs, newlines, backslashes,
    bytes, a bool as 0/1), and a row trigger sees the rows before its own (telewatch_rowid)."""
    async with pg_archive.transaction() as db:
        await db.execute("CREATE TABLE fired (n bigint)")
        await db.execute("CREATE TABLE t (id bigint PRIMARY KEY, a bigint, b text, c bigint,"
                         " d bytea)")  # fmt: skip
        await db.execute(
            "CREATE FUNCTION bump() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN INSERT INTO fired SELECT count(*) FROM new_rows; RETURN NULL; END $$"
        )
        await db.execute(
            "CREATE TRIGGER t_ai AFTER INSERT ON t REFERENCING NEW TABLE AS new_rows"
            " FOR EACH STATEMENT EXECUTE FUNCTION bump()"
        )
        await db.execute(
            "CREATE TRIGGER t_rowid BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION"
            " telewatch_rowid()"
        )
        odd = 'it\'s\ta \\N\n\\ "q" \r ✓ %s ?'
        rows = [
            (i, None if i % 2 else f"r{i}" + odd, i % 3 == 0, bytes([i % 256, 0, 92]))
            for i in range(1200)
        ]
        cur = await db.executemany("INSERT INTO t (a, b, c, d) VALUES (?, ?, ?, ?)", rows)
        assert cur.rowcount == 1200
        # literals beside the placeholders, and a statement that is not a plain INSERT
        await db.executemany("INSERT INTO t (a, b, c) VALUES (?, 'x', 7)", [(-1,), (-2,)])
        await db.executemany(
            "INSERT INTO t (a, b, c) VALUES (?, ?, ?) RETURNING a", [(-3, "y", 1), (-4, "z", 2)]
        )
    fired = await pg_archive.fetchall("SELECT n FROM fired")
    assert sorted(r[0] for r in fired) == [1, 1, 2, 1200]
    got = await pg_archive.fetchall("SELECT id, a, b, c, d FROM t WHERE a >= 0 ORDER BY a")
    assert [(r[0], r[1], r[2], r[3], bytes(r[4])) for r in got] == [
        (i + 1, a, b, int(c), d) for i, (a, b, c, d) in enumerate(rows)
    ]
    more = await pg_archive.fetchall("SELECT id, a, b, c FROM t WHERE a < 0 ORDER BY a DESC")
    assert [tuple(r) for r in more] == [
        (1201, -1, "x", 7), (1202, -2, "x", 7), (1203, -3, "y", 1), (1204, -4, "z", 2)
    ]  # fmt: skip
    # a constraint broken by one row fails the statement as an IntegrityError: nothing lands
    with pytest.raises(sqlite3.IntegrityError, match="duplicate key"):
        async with pg_archive.transaction() as db:
            await db.executemany(
                "INSERT INTO t (id, a) VALUES (?, ?)", [(5000, 1), (5001, 2), (5000, 3)]
            )
    assert await pg_archive.fetchone("SELECT 1 FROM t WHERE id >= 5000") is None


async def test_the_search_column_stays_in_the_row(pg_archive: Archive) -> None:
    """versions.tsv is tested row by row by a search: kept in the row (STORAGE MAIN), not
    moved out to TOAST before the text and raw JSON (docs/benchmarks.md, "Scale")."""
    rows = await pg_archive.fetchall(
        "SELECT attname, attstorage FROM pg_attribute WHERE attrelid = 'versions'::regclass"
        " AND attname IN ('tsv', 'raw', 'text')"
    )
    assert {r[0]: r[1] for r in rows} == {"tsv": "m", "raw": "x", "text": "x"}


# ---------------------------------------------------------------------------- read-only


async def test_a_read_only_archive_reads_and_the_server_refuses_its_writes(
    pg_archive: Archive,
) -> None:
    """``Archive.open_readonly`` of a URL (the web view): every session read-only, so the
    server itself refuses a write, a single statement or a transaction, whatever SQL runs."""
    assert pg_archive.url is not None
    async with pg_archive.transaction() as db:
        await db.execute("INSERT INTO meta (key, value) VALUES ('seen', 'before')")
    ro = await Archive.open_readonly(pg_archive.url)
    try:
        assert await ro.get_meta("seen") == "before"
        with pytest.raises(sqlite3.DatabaseError, match="read-only transaction"):
            await ro.db.execute("UPDATE meta SET value = 'changed' WHERE key = 'seen'")
        with pytest.raises(sqlite3.DatabaseError, match="read-only transaction"):
            async with ro.transaction() as db:
                await db.execute("INSERT INTO meta (key, value) VALUES ('new', 'x')")
        with pytest.raises(sqlite3.DatabaseError, match="read-only transaction"):
            await ro.db.execute("CREATE TABLE intruder (id int)")
    finally:
        await ro.close()
    assert await pg_archive.get_meta("seen") == "before"
    assert await pg_archive.get_meta("new") is None


async def test_read_only_keeps_the_urls_own_options(pg_archive: Archive) -> None:
    """An ``options`` parameter in the URL (a search_path) is kept beside read-only."""
    assert pg_archive.url is not None
    sep = "&" if "?" in pg_archive.url else "?"
    url = pg_archive.url + sep + "options=-c%20application_name%3Dtw_web"
    ro = await Archive.open_readonly(url)
    try:
        got = await ro.fetchone(
            "SELECT current_setting('application_name'),"
            " current_setting('default_transaction_read_only')"
        )
        assert got is not None and tuple(got) == ("tw_web", "on")
    finally:
        await ro.close()


async def test_read_only_refuses_another_schema_with_what_to_do(pg_url: str) -> None:
    import psycopg

    with pytest.raises(ArchiveError, match=r"schema 0, expected \d+: not a telewatch archive"):
        await Archive.open_readonly(pg_url)  # an empty database
    async with await Archive.open(pg_url):
        pass
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE telewatch_schema SET version = version - 1")
    with pytest.raises(ArchiveError, match=r"expected \d+: an older schema; any telewatch"):
        await Archive.open_readonly(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE telewatch_schema SET version = version + 2")
    with pytest.raises(ArchiveError, match="made by a newer telewatch; upgrade telewatch"):
        await Archive.open_readonly(pg_url)


async def test_read_only_without_a_server_is_one_line_without_the_password(
    tmp_path: object,
) -> None:
    url = f"postgresql://tw:s3cret@/telewatch?host={tmp_path}&connect_timeout=2"
    with pytest.raises(ArchiveError, match="cannot connect to PostgreSQL") as err:
        await Archive.open_readonly(url)
    assert "s3cret" not in str(err.value) and "tw:***@" in str(err.value)
    assert "\n" not in str(err.value)
