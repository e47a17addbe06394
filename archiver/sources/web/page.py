"""The HTML of a channel's web preview (``https://t.me/s/<username>``) -> domain objects.

One job: a page in, a :class:`WebPage` out (the channel header as a
:class:`~archiver.models.ChannelInfo`, the posts as :class:`~archiver.models.Post`); and a
post's own embed page in, an :class:`EmbedPage` out (:func:`parse_embed`). No network, no
archive. The parser is selectolax (Lexbor, an HTML5 parser); the only regular expression is
the nesting guard (:func:`check_markup`), which counts tags and reads no content.

The markup, as Telegram serves it (see docs/web-source.md for the full list of what is read):
each post is ``div.tgme_widget_message[data-post="<username>/<id>"]``, its text in
``.tgme_widget_message_text``, its date in ``.tgme_widget_message_date time[datetime]``, its
views in ``.tgme_widget_message_views`` ("1.2K"), the word "edited" in
``.tgme_widget_message_meta``. Posts are in ascending id order. An album is one block whose
photos/videos/files link to ``https://t.me/<username>/<id>?single``, one id per item.

Channel ids: the page shows no numeric id as such, but every post block carries
``data-view``, base64 JSON whose ``c`` is the negated bare channel id (``{"c":-1005640892,...}``
for @telegram, which is -1001005640892). When no block has it (a trimmed page, a mirror), the
id is derived from the username by :func:`derived_channel_id`, in a range real channel ids never
reach (bare ids from 2*10^12: Telegram's channel ids stay below 10^12).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from html import escape
from urllib.parse import unquote, urlsplit

from selectolax.lexbor import LexborHTMLParser, LexborNode

from archiver.evidence.capture import Raw
from archiver.models import ChannelInfo, Entity, Forward, Media, Post, bare_id, marked_id

log = logging.getLogger(__name__)

# Derived ids: bare ids in [DERIVED_BASE, DERIVED_BASE + DERIVED_SPAN). Telegram's channel ids
# are below 10^12 (TDLib: MAX_CHANNEL_ID = 10^12 - 2^31); secret chats sit near -2*10^12 in
# the marked space. Bare ids from 2*10^12 give marked ids from -3*10^12: nothing else lives there.
DERIVED_BASE = 2_000_000_000_000
DERIVED_SPAN = 1 << 40

_HOSTS = frozenset({"t.me", "telegram.me", "telegram.dog", "www.t.me"})
_SUFFIX = {"K": Decimal(1_000), "M": Decimal(1_000_000), "B": Decimal(1_000_000_000)}
_SIMPLE_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "code": "code",
    "pre": "pre",
    "tg-spoiler": "spoiler",
}
# Parts of a post block that belong to something else: the post replied to, a link's preview,
# the poll, and the "media not supported" notice.
_NOT_THE_POST = frozenset(
    {
        "tgme_widget_message_reply",
        "tgme_widget_message_link_preview",
        "tgme_widget_message_poll",
        "message_media_not_supported_wrap",
    }
)
_SERVICE_ACTIONS = (
    ("channel created", "create_channel"),
    ("channel photo updated", "edit_photo"),
    ("channel photo removed", "delete_photo"),
    ("channel name was changed", "edit_title"),
    ("channel renamed", "edit_title"),
    ("pinned", "pin_message"),
    ("video chat", "group_call"),
    ("live stream", "group_call"),
)


@dataclass(frozen=True, slots=True)
class WebPage:
    """What one page of the web preview shows."""

    username: str | None  # lower case, from the posts or the header
    channel: ChannelInfo | None  # None when the page shows neither a post nor a header
    channel_id_derived: bool  # True when no data-view gave the real id
    posts: tuple[Post, ...]  # ascending message id
    shown_ids: frozenset[int] = field(default_factory=frozenset)  # posts + album items
    has_history: bool = False  # the messages widget (section.tgme_channel_history) is there
    no_posts_notice: bool = False  # "No posts found": the start of the channel was passed
    capture: Raw | None = None  # the raw answer the page was read from (the client sets it)

    @property
    def min_id(self) -> int | None:
        return min(self.shown_ids) if self.shown_ids else None

    @property
    def max_id(self) -> int | None:
        return max(self.shown_ids) if self.shown_ids else None


def derived_channel_id(username: str) -> int:
    """A stable marked id for a channel whose real id is unknown: a hash of the lower-case
    username placed where no real channel id can be (see the module docstring)."""
    digest = hashlib.sha256(username.lower().encode("utf-8")).digest()
    return marked_id(DERIVED_BASE + int.from_bytes(digest[:8], "big") % DERIVED_SPAN)


def is_derived_id(channel_id: int) -> bool:
    """Whether a marked id was made by :func:`derived_channel_id`."""
    return bare_id(channel_id) >= DERIVED_BASE


def parse_count(text: str | None) -> int | None:
    """``"1.2K"`` -> 1200, ``"3.4M"`` -> 3400000, ``"12 345"`` -> 12345; None when not a count."""
    if not text:
        return None
    s = "".join(text.split()).upper()
    mult = Decimal(1)
    if s and s[-1] in _SUFFIX:
        mult = _SUFFIX[s[-1]]
        s = s[:-1].replace(",", ".")
    else:
        s = s.replace(",", "")
    if not (s.isascii() and s.replace(".", "", 1).isdigit()):
        return None
    value = Decimal(s) * mult
    if value != value.to_integral_value():
        return None if mult == 1 else int(value)
    return int(value)


def _duration(text: str | None) -> float | None:
    """``"1:05"`` -> 65.0, ``"1:02:03"`` -> 3723.0."""
    if not text:
        return None
    total = 0
    for part in text.strip().split(":"):
        if not part.isdigit():
            return None
        total = total * 60 + int(part)
    return float(total)


def _u16(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


def _classes(node: LexborNode) -> frozenset[str]:
    return frozenset((node.attrs.get("class") or "").split())


def _text(node: LexborNode | None) -> str | None:
    if node is None:
        return None
    t = node.text(deep=True).strip()
    return t or None


def _inside(node: LexborNode, top: LexborNode, classes: frozenset[str]) -> bool:
    """Whether ``node`` lies under an element of one of ``classes`` below ``top``, looking up
    at most :data:`MAX_DEPTH` levels (real posts nest about 15 below their block)."""
    cur = node.parent
    steps = 0
    while cur is not None and cur.mem_id != top.mem_id and steps < MAX_DEPTH:
        if _classes(cur) & classes:
            return True
        cur = cur.parent
        steps += 1
    return False


# Every element of a post block that the parser reads, found with one selector query per
# block (a query per field would walk the block a dozen times).
_WANTED = frozenset(
    {
        "tgme_widget_message_text",
        "tgme_widget_message_date",
        "tgme_widget_message_meta",
        "tgme_widget_message_views",
        "tgme_widget_message_from_author",
        "tgme_widget_message_forwarded_from",
        "tgme_widget_message_reactions",
        "tgme_widget_message_photo_wrap",
        "tgme_widget_message_video_player",
        "tgme_widget_message_roundvideo_player",
        "tgme_widget_message_voice_player",
        "tgme_widget_message_voice",
        "tgme_widget_message_document_wrap",
        "tgme_widget_message_sticker_wrap",
        "tgme_widget_message_location_wrap",
        "message_media_not_supported",
        "grouped_media_wrap",
        *_NOT_THE_POST,
    }
)
_WANTED_SELECTOR = ", ".join(f".{c}" for c in sorted(_WANTED)) + ", time[datetime]"


class _Block:
    """A post block with its elements indexed by class: ``own`` holds those that belong to
    the post itself (not to the post it replies to, a link preview or a poll)."""

    def __init__(self, node: LexborNode) -> None:
        self.node = node
        self.all: dict[str, list[LexborNode]] = {}
        self.own: dict[str, list[LexborNode]] = {}
        found: list[tuple[LexborNode, frozenset[str]]] = []
        seen: set[int] = set()
        foreign = False
        for n in node.css(_WANTED_SELECTOR):
            if n.mem_id in seen:  # a node matching two selectors of the list comes twice
                continue
            seen.add(n.mem_id)
            keys = _classes(n) & _WANTED
            if n.tag == "time":
                keys |= {"time"}
            if keys:
                found.append((n, keys))
                foreign = foreign or bool(keys & _NOT_THE_POST)
        for n, keys in found:
            mine = not foreign or not _inside(n, node, _NOT_THE_POST)
            for k in keys:
                self.all.setdefault(k, []).append(n)
                if mine:
                    self.own.setdefault(k, []).append(n)

    def first(self, cls: str, *, own: bool = False) -> LexborNode | None:
        found = (self.own if own else self.all).get(cls)
        return found[0] if found else None

    def mine(self, cls: str) -> list[LexborNode]:
        return self.own.get(cls, [])


def tme_link(href: str | None) -> tuple[str, int | None] | None:
    """``https://t.me/<name>[/<id>][?single]`` -> (lower-case name, id or None)."""
    if not href:
        return None
    parts = urlsplit(href)
    if parts.netloc and parts.netloc.lower() not in _HOSTS:
        return None
    segs = [s for s in parts.path.split("/") if s]
    if segs and segs[0] == "s":
        segs = segs[1:]
    if not segs or segs[0] == "c":
        return None
    name = segs[0].lower()
    msg = int(segs[1]) if len(segs) > 1 and segs[1].isdigit() else None
    return name, msg


