"""Word forms: recall, near-miss rejection and speed of the candidate lemmatisers and stemmers.

Run from the repository root::

    .venv/bin/python bench/wordforms.py [--wordlist bench/wordlist.tsv] [--tokens 200000]

A row of the word list is ``lang, query word, form, should_match``. A lemmatiser or stemmer
*matches* a row when the query word and the form share a key: the word itself or one of its
lemmas/stems (an index of lemmas would apply this test). The query-side candidate, what
``archiver.text`` does since schema 3, matches when the form is one of the forms
:func:`archiver.text.forms` generates for the query word (the index holds words alone; its
speed columns are the cost per *query* word, the index side costs the baseline). Every
candidate sees the same input: text normalised by :func:`archiver.text.normalize` and split by
:func:`archiver.text.words`, so only the word-form step differs.

- recall: share of the ``should_match=1`` rows that match;
- near-miss rejection: share of the ``should_match=0`` rows that do NOT match (the precision
  that matters here: a near-miss is a different word sharing a stem);
- speed, words/s: *uncached* = every distinct word analysed once with caches off; *cached* =
  a Zipf-distributed token stream through an LRU cache (cold at the start), as a real archive
  sees text. Both beside the baseline ``normalize`` + exact word, measured in the same run.

There is no Ukrainian Snowball stemmer (neither PyStemmer nor snowballstemmer ships one), so the
Snowball candidates stem every Cyrillic word with the Russian algorithm.
"""

from __future__ import annotations

import argparse
import random
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from archiver import text

Keys = Callable[[str], frozenset[str]]

_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
_POSSESSIVE = re.compile(r"'s?$")


@dataclass(frozen=True)
class Row:
    lang: str
    query: str
    form: str
    should_match: bool


