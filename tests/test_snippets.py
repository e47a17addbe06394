"""Snippets: the window around the first match, and spans of exactly the words the query
matched (same word forms, normalisation and apostrophes as search)."""

from __future__ import annotations

import pytest

from archiver.query import parse
from archiver.snippets import mark, match_spans, snippet

TEXT = (
    "Жители продолжают эвакуацию.\nРынок закрыт, ЭВАКУАЦИИ не будет. Ещё раз: эвакуационный автобус"
)


def marked(text: str, query: str, width: int = 200) -> str:
    window, spans = snippet(text, parse(query), width)
    return mark(window, spans)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # every form of a bare word, any case; not a derived word
        ("эвакуация", "Жители продолжают **эвакуацию**. Рынок закрыт, **ЭВАКУАЦИИ** не будет. "
                      "Ещё раз: эвакуационный автобус"),
        # a prefix marks the derived word too
        ("эвак*", "Жители продолжают **эвакуацию**. Рынок закрыт, **ЭВАКУАЦИИ** не будет. "
                  "Ещё раз: **эвакуационный** автобус"),
        # ё and е are one letter
        ("еще", "Жители продолжают эвакуацию. Рынок закрыт, ЭВАКУАЦИИ не будет. "
                "**Ещё** раз: эвакуационный автобус"),
        # excluded words are not marked
        ("рынок -эвакуация", "Жители продолжают эвакуацию. **Рынок** закрыт, ЭВАКУАЦИИ не будет. "
                             "Ещё раз: эвакуационный автобус"),
        ("NOT рынок", "Жители продолжают эвакуацию. Рынок закрыт, ЭВАКУАЦИИ не будет. "
                      "Ещё раз: эвакуационный автобус"),
        # phrases mark their words
        ('"рынок закрыт"', "Жители продолжают эвакуацию. **Рынок** **закрыт**, ЭВАКУАЦИИ не "
                           "будет. Ещё раз: эвакуационный автобус"),
        # filters mark nothing
        ("channel:vsaldo since:2024-01-01", "Жители продолжают эвакуацию. Рынок закрыт, ЭВАКУАЦИИ "
                                            "не будет. Ещё раз: эвакуационный автобус"),
    ],
)  # fmt: skip
def test_highlighting(query: str, expected: str) -> None:
    assert marked(TEXT, query) == expected


def test_line_breaks_and_runs_of_blanks_are_flattened() -> None:
    window, _ = snippet("один\n\n  два\tтри  ", parse("два"))
    assert window == "один два три"


def test_ukrainian_apostrophes_are_one_letter() -> None:
    text = "Мʼясо і м'ясо та м’ясо, а також мясо"
    assert marked(text, "м'ясо") == "**Мʼясо** і **м'ясо** та **м’ясо**, а також мясо"


def test_english_forms() -> None:
    assert marked("They evacuated; evacuation continues", "evacuate") == (
        "They **evacuated**; **evacuation** continues"
    )


def test_a_long_text_is_cut_around_the_first_match() -> None:
    before = " ".join(f"слово{i}" for i in range(100))
    after = " ".join(f"после{i}" for i in range(100))
    text = f"{before} эвакуация {after}"
    window, spans = snippet(text, parse("эвакуация"), width=120)
    assert window.startswith("…") and window.endswith("…")
    assert len(window) <= 122
    (a, b), *_ = spans
    assert window[a:b] == "эвакуация"
    assert 0 < a < len(window) // 2  # some context before the match, more after
    # The cut falls between words.
    assert window[1:].split(" ")[0].startswith("слово")
    assert window[:-1].split(" ")[-1].startswith("после")


def test_a_long_text_without_a_match_starts_at_the_beginning() -> None:
    text = " ".join(["слово"] * 200)
    window, spans = snippet(text, parse("-эвакуация"), width=100)
    assert window.startswith("слово") and window.endswith("…")
    assert spans == []


def test_spans_of_a_match_beyond_the_window_are_dropped() -> None:
    text = "рынок " + " ".join(["слово"] * 100) + " рынок"
    window, spans = snippet(text, parse("рынок"), width=60)
    assert [window[a:b] for a, b in spans] == ["рынок"]
    assert window.startswith("рынок")


def test_match_spans_index_the_original_text() -> None:
    text = "ЭВАКУАЦИЯ: эвакуацию"
    assert match_spans(text, parse("эвакуация")) == [(0, 9), (11, 20)]


def test_mark_with_other_markers() -> None:
    assert mark("a b c", [(2, 3)], "<b>", "</b>") == "a <b>b</b> c"
    assert mark("abc", []) == "abc"
