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
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import replace
from functools import partial
from typing import Any, TypeVar

from archiver.config import ChannelConfig, Settings
from archiver.errors import ConfigError, NotLoggedIn, TelewatchError
from archiver.sources.result import ChannelSyncResult, MediaFetcher, Sleeper, SyncOptions
from archiver.store.archive import Archive, utcnow
from archiver.store.channels import get_channel, record_sync

log = logging.getLogger(__name__)

T = TypeVar("T")

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

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        # Each account whose login is missing or revoked (``[[accounts]]``); ``login_lost`` is
        # set only when every account of the pass lost it (one account cannot stop the rest).
        self.logins_lost: dict[str, NotLoggedIn] = {}

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
                    report.login_lost = _named(settings, exc)
                    down = str(report.login_lost)
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


def _clients(settings: Settings, client: Any, clients: Mapping[str, Any] | None) -> dict[str, Any]:
    """The connected clients by account name: ``clients``, or ``client`` as the client of the
    one account (a config without ``[[accounts]]``, or with one)."""
    out = dict(clients or {})
    if client is not None:
        if len(settings.accounts) != 1:
            raise TypeError("client= is for one account; pass clients= by account name")
        out.setdefault(settings.accounts[0].name, client)
    return out


async def _accounts_part(
    archive: Archive,
    settings: Settings,
    todo: list[ChannelConfig],
    clients: Mapping[str, Any],
    deadline: float,
    run_one: Callable[[Any, ChannelConfig], Awaitable[ChannelSyncResult]],
    report: PassResults,
    what: str,
    assigned: Mapping[str, str | None],
    accounts: Collection[str] | None,
) -> dict[int, ChannelSyncResult]:
    """The Telethon channels, each account's with that account's client (``clients``, or one
    opened for the pass with its own session), the accounts side by side: a flood wait or an
    unreachable Telegram on one account never holds up another's channels. ``accounts``: run
    only these accounts' channels (None: every account). A channel with no account (none has
    room) is recorded as such."""
    from archiver.config import account_settings
    from archiver.sources.telethon_accounts import by_account

    started = time.monotonic()
    groups, none = by_account(todo, dict(assigned))
    names = [a.name for a in settings.accounts if a.name in groups]
    if accounts is not None:
        names = [n for n in names if n in accounts]
    reports = {n: PassResults() for n in names}
    done = await _all_or_first_failure([
        _telethon_part(archive, account_settings(settings, n), groups[n], clients.get(n),
                       deadline, run_one, reports[n], what)
        for n in names
    ])  # fmt: skip
    by_cfg: dict[int, ChannelSyncResult] = {}
    for n, part in zip(names, done, strict=True):
        by_cfg.update((id(c), r) for c, r in zip(groups[n], part, strict=True))
        report.deadline = report.deadline or reports[n].deadline
        if (lost := reports[n].login_lost) is not None:
            report.logins_lost[n] = lost
            if settings.configured_accounts:
                await _login_status(archive, groups[n], lost)
    if names and len(report.logins_lost) == len(names):
        report.login_lost = report.logins_lost[names[0]]
    if accounts is None:
        for cfg in none:
            by_cfg[id(cfg)] = await _no_account(archive, cfg, started)
    return by_cfg


async def _login_status(archive: Archive, todo: list[ChannelConfig], lost: NotLoggedIn) -> None:
    """An account's login is missing: its channels' status says so (``stats``, ``health``,
    the bot), also for those never read yet; the next good read sets them ``ok``."""
    from archiver.store.following import set_status

    for cfg in todo:
        await set_status(archive, cfg.ref, source="telethon", status="error", reason=str(lost),
                         now=utcnow())  # fmt: skip


async def _no_account(archive: Archive, cfg: ChannelConfig, started: float) -> ChannelSyncResult:
    """A Telethon channel that no account has room for: recorded, logged, in one line."""
    from archiver.sources.telethon_accounts import NO_ACCOUNT, NO_ROOM

    result = await _failed(archive, cfg, f"{cfg.ref}: {NO_ROOM}", started)
    result = replace(result, status=NO_ACCOUNT)
    log_result(result)
    return result


