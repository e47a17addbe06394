"""``telewatch run``: the whole service in one asyncio process.

Started in this order, each stopped in the reverse order:

1. the locks of the archive (and of the Telegram session when a channel uses Telethon): a
   second ``run`` or ``sync`` refuses at once;
2. the archive, with the rules engine installed, so every ingest queues its alerts;
3. the heartbeat (``heartbeats`` row ``run``, every ``[schedule] heartbeat_seconds``), which
   ``telewatch health`` reads;
4. one Telethon client, when any channel uses Telethon, shared by everything below (one session
   per process) and the live listener for the ``join = true`` channels;
5. the scheduler: ``sync`` for the channels that are not followed live (polled Telethon
   channels and web channels; it also runs once at start), ``recheck``, ``backup``,
   ``maintenance`` and ``digest``;
6. the bot (imported lazily), unless ``--no-bot``: then run ``telewatch bot`` elsewhere.
   Without a bot token the bot stays off and one warning says so (an archive-only team, or one
   whose bot is not made yet, can run it: no restart loop in a container).

SIGTERM or SIGINT sets one stop event. Each part is given a few seconds to finish what it is
doing and is then cancelled; every write is one transaction and every cursor is in the archive,
so nothing is lost: the next start resumes from there. The whole shutdown takes well under
10 s (Docker's default grace period). A part that fails stops the others and the command exits
non-zero with the reason. How it ended (a clean stop, or the error) is written into the
heartbeat row for ``telewatch health`` (:func:`archiver.health.record_end`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sqlite3
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from archiver.config import Settings
from archiver.errors import NotLoggedIn, TelewatchError
from archiver.health import record_end, record_start
from archiver.lock import instance_lock
from archiver.store.archive import Archive

log = logging.getLogger(__name__)

PROCESS = "run"
BOT_GRACE = 4.0  # seconds the bot gets to finish its current send and stop polling
JOBS_GRACE = 3.0  # seconds running jobs get before they are cancelled
LIVE_GRACE = 2.0
BOT_OFF = (
    "bot off: no bot token (TELEWATCH_BOT_TOKEN or [bot] token); archiving and the jobs run, "
    "alerts wait in the outbox until the token is set and telewatch restarted"
)


def uses_telethon(settings: Settings) -> bool:
    return any(c.source == "telethon" for c in settings.channels)


async def heartbeat_loop(
    archive: Archive, seconds: float, stop: asyncio.Event, process: str = PROCESS
) -> None:
    """Write the ``process`` heartbeat every ``seconds`` until ``stop`` is set (the first one
    is written at start-up, before anything reports the process as started)."""
    pid = os.getpid()
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)
        if stop.is_set():
            return
        try:
            await archive.heartbeat(process, pid)
        except sqlite3.OperationalError as exc:  # busy for longer than the busy timeout
            log.warning("heartbeat: not written (%s); trying again", exc)


async def _finish(task: asyncio.Task[Any], grace: float, what: str) -> None:
    """Give ``task`` up to ``grace`` seconds to end by itself, then cancel it; log how it
    failed, if it did (with the traceback: the log is redacted)."""
    if not task.done():
        await asyncio.wait([task], timeout=grace)
    if not task.done():
        log.warning("%s: did not stop within %.0f s; cancelling", what, grace)
        task.cancel()
        await asyncio.wait([task], timeout=1.0)
    if task.done() and not task.cancelled() and (exc := task.exception()) is not None:
        if isinstance(exc, TelewatchError):
            log.error("%s: %s", what, exc)
        else:
            log.error("%s failed", what, exc_info=exc)


def _jobs(
    archive: Archive,
    settings: Settings,
    client: Any,
    live: bool,
    wake: asyncio.Event,
    fatal: Callable[[TelewatchError], None],
) -> dict[str, Callable[[], Awaitable[object]]]:
    """The scheduler's job functions (the imports happen when a job first runs). ``wake`` is
    set after a sync or recheck, so the bot delivers their alerts at once, not at its next
    poll of the outbox. A lost Telegram login stops the whole process (``fatal``): nothing
    Telethon does can work until someone runs ``telewatch login``."""
    polled = [c for c in settings.channels if not (live and c.source == "telethon" and c.join)]
    reconnecting = asyncio.Lock()

    async def connected() -> None:
        """Connect the shared client again when Telegram dropped it (or never answered at
        start). The live listener does this itself when there is one; without it nothing
        else would, and every later pass would fail with "Cannot send requests while
        disconnected". A failure here is recorded by the pass, channel by channel."""
        if client is None or live:
            return
        async with reconnecting:
            if client.is_connected():
                return
            try:
                await client.connect()  # bounded: DeadlineClient.connect
            except OSError as exc:  # TimeoutError is one
                log.warning("telegram: not reachable yet (%s); this pass records it", exc)

    async def sync() -> object:
        from archiver.store.followed import channel_configs
        from archiver.sync import sync_all

        await connected()
        try:  # and the channels admins follow from the chat: read each pass, no restart
            extra = await channel_configs(archive, settings)
        except sqlite3.Error as exc:
            log.warning("sync: the channels followed from the chat could not be read (%s)", exc)
            extra = []
        try:
            channels = [*polled, *extra]
            results = await sync_all(archive, settings, client=client, channels=channels)
        except NotLoggedIn as exc:
            fatal(exc)
            raise
        finally:
            wake.set()
        if (lost := getattr(results, "login_lost", None)) is not None:
            fatal(lost)
        return results

    async def recheck() -> object:
        from archiver.sync import recheck_all

        await connected()
        try:
            results = await recheck_all(archive, settings, client=client)
        except NotLoggedIn as exc:
            fatal(exc)
            raise
        finally:
            wake.set()
        if (lost := getattr(results, "login_lost", None)) is not None:
            fatal(lost)
        return results

    async def backup() -> object:
        from archiver.backup import backup as run_backup

        st = settings.storage
        return await run_backup(archive.path, st.backup_dir, st.backup_keep)

    async def maintenance() -> object:
        from archiver.maintenance import maintain

        return await maintain(
            archive, capture_retention_days=settings.evidence.capture_retention_days
        )

    jobs: dict[str, Callable[[], Awaitable[object]]] = {}
    if archive.dialect == "sqlite":
        jobs["backup"] = backup
    else:
        log.info("archive on PostgreSQL: no backup job (pg_dump does that: docs/postgresql.md)")
    jobs["maintenance"] = maintenance
    jobs["sync"] = sync  # also with no channel configured: /follow may add some
    if uses_telethon(settings):
        jobs["recheck"] = recheck
    if settings.bot.token:

        async def digest() -> object:
            from archiver.digest import send_digests

            return await send_digests(
                archive, settings, translate_for=await digest_languages(archive)
            )

        jobs["digest"] = digest
    elif settings.schedule.digest:
        log.warning("schedule.digest is set but bot.token is not: no digest will be sent")
    return jobs


