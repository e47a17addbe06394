"""A post's text as Telegram HTML: its own formatting (entities) kept, matched words in bold.

Archived entities are in Telegram's units (UTF-16 code units, see ``archiver.models.Entity``);
they are turned into character spans of the Python string here. Telegram's rules for nesting
(Bot API, "Formatting options"): bold, italic, underline, strikethrough and spoiler may nest in
anything but ``code``/``pre``; ``code``, ``pre`` and links may not contain each other. Every
run of characters is written with its own properly nested tags, so the markup is valid
whatever the entities (overlapping, out of range, or nonsense) say.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bot.format import Span, attr, esc

log = logging.getLogger(__name__)

# Bot API entity type -> tag. Others (mention, hashtag, blockquote ...) show as plain text.
_TAGS = {
    "bold": "b",
    "italic": "i",
    "underline": "u",
    "strikethrough": "s",
    "spoiler": "tg-spoiler",
    "code": "code",
    "pre": "code",
}
_ORDER = ("a", "b", "i", "u", "s", "tg-spoiler", "code")  # outermost first
_SCHEMES = ("http://", "https://", "tg://")


@dataclass(frozen=True, slots=True)
class Style:
    """One formatted span of characters: a tag (``a`` with its ``href``)."""

    start: int
    end: int
    tag: str
    href: str | None = None


def char_offsets(text: str) -> list[int]:
    """``out[u]`` = the character index at UTF-16 offset ``u`` (len(text)+1 entries at the
    end, so an entity ending at the text's end maps to ``len(text)``)."""
    out: list[int] = []
    for i, c in enumerate(text):
        out.append(i)
        if ord(c) > 0xFFFF:
            out.append(i)  # the second half of a surrogate pair
    out.append(len(text))
    return out


def _href(url: str | None) -> str | None:
    if not url:
        return None
    u = url.strip()
    if "://" not in u and "." in u and " " not in u:
        u = "https://" + u
    return u if u.lower().startswith(_SCHEMES) else None


def entity_styles(text: str, entities_json: str | None) -> list[Style]:
    """The archived entities of ``text`` as character-span styles (unknown or broken ones
    are left out)."""
    if not entities_json:
        return []
    try:
        raw = json.loads(entities_json)
    except ValueError:
        log.debug("entities that are not JSON: ignored")
        return []
    if not isinstance(raw, list):
        return []
    offsets = char_offsets(text)
    last = len(offsets) - 1
    out: list[Style] = []
    for e in raw:
        if not isinstance(e, dict):
            continue
        kind, off, length = e.get("type"), e.get("offset"), e.get("length")
        if not isinstance(off, int) or not isinstance(length, int) or length <= 0 or off < 0:
            continue
        a, b = offsets[min(off, last)], offsets[min(off + length, last)]
        if b <= a:
            continue
        if kind == "text_link":
            href = _href(e.get("url"))
            if href:
                out.append(Style(a, b, "a", href))
        elif kind == "url":
            href = _href(text[a:b])
            if href:
                out.append(Style(a, b, "a", href))
        elif kind in _TAGS:
            out.append(Style(a, b, _TAGS[kind]))
    return out


def spans(tag: str, ranges: Iterable[Span]) -> list[Style]:
    return [Style(a, b, tag) for a, b in ranges if b > a]


def render(text: str, styles: Sequence[Style], start: int = 0, end: int | None = None) -> str:
    """``text[start:end]`` escaped, each run of characters inside its styles' tags.

    Within a run: ``code`` drops every other tag but a link, and a link drops ``code``
    (Telegram allows neither inside the other); two links over one run: the first wins.
    """
    stop = len(text) if end is None else min(end, len(text))
    if start >= stop:
        return ""
    n = stop - start
    active: list[dict[str, str]] = [{} for _ in range(n)]  # tag -> href ("" for none)
    for st in styles:
        for i in range(max(st.start, start), min(st.end, stop)):
            at = active[i - start]
            if st.tag not in at:
                at[st.tag] = st.href or ""
    runs = [_nestable(a) for a in active]
    out: list[str] = []
    run = 0
    for i in range(1, n + 1):
        if i < n and runs[i] == runs[run]:
            continue
        nested = runs[run]
        out.extend(_open(t, href) for t, href in nested)
        out.append(esc(text[start + run : start + i]))
        out.extend(f"</{t}>" for t, _ in reversed(nested))
        run = i
    return "".join(out)


def _nestable(tags: dict[str, str]) -> list[tuple[str, str]]:
    chosen = dict(tags)
    if "a" in chosen:
        chosen.pop("code", None)
    if "code" in chosen:
        chosen = {"code": ""}
    return [(t, chosen[t]) for t in _ORDER if t in chosen]


def _open(tag: str, href: str) -> str:
    if tag == "a":
        return f'<a href="{attr(href)}">'
    return f"<{tag}>"
