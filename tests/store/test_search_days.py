"""``since:``/``until:`` name days in the display time zone (issue 16, item 7): the SQL
search (with and without text) and the in-memory matcher draw the same line, at the local
midnight, around midnight in Europe/Kyiv (UTC+2 in winter, UTC+3 in summer, and the day
the clocks go forward)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from conftest import MakeChannel, MakePost

from archiver.query import day_start, matches, parse, until_bound
from archiver.store.archive import Archive
from archiver.store.ingest import ingest, make_doc
from archiver.store.search import search
from archiver.text import analyze

KYIV = "Europe/Kyiv"

# (query, the post's UTC time, found in Kyiv days, found in UTC days)
CASES = [
    # summer (EEST, UTC+3): 2024-05-02 begins at 2024-05-01 21:00 UTC
    ("since:2024-05-02", "2024-05-01 21:00:00", True, False),
    ("since:2024-05-02", "2024-05-01 20:59:59", False, False),
    ("until:2024-05-01", "2024-05-01 20:59:59", True, True),
    ("until:2024-05-01", "2024-05-01 21:00:00", False, True),
    ("since:2024-05-02 until:2024-05-02", "2024-05-02 20:59:59", True, True),
    ("since:2024-05-02 until:2024-05-02", "2024-05-01 22:30:00", True, False),
    ("since:2024-05-02 until:2024-05-02", "2024-05-02 21:00:00", False, True),
    # winter (EET, UTC+2): 2024-01-15 begins at 2024-01-14 22:00 UTC
    ("since:2024-01-15", "2024-01-14 22:00:00", True, False),
    ("since:2024-01-15", "2024-01-14 21:59:59", False, False),
    ("until:2024-01-14", "2024-01-14 21:59:59", True, True),
    ("until:2024-01-14", "2024-01-14 22:00:00", False, True),
    # 2024-03-31 has 23 hours in Kyiv: from 22:00 UTC the day before to 21:00 UTC
    ("since:2024-03-31", "2024-03-30 22:00:00", True, False),
    ("until:2024-03-31", "2024-03-31 20:59:59", True, True),
    ("until:2024-03-31", "2024-03-31 21:00:00", False, True),
    ("since:2024-04-01", "2024-03-31 21:00:00", True, False),
]


def test_day_start() -> None:
    assert day_start(date(2024, 5, 2), KYIV) == "2024-05-01 21:00:00"
    assert day_start(date(2024, 1, 15), KYIV) == "2024-01-14 22:00:00"
    assert until_bound(date(2024, 3, 31), KYIV) == "2024-03-31 21:00:00"
    assert day_start(date(2024, 5, 2)) == "2024-05-02 00:00:00"  # UTC unless told
    # Santiago skips its midnight on 2024-09-08 (00:00 -> 01:00): the day starts at the change
    assert day_start(date(2024, 9, 8), "America/Santiago") == "2024-09-08 04:00:00"


@pytest.mark.parametrize(("query", "when", "kyiv", "utc"), CASES)
async def test_days_are_display_days_in_sql_and_in_memory(
    archive: Archive,
    make_channel: MakeChannel,
    make_post: MakePost,
    query: str,
    when: str,
    kyiv: bool,
    utc: bool,
) -> None:
    await make_channel()
    at = datetime.fromisoformat(when).replace(tzinfo=UTC)
    post = make_post(1, "Эвакуация объявлена", date=at)
    await ingest(archive, [post], source="telethon", alerts=False)
    for tz, found in ((KYIV, kyiv), ("UTC", utc)):
        for text in (query, f"эвакуация {query}"):  # the plain plan and the FTS5 plan
            hits = await search(archive, parse(text, tz))
            assert bool(hits) is found, (text, tz, when)
        doc = make_doc(
            analyze(post.text),
            channel_id=post.channel_id,
            username="vsaldo",
            date=when,
            edited=False,
            deleted=False,
            media_kind=None,
            link=False,
            is_service=False,
        )
        assert matches(parse(query, tz).root, doc) is found, (query, tz, when)
