"""``rules test``: the backtest over the archive, and the rule/search agreement property."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from archiver.backtest import backtest, format_backtest, hit_json_line, iter_backtest
from archiver.config import parse_rules_file
from archiver.errors import RuleError
from archiver.models import ChannelInfo, Media, Post, Rule
from archiver.query import parse
from archiver.store.archive import Archive
from archiver.store.channels import upsert_channel
from archiver.store.deletions import mark_deleted
from archiver.store.ingest import ingest
from archiver.store.search import iter_matches

VSALDO = -1001811111111
KHERSON = -1001822222222
START = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)

TEXTS = [
    "В связи с угрозой обстрела объявлена эвакуация жителей прибрежных сел.",
    "Администрация района сообщает о продолжении эвакуации из зоны подтопления.",
    "Для проведения эвакуации выделены автобусы, сбор у здания школы в 10:00.",
    "Спасатели эвакуировали пожилых людей, которые не могли покинуть дома.",
    "Сообщения о повторной эвакуации являются фейком, никаких решений не принималось.",
    "Учения по эвакуации пройдут в школе номер 3.",
    "Триває евакуація мешканців лівобережжя, автобуси чекають біля школи.",
    "Після обстрілу пошкоджено лінії електропередачі, світла немає.",
    "Ціни на м'ясо та хліб на ринку зросли.",
    "Evacuation of civilians continues, buses leave from the school at noon.",
    "The bridge is closed after shelling; evacuations are suspended.",
    "Водоснабжение в центральной части города будет отключено с 9 до 17 часов.",
    "Повреждены линии электропередачи, аварийные бригады работают на месте.",
    "Мост закрыт для движения до особого распоряжения.",
    "Комендантский час продлен, передвижение без пропуска запрещено.",
    "",
]
EDITS = {
    2: "Для проведения эвакуации выделены автобусы, сбор у здания больницы в 11:00.",
    11: "Водоснабжение восстановлено. Эвакуация не потребуется.",
    14: "Мост открыт.",
}
DELETED = [3, 5, 14]


def corpus() -> list[Post]:
    posts = []
    for i, text in enumerate(TEXTS * 2):
        channel = VSALDO if i < len(TEXTS) else KHERSON
        media = (Media("photo"),) if i % 4 == 0 else ()
        posts.append(Post(channel, i + 1, START + timedelta(hours=i), text, media=media))
    posts.append(
        Post(VSALDO, 100, START, is_service=True, service_action="pin_message", text="эвакуация")
    )
    return posts


@pytest.fixture
async def archive(tmp_path: Path) -> AsyncIterator[Archive]:
    async with await Archive.open(tmp_path / "a.db") as a:
        await upsert_channel(a, ChannelInfo(id=VSALDO, username="vsaldo"), source="export")
        await upsert_channel(a, ChannelInfo(id=KHERSON, title="Херсон"), source="export")
        posts = corpus()
        await ingest(a, posts, source="export", alerts=False)
        by_id = {(p.channel_id, p.message_id): p for p in posts}
        edits = [
            Post(
                VSALDO,
                mid,
                by_id[(VSALDO, mid)].date,
                text,
                edit_date=by_id[(VSALDO, mid)].date + timedelta(minutes=5),
            )
            for mid, text in EDITS.items()
        ]
        await ingest(a, edits, source="telethon", alerts=False)
        await mark_deleted(a, VSALDO, DELETED, how="recheck", alerts=False)
        yield a


async def search_ids(archive: Archive, query: str) -> set[int]:
    return {pid async for pid, _ in iter_matches(archive, parse(query))}


async def rule_ids(archive: Archive, query: str) -> set[int]:
    return {h.post_id async for h in iter_backtest(archive, [Rule("r", query)])}


AGREEMENT = [
    "эвакуация",
    "евакуація",
    "evacuation",
    "эвакуация OR евакуація OR evacuation",
    "(эвакуация OR евакуація OR evacuation) -учения",
    "эваку*",
    "ев*",
    '"линии электропередачи"',
    '"лінії електропередачі"',
    "школа",
    "автобус OR bus",
    "больница",  # only in an edited version
    "здания школы",  # only in the version before the edit
    "мʼясо",
    "-эвакуация",
    "NOT мост",
    "мост is:deleted",
    "is:edited",
    "has:photo эвакуация",
    "channel:vsaldo эвакуация",
    "channel:-1001822222222 (эвакуация OR евакуація)",
    "since:2024-03-01 until:2024-03-01 эвакуация",
    "(мост OR bridge) -(закрыт OR closed)",
]


@pytest.mark.parametrize("query", AGREEMENT)
async def test_a_rule_and_a_search_agree_on_every_post(archive: Archive, query: str) -> None:
    assert await rule_ids(archive, query) == await search_ids(archive, query)


async def test_rule_and_search_agree_on_generated_queries(archive: Archive) -> None:
    rng = random.Random(3)
    words = sorted({w for t in TEXTS for w in t.lower().replace(",", " ").split() if w.isalpha()})
    atoms = [*words, "эваку*", "ev*", "is:edited", "is:deleted", "has:media", "channel:vsaldo"]

    def gen(depth: int) -> str:
        if depth == 0 or rng.random() < 0.4:
            return rng.choice(atoms)
        items = [gen(depth - 1) for _ in range(rng.randint(2, 3))]
        op = rng.choice([" ", " OR ", " AND "])
        out = "(" + op.join(items) + ")"
        return "-" + out if rng.random() < 0.2 else out

    nonempty = 0
    for _ in range(150):
        q = gen(3)
        got = await rule_ids(archive, q)
        assert got == await search_ids(archive, q), q
        nonempty += bool(got)
    assert nonempty > 30  # the property was exercised on queries that match something


async def test_backtest_counts_posts_once_newest_first(archive: Archive) -> None:
    rules = [
        Rule("evac", "(эвакуация OR евакуація OR evacuation) -учения", notify=(1,)),
        Rule("school", "школа", channels=("vsaldo",)),
        Rule("nothing", "дирижабль"),
    ]
    results = await backtest(archive, rules, newest=2)
    assert [r.rule.name for r in results] == ["evac", "school", "nothing"]
    evac, school, nothing = results
    expected = await search_ids(archive, "(эвакуация OR евакуація OR evacuation) -учения")
    assert evac.matches == len(expected)
    assert [h.date for h in evac.newest] == sorted((h.date for h in evac.newest), reverse=True)
    assert evac.newest[0].channel_id == KHERSON  # the newest posts are the second channel's
    assert len(evac.newest) == 2
    # school: posts 3, 6 and 7 of vsaldo; post 3's edited version lost the word, the
    # original still counts (like a search), and only once
    assert school.matches == 3
    assert {h.message_id for h in school.newest} == {7, 6}
    assert (nothing.matches, nothing.newest) == (0, [])
    lines = format_backtest(results, ZoneInfo("Europe/Kyiv"))
    assert lines[0].startswith(f"evac: {evac.matches} post(s)")
    assert "nothing: 0 post(s)  дирижабль" in lines
    assert lines[-1] == f"3 rule(s), {evac.matches + 3} match(es) in the archive"
    assert any("[школе]" in line for line in lines)


async def test_backtest_json_lines(archive: Archive) -> None:
    hits = [h async for h in iter_backtest(archive, [Rule("bridge", "мост OR bridge")])]
    rows = [json.loads(hit_json_line(h)) for h in hits]
    assert all(
        set(r) == {"rule", "channel_id", "channel", "message_id", "date", "snippet"} for r in rows
    )
    assert [(r["channel"], r["message_id"]) for r in rows] == [
        (None, 30),
        (None, 27),
        ("vsaldo", 14),
        ("vsaldo", 11),
    ]
    assert rows[2]["snippet"] == "**Мост** открыт."  # the newest version that matched
    assert rows[2]["date"] == "2024-03-01T21:00:00Z"
    assert rows[3]["rule"] == "bridge"


async def test_service_posts_are_not_backtested(archive: Archive) -> None:
    assert 100 not in {h.message_id async for h in iter_backtest(archive, [Rule("r", "пост")])}
    ids = {h.message_id async for h in iter_backtest(archive, [Rule("r", "-дирижабль")])}
    assert 100 not in ids
    assert len(ids) == 2 * len(TEXTS)


async def test_a_bad_rule_fails_before_reading(archive: Archive) -> None:
    with pytest.raises(RuleError, match=r"'broken'.*at 6"):
        await backtest(archive, [Rule("ok", "мост"), Rule("broken", "мост OR")])


async def test_a_rules_file(archive: Archive, tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(
        '[[rules]]\nname = "light"\nquery = \'"линии электропередачи" OR світла\'\nnotify = [1]\n',
        encoding="utf-8",
    )
    (result,) = await backtest(archive, parse_rules_file(path))
    assert result.matches == 4  # one post of each in each channel
