"""``telewatch run``: the whole service in one asyncio process.

Started in this order, each stopped in the reverse order:

1. the locks of the archive (and of the Telegram session when a channel uses Telethon): a
   second ``run`` or ``sync`` refuses at once;
2. the archive, with the rules engine installed, so every ingest queues its alerts;
3. the heartbeat (``heartbeats`` row ``run``, every ``[schedule] heartbeat_seconds``), which
   ``telewatch health`` reads;
4. the worker (archiver/worker.py, archiver/units.py): its leases of the units it follows
   (``--worker NAME`` shares them with other processes; without it, every unit nobody else
   holds), renewed in the background; the parts below run only the held units;
5. one Telethon client per account that has channels (``[[accounts]]``; without them the one
   account of ``[telegram]``), each shared by everything below (one session per process), and
   a live listener per account for its ``join = true`` channels: each account is a unit of
   the worker (:class:`archiver.units.Units`; :class:`Telegram` when the jobs get clients);
6. the scheduler: ``sync`` for the channels that are not followed live (polled Telethon
   channels and web channels; it also runs once at start), ``recheck``, ``backup``,
   ``maintenance`` and ``digest``;
7. the bot (imported lazily), unless ``--no-bot``: then run ``telewatch bot`` elsewhere.
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
from collections.abc import Awaitable, Callable, Collection, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from archiver.config import ChannelConfig, Settings, account_settings
from archiver.errors import NotLoggedIn, TelewatchError
from archiver.health import record_end, record_start
from archiver.lock import instance_lock
from archiver.store.archive import Archive
from archiver.store.following import ref_key

if TYPE_CHECKING:
    from archiver.scheduler import Scheduler
    from archiver.units import Units

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
    client: Units | Telegram | Any,
    live: bool,
    wake: asyncio.Event,
    fatal: Callable[[TelewatchError], None],
) -> dict[str, Callable[[], Awaitable[object]]]:
    """The scheduler's job functions (the imports happen when a job first runs). ``wake`` is
    set after a sync or recheck, so the bot delivers their alerts at once, not at its next
    poll of the outbox. A lost Telegram login of every account stops the whole process
    (``fatal``): nothing Telethon does can work until someone runs ``telewatch login``; one
    account of several is recorded on its channels, and the others go on. ``client``: the
    :class:`Telegram` of the run, or the one client of a config without ``[[accounts]]``
    (``live``: its channels are followed live); or the :class:`archiver.units.Units` of a
    worker: then every pass covers only the units it holds, each account with its client."""
    from archiver.units import Units

    if isinstance(client, Units):
        units: Units | Everything = client
    else:
        units = Everything(client if isinstance(client, Telegram)
                           else Telegram.of(settings, client, live))  # fmt: skip
    reconnecting = asyncio.Lock()

    async def connected() -> None:
        """Connect the shared clients again when Telegram dropped them (or never answered at
        start). A live listener does this itself for its account; without one nothing else
        would, and every later pass would fail with "Cannot send requests while
        disconnected". A failure here is recorded by the pass, channel by channel."""
        async with reconnecting:
            for name, client in units.polled_clients().items():
                # asked again before each: a unit stopped while another account connected
                # (lost, or given back) is no longer this worker's to connect
                still = any(c is client for c in units.polled_clients().values())
                if client.is_connected() or not still:
                    continue
                try:
                    await client.connect()  # bounded: DeadlineClient.connect
                except OSError as exc:  # TimeoutError is one
                    log.warning("telegram: account %s not reachable yet (%s); this pass"
                                " records it", name, exc)  # fmt: skip

    async def a_pass(run: Awaitable[Any]) -> Any:
        """A sync or recheck pass: the bot woken after it; every account's login lost, or
        the one client's, stops the process (``fatal``)."""
        try:
            results = await run
        except NotLoggedIn as exc:
            fatal(exc)
            raise
        finally:
            wake.set()
        if (lost := getattr(results, "login_lost", None)) is not None:
            fatal(lost)
        return results

    async def sync() -> object:
        from archiver.store.followed import channel_configs
        from archiver.sync import sync_all

        while True:  # again while units gained meanwhile wait for their catch-up pass
            await connected()
            try:  # and the channels admins follow from the chat: read each pass, no restart
                extra = await channel_configs(archive, settings)
            except sqlite3.Error as exc:
                log.warning("sync: the channels followed from the chat could not be read (%s)",
                            exc)  # fmt: skip
                extra = []
            covered = units.runnable_units()
            channels = await units.polled(archive, settings, extra)
            results = await a_pass(sync_all(archive, settings, channels=channels,
                                            **units.kwargs()))  # fmt: skip
            units.caught_up(covered)
            if not units.pending():
                return results

    async def recheck() -> object:
        from archiver.sync import recheck_all

        await connected()
        if not units.rechecks():  # this worker holds no account now
            return None
        return await a_pass(recheck_all(archive, settings, **units.kwargs()))

    async def backup() -> object:
        from archiver.backup import backup as run_backup

        st = settings.storage
        return await run_backup(archive.path, st.backup_dir, st.backup_keep)

    async def maintenance() -> object:
        from archiver.maintenance import maintain

        return await maintain(
            archive,
            capture_retention_days=settings.evidence.capture_retention_days,
            settings=settings,
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
    worker: str | None = None,
) -> None:
    """Run until SIGTERM/SIGINT (or ``stop`` is set); see the module docstring. ``worker``:
    run as that named worker, sharing the units with the others (``--worker``)."""
    note = None
    if with_bot and not settings.bot.token:
        log.warning("%s", BOT_OFF)
        with_bot, note = False, BOT_OFF
    stop = stop or asyncio.Event()
    session = uses_telethon(settings) and worker is None  # a worker locks it per account unit
    with instance_lock(settings, session=session, command="run", worker=worker):
        try:
            await _run(settings, with_bot, stop, note, worker)
        except (Exception, asyncio.CancelledError) as exc:
            await record_end(
                settings.storage.path, PROCESS, os.getpid(), exc, url=settings.storage.url
            )
            raise
        await record_end(
            settings.storage.path, PROCESS, os.getpid(), None, url=settings.storage.url
        )


