"""The archive on PostgreSQL: a psycopg connection pool with the surface of aiosqlite's.

The store modules speak to ``archive.db`` as to an aiosqlite connection: ``execute`` (awaited,
or used as ``async with`` for its cursor), ``executemany``, ``fetchone``/``fetchall``,
``rowcount``, ``total_changes``. :class:`PgConnection` gives them exactly that over a
``psycopg_pool.AsyncConnectionPool`` of autocommit connections (up to :data:`POOL_SIZE`), so
a statement outside :meth:`archiver.store.archive.Archive.transaction` is its own transaction
(as SQLite's autocommit) on whichever connection is free: the bot's delivery, its command
handlers and its digests read side by side instead of queueing on one connection. A
transaction holds one connection from ``BEGIN`` to ``COMMIT``/``ROLLBACK``: every statement of
the task that began it (and of tasks it starts meanwhile) goes there, so a read inside it
sees its writes, and statements of other tasks go to other connections and do not see them
before the commit. A connection the server dropped is thrown away by the pool and made again:
the statement that met the loss fails (as any failed write does); the next one runs.

The SQL stays SQLite's: :func:`translate` rewrites each statement once (cached) to
PostgreSQL's dialect: placeholders ``?`` and ``?N`` to ``%s``, and the few SQLite functions the
store uses to their PostgreSQL equivalents (the table in docs/postgresql.md). Rows read like
``sqlite3.Row`` (by index and by column name), and errors are raised as the DB-API classes the
callers already handle (``sqlite3.OperationalError`` ...), with PostgreSQL's message, so every
edge that reports a database failure in one line does so on both backends.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections import deque
from collections.abc import AsyncIterator, Generator, Iterable, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from decimal import Decimal
from functools import lru_cache
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

from archiver.errors import TelewatchError

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)

SCHEMES = ("postgresql://", "postgres://")

# Writers take this transaction-level advisory lock first: one writing transaction at a time
# across every process on the server, as SQLite's BEGIN IMMEDIATE gives (ingest assigns ids as
# max + 1 under it). Single statements (``Archive.write``: the outbox's claims) do not take it.
WRITE_LOCK_KEY = 0x74656C65  # "tele"
POOL_SIZE = 4  # connections per process at most (one is kept open)
CHECKOUT_SECONDS = 10.0  # a statement waits this long for a free (or new) connection


class NotOnPostgres(TelewatchError):
    """A feature the PostgreSQL archive does not have yet (docs/postgresql.md lists them)."""

    def __init__(self, what: str, hint: str = "") -> None:
        super().__init__(
            f"{what} is not yet supported on PostgreSQL (docs/postgresql.md); "
            + (hint or "use a SQLite archive ([storage] path) for it")
        )


def is_url(location: object) -> bool:
    """Whether ``location`` (``[storage] url``, ``--db`` or a path) names a PostgreSQL server."""
    return isinstance(location, str) and location.startswith(SCHEMES)


def dialect(db: object) -> str:
    """``postgresql`` for a :class:`PgConnection`, else ``sqlite`` (an aiosqlite connection):
    for the few places whose SQL differs (search's index)."""
    return "postgresql" if isinstance(db, PgConnection) else "sqlite"


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    return urlunsplit(parts._replace(netloc=netloc[0].split(":", 1)[0] + ":***@" + netloc[1]))


class Row(tuple[Any, ...]):
    """A row like ``sqlite3.Row``: a tuple that also reads by column name (``row["id"]``)."""

    _names: dict[str, int]

    def __new__(cls, values: Iterable[Any], names: dict[str, int]) -> Row:
        row = super().__new__(cls, values)
        row._names = names
        return row

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            try:
                return tuple.__getitem__(self, self._names[key.lower()])
            except KeyError:
                raise IndexError(f"No item with that key: {key}") from None
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


class _Translated(NamedTuple):
    sql: str
    order: tuple[int, ...] | None  # ?N placeholders: the parameter index each %s takes


_STRING = re.compile(r"'(?:[^']|'')*'")
_NUMBERED = re.compile(r"\?(\d+)")
_NOCASE = re.compile(r"([\w.]+)\s*=\s*\?\s+COLLATE\s+NOCASE", re.I)
_IS_PARAM = re.compile(r"\bIS\s+(NOT\s+)?\?", re.I)
_LIKE = re.compile(r"\bLIKE\b", re.I)
_FUNCS = re.compile(r"\b(max|min|sum|group_concat|char|total|ifnull|iif)\s*\(", re.I)
_PREDICATE = re.compile(r"=|<|>|\b(IS|AND|OR|NOT|LIKE|IN)\b", re.I)
_WHEN_PARAM = re.compile(r"\bWHEN\s+\?\s+THEN\b", re.I)


def _args(code: str, start: int) -> tuple[list[str], int]:
    """The comma-separated arguments of the call whose ``(`` is at ``start``, and the index
    just past its ``)``."""
    depth, args, cur = 0, [], start + 1
    for i in range(start, len(code)):
        ch = code[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                args.append(code[cur:i])
                return args, i + 1
        elif ch == "," and depth == 1:
            args.append(code[cur:i])
            cur = i + 1
    raise ValueError("unbalanced parentheses in SQL")


def _functions(code: str) -> str:
    """SQLite's functions with PostgreSQL's names: scalar ``max(a, b)`` -> ``greatest``,
    ``group_concat`` -> ``string_agg``, ``char`` -> ``chr``, ``total`` -> ``coalesce(sum)``,
    ``ifnull`` -> ``coalesce``, ``iif(c, a, b)`` -> ``CASE``, and ``sum`` of a comparison
    (SQLite's 0/1) -> ``sum(CASE WHEN .. THEN 1 ELSE 0 END)``."""
    out, pos = [], 0
    while (m := _FUNCS.search(code, pos)) is not None:
        name = m.group(1).lower()
        args, end = _args(code, m.end() - 1)
        args = [_functions(a).strip() for a in args]
        out.append(code[pos : m.start()])
        if name in ("max", "min"):
            fn = name if len(args) == 1 else ("greatest" if name == "max" else "least")
            out.append(f"{fn}({', '.join(args)})")
        elif name == "sum":  # SQLite sums a comparison's 0/1; PostgreSQL needs numbers
            arg = args[0]
            if _PREDICATE.search(arg) and not arg.upper().startswith("CASE"):
                arg = f"CASE WHEN {arg} THEN 1 ELSE 0 END"
            out.append(f"sum({arg})")
        elif name == "group_concat":
            sep = args[1] if len(args) > 1 else "','"
            out.append(f"string_agg(({args[0]})::text, {sep})")
        elif name == "char":
            out.append(f"chr({', '.join(args)})")
        elif name == "total":
            out.append(f"coalesce(sum({args[0]}), 0)")
        elif name == "ifnull":
            out.append(f"coalesce({', '.join(args)})")
        else:  # iif
            out.append(f"CASE WHEN {args[0]} THEN {args[1]} ELSE {args[2]} END")
        pos = end
    out.append(code[pos:])
    return "".join(out)


_LITERAL = re.compile("\x00(\\d+)\x00")


@lru_cache(maxsize=2048)
def translate(sql: str) -> _Translated:
    """One statement of the store's SQL (SQLite's dialect) in PostgreSQL's. String literals
    are set aside first (as ``\\0N\\0``) and put back unchanged, their ``%`` doubled."""
    literals: list[str] = []

    def aside(m: re.Match[str]) -> str:
        literals.append(m.group(0).replace("%", "%%"))
        return f"\x00{len(literals) - 1}\x00"

    code = _STRING.sub(aside, sql).replace("%", "%%")
    code = _NOCASE.sub(r"lower(\1) = lower(?)", code)
    code = _IS_PARAM.sub(
        lambda m: "IS DISTINCT FROM ?" if m.group(1) else "IS NOT DISTINCT FROM ?", code
    )
    code = _LIKE.sub("ILIKE", code)
    code = _WHEN_PARAM.sub("WHEN ? <> 0 THEN", code)  # a bool parameter arrives as 0/1
    code = _functions(code)
    numbers = [int(n) - 1 for n in _NUMBERED.findall(code)]
    code = _NUMBERED.sub("%s", code).replace("?", "%s")
    code = _LITERAL.sub(lambda m: literals[int(m.group(1))], code)
    return _Translated(code, tuple(numbers) if numbers else None)


def _params(params: Any, order: tuple[int, ...] | None) -> Sequence[Any]:
    values = list(params) if params is not None else []
    if order is not None:
        values = [values[i] for i in order]
    # SQLite stores a bool as 0/1 in an INTEGER column; PostgreSQL would refuse a boolean there
    return [int(v) if isinstance(v, bool) else v for v in values]


def _error(exc: Exception) -> sqlite3.Error:
    """psycopg's error as the DB-API class of sqlite3 that the callers catch."""
    import psycopg

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, psycopg.IntegrityError):
        return sqlite3.IntegrityError(text)
    if isinstance(exc, psycopg.OperationalError):
        return sqlite3.OperationalError(text)
    if isinstance(exc, psycopg.ProgrammingError | psycopg.DataError):
        return sqlite3.OperationalError(text)
    return sqlite3.DatabaseError(text)


class PgCursor:
    """The results of one statement: awaitable, and an async context manager, like
    aiosqlite's ``execute``."""

    def __init__(self, conn: PgConnection, sql: str, params: Any, many: bool = False) -> None:
        self._conn = conn
        self._sql = sql
        self._params = params
        self._many = many
        self._rows: deque[Row] = deque()
        self._ran = False
        self.rowcount = -1
        self.lastrowid: int | None = None

    async def _run(self) -> PgCursor:
        if not self._ran:
            self._ran = True
            await self._conn._run(self)
        return self

    def __await__(self) -> Generator[Any, None, PgCursor]:
        return self._run().__await__()

    async def __aenter__(self) -> PgCursor:
        return await self._run()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def fetchone(self) -> Row | None:
        return self._rows.popleft() if self._rows else None

    async def fetchall(self) -> list[Row]:
        rows = list(self._rows)
        self._rows.clear()
        return rows

    async def fetchmany(self, size: int = 1) -> list[Row]:
        return [self._rows.popleft() for _ in range(min(size, len(self._rows)))]

    def __aiter__(self) -> AsyncIterator[Row]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[Row]:
        await self._run()
        while self._rows:
            yield self._rows.popleft()

    async def close(self) -> None:
        self._rows.clear()


class _Held:
    """The connection a transaction holds (None once it ended): shared by the task that
    began it and the tasks that task starts meanwhile (they copy its context)."""

    __slots__ = ("conn",)

    def __init__(self, conn: psycopg.AsyncConnection[Any] | None) -> None:
        self.conn = conn


class PgConnection:
    """aiosqlite.Connection's surface (the part the store uses) over a psycopg pool."""

    dialect = "postgresql"

    def __init__(self, pool: AsyncConnectionPool[Any], url: str = "") -> None:
        self._pool = pool
        self._url = url
        self._held: ContextVar[_Held | None] = ContextVar(f"pg_held_{id(self)}", default=None)
        self.total_changes = 0
        self.row_factory: Any = None  # set by callers written for aiosqlite; rows are Row

    @property
    def in_transaction(self) -> bool:
        """Whether this task is inside a transaction (``BEGIN`` .. ``COMMIT``/``ROLLBACK``)."""
        held = self._held.get()
        return held is not None and held.conn is not None

    def execute(self, sql: str, parameters: Any = None) -> PgCursor:
        return PgCursor(self, sql, parameters)

    def executemany(self, sql: str, seq: Iterable[Any]) -> PgCursor:
        return PgCursor(self, sql, list(seq), many=True)

    async def execute_fetchall(self, sql: str, parameters: Any = None) -> list[Row]:
        cur = await self.execute(sql, parameters)
        return await cur.fetchall()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """The transaction's connection in a transaction, else one from the pool."""
        import psycopg

        held = self._held.get()
        if held is not None and held.conn is not None:
            yield held.conn
            return
        try:
            cm = self._pool.connection(timeout=CHECKOUT_SECONDS)
            conn = await cm.__aenter__()
        except psycopg.Error as exc:  # PoolTimeout: the server cannot be reached
            raise _error(exc) from None
        try:
            yield conn
        except BaseException as exc:
            await cm.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        else:
            await cm.__aexit__(None, None, None)

    async def script(self, sql: str) -> None:
        """Run a script of several statements (a migration) as it is: no translation."""
        import psycopg

        async with self._connection() as conn:
            try:
                await conn.execute(sql.encode())  # bytes: no %-placeholders are read in it
            except psycopg.Error as exc:
                raise self._lost(conn, exc) from exc

    async def copy_rows(
        self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
    ) -> None:
        """``COPY table (columns) FROM STDIN`` of ``rows``: the bulk load (``migrate``)."""
        import psycopg

        cols = ", ".join(f'"{c}"' for c in columns)
        async with self._connection() as conn:
            try:
                async with (
                    conn.cursor() as cur,
                    cur.copy(f'COPY "{table}" ({cols}) FROM STDIN') as copy,
                ):
                    for row in rows:
                        await copy.write_row(row)
            except psycopg.Error as exc:
                raise self._lost(conn, exc) from exc

    @staticmethod
    def _lost(conn: psycopg.AsyncConnection[Any], exc: Exception) -> sqlite3.Error:
        """``exc`` as sqlite3's class; a connection the server dropped (a restart, a failover,
        an idle time-out) is said once: the pool makes a new one for the next statement."""
        if conn.broken or conn.closed:
            log.warning("PostgreSQL: a connection was lost; the next statement connects again")
        return _error(exc)

    async def _run(self, cursor: PgCursor) -> None:
        import psycopg

        word = cursor._sql.lstrip().split(None, 1)[0].upper() if cursor._sql.strip() else ""
        if word in ("BEGIN", "COMMIT", "ROLLBACK"):
            await self._control(word)
            return
        t = translate(cursor._sql)
        async with self._connection() as conn:
            try:
                async with conn.cursor() as cur:
                    if cursor._many:
                        rows = [_params(p, t.order) for p in cursor._params]
                        cursor.rowcount = await _many(cur, t.sql, rows)
                    else:
                        await cur.execute(t.sql, _params(cursor._params, t.order))
                        cursor.rowcount = cur.rowcount
                        if cur.description is not None:
                            names = {d.name.lower(): i for i, d in enumerate(cur.description)}
                            cursor._rows = deque(
                                Row(_value(r), names) for r in await cur.fetchall()
                            )
            except psycopg.Error as exc:
                raise self._lost(conn, exc) from exc
        if word in ("INSERT", "UPDATE", "DELETE") and cursor.rowcount > 0:
            self.total_changes += cursor.rowcount

    async def _control(self, word: str) -> None:
        """``BEGIN`` takes a connection from the pool for the transaction and the write lock
        on it; ``COMMIT``/``ROLLBACK`` end it and give the connection back (a broken one is
        replaced by the pool)."""
        import psycopg

        if word == "BEGIN":
            if self.in_transaction:
                raise sqlite3.OperationalError("cannot start a transaction within a transaction")
            try:
                conn = await self._pool.getconn(timeout=CHECKOUT_SECONDS)
            except psycopg.Error as exc:
                raise _error(exc) from None
            try:
                await conn.execute("BEGIN")
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK_KEY,))
            except BaseException as exc:
                await self._pool.putconn(conn)
                if isinstance(exc, psycopg.Error):
                    raise self._lost(conn, exc) from exc
                raise
            self._held.set(_Held(conn))
            return
        held = self._held.get()
        if held is None or held.conn is None:
            raise sqlite3.OperationalError(f"cannot {word.lower()} - no transaction is active")
        conn, held.conn = held.conn, None
        self._held.set(None)
        try:
            await conn.execute(word)
        except psycopg.Error as exc:
            raise self._lost(conn, exc) from exc
        finally:
            await self._pool.putconn(conn)

    async def close(self) -> None:
        await self._pool.close()


