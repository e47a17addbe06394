"""Telethon objects -> domain objects: ``Message``/``MessageService`` -> :class:`Post`,
``Channel`` (+ ``ChannelFull``) -> :class:`ChannelInfo`. Pure functions, no client, no network.

Names follow the Bot API (``text_link``, ``strikethrough``, ``text_mention``), as every source
does; service actions follow Telegram Desktop's export (``create_channel``,
``edit_group_title``, ``pin_message``) so the same event reads the same from either source.
Entity offsets stay in UTF-16 code units, exactly as Telegram sends them.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from telethon import utils
from telethon.tl import types

from archiver.models import ChannelInfo, Entity, Forward, Media, Post, marked_id


class PoisonMessage(Exception):
    """A message that cannot become a :class:`Post` (an unexpected type or shape). The caller
    logs its ids and skips it; it never stops the channel."""


_ENTITY_NAMES: dict[type, str] = {
    types.MessageEntityBold: "bold",
    types.MessageEntityItalic: "italic",
    types.MessageEntityUnderline: "underline",
    types.MessageEntityStrike: "strikethrough",
    types.MessageEntityCode: "code",
    types.MessageEntityPre: "pre",
    types.MessageEntityTextUrl: "text_link",
    types.MessageEntityUrl: "url",
    types.MessageEntityMention: "mention",
    types.MessageEntityMentionName: "text_mention",
    types.InputMessageEntityMentionName: "text_mention",
    types.MessageEntityHashtag: "hashtag",
    types.MessageEntityCashtag: "cashtag",
    types.MessageEntityBotCommand: "bot_command",
    types.MessageEntityEmail: "email",
    types.MessageEntityPhone: "phone_number",
    types.MessageEntitySpoiler: "spoiler",
    types.MessageEntityCustomEmoji: "custom_emoji",
    types.MessageEntityBlockquote: "blockquote",
    types.MessageEntityBankCard: "bank_card",
    types.MessageEntityUnknown: "unknown",
}

# Telethon action class -> Telegram Desktop's export name (the rest: snake case of the class).
_ACTION_NAMES: dict[type, str] = {
    types.MessageActionChannelCreate: "create_channel",
    types.MessageActionChatCreate: "create_group",
    types.MessageActionChatEditTitle: "edit_group_title",
    types.MessageActionChatEditPhoto: "edit_group_photo",
    types.MessageActionChatDeletePhoto: "delete_group_photo",
    types.MessageActionPinMessage: "pin_message",
    types.MessageActionChannelMigrateFrom: "migrate_from_group",
    types.MessageActionChatMigrateTo: "migrate_to_supergroup",
    types.MessageActionChatAddUser: "invite_members",
    types.MessageActionChatDeleteUser: "remove_members",
    types.MessageActionChatJoinedByLink: "join_group_by_link",
    types.MessageActionHistoryClear: "clear_history",
    types.MessageActionGroupCall: "group_call",
    types.MessageActionGroupCallScheduled: "group_call_scheduled",
    types.MessageActionInviteToGroupCall: "invite_to_group_call",
    types.MessageActionSetMessagesTTL: "set_messages_ttl",
    types.MessageActionSetChatTheme: "edit_chat_theme",
    types.MessageActionTopicCreate: "topic_created",
    types.MessageActionTopicEdit: "topic_edit",
    types.MessageActionBoostApply: "boost_apply",
}

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def _snake(name: str) -> str:
    return _CAMEL.sub("_", name).lower()


def _utc(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def entity_of(e: Any) -> Entity:
    name = _ENTITY_NAMES.get(type(e))
    if name is None:
        name = _snake(type(e).__name__.removeprefix("MessageEntity"))
    url = getattr(e, "url", None) if isinstance(e, types.MessageEntityTextUrl) else None
    return Entity(name, int(e.offset), int(e.length), url)


def _photo(photo: Any) -> Media:
    if not isinstance(photo, types.Photo):  # PhotoEmpty: expired or restricted
        return Media("photo")
    best: tuple[int, int, int | None] | None = None  # w, h, size of the largest size
    for s in photo.sizes:
        if isinstance(s, types.PhotoSize):
            cand = (s.w, s.h, s.size)
        elif isinstance(s, types.PhotoSizeProgressive):
            cand = (s.w, s.h, max(s.sizes) if s.sizes else None)
        elif isinstance(s, types.PhotoCachedSize):
            cand = (s.w, s.h, len(s.bytes))
        else:  # stripped / path thumbnails carry no dimensions
            continue
        if best is None or cand[0] * cand[1] > best[0] * best[1]:
            best = cand
    return Media(
        "photo",
        mime_type="image/jpeg",
        size=best[2] if best else None,
        width=best[0] if best else None,
        height=best[1] if best else None,
        file_unique_id=f"photo:{photo.id}",
    )


def _document(doc: Any) -> Media:
    if not isinstance(doc, types.Document):  # DocumentEmpty
        return Media("document")
    kind = "document"
    file_name = width = height = None
    duration: float | None = None
    animated = sticker = False
    for a in doc.attributes:
        if isinstance(a, types.DocumentAttributeFilename):
            file_name = a.file_name
        elif isinstance(a, types.DocumentAttributeVideo):
            kind = "video_note" if a.round_message else "video"
            width, height, duration = a.w, a.h, float(a.duration)
        elif isinstance(a, types.DocumentAttributeAudio):
            kind = "voice" if a.voice else "audio"
            duration = float(a.duration)
        elif isinstance(a, types.DocumentAttributeImageSize):
            width, height = a.w, a.h
        elif isinstance(a, types.DocumentAttributeAnimated):
            animated = True
        elif isinstance(a, types.DocumentAttributeSticker):
            sticker = True
    if sticker:
        kind = "sticker"
    elif animated:
        kind = "animation"
    return Media(
        kind,
        mime_type=doc.mime_type or None,
        size=doc.size,
        file_name=file_name,
        width=width,
        height=height,
        duration=duration,
        file_unique_id=f"document:{doc.id}",
    )


def media_of(media: Any) -> tuple[Media, ...]:
    """Metadata of a message's media (no download): kind, size, MIME, name, size, duration."""
    if media is None or isinstance(media, types.MessageMediaEmpty):
        return ()
    if isinstance(media, types.MessageMediaPhoto):
        return (_photo(media.photo),)
    if isinstance(media, types.MessageMediaDocument):
        return (_document(media.document),)
    if isinstance(media, types.MessageMediaWebPage):
        return (Media("webpage"),)
    if isinstance(media, types.MessageMediaPoll):
        return (Media("poll"),)
    if isinstance(
        media, types.MessageMediaGeo | types.MessageMediaGeoLive | types.MessageMediaVenue
    ):
        return (Media("geo"),)
    if isinstance(media, types.MessageMediaContact):
        return (Media("contact"),)
    return (Media("other"),)


