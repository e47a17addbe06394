"""Did you mean: the archive's nearest words to a query word it does not have.

The full-text index keeps every word of every version (``versions_fts``); SQLite's
``fts5vocab`` table over it lists them in order with the number of versions holding each.
A query with no results gets, for each of its bare words that no post has in any form, the
archive's words within a small edit distance (1 for words of up to 4 letters, 2 above),
nearest first and then the most frequent, one per word family (``эвакуация`` stands for
``эвакуации`` and ``эвакуацию``: a search finds every form anyway).

Bounded cost, never a read of the whole vocabulary (measured in docs/benchmarks.md,
"Search"): words one edit away are looked up by name (every deletion, swap of neighbours,
substitution and insertion of a letter of the word's alphabet: some 700 names for a
9-letter word, one indexed lookup each); words two edits away are read from the ranges of
words that begin like the query word (its first two letters, or those two swapped), at
most :data:`SCAN_CAP` words a range. So a word two edits away whose first two letters differ
from the query word's (other than swapped) is not offered.

On PostgreSQL the same algorithm reads the ``search_words`` table: every word of the
versions with the number of versions holding it, in code point order, as FTS5's vocabulary
(:mod:`archiver.store.pg_search`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from archiver.query import Query, Term
from archiver.store import pg_search
from archiver.store.archive import Archive
from archiver.text import forms

log = logging.getLogger(__name__)

VOCAB = "temp.telewatch_vocab"
SCAN_CAP = 20_000  # vocabulary rows read per range, at most
MIN_LENGTH = 3  # shorter words get no suggestion: too many neighbours to mean anything
MAX_WORDS = 5  # query words looked at, at most
TOP = 3  # suggestions per word


@dataclass(frozen=True, slots=True)
class Suggestion:
    """``word`` (a query word, normalised) is in no post; ``candidates`` are near it."""

    word: str
    candidates: tuple[str, ...]


def max_distance(word: str) -> int:
    return 1 if len(word) <= 4 else 2


def distance(a: str, b: str, cap: int) -> int:
    """Edit distance (insert, delete, substitute, swap two neighbours), or ``cap + 1`` as
    soon as it must exceed ``cap``."""
    if abs(len(a) - len(b)) > cap:
        return cap + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > cap and min(prev) > cap:  # a swap reaches back two rows
            return cap + 1
        prev2, prev = prev, cur
    return prev[-1] if prev[-1] <= cap else cap + 1


async def _ensure_vocab(archive: Archive) -> None:
    if pg_search.is_postgres(archive):
        return  # search_words (archiver/store/pg_search.py) is part of the schema
    # In the connection's temp schema: nothing is written to the archive, and it works on
    # an archive of any schema version (and on one opened only to read).
    await archive.write(
        f"CREATE VIRTUAL TABLE IF NOT EXISTS {VOCAB} USING fts5vocab(main, versions_fts, row)"
    )


async def _known(archive: Archive, words: frozenset[str]) -> bool:
    if pg_search.is_postgres(archive):
        return await pg_search.any_version_has(archive, words)
    marks = ",".join("?" * len(words))
    row = await archive.fetchone(f"SELECT 1 FROM {VOCAB} WHERE term IN ({marks}) LIMIT 1",
                                 tuple(words))  # fmt: skip
    return row is not None


CYRILLIC = "абвгдежзийклмнопрстуфхцчшщъыьэюяіїєґ"
LATIN = "abcdefghijklmnopqrstuvwxyz"


def edits1(word: str) -> set[str]:
    """Every word one edit from ``word`` over its alphabet (its own letters, and the Cyrillic
    or Latin letters when it has any)."""
    letters = set(word)
    if any(c in CYRILLIC for c in word):
        letters |= set(CYRILLIC)
    if any(c in LATIN for c in word):
        letters |= set(LATIN)
    out: set[str] = set()
    for i in range(len(word) + 1):
        head, tail = word[:i], word[i:]
        out.update(head + c + tail for c in letters)
        if tail:
            out.add(head + tail[1:])
            out.update(head + c + tail[1:] for c in letters)
        if len(tail) > 1:
            out.add(head + tail[1] + tail[0] + tail[2:])
    out.discard(word)
    return out


def _ranges(word: str) -> list[tuple[str, str]]:
    starts = dict.fromkeys([word[:2], word[1] + word[0]])
    return [(s, s + "\U0010ffff") for s in starts]


async def nearest(archive: Archive, word: str) -> tuple[str, ...]:
    """The archive's words nearest to ``word`` (normalised), best first, one per family."""
    cap = max_distance(word)
    found: dict[str, tuple[int, int]] = {}
    near = sorted(edits1(word))
    pg = pg_search.is_postgres(archive)
    rows: Sequence[tuple[str, int]]
    if pg:
        rows = await pg_search.words_named(archive, near)
    else:
        rows = [
            (r[0], r[1])
            for r in await archive.fetchall(
                f"SELECT term, doc FROM {VOCAB} WHERE term IN ({','.join('?' * len(near))})", near
            )
        ]
    found.update((term, (1, doc)) for term, doc in rows)
    if cap < 2:
        return _best(found)
    for lo, hi in _ranges(word):
        if pg:
            rows = await pg_search.words_between(archive, lo, hi, SCAN_CAP)
        else:
            rows = [
                (r[0], r[1])
                for r in await archive.fetchall(
                    f"SELECT term, doc FROM {VOCAB} WHERE term >= ? AND term < ? LIMIT ?",
                    (lo, hi, SCAN_CAP),
                )
            ]
        for term, doc in rows:
            if abs(len(term) - len(word)) > cap or term == word:
                continue
            d = distance(word, term, cap)
            if d <= cap:
                found[term] = (d, doc)
    return _best(found)


