"""The query language: grammar, errors, in-memory matching, and agreement with SQLite FTS5.

Search runs a query as FTS5 (``to_fts``) and rules run it in memory (``matches``); the
agreement test below checks on a small corpus that both give the same answers.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archiver import text
from archiver.errors import QueryError, TelewatchError
from archiver.query import (
    All,
    And,
    Doc,
    Filter,
    Node,
    Not,
    Or,
    Phrase,
    Prefix,
    Term,
    and_filters,
    matches,
    parse,
    to_fts,
    until_bound,
)
from archiver.store.schema import MIGRATIONS

CHANNEL_ID = -1001811111111


def doc(body: str, **meta: object) -> Doc:
    """The in-memory document the matcher sees for one post text (metadata overridable)."""
    a = text.analyze(body)
    fields: dict[str, object] = {
        "words": a.words,
        "word_set": frozenset(a.words),
        "channel_id": CHANNEL_ID,
        "channel_username": "vsaldo",
        "date": "2024-03-01 12:00:00",
    }
    fields.update(meta)
    return Doc(**fields)  # type: ignore[arg-type]


def T(word: str) -> Term:
    """The Term the parser builds for one normalised word."""
    return Term(word, text.forms(word))


def finds(query: str, body: str, **meta: object) -> bool:
    return matches(parse(query).root, doc(body, **meta))


# ---------------------------------------------------------------------------- grammar

a, b, c, d = T("a"), T("b"), T("c"), T("d")

GRAMMAR: list[tuple[str, Node]] = [
    # empty
    ("", All()),
    ("   ", All()),
    # words: normalised, one Term each
    ("обстріл", T("обстріл")),
    ("ОБСТРЕЛ", T("обстрел")),
    ("самолёт", T("самолет")),
    ("м'ясо", T("мʼясо")),
    ("м’ясо", T("мʼясо")),
    ("shelling", T("shelling")),
    ("News:", T("news")),  # a colon with nothing after it is not a filter
    # a bare token that splits into several words is a phrase
    ("Ростов-на-Дону", Phrase(("ростов", "на", "дону"))),
    ("COVID-19", Phrase(("covid", "19"))),
    ("t.me/vsaldo", Phrase(("t", "me", "vsaldo"))),
    ("https://t.me/vsaldo", Phrase(("https", "t", "me", "vsaldo"))),
    ("10:30", Phrase(("10", "30"))),
    # phrases
    ('"exact phrase"', Phrase(("exact", "phrase"))),
    ('"Евакуація  ДІТЕЙ"', Phrase(("евакуація", "дітей"))),
    ('"всё ясно"', Phrase(("все", "ясно"))),
    ('"foo:bar"', Phrase(("foo", "bar"))),  # quoting turns a filter look-alike into text
    ('"a OR b"', Phrase(("a", "or", "b"))),  # operators are text inside quotes
    ('a"b c"', And((a, Phrase(("b", "c"))))),
    ('"эвакуации"', Phrase(("эвакуации",))),  # one quoted word: that exact word only
    # punctuation on its own (a pasted dash, a stray star) is not a term
    ("Київ – Одеса", And((T("київ"), T("одеса")))),
    ("a - b", And((a, b))),
    ("a *", a),
    # prefixes
    ("эвак*", Prefix("эвак")),
    ("ЭВАК*", Prefix("эвак")),
    ("обʼє*", Prefix("обʼє")),
    ("ab*", Prefix("ab")),
    # implicit AND, AND, OR and their precedence (AND binds tighter than OR)
    ("a b", And((a, b))),
    ("a AND b", And((a, b))),
    ("a b c", And((a, b, c))),
    ("a OR b", Or((a, b))),
    ("a OR b OR c", Or((a, b, c))),
    ("a b OR c", Or((And((a, b)), c))),
    ("a OR b c", Or((a, And((b, c))))),
    ("a AND b OR c AND d", Or((And((a, b)), And((c, d))))),
    # operators are upper case: lower-case ones are words
    ("a and b", And((a, T("and"), b))),
    ("a or b", And((a, T("or"), b))),
    ("not a", And((T("not"), a))),
    # negation
    ("-a", Not(a)),
    ("NOT a", Not(a)),
    ("a -b", And((a, Not(b)))),
    ("a NOT b", And((a, Not(b)))),
    ("a -b -c", And((a, Not(b), Not(c)))),
    ("NOT a OR b", Or((Not(a), b))),  # NOT binds tighter than OR
    ("-a b", And((Not(a), b))),
    ('-"a b"', Not(Phrase(("a", "b")))),
    ("-ab*", Not(Prefix("ab"))),
    ("NOT NOT a", Not(Not(a))),
    ("a-b", Phrase(("a", "b"))),  # a hyphen inside a word is not a minus
    # parentheses
    ("(a)", a),
    ("((a))", a),
    ("(a OR b) c", And((Or((a, b)), c))),
    ("a (b OR c)", And((a, Or((b, c))))),
    ("-(a OR b)", Not(Or((a, b)))),
    ("NOT (a b)", Not(And((a, b)))),
    ("(a OR b) (c OR d)", And((Or((a, b)), Or((c, d))))),
    ("a (b OR c) -d", And((a, Or((b, c)), Not(d)))),
    # filters
    ("channel:vsaldo", Filter("channel", "vsaldo")),
    ("channel:@Vsaldo", Filter("channel", "@Vsaldo")),
    ("channel:-1001811111111", Filter("channel", "-1001811111111")),
    ("channel:https://t.me/vsaldo", Filter("channel", "https://t.me/vsaldo")),
    ("Channel:vsaldo", Filter("channel", "vsaldo")),
    ("since:2024-02-24", Filter("since", "2024-02-24", date(2024, 2, 24))),
    ("until:2024-03-01", Filter("until", "2024-03-01", date(2024, 3, 1))),
    ("is:edited", Filter("is", "edited")),
    ("is:DELETED", Filter("is", "deleted")),
    ("has:media", Filter("has", "media")),
    ("has:photo", Filter("has", "photo")),
    ("has:video", Filter("has", "video")),
    ("has:document", Filter("has", "document")),
    ("HAS:Link", Filter("has", "link")),
    (
        "обстріл channel:vsaldo since:2024-01-01",
        And(
            (
                T("обстріл"),
                Filter("channel", "vsaldo"),
                Filter("since", "2024-01-01", date(2024, 1, 1)),
            )
        ),
    ),
    ("-is:edited", Not(Filter("is", "edited"))),
    (
        "(has:photo OR has:video) дрон",
        And((Or((Filter("has", "photo"), Filter("has", "video"))), T("дрон"))),
    ),
]


@pytest.mark.parametrize(("query", "tree"), GRAMMAR)
def test_grammar(query: str, tree: Node) -> None:
    parsed = parse(query)
    assert parsed.root == tree
    assert str(parsed) == query


# ---------------------------------------------------------------------------- errors

CHANNEL_HINT = "use a username (vsaldo), an id (-1001811111111) or a link (https://t.me/vsaldo)"
FILTER_HINT = "(use channel:, since:, until:, is:, has:; put it in quotes to search for the text"

ERRORS = [
    # quotes
    ('"', "unbalanced quote", 1),
    ('обстріл "Херсон', "unbalanced quote", 9),
    ('"a" "b', "unbalanced quote", 5),
    ('""', "empty phrase", 1),
    ('a "  "', "empty phrase", 3),
    ('"«»"', "empty phrase", 1),
    # parentheses
    ("(a", "unbalanced parenthesis '('", 1),
    ("((a)", "unbalanced parenthesis '('", 1),
    ("(a OR b", "unbalanced parenthesis '('", 1),
    ("a)", "unbalanced parenthesis ')'", 2),
    ("a ) b", "unbalanced parenthesis ')'", 3),
    (")", "unbalanced parenthesis ')'", 1),
    ("()", "empty parentheses", 1),
    ("a ( )", "empty parentheses", 3),
    # operators without a term
    ("OR", "OR needs a term on both sides", 1),
    ("OR a", "OR needs a term on both sides", 1),
    ("a OR", "OR needs a term on both sides", 3),
    ("a OR OR b", "OR needs a term on both sides", 3),
    ("(a OR) b", "OR needs a term on both sides", 4),
    ("a OR AND b", "OR needs a term on both sides", 3),
    ("AND", "AND needs a term on both sides", 1),
    ("AND a", "AND needs a term on both sides", 1),
    ("a AND", "AND needs a term on both sides", 3),
    ("a AND OR b", "AND needs a term on both sides", 3),
    ("(a AND) b", "AND needs a term on both sides", 4),
    ("NOT", "NOT needs a term after it", 1),
    ("a NOT", "NOT needs a term after it", 3),
    ("NOT OR a", "NOT needs a term after it", 1),
    ("(a NOT)", "NOT needs a term after it", 4),
    ("a -OR b", "'-' needs a term after it", 3),
    # filters
    ("foo:bar", f"unknown filter 'foo:' {FILTER_HINT} \"foo:bar\")", 1),
    ("обстріл date:2024-01-01", f"unknown filter 'date:' {FILTER_HINT} \"date:2024-01-01\")", 9),
    ("since:", "since: needs a value", 1),
    ("a until:", "until: needs a value", 3),
    ("channel:", "channel: needs a value", 1),
    ("since:2024-13-01", "since: expected YYYY-MM-DD, got '2024-13-01'", 1),
    ("until:2024-02-30", "until: expected YYYY-MM-DD, got '2024-02-30'", 1),
    ("since:yesterday", "since: expected YYYY-MM-DD, got 'yesterday'", 1),
    ("since:01.03.2024", "since: expected YYYY-MM-DD, got '01.03.2024'", 1),
    ("is:pinned", "is: expected one of edited, deleted, got 'pinned'", 1),
    ("has:audio", "has: expected one of media, photo, video, document, link, got 'audio'", 1),
    # prefixes and empty words
    ("a*", "a prefix* needs at least 2 letters", 1),
    ("обстріл э*", "a prefix* needs at least 2 letters", 9),
    ("ab-cd*", "a prefix* must be a single word, not 'ab-cd*'", 1),
    ("*", "nothing to search for in '*'", 1),
    ("-", "nothing to search for in '-'", 1),
    (" — – ", "nothing to search for in '— –'", 1),
    # channel: is checked when the query is parsed, not when a post is matched
    ("channel:ab", f"channel: 'ab' is not a channel: {CHANNEL_HINT}", 1),
    ("обстріл channel:t.me/", f"channel: 't.me/' is not a channel: {CHANNEL_HINT}", 9),
]


@pytest.mark.parametrize(("query", "reason", "position"), ERRORS)
def test_errors(query: str, reason: str, position: int) -> None:
    with pytest.raises(QueryError) as info:
        parse(query)
    err = info.value
    assert str(err) == f"{reason} at {position}"
    assert (err.reason, err.position, err.query) == (reason, position, query)
    assert isinstance(err, TelewatchError)
    assert err.exit_code == 2


# ---------------------------------------------------------------------------- in memory

TEXT_MATCHES = [
    ("эвакуация", "Объявлена эвакуация", True),
    ("эвакуация", "из-за эвакуации", True),
    ("эвакуация", "эвакуационных автобусов", False),
    ("эвак*", "эвакуационных автобусов", True),
    ("эвак*", "вакуум", False),
    ('"эвакуации"', "из-за ЭВАКУАЦИИ", True),
    ('"эвакуации"', "эвакуация", False),  # a quoted word is exact: no other forms
    ('"обстріл міста"', "обстріл міста", True),
    ('"обстріл міста"', "ОБСТРІЛ МІСТА", True),
    ('"обстріл міста"', "обстріли міста", False),  # a phrase is exact words: no forms
    ('"обстріл міста"', "міста обстріл", False),  # and in this order
    ('"обстріл міста"', "обстріл, міста", True),  # punctuation between is no word
    ('"всё ясно"', "Все ясно.", True),
    ('"все ясно"', "ВСЁ ЯСНО", True),
    ("дрон OR шахед", "сбиты шахеды", True),
    ("дрон OR шахед", "сбиты ракеты", False),
    ("дрон шахед", "сбиты шахеды", False),
    ("дрон шахед", "дроны и шахеды", True),
    ("взрыв -учения", "взрывы в Белгороде", True),
    ("взрыв -учения", "взрывы во время учений", False),
    ("взрыв NOT (учения OR полигон)", "взрыв на полигоне", False),
    ("-взрыв", "тихо", True),
    ("-взрыв", "взрыв", False),
    ("(обстріл OR вибух) Херсон", "вибухи у Херсоні", True),
    ("(обстріл OR вибух) Херсон", "вибухи у Києві", False),
    ("", "anything at all", True),
]


@pytest.mark.parametrize(("query", "body", "found"), TEXT_MATCHES)
def test_matches_text(query: str, body: str, found: bool) -> None:
    assert finds(query, body) is found


FILTER_MATCHES = [
    ("channel:vsaldo", {}, True),
    ("channel:@VSALDO", {}, True),
    ("channel:-1001811111111", {}, True),
    ("channel:1811111111", {}, True),
    ("channel:https://t.me/vsaldo", {}, True),
    ("channel:t.me/s/vsaldo", {}, True),
    ("channel:https://t.me/c/1811111111/5", {}, True),
    ("channel:rybar", {}, False),
    ("channel:vsaldo", {"channel_username": None}, False),
    ("channel:-1001811111111", {"channel_username": None}, True),
    # since and until are whole UTC days, both inclusive
    ("since:2024-03-01", {"date": "2024-03-01 00:00:00"}, True),
    ("since:2024-03-02", {"date": "2024-03-01 23:59:59"}, False),
    ("until:2024-03-01", {"date": "2024-03-01 23:59:59"}, True),
    ("until:2024-02-29", {"date": "2024-03-01 00:00:00"}, False),
    ("since:2024-03-01 until:2024-03-01", {"date": "2024-03-01 12:00:00"}, True),
    ("is:edited", {"edited": True}, True),
    ("is:edited", {}, False),
    ("is:deleted", {"deleted": True}, True),
    ("-is:deleted", {"deleted": True}, False),
    ("has:media", {"media_kind": "photo"}, True),
    ("has:media", {}, False),
    ("has:photo", {"media_kind": "photo"}, True),
    ("has:video", {"media_kind": "photo"}, False),
    ("has:document", {"media_kind": "document"}, True),
    ("has:link", {"has_link": True}, True),
    ("has:link", {}, False),
    ("обстріл has:photo", {"media_kind": "photo"}, True),
]


@pytest.mark.parametrize(("query", "meta", "found"), FILTER_MATCHES)
def test_matches_filters(query: str, meta: dict[str, object], found: bool) -> None:
    assert finds(query, "Обстріли Херсона", **meta) is found


@pytest.mark.parametrize("query", ["", "обстріл", "-дрон", "channel:vsaldo"])
def test_service_posts_never_match(query: str) -> None:
    assert not finds(query, "Обстріли Херсона", is_service=True)


def test_query_properties() -> None:
    q = parse('обстріл "нічна атака" дро* -учения channel:vsaldo is:edited')
    assert q.positive_terms == (T("обстріл"), Phrase(("нічна", "атака")), Prefix("дро"))
    assert q.filters == (Filter("channel", "vsaldo"), Filter("is", "edited"))
    assert q.has_text
    assert not parse("channel:vsaldo since:2024-01-01").has_text
    assert parse("NOT NOT a").positive_terms == (a,)


def test_and_filters() -> None:
    chan: Node = Filter("channel", "vsaldo")
    edited: Node = Filter("is", "edited")
    assert and_filters(parse("a OR b"), []).root == Or((a, b))
    assert and_filters(parse(""), [chan]).root == chan
    assert and_filters(parse(""), [chan, edited]).root == And((chan, edited))
    assert and_filters(parse("a OR b"), [chan]).root == And((Or((a, b)), chan))
    assert and_filters(parse("a b"), [chan]).root == And((a, b, chan))  # flattened


def test_until_bound() -> None:
    assert until_bound(date(2024, 2, 29)) == "2024-03-01 00:00:00"
    assert until_bound(date(2024, 12, 31)) == "2025-01-01 00:00:00"


# ---------------------------------------------------------------------------- FTS5

CORPUS = [
    "Обстріли Херсона тривають: пошкоджено обʼєкти інфраструктури",
    "Вибухи у Херсоні, повітряна тривога по всій області",
    "Евакуація дітей з Куп'янська триває",
    "Объявлена эвакуация жителей прибрежных районов",
    "Подготовка эвакуационных автобусов к отправке",
    "Возле центрального рынка прогремел взрыв",
    "Взрывы в Белгороде во время учений",
    "Сбиты восемь беспилотников и два дрона",
    "На ринку в Одесі після атаки дронів",
    "Heavy shelling of the market overnight, drones over the city",
    "Evacuation of children from the front-line town",
    "Curfew extended after the explosions at the bridge",
    "Всё ясно: мост закрыт для движения",
    "мʼясо подорожчало на ринках",
]


def _schema_db() -> sqlite3.Connection:
    """The archive's own schema (tokenizer, external content, triggers) in memory."""
    con = sqlite3.connect(":memory:")
    for migration in MIGRATIONS:
        con.executescript(migration)
    for i, body in enumerate(CORPUS, 1):
        con.execute(
            "INSERT INTO versions (id, post_id, text, seen_at, sha256, source, words) "
            "VALUES (?, ?, ?, '2024-03-01 12:00:00', '', 'test', ?)",
            (i, i, body, text.words_text(body)),
        )
        con.execute(
            "INSERT INTO versions_fts (rowid, words) VALUES (?, ?)", (i, text.words_text(body))
        )
    return con


