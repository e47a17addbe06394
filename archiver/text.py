"""Text normalisation and word forms for Russian, Ukrainian and English.

The same two functions feed the full-text index and every query, so search and rules agree:

- :func:`normalize` folds case, ``ё``→``е``, every Ukrainian apostrophe to ``ʼ`` (U+02BC, a
  letter for SQLite's unicode61 tokenizer, so ``мʼясо`` stays one word), applies NFC and drops
  zero-width characters, soft hyphens and stress marks.
- :func:`words` splits normalised text into words exactly as the FTS5 ``unicode61`` tokenizer
  will split the space-joined result.
- :func:`lemmas` gives the dictionary forms of one normalised word: pymorphy3 with its Russian
  and Ukrainian dictionaries for Cyrillic words, the Snowball English stemmer for Latin ones.
  Results are cached; the analysers load on first use, never at import time.

The choice of analysers and their measured recall and speed: ``docs/word-forms.md``.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

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
_UK_ONLY = frozenset("іїєґ")
_RU_ONLY = frozenset("ыэъ")


_NEEDS_TRANSLATE = re.compile("[" + re.escape("".join(map(chr, _TRANSLATE))) + "]")


def normalize(text: str) -> str:
    """Fold text for matching: see the module docstring."""
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    if _NEEDS_TRANSLATE.search(text):  # rare: translate() is slow, the search is not
        text = text.translate(_TRANSLATE)
    return text.lower().replace("ё", "е")


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


def _clean_lemma(form: str) -> list[str]:
    return _WORD.findall(normalize(form))


def _forms(parses: Iterable[Any]) -> set[str]:
    out: set[str] = set()
    for p in parses:
        out.update(_clean_lemma(p.normal_form))
    return out


_CACHE_MAX = 100_000  # about 35 MB when full
_cache: dict[str, tuple[str, ...]] = {}


def lemmas(word: str, lang: str | None = None) -> tuple[str, ...]:
    """Dictionary forms of one normalised word (cached; see :func:`_lemmas`)."""
    key = word if lang is None else f"{word}\x00{lang}"
    found = _cache.get(key)
    if found is None:
        if len(_cache) >= _CACHE_MAX:  # bounded memory whatever the vocabulary
            _cache.clear()
        found = _cache[key] = _lemmas(word, lang)
    return found


def _lemmas(word: str, lang: str | None) -> tuple[str, ...]:
    """Dictionary forms of one normalised word (may be several for ambiguous forms).

    A word neither dictionary knows gets a predictor's best guess: the predictor of the
    post's language (``lang``, "ru" or "uk", told by the letters of the post) for a post's
    words; both for a query's words, so a query meets the guess whatever the post's language.
    A word in another script is its own lemma. The word itself is matched separately (the
    ``words`` column), so it need not be included here.
    """
    if _CYRILLIC.search(word):
        a = _get()
        w = word.replace(APOSTROPHE, "'")
        out: set[str] = set()
        ru_known = a.ru.word_is_known(w)
        uk_known = a.uk.word_is_known(w)
        if ru_known:
            out |= _forms(a.ru.parse(w))
        if uk_known:
            out |= _forms(a.uk.parse(w))
        if not out:  # no dictionary knows it: predictors are slow, so use as few as possible
            letters = set(word)
            if not letters.isdisjoint(_UK_ONLY):
                lang = "uk"
            elif not letters.isdisjoint(_RU_ONLY):
                lang = "ru"
            if lang in (None, "ru"):
                out |= _forms(a.ru.parse(w)[:1])
            if lang in (None, "uk"):
                out |= _forms(a.uk.parse(w)[:1])
        return tuple(sorted(out)) or (word,)
    plain = word.replace(APOSTROPHE, "'")
    if _LATIN.search(word) and plain.isascii():
        return tuple(_clean_lemma(_get().en.stemWord(plain))) or (word,)
    return (word,)


@dataclass(frozen=True, slots=True)
class Analysis:
    """A text as the index and the matcher see it."""

    words: tuple[str, ...]  # normalised words in order (phrases, prefixes)
    lemmas: frozenset[str]  # every dictionary form of every word (bare words)

    @property
    def words_text(self) -> str:
        """The FTS ``words`` column."""
        return " ".join(self.words)

    @property
    def lemmas_text(self) -> str:
        """The FTS ``lemmas`` column."""
        return " ".join(sorted(self.lemmas))


EMPTY = Analysis((), frozenset())


class IndexTexts(NamedTuple):
    """The two FTS columns of an analysis: all a bulk import needs, and five times cheaper
    than an :class:`Analysis` to pass between processes."""

    words_text: str
    lemmas_text: str

    def analysis(self) -> Analysis:
        return Analysis(tuple(self.words_text.split()), frozenset(self.lemmas_text.split()))


def as_analysis(a: Analysis | IndexTexts) -> Analysis:
    return a if isinstance(a, Analysis) else a.analysis()


def language(norm: str) -> str | None:
    """ "uk" or "ru" when normalised text has letters only that language uses, else None."""
    has_uk = any(c in norm for c in _UK_ONLY)
    has_ru = any(c in norm for c in _RU_ONLY)
    if has_uk != has_ru:
        return "uk" if has_uk else "ru"
    return None


def analyze(text: str) -> Analysis:
    """Normalise, split and lemmatise a post's text."""
    norm = normalize(text)
    ws = tuple(_WORD.findall(norm))
    if not ws:
        return EMPTY
    lang = language(norm)
    suffix = "" if lang is None else f"\x00{lang}"
    get = _cache.get
    out: set[str] = set()
    for w in set(ws):
        found = get(w + suffix)
        out.update(found if found is not None else lemmas(w, lang))
    return Analysis(ws, frozenset(out))