def _named(settings: Settings, exc: NotLoggedIn) -> NotLoggedIn:
    """A lost login naming its ``[[accounts]]`` account (as it is without accounts)."""
    if settings.for_account is None:
        return exc
    from archiver.sources.telethon_session import named

    return named(settings, exc)


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
    clients: Mapping[str, Any],
    run_one: Callable[[Any, ChannelConfig], Awaitable[ChannelSyncResult]],
    what: str,
    assigned: Mapping[str, str | None],
    accounts: Collection[str] | None,
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
    parts: list[Awaitable[dict[int, ChannelSyncResult]]] = []
    if telethon:
        parts.append(_accounts_part(archive, settings, telethon, clients, deadline, run_one,
                                    report, what, assigned, accounts))  # fmt: skip
    if web:
        parts.append(_by_cfg(web, _web_part(archive, settings, web, deadline)))
    done = await _all_or_first_failure(parts)
    by_cfg: dict[int, ChannelSyncResult] = {}
    for part_results in done:
        by_cfg.update(part_results)
    report.extend(by_cfg[id(c)] for c in todo if id(c) in by_cfg)
    report.deadline = report.deadline or any(
        r.error is not None and "pass_deadline_seconds" in r.error for r in report
    )
    return report


async def _by_cfg(
    cfgs: list[ChannelConfig], part: Awaitable[list[ChannelSyncResult]]
) -> dict[int, ChannelSyncResult]:
    """A part's results (in the order of ``cfgs``) by ``id`` of their channel's config."""
    return {id(c): r for c, r in zip(cfgs, await part, strict=True)}


async def _all_or_first_failure(parts: Sequence[Awaitable[T]]) -> list[T]:
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
    clients: Mapping[str, Any] | None = None,
    options: SyncOptions | None = None,
    channels: Sequence[ChannelConfig] | None = None,
    accounts: Collection[str] | None = None,
) -> PassResults:
    """One sync pass over ``channels`` (default: every configured channel).

    The Telethon channels are first given their accounts (:func:`assign`); each account's
    run with its client: ``clients`` (by account name; ``client`` for the one account of a
    config without ``[[accounts]]``): already connected ones (the live listener's, or a
    test's); otherwise one is connected for the pass per account with channels. A missing
    login or an unreachable Telegram is recorded for every channel of that account
    (``logins_lost`` says which; ``login_lost`` when every account lost it); the other
    accounts and the web channels go on either way. ``accounts``: only these accounts'
    Telethon channels (the web channels all run)."""
    todo = list(settings.channels if channels is None else channels)

    async def one(client: Any, cfg: ChannelConfig) -> ChannelSyncResult:
        from archiver.sources import telethon as tg

        return await tg.sync_telethon_channel(archive, client, cfg, settings, options=options)

    assigned = await _assign(archive, settings, [*settings.channels, *todo], todo)
    results = await _run_pass(archive, settings, todo, _clients(settings, client, clients), one,
                              "sync", assigned, accounts)  # fmt: skip
    from archiver.evidence.roots import close_days

    await close_days(archive, settings.evidence.tsa_url)  # the log's roots of finished days
    return results


async def _assign(
    archive: Archive,
    settings: Settings,
    every: Sequence[ChannelConfig],
    todo: Sequence[ChannelConfig],
) -> dict[str, str | None]:
    """The accounts of the Telethon channels (assigned over ``every`` channel, so that each
    account's room counts all of them); nothing to do (no Telegram import) without any."""
    if not any(c.source == "telethon" for c in todo):
        return {}
    from archiver.sources.telethon_accounts import assign

    return await assign(archive, settings, every)


