"""Telegram's HTML parse mode, as strictly as the Bot API documents it, for the fake Bot API.

Source: Bot API, "Formatting options" -> "HTML style" (https://core.telegram.org/bots/api#html-style):

- only these tags: ``b strong i em u ins s strike del span class="tg-spoiler" tg-spoiler
  a href tg-emoji code pre blockquote [expandable]``;
- every ``<``, ``>`` and ``&`` that is not part of a tag or an entity must be escaped; numeric
  entities and only ``&lt; &gt; &amp; &quot;`` by name;
- the message is at most 4,096 characters after entity parsing (captions 1,024); an empty one
  is refused. The fake counts UTF-16 code units (as entity offsets are counted). The Bot API
  server (TDLib, td/telegram/MessageContent.cpp) checks a bot's text with ``utf8_length``,
  i.e. in code points, which is never more: the fake is the stricter of the two on purpose
  (an emoji counts 2 here, 1 there), so text it takes Telegram takes too.

Nesting ("Formatting options"): ``b i u s`` and spoilers can contain and be part of anything but
``pre`` and ``code``; ``blockquote`` cannot be nested; other entities cannot contain each other.
:func:`nesting_errors` checks those rules (Telegram's server quietly drops what breaks them, so
the fake does not refuse such text; tests assert the bot never writes it).

Error texts follow TDLib's ``parse_html`` (td/telegram/MessageEntity.cpp), which the Bot API
server returns after "Bad Request: can't parse entities: ".
"""

from __future__ import annotations

import re

MESSAGE_LIMIT = 4096
CAPTION_LIMIT = 1024

_TAGS = {
    "b": "b", "strong": "b", "i": "i", "em": "i", "u": "u", "ins": "u",
    "s": "s", "strike": "s", "del": "s", "span": "tg-spoiler", "tg-spoiler": "tg-spoiler",
    "a": "a", "tg-emoji": "tg-emoji", "code": "code", "pre": "pre", "blockquote": "blockquote",
}  # fmt: skip
_FORMATTING = {"b", "i", "u", "s", "tg-spoiler"}
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_ATTR = re.compile(r'\s*([a-zA-Z-]+)(?:\s*=\s*(?:"([^"]*)"|\'([^\']*)\'|([^\s>]+)))?')


class TelegramHtmlError(ValueError):
    pass


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _entity(text: str, i: int) -> tuple[str, int]:
    """The character of the entity at ``text[i] == '&'`` and the index after it."""
    end = text.find(";", i)
    if end < 0 or end - i > 10:
        raise TelegramHtmlError(f"Unescaped '&' at byte offset {_offset(text, i)}")
    name = text[i + 1 : end]
    if name.startswith("#"):
        digits = name[1:]
        try:
            code = int(digits[1:], 16) if digits[:1] in ("x", "X") else int(digits)
            return chr(code), end + 1
        except (ValueError, OverflowError):
            pass
    elif name in _NAMED:
        return _NAMED[name], end + 1
    raise TelegramHtmlError(f"Unsupported HTML entity at byte offset {_offset(text, i)}")


def _offset(text: str, i: int) -> int:
    return len(text[:i].encode("utf-8"))


def parse(text: str) -> tuple[str, list[tuple[str, int, int, dict[str, str]]]]:
    """The visible text and the entities (tag, start, end in characters, attributes);
    raises :class:`TelegramHtmlError` for markup Telegram refuses."""
    out: list[str] = []
    pos = 0  # characters of visible text so far
    stack: list[tuple[str, str, int, dict[str, str]]] = []  # (written name, tag, start, attrs)
    entities: list[tuple[str, int, int, dict[str, str]]] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "&":
            ch, i = _entity(text, i)
            out.append(ch)
            pos += 1
            continue
        if c != "<":
            out.append(c)
            pos += 1
            i += 1
            continue
        end = text.find(">", i)
        if end < 0:
            raise TelegramHtmlError(f"Unclosed start tag at byte offset {_offset(text, i)}")
        body = text[i + 1 : end]
        if body.startswith("/"):
            name = body[1:].strip().lower()
            if not stack:
                raise TelegramHtmlError(f"Unexpected end tag at byte offset {_offset(text, i)}")
            written, tag, start, attrs = stack.pop()
            if name != written:
                raise TelegramHtmlError(
                    f'Unmatched end tag at byte offset {_offset(text, i)}, expected "</{written}>",'
                    f' found "</{name}>"'
                )
            entities.append((tag, start, pos, attrs))
        else:
            m = re.match(r"([a-zA-Z-]+)", body)
            name = m.group(1).lower() if m else ""
            if name not in _TAGS:
                raise TelegramHtmlError(
                    f'Unsupported start tag "{name}" at byte offset {_offset(text, i)}'
                )
            attrs = {
                a.group(1).lower(): a.group(2) or a.group(3) or a.group(4) or ""
                for a in _ATTR.finditer(body[len(name) :])
                if a.group(1)
            }
            if name == "span" and attrs.get("class") != "tg-spoiler":
                raise TelegramHtmlError(
                    f'Tag "span" must have class "tg-spoiler" at byte offset {_offset(text, i)}'
                )
            if name == "a" and "href" not in attrs:
                attrs["href"] = ""
            stack.append((name, _TAGS[name], pos, attrs))
        i = end + 1
    if stack:
        raise TelegramHtmlError(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    return "".join(out), entities


def parse_html(text: str) -> str:
    """The visible text of ``text`` (leading and trailing blanks dropped, as Telegram does)."""
    return parse(text)[0].strip()


def nesting_errors(text: str) -> list[str]:
    """Breaches of Telegram's nesting rules in valid markup (see the module docstring)."""
    _, entities = parse(text)
    errors: list[str] = []
    for n, (tag, a, b, _) in enumerate(entities):
        for tag2, a2, b2, _ in entities[n + 1 :]:
            if b <= a2 or b2 <= a or a == b or a2 == b2:
                continue  # no characters in common
            inside = a2 <= a and b <= b2  # entities close inner first: tag inside tag2
            if not inside and not (a <= a2 and b2 <= b):
                errors.append(f"{tag} and {tag2} overlap")
            else:
                code = {tag, tag2} & {"code", "pre"}
                formatting = {tag, tag2} & _FORMATTING
                if (code and formatting) or not formatting:
                    errors.append(f"{tag} inside {tag2}")
    return errors
