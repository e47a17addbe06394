"""What the web source's tests share: settings, channel configs, archive queries, matchers."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fakes.tme import T0, FakeChannel, render_page

from archiver.channels import parse_ref
from archiver.config import Backfill, ChannelConfig, WebSettings
from archiver.models import marked_id
from archiver.store.archive import Archive

BARE = 1811111111
CID = marked_id(BARE)
NOW = T0 + timedelta(days=30)


def settings(**kw: Any) -> WebSettings:
    base: dict[str, Any] = {"base_url": "https://t.me", "delay_seconds": 0.0, "max_retries": 2}
    return WebSettings(**(base | kw))


def web(username: str, backfill: Backfill | None = None) -> ChannelConfig:
    return ChannelConfig(
        ref=parse_ref(username), source="web", backfill=backfill or Backfill("all")
    )


async def texts(archive: Archive, channel_id: int = CID) -> dict[int, str]:
    rows = await archive.fetchall(
        "SELECT p.message_id, v.text FROM posts p JOIN versions v ON v.id = p.current_version_id"
        " WHERE p.channel_id = ? ORDER BY p.message_id",
        (channel_id,),
    )
    return {r[0]: r[1] for r in rows}


async def deleted(archive: Archive, channel_id: int = CID) -> dict[int, str]:
    """Posts confirmed deleted, and how."""
    rows = await archive.fetchall(
        "SELECT message_id, deleted_how FROM posts WHERE channel_id = ? AND deleted_at IS NOT NULL",
        (channel_id,),
    )
    return {r[0]: r[1] for r in rows}


async def states(archive: Archive, channel_id: int = CID) -> dict[int, str]:
    """Every post's deletion state (present, missing, deleted, restored)."""
    rows = await archive.fetchall(
        "SELECT message_id, state FROM posts WHERE channel_id = ? ORDER BY message_id",
        (channel_id,),
    )
    return {r[0]: r[1] for r in rows}


async def versions(archive: Archive, message_id: int, channel_id: int = CID) -> int:
    row = await archive.fetchone(
        "SELECT count(*) FROM versions v JOIN posts p ON p.id = v.post_id"
        " WHERE p.channel_id = ? AND p.message_id = ?",
        (channel_id, message_id),
    )
    return int(row[0]) if row is not None else 0


async def alert_kinds(archive: Archive) -> list[tuple[int, str]]:
    rows = await archive.fetchall(
        "SELECT p.message_id, a.kind FROM alerts a JOIN posts p ON p.id = a.post_id ORDER BY a.id"
    )
    return [(r[0], r[1]) for r in rows]


class EveryPost:
    """A matcher whose one rule matches every post: recipient 42, rule "all"."""

    def match(self, doc: Any, kind: str) -> dict[int, list[str]]:
        return {42: ["all"]}

    def wants(self, rule_name: str, kind: str) -> bool:
        return True


class WordRule:
    """A matcher with one rule, "word", matching posts that contain the word."""

    def __init__(self, word: str) -> None:
        self.word = word

    def match(self, doc: Any, kind: str) -> dict[int, list[str]]:
        return {42: ["word"]} if self.word in doc.words else {}

    def wants(self, rule_name: str, kind: str) -> bool:
        return True


def page_html(ch: FakeChannel, before: int | None) -> str:
    return render_page(ch, ch.window(before), before)
