"""The work of the units a worker holds, started and stopped as its leases come and go.

Used by :mod:`archiver.runner`. A web unit has nothing running of its own: the sync pass
covers the web channels of the units held when it starts, and the fence stops a batch of a
unit lost meanwhile. An account unit (``account:<name>``) is that account's Telethon client
and, when a channel of it is followed live, its live listener: started when the unit is
gained (the listener catches up from each channel's high-water mark) and stopped (listener
first, then the client) when the unit is lost or given back. :func:`lease_loop` ticks the
worker and applies each change; a gained unit also triggers a catch-up pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from archiver.config import ChannelConfig, Settings, account_settings
from archiver.errors import AlreadyRunning, NotLoggedIn, TelewatchError
from archiver.lock import FileLock, session_lock
from archiver.store import leases
from archiver.store.archive import Archive
from archiver.store.following import ref_key
from archiver.worker import MAIN, Worker

log = logging.getLogger(__name__)

LIVE_GRACE = 2.0


@dataclass
class _Account:
    client: Any = None
    ready: bool = False
    logged_out: bool = False  # held, no client (login missing, or a flood wait at its check):
    # each pass tries its channels and records why
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    live: asyncio.Task[Any] | None = None
    starting: asyncio.Task[Any] | None = None
    lock: FileLock | None = None


class Units:
    """The running work of a worker's units (see the module docstring).

    ``open_client(settings, live, archive)`` opens an account's client (the runner's
    ``_open_telegram``); ``failed(name, exc)`` stops the whole process when a live listener
    fails or a client cannot be opened for a reason no retry fixes (a lost login);
    ``catch_up()`` asks for a sync pass. ``session_locks``: take the Telegram session's file
    lock when an account unit starts (``--worker``: several workers on one machine)."""

    def __init__(
        self,
        archive: Archive,
        settings: Settings,
        worker: Worker,
        stop: asyncio.Event,
        *,
        open_client: Callable[..., Awaitable[Any]],
        failed: Callable[[str, BaseException | None], None],
        catch_up: Callable[[], object],
        session_locks: bool,
    ) -> None:
        self.archive = archive
        self.settings = settings
        self.worker = worker
        self.stop_event = stop
        self._open = open_client
        self._failed = failed
        self._catch_up = catch_up
        self._session_locks = session_locks
        self.accounts: dict[str, _Account] = {}
        self.live = any(c.source == "telethon" and c.join for c in settings.channels)

    def fail(self, what: str, exc: BaseException) -> None:
        """Stop the whole process for ``exc`` (``failed`` given at construction)."""
        self._failed(what, exc)

    def client(self, account: str = MAIN) -> Any:
        """The account's client once started (None while it is not held or not ready)."""
        acc = self.accounts.get(account)
        return acc.client if acc is not None and acc.ready else None

    def runnable_units(self) -> set[str]:
        """Held units whose work can run now: web channels, and accounts whose client is
        ready (or whose login is missing: each pass records that on their channels)."""
        out = set()
        for u in self.worker.held:
            acc = self.accounts.get(u.removeprefix(leases.ACCOUNT))
            if not u.startswith(leases.ACCOUNT) or (
                acc is not None and (acc.ready or acc.logged_out)
            ):
                out.add(u)
        return out

    def _runnable_accounts(self) -> set[str]:
        return {u.removeprefix(leases.ACCOUNT) for u in self.runnable_units()
                if u.startswith(leases.ACCOUNT)}  # fmt: skip

    def polled_clients(self) -> dict[str, Any]:
        """The ready clients no live listener keeps connected (the sync job reconnects them)."""
        return {n: a.client for n, a in self.accounts.items() if a.ready and a.live is None}

    def kwargs(self) -> dict[str, Any]:
        """What ``sync_all``/``recheck_all`` are given: the clients of the accounts held
        here, and those accounts only."""
        names = self._runnable_accounts()
        clients = {n: a.client for n, a in self.accounts.items() if a.ready and n in names}
        if not self.settings.configured_accounts:  # one account, as before [[accounts]]
            return {"client": clients.get(MAIN)}
        return {"clients": clients, "accounts": names}

    def rechecks(self) -> bool:
        """Whether a recheck has anything to do here: an account is held."""
        return bool(self._runnable_accounts())

    async def polled(
        self, archive: Archive, settings: Settings, extra: Sequence[ChannelConfig]
    ) -> list[ChannelConfig]:
        """The channels a sync pass reads here: those of the held units, but the ``join =
        true`` Telethon channels of an account whose live listener reads them itself."""
        live = {n for n, a in self.accounts.items() if a.live is not None}
        assigned = self.worker.assigned

        def followed_live(c: ChannelConfig) -> bool:
            return c.source == "telethon" and c.join and assigned.get(ref_key(c.ref)) in live

        return [c for c in self.channels([*settings.channels, *extra]) if not followed_live(c)]

    def caught_up(self, units: Iterable[str]) -> None:
        """A pass covered ``units``: their catch-up is done."""
        self.worker.pending -= set(units)

    def pending(self) -> set[str]:
        """Units gained and runnable, not yet covered by a pass."""
        return self.worker.pending & self.runnable_units()

    def channels(self, pool: Iterable[ChannelConfig]) -> list[ChannelConfig]:
        """The channels of ``pool`` that this worker may sync now: those of its held units,
        Telethon ones only once their account's client is ready (a pass given a Telethon
        channel and no client would open a client of its own: a second session)."""
        runnable = self.runnable_units()
        by_key = {ref_key(c.ref): u for u, cs in self.worker.units.items() for c in cs}
        return [c for c in self.worker.channels(pool) if by_key.get(ref_key(c.ref)) in runnable]

    async def start(self, unit: str, *, wait: bool = False) -> None:
        """Start a gained unit (an account's in the background, unless ``wait``: then its
        failure is raised here). Either way the start is a task of its own, which
        :meth:`stop` cancels (the unit lost or given back while it starts, the lease loop
        running meanwhile); a start cancelled so ends quietly."""
        if not unit.startswith(leases.ACCOUNT):
            return
        name = unit.removeprefix(leases.ACCOUNT)
        acc = self.accounts.setdefault(name, _Account())
        if acc.starting is not None or acc.ready or acc.logged_out:
            return
        acc.stop = asyncio.Event()
        task = asyncio.create_task(self._start_account(name, acc), name=f"start {unit}")
        acc.starting = task
        if not wait:
            task.add_done_callback(lambda t: self._started(name, t))
            return
        try:
            await asyncio.wait([task])  # not ``await task``: a stop cancels it, not us
        except asyncio.CancelledError:
            # the start-up itself is stopped (a signal): so is this start, and it stays
            # ``starting`` so that stop() waits for its end before the unit is given back
            task.cancel()
            raise
        if acc.starting is task:
            acc.starting = None
        if not task.cancelled() and (exc := task.exception()) is not None:
            raise exc

    def _started(self, name: str, task: asyncio.Task[Any]) -> None:
        acc = self.accounts.get(name)
        if acc is not None and acc.starting is task:
            acc.starting = None
        if task.cancelled():
            return
        if (exc := task.exception()) is not None:
            self._failed(f"account {name}", exc)

    async def _start_account(self, name: str, acc: _Account) -> None:
        settings = account_settings(self.settings, name)
        if self._session_locks:
            lock = session_lock(settings)
            try:
                lock.acquire("run")
            except AlreadyRunning as exc:
                log.warning("account %s: %s; giving the unit back", name, exc)
                await self.worker.give_back([leases.account_unit(name)])
                return
            acc.lock = lock
        from archiver.sources.telethon_flood import AccountFloodWait

        single = len(self.settings.accounts) == 1
        try:
            acc.client = await self._open(settings, self.live, self.archive, wait=single)
        except (NotLoggedIn, AccountFloodWait) as exc:
            self._unlock(acc)
            if single:
                raise  # the only account: nothing Telethon does can work, as before
            log.error("telegram: account %s: %s; its channels are tried and recorded at each"
                      " pass, the other accounts go on", name, exc)  # fmt: skip
            acc.logged_out = True
            self._catch_up()
            return
        except BaseException:
            self._unlock(acc)
            raise
        acc.ready = True
        log.log(self.worker.level, "account %s: started", name)
        if self.live:
            from archiver.sync import follow_live

            if self.settings.configured_accounts:
                kwargs: dict[str, Any] = {"clients": {name: acc.client}, "accounts": {name},
                                          "assigned": self.worker.assigned}  # fmt: skip
            else:  # one account, as before [[accounts]]
                kwargs = {"client": acc.client}
            task = asyncio.create_task(
                follow_live(self.archive, self.settings, acc.stop, **kwargs), name=f"live {name}"
            )
            acc.live = task
            task.add_done_callback(lambda t: self._live_ended(name, acc, t))
        self._catch_up()

    def _live_ended(self, name: str, acc: _Account, task: asyncio.Task[Any]) -> None:
        if acc.stop.is_set() or self.stop_event.is_set():
            return  # told to stop
        if not task.cancelled() and task.exception() is None:
            return  # nothing to follow live, which is no reason to stop
        self._failed(f"live listener of account {name}", None if task.cancelled()
                     else task.exception())  # fmt: skip

    async def stop(self, unit: str, *, at_once: bool = False) -> None:
        """Stop a unit's work (before its lease is given back, or once it is lost).
        ``at_once``: the lease is lost or about to run out, and then another worker connects
        the account's session: disconnect it first, before waiting for anything (its live
        listener may be stuck on the database this worker cannot reach)."""
        if not unit.startswith(leases.ACCOUNT):
            return
        name = unit.removeprefix(leases.ACCOUNT)
        acc = self.accounts.pop(name, None)
        if acc is None:
            return
        from archiver.sync import disconnect

        acc.stop.set()
        if acc.starting is not None:
            acc.starting.cancel()
            await asyncio.wait([acc.starting], timeout=0 if at_once else LIVE_GRACE)
        if at_once and acc.client is not None:
            await disconnect(acc.client)
        if acc.live is not None:
            from archiver.runner import _finish

            await _finish(acc.live, LIVE_GRACE, f"live listener of account {name}")
        if not at_once and acc.client is not None:
            await disconnect(acc.client)
        self._unlock(acc)
        log.log(self.worker.level, "account %s: stopped", name)

    async def let_go(self, units: Iterable[str]) -> None:
        """Units whose lease is lost or about to run out: every account's session is
        disconnected first, side by side (another worker connects them soon), and only then
        is each unit stopped (its live listener waited for, up to LIVE_GRACE each)."""
        from archiver.sync import disconnect

        units = sorted(units)
        names = [u.removeprefix(leases.ACCOUNT) for u in units if u.startswith(leases.ACCOUNT)]
        clients = [a.client for n in names if (a := self.accounts.get(n)) and a.client is not None]
        await asyncio.gather(*(disconnect(c) for c in clients))
        for unit in units:
            await self.stop(unit, at_once=True)

    def _unlock(self, acc: _Account) -> None:
        if acc.lock is not None:
            acc.lock.release()
            acc.lock = None

    async def stop_all(self) -> None:
        for name in list(self.accounts):
            await self.stop(leases.account_unit(name))

    async def apply(self, change: Any) -> None:
        """One tick's change: stop the lost and the extra units, give the extras back, start
        the gained ones and ask for a catch-up pass."""
        await self.let_go(change.lost)
        for unit in sorted(change.extra):
            await self.stop(unit)
        if change.extra:
            await self.worker.give_back(change.extra)
        for unit in sorted(change.gained):
            await self.start(unit)
        if change.gained:
            self._catch_up()


