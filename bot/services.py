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
from archiver.store.archive import Archive
from bot.access import AccessPolicy
from bot.delivery import Delivery

KEY = "telewatch"


class SearchPages:
    """Queries behind the ◀ ▶ buttons (a button's data is limited to 64 bytes, so it holds
    a short key). Bounded; a button of a forgotten search says so."""

    def __init__(self, size: int = 2000) -> None:
        self.size = size
        self._ids = itertools.count(1)
        self._items: OrderedDict[int, tuple[str, int]] = OrderedDict()

    def put(self, query: str, owner: int) -> int:
        key = next(self._ids)
        self._items[key] = (query, owner)
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return key

    def get(self, key: int) -> tuple[str, int] | None:
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
    pages: SearchPages = field(default_factory=SearchPages)
    owns_archive: bool = False


def services(context: CallbackContext[Any, Any, Any, Any]) -> Services:
    return cast(Services, context.bot_data[KEY])
