"""Fixtures of the web view's tests: the story's archive (built once a session, and copied
once to PostgreSQL), and a Datasette instance on it with the plugin loaded from its entry
point, as ``datasette FILE`` runs it (on PostgreSQL, as ``telewatch serve`` runs it: no file,
the archive's URL in the options). Test modules import them by name (``from webkit import
site, story_path``): a conftest.py here would shadow the suite's own ``conftest`` module."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import story

pytest.importorskip("datasette")

from datasette.app import Datasette
from pg import BACKENDS, new_database

from archiver.store.postgres import is_url
from archiver.store.transfer import migrate, open_pair
from web.server import build
from web.site import Options, close_all, configure


@dataclass
class Served:
    """A ``telewatch serve`` process: its address, its first line, and (once stopped) the
    rest of its standard error."""

    url: str
    line: str
    rest: str = ""


@contextlib.contextmanager
def serving(argv: list[str], env: dict[str, str], cwd: Path) -> Iterator[Served]:
    """``telewatch serve --port 0`` (``argv``) in its own process until the block ends; then
    SIGTERM, which must end it cleanly: the exit status SIGTERM's (uvicorn shuts down, then
    raises the signal again; a shell shows 143)."""
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()  # "telewatch web view of ...: http://127.0.0.1:PORT/; ..."
    found = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
    if found is None:
        proc.kill()
        pytest.fail(f"telewatch serve did not start: {line}{proc.stderr.read()}")
    served = Served(found.group(1), line)
    try:
        yield served
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail("telewatch serve did not stop on SIGTERM within 20 s")
        served.rest = proc.stderr.read()
        proc.stderr.close()
    assert code == -signal.SIGTERM, served.rest


_built: list[Path] = []
_copied: list[str] = []


def _run(coro: Coroutine[Any, Any, None]) -> None:
    """``asyncio.run`` in a thread of its own: a session fixture may first be asked for where
    an event loop runs already (Playwright's sync API in the browser tests)."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coro).result()


@pytest.fixture(scope="session")
def story_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo archive and the deputy's channel (tests/web/story.py); read-only to tests.
    Built once: each module that imports this fixture shares the file."""
    if not _built:
        path = tmp_path_factory.mktemp("story") / "story.db"
        _run(story.build(path))
        _built.append(path)
    return _built[0]


@pytest.fixture(scope="session")
def story_url(story_path: Path, pg_server: str) -> str:
    """The story's archive on PostgreSQL: the file copied by ``telewatch migrate``'s own code
    (verified table by table) into a new database, once a session; read-only to tests."""
    if not _copied:
        url = new_database(pg_server)

        async def copy() -> None:
            source, target = await open_pair(story_path, url)
            try:
                await migrate(source, target)
            finally:
                await source.close()
                await target.close()

        _run(copy())
        _copied.append(url)
    return _copied[0]


@pytest.fixture(params=BACKENDS)
def story_archive(request: pytest.FixtureRequest, story_path: Path) -> Path | str:
    """The story's archive on each backend in turn: its file, or its PostgreSQL URL."""
    if request.param == "sqlite":
        return story_path
    return str(request.getfixturevalue("story_url"))


MakeSite = Callable[..., Awaitable[Datasette]]


@pytest.fixture
async def make_site(story_path: Path) -> AsyncIterator[MakeSite]:
    """``await make_site(archive, **options)``: Datasette on ``archive`` (a file, by default
    the story's, or a PostgreSQL URL); with options, the web view configured as ``telewatch
    serve`` does (else from the plugin's metadata). On PostgreSQL Datasette gets no file and
    the web view the URL, as ``telewatch serve`` does (web.server.build)."""

    async def make(archive: Path | str | None = None, **options: Any) -> Datasette:
        if is_url(archive):  # as `telewatch serve` makes it
            ds = build(str(archive), options.pop("password_hash", None), ZoneInfo("UTC"))
            assert not options, options
        else:
            ds = Datasette([str(archive or story_path)])
            if options:
                configure(ds, Options(**options))
        await ds.invoke_startup()
        return ds

    try:
        yield make
    finally:
        await close_all()


@pytest.fixture
async def site(make_site: MakeSite, story_archive: Path | str) -> Datasette:
    """The web view on the story's archive, on each backend in turn."""
    return await make_site(story_archive)
