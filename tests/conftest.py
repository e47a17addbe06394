"""Fixtures shared by the whole suite.

- ``archive``: a fresh archive in ``tmp_path`` (real SQLite, migrated), closed afterwards.
- ``make_post``: builds a :class:`~archiver.models.Post` with sensible defaults.
- ``make_channel``: upserts a channel into an archive (posts need their channel first).

Tests get the defaults (:data:`CHANNEL_ID`, :data:`CHANNEL_USERNAME`, :data:`T0`) through the
fixtures' own defaults; a post made with ``make_post(7, "text")`` is dated ``T0 + 7 minutes``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import pytest

from archiver.models import ChannelInfo, Post
from archiver.store.archive import Archive
from archiver.store.channels import ChannelRow, upsert_channel

pytest_plugins = ["pg"]  # a real PostgreSQL server for the backend tests (tests/pg.py)

CHANNEL_ID = -1001811111111  # marked id of the default test channel
CHANNEL_USERNAME = "vsaldo"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)  # the default post date


class MakePost(Protocol):
    def __call__(
        self,
        message_id: int = 1,
        text: str = "",
        *,
        channel_id: int = CHANNEL_ID,
        date: datetime | None = None,
        **fields: Any,
    ) -> Post: ...


def new_post(
    message_id: int = 1,
    text: str = "",
    *,
    channel_id: int = CHANNEL_ID,
    date: datetime | None = None,
    **fields: Any,
) -> Post:
    """A post of the default channel, dated ``T0 + message_id minutes`` unless given."""
    when = date if date is not None else T0 + timedelta(minutes=message_id)
    return Post(channel_id=channel_id, message_id=message_id, date=when, text=text, **fields)


@pytest.fixture
def make_post() -> MakePost:
    return new_post


MakeChannel = Callable[..., Awaitable[ChannelRow]]


@pytest.fixture
async def archive(tmp_path: Path) -> AsyncIterator[Archive]:
    """A new, migrated archive at ``tmp_path / "a.db"``, closed after the test."""
    a = await Archive.open(tmp_path / "a.db")
    try:
        yield a
    finally:
        await a.close()


@pytest.fixture
def make_channel(archive: Archive) -> MakeChannel:
    """``await make_channel(id=..., username=..., title=..., source="telethon")``; with no
    arguments, the default channel (``vsaldo``, :data:`CHANNEL_ID`)."""

    async def make(
        id: int = CHANNEL_ID,
        username: str | None = CHANNEL_USERNAME,
        title: str | None = "Test channel",
        *,
        source: str = "telethon",
        **fields: Any,
    ) -> ChannelRow:
        info = ChannelInfo(id=id, username=username, title=title, **fields)
        return await upsert_channel(archive, info, source=source)

    return make
