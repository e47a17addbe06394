"""Snippets: a short window of a post around the words a query matched, with their spans.

Highlighting uses the query's own matcher (same normalisation and word forms as search and
rules), so what is marked is what matched. Front ends render the spans: the CLI in colour,
the bot in bold, JSON as ``**word**``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from archiver.query import Phrase, Prefix, Query, Term, TextNode
from archiver.text import normalize, split_normalized

_SPAN = re.compile(r"[^\W_]+(?:['\u2019\u02bc`\u2018][^\W_]+)*")
Span = tuple[int, int]


def _word_matches(word: str, terms: Iterable[TextNode]) -> bool:
    for t in terms:
        if isinstance(t, Term):
            if word in t.forms:
                return True
        elif isinstance(t, Prefix):
            if word.startswith(t.prefix):
                return True
        elif isinstance(t, Phrase) and word in t.words:
            return True
    return False


def match_spans(text: str, query: Query) -> list[Span]:
    """Character ranges of ``text`` holding words the query's positive terms match."""
    terms = query.positive_terms
    if not terms:
        return []
    out: list[Span] = []
    for m in _SPAN.finditer(text):
        ws = split_normalized(normalize(m.group()))
        if any(_word_matches(w, terms) for w in ws):
            out.append((m.start(), m.end()))
    return out


def snippet(text: str, query: Query, width: int = 200) -> tuple[str, list[Span]]:
    """A window of about ``width`` characters around the first match (or the start), with
    line breaks flattened, and the match spans relative to the window."""
    flat = " ".join(text.split())
    spans = match_spans(flat, query)
    if len(flat) <= width:
        return flat, spans
    first = spans[0][0] if spans else 0
    start = max(0, first - width // 3)
    if start:
        space = flat.rfind(" ", 0, start)
        start = space + 1 if space >= 0 and start - space < 30 else start
    end = min(len(flat), start + width)
    if end < len(flat):
        space = flat.rfind(" ", start, end)
        end = space if space > start + width // 2 else end
    prefix = "…" if start else ""
    suffix = "…" if end < len(flat) else ""
    window = prefix + flat[start:end] + suffix
    shift = len(prefix) - start
    inside = [(a + shift, b + shift) for a, b in spans if a >= start and b <= end]
    return window, inside


def mark(text: str, spans: list[Span], before: str = "**", after: str = "**") -> str:
    """``text`` with each span wrapped in markers."""
    out: list[str] = []
    pos = 0
    for a, b in spans:
        out.append(text[pos:a])
        out.append(before + text[a:b] + after)
        pos = b
    out.append(text[pos:])
    return "".join(out)
