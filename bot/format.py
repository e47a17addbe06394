"""HTML for Telegram: escaping, styled spans, and splitting long replies without breaking markup.

Every piece of user or post text goes through :func:`esc` (or :func:`styled`, which escapes).
Telegram allows 4096 characters per message; lengths here are counted in UTF-16 code units of
the HTML source, which is never less than what Telegram counts after parsing, so a piece that
fits here fits there.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

MAX_MESSAGE = 4096
MAX_CAPTION = 1024

Span = tuple[int, int]

_TOKEN = re.compile(r"<[^<>]*>|&#?\w+;|[^<&]+|[<&]")
_TAG = re.compile(r"<(/?)([a-zA-Z-]+)")


def esc(text: object) -> str:
    """Escape text for Telegram's HTML parse mode."""
    return html.escape(str(text), quote=False)


def attr(text: str) -> str:
    """Escape a value for an HTML attribute (an ``href``)."""
    return html.escape(text, quote=True)


def u16len(text: str) -> int:
    """Length in UTF-16 code units, as Telegram counts."""
    return len(text) + sum(1 for c in text if ord(c) > 0xFFFF)


def _fit(text: str, room: int) -> int:
    """How many characters of ``text`` fit in ``room`` UTF-16 code units."""
    used = 0
    for i, c in enumerate(text):
        used += 2 if ord(c) > 0xFFFF else 1
        if used > room:
            return i
    return len(text)


def local_time(dt: datetime | None, tz: ZoneInfo) -> str:
    """A UTC datetime in the display time zone, e.g. ``2024-05-01 14:03 EEST``."""
    if dt is None:
        return "-"
    return dt.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z").strip()


def link(url: str, label: str | None = None) -> str:
    return f'<a href="{attr(url)}">{esc(label or url)}</a>'


# ---------------------------------------------------------------------------- styled text


def merge_spans(spans: Iterable[Span]) -> list[Span]:
    out: list[Span] = []
    for a, b in sorted(spans):
        if b <= a:
            continue
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def styled(text: str, styles: dict[str, Sequence[Span]]) -> str:
    """``text`` escaped, with each tag (``b``, ``s``, ``u`` ...) around its spans.

    Overlapping spans of different tags are fine: every run of characters with the same set
    of tags is written as its own properly nested group, so the markup is always valid.
    """
    if not text:
        return ""
    marks: list[set[str]] = [set() for _ in text]
    for tag, spans in styles.items():
        for a, b in spans:
            for i in range(max(0, a), min(len(text), b)):
                marks[i].add(tag)
    out: list[str] = []
    start = 0
    order = sorted(styles)
    for i in range(1, len(text) + 1):
        if i == len(text) or marks[i] != marks[start]:
            tags = [t for t in order if t in marks[start]]
            out.append("".join(f"<{t}>" for t in tags))
            out.append(esc(text[start:i]))
            out.append("".join(f"</{t}>" for t in reversed(tags)))
            start = i
    return "".join(out)


def truncate(text: str, spans: Sequence[Span], limit: int) -> tuple[str, list[Span]]:
    """At most ``limit`` characters of ``text`` (cut at a space when one is near, with an
    ellipsis), and the spans that still fall inside."""
    if len(text) <= limit:
        return text, list(spans)
    cut = max(limit - 1, 0)
    space = text.rfind(" ", 0, cut)
    if space > cut * 0.8:
        cut = space
    clipped = [(a, min(b, cut)) for a, b in spans if a < cut]
    return text[:cut].rstrip() + "…", clipped


# ---------------------------------------------------------------------------- splitting


def split_html(text: str, limit: int = MAX_MESSAGE) -> list[str]:
    """Split HTML into pieces of at most ``limit`` UTF-16 units, preferring line breaks,
    then spaces. Tags open at a cut are closed at its end and reopened in the next piece;
    entities (``&amp;``) and tags are never cut."""
    if u16len(text) <= limit:
        return [text] if text else []
    pieces: list[str] = []
    cur: list[str] = []
    cur_len = 0
    stack: list[tuple[str, str]] = []  # (name, the opening tag)

    def closing() -> str:
        return "".join(f"</{name}>" for name, _ in reversed(stack))

    def flush() -> None:
        nonlocal cur, cur_len
        body = "".join(cur).rstrip("\n")
        if body.strip() and _visible(body):
            pieces.append(body + closing())
        reopen = "".join(tag for _, tag in stack)
        cur, cur_len = [reopen], u16len(reopen)

    for tok in _TOKEN.findall(text):
        if tok.startswith("<") and len(tok) > 1:
            m = _TAG.match(tok)
            name = m.group(2).lower() if m else ""
            closing_tag = bool(m and m.group(1))
            extra = 0 if closing_tag else u16len(f"</{name}>")
            if cur_len + u16len(tok) + extra + u16len(closing()) > limit:
                flush()
            cur.append(tok)
            cur_len += u16len(tok)
            if closing_tag:
                for i in range(len(stack) - 1, -1, -1):
                    if stack[i][0] == name:
                        del stack[i]
                        break
            elif name:
                stack.append((name, tok))
            continue
        if tok.startswith("&"):
            if cur_len + u16len(tok) + u16len(closing()) > limit:
                flush()
            cur.append(tok)
            cur_len += u16len(tok)
            continue
        rest = tok
        while rest:
            room = limit - cur_len - u16len(closing())
            if u16len(rest) <= room:
                cur.append(rest)
                cur_len += u16len(rest)
                break
            n = _fit(rest, max(room, 0))
            cut = rest.rfind("\n", 0, n)
            if cut <= 0:
                cut = rest.rfind(" ", 0, n)
            if cut <= 0:
                cut = n
            if cut <= 0 and cur_len > u16len("".join(tag for _, tag in stack)):
                flush()
                continue
            cut = max(cut, 1)
            cur.append(rest[:cut])
            cur_len += u16len(rest[:cut])
            rest = rest[cut:].lstrip(" \n") if cut < len(rest) else ""
            flush()
    tail = "".join(cur)
    if tail.strip() and _visible(tail):
        pieces.append(tail)
    return pieces


def _visible(fragment: str) -> bool:
    return bool(re.sub(r"<[^<>]*>", "", fragment).strip())


def pack(blocks: Sequence[str], limit: int = MAX_MESSAGE, sep: str = "\n\n") -> list[str]:
    """Join well-formed HTML blocks into as few messages as fit; a block too long for one
    message is split with :func:`split_html`."""
    out: list[str] = []
    cur = ""
    for block in blocks:
        if not block:
            continue
        joined = cur + sep + block if cur else block
        if u16len(joined) <= limit:
            cur = joined
            continue
        if cur:
            out.append(cur)
        if u16len(block) <= limit:
            cur = block
        else:
            parts = split_html(block, limit)
            out.extend(parts[:-1])
            cur = parts[-1] if parts else ""
    if cur:
        out.append(cur)
    return out