async def _run(
    settings: Settings,
    with_bot: bool,
    stop: asyncio.Event,
    note: str | None = None,
    worker: str | None = None,
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
                _start(settings, with_bot, stop, stack, tasks, trigger, stop_with, note, worker)
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
    worker_name: str | None = None,
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
    live = any(c.source == "telethon" and c.join for c in settings.channels)
    scheduler: list[Scheduler] = []  # once started: the units' catch-up triggers its sync
    units = await _start_worker(archive, settings, worker_name, stop, stack, start, fatal,
                                lambda: scheduler and scheduler[0].trigger("sync"))  # fmt: skip
    scheduler.append(Scheduler(
        _jobs(archive, settings, units, live, wake, fatal),
        settings.schedule,
        timezone=settings.display.timezone,
    ))  # fmt: skip
    scheduler[0].start(run_now=["sync"])  # catch up the polled channels at once
    stack.push_async_callback(scheduler[0].stop, JOBS_GRACE)

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
        "telewatch run: started (pid %d, worker %s): %d channel(s), live %s, jobs %s, bot %s",
        os.getpid(),
        units.worker.name,
        len(settings.channels),
        "on" if live else "off",
        ", ".join(scheduler[0].job_names) or "none",
        "on" if with_bot else "off",
    )


async def _start_worker(
    archive: Archive,
    settings: Settings,
    name: str | None,
    stop: asyncio.Event,
    stack: contextlib.AsyncExitStack,
    start: Callable[[str, Coroutine[Any, Any, Any]], asyncio.Task[Any]],
    fatal: Callable[[TelewatchError], None],
    catch_up: Callable[[], object],
) -> Units:
    """Register the worker, take its units and start them (each account's client and live
    listener here, side by side, as before: a missing login of the only account stops the
    start), then renew the leases in the background (archiver/units.py). Without a ``name``
    the worker is ``run@<host>`` and takes every unit nobody else holds."""
    from archiver.units import Units, lease_loop
    from archiver.worker import Worker, default_name

    leases_db = await Archive.open_storage(settings.storage)  # the leases' own connection
    stack.push_async_callback(leases_db.close)
    worker = Worker(archive, settings, name or default_name(), share=name is not None,
                    leases_db=leases_db)  # fmt: skip
    stack.push_async_callback(worker.stop)  # last: after every part of a unit has stopped
    change = await worker.start()
    archive.fence = worker.fence

    def failed(what: str, exc: BaseException | None) -> None:
        if isinstance(exc, TelewatchError):
            fatal(exc)
        else:
            log.error("%s failed", what, exc_info=exc)
            fatal(TelewatchError(f"{what} failed; see the log above"))

    units = Units(archive, settings, worker, stop, open_client=_open_telegram, failed=failed,
                  catch_up=catch_up, session_locks=name is not None)  # fmt: skip
    stack.push_async_callback(units.stop_all)
    await asyncio.gather(*(units.start(u, wait=True) for u in sorted(change.gained)))
    worker.pending -= units.runnable_units()  # the first pass (run_now) catches them up
    task = start("leases", lease_loop(units, stop))
    stack.push_async_callback(_finish, task, 1.0, "leases")
    if not worker.held and worker.units:
        log.warning("worker %s: every unit is held by another worker; standing by",
                    worker.name)  # fmt: skip
    return units


class Everything:
    """No leases: every channel, with the clients of a :class:`Telegram` (what the jobs are
    given by tests and the fault suite); the same surface as :class:`archiver.units.Units`."""

    def __init__(self, tg: Telegram) -> None:
        self.tg = tg

    def polled_clients(self) -> dict[str, Any]:
        return {n: c for n, c in self.tg.clients.items() if n not in self.tg.live}

    async def polled(
        self, archive: Archive, settings: Settings, extra: Sequence[ChannelConfig]
    ) -> list[ChannelConfig]:
        return await self.tg.polled(archive, settings, extra)

    def kwargs(self) -> dict[str, Any]:
        return self.tg.kwargs()

    def rechecks(self) -> bool:
        return True

    def runnable_units(self) -> set[str]:
        return set()

    def caught_up(self, units: Collection[str]) -> None:
        return None

    def pending(self) -> set[str]:
        return set()