@pytest.fixture(scope="module")
def fts() -> Iterator[sqlite3.Connection]:
    con = _schema_db()
    yield con
    con.close()


DOCS = [doc(body) for body in CORPUS]


def fts_ids(con: sqlite3.Connection, expr: str) -> set[int]:
    rows = con.execute("SELECT rowid FROM versions_fts WHERE versions_fts MATCH ?", (expr,))
    return {row[0] for row in rows}


def memory_ids(root: Node) -> set[int]:
    return {i for i, d in enumerate(DOCS, 1) if matches(root, d)}


FTS_CASES = [
    ("эвакуация", {4}),
    ("евакуація", {3}),
    ("эвак*", {4, 5}),
    ("обстріл", {1}),
    ("рынок", {6}),
    ("ринок", {9, 14}),
    ("взрыв", {6, 7}),
    ("дрон", {8, 9}),
    ("drone", {10}),
    ("market", {10}),
    ("shelling", {10}),
    ("Херсон", {1, 2}),
    ('"все ясно"', {13}),
    ('"повітряна тривога"', {2}),
    ('"тривога повітряна"', set()),
    ("взрыв -учения", {6}),
    ("взрыв NOT учения", {6}),
    ("(дрон OR drone) -шахед", {8, 9, 10}),
    ("Херсон (вибух OR обстріл)", {1, 2}),
    ("м'ясо", {14}),
    ("обʼєкт", {1}),
    ("об’єкти", {1}),
    ("куп'янська", {3}),
    # FTS5 keywords and syntax characters are only text once quoted by to_fts
    ("and", set()),
    ("NEAR", set()),
    ('"the market"', {10}),
    ("front-line", {11}),
    ('"words:shelling"', set()),
    ('"lemmas : market"', set()),
]


