"""Search on PostgreSQL: the query language over a ``tsvector`` of the normalised words.

The same results as SQLite's FTS5 (:mod:`archiver.store.search`), by the same split of work:

- **Indexing.** ``versions.words`` (the normalised words, space-joined, as SQLite indexes
  them) becomes ``versions.tsv``, a generated ``tsvector`` column with a GIN index. It is built
  by :data:`WORDS_TSV` from the words split on spaces with their positions, not by
  PostgreSQL's text parser: the parser would split or drop what FTS5's ``unicode61`` keeps
  (``²``, URL-like or e-mail-like runs, words joined by ``ʼ`` in some locales). So a lexeme is
  exactly one word of the ``words`` column, as an FTS5 token is; nothing is stemmed or
  dropped (the ``simple`` configuration's behaviour, without its parser).
- **Querying.** Word forms are expanded on the query side by the very same
  :func:`archiver.text.forms`; a query's textual part becomes one ``tsquery`` written
  directly (``'a' | 'b'``, phrases ``'a' <-> 'b'``, prefixes ``'pre':*``, ``!`` for NOT),
  never through ``to_tsquery``, whose parser would re-split the words. Filters are SQL
  around it. Results are newest first by version id, a post once (at its newest matching
  version), as on SQLite; relevance is FTS5's own bm25, computed here over the same window
  of the newest :data:`~archiver.store.search.RELEVANCE_WINDOW` matches. A query's words
  (with its filters, if any) are read newest first in windows of the newest versions while
  their matches are dense, and through the GIN index once they are sparse
  (:func:`matching_versions`).

Limits PostgreSQL puts on a ``tsvector`` (none reached by a Telegram post, 4,096 letters):
a lexeme holds at most 2,047 bytes (a word is cut to :data:`MAX_WORD` letters, in posts and
queries alike), positions stop at 16,383 and a lexeme keeps its first 256 positions, so a
phrase past either in one post is not found there.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from archiver.query import (
    All,
    And,
    Filter,
    Node,
    Not,
    Or,
    Phrase,
    Prefix,
    Query,
    Term,
    is_text,
)
from archiver.store.search_filters import filter_sql

if TYPE_CHECKING:
    from archiver.store.archive import Archive

MAX_WORD = 511  # letters: 4 bytes each at most, under the 2,047 bytes of a lexeme
_FIRST_BATCH = 24  # a page is 20 posts; a few more for posts with several matching versions
_MAX_BATCH = 8192

_TOKENS = "cardinality(array_remove(string_to_array(words, ' '), ''))"  # a version's words

# The tsvector of a ``words`` column: each space-separated word with its 1-based position.
# IMMUTABLE (it depends on its argument alone) so that it can build a generated column.
WORDS_TSV = f"""
CREATE OR REPLACE FUNCTION telewatch_words_tsv(words text) RETURNS tsvector
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT coalesce(string_agg(
               '''' || replace(replace(left(w, {MAX_WORD}), '\\', '\\\\'), '''', '''''')
               || ''':' || least(n, 16383), ' '), '')::tsvector
    FROM unnest(string_to_array(words, ' ')) WITH ORDINALITY AS t(w, n)
    WHERE w <> ''
$$
"""

# Every word of the versions with the number of versions holding it (what "did you mean"
# and bm25 read, like FTS5's fts5vocab and its doclists): kept once per statement from its
# rows, in word order. Writers already take turns (the write lock of archiver.store.postgres),
# so the counts never wait on each other. "C" collation: words sort by code point, as SQLite
# compares them.
_ROW_WORDS = f"""
    SELECT w, count(*) AS n FROM (
        SELECT DISTINCT r.id, w FROM {{rows}} r, unnest(string_to_array(r.words, ' ')) AS w
        WHERE w <> '' AND char_length(w) <= {MAX_WORD}
    ) x GROUP BY w ORDER BY w
"""
SCHEMA: tuple[str, ...] = (
    WORDS_TSV,
    "ALTER TABLE versions ADD COLUMN tsv tsvector"
    " GENERATED ALWAYS AS (telewatch_words_tsv(words)) STORED",
    "CREATE INDEX versions_tsv ON versions USING gin (tsv)",
    # The planner's guess of how many versions a tsquery matches comes from the most common
    # lexemes ANALYZE lists; with the default (1,000 lexemes) a word's 90 forms ORed looked
    # like a third of the archive and a rare word read all of it, newest first (1.5 s at
    # 100,000 posts, docs/benchmarks.md "Search on PostgreSQL"); 100,000 lexemes: 1 ms.
    "ALTER TABLE versions ALTER COLUMN tsv SET STATISTICS 10000",
    'CREATE TABLE search_words (word text COLLATE "C" PRIMARY KEY, docs bigint NOT NULL)',
    """
    CREATE OR REPLACE FUNCTION telewatch_count_words() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP IN ('UPDATE', 'DELETE') THEN
            UPDATE search_words s SET docs = s.docs - o.n
            FROM ("""
    + _ROW_WORDS.format(rows="old_rows")
    + """) o WHERE s.word = o.w;
        END IF;
        IF TG_OP IN ('UPDATE', 'INSERT') THEN
            INSERT INTO search_words (word, docs)
            """
    + _ROW_WORDS.format(rows="new_rows")
    + """
            ON CONFLICT (word) DO UPDATE SET docs = search_words.docs + excluded.docs;
        END IF;
        RETURN NULL;
    END
    $$
    """,
    "CREATE TRIGGER versions_words_ai AFTER INSERT ON versions REFERENCING NEW TABLE AS new_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION telewatch_count_words()",
    "CREATE TRIGGER versions_words_au AFTER UPDATE ON versions REFERENCING OLD TABLE AS old_rows"
    " NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION telewatch_count_words()",
    "CREATE TRIGGER versions_words_ad AFTER DELETE ON versions REFERENCING OLD TABLE AS old_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION telewatch_count_words()",
    "INSERT INTO search_words (word, docs)" + _ROW_WORDS.format(rows="versions"),
    # What bm25 needs of the whole index, kept as FTS5 keeps it: the versions that have words
    # (ingest indexes no empty one) and their words in all. One row, changed once per
    # statement; writers already take turns (the write lock of archiver.store.postgres).
    "CREATE TABLE search_stats (versions bigint NOT NULL, tokens bigint NOT NULL)",
    "INSERT INTO search_stats SELECT count(*) FILTER (WHERE words <> ''),"
    f" coalesce(sum({_TOKENS}), 0) FROM versions",
    """
    CREATE OR REPLACE FUNCTION telewatch_search_stats() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP IN ('UPDATE', 'DELETE') THEN
            UPDATE search_stats SET versions = versions - o.n, tokens = tokens - o.w
            FROM (SELECT count(*) FILTER (WHERE words <> '') AS n,
                         coalesce(sum("""
    + _TOKENS
    + """), 0) AS w FROM old_rows) o;
        END IF;
        IF TG_OP IN ('UPDATE', 'INSERT') THEN
            UPDATE search_stats SET versions = versions + n.n, tokens = tokens + n.w
            FROM (SELECT count(*) FILTER (WHERE words <> '') AS n,
                         coalesce(sum("""
    + _TOKENS
    + """), 0) AS w FROM new_rows) n;
        END IF;
        RETURN NULL;
    END
    $$
    """,
    "CREATE TRIGGER versions_stats_ai AFTER INSERT ON versions REFERENCING NEW TABLE AS new_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION telewatch_search_stats()",
    "CREATE TRIGGER versions_stats_au AFTER UPDATE ON versions REFERENCING OLD TABLE AS old_rows"
    " NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION telewatch_search_stats()",
    "CREATE TRIGGER versions_stats_ad AFTER DELETE ON versions REFERENCING OLD TABLE AS old_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION telewatch_search_stats()",
)
SEARCH_SCHEMA = "".join(stmt.strip() + ";\n" for stmt in SCHEMA)


def is_postgres(archive: Archive | Any) -> bool:
    """Whether ``archive`` is kept on PostgreSQL (the backend picks the search compiler)."""
    return getattr(archive, "dialect", "sqlite") == "postgresql"


# ---------------------------------------------------------------------------- tsquery


def lexeme(word: str) -> str:
    """One word as a quoted ``tsquery`` operand, cut as the index cuts it."""
    w = word[:MAX_WORD].replace("\\", "\\\\").replace("'", "''")
    return f"'{w}'"


def ts_text(node: Term | Phrase | Prefix) -> str:
    if isinstance(node, Term):
        if len(node.forms) == 1:
            return lexeme(node.word)
        return "(" + " | ".join(lexeme(f) for f in sorted(node.forms)) + ")"
    if isinstance(node, Phrase):
        if len(node.words) == 1:
            return lexeme(node.words[0])
        return "(" + " <-> ".join(lexeme(w) for w in node.words) + ")"
    return lexeme(node.prefix) + ":*"


def to_tsquery(node: Node) -> str:
    """The ``tsquery`` of a purely textual subtree (:func:`is_text`). Unlike FTS5's MATCH,
    a ``tsquery`` expresses every such tree, a lone NOT included."""
    if isinstance(node, Term | Phrase | Prefix):
        return ts_text(node)
    if isinstance(node, Not):
        return "!" + to_tsquery(node.item)
    if isinstance(node, And):
        return "(" + " & ".join(to_tsquery(n) for n in node.items) + ")"
    if isinstance(node, Or):
        return "(" + " | ".join(to_tsquery(n) for n in node.items) + ")"
    raise AssertionError(node)


# ---------------------------------------------------------------------------- compiling


class _Compiler:
    def __init__(self, channel_ids: dict[str, int]) -> None:
        self.channel_ids = channel_ids
        self.params: list[Any] = []

    def match(self, node: Node) -> str:
        self.params.append(to_tsquery(node))
        return "v.tsv @@ CAST(? AS tsquery)"

    def where(self, node: Node) -> str:
        if isinstance(node, All):
            return "TRUE"
        if is_text(node):
            return self.match(node)
        if isinstance(node, And | Or):
            op = " AND " if isinstance(node, And) else " OR "
            text = [n for n in node.items if is_text(n)]
            parts = []
            if text:  # the textual items as one tsquery: one read of the GIN index
                parts.append(self.match(text[0] if len(text) == 1 else type(node)(tuple(text))))
            parts += [self.where(n) for n in node.items if not is_text(n)]
            return "(" + op.join(parts) + ")"
        if isinstance(node, Not):
            return f"NOT {self.where(node.item)}"
        assert isinstance(node, Filter)
        return self.filter(node)

    def filter(self, f: Filter) -> str:
        return filter_sql(f, self.channel_ids, self.params)


@dataclass(frozen=True, slots=True)
class Plan:
    sql: str
    params: tuple[Any, ...]


def plan(
    query: Query,
    channel_ids: dict[str, int],
    *,
    below: int | None = None,
    limit: int | None = None,
    since_key: Any = None,
    words: bool = False,
) -> Plan:
    """The SQL yielding ``(version id, post id)`` of matching versions, newest first.
    ``below``: only versions with a smaller id; ``limit``: at most that many rows;
    ``words``: each version's words too (a third column).
    ``since_key(bound)`` gives the version id of a date bound (a top-level since:/until:
    also bounds the id, so the primary key's order is read from the right place)."""
    c = _Compiler(channel_ids)
    conds = ["p.is_service = 0", c.where(query.root)]
    items = query.root.items if isinstance(query.root, And) else (query.root,)
    for n in items:
        if since_key is not None and isinstance(n, Filter) and n.field in ("since", "until"):
            conds.append("v.id >= ?" if n.field == "since" else "v.id < ?")
            c.params.append(since_key(n.bound))
    if below is not None:
        conds.append("v.id < ?")
        c.params.append(below)
    cols = "v.id, v.post_id, v.words" if words else "v.id, v.post_id"
    sql = (
        f"SELECT {cols} FROM versions v JOIN posts p ON p.id = v.post_id"
        f" WHERE {' AND '.join(conds)} ORDER BY v.id DESC"
    )
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return Plan(sql, tuple(c.params))


# ---------------------------------------------------------------------------- bm25


def _phrases(node: Node, out: list[tuple[str, ...] | str]) -> None:
    """The FTS5 phrases of ``node`` in the order FTS5 numbers them (the order of the MATCH
    expression :func:`archiver.query.to_fts` writes): a word per form, a phrase's words,
    a prefix as its text (a ``str``)."""
    if isinstance(node, Term):
        out.extend((f,) for f in sorted(node.forms))
    elif isinstance(node, Phrase):
        out.append(node.words)
    elif isinstance(node, Prefix):
        out.append(node.prefix)
    elif isinstance(node, And):
        pos = [n for n in node.items if not isinstance(n, Not)]
        neg = [n.item for n in node.items if isinstance(n, Not)]
        for n in (*pos, *neg):
            _phrases(n, out)
    elif isinstance(node, Or):
        for n in node.items:
            _phrases(n, out)
    elif isinstance(node, Not):
        _phrases(node.item, out)


def _instances(words: Sequence[str], counts: Counter[str], phrase: tuple[str, ...] | str) -> int:
    """How many times ``phrase`` occurs in ``words`` (``counts``: each word's occurrences)."""
    if isinstance(phrase, str):
        return sum(n for w, n in counts.items() if w.startswith(phrase))
    if len(phrase) == 1:
        return counts[phrase[0]]
    n = len(phrase)
    first = phrase[0]
    if first not in counts:
        return 0
    return sum(1 for i, w in enumerate(words) if w == first and tuple(words[i : i + n]) == phrase)


def _phrase_query(phrase: tuple[str, ...] | str) -> str:
    if isinstance(phrase, str):
        return lexeme(phrase) + ":*"
    return " <-> ".join(lexeme(w) for w in phrase)


async def bm25_order(
    archive: Archive, match: Node, rows: Sequence[tuple[int, int, str]]
) -> list[tuple[int, int]]:
    """``rows`` (version id, post id, words) in FTS5's ``ORDER BY bm25(...), id DESC``."""
    scored = await bm25(archive, match, rows)
    scored.sort(key=lambda s: (s[0], -s[1]))
    return [(vid, pid) for _, vid, pid in scored]


async def bm25(
    archive: Archive, match: Node, rows: Sequence[tuple[int, int, str]]
) -> list[tuple[float, int, int]]:
    """``(score, version id, post id)`` of ``rows`` (version id, post id, words): FTS5's
    ``bm25()`` of each (lower is better), by the same formula (k1 1.2, b 0.75, idf floored
    at 1e-6), the same statistics (every version with words is a row, its words its tokens:
    search_stats) and the phrases summed in FTS5's order, so that scores come out equal."""
    phrases: list[tuple[str, ...] | str] = []
    _phrases(match, phrases)
    stats = await archive.fetchone("SELECT versions, tokens FROM search_stats")
    assert stats is not None
    n_rows, n_tokens = int(stats[0]), int(stats[1])
    avgdl = n_tokens / n_rows if n_rows else 0.0
    # Each phrase's number of versions: a word's is kept in search_words; a phrase of several
    # words or a prefix is counted in the index.
    single = {ph[0] for ph in phrases if isinstance(ph, tuple) and len(ph) == 1}
    docs = dict(await words_named(archive, sorted(single))) if single else {}
    idf: list[float] = []
    for ph in phrases:
        if isinstance(ph, tuple) and len(ph) == 1:
            n_hit = float(docs.get(ph[0], 0))
        else:
            hit = await archive.fetchone(
                "SELECT count(*) FROM versions WHERE tsv @@ CAST(? AS tsquery)",
                (_phrase_query(ph),),
            )
            n_hit = float(hit[0]) if hit is not None else 0.0
        v = math.log((n_rows - n_hit + 0.5) / (n_hit + 0.5))
        idf.append(v if v > 0.0 else 1e-6)
    k1, b = 1.2, 0.75
    # A phrase a version lacks adds exactly 0.0 to its score, which leaves a float sum as it
    # was: only the phrases present are summed, still in FTS5's order (a word of 90 forms is
    # 90 phrases, of which a version holds one or two).
    by_word: dict[str, list[int]] = {}
    other: list[int] = []
    for i, ph in enumerate(phrases):
        if isinstance(ph, tuple) and len(ph) == 1:
            by_word.setdefault(ph[0], []).append(i)
        else:
            other.append(i)
    scored: list[tuple[float, int, int]] = []
    for vid, pid, words_text in rows:
        words = words_text.split()
        counts = Counter(words)
        d = float(len(words))
        present = [i for w in counts.keys() & by_word.keys() for i in by_word[w]]
        score = 0.0
        for i in sorted(present + other):
            freq = float(_instances(words, counts, phrases[i]))
            score += idf[i] * ((freq * (k1 + 1.0)) / (freq + k1 * (1 - b + b * d / avgdl)))
        scored.append((-1.0 * score, vid, pid))
    return scored


# ---------------------------------------------------------------------------- reading

# A purely textual query is read newest first in one of two ways, chosen by what the archive
# shows (docs/benchmarks.md, "Scale"). PostgreSQL's own plan went by its guess of how many
# versions match: for words ANDed the product of their shares, 20 times off either way (274
# guessed, 5,226 found for `that false` at 100,000 posts), and for an uncommon word a share
# spread evenly over time, when its posts may all be old. It then read the newest versions
# one by one until the end of the archive (2 s for a phrase at 1,000,000 posts), or every
# match through the index with each one's post before keeping 64. Instead:
# - when the words' counts (search_words) allow so few matches that reading them all through
#   the GIN index (INDEX_COST each) costs less than a window would test to find a batch of
#   them at that density, the index at once: one bitmap, only the matches read, newest first;
# - else a *window*: the newest versions in key order, each tested against the tsquery,
#   stopping at the batch's number of matches (dense matches cost what they need). When a
#   whole window held fewer, the next is sized for the rest of the batch at the density
#   seen, as long as that costs less than the index would (density * all versions matches,
#   INDEX_COST each); else the index reads the rest.
# Posts are joined for the rows returned only (service posts dropped after). Words ANDed with
# filters (since:, until:, channel:, is:, has:, and NOTs or ORs of filters alone) are read
# the same way within the filters' scope: a top-level since:/until: bounds the version ids
# (the windows begin and end at the dates), and each window's matches of the words are
# joined to their posts and filtered. Filters alone, or words inside an OR or a NOT with a
# filter, keep the planner's plan (:func:`plan`).
WINDOW = 2000
_MAX_WINDOW = 100_000
# A match read through the index weighs about 4 versions tested in a window: a rough weight
# from one query at 1,000,000 posts (docs/benchmarks.md, "Scale"), not a measured constant.
INDEX_COST = 4
SPARSE: int | None = None  # tests: read through the index at once up to this many matches

_WINDOW_SQL = """
SELECT t.id, t.post_id, p.is_service FROM (
    SELECT v.id, v.post_id FROM (
        SELECT id, post_id, tsv FROM versions WHERE id < ? ORDER BY id DESC LIMIT ?
    ) v WHERE v.tsv @@ CAST(? AS tsquery) ORDER BY v.id DESC LIMIT ?
) t JOIN posts p ON p.id = t.post_id ORDER BY t.id DESC
"""
_WINDOW_END_SQL = (
    "SELECT min(id), count(*) FROM"
    " (SELECT id FROM versions WHERE id < ?{floor} ORDER BY id DESC LIMIT ?) w"
)
_SPARSE_SQL = """
WITH m AS MATERIALIZED (
    SELECT id, post_id FROM versions WHERE tsv @@ CAST(? AS tsquery) AND id < ?
)
SELECT t.id, t.post_id, p.is_service
FROM (SELECT id, post_id FROM m ORDER BY id DESC LIMIT ?) t
JOIN posts p ON p.id = t.post_id ORDER BY t.id DESC
"""
# With filters: the window's matches of the words, then their posts, filtered. A since: floor
# is written into the statement as a number, never a parameter: psycopg prepares a statement
# run five times, and PostgreSQL's generic plan for ``id >= $1 AND id < $2`` guesses 0.5 % of
# the versions, and then reads the primary key where the GIN index was right (a rare word:
# 40 -> 400 ms at 1,000,000 posts, docs/benchmarks.md "Scale").
_WINDOW_FILTERED_SQL = """
SELECT t.id, t.post_id, p.is_service FROM (
    SELECT v.id, v.post_id FROM (
        SELECT id, post_id, tsv FROM versions WHERE id < ?{floor} ORDER BY id DESC LIMIT ?
    ) v WHERE v.tsv @@ CAST(? AS tsquery)
) t JOIN posts p ON p.id = t.post_id WHERE p.is_service = 0 AND {filters}
ORDER BY t.id DESC LIMIT ?
"""
_SPARSE_FILTERED_SQL = """
WITH m AS MATERIALIZED (
    SELECT id, post_id FROM versions WHERE tsv @@ CAST(? AS tsquery) AND id < ?{floor}
)
SELECT m.id, m.post_id, p.is_service FROM m JOIN posts p ON p.id = m.post_id
WHERE p.is_service = 0 AND {filters} ORDER BY m.id DESC LIMIT ?
"""
_TOP = 2**63 - 1


@dataclass(frozen=True, slots=True)
class _Scope:
    """Where a textual query's matches are read: versions with ``floor <= id < top``, and
    (a query with filters) whose posts pass ``filters`` (SQL over ``posts p``)."""

    top: int = _TOP
    floor: int = 0
    filters: str = ""
    params: tuple[Any, ...] = ()

    def _floor(self) -> str:
        return f" AND id >= {int(self.floor)}" if self.floor else ""

    def window(self, top: int, size: int, tsquery: str, batch: int) -> tuple[str, tuple[Any, ...]]:
        if not self.filters:
            return _WINDOW_SQL, (top, size, tsquery, batch)
        sql = _WINDOW_FILTERED_SQL.format(floor=self._floor(), filters=self.filters)
        return sql, (top, size, tsquery, *self.params, batch)

    def end(self, top: int, size: int) -> tuple[str, tuple[Any, ...]]:
        return _WINDOW_END_SQL.format(floor=self._floor()), (top, size)

    def index(self, top: int, tsquery: str, batch: int) -> tuple[str, tuple[Any, ...]]:
        if not self.filters:
            return _SPARSE_SQL, (tsquery, top, batch)
        sql = _SPARSE_FILTERED_SQL.format(floor=self._floor(), filters=self.filters)
        return sql, (tsquery, top, *self.params, batch)


async def _text_versions(
    archive: Archive,
    tsquery: str,
    batch: int,
    total: int,
    *,
    sparse: bool = False,
    scope: _Scope = _Scope(),
) -> AsyncIterator[tuple[int, int]]:
    """``(version id, post id)`` of every version matching ``tsquery`` in ``scope`` (of a
    post that is not a service message), newest first, ``batch`` rows at first: windows
    while matches are dense, then the index (at once when ``sparse``)."""
    top = scope.top
    size = WINDOW
    while not sparse:
        rows = await archive.fetchall(*scope.window(top, size, tsquery, batch))
        for r in rows:
            if not r[2]:
                yield int(r[0]), int(r[1])
        if len(rows) == batch:  # dense: the next batch from there
            top = int(rows[-1][0])
            batch = min(batch * 4, _MAX_BATCH)
            continue
        end = await archive.fetchone(*scope.end(top, size))
        if end is None or end[0] is None or int(end[1]) < size:
            return  # the window reached the oldest version (of the scope)
        top = int(end[0])
        if not rows:
            break
        # k matches in ``size`` versions: reading on for the rest of the batch tests about
        # (batch - k) / density versions; the index would read density * total matches, each
        # costing about INDEX_COST versions tested in a window.
        density = len(rows) / size
        more = (batch - len(rows)) / density
        if more >= INDEX_COST * density * total:
            break
        size = min(int(more * 1.25) + 1, _MAX_WINDOW)
    while True:
        rows = await archive.fetchall(*scope.index(top, tsquery, batch))
        for r in rows:
            if not r[2]:
                yield int(r[0]), int(r[1])
        if len(rows) < batch:
            return
        top = int(rows[-1][0])
        batch = min(batch * 4, _MAX_BATCH)


async def _planned_versions(
    archive: Archive,
    query: Query,
    channel_ids: dict[str, int],
    since_key: Any,
    batch: int,
    below: int | None = None,
) -> AsyncIterator[tuple[int, int]]:
    """As :func:`_text_versions`, for any query: by :func:`plan`, in batches."""
    while True:
        p = plan(query, channel_ids, below=below, limit=batch, since_key=since_key)
        rows = await archive.fetchall(p.sql, p.params)
        for r in rows:
            yield int(r[0]), int(r[1])
        if len(rows) < batch:
            return
        below = int(rows[-1][0])
        batch = min(batch * 4, _MAX_BATCH)


def _filters_only(node: Node) -> bool:
    """Whether ``node`` holds filters and no word (SQL over ``posts p`` alone)."""
    if isinstance(node, Filter):
        return True
    if isinstance(node, Not):
        return _filters_only(node.item)
    if isinstance(node, And | Or):
        return all(_filters_only(n) for n in node.items)
    return False


def _split(root: Node) -> tuple[Node, list[Node]] | None:
    """A query read by :func:`_text_versions`: its textual part and its filters (none for a
    purely textual query); None for any other (filters alone, or words inside an OR or a
    NOT with filters: the planner's plan)."""
    if is_text(root):
        return root, []
    if not isinstance(root, And):
        return None
    text = [n for n in root.items if is_text(n)]
    rest = [n for n in root.items if not is_text(n)]
    if not text or not all(_filters_only(n) for n in rest):
        return None
    return (text[0] if len(text) == 1 else And(tuple(text))), rest


def _windowed(root: Node) -> bool:
    """Whether a query of ``root`` is read by :func:`_text_versions`."""
    return _split(root) is not None


def _scope(rest: Sequence[Node], channel_ids: dict[str, int], since_key: Any) -> _Scope:
    """The scope of a query's filters: a top-level since:/until: also bounds the version
    ids (as :func:`plan` does), so the windows begin and end where the dates do."""
    if not rest:
        return _Scope()
    c = _Compiler(channel_ids)
    filters = " AND ".join(c.where(n) for n in rest)
    top, floor = _TOP, 0
    for n in rest:
        if since_key is not None and isinstance(n, Filter) and n.field == "since":
            floor = max(floor, int(since_key(n.bound)))
        if since_key is not None and isinstance(n, Filter) and n.field == "until":
            top = min(top, int(since_key(n.bound)))
    return _Scope(top, floor, filters, tuple(c.params))


def _words(node: Node, out: set[str]) -> None:
    if isinstance(node, Term):
        out.update(node.forms)
    elif isinstance(node, Phrase):
        out.update(node.words)
    elif isinstance(node, And | Or):
        for n in node.items:
            _words(n, out)
    elif isinstance(node, Not):
        _words(node.item, out)


def _bound(node: Node, docs: dict[str, int]) -> float:
    """At most how many versions match ``node`` (``docs``: each word's versions)."""
    if isinstance(node, Term):
        return float(sum(docs.get(f, 0) for f in node.forms))
    if isinstance(node, Phrase):
        return float(min(docs.get(w, 0) for w in node.words))
    if isinstance(node, And):
        positive = [_bound(n, docs) for n in node.items if not isinstance(n, Not)]
        return min(positive) if positive else math.inf
    if isinstance(node, Or):
        return sum(_bound(n, docs) for n in node.items)
    return math.inf  # a prefix, a NOT


async def matching_versions(
    archive: Archive,
    query: Query,
    channel_ids: dict[str, int],
    since_key: Any = None,
    *,
    batch: int = _FIRST_BATCH,
) -> AsyncIterator[tuple[int, int]]:
    """``(version id, post id)`` of every matching version, newest first (a post as often
    as it has matching versions), read ``batch`` at first."""
    split = _split(query.root)
    if split is not None:
        text, rest = split
        names: set[str] = set()
        _words(text, names)
        docs = dict(await words_named(archive, sorted(names)))
        stats = await archive.fetchone("SELECT versions FROM search_stats")
        total = int(stats[0]) if stats is not None else 0
        bound = _bound(text, docs)
        # Few matches at most (a rare word, or one ANDed): the index reads no more than those,
        # where a window would test about batch * total / bound versions to find a batch.
        if SPARSE is not None:
            sparse = bound <= SPARSE
        else:
            sparse = bound * bound * INDEX_COST <= batch * total
        scope = _scope(rest, channel_ids, since_key)
        async for pair in _text_versions(
            archive, to_tsquery(text), batch, total, sparse=sparse, scope=scope
        ):
            yield pair
        return
    async for pair in _planned_versions(archive, query, channel_ids, since_key, batch):
        yield pair


async def iter_matches(
    archive: Archive,
    query: Query,
    channel_ids: dict[str, int],
    *,
    ranked: Node | None = None,
    window: int,
    since_key: Any = None,
) -> AsyncIterator[tuple[int, int]]:
    """``(post id, version id)`` of each matching post once, in display order.

    ``ranked``: the textual part FTS5 would rank (the MATCH of a relevance search): the
    newest ``window`` matching versions in bm25 order first, then every older match newest
    first, exactly as :func:`archiver.store.search.iter_matches` on SQLite."""
    seen: set[int] = set()
    if ranked is not None and not _windowed(query.root):
        # the planner's plan, the words read with the matches
        p = plan(query, channel_ids, limit=window, since_key=since_key, words=True)
        rows = [(int(r[0]), int(r[1]), str(r[2])) for r in await archive.fetchall(p.sql, p.params)]
        for vid, pid in await bm25_order(archive, ranked, rows):
            if pid not in seen:
                seen.add(pid)
                yield pid, vid
        if len(rows) < window:
            return
        below = min(vid for vid, _, _ in rows)
        versions = _planned_versions(archive, query, channel_ids, since_key, _FIRST_BATCH, below)
    else:
        versions = matching_versions(
            archive, query, channel_ids, since_key, batch=window if ranked else _FIRST_BATCH
        )
    if ranked is not None and _windowed(query.root):
        first: list[tuple[int, int]] = []
        async for pair in versions:
            first.append(pair)
            if len(first) >= window:
                break
        got = await archive.fetchall(
            "SELECT id, words FROM versions WHERE id = ANY(CAST(? AS bigint[]))",
            ([vid for vid, _ in first],),
        )
        words = {int(r[0]): str(r[1]) for r in got}
        ranked_rows = [(vid, pid, words[vid]) for vid, pid in first]
        for vid, pid in await bm25_order(archive, ranked, ranked_rows):
            if pid not in seen:
                seen.add(pid)
                yield pid, vid
        if len(first) < window:
            return
    async for vid, pid in versions:
        if pid not in seen:
            seen.add(pid)
            yield pid, vid


HYDRATE = """
SELECT p.id, f.vid, p.channel_id, c.username, c.title, p.message_id, p.date, cur.text AS text,
       hit.text AS hit_text, p.edited, p.deleted_at, p.views, p.fwd_from_title, p.fwd_from_id,
       p.media_kind
FROM unnest(CAST(? AS bigint[]), CAST(? AS bigint[])) AS f(pid, vid)
JOIN posts p ON p.id = f.pid
JOIN channels c ON c.id = p.channel_id
JOIN versions cur ON cur.id = p.current_version_id
JOIN versions hit ON hit.id = f.vid
"""


def hydrate_params(found: Sequence[tuple[int, int]]) -> tuple[list[int], list[int]]:
    return [pid for pid, _ in found], [vid for _, vid in found]


# ---------------------------------------------------------------------------- vocabulary


async def any_version_has(archive: Archive, words: frozenset[str] | set[str]) -> bool:
    """Whether some version holds one of ``words`` (FTS5's vocabulary lists only those)."""
    row = await archive.fetchone(
        "SELECT 1 FROM search_words WHERE word = ANY(CAST(? AS text[])) AND docs > 0 LIMIT 1",
        (sorted(words),),
    )
    return row is not None


async def words_named(archive: Archive, names: Sequence[str]) -> list[tuple[str, int]]:
    """Those of ``names`` that some version holds, with how many do (fts5vocab's ``doc``)."""
    rows = await archive.fetchall(
        "SELECT word, docs FROM search_words WHERE word = ANY(CAST(? AS text[])) AND docs > 0"
        " ORDER BY word",
        (list(names),),
    )
    return [(str(r[0]), int(r[1])) for r in rows]


async def words_between(archive: Archive, lo: str, hi: str, cap: int) -> list[tuple[str, int]]:
    """The vocabulary's words from ``lo`` up to ``hi`` (excluded), the first ``cap``, with
    their counts of versions, in code point order (as fts5vocab reads a range)."""
    rows = await archive.fetchall(
        "SELECT word, docs FROM search_words WHERE word >= ? AND word < ? AND docs > 0"
        " ORDER BY word LIMIT ?",
        (lo, hi, cap),
    )
    return [(str(r[0]), int(r[1])) for r in rows]
