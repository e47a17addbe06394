"""Domain objects. Frozen, typed, and free of Telegram library types.

Sources (``archiver/sources/*``) turn what Telegram gives them into these; everything
downstream (store, rules, bot) only ever sees these.

Conventions:
- Channel ids are *marked* ids as the Bot API writes them: ``-100`` followed by the bare id,
  e.g. ``-1001811111111``. :func:`marked_id` and :func:`bare_id` convert.
- Datetimes are timezone-aware UTC.
- Entity offsets and lengths are UTF-16 code units, as Telegram counts them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

MARK = 1_000_000_000_000  # -100xxxxxxxxxx: marked = -(MARK + bare)

POST_KINDS = ("new", "edited", "deleted")  # what a rule can ask to be alerted about
# What an alert can say. A revert is an edit back to an earlier text; a restore is the
# correction of a deletion: a rule that wants "edited" gets reverts, "deleted" gets restores.
ALERT_KINDS = ("new", "edited", "reverted", "deleted", "restored")
RULE_KIND_OF = {"new": "new", "edited": "edited", "reverted": "edited", "deleted": "deleted",
                "restored": "deleted"}  # fmt: skip
FOLLOW_UPS = ("all", "alerted", "none")


def marked_id(bare_or_marked: int) -> int:
    """The marked channel id (``-100…``) of a bare or already marked id."""
    if bare_or_marked < 0:
        return bare_or_marked
    return -(MARK + bare_or_marked)


def bare_id(marked: int) -> int:
    """The bare channel id of a marked (or bare) id."""
    if marked >= 0:
        return marked
    return -marked - MARK


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    """What a source knows about a channel. Changes of the mutable fields are versioned."""

    id: int  # marked
    username: str | None = None
    title: str | None = None
    description: str | None = None
    subscribers: int | None = None
    access_hash: int | None = None


@dataclass(frozen=True, slots=True)
class Entity:
    """A formatting entity: ``type`` is Telegram's name in snake case (bold, text_link, ...)."""

    type: str
    offset: int  # UTF-16 code units
    length: int  # UTF-16 code units
    url: str | None = None


@dataclass(frozen=True, slots=True)
class Media:
    """Metadata of one attached medium. ``kind``: photo, video, document, audio, voice,
    video_note, sticker, animation, poll, webpage, geo, contact, other."""

    kind: str
    mime_type: str | None = None
    size: int | None = None
    file_name: str | None = None
    width: int | None = None
    height: int | None = None
    duration: float | None = None
    file_unique_id: str | None = None  # a stable id of the file where the source has one
    local_path: str | None = None  # set when downloaded (content-addressed, relative to data dir)
    sha256: str | None = None  # of the downloaded file


@dataclass(frozen=True, slots=True)
class Forward:
    """Where a forwarded post came from."""

    from_id: int | None = None  # marked channel id, or a user id
    from_title: str | None = None
    from_message_id: int | None = None


@dataclass(frozen=True, slots=True)
class Post:
    """One message of a channel as a source saw it at ``seen_at`` (or now)."""

    channel_id: int  # marked
    message_id: int
    date: datetime  # UTC
    text: str = ""
    entities: tuple[Entity, ...] = ()
    edit_date: datetime | None = None
    edited: bool = False  # marked edited by a source that does not say when (the web preview)
    # Telegram moved edit_date but hides it (edit_hide): reactions changed, not the post. The
    # date still orders readings; it does not make the post "edited".
    edit_hidden: bool = False
    views: int | None = None
    forwards: int | None = None
    replies: int | None = None
    reactions: tuple[tuple[str, int], ...] = ()  # (emoji or custom id, count)
    media: tuple[Media, ...] = ()
    forward: Forward | None = None
    reply_to: int | None = None
    grouped_id: int | None = None
    is_service: bool = False
    service_action: str | None = None  # e.g. "create_channel", "edit_title"
    raw: str | None = None  # the source object as JSON, for provenance
    html: str | None = None  # the web preview's rendered HTML of the text (part of the content)

    @property
    def reactions_count(self) -> int | None:
        return sum(n for _, n in self.reactions) if self.reactions else None


@dataclass(frozen=True, slots=True)
class Rule:
    """A keyword rule: from the config (``owner is None``) or created by a journalist in the bot."""

    name: str
    query: str
    notify: tuple[int, ...] = ()
    channels: tuple[str, ...] = ()  # references: username, id or t.me link; empty = all
    kinds: frozenset[str] = field(default_factory=lambda: frozenset(POST_KINDS))
    owner: int | None = None
    id: int | None = None  # archive id of a personal rule
    # Changes of a post that matched in any version: "all" recipients are told, only those
    # already "alerted" about it, or "none" (only new matches alert).
    follow_ups: str = "all"


@dataclass(frozen=True, slots=True)
class IngestStats:
    """What one ingest call changed."""

    posts_added: int = 0
    versions_added: int = 0
    posts_updated: int = 0  # counters refreshed, no new text
    alerts_queued: int = 0
    high_water: int = 0  # the highest message id in the batch (0 if empty)

    def __add__(self, other: IngestStats) -> IngestStats:
        return IngestStats(
            self.posts_added + other.posts_added,
            self.versions_added + other.versions_added,
            self.posts_updated + other.posts_updated,
            self.alerts_queued + other.alerts_queued,
            max(self.high_water, other.high_water),
        )