class _TextBuilder:
    """Plain text and entities (UTF-16 offsets) of a ``.tgme_widget_message_text`` element,
    and its canonical HTML (:data:`_KEPT_ATTRS`): the formatting as t.me rendered it, without
    the attributes that change with t.me's page code rather than with the post."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.pos = 0  # UTF-16 code units so far
        self.entities: list[Entity] = []
        self.html: list[str] = []

    def add(self, s: str) -> None:
        if s:
            self.parts.append(s)
            self.pos += _u16(s)
            self.html.append(escape(s, quote=False))

    def walk(self, node: LexborNode, *, in_pre: bool = False) -> None:
        """Depth first through ``node``'s children, with a stack of its own (no recursion:
        markup nested a thousand deep is no harm here)."""
        # A frame: the children left, whether inside <pre>, and what to do on leaving the
        # element (its tag, entity type and URL, and where its text started).
        stack: list[tuple[Iterator[LexborNode], bool, tuple[str, str | None, str | None, int]]]
        stack = [(iter(node.iter(include_text=True)), in_pre, ("", None, None, 0))]
        while stack:
            children, pre, leave = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                closing, etype, url, start = leave
                if closing and closing not in _VOID:
                    self.html.append(f"</{closing}>")
                if etype is not None and self.pos > start:
                    self.entities.append(Entity(etype, start, self.pos - start, url))
                continue
            tag = child.tag
            if tag == "-text":
                self.add(child.text_content or "")
                continue
            if tag == "br":
                self.parts.append("\n")
                self.pos += 1
                self.html.append("<br>")
                continue
            if tag in ("-comment", "script", "style", "template") or tag is None:
                continue
            cls = _classes(child)
            if "emoji" in cls:  # <i class="emoji"><b>👍</b></i>: a picture of the character
                self.add(child.text(deep=True))
                continue
            etype, url = self._classify(child, cls, pre)
            self.html.append(_open_tag(child, tag))
            frame = (tag, etype, url, self.pos)
            stack.append((iter(child.iter(include_text=True)), pre or tag == "pre", frame))

    @staticmethod
    def _classify(
        node: LexborNode, cls: frozenset[str], in_pre: bool
    ) -> tuple[str | None, str | None]:
        tag = node.tag or ""
        if tag == "a":
            return _link_entity(node)
        if tag == "code" and in_pre:
            return None, None
        if tag == "blockquote":
            expandable = "expandable" in node.attrs
            return ("expandable_blockquote" if expandable else "blockquote"), None
        if tag == "span" and "tg-spoiler" in cls:
            return "spoiler", None
        if tag == "tg-emoji":
            return "custom_emoji", None
        return _SIMPLE_TAGS.get(tag), None

    def result(self) -> tuple[str, tuple[Entity, ...]]:
        """The text with outer blanks removed and the entities moved and clipped to match."""
        text = "".join(self.parts)
        stripped = text.strip()
        if not stripped:
            return "", ()
        lead = _u16(text[: len(text) - len(text.lstrip())])
        size = _u16(stripped)
        out: list[Entity] = []
        for e in sorted(self.entities, key=lambda e: (e.offset, -e.length)):
            start = max(e.offset - lead, 0)
            end = min(e.offset + e.length - lead, size)
            if end > start:
                out.append(Entity(e.type, start, end - start, e.url))
        return stripped, tuple(out)


# Attributes of the post's own markup kept in its canonical HTML: what the author chose (a
# link's target, a custom emoji, a code block's language, an expandable quote). Left out:
# style, target, rel, onclick, dir and the emoji pictures' URLs, which t.me changes on its own.
_KEPT_ATTRS = frozenset({"href", "emoji-id", "class", "expandable"})
_VOID = frozenset({"br", "img", "hr", "wbr", "input", "source", "track"})


def _open_tag(node: LexborNode, tag: str) -> str:
    attrs: list[str] = []
    for key, value in sorted(node.attrs.items()):
        if key not in _KEPT_ATTRS:
            continue
        if key == "class":
            value = " ".join(sorted(c for c in (value or "").split() if not c.startswith("js-")))
            if not value:
                continue
        attrs.append(key if value is None else f'{key}="{escape(value)}"')
    return f"<{tag}{''.join(' ' + a for a in attrs)}>"


def _link_entity(node: LexborNode) -> tuple[str | None, str | None]:
    href = (node.attrs.get("href") or "").strip()
    label = node.text(deep=True).strip()
    if not href:
        return None, None
    if href.startswith("?q="):
        if label.startswith("#"):
            return "hashtag", None
        if label.startswith("$"):
            return "cashtag", None
        return "text_link", href
    if href.startswith("mailto:"):
        return ("email", None) if unquote(href[7:]) == label else ("text_link", href)
    if href.startswith("tel:"):
        return "phone_number", None
    if label.startswith("@") and (tme_link(href) or ("", None))[0] == label[1:].lower():
        return "mention", None
    if _same_url(label, href):
        return "url", None
    return "text_link", href


def _same_url(label: str, href: str) -> bool:
    def bare(u: str) -> str:
        u = u.strip()
        for scheme in ("https://", "http://"):
            if u.lower().startswith(scheme):
                u = u[len(scheme) :]
                break
        return u.rstrip("/")

    return bool(label) and (label == href or bare(label) == bare(unquote(href)))


def _data_view_channel(value: str | None) -> int | None:
    """The marked channel id in a post block's ``data-view`` (base64 JSON, ``c`` = -bare id)."""
    if not value:
        return None
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        c = json.loads(raw).get("c")
    except (binascii.Error, ValueError, AttributeError):
        return None
    if not isinstance(c, int) or isinstance(c, bool) or c == 0:
        return None
    bare = abs(c)
    return marked_id(bare) if bare < DERIVED_BASE else None


