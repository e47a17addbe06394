"""The one query language, parsed once and used by search (SQL/FTS5) and rules (in memory).

Grammar (operators are upper case; everything else is searched text)::

    query   := or ( OR or )*
    or      := and ( [AND] and )*          implicit AND
    and     := ( '-' | NOT ) and | primary
    primary := '(' query ')' | "exact phrase" | filter | word | prefix*
    filter  := channel:NAME | since:YYYY-MM-DD | until:YYYY-MM-DD
             | is:edited | is:deleted | has:media|photo|video|document|link

A bare word matches every form of it (see :mod:`archiver.text`); a phrase matches these
exact words in this order; ``prefix*`` matches words starting with it. A post matches when
any one of its versions satisfies the whole query. Errors are :class:`QueryError` with a
1-based position into the query.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from archiver.errors import QueryError
from archiver.text import forms, normalize, split_normalized

FILTERS = ("channel", "since", "until", "is", "has")
IS_VALUES = ("edited", "deleted")
HAS_VALUES = ("media", "photo", "video", "document", "link")
MIN_PREFIX = 2
MAX_TERMS = 100  # words, phrases, prefixes and filters in one query
MAX_DEPTH = 20  # nested parentheses and NOTs


# ---------------------------------------------------------------------------- the tree


@dataclass(frozen=True, slots=True)
class Term:
    """A bare word: matches any of its forms (:func:`archiver.text.forms`, the word included)."""

    word: str
    forms: frozenset[str]


@dataclass(frozen=True, slots=True)
class Phrase:
    """These normalised words, consecutive and in order."""

    words: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Prefix:
    prefix: str


@dataclass(frozen=True, slots=True)
class Filter:
    """A metadata condition. ``value`` is normalised: a date for since/until (``until``
    is inclusive), a lower-case word otherwise. ``tz`` is the time zone (an IANA name) whose
    days since/until mean: the display time zone, so that a day is the one dates show in."""

    field: str
    value: str
    day: date | None = None
    tz: str = "UTC"

    @property
    def bound(self) -> str:
        """since: the first instant of the day; until: the first instant after it. As a UTC
        ``YYYY-MM-DD HH:MM:SS``, the form the archive stores dates in (one code path for
        SQL and the in-memory matcher)."""
        assert self.day is not None, self
        if self.field == "since":
            return day_start(self.day, self.tz)
        return until_bound(self.day, self.tz)


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Node


@dataclass(frozen=True, slots=True)
class All:
    """The empty query: matches everything."""


Node = Term | Phrase | Prefix | Filter | And | Or | Not | All
TextNode = Term | Phrase | Prefix


@dataclass(frozen=True, slots=True)
class Query:
    text: str
    root: Node

    def __str__(self) -> str:
        return self.text

    @property
    def positive_terms(self) -> tuple[TextNode, ...]:
        """Text nodes not under a NOT: what highlighting marks in a snippet."""
        return tuple(_positive(self.root, negated=False))

    @property
    def filters(self) -> tuple[Filter, ...]:
        return tuple(n for n in walk(self.root) if isinstance(n, Filter))

    @property
    def has_text(self) -> bool:
        return any(isinstance(n, Term | Phrase | Prefix) for n in walk(self.root))


def walk(node: Node) -> Iterator[Node]:
    yield node
    if isinstance(node, And | Or):
        for item in node.items:
            yield from walk(item)
    elif isinstance(node, Not):
        yield from walk(node.item)


def is_text(node: Node) -> bool:
    """Whether ``node`` is made of words, phrases and prefixes only (no filter): what a
    full-text index answers alone."""
    if isinstance(node, Term | Phrase | Prefix):
        return True
    if isinstance(node, Not):
        return is_text(node.item)
    if isinstance(node, And | Or):
        return all(is_text(n) for n in node.items)
    return False


def _positive(node: Node, negated: bool) -> Iterator[TextNode]:
    if isinstance(node, Term | Phrase | Prefix):
        if not negated:
            yield node
    elif isinstance(node, And | Or):
        for item in node.items:
            yield from _positive(item, negated)
    elif isinstance(node, Not):
        yield from _positive(node.item, not negated)


# ---------------------------------------------------------------------------- lexing

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<quote>")
  | (?P<minus>-(?=[^\s\-)]))
  | (?P<word>[^\s()"]+)
    """,
    re.VERBOSE,
)
_FILTER = re.compile(r"^([A-Za-z]+):(.*)$")


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # lparen rparen phrase minus word or and not
    value: str
    pos: int  # 1-based