def _best(found: dict[str, tuple[int, int]]) -> tuple[str, ...]:
    """Nearest first, then the most frequent; one word per family."""
    ranked = sorted(found, key=lambda t: (found[t][0], -found[t][1], t))
    out: list[str] = []
    covered: set[str] = set()
    for term in ranked:
        if term in covered:
            continue
        out.append(term)
        covered |= forms(term)
        if len(out) == TOP:
            break
    return tuple(out)


async def suggest(archive: Archive, query: Query) -> list[Suggestion]:
    """For each bare word of ``query`` (not under a NOT) that no post has in any of its
    forms, the archive's nearest words; words it has, or with nothing near, are left out."""
    words = [n for n in query.positive_terms if isinstance(n, Term)]
    words = [w for w in dict.fromkeys(words) if len(w.word) >= MIN_LENGTH][:MAX_WORDS]
    if not words:
        return []
    await _ensure_vocab(archive)
    out: list[Suggestion] = []
    for term in words:
        if await _known(archive, term.forms | {term.word}):
            continue
        near = await nearest(archive, term.word)
        if near:
            out.append(Suggestion(term.word, near))
    log.debug("suggestions: %d of %d query words", len(out), len(words))
    return out


def corrected(text: str, suggestions: list[Suggestion]) -> str | None:
    """``text`` with each suggested word replaced by its first candidate, where the word
    appears in it as written (any case); None when none could be."""
    out = text
    for s in suggestions:
        pattern = re.compile(rf"(?<!\w){re.escape(s.word)}(?!\w)", re.IGNORECASE)
        out = pattern.sub(s.candidates[0], out)
    return out if out != text else None


async def suggestion_hint(archive: Archive, query: Query) -> str | None:
    """One line for the terminal (``telewatch search`` prints it on stderr), or None."""
    found = await suggest(archive, query)
    if not found:
        return None
    near = "; ".join(f"{s.word} -> {', '.join(s.candidates)}" for s in found)
    fixed = corrected(query.text, found)
    return f"No post has: {near}" + (f". Try: telewatch search '{fixed}'" if fixed else "")
