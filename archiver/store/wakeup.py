"""Waking the bot when another process queues alerts, without waiting for its next poll.

The bot reads the outbox every ``[bot] poll_seconds`` (the fallback); a process that queues
alerts (``telewatch run``, ``sync``, ``import``, another worker) wakes it at once:

- **PostgreSQL**: :func:`announce` sends ``NOTIFY telewatch_alerts`` in the transaction that
  queued the alerts, so PostgreSQL delivers it at commit (never before, never for a rolled-back
  batch). :class:`Listener` holds its own connection with ``LISTEN telewatch_alerts`` (a pooled
  connection cannot: it would stop listening when returned). When that connection is lost it
  connects again with back-off, and wakes the bot once after each (re)connection, for whatever
  was committed while nobody listened.
- **SQLite**: :class:`DataVersionWatcher` asks ``PRAGMA data_version`` on a connection of its
  own every :data:`WATCH_SECONDS`. The value changes when any *other* connection commits: in
  WAL mode SQLite learns that from the WAL index in the ``-shm`` file, which is shared memory
  (no disk read). Only when it changed does the watcher read ``max(id)`` of ``alerts`` (an
  index lookup), and wakes the bot when that grew. Measured on the 2-core VM: 150 - 200 us of
  CPU a look, most of it the thread waking up, so 0.4 % of one core at 50 ms (1.5 % at 10 ms);
  50 ms adds at most 50 ms to an alert's way. It works wherever the archive itself works:
  WAL already requires every process that opens the file to share that memory (one host, a
  local filesystem; containers sharing a volume on one host), and it needs nothing from the
  process that writes. docs/operations.md argues the choice, docs/benchmarks.md measures it.

A missed wake-up (a NOTIFY while the listener reconnects, an alert re-queued rather than
inserted) costs at most one poll period: the poll is never switched off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any, Protocol

from archiver.store import postgres

log = logging.getLogger(__name__)

CHANNEL = "telewatch_alerts"
WATCH_SECONDS = 0.05  # SQLite: how often data_version is asked (150 - 200 us of CPU each)
KEEPALIVE_SECONDS = 30.0  # PostgreSQL: a quiet listener checks its connection this often
RECONNECT_SECONDS = (0.5, 30.0)  # PostgreSQL: first and longest wait before connecting again
APPLICATION_NAME = "telewatch-listen"  # the listener in pg_stat_activity


async def announce(db: Any) -> None:
    """Inside the transaction that queued alerts on ``db``: tell the bots at commit.
    On SQLite nothing is needed (the commit itself changes ``data_version``)."""
    if postgres.dialect(db) == "postgresql":
        await db.execute(f"NOTIFY {CHANNEL}")


class Watcher(Protocol):
    """Sets ``wake`` when another process may have queued alerts."""

    def start(self, wake: asyncio.Event) -> None: ...

    async def close(self) -> None: ...


def watcher_for(archive: Any) -> Watcher:
    """The wake-up of ``archive``'s backend (an :class:`archiver.store.archive.Archive`)."""
    if archive.url is not None:
        return Listener(archive.url)
    return DataVersionWatcher(archive.path)


class Listener:
    """``LISTEN`` on a connection of its own; sets the wake event on every notification."""

    def __init__(self, url: str, *, keepalive: float = KEEPALIVE_SECONDS) -> None:
        self.url = url
        self.keepalive = keepalive
        self.connections = 0  # successful LISTENs so far (tests and logs)
        self.listening = asyncio.Event()  # set while LISTEN is in force
        self._task: asyncio.Task[None] | None = None

    def start(self, wake: asyncio.Event) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(wake), name="telewatch-alert-listener")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self, wake: asyncio.Event) -> None:
        import psycopg

        delay, longest = RECONNECT_SECONDS
        while True:
            try:
                await self._listen(wake)
            except psycopg.Error as exc:
                self.listening.clear()
                why = str(postgres._error(exc))
                log.warning(
                    "PostgreSQL: the alert listener's connection failed (%s); connecting"
                    " again in %.1f s (the poll goes on meanwhile)",
                    why,
                    delay,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, longest)

    async def _listen(self, wake: asyncio.Event) -> None:
        import psycopg

        async with await psycopg.AsyncConnection.connect(
            self.url, autocommit=True, application_name=APPLICATION_NAME
        ) as conn:
            await conn.execute(f"LISTEN {CHANNEL}")
            self.connections += 1
            if self.connections > 1:
                log.info("PostgreSQL: the alert listener is connected again")
            self.listening.set()
            wake.set()  # whatever was committed while nobody listened
            while True:
                async for _ in conn.notifies(timeout=self.keepalive):
                    wake.set()
                await conn.execute("SELECT 1")  # a connection that died quietly fails here


class DataVersionWatcher:
    """A thread asking ``PRAGMA data_version`` of the SQLite archive at ``path`` every
    ``interval`` seconds; wakes the bot when a commit of another connection added alerts."""

    def __init__(self, path: Path, *, interval: float = WATCH_SECONDS) -> None:
        self.path = path
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, wake: asyncio.Event) -> None:
        if self._thread is None:
            loop = asyncio.get_running_loop()
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._watch, args=(loop, wake), name="telewatch-alert-watch", daemon=True
            )
            self._thread.start()

    async def close(self) -> None:
        if self._thread is not None:
            self._stop.set()
            await asyncio.to_thread(self._thread.join)
            self._thread = None

    def _watch(self, loop: asyncio.AbstractEventLoop, wake: asyncio.Event) -> None:
        try:
            # timeout 0: a lock held for a moment (a checkpoint) skips one look, never waits
            conn = sqlite3.connect(self.path, timeout=0, isolation_level=None)
        except sqlite3.Error as exc:
            log.warning("archive %s: cannot watch for alerts (%s); the poll finds them",
                        self.path, exc)  # fmt: skip
            return
        try:
            version, top, failing = -1, -1, False
            while not self._stop.is_set():
                try:
                    now = conn.execute("PRAGMA data_version").fetchone()[0]
                    if now != version:
                        version = now
                        got = conn.execute("SELECT max(id) FROM alerts").fetchone()[0] or 0
                        if got > top:  # the first look wakes too: alerts queued before it
                            top = got
                            with contextlib.suppress(RuntimeError):  # the loop closed
                                loop.call_soon_threadsafe(wake.set)
                    failing = False
                except sqlite3.Error as exc:  # busy for a moment: the next look sees it
                    if not failing:
                        log.debug("archive %s: watching for alerts: %s", self.path, exc)
                    failing = True
                self._stop.wait(self.interval)
        finally:
            conn.close()