def _lex(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    i = 0
    while i < len(text):
        if text[i] == '"':
            end = text.find('"', i + 1)
            if end < 0:
                raise QueryError("unbalanced quote", i + 1, text)
            out.append(_Tok("phrase", text[i + 1 : end], i + 1))
            i = end + 1
            continue
        m = _TOKEN.match(text, i)
        assert m is not None  # the pattern matches any character
        kind = m.lastgroup or "ws"
        value = m.group()
        if kind == "word" and value in ("OR", "AND", "NOT"):
            kind = value.lower()
        elif kind == "word" and not split_normalized(normalize(value)):
            kind = "ws"  # punctuation on its own (a pasted dash, a stray *): not a term
        if kind != "ws":
            out.append(_Tok(kind, value, i + 1))
        i = m.end()
    return out


# ---------------------------------------------------------------------------- parsing


class _Parser:
    def __init__(self, text: str, tz: str = "UTC") -> None:
        self.text = text
        self.tz = tz
        self.toks = _lex(text)
        self.i = 0
        self.depth = 0
        terms = [t for t in self.toks if t.kind in ("word", "phrase")]
        if len(terms) > MAX_TERMS:
            raise QueryError(
                f"too many terms ({len(terms)}; at most {MAX_TERMS}): split the query",
                terms[MAX_TERMS].pos,
                text,
            )

    def peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def error(self, message: str, pos: int) -> QueryError:
        return QueryError(message, pos, self.text)

    def parse(self) -> Node:
        if not self.toks:
            if self.text.strip():
                raise self.error(f"nothing to search for in '{self.text.strip()}'", 1)
            return All()
        node = self.parse_or()
        tok = self.peek()
        if tok is not None:  # only a stray ')' can stop the loops early
            raise self.error("unbalanced parenthesis ')'", tok.pos)
        return node

    def parse_or(self) -> Node:
        items = [self.parse_and()]
        while (tok := self.peek()) is not None and tok.kind == "or":
            self.take()
            nxt = self.peek()
            if nxt is None or nxt.kind in ("or", "and", "rparen"):
                raise self.error("OR needs a term on both sides", tok.pos)
            items.append(self.parse_and())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def parse_and(self) -> Node:
        first = self.peek()
        if first is None:
            raise self.error("expected a term", len(self.text) + 1)
        if first.kind in ("or", "and"):
            raise self.error(f"{first.value} needs a term on both sides", first.pos)
        items = [self.parse_unary()]
        while (tok := self.peek()) is not None and tok.kind not in ("or", "rparen"):
            if tok.kind == "and":
                self.take()
                nxt = self.peek()
                if nxt is None or nxt.kind in ("or", "and", "rparen"):
                    raise self.error("AND needs a term on both sides", tok.pos)
            items.append(self.parse_unary())
        return items[0] if len(items) == 1 else And(tuple(items))

    def nest(self, tok: _Tok) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"nested too deep (at most {MAX_DEPTH} levels of ( and NOT)", tok.pos)

    def parse_unary(self) -> Node:
        tok = self.peek()
        if tok is not None and tok.kind in ("minus", "not"):
            self.take()
            nxt = self.peek()
            if nxt is None or nxt.kind in ("or", "and", "rparen"):
                what = "NOT" if tok.kind == "not" else "'-'"
                raise self.error(f"{what} needs a term after it", tok.pos)
            self.nest(tok)
            node = Not(self.parse_unary())
            self.depth -= 1
            return node
        return self.parse_primary()

    def parse_primary(self) -> Node:
        tok = self.take()
        if tok.kind == "lparen":
            if (nxt := self.peek()) is not None and nxt.kind == "rparen":
                raise self.error("empty parentheses", tok.pos)
            self.nest(tok)
            node = self.parse_or()
            self.depth -= 1
            close = self.peek()
            if close is None or close.kind != "rparen":
                raise self.error("unbalanced parenthesis '('", tok.pos)
            self.take()
            return node
        if tok.kind == "rparen":
            raise self.error("unbalanced parenthesis ')'", tok.pos)
        if tok.kind == "phrase":
            ws = split_normalized(normalize(tok.value))
            if not ws:
                raise self.error("empty phrase", tok.pos)
            return Phrase(tuple(ws))  # quoted: these exact words, even just one
        return self.parse_word(tok)

    def parse_word(self, tok: _Tok) -> Node:
        value = tok.value
        m = _FILTER.match(value)
        if m and m.group(1).lower() in FILTERS:
            return _filter(m.group(1).lower(), m.group(2), tok.pos, self.text, self.tz)
        if m and m.group(2) and not m.group(2).startswith("/"):
            name = m.group(1)
            raise self.error(
                f"unknown filter '{name}:' (use {', '.join(f + ':' for f in FILTERS)};"
                f' put it in quotes to search for the text "{value}")',
                tok.pos,
            )
        star = value.endswith("*")
        ws = split_normalized(normalize(value.rstrip("*")))
        if not ws:
            raise self.error(f"nothing to search for in '{value}'", tok.pos)
        if star:
            if len(ws) > 1:
                raise self.error(f"a prefix* must be a single word, not '{value}'", tok.pos)
            if len(ws[0]) < MIN_PREFIX:
                raise self.error(f"a prefix* needs at least {MIN_PREFIX} letters", tok.pos)
            return Prefix(ws[0])
        return Phrase(tuple(ws)) if len(ws) > 1 else _term(ws[0])


