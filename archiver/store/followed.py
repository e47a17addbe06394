"""Channels followed from the bot (``/follow @channel [web|telethon]``, ``/unfollow``), kept
beside the config's ``[[channels]]``. The config wins: a channel it lists is synced as it
says, whatever the archive holds. The running archiver's sync pass reads this table each
time (:func:`channel_configs`), so a channel followed from the chat is synced from the next
pass on, without a restart. Followed channels are polled by the sync pass (``join = false``:
the live listener is set up at start from the config)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from archiver.channels import ChannelRef, parse_ref
from archiver.config import ChannelConfig, Settings
from archiver.errors import TelewatchError
from archiver.store.archive import Archive, parse_ts, ts, utcnow

SOURCES = ("web", "telethon")


@dataclass(frozen=True, slots=True)
class Followed:
    ref: ChannelRef
    source: str
    added_by: int | None
    added_at: datetime | None
    in_config: bool = False  # the config lists it too: its settings are the ones used

    def config(self) -> ChannelConfig:
        return ChannelConfig(self.ref, self.source, join=False)


def telethon_configured(settings: Settings) -> bool:
    return bool(settings.telegram.api_id and settings.telegram.api_hash)


def check(settings: Settings, ref: ChannelRef, source: str) -> None:
    """A TelewatchError naming what is wrong with following ``ref`` through ``source``."""
    if source not in SOURCES:
        raise TelewatchError(f"source {source!r}: expected web or telethon")
    if source == "web" and ref.username is None:
        raise TelewatchError(
            f"channel {ref}: the web source needs the channel's public username "
            "(its preview is t.me/s/USERNAME); use telethon for an id"
        )
    if source == "telethon" and not telethon_configured(settings):
        raise TelewatchError(
            "telethon: no Telegram login is configured ([telegram] api_id and api_hash); "
            "follow it with web, or set up the login first"
        )


def _config_keys(settings: Settings) -> set[str]:
    return {str(c.ref) for c in settings.channels}


async def follow(
    archive: Archive, settings: Settings, ref: ChannelRef, source: str, *, by: int
) -> bool:
    """Follow ``ref``; False when the config lists it already (nothing stored)."""
    check(settings, ref, source)
    key = str(ChannelRef(ref.id, ref.username))
    if key in _config_keys(settings):
        return False
    await archive.write(
        "INSERT INTO followed_channels (ref, source, added_by, added_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (ref) DO UPDATE SET source = excluded.source,"
        " added_by = excluded.added_by, added_at = excluded.added_at",
        (key, source, by, ts(utcnow())),
    )
    return True


async def unfollow(archive: Archive, ref: ChannelRef) -> bool:
    key = str(ChannelRef(ref.id, ref.username))
    rows = await archive.write("DELETE FROM followed_channels WHERE ref = ? RETURNING ref", (key,))
    return bool(rows)


async def followed(archive: Archive, settings: Settings) -> list[Followed]:
    """Every channel followed from the chat, marking those the config lists too."""
    keys = _config_keys(settings)
    rows = await archive.fetchall(
        "SELECT ref, source, added_by, added_at FROM followed_channels ORDER BY added_at, ref"
    )
    return [
        Followed(parse_ref(r[0]), r[1], r[2], parse_ts(r[3]), in_config=r[0] in keys) for r in rows
    ]


async def channel_configs(archive: Archive, settings: Settings) -> list[ChannelConfig]:
    """The followed channels the sync pass adds to the config's (not those it lists)."""
    return [f.config() for f in await followed(archive, settings) if not f.in_config]
