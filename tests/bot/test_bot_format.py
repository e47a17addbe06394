"""HTML for Telegram: escaping, styled spans, splitting without breaking markup, alert texts."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from html.parser import HTMLParser

import pytest
from botkit import KYIV
from hypothesis import given, settings
from hypothesis import strategies as st

from archiver.diff import word_diff
from archiver.store.outbox import AlertRow
from bot.alerts import alert_html
from bot.format import (
    MAX_MESSAGE,
    esc,
    local_time,
    merge_spans,
    pack,
    split_html,
    styled,
    truncate,
    u16len,
)

TELEGRAM_TAGS = {"b", "i", "u", "s", "code", "pre", "a"}


class _Checker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.text: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in TELEGRAM_TAGS:
            self.errors.append(f"unknown tag {tag}")
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def check_html(fragment: str) -> str:
    """Assert ``fragment`` is markup Telegram accepts (known tags, properly nested, no stray
    ``<`` or ``&``); return its visible text."""
    assert not re.search(r"&(?!(amp|lt|gt|quot|#\d+);)", fragment), fragment
    assert not re.search(r"<(?!/?(b|i|u|s|code|pre|a)[ >])", fragment), fragment
    checker = _Checker()
    checker.feed(fragment)
    checker.close()
    assert not checker.errors, (checker.errors, fragment)
    assert not checker.stack, (checker.stack, fragment)
    return "".join(checker.text)


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("a < b & c > d", "a &lt; b &amp; c &gt; d"),
        ("<b>not bold</b>", "&lt;b&gt;not bold&lt;/b&gt;"),
        ('"quotes" stay', '"quotes" stay'),
        ("&amp; twice", "&amp;amp; twice"),
    ],
)
def test_esc(raw: str, escaped: str) -> None:
    assert esc(raw) == escaped
    assert check_html(escaped) == raw


def test_styled_escapes_and_nests_overlapping_spans() -> None:
    text = "war & <peace> now"
    out = styled(text, {"b": [(0, 3), (12, 17)], "u": [(2, 13)]})
    assert check_html(out) == text
    assert out.startswith("<b>wa</b><b><u>r</u></b>")
    assert "&lt;peace" in out


def test_u16len_counts_emoji_twice() -> None:
    assert u16len("a😀b") == 4


def test_merge_spans() -> None:
    assert merge_spans([(5, 7), (0, 2), (1, 3), (7, 9), (4, 4)]) == [(0, 3), (5, 9)]


def test_truncate_cuts_at_a_space_and_clips_spans() -> None:
    text = "one two three four five six"
    cut, spans = truncate(text, [(4, 7), (19, 23)], 15)
    assert cut == "one two three…"
    assert spans == [(4, 7)]


def test_word_diff() -> None:
    removed, added = word_diff("the army left the city", "the army entered the city")
    assert [("the army left the city"[a:b]) for a, b in removed] == ["left"]
    assert [("the army entered the city"[a:b]) for a, b in added] == ["entered"]


def test_local_time_in_the_display_zone() -> None:
    assert local_time(datetime(2024, 5, 1, 12, 0, tzinfo=UTC), KYIV) == "2024-05-01 15:00 EEST"
    assert local_time(datetime(2024, 1, 1, 12, 0, tzinfo=UTC), KYIV) == "2024-01-01 14:00 EET"


def test_split_keeps_short_text_whole() -> None:
    assert split_html("<b>hi</b>") == ["<b>hi</b>"]


def test_split_closes_and_reopens_tags_across_pieces() -> None:
    body = "<b>" + " ".join(f"word{i}" for i in range(100)) + "</b>"
    pieces = split_html(body, limit=60)
    assert len(pieces) > 5
    for p in pieces:
        assert u16len(p) <= 60
        assert p.startswith("<b>") and p.endswith("</b>")
        check_html(p)
    assert " ".join(check_html(p) for p in pieces) == check_html(body)


def test_split_prefers_line_breaks_and_never_cuts_an_entity() -> None:
    body = "\n".join(["&amp;" * 8] * 6)
    pieces = split_html(body, limit=50)
    for p in pieces:
        assert check_html(p) == "&" * 8 or set(check_html(p)) <= {"&", "\n"}
        assert u16len(p) <= 50


def test_split_counts_utf16() -> None:
    pieces = split_html("😀" * 100, limit=50)
    assert all(u16len(p) <= 50 for p in pieces)
    assert "".join(pieces) == "😀" * 100


def test_pack_joins_blocks_and_splits_only_what_is_too_long() -> None:
    blocks = ["<b>a</b>", "b" * 30, "<i>" + "c " * 60 + "</i>"]
    msgs = pack(blocks, limit=50)
    assert msgs[0] == "<b>a</b>\n\n" + "b" * 30
    for m in msgs:
        assert u16len(m) <= 50
        check_html(m)


_words = st.text(alphabet="ab <>&😀я\n", min_size=1, max_size=12)


@settings(max_examples=150, deadline=None)
@given(
    words=st.lists(_words, min_size=1, max_size=60),
    marks=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 40)), max_size=8),
    limit=st.integers(40, 200),
)
def test_split_never_breaks_markup(
    words: list[str], marks: list[tuple[int, int]], limit: int
) -> None:
    text = " ".join(words)
    spans = [(a, a + n) for a, n in marks]
    markup = styled(text, {"b": spans, "u": spans[::2]})
    pieces = split_html(markup, limit)
    visible = ""
    for p in pieces:
        assert u16len(p) <= limit
        visible += check_html(p)
    # Only white space at the cuts may be lost.
    assert re.sub(r"\s", "", visible) == re.sub(r"\s", "", text)


def _alert(kind: str = "new", **fields: object) -> AlertRow:
    base: dict[str, object] = {
        "id": 1,
        "post_id": 1,
        "recipient": 5,
        "kind": kind,
        "rules": ("war <1>",),
        "rule_queries": (),
        "attempts": 0,
        "created_at": datetime(2024, 5, 1, tzinfo=UTC),
        "channel_id": -1001,
        "channel_username": "chan",
        "channel_title": "A & B",
        "message_id": 7,
        "post_date": datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
        "link": "https://t.me/chan/7",
        "text": "Война <началась> & идёт",
        "old_text": None,
        "deleted_at": None,
        "media_kind": None,
        "reply_to": None,
    }
    base.update(fields)
    return AlertRow(**base)  # type: ignore[arg-type]


def test_alert_new_has_title_local_date_bold_match_rules_and_link() -> None:
    out = alert_html(_alert(), KYIV, {"war <1>": "война"})
    check_html(out)
    assert "<b>A &amp; B</b> · 2024-05-01 15:00 EEST" in out
    assert "<b>Война</b> &lt;началась&gt; &amp; идёт" in out
    assert "war &lt;1&gt;" in out
    assert '<a href="https://t.me/chan/7">' in out


def test_alert_highlights_with_personal_rule_queries() -> None:
    out = alert_html(_alert(rules=("mine",), rule_queries=(("mine", "идти"),)), KYIV, {})
    assert "<b>идёт</b>" in out


def test_alert_edited_shows_old_against_new() -> None:
    out = alert_html(
        _alert("edited", old_text="Война началась вчера", text="Война началась сегодня"),
        KYIV,
        {"war <1>": "война"},
    )
    check_html(out)  # only what changed: removed struck through, added underlined
    assert "<s>вчера</s>" in out
    assert "<u>сегодня</u>" in out


def test_alert_deleted_keeps_the_text() -> None:
    out = alert_html(
        _alert("deleted", deleted_at=datetime(2024, 5, 2, 9, 30, tzinfo=UTC)), KYIV, {}
    )
    check_html(out)
    assert "Deleted" in out and "2024-05-02 12:30 EEST" in out
    assert "&lt;началась&gt;" in out


def test_alert_of_a_huge_edit_fits_one_message() -> None:
    long_old = ("слово " * 2000).strip()
    long_new = ("война & мир " * 1000).strip()
    out = alert_html(_alert("edited", old_text=long_old, text=long_new), KYIV, {"war <1>": "война"})
    assert u16len(out) <= MAX_MESSAGE
    check_html(out)
    assert html.unescape("https://t.me/chan/7") in out


def test_alert_without_text_says_so() -> None:
    out = alert_html(_alert(text="", media_kind="photo"), KYIV, {})
    assert "(no text: photo)" in out