@pytest.mark.parametrize(("query", "expected"), FTS_CASES)
def test_to_fts(fts: sqlite3.Connection, query: str, expected: set[int]) -> None:
    root = parse(query).root
    expr = to_fts(root)
    assert expr is not None
    assert fts_ids(fts, expr) == expected
    assert memory_ids(root) == expected


@pytest.mark.parametrize(
    "query", ["-a", "NOT (a OR b)", "NOT a OR b", "a channel:vsaldo", "is:edited", ""]
)
def test_to_fts_declines_what_fts5_cannot_express(query: str) -> None:
    """FTS5's NOT is binary, and filters are columns of posts, not of the index."""
    assert to_fts(parse(query).root) is None


# The vocabulary the generated queries draw from: words of the corpus, query words whose
# other forms are in it, near-misses, and words it lacks.
_WORDS = sorted({w for body in CORPUS for w in text.words(body)})
_VOCAB = [
    *_WORDS[::2],
    "эвакуация",
    "обстріл",
    "рынок",
    "ринок",
    "дрон",
    "взрыв",
    "вибух",
    "drone",
    "explosion",
    "child",
    "эвакуационный",
    "шахед",
    "ракета",
]
_PHRASES = [
    '"обстріли"',
    '"shelling"',
    '"эвакуация"',
    '"обстріли херсона"',
    '"повітряна тривога"',
    '"всё ясно"',
    '"heavy shelling"',
    '"shelling heavy"',
    '"эвакуация жителей"',
]
_PREFIXES = ["эв", "обст", "взр", "дро", "ри", "sh", "ev", "мʼя", "хер"]

