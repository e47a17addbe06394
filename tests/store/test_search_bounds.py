"""The search's bounded costs: relevance ranks the newest RELEVANCE_WINDOW matching versions
(then every older match, newest first, each post once), and count() stops past its cap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from conftest import MakeChannel, MakePost

from archiver.query import parse
from archiver.store import search as search_module
from archiver.store.archive import Archive
from archiver.store.ingest import ingest
from archiver.store.search import count, iter_matches, search

T0 = datetime(2024, 6, 1, tzinfo=UTC)
FILLER = " ".join(["слово"] * 40)


@pytest.fixture
async def posts(archive: Archive, make_channel: MakeChannel, make_post: MakePost) -> Archive:
    """Posts 1..12 mention the market; the dense ones (three times in a short text) are
    1, 5 and 10; post 7 has two versions that both match."""
    await make_channel()
    batch = []
    for i in range(1, 13):
        dense = i in (1, 5, 10)
        text = "рынок рынок рынок" if dense else f"{FILLER} рынок {FILLER}"
        batch.append(make_post(i, text, date=T0 + timedelta(hours=i)))
    await ingest(archive, batch, source="telethon", alerts=False)
    edit = make_post(7, f"{FILLER} рынок закрыт {FILLER}", date=T0 + timedelta(hours=7),
                     edit_date=T0 + timedelta(days=1))  # fmt: skip
    await ingest(archive, [edit], source="telethon", alerts=False)
    return archive


async def ids(archive: Archive, sort: str) -> list[int]:
    hits = await search(archive, parse("рынок"), limit=100, sort=sort)
    return [h.message_id for h in hits]


async def test_relevance_ranks_the_newest_window_then_the_rest_newest_first(
    posts: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The whole result fits in the default window: fully ranked.
    ranked = await ids(posts, "relevance")
    assert ranked[:3] == [10, 5, 1] and sorted(ranked) == list(range(1, 13))
    # A window of 5 versions: the newest five (12, 11, 10, 9, 8) are ranked, 10 first; the
    # older ones follow newest first, the dense 5 and 1 among them in date order.
    monkeypatch.setattr(search_module, "RELEVANCE_WINDOW", 5)
    windowed = await ids(posts, "relevance")
    assert windowed[0] == 10 and sorted(windowed[:5]) == [8, 9, 10, 11, 12]
    assert windowed[5:] == [7, 6, 5, 4, 3, 2, 1]


async def test_a_post_with_two_matching_versions_comes_once(
    posts: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search_module, "RELEVANCE_WINDOW", 6)  # cuts between post 7's versions
    found = [pid async for pid, _ in iter_matches(posts, parse("рынок"), sort="relevance")]
    assert len(found) == len(set(found)) == 12


async def test_count_in_sql_and_its_cap(posts: Archive) -> None:
    q = parse("рынок")
    assert await count(posts, q) == 12  # post 7's two versions count once
    assert await count(posts, q, cap=20) == 12
    assert await count(posts, q, cap=5) == 6  # more than 5
    assert await count(posts, parse("рынок закрыт")) == 1
    assert await count(posts, parse("-рынок")) == 0
