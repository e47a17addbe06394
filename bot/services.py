"""What the handlers share: the archive, settings, access policy, delivery and search pages.

Created in ``post_init`` (:mod:`bot.app`) and kept in ``application.bot_data``; handlers
reach it with :func:`services`.
"""

from __future__ import annotations

import itertools
import logging
import sqlite3
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, cast

from telegram.ext import CallbackContext

from archiver.config import Settings
from archiver.query import Query, parse
from archiver.store.archive import Archive
from archiver.store.user_langs import set_seen_lang
from bot.access import AccessPolicy
from bot.delivery import Delivery
from bot.digests import PersonalDigests
from bot.i18n import Translate, pick, translator

log = logging.getLogger(__name__)

KEY = "telewatch"


@dataclass(frozen=True, slots=True)
class SearchPage:
    """A search behind ◀ ▶ buttons: its query, who made it where, and its result count."""

    query: str
    owner: int  # the user who searched
    chat: int  # the chat it was shown in: only that user, there, may turn its pages
    total: int | None = None  # results (None: more than the count's cap)


class SearchPages:
    """Searches behind the ◀ ▶ buttons (a button's data is limited to 64 bytes, so it holds
    a short key). Bounded; a button of a forgotten search says so."""

    def __init__(self, size: int = 2000) -> None:
        self.size = size
        self._ids = itertools.count(1)
        self._items: OrderedDict[int, SearchPage] = OrderedDict()

    def put(self, page: SearchPage) -> int:
        key = next(self._ids)
        self._items[key] = page
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return key

    def get(self, key: int) -> SearchPage | None:
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item


@dataclass
class Services:
    settings: Settings
    archive: Archive
    access: AccessPolicy
    delivery: Delivery | None = None
    digests: PersonalDigests | None = None
    pages: SearchPages = field(default_factory=SearchPages)
    owns_archive: bool = False
    # user id -> the language chosen with /lang: alerts to a private chat (its id is the
    # user's) are rendered in it without reading the archive on the hot path
    langs: dict[int, str] = field(default_factory=dict)
    # chat id -> the language seen for it (a user's client language, a group's first user's)
    seen_langs: dict[int, str] = field(default_factory=dict)
    unsaved_langs: set[int] = field(default_factory=set)  # seen, but not yet in the archive

    def chat_lang(self, chat: int) -> str:
        """The language of what is sent to ``chat`` unasked (alerts, summaries, digests): its
        /lang (a group's is an admin's), else the one seen for it, else English."""
        return self.langs.get(chat) or self.seen_langs.get(chat) or "en"

    def speak(self, chat: int) -> Translate:
        return translator(self.chat_lang(chat))

    async def seen(self, user: int, language_code: str | None, chat: int, private: bool) -> None:
        """An allowed user talked to the bot: keep their client's language for their private
        chat (updated when it changes), and for a group with none yet, the user's language
        (their /lang, else their client's): the group is theirs until an admin's /lang."""
        if private:
            if language_code is None:
                return  # Telegram leaves it out for some clients: keep what was seen
            lang = pick(None, language_code)
            if self.seen_langs.get(chat) == lang and chat not in self.unsaved_langs:
                return
            replace = True
        elif chat not in self.seen_langs or chat in self.unsaved_langs:
            lang = self.seen_langs.get(chat) or pick(self.langs.get(user), language_code)
            replace = False
        else:
            return
        self.seen_langs[chat] = lang  # used at once; kept in the archive when it can be
        try:
            await set_seen_lang(self.archive, chat, lang, replace=replace)
        except sqlite3.Error as exc:  # a busy or full archive must not refuse the command
            log.warning("the language seen for chat %d was not kept (%s): tried again when "
                        "it talks next", chat, exc)  # fmt: skip
            self.unsaved_langs.add(chat)
        else:
            self.unsaved_langs.discard(chat)

    def parse(self, text: str) -> Query:
        """A query whose ``since:``/``until:`` days are days in the display time zone."""
        return parse(text, self.settings.display.timezone.key)


def services(context: CallbackContext[Any, Any, Any, Any]) -> Services:
    return cast(Services, context.bot_data[KEY])
