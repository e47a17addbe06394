"""Small pieces of HTML the templates share: times in the display zone, matched words
marked, a version's text with the previous one's removed and added words. Every piece of
archived text is escaped here or by Jinja's autoescape."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape

from archiver.diff import word_pieces
from archiver.display import event_words as event_words  # the CLI's and the bot's wording
from archiver.snippets import Span

STATE_WORDS = {
    "present": "present",
    "missing": "missing from the listing (not a confirmed deletion)",
    "deleted": "deleted (confirmed)",
    "restored": "restored after a deletion",
}
HOW_WORDS = {
    "live": "Telegram's live deletion update",
    "recheck": "Telegram answered no message for this id",
    "web_embed": 'the post\'s own page said "Post not found"',
    "manual": "marked by hand",
    "listing": "not shown in the channel's listing",
}
EVENT_WORDS = {
    "edited": "edited",
    "late": "an older text arrived late (kept, not made current)",
    "reverted": "reverted to an earlier version",
    "missing": "missing from the listing",
    "deleted": "deleted",
    "restored": "restored",
    "present": "shown again",
}


def local(dt: datetime | None, tz: ZoneInfo) -> str:
    """``2024-03-10 13:55 EET`` in the display zone; "-" for none."""
    if dt is None:
        return "-"
    return dt.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z").strip()


def iso(dt: datetime | None) -> str:
    return "" if dt is None else dt.isoformat()


def marked(text: str, spans: list[Span]) -> Markup:
    """``text`` escaped, each span in ``<mark>``."""
    out: list[str | Markup] = []
    pos = 0
    for a, b in spans:
        out.append(text[pos:a])
        out.append(Markup("<mark>{}</mark>").format(text[a:b]))
        pos = b
    out.append(text[pos:])
    return Markup("").join(out)  # join escapes the plain strings


_TAGS = {"removed": Markup("<del>{}</del>"), "added": Markup("<ins>{}</ins>")}


def diffed(old: str | None, new: str) -> Markup:
    """``new`` escaped; with ``old``, the words it removed in ``<del>`` where they stood and
    the words it added in ``<ins>``."""
    if old is None:
        return escape(new)
    out: list[str | Markup] = []
    for piece in word_pieces(old, new):
        tag = _TAGS.get(piece.op)
        out.append(piece.text if tag is None else tag.format(piece.text))
    return Markup("").join(out)


def number(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"