# A plain ``INSERT INTO t (cols) VALUES (...)`` (nothing after the values: no ON CONFLICT, no
# RETURNING) given to executemany is one statement for all its rows, so that statement-level
# triggers (the search counts of archiver.store.pg_search) run once per call, not once per row:
# 2,000 versions took 13.7 s one statement each (docs/benchmarks.md, "Scale"). When the values
# are all placeholders it is sent as ``COPY t (cols) FROM STDIN``, which runs the same row
# triggers (each row's BEFORE trigger sees the rows copied before it: PostgreSQL copies one row
# at a time into a table with one), checks the same constraints, fires statement triggers
# once and is 8 times faster than 500-row ``INSERT ... VALUES`` statements for the posts of an
# import (their parameters parsed and planned each time; "Import on PostgreSQL" in
# docs/benchmarks.md). With literals among the values: multi-row statements of up to 500 rows.
_PLAIN_INSERT = re.compile(
    r"(?is)\s*(INSERT\s+INTO\s+([\w\"]+)\s*\(([^()]*)\)\s*VALUES)\s*(\([^()]*\))\s*"
)
_ONLY_PARAMS = re.compile(r"\(\s*%s(?:\s*,\s*%s)*\s*\)")
_MAX_PARAMS = 65535  # PostgreSQL's limit of parameters in one statement
_MAX_ROWS = 500


