"""The scheduler: jobs come from [schedule]; a running job never starts twice; stop is prompt."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from zoneinfo import ZoneInfo

import pytest
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobEvent

from archiver.config import ScheduleSettings
from archiver.errors import SourceError
from archiver.scheduler import JOB_NAMES, Scheduler, crons

KYIV = ZoneInfo("Europe/Kyiv")


def noop_jobs() -> dict[str, Callable[[], Awaitable[object]]]:
    async def job() -> None:
        return None

    return dict.fromkeys(JOB_NAMES, job)


@pytest.fixture
async def started() -> AsyncIterator[list[Scheduler]]:
    """Schedulers a test starts; stopped afterwards even when the test fails."""
    made: list[Scheduler] = []
    yield made
    for s in made:
        await s.stop(grace=1.0)


def test_crons_leave_out_switched_off_jobs() -> None:
    schedule = ScheduleSettings(maintenance="", digest="0 8 * * *")
    assert crons(schedule) == {
        "sync": "*/15 * * * *",
        "recheck": "7 * * * *",
        "backup": "30 3 * * *",
        "digest": "0 8 * * *",
    }


async def test_jobs_registered_from_config(started: list[Scheduler]) -> None:
    schedule = ScheduleSettings(
        sync="*/5 * * * *", backup="30 3 * * *", maintenance="", digest="0 8 * * *"
    )
    s = Scheduler(noop_jobs(), schedule, timezone=KYIV)
    started.append(s)
    s.start()
    assert s.job_names == ["backup", "digest", "recheck", "sync"]
    backup = s.next_run("backup")
    assert backup is not None
    # cron fields are read in the configured time zone
    assert (backup.hour, backup.minute) == (3, 30)
    assert backup.utcoffset() == backup.astimezone(KYIV).utcoffset()
    sync = s.next_run("sync")
    assert sync is not None and sync.minute % 5 == 0
    digest = s.next_run("digest")
    assert digest is not None and (digest.hour, digest.minute) == (8, 0)
    assert s.next_run("maintenance") is None


async def test_a_job_without_a_function_is_not_scheduled(started: list[Scheduler]) -> None:
    jobs = noop_jobs()
    del jobs["recheck"]  # e.g. no Telethon channel: nothing to recheck
    s = Scheduler(jobs, ScheduleSettings(), timezone=KYIV)
    started.append(s)
    s.start()
    assert "recheck" not in s.job_names
    assert s.trigger("recheck") is False


async def test_a_running_job_is_not_started_twice(started: list[Scheduler]) -> None:
    entered = asyncio.Event()
    release = asyncio.Event()
    starts = 0

    async def slow_sync() -> None:
        nonlocal starts
        starts += 1
        entered.set()
        await release.wait()

    refused = asyncio.Event()

    def on_max_instances(event: JobEvent) -> None:
        if event.job_id == "sync":
            refused.set()

    s = Scheduler({"sync": slow_sync}, ScheduleSettings(), timezone=KYIV)
    started.append(s)
    s.apscheduler.add_listener(on_max_instances, EVENT_JOB_MAX_INSTANCES)
    s.start(run_now=["sync"])
    await asyncio.wait_for(entered.wait(), 10)
    assert s.running == {"sync"}

    assert s.trigger("sync")  # its next run comes while it still runs
    await asyncio.wait_for(refused.wait(), 10)
    assert starts == 1

    release.set()
    while s.completed.get("sync", 0) < 1:
        await asyncio.sleep(0.01)
    assert s.running == frozenset()
    entered.clear()
    assert s.trigger("sync")  # once finished, it runs again
    await asyncio.wait_for(entered.wait(), 10)
    assert starts == 2
    release.set()


async def test_our_guard_refuses_a_second_start_too(
    started: list[Scheduler], caplog: pytest.LogCaptureFixture
) -> None:
    release = asyncio.Event()
    starts = 0

    async def slow() -> None:
        nonlocal starts
        starts += 1
        await release.wait()

    s = Scheduler({"backup": slow}, ScheduleSettings(), timezone=KYIV)
    started.append(s)
    first = asyncio.create_task(s._run("backup"))
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING, logger="archiver.scheduler"):
        await s._run("backup")  # returns at once
    assert starts == 1
    assert "still running, not started again" in caplog.text
    release.set()
    await first


async def test_failures_are_logged_and_the_job_runs_again(
    started: list[Scheduler], caplog: pytest.LogCaptureFixture
) -> None:
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise SourceError("vsaldo: no preview")
        if calls == 2:
            raise RuntimeError("boom")

    s = Scheduler({"sync": flaky}, ScheduleSettings(), timezone=KYIV)
    started.append(s)
    with caplog.at_level(logging.INFO, logger="archiver.scheduler"):
        for _ in range(3):
            await s._run("sync")
    assert calls == 3
    assert s.completed["sync"] == 3
    assert "job sync: failed: vsaldo: no preview" in caplog.text
    assert "job sync: failed" in caplog.text and "RuntimeError: boom" in caplog.text
    assert "job sync: done in" in caplog.text


async def test_stop_cancels_running_jobs_and_starts_no_more(started: list[Scheduler]) -> None:
    entered = asyncio.Event()
    cancelled = False

    async def forever() -> None:
        nonlocal cancelled
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled = True
            raise

    s = Scheduler({"sync": forever}, ScheduleSettings(), timezone=KYIV)
    s.start(run_now=["sync"])
    await asyncio.wait_for(entered.wait(), 10)
    await s.stop(grace=5.0)
    assert cancelled
    assert s.running == frozenset()
    assert not s.apscheduler.running