def _header(tree: LexborHTMLParser) -> tuple[str | None, str | None, str | None, int | None]:
    """(username, title, description, subscribers) from the channel header, where shown."""
    title = _text(tree.css_first(".tgme_channel_info_header_title"))
    if title is None:
        meta = tree.css_first('meta[property="og:title"]')
        title = (meta.attrs.get("content") or "").strip() or None if meta else None
    username = _text(tree.css_first(".tgme_channel_info_header_username"))
    if username is not None:
        username = username.lstrip("@").lower() or None
    desc_node = tree.css_first(".tgme_channel_info_description")
    description = None
    if desc_node is not None:
        b = _TextBuilder()
        b.walk(desc_node)
        description = b.result()[0] or None
    subscribers = None
    for counter in tree.css(".tgme_channel_info_counter"):
        kind = (_text(counter.css_first(".counter_type")) or "").lower()
        if kind.startswith(("subscriber", "member")):
            subscribers = parse_count(_text(counter.css_first(".counter_value")))
    return username, title, description, subscribers


def _media(b: _Block, raw: dict[str, object]) -> tuple[Media, ...]:
    out: list[Media] = []
    for wrap in b.mine("tgme_widget_message_photo_wrap"):
        out.append(Media("photo", file_unique_id=_photo_id(wrap)))
    for player in b.mine("tgme_widget_message_video_player"):
        gif = any("gif" in c for n in player.traverse() for c in _classes(n))
        dur = _duration(_text(player.css_first(".message_video_duration")))
        out.append(Media("animation" if gif else "video", duration=dur))
    for player in b.mine("tgme_widget_message_roundvideo_player"):
        dur = _duration(_text(player.css_first(".tgme_widget_message_roundvideo_duration")))
        out.append(Media("video_note", duration=dur))
    for player in b.mine("tgme_widget_message_voice_player") or b.mine("tgme_widget_message_voice"):
        dur = _duration(_text(player.css_first(".tgme_widget_message_voice_duration")))
        out.append(Media("voice", duration=dur))
    docs: list[dict[str, str | None]] = []
    for wrap in b.mine("tgme_widget_message_document_wrap"):
        if _inside(wrap, b.node, frozenset({"tgme_widget_message_document_wrap"})):
            continue  # the link inside a wrapper of the same class: one document
        title = _text(wrap.css_first(".tgme_widget_message_document_title"))
        extra = _text(wrap.css_first(".tgme_widget_message_document_extra"))
        audio = wrap.css_first(".audio") is not None
        out.append(Media("audio" if audio else "document", file_name=None if audio else title))
        docs.append({"title": title, "extra": extra})
    if docs:
        raw["documents"] = docs
    if b.mine("tgme_widget_message_sticker_wrap"):
        out.append(Media("sticker"))
    poll = b.first("tgme_widget_message_poll")
    if poll is not None:
        out.append(Media("poll"))
        raw["poll"] = {
            "question": _text(poll.css_first(".tgme_widget_message_poll_question")),
            "type": _text(poll.css_first(".tgme_widget_message_poll_type")),
            "options": [_text(o) for o in poll.css(".tgme_widget_message_poll_option_text")],
        }
    if b.mine("tgme_widget_message_location_wrap"):
        out.append(Media("geo"))
    preview = next(
        (n for n in b.all.get("tgme_widget_message_link_preview", []) if n.tag == "a"), None
    )
    if preview is not None:
        out.append(Media("webpage"))
        raw["link_preview"] = {
            "url": preview.attrs.get("href"),
            "site": _text(preview.css_first(".link_preview_site_name")),
            "title": _text(preview.css_first(".link_preview_title")),
            "description": _text(preview.css_first(".link_preview_description")),
        }
    if not out and b.first("message_media_not_supported") is not None:
        out.append(Media("other"))
    return tuple(out)