async def digest_languages(archive: Archive) -> Callable[[int], Callable[[str], str]]:
    """Each chat's ``_`` as the bot speaks to it (its /lang, else the language seen for it,
    else English), for the scheduled digest. The bot's catalogs are the bot's: imported
    here, when a digest is due, as `run` imports the bot itself."""
    from archiver.store.user_langs import all_langs, all_seen_langs
    from bot.i18n import pick, translator

    chosen, seen = await all_langs(archive), await all_seen_langs(archive)
    return lambda chat: translator(pick(chosen.get(chat), seen.get(chat)))


async def run(
    settings: Settings,
    *,
    with_bot: bool = True,
    stop: asyncio.Event | None = None,
) -> None:
    """Run until SIGTERM/SIGINT (or ``stop`` is set); see the module docstring."""
    note = None
    if with_bot and not settings.bot.token:
        log.warning("%s", BOT_OFF)
        with_bot, note = False, BOT_OFF
    stop = stop or asyncio.Event()
    with instance_lock(settings, session=uses_telethon(settings), command="run"):
        try:
            await _run(settings, with_bot, stop, note)
        except (Exception, asyncio.CancelledError) as exc:
            await record_end(
                settings.storage.path, PROCESS, os.getpid(), exc, url=settings.storage.url
            )
            raise
        await record_end(
            settings.storage.path, PROCESS, os.getpid(), None, url=settings.storage.url
        )


async def _run(
    settings: Settings, with_bot: bool, stop: asyncio.Event, note: str | None = None
) -> None:
    tasks: dict[str, asyncio.Task[Any]] = {}  # the long-running parts, by name
    trigger: list[str] = []  # the part whose end stopped the others, if one did
    fatal: list[TelewatchError] = []  # an error of a job that must stop the process

    def stop_with(exc: TelewatchError) -> None:
        if not stop.is_set():
            log.error("stopping: %s", exc)
            fatal.append(exc)
            stop.set()

    async with contextlib.AsyncExitStack() as stack:
        try:
            starting = asyncio.ensure_future(
                _start(settings, with_bot, stop, stack, tasks, trigger, stop_with, note)
            )
            # A signal during start-up (connecting to a Telegram that does not answer, say)
            # stops the start at once rather than after it.
            await _until_stopped(starting, stop)
            await stop.wait()
            log.info("telewatch run: stopping")
        finally:
            stop.set()  # teardown (the stack, in reverse) starts with every part told to stop
    log.info("telewatch run: stopped")
    if fatal:
        raise fatal[0]
    if trigger:
        failure = _failure(trigger[0], tasks[trigger[0]])
        if failure is not None:
            raise failure


