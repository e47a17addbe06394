"""Channel references as people write them: ``vsaldo``, ``@vsaldo``, ``1811111111``,
``-1001811111111``, ``https://t.me/vsaldo``, ``t.me/s/vsaldo``, ``https://t.me/c/1811111111/5``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from archiver.errors import TelewatchError
from archiver.models import MARK, marked_id

_USERNAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{3,31}$")
_LINK = re.compile(
    r"^(?:https?://)?(?:www\.)?(?:t\.me|telegram\.me|telegram\.dog)/"
    r"(?:(?P<c>c/(?P<cid>\d+))|(?:s/)?(?P<user>[A-Za-z][A-Za-z0-9_]{3,31}))"
    r"(?:/(?P<msg>\d+))?/?(?:\?.*)?$"
)


MAX_MESSAGE_ID = 2**31 - 1  # Telegram message ids are 32-bit


class BadChannelRef(TelewatchError):
    exit_code = 2


@dataclass(frozen=True, slots=True)
class ChannelRef:
    """Exactly one of ``id`` (marked) and ``username`` (lower case, no @) is set."""

    id: int | None = None
    username: str | None = None
    message_id: int | None = None  # when the reference was a link to a post

    def __str__(self) -> str:
        return self.username if self.username is not None else str(self.id)


def parse_ref(text: str) -> ChannelRef:
    """Parse a channel reference; raises :class:`BadChannelRef` naming the text."""
    s = text.strip()
    if re.fullmatch(r"-?\d+", s):
        n = int(s)
        if not (n > 0 and n < MARK) and not (-2 * MARK < n < -MARK):
            raise BadChannelRef(
                f"'{text}' is not a channel id: use the bare id (1811111111) or the marked id"
                " (-1001811111111)"
            )
        return ChannelRef(id=marked_id(n))
    m = _LINK.match(s)
    if m:
        msg = int(m.group("msg")) if m.group("msg") else None
        if msg is not None and msg > MAX_MESSAGE_ID:
            raise BadChannelRef(f"'{text}': {msg} is not a message id")
        if m.group("cid"):
            cid = int(m.group("cid"))
            if not 0 < cid < MARK:
                raise BadChannelRef(f"'{text}': {cid} is not a channel id")
            return ChannelRef(id=marked_id(cid), message_id=msg)
        return ChannelRef(username=m.group("user").lower(), message_id=msg)
    s = s.removeprefix("@")
    if _USERNAME.match(s):
        return ChannelRef(username=s.lower())
    raise BadChannelRef(
        f"'{text}' is not a channel: use a username (vsaldo), an id (-1001811111111) "
        "or a link (https://t.me/vsaldo)"
    )


def post_link(channel_id: int, username: str | None, message_id: int) -> str:
    """``https://t.me/<username>/<id>``, or ``https://t.me/c/<bare id>/<id>`` without one."""
    if username:
        return f"https://t.me/{username}/{message_id}"
    from archiver.models import bare_id

    return f"https://t.me/c/{bare_id(channel_id)}/{message_id}"