def _photo_id(wrap: LexborNode) -> str | None:
    """The photo's identity as the preview gives it: t.me puts numeric class names on a photo
    (``tgme_widget_message_photo_wrap 5249090012068914481 1222149006_460006705`` in the saved
    real page ``tme_s_ru_prstnk.html``); the long all-digit one is kept, as ``tme:<digits>``.
    The background image's URL is not used: its token is the CDN's, not the photo's."""
    ids = [c for c in _classes(wrap) if c.isdigit() and len(c) >= 9]
    return f"tme:{ids[0]}" if len(ids) == 1 else None


_ITEM_CLASSES = (
    "grouped_media_wrap",
    "tgme_widget_message_photo_wrap",
    "tgme_widget_message_video_player",
    "tgme_widget_message_document_wrap",
    "tgme_widget_message_roundvideo_player",
)


def _item_ids(b: _Block, username: str) -> set[int]:
    """Ids of the album items a block shows (each links to ``/<username>/<id>?single``)."""
    ids: set[int] = set()
    for cls in _ITEM_CLASSES:
        for a in b.mine(cls):
            if a.tag != "a":
                continue
            link = tme_link(a.attrs.get("href"))
            if link is not None and link[0] == username and link[1] is not None:
                ids.add(link[1])
    return ids


