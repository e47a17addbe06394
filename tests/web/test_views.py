"""The web view's pages through Datasette's own test client, on the story's archive: the
demo's official channel and his deputy's (tests/web/story.py). Each page test runs on both
backends: the story's SQLite file, and the same archive copied to PostgreSQL (``site``)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from datasette.app import Datasette
from story import DEPUTY, OFFICIAL
from webkit import (  # noqa: F401 (fixtures)
    MakeSite,
    make_site,
    site,
    story_archive,
    story_path,
    story_url,
)

from archiver.cli import cli as telewatch
from archiver.store.postgres import is_url
from web.server import build
from web.site import close_all, site_of

SEARCH = "/-/telewatch/search"


def posts_on(html: str) -> list[str]:
    """``channel/message id`` of every result, in page order."""
    return re.findall(r'data-post="([^"]+)"', html)


def total_on(html: str) -> int:
    m = re.search(r'id="total" data-total="(\d+)"', html)
    assert m is not None, html
    return int(m.group(1))


async def get(ds: Datasette, url: str, status: int = 200) -> Any:
    resp = await ds.client.get(url)
    assert resp.status_code == status, resp.text[:2000]
    return resp


def cli(archive: Path | str, *args: str) -> str:
    """``telewatch ARGS`` on the archive (a file, or PostgreSQL's URL as the environment
    gives it); its standard output."""
    if is_url(archive):
        env, db = {"TELEWATCH_DATABASE_URL": str(archive), "TELEWATCH_CONFIG": ""}, []
    else:
        env, db = {"TELEWATCH_CONFIG": ""}, ["--db", str(archive)]
    result = CliRunner().invoke(telewatch, [*db, *args], env=env)
    assert result.exit_code == 0, result.output
    return result.stdout


def cli_search(archive: Path | str, *args: str) -> list[dict[str, Any]]:
    out = cli(archive, "search", *args, "--json", "--limit", "10000")
    return [json.loads(line) for line in out.splitlines()]


# ---------------------------------------------------------------------------- search


@pytest.mark.parametrize(
    "query",
    ["эвакуация", "евакуація", "evacuation", "выезд OR эвакуация", '"тревожный чемоданчик"',
     "эвак*", "эвакуация -отменено"],
)  # fmt: skip
def test_the_web_finds_what_telewatch_search_finds(story_archive: Path | str, query: str) -> None:
    expected = [f"{h['channel']}/{h['message_id']}" for h in cli_search(story_archive, query)]
    assert expected, query

    async def web() -> str:
        if is_url(story_archive):
            ds = build(str(story_archive), None, ZoneInfo("UTC"))
        else:
            ds = Datasette([str(story_archive)])
        try:
            from urllib.parse import quote

            return str((await get(ds, f"{SEARCH}?q={quote(query)}")).text)
        finally:
            await close_all()

    html = asyncio.run(web())
    assert posts_on(html) == expected
    assert total_on(html) == len(expected)


async def test_word_forms_are_found_and_marked(site: Datasette) -> None:
    html = (await get(site, f"{SEARCH}?q=эвакуация")).text
    marked = re.findall(r"<mark>([^<]+)</mark>", html)
    assert {m.lower() for m in marked} >= {"эвакуация", "эвакуации", "эвакуацию"}
    assert f"{DEPUTY}/302" in posts_on(html)  # "эвакуации", another form, another channel


async def test_form_fields_are_filters(site: Datasette) -> None:
    only = posts_on((await get(site, f"{SEARCH}?q=эвакуация&channel={DEPUTY}")).text)
    assert only and all(p.startswith(f"{DEPUTY}/") for p in only)
    edited = posts_on((await get(site, f"{SEARCH}?q=эвакуация&edited=1")).text)
    assert set(edited) == {f"{OFFICIAL}/42", f"{OFFICIAL}/8", f"{DEPUTY}/303"}
    deleted = posts_on((await get(site, f"{SEARCH}?q=эвакуация&deleted=1")).text)
    assert deleted == [f"{OFFICIAL}/42"]
    media = posts_on((await get(site, f"{SEARCH}?q=эвакуация&media=1")).text)
    assert media == [f"{OFFICIAL}/3"]
    days = posts_on(
        (await get(site, f"{SEARCH}?q=эвакуация&since=2024-03-10&until=2024-03-15")).text
    )
    assert days == [f"{OFFICIAL}/35", f"{OFFICIAL}/34", f"{OFFICIAL}/28"]
    # Filters alone, no words: every deleted post.
    alone = posts_on((await get(site, f"{SEARCH}?deleted=1")).text)
    assert alone == [f"{OFFICIAL}/42"]


async def test_paging_keeps_the_total(site: Datasette, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("web.search.PAGE_SIZE", 4)
    first = (await get(site, f"{SEARCH}?q=эвакуация")).text
    second = (await get(site, f"{SEARCH}?q=эвакуация&page=2")).text
    third = (await get(site, f"{SEARCH}?q=эвакуация&page=3")).text
    pages = posts_on(first) + posts_on(second) + posts_on(third)
    assert [len(posts_on(p)) for p in (first, second, third)] == [4, 4, 3]
    assert len(set(pages)) == 11 == total_on(first) == total_on(third)
    assert "1–4 of 11 posts" in first and "5–8 of 11 posts" in second
    assert (
        'rel="next" href="?q=%D1%8D%D0%B2%D0%B0%D0%BA%D1%83%D0%B0%D1%86%D0%B8%D1%8F&amp;page=2"'
        in first
    )
    assert 'rel="next"' not in third


async def test_a_page_past_the_end_says_where_the_results_end(
    site: Datasette, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A link kept from a larger result (or typed) asks page 5 of 3: the page says so and
    links to the last page (it said "page 5 of 3" with a "newer" link to page 4)."""
    monkeypatch.setattr("web.search.PAGE_SIZE", 4)
    html = (await get(site, f"{SEARCH}?q=эвакуация&page=5")).text
    assert posts_on(html) == [] and total_on(html) == 11
    assert "No posts on page 5: the results end on" in html
    assert (
        'id="last-page" href="?q=%D1%8D%D0%B2%D0%B0%D0%BA%D1%83%D0%B0%D1%86%D0%B8%D1%8F&amp;page=3"'
        in html
    )
    assert "page 5 of 3" not in html and "page=4" not in html


