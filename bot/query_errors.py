"""Query errors in the user's language.

:class:`archiver.errors.QueryError` carries an English reason (the archiver does not
translate: the CLI and the web speak English) and the position it points at. The bot knows
every reason the parser (:mod:`archiver.query`) writes: each pattern below names the fields it
takes from the reason, and the template it is translated to keeps them, so the message has
the same structure in every language (the reason, the position, the query with a caret).
A reason no pattern knows stays English (``tests/bot/test_bot_texts.py`` makes every
reason of the parser known).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from archiver.errors import QueryError
from bot.format import esc
from bot.i18n import Translate

_Template = Callable[[Translate], str]
_Table = tuple[tuple[re.Pattern[str], _Template], ...]

# (the English reason as archiver/query.py writes it, the msgid it is translated by)
REASONS: _Table = tuple(
    (re.compile(pattern), template)
    for pattern, template in (
        (r"unbalanced quote", lambda _: _("unbalanced quote")),
        (
            r"too many terms \((?P<n>\d+); at most (?P<max>\d+)\): split the query",
            lambda _: _("too many terms ({n}; at most {max}): split the query"),
        ),
        (
            r"nothing to search for in '(?P<text>.*)'",
            lambda _: _("nothing to search for in '{text}'"),
        ),
        (r"unbalanced parenthesis '\)'", lambda _: _("unbalanced parenthesis ')'")),
        (r"unbalanced parenthesis '\('", lambda _: _("unbalanced parenthesis '('")),
        (
            r"(?P<op>OR|AND) needs a term on both sides",
            lambda _: _("{op} needs a term on both sides"),
        ),
        (r"expected a term", lambda _: _("expected a term")),
        (
            r"nested too deep \(at most (?P<max>\d+) levels of \( and NOT\)",
            lambda _: _("nested too deep (at most {max} levels of ( and NOT)"),
        ),
        (r"(?P<op>NOT|'-') needs a term after it", lambda _: _("{op} needs a term after it")),
        (r"empty parentheses", lambda _: _("empty parentheses")),
        (r"empty phrase", lambda _: _("empty phrase")),
        (
            r"unknown filter '(?P<name>[^']*):' \(use (?P<filters>[^;]*); put it in quotes to "
            r'search for the text "(?P<value>.*)"\)',
            lambda _: _(
                "unknown filter '{name}:' (use {filters}; put it in quotes to search for the "
                'text "{value}")'
            ),
        ),
        (
            r"a prefix\* must be a single word, not '(?P<value>.*)'",
            lambda _: _("a prefix* must be a single word, not '{value}'"),
        ),
        (
            r"a prefix\* needs at least (?P<n>\d+) letters",
            lambda _: _("a prefix* needs at least {n} letters"),
        ),
        (r"(?P<name>\w+): needs a value", lambda _: _("{name}: needs a value")),
        (
            r"(?P<name>since|until): expected YYYY-MM-DD, got '(?P<raw>.*)'",
            lambda _: _("{name}: expected YYYY-MM-DD, got '{raw}'"),
        ),
        (
            r"(?P<name>is|has): expected one of (?P<values>[^,]+(?:, [^,]+)*), got '(?P<raw>.*)'",
            lambda _: _("{name}: expected one of {values}, got '{raw}'"),
        ),
        (r"channel: (?P<error>.*)", lambda _: _("channel: {error}")),
    )
)


# (the English message of archiver.channels.BadChannelRef, the msgid it is translated by)
CHANNEL_REFS: _Table = tuple(
    (re.compile(pattern), template)
    for pattern, template in (
        (
            r"'(?P<text>.*)' is not a channel id: use the bare id \(1811111111\) or the marked id "
            r"\(-1001811111111\)",
            lambda _: _(
                "'{text}' is not a channel id: use the bare id (1811111111) or the marked id "
                "(-1001811111111)"
            ),
        ),
        (
            r"'(?P<text>.*)': (?P<n>\d+) is not a message id",
            lambda _: _("'{text}': {n} is not a message id"),
        ),
        (
            r"'(?P<text>.*)': (?P<n>\d+) is not a channel id",
            lambda _: _("'{text}': {n} is not a channel id"),
        ),
        (
            r"'(?P<text>.*)' is not a channel: use a username \(vsaldo\), an id "
            r"\(-1001811111111\) or a link \(https://t\.me/vsaldo\)",
            lambda _: _(
                "'{text}' is not a channel: use a username (vsaldo), an id (-1001811111111) "
                "or a link (https://t.me/vsaldo)"
            ),
        ),
    )
)


def _said(
    text: str, table: tuple[tuple[re.Pattern[str], _Template], ...], _: Translate
) -> str | None:
    for pattern, template in table:
        m = pattern.fullmatch(text)
        if m is not None:
            fields = m.groupdict()
            if "error" in fields:  # channel: a bad channel reference, itself translated
                fields["error"] = channel_ref_reason(fields["error"], _)
            return template(_).format(**fields)
    return None


def channel_ref_reason(text: str, _: Translate) -> str:
    """A bad channel reference's message in the language of ``_`` (English when unknown)."""
    said = _said(text, CHANNEL_REFS, _)
    return text if said is None else said


def reason(exc: QueryError, _: Translate) -> str | None:
    """The reason of ``exc`` in the language of ``_``, or None when no pattern knows it."""
    return _said(exc.reason, REASONS, _)


def query_error_html(exc: QueryError, _: Translate) -> str:
    """The reply to a query that does not parse: the reason at its position, and the query
    with a caret under that position (when it fits on one line)."""
    said = reason(exc, _)
    line = str(exc) if said is None else _("{reason} at {position}").format(
        reason=said, position=exc.position)  # fmt: skip
    text = f"⚠️ {esc(line)}"
    if exc.query and "\n" not in exc.query and len(exc.query) <= 200:
        caret = " " * max(exc.position - 1, 0) + "^"
        text += f"\n<code>{esc(exc.query)}</code>\n<code>{caret}</code>"
    return text