def _service_action(text: str) -> str:
    low = text.lower()
    for prefix, action in _SERVICE_ACTIONS:
        if prefix in low:
            return action
    return "other"


def _parse_date(b: _Block) -> datetime | None:
    times = b.mine("time")
    node = next(
        (t for t in times if "tgme_widget_message_date" in _classes(t.parent or t)),
        times[0] if times else None,
    )
    if node is None:
        return None
    try:
        dt = datetime.fromisoformat((node.attrs.get("datetime") or "").strip())
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def _reactions(b: _Block) -> tuple[tuple[str, int], ...]:
    out: list[tuple[str, int]] = []
    box = b.first("tgme_widget_message_reactions")
    for r in box.css(".tgme_reaction") if box is not None else ():
        custom = r.css_first("tg-emoji[emoji-id]")
        emoji_node = r.css_first(".emoji")
        if custom is not None:
            key = str(custom.attrs.get("emoji-id"))
        elif emoji_node is not None:
            key = emoji_node.text(deep=True).strip()
        else:
            continue
        count = parse_count(r.text(deep=False))
        if key and count is not None:
            out.append((key, count))
    return tuple(out)


def _parse_block(
    b: _Block, username: str, channel_id: int, msg_id: int, data_post: str, items: set[int]
) -> Post | None:
    cls = _classes(b.node)
    date = _parse_date(b)
    if date is None:
        log.debug("web %s/%d: no date in the block, skipped", username, msg_id)
        return None
    raw: dict[str, object] = {"data_post": data_post}
    text_node = b.first("tgme_widget_message_text", own=True)
    text = ""
    entities: tuple[Entity, ...] = ()
    html: str | None = None
    if text_node is not None:
        builder = _TextBuilder()
        builder.walk(text_node)
        text, entities = builder.result()
        html = "".join(builder.html).strip() or None
        if html:
            raw["html"] = html
    meta = b.first("tgme_widget_message_meta", own=True)
    edited = meta is not None and "edited" in meta.text(deep=False).lower().split()
    if edited:
        raw["edited"] = True
    author = _text(b.first("tgme_widget_message_from_author", own=True))
    if author:
        raw["author"] = author
    forward = None
    fwd = b.first("tgme_widget_message_forwarded_from", own=True)
    if fwd is not None:
        name_node = fwd.css_first(".tgme_widget_message_forwarded_from_name")
        href = name_node.attrs.get("href") if name_node is not None else None
        name = _text(name_node) or _text(fwd)
        link = tme_link(href)
        forward = Forward(from_title=name, from_message_id=link[1] if link else None)
        raw["forward"] = {"name": name, "url": href}
    reply_to = None
    reply = b.first("tgme_widget_message_reply")
    if reply is not None and reply.tag == "a":
        link = tme_link(reply.attrs.get("href"))
        if link is not None and link[1] is not None:
            if link[0] == username:
                reply_to = link[1]
            else:
                raw["reply_to_url"] = reply.attrs.get("href")
    media = _media(b, raw)
    if len(items) > 1:
        raw["album"] = sorted(items)
    is_service = "service_message" in cls
    return Post(
        channel_id=channel_id,
        message_id=msg_id,
        date=date,
        text=text,
        entities=entities,
        edited=edited,
        views=parse_count(_text(b.first("tgme_widget_message_views", own=True))),
        reactions=_reactions(b),
        media=media,
        forward=forward,
        reply_to=reply_to,
        is_service=is_service,
        service_action=_service_action(text) if is_service else None,
        raw=json.dumps(raw, ensure_ascii=False, separators=(",", ":"), sort_keys=True),
        html=html if html is not None else "",
    )


def _blocks(tree: LexborHTMLParser) -> Iterable[tuple[LexborNode, str, int, str]]:
    for block in tree.css("div.tgme_widget_message[data-post]"):
        data_post = (block.attrs.get("data-post") or "").strip()
        name, _, num = data_post.rpartition("/")
        if name and num.isdigit():
            yield block, name.lower(), int(num), data_post


def _own_blocks(
    tree: LexborHTMLParser, want: str | None, header_user: str | None
) -> tuple[str | None, list[tuple[LexborNode, str, int, str]]]:
    """The page's username as its posts spell it, and the blocks of that channel.

    ``data-post`` names are compared in lower case (t.me keeps the channel's own spelling:
    ``data-post="Air_Alert_UA/501"`` in the saved real fragment ``tme_s_uk_air_alert_fragment``).
    A channel has one username per post link but may have several addresses: a page asked
    for by an alias shows every post under the channel's main username. So when no block
    carries the name asked for and all of them carry one other name (the header's, when the
    header shows one), that name is the channel's."""
    blocks = list(_blocks(tree))
    if want is None:
        name = blocks[0][1] if blocks else header_user
        return name, [b for b in blocks if b[1] == name]
    own = [b for b in blocks if b[1] == want]
    if own or not blocks:
        return want, own
    names = {b[1] for b in blocks}
    if len(names) == 1 and header_user in (None, *names):
        alias = names.pop()
        log.info(
            "web @%s: the page's posts are @%s's (another address of the channel)", want, alias
        )
        return alias, blocks
    return want, []


