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
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

from archiver.config import ChannelConfig, Settings
from archiver.errors import ConfigError, NotLoggedIn, TelewatchError
from archiver.sources.result import ChannelSyncResult, MediaFetcher, Sleeper, SyncOptions
from archiver.store.archive import Archive, utcnow
from archiver.store.channels import get_channel, record_sync

log = logging.getLogger(__name__)

__all__ = [  # the result types live in archiver.sources.result; re-exported here
    "ChannelSyncResult",
    "MediaFetcher",
    "PassResults",
    "Sleeper",
    "SyncOptions",
    "disconnect",
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
    result, _ = await _guarded(archive, cfg, run, what)
    return result


async def _guarded(
    archive: Archive,
    cfg: ChannelConfig,
    run: Callable[[], Awaitable[ChannelSyncResult]],
    what: str,
) -> tuple[ChannelSyncResult, BaseException | None]:
    """:func:`guarded`, and the exception that failed the channel (None when it did not)."""
    started = time.monotonic()
    cause: BaseException | None = None
    try:
        result = await run()
    except NotLoggedIn:
        raise
    except sqlite3.OperationalError:
        raise  # the archive cannot be written (locked, full): no channel can go on
    except TelewatchError as exc:
        result, cause = await _failed(archive, cfg, str(exc), started), exc
    except BufferError as exc:  # Telethon's InvalidBufferError: not Telegram on the wire
        message = (
            f"{cfg.ref}: Telegram's answer was not readable ({type(exc).__name__}); check the"
            " network, a proxy or a firewall in between"
        )
        result, cause = await _failed(archive, cfg, message, started), exc
    except Exception as exc:  # the archiver's edge: log it with its traceback, go on
        log.exception("%s %s: unexpected failure", what, cfg.ref)
        message = f"{cfg.ref}: unexpected {type(exc).__name__}"
        result, cause = await _failed(archive, cfg, message, started), exc
    log_result(result, what)
    return result, cause


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


class PassResults(list[ChannelSyncResult]):
    """The results of one pass, in config order (a list), and why a whole source failed, if
    one did: ``login_lost`` (no or a revoked Telegram login: ``telewatch run`` stops on it,
    ``sync`` exits 3 when nothing else was archived) and ``deadline`` (the pass stopped at
    ``[schedule] pass_deadline_seconds``)."""

    login_lost: NotLoggedIn | None = None
    deadline: bool = False

    @property
    def failed(self) -> list[ChannelSyncResult]:
        return [r for r in self if r.status == "error"]


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


def _deadline_message(settings: Settings) -> str:
    return (
        f"not finished within [schedule] pass_deadline_seconds ="
        f" {settings.schedule.pass_deadline_seconds:g}; resumes where it stopped at the next pass"
    )


async def _not_done(
    archive: Archive, cfg: ChannelConfig, message: str, started: float
) -> ChannelSyncResult:
    """A channel the pass could not do (its source down, the deadline): recorded, logged."""
    result = await _failed(archive, cfg, f"{cfg.ref}: {message}", started)
    log_result(result)
    return result


async def _sync_web(
    archive: Archive, settings: Settings, todo: list[ChannelConfig], out: dict[int, Any]
) -> None:
    """Every web channel of the pass with one call (one HTTP client, one pacer, one request
    budget; [web] and [recheck] from ``settings``); results by position."""
    from archiver.sources.web import sync_web_channels

    started = time.monotonic()
    results = await sync_web_channels(archive, settings, todo)
    duration = time.monotonic() - started
    for i, (cfg, r) in enumerate(zip(todo, results, strict=False)):
        out[i] = _web_result(cfg, r, duration)
        log_result(out[i])


async def _web_part(
    archive: Archive, settings: Settings, todo: list[ChannelConfig], deadline: float
) -> list[ChannelSyncResult]:
    """The web channels, under the pass deadline. Those the deadline cut short keep what was
    archived (every page is its own transaction) and are recorded as not finished."""
    out: dict[int, ChannelSyncResult] = {}
    started = time.monotonic()
    since = utcnow()
    try:
        async with asyncio.timeout_at(deadline):
            await _sync_web(archive, settings, todo, out)
    except TimeoutError:
        log.warning("sync: web channels stopped at the pass deadline")
    except sqlite3.OperationalError:
        raise  # the archive cannot be written: recording the channels would fail too
    except Exception:  # the archiver's edge: a bug in one source must not stop the other
        log.exception("sync: web channels: unexpected failure")
    results: list[ChannelSyncResult] = []
    for i, cfg in enumerate(todo):
        if i in out:
            results.append(out[i])
            continue
        row = await get_channel(archive, cfg.ref)
        if row is not None and row.last_sync_at is not None and row.last_sync_at >= since:
            status = row.last_sync_status or "ok"  # finished before the deadline
            results.append(ChannelSyncResult(str(cfg.ref), "web", row.id, status=status,
                                             error=row.last_error, backfilled=row.backfilled,
                                             high_water=row.high_water))  # fmt: skip
        else:
            results.append(await _not_done(archive, cfg, _deadline_message(settings), started))
    return results


async def _telethon_part(
    archive: Archive,
    settings: Settings,
    todo: list[ChannelConfig],
    client: Any,
    deadline: float,
    run_one: Callable[[Any, ChannelConfig], Awaitable[ChannelSyncResult]],
    report: PassResults,
    what: str,
) -> list[ChannelSyncResult]:
    """The Telethon channels in order with one client (``client``, or one opened here). When
    Telegram cannot be reached, or the login is missing, every channel is recorded with that
    reason; once the network fails during the pass, the channels after it are recorded with
    it rather than each waiting out its own deadline."""
    from archiver.sources.telethon_flood import AccountFloodWait
    from archiver.sources.telethon_network import TelegramUnreachable, is_network_failure

    started = time.monotonic()
    results: list[ChannelSyncResult] = []
    own = client is None
    down: str | None = None  # why no further Telethon channel can work in this pass
    try:
        async with asyncio.timeout_at(deadline):
            if client is None:
                from archiver.sources.telethon_network import open_client

                try:
                    client = await open_client(settings, archive=archive)
                except NotLoggedIn as exc:
                    report.login_lost = exc
                    down = str(exc)
                except (TelegramUnreachable, ConfigError, AccountFloodWait) as exc:
                    down = str(exc)
            for cfg in todo:
                if down is not None:
                    results.append(await _not_done(archive, cfg, down, started))
                    continue
                try:
                    result, cause = await _guarded(
                        archive, cfg, partial(run_one, client, cfg), what
                    )
                except NotLoggedIn as exc:
                    report.login_lost = exc
                    down = str(exc)
                    results.append(await _not_done(archive, cfg, down, started))
                    continue
                results.append(result)
                if cause is not None and is_network_failure(cause):
                    down = f"not tried: Telegram stopped answering earlier in this pass ({cause})"
    except TimeoutError:
        report.deadline = True
        for cfg in todo[len(results) :]:
            results.append(await _not_done(archive, cfg, _deadline_message(settings), started))
    finally:
        if own and client is not None:
            await disconnect(client)
    return results


async def disconnect(client: Any) -> None:
    """Telethon's disconnect, bounded: it can wait on a connection that never closes."""
    try:
        async with asyncio.timeout(5):
            await client.disconnect()
    except (TimeoutError, OSError) as exc:
        log.warning("telegram: disconnect did not finish (%s); going on", type(exc).__name__)


async def _run_pass(
    archive: Archive,
    settings: Settings,
    todo: Sequence[ChannelConfig],
    client: Any,
    run_one: Callable[[Any, ChannelConfig], Awaitable[ChannelSyncResult]],
    what: str,
) -> PassResults:
    """The Telethon and the web channels of a pass side by side (two networks: a stalled
    Telegram cannot hold up the web channels), under one deadline; results in config order."""
    report = PassResults()
    deadline = asyncio.get_running_loop().time() + settings.schedule.pass_deadline_seconds
    telethon = [c for c in todo if c.source == "telethon"]
    web = [c for c in todo if c.source == "web"]
    for c in todo:
        if c.source not in ("telethon", "web"):  # config validation makes this unreachable
            log.warning("%s %s: unknown source %r, skipped", what, c.ref, c.source)
    parts: list[Awaitable[list[ChannelSyncResult]]] = []
    if telethon:
        parts.append(_telethon_part(archive, settings, telethon, client, deadline, run_one,
                                    report, what))  # fmt: skip
    if web:
        parts.append(_web_part(archive, settings, web, deadline))
    done = await _all_or_first_failure(parts)
    by_cfg: dict[int, ChannelSyncResult] = {}
    for cfgs, part_results in zip([c for c in (telethon, web) if c], done, strict=True):
        by_cfg.update((id(cfg), r) for cfg, r in zip(cfgs, part_results, strict=True))
    report.extend(by_cfg[id(c)] for c in todo if id(c) in by_cfg)
    report.deadline = report.deadline or any(
        r.error is not None and "pass_deadline_seconds" in r.error for r in report
    )
    return report


async def _all_or_first_failure(
    parts: Sequence[Awaitable[list[ChannelSyncResult]]],
) -> list[list[ChannelSyncResult]]:
    """The parts' results in order; if one raises (the archive cannot be written), the others
    are cancelled (their cleanup runs) before its exception is raised, rather than left
    running against an archive the caller is about to close."""
    tasks = [asyncio.ensure_future(p) for p in parts]
    if not tasks:
        return []
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        if not task.cancelled() and (exc := task.exception()) is not None:
            raise exc
    return [task.result() for task in tasks]


async def sync_all(
    archive: Archive,
    settings: Settings,
    *,
    client: Any = None,
    options: SyncOptions | None = None,
    channels: Sequence[ChannelConfig] | None = None,
) -> PassResults:
    """One sync pass over ``channels`` (default: every configured channel).

    ``client``: an already connected Telethon client (the live listener's, or a test's);
    otherwise one is connected for the pass when a Telethon channel exists. A missing login
    or an unreachable Telegram is recorded for every Telethon channel (``login_lost`` says
    which); the web channels go on either way."""
    todo = list(settings.channels if channels is None else channels)

    async def one(client: Any, cfg: ChannelConfig) -> ChannelSyncResult:
        from archiver.sources import telethon as tg

        return await tg.sync_telethon_channel(archive, client, cfg, settings, options=options)

    results = await _run_pass(archive, settings, todo, client, one, "sync")
    from archiver.evidence.roots import close_days

    await close_days(archive, settings.evidence.tsa_url)  # the log's roots of finished days
    return results


async def recheck_all(
    archive: Archive,
    settings: Settings,
    *,
    client: Any = None,
    options: SyncOptions | None = None,
) -> PassResults:
    """Re-read the recent window of every Telethon channel (``[recheck] recent_days``) and the
    rotation's share of older posts: edits and deletions made while we were not listening.
    Web channels need no separate pass: each web sync re-reads ``[web] recent_pages``."""
    todo = [c for c in settings.channels if c.source == "telethon"]
    if not todo:
        return PassResults()

    async def one(client: Any, cfg: ChannelConfig) -> ChannelSyncResult:
        from archiver.sources import telethon as tg

        return await tg.recheck_channel(archive, client, cfg, settings, options=options)

    return await _run_pass(archive, settings, todo, client, one, "recheck")


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
    from archiver.sources.telethon_live import run_live

    own = client is None
    if client is None:
        from archiver.sources.telethon_network import open_client

        client = await open_client(settings, receive_updates=True, archive=archive)
    try:
        await run_live(archive, client, settings, stop_event, options=options)
    finally:
        if own:
            await disconnect(client)
