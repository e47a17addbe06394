"""Word-level differences between two versions of a post: pure functions for every front end.

:func:`word_diff` gives the character spans of the words removed and added (the bot underlines
what an edit added); :func:`word_pieces` gives one sequence of unchanged, removed and added
runs with their white space, from which the web view writes a version's text with the words
the edit removed struck through and the ones it added marked. Words are runs of non-space
characters, compared as written.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

Span = tuple[int, int]
Opcode = tuple[str, int, int, int, int]

_WORD = re.compile(r"\S+")
_BIG = 4000  # words left in the middle past which difflib's junk heuristic is switched on


def word_diff(old: str, new: str) -> tuple[list[Span], list[Span]]:
    """Character spans of the words removed from ``old`` and added in ``new``."""
    a = [(m.start(), m.end(), m.group()) for m in _WORD.finditer(old)]
    b = [(m.start(), m.end(), m.group()) for m in _WORD.finditer(new)]
    sm = difflib.SequenceMatcher(None, [w for *_, w in a], [w for *_, w in b], autojunk=False)
    removed: list[Span] = []
    added: list[Span] = []
    for op, i1, i2, j1, j2 in sm.get_opcodes():
        if op in ("replace", "delete") and i2 > i1:
            removed.append((a[i1][0], a[i2 - 1][1]))
        if op in ("replace", "insert") and j2 > j1:
            added.append((b[j1][0], b[j2 - 1][1]))
    return removed, added


@dataclass(frozen=True, slots=True)
class Piece:
    """A run of words of the diff, with the white space that follows each word."""

    op: str  # same | removed | added
    text: str


def opcodes(a: list[str], b: list[str]) -> list[Opcode]:
    """``difflib``'s opcodes of two word lists, the common head and tail cut off first: an
    edit usually touches one passage, and difflib is quadratic in what it is given."""
    head = 0
    while head < min(len(a), len(b)) and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < min(len(a), len(b)) - head and a[-1 - tail] == b[-1 - tail]:
        tail += 1
    mid_a, mid_b = a[head : len(a) - tail], b[head : len(b) - tail]
    ops: list[Opcode] = [("equal", 0, head, 0, head)] if head else []
    big = len(mid_a) + len(mid_b) > _BIG
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(
        None, mid_a, mid_b, autojunk=big
    ).get_opcodes():
        ops.append((op, i1 + head, i2 + head, j1 + head, j2 + head))
    if tail:
        ops.append(("equal", len(a) - tail, len(a), len(b) - tail, len(b)))
    merged: list[Opcode] = []
    for o in ops:
        if o[2] == o[1] and o[4] == o[3]:
            continue
        if merged and o[0] == "equal" and merged[-1][0] == "equal":
            m = merged[-1]
            merged[-1] = ("equal", m[1], o[2], m[3], o[4])
        else:
            merged.append(o)
    return merged


def _runs(text: str) -> tuple[str, list[str], list[str]]:
    """The leading white space, the words, and each word with the white space after it."""
    found = list(_WORD.finditer(text))
    words = [m.group() for m in found]
    runs = [
        text[m.start() : found[i + 1].start() if i + 1 < len(found) else len(text)]
        for i, m in enumerate(found)
    ]
    lead = text[: found[0].start()] if found else text
    return lead, words, runs


def word_pieces(old: str, new: str) -> list[Piece]:
    """``new`` as runs of unchanged and added words, with the words of ``old`` it dropped
    as removed runs where they stood. The unchanged and added runs, joined, give ``new``."""
    _, a, old_runs = _runs(old)
    lead_new, b, new_runs = _runs(new)
    out: list[Piece] = [Piece("same", lead_new)] if lead_new else []
    for op, i1, i2, j1, j2 in opcodes(a, b):
        if op == "equal":
            out.append(Piece("same", "".join(new_runs[j1:j2])))
            continue
        if i2 > i1:
            removed = "".join(old_runs[i1:i2])
            if not removed[-1].isspace() and (j2 > j1 or j2 < len(b)):
                removed += " "  # old's last word, now followed by new words
            if out and not out[-1].text[-1:].isspace():
                removed = " " + removed  # after new's last word
            out.append(Piece("removed", removed))
        if j2 > j1:
            out.append(Piece("added", "".join(new_runs[j1:j2])))
    return out