def parse_page(
    html: str | bytes, *, username: str | None = None, max_depth: int | None = None
) -> WebPage:
    """Parse one page of ``t.me/s/<username>``. Blocks of other channels (``data-post`` with
    another username) are ignored when ``username`` is given; see :func:`_own_blocks` for a
    page asked for by another address of the channel. Raises :class:`PageRefused` for markup
    nested deeper than ``max_depth`` (default :data:`MAX_DEPTH`), before parsing it (see
    :func:`check_markup`; a ``max_depth`` given lifts its bound of formatting elements too)."""
    _check(html, max_depth)
    tree = LexborHTMLParser(html)
    want = username.lower().lstrip("@") if username else None
    h_user, title, description, subscribers = _header(tree)
    name, blocks = _own_blocks(tree, want, h_user)
    real_id = None
    for block, *_ in blocks:
        real_id = _data_view_channel(block.attrs.get("data-view"))
        if real_id is not None:
            break
    has_history = tree.css_first("section.tgme_channel_history") is not None
    no_posts = tree.css_first(".tme_no_messages_found") is not None
    if name is None:
        return WebPage(None, None, True, (), frozenset(), has_history, no_posts)
    channel_id = real_id if real_id is not None else derived_channel_id(name)
    posts: dict[int, Post] = {}
    shown: set[int] = set()
    for node, _, msg_id, data_post in blocks:
        indexed = _Block(node)
        items = _item_ids(indexed, name)
        shown.add(msg_id)
        shown.update(items)
        post = _parse_block(indexed, name, channel_id, msg_id, data_post, items)
        if post is not None:
            posts[msg_id] = post
    info = ChannelInfo(
        id=channel_id,
        username=name,
        title=title,
        description=description,
        subscribers=subscribers,
    )
    return WebPage(
        username=name,
        channel=info,
        channel_id_derived=real_id is None,
        posts=tuple(posts[k] for k in sorted(posts)),
        shown_ids=frozenset(shown),
        has_history=has_history,
        no_posts_notice=no_posts,
    )


# --- bounds ----------------------------------------------------------------------------------

# Nesting deeper than this is refused before the HTML parser sees it. Real pages nest about
# 25 elements deep (23 in the saved t.me/s page tme_s_ru_prstnk.html). Lexbor's tree builder
# walks the stack of open elements for every <div>, <section> or <ul> start tag, so nesting
# costs time quadratic in depth (bench figures in docs/benchmarks.md), and the text walker
# recurses once per level.
MAX_DEPTH = 256
# Formatting elements (<b>, <i>, <a> ...) that may be left open at once. One left open by a
# misnested end tag (``<div><b></div>``) stays in HTML's list of active formatting elements and
# is cloned again into every later paragraph ("reconstruct the active formatting elements"):
# 3,000 of them and 3,000 paragraphs, 98 KB, made Lexbor build 9 million elements (5 GB). Real
# pages close every one (a post nests three or four: a link, bold, italic, an emoji).
MAX_FORMATTING = 12
# Tags in one page: real pages of 20 posts have 800-1,100. With the two bounds above, the
# clones and the stack walks of a page stay proportional to this.
MAX_TAGS = 50_000
# Kept for callers of the earlier guard, which scanned only pages with more tags than this;
# every page is scanned now: a few hundred tags are enough to make Lexbor clone a million
# elements (see MAX_FORMATTING), and the scan of a real page costs about a millisecond.
SCAN_ABOVE = 2_000
_TAG = re.compile(r"<(/?)([A-Za-z][^\t\n\f\r />]*)")  # a tag name ends as HTML's tokenizer ends it
_VOID_TAGS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
     "source", "track", "wbr", "keygen"}
)  # fmt: skip
_FORMATTING_TAGS = frozenset(
    {"a", "b", "big", "code", "em", "font", "i", "nobr", "s", "small", "strike", "strong",
     "tt", "u"}
)  # fmt: skip
# HTML's "special" elements: an end tag of another element stops at them (it is ignored).
_SPECIAL = frozenset(
    {"address", "applet", "area", "article", "aside", "base", "basefont", "bgsound",
     "blockquote", "body", "br", "button", "caption", "center", "col", "colgroup", "dd",
     "details", "dir", "div", "dl", "dt", "embed", "fieldset", "figcaption", "figure", "footer",
     "form", "frame", "frameset", "h1", "h2", "h3", "h4", "h5", "h6", "head", "header",
     "hgroup", "hr", "html", "iframe", "img", "input", "keygen", "li", "link", "listing",
     "main", "marquee", "menu", "meta", "nav", "noembed", "noframes", "noscript", "object",
     "ol", "p", "param", "plaintext", "pre", "script", "search", "section", "select", "source",
     "style", "summary", "table", "tbody", "td", "template", "textarea", "tfoot", "th",
     "thead", "title", "tr", "track", "ul", "wbr", "xmp", "mi", "mo", "mn", "ms", "mtext",
     "annotation-xml", "foreignobject", "desc", "svg", "math"}
)  # fmt: skip
# Elements whose end tag closes what is open inside them, unless one of _SCOPE is between.
_POP_THROUGH = (
    _SPECIAL - {"applet", "marquee", "object", "template", "table", "caption", "td", "th", "tr",
                "tbody", "thead", "tfoot", "html", "body", "head", "select"}
) | {"svg", "math"}  # fmt: skip
_SCOPE = frozenset(
    {"applet", "caption", "html", "table", "td", "th", "marquee", "object", "template",
     "button", "ol", "ul", "select", "foreignobject", "desc", "title", "mi", "mo", "mn", "ms",
     "mtext", "annotation-xml"}
)  # fmt: skip
# Start tags that leave SVG/MathML for HTML (the parser pops the foreign elements).
_BREAKOUT = frozenset(
    {"b", "big", "blockquote", "body", "br", "center", "code", "dd", "div", "dl", "dt", "em",
     "embed", "h1", "h2", "h3", "h4", "h5", "h6", "head", "hr", "i", "img", "li", "listing",
     "menu", "meta", "nobr", "ol", "p", "pre", "ruby", "s", "small", "span", "strong",
     "strike", "sub", "sup", "table", "tt", "u", "ul", "var", "font"}
)  # fmt: skip