async def lease_loop(units: Units, stop: asyncio.Event) -> None:
    """Tick the worker every third of the lease time until ``stop``."""
    worker = units.worker
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), worker.tick_seconds)
        if stop.is_set():
            return
        try:
            async with asyncio.timeout(worker.tick_seconds):  # a stalled database is a failure
                change = await worker.tick()
        except leases.WorkerReplaced as exc:
            # This process was cut off past its lease and the name was started again
            # elsewhere: what the name holds is the other process's now. Let go, and stop.
            log.error("%s", exc)
            await units.let_go(worker.drop())
            units.fail("worker", exc)
            return
        except (sqlite3.Error, TelewatchError, TimeoutError) as exc:
            # The fence keeps every write of a unit whose lease runs out meanwhile out of the
            # archive; the next tick tries again.
            log.warning("worker %s: leases not renewed (%s); trying again", worker.name,
                        str(exc) or type(exc).__name__)  # fmt: skip
            if worker.held and worker.expiring():
                # Its leases run out before the next tick, and then another worker may take
                # them: let go of every unit first (an account's session must never be
                # connected from two places: Telegram answers AUTH_KEY_DUPLICATED).
                log.warning("worker %s: cannot renew its leases before they expire; stopping"
                            " %s", worker.name, ", ".join(sorted(worker.held)))  # fmt: skip
                await units.let_go(worker.drop())
            continue
        await units.apply(change)