def _reactions(r: Any) -> tuple[tuple[str, int], ...]:
    if r is None:
        return ()
    out: list[tuple[str, int]] = []
    for rc in r.results:
        reaction = rc.reaction
        if isinstance(reaction, types.ReactionEmoji):
            key = reaction.emoticon
        elif isinstance(reaction, types.ReactionCustomEmoji):
            key = str(reaction.document_id)
        else:
            key = _snake(type(reaction).__name__.removeprefix("Reaction")) or "?"
        out.append((key, int(rc.count)))
    return tuple(out)


def _forward(msg: Any) -> Forward | None:
    fwd = msg.fwd_from
    if fwd is None:
        return None
    from_id = utils.get_peer_id(fwd.from_id) if fwd.from_id is not None else None
    # ``msg.forward`` (set when the message came with its entities) knows the source's title.
    chat = getattr(getattr(msg, "forward", None), "chat", None)
    title = getattr(chat, "title", None) or fwd.from_name or fwd.post_author
    return Forward(from_id=from_id, from_title=title, from_message_id=fwd.channel_post)


def _reply_to(msg: Any, channel_id: int) -> int | None:
    r = msg.reply_to
    if not isinstance(r, types.MessageReplyHeader) or r.reply_to_msg_id is None:
        return None
    if r.reply_to_peer_id is not None and utils.get_peer_id(r.reply_to_peer_id) != channel_id:
        return None  # a reply to a post of another chat: not an id of this channel
    return int(r.reply_to_msg_id)