class PageRefused(ValueError):
    """The markup is not parsed: ``str(exc)`` says why, in words for a one-line error."""


def _check(html: str | bytes, max_depth: int | None) -> None:
    if max_depth is None:
        check_markup(html)
    else:  # lifted (tests of what lies behind the guard): both bounds
        check_markup(html, max_depth=max_depth, max_formatting=max_depth)


def check_markup(
    html: str | bytes, *, max_depth: int = MAX_DEPTH, max_formatting: int = MAX_FORMATTING
) -> None:
    """Refuse markup that the HTML parser would nest deeper than ``max_depth``, that leaves
    more than ``max_formatting`` formatting elements open, or that has more than
    :data:`MAX_TAGS` tags: one linear scan of the tags, no parsing, no content read.

    The scan is an upper bound of what the parser builds, never below it: every start tag
    opens an element (``<div/>`` too: the slash means nothing on an HTML element), except the
    void ones and self-closing tags inside SVG or MathML; an end tag closes only what the
    parser's rules certainly close (the element on top; or, for the elements whose end tag
    closes what is open inside them, down to it when nothing between limits the scope; for
    other elements, down to it when no "special" element is between), and is otherwise
    ignored, as the parser ignores an end tag of nothing open. Once the scan is unsure whether
    the parser left SVG (an HTML tag inside it, an end tag it did not follow), self-closing
    tags count as open until the SVG ends. Text that looks like a tag counts as one, in
    scripts, styles and comments too: whether the parser reads a ``<style>`` as raw text
    depends on where it stands (not inside ``<title>`` or ``<select>``, nor in SVG), and a
    scan that skipped more than the parser would let markup through unseen. Real pages nest
    about 25 deep and keep ``<`` out of their inline scripts."""
    text = html.decode("utf-8", "replace") if isinstance(html, bytes) else html
    tags = text.count("<")
    if tags <= min(max_depth, max_formatting):
        return  # too few tags to nest, or to clone, anything
    if tags > MAX_TAGS and len(_TAG.findall(text)) > MAX_TAGS:
        raise PageRefused(f"the page has more than {MAX_TAGS:,} tags")
    _Scan(text, max_depth, max_formatting).run()


