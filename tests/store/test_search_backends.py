"""The query language on both backends (issue 18): the same archive ingested into SQLite and
into PostgreSQL must give the same posts in the same order for every query, the same pages,
counts, relevance order, snippets with the same marked words, and the same suggestions.

The corpus is tests/store/test_search.py's (ru/uk/en, edits, a deletion, a service post,
media, links) plus posts for what tokenising could split differently: hyphens, apostrophes,
digits and times, ``ё``/``є``/``ї``/``ґ``, and a channel of 150 posts for paging. Expected
sets come from the in-memory matcher (:func:`archiver.query.matches`), which knows no
backend.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from archiver.models import ChannelInfo, Media, Post
from archiver.query import parse
from archiver.store.archive import Archive
from archiver.store.channels import upsert_channel
from archiver.store.ingest import ingest
from archiver.store.search import count, iter_hits, search
from archiver.store.vocabulary import suggest
from store.test_search import (
    CASES,
    KEYS,
    PREFIX,
    Corpus,
    Spec,
    queries,
)

PAGED = -1004444444444  # the channel of 150 posts for paging

EXTRA = [
    Spec("ru20", "2023-02-01", ("Ростов-на-Дону: северо-запад города без света",)),
    Spec("ru21", "2023-02-02", ("Всё спокойно, ёлку поставили на площади",)),
    Spec("ru22", "2023-02-03", ("Самолёт Су-34 и F-16 над городом в 12:00",)),
    Spec("ru23", "2023-02-04", ("Курс 3.5% на 2024 год, covid19 и COVID-19",)),
    Spec("uk20", "2023-02-05", ("Об'єкт знищено, пір’я летіло", "Обʼєкт знищено, пірʼя летіло")),
    Spec("uk21", "2023-02-06", ("З'їзд у Європі: їжак на ґанку, Ґрунт сухий",)),
    Spec("uk22", "2023-02-07", ("Європа та європейці, єдність",)),
    Spec("en20", "2023-02-08", ("Zelensky's visit: the town was shelled, shelling continues",)),
    Spec("en21", "2023-02-09", ("Well-known co-operation; don't re-enter the e-mail",)),
    Spec("en22", "2023-02-10", ("The market the market the market: market day",)),
    Spec("en23", "2023-02-11", ("",), {"media": (Media("photo"),)}),  # no words at all
]

EXTRA_QUERIES = [
    "ростов-на-дону",
    '"ростов на дону"',
    '"на дону"',
    "северо*",
    "северо-запад",
    "f-16",
    "су-34",
    '"су 34"',
    "34",
    "f1*",
    "пір'я",
    "пірʼя",
    "пір’я",
    "об'єкт",
    "обʼєкт*",
    "з'їзд",
    "зʼї*",
    "ёлка",
    "елку",
    "всё",
    "все",
    "самолет",
    "самолёт",
    "європа",
    "європ*",
    "євро*",
    "ґанок",
    "ганок",
    "ґр*",
    "грунт",
    "їж*",
    "їжак",
    "12:00",
    '"12 00"',
    "2024",
    "3.5",
    '"3 5"',
    "covid*",
    "covid19",
    "covid-19",
    "shelled",
    "shelling",
    "shell",
    "zelensky's",
    "zelensky",
    "zelensk*",
    "well-known",
    "don't",
    "e-mail",
    "re*",
    '"the market"',
    '"market the market"',
    "market -day",
    "market NOT (day OR closed)",
    "-(market OR шелл*)",
    "(ростов* OR європ*) -ґанок",
    "NOT NOT market",
    "NOT (NOT market)",
    '"the market" OR -європа',
    "channel:kherson_oda (євро* OR обстріл)",
    "channel:vsaldo OR європа",
    "since:2023-02-05 -market",
    "until:2023-02-03 (ростов* OR всё)",
    "since:2023-02-01 until:2023-02-05 -is:edited",
    "is:edited OR has:link",
    "-has:media -is:deleted -is:edited",
    "бюллетень",
    "бюллетень -правка",
    '"правка 2"',
    "channel:-1004444444444",
    "channel:-1004444444444 since:2024-01-02 until:2024-01-03",
    # words with filters: read in windows (or through the index) within the filters' scope
    "бюллетень since:2024-01-03",
    "бюллетень номер until:2024-01-04 channel:-1004444444444",
    "бюллетень -is:edited since:2024-01-02 until:2024-01-06",
    "бюллетень (is:edited OR has:link)",
    "бюллетень -(is:edited OR has:media)",
    "ёлку since:2023-01-01",
    "ёлку until:2023-01-01",
    "-бюллетень since:2024-01-06",
    "бюллетень since:2024-01-05 since:2024-01-06 until:2024-01-06",
]
ALL_QUERIES = [q for q, _ in CASES] + EXTRA_QUERIES


def paged_posts(version: int) -> list[Post]:
    """150 posts, an hour apart; from version 1 on, every third one edited again."""
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    return [
        Post(
            channel_id=PAGED,
            message_id=i,
            date=t0 + timedelta(hours=i),
            text=f"Бюллетень номер {i}" + (f", правка {version}" if version else ""),
            edit_date=t0 + timedelta(hours=i, minutes=version) if version else None,
        )
        for i in range(1, 151)
        if version == 0 or i % 3 == 0
    ]


class BothCorpus(Corpus):
    """test_search's corpus with :data:`EXTRA` and the paging channel, in ``location``."""

    async def _build(self, path: Path | str) -> Archive:  # type: ignore[override]
        archive = await super()._build(path)  # type: ignore[arg-type]
        paged = ChannelInfo(PAGED, "bulletins", "Bulletins")
        await upsert_channel(archive, paged, source="telethon")
        for spec in EXTRA:
            for post in spec.posts():
                await ingest(archive, [post], source="telethon", alerts=False)
        for v in range(3):
            await ingest(archive, paged_posts(v), source="telethon", alerts=False)
        return archive

    async def _docs(self) -> list[Any]:  # type: ignore[override]
        return []  # expected sets come from _matcher_keys (keys of every channel)


