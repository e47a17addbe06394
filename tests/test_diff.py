"""The word diff every front end shares (archiver/diff.py): the bot underlines added words
(word_diff), the web view writes removed and added runs in place (word_pieces)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from archiver.diff import Piece, word_pieces


def test_pieces_of_an_edit() -> None:
    old = "Администрация просит помочь организовать выезд. Эвакуация начнётся завтра."
    new = "Администрация сообщает: выезд не планируется. Эвакуация начнётся завтра."
    assert word_pieces(old, new) == [
        Piece("same", "Администрация "),
        Piece("removed", "просит помочь организовать выезд. "),
        Piece("added", "сообщает: выезд не планируется. "),
        Piece("same", "Эвакуация начнётся завтра."),
    ]


def test_removed_words_never_touch_their_neighbours() -> None:
    assert word_pieces("one two", "one") == [Piece("same", "one"), Piece("removed", " two")]
    assert word_pieces("a b.", "a c") == [
        Piece("same", "a "), Piece("removed", "b. "), Piece("added", "c"),
    ]  # fmt: skip
    assert word_pieces("", "new text") == [Piece("added", "new text")]
    assert word_pieces("same\n\ntext", "same\n\ntext") == [Piece("same", "same\n\ntext")]


WORDS = st.lists(st.sampled_from(["рынок", "закрыт", "открыт", "Херсон", "и", "\n", "  "]))


@given(WORDS, WORDS)
def test_new_is_what_is_kept_and_added_and_old_words_are_kept_or_removed(
    a: list[str], b: list[str]
) -> None:
    old, new = " ".join(a), " ".join(b)
    pieces = word_pieces(old, new)
    assert "".join(p.text for p in pieces if p.op != "removed") == new
    assert " ".join(p.text for p in pieces if p.op != "added").split() == old.split()