class _Scan:
    """The state of :func:`check_markup`: the open elements (names), how many of them are SVG
    or MathML, whether the scan is unsure it is still inside them, the formatting elements
    left open (by name)."""

    def __init__(self, text: str, max_depth: int, max_formatting: int) -> None:
        self.text = text
        self.max_depth = max_depth
        self.max_formatting = max_formatting
        self.open: list[str] = []
        self.foreign = 0
        self.unsure = False
        self.formatting: dict[str, int] = {}
        self.formatting_total = 0

    def run(self) -> None:
        text = self.text
        pos = 0
        while (m := _TAG.search(text, pos)) is not None:
            pos = m.end()
            name = m.group(2).lower()
            if m.group(1):
                self._end(name)
                continue
            if self.foreign and name in _BREAKOUT:
                self.unsure = True
            if name in _VOID_TAGS:
                continue
            gt = text.find(">", pos)
            if gt > 0 and text[gt - 1] == "/" and self.foreign and not self.unsure:
                continue  # <path ... />: self-closing in SVG and MathML only
            self._open(name)

    def _open(self, name: str) -> None:
        self.open.append(name)
        if name in ("svg", "math"):
            self.foreign += 1
        if name in _FORMATTING_TAGS:
            self.formatting[name] = self.formatting.get(name, 0) + 1
            self.formatting_total += 1
            if self.formatting_total > self.max_formatting:
                raise PageRefused(
                    f"the page leaves more than {self.max_formatting} formatting elements open"
                )
        if len(self.open) > self.max_depth:
            raise PageRefused(f"the page nests its elements more than {self.max_depth} deep")

    def _end(self, name: str) -> None:
        if name in _FORMATTING_TAGS and self.formatting.get(name):
            self.formatting[name] -= 1  # its own end tag takes it off the list
            self.formatting_total -= 1
        if name in ("p", "br") and self.foreign:
            self.unsure = True  # </p> and </br> leave SVG for HTML
        stack = self.open
        if stack and stack[-1] == name:
            self._pop(1)
            return
        if name not in stack:
            self._unsure_if_foreign()
            return  # an end tag of nothing open: ignored
        at = len(stack) - 1 - stack[::-1].index(name)
        between = stack[at + 1 :]
        if name in _POP_THROUGH:
            closes = not any(e in _SCOPE for e in between)
        else:  # "any other end tag" (and the formatting ones, conservatively)
            closes = not any(e in _SPECIAL for e in between)
        if closes:
            self._pop(len(stack) - at)
        else:
            self._unsure_if_foreign()

    def _pop(self, n: int) -> None:
        for _ in range(n):
            if self.open.pop() in ("svg", "math"):
                self.foreign -= 1
        if not self.foreign:
            self.unsure = False

    def _unsure_if_foreign(self) -> None:
        if self.foreign:
            self.unsure = True  # the parser may have left SVG where the scan did not


# --- a post's own page: t.me/<username>/<id>?embed=1&mode=tme -----------------------------------


@dataclass(frozen=True, slots=True)
class EmbedPage:
    """What a post's embed page says. ``status``: ``found`` (``post`` is the post as the page
    shows it), ``not_found`` (the page said "Post not found": the post was deleted), or
    ``unknown`` (anything else; ``reason`` says what, in words)."""

    status: str
    post: Post | None = None
    reason: str | None = None
    capture: Raw | None = None  # the raw answer the page was read from (the client sets it)


_NOT_FOUND = "post not found"


def _embed_id(node: LexborNode) -> tuple[str, int] | None:
    """(lower-case username, id) of an embed page's post block: its ``data-post``, else the
    link of its date or of its footer (pages of 2018 have no ``data-post``: Thrita/Telegtools,
    Thrita.Telegtools.Test/TestData.cs)."""
    data_post = (node.attrs.get("data-post") or "").strip()
    name, _, num = data_post.rpartition("/")
    if name and num.isdigit():
        return name.lower(), int(num)
    for a in node.css(".tgme_widget_message_date, .tgme_widget_message_link a"):
        link = tme_link(a.attrs.get("href"))
        if link is not None and link[1] is not None:
            return link[0], link[1]
    return None


def parse_embed(
    html: str | bytes,
    *,
    username: str,
    message_id: int,
    channel_id: int,
    max_depth: int | None = None,
) -> EmbedPage:
    """Parse the embed page of post ``message_id`` of channel ``username`` (archived as
    ``channel_id``).

    Telegram answers a deleted post with ``<div class="tgme_widget_message_error">Post not
    found</div>`` (in a ``tgme_widget_message err_message`` block); an existing one with its
    block, as in a ``t.me/s`` page (docs/web-source.md, ../shared/TESTING.md). Only those two
    are believed: another error text ("Channel is private" and the like), a block of another
    post or channel, or a page without either is ``unknown``."""
    _check(html, max_depth)
    tree = LexborHTMLParser(html)
    want = username.lower().lstrip("@")
    error = tree.css_first(".tgme_widget_message_error")
    if error is not None:
        said = " ".join(error.text(deep=True).split())
        if said.lower() == _NOT_FOUND:
            return EmbedPage("not_found")
        return EmbedPage("unknown", reason=f'the post page said "{said[:80]}"')
    for node in tree.css("div.tgme_widget_message"):
        ident = _embed_id(node)
        if ident is None:
            continue
        name, msg_id = ident
        if (name, msg_id) != (want, message_id):
            return EmbedPage("unknown", reason=f"the post page shows post {name}/{msg_id}")
        view_id = _data_view_channel(node.attrs.get("data-view"))
        if view_id is not None and view_id != channel_id and not is_derived_id(channel_id):
            return EmbedPage("unknown", reason=f"the post page is of another channel ({view_id})")
        indexed = _Block(node)
        items = _item_ids(indexed, name)
        data_post = (node.attrs.get("data-post") or "").strip() or f"{name}/{msg_id}"
        post = _parse_block(indexed, name, channel_id, msg_id, data_post, items)
        if post is None:
            return EmbedPage("unknown", reason="the post page shows the post without its date")
        return EmbedPage("found", post=post)
    return EmbedPage("unknown", reason="the post page shows neither the post nor an error")