async def _until_stopped(starting: asyncio.Future[None], stop: asyncio.Event) -> None:
    """Wait for ``starting`` to finish, unless ``stop`` is set first: then cancel it (each
    part it started is already on the exit stack and is stopped by it)."""
    stopping: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([starting, stopping], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if not starting.done():
        log.info("telewatch run: stopped while starting")
        starting.cancel()
        await asyncio.wait([starting], timeout=JOBS_GRACE)
        return
    starting.result()  # a start-up failure is the command's failure


async def _start(
    settings: Settings,
    with_bot: bool,
    stop: asyncio.Event,
    stack: contextlib.AsyncExitStack,
    tasks: dict[str, asyncio.Task[Any]],
    trigger: list[str],
    fatal: Callable[[TelewatchError], None],
    note: str | None = None,
) -> None:
    from archiver.rules import RuleLoader
    from archiver.scheduler import Scheduler

    loop = asyncio.get_running_loop()
    loader = RuleLoader.for_settings(settings)  # a bad config rule stops start-up here
    archive = await Archive.open_storage(settings.storage)
    stack.push_async_callback(archive.close)
    loader.install(archive)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, sig, stop)
        stack.callback(loop.remove_signal_handler, sig)

    def start(name: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        def ended(task: asyncio.Task[Any]) -> None:
            if stop.is_set() or (name == "live" and not task.cancelled() and not task.exception()):
                return  # told to stop; or nothing to follow live, which is no reason to stop
            trigger.append(name)
            stop.set()

        task = loop.create_task(coro, name=name)
        task.add_done_callback(ended)
        tasks[name] = task
        return task

    await record_start(archive, PROCESS, os.getpid(), note)
    hb = start("heartbeat", heartbeat_loop(archive, settings.schedule.heartbeat_seconds, stop))
    stack.push_async_callback(_finish, hb, 1.0, "heartbeat")

    wake = asyncio.Event()  # set when alerts may have been committed; the bot's delivery waits
    archive.on_alerts = wake.set  # every commit that queues alerts wakes the bot at once
    client: Any = None
    live = any(c.source == "telethon" and c.join for c in settings.channels)
    if uses_telethon(settings):
        from archiver.sync import disconnect

        client = await _open_telegram(settings, live, archive)
        stack.push_async_callback(disconnect, client)
    if live:
        from archiver.sync import follow_live

        task = start("live", follow_live(archive, settings, stop, client=client))
        stack.push_async_callback(_finish, task, LIVE_GRACE, "live listener")

    scheduler = Scheduler(
        _jobs(archive, settings, client, live, wake, fatal),
        settings.schedule,
        timezone=settings.display.timezone,
    )
    scheduler.start(run_now=["sync"])  # catch up the polled channels at once
    stack.push_async_callback(scheduler.stop, JOBS_GRACE)

    if with_bot:
        from bot.app import run_bot

        task = start("bot", run_bot(settings, archive=archive, stop_event=stop, wake=wake))
        stack.push_async_callback(_finish, task, BOT_GRACE, "bot")

    if not settings.channels:
        log.warning(
            "no channels configured: nothing to follow; add [[channels]] to the config "
            "(see config.example.toml), or try `telewatch demo`"
        )
    log.info(
        "telewatch run: started (pid %d): %d channel(s), live %s, jobs %s, bot %s",
        os.getpid(),
        len(settings.channels),
        "on" if live else "off",
        ", ".join(scheduler.job_names) or "none",
        "on" if with_bot else "off",
    )


async def _open_telegram(settings: Settings, live: bool, archive: Archive) -> Any:
    """The shared client. A flood wait at the login check is waited out here (a signal
    cancels the wait), not an exit: under a restart policy an exit would connect again at
    every restart, during the wait. Telegram unreachable: a client not connected yet."""
    from archiver.sources.telethon_flood import AccountFloodWait
    from archiver.sources.telethon_network import TelegramUnreachable, offline_client, open_client

    while True:
        try:
            return await open_client(settings, receive_updates=live, archive=archive)
        except TelegramUnreachable as exc:
            # The web channels, the jobs and the bot need no Telegram: go on, and let the next
            # pass (or the live listener's reconnect loop) connect. Exiting here made a restart
            # loop in which nothing at all was archived or delivered.
            log.error("telegram: %s; going on without it for now: the web channels and the "
                      "bot work, and Telegram is tried again %s", exc,
                      "by the live listener" if live else "at each pass")  # fmt: skip
            return offline_client(settings, receive_updates=live)
        except AccountFloodWait as exc:
            log.warning(
                "telegram: a flood wait on %s until %s UTC; connecting again then (nothing is"
                " sent before)", exc.method, f"{exc.until:%Y-%m-%d %H:%M}",
            )  # fmt: skip
            await asyncio.sleep(max(exc.seconds, 1))


def _on_signal(sig: signal.Signals, stop: asyncio.Event) -> None:
    if not stop.is_set():
        log.info("received %s: shutting down", sig.name)
        stop.set()


def _failure(name: str, task: asyncio.Task[Any]) -> TelewatchError | None:
    """Why the part that ended first stopped the process (it was not told to stop)."""
    if task.cancelled():
        return TelewatchError(f"{name} was cancelled unexpectedly; see the log above")
    exc = task.exception()
    if isinstance(exc, TelewatchError):
        return exc
    if exc is not None:
        # Never the exception's own text here: it may carry a token, and this line is printed
        # by the CLI without the log's redaction. The log line (redacted) has the details.
        return TelewatchError(f"{name} failed with {type(exc).__name__}; see the log above")
    return TelewatchError(f"{name} stopped unexpectedly; see the log above")