def raw_json(msg: Any) -> str:
    """The message as Telethon's ``to_dict()`` in compact JSON (bytes and dates as text)."""
    return json.dumps(msg.to_dict(), ensure_ascii=False, separators=(",", ":"), default=str)


def message_to_post(msg: Any) -> Post:
    """A channel's ``Message`` or ``MessageService`` as a :class:`Post`; anything else (or a
    message that does not convert) raises :class:`PoisonMessage`."""
    if not isinstance(msg, types.Message | types.MessageService):
        raise PoisonMessage(f"unexpected {type(msg).__name__}")
    if not isinstance(msg.peer_id, types.PeerChannel):
        raise PoisonMessage(f"not a channel message ({type(msg.peer_id).__name__})")
    try:
        channel_id = marked_id(msg.peer_id.channel_id)
        date = _utc(msg.date)
        if date is None:
            raise PoisonMessage("no date")
        if isinstance(msg, types.MessageService):
            action = msg.action
            name = _ACTION_NAMES.get(type(action)) or _snake(
                type(action).__name__.removeprefix("MessageAction")
            )
            return Post(
                channel_id=channel_id,
                message_id=msg.id,
                date=date,
                reply_to=_reply_to(msg, channel_id),
                is_service=True,
                service_action=name,
                raw=raw_json(msg),
            )
        return Post(
            channel_id=channel_id,
            message_id=msg.id,
            date=date,
            text=msg.message or "",
            entities=tuple(entity_of(e) for e in msg.entities or ()),
            edit_date=_utc(msg.edit_date),
            edit_hidden=bool(getattr(msg, "edit_hide", False)),
            views=msg.views,
            forwards=msg.forwards,
            replies=msg.replies.replies if msg.replies is not None else None,
            reactions=_reactions(msg.reactions),
            media=media_of(msg.media),
            forward=_forward(msg),
            reply_to=_reply_to(msg, channel_id),
            grouped_id=msg.grouped_id,
            raw=raw_json(msg),
        )
    except PoisonMessage:
        raise
    except (AttributeError, TypeError, ValueError, KeyError) as exc:
        raise PoisonMessage(f"{type(exc).__name__} while converting") from exc


def channel_username(channel: Any) -> str | None:
    """The public username: ``username``, else the first active of ``usernames``."""
    if getattr(channel, "username", None):
        return str(channel.username)
    for u in getattr(channel, "usernames", None) or ():
        if getattr(u, "active", False):
            return str(u.username)
    return None


def channel_info(channel: Any, full: Any = None) -> ChannelInfo:
    """A ``types.Channel`` (and its ``ChannelFull`` when fetched) as :class:`ChannelInfo`."""
    if not isinstance(channel, types.Channel):
        raise PoisonMessage(f"not a channel: {type(channel).__name__}")
    description = subscribers = None
    if isinstance(full, types.ChannelFull):
        description = full.about or None
        subscribers = full.participants_count
    if subscribers is None:
        subscribers = channel.participants_count
    return ChannelInfo(
        id=marked_id(channel.id),
        username=channel_username(channel),
        title=channel.title,
        description=description,
        subscribers=subscribers,
        access_hash=channel.access_hash if not channel.min else None,
    )
