"""The periodic jobs of ``telewatch run``, on APScheduler 3's ``AsyncIOScheduler``.

Jobs and their ``[schedule]`` cron expressions (five fields, in ``[display] timezone``; an
empty string switches a job off):

- ``sync``: one pass over the polled (Telethon) and web channels;
- ``recheck``: re-read the recent window of each Telethon channel for edits and deletions;
- ``backup``: an online backup into ``[storage] backup_dir``, keeping the newest N;
- ``maintenance``: ``PRAGMA optimize`` and the FTS merge;
- ``digest``: the daily digest to each recipient (off by default).

What each job does is given by the caller (:mod:`archiver.runner`) as a coroutine function per
name; this module only decides when. A job that is still running is never started a second
time: ``max_instances=1`` (APScheduler skips the run and logs a warning) plus a guard of our
own; ``coalesce`` folds runs missed while the process was busy or asleep into one.
APScheduler 3 is used over a hand-written loop of ``asyncio.sleep`` for its cron triggers with
time zones and daylight-saving changes, misfire handling and the max-instances rule.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime, tzinfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from archiver.config import ScheduleSettings
from archiver.errors import TelewatchError

log = logging.getLogger(__name__)

JOB_NAMES = ("sync", "recheck", "backup", "maintenance", "digest")
JobFn = Callable[[], Awaitable[object]]

MISFIRE_GRACE_SECONDS = 600  # a run late by more than this (the machine slept) is skipped


def crons(schedule: ScheduleSettings) -> dict[str, str]:
    """The cron expression of every job that is switched on."""
    exprs = {
        "sync": schedule.sync,
        "recheck": schedule.recheck,
        "backup": schedule.backup,
        "maintenance": schedule.maintenance,
        "digest": schedule.digest,
    }
    return {name: expr for name, expr in exprs.items() if expr}


class Scheduler:
    """Owns an ``AsyncIOScheduler``: :meth:`start` inside the running loop, :meth:`stop` once."""

    def __init__(
        self,
        jobs: Mapping[str, JobFn],
        schedule: ScheduleSettings,
        *,
        timezone: tzinfo,
    ) -> None:
        self._fns = dict(jobs)
        self._running: dict[str, asyncio.Task[object]] = {}
        self.completed: dict[str, int] = {}  # name -> runs finished (ok or failed)
        self.apscheduler = AsyncIOScheduler(
            timezone=timezone,
            job_defaults={
                "max_instances": 1,
                "coalesce": True,
                "misfire_grace_time": MISFIRE_GRACE_SECONDS,
            },
        )
        self._triggers = {
            name: CronTrigger.from_crontab(expr, timezone=timezone)
            for name, expr in crons(schedule).items()
            if name in self._fns
        }

    @property
    def job_names(self) -> list[str]:
        return sorted(job.id for job in self.apscheduler.get_jobs())

    def next_run(self, name: str) -> datetime | None:
        job = self.apscheduler.get_job(name)
        return None if job is None else job.next_run_time

    @property
    def running(self) -> frozenset[str]:
        return frozenset(self._running)

    def start(self, *, run_now: Iterable[str] = ()) -> None:
        """Start the scheduler in the running event loop; the jobs named in ``run_now`` (if
        scheduled) run at once, then on their cron schedule."""
        self.apscheduler.start()
        for name, trigger in self._triggers.items():
            self.apscheduler.add_job(self._run, trigger, args=[name], id=name, name=name)
        for name in run_now:
            self.trigger(name)
        for job in self.apscheduler.get_jobs():
            log.info("job %s: next run %s", job.id, job.next_run_time)

    def trigger(self, name: str) -> bool:
        """Run a scheduled job now (through APScheduler, so the max-instances rule applies).
        False when there is no such job."""
        job = self.apscheduler.get_job(name)
        if job is None:
            return False
        job.modify(next_run_time=datetime.now(self.apscheduler.timezone))  # wakes it up
        return True

    async def _run(self, name: str) -> None:
        if name in self._running:
            log.warning("job %s: still running, not started again", name)
            return
        task = asyncio.current_task()
        assert task is not None
        self._running[name] = task
        started = time.monotonic()
        log.info("job %s: started", name)
        try:
            await self._fns[name]()
        except TelewatchError as exc:
            log.warning("job %s: failed: %s", name, exc)
        except sqlite3.OperationalError as exc:  # locked by another process, the disk full
            log.warning("job %s: failed: the archive could not be written (%s); the next run"
                        " tries again", name, exc)  # fmt: skip
        except asyncio.CancelledError:
            # This is the job's own task, so returning ends it just as well; re-raising would
            # only make APScheduler log the shutdown as a job error with a traceback.
            log.info("job %s: cancelled (shutting down)", name)
        except Exception:  # the scheduler's edge: log it, the next run retries
            log.exception("job %s: failed", name)
        else:
            log.info("job %s: done in %.1f s", name, time.monotonic() - started)
        finally:
            self._running.pop(name, None)
            self.completed[name] = self.completed.get(name, 0) + 1

    async def stop(self, grace: float = 5.0) -> None:
        """Start no more jobs, cancel the running ones and wait (at most ``grace`` s) for them
        to unwind. Every write is one transaction, so a cancelled sync loses nothing: the next
        run resumes from the archived cursor."""
        if self.apscheduler.running:
            self.apscheduler.shutdown(wait=False)
            await asyncio.sleep(0)  # AsyncIOScheduler shuts down on the next loop iteration
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            if pending:
                log.warning("%d job(s) did not stop within %.0f s", len(pending), grace)