def test_form_days_are_the_display_time_zone_s() -> None:
    """The since/until fields and since: in the text name days of the time zone the page
    shows dates in (they were UTC days: a post at 00:30 Kyiv time fell on the day before)."""
    from archiver.query import Filter, walk
    from web.forms import SearchForm

    for form in (SearchForm(since="2024-04-02"), SearchForm(q="since:2024-04-02")):
        found = [n for n in walk(form.query("Europe/Kyiv").root) if isinstance(n, Filter)]
        assert [(f.field, f.tz) for f in found] == [("since", "Europe/Kyiv")]


async def test_a_total_over_the_cap_says_more_than(
    site: Datasette, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("web.search.COUNT_CAP", 5)
    html = (await get(site, f"{SEARCH}?q=эвакуация")).text
    assert "more than 5 posts" in html and "count=all" in html
    exact = (await get(site, f"{SEARCH}?q=эвакуация&count=all")).text
    assert total_on(exact) == 11 and "more than" not in exact


async def test_relevance_order_is_the_clis(site: Datasette, story_archive: Path | str) -> None:
    newest = posts_on((await get(site, f"{SEARCH}?q=эвакуация")).text)
    relevant = posts_on((await get(site, f"{SEARCH}?q=эвакуация&sort=relevance")).text)
    assert sorted(relevant) == sorted(newest) and relevant != newest
    ranked = await asyncio.to_thread(cli_search, story_archive, "эвакуация", "--sort", "relevance")
    assert relevant == [f"{h['channel']}/{h['message_id']}" for h in ranked]


@pytest.mark.parametrize(
    ("url", "status", "says"),
    [
        (f"{SEARCH}?q=(эвакуация", 400, "query &#39;(эвакуация&#39;: unbalanced parenthesis"),
        (
            f"{SEARCH}?q=эвакуация&since=2024-13-01",
            400,
            "the since field: expected YYYY-MM-DD, got &#39;2024-13-01&#39;</",
        ),
        (f"{SEARCH}?q=эвакуация&channel=nobody_here", 404, "no archived channel matches"),
        (f"{SEARCH}?q=is:nothing", 400, "is: expected one of edited, deleted"),
    ],
)
async def test_bad_input_is_one_clear_line(
    site: Datasette, url: str, status: int, says: str
) -> None:
    html = (await get(site, url, status)).text
    assert says in html and "Traceback" not in html
    assert html.count('class="error"') == 1


async def test_the_empty_form_explains_the_language(site: Datasette) -> None:
    html = (await get(site, SEARCH)).text
    assert "A bare word finds every form of it" in html and not posts_on(html)
    assert f'<option value="{DEPUTY}">' in html and f'<option value="{OFFICIAL}">' in html


async def test_csv_export_is_telewatch_export(site: Datasette, story_archive: Path | str) -> None:
    resp = await get(site, "/-/telewatch/search.csv?q=эвакуация")
    assert resp.headers["content-type"].startswith("text/csv")
    assert resp.text.startswith("\ufeff")  # Excel opens Cyrillic as is
    rows = list(csv.DictReader(io.StringIO(resp.text.lstrip("\ufeff"))))
    exported = await asyncio.to_thread(cli, story_archive, "export", "эвакуация")
    expected = list(csv.DictReader(io.StringIO(exported.lstrip("\ufeff"))))
    assert rows == expected and len(rows) == 11
    deleted = next(r for r in rows if r["message_id"] == "42")
    assert deleted["state"] == "deleted" and deleted["deleted_how"] == "live"


async def test_json_export_carries_every_version(site: Datasette) -> None:
    resp = await get(site, "/-/telewatch/search.json?q=эвакуация&channel=" + OFFICIAL)
    data = json.loads(resp.text)
    assert data["query"] == "эвакуация" and data["channels"] == [OFFICIAL]
    assert len(data["rows"]) == 9
    row = next(r for r in data["rows"] if r["message_id"] == 42)
    assert [v["text"][:18] for v in row["versions"]] == ["Уважаемые жители! ", "Уважаемые жители! "]
    assert row["state"] == "deleted" and row["deletion_evidence"]


async def test_export_of_a_bad_query_is_an_error_not_a_file(site: Datasette) -> None:
    resp = await get(site, "/-/telewatch/search.csv?q=(", 400)
    assert resp.text.startswith("query '(': ")


# ---------------------------------------------------------------------------- post page


async def test_the_post_page_shows_every_version_with_its_diff(site: Datasette) -> None:
    html = (await get(site, f"/-/telewatch/post/{OFFICIAL}/42")).text
    assert html.count('<div class="version') == 2
    v2 = html[html.index('id="v2"') :]
    assert "<del>Администрация просит помочь" in v2
    assert "<ins>Информация о выезде не соответствует действительности.</ins>" in v2
    assert "Уважаемые жители! <del>" in v2  # the words kept are neither struck nor marked
    v1 = html[html.index('id="v1"') : html.index('id="v2"')]
    assert "original · seen" in " ".join(v1.split())
    assert re.search(r'edited <time datetime="[^"]+">2026-\d\d-\d\d \d\d:\d\d UTC</time>', v2)
    assert 'data-state="deleted"' in html
    assert "Telegram reported the deletion" in html and "(live)" in html
    assert 'href="https://t.me/kherson_admin_demo/42"' in html
    alerts = html[html.index("<h2>Alerts</h2>") :]
    assert alerts.count("<tr><td>") == 3  # new, edited, deleted
    assert "evacuation" in alerts and "111111111" not in html  # recipients counted, not named


async def test_a_missing_post_is_not_called_deleted(site: Datasette) -> None:
    html = (await get(site, f"/-/telewatch/post/{OFFICIAL}/40")).text
    assert 'data-state="missing"' in html and "not a confirmed deletion" in html
    assert "deleted (confirmed)" not in html


async def test_the_post_page_shows_media(site: Datasette) -> None:
    html = (await get(site, f"/-/telewatch/post/{OFFICIAL}/3")).text
    assert "photo, 1280×853, 214,337 bytes" in html


async def test_the_post_page_by_channel_id(site: Datasette) -> None:
    html = (await get(site, "/-/telewatch/post/-1001822222222/303")).text
    assert "Эвакуация отменена" in html and "<del>Эвакуация?" in html


@pytest.mark.parametrize(
    ("url", "says"),
    [
        (f"/-/telewatch/post/{OFFICIAL}/999", "no post 999 in the archive (newest archived: 42)"),
        ("/-/telewatch/post/nobody_here/1", "no archived channel matches"),
    ],
)
async def test_an_unknown_post_is_404(site: Datasette, url: str, says: str) -> None:
    assert says in (await get(site, url, 404)).text


# ---------------------------------------------------------------------------- time line


async def test_the_time_line_puts_channels_side_by_side_in_time(site: Datasette) -> None:
    html = (await get(site, "/-/telewatch/timeline?q=эвакуация OR выезд&since=2026-01-01")).text
    heads = re.findall(r'<th><a href="/-/telewatch/channel/([^"]+)">', html)
    assert heads == [OFFICIAL, DEPUTY]
    rows = re.findall(r'class="entry entry-(\w+)" data-post="([^"]+)" data-column="(\d)"', html)
    assert rows == [
        ("post", f"{OFFICIAL}/42", "0"),  # 09:23 the official asks for help with the departure
        ("post", f"{DEPUTY}/302", "1"),  # +3 min the deputy: no evacuation
        ("edited", f"{OFFICIAL}/42", "0"),  # +7 min the official rewrites it
        ("deleted", f"{OFFICIAL}/42", "0"),  # +20 min and deletes it
        ("post", f"{DEPUTY}/303", "1"),
        ("edited", f"{DEPUTY}/303", "1"),
    ]
    first = html[html.index('data-post="kherson_admin_demo/42"') :]
    assert "организовать <mark>выезд</mark>" in first[:1500]  # the text as first posted
    assert html.count('<svg class="activity"') == 2


async def test_activity_chart_counts_posts_edits_and_deletions(site: Datasette) -> None:
    html = (await get(site, f"/-/telewatch/channel/{OFFICIAL}")).text
    svg = html[html.index('<svg class="activity"') : html.index("</svg>")]
    tips = re.findall(r"<title>(\d{4}-\d\d-\d\d: [^<]+)</title>", svg)
    assert len(tips) == 90
    busy = [t for t in tips if not t.endswith("0 posts, 0 edits, 0 deletions")]
    assert len(busy) == 1 and busy[0].endswith(": 1 posts, 2 edits, 1 deletions")


async def test_channel_page_shows_status_and_coverage(site: Datasette) -> None:
    html = (await get(site, f"/-/telewatch/channel/{DEPUTY}")).text
    assert "Заместитель главы района" in html and "301–303" in html
    assert "ids never seen" in html and "present 3" in html
    listing = (await get(site, "/-/telewatch/channels")).text
    assert listing.count('<a href="/-/telewatch/channel/') == 2


async def test_datasette_pages_still_work_and_link_here(make_site: MakeSite) -> None:
    ds = await make_site()  # the story's SQLite file
    html = (await get(ds, "/story")).text
    assert "versions" in html and "/-/telewatch/search" in html  # the menu links here
    page = (await get(ds, SEARCH)).text
    assert '<a href="/story">Tables</a>' in page


async def test_on_postgresql_no_tables_link_and_no_file(
    make_site: MakeSite, story_url: str
) -> None:
    """Datasette reads SQLite files only: on PostgreSQL it has none (its empty in-memory
    database aside), and the pages do not offer its table browser (psql shows the tables)."""
    ds = await make_site(story_url)
    page = (await get(ds, SEARCH)).text
    assert "Tables</a>" not in page and "Search</a>" in page
    assert site_of(ds).tables_url is None
    assert all(db.path is None for db in ds.databases.values()) and "_memory" not in ds.databases
    assert (await get(ds, "/_memory", 404)).status_code == 404  # no SQL page on nothing
    assert f"{OFFICIAL}/42" in posts_on((await get(ds, f"{SEARCH}?q=эвакуация")).text)


async def test_an_archive_of_another_schema_is_named(make_site: MakeSite, tmp_path: Path) -> None:
    import sqlite3

    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.executescript(
            "CREATE TABLE posts(x); CREATE TABLE versions(x); CREATE TABLE versions_fts(x);"
            " CREATE TABLE post_events(x); CREATE TABLE channels(x); PRAGMA user_version = 2;"
        )
    ds = await make_site(other)
    html = (await get(ds, SEARCH, 503)).text
    assert "schema 2, expected" in html and "upgrades it" in html


async def test_on_postgresql_the_web_views_sessions_refuse_writes(
    make_site: MakeSite, story_url: str
) -> None:
    """The guarantee is the server's, not the pages' good manners: a write through the web
    view's own archive, a single statement or a transaction, is refused by PostgreSQL."""
    import sqlite3

    ds = await make_site(story_url)
    assert (await get(ds, f"{SEARCH}?q=эвакуация")).status_code == 200
    archive = site_of(ds).archive
    assert archive is not None and archive.dialect == "postgresql"
    with pytest.raises(sqlite3.DatabaseError, match="read-only transaction"):
        await archive.db.execute("DELETE FROM posts")
    with pytest.raises(sqlite3.DatabaseError, match="read-only transaction"):
        async with archive.transaction() as db:
            await db.execute("UPDATE channels SET title = 'x'")
    assert len(posts_on((await get(ds, f"{SEARCH}?q=эвакуация")).text)) == 11


async def test_on_postgresql_a_lost_database_is_a_page_that_says_so(
    make_site: MakeSite, pg_server: str
) -> None:
    """The database goes away while the web view serves it (dropped, as a failover or a
    restart would cut the connections): the page says the archive could not be read, in one
    line, without a traceback or the URL's password; the server itself goes on."""
    from urllib.parse import urlsplit

    import psycopg
    from pg import new_database

    from archiver.store.archive import Archive

    url = new_database(pg_server)
    async with await Archive.open(url):
        pass
    ds = await make_site(url.replace("postgres:@", "postgres:s3cret-pw@", 1))
    assert "s3cret-pw" not in (await get(ds, SEARCH)).text
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
    html = (await get(ds, f"{SEARCH}?q=эвакуация", 503)).text
    assert html.count('class="error"') == 1 and "the archive could not be read" in html
    assert "Traceback" not in html and "s3cret-pw" not in html
