"""Text normalisation and word forms for Russian, Ukrainian and English.

The same functions feed the full-text index and every query, so search and rules agree:

- :func:`normalize` folds case, ``ё``→``е``, every Ukrainian apostrophe to ``ʼ`` (U+02BC, a
  letter for SQLite's unicode61 tokenizer, so ``мʼясо`` stays one word), applies NFC and drops
  zero-width characters, soft hyphens and stress marks.
- :func:`words` splits normalised text into words exactly as the FTS5 ``unicode61`` tokenizer
  will split the space-joined result.
- :func:`forms` gives every form a bare query word finds: pymorphy3 with its Russian and
  Ukrainian dictionaries generates them for Cyrillic words, the Snowball English stemmer
  checks them for Latin ones. Only queries and rules are expanded: a post is indexed as its
  words alone, so ingest never runs the analysers. Results are cached; the analysers load on
  first use, never at import time.

The choice of analysers and their measured recall and speed: ``docs/word-forms.md``.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass
from typing import Any

APOSTROPHE = "\u02bc"  # ʼ MODIFIER LETTER APOSTROPHE: the one apostrophe we keep
_APOSTROPHES = "'\u2019\u02bc`\u2018\u00b4\u02b9\u2032"
_DROP = "\u200b\u200c\u200d\u2060\ufeff\u00ad\u0301\u0300"  # zero-width, soft hyphen, stress

_TRANSLATE: dict[int, str | None] = {ord(c): APOSTROPHE for c in _APOSTROPHES}
_TRANSLATE.update({ord(c): None for c in _DROP})
_TRANSLATE[ord("ё")] = "е"
_TRANSLATE[ord("Ё")] = "е"
# Letters NFC builds from е/и + a grave stress mark: fold them back to the plain letter.
_TRANSLATE.update({0x0400: "е", 0x0450: "е", 0x040D: "и", 0x045D: "и"})

# A word: letters/digits (no underscore, which unicode61 splits on), joined by single apostrophes.
# U+02BC counts as a letter to \w, so it is excluded explicitly: a quote mark is not a word.
_WORD = re.compile(rf"[^\W_{APOSTROPHE}]+(?:{APOSTROPHE}[^\W_{APOSTROPHE}]+)*")
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
_LATIN = re.compile(r"[a-z]")


_NEEDS_TRANSLATE = re.compile("[" + re.escape("".join(map(chr, _TRANSLATE))) + "]")
_REPLACE = {chr(k): v or "" for k, v in _TRANSLATE.items()}


def normalize(text: str) -> str:
    """Fold text for matching: see the module docstring."""
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    # str.translate() with a dict looks up every character (measured 46 us for a 700-letter
    # post); a replace() per character actually present is 10 times faster. No replacement
    # yields a character of the table, so the order of the replaces does not matter.
    for ch in set(_NEEDS_TRANSLATE.findall(text)):
        text = text.replace(ch, _REPLACE[ch])
    return text.lower()


def words(text: str) -> list[str]:
    """The normalised words of ``text``, in order."""
    return _WORD.findall(normalize(text))


def split_normalized(norm: str) -> list[str]:
    """The words of text that is already normalised."""
    return _WORD.findall(norm)


class _Analysers:
    """pymorphy3 (ru, uk) and the Snowball English stemmer, loaded once on first use."""

    def __init__(self) -> None:
        import pymorphy3
        import Stemmer

        self.ru: Any = pymorphy3.MorphAnalyzer(lang="ru")
        self.uk: Any = pymorphy3.MorphAnalyzer(lang="uk")
        self.en: Any = Stemmer.Stemmer("english")


_lock = threading.Lock()
_analysers: _Analysers | None = None


def _get() -> _Analysers:
    global _analysers
    if _analysers is None:
        with _lock:
            if _analysers is None:
                _analysers = _Analysers()
    return _analysers


def _clean(form: str) -> list[str]:
    return _WORD.findall(normalize(form))


_CACHE_MAX = 5_000  # query and rule words only (posts are never analysed): about 20 MB
_cache: dict[str, frozenset[str]] = {}


def forms(word: str) -> frozenset[str]:
    """Every normalised word a bare query word finds: itself and its other forms (cached).

    Word forms are expanded on the query side, so posts are indexed as their words alone:
    - Cyrillic: every form of every lexeme pymorphy3 finds for the word in its Russian and
      Ukrainian dictionaries (``рынок`` -> ``рынка``, ``рынку``...; ``обстріл`` ->
      ``обстріли``...). A word neither dictionary knows gets the lexemes of every guess of
      both predictors (surnames: ``стремоусов`` -> ``стремоусова``, ``стремоусову``...); a
      word one dictionary knows also gets the other predictor's guesses that have it as
      their dictionary form, and a word shaped like a Russian surname (-ов, -ев, -ин, -ын)
      that the Russian dictionary does not know gets the surname's cases (``умеров`` ->
      ``умеровым``, ``умеровой``; ``пригожина`` -> ``пригожиным``).
    - Latin: the words built from the Snowball English stem with common English endings that
      stem back to it (``shell`` -> ``shells``, ``shelled``, ``shelling``), and the
      ``-ise``/``-ize`` spellings of each.
    - Anything else (numbers, other scripts): the word itself.
    """
    found = _cache.get(word)
    if found is None:
        if len(_cache) >= _CACHE_MAX:  # bounded memory whatever the queries
            _cache.clear()
        found = _cache[word] = frozenset((word, *_forms_of(word)))
    return found


def _forms_of(word: str) -> set[str]:
    if _CYRILLIC.search(word):
        return _cyrillic_forms(word)
    plain = word.replace(APOSTROPHE, "'")
    if _LATIN.search(word) and plain.isascii():
        return _english_forms(plain)
    return set()


def _cyrillic_forms(word: str) -> set[str]:
    a = _get()
    w = word.replace(APOSTROPHE, "'")
    known = [an for an in (a.ru, a.uk) if an.word_is_known(w)]
    if not known:  # no dictionary knows it: every guess of both predictors
        parses = [*a.ru.parse(w), *a.uk.parse(w)]
    else:
        parses = [p for an in known for p in an.parse(w)]
        # A name one dictionary knows is often only guessed by the other (Пригожин is a
        # Ukrainian surname to pymorphy3, unknown in Russian): add that predictor's
        # guesses in which the word is itself the dictionary form.
        for an in (a.ru, a.uk):
            if an not in known:
                parses += [p for p in an.parse(w) if p.normal_form == w]
    out: set[str] = set() if a.ru in known else _ru_surname_forms(word)
    for p in parses:
        for f in p.lexeme:
            ws = _clean(f.word)
            if len(ws) == 1:
                out.add(ws[0])
    return out


# A Russian surname in -ов/-ев/-ин/-ын and its case endings (masculine, feminine, plural).
_RU_SURNAME = re.compile(r"(.{2,}(?:ов|ев|ин|ын))(а|у|ым|е|ой|ою|ы|ых|ыми)?")
_RU_SURNAME_ENDINGS = ("", "а", "у", "ым", "е", "ой", "ою", "ы", "ых", "ыми")


def _ru_surname_forms(word: str) -> set[str]:
    """Every case of a word shaped like a Russian surname that the Russian dictionary does
    not know (Умеров, Малофеева, Пригожину): the predictors often read such a word as a
    common noun, whose forms miss the surname's (-ым, -ой). A query-side guess, as the
    index-side predictor was before schema 3; no post holds the forms that do not exist."""
    m = _RU_SURNAME.fullmatch(word)
    if m is None:
        return set()
    return {m.group(1) + e for e in _RU_SURNAME_ENDINGS}


# Endings English words take on a Snowball stem; a candidate counts only if it stems back.
_EN_ENDINGS = (
    "", "e", "s", "es", "ed", "d", "ing", "er", "ers", "est", "ly", "ion", "ions", "ation",
    "ations", "ate", "ates", "ated", "ating", "ment", "ments", "ness", "al", "ally", "ity",
    "ities", "ise", "ised", "ises", "ising", "ize", "ized", "izes", "izing", "isation",
    "isations", "ization", "izations", "or", "ors", "ies", "ied", "y", "'s", "s'",
)  # fmt: skip


def _english_forms(plain: str) -> set[str]:
    stem_word = _get().en.stemWord
    stem = stem_word(plain)
    bases = {plain, stem}
    if stem.endswith("i"):  # happi -> happy, happier; fli -> flies
        bases.add(stem[:-1])
    out: set[str] = set()
    for base in bases:
        for cand in _en_candidates(base):
            if stem_word(cand) == stem:
                out.update(_clean(cand))
    spelled = {w.replace("iz", "is") for w in out} | {w.replace("is", "iz") for w in out}
    for cand in spelled - out:  # mobilisation / mobilization: the other spelling's forms
        if stem_word(cand) != stem:
            out.update(_clean(cand))
    return out


def _en_candidates(base: str) -> list[str]:
    out = [base + e for e in _EN_ENDINGS]
    if len(base) >= 2 and base[-1] not in "aeiouwxy" and base[-2] in "aeiou":
        out += [base + base[-1] + e for e in ("ing", "ed", "er", "ers", "est")]  # run: running
    return out


@dataclass(frozen=True, slots=True)
class Analysis:
    """A text as the index and the matcher see it: its normalised words, in order."""

    words: tuple[str, ...]

    @property
    def words_text(self) -> str:
        """The FTS ``words`` column."""
        return " ".join(self.words)

    @classmethod
    def from_words_text(cls, words_text: str) -> Analysis:
        return cls(tuple(words_text.split()))


EMPTY = Analysis(())


def analyze(text: str) -> Analysis:
    """Normalise and split a post's text."""
    ws = _WORD.findall(normalize(text))
    return Analysis(tuple(ws)) if ws else EMPTY


def words_text(text: str) -> str:
    """The FTS ``words`` column of a post's text (what a bulk import computes per post)."""
    return " ".join(_WORD.findall(normalize(text)))