def key(channel_id: int, message_id: int) -> str:
    if channel_id == PAGED:
        return f"b{message_id}"
    return KEYS.get((channel_id, message_id)) or f"{PREFIX[channel_id]}{message_id}"


@pytest.fixture(scope="module")
def both(
    tmp_path_factory: pytest.TempPathFactory, pg_server: str
) -> Iterator[tuple[BothCorpus, BothCorpus]]:
    from pg import new_database

    lite = BothCorpus(tmp_path_factory.mktemp("both") / "a.db")
    pg = BothCorpus(new_database(pg_server))  # type: ignore[arg-type]
    assert pg.archive.dialect == "postgresql" and lite.archive.dialect == "sqlite"
    yield lite, pg
    lite.close()
    pg.close()


def keys(c: Corpus, query: str, **kw: Any) -> list[str]:
    hits = c.run(search(c.archive, parse(query), limit=1000, **kw))
    return [key(h.channel_id, h.message_id) for h in hits]


def test_both_archives_hold_the_same_versions(both: tuple[BothCorpus, BothCorpus]) -> None:
    lite, pg = both
    sql = "SELECT id, post_id, words FROM versions ORDER BY id"
    a = [tuple(r) for r in lite.run(lite.archive.fetchall(sql))]
    b = [tuple(r) for r in pg.run(pg.archive.fetchall(sql))]
    assert a == b and len(a) > 200


@pytest.mark.parametrize("query", ALL_QUERIES, ids=[q or "<empty>" for q in ALL_QUERIES])
def test_query_language_on_both_backends(both: tuple[BothCorpus, BothCorpus], query: str) -> None:
    lite, pg = both
    on_sqlite = keys(lite, query)
    on_postgres = keys(pg, query)
    assert on_postgres == on_sqlite  # the same posts in the same order
    assert len(on_sqlite) == len(set(on_sqlite))
    expected = {key(*k) for k in _matcher_keys(lite, query)}
    assert set(on_sqlite) == expected


def _matcher_keys(c: Corpus, query: str) -> set[tuple[int, int]]:
    from archiver.query import matches
    from archiver.store.ingest import make_doc
    from archiver.text import analyze

    root = parse(query).root
    rows = c.run(
        c.archive.fetchall(
            "SELECT p.channel_id, p.message_id, p.date, p.edited, p.deleted_at, p.media_kind,"
            " p.has_link, p.is_service, c.username, v.text FROM versions v"
            " JOIN posts p ON p.id = v.post_id JOIN channels c ON c.id = p.channel_id"
        )
    )
    out = set()
    for r in rows:
        doc = make_doc(
            analyze(r["text"]),
            channel_id=r["channel_id"],
            username=r["username"],
            date=r["date"],
            edited=bool(r["edited"]),
            deleted=r["deleted_at"] is not None,
            media_kind=r["media_kind"],
            link=bool(r["has_link"]),
            is_service=bool(r["is_service"]),
        )
        if matches(root, doc):
            out.add((r["channel_id"], r["message_id"]))
    return out


