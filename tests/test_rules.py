"""Rules: semantics (word forms, phrases, exclusions, channel scope, kinds, recipients), the
index against the naive evaluation, bad rules, personal rules and the loader."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archiver.channels import BadChannelRef
from archiver.errors import QueryError, RuleError
from archiver.models import POST_KINDS, ChannelInfo, Post, Rule
from archiver.query import Doc, matches, parse
from archiver.rules import (
    KeyStats,
    RuleLoader,
    RuleSet,
    compile_rule,
    format_rules_list,
    list_all_rules,
    sample_stats,
)
from archiver.rules import requirement as req
from archiver.store.archive import Archive
from archiver.store.channels import upsert_channel
from archiver.store.ingest import ingest, make_doc
from archiver.store.personal_rules import add_rule, delete_rule, list_rules, rules_stamp
from archiver.text import analyze, forms

VSALDO = -1001811111111
START = datetime(2024, 3, 1, 10, 0, tzinfo=UTC)
OTHER = -1002222222222


def doc(
    text: str,
    *,
    channel_id: int = VSALDO,
    username: str | None = "vsaldo",
    date: str = "2024-03-01 10:00:00",
    edited: bool = False,
    deleted: bool = False,
    media_kind: str | None = None,
    link: bool = False,
    is_service: bool = False,
) -> Doc:
    return make_doc(
        analyze(text),
        channel_id=channel_id,
        username=username,
        date=date,
        edited=edited,
        deleted=deleted,
        media_kind=media_kind,
        link=link,
        is_service=is_service,
    )


def names(rs: RuleSet, d: Doc, kind: str | None = None) -> list[str]:
    return [cr.name for cr in rs.matching(d, kind)]


# ---------------------------------------------------------------------------- semantics

SEMANTICS = [
    # word forms (ru, uk, en), ё and case
    ("эвакуация", "Объявлена эвакуация жителей", True),
    ("эвакуация", "Продолжение эвакуации из зоны подтопления", True),
    ("эвакуация", "Для проведения эвакуации выделены автобусы", True),
    ("ЭВАКУАЦИЯ", "эвакуацию отменили", True),
    ("эвакуация", "Спасатели эвакуировали пожилых людей", False),  # a verb, not the noun
    ("евакуація", "Триває евакуація мешканців", True),
    ("евакуація", "Після евакуації школа закрита", True),
    ("evacuation", "Evacuations continue in the south", True),
    ("объявлен", "Объявлён комендантский час", True),
    ("мʼясо", "Ціни на м'ясо зросли", True),
    # phrases: these words, consecutive, in order
    ('"линии электропередачи"', "повреждены линии электропередачи", True),
    ('"линии электропередачи"', "электропередачи линии", False),
    ('"линии электропередачи"', "линии связи и электропередачи", False),
    # exclusions
    ("эвакуация -учения", "эвакуация жителей", True),
    ("эвакуация -учения", "учения: эвакуация жителей", False),
    ("эвакуация NOT учения", "в ходе учений проведена эвакуация", False),
    ("-учения", "обычный пост", True),
    # prefixes
    ("эваку*", "Спасатели эвакуировали пожилых людей", True),
    ("эваку*", "обычный пост", False),
    ("ev*", "Evacuations continue", True),
    # boolean structure
    ("эвакуация OR евакуація OR evacuation", "evacuation is over", True),
    ("(мост OR дорога) закрыт", "мост закрыт до утра", True),
    ("(мост OR дорога) закрыт", "мост открыт", False),
    ("мост AND закрыт", "закрыт мост", True),
    # filters inside rules
    ("мост has:media", "мост закрыт", False),
    ("мост channel:vsaldo", "мост закрыт", True),
    ("мост channel:other_channel", "мост закрыт", False),
]


@pytest.mark.parametrize(("query", "text", "expected"), SEMANTICS)
def test_rule_semantics(query: str, text: str, expected: bool) -> None:
    rs = RuleSet.compile([Rule("r", query, notify=(1,))])
    d = doc(text)
    assert (names(rs, d) == ["r"]) is expected
    assert (rs.match(d, "new") == {1: ["r"]}) is expected
    assert matches(parse(query).root, d) is expected  # the same evaluator as a search


@pytest.mark.parametrize(
    ("channels", "channel_id", "username", "expected"),
    [
        ((), OTHER, None, True),
        (("vsaldo",), VSALDO, "vsaldo", True),
        (("@VSaldo",), VSALDO, "vsaldo", True),
        (("vsaldo",), VSALDO, "VSaldo", True),
        (("https://t.me/vsaldo",), VSALDO, "vsaldo", True),
        (("t.me/s/vsaldo",), VSALDO, "vsaldo", True),
        (("vsaldo",), OTHER, "other_channel", False),
        (("vsaldo",), VSALDO, None, False),  # a username scope needs the username known
        (("-1001811111111",), VSALDO, None, True),
        (("1811111111",), VSALDO, None, True),
        (("https://t.me/c/1811111111/5",), VSALDO, None, True),
        (("-1001811111111",), OTHER, "vsaldo", False),
        (("other_channel", "-1001811111111"), VSALDO, None, True),
    ],
)
def test_channel_scope(
    channels: tuple[str, ...], channel_id: int, username: str | None, expected: bool
) -> None:
    rs = RuleSet.compile([Rule("r", "мост", notify=(1,), channels=channels)])
    d = doc("мост закрыт", channel_id=channel_id, username=username)
    assert (names(rs, d) == ["r"]) is expected


@pytest.mark.parametrize("kinds", [{"new"}, {"edited"}, {"deleted"}, {"new", "deleted"}])
def test_kinds(kinds: set[str]) -> None:
    rs = RuleSet.compile([Rule("r", "мост", notify=(1,), kinds=frozenset(kinds))])
    d = doc("мост закрыт")
    for kind in POST_KINDS:
        assert (rs.match(d, kind) == {1: ["r"]}) is (kind in kinds)
        assert rs.wants("r", kind) is (kind in kinds)
    assert names(rs, d) == ["r"]  # no kind: the backtest's view
    assert not rs.wants("no such rule", "new")


def test_recipients_group_rules_and_personal_rules_notify_their_owner() -> None:
    rs = RuleSet.compile(
        [
            Rule("bridge", "мост", notify=(1, 2)),
            Rule("closed", "закрыт", notify=(2, 3)),
            Rule("mine", "мост", owner=77, id=1),
            Rule("theirs", "мост", notify=(9,), owner=77, id=2),
            Rule("silent", "мост"),  # a config rule nobody gets: backtests only
        ]
    )
    got = rs.match(doc("мост закрыт"), "new")
    assert got == {
        1: ["bridge"],
        2: ["bridge", "closed"],
        3: ["closed"],
        77: ["mine"],
        9: ["theirs"],
    }


def test_service_posts_never_match() -> None:
    rs = RuleSet.compile([Rule("r", "-учения", notify=(1,)), Rule("m", "мост", notify=(1,))])
    assert rs.match(doc("мост", is_service=True), "new") == {}


# ---------------------------------------------------------------------------- the index


MOST = frozenset(("w", f) for f in forms("мост"))  # every form of мост is a key


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("мост", MOST),
        ('"линии электропередачи"', {("w", "электропередачи")}),
        ("эваку*", {("p", "эваку")}),
        ("эвакуир*", {("p", "эваку")}),
        ("ев*", {("p", "ев")}),
        ("мост OR эваку*", MOST | {("p", "эваку")}),
        ("эваку* мост", MOST),  # AND: the most selective child
        ("мост -учения", MOST),
        ("мост channel:vsaldo", MOST),
        ("-мост", None),
        ("мост OR -учения", None),  # OR with a child that requires nothing
        ("channel:vsaldo", None),
        ("is:deleted has:media", None),
    ],
)
def test_requirement(query: str, expected: set[tuple[str, str]] | None) -> None:
    got = req(parse(query).root)
    assert got == (None if expected is None else frozenset(expected))


def test_key_counts_choose_the_rarest_and_child() -> None:
    docs = [doc(f"обстрел моста {i}") for i in range(20)] + [doc("моста номер"), doc("Коваленко")]
    stats = KeyStats.from_docs(docs)
    assert stats.docs == 22
    assert stats.cost(("w", "обстрел")) == 20
    assert stats.cost(("p", "обс")) == 20
    assert stats.cost(("p", "обстр")) == 20
    assert req(parse("обстрел Коваленко").root, stats.cost) == req(parse("Коваленко").root)
    assert req(parse("обстрел Петренко").root, stats.cost) == req(parse("Петренко").root)
    phrase = parse('"моста номер"').root
    assert req(phrase, stats.cost) == frozenset({("w", "номер")})  # the phrase's rarest word
    assert req(parse('обстрел "моста номер"').root) == frozenset(
        {("w", "моста")}
    )  # no counts: 1 key
    rs = RuleSet.compile([Rule("r", "обстрел Коваленко", notify=(1,))], stats=stats)
    assert rs.candidates(docs[0]) == []
    assert rs.requirements == (req(parse("Коваленко").root),)


async def test_sample_stats_reads_the_newest_versions(any_archive: Archive) -> None:
    archive = any_archive
    assert await sample_stats(archive) is None
    await upsert_channel(archive, ChannelInfo(id=VSALDO, username="vsaldo"), source="web")
    posts = [Post(VSALDO, i, START, f"обстрел {i}") for i in range(1, 6)]
    await ingest(archive, posts, source="web", alerts=False)
    stats = await sample_stats(archive, limit=3)
    assert stats is not None
    assert (stats.docs, stats.cost(("w", "обстрел")), stats.cost(("w", "5"))) == (3, 3, 1)
    assert stats.cost(("w", "1")) == 0  # the oldest post is outside the sample


def test_a_post_meets_only_the_rules_it_could_match() -> None:
    rules = [Rule(f"r{i}", f"слово{i}", notify=(1,)) for i in range(500)]
    rules.append(Rule("always", "-учения", notify=(1,)))
    rs = RuleSet.compile(rules)
    d = doc("пост про слово7 и мост")
    cand = [rs.rules[i].name for i in rs.candidates(d)]
    assert sorted(cand) == ["always", "r7"]
    assert names(rs, d) == ["r7", "always"]


VOCAB = [
    "эвакуация", "эвакуации", "эвакуацию", "эвакуировали", "евакуація", "евакуації",
    "обстрел", "обстрела", "обстріл", "мост", "моста", "мосту", "автобус", "автобусы",
    "школа", "школы", "свет", "света", "вода", "воды", "в", "и", "на", "не",
    "evacuation", "evacuations", "bridge", "bridges", "closed", "м'ясо",
]  # fmt: skip
FILTERS = [
    "channel:vsaldo", "channel:-1001811111111", "channel:other_channel", "is:edited",
    "is:deleted", "has:media", "has:photo", "has:link", "since:2024-03-01", "until:2024-02-29",
]  # fmt: skip
CHANNEL_REFS = ["vsaldo", "-1001811111111", "https://t.me/other_channel", "1822222222"]


def _atom() -> st.SearchStrategy[str]:
    word = st.sampled_from(VOCAB)
    prefix = st.builds(
        lambda w, n: w[: max(2, n)] + "*",
        st.sampled_from([w for w in VOCAB if len(w) >= 2 and "'" not in w]),
        st.integers(2, 6),
    )
    phrase = st.lists(word, min_size=2, max_size=3).map(lambda ws: '"' + " ".join(ws) + '"')
    return st.one_of(word, word, prefix, phrase, st.sampled_from(FILTERS))


def _combine(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    group = st.lists(children, min_size=2, max_size=4)
    return st.one_of(
        group.map(lambda xs: "(" + " ".join(xs) + ")"),
        group.map(lambda xs: "(" + " OR ".join(xs) + ")"),
        children.map(lambda x: "-" + x if not x.startswith("-") else x),
        children.map(lambda x: "(NOT " + x + ")"),
    )


QUERIES = st.recursive(_atom(), _combine, max_leaves=8)

RULES = st.lists(
    st.builds(
        lambda q, notify, chans, kinds: (q, notify, chans, kinds),
        QUERIES,
        st.lists(st.integers(1, 4), max_size=2),
        st.lists(st.sampled_from(CHANNEL_REFS), max_size=2),
        st.sets(st.sampled_from(POST_KINDS), min_size=1),
    ),
    min_size=1,
    max_size=12,
)

DOCS = st.lists(
    st.builds(
        lambda words, ch, edited, deleted, media, link, date, service: doc(
            " ".join(words),
            channel_id=ch[0],
            username=ch[1],
            date=date,
            edited=edited,
            deleted=deleted,
            media_kind=media,
            link=link,
            is_service=service,
        ),
        st.lists(st.sampled_from(VOCAB), max_size=10),
        st.sampled_from([(VSALDO, "vsaldo"), (OTHER, "other_channel"), (-1001822222222, None)]),
        st.booleans(),
        st.booleans(),
        st.sampled_from([None, "photo", "video"]),
        st.booleans(),
        st.sampled_from(["2024-02-29 23:59:59", "2024-03-01 00:00:00", "2024-03-02 12:00:00"]),
        st.sampled_from([False] * 9 + [True]),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(RULES, DOCS)
def test_index_agrees_with_naive_evaluation(
    specs: list[tuple[str, list[int], list[str], set[str]]], docs: list[Doc]
) -> None:
    rules = [
        Rule(f"r{i}", q, notify=tuple(n), channels=tuple(c), kinds=frozenset(k))
        for i, (q, n, c, k) in enumerate(specs)
    ]
    rs = RuleSet.compile(rules)
    for d in docs:
        for kind in (None, *POST_KINDS):
            fast = [cr.name for cr in rs.matching(d, kind)]
            slow = [cr.name for cr in rs.naive_matching(d, kind)]
            assert fast == slow
        # the compiled predicate is query.matches, and the naive loop is that plus the scope
        naive = {cr.name for cr in rs.naive_matching(d)}
        for cr in rs.rules:
            reference = matches(cr.root, d)
            assert cr.test(d) is reference or d.is_service
            assert (cr.name in naive) is (reference and cr.in_scope(d))


def test_the_index_finds_matches_via_word_forms_and_prefixes() -> None:
    rs = RuleSet.compile(
        [
            Rule("form", "эвакуация", notify=(1,)),
            Rule("prefix", "эваку*", notify=(1,)),
            Rule("short", "эв*", notify=(1,)),
        ]
    )
    assert names(rs, doc("продолжение эвакуации")) == ["form", "prefix", "short"]
    assert names(rs, doc("эвакуировали людей")) == ["prefix", "short"]
    assert names(rs, doc("эвм")) == ["short"]


# ---------------------------------------------------------------------------- bad rules


def test_a_bad_rule_is_refused_with_its_name_and_position() -> None:
    with pytest.raises(RuleError) as err:
        compile_rule(Rule("evac", "эвакуация OR", notify=(1,)))
    assert "'evac'" in str(err.value)
    assert "at 11" in str(err.value)


def test_every_bad_rule_is_named_and_none_is_dropped_silently() -> None:
    rules = [
        Rule("good", "мост", notify=(1,)),
        Rule("quote", '"мост', notify=(1,)),
        Rule("paren", "(мост", notify=(1,)),
        Rule("scope", "мост", channels=("not a channel!",)),
    ]
    with pytest.raises(RuleError) as err:
        RuleSet.compile(rules)
    msg = str(err.value)
    assert msg.startswith("3 invalid rules")
    for expected in ("'quote'", "unbalanced quote at 1", "'paren'", "at 1", "'scope'"):
        assert expected in msg
    with pytest.raises(RuleError, match="'quote'"):
        RuleLoader(rules)
    lenient = RuleSet.compile(rules, strict=False)
    assert [cr.name for cr in lenient.rules] == ["good"]
    assert len(lenient.broken) == 3


def test_an_empty_rule_is_refused() -> None:
    with pytest.raises(RuleError, match="empty"):
        compile_rule(Rule("all", "  ", notify=(1,)))


# ---------------------------------------------------------------------------- personal rules


async def test_personal_rules_add_list_delete(any_archive: Archive) -> None:
    archive = any_archive
    r1 = await add_rule(archive, 10, " эвакуация  -учения ", kinds=["new"])
    assert r1.id is not None
    assert (r1.name, r1.query, r1.notify, r1.kinds, r1.owner) == (
        "эвакуация -учения",
        "эвакуация  -учения",
        (),
        frozenset({"new"}),
        10,
    )
    r2 = await add_rule(
        archive, 11, "мост", channels=["@vsaldo", "1811111111"], notify=[5, 5, -100], name="m"
    )
    assert r2.notify == (5, -100)
    assert await list_rules(archive) == [r1, r2]
    assert await list_rules(archive, owner=11) == [r2]
    assert r2.id is not None
    assert not await delete_rule(archive, r2.id, owner=10)  # not theirs
    assert await delete_rule(archive, r2.id, owner=11)
    assert not await delete_rule(archive, r2.id, owner=11)  # already gone
    assert await list_rules(archive) == [r1]
    assert r1.id is not None
    assert await delete_rule(archive, r1.id, owner=None)  # the operator
    assert await list_rules(archive) == []


@pytest.mark.parametrize(
    ("kwargs", "error", "text"),
    [
        ({"query": "мост OR"}, QueryError, "at 6"),
        ({"query": "мост nope:x"}, QueryError, "unknown filter"),
        ({"query": "   "}, RuleError, "needs a query"),
        ({"query": "мост", "channels": ["not a channel!"]}, BadChannelRef, "not a channel"),
        ({"query": "мост", "kinds": ["posted"]}, RuleError, "posted"),
        ({"query": "мост", "kinds": []}, RuleError, "kinds"),
        ({"query": "мост", "name": "x" * 65}, RuleError, "too long"),
        ({"query": "мост", "name": "taken"}, RuleError, "already have a rule named 'taken'"),
    ],
)
async def test_personal_rule_validation(
    tmp_path: Path, kwargs: dict[str, object], error: type[Exception], text: str
) -> None:
    async with await Archive.open(tmp_path / "a.db") as archive:
        await add_rule(archive, 10, "вода", name="taken")
        with pytest.raises(error, match=text):
            await add_rule(archive, 10, **kwargs)  # type: ignore[arg-type]
        assert len(await list_rules(archive)) == 1
        await add_rule(archive, 11, "вода", name="taken")  # another owner may use the name


async def test_loader_reloads_only_when_personal_rules_change(any_archive: Archive) -> None:
    archive = any_archive
    loader = RuleLoader([Rule("cfg", "мост", notify=(1,))]).install(archive)
    first = await archive.current_matcher()
    assert isinstance(first, RuleSet)
    assert await archive.current_matcher() is first  # unchanged stamp: no recompile
    stamp = await rules_stamp(archive)
    rule = await add_rule(archive, 7, "вода")
    assert await rules_stamp(archive) != stamp
    second = await archive.current_matcher()
    assert second is not first
    assert second is not None
    assert second.match(doc("мост и вода"), "new") == {1: ["cfg"], 7: ["вода"]}
    assert rule.id is not None
    await delete_rule(archive, rule.id, owner=7)
    third = await archive.current_matcher()
    assert third is not None
    assert third.match(doc("мост и вода"), "new") == {1: ["cfg"]}
    assert loader is archive.matcher_loader


async def test_a_personal_rule_that_stops_compiling_is_skipped_and_listed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with await Archive.open(tmp_path / "a.db") as archive:
        await add_rule(archive, 7, "вода")
        bad = await add_rule(archive, 8, "мост")
        # as if a newer telewatch no longer accepted what an older one stored
        async with archive.transaction() as db:
            await db.execute("UPDATE rules SET query = 'мост OR' WHERE id = ?", (bad.id,))
            await db.execute("UPDATE meta SET value = value + 1 WHERE key = 'rules_version'")
        RuleLoader([]).install(archive)
        rs = await archive.current_matcher()
        assert isinstance(rs, RuleSet)
        assert rs.match(doc("мост и вода"), "new") == {7: ["вода"]}
        assert len(rs.broken) == 1
        assert f"personal rule {bad.id} 'мост' of 8" in caplog.text
        listing = await list_all_rules(archive, [Rule("cfg", "свет", notify=(1,))])
        assert [(i.origin, i.error is not None) for i in listing] == [
            ("config", False),
            ("personal #1", False),
            (f"personal #{bad.id}", True),
        ]
        text = format_rules_list(listing)
        assert "SKIPPED" in text
        assert "cfg  [config]  свет" in text
        assert "notify: owner 7" in text
