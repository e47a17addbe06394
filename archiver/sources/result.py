"""What a source is given for a pass and what it reports back, below both the sources and the
orchestrator (:mod:`archiver.sync`), so that a source never imports the orchestrator.

:mod:`archiver.sync` re-exports these names; existing imports from there keep working.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from archiver.store.archive import utcnow

Sleeper = Callable[[float], Awaitable[None]]
MediaFetcher = Callable[[Any], Awaitable[bytes | None]]


@dataclass(frozen=True, slots=True)
class SyncOptions:
    """Knobs of a pass that are not configuration: pacing and the seams tests replace.

    ``page_wait``: seconds between history pages (Telethon's ``wait_time``; Telegram starts
    flood-waiting around ten history requests in thirty seconds). ``sleeper`` waits out flood
    waits and pacing. ``fetch_media`` downloads one message's media (default: the client's
    ``download_media``). ``now`` is the clock of backfill ages, re-read windows, flood-wait
    deadlines and channel statuses."""

    page_wait: float = 1.0
    batch_size: int = 100
    sleeper: Sleeper = asyncio.sleep
    fetch_media: MediaFetcher | None = None
    now: Callable[[], datetime] = utcnow
    max_flood_waits: int = 5  # short waits in a row with no progress before the channel waits


@dataclass(frozen=True, slots=True)
class ChannelSyncResult:
    """What one pass did for one channel. ``status``: ok | error | flood_wait | skipped, or a
    channel status of :mod:`archiver.store.following` (not_found, private, banned,
    too_many_channels, invalid) when the channel could not be read."""

    channel: str  # as the config names it
    source: str
    channel_id: int | None = None
    status: str = "ok"
    new_posts: int = 0
    edits: int = 0  # new versions of posts already archived
    deletions: int = 0
    fetched: int = 0  # messages read from the source
    skipped_messages: int = 0  # unreadable messages, stored raw-only (never skipped)
    media_stored: int = 0
    backfilled: bool = False  # the channel's first pass is complete
    high_water: int = 0
    duration: float = 0.0
    error: str | None = None
    flood_wait_until: datetime | None = None
    reread: int = 0  # archived posts read again (recent window and rotation)