def _term(word: str) -> Term:
    return Term(word, forms(word))


def make_filter(name: str, value: str, where: str, tz: str = "UTC") -> Filter:
    """A filter from an option such as ``--since``; errors quote ``where``."""
    return _filter(name, value, 1, where, tz)


def _filter(name: str, value: str, pos: int, text: str, tz: str = "UTC") -> Filter:
    raw = value.strip()
    if not raw:
        raise QueryError(f"{name}: needs a value", pos, text)
    if name in ("since", "until"):
        try:
            day = datetime.strptime(raw, "%Y-%m-%d").date()
        except ValueError:
            raise QueryError(f"{name}: expected YYYY-MM-DD, got '{raw}'", pos, text) from None
        return Filter(name, day.isoformat(), day, tz)
    low = raw.lower()
    if name == "is" and low not in IS_VALUES:
        raise QueryError(f"is: expected one of {', '.join(IS_VALUES)}, got '{raw}'", pos, text)
    if name == "has" and low not in HAS_VALUES:
        raise QueryError(f"has: expected one of {', '.join(HAS_VALUES)}, got '{raw}'", pos, text)
    if name == "channel":
        from archiver.channels import BadChannelRef, parse_ref

        try:
            parse_ref(raw)
        except BadChannelRef as exc:
            raise QueryError(f"channel: {exc}", pos, text) from None
    return Filter(name, raw if name == "channel" else low)


def parse(text: str, tz: str = "UTC") -> Query:
    """Parse a query; raises :class:`QueryError` with the position of the first problem.
    ``tz`` (an IANA name) is the time zone whose days ``since:``/``until:`` name: callers
    that show dates pass the display time zone."""
    return Query(text, _Parser(text, tz).parse())


def and_filters(query: Query, extra: list[Node]) -> Query:
    """``query`` with more conditions ANDed on (the CLI's ``--channel``/``--since`` options)."""
    if not extra:
        return query
    if len(extra) == 1 and isinstance(query.root, All):
        return Query(query.text, extra[0])
    items: list[Node] = [] if isinstance(query.root, All) else [query.root]
    if isinstance(query.root, And):
        items = list(query.root.items)
    return Query(query.text, And((*items, *extra)))


def day_start(day: date, tz: str = "UTC") -> str:
    """When ``day`` begins in time zone ``tz``, as UTC ``YYYY-MM-DD HH:MM:SS``. A midnight
    that a clock change skips resolves (fold=0) to the instant of the change."""
    if day <= date.min + timedelta(days=1):  # no earlier instant exists in UTC: the start of time
        return "0001-01-01 00:00:00"
    start = datetime.combine(day, time(0), tzinfo=ZoneInfo(tz))
    return start.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def until_bound(day: date, tz: str = "UTC") -> str:
    """The exclusive upper bound (UTC ``YYYY-MM-DD HH:MM:SS``) of an inclusive ``until:`` day
    (the last day a date can be has no next day: everything is before its end)."""
    if day >= date.max - timedelta(days=1):
        return "9999-12-31 23:59:59"
    return day_start(day + timedelta(days=1), tz)


