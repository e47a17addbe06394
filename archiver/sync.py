"""``telewatch sync``, ``recheck`` and the live follow, independent of where posts come from.

:func:`sync_all` makes one pass over the configured channels in config order and returns one
:class:`ChannelSyncResult` each: ``source = "telethon"`` channels through
:mod:`archiver.sources.telethon` (imported only when such a channel exists, so a web-only
setup never loads Telethon), ``source = "web"`` channels through
:func:`archiver.sources.web.sync_web_channels`. One channel failing is logged, recorded for
``stats`` and turned into an ``error`` result; the others go on. Only a missing or revoked
Telegram login (:class:`NotLoggedIn`) stops the pass, and it does so before any network call.

Every channel gets one INFO line: new posts, edits, deletions, duration.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

from archiver.config import ChannelConfig, Settings
from archiver.errors import NotLoggedIn, TelewatchError
from archiver.sources.result import ChannelSyncResult, MediaFetcher, Sleeper, SyncOptions
from archiver.store.archive import Archive
from archiver.store.channels import get_channel, record_sync

log = logging.getLogger(__name__)

__all__ = [  # the result types live in archiver.sources.result; re-exported here
    "ChannelSyncResult",
    "MediaFetcher",
    "Sleeper",
    "SyncOptions",
    "follow_live",
    "guarded",
    "log_result",
    "recheck_all",
    "sync_all",
]


def log_result(r: ChannelSyncResult, what: str = "sync") -> None:
    """The one INFO line per channel and pass."""
    extra = ""
    if r.status == "flood_wait" and r.flood_wait_until is not None:
        extra = f" until {r.flood_wait_until:%Y-%m-%d %H:%M:%S}Z"
    elif r.status == "error":
        extra = f": {r.error}"
    log.info(
        "%s %s (%s): %s%s, %d new, %d edited, %d deleted, %d skipped, %.1fs",
        what,
        r.channel,
        r.source,
        r.status,
        extra,
        r.new_posts,
        r.edits,
        r.deletions,
        r.skipped_messages,
        r.duration,
    )


async def guarded(
    archive: Archive,
    cfg: ChannelConfig,
    run: Callable[[], Awaitable[ChannelSyncResult]],
    *,
    what: str = "sync",
) -> ChannelSyncResult:
    """Run one channel's pass so that its failure cannot stop the others: a domain error or an
    unexpected exception becomes an ``error`` result, recorded with ``record_sync``. A lost
    login (:class:`NotLoggedIn`) is re-raised: no other channel can succeed either."""
    started = time.monotonic()
    try:
        result = await run()
    except NotLoggedIn:
        raise
    except TelewatchError as exc:
        result = await _failed(archive, cfg, str(exc), started)
    except Exception as exc:  # the archiver's edge: log it with its traceback, go on
        log.exception("%s %s: unexpected failure", what, cfg.ref)
        result = await _failed(archive, cfg, f"{cfg.ref}: unexpected {type(exc).__name__}", started)
    log_result(result, what)
    return result


async def _failed(
    archive: Archive, cfg: ChannelConfig, message: str, started: float
) -> ChannelSyncResult:
    row = await get_channel(archive, cfg.ref)
    if row is not None:
        await record_sync(archive, row.id, status="error", error=message)
    return ChannelSyncResult(
        channel=str(cfg.ref),
        source=cfg.source,
        channel_id=row.id if row is not None else None,
        status="error",
        error=message,
        backfilled=row is not None and row.backfilled,
        high_water=row.high_water if row is not None else 0,
        duration=time.monotonic() - started,
    )


def _web_result(cfg: ChannelConfig, r: Any, duration: float) -> ChannelSyncResult:
    """archiver.sources.web.WebSyncResult -> ChannelSyncResult."""
    stats = r.stats
    return ChannelSyncResult(
        channel=str(cfg.ref),
        source="web",
        channel_id=r.channel_id,
        status=r.status,
        new_posts=stats.posts_added,
        edits=stats.versions_added - stats.posts_added,
        deletions=r.deleted,
        backfilled=r.backfilled,
        high_water=stats.high_water,
        duration=duration,
        error=r.error,
    )


async def _sync_web(archive: Archive, settings: Settings, cfg: ChannelConfig) -> ChannelSyncResult:
    from archiver.sources.web import sync_web_channels

    started = time.monotonic()
    results = await sync_web_channels(archive, settings.web, [cfg])
    if not results:
        return ChannelSyncResult(str(cfg.ref), "web", status="skipped")
    return _web_result(cfg, results[0], time.monotonic() - started)


async def sync_all(
    archive: Archive,
    settings: Settings,
    *,
    client: Any = None,
    options: SyncOptions | None = None,
    channels: Sequence[ChannelConfig] | None = None,
) -> list[ChannelSyncResult]:
    """One sync pass over ``channels`` (default: every configured channel), in order.

    ``client``: an already connected Telethon client (the live listener's, or a test's);
    otherwise one is connected for the pass when a Telethon channel exists, which raises
    :class:`NotLoggedIn` before any network call when there is no session."""
    todo = list(settings.channels if channels is None else channels)
    own = False
    tg: Any = None
    if any(c.source == "telethon" for c in todo):
        from archiver.sources import telethon as tg

        if client is None:
            client = await tg.connect_client(settings, archive=archive)
            own = True
    results: list[ChannelSyncResult] = []
    try:
        for cfg in todo:
            if cfg.source == "telethon":
                results.append(
                    await guarded(
                        archive,
                        cfg,
                        partial(
                            tg.sync_telethon_channel,
                            archive,
                            client,
                            cfg,
                            settings,
                            options=options,
                        ),
                    )
                )
            elif cfg.source == "web":
                results.append(
                    await guarded(archive, cfg, partial(_sync_web, archive, settings, cfg))
                )
            else:  # config validation makes this unreachable; say so rather than skip silently
                log.warning("sync %s: unknown source %r, skipped", cfg.ref, cfg.source)
    finally:
        if own:
            await client.disconnect()
    return results


async def recheck_all(
    archive: Archive,
    settings: Settings,
    *,
    client: Any = None,
    options: SyncOptions | None = None,
) -> list[ChannelSyncResult]:
    """Re-read the recent window of every Telethon channel (``[telegram] recent_posts`` /
    ``recent_hours``): edits and deletions made while we were not listening, fresh counters.
    Web channels need no separate pass: each web sync re-reads ``[web] recent_pages``."""
    todo = [c for c in settings.channels if c.source == "telethon"]
    if not todo:
        return []
    from archiver.sources import telethon as tg

    own = client is None
    if client is None:
        client = await tg.connect_client(settings, archive=archive)
    try:
        return [
            await guarded(
                archive,
                cfg,
                partial(tg.recheck_channel, archive, client, cfg, settings, options=options),
                what="recheck",
            )
            for cfg in todo
        ]
    finally:
        if own:
            await client.disconnect()


async def follow_live(
    archive: Archive,
    settings: Settings,
    stop_event: asyncio.Event,
    *,
    client: Any = None,
    options: SyncOptions | None = None,
) -> None:
    """Follow the ``join = true`` Telethon channels live until ``stop_event`` is set: catch up
    from each high-water mark, then ingest new, edited and deleted posts as they happen (and
    catch up again after every reconnect). Used by ``telewatch run``."""
    todo = [c for c in settings.channels if c.source == "telethon" and c.join]
    if not todo:
        log.info("live: no Telethon channel with join = true; nothing to follow")
        return
    from archiver.sources import telethon as tg
    from archiver.sources.telethon_live import run_live

    own = client is None
    if client is None:
        client = await tg.connect_client(settings, receive_updates=True, archive=archive)
    try:
        await run_live(archive, client, settings, stop_event, options=options)
    finally:
        if own:
            await client.disconnect()