class Telegram:
    """The Telegram side of ``run``: one client per account that has channels (one session
    per process), the accounts followed live, and the channels' accounts (read again at every
    sync pass; the live listeners read this same mapping, so a channel that moves to another
    account is followed there from the next pass on).

    ``accounts``: the accounts this process runs (None: all). A channel whose account is
    not run here is left to whoever runs it."""

    def __init__(self, accounts: Collection[str] | None = None) -> None:
        self.accounts = accounts
        self.clients: dict[str, Any] = {}
        self.live: set[str] = set()  # accounts with a live listener
        self.assigned: dict[str, str | None] = {}
        self.single = True  # a config without [[accounts]]

    @classmethod
    def of(cls, settings: Settings, client: Any, live: bool) -> Telegram:
        """The Telegram of one account's client (None: none opened)."""
        tg = cls()
        tg.single = not settings.configured_accounts
        if client is not None:
            name = settings.accounts[0].name
            tg.clients[name] = client
            if live:
                tg.live.add(name)
        return tg

    def kwargs(self, *, live: bool = False) -> dict[str, Any]:
        """What ``sync_all``/``recheck_all`` (and with ``live``, ``follow_live``) are given:
        the clients by account and the accounts run here; with one account of a config
        without ``[[accounts]]`` and no filter, its client alone (``client=``), as before."""
        accounts = self.live if live else self.accounts
        if self.single and self.accounts is None:
            return {"client": next(iter(self.clients.values()), None)}
        out: dict[str, Any] = {"clients": self.clients, "accounts": accounts}
        if live:
            out["assigned"] = self.assigned
        return out

    async def assign(
        self, archive: Archive, settings: Settings, extra: Sequence[ChannelConfig] = ()
    ) -> dict[str, str | None]:
        from archiver.sources.telethon_accounts import assign

        now = await assign(archive, settings, [*settings.channels, *extra])
        self.assigned.clear()
        self.assigned.update(now)
        return self.assigned

    async def open(
        self, archive: Archive, settings: Settings, live: bool, stack: contextlib.AsyncExitStack
    ) -> None:
        """Assign the channels, then open the clients of the accounts that have some, side
        by side. With several accounts, one whose login is missing gets no client: each pass
        records its channels with the reason, the others go on; with one, it stops the start
        as before."""
        from archiver.store.followed import channel_configs
        from archiver.sync import disconnect

        try:
            extra = await channel_configs(archive, settings)
        except sqlite3.Error:
            extra = []
        assigned = await self.assign(archive, settings, extra)
        used = set(assigned.values())
        names = [a.name for a in settings.accounts if a.name in used]
        if self.accounts is not None:
            names = [n for n in names if n in self.accounts]
        single = len(settings.accounts) == 1
        self.single = not settings.configured_accounts

        async def one(name: str) -> None:
            from archiver.sources.telethon_flood import AccountFloodWait

            mine = account_settings(settings, name)
            try:
                client = await _open_telegram(mine, live, archive, wait=single)
            except NotLoggedIn as exc:
                if single:
                    raise
                log.error("telegram: %s; that account's channels are recorded with it at each"
                          " pass, the other accounts go on", exc)  # fmt: skip
                return
            except AccountFloodWait as exc:  # several accounts: the others do not wait for it
                log.warning("telegram: account %s: %s; its channels are tried at each pass, the"
                            " other accounts go on", name, exc)  # fmt: skip
                return
            self.clients[name] = client
            stack.push_async_callback(disconnect, client)

        await asyncio.gather(*(one(n) for n in names))
        live_channels = {assigned.get(ref_key(c.ref)) for c in settings.channels
                         if c.source == "telethon" and c.join}  # fmt: skip
        self.live = {n for n in self.clients if live and n in live_channels}

    async def polled(
        self, archive: Archive, settings: Settings, extra: Sequence[ChannelConfig]
    ) -> list[ChannelConfig]:
        """The channels a sync pass reads: all but the ``join = true`` Telethon channels of
        an account that a live listener follows (it reads them itself), after assigning the
        channels again."""
        assigned = await self.assign(archive, settings, extra)

        def live(c: ChannelConfig) -> bool:
            return c.source == "telethon" and c.join and assigned.get(ref_key(c.ref)) in self.live

        return [c for c in [*settings.channels, *extra] if not live(c)]


async def _open_telegram(
    settings: Settings, live: bool, archive: Archive, *, wait: bool = True
) -> Any:
    """The shared client. A flood wait at the login check is waited out here (a signal
    cancels the wait), not an exit: under a restart policy an exit would connect again at
    every restart, during the wait (``wait=False``, one of several accounts: raised, so that
    the other accounts start at once). Telegram unreachable: a client not connected yet."""
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
            if not wait:
                raise
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
