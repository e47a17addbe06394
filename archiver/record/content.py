"""The content of a post: what must change for an observation to be a new version.

A version is any observed change of the *content*: the text, the formatting, the link targets,
the identity of the media, or (web source) the post's rendered HTML. Counters (views,
reactions, forwards, replies) are not content: Telegram moves ``edit_date`` and sets
``edit_hide`` when only reactions change, and that is not an edit.

Sources do not all know every part: a Telegram Desktop export names a photo by its file path,
the web preview by nothing stable, Telethon by its id. A :class:`Signature` keeps each part
separately, with ``None`` for "this source cannot know"; two signatures are the same content
when every part that both know is equal (:meth:`Signature.same`). So reading an exported post
again through Telethon is not an "edit", while a link-only edit seen by the same source is.

Entities that Telegram derives from the text itself (``url``, ``mention``, ``hashtag``, ...)
are left out: the text already covers them, and sources differ in which of them they report.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, replace

from archiver.models import Entity, Media, Post

# Derived from the text by Telegram's clients and servers: not content of their own.
# Every source names a phone number "phone_number" (Telethon's MessageEntityPhone, the
# export's "phone" and the web's tel: links are mapped to it): "phone" alone matched none.
DERIVED_ENTITIES = frozenset(
    {"url", "mention", "hashtag", "cashtag", "email", "phone", "phone_number", "bot_command",
     "bank_card", "unknown", "plain"}
)  # fmt: skip
LINK_ENTITIES = frozenset({"text_link", "mention_name", "text_mention"})
SEP = "|"
# Telegram Desktop's export keeps only the first of overlapping entities (``ParseText`` in
# tdesktop's export/data/export_data.cpp skips an entity that starts before the end of the
# text written so far: a bold link keeps its bold or its link, a quote loses the bold inside
# it). An export's formatting and links are stored with this mark, compared with another
# export's only, and replaced by a complete reading's when a live source reads the same content.
LOSSY = "x"
_NO_FILE = frozenset({"poll", "geo", "contact", "venue", "dice", "game"})


def _h(parts: Iterable[str]) -> str:
    """A short hash of a canonical list: 16 hex digits are ample to tell versions of one post
    apart (the text itself is compared by its full SHA-256)."""
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:16]


def text_sha(text: str) -> str:
    """SHA-256 of a post's text with line endings and outer blanks made uniform, so the same
    text read by different sources is the same version."""
    canon = text.replace("\r\n", "\n").strip()
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()


def links_part(entities: Iterable[Entity]) -> str:
    """The link targets of the text (a text link's URL), in order; "" for none."""
    items = [f"{e.offset},{e.length},{e.url or ''}" for e in entities if e.type in LINK_ENTITIES]
    return _h(items) if items else ""


def format_part(entities: Iterable[Entity]) -> str:
    """Bold, italic, code, spoilers, quotes...: type and span of each; "" for none."""
    items = sorted(
        f"{e.type},{e.offset},{e.length}"
        for e in entities
        if e.type not in DERIVED_ENTITIES and e.type not in LINK_ENTITIES
    )
    return _h(items) if items else ""


def media_part(media: Iterable[Media]) -> str | None:
    """The identity of the media: kind and the source's stable file id for each medium.
    ``None`` (unknown) when any medium has no stable id: its identity cannot be compared.
    "" for a post without media."""
    items: list[str] = []
    for m in media:
        if m.kind == "webpage":  # a link preview follows the text's links: not media of its own
            continue
        if m.kind in _NO_FILE and not m.file_unique_id:
            items.append(m.kind)
            continue
        if not m.file_unique_id:
            return None
        items.append(f"{m.kind}:{m.file_unique_id}")
    return _h(items) if items else ""


def html_part(html: str | None) -> str | None:
    """The web preview's rendered HTML of the text, blanks made uniform; ``None`` when the
    source gives no HTML."""
    if html is None:
        return None
    return _h([" ".join(html.split())])


@dataclass(frozen=True, slots=True)
class Signature:
    """The parts of a post's content. ``text`` is the full SHA-256 of the text; the others are
    short hashes, "" for "none", ``None`` for "this source cannot know"."""

    text: str
    links: str | None = ""
    fmt: str | None = ""
    media: str | None = ""
    html: str | None = None

    def same(self, other: Signature) -> bool:
        """Same content: the texts are equal and so is every other part both sides know."""
        if self.text != other.text:
            return False
        for a, b in (
            (self.links, other.links),
            (self.fmt, other.fmt),
            (self.media, other.media),
            (self.html, other.html),
        ):
            if a is not None and b is not None and a != b:
                return False
        return True

    def merged(self, other: Signature) -> Signature:
        """This signature with the parts it does not know taken from ``other`` (same content)."""
        return Signature(
            self.text,
            self.links if self.links is not None else other.links,
            self.fmt if self.fmt is not None else other.fmt,
            self.media if self.media is not None else other.media,
            self.html if self.html is not None else other.html,
        )

    def changed_parts(self, other: Signature) -> tuple[str, ...]:
        """The names of the parts that differ where both sides know them."""
        out: list[str] = []
        if self.text != other.text:
            out.append("text")
        for name in ("links", "fmt", "media", "html"):
            a, b = getattr(self, name), getattr(other, name)
            if a is not None and b is not None and a != b:
                out.append(name)
        return tuple(out)

    def dump(self) -> str:
        """The stored form (``versions.content_sig``) of the parts after the text:
        ``links|fmt|media|html`` with ``?`` for unknown."""
        parts = (self.links, self.fmt, self.media, self.html)
        return SEP.join("?" if v is None else v for v in parts)

    @classmethod
    def load(cls, text: str, sig: str | None) -> Signature:
        """From ``versions.sha256`` and ``versions.content_sig``; a version written before
        signatures existed (``sig`` NULL) knows only its text."""
        if sig is None:
            return cls(text, None, None, None, None)
        parts = [None if p == "?" else p for p in sig.split(SEP)]
        parts += [None] * (4 - len(parts))
        return cls(text, parts[0], parts[1], parts[2], parts[3])

    @property
    def content_sha(self) -> str:
        """One SHA-256 over every part: the version's content hash."""
        dump = _unmarked(self.dump())
        return hashlib.sha256(f"{self.text}{SEP}{dump}".encode()).hexdigest()


def signature(post: Post, *, text_hash: str | None = None) -> Signature:
    """The signature of a post as a source observed it."""
    text = text_hash or text_sha(post.text)
    entities, media, html = post.entities, post.media, post.html
    if not entities and not media and html is None:  # most posts: nothing but the text
        return Signature(text, "", "", "", None)
    links, fmt = _entity_parts(entities) if entities else ("", "")
    return Signature(text, links, fmt, media_part(media) if media else "", html_part(html))


def _entity_parts(entities: Iterable[Entity]) -> tuple[str, str]:
    """:func:`links_part` and :func:`format_part` in one pass (the import's hot path)."""
    links: list[str] = []
    fmt: list[str] = []
    for e in entities:
        t = e.type
        if t in LINK_ENTITIES:
            links.append(f"{e.offset},{e.length},{e.url or ''}")
        elif t not in DERIVED_ENTITIES:
            fmt.append(f"{t},{e.offset},{e.length}")
    if len(fmt) > 1:
        fmt.sort()
    return (_h(links) if links else "", _h(fmt) if fmt else "")


def is_lossy(part: str | None) -> bool:
    """Whether a formatting or links part came from an export (see :data:`LOSSY`)."""
    return part is not None and part.startswith(LOSSY)


def lossy_dump(dump: str) -> str:
    """An export's :meth:`Signature.dump` with its formatting and links marked as a lossy
    reading (on the stored form: an import marks every post, so it is kept cheap). The
    mark says who read the parts, not what they are: :attr:`Signature.content_sha` leaves
    it out."""
    links, fmt, rest = dump.split(SEP, 2)
    return (
        f"{LOSSY if links != '?' else ''}{links}{SEP}{LOSSY if fmt != '?' else ''}{fmt}{SEP}{rest}"
    )


def _unmarked(dump: str) -> str:
    if LOSSY not in dump:  # hashes are hex: only a mark holds an x
        return dump
    return SEP.join(p.removeprefix(LOSSY) for p in dump.split(SEP))


def comparable(seen: Signature, known: Signature) -> Signature:
    """``seen`` as it compares with ``known``: formatting and links are unknown between an
    export's lossy reading and a complete one (see :data:`LOSSY`)."""
    links = seen.links if is_lossy(seen.links) == is_lossy(known.links) else None
    fmt = seen.fmt if is_lossy(seen.fmt) == is_lossy(known.fmt) else None
    if links == seen.links and fmt == seen.fmt:
        return seen
    return replace(seen, links=links, fmt=fmt)


def kept(seen: Signature, known: Signature) -> Signature:
    """What to keep for a stored version read again with the same content: the parts it did
    not know, and a complete reading's formatting and links in place of an export's."""
    out = comparable(seen, known).merged(known)
    if is_lossy(known.links) and seen.links is not None and not is_lossy(seen.links):
        out = replace(out, links=seen.links)
    if is_lossy(known.fmt) and seen.fmt is not None and not is_lossy(seen.fmt):
        out = replace(out, fmt=seen.fmt)
    return out
