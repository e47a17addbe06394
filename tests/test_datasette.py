"""The archive opens in Datasette as it is: the real datasette package finds the FTS table of
``versions``, and its search box finds words as written (a ``prefix*`` for their forms: word
forms are expanded by telewatch's own queries, not stored in the index)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import MakeChannel

from archiver.models import Post
from archiver.store.archive import Archive
from archiver.store.ingest import ingest

datasette_app = pytest.importorskip("datasette.app")
datasette_utils = pytest.importorskip("datasette.utils")

RU = -1001811111111
T0 = datetime(2024, 5, 1, 12, tzinfo=UTC)


@pytest.fixture
async def path(archive: Archive, make_channel: MakeChannel) -> Path:
    await make_channel(RU, "vsaldo", "Сальдо")
    await ingest(
        archive,
        [
            Post(RU, 1, T0, "Объявлена эвакуация жителей"),
            Post(RU, 2, T0, "Жители продолжают эвакуацию"),
            Post(RU, 3, T0, "Эвакуационных автобусов не хватает"),
            Post(RU, 4, T0, "Рынок закрыт"),
        ],
        source="telethon",
        alerts=False,
    )
    await ingest(
        archive,
        [Post(RU, 4, T0, "Рынок закрыт, ЭВАКУАЦИИ не будет", edit_date=T0)],
        source="telethon",
        alerts=False,
    )
    return archive.path


def test_detect_fts_finds_the_versions_index(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        assert datasette_utils.detect_fts(conn, "versions") == "versions_fts"
        assert datasette_utils.detect_fts(conn, "posts") is None


async def get(path: Path, url: str) -> Any:
    ds = datasette_app.Datasette([str(path)])
    await ds.invoke_startup()
    resp = await ds.client.get(url)
    assert resp.status_code == 200, resp.text
    return resp.json()


async def test_the_search_box_finds_words_and_prefixes(path: Path) -> None:
    db = path.stem
    rows = await get(path, f"/{db}/versions.json?_search=эвакуацию&_shape=array&_col=text")
    assert [r["text"] for r in rows] == ["Жители продолжают эвакуацию"]
    url = f"/{db}/versions.json?_search=эвакуаци*&_searchmode=raw&_shape=array&_col=text"
    rows = await get(path, url)
    assert sorted(r["text"] for r in rows) == [
        "Жители продолжают эвакуацию",
        "Объявлена эвакуация жителей",
        "Рынок закрыт, ЭВАКУАЦИИ не будет",
        "Эвакуационных автобусов не хватает",
    ]
    # The old version of post 4 is still there, and found by its own words.
    old = await get(path, f"/{db}/versions.json?_search=закрыт&_shape=array&_col=text")
    assert sorted(r["text"] for r in old) == ["Рынок закрыт", "Рынок закрыт, ЭВАКУАЦИИ не будет"]


async def test_the_table_page_offers_search(path: Path) -> None:
    ds = datasette_app.Datasette([str(path)])
    await ds.invoke_startup()
    resp = await ds.client.get(f"/{path.stem}/versions")
    assert resp.status_code == 200
    assert 'name="_search"' in resp.text