def decode(field: str) -> str:
    """Undo the ``\\uXXXX`` escapes the word list uses for invisible characters."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), field)


def read_wordlist(path: Path) -> list[Row]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 4 or parts[3] not in ("0", "1"):
            raise SystemExit(f"{path}:{n}: expected lang<TAB>query<TAB>form<TAB>0|1")
        rows.append(Row(parts[0], decode(parts[1]), decode(parts[2]), parts[3] == "1"))
    return rows


# ---------------------------------------------------------------------------- candidates


def _plain(word: str) -> str:
    """A normalised word with the ASCII apostrophe the dictionaries use."""
    return word.replace(text.APOSTROPHE, "'")


def _fold(lemma: str) -> str:
    return text.normalize(lemma)


def exact() -> Keys:
    """Baseline: the normalised word only (what FTS5 unicode61 gives, plus ё and apostrophes)."""
    return lambda w: frozenset((w,))


def query_forms() -> Keys:
    """archiver.text.forms without its cache: the forms a query word is searched as."""
    raw = text._forms_of
    return lambda w: frozenset((w, *raw(w)))


def _pymorphy3_keys(top_only: bool) -> Keys:
    import pymorphy3
    import Stemmer

    ru, uk = pymorphy3.MorphAnalyzer(lang="ru"), pymorphy3.MorphAnalyzer(lang="uk")
    en = Stemmer.Stemmer("english", 0)

    def keys(w: str) -> frozenset[str]:
        p = _plain(w)
        if not _CYRILLIC.search(w):
            return frozenset((w, _fold(en.stemWord(p))))
        if top_only:
            known = [a for a in (ru, uk) if a.word_is_known(p)] or [ru, uk]
            return frozenset((w, *(_fold(a.parse(p)[0].normal_form) for a in known)))
        parses = [x for a in (ru, uk) if a.word_is_known(p) for x in a.parse(p)]
        parses = parses or [*ru.parse(p)[:1], *uk.parse(p)[:1]]
        return frozenset((w, *(_fold(x.normal_form) for x in parses)))

    return keys


def pymorphy3_lemmas() -> Keys:
    """The lemma index archiver.text used before schema 3 (pymorphy3 ru+uk, all parses, the
    top guess of both predictors for unknown words; Snowball English)."""
    return _pymorphy3_keys(top_only=False)


def pymorphy3_top_parse() -> Keys:
    """Variant: only the most probable parse per known language (fewer homographs, less recall)."""
    return _pymorphy3_keys(top_only=True)


def pymorphy3_simplemma_en() -> Keys:
    """Proposal: pymorphy3 for Cyrillic (as archiver.text), simplemma for English words it
    knows (irregular forms, no over-stemming), Snowball for the English words it does not;
    the possessive ('s) is stripped first."""
    import simplemma
    import Stemmer

    cyrillic = pymorphy3_lemmas()
    lem = simplemma.Lemmatizer(cache_max_size=0)
    en = Stemmer.Stemmer("english", 0)

    def keys(w: str) -> frozenset[str]:
        if _CYRILLIC.search(w):
            return cyrillic(w)
        p = _POSSESSIVE.sub("", _plain(w)) or _plain(w)
        if simplemma.is_known(p, "en"):
            return frozenset((w, _fold(lem.lemmatize(p, "en"))))
        return frozenset((w, _fold(en.stemWord(p))))

    return keys


def simplemma_ru_uk_en() -> Keys:
    import simplemma

    lem = simplemma.Lemmatizer(cache_max_size=0)

    def keys(w: str) -> frozenset[str]:
        p = _plain(w)
        if _CYRILLIC.search(w):
            return frozenset((w, _fold(lem.lemmatize(p, "ru")), _fold(lem.lemmatize(p, "uk"))))
        return frozenset((w, _fold(lem.lemmatize(p, "en"))))

    return keys


def _snowball(ru: Callable[[str], str], en: Callable[[str], str]) -> Keys:
    def keys(w: str) -> frozenset[str]:
        p = _plain(w)
        return frozenset((w, _fold(ru(p) if _CYRILLIC.search(w) else en(p))))

    return keys


def pystemmer() -> Keys:
    import Stemmer

    ru, en = Stemmer.Stemmer("russian", 0), Stemmer.Stemmer("english", 0)  # 0: no cache
    return _snowball(ru.stemWord, en.stemWord)


def snowballstemmer_pure() -> Keys:
    # snowballstemmer.stemmer() hands out PyStemmer when it is installed: take the pure classes.
    from snowballstemmer.english_stemmer import EnglishStemmer  # type: ignore[import-untyped]
    from snowballstemmer.russian_stemmer import RussianStemmer  # type: ignore[import-untyped]

    ru, en = RussianStemmer(), EnglishStemmer()
    return _snowball(ru.stemWord, en.stemWord)


CANDIDATES: dict[str, Callable[[], Keys]] = {
    "exact word (baseline)": exact,
    "query-side forms: pymorphy3 lexemes + English endings (archiver.text)": query_forms,
    "pymorphy3 ru+uk lemmas + Snowball en (before schema 3)": pymorphy3_lemmas,
    "pymorphy3, top parse only (variant)": pymorphy3_top_parse,
    "pymorphy3 ru+uk + simplemma en (proposal)": pymorphy3_simplemma_en,
    "simplemma ru+uk / en": simplemma_ru_uk_en,
    "Snowball ru / en (PyStemmer, C)": pystemmer,
    "Snowball ru / en (snowballstemmer, pure Python)": snowballstemmer_pure,
}


# ---------------------------------------------------------------------------- quality


QUERY_SIDE = {query_forms}


def row_matches(keys: Keys, row: Row, query_side: bool = False) -> bool:
    q = text.words(row.query)
    f = text.words(row.form)
    if len(q) != 1 or not f:
        raise SystemExit(f"bad row: {row}")
    qk = keys(q[0])
    if query_side:
        return any(w in qk for w in f)
    return any(not qk.isdisjoint(keys(w)) for w in f)


@dataclass
class Score:
    hits: int = 0
    total: int = 0

    def add(self, ok: bool) -> None:
        self.hits += ok
        self.total += 1

    def __str__(self) -> str:
        return f"{100 * self.hits / self.total:.1f}%" if self.total else "-"


def quality(
    keys: Keys, rows: list[Row], query_side: bool = False
) -> tuple[dict[str, Score], dict[str, Score], list[Row]]:
    recall: dict[str, Score] = {}
    reject: dict[str, Score] = {}
    wrong = []
    for row in rows:
        ok = row_matches(keys, row, query_side) == row.should_match
        table = recall if row.should_match else reject
        for key in (row.lang, "all"):
            table.setdefault(key, Score()).add(ok)
        if not ok:
            wrong.append(row)
    return recall, reject, wrong


# ---------------------------------------------------------------------------- speed


def speed_vocabulary(rows: list[Row]) -> list[str]:
    """Distinct normalised words: the word list, every dictionary form of its ru/uk query words
    (pymorphy3 lexemes) and the English words of the real samples when present."""
    import pymorphy3

    vocab: set[str] = set()
    for row in rows:
        vocab.update(text.words(row.query))
        vocab.update(text.words(row.form))
    analysers = {"ru": pymorphy3.MorphAnalyzer(lang="ru"), "uk": pymorphy3.MorphAnalyzer(lang="uk")}
    for row in rows:
        if row.lang in analysers:
            for parse in analysers[row.lang].parse(row.query)[:2]:
                vocab.update(w for f in parse.lexeme for w in text.words(f.word))
    samples = Path(__file__).resolve().parents[2] / "shared/samples"
    for name in (
        "tdesktop_ru_pachum_channel_result.json",
        "tdesktop_en_ar_salaf_channel_result.json",
    ):
        path = samples / name
        if path.exists():
            vocab.update(w for w in text.words(path.read_text(encoding="utf-8")) if w.isalpha())
    return sorted(vocab)


def token_stream(vocab: list[str], n: int) -> list[str]:
    """``n`` tokens drawn from ``vocab`` with Zipf (1/rank) weights, fixed seed."""
    rnd = random.Random(20240224)
    order = vocab[:]
    rnd.shuffle(order)
    weights = [1 / (i + 1) for i in range(len(order))]
    return rnd.choices(order, weights=weights, k=n)


def words_per_second(fn: Callable[[str], object], words: Iterable[str]) -> float:
    ws = list(words)
    start = time.perf_counter()
    for w in ws:
        fn(w)
    return len(ws) / (time.perf_counter() - start)


_PROBES = ("обстріли", "эвакуации", "shelling")


def load_seconds(name: str) -> float:
    """Import, build and first use of a candidate, in a fresh interpreter (lazy loaders)."""
    code = (
        "import time; t = time.perf_counter(); import wordforms as b; "
        f"k = b.CANDIDATES[{name!r}](); [k(w) for w in b._PROBES]; "
        "print(time.perf_counter() - t)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).parent,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip())


# ---------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wordlist", type=Path, default=Path(__file__).with_name("wordlist.tsv"))
    ap.add_argument("--tokens", type=int, default=200_000, help="length of the cached stream")
    ap.add_argument("--rounds", type=int, default=5, help="speed rounds (best one kept)")
    ap.add_argument("--show-misses", action="store_true", help="list the rows each one gets wrong")
    args = ap.parse_args(argv)

    rows = read_wordlist(args.wordlist)
    n_pos = sum(r.should_match for r in rows)
    print(f"word list: {len(rows)} rows ({n_pos} forms, {len(rows) - n_pos} near-misses)")
    vocab = speed_vocabulary(rows)
    stream = token_stream(vocab, args.tokens)
    print(
        f"speed: {len(vocab)} distinct words; cached stream {len(stream)} tokens, "
        f"{len(set(stream))} distinct\n"
    )

    built = {name: factory() for name, factory in CANDIDATES.items()}
    loads = {name: load_seconds(name) for name in CANDIDATES}
    scores = {
        name: quality(keys, rows, CANDIDATES[name] in QUERY_SIDE) for name, keys in built.items()
    }

    # Speed in interleaved rounds, best of each: a burst of load from other processes then
    # slows one round of every candidate instead of all the rounds of one of them.
    uncached = dict.fromkeys(built, 0.0)
    cached = dict.fromkeys(built, 0.0)
    for _ in range(args.rounds):
        for name, keys in built.items():
            uncached[name] = max(uncached[name], words_per_second(keys, vocab))
            cached_fn = lru_cache(maxsize=200_000)(keys)  # cold at the start of the stream
            cached[name] = max(cached[name], words_per_second(cached_fn, stream))

    print(
        "| candidate | recall ru | uk | en | all | near-miss rejection all "
        "| load s | uncached words/s | x baseline | cached words/s | x baseline |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    base = next(iter(built))  # the first candidate is the baseline
    for name in built:
        recall, reject, _ = scores[name]
        print(
            f"| {name} | {recall['ru']} | {recall['uk']} | {recall['en']} | {recall['all']} "
            f"| {reject['all']} ({reject['ru']} / {reject['uk']} / {reject['en']}) "
            f"| {loads[name]:.2f} | {uncached[name]:,.0f} | {uncached[name] / uncached[base]:.3f} "
            f"| {cached[name]:,.0f} | {cached[name] / cached[base]:.3f} |"
        )
    if args.show_misses:
        for name, (_, _, wrong) in scores.items():
            print(f"\n{name}: {len(wrong)} wrong")
            for r in wrong:
                kind = "missed" if r.should_match else "false match"
                print(f"  {r.lang} {r.query!r} ~ {r.form!r}: {kind}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
