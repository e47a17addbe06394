"""Search latency over a large archive, beside a ``LIKE '%word%'`` scan in the same run.

Run from the repository root (about two minutes on a 1,000,000-post archive, most of it the
LIKE scans)::

    .venv/bin/python bench/bench_search.py [--db bench/out/b1m/archive.db] [--seed 1]
        [--rounds 3] [--json bench/out/search_1m.json]

The archive is the one ``bench/bench_import.py`` builds (see docs/benchmarks.md, "Import").
It is opened through the real API, ``Archive.open(path, create=False)`` (which migrates an
older schema), and every query goes through ``archiver.query.parse`` and
``archiver.store.search.search(archive, query, limit=20)``: the MATCH, hydration of the 20
posts and their snippets, as ``telewatch search`` does.

The 100 queries come from the archive itself: 2,000 posts sampled at random give words and
their language (Russian, Ukrainian, English, told by the post's letters); the FTS5 vocabulary
(``fts5vocab``) gives each word's document frequency in the ``words`` column, which sorts it
into a band (``BANDS``): common (in 5 % of posts or more), mid (0.1 - 5 %), uncommon (0.01 -
0.1 %), rare (under 0.01 %). One word (40): each band, and base forms (a dictionary form
queried whose other forms occur: the results should show them). Two words, AND (30): a word
of each band with a common word of the same post, and common pairs drawn apart (they seldom
meet, so the AND reads both lists far). Other (30): phrases, ``prefix*``, ``OR``, ``-word``
and ``NOT``, and ``channel:`` / ``since:`` / ``until:`` on one or two words.

Timing: one untimed warm-up pass over every query (page cache, word-form caches), then
``--rounds`` timed passes in shuffled order; a query's time is its median over the rounds.
Each round also splits each query's time into MATCH (the first 20 posts from
``iter_matches``), hydration (``hydrate``, snippets included) and snippets alone. Baseline,
same run, same connection: each one- and two-word query as ``SELECT id, post_id FROM versions
WHERE text LIKE '%word%' [AND text LIKE '%word2%'] ORDER BY id DESC LIMIT 20`` (newest first,
like the search), timed once after a warm-up scan, with no hydration and no snippets (which
flatters the baseline). A few queries are also timed with ``sort="relevance"``. Times are
wall-clock (``time.perf_counter``): the latency a user waits for. Exit status 1 when the p95
goal (50 ms for one- and two-word queries) is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import sqlite3
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from archiver.query import parse  # noqa: E402
from archiver.snippets import snippet  # noqa: E402
from archiver.store import Archive  # noqa: E402
from archiver.store.search import hydrate, iter_matches, plan, search  # noqa: E402
from archiver.text import forms as forms_of  # noqa: E402
from archiver.text import normalize, words  # noqa: E402

LIMIT = 20
GOAL_MS = 50.0
GOAL_RATIO = 100.0
# Frequency bands: share of posts holding the word (in the ``words`` column).
BANDS = {
    "common": (0.05, 1.1),  # the channel's everyday vocabulary
    "mid": (0.001, 0.05),  # place names, less frequent words
    "uncommon": (0.0001, 0.001),  # 100 - 1,000 posts in a million: frequent names
    "rare": (0.0, 0.0001),  # under 100 posts in a million: most names
}
_LETTERS = re.compile(r"^[^\W\d_]{4,}$")
_LATIN = re.compile(r"[a-z]")


@dataclass
class Q:
    text: str
    cls: str  # one-word | two-word | other
    kind: str  # finer: common, mid, rare, base form, phrase, prefix, ...
    lang: str
    like: tuple[str, ...] = ()  # words for the LIKE baseline (one- and two-word only)
    forms: frozenset[str] = frozenset()  # base form: other forms expected in the results
    times: list[float] = field(default_factory=list)
    parts: list[tuple[float, float, float]] = field(default_factory=list)  # see stages()
    hits: int = 0
    like_ms: float | None = None
    like_hits: int = 0
    forms_found: int = 0
    df: list[int] = field(default_factory=list)  # posts holding each LIKE word

    @property
    def ms(self) -> float:
        return statistics.median(self.times) * 1000

    def part_ms(self, i: int) -> float:
        return statistics.median(p[i] for p in self.parts) * 1000


# ---------------------------------------------------------------------------- vocabulary


_UK_ONLY = frozenset("іїєґ")
_RU_ONLY = frozenset("ыэъ")


def language(norm: str) -> str | None:
    """ "uk" or "ru" when normalised text has letters only that language uses, else None."""
    has_uk = any(c in norm for c in _UK_ONLY)
    has_ru = any(c in norm for c in _RU_ONLY)
    if has_uk != has_ru:
        return "uk" if has_uk else "ru"
    return None


def post_lang(norm: str) -> str:
    lang = language(norm)
    if lang is not None:
        return lang
    letters = [c for c in norm if c.isalpha()]
    latin = sum(1 for c in letters if "a" <= c <= "z")
    return "en" if letters and latin > len(letters) / 2 else "ru"


def word_lang(word: str, lang: str) -> bool:
    """A word that belongs to a post of ``lang`` (no English words in Cyrillic posts...)."""
    return bool(_LATIN.search(word)) == (lang == "en")


@dataclass
class Vocab:
    total: int
    df: dict[str, int]  # document frequency in the ``words`` column
    lang: dict[str, str]
    posts: list[tuple[str, list[str]]]  # (lang, normalised words) of each sampled post

    def pick(
        self, rng: random.Random, lang: str, kind: str, n: int, avoid: set[str] | None = None
    ) -> list[str]:
        """``n`` distinct words of ``lang`` in a frequency band, none in ``avoid``; words of
        other languages when the language has too few (English posts carry no names)."""
        band = sorted(
            w for w in self.df if self.kind(w) == kind and (avoid is None or w not in avoid)
        )
        pool = [w for w in band if self.lang[w] == lang]
        out = rng.sample(pool, min(n, len(pool)))
        rest = [w for w in band if self.lang[w] != lang]
        out += rng.sample(rest, min(n - len(out), len(rest)))
        if avoid is not None:
            avoid.update(out)
        return out

    def kind(self, w: str) -> str:
        share = self.df[w] / self.total
        return next(k for k, (lo, hi) in BANDS.items() if lo <= share < hi)


async def vocabulary(archive: Archive, rng: random.Random, sample: int) -> Vocab:
    db = archive.db
    row = await archive.fetchone("SELECT max(id), count(*) FROM posts WHERE is_service = 0")
    assert row is not None
    max_id, total = int(row[0]), int(row[1])
    ids = rng.sample(range(1, max_id + 1), sample)
    texts = await archive.fetchall(
        "SELECT v.text FROM posts p JOIN versions v ON v.id = p.current_version_id"
        f" WHERE p.is_service = 0 AND p.id IN ({','.join('?' * len(ids))})",
        ids,
    )
    posts: list[tuple[str, list[str]]] = []
    langs: dict[str, str] = {}
    for r in texts:
        norm = normalize(r[0])
        lang = post_lang(norm)
        ws = words(norm)
        if not ws:
            continue
        posts.append((lang, ws))
        for w in ws:
            if _LETTERS.match(w) and word_lang(w, lang):
                langs.setdefault(w, lang)
    await db.execute(
        "CREATE VIRTUAL TABLE IF NOT EXISTS temp.bench_vocab"
        " USING fts5vocab(main, versions_fts, 'col')"
    )
    df: dict[str, int] = {}
    for w in sorted(langs):
        found = await archive.fetchone(
            "SELECT doc FROM temp.bench_vocab WHERE term = ? AND col = 'words'", (w,)
        )
        if found is not None:
            df[w] = int(found[0])
    return Vocab(total, df, {w: langs[w] for w in df}, posts)


# ---------------------------------------------------------------------------- queries

LANGS3 = ("ru", "uk", "en")


def spread(n: int) -> list[str]:
    """``n`` languages in the archive's proportions (ru, uk, en), ru first."""
    base = {"ru": n * 4 // 10, "uk": n * 3 // 10}
    base["en"] = n - base["ru"] - base["uk"]
    return [lang for lang in LANGS3 for _ in range(base[lang])]


def _lemmas(word: str) -> set[str]:
    """Dictionary forms of a word (pymorphy3 ru+uk; the Snowball stem in English), only to
    group the archive's words into base-form queries."""
    from archiver import text

    a = text._get()
    if not re.search("[\u0400-\u04ff]", word):
        return {a.en.stemWord(word)}
    w = word.replace(text.APOSTROPHE, "'")
    return {p.normal_form for an in (a.ru, a.uk) if an.word_is_known(w) for p in an.parse(w)}


def build_queries(v: Vocab, rng: random.Random, channel_id: int, days: list[str]) -> list[Q]:
    qs: list[Q] = []
    used: set[str] = set()

    def one(lang: str, kind: str) -> str:
        return v.pick(rng, lang, kind, 1, used)[0]

    # One word: 10 common, 8 mid, 6 uncommon, 8 rare, 8 base forms.
    for kind, n in (("common", 10), ("mid", 8), ("uncommon", 6), ("rare", 8)):
        for lang in spread(n):
            w = one(lang, kind)
            qs.append(Q(w, "one-word", kind, v.lang[w], like=(w,)))

    # Base forms: a dictionary form queried, other forms of it expected in the results.
    groups: dict[tuple[str, str], set[str]] = defaultdict(set)
    for w, lang in v.lang.items():
        if v.kind(w) in ("common", "mid"):
            for lemma in _lemmas(w):
                groups[(lang, lemma)].add(w)
    for lang in LANGS3:
        n = spread(8).count(lang)
        cands = sorted((k, sorted(ws)) for k, ws in groups.items() if k[0] == lang and len(ws) > 1)
        rng.shuffle(cands)
        for (_, lemma), ws in cands:
            if n == 0:
                break
            # The dictionary form when it occurs (Russian, Ukrainian); else the shortest form
            # (English: Snowball stems are not words).
            base = lemma if lemma in ws else min(ws, key=lambda w: (len(w), w))
            if base in used:
                continue
            used.add(base)
            forms = frozenset(ws) - {base}
            qs.append(Q(base, "one-word", "base form", lang, like=(base,), forms=forms))
            n -= 1

    # Two words: from one post (they meet), and common pairs drawn apart (which rarely do:
    # the AND reads both lists to the end).
    def post_pair(kinds: tuple[str, str], lang: str) -> tuple[str, str] | None:
        posts = [p for p in v.posts if p[0] == lang]
        for _ in range(3000):
            _, ws = rng.choice(posts)
            a = [w for w in ws if w in v.df and v.kind(w) == kinds[0]]
            b = [w for w in ws if w in v.df and v.kind(w) == kinds[1]]
            if a and b:
                x, y = rng.choice(a), rng.choice(b)
                if x != y and x not in forms_of(y) and y not in forms_of(x):
                    return x, y
        return None

    for k1, k2 in (
        ("common", "common"),
        ("mid", "common"),
        ("uncommon", "common"),
        ("rare", "common"),
    ):
        for lang in spread(6):
            for plang in (lang, *LANGS3):  # English posts have no names: another language
                pair = post_pair((k1, k2), plang)
                if pair is not None:
                    qs.append(Q(" ".join(pair), "two-word", f"{k1} + {k2}", plang, like=pair))
                    break
    for lang in spread(6):
        x, y = v.pick(rng, lang, "common", 2)
        qs.append(Q(f"{x} {y}", "two-word", "common + common, apart", lang, like=(x, y)))

    # Other: phrases, prefixes, OR, NOT, filters.
    for lang in spread(6):
        for _ in range(1000):
            plang, pws = rng.choice(v.posts)
            if plang != lang or len(pws) < 4:
                continue
            i = rng.randrange(len(pws) - 2)
            ph = pws[i : i + rng.choice((2, 3))]
            if all(w.isalpha() for w in ph):
                qs.append(Q('"' + " ".join(ph) + '"', "other", "phrase", lang))
                break
    prefixes = [("common", 4), ("common", 5), ("mid", 4), ("uncommon", 5), ("rare", 6)]
    for lang, (kind, n) in zip(spread(5), prefixes, strict=True):
        w = one(lang, kind)
        qs.append(Q(w[: min(n, len(w) - 1)] + "*", "other", f"prefix ({kind} word)", lang))
    ors = [("common", "rare"), ("mid", "mid"), ("rare", "rare"), ("common", "uncommon")]
    for lang, (k1, k2) in zip(spread(4), ors, strict=True):
        qs.append(Q(f"{one(lang, k1)} OR {one(lang, k2)}", "other", f"OR ({k1}, {k2})", lang))
    nots = [("common", "common", "-"), ("common", "mid", "-"), ("mid", "common", "NOT ")]
    nots += [("rare", "common", "-"), ("uncommon", "rare", "-")]
    for lang, (k1, k2, op) in zip(spread(5), nots, strict=True):
        q = f"{one(lang, k1)} {op}{one(lang, k2)}"
        qs.append(Q(q, "other", f"NOT: {k1} {op}{k2}", lang))
    ch = f"channel:{channel_id}"
    filt: list[tuple[str, str]] = [
        ("common", f"{ch}"),
        ("rare", f"{ch}"),
        ("common", f"since:{days[2]}"),
        ("mid", f"since:{days[1]}"),
        ("uncommon", f"since:{days[0]}"),
        ("mid", f"until:{days[0]}"),
        ("common", f"{ch} since:{days[1]}"),
        ("uncommon common", f"since:{days[2]}"),
        ("rare common", f"{ch}"),
        ("common common", f"since:{days[0]}"),
    ]
    for lang, (kinds, f) in zip(spread(10), filt, strict=True):
        fws = [one(lang, k) for k in kinds.split()]
        label = "filter: " + " + ".join(kinds.split() + [x.split(":")[0] + ":" for x in f.split()])
        qs.append(Q(" ".join(fws) + " " + f, "other", label, lang))
    return qs


# ---------------------------------------------------------------------------- timing


def pct(xs: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


async def run_search(archive: Archive, q: Q, sort: str = "newest") -> tuple[float, int, Any]:
    t0 = time.perf_counter()
    hits = await search(archive, parse(q.text), limit=LIMIT, sort=sort)
    return time.perf_counter() - t0, len(hits), hits


async def run_like(archive: Archive, ws: tuple[str, ...]) -> tuple[float, int]:
    sql = "SELECT id, post_id FROM versions WHERE " + " AND ".join(["text LIKE ?"] * len(ws))
    sql += f" ORDER BY id DESC LIMIT {LIMIT}"
    t0 = time.perf_counter()
    rows = await archive.fetchall(sql, tuple(f"%{w}%" for w in ws))
    return time.perf_counter() - t0, len(rows)


async def stages(archive: Archive, q: Q) -> tuple[float, float, float]:
    """MATCH (first 20 posts), hydration (with snippets), snippets alone; seconds."""
    query = parse(q.text)
    t0 = time.perf_counter()
    found: list[tuple[int, int]] = []
    async for pair in iter_matches(archive, query):
        found.append(pair)
        if len(found) >= LIMIT:
            break
    t1 = time.perf_counter()
    hits = await hydrate(archive, query, found)
    t2 = time.perf_counter()
    for h in hits:
        snippet(h.text, query)
    t3 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2


# ---------------------------------------------------------------------------- report


def fmt(ms: float) -> str:
    return f"{ms:,.0f}" if ms >= 100 else f"{ms:.1f}" if ms >= 1 else f"{ms:.2f}"


def group(kind: str) -> str:
    """Kinds of "other" queries grouped for the table (each query's own kind is in --json)."""
    for head, name in (("prefix", "prefix*"), ("OR", "OR"), ("NOT", "-word, NOT word")):
        if kind.startswith(head):
            return name
    return "filters (channel:, since:, until:)" if kind.startswith("filter") else kind


def report(
    qs: list[Q], rel: list[tuple[Q, float, int]], st: list[tuple[Q, str]], full_scan: float
) -> tuple[list[str], bool]:
    """Markdown tables, and whether the goal is met for one- and two-word queries."""
    classes = ("one-word", "two-word", "other")
    out = [
        "| class | queries | p50 ms | p95 ms | max ms | MATCH p50 | MATCH p95"
        " | hydration p50 | of which snippets p50 | goal: p95 < 50 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    ok = True
    for cls in classes:
        cq = [q for q in qs if q.cls == cls]
        ms = [q.ms for q in cq]
        m, h, sn = ([q.part_ms(i) for q in cq] for i in range(3))
        goal = ""
        if cls != "other":
            met = pct(ms, 95) < GOAL_MS
            ok = ok and met
            goal = "met" if met else "**missed**"
        out.append(
            f"| {cls} | {len(cq)} | {fmt(pct(ms, 50))} | {fmt(pct(ms, 95))} | {fmt(max(ms))}"
            f" | {fmt(pct(m, 50))} | {fmt(pct(m, 95))} | {fmt(pct(h, 50))} | {fmt(pct(sn, 50))}"
            f" | {goal} |"
        )
    out += [
        "",
        "| class | LIKE p50 ms | p95 ms | max ms | total LIKE / total search | at p50 | at p95"
        " | per query: median | min | queries where LIKE is faster | goal: > 100× |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for cls in classes[:2]:
        cq = [q for q in qs if q.cls == cls and q.like_ms is not None]
        ms = [q.ms for q in cq]
        lms = [q.like_ms for q in cq if q.like_ms is not None]
        ratios = [a / b for a, b in zip(lms, ms, strict=True)]
        r50, r95 = pct(lms, 50) / pct(ms, 50), pct(lms, 95) / pct(ms, 95)
        verdict = ", ".join(
            f"{name} {'met' if r > GOAL_RATIO else '**missed**'}"
            for name, r in (("total", sum(lms) / sum(ms)), ("p50", r50), ("p95", r95))
        )
        out.append(
            f"| {cls} | {fmt(pct(lms, 50))} | {fmt(pct(lms, 95))} | {fmt(max(lms))}"
            f" | {sum(lms) / sum(ms):,.0f}× | {r50:,.1f}× | {r95:,.0f}×"
            f" | {statistics.median(ratios):,.1f}× | {min(ratios):.2f}×"
            f" | {sum(1 for r in ratios if r < 1)} of {len(ratios)} | {verdict} |"
        )
    out += [
        "",
        "| class | kind | n | p50 ms | max ms | MATCH p50 | LIKE p50 ms | LIKE max ms"
        " | results (search / LIKE), median | example |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    kinds: dict[tuple[str, str], list[Q]] = defaultdict(list)
    for q in qs:
        kinds[(q.cls, group(q.kind))].append(q)
    for (cls, kind), kq in kinds.items():
        ms = [q.ms for q in kq]
        lms = [q.like_ms for q in kq if q.like_ms is not None]
        like = f"{fmt(pct(lms, 50))} | {fmt(max(lms))}" if lms else " | "
        found = f"{statistics.median(q.hits for q in kq):.0f}"
        if lms:
            found += f" / {statistics.median(q.like_hits for q in kq):.0f}"
        out.append(
            f"| {cls} | {kind} | {len(kq)} | {fmt(pct(ms, 50))} | {fmt(max(ms))}"
            f" | {fmt(pct([q.part_ms(0) for q in kq], 50))} | {like} | {found}"
            f" | {', '.join(f'`{q.text}`' for q in kq[: 2 if len(kq) > 4 else 1])} |"
        )
    bq = [q for q in qs if q.forms]
    fewer = [q for q in qs if q.like_ms is not None and q.like_hits < q.hits]
    out += [
        "",
        f"Word forms: {sum(1 for q in bq if q.forms_found)} of {len(bq)} base-form queries show"
        f" other forms of the word among their first 20 results ({sum(q.forms_found for q in bq)}"
        f" such results). LIKE found fewer posts than search for {len(fewer)} of"
        f" {sum(1 for q in qs if q.like_ms is not None)} queries (no word forms; SQLite folds"
        f" case for ASCII only, so a capitalised Cyrillic word is missed). A full scan of"
        f" `versions` (a LIKE that matches nothing) took {full_scan:.2f} s.",
        "",
        "| `--sort relevance` | kind | posts holding the words | newest first ms | relevance ms |",
        "|---|---|---|---:|---:|",
    ]
    for q, ms_, _ in rel:
        dfs = ", ".join(f"{d:,}" for d in q.df)
        out.append(f"| `{q.text}` | {q.kind} | {dfs} | {fmt(q.ms)} | {fmt(ms_)} |")
    out += ["", "Slowest five, newest first (ms; MATCH / hydration / snippets; plan):", ""]
    for q, eqp in st:
        out.append(
            f"- `{q.text}` ({q.cls}, {q.kind}): {fmt(q.ms)}; {fmt(q.part_ms(0))} /"
            f" {fmt(q.part_ms(1))} / {fmt(q.part_ms(2))}; `{eqp}`"
        )
    return out, ok


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", type=Path, default=ROOT / "bench/out/b1m/archive.db")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sample", type=int, default=2000, help="posts sampled for vocabulary")
    ap.add_argument("--json", type=Path, help="write every query's figures here")
    args = ap.parse_args()
    started = time.perf_counter()
    load0 = os.getloadavg()[0]
    rng = random.Random(args.seed)

    archive = await Archive.open(args.db, create=False)
    try:
        row = await archive.fetchone("SELECT id FROM channels ORDER BY id LIMIT 1")
        assert row is not None
        channel_id = int(row[0])
        n_posts = (await archive.fetchone("SELECT count(*) FROM posts"))[0]  # type: ignore[index]
        days = []
        for share in (0.5, 0.9, 0.99):
            r = await archive.fetchone(
                "SELECT substr(date, 1, 10) FROM posts ORDER BY date LIMIT 1 OFFSET ?",
                (int(n_posts * share),),
            )
            assert r is not None
            days.append(str(r[0]))
        t = time.perf_counter()
        vocab = await vocabulary(archive, rng, args.sample)
        print(
            f"# vocabulary: {len(vocab.df):,} words from {len(vocab.posts):,} sampled posts"
            f" in {time.perf_counter() - t:.1f} s",
            file=sys.stderr,
        )
        qs = build_queries(vocab, rng, channel_id, days)
        for q in qs:
            q.df = [vocab.df.get(w, 0) for w in q.like]
        print(f"# {len(qs)} queries; warm-up pass", file=sys.stderr)

        for q in qs:  # warm-up: page cache, word-form and snippet caches
            _, q.hits, hits = await run_search(archive, q)
            if q.forms:
                q.forms_found = sum(
                    1 for h in hits if any(normalize(h.snippet[a:b]) in q.forms for a, b in h.spans)
                )
        for r_i in range(args.rounds):
            order = qs[:]
            rng.shuffle(order)
            for q in order:
                dt, _, _ = await run_search(archive, q)
                q.times.append(dt)
                q.parts.append(await stages(archive, q))
            print(f"# round {r_i + 1}/{args.rounds} done", file=sys.stderr)

        # Baseline: warm the versions table with one full scan, then each LIKE once.
        t = time.perf_counter()
        await archive.fetchone("SELECT count(*) FROM versions WHERE text LIKE '%\x01%'")
        full_scan = time.perf_counter() - t
        print(f"# full scan of versions (warm-up): {full_scan:.1f} s", file=sys.stderr)
        for q in qs:
            if q.like:
                dt, q.like_hits = await run_like(archive, q.like)
                q.like_ms = dt * 1000
        full_t = time.perf_counter()
        await archive.fetchone("SELECT count(*) FROM versions WHERE text LIKE '%\x01%'")
        full_scan = time.perf_counter() - full_t

        # Relevance: a few queries sorted by bm25.
        rel: list[tuple[Q, float, int]] = []
        rel_kinds = ["common", "mid", "uncommon", "rare", "base form", "common + common"]
        rel_kinds += ["rare + common", "common + common, apart"]
        picks = [next(q for q in qs if q.kind == k) for k in rel_kinds]
        for q in picks:
            await run_search(archive, q, "relevance")
            dt, n, _ = await run_search(archive, q, "relevance")
            rel.append((q, dt * 1000, n))

        # The slowest queries' plans.
        st: list[tuple[Q, str]] = []
        for q in sorted(qs, key=lambda q: -q.ms)[:5]:
            p = await plan(archive, parse(q.text))
            eqp = await archive.fetchall("EXPLAIN QUERY PLAN " + p.sql, p.params)
            st.append((q, " / ".join(str(r["detail"]) for r in eqp)))
    finally:
        await archive.close()

    size = args.db.stat().st_size
    head = (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} CPUs,"
        f" Python {platform.python_version()}, SQLite {sqlite3.sqlite_version};"
        f" archive {args.db} ({n_posts:,} posts, {size / 1e9:.2f} GB); load average"
        f" {load0:.1f} at start, {os.getloadavg()[0]:.1f} at end; {args.rounds} timed rounds"
        f" after a warm-up pass; seed {args.seed}; {time.perf_counter() - started:.0f} s in all."
    )
    lines, ok = report(qs, rel, st, full_scan)
    print(head + "\n\n" + "\n".join(lines))
    if args.json:
        args.json.write_text(
            json.dumps(
                [
                    {
                        "query": q.text,
                        "class": q.cls,
                        "kind": q.kind,
                        "lang": q.lang,
                        "ms": q.ms,
                        "times_ms": [t * 1000 for t in q.times],
                        "match_ms": q.part_ms(0),
                        "hydrate_ms": q.part_ms(1),
                        "snippets_ms": q.part_ms(2),
                        "hits": q.hits,
                        "like_ms": q.like_ms,
                        "like_hits": q.like_hits,
                        "forms_found": q.forms_found,
                        "df": q.df,
                    }
                    for q in qs
                ],
                ensure_ascii=False,
                indent=1,
            )
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
