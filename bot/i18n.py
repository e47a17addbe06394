"""The bot's languages: English, Ukrainian and Russian, from gettext catalogs.

The catalogs are the ``.po`` files in ``bot/locales/<lang>/LC_MESSAGES/messages.po`` (kept
in the repository, edited as text; ``pybabel extract -k _ -o messages.pot bot
archiver/digest.py`` lists the message ids: the archiver's digest takes a translator from
the bot, see :data:`HOOKED`), read once with Babel when first needed: no compiled ``.mo``
files to keep in step. A message id is the English text, with ``{name}`` fields filled in
after translation.

A user's language: the one they chose with ``/lang`` (kept in the archive, table
``user_langs``), else their Telegram client's ``language_code`` (kept in ``seen_langs`` when
they talk to the bot, for the alerts and digests sent them) when it is one of
:data:`LANGS`, else English. ``tests/bot/test_bot_i18n.py`` checks that every ``_("...")`` of
the bot has a translation in every catalog.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path

from babel.messages.pofile import read_po

log = logging.getLogger(__name__)

LANGS = ("en", "uk", "ru")
NAMES = {"en": "English", "uk": "Українська", "ru": "Русский"}
LOCALES = Path(__file__).parent / "locales"
# Archiver modules whose texts the bot translates through a ``_`` it passes in (the archiver
# does not import the bot): their ``_("...")`` ids are in the catalogs too.
HOOKED = (Path(__file__).parent.parent / "archiver" / "digest.py",)

Translate = Callable[[str], str]


def catalog_path(lang: str) -> Path:
    return LOCALES / lang / "LC_MESSAGES" / "messages.po"


@functools.cache
def messages(lang: str) -> dict[str, str]:
    """msgid -> msgstr of one language's catalog (empty translations left out)."""
    with catalog_path(lang).open("rb") as f:
        catalog = read_po(f, locale=lang)
    out = {str(m.id): str(m.string) for m in catalog if m.id and isinstance(m.string, str)}
    return {k: v for k, v in out.items() if v}


def translator(lang: str) -> Translate:
    """``_`` for ``lang``: the translation, or the English text when there is none."""
    table = messages(lang) if lang in LANGS else {}

    def _(text: str) -> str:
        return table.get(text, text)

    return _


def pick(chosen: str | None, language_code: str | None) -> str:
    """The language to speak: the user's choice, else their client's, else English."""
    if chosen in LANGS:
        return chosen
    code = (language_code or "").lower().split("-")[0]
    return code if code in LANGS else "en"