_atom = st.one_of(
    st.sampled_from(_VOCAB),
    st.sampled_from(_PHRASES),
    st.sampled_from(_PREFIXES).map(lambda p: p + "*"),
)


def _combine(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    pair = st.tuples(inner, inner)
    return st.one_of(
        pair.map(lambda t: f"{t[0]} {t[1]}"),
        pair.map(lambda t: f"{t[0]} AND {t[1]}"),
        pair.map(lambda t: f"{t[0]} OR {t[1]}"),
        pair.map(lambda t: f"{t[0]} -({t[1]})"),
        pair.map(lambda t: f"{t[0]} NOT ({t[1]})"),
        st.tuples(inner, _atom).map(lambda t: f"{t[0]} -{t[1]}"),
        inner.map(lambda s: f"({s})"),
    )


QUERIES = st.recursive(_atom, _combine, max_leaves=8)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(QUERIES)
def test_fts_agrees_with_matches(fts: sqlite3.Connection, query: str) -> None:
    """Search (FTS5) and rules (in memory) find the same posts for the same query."""
    root = parse(query).root
    expr = to_fts(root)
    assert expr is not None, query  # every NOT here stands beside a positive term
    assert fts_ids(fts, expr) == memory_ids(root), (query, expr)


def test_many_exclusions_stay_one_level_deep_for_fts5(fts: sqlite3.Connection) -> None:
    """``a -b -c ...`` is ``a NOT (b OR c ...)`` for FTS5: 99 exclusions, nested one per NOT,
    overflowed FTS5's parser stack (found by review); the query limit is 100 terms."""
    words = [w for w in _WORDS if w != "мост"]
    words += [f"слово{i}" for i in range(99 - len(words))]  # absent words, to reach 99
    query = "мост " + " ".join(f"-{w}" for w in words)
    root = parse(query).root
    expr = to_fts(root)
    assert expr is not None and expr.count("NOT") == 1
    assert fts_ids(fts, expr) == memory_ids(root)


def test_the_first_and_last_days_a_date_can_be_are_bounds_not_errors() -> None:
    """Found by the web view's review: until:9999-12-31 and, east of UTC, since:0001-01-01
    ended in OverflowError tracebacks (CLI and web)."""
    from datetime import date

    from archiver.query import day_start, until_bound

    assert until_bound(date(9999, 12, 31), "Europe/Kyiv") == "9999-12-31 23:59:59"
    assert day_start(date(1, 1, 1), "Europe/Kyiv") == "0001-01-01 00:00:00"
    assert until_bound(date(2024, 5, 1), "UTC") == "2024-05-02 00:00:00"