# ---------------------------------------------------------------------------- in memory


@dataclass(frozen=True, slots=True)
class Doc:
    """One version of one post, as the in-memory matcher sees it."""

    words: tuple[str, ...]
    word_set: frozenset[str]
    channel_id: int
    channel_username: str | None
    date: str  # UTC "YYYY-MM-DD HH:MM:SS"
    edited: bool = False
    deleted: bool = False
    media_kind: str | None = None
    has_link: bool = False
    is_service: bool = False


def contains_phrase(words: tuple[str, ...], phrase: tuple[str, ...]) -> bool:
    n = len(phrase)
    first = phrase[0]
    return any(w == first and words[i : i + n] == phrase for i, w in enumerate(words))


def match_text(node: TextNode, doc: Doc) -> bool:
    if isinstance(node, Term):
        return not node.forms.isdisjoint(doc.word_set)
    if isinstance(node, Phrase):
        return contains_phrase(doc.words, node.words)
    return any(w.startswith(node.prefix) for w in doc.word_set)


def channel_matches(value: str, channel_id: int, username: str | None) -> bool:
    """Whether a ``channel:`` value (username, bare or marked id, t.me link) names a channel."""
    from archiver.channels import parse_ref

    ref = parse_ref(value)
    if ref.id is not None:
        return ref.id == channel_id
    return username is not None and ref.username == username.lower()


def match_filter(f: Filter, doc: Doc) -> bool:
    if f.field == "channel":
        return channel_matches(f.value, doc.channel_id, doc.channel_username)
    if f.field == "since":
        return doc.date >= f.bound
    if f.field == "until":
        return doc.date < f.bound
    if f.field == "is":
        return doc.edited if f.value == "edited" else doc.deleted
    if f.value == "media":
        return doc.media_kind is not None
    if f.value == "link":
        return doc.has_link
    return doc.media_kind == f.value


def matches(node: Node, doc: Doc) -> bool:
    """Evaluate a query tree against one document. Service posts never match."""
    if doc.is_service:
        return False
    return _eval(node, doc)


def _eval(node: Node, doc: Doc) -> bool:
    if isinstance(node, Term | Phrase | Prefix):
        return match_text(node, doc)
    if isinstance(node, And):
        return all(_eval(n, doc) for n in node.items)
    if isinstance(node, Or):
        return any(_eval(n, doc) for n in node.items)
    if isinstance(node, Not):
        return not _eval(node.item, doc)
    if isinstance(node, Filter):
        return match_filter(node, doc)
    return True


# ---------------------------------------------------------------------------- FTS5


def _quote(s: str) -> str:
    return '"' + s.replace('"', '""') + '"'


def fts_text(node: TextNode) -> str:
    """One text node as an FTS5 expression over the ``words`` column."""
    if isinstance(node, Term):
        if len(node.forms) == 1:
            return f"words : {_quote(node.word)}"
        return "words : (" + " OR ".join(_quote(f) for f in sorted(node.forms)) + ")"
    if isinstance(node, Phrase):
        return "words : " + _quote(" ".join(node.words))
    return f"words : {_quote(node.prefix)} *"


def to_fts(node: Node) -> str | None:
    """The FTS5 MATCH expression for a purely textual subtree that FTS5 can express, else None.

    FTS5's NOT is binary, so a NOT must sit in an AND beside at least one positive item.
    """
    if isinstance(node, Term | Phrase | Prefix):
        return fts_text(node)
    if isinstance(node, Or):
        subs = [to_fts(n) for n in node.items]
        if any(s is None for s in subs):
            return None
        return "(" + " OR ".join(s for s in subs if s is not None) + ")"
    if isinstance(node, And):
        pos = [n for n in node.items if not isinstance(n, Not)]
        neg = [n.item for n in node.items if isinstance(n, Not)]
        psubs = [to_fts(n) for n in pos]
        nsubs = [to_fts(n) for n in neg]
        if not pos or any(s is None for s in psubs) or any(s is None for s in nsubs):
            return None
        expr = "(" + " AND ".join(s for s in psubs if s is not None) + ")"
        if nsubs:  # a AND NOT b AND NOT c = a NOT (b OR c): one level, however many NOTs
            expr = f"({expr} NOT ({' OR '.join(s for s in nsubs if s is not None)}))"
        return expr
    return None
