"""The archive: one SQLite file, one owner of its connection.

:class:`Archive` opens the file (WAL, busy timeout, foreign keys), runs migrations, and hands
out a write transaction. The feature modules beside it (``ingest``, ``search``, ``channels``,
``outbox`` ...) are plain async functions that take the archive as their first argument.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, cast

import aiosqlite

from archiver.errors import NotWritable, TelewatchError
from archiver.store import postgres
from archiver.store.schema import MIGRATIONS, POSTGRES_MIGRATIONS

if TYPE_CHECKING:
    from archiver.config import StorageSettings

log = logging.getLogger(__name__)

PAGE_SIZE = 16384
DEFAULT_LOCAL = Path("data/telewatch.db")  # a PostgreSQL archive's lock and marker files
BUSY_TIMEOUT_MS = 30_000


DAMAGED = ("malformed", "not a database", "corrupt", "vtable constructor")  # SQLite's words


def damaged(where: object, reason: str) -> str:
    """What to say about an archive SQLite found damaged (what to do included)."""
    return (
        f"{where}: the archive is damaged ({reason}); restore the newest backup with"
        " `telewatch restore FILE` (docs/operations.md, Restore)"
    )


def unreadable(p: Path, exc: BaseException) -> str:
    """An archive that fails to open: damaged (restore a backup), or not ours at all."""
    reason = str(exc)
    # "file is not a database" at open: maybe not an archive at all, so no restore advice
    if any(w in reason for w in DAMAGED if w != "not a database"):
        return damaged(p, reason)
    return f"{p}: not a telewatch archive or damaged ({reason})"


class ArchiveError(TelewatchError):
    """The archive file cannot be opened or is not a telewatch archive."""


class Matcher(Protocol):
    """What ingest needs from the rules engine (implemented by ``archiver.rules.RuleSet``)."""

    def match(self, doc: Any, kind: str) -> dict[int, list[str]]:
        """Recipients (chat ids) mapped to the names of the rules that matched ``doc``
        (an :class:`archiver.query.Doc`) for an alert of ``kind`` (new, edited, deleted)."""
        ...

    def wants(self, rule_name: str, kind: str) -> bool:
        """Whether the rule of that name (still) exists and alerts on ``kind``."""
        ...


def _writable(p: Path) -> None:
    """The archive and its folder (where SQLite writes the -wal and -shm files) must be
    writable: else one clear line, not "unable to open database file" or a traceback."""
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except PermissionError as exc:
        raise NotWritable(exc.filename or p.parent) from None
    except OSError as exc:  # a path through a file, a read-only filesystem
        raise ArchiveError(
            f"{p}: cannot create the archive's folder ({exc.strerror}); check the path"
            " ([storage] path or --db)"
        ) from None
    if not os.access(p.parent, os.W_OK | os.X_OK, effective_ids=True):
        raise NotWritable(p.parent)
    if p.exists() and not os.access(p, os.R_OK | os.W_OK, effective_ids=True):
        raise NotWritable(p)


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def ts(dt: datetime | None) -> str | None:
    """A datetime as the archive writes it: UTC ``YYYY-MM-DD HH:MM:SS``."""
    if dt is None:
        return None
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%d %H:%M:%S")


def iso_utc(dt: datetime | None) -> str | None:
    """A UTC datetime as every ``--json`` output writes it: ``2024-03-01T10:05:00Z``."""
    return None if dt is None else dt.isoformat().replace("+00:00", "Z")


def parse_ts(value: str | None) -> datetime | None:
    if value is None:
        return None
    return datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


def _statements(script: str) -> list[str]:
    """The SQL statements of a migration, one by one (a trigger's body stays whole)."""
    out: list[str] = []
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip() and not all(
        ln.strip().startswith("--") or not ln.strip() for ln in buf.splitlines()
    ):
        raise ValueError(f"an incomplete statement in a migration: {buf.strip()[:60]}")
    return out


def _can_open(path: Path) -> None:
    sqlite3.connect(path).close()


def _busy(exc: sqlite3.Error) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


def _busy_message(path: Path) -> str:
    return (
        f"{path}: the archive is busy: another telewatch process is writing or upgrading it"
        " (an upgrade can take minutes on a big archive); try again later"
    )


async def _connect_postgres(url: str, *, readonly: bool = False) -> postgres.PgConnection:
    """A pool on the server of ``url``, or one line naming it (without its password)."""
    try:
        return await postgres.connect(url, readonly=readonly)
    except sqlite3.Error as exc:  # PostgreSQL's refusal: no server, no database, auth
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ArchiveError(
            f"{postgres.redact(url)}: cannot connect to PostgreSQL ({first}); check [storage]"
            " url or TELEWATCH_DATABASE_URL and that the server is running"
        ) from None


class Archive:
    """An open archive. Use ``async with await Archive.open(path) as archive`` or close it."""

    def __init__(self, path: Path, db: aiosqlite.Connection, *, url: str | None = None) -> None:
        self.path = path  # on PostgreSQL: where the local lock and marker files go
        self.db = db
        self.url = url  # PostgreSQL's, else None (SQLite)
        self.dialect = "sqlite" if url is None else "postgresql"
        self.matcher: Matcher | None = None
        # Called before each alerting write; returns the current matcher (the rules engine
        # reloads personal rules that another process changed).
        self.matcher_loader: Callable[[Archive], Awaitable[Matcher | None]] | None = None
        # Called after a commit that queued alerts (``telewatch run`` wakes the bot with it).
        self.on_alerts: Callable[[], None] | None = None
        # Called inside each ingest or deletion transaction with the batch's channel ids; it
        # raises to refuse the batch (a worker that lost a unit's lease: archiver.worker).
        self.fence: Callable[[Any, Iterable[int]], Awaitable[None]] | None = None
        self._write_lock = asyncio.Lock()
        self._closed = False

    @classmethod
    async def open_storage(cls, storage: StorageSettings, *, create: bool = True) -> Archive:
        """The archive ``[storage]`` names: PostgreSQL when it has a ``url``, else the file."""
        return await cls.open(storage.path, create=create, url=storage.url)

    @classmethod
    async def open(
        cls, path: Path | str, *, create: bool = True, url: str | None = None
    ) -> Archive:
        """Open (and create and migrate) the archive at ``path``, or on the PostgreSQL server
        of ``url`` (also when ``path`` is such a URL)."""
        if postgres.is_url(path):
            url, path = str(path), DEFAULT_LOCAL
        if url is not None:
            return await cls._open_postgres(url, Path(path), create=create)
        p = Path(path)
        if not create and not await asyncio.to_thread(p.exists):
            raise ArchiveError(
                f"{p}: no archive here yet; run `telewatch import` or `telewatch sync` first"
            )
        if create:
            _writable(p)
        try:
            # Opened once without aiosqlite first: when aiosqlite 0.22 fails to connect it
            # stops its worker thread without waiting for it, and the thread's report to a
            # loop that has closed meanwhile is a traceback after the one-line error.
            await asyncio.to_thread(_can_open, p)
            db = await aiosqlite.connect(p, isolation_level=None)
        except sqlite3.Error as exc:
            raise ArchiveError(
                f"{p}: cannot open the archive ({exc}); check that the folder exists and is"
                " writable"
            ) from None
        archive = cls(p, db)
        try:
            await archive._setup()
        except sqlite3.DatabaseError as exc:
            await db.close()
            if _busy(exc):
                raise ArchiveError(_busy_message(p)) from None
            if "readonly" in str(exc):  # SQLITE_READONLY: the file, or its -wal/-shm, not ours
                raise NotWritable(p) from None
            if "unable to open" in str(exc) and not os.access(
                p.parent, os.W_OK | os.X_OK, effective_ids=True
            ):  # a read-only folder or mount: WAL needs its -wal and -shm files beside the archive
                raise NotWritable(p.parent) from None
            raise ArchiveError(unreadable(p, exc)) from None
        except BaseException:
            await db.close()
            raise
        return archive

    @classmethod
    async def open_readonly(cls, path: Path | str) -> Archive:
        """Open an existing archive for reading only (SQLite's ``mode=ro``): no migration, no
        write, whatever the caller does (the web view). A PostgreSQL URL opens that archive
        with every session read-only (``default_transaction_read_only``: the server refuses
        any write). An archive of another schema is refused with what to do."""
        if postgres.is_url(path):
            return await cls._open_postgres_readonly(str(path))
        p = Path(path)
        if not await asyncio.to_thread(p.is_file):
            raise ArchiveError(f"{p}: no archive here")
        uri = p.resolve().as_uri() + "?mode=ro"
        try:
            db = await aiosqlite.connect(uri, uri=True, isolation_level=None)
        except sqlite3.Error as exc:
            raise ArchiveError(f"{p}: cannot open the archive ({exc})") from None
        archive = cls(p, db)
        try:
            db.row_factory = sqlite3.Row
            await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await db.execute("PRAGMA cache_size = -32000")
            version = await archive._user_version()
            if version != len(MIGRATIONS):
                why = (
                    "made by a newer telewatch; upgrade telewatch"
                    if version > len(MIGRATIONS)
                    else "an older schema; any telewatch command run on it (`telewatch"
                    f" --db {p} stats`) upgrades it"
                )
                if version == 0:
                    why = "not a telewatch archive"
                raise ArchiveError(f"{p}: schema {version}, expected {len(MIGRATIONS)}: {why}")
        except sqlite3.DatabaseError as exc:
            await db.close()
            raise ArchiveError(unreadable(p, exc)) from None
        except BaseException:
            await db.close()
            raise
        return archive

    @classmethod
    async def _open_postgres_readonly(cls, url: str) -> Archive:
        shown = postgres.redact(url)
        db = await _connect_postgres(url, readonly=True)
        archive = cls(DEFAULT_LOCAL, cast(aiosqlite.Connection, db), url=url)
        try:
            found = await archive.fetchone("SELECT to_regclass('telewatch_schema') IS NOT NULL")
            version = await archive._user_version() if found is not None and found[0] else 0
            if version != len(MIGRATIONS):
                why = (
                    "made by a newer telewatch; upgrade telewatch"
                    if version > len(MIGRATIONS)
                    else "an older schema; any telewatch command run on it"
                    " (`telewatch stats`) upgrades it"
                )
                if version == 0:
                    why = "not a telewatch archive"
                raise ArchiveError(f"{shown}: schema {version}, expected {len(MIGRATIONS)}: {why}")
        except sqlite3.DatabaseError as exc:
            await db.close()
            raise ArchiveError(f"{shown}: the archive could not be read ({exc})") from None
        except BaseException:
            await db.close()
            raise
        return archive

    @classmethod
    async def _open_postgres(cls, url: str, local: Path, *, create: bool) -> Archive:
        shown = postgres.redact(url)
        db = await _connect_postgres(url)
        archive = cls(local, cast(aiosqlite.Connection, db), url=url)
        try:
            await archive._migrate_postgres(db, shown, create=create)
        except BaseException:
            await db.close()
            raise
        return archive

    async def _migrate_postgres(
        self, db: postgres.PgConnection, shown: str, *, create: bool
    ) -> None:
        """Create the schema at :data:`archiver.store.pg_schema.BASELINE_VERSION` in one step,
        then run the PostgreSQL form of each later migration; one writer at a time (the same
        advisory lock as every write transaction), each step committed with its version."""
        from archiver.store import pg_schema

        async def version() -> int | None:
            rows = await db.execute_fetchall("SELECT to_regclass('telewatch_schema') IS NOT NULL")
            if not rows[0][0]:
                return None
            got = await db.execute_fetchall("SELECT max(version) FROM telewatch_schema")
            return int(got[0][0] or 0)

        current = await version()
        created = current is None  # a new archive runs every migration: nothing to report
        if current is None and not create:
            raise ArchiveError(
                f"{shown}: no archive here yet; run `telewatch import` or `telewatch sync` first"
            )
        if current is not None and current > len(MIGRATIONS):
            raise ArchiveError(f"{shown}: made by a newer telewatch (schema {current}); upgrade")
        while current is None or current < len(MIGRATIONS):
            await db.execute("BEGIN")  # takes the write lock
            try:
                current = await version()
                if current is None:
                    other = await db.execute_fetchall(
                        "SELECT table_name FROM information_schema.tables"
                        " WHERE table_schema = current_schema() LIMIT 1"
                    )
                    if other:
                        raise ArchiveError(
                            f"{shown}: a database of something else (it has a table"
                            f" {other[0][0]!r}), not a telewatch archive; give an empty database"
                        )
                    await db.script(pg_schema.BASELINE)
                    current = pg_schema.BASELINE_VERSION
                elif current < len(MIGRATIONS):
                    script = POSTGRES_MIGRATIONS.get(current + 1)
                    if script is None:
                        raise ArchiveError(
                            f"{shown}: schema {current + 1} is not yet supported on PostgreSQL"
                            " (no PostgreSQL form of that migration); use a SQLite archive"
                        )
                    log.log(
                        logging.DEBUG if created else logging.INFO,
                        "archive %s: migrating schema %d -> %d",
                        shown,
                        current,
                        current + 1,
                    )
                    await db.script(script)
                    current += 1
                await db.execute("DELETE FROM telewatch_schema")
                await db.execute("INSERT INTO telewatch_schema (version) VALUES (?)", (current,))
                await db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    await db.execute("ROLLBACK")
                raise

    async def _setup(self) -> None:
        db = self.db
        db.row_factory = sqlite3.Row
        await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # A new archive gets 16 KB pages, before WAL mode fixes the size (an existing archive
        # keeps its own): a version row with its provenance is about 3.5 KB, so with SQLite's
        # 4 KB default each row takes a page of its own. Measured on 200,000 posts: SQLite's
        # CPU a post 58.9 -> 49.5 us (bench/bench_import_parts.py), the file 8 % smaller.
        await db.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        mode = await (await db.execute("PRAGMA journal_mode = WAL")).fetchone()
        if mode is not None and str(mode[0]).lower() != "wal":
            log.warning("archive %s: journal mode is %s, not WAL", self.path, mode[0])
        await db.execute("PRAGMA synchronous = NORMAL")
        await db.execute("PRAGMA foreign_keys = ON")
        await db.execute("PRAGMA cache_size = -32000")
        await self._migrate()

    async def _user_version(self) -> int:
        if self.dialect == "postgresql":
            got = await self.fetchone("SELECT max(version) FROM telewatch_schema")
            return int(got[0]) if got is not None and got[0] is not None else 0
        row = await (await self.db.execute("PRAGMA user_version")).fetchone()
        return int(row[0]) if row else 0

    async def _migrate(self) -> None:
        current = await self._user_version()
        if current == 0:
            other = await (
                await self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table' LIMIT 1")
            ).fetchone()
            if other is not None:
                raise ArchiveError(
                    f"{self.path}: a SQLite file of something else (it has a table "
                    f"{other[0]!r}), not a telewatch archive; give another --db path"
                )
        if current > len(MIGRATIONS):
            raise ArchiveError(
                f"{self.path}: made by a newer telewatch (schema {current}); upgrade telewatch"
            )
        existing = current > 0  # a new archive runs every migration: nothing to report
        while current < len(MIGRATIONS):
            current = await self._migrate_one(existing)

    async def _migrate_one(self, existing: bool) -> int:
        """Run the next migration, if another process has not run it meanwhile: the version
        is read again once this connection holds the write lock. Foreign keys are off while
        it runs, as SQLite's recipe for rebuilding a table asks, and checked before commit.
        Returns the version the archive is at afterwards."""
        db = self.db
        await db.execute("PRAGMA foreign_keys = OFF")
        try:
            await db.execute("BEGIN IMMEDIATE")
            try:
                version = await self._user_version()
                if version < len(MIGRATIONS):
                    log.log(
                        logging.INFO if existing else logging.DEBUG,
                        "archive %s: migrating schema %d -> %d",
                        self.path,
                        version,
                        version + 1,
                    )
                    for statement in _statements(MIGRATIONS[version]):
                        await db.execute(statement)
                    if "'evidence.backfill'" in MIGRATIONS[version]:
                        # the observation log of an archive older than it, in the same
                        # transaction (archiver.evidence.backfill)
                        from archiver.evidence.backfill import backfill

                        await backfill(db, self.path)
                    await db.execute(f"PRAGMA user_version = {version + 1}")
                    bad = await (await db.execute("PRAGMA foreign_key_check")).fetchone()
                    if bad is not None:
                        raise ArchiveError(
                            f"{self.path}: schema {version + 1} would break a reference in"
                            f" table {bad[0]!r}; the archive is unchanged"
                        )
                    version += 1
                await db.execute("COMMIT")
                return version
            except BaseException:
                if db.in_transaction:
                    await db.execute("ROLLBACK")
                raise
        finally:
            await db.execute("PRAGMA foreign_keys = ON")

    async def current_matcher(self) -> Matcher | None:
        if self.matcher_loader is not None:
            self.matcher = await self.matcher_loader(self)
        return self.matcher

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self.db.close()

    async def __aenter__(self) -> Archive:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``): committed on success, rolled back on any
        exception, so a batch lands whole or not at all."""
        async with self._write_lock:
            try:
                # BEGIN inside: a task cancelled while PostgreSQL's BEGIN takes the write lock
                # (a shutdown) must not leave the connection in a transaction that swallows
                # every later statement (archiver.worker's release of its leases at stop)
                await self.db.execute("BEGIN IMMEDIATE")
                yield self.db
                await self.db.execute("COMMIT")
            except BaseException:
                # the block failed, or COMMIT itself did (busy); or the task was cancelled
                # while BEGIN ran (aiosqlite finishes it in its thread after the cancellation,
                # so ``in_transaction`` may not say so yet): roll back in every case, after it
                with contextlib.suppress(sqlite3.OperationalError):  # no transaction after all
                    await self.db.execute("ROLLBACK")
                raise

    async def write(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        """One statement as its own transaction (SQLite's autocommit), with the rows its
        ``RETURNING`` gives: one trip to the database thread where a :meth:`transaction`
        takes three. The bot's delivery writes each alert's outcome so."""
        async with self._write_lock:
            return list(await self.db.execute_fetchall(sql, params))

    async def fetchall(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        async with self.db.execute(sql, params) as cur:
            return list(await cur.fetchall())

    async def fetchone(self, sql: str, params: Any = ()) -> sqlite3.Row | None:
        async with self.db.execute(sql, params) as cur:
            row: sqlite3.Row | None = await cur.fetchone()
            return row

    async def get_meta(self, key: str) -> str | None:
        row = await self.fetchone("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else row[0]

    async def heartbeat(self, process: str, pid: int) -> None:
        """``process`` is alive now (a beat after a stop or failure also clears its note)."""
        async with self.transaction() as db:
            await db.execute(
                "INSERT INTO heartbeats (process, pid, at) VALUES (?, ?, ?) "
                "ON CONFLICT (process) DO UPDATE SET pid = excluded.pid, at = excluded.at, "
                "note = iif(heartbeats.state = 'running', heartbeats.note, NULL),"
                " state = 'running'",
                (process, pid, ts(utcnow())),
            )