async def recheck_all(
    archive: Archive,
    settings: Settings,
    *,
    client: Any = None,
    clients: Mapping[str, Any] | None = None,
    options: SyncOptions | None = None,
    accounts: Collection[str] | None = None,
) -> PassResults:
    """Re-read the recent window of every Telethon channel (``[recheck] recent_days``) and the
    rotation's share of older posts: edits and deletions made while we were not listening.
    Web channels need no separate pass: each web sync re-reads ``[web] recent_pages``.
    Each account's channels with its own client, as :func:`sync_all`."""
    todo = [c for c in settings.channels if c.source == "telethon"]
    if not todo:
        return PassResults()

    async def one(client: Any, cfg: ChannelConfig) -> ChannelSyncResult:
        from archiver.sources import telethon as tg

        return await tg.recheck_channel(archive, client, cfg, settings, options=options)

    assigned = await _assign(archive, settings, settings.channels, todo)
    return await _run_pass(archive, settings, todo, _clients(settings, client, clients), one,
                           "recheck", assigned, accounts)  # fmt: skip


async def follow_live(
    archive: Archive,
    settings: Settings,
    stop_event: asyncio.Event,
    *,
    client: Any = None,
    clients: Mapping[str, Any] | None = None,
    options: SyncOptions | None = None,
    assigned: Mapping[str, str | None] | None = None,
    accounts: Collection[str] | None = None,
) -> None:
    """Follow the ``join = true`` Telethon channels live until ``stop_event`` is set: catch up
    from each high-water mark, then ingest new, edited and deleted posts as they happen (and
    catch up again after every reconnect). Used by ``telewatch run``.

    One listener per account (``accounts``: only these), each on that account's client
    (``clients``/``client``, else one it connects), side by side. ``assigned`` (channel key ->
    account): read again at every catch-up, so a channel the sync pass moved to another
    account is followed there from then on; None: assigned here once. An account whose login
    is lost stops its own listener only (its channels are recorded with the reason) unless
    it is the last one: then :class:`NotLoggedIn` is raised, as with one account."""
    todo = [c for c in settings.channels if c.source == "telethon" and c.join]
    if not todo:
        log.info("live: no Telethon channel with join = true; nothing to follow")
        return
    if assigned is None:
        assigned = await _assign(archive, settings, settings.channels, todo)
    current = assigned
    by_name = _clients(settings, client, clients)
    names = [a.name for a in settings.accounts if any(current.get(_key(c)) == a.name for c in todo)]
    if accounts is not None:
        names = [n for n in names if n in accounts]

    def channels_of(name: str) -> Callable[[], list[ChannelConfig]]:
        return lambda: [c for c in todo if current.get(_key(c)) == name]

    lost: list[NotLoggedIn] = []
    tasks = [
        asyncio.ensure_future(
            _live_account(archive, settings, n, stop_event, by_name.get(n), options,
                          channels_of(n), lost, len(names))
        )
        for n in names
    ]  # fmt: skip
    if not tasks:
        log.info("live: no account has a channel with join = true; nothing to follow")
        return
    await _all_or_first_failure(tasks)


def _key(cfg: ChannelConfig) -> str:
    from archiver.store.following import ref_key

    return ref_key(cfg.ref)


async def _live_account(
    archive: Archive,
    settings: Settings,
    name: str,
    stop_event: asyncio.Event,
    client: Any,
    options: SyncOptions | None,
    channels: Callable[[], list[ChannelConfig]],
    lost: list[NotLoggedIn],
    accounts: int,
) -> None:
    """One account's live listener (see :func:`follow_live`)."""
    from archiver.config import account_settings
    from archiver.sources.telethon_live import run_live

    mine = account_settings(settings, name)
    own = client is None
    try:
        if client is None:
            from archiver.sources.telethon_network import open_client

            client = await open_client(mine, receive_updates=True, archive=archive)
        await run_live(archive, client, mine, stop_event, options=options, channels=channels)
    except NotLoggedIn as exc:
        lost.append(exc)
        if len(lost) == accounts:
            raise
        log.error("live: account %s: %s; its channels wait, the other accounts go on", name, exc)
        started = time.monotonic()
        for cfg in channels():
            await _not_done(archive, cfg, str(exc), started)
    finally:
        if own and client is not None:
            await disconnect(client)
