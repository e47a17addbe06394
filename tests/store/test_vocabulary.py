"""Did-you-mean from the FTS5 vocabulary (issue 16): the archive's nearest words to query
words no post has, nearest and then most frequent first, one per word family."""

from __future__ import annotations

import pytest
from conftest import MakeChannel, MakePost

from archiver.query import parse
from archiver.store import vocabulary
from archiver.store.archive import Archive
from archiver.store.ingest import ingest
from archiver.store.vocabulary import Suggestion, corrected, distance, suggest

TEXTS = [
    "Объявлена эвакуация жителей",
    "Эвакуации не будет",
    "Эвакуацию перенесли",
    "Эвакуацию отменили",
    "эвакуационных автобусов нет",
    "Обстрел Херсона",
    "Обстрелы продолжаются",
    "Война, день первый",
    "Войны нет",
    "Войны не будет",
]


@pytest.fixture
async def seeded(archive: Archive, make_channel: MakeChannel, make_post: MakePost) -> Archive:
    await make_channel()
    posts = [make_post(i + 1, t) for i, t in enumerate(TEXTS)]
    await ingest(archive, posts, source="telethon", alerts=False)
    return archive


@pytest.mark.parametrize(
    ("a", "b", "d"),
    [
        ("эвакуацыя", "эвакуация", 1),
        ("ab", "ba", 1),  # a swap of neighbours is one edit
        ("эвакуция", "эвакуация", 1),  # a letter left out
        ("эвакуацияя", "эвакуация", 1),
        ("обстерл", "обстрел", 1),
        ("kitten", "sitting", 3),  # over the cap of 2: cap + 1
        ("abc", "abcdef", 3),
    ],
)
def test_distance(a: str, b: str, d: int) -> None:
    assert distance(a, b, 2) == d
    assert distance(b, a, 2) == d


SUGGESTIONS = [
    # a typo: the nearest word; its other forms are not offered again
    ("эвакуацыя", [Suggestion("эвакуацыя", ("эвакуация",))]),
    ("ЭВАКУАЦЫЯ", [Suggestion("эвакуацыя", ("эвакуация",))]),
    # the first two letters swapped
    ("вэакуация", [Suggestion("вэакуация", ("эвакуация",))]),
    ("обстерл", [Suggestion("обстерл", ("обстрел",))]),
    # one edit in the second letter (looked up by name); войны (more posts) is the same family
    ("вайна", [Suggestion("вайна", ("война",))]),
    # a word the archive has in some form: nothing to suggest, even with no results
    ("эвакуации Одесса", []),
    ("эвакуация -обстрел", []),
    # a word under NOT, a phrase and a prefix are not looked at
    ("обстрел -вайна", []),
    ('"эвакуацыя"', []),
    ("эвакуац*", []),
    # nothing near, and words too short to mean anything
    ("мобилизация", []),
    ("xy", []),
]


@pytest.mark.parametrize(("query", "expected"), SUGGESTIONS)
async def test_suggest(seeded: Archive, query: str, expected: list[Suggestion]) -> None:
    assert await suggest(seeded, parse(query)) == expected


async def test_the_most_frequent_first_at_the_same_distance(
    seeded: Archive, make_post: MakePost
) -> None:
    texts = ["Кот на крыше", "Кат в порту", "Кат снова", "Кат уехал"]
    posts = [make_post(100 + i, t) for i, t in enumerate(texts)]
    await ingest(seeded, posts, source="telethon", alerts=False)
    assert await suggest(seeded, parse("кут")) == [Suggestion("кут", ("кат", "кот"))]


async def test_two_edits_away_are_read_by_range_up_to_the_cap(
    seeded: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Words two edits away come from the range of words that begin alike, at most
    SCAN_CAP of them: with a cap of 1 the range "эв..." yields only its first word
    (эвакуации, three edits away), so эвакуация is not offered."""
    query = parse("эвакуацияхх")
    assert await suggest(seeded, query) == [Suggestion("эвакуацияхх", ("эвакуация",))]
    monkeypatch.setattr(vocabulary, "SCAN_CAP", 1)
    assert await suggest(seeded, query) == []


def test_corrected() -> None:
    s = [Suggestion("эвакуацыя", ("эвакуация",))]
    assert corrected("Эвакуацыя channel:vsaldo", s) == "эвакуация channel:vsaldo"
    assert corrected("эвакуацыями", s) is None