async def _many(cur: psycopg.AsyncCursor[Any], sql: str, rows: list[Sequence[Any]]) -> int:
    """``sql`` once per row of ``rows`` (one statement for them all where it can); rows
    changed."""
    if not rows:
        return 0
    m = _PLAIN_INSERT.fullmatch(sql)
    width = len(rows[0])
    if m is None or width == 0 or m.group(4).count("%s") != width:
        await cur.executemany(sql, rows)
        return max(cur.rowcount, 0)
    if _ONLY_PARAMS.fullmatch(m.group(4)):
        async with cur.copy(f"COPY {m.group(2)} ({m.group(3)}) FROM STDIN") as copy:
            for row in rows:
                await copy.write_row(row)
        return max(cur.rowcount, 0)
    step = max(1, min(_MAX_ROWS, _MAX_PARAMS // width))
    changed = 0
    for i in range(0, len(rows), step):
        chunk = rows[i : i + step]
        await cur.execute(
            m.group(1) + " " + ", ".join([m.group(4)] * len(chunk)),
            [v for row in chunk for v in row],
        )
        changed += max(cur.rowcount, 0)
    return changed


def _value(row: Sequence[Any]) -> list[Any]:
    # sum() of BIGINT is NUMERIC in PostgreSQL: an int, as SQLite gives
    return [
        (int(v) if v == v.to_integral_value() else float(v)) if isinstance(v, Decimal) else v
        for v in row
    ]


def read_only(url: str) -> str:
    """``url`` as a libpq connection string whose sessions start read-only
    (``default_transaction_read_only``, added to any ``options`` the URL carries): the server
    refuses every write made through it, whatever the statement (the web view)."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    given = str(conninfo_to_dict(url).get("options") or "")
    return make_conninfo(url, options=f"{given} -c default_transaction_read_only=on".strip())


async def connect(url: str, *, size: int = POOL_SIZE, readonly: bool = False) -> PgConnection:
    """A pool of connections to the server at ``url`` (autocommit: transactions are explicit;
    ``readonly``: every session read-only, see :func:`read_only`). One connection is made
    first on its own, so that a refusal (no server, no database, a wrong password) is
    PostgreSQL's own one line at once, not a pool's time-out."""
    import psycopg
    from psycopg_pool import AsyncConnectionPool

    try:
        conninfo = read_only(url) if readonly else url
        first = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
        await first.close()
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            conninfo,
            min_size=1,
            max_size=size,
            kwargs={"autocommit": True},
            open=False,
            timeout=CHECKOUT_SECONDS,
            name="telewatch",
        )
        await pool.open(wait=True, timeout=CHECKOUT_SECONDS)
    except psycopg.Error as exc:
        raise _error(exc) from None
    return PgConnection(pool, url)