def test_the_extra_cases_find_what_they_should(both: tuple[BothCorpus, BothCorpus]) -> None:
    """A few of EXTRA_QUERIES spelled out, so that "both empty" cannot pass unnoticed."""
    _, pg = both
    assert keys(pg, "ростов-на-дону") == ["ru20"]
    assert keys(pg, '"ростов на дону"') == ["ru20"]
    assert keys(pg, "пір'я") == keys(pg, "пір’я") == ["uk20"]
    assert keys(pg, "ёлка") == keys(pg, "елку") == ["ru21"]
    assert keys(pg, "ґанок") == ["uk21"]
    assert keys(pg, "ґр*") == ["uk21"]
    assert keys(pg, "європ*") == ["uk22", "uk21"]
    assert keys(pg, '"12 00"') == ["ru22", "ru3"]
    assert keys(pg, "covid19") == ["ru23"]
    assert keys(pg, "shell") == ["en20", "en3"]
    assert keys(pg, '"market the market"') == ["en22"]
    assert len(keys(pg, "бюллетень")) == 150


@settings(
    max_examples=int(os.environ.get("TELEWATCH_HYPOTHESIS_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(query=queries)
def test_random_queries_agree_on_both_backends(
    both: tuple[BothCorpus, BothCorpus], query: str
) -> None:
    lite, pg = both
    assert keys(pg, query) == keys(lite, query)


@settings(
    max_examples=int(os.environ.get("TELEWATCH_HYPOTHESIS_EXAMPLES", "200")) // 2,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(query=queries)
def test_random_queries_agree_with_small_windows(
    both: tuple[BothCorpus, BothCorpus], small_windows: list[str], query: str
) -> None:
    """The random queries (words, filters, NOT, OR) with PostgreSQL reading windows of three
    versions: every way of reading, with and without filters, gives SQLite's posts."""
    lite, pg = both
    assert keys(pg, query) == keys(lite, query)


@pytest.fixture
def small_windows(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """PostgreSQL's reading with windows of a few versions (and small batches), so that the
    corpus takes every way pg_search reads: several windows, then the index; the SQL of
    each statement is kept."""
    from archiver.store import pg_search

    monkeypatch.setattr(pg_search, "WINDOW", 3)
    monkeypatch.setattr(pg_search, "SPARSE", 0)  # no word count makes a query sparse at once
    monkeypatch.setattr(pg_search, "_FIRST_BATCH", 2)
    monkeypatch.setattr(pg_search, "_MAX_BATCH", 8)
    seen: list[str] = []
    real = Archive.fetchall

    async def spy(self: Archive, sql: str, params: Any = ()) -> Any:
        seen.append(sql)
        return await real(self, sql, params)

    monkeypatch.setattr(Archive, "fetchall", spy)
    return seen


@pytest.mark.parametrize("query", ALL_QUERIES, ids=[q or "<empty>" for q in ALL_QUERIES])
def test_small_windows_give_the_same_results(
    both: tuple[BothCorpus, BothCorpus], small_windows: list[str], query: str
) -> None:
    lite, pg = both
    assert keys(pg, query) == keys(lite, query)
    assert keys(pg, query, sort="relevance") == keys(lite, query, sort="relevance")


def test_small_windows_take_every_way(
    both: tuple[BothCorpus, BothCorpus], small_windows: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dense query is read window after window, a sparse one through the index after a
    window, or at once when the words' counts allow few matches; words with filters the
    same way within the filters' scope; filters alone, or words in an OR with a filter,
    keep the planner's plan (:func:`pg_search.plan`)."""
    from archiver.store import pg_search

    lite, pg = both
    dense = "бюллетень номер"  # 150 of the newest posts
    assert len(keys(pg, dense)) == 150 and keys(pg, dense) == keys(lite, dense)
    assert small_windows.count(pg_search._WINDOW_SQL) > 3
    small_windows.clear()
    assert keys(pg, "ёлку поставили") == keys(lite, "ёлку поставили") == ["ru21"]
    assert pg_search._WINDOW_SQL in small_windows
    assert pg_search._SPARSE_SQL in small_windows
    small_windows.clear()
    assert keys(pg, "ёлку channel:-1004444444444") == []
    assert pg_search._WINDOW_SQL not in small_windows
    assert pg_search._SPARSE_SQL not in small_windows
    assert any("p.channel_id = ?" in sql and "tsv @@" in sql for sql in small_windows)
    small_windows.clear()
    recent = "бюллетень since:2024-01-06"  # the newest posts of the paged channel
    assert len(keys(pg, recent)) > 20 and keys(pg, recent) == keys(lite, recent)
    windows = [sql for sql in small_windows if "ORDER BY id DESC LIMIT ?" in sql]
    assert len(windows) > 3 and all("p.date >= ?" in sql for sql in windows)
    small_windows.clear()
    assert keys(pg, "бюллетень OR is:edited") == keys(lite, "бюллетень OR is:edited")
    assert not any("ORDER BY id DESC LIMIT ?" in sql for sql in small_windows)
    small_windows.clear()
    monkeypatch.setattr(pg_search, "SPARSE", 5)
    assert keys(pg, "ёлку") == ["ru21"]
    assert pg_search._WINDOW_SQL not in small_windows
    assert pg_search._SPARSE_SQL in small_windows


# ---------------------------------------------------------------------------- order, pages


@pytest.mark.parametrize(
    "query",
    [
        "эвакуация OR рынок",
        "эвакуация",
        "market OR рынок OR европа",
        "market",
        "бюллетень",
        "бюллетень OR правка",
        '"правка 2" OR номер',
        "бюллетень -правка",
        "channel:-1004444444444 бюллетень",
        "-эвакуация",  # FTS5 cannot rank a lone NOT: newest first on both
        "эвакуация OR is:edited",
    ],
)
def test_relevance_order_is_the_same(both: tuple[BothCorpus, BothCorpus], query: str) -> None:
    lite, pg = both
    assert keys(pg, query, sort="relevance") == keys(lite, query, sort="relevance")


@pytest.mark.parametrize(
    "query",
    ["эвакуация OR рынок", "market", '"the market" OR shell*', "бюллетень -правка", "номер 7"],
)
def test_bm25_scores_are_fts5s(both: tuple[BothCorpus, BothCorpus], query: str) -> None:
    """The score of every matching version, as FTS5's bm25() gives it on SQLite."""
    from archiver.query import to_fts
    from archiver.store import pg_search
    from archiver.store.search import _ranked

    lite, pg = both
    node = _ranked(parse(query))
    assert node is not None
    want = {
        r[0]: r[1]
        for r in lite.run(
            lite.archive.fetchall(
                "SELECT rowid, bm25(versions_fts) FROM versions_fts WHERE versions_fts MATCH ?",
                (to_fts(node),),
            )
        )
    }
    rows = pg.run(
        pg.archive.fetchall(
            "SELECT id, post_id, words FROM versions WHERE id = ANY(CAST(? AS bigint[]))",
            (sorted(want),),
        )
    )
    got = pg.run(pg_search.bm25(pg.archive, node, [(r[0], r[1], r[2]) for r in rows]))
    assert {vid: score for score, vid, _ in got} == want


@pytest.mark.parametrize("window", [1, 50])
def test_relevance_past_the_ranked_window_is_the_same(
    both: tuple[BothCorpus, BothCorpus], window: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A window smaller than the matches: the ranked head, then the rest newest first."""
    from archiver.store import search as search_module

    monkeypatch.setattr(search_module, "RELEVANCE_WINDOW", window)
    lite, pg = both
    for q in ("бюллетень OR правка", "номер"):
        got = keys(pg, q, sort="relevance")
        assert got == keys(lite, q, sort="relevance")
        assert len(got) == 150


@pytest.mark.parametrize("limit", [1, 7, 20, 64, 65, 200])
def test_pages_are_the_same(both: tuple[BothCorpus, BothCorpus], limit: int) -> None:
    lite, pg = both
    for q in ("бюллетень", "правка OR номер", "-эвакуация", '"правка 1"'):
        for sort in ("newest", "relevance"):
            for offset in (0, limit, 3 * limit, 149):
                pages = []
                for c in (lite, pg):
                    hits = c.run(search(c.archive, parse(q), limit=limit, offset=offset, sort=sort))
                    pages.append([key(h.channel_id, h.message_id) for h in hits])
                assert pages[0] == pages[1], (q, sort, offset)


def test_counts_and_exports_are_the_same(both: tuple[BothCorpus, BothCorpus]) -> None:
    lite, pg = both

    async def every(c: Corpus, q: str) -> list[str]:
        return [key(h.channel_id, h.message_id) async for h in iter_hits(c.archive, parse(q))]

    for q in ("бюллетень", "эвак* OR херсон", "-эвакуация", "правка"):
        assert pg.run(count(pg.archive, parse(q))) == lite.run(count(lite.archive, parse(q)))
        assert pg.run(count(pg.archive, parse(q), cap=10)) == min(
            11, lite.run(count(lite.archive, parse(q)))
        )
        assert pg.run(every(pg, q)) == lite.run(every(lite, q))
    assert pg.run(count(pg.archive, parse("бюллетень"))) == 150


# ---------------------------------------------------------------------------- snippets


@pytest.mark.parametrize(
    "query",
    ['"рынок закрыт"', "эвакуация", "назначена", "пір'я", "market -day", "ґр*", "shelled"],
)
def test_snippets_mark_the_same_words(both: tuple[BothCorpus, BothCorpus], query: str) -> None:
    lite, pg = both
    a, b = (c.run(search(c.archive, parse(query), limit=100)) for c in (lite, pg))
    assert [(h.version_id, h.snippet, h.spans, h.to_json()) for h in b] == [
        (h.version_id, h.snippet, h.spans, h.to_json()) for h in a
    ]
    assert b and all(h.spans for h in b)


def test_a_snippet_on_postgresql_marks_the_matched_words(
    both: tuple[BothCorpus, BothCorpus],
) -> None:
    _, pg = both
    (h,) = pg.run(search(pg.archive, parse('"рынок закрыт"')))
    assert h.to_json()["snippet"] == "Жители продолжают эвакуацию, **рынок** **закрыт**"
    (old,) = pg.run(search(pg.archive, parse("назначена")))
    assert old.snippet == "ЭВАКУАЦИЯ назначена на утро"  # the version that matched
    assert [old.snippet[x:y] for x, y in old.spans] == ["назначена"]


# ---------------------------------------------------------------------------- suggestions


@pytest.mark.parametrize(
    "query",
    ["эвакуацыя", "рынак", "eveacuation", "закрытт", "обстрлі", "ёлкка", "бюллетнь", "market"],
)
def test_suggestions_are_the_same(both: tuple[BothCorpus, BothCorpus], query: str) -> None:
    lite, pg = both
    a = lite.run(suggest(lite.archive, parse(query)))
    b = pg.run(suggest(pg.archive, parse(query)))
    assert b == a
    assert bool(a) == (query != "market")  # a word the archive has gets none


def test_suggestions_on_postgresql(both: tuple[BothCorpus, BothCorpus]) -> None:
    _, pg = both
    (s,) = pg.run(suggest(pg.archive, parse("эвакуацыя")))
    assert s.word == "эвакуацыя" and s.candidates[0].startswith("эвакуаци")
    assert pg.run(suggest(pg.archive, parse("эвакуация"))) == []  # the archive has it


def test_the_vocabulary_is_fts5s(both: tuple[BothCorpus, BothCorpus]) -> None:
    """search_words holds each word with the number of versions holding it, as fts5vocab."""
    lite, pg = both
    lite.run(lite.archive.write("CREATE VIRTUAL TABLE IF NOT EXISTS temp.v USING"
                                " fts5vocab(main, versions_fts, row)"))  # fmt: skip
    want = [tuple(r) for r in lite.run(lite.archive.fetchall("SELECT term, doc FROM temp.v"))]
    got = pg.run(pg.archive.fetchall("SELECT word, docs FROM search_words ORDER BY word"))
    assert [tuple(r) for r in got] == want


async def test_word_counts_and_statistics_follow_updates_and_deletes(pg_archive: Archive) -> None:
    """The triggers keep search_words and search_stats equal to a count over versions."""
    a = pg_archive
    await upsert_channel(a, ChannelInfo(PAGED, "bulletins", "Bulletins"), source="telethon")
    await ingest(a, paged_posts(0)[:20], source="telethon", alerts=False)
    await ingest(a, paged_posts(1)[:5], source="telethon", alerts=False)
    first = await a.fetchone("SELECT min(id) FROM versions")
    assert first is not None
    async with a.transaction() as db:
        await db.execute("UPDATE versions SET words = 'бюллетень бюллетень новое' WHERE id = ?",
                         (first[0],))  # fmt: skip
        await db.execute("DELETE FROM post_events")
        await db.execute("UPDATE posts SET current_version_id = NULL")
        await db.execute("DELETE FROM versions WHERE id IN (SELECT id FROM versions"
                         " ORDER BY id DESC LIMIT 3)")  # fmt: skip
    want = await a.fetchall(
        "SELECT w, count(DISTINCT id) FROM versions, unnest(string_to_array(words, ' ')) AS w"
        " WHERE w <> '' GROUP BY w ORDER BY w"
    )
    got = await a.fetchall("SELECT word, docs FROM search_words WHERE docs > 0 ORDER BY word")
    assert [tuple(r) for r in got] == [tuple(r) for r in want]
    assert ("новое", 1) in [tuple(r) for r in got]
    stats = await a.fetchone("SELECT versions, tokens FROM search_stats")
    count = await a.fetchone(
        "SELECT count(*), sum(cardinality(string_to_array(words, ' '))) FROM versions"
        " WHERE words <> ''"
    )
    assert stats is not None and count is not None and tuple(stats) == tuple(count)
