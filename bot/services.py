"""What the handlers share: the archive, settings, access policy, delivery and search pages.

Created in ``post_init`` (:mod:`bot.app`) and kept in ``application.bot_data``; handlers
reach it with :func:`services`.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, cast

from telegram.ext import CallbackContext

from archiver.config import Settings
from archiver.query import Query, parse
from archiver.store.archive import Archive
from bot.access import AccessPolicy
from bot.delivery import Delivery
from bot.digests import PersonalDigests

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

    def parse(self, text: str) -> Query:
        """A query whose ``since:``/``until:`` days are days in the display time zone."""
        return parse(text, self.settings.display.timezone.key)


def services(context: CallbackContext[Any, Any, Any, Any]) -> Services:
    return cast(Services, context.bot_data[KEY])
