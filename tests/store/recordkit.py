"""Helpers of the record's integration tests (tests/store/test_record_*.py): real Telethon
messages as a server sends them, a Telegram Desktop export written to a file, and readers of
what the archive holds for one post (versions, events, alerts)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from conftest import CHANNEL_ID, T0
from fakes.telethon_client import roundtrip
from telethon.tl import types

from archiver.models import Post
from archiver.sources.telethon_convert import message_to_post
from archiver.store.archive import Archive

BARE = 1811111111  # CHANNEL_ID without its -100 mark


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def photo(photo_id: int) -> Any:
    """A channel photo as Telegram sends it: the id is its identity (a new upload, a new id)."""
    return types.MessageMediaPhoto(
        photo=types.Photo(
            id=photo_id,
            access_hash=photo_id * 7,
            file_reference=b"\x01",
            date=T0,
            sizes=[types.PhotoSize(type="x", w=1280, h=720, size=123456)],
            dc_id=2,
        )
    )


def tl(message_id: int, text: str, **fields: Any) -> Post:
    """A real Telethon ``Message`` of the default channel, serialised and parsed back (what a
    server sends), converted by the Telethon source's own converter."""
    fields.setdefault("date", T0)
    msg = types.Message(id=message_id, peer_id=types.PeerChannel(BARE), message=text, **fields)
    return message_to_post(roundtrip(msg))


def write_export(path: Path, messages: list[dict[str, Any]]) -> Path:
    """A single-channel Telegram Desktop export (result.json) of the default channel."""
    data = {"name": "Test channel", "type": "public_channel", "id": BARE, "messages": messages}
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def export_message(message_id: int, parts: list[Any], **fields: Any) -> dict[str, Any]:
    """One exported message; ``parts`` as Telegram Desktop writes ``text_entities`` (strings
    for plain runs, ``{"type", "text", "href"?}`` for the rest)."""
    entities = [p if isinstance(p, dict) else {"type": "plain", "text": p} for p in parts]
    m: dict[str, Any] = {
        "id": message_id,
        "type": "message",
        "date": T0.strftime("%Y-%m-%dT%H:%M:%S"),
        "date_unixtime": str(int(T0.timestamp())),
        "from": "Test channel",
        "from_id": f"channel{BARE}",
        "text": parts if len(parts) != 1 or not isinstance(parts[0], str) else parts[0],
        "text_entities": entities,
    }
    m.update(fields)
    return m


def unixtime(when: datetime) -> str:
    return str(int(when.timestamp()))


async def versions(
    archive: Archive, message_id: int, channel_id: int = CHANNEL_ID
) -> list[tuple[str, str]]:
    """(text, source) of every version of a post, in the order observed."""
    rows = await archive.fetchall(
        "SELECT v.text, v.source FROM versions v JOIN posts p ON p.id = v.post_id"
        " WHERE p.channel_id = ? AND p.message_id = ? ORDER BY v.id",
        (channel_id, message_id),
    )
    return [(r[0], r[1]) for r in rows]


async def raws(archive: Archive, message_id: int) -> list[str | None]:
    rows = await archive.fetchall(
        "SELECT v.raw FROM versions v JOIN posts p ON p.id = v.post_id"
        " WHERE p.channel_id = ? AND p.message_id = ? ORDER BY v.id",
        (CHANNEL_ID, message_id),
    )
    return [r[0] for r in rows]


async def current_index(archive: Archive, message_id: int) -> int:
    """1-based position of the current version among the versions in observed order."""
    rows = await archive.fetchall(
        "SELECT v.id = p.current_version_id FROM versions v JOIN posts p ON p.id = v.post_id"
        " WHERE p.channel_id = ? AND p.message_id = ? ORDER BY v.id",
        (CHANNEL_ID, message_id),
    )
    flags = [bool(r[0]) for r in rows]
    assert flags.count(True) == 1, flags
    return flags.index(True) + 1


async def post_state(archive: Archive, message_id: int) -> dict[str, Any]:
    row = await archive.fetchone(
        "SELECT state, deleted_at, deleted_how, deleted_evidence, version_count FROM posts"
        " WHERE channel_id = ? AND message_id = ?",
        (CHANNEL_ID, message_id),
    )
    assert row is not None
    return dict(zip(row.keys(), tuple(row), strict=True))


async def events(archive: Archive, message_id: int) -> list[tuple[Any, ...]]:
    """(id, kind, version index, source, how, evidence, parts) of a post's events, in order."""
    post = await archive.fetchone(
        "SELECT id FROM posts WHERE channel_id = ? AND message_id = ?", (CHANNEL_ID, message_id)
    )
    assert post is not None
    ids = [
        r[0]
        for r in await archive.fetchall(
            "SELECT id FROM versions WHERE post_id = ? ORDER BY id", (post[0],)
        )
    ]
    rows = await archive.fetchall(
        "SELECT id, kind, version_id, source, how, evidence, parts FROM post_events"
        " WHERE post_id = ? ORDER BY id",
        (post[0],),
    )
    return [
        (r[0], r[1], ids.index(r[2]) + 1 if r[2] in ids else None, r[3], r[4], r[5], r[6])
        for r in rows
    ]


async def kinds(archive: Archive, message_id: int) -> list[str]:
    return [e[1] for e in await events(archive, message_id)]


async def outbox(archive: Archive) -> list[tuple[int, str, int, list[str], int]]:
    """(message id, kind, recipient, rules, event id) of every alert, in queue order."""
    rows = await archive.fetchall(
        "SELECT p.message_id, a.kind, a.recipient, a.rules, a.event_id FROM alerts a"
        " JOIN posts p ON p.id = a.post_id ORDER BY a.id"
    )
    return [(r[0], r[1], r[2], json.loads(r[3]), r[4]) for r in rows]


async def told(archive: Archive, kind: str) -> list[int]:
    """Recipients of the alerts of one kind, in queue order."""
    return [r[2] for r in await outbox(archive) if r[1] == kind]
