"""Shared helpers for the bot tests: settings, a matcher, alerts through the real ingest
path, and a running bot (a real PTB Application over HTTP against the fake Bot API).

Kept out of a conftest on purpose: ``tests/bot`` has no ``__init__`` (a package named ``bot``
would shadow the real one), and the suite imports the top-level conftest by name.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fakes.botapi import TOKEN, Call, FakeBotApi

from archiver.config import BotSettings, DisplaySettings, Settings, StorageSettings
from archiver.models import ChannelInfo, Post, Rule
from archiver.query import Doc, matches, parse
from archiver.store.archive import Archive
from archiver.store.channels import upsert_channel
from archiver.store.deletions import mark_deleted
from archiver.store.ingest import ingest
from bot.app import BotOptions, BotRunner
from bot.delivery import Limits, RetryPolicy

os.environ["NO_PROXY"] = "127.0.0.1,localhost"
os.environ["no_proxy"] = "127.0.0.1,localhost"
# PTB 22 warns (an error under our filterwarnings) when RetryAfter.retry_after is an int;
# opting in to timedelta values is what PTB asks for. bot.delivery handles both.
os.environ["PTB_TIMEDELTA"] = "true"

ADMIN = 1001
MEMBER = 1002
STRANGER = 1003
OTHER_MEMBER = 1004
GROUP = -1009876543210
OTHER_GROUP = -1005555555555
CHANNEL = -1001811111111
CHANNEL_TITLE = "Salt & Pepper <News>"
KYIV = ZoneInfo("Europe/Kyiv")
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

# Fast and deterministic: no back-off, limits out of the way, short time-outs.
FAST = BotOptions(
    poll_timeout=1,
    limits=Limits(overall_per_second=10_000, chat_interval=0.0, group_per_minute=10_000),
    retry=RetryPolicy(max_attempts=3, base_seconds=0),
    send_timeout=0.5,
    stop_grace=2.0,
)

RULES = (Rule(name="war", query="война", notify=(MEMBER,)),)


def make_settings(db: Path, api: FakeBotApi, **bot: Any) -> Settings:
    fields: dict[str, Any] = {
        "token": TOKEN,
        "api_base_url": api.api_base_url,
        "admins": frozenset({ADMIN}),
        "allowed_users": frozenset({MEMBER, OTHER_MEMBER}),
        "allowed_chats": frozenset({GROUP}),
        "export_cap": 3,
        "poll_seconds": 0.05,
        "max_attempts": 3,
    }
    fields.update(bot)
    return Settings(
        storage=StorageSettings(path=db),
        bot=BotSettings(**fields),
        display=DisplaySettings(KYIV),
        rules=RULES,
    )


class Matcher:
    """A simple matcher for tests: rule name -> (query, recipients)."""

    def __init__(self, rules: dict[str, tuple[str, Sequence[int]]]) -> None:
        self.rules = {n: (parse(q), list(r)) for n, (q, r) in rules.items()}

    def match(self, doc: Doc, kind: str) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for name, (query, recipients) in self.rules.items():
            if matches(query.root, doc):
                for r in recipients:
                    out.setdefault(r, []).append(name)
        return out

    def wants(self, rule_name: str, kind: str) -> bool:
        return rule_name in self.rules


async def seed_channel(archive: Archive, channel_id: int = CHANNEL, **info: Any) -> None:
    fields: dict[str, Any] = {"username": "saltpepper", "title": CHANNEL_TITLE}
    fields.update(info)
    await upsert_channel(archive, ChannelInfo(id=channel_id, **fields), source="telethon")


def post(message_id: int, text: str, *, channel_id: int = CHANNEL, **fields: Any) -> Post:
    return Post(
        channel_id=channel_id,
        message_id=message_id,
        date=T0 + timedelta(minutes=message_id),
        text=text,
        **fields,
    )


async def queue_alerts(
    archive: Archive,
    texts: Sequence[str],
    recipients: Sequence[int] = (MEMBER,),
    *,
    first_id: int = 1,
    query: str = "война",
) -> int:
    """Ingest posts through the real path with a matcher alerting ``recipients``; returns
    how many alerts were queued."""
    archive.matcher = Matcher({"war": (query, recipients)})
    posts = [post(first_id + i, t) for i, t in enumerate(texts)]
    stats = await ingest(archive, posts, source="telethon", alerts=True)
    return stats.alerts_queued


async def edit_post(archive: Archive, message_id: int, text: str, *, hours: int = 1) -> int:
    p = replace(post(message_id, text), edit_date=T0 + timedelta(hours=hours))
    return (await ingest(archive, [p], source="telethon", alerts=True)).alerts_queued


async def delete_post(archive: Archive, message_id: int) -> int:
    return await mark_deleted(archive, CHANNEL, [message_id], how="live", alerts=True)


async def alert_rows(archive: Archive) -> list[dict[str, Any]]:
    rows = await archive.fetchall("SELECT * FROM alerts ORDER BY id")
    return [dict(r) for r in rows]


@dataclass
class Harness:
    api: FakeBotApi
    archive: Archive
    settings: Settings
    runner: BotRunner
    stop: asyncio.Event
    wake: asyncio.Event
    task: asyncio.Task[None]

    async def send(
        self,
        user_id: int,
        text: str,
        *,
        chat_id: int | None = None,
        language_code: str | None = None,
    ) -> list[Call]:
        """Send a message as ``user_id`` and return the bot's answers once it handled it."""
        since = len(self.api.calls)
        update_id = self.api.push_message(
            user_id, text, chat_id=chat_id, language_code=language_code
        )
        await self.settle(update_id)
        return self.replies(since)

    async def press(
        self, user_id: int, data: str, message: dict[str, Any] | None = None
    ) -> list[Call]:
        since = len(self.api.calls)
        update_id = self.api.push_callback(user_id, data, message)
        await self.settle(update_id)
        return [c for c in self.api.calls[since:] if c.method != "getUpdates"]

    async def settle(self, update_id: int) -> None:
        await self.api.wait_fetched(update_id)
        await asyncio.wait_for(self.runner.app.update_queue.join(), 10)

    def replies(self, since: int) -> list[Call]:
        return [
            c
            for c in self.api.calls[since:]
            if c.method in ("sendMessage", "sendDocument", "editMessageText") and c.ok
        ]


@asynccontextmanager
async def fake_api() -> AsyncIterator[FakeBotApi]:
    api = FakeBotApi()
    await api.start()
    try:
        yield api
    finally:
        await api.close()


@asynccontextmanager
async def running_bot(
    api: FakeBotApi,
    archive: Archive | None,
    db: Path,
    *,
    options: BotOptions = FAST,
    **bot: Any,
) -> AsyncIterator[Harness]:
    """The bot running in this event loop until the block ends (then stopped cleanly)."""
    settings = make_settings(db, api, **bot)
    stop, wake = asyncio.Event(), asyncio.Event()
    runner = BotRunner(settings, archive=archive, wake=wake, options=options)
    task = asyncio.create_task(runner.run(stop))
    started = asyncio.create_task(runner.started.wait())
    done, _ = await asyncio.wait({task, started}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        started.cancel()
        await task  # raises what went wrong
    assert started in done, "the bot did not start within 10 s"
    svc_archive = runner.app.bot_data["telewatch"].archive
    try:
        yield Harness(api, svc_archive, settings, runner, stop, wake, task)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert api.misnested == [], api.misnested[:3]  # markup Telegram would partly drop
