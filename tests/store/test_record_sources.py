"""The record against how the real sources see the same post (issue 13, adversarial review):
re-reading a post through another source, or again, must not fabricate versions; an old
copy must not become current; one batch may carry the same post twice.

Each source shows a post its own way: Telegram Desktop's export keeps only entities that do
not overlap an earlier one (``ParseText`` in tdesktop's export/data/export_data.cpp skips an
entity whose ``start < offset`` of the text written so far), writes service messages with an
empty text, and names media by file path; the web preview renders service messages as words
("Channel created") and names no media; Telethon gives every entity and media ids."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import CHANNEL_ID, T0, MakeChannel
from telethon.tl import types

from archiver.models import Post, Rule
from archiver.rules import RuleLoader
from archiver.sources.export import import_file
from archiver.sources.web.page import parse_page
from archiver.store.archive import Archive
from archiver.store.deletions import confirm_deleted
from archiver.store.ingest import ingest
from store.recordkit import (
    at,
    current_index,
    events,
    export_message,
    kinds,
    outbox,
    post_state,
    tl,
    told,
    versions,
    write_export,
)

HERE = Path(__file__).resolve()
ROOT = HERE.parents[2]
SAMPLES = Path(os.environ.get("TELEWATCH_SAMPLES", HERE.parents[3] / "shared" / "samples"))
RULES = [Rule("evac", "эвакуация", notify=(1, 2))]


@pytest.fixture
async def channel(archive: Archive, make_channel: MakeChannel) -> None:
    await make_channel()
    RuleLoader(RULES).install(archive)


def post(text: str, *, edited: int | None = None, mid: int = 7) -> Post:
    return Post(CHANNEL_ID, mid, T0, text, edit_date=at(edited) if edited is not None else None)


# ---------------------------------------------------------------------------- export then Telethon

NESTED = [
    pytest.param(
        "Эвакуация: маршрут",
        [
            types.MessageEntityBold(offset=0, length=9),
            types.MessageEntityTextUrl(offset=0, length=9, url="https://example.org/route"),
        ],
        [{"type": "bold", "text": "Эвакуация"}, ": маршрут"],
        [
            types.MessageEntityBold(offset=0, length=9),
            types.MessageEntityTextUrl(offset=0, length=9, url="https://example.org/route-2"),
        ],
        "links",
        id="bold-link",
    ),
    pytest.param(
        "Цитата: эвакуация отменена",
        [
            types.MessageEntityBlockquote(offset=0, length=26),
            types.MessageEntityBold(offset=8, length=9),
        ],
        [{"type": "blockquote", "text": "Цитата: эвакуация отменена"}],
        [
            types.MessageEntityBlockquote(offset=0, length=26),
            types.MessageEntityItalic(offset=8, length=9),
        ],
        "fmt",
        id="bold-in-quote",
    ),
]


@pytest.mark.usefixtures("channel")
@pytest.mark.parametrize(("text", "entities", "exported", "edited", "part"), NESTED)
async def test_an_export_that_dropped_nested_entities_is_not_edited_by_telethon(
    archive: Archive,
    tmp_path: Path,
    text: str,
    entities: list[Any],
    exported: list[Any],
    edited: list[Any],
    part: str,
) -> None:
    """Telegram Desktop writes the first of two overlapping entities only; Telethon reading
    the same, unedited post sees both. That is no edit, and no alert. From then on the
    complete reading is what later readings are compared with: a link-only or
    formatting-only edit is still a version, and the export imported again changes nothing."""
    export = write_export(tmp_path / "r.json", [export_message(7, exported)])
    await import_file(archive, export)
    assert await versions(archive, 7) == [(text, "export")]
    stats = await ingest(archive, [tl(7, text, entities=entities)], source="telethon", alerts=True)
    assert (stats.versions_added, stats.alerts_queued) == (0, 0)
    assert await kinds(archive, 7) == []

    again = tl(7, text, entities=edited, edit_date=at(30))
    stats = await ingest(archive, [again], source="telethon", alerts=True)
    assert stats.versions_added == 1
    ((_, kind, version, *_, parts),) = await events(archive, 7)
    assert (kind, version, parts) == ("edited", 2, part)
    (result,) = await import_file(archive, export)
    assert result.versions_added == 0
    assert await current_index(archive, 7) == 2


@pytest.mark.usefixtures("channel")
@pytest.mark.parametrize(
    "derived",
    [
        types.MessageEntityUrl(offset=10, length=11),
        types.MessageEntityHashtag(offset=22, length=6),
        types.MessageEntityPhone(offset=29, length=13),
    ],
    ids=["url", "hashtag", "phone"],
)
async def test_an_entity_derived_from_the_text_is_not_content(
    archive: Archive, derived: Any
) -> None:
    """Whether a client marked a URL, a hashtag or a phone number in the text depends on the
    client; the text already says it. A reading that differs only there is no edit."""
    text = "Эвакуация example.org #Каменка +380501234567"
    await ingest(archive, [tl(7, text)], source="telethon", alerts=True)
    stats = await ingest(archive, [tl(7, text, entities=[derived])], source="telethon", alerts=True)
    assert stats.versions_added == 0
    assert await kinds(archive, 7) == []


# ---------------------------------------------------------------------------- service messages


async def test_a_service_message_read_by_the_web_after_an_import_is_not_edited(
    archive: Archive, make_channel: MakeChannel, tmp_path: Path
) -> None:
    """The export writes "Channel created" as an empty text, the web preview as its words;
    a service message is never edited."""
    page = parse_page((ROOT / "tests/fixtures/web/rich_channel.html").read_bytes())
    assert page.channel is not None
    service = next(p for p in page.posts if p.is_service)
    assert service.text == "Channel created"
    bare = -page.channel.id - 1_000_000_000_000
    exported = {
        "id": service.message_id, "type": "service",
        "date": T0.strftime("%Y-%m-%dT%H:%M:%S"), "date_unixtime": str(int(T0.timestamp())),
        "actor": "Новини Тестограду", "actor_id": f"channel{bare}", "action": "create_channel",
        "title": "Новини Тестограду", "text": "", "text_entities": [],
    }  # fmt: skip
    path = tmp_path / "r.json"
    path.write_text(
        json.dumps({"name": "Новини", "type": "public_channel", "id": bare,
                    "messages": [exported]}),
        encoding="utf-8",
    )  # fmt: skip
    await import_file(archive, path)
    stats = await ingest(archive, [service], source="web", alerts=False)
    assert stats.versions_added == 0
    rows = await archive.fetchall("SELECT count(*) FROM versions")
    assert rows[0][0] == 1


# ---------------------------------------------------------------------------- old copies


@pytest.mark.usefixtures("channel")
@pytest.mark.parametrize("export_edit", [None, -30], ids=["original", "edited-before"])
async def test_an_old_export_does_not_undo_an_edit_seen_on_the_web(
    archive: Archive, export_edit: int | None
) -> None:
    """The web preview gives no edit times. An export made before the edit it saw (the
    original text, or an edit dated before the web saw the new text) is an old copy: it
    must not make its text current again."""
    a, b = "Эвакуация объявлена", "Эвакуация отменена"
    await ingest(archive, [post(a)], source="web", alerts=True)
    await ingest(archive, [post(b)], source="web", alerts=True)
    old = post(a, edited=export_edit) if export_edit is not None else post(a)
    await ingest(archive, [old], source="export", alerts=False)
    assert await current_index(archive, 7) == 2
    assert "reverted" not in await kinds(archive, 7)


@pytest.mark.usefixtures("channel")
async def test_an_export_copy_older_than_a_revert_stays_history(archive: Archive) -> None:
    """Telethon saw A, then B (edited at :10), then A again (edited at :20). An export made
    at :15 shows B: an old copy, not a revert to B."""
    a, b = "Эвакуация объявлена", "Эвакуация отменена"
    for p in (post(a), post(b, edited=10), post(a, edited=20)):
        await ingest(archive, [p], source="telethon", alerts=True)
    assert await current_index(archive, 7) == 1
    await ingest(archive, [post(b, edited=10)], source="export", alerts=False)
    assert await current_index(archive, 7) == 1
    assert await kinds(archive, 7) == ["edited", "reverted"]


# ---------------------------------------------------------------------------- one batch


@pytest.mark.usefixtures("channel")
@pytest.mark.parametrize("known", [False, True], ids=["new-post", "archived-post"])
async def test_the_same_post_twice_in_one_batch(archive: Archive, known: bool) -> None:
    a, b = "Эвакуация объявлена", "Эвакуация отменена"
    if known:
        await ingest(archive, [post(a)], source="telethon", alerts=True)
    batch = [post(b, edited=10), post(a)] if known else [post(a), post(b, edited=10)]
    await ingest(archive, batch, source="telethon", alerts=True)
    assert await versions(archive, 7) == [(a, "telethon"), (b, "telethon")]
    assert await current_index(archive, 7) == 2
    assert await kinds(archive, 7) == ["edited"]
    # and again, in the other order: nothing changes
    await ingest(archive, batch[::-1], source="telethon", alerts=True)
    assert await current_index(archive, 7) == 2 and await kinds(archive, 7) == ["edited"]
    assert sorted(await told(archive, "edited")) == [1, 2]


@pytest.mark.usefixtures("channel")
async def test_a_deleted_post_seen_again_with_a_new_text_in_one_batch(archive: Archive) -> None:
    a, b = "Эвакуация объявлена", "Эвакуация отменена"
    await ingest(archive, [post(a)], source="telethon", alerts=True)
    await confirm_deleted(archive, CHANNEL_ID, [7], how="recheck", alerts=True)
    await ingest(archive, [post(b, edited=10), post(b, edited=10)], source="telethon", alerts=True)
    state = await post_state(archive, 7)
    assert (state["state"], state["deleted_at"], state["version_count"]) == ("restored", None, 2)
    assert await kinds(archive, 7) == ["deleted", "restored", "edited"]
    assert await current_index(archive, 7) == 2
    assert [k for _, k, *_ in await outbox(archive)] == [
        "new", "new", "deleted", "deleted", "restored", "restored", "edited", "edited",
    ]  # fmt: skip


# ---------------------------------------------------------------------------- real exports

_TL_ENTITY: dict[str, Any] = {
    "bold": types.MessageEntityBold,
    "italic": types.MessageEntityItalic,
    "underline": types.MessageEntityUnderline,
    "strikethrough": types.MessageEntityStrike,
    "code": types.MessageEntityCode,
    "link": types.MessageEntityUrl,
    "mention": types.MessageEntityMention,
    "hashtag": types.MessageEntityHashtag,
    "cashtag": types.MessageEntityCashtag,
    "email": types.MessageEntityEmail,
    "phone": types.MessageEntityPhone,
    "bot_command": types.MessageEntityBotCommand,
    "spoiler": types.MessageEntitySpoiler,
    "bank_card": types.MessageEntityBankCard,
}


def _u16(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


def _as_telethon(m: dict[str, Any], bare: int) -> Any:
    """The message Telegram's servers hold for an exported one, as Telethon receives it: the
    same text, the export's entities at their UTF-16 offsets, a photo or document with an
    id, the edit date."""
    peer = types.PeerChannel(bare)
    date = datetime.fromtimestamp(int(m["date_unixtime"]), UTC)
    if m.get("type") == "service":
        return types.MessageService(
            id=m["id"], peer_id=peer, date=date, action=types.MessageActionChannelCreate("x")
        )
    text, entities, offset = "", [], 0
    for part in m.get("text_entities", []):
        kind, piece = part["type"], part["text"]
        n = _u16(piece)
        if kind == "text_link":
            entities.append(types.MessageEntityTextUrl(offset, n, part["href"]))
        elif kind == "custom_emoji":
            doc = int(hashlib.sha256(str(part.get("document_id")).encode()).hexdigest()[:12], 16)
            entities.append(types.MessageEntityCustomEmoji(offset, n, doc))
        elif kind == "blockquote":
            entities.append(
                types.MessageEntityBlockquote(offset, n, collapsed=part.get("collapsed"))
            )
        elif kind == "pre":
            entities.append(types.MessageEntityPre(offset, n, part.get("language", "")))
        elif kind == "mention_name":
            entities.append(types.MessageEntityMentionName(offset, n, int(part["user_id"])))
        elif kind in _TL_ENTITY:
            entities.append(_TL_ENTITY[kind](offset, n))
        text += piece
        offset += n
    media = None
    if "photo" in m:
        media = types.MessageMediaPhoto(
            photo=types.Photo(id=m["id"] * 1000, access_hash=1, file_reference=b"\x01", date=date,
                              sizes=[types.PhotoSize("x", 800, 600, 1000)], dc_id=2)
        )  # fmt: skip
    elif "file" in m or "media_type" in m:
        media = types.MessageMediaDocument(
            document=types.Document(id=m["id"] * 1000 + 1, access_hash=1, file_reference=b"\x01",
                                    date=date, mime_type=m.get("mime_type", "application/x"),
                                    size=m.get("file_size", 1), dc_id=2, attributes=[])
        )  # fmt: skip
    edited = m.get("edited_unixtime")
    return types.Message(
        id=m["id"], peer_id=peer, date=date, message=text, entities=entities or None,
        media=media, edit_date=datetime.fromtimestamp(int(edited), UTC) if edited else None,
    )  # fmt: skip


@pytest.mark.samples
@pytest.mark.parametrize(
    "name", ["tdesktop_ru_pachum_channel_result.json", "tdesktop_en_ar_salaf_channel_result.json"]
)
async def test_real_exports_read_again_through_telethon_make_no_versions(
    archive: Archive, name: str
) -> None:
    """Real Telegram Desktop exports (custom emoji, blockquotes, text links, emoji at UTF-16
    offsets, photos, files, service messages), then the same posts as Telethon receives
    them: the two converters agree on every post's content."""
    from fakes.telethon_client import roundtrip

    from archiver.sources.telethon_convert import message_to_post

    path = SAMPLES / name
    if not path.exists():
        pytest.skip(f"{path} is absent")
    (result,) = await import_file(archive, path)
    data = json.loads(path.read_text(encoding="utf-8"))
    posts = [
        message_to_post(roundtrip(_as_telethon(m, data["id"])))
        for m in data["messages"]
        if m.get("type") in ("message", "service")
    ]
    stats = await ingest(archive, posts, source="telethon", alerts=False)
    assert stats.posts_added == 0
    assert stats.versions_added == 0
    events = await archive.fetchall("SELECT kind, count(*) FROM post_events GROUP BY kind")
    assert [tuple(r) for r in events] == []
    assert result.posts_added == len(posts)
