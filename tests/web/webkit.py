"""Fixtures of the web view's tests: the story's archive (built once a session), and a
Datasette instance on it with the plugin loaded from its entry point, as ``datasette FILE``
runs it. Test modules import them by name (``from webkit import site, story_path``): a
conftest.py here would shadow the suite's own ``conftest`` module."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import story

pytest.importorskip("datasette")

from datasette.app import Datasette

from web.site import Options, close_all, configure

_built: list[Path] = []


@pytest.fixture(scope="session")
def story_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo archive and the deputy's channel (tests/web/story.py); read-only to tests.
    Built once: each module that imports this fixture shares the file."""
    if not _built:
        path = tmp_path_factory.mktemp("story") / "story.db"
        asyncio.run(story.build(path))
        _built.append(path)
    return _built[0]


MakeSite = Callable[..., Awaitable[Datasette]]


@pytest.fixture
async def make_site(story_path: Path) -> AsyncIterator[MakeSite]:
    """``await make_site(**options)``: Datasette on the story's archive; with options, the
    web view configured as ``telewatch serve`` does (else from the plugin's metadata)."""

    async def make(path: Path | None = None, **options: Any) -> Datasette:
        ds = Datasette([str(path or story_path)])
        if options:
            configure(ds, Options(**options))
        await ds.invoke_startup()
        return ds

    try:
        yield make
    finally:
        await close_all()


@pytest.fixture
async def site(make_site: MakeSite) -> Datasette:
    return await make_site()
