"""Message -> Post and Channel -> ChannelInfo on real Telethon objects, as a server sends them
(each message is serialised and parsed back before conversion)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fakes.telethon_client import roundtrip
from telethon import TelegramClient
from telethon.sessions import StringSession
from telethon.tl import types

from archiver.models import Entity, Forward, Media
from archiver.sources.telethon_convert import (
    PoisonMessage,
    channel_info,
    message_to_post,
)

BARE = 1811111111
MARKED = -1001811111111
D = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def msg(**fields: Any) -> Any:
    fields.setdefault("id", 7)
    fields.setdefault("peer_id", types.PeerChannel(BARE))
    fields.setdefault("date", D)
    fields.setdefault("message", "")
    return roundtrip(types.Message(**fields))


def photo(*sizes: Any) -> Any:
    return types.MessageMediaPhoto(
        photo=types.Photo(
            id=55, access_hash=1, file_reference=b"\x01", date=D, sizes=list(sizes), dc_id=2
        )
    )


def document(mime: str, size: int, *attributes: Any) -> Any:
    return types.MessageMediaDocument(
        document=types.Document(
            id=66,
            access_hash=1,
            file_reference=b"\x01",
            date=D,
            mime_type=mime,
            size=size,
            dc_id=2,
            attributes=list(attributes),
        )
    )


CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("plain text", {"message": "Эвакуация объявлена"}, {"text": "Эвакуация объявлена"}),
    (
        # the emoji is two UTF-16 code units: "bold" starts at 3, as Telegram counts
        "entities keep UTF-16 offsets",
        {
            "message": "🚨 bold link",
            "entities": [
                types.MessageEntityBold(offset=3, length=4),
                types.MessageEntityTextUrl(offset=8, length=4, url="https://example.org"),
                types.MessageEntityStrike(offset=0, length=2),
                types.MessageEntityMentionName(offset=3, length=4, user_id=5),
                types.MessageEntitySpoiler(offset=8, length=4),
            ],
        },
        {
            "entities": (
                Entity("bold", 3, 4),
                Entity("text_link", 8, 4, "https://example.org"),
                Entity("strikethrough", 0, 2),
                Entity("text_mention", 3, 4),
                Entity("spoiler", 8, 4),
            )
        },
    ),
    (
        "counters and edit date",
        {
            "message": "x",
            "views": 1200,
            "forwards": 31,
            "edit_date": D + timedelta(hours=2),
            "replies": types.MessageReplies(replies=4, replies_pts=9),
        },
        {"views": 1200, "forwards": 31, "edit_date": D + timedelta(hours=2), "replies": 4},
    ),
    (
        "reactions: emoji, custom emoji, paid",
        {
            "message": "x",
            "reactions": types.MessageReactions(
                results=[
                    types.ReactionCount(reaction=types.ReactionEmoji(emoticon="👍"), count=10),
                    types.ReactionCount(
                        reaction=types.ReactionCustomEmoji(document_id=123), count=2
                    ),
                    types.ReactionCount(reaction=types.ReactionPaid(), count=1),
                ]
            ),
        },
        {"reactions": (("👍", 10), ("123", 2), ("paid", 1))},
    ),
    (
        "photo: the largest size",
        {
            "message": "",
            "media": photo(
                types.PhotoStrippedSize(type="i", bytes=b"\x01\x02"),
                types.PhotoSize(type="m", w=320, h=240, size=15000),
                types.PhotoSizeProgressive(type="y", w=1280, h=960, sizes=[9000, 40000, 91000]),
            ),
        },
        {
            "media": (
                Media(
                    "photo",
                    mime_type="image/jpeg",
                    size=91000,
                    width=1280,
                    height=960,
                    file_unique_id="photo:55",
                ),
            )
        },
    ),
    (
        "video with a file name",
        {
            "media": document(
                "video/mp4",
                5_000_000,
                types.DocumentAttributeVideo(duration=12.5, w=1920, h=1080),
                types.DocumentAttributeFilename(file_name="clip.mp4"),
            )
        },
        {
            "media": (
                Media(
                    "video",
                    mime_type="video/mp4",
                    size=5_000_000,
                    file_name="clip.mp4",
                    width=1920,
                    height=1080,
                    duration=12.5,
                    file_unique_id="document:66",
                ),
            )
        },
    ),
    (
        "voice",
        {
            "media": document(
                "audio/ogg", 9000, types.DocumentAttributeAudio(duration=7, voice=True)
            )
        },
        {"media_kind": "voice", "duration": 7.0},
    ),
    (
        "round video",
        {
            "media": document(
                "video/mp4",
                9000,
                types.DocumentAttributeVideo(duration=3, w=240, h=240, round_message=True),
            )
        },
        {"media_kind": "video_note"},
    ),
    (
        "sticker",
        {
            "media": document(
                "image/webp",
                100,
                types.DocumentAttributeSticker(alt="😀", stickerset=types.InputStickerSetEmpty()),
                types.DocumentAttributeImageSize(w=512, h=512),
            )
        },
        {"media_kind": "sticker"},
    ),
    (
        "animation (gif as mp4)",
        {
            "media": document(
                "video/mp4",
                100,
                types.DocumentAttributeAnimated(),
                types.DocumentAttributeVideo(duration=2, w=200, h=100),
            )
        },
        {"media_kind": "animation"},
    ),
    (
        "a file",
        {
            "media": document(
                "application/pdf", 2048, types.DocumentAttributeFilename(file_name="decree.pdf")
            )
        },
        {"media_kind": "document", "file_name": "decree.pdf"},
    ),
    (
        "geo",
        {"media": types.MessageMediaGeo(geo=types.GeoPoint(long=33.1, lat=46.6, access_hash=1))},
        {"media_kind": "geo"},
    ),
    (
        "forward from a channel",
        {
            "message": "x",
            "fwd_from": types.MessageFwdHeader(
                date=D, from_id=types.PeerChannel(1500000001), channel_post=321
            ),
        },
        {"forward": Forward(from_id=-1001500000001, from_title=None, from_message_id=321)},
    ),
    (
        "forward from a hidden user keeps the name",
        {"message": "x", "fwd_from": types.MessageFwdHeader(date=D, from_name="Ivan")},
        {"forward": Forward(from_id=None, from_title="Ivan")},
    ),
    (
        "reply and album",
        {
            "message": "x",
            "reply_to": types.MessageReplyHeader(reply_to_msg_id=3),
            "grouped_id": 13_000_000_000_000_000,
        },
        {"reply_to": 3, "grouped_id": 13_000_000_000_000_000},
    ),
    (
        "a reply to another chat's post is not a reply id of this channel",
        {
            "message": "x",
            "reply_to": types.MessageReplyHeader(
                reply_to_msg_id=3, reply_to_peer_id=types.PeerChannel(42)
            ),
        },
        {"reply_to": None},
    ),
]


@pytest.mark.parametrize(("fields", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_message_to_post(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    post = message_to_post(msg(**fields))
    assert post.channel_id == MARKED
    assert post.message_id == 7
    assert post.date == D
    assert not post.is_service
    for key, value in expected.items():
        if key == "media_kind":
            assert post.media[0].kind == value
        elif key in ("duration", "file_name"):
            assert getattr(post.media[0], key) == value
        else:
            assert getattr(post, key) == value, key


def test_raw_is_the_message_as_json() -> None:
    m = msg(message="Текст", media=photo(types.PhotoSize(type="m", w=1, h=1, size=1)))
    raw = json.loads(message_to_post(m).raw or "")
    assert raw["_"] == "Message"
    assert raw["message"] == "Текст"
    assert raw["media"]["photo"]["file_reference"]  # bytes became text, not an error


def test_forward_title_comes_from_the_entities_sent_with_the_page() -> None:
    source = types.Channel(
        id=1500000001, title="Source channel", photo=types.ChatPhotoEmpty(), date=D
    )
    m = msg(
        message="x",
        fwd_from=types.MessageFwdHeader(date=D, from_id=types.PeerChannel(1500000001)),
    )
    client = TelegramClient(StringSession(), 1, "x")
    m._finish_init(client, {-1001500000001: source}, None)
    fwd = message_to_post(m).forward
    assert fwd is not None
    assert fwd.from_title == "Source channel"


@pytest.mark.parametrize(
    ("action", "name"),
    [
        (types.MessageActionChannelCreate(title="Новый канал"), "create_channel"),
        (types.MessageActionChatEditTitle(title="Renamed"), "edit_group_title"),
        (types.MessageActionPinMessage(), "pin_message"),
        (types.MessageActionChatDeletePhoto(), "delete_group_photo"),
        (types.MessageActionSetMessagesTTL(period=86400), "set_messages_ttl"),
        (types.MessageActionScreenshotTaken(), "screenshot_taken"),  # not mapped: snake case
    ],
)
def test_service_messages(action: Any, name: str) -> None:
    m = roundtrip(
        types.MessageService(id=1, peer_id=types.PeerChannel(BARE), date=D, action=action)
    )
    post = message_to_post(m)
    assert post.is_service
    assert post.service_action == name
    assert post.text == ""
    assert post.channel_id == MARKED


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(types.MessageEmpty(id=3, peer_id=None), id="MessageEmpty"),
        pytest.param(
            types.Message(id=3, peer_id=types.PeerUser(5), date=D, message="x"), id="not a channel"
        ),
        pytest.param(
            types.Message(id=3, peer_id=types.PeerChannel(BARE), message="x"), id="no date"
        ),
        pytest.param(
            types.Message(
                id=3, peer_id=types.PeerChannel(BARE), date=D, message="x", entities=[object()]
            ),
            id="broken entity",
        ),
        pytest.param(types.PeerChannel(BARE), id="not a message at all"),
    ],
)
def test_poison_messages_raise_poison(bad: Any) -> None:
    with pytest.raises(PoisonMessage):
        message_to_post(bad)


def test_channel_info_from_channel_and_full() -> None:
    ch = types.Channel(
        id=BARE,
        title="Сальдо",
        photo=types.ChatPhotoEmpty(),
        date=D,
        access_hash=987654321,
        username="VSaldo",
        broadcast=True,
    )
    full = types.ChannelFull(
        id=BARE,
        about="Official channel",
        read_inbox_max_id=0,
        read_outbox_max_id=0,
        unread_count=0,
        chat_photo=types.PhotoEmpty(id=0),
        notify_settings=types.PeerNotifySettings(),
        bot_info=[],
        pts=1,
        participants_count=120_000,
    )
    info = channel_info(roundtrip(ch), roundtrip(full))
    assert info.id == MARKED
    assert info.username == "VSaldo"
    assert info.title == "Сальдо"
    assert info.description == "Official channel"
    assert info.subscribers == 120_000
    assert info.access_hash == 987654321


def test_channel_info_uses_the_active_collectible_username_and_ignores_min_hashes() -> None:
    ch = types.Channel(
        id=BARE,
        title="t",
        photo=types.ChatPhotoEmpty(),
        date=D,
        access_hash=5,
        min=True,
        usernames=[
            types.Username(username="old_name", active=False),
            types.Username(username="new_name", active=True),
        ],
    )
    info = channel_info(roundtrip(ch))
    assert info.username == "new_name"
    assert info.access_hash is None  # a "min" channel's hash is not usable for requests
